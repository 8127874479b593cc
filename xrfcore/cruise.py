"""Whole cruises: many cores in one project, handled at once.

- :func:`cores_of_report` / :func:`cores_line`: the cores one import found (an import of a parent
  folder holding many core folders is one job with one report; this names each core in it).
- :func:`predict_all`: one loaded model, every core (or the chosen ones), one job; the tables are
  stored in one transaction at the end, so a cancelled or failed run leaves the project as it was.
  Cores whose runs the model refuses (another tube, kV or energy window) are skipped with the reason.
- :func:`export_all`: the stored predictions of one model for every core, as one CSV per core into
  a folder or one long CSV (a ``core`` column; the provenance header names every core and what
  differs between them).
- :func:`common_models`: the model ids with stored predictions, and the cores that have them.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from xrfcore.jobs import CancelToken, no_progress

# provenance keys that differ from core to core: the long CSV lists them per core
PER_CORE_KEYS = ("run", "interval_scheme", "interval_scheme_reason", "interval_calibration",
                 "energy_calibration", "run_choice", "counts_outside_window", "instrument_check",
                 "spectra_sha256", "predicted", "stale")


# ---------------------------------------------------------------------------- import
def cores_of_report(report) -> dict[str, dict]:
    """{core: {"files", "ok", "warning", "rejected", "skipped", "added"}} of one ImportReport."""
    out: dict[str, dict] = {}
    for f in report.files:
        if not f.core:
            continue
        row = out.setdefault(f.core, {"files": 0, "ok": 0, "warning": 0, "rejected": 0, "skipped": 0,
                                      "added": 0})
        row["files"] += 1
        if f.status in row:
            row[f.status] += 1
    for key, w in (report.written or {}).items():
        core = key.split("/", 1)[0]
        out.setdefault(core, {"files": 0, "ok": 0, "warning": 0, "rejected": 0, "skipped": 0, "added": 0})
        out[core]["added"] += int(w.get("added", 0))
    return dict(sorted(out.items()))


def cores_line(report) -> str:
    """'Found 3 cores in cruise: SIM01-1 (50 files, +50 spectra), ...' for the CLI and the app."""
    cores = cores_of_report(report)
    where = Path(str(report.folder)).name or str(report.folder)
    if not cores:
        return f"Found no core in {where}."
    parts = [f"{c} ({r['files']} files, +{r['added']} spectra"
             + (f", {r['rejected']} rejected" if r["rejected"] else "") + ")" for c, r in cores.items()]
    return f"Found {len(cores)} core{'s' if len(cores) != 1 else ''} in {where}: " + ", ".join(parts)


def core_folders(parent) -> list[Path]:
    """The sub-folders of a cruise folder that hold spectra (.spe, or an Itrax result table):
    what the app shows before a cruise import (the import itself finds the cores by their files)."""
    from xrfcore.io.avaatech import parse_run_folder
    parent = Path(parent)
    out = []
    for d in sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if parse_run_folder(d.name) is not None:   # 'Run 1 at 10kV': a run of one core, not a core
            continue
        try:
            if any(f.suffix.lower() == ".spe" or f.name.lower() == "result.txt" for f in d.rglob("*")):
                out.append(d)
        except OSError:
            continue
    return out


# ---------------------------------------------------------------------------- predict
def predict_all(project_path, model_path, cores=None, run=None, *, device: str = "auto",
                allow_instrument_mismatch: bool = False, progress=no_progress,
                token: CancelToken | None = None) -> dict:
    """Predict every core (or ``cores``) with one model and store all tables in one transaction.

    Returns {"model_id", "predicted": {core: n depths}, "ood": {core: n flagged},
    "skipped": {core: reason}}. Cancelling (or an error) before the end stores nothing.
    """
    from xrfcore import instrument, store as st
    from xrfcore.predict import predict_core
    from xrfcore.train.finetune import Predictor

    token = token or CancelToken()
    with st.Project.open(project_path) as p:
        have = p.cores()
    cores = list(cores) if cores else have
    missing = [c for c in cores if c not in have]
    if missing:
        raise ValueError(f"{project_path}: no core {', '.join(map(repr, missing))} (cores: {', '.join(have)})")
    if not cores:
        raise ValueError(f"{project_path} has no cores yet: nothing to predict")
    progress(0, len(cores) * 1000 + 1, "loading the model")
    pr = Predictor(model_path, device=device)
    tables: dict[str, pd.DataFrame] = {}
    skipped: dict[str, str] = {}
    for i, core in enumerate(cores):
        token.raise_if_cancelled()

        def prog(d, t, m="", i=i, core=core):
            progress(i * 1000 + int(1000 * d / max(t, 1)), len(cores) * 1000 + 1,
                     f"{core} ({i + 1} of {len(cores)}): {m}")
        try:
            tables[core] = predict_core(project_path, core, model_path, run, progress=prog, token=token,
                                        store=False, predictor=pr,
                                        allow_instrument_mismatch=allow_instrument_mismatch)
        except (instrument.InstrumentMismatch, instrument.NoMatchingRun) as exc:
            skipped[core] = " ".join(str(exc).split())
    token.raise_if_cancelled()
    if tables:
        progress(len(cores) * 1000, len(cores) * 1000 + 1, f"storing {len(tables)} cores")
        with st.transaction(project_path) as w:
            for core, df in tables.items():
                prov = {k: v for k, v in df.attrs["provenance"].items() if k != "project_sha256"}
                w.write_predictions(core, pr.model_id, df, prov)
    progress(len(cores) * 1000 + 1, len(cores) * 1000 + 1, "done")
    return {"model_id": pr.model_id, "predicted": {c: len(df) for c, df in tables.items()},
            "ood": {c: int(df["ood_flag"].sum()) for c, df in tables.items()}, "skipped": skipped}


def predict_summary(res: dict) -> str:
    """One paragraph on a predict_all result."""
    n = len(res["predicted"])
    text = (f"{n} core{'s' if n != 1 else ''} predicted by {res['model_id']}: "
            + ", ".join(f"{c} ({d} depths, {res['ood'][c]} out of distribution)" for c, d in res["predicted"].items()))
    if res["skipped"]:
        text += ".  Not predicted: " + "; ".join(f"{c}: {r}" for c, r in res["skipped"].items())
    return text


# ---------------------------------------------------------------------------- export
def common_models(project_path) -> dict[str, list[str]]:
    """{model id: [cores with its stored predictions]}, the model covering most cores first."""
    from xrfcore import store as st
    by: dict[str, list[str]] = {}
    with st.Project.open(project_path) as p:
        for core in p.cores():
            for mid in p.predictions(core):
                by.setdefault(mid, []).append(core)
    return dict(sorted(by.items(), key=lambda kv: -len(kv[1])))


def _read_all(project_path, model_id: str, cores=None):
    from xrfcore import predict, store as st
    from xrfcore.export import complete_provenance, file_sha256
    out = {}
    with st.Project.open(project_path) as p:
        for core in (list(cores) if cores else p.cores()):
            have = p.predictions(core)
            match = [m for m in have if m in (model_id, st.safe_name(model_id))]
            if match:
                df, meta = p.read_predictions(core, match[0])
                out[core] = (df, dict(meta), match[0])
    if not out:
        raise ValueError(f"{project_path}: no core has predictions of model {model_id!r}; predict first")
    sha = file_sha256(project_path)
    for core, (df, meta, mid) in out.items():
        reasons = predict.stale_reasons(project_path, core, mid, meta, df)
        if reasons:
            meta["stale"] = "; ".join(reasons)
        meta["project_sha256"] = sha
        meta["project"] = Path(project_path).name
        complete_provenance(meta)
        out[core] = (df, meta)
    return out


def export_all(project_path, model_id: str, out, *, long: bool = False, cores=None, force: bool = False,
               progress=no_progress, token: CancelToken | None = None) -> dict:
    """Write the stored predictions of ``model_id`` for every core that has them.

    long=False: ``out`` is a folder, one ``<core>_<model>.csv`` each; long=True: ``out`` is one CSV
    with every core's rows (``core`` column first) and a header naming every core. Existing files
    are replaced only with ``force``. Returns {"files": [...], "cores": [...], "rows": n,
    "stale": {core: reason}, "without": [cores lacking these predictions]}.
    """
    from xrfcore import export, store as st
    from xrfcore.outputs import check_output

    token = token or CancelToken()
    tables = _read_all(project_path, model_id, cores)
    with st.Project.open(project_path) as p:
        every = list(cores) if cores else p.cores()
    without = [c for c in every if c not in tables]
    stale = {c: m["stale"] for c, (_, m) in tables.items() if m.get("stale")}
    files = []
    if long:
        check_output(out, inputs=(project_path,), force=force)
        df = pd.concat([d for d, _ in tables.values()], ignore_index=True)
        export.write_predictions_csv(out, df, long_provenance(tables, without))
        files.append(str(out))
    else:
        folder = Path(out)
        check_output(folder, inputs=(project_path,), force=True, folder=True, what="output folder")
        folder.mkdir(parents=True, exist_ok=True)
        paths = {c: check_output(folder / f"{c}_{st.safe_name(model_id)}.csv", inputs=(project_path,), force=force)
                 for c in tables}   # every file checked before the first is written
        for i, (core, (df, meta)) in enumerate(tables.items()):
            token.raise_if_cancelled()
            progress(i, len(tables), f"writing {core}")
            export.write_predictions_csv(paths[core], df, meta)
            files.append(str(paths[core]))
    progress(len(tables), len(tables), "written")
    return {"files": files, "cores": list(tables), "rows": int(sum(len(d) for d, _ in tables.values())),
            "stale": stale, "without": without}


def long_provenance(tables: dict, without=()) -> dict:
    """One header for several cores' tables: what they share once, what differs per core (run,
    interval scheme, calibration, staleness...) as {core: value}, and every core named."""
    metas = {c: m for c, (_, m) in tables.items()}
    first = next(iter(metas.values()))
    prov = {k: v for k, v in first.items() if k not in PER_CORE_KEYS and k != "core"}
    prov["cores"] = list(metas)
    prov["n_cores"] = len(metas)
    if without:
        prov["cores_without_these_predictions"] = list(without)
    for k in PER_CORE_KEYS:
        vals = {c: m.get(k) for c, m in metas.items() if m.get(k) is not None}
        if vals:
            prov[f"{k}_by_core"] = vals
    if any(m.get("stale") for m in metas.values()):
        prov["stale"] = "; ".join(f"{c}: {m['stale']}" for c, m in metas.items() if m.get("stale"))
    prov["simulated"] = any(bool(m.get("simulated")) for m in metas.values())
    ids = Counter(str(m.get("model_id")) for m in metas.values())
    if len(ids) > 1:   # one model id asked for; a renamed copy would show here
        prov["model_ids_by_core"] = {c: m.get("model_id") for c, m in metas.items()}
    return prov
