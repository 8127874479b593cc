"""Thin wiring between the GUI and xrfcore: small job functions that chain xrfcore calls.

No science here: every number comes from an xrfcore function. Each function has the job
signature ``f(..., progress, token)`` so it runs in a JobThread.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xrfcore.jobs import CancelToken, no_progress


# ---------------------------------------------------------------------------- locations
def resources_dir() -> Path | None:
    """The bundled resources folder (repository, wheel or app bundle; $XRFCORE_RESOURCES)."""
    from xrfcore import _paths
    return _paths.resources_dir()


def sample_core_folder() -> Path | None:
    from xrfcore import _paths
    return _paths.sample_core_dir()


def demo_project_path() -> Path:
    """Where the demo (the bundled SIMULATED sample core) is imported: a fresh temporary folder,
    clearly named, made for this one session (removed with the system's temporary files)."""
    import tempfile
    return Path(tempfile.mkdtemp(prefix="xrfcore-demo-SIMULATED-")) / "sample_core_SIMULATED.h5"


def sample_labels_file(folder: Path) -> Path | None:
    """The lab-samples CSV shipped with the sample core (name contains 'lab')."""
    cands = sorted(p for p in folder.rglob("*.csv") if "lab" in p.name.lower())
    return cands[0] if cands else None


# ---------------------------------------------------------------------------- project loading
@dataclass
class CoreView:
    """What the views need for one core/run."""

    project: str
    core: str
    run: str
    run_data: object                  # xrfcore.store.RunData
    order: np.ndarray                 # indices sorted by depth
    depth: np.ndarray                 # depth_mm in display order
    labels: pd.DataFrame
    predictions: list[str]
    prediction: pd.DataFrame | None = None
    prediction_meta: dict = field(default_factory=dict)
    simulated: bool = False
    label_targets: dict = field(default_factory=dict)   # target -> unit of the stored lab samples


def project_info(path, *, progress=no_progress, token: CancelToken | None = None) -> dict:
    """Cores, runs (with spectrum counts) and stored predictions: what the project tree shows.
    Cheaper than Project.info(), which also summarises every metadata column."""
    from xrfcore import store
    info: dict = {"path": str(path), "cores": [], "runs": {}}
    with store.Project.open(path) as p:
        for core in p.cores():
            runs = p.runs(core)
            info["runs"][core] = runs
            rows = [{"run": r, "spectra": p.n_spectra(core, r)} for r in runs]
            info["cores"].append({"core": core, "runs": rows, "spectra": sum(r["spectra"] for r in rows),
                                  "predictions": p.predictions(core)})
    return info


def default_run(runs: list[str]) -> str | None:
    from xrfcore import labels
    return labels.choose_run(runs)


def load_core(path, core: str, run: str, *, progress=no_progress,
              token: CancelToken | None = None) -> CoreView:
    from xrfcore import store
    progress(0, 2, f"reading {core} {run}")
    with store.Project.open(path) as p:
        rd = p.read_run(core, run)
        labs = p.labels(core)
        from xrfcore.targets import stored
        label_targets = stored(p.labels_meta(), p.labels())
        preds = p.predictions(core)
        pred, pmeta = (None, {})
        if preds:
            pred, pmeta = p.read_predictions(core, preds[-1])
    if pred is not None:
        pmeta = {**pmeta, "stale_reasons": prediction_stale(path, core, preds[-1], pmeta, pred)}
    # the raw header and warning lists (a dict / list per spectrum) are not shown here: dropping
    # them keeps the garbage collector's work, and its pauses, small for big cores
    rd.meta = rd.meta.drop(columns=[c for c in ("header", "warnings") if c in rd.meta.columns])
    depth = np.asarray(rd.meta["depth_mm"], float)
    order = np.argsort(depth, kind="stable")
    scanner = " ".join(map(str, rd.meta["scanner"].unique())) if "scanner" in rd.meta else ""
    sim = "simulated" in scanner.lower() or bool(rd.attrs.get("simulated", False))
    progress(2, 2, "read")
    return CoreView(str(path), core, run, rd, order, depth[order], labs, preds, pred, pmeta, sim, label_targets)


def open_project(path, *, progress=no_progress, token: CancelToken | None = None):
    """(project info, CoreView of the first core's default run or None): one job for opening."""
    info = project_info(path)
    for c in info.get("cores", []):
        runs = [r["run"] for r in c["runs"]]
        if runs:
            return info, load_core(path, c["core"], default_run(runs), progress=progress, token=token)
    return info, None


def read_predictions(path, core: str, model_id: str):
    """(predictions, meta); meta["stale_reasons"]: why they are out of date (empty: current)."""
    from xrfcore import store
    with store.Project.open(path) as p:
        df, meta = p.read_predictions(core, model_id)
    return df, {**meta, "stale_reasons": prediction_stale(path, core, model_id, meta, df)}


def prediction_stale(path, core: str, model_id: str, meta: dict, df) -> list[str]:
    """xrfcore.predict.stale_reasons (the spectra, lab samples or model changed since)."""
    from xrfcore import predict
    return predict.stale_reasons(path, core, model_id, meta, df)


def label_targets(project) -> dict[str, str]:
    """{target: unit} of the lab samples stored in a project (empty when none)."""
    from xrfcore import labels
    return labels.stored_targets(project) if project else {}


def view_targets(view) -> dict[str, str]:
    """{target: unit} the downcore view shows for a core: CaCO3 and TOC (always), the stored lab
    samples' targets and the shown prediction's targets."""
    from xrfcore.targets import DEFAULT_TARGETS, DEFAULT_UNIT
    out = {t: DEFAULT_UNIT for t in DEFAULT_TARGETS}
    if view is None:
        return out
    pmeta = getattr(view, "prediction_meta", None) or {}
    pred = getattr(view, "prediction", None)
    units = pmeta.get("units") or {}
    for t in pmeta.get("targets") or []:
        if pred is None or t in pred.columns:
            out.setdefault(t, units.get(t, ""))
    for t, u in (getattr(view, "label_targets", None) or {}).items():
        out.setdefault(t, u)
    return out


def matched_lab_samples(view) -> int:
    """How many of the view's stored lab samples lie within its core's scanned depths (+-5 mm, the
    matching tolerance): fine-tuning needs some."""
    labs = getattr(view, "labels", None)
    if labs is None or not len(labs) or "depth_mm" not in labs:
        return 0
    d = np.asarray(view.depth, float)
    d = d[np.isfinite(d)]
    if not len(d):
        return 0
    top = labs["depth_top_mm"].to_numpy(float) if "depth_top_mm" in labs else np.full(len(labs), np.nan)
    bot = labs["depth_bottom_mm"].to_numpy(float) if "depth_bottom_mm" in labs else np.full(len(labs), np.nan)
    mid = labs["depth_mm"].to_numpy(float)
    lo = np.where(np.isfinite(top), top, mid) - 5.0
    hi = np.where(np.isfinite(bot), bot, mid) + 5.0
    return int(np.count_nonzero((hi >= d.min()) & (lo <= d.max())))


def energies_of(grid) -> np.ndarray:
    from xrfcore import energy
    g = grid if hasattr(grid, "energies") else energy.Grid(int(grid[0]), float(grid[1]), float(grid[2]))
    return np.asarray(g.energies(), float)


def energy_text(run_data, row: int) -> str:
    """The energy calibration a spectrum is shown with (xrfcore.calibration.describe_row)."""
    from xrfcore.calibration import describe_row
    g = run_data.grids
    src = run_data.meta["cal_source"].iat[row] if "cal_source" in run_data.meta else ""
    return describe_row(float(g.gains[row]), float(g.offsets[row]), src)


def line_rows() -> list[tuple[str, str, float]]:
    """xrfcore.energy.LINES as (element, line, keV) rows, whatever container it is."""
    from xrfcore import energy
    lines = energy.LINES
    if isinstance(lines, pd.DataFrame):
        cols = {c.lower(): c for c in lines.columns}
        e = cols.get("element") or lines.columns[0]
        ln = cols.get("line") or lines.columns[1]
        k = cols.get("kev") or cols.get("energy_kev") or cols.get("energy") or lines.columns[2]
        return [(str(a), str(b), float(c)) for a, b, c in zip(lines[e], lines[ln], lines[k])]
    return [(str(r.element), str(r.line), float(r.kev)) for r in lines]


def sum_range(path, core: str, run: str, lo: float, hi: float, *, progress=no_progress, token=None):
    """Summed counts of the active spectra between two depths (mm) and how many there were."""
    from xrfcore import store
    with store.Project.open(path) as p:
        rd = p.read_run(core, run, depth_range=(lo, hi))
    return np.asarray(rd.counts, np.int64).sum(axis=0), len(rd)


# ---------------------------------------------------------------------------- lab samples
def store_labels(path, lab, *, progress=no_progress, token: CancelToken | None = None) -> int:
    """Save a read lab table into the project (xrfcore.labels.store_labels: replaces the samples of
    the cores it names, keeps the others; one transaction)."""
    from xrfcore import labels
    progress(0, 1, "saving lab samples")
    if token is not None:
        token.raise_if_cancelled()
    labels.store_labels(path, lab)
    progress(1, 1, "saved")
    return len(lab.samples)


def import_with_labels(folder, project, *, labels_csv=None, section_unit="auto",
                       progress=no_progress, token: CancelToken | None = None):
    """Import a core folder, then (optionally) its lab-samples CSV: the demo's one job."""
    from xrfcore import importer, labels
    report = importer.import_folder(folder, project, section_unit=section_unit,
                                    progress=progress, token=token)
    if labels_csv is not None:
        with_cores = project_info(project)["runs"]
        core = next(iter(with_cores)) if len(with_cores) == 1 else None
        lab = labels.read_lab_csv(labels_csv, core=core)
        store_labels(project, lab, token=token)
    return report


# ---------------------------------------------------------------------------- models
def find_models(kind: str | None = None) -> list[tuple[Path, dict]]:
    """(card path, card) of the installed models (xrfcore.models_registry: shipped first, then the
    user's folder; cards only, no torch); kind 'mae' (foundation) or 'regressor'."""
    from xrfcore import models_registry
    return [(Path(e["card_path"]), e) for e in models_registry.list_models(kind=kind) if "error" not in e]


def find_model_by_id(model_id: str, kind: str = "regressor") -> str:
    """Stem path of the installed model whose card id is ``model_id`` ('' when none): a project's
    stored predictions name their model by id, so reopening the project finds it again."""
    for card_path, card in find_models(kind):
        if model_id and card.get("id") == model_id:
            return str(card_path.with_suffix(""))
    return ""


def default_foundation_model() -> str:
    """Stem path of the default foundation model ('' when none is installed)."""
    from xrfcore import models_registry
    p = models_registry.default_model("mae")
    return str(Path(p).with_suffix("")) if p is not None else ""


def describe_model(card_path: Path, card: dict) -> str:
    sim = ", SIMULATED training data" if card.get("simulated_data") else ""
    name = card.get("name") or card.get("id", card_path.stem)
    src = f"{card['source']}: " if card.get("source") else ""
    return f"{name} ({card.get('kind', '?')}{sim})  {src}{card_path.parent}"


def warm_up(*, progress=no_progress, token=None) -> dict:
    """Import torch off the GUI thread (slow the first time) and report what devices exist."""
    import torch
    # The first optimizer construction imports much of torch (about a second, holding the GIL in
    # C-extension initialisers): pay it here, at start-up, not in the middle of a fine-tune.
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    import xrfcore.predict  # noqa: F401
    import xrfcore.reconstruct  # noqa: F401
    import xrfcore.train.finetune  # noqa: F401
    import xrfcore.train.pretrain  # noqa: F401
    from sklearn.linear_model import RidgeCV  # head fine-tuning's first fit imports a lot of scipy
    RidgeCV(alphas=(1.0, 10.0)).fit(np.random.default_rng(0).normal(size=(8, 3)), np.arange(8.0))
    return {"cuda": bool(torch.cuda.is_available()), "threads": torch.get_num_threads()}


def finetune_project(project, base_model, out_dir, *, mode="head", targets=None,
                     epochs=60, device="auto", allow_instrument_mismatch=False, progress=no_progress,
                     token=None) -> dict:
    """Fine-tune on the lab samples stored in the project (xrfcore matches them, builds the
    out-of-distribution reference and saves the model in out_dir, exactly as `xrfcore finetune`)."""
    from xrfcore.train import finetune as ft

    progress(0, 1, "matching lab samples to spectra")
    if not base_model and mode != "scratch":
        base_model = default_foundation_model()
        if not base_model:
            raise ValueError("no foundation model is installed: choose a model file as the base model, "
                             "or pretrain one (Advanced > Pretrain on this project's spectra)")
    reg, card, match = ft.finetune_project(
        str(project), None, str(base_model) if base_model else None, str(out_dir), mode=mode,
        targets=tuple(targets) if targets else None, epochs=int(epochs), device=device, progress=progress, token=token,
        allow_instrument_mismatch=allow_instrument_mismatch)
    held_out = validation_points(card)
    if held_out is not None:
        measured, predicted = held_out
        fit = "validation"
    else:  # a card without per-sample validation predictions: show the fit on the labels, as such
        pred = ft.Predictor(Path(out_dir) / "model", device="cpu").predict_counts(match.X, match.grid)
        measured = {t: match.samples[t].to_numpy(float) for t in card["targets"]}
        predicted = {t: pred[t].to_numpy(float) for t in card["targets"]}
        fit = "training fit"
    from xrfcore.targets import units_of
    return {"card": card, "path": str(Path(out_dir) / "model"), "measured": measured, "units": units_of(card),
            "predicted": predicted, "fit": fit, "scheme": (card.get("validation") or {}).get("scheme", "")}


def validation_points(card: dict):
    """(measured, predicted) per target from a fine-tuned card's held-out predictions
    (``card["validation"]["measured"/"predicted"]``: target -> values, None where missing);
    None when the card has none."""
    val = card.get("validation") or {}
    m, p = val.get("measured"), val.get("predicted")
    if not isinstance(m, dict) or not isinstance(p, dict):
        return None

    def arrays(v):
        return {t: np.array([np.nan if x is None else x for x in v[t]], float) for t in v}
    m, p = arrays(m), arrays(p)
    if not m or any(len(m[t]) != len(p.get(t, ())) for t in m):
        return None
    return m, p


def predict_project(project, core, run, model_path, *, device="auto", allow_instrument_mismatch=False,
                    progress=no_progress, token=None) -> str:
    """Predict every depth of a core and store the table in the project; returns the model id."""
    from xrfcore import predict
    df = predict.predict_core(project, core, model_path, run=run, device=device, progress=progress,
                              token=token, store=True, allow_instrument_mismatch=allow_instrument_mismatch)
    return str(df["model_id"].iloc[0]) if len(df) else ""


def predict_table(project, core, run, model_path, *, device="auto", progress=no_progress, token=None):
    """Predict every depth of a core without storing anything (the self-test: the user's project
    keeps no predictions of a throw-away model)."""
    from xrfcore import predict
    return predict.predict_core(project, core, model_path, run=run, device=device, progress=progress,
                                token=token, store=False)


def instrument_refusal(exc) -> dict | None:
    """What the mismatch dialog shows when xrfcore refused a run for its instrument (tube, kV,
    energy window; xrfcore.instrument): run, model, differences, window share. None for other errors."""
    from xrfcore import instrument
    if isinstance(exc, instrument.InstrumentMismatch) and exc.check is not None:
        c = exc.check
        return {"run": c.run_text(), "model": f"{c.model_name()} was trained for {instrument.model_text(c.model)}",
                "differences": [m for k, m in zip(c.kinds, c.mismatches) if k != "window"],
                "window": c.window_text(), "notes": list(c.notes)}
    if isinstance(exc, instrument.NoMatchingRun):
        return {"run": "", "problem": exc.reason, "model": exc.model, "differences": [],
                "window": "", "notes": []}
    return None


def export_predictions(project, core, model_id, path, *, progress=no_progress, token=None) -> str:
    from xrfcore import predict
    from xrfcore.outputs import check_output
    check_output(path, inputs=(project,), force=True)  # never onto the project (the dialog asked about the rest)
    predict.export_core(project, core, model_id, path)
    return str(path)


def pretrain_project(project, out_dir, *, size="tiny", steps=200, device="auto", batch_size=128,
                     window_channels=None, progress=no_progress, token=None) -> dict:
    """Masked-spectrum pretraining on every active spectrum of the project (xrfcore.train).
    window_channels: read only the first channels (512 = 0-10.24 keV, enough for 10 kV runs); None: the
    window is chosen from the data (xrfcore.train.window)."""
    from xrfcore.model.config import ModelConfig
    from xrfcore.train import window as win
    from xrfcore.train.data import load_project
    from xrfcore.train.pretrain import TrainConfig, pretrain
    cfg = ModelConfig.preset(size, window_channels=window_channels)
    grids = []
    data = load_project(project, cfg, progress=progress, token=token, on_run=lambda c, r, rd, k: grids.append(rd.grid))
    if not len(data):
        raise ValueError("this project has no spectra to pretrain on")
    if window_channels is None:
        cfg = win.apply(cfg, win.choose(data.counts.sum(0, dtype=float), cfg, data_end=win.data_end_kev(grids)))
    sim = bool(np.all(data.simulated)) if np.all(data.simulated) or not np.any(data.simulated) else "mixed"
    info = {"project": str(project), "cores": sorted(set(map(str, data.core))), "simulated": sim}
    from xrfcore.instrument import training_instrument  # tube, kV range, scanner for the card
    info.update(training_instrument(project, data.core, data.run, data.counts, cfg.grid()))
    tc = TrainConfig(steps=int(steps), batch_size=min(int(batch_size), len(data)), device=device, out_dir=str(out_dir),
                     log_every=max(1, int(steps) // 100))
    _model, card = pretrain(data.counts, cfg, tc, progress, token, data_info=info)
    return {"card": card, "path": str(Path(out_dir) / "model")}


def adapt_plan(project, device="auto") -> dict:
    """Steps and (CPU) time the adaptation of a foundation model to this project would take."""
    from xrfcore.store import Project
    from xrfcore.train import adapt
    from xrfcore.train.device import resolve_device
    with Project.open(project) as p:
        n = sum(p.n_spectra(c, r) for c in p.cores() for r in p.runs(c))
    dev = resolve_device(device).type
    return {**adapt.plan(n, dev), "n_spectra": n, "device": dev}


def adapted_model(project) -> dict | None:
    """The newest installed model adapted to this project (an earlier session's too): {"path", "name"}."""
    from xrfcore.models_registry import adapted_for
    hit = adapted_for(project)
    return {"path": str(Path(hit["path"]).with_suffix("")), "name": hit["name"]} if hit else None


def adapt_project(project, *, base=None, steps=None, device="auto", progress=no_progress, token=None) -> dict:
    """Continue masked-spectrum pretraining of ``base`` on the project's spectra (xrfcore.train.adapt);
    the adapted model goes into the user's models folder."""
    from xrfcore.train import adapt
    res = adapt.adapt(project, base=base, steps=steps, device=device, progress=progress, token=token)
    res["table_text"] = "\n".join(   # one line per row: a dialog wraps an aligned table badly
        f"{r['held_out']}, {r['n_spectra']} spectra: before {r['before']:.5f}, after {r['after']:.5f}"
        + (f" ({r['change_pct']:+.1f} %)" if r.get("change_pct") is not None else "")
        + (f"; relative error in counts {r['rel_before']:.3f} -> {r['rel_after']:.3f}"
           if r.get("rel_before") is not None and r.get("rel_after") is not None else "") for r in res["table"])
    res["window_text"] = window_summary(res["card"]["adaptation"])
    return res


def window_summary(a: dict) -> str:
    """What the adaptation did to the energy window, in words (the adapt dialog's summary)."""
    w = a.get("window") or {}
    if not w.get("changed"):
        lo, hi = w.get("energy_kev") or [None, None]
        return f"Energy window kept: {lo:g}-{hi:g} keV (the base model's)." if lo is not None else ""
    (blo, bhi), (lo, hi) = w["base_energy_kev"], w["energy_kev"]
    parts = ", ".join(r["parameter"] for r in w["reinitialised"])
    e0, e1 = a["relative_error"]["energy_kev"]
    return (f"Energy window changed from {blo:g}-{bhi:g} keV ({w['base_patches']} patches) to {lo:g}-{hi:g} keV "
            f"({w['patches']} patches): {w['reason']}. Re-initialised: {parts} (fixed position embeddings); "
            f"every other weight carried over from the base. Input transform: {w['transform']}. "
            "Before and after are each in its own window's input space, so compare the relative error in counts "
            f"({e0:g}-{e1:g} keV).")


_model_cache: dict[str, tuple] = {}


def reconstruct_one(model_path, counts, grid, mask_ratio, seed, *, progress=no_progress, token=None) -> dict:
    """Masked reconstruction of one spectrum by a masked autoencoder (xrfcore.reconstruct)."""
    from xrfcore import reconstruct as xr
    from xrfcore.model import checkpoint
    key = str(model_path)
    if key not in _model_cache:
        _model_cache.clear()
        _model_cache[key] = checkpoint.load(model_path)
    model, card = _model_cache[key]
    return xr.reconstruct(model, card, counts, mask_ratio=mask_ratio, seed=seed, grid=grid)
