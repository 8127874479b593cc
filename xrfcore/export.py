"""CSV writers with a commented provenance header.

The header is '#'-prefixed ``key: value`` lines (pandas: ``read_csv(path, comment="#")`` reads the
table back). A file made from simulated data says so on its first line. Files are written to a
temporary name next to the target and moved into place, so a failure leaves no half-written file.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json

import pandas as pd

from xrfcore import __version__
from xrfcore.fileio import atomic_open

PREDICTION_COLUMNS = ["core", "depth_mm", "section", "position_mm", "CaCO3", "CaCO3_lo", "CaCO3_hi",
                      "TOC", "TOC_lo", "TOC_hi", "ood_score", "ood_flag", "ood_reason", "model_id"]


def file_sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _one_line(value) -> str:
    if isinstance(value, (dict, list)):
        value = json.dumps(value, sort_keys=True, default=str)
    return " ".join(str(value).splitlines())


def provenance_lines(provenance: dict) -> list[str]:
    prov = {"xrfcore_version": __version__,
            "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    prov.update(provenance)
    lines = []
    if prov.get("stale"):
        lines.append("# STALE PREDICTIONS: out of date, " + _one_line(prov["stale"]) + "; predict again "
                     "before using these values")
    if prov.get("simulated"):
        lines.append("# SIMULATED DATA: these values come from simulated spectra and/or a model trained "
                     "on simulated data, not from real measurements")
    for w in prov.get("skill_warnings") or []:
        lines.append("# WARNING " + _one_line(w))
    for k, v in prov.items():
        lines.append(f"# {k}: {_one_line(v)}")
    return lines


def write_csv_atomic(path, df: pd.DataFrame, header_lines: list[str], float_format="%.6g") -> None:
    with atomic_open(path, newline="") as f:
        for line in header_lines:
            f.write(line + "\n")
        df.to_csv(f, index=False, float_format=float_format, lineterminator="\n")


def write_predictions_csv(path, df: pd.DataFrame, provenance: dict) -> None:
    """Write a downcore prediction table with a '#' provenance header.

    provenance: model_id, weights_sha256, card summary, project + project_sha256, core, run,
    simulated, ... (anything JSON-able; the xrfcore version and export time are added).
    Targets other than CaCO3 / TOC (``provenance["targets"]``) get their unit in the column names:
    ``Fe (mg/kg)``, ``Fe_lo (mg/kg)``, ``Fe_hi (mg/kg)`` (CaCO3 / TOC stay as always; every unit is
    also in the ``# units:`` header line).
    """
    missing = [c for c in ("core", "depth_mm") if c not in df.columns]
    if missing:
        raise ValueError(f"prediction table lacks column(s) {', '.join(missing)}")
    from xrfcore.targets import DEFAULT_TARGETS, with_unit

    extra = [t for t in (provenance.get("targets") or []) if t not in DEFAULT_TARGETS and t in df.columns]
    sets = [c for t in extra for c in (t, f"{t}_lo", f"{t}_hi") if c in df.columns]
    lead = [c for c in PREDICTION_COLUMNS[:10] if c in df.columns] + sets
    tail = [c for c in PREDICTION_COLUMNS[10:] if c in df.columns]
    cols = lead + tail + [c for c in df.columns if c not in lead and c not in tail]
    units = provenance.get("units") or {}
    names = {c: with_unit(c, units.get(t)) for t in extra for c in (t, f"{t}_lo", f"{t}_hi")}
    write_csv_atomic(path, df[cols].rename(columns=names), provenance_lines(provenance))


def read_provenance(path) -> dict:
    """The ``key: value`` header lines of a CSV written here (values as strings)."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            key, sep, val = line[1:].strip().partition(": ")
            if sep:
                out[key] = val
    return out
