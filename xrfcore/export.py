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


def labels_hash(card: dict) -> str | None:
    """sha256 of the lab samples a model was fine-tuned on: the lab file's hash, else the matched
    table's (a model fine-tuned on the project's stored lab samples has only that)."""
    labels = card.get("labels") or {}
    return labels.get("sha256") or labels.get("table_sha256")


def card_seeds(card: dict) -> dict | None:
    """Every seed a fine-tuned model was made with: the fine-tune seed, the out-of-distribution
    masks' seeds and its base model's training seeds (when the base card is found)."""
    seeds = dict(card.get("seeds") or {})
    cfg = card.get("finetune_config") or {}
    if "seed" not in seeds and cfg.get("seed") is not None:
        seeds["seed"] = cfg["seed"]
    if cfg.get("ood_seeds") is not None:
        seeds["ood_mask_seeds"] = list(cfg["ood_seeds"])
    base = card.get("base_model") or {}
    if base.get("path"):
        stem = str(base["path"])
        for ext in (".json", ".safetensors"):
            stem = stem.removesuffix(ext)
        try:
            with open(stem + ".json", encoding="utf-8") as f:
                bseeds = json.load(f).get("seeds")
            if bseeds:
                seeds["base_model"] = bseeds
        except (OSError, ValueError):
            pass
    return seeds or None


def complete_provenance(meta: dict) -> dict:
    """Fill in what predictions stored by an older xrfcore lack (labels_sha256 None, no seeds) from
    the model card at ``meta["model_path"]`` when it is still there; in place, also returned."""
    if meta.get("labels_sha256") and meta.get("seeds"):
        return meta
    path = meta.get("model_path")
    card = None
    if path:
        from pathlib import Path
        for cand in (Path(path) / "model.json", Path(str(path) + ".json"), Path(path).with_suffix(".json")):
            try:
                card = json.loads(cand.read_text(encoding="utf-8"))
                break
            except (OSError, ValueError):
                continue
    if card is not None:
        if not meta.get("labels_sha256"):
            meta["labels_sha256"] = labels_hash(card)
        if not meta.get("seeds"):
            meta["seeds"] = card_seeds(card)
    return meta


def column_units(columns, units: dict) -> dict:
    """{column: unit} of a prediction table: depths and positions in mm, each target's value and
    interval bounds in its unit, the OOD score unitless (a ratio to its limit)."""
    out = {}
    for c in columns:
        base = c[:-3] if c.endswith(("_lo", "_hi")) else c
        if c in ("depth_mm", "position_mm") or c.endswith("_mm"):
            out[c] = "mm"
        elif base in units:
            out[c] = units[base] or ""
        elif c == "ood_score":
            out[c] = "ratio to its limit (flag > 1)"
    return out


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
    prov = dict(provenance)
    prov["column_units"] = {names.get(c, c): u for c, u in column_units(cols, units).items()}
    write_csv_atomic(path, df[cols].rename(columns=names), provenance_lines(prov))


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
