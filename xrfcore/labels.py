"""Lab bulk-sample tables -> spectra matched over each sample's depth interval.

A lab CSV holds one row per sample: core, a depth interval (top/bottom) or a mid-depth, and CaCO3
and/or TOC in wt% (the default targets) or any other numeric lab column chosen as a target (``targets=``:
Fe, BSi, grain size...; name and unit from the header, see xrfcore.targets). `read_lab_csv` maps the columns (given or auto-detected), converts depths to mm
and checks values; `match_spectra` / `match_project` average the active spectra inside each
sample's interval (nearest spectrum within a tolerance for mid-depths). Every row that is not used,
or is used but looks odd, is in the report with a reason: nothing is dropped silently.

Normalised sample table (what `read_lab_csv` returns and `store.write_labels` receives):
``core, depth_top_mm, depth_bottom_mm, depth_mm (mid), CaCO3, TOC, [other targets], sample, source_row``
(top/bottom are NaN for mid-depth samples; a target is NaN where the lab did not measure it; CaCO3 and
TOC are always there, NaN when not chosen; other targets' columns carry their name, e.g. ``Fe``).

Nothing silently wrong: each target's unit (wt% or fraction) comes from the caller, the column header
("CaCO3 (wt%)", "TOC [%]", "TOC (fraction)") or the file's comment lines ("in wt%"); unstated, values
that could be either (all CaCO3 <= 1, all TOC <= 0.1) raise :class:`LabUnitsError` instead of being
guessed. Depths beyond 10 km are refused; overlapping intervals are flagged. What needs a person's
explicit OK (TOC above 20 wt%; samples covering under a fifth of a core, e.g. cm read as mm) is in
``LabTable.confirm`` / ``MatchResult.confirm``; ``MatchResult.coverage`` shows each core's coverage.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xrfcore import energy
from xrfcore import targets as tg

TARGETS = ("CaCO3", "TOC")
ROLES = ("core", "top", "bottom", "mid", "CaCO3", "TOC", "sample")
UNIT_TO_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}
TOC_WARN = 20.0  # wt%: above this a marine sediment TOC is suspicious (peat, coal, typo)
TARGET_UNITS = ("wt%", "fraction")
# unstated units: values all at or below these could be wt% or fractions (a carbonate-poor core, or
# fractions read x100 too small): the unit must be stated
AMBIGUOUS_MAX = {"CaCO3": 1.0, "TOC": 0.1}
MAX_DEPTH_MM = 1e7      # 10 km: anything deeper is not a core depth (a typo, or a wrong unit)
MIN_COVERAGE = 0.2      # samples spanning less of a core than this need an explicit OK


class LabUnitsError(ValueError):
    """A target's unit (wt% or fraction) is not stated and its values could be either."""


def parse_units(spec) -> dict[str, str]:
    """Target units from 'wt%' / 'fraction' (every target), 'CaCO3=wt%,TOC=fraction' or a dict."""
    if spec is None or spec == {}:
        return {}
    if isinstance(spec, dict):
        items = list(spec.items())
    elif "=" in str(spec):
        items = [tuple(x.split("=", 1)) for x in str(spec).split(",") if x.strip()]
    else:
        items = [(t, spec) for t in TARGETS]
    out = {}
    for t, u in items:
        t, u = str(t).strip(), _norm_unit(u)
        if t not in TARGETS:
            raise ValueError(f"unknown target {t!r} in the units (known: {', '.join(TARGETS)})")
        if u is None:
            raise ValueError(f"unit of {t} must be wt% or fraction")
        out[t] = u
    return out


def _norm_unit(u) -> str | None:
    k = str(u).strip().lower().replace(" ", "")
    if k in ("wt%", "%", "wt", "pct", "percent", "wtpct", "wt.%"):
        return "wt%"
    if k in ("fraction", "frac", "g/g", "0-1"):
        return "fraction"
    return None


def target_unit_of(name: str) -> str | None:
    """The unit a target column's header states: 'wt%', 'fraction' or None."""
    k = str(name).lower()
    if re.search(r"frac|g\s*/\s*g|\(0\s*-\s*1\)|\[0\s*-\s*1\]", k):
        return "fraction"
    if "%" in k or {"pct", "percent", "wt", "wtpct"} & set(_tokens(name)):
        return "wt%"
    return None


def _comment_units(comments: list[str]) -> dict[str, str]:
    """Units stated in '#' lines, e.g. '# CaCO3 and TOC in wt% of dry sediment'."""
    out: dict[str, str] = {}
    for ln in comments:
        low = ln.lower()
        if re.search(r"\bwt\s*%|weight\s*percent", low):
            named = [t for t in TARGETS if t.lower() in low]
            for t in named or TARGETS:
                out.setdefault(t, "wt%")
    return out


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


def _tokens(name: str) -> list[str]:
    return [t for t in _key(name).split("_") if t]


def _role_of(name: str) -> str | None:
    key, toks = _key(name), _tokens(name)
    if not toks:
        return None
    if key.startswith("caco3") or key.startswith("caco_3") or toks[0] in ("carbonate", "carb"):
        return "CaCO3"
    if toks[0] in ("toc", "corg") or key.startswith("organic_carbon") or key.startswith("total_organic"):
        return "TOC"
    if toks[0] in ("core", "core_id", "corename", "coreid") or key in ("core_id", "core_name", "site_core"):
        return "core"
    if toks[0] in ("sample", "sample_id", "sampleid", "id", "label") and "depth" not in toks:
        return "sample"
    tops = {"top", "from", "upper", "start"}
    bottoms = {"bottom", "bot", "base", "to", "lower", "end"}
    has_depth = "depth" in toks or "dep" in toks
    if tops & set(toks):
        return "top"
    if bottoms & set(toks):
        return "bottom"
    if has_depth or {"mid", "middle", "midpoint"} & set(toks):
        return "mid"
    return None


def _unit_of(name: str) -> str | None:
    for tok in reversed(_tokens(name)):
        if tok in UNIT_TO_MM:
            return tok
    # names like "depthcm" / "topmm" written without a separator
    m = re.search(r"(mm|cm)$", _key(name))
    return m.group(1) if m else None


def detect_columns(columns) -> dict[str, str]:
    """Guess the column for each role from common names; returns {role: column}."""
    found: dict[str, str] = {}
    for col in columns:
        role = _role_of(col)
        if role and role not in found:
            found[role] = col
    if "mid" in found and "top" in found and "bottom" in found:
        found.pop("mid")  # an interval wins; a plain "depth" next to it is redundant
    return found


@dataclass
class LabTable:
    """A lab CSV read and normalised; `issues` lists rows excluded or flagged at reading."""

    samples: pd.DataFrame
    issues: pd.DataFrame
    path: str
    sha256: str
    mapping: dict
    depth_unit: str
    fraction: bool
    simulated: bool = False
    notes: list = field(default_factory=list)
    units: dict = field(default_factory=dict)         # target -> 'wt%' | 'fraction' (as read); others: unit
    unit_sources: dict = field(default_factory=dict)  # target -> where the unit came from
    confirm: list = field(default_factory=list)       # what needs an explicit OK before use
    targets: list = field(default_factory=list)       # the chosen targets, in order
    target_units: dict = field(default_factory=dict)  # target -> unit of the stored values (CaCO3/TOC: wt%)
    target_columns: dict = field(default_factory=dict)  # target -> its column in the file


def _issue_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["source_row", "core", "depth_mm", "status", "reason"])


def read_lab_csv(path, mapping: dict | None = None, depth_unit: str | None = None, *,
                 core: str | None = None, fraction: bool | None = None, units=None,
                 targets=None) -> LabTable:
    """Read a lab-samples CSV into the normalised sample table.

    mapping: {role: column} for roles core, top, bottom, mid, CaCO3, TOC, sample; missing roles are
    auto-detected. depth_unit: "mm" | "cm" | "m" (else detected from the depth column names).
    core: the core name when the file has no core column. units: the targets' unit, 'wt%' or
    'fraction' (or {target: unit}, or 'CaCO3=wt%,TOC=fraction'); None takes it from the column
    headers or comment lines, and refuses (LabUnitsError) values that could be either. fraction:
    the older switch (True = units 'fraction', False = 'wt%'). targets: the columns to use as
    targets ('Fe,CaCO3', or a list: a default target, a header or a header's name without its unit;
    None: CaCO3 and/or TOC); other targets keep their values and unit (header, or ``units`` such as
    'Fe=mg/kg'). Raises ValueError naming the file (and the column for a bad target).
    """
    from xrfcore.labtables import read_table
    path = Path(path)
    table = read_table(path)   # CSV (separator, decimal comma detected) or .xlsx / .xls / .ods
    sha, comments, df, src_rows = table.sha256, table.comments, table.frame, table.source_rows
    simulated = any("simulated" in ln.lower() for ln in comments)
    if df.empty:
        raise ValueError(f"{path}: no sample rows")

    cols = detect_columns(df.columns)
    for role, col in (mapping or {}).items():
        if role not in ROLES:
            raise ValueError(f"{path}: unknown column role {role!r} (known: {', '.join(ROLES)})")
        if col is None:
            cols.pop(role, None)
            continue
        if col not in df.columns:
            raise ValueError(f"{path}: mapped column {col!r} for {role} not found "
                             f"(columns: {', '.join(df.columns)})")
        cols[role] = col
    if "mid" in cols and "top" in cols and "bottom" in cols and not (mapping and "mid" in mapping):
        cols.pop("mid")
    has_interval = "top" in cols and "bottom" in cols
    if not has_interval and "mid" not in cols:
        if "top" in cols and "bottom" not in cols:
            raise ValueError(f"{path}: a top depth column ({cols['top']!r}) but no bottom depth column;"
                             " map one, or map a mid-depth column")
        raise ValueError(f"{path}: no depth column found (columns: {', '.join(df.columns)}); "
                         "expected depth_top/depth_bottom or a depth column")
    chosen = tg.resolve(tg.parse_list(targets), df, cols, path)  # target -> column
    extra = [t for t in chosen if t not in TARGETS]
    if "core" not in cols and not core:
        raise ValueError(f"{path}: no core column found; name the core for a single-core file")

    depth_cols = [cols[r] for r in ("top", "bottom", "mid") if r in cols]
    if depth_unit is None:
        dunits = {u for u in (_unit_of(c) for c in depth_cols) if u}
        if len(dunits) > 1:
            raise ValueError(f"{path}: depth columns disagree on their unit ({', '.join(sorted(dunits))})")
        if not dunits:
            raise ValueError(f"{path}: cannot tell the depth unit from {', '.join(map(repr, depth_cols))};"
                             " give it (mm, cm or m)")
        depth_unit = dunits.pop()
    if depth_unit not in UNIT_TO_MM:
        raise ValueError(f"{path}: depth unit must be mm, cm or m, not {depth_unit!r}")
    scale = UNIT_TO_MM[depth_unit]

    def num(col):
        return pd.to_numeric(df[col], errors="coerce") if col else pd.Series(np.nan, index=df.index)

    out = pd.DataFrame(index=df.index)
    out["core"] = (df[cols["core"]].fillna("").astype(str).str.strip() if "core" in cols
                   else pd.Series(core, index=df.index))
    if has_interval:
        out["depth_top_mm"] = num(cols["top"]) * scale
        out["depth_bottom_mm"] = num(cols["bottom"]) * scale
        out["depth_mm"] = (out["depth_top_mm"] + out["depth_bottom_mm"]) / 2
    else:
        out["depth_top_mm"] = np.nan
        out["depth_bottom_mm"] = np.nan
        out["depth_mm"] = num(cols["mid"]) * scale
    for t in TARGETS:
        out[t] = num(chosen.get(t))
    for t in extra:
        out[t] = num(chosen[t])
    out["sample"] = df[cols["sample"]].fillna("").astype(str) if "sample" in cols else ""
    out["source_row"] = src_rows

    notes: list[str] = []
    confirm: list[str] = []
    if units is None and fraction is not None:
        units = "fraction" if fraction else "wt%"
    per_target, blanket_unit = tg.parse_units(units, tuple(chosen)) if units is not None else ({}, None)
    if blanket_unit is not None and any(t in TARGETS for t in chosen):
        given = parse_units(blanket_unit)   # CaCO3 / TOC: wt% or fraction, else refused
    else:
        given = parse_units({t: u for t, u in per_target.items() if t in TARGETS})
    given = {t: u for t, u in given.items() if t in chosen}
    # one unit for every target ('wt%', 'fraction') fills in what the headers leave unstated; a
    # per-target unit ('TOC=fraction', {'TOC': ...}) overrides the header
    blanket = blanket_unit is not None
    from_comments = _comment_units(comments)
    unit_of, source_of = {}, {}
    for t in [t for t in TARGETS if t in chosen]:
        vals = out[t][np.isfinite(out[t]) & (out[t] >= 0)]
        if t in given and not (blanket and target_unit_of(chosen[t])):
            unit_of[t], source_of[t] = given[t], "given"
        elif target_unit_of(chosen[t]):
            unit_of[t], source_of[t] = target_unit_of(chosen[t]), f"column {chosen[t]!r}"
        elif t in from_comments:
            unit_of[t], source_of[t] = from_comments[t], "the file's comment lines"
        elif len(vals) and vals.max() <= AMBIGUOUS_MAX[t]:
            what = ("wt% of a carbonate-poor core" if t == "CaCO3" else "wt% of a very TOC-poor core")
            raise LabUnitsError(
                f"{path}: the {t} column {chosen[t]!r} does not state its unit and every value is at or "
                f"below {AMBIGUOUS_MAX[t]:g} (max {vals.max():g}): {what}, or fractions (x100)? State it "
                f"in the header (e.g. '{t} (wt%)' or '{t} (fraction)') or choose it (--units; in the app: "
                "Values); nothing was read")
        else:
            unit_of[t], source_of[t] = "wt%", "not stated; values above " + f"{AMBIGUOUS_MAX[t]:g}"
        if t == "TOC" and unit_of[t] == "wt%" and source_of[t] != "given" and len(vals) \
                and vals.max() <= AMBIGUOUS_MAX[t]:
            confirm.append(f"TOC is stated in wt% ({source_of[t]}) but every value is at or below "
                           f"{AMBIGUOUS_MAX[t]:g} wt% (max {vals.max():g}): fractions under a % header?")
        if unit_of[t] == "fraction":
            out[t] = out[t] * 100.0
    for t in extra:  # other targets: values as read, the unit given, else from the header (or none)
        head = tg.split_header(chosen[t])[1]
        if t in per_target:
            unit_of[t], source_of[t] = per_target[t], "given"
        elif head:
            unit_of[t], source_of[t] = head, f"column {chosen[t]!r}"
        elif blanket_unit:
            unit_of[t], source_of[t] = blanket_unit, "given"
        else:
            unit_of[t], source_of[t] = "", "not stated"
    if unit_of:
        notes.append("units: " + ", ".join(f"{t} {u} ({source_of[t]})" for t, u in unit_of.items())
                     + ("; fractions converted to wt%" if any(unit_of.get(t) == "fraction" for t in TARGETS)
                        else ""))
    fraction = any(unit_of.get(t) == "fraction" for t in TARGETS)

    issues: list[dict] = []
    keep = np.ones(len(out), bool)
    for i, (idx, r) in enumerate(out.iterrows()):
        def flag(status, reason):
            issues.append(dict(source_row=r.source_row, core=r.core, depth_mm=r.depth_mm,
                               status=status, reason=reason))
        if not isinstance(r.core, str) or not r.core or r.core.lower() == "nan":
            flag("rejected", "no core name"); keep[i] = False; continue
        if has_interval:
            if np.isnan(r.depth_top_mm) or np.isnan(r.depth_bottom_mm):
                flag("rejected", "top or bottom depth missing or not a number"); keep[i] = False; continue
            if r.depth_bottom_mm <= r.depth_top_mm:
                flag("rejected", f"bottom ({r.depth_bottom_mm:g} mm) not below top ({r.depth_top_mm:g} mm)")
                keep[i] = False; continue
        elif np.isnan(r.depth_mm):
            flag("rejected", "depth missing or not a number"); keep[i] = False; continue
        if r.depth_mm < 0:
            flag("rejected", f"negative depth {r.depth_mm:g} mm"); keep[i] = False; continue
        deepest = np.nanmax([r.depth_mm, r.depth_bottom_mm])
        if not np.isfinite(deepest) or deepest > MAX_DEPTH_MM:
            flag("rejected", f"depth {deepest:g} mm is not a core depth (over {MAX_DEPTH_MM / 1e6:g} km:"
                             " a typo or a wrong depth unit)"); keep[i] = False; continue
        present = [t for t in chosen if not np.isnan(r[t])]
        for t in [t for t in chosen if np.isnan(r[t])]:
            raw_val = df.at[idx, chosen[t]]
            if not (isinstance(raw_val, float) and np.isnan(raw_val)) and str(raw_val).strip():
                flag("suspicious", f"{t} value {raw_val!r} is not a number; left out")
        for t in present:
            v = r[t]
            if t in TARGETS and (v < 0 or v > 100):
                flag("suspicious", f"{t} = {v:g} wt% outside 0-100; left out")
                out.at[idx, t] = np.nan
            elif t in extra and tg.is_percent(unit_of[t]) and (v < 0 or v > 100):
                flag("suspicious", f"{t} = {v:g} {unit_of[t]} outside 0-100; left out")
                out.at[idx, t] = np.nan
        if "TOC" in present and 100 >= out.at[idx, "TOC"] > TOC_WARN:
            flag("suspicious", f"TOC = {out.at[idx, 'TOC']:g} wt% above {TOC_WARN:g} (kept)")
        ca, toc = out.at[idx, "CaCO3"], out.at[idx, "TOC"]
        if not np.isnan(ca) and not np.isnan(toc) and ca + toc > 100:
            flag("suspicious", f"CaCO3 + TOC = {ca + toc:g} wt% above 100 (kept)")
        if np.isnan(out.loc[idx, list(chosen)].astype(float)).all():
            flag("rejected", "no usable CaCO3 or TOC value" if not extra
                 else f"no usable value of {' or '.join(chosen)}"); keep[i] = False
    dup = out[keep].duplicated(["core", "depth_top_mm", "depth_bottom_mm", "depth_mm"], keep=False)
    for idx in dup[dup].index:
        r = out.loc[idx]
        issues.append(dict(source_row=r.source_row, core=r.core, depth_mm=r.depth_mm,
                           status="suspicious", reason="same core and depth as another row (both kept)"))
    if has_interval:  # overlapping sample intervals of one core: flagged (both kept)
        n_overlap = 0
        kept = out[keep].sort_values(["core", "depth_top_mm", "depth_bottom_mm"])
        for _, grp in kept.groupby("core", sort=False):
            prev = None
            for _, r in grp.iterrows():
                if prev is not None and r.depth_top_mm < prev.depth_bottom_mm:
                    n_overlap += 1
                    issues.append(dict(source_row=r.source_row, core=r.core, depth_mm=r.depth_mm,
                                       status="suspicious",
                                       reason=f"interval {r.depth_top_mm:g}-{r.depth_bottom_mm:g} mm overlaps "
                                              f"line {prev.source_row} ({prev.depth_top_mm:g}-"
                                              f"{prev.depth_bottom_mm:g} mm; both kept)"))
                if prev is None or r.depth_bottom_mm > prev.depth_bottom_mm:
                    prev = r
        if n_overlap:
            notes.append(f"WARNING: {n_overlap} sample interval(s) overlap another sample of the same core "
                         "(see the flagged rows)")
    samples = out[keep].reset_index(drop=True)
    high = samples[samples["TOC"] > TOC_WARN] if "TOC" in samples else samples.iloc[:0]
    if len(high):
        confirm.append(f"{len(high)} sample(s) with TOC above {TOC_WARN:g} wt% (up to {high['TOC'].max():g}; "
                       f"lines {', '.join(map(str, high['source_row'].head(5)))}): peat or coal, or a typo / "
                       "wrong unit?")
    return LabTable(samples=samples, issues=_issue_frame(issues), path=str(path), sha256=sha,
                    mapping=cols, depth_unit=depth_unit, fraction=bool(fraction),
                    simulated=simulated, notes=notes, units=unit_of, unit_sources=source_of,
                    confirm=confirm, targets=list(chosen), target_columns=dict(chosen),
                    target_units={t: (tg.DEFAULT_UNIT if t in TARGETS else unit_of.get(t, "")) for t in chosen})


COVERAGE_COLUMNS = ["core", "run", "core_top_mm", "core_bottom_mm", "samples_top_mm", "samples_bottom_mm",
                    "samples", "matched", "coverage"]


def _coverage_row(core, run, grp: pd.DataFrame, depth: np.ndarray, matched: int) -> dict:
    """How much of a core's scanned depth range its samples span (0-1)."""
    d = depth[np.isfinite(depth)]
    lo, hi = (float(d.min()), float(d.max())) if len(d) else (np.nan, np.nan)
    tops = grp["depth_top_mm"].where(np.isfinite(grp["depth_top_mm"]), grp["depth_mm"]).to_numpy(float)
    bots = grp["depth_bottom_mm"].where(np.isfinite(grp["depth_bottom_mm"]), grp["depth_mm"]).to_numpy(float)
    ok = np.isfinite(tops) & np.isfinite(bots)
    s_lo, s_hi = (float(tops[ok].min()), float(bots[ok].max())) if ok.any() else (np.nan, np.nan)
    if np.isfinite(lo) and np.isfinite(s_lo):
        length = max(hi - lo, 1e-9)
        cov = max(0.0, min(hi, s_hi) - max(lo, s_lo)) / length
        cov = min(1.0, cov if hi > lo else float(s_lo <= lo <= s_hi))
    else:
        cov = 0.0
    return dict(core=core, run=run, core_top_mm=lo, core_bottom_mm=hi, samples_top_mm=s_lo,
                samples_bottom_mm=s_hi, samples=int(len(grp)), matched=int(matched), coverage=float(cov))


@dataclass
class MatchResult:
    """Samples matched to spectra: X[i] is the mean spectrum (counts) of sample i."""

    X: np.ndarray                    # (n, C) float64 mean counts per sample
    samples: pd.DataFrame           # matched samples: normalised columns + run, n_spectra, method
    report: pd.DataFrame            # every row not matched or flagged: source_row, core, depth_mm, status, reason
    grid: object = None             # energy grid of X (xrfcore.energy.Grid) when known
    coverage: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COVERAGE_COLUMNS))
    confirm: list = field(default_factory=list)   # what needs an explicit OK (lab table + coverage)
    target_names: list = field(default_factory=lambda: list(TARGETS))  # the lab table's targets

    @property
    def targets(self) -> pd.DataFrame:
        return self.samples[[t for t in self.target_names if t in self.samples]]

    @property
    def usable(self) -> bool:
        """At least one sample matched a spectrum (a table matching nothing cannot be used)."""
        return len(self.samples) > 0

    def coverage_text(self) -> str:
        """One line per core: the depths its samples span against the core's scanned depths."""
        lines = []
        for r in self.coverage.itertuples(index=False):
            if not np.isfinite(r.core_top_mm):
                lines.append(f"{r.core}: {r.matched} of {r.samples} samples matched (core has no depths)")
                continue
            span = ("no depths" if not np.isfinite(r.samples_top_mm)
                    else f"{r.samples_top_mm:g}-{r.samples_bottom_mm:g} mm")
            lines.append(f"{r.core}: samples span {span} of the core's {r.core_top_mm:g}-{r.core_bottom_mm:g} mm "
                         f"({100 * r.coverage:.0f} % covered), {r.matched} of {r.samples} matched")
        return "\n".join(lines)

    def summary(self) -> str:
        rej = int((self.report["status"] != "suspicious").sum()) if len(self.report) else 0
        sus = int((self.report["status"] == "suspicious").sum()) if len(self.report) else 0
        return f"{len(self.samples)} samples matched, {rej} not used, {sus} flagged"


def match_spectra(samples: pd.DataFrame, meta: pd.DataFrame, counts: np.ndarray, *,
                  tolerance_mm: float = 5.0, min_spectra: int = 1):
    """Match one core's samples to its spectra.

    meta: the run's meta table (depth_mm, and active if present); counts: (N, C).
    Interval samples average the active spectra with top <= depth <= bottom; if none fall inside,
    the nearest one within tolerance_mm of the interval is used (method "nearest"). Mid-depth samples
    take the nearest active spectrum within tolerance_mm.
    Returns (X, matched index list, methods, n_spectra, issues list of dicts).
    """
    depth = np.asarray(meta["depth_mm"], float)
    active = np.asarray(meta["active"], bool) if "active" in meta else np.ones(len(depth), bool)
    valid = np.asarray(meta["valid"], bool) if "valid" in meta else np.ones(len(depth), bool)
    use = active & valid & np.isfinite(depth)
    idx_all = np.flatnonzero(use)
    d = depth[idx_all]
    X, kept, methods, nspec, issues = [], [], [], [], []
    lo, hi = (d.min(), d.max()) if len(d) else (np.nan, np.nan)
    for i, r in samples.iterrows():
        def issue(reason, status="unmatched"):
            issues.append(dict(source_row=r.get("source_row"), core=r.core, depth_mm=r.depth_mm,
                               status=status, reason=reason))
        if not len(d):
            issue("core has no active spectra"); continue
        interval = np.isfinite(r.get("depth_top_mm", np.nan)) and np.isfinite(r.get("depth_bottom_mm", np.nan))
        if interval:
            top, bot = r.depth_top_mm, r.depth_bottom_mm
            inside = idx_all[(d >= top) & (d <= bot)]
            if len(inside) >= min_spectra:
                X.append(counts[inside].astype(np.float64).mean(0)); kept.append(i)
                methods.append("interval"); nspec.append(len(inside)); continue
            gap = np.maximum(top - d, d - bot)
        else:
            gap = np.abs(d - r.depth_mm)
        j = int(np.argmin(gap))
        if gap[j] <= tolerance_mm:
            X.append(counts[idx_all[j]].astype(np.float64)); kept.append(i)
            methods.append("nearest"); nspec.append(1)
            if interval:
                issue(f"no spectrum inside the interval; nearest at {d[j]:g} mm used", "suspicious")
            continue
        if r.depth_mm < lo - tolerance_mm or r.depth_mm > hi + tolerance_mm:
            issue(f"outside the scanned range {lo:g}-{hi:g} mm")
        else:
            issue(f"no active spectrum within {tolerance_mm:g} mm (nearest at {d[j]:g} mm)")
    C = counts.shape[1] if counts.ndim == 2 else 0
    Xa = np.vstack(X) if X else np.zeros((0, C))
    return Xa, kept, methods, nspec, issues


def match_project(project_path, lab: LabTable | pd.DataFrame, *, run: str | None = None,
                  tolerance_mm: float = 5.0, grid=None, targets=None) -> MatchResult:
    """Match a lab table to the spectra of a project (one run per core).

    run: the run key to use for every core (default: the core's first 10 kV run, else its first run).
    grid: an xrfcore.energy.Grid to resample every core's spectra onto (needed when cores differ).
    targets: the target names of a plain sample table (a LabTable knows its own; default CaCO3, TOC).
    """
    from xrfcore import store

    samples = lab.samples if isinstance(lab, LabTable) else lab
    issues = list(lab.issues.to_dict("records")) if isinstance(lab, LabTable) else []
    Xs, parts, out_grid, cover = [], [], grid, []
    with store.Project.open(project_path) as p:
        cores = set(p.cores())
        for core, grp in samples.groupby("core", sort=False):
            if core not in cores:
                for _, r in grp.iterrows():
                    issues.append(dict(source_row=r.get("source_row"), core=core, depth_mm=r.depth_mm,
                                       status="unmatched", reason=f"core {core!r} not in the project"))
                continue
            runs = p.runs(core)
            key = run if run is not None else choose_run(runs)
            if key not in runs:
                for _, r in grp.iterrows():
                    issues.append(dict(source_row=r.get("source_row"), core=core, depth_mm=r.depth_mm,
                                       status="unmatched", reason=f"core {core!r} has no run {key!r}"))
                continue
            rd = p.read_run(core, key, active_only=False)
            # every spectrum from its own energy calibration onto one grid, then averaged
            target = grid if grid is not None else (out_grid if out_grid is not None else energy.as_grid(rd.grid))
            counts = energy.on_grid(rd.counts, rd.grids, target)
            X, kept, methods, nspec, iss = match_spectra(grp, rd.meta, counts, tolerance_mm=tolerance_mm)
            issues += iss
            use = np.asarray(rd.meta["active"], bool) & np.asarray(rd.meta["valid"], bool)
            cover.append(_coverage_row(core, key, grp, np.asarray(rd.meta["depth_mm"], float)[use], len(kept)))
            if not kept:
                continue
            if out_grid is None:
                out_grid = target
            m = grp.loc[kept].copy()
            m["run"], m["method"], m["n_spectra"] = key, methods, nspec
            Xs.append(X); parts.append(m)
    matched = pd.concat(parts, ignore_index=True) if parts else samples.iloc[:0].assign(run="", method="", n_spectra=0)
    X = np.vstack(Xs) if Xs else np.zeros((0, 0))
    coverage = pd.DataFrame(cover, columns=COVERAGE_COLUMNS)
    confirm = list(lab.confirm) if isinstance(lab, LabTable) else []
    for r in coverage.itertuples(index=False):
        if r.samples and r.coverage < MIN_COVERAGE and np.isfinite(r.core_top_mm):
            confirm.append(f"{r.core}: the samples cover only {100 * r.coverage:.0f} % of the core "
                           f"(samples {r.samples_top_mm:g}-{r.samples_bottom_mm:g} mm, core "
                           f"{r.core_top_mm:g}-{r.core_bottom_mm:g} mm; {r.matched} of {r.samples} matched): "
                           "depths in cm read as mm, or the wrong core?")
    names = list(lab.targets) if isinstance(lab, LabTable) and lab.targets else list(targets or TARGETS)
    return MatchResult(X=X, samples=matched, report=_issue_frame(issues), grid=out_grid,
                       coverage=coverage, confirm=confirm, target_names=names)


def choose_run(runs: list[str]) -> str | None:
    """The default run of a core: the first one taken at 10 kV, else the first one."""
    for r in runs:
        if re.match(r"^10\s*kV", str(r), re.I):
            return r
    return runs[0] if runs else None


def label_hash(samples: pd.DataFrame, targets=()) -> str:
    """A hash of the normalised sample table (for model cards); ``targets``: other targets' columns
    to include beside CaCO3 and TOC."""
    extra = [t for t in targets if t not in TARGETS]
    cols = [c for c in ("core", "depth_top_mm", "depth_bottom_mm", "depth_mm", *TARGETS, *extra) if c in samples]
    return hashlib.sha256(samples[cols].to_csv(index=False).encode()).hexdigest()


def store_labels(project_path, lab: LabTable) -> pd.DataFrame:
    """Save a lab table into the project: replaces the stored samples of the cores it names and
    keeps those of other cores (one transaction). Returns the stored table."""
    from xrfcore import store

    with store.Project.open(project_path) as p:
        old, meta = p.labels(), p.labels_meta()
    old_units = tg.stored(meta, old)
    new = lab.samples.assign(source_file=Path(lab.path).name)
    lab_units = dict(lab.target_units) or {t: tg.DEFAULT_UNIT for t in TARGETS if lab.samples[t].notna().any()}
    units = dict(lab_units)
    if len(old) and "core" in old.columns:
        old = old[~old["core"].isin(set(new["core"]))]
        for t, u in old_units.items():  # the targets of the other cores' samples stay
            if t in old.columns and old[t].notna().any():
                if t in units and units[t] != u:
                    raise ValueError(f"{lab.path}: {t} is in {units[t] or 'no unit'} here but in "
                                     f"{u or 'no unit'} in the project's lab samples of other cores; "
                                     "give it in the same unit (--units)")
                units.setdefault(t, u)
        new = pd.concat([old, new], ignore_index=True)
    files = dict(meta.get("files", {})) if isinstance(meta.get("files"), dict) else {}
    files[Path(lab.path).name] = {"sha256": lab.sha256, "mapping": lab.mapping, "depth_unit": lab.depth_unit,
                                  "units": dict(lab.units), "unit_sources": dict(lab.unit_sources),
                                  "targets": list(lab_units), "target_columns": dict(lab.target_columns),
                                  "accepted_warnings": list(lab.confirm),
                                  "simulated": lab.simulated, "cores": sorted(set(lab.samples["core"]))}
    with store.transaction(project_path) as w:
        w.write_labels(new, {"files": files, "simulated": any(f.get("simulated") for f in files.values()),
                             "targets": list(units), "target_units": units})
    return new


def stored_targets(project_path) -> dict[str, str]:
    """{target: unit} of the lab samples stored in a project (older projects: CaCO3 / TOC)."""
    from xrfcore import store

    with store.Project.open(project_path) as p:
        return tg.stored(p.labels_meta(), p.labels())
