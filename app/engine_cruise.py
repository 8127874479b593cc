"""Thin wiring for whole cruises (no Qt, no science): job functions for importing a parent folder of
core folders, predicting every core with one model, exporting every core, and the series the
two-core comparison draws. Every number comes from xrfcore (xrfcore.cruise, xrfcore.traces)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xrfcore.jobs import CancelToken, no_progress

RATIOS = [("Ca", "Fe"), ("Ca", "Ti"), ("Fe", "Ti"), ("Si", "Al"), ("K", "Ti"), ("Br", "Cl")]


def import_cruise(folder, project, *, replace: bool = False, section_unit: str = "auto",
                  progress=no_progress, token: CancelToken | None = None):
    """Every core folder under ``folder`` in one import (one report, every core named in it)."""
    from xrfcore import importer
    fn = importer.import_into_new_project if replace else importer.import_folder
    return fn(folder, project, section_unit=section_unit, progress=progress, token=token)


def core_folders(folder) -> list[str]:
    """Names of the sub-folders holding spectra (what a cruise import will find)."""
    from xrfcore import cruise
    try:
        return [p.name for p in cruise.core_folders(folder)]
    except OSError:
        return []


def predict_all_cores(project, model_path, *, device="auto", allow_instrument_mismatch=False,
                      progress=no_progress, token=None) -> dict:
    """xrfcore.cruise.predict_all: one model, every core, one transaction; with a summary line."""
    from xrfcore import cruise
    res = cruise.predict_all(project, model_path, device=device, progress=progress, token=token,
                             allow_instrument_mismatch=allow_instrument_mismatch)
    res["summary"] = cruise.predict_summary(res)
    return res


def models_with_predictions(project) -> dict[str, list[str]]:
    """{model id: cores it predicted}, the model covering most cores first."""
    from xrfcore import cruise
    return cruise.common_models(project)


def export_all_cores(project, model_id, out, *, long=False, progress=no_progress, token=None) -> dict:
    """xrfcore.cruise.export_all (files already confirmed by the user are replaced)."""
    from xrfcore import cruise
    return cruise.export_all(project, model_id, out, long=long, force=True, progress=progress, token=token)


@dataclass
class Series:
    """One core's curve for the comparison: depth (mm), values, optional interval, what it is."""

    core: str
    depth: np.ndarray
    values: np.ndarray
    lo: np.ndarray | None
    hi: np.ndarray | None
    label: str
    simulated: bool = False


def compare_choices(project) -> list[tuple[str, tuple]]:
    """What the comparison can show: every stored prediction target of every model, then the
    element log-ratios. [(label, key)] with key ("prediction", model id, target) or ("ratio", a, b)."""
    from xrfcore import store
    out = []
    with store.Project.open(project) as p:
        for mid in models_with_predictions(project):
            core = next(c for c in p.cores() if mid in p.predictions(c))
            _df, meta = p.read_predictions(core, mid)
            units = meta.get("units") or {}
            for t in meta.get("targets") or ["CaCO3", "TOC"]:
                u = units.get(t, "")
                out.append((f"{t}{f' ({u})' if u else ''} predicted by {mid}", ("prediction", mid, t)))
    out += [(f"ln({a}/{b}) counts", ("ratio", a, b)) for a, b in RATIOS]
    return out


def compare_series(project, core: str, key: tuple) -> Series:
    """The curve of ``core`` for a compare_choices key, sorted by depth. ValueError when the core
    has no such prediction."""
    from xrfcore import labels, store
    if key[0] == "prediction":
        _, mid, t = key
        with store.Project.open(project) as p:
            if mid not in p.predictions(core):
                raise ValueError(f"{core} has no predictions of {mid}")
            df, meta = p.read_predictions(core, mid)
        df = df.sort_values("depth_mm", kind="stable")
        lo = df[f"{t}_lo"].to_numpy(float) if f"{t}_lo" in df else None
        hi = df[f"{t}_hi"].to_numpy(float) if f"{t}_hi" in df else None
        u = (meta.get("units") or {}).get(t, "")
        return Series(core, df["depth_mm"].to_numpy(float), df[t].to_numpy(float), lo, hi,
                      f"{t}{f' ({u})' if u else ''}", bool(meta.get("simulated")))
    from xrfcore import traces
    _, a, b = key
    with store.Project.open(project) as p:
        run = labels.choose_run(p.runs(core))
        rd = p.read_run(core, run, active_only=True)
    depth = rd.meta["depth_mm"].to_numpy(float)
    order = np.argsort(depth, kind="stable")
    vals = np.asarray(traces.log_ratio(rd.counts, rd.grids, a, b), float)
    scanner = " ".join(map(str, rd.meta["scanner"].unique())) if "scanner" in rd.meta else ""
    return Series(core, depth[order], vals[order], None, None, f"ln({a}/{b})",
                  "simulated" in scanner.lower())


def default_export_name(project, model_id: str, long: bool) -> Path:
    folder = Path(project).parent
    stem = Path(project).stem
    return folder / (f"{stem}_{model_id}_all_cores.csv" if long else f"{stem}_{model_id}_per_core")
