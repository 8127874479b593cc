"""Downcore prediction: every target of a model (CaCO3 / TOC, or any lab target such as Fe) at every
depth of a core, with intervals and an OOD flag.

- Intervals: conformal, prediction +- the card's calibrated half-width (90 % by default), from the
  calibration that fits where the model's labels came from: "within-core" for a core whose lab
  samples were used to fine-tune the model, "by-core" for any other core (``interval_scheme`` in the
  stored provenance and the export header); constant,
  or scaled by the ridge leverage of the spectrum's embedding when the card's calibration chose
  normalised scores (see xrfcore.train.finetune); clamped to [0, 100]. Targets modelled as ln(wt%)
  (TOC by default) get the half-width in log space: a factor either side, asymmetric in wt%.
- Out-of-distribution score (xrfcore.ood): the largest of the foundation model's reconstruction error
  and embedding distance against its own reference, the distance to the lab samples' cores and a
  counts check, each over its limit; above 1 is flagged, ``ood_reason`` says why. Models without an
  autoencoder (scratch without a base) give NaN / False / "".
Results are stored in the project under the model id (one transaction) and can be exported with
``export.write_predictions_csv(path, df, provenance)``.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import pandas as pd

from xrfcore.export import card_seeds, labels_hash
from xrfcore.jobs import CancelToken, no_progress
from xrfcore.ood import describe as ood_describe

COLUMNS = ["core", "depth_mm", "section", "position_mm", "CaCO3", "CaCO3_lo", "CaCO3_hi",
           "TOC", "TOC_lo", "TOC_hi", "ood_score", "ood_flag", "ood_reason", "model_id"]


def columns_for(targets) -> list[str]:
    """The prediction table's columns for a model's targets: value, lo, hi per target (CaCO3 and
    TOC both, as always, for a model of those; a model of other targets: just its own)."""
    from xrfcore.targets import DEFAULT_TARGETS

    targets = list(targets)
    if set(targets) <= set(DEFAULT_TARGETS):
        return list(COLUMNS)
    return COLUMNS[:4] + [c for t in targets for c in (t, f"{t}_lo", f"{t}_hi")] + COLUMNS[-4:]


def _is_simulated(meta: pd.DataFrame) -> bool:
    return "scanner" in meta and meta["scanner"].astype(str).str.contains("simulated", case=False).any()


def provenance(card: dict, *, project_path=None, core=None, run=None, data_simulated=False,
               project_sha256: str | None = None) -> dict:
    """The provenance header of a prediction table (stored with it and written into CSVs)."""
    from xrfcore import __version__

    metrics = {t: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}
               for t, m in (card.get("metrics") or {}).items()}
    from xrfcore.targets import units_of

    return {
        "xrfcore_version": __version__,
        "model_id": card.get("id"),
        "targets": list(card.get("targets") or []),
        "units": units_of(card),
        "target_space": {t: (s or {}).get("space", "linear") for t, s in (card.get("target_stats") or {}).items()},
        "weights_sha256": card.get("weights_sha256"),
        "model_mode": card.get("mode"),
        "base_model": (card.get("base_model") or {}).get("id"),
        "model_metrics": metrics,
        "skill_warnings": card.get("skill_warnings") or [],
        "interval": f"{round(100 * (1 - (card.get('finetune_config') or {}).get('alpha', 0.1)))} % conformal",
        "conformal_q": {t: c.get("q") for t, c in (card.get("conformal") or {}).items()},
        "interval_calibration": {t: {"method": c.get("method", "plain"), "q_normalised": c.get("q_normalised"),
                                     "space": c.get("space", "linear"),
                                     "cv_coverage": c.get(f"cv_coverage_{c.get('method', 'plain')}")}
                                 for t, c in (card.get("conformal") or {}).items()},
        "ood": ood_describe(card),
        "labels_sha256": labels_hash(card),
        "seeds": card_seeds(card),
        "project": str(project_path) if project_path else None,
        "project_sha256": project_sha256,
        "core": core, "run": run,
        "predicted": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "simulated": bool(data_simulated or card.get("simulated_data")),
        "model_trained_on_simulated_data": card.get("simulated_data"),
    }


def interval_provenance(card: dict, scheme: str | None) -> dict:
    """What the export header says about the intervals of one core: the calibration scheme used
    (within-core / by-core, chosen by whether the core's lab samples trained the model), why, and
    that scheme's calibration per target."""
    from xrfcore.train.finetune import Predictor

    pr = Predictor.__new__(Predictor)
    pr.card = card
    out = {"interval_scheme": scheme or "single (model card made before per-core schemes)",
           "interval_scheme_reason": Predictor.scheme_text(pr, scheme)}
    if scheme:
        cal = {}
        for t, c in (card.get("conformal") or {}).items():
            s = (c.get("schemes") or {}).get(scheme) or {}
            m = s.get("method", "plain")
            cal[t] = {"method": m, "q": s.get(f"q_{m}"), "estimator": s.get(f"estimator_{m}"),
                      "space": c.get("space", "linear"), "n": s.get("n"),
                      "cv_coverage": s.get(f"cv_coverage_{m}")}
        out["interval_calibration"] = cal
    return out


def _calibration_note(rd) -> str:
    """The run's energy calibration as the export header states it."""
    src = rd.meta["cal_source"].value_counts().to_dict() if "cal_source" in rd.meta else {}
    by = ", ".join(f"{v} {k}" for k, v in src.items() if k)
    return (f"gain {rd.grid.gain_kev * 1000:.3f} eV/ch, offset {rd.grid.offset_kev * 1000:+.1f} eV "
            f"({rd.attrs.get('grid_source', 'not recorded')})" + (f"; per spectrum: {by}" if by else ""))


def _file_sha256(path) -> str:
    from xrfcore.export import file_sha256
    return file_sha256(path)


def predict_core(project_path, core: str, model_path, run: str | None = None, *,
                 progress=no_progress, token: CancelToken | None = None, store: bool = True,
                 device: str = "auto", predictor=None,
                 allow_instrument_mismatch: bool = False) -> pd.DataFrame:
    """Predict every active depth of ``core``; stores the table under the model id when ``store``.

    The run must match the instrument the model was trained for (xrfcore.instrument: tube anode,
    kV, energy window): otherwise ``instrument.InstrumentMismatch`` (or ``NoMatchingRun`` when no
    run is named and none is at the model's kV) unless ``allow_instrument_mismatch``.
    Returns a DataFrame with COLUMNS; ``df.attrs["provenance"]`` holds the provenance dict.
    """
    from xrfcore import instrument, ood, store as st
    from xrfcore.train.finetune import Predictor

    token = token or CancelToken()
    pr = predictor or Predictor(model_path, device=device)
    with st.Project.open(project_path) as p:
        if core not in p.cores():
            raise ValueError(f"{project_path}: no core {core!r} (cores: {', '.join(p.cores()) or 'none'})")
        runs = p.runs(core)
        key, chosen = instrument.choose_run(instrument.runs_with_kv(p, core), pr.card, core=core, run=run,
                                            allow=allow_instrument_mismatch)
        if key not in runs:
            raise ValueError(f"{project_path}: core {core!r} has no run {key!r} (runs: {', '.join(runs)})")
        rd = p.read_run(core, key, active_only=True)
    if len(rd) == 0:
        raise ValueError(f"{project_path}: core {core!r} run {key!r} has no active spectra")
    check = instrument.check_or_refuse(pr.card, rd, core=core, run=key, allow=allow_instrument_mismatch)
    # one bar for the whole job: the model's passes (prediction, then the OOD passes) fill 90 %,
    # storing the table and hashing the project the rest
    def model_progress(d, t, m=""):
        progress(int(900 * d / max(t, 1)), 1000, m)
    scheme = pr.scheme_for(core)  # within-core for a core whose lab samples trained the model
    out = pr.predict_counts(rd.counts, rd.grids, progress=model_progress, token=token,
                            exposure=ood.exposure(rd.meta), scheme=scheme)
    df = pd.DataFrame({"core": core, "depth_mm": rd.meta["depth_mm"].to_numpy(float),
                       "section": rd.meta["section"].astype(str).to_numpy(),
                       "position_mm": rd.meta["position_mm"].to_numpy(float)})
    for c in columns_for(pr.targets)[4:-1]:
        df[c] = out[c].to_numpy()
    df["ood_flag"] = df["ood_flag"].astype(bool)
    df["model_id"] = pr.model_id
    token.raise_if_cancelled()
    prov = provenance(pr.card, project_path=Path(project_path).name, core=core, run=key,
                      data_simulated=_is_simulated(rd.meta))
    prov.update(interval_provenance(pr.card, scheme))
    prov["energy_calibration"] = _calibration_note(rd)
    prov["run_choice"] = chosen
    prov["counts_outside_window"] = round(check.outside_share, 5)
    prov["instrument_check"] = check.to_dict()
    prov.update(_basis(project_path, core, key, pr))
    if store:
        progress(900, 1000, "storing")
        with st.transaction(project_path) as w:
            w.write_predictions(core, pr.model_id, df, prov)
    progress(950, 1000, "hashing the project")
    prov["project_sha256"] = _file_sha256(project_path)
    df.attrs["provenance"] = prov
    progress(1000, 1000, "done")
    return df


def _model_card_sha256(model_path) -> str | None:
    """sha256 of a model's card file (its calibration, hashes and metrics); None when not found."""
    from xrfcore.model import checkpoint
    try:
        card = checkpoint.paths(model_path)[1]
        return checkpoint.sha256_file(card) if Path(card).is_file() else None
    except (OSError, ValueError):
        return None


def _basis(project_path, core: str, run: str, pr) -> dict:
    """What a prediction was made from (compared by :func:`stale_reasons`): the run's content id,
    the stored lab samples and the model's card file."""
    from xrfcore import store as st

    with st.Project.open(project_path) as p:
        spectra, labels_sha = p.run_content_id(core, run), p.labels_sha256()
    path = getattr(pr, "path", None)
    return {"spectra_sha256": spectra, "project_labels_sha256": labels_sha,
            "model_path": str(Path(path).resolve()) if path else None,
            "model_card_sha256": _model_card_sha256(path) if path else None}


def stale_reasons(project_path, core: str, model_id: str | None = None, meta: dict | None = None,
                  df: pd.DataFrame | None = None) -> list[str]:
    """Why the stored predictions of ``model_id`` for ``core`` are out of date (empty: current).

    Compared with what the prediction recorded: the content of the run it was made from (counts,
    depths, active flags), the project's lab samples, and the model's card file. Predictions made
    before these were recorded are checked by their number of depths against the run's active
    spectra. ``meta``/``df``: the stored predictions when already read.
    """
    from xrfcore import store as st

    reasons: list[str] = []
    with st.Project.open(project_path) as p:
        if meta is None or df is None:
            df, meta = p.read_predictions(core, model_id)
        run = meta.get("run")
        if run and run not in p.runs(core):
            return [f"spectra changed: run {run!r} is no longer in core {core!r}"]
        if run and meta.get("spectra_sha256"):
            if p.run_content_id(core, run) != meta["spectra_sha256"]:
                reasons.append(f"spectra changed: the spectra of {core} {run} were re-imported or "
                               "changed since this prediction")
        elif run:
            g = p._run(core, run)
            n_active = int(np.count_nonzero(st._read_ds(st._dataset(g, "active"))))
            if n_active != len(df):
                reasons.append(f"spectra changed: {core} {run} now has {n_active} active spectra, "
                               f"this prediction has {len(df)} depths")
        if "project_labels_sha256" in meta and meta["project_labels_sha256"] != p.labels_sha256():
            reasons.append("lab samples changed: the project's lab samples were loaded or changed "
                           "since this prediction")
    recorded, path = meta.get("model_card_sha256"), meta.get("model_path")
    if recorded and path and Path(path).exists():
        now = _model_card_sha256(path)
        if now is not None and now != recorded:
            reasons.append(f"model changed: the model at {path} was re-written since this prediction")
    return reasons


def predict_project(project_path, model_path, cores=None, run=None, *, progress=no_progress,
                    token: CancelToken | None = None, device: str = "auto",
                    allow_instrument_mismatch: bool = False) -> dict[str, pd.DataFrame]:
    """predict_core for several cores (all by default) with one loaded model."""
    from xrfcore import store as st
    from xrfcore.train.finetune import Predictor

    pr = Predictor(model_path, device=device)
    with st.Project.open(project_path) as p:
        cores = list(cores) if cores else p.cores()
    out = {}
    for i, core in enumerate(cores):
        def prog(d, t, m="", i=i, core=core):
            progress(i * 1000 + int(1000 * d / max(t, 1)), len(cores) * 1000, f"{core}: {m}")
        out[core] = predict_core(project_path, core, model_path, run, progress=prog, token=token,
                                 predictor=pr, allow_instrument_mismatch=allow_instrument_mismatch)
    return out


def interval_coverage(y_true, lo, hi) -> float:
    """Share of finite labels inside [lo, hi]."""
    y, lo, hi = (np.asarray(a, float) for a in (y_true, lo, hi))
    ok = np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi)
    return float(np.mean((y[ok] >= lo[ok]) & (y[ok] <= hi[ok]))) if ok.any() else float("nan")


def export_core(project_path, core: str, model_id: str, path) -> pd.DataFrame:
    """Write the stored predictions of ``model_id`` for ``core`` to a CSV with its provenance."""
    from xrfcore import export, store as st

    with st.Project.open(project_path) as p:
        if core not in p.cores():
            raise ValueError(f"{project_path}: no core {core!r} (cores: {', '.join(p.cores()) or 'none'})")
        have = p.predictions(core)
        match = [m for m in have if m == model_id or m == st.safe_name(model_id)]
        if not match:
            raise ValueError(f"{project_path}: core {core!r} has no predictions of model {model_id!r} "
                             f"(has: {', '.join(have) or 'none'}); run `xrfcore predict` first")
        df, meta = p.read_predictions(core, match[0])
    meta = dict(meta)
    reasons = stale_reasons(project_path, core, match[0], meta, df)
    if reasons:  # exported, but the file says so on its first lines (and the CLI warns)
        meta["stale"] = "; ".join(reasons)
    meta["project_sha256"] = _file_sha256(project_path)
    meta["project"] = str(Path(project_path).name)
    export.complete_provenance(meta)  # labels hash and seeds of predictions stored before they were kept
    export.write_predictions_csv(path, df, meta)
    df.attrs["stale"] = reasons
    return df
