"""Lab targets: any numeric lab column as a fine-tuning target, with its unit and model space.

CaCO3 and TOC (wt%) are the default targets; any other numeric column of a lab table (Fe, Ti, Zr,
biogenic silica, grain size, water content...) can be chosen by name. Its name and unit come from the
header ("Fe (mg/kg)", "Fe [ppm]", "Fe_ppm", "BSi wt%") or are given (``--units Fe=mg/kg``).

Model space (decided per fine-tuning run, recorded in the card):

- chosen by the operator: ``log_targets`` / ``linear_targets`` (CLI ``--log-targets`` /
  ``--linear-targets``);
- CaCO3 and TOC keep their established spaces (TOC ln(wt%): dilution acts multiplicatively, its errors
  grow with its level; CaCO3 linear: it spans 0-90 wt%), so existing models and results do not change;
- any other target, from its training labels (:func:`log_rule`): ln when every value is > 0 and the
  values are clearly right-skewed: sample skewness > 1, or skewness > 0.5 with ln making them more
  symmetric (|skew(ln y)| < skew(y)). Fewer than 5 labels: linear.

Predictions are clamped to the target's range: [0, 100] for wt% / % targets (CaCO3, TOC), [0, inf)
for targets whose labels are all >= 0, unclamped otherwise.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

DEFAULT_TARGETS = ("CaCO3", "TOC")
DEFAULT_UNIT = "wt%"
ESTABLISHED_SPACE = {"CaCO3": "linear", "TOC": "log"}
SKEW_STRONG = 1.0      # skewness above this: log (values all > 0)
SKEW_MIN = 0.5         # skewness above this and ln more symmetric: log
MIN_RULE_N = 5         # fewer labels: linear (skewness of 3 numbers says nothing)
PERCENT_UNITS = ("wt%", "%", "fraction")
# column names the normalised sample / prediction tables use themselves: not target names
RESERVED = {"core", "depth_top_mm", "depth_bottom_mm", "depth_mm", "sample", "source_row", "run", "method",
            "n_spectra", "source_file", "section", "position_mm", "ood_score", "ood_flag", "ood_reason",
            "model_id"}
# unit words written after the name with a separator: "Fe_ppm", "Fe ppm", "BSi wt%"
_SUFFIX_UNITS = {"ppm": "ppm", "ppb": "ppb", "mg/kg": "mg/kg", "mg_kg": "mg/kg", "mgkg": "mg/kg",
                 "ug/g": "ug/g", "ug_g": "ug/g", "µg/g": "µg/g", "g/kg": "g/kg", "g_kg": "g/kg",
                 "wt%": "wt%", "wt.%": "wt%", "wtpct": "wt%", "wt_pct": "wt%", "pct": "%", "percent": "%",
                 "%": "%", "um": "um", "µm": "µm", "micron": "um", "cps": "cps", "counts": "counts"}


def split_header(column: str) -> tuple[str, str | None]:
    """(target name, unit or None) of a lab column header: 'Fe (mg/kg)' -> ('Fe', 'mg/kg'),
    'Fe [ppm]' -> ('Fe', 'ppm'), 'Fe_ppm' -> ('Fe', 'ppm'), 'BSi wt%' -> ('BSi', 'wt%')."""
    s = str(column).strip()
    m = re.match(r"^(.*?\S)\s*[\(\[]\s*([^\)\]]*?)\s*[\)\]]\s*$", s)
    if m and m.group(2):
        return m.group(1).strip(), m.group(2)
    m = re.match(r"^(.*?\S)[\s_]+(\S+)$", s)
    if m and m.group(2).lower() in _SUFFIX_UNITS:
        return m.group(1).strip(" _"), _SUFFIX_UNITS[m.group(2).lower()]
    if len(s) > 1 and s.endswith("%"):
        return s[:-1].rstrip(" _"), "%"
    return s, None


def is_percent(unit) -> bool:
    return str(unit or "").strip().lower() in ("wt%", "%", "wt.%")


def numeric_share(values: pd.Series) -> float:
    """Share of the non-empty cells of a column that are numbers."""
    s = values.dropna()
    s = s[s.astype(str).str.strip() != ""]
    if not len(s):
        return 0.0
    return float(pd.to_numeric(s, errors="coerce").notna().mean())


def numeric_columns(df: pd.DataFrame, exclude=()) -> list[str]:
    """Columns of a lab table whose cells are mostly numbers (the possible targets)."""
    ex = set(exclude)
    return [c for c in df.columns if c not in ex and numeric_share(df[c]) >= 0.5]


def parse_list(spec) -> tuple[str, ...] | None:
    """'Fe,CaCO3' / ['Fe', 'CaCO3'] -> ('Fe', 'CaCO3'); None / '' -> None."""
    if spec is None:
        return None
    items = str(spec).split(",") if isinstance(spec, str) else list(spec)
    out = tuple(str(t).strip() for t in items if str(t).strip())
    return out or None


def resolve(requested, df: pd.DataFrame, cols: dict, path) -> dict[str, str]:
    """{target name: column} for the requested targets (None: CaCO3 and/or TOC, whichever the
    table has). A target is a default role (CaCO3, TOC), a column header ('Fe (mg/kg)') or a
    header's name without its unit ('Fe'). Raises ValueError naming the file and column."""
    role_cols = {c: r for r, c in cols.items() if r not in DEFAULT_TARGETS}
    candidates = numeric_columns(df, exclude=role_cols)
    if requested is None:
        found = {t: cols[t] for t in DEFAULT_TARGETS if t in cols}
        if not found:
            raise ValueError(f"{path}: no CaCO3 or TOC column found (columns: {', '.join(df.columns)}); "
                             "choose the target column(s) (--targets"
                             + (f", e.g. --targets {candidates[0].split(' (')[0]!r}" if candidates else "")
                             + (f"; numeric columns: {', '.join(candidates)})" if candidates else ")"))
        return found
    out: dict[str, str] = {}
    for req in requested:
        req = str(req).strip()
        default = next((t for t in DEFAULT_TARGETS if t.lower() == req.lower()), None)
        if default and default in cols:
            name, col = default, cols[default]
        elif req in df.columns:
            col = req
            role = next((r for r, c in cols.items() if c == col), None)
            name = role if role in DEFAULT_TARGETS else split_header(col)[0]
        else:
            hits = [c for c in df.columns if split_header(c)[0].lower() == req.lower()]
            if len(hits) != 1:
                why = ("several columns are named so: " + ", ".join(map(repr, hits)) + "; give the whole header"
                       if hits else "no such column")
                raise ValueError(f"{path}: unknown target {req!r}: {why} (columns: {', '.join(df.columns)}"
                                 + (f"; numeric: {', '.join(candidates)}" if candidates else "") + ")")
            col = hits[0]
            role = next((r for r, c in cols.items() if c == col), None)
            name = role if role in DEFAULT_TARGETS else split_header(col)[0]
        if col in role_cols:
            raise ValueError(f"{path}: column {col!r} is the {role_cols[col]} column, not a lab value; "
                             "it cannot be a target")
        if name in RESERVED or name.endswith(("_lo", "_hi")):
            raise ValueError(f"{path}: target name {name!r} (column {col!r}) is reserved; rename the column")
        share = numeric_share(df[col])
        if share < 0.5:
            bad = list(dict.fromkeys(str(v) for v in df[col].dropna().astype(str).head(50)
                                     if str(v).strip() and pd.isna(pd.to_numeric(v, errors="coerce"))))[:3]
            raise ValueError(f"{path}: column {col!r} is not numeric ({100 * share:.0f} % of its values are "
                             f"numbers; e.g. {', '.join(map(repr, bad))}); it cannot be a target")
        if name in out:
            raise ValueError(f"{path}: target {name!r} given twice (columns {out[name]!r} and {col!r})")
        out[name] = col
    return out


def parse_units(spec, targets=DEFAULT_TARGETS) -> tuple[dict[str, str], str | None]:
    """Per-target units from 'CaCO3=wt%,Fe=mg/kg' or {target: unit}: ({target: unit}, None);
    one unit for every target ('wt%', 'mg/kg'): ({}, that unit)."""
    if spec is None or spec == {}:
        return {}, None
    if isinstance(spec, dict):
        items = list(spec.items())
    elif "=" in str(spec):
        items = [tuple(x.split("=", 1)) for x in str(spec).split(",") if x.strip()]
    else:
        return {}, str(spec).strip()
    out = {}
    for t, u in items:
        t, u = str(t).strip(), str(u).strip()
        if t not in targets:
            raise ValueError(f"unknown target {t!r} in the units (targets: {', '.join(targets)})")
        if not u:
            raise ValueError(f"no unit given for {t} in the units")
        out[t] = u
    return out, None


def usable(wanted, y: pd.DataFrame) -> list[str]:
    """The targets to fit: a default one (CaCO3, TOC) without 2 labels is skipped as before; any
    other target must be in ``y``, numeric, with at least 2 labels (else a ValueError naming it)."""
    out = []
    for t in wanted:
        if t not in y.columns:
            if t in DEFAULT_TARGETS:
                continue
            have = [c for c in y.columns if c not in RESERVED]
            raise ValueError(f"target {t!r} is not in the lab samples (their values: {', '.join(have) or 'none'}); "
                             "load a lab table with that column as a target")
        vals = pd.to_numeric(y[t], errors="coerce")
        if vals.notna().sum() < y[t].notna().sum():
            raise ValueError(f"target {t!r}: the lab column is not numeric")
        if vals.notna().sum() < 2:
            if t in DEFAULT_TARGETS:
                continue
            raise ValueError(f"target {t!r}: only {int(vals.notna().sum())} labelled samples; need at least 2")
        out.append(t)
    if not out:
        raise ValueError(f"no target with at least 2 labels among {', '.join(wanted)}")
    return out


def skewness(v) -> float:
    """Sample skewness (Fisher-Pearson, biased); NaN with fewer than 3 values or no spread."""
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if len(v) < 3:
        return float("nan")
    sd = v.std()
    return float(((v - v.mean()) ** 3).mean() / sd ** 3) if sd > 0 else float("nan")


def log_rule(values) -> tuple[bool, str, dict]:
    """(log?, reason, stats) from a target's training labels (see the module text)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    stats = {"n": int(len(v))}
    if len(v) < MIN_RULE_N:
        return False, f"linear: only {len(v)} labels (the rule needs {MIN_RULE_N})", stats
    sk = skewness(v)
    stats.update(min=float(v.min()), max=float(v.max()), skewness=None if math.isnan(sk) else round(sk, 3))
    if v.min() <= 0:
        return False, f"linear: not every label is above 0 (min {v.min():g})", stats
    sk_log = skewness(np.log(v))
    stats["skewness_log"] = None if math.isnan(sk_log) else round(sk_log, 3)
    if math.isnan(sk):
        return False, "linear: no spread in the labels", stats
    if sk > SKEW_STRONG:
        return True, f"log: labels all > 0 and right-skewed (skewness {sk:.2f} > {SKEW_STRONG:g})", stats
    if sk > SKEW_MIN and abs(sk_log) < sk:
        return True, (f"log: labels all > 0, right-skewed (skewness {sk:.2f} > {SKEW_MIN:g}) and more "
                      f"symmetric in ln (skewness {sk_log:.2f})"), stats
    return False, f"linear: labels not clearly right-skewed (skewness {sk:.2f})", stats


def choose_space(target: str, values, *, forced_log=(), forced_linear=(), floor: float = 0.01,
                 unit: str | None = None) -> dict:
    """The model space of one target: ``target_stats`` entries space, floor (log), clamp, reason."""
    v = np.asarray(values, float)
    fin = v[np.isfinite(v)]
    _, reason, stats = log_rule(fin)
    if target in forced_linear:
        log, reason = False, "linear: chosen by the operator (linear_targets)"
    elif target in forced_log:
        log, reason = True, "log: chosen by the operator (log_targets)"
    elif target in ESTABLISHED_SPACE:
        log = ESTABLISHED_SPACE[target] == "log"
        reason = (f"{ESTABLISHED_SPACE[target]}: the established space of {target} "
                  + ("(its errors grow with its level)" if log else "(it spans 0-90 wt%)"))
    else:
        log = log_rule(fin)[0]
    if target in DEFAULT_TARGETS or is_percent(unit):
        clamp = [0.0, 100.0]
    elif len(fin) and fin.min() >= 0:
        clamp = [0.0, None]
    else:
        clamp = [None, None]
    out = {"space": "log" if log else "linear", "clamp": clamp, "space_reason": reason, "label_stats": stats}
    if log:
        pos = fin[fin > 0]
        # wt% targets keep the configured floor; others: half their smallest positive label
        out["floor"] = float(floor) if target in DEFAULT_TARGETS or is_percent(unit) or not len(pos) \
            else float(pos.min() / 2)
    return out


def _clamp(st: dict):
    lo, hi = st.get("clamp", [0.0, 100.0])
    return (-np.inf if lo is None else float(lo)), (np.inf if hi is None else float(hi))


def to_space(y, st: dict) -> np.ndarray:
    """Lab value -> the space a target is modelled in (``target_stats[t]``: space "log" or linear)."""
    y = np.asarray(y, float)
    return np.log(np.maximum(y, st["floor"])) if st.get("space") == "log" else y


def from_space(v, st: dict) -> np.ndarray:
    """Model space -> lab value, clamped to the target's range (cards without one: [0, 100])."""
    v = np.asarray(v, float)
    lo, hi = _clamp(st)
    if st.get("space") == "log":
        v = np.exp(np.minimum(v, math.log(hi) if math.isfinite(hi) else 700.0))
    return np.clip(v, lo, hi)


def units_of(card: dict) -> dict[str, str]:
    """Unit of each target of a fine-tuned card (cards made before units were stored: wt%)."""
    units = card.get("target_units") or {}
    return {t: units.get(t, DEFAULT_UNIT if t in DEFAULT_TARGETS else "") for t in card.get("targets") or []}


def stored(meta: dict, df: pd.DataFrame | None) -> dict[str, str]:
    """{target: unit} of a project's stored lab samples (projects from before any-target: CaCO3
    and/or TOC, whichever has values)."""
    if meta.get("targets"):
        units = meta.get("target_units") or {}
        return {t: units.get(t, DEFAULT_UNIT if t in DEFAULT_TARGETS else "") for t in meta["targets"]}
    if df is None or not len(df):
        return {}
    return {t: DEFAULT_UNIT for t in DEFAULT_TARGETS if t in df.columns and df[t].notna().any()}


def with_unit(name: str, unit: str | None) -> str:
    """'Fe (mg/kg)': a column or axis title with its unit ('Fe' when none is known)."""
    return f"{name} ({unit})" if unit else name


SKILL_MIN_R2 = 0.5   # below this cross-validated R2 a target's predictions are said to be weak


def skill_warnings(metrics: dict, units: dict | None = None) -> list[str]:
    """Plain warnings for targets the validation says the model cannot predict well: R2 < 0 (worse
    than the mean of the labels) or < SKILL_MIN_R2. Written into the card, printed by the CLI, shown
    by the app and carried into every export, so a weak target is never silently used."""
    out = []
    for t, m in (metrics or {}).items():
        r2 = (m or {}).get("r2")
        if r2 is None:
            continue
        if r2 < 0:
            out.append(f"{t}: validation R2 {r2:.2f} (n={m.get('n')}): no skill, worse than the mean of the "
                       "labels; do not use these values (more lab samples, from more cores, are needed)")
        elif r2 < SKILL_MIN_R2:
            out.append(f"{t}: validation R2 {r2:.2f} (n={m.get('n')}): weak; use with care")
    return out
