"""Lab bulk-sample tables -> spectra matched over each sample's depth interval.

A lab CSV holds one row per sample: core, a depth interval (top/bottom) or a mid-depth, and CaCO3
and/or TOC in wt%. `read_lab_csv` maps the columns (given or auto-detected), converts depths to mm
and checks values; `match_spectra` / `match_project` average the active spectra inside each
sample's interval (nearest spectrum within a tolerance for mid-depths). Every row that is not used,
or is used but looks odd, is in the report with a reason: nothing is dropped silently.

Normalised sample table (what `read_lab_csv` returns and `store.write_labels` receives):
``core, depth_top_mm, depth_bottom_mm, depth_mm (mid), CaCO3, TOC, sample, source_row``
(top/bottom are NaN for mid-depth samples; a target is NaN where the lab did not measure it).
"""
from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xrfcore import energy

TARGETS = ("CaCO3", "TOC")
ROLES = ("core", "top", "bottom", "mid", "CaCO3", "TOC", "sample")
UNIT_TO_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}
TOC_WARN = 20.0  # wt%: above this a marine sediment TOC is suspicious (peat, coal, typo)


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


def _issue_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["source_row", "core", "depth_mm", "status", "reason"])


def read_lab_csv(path, mapping: dict | None = None, depth_unit: str | None = None, *,
                 core: str | None = None, fraction: bool | None = None) -> LabTable:
    """Read a lab-samples CSV into the normalised sample table.

    mapping: {role: column} for roles core, top, bottom, mid, CaCO3, TOC, sample; missing roles are
    auto-detected. depth_unit: "mm" | "cm" | "m" (else detected from the depth column names).
    core: the core name when the file has no core column. fraction: targets given as fractions
    (0-1) rather than wt%; None detects it (all CaCO3 <= 1). Raises ValueError naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OSError(f"{path}: cannot read lab file ({exc.strerror or exc})") from None
    sha = hashlib.sha256(raw).hexdigest()
    text = raw.decode("utf-8-sig", errors="replace")
    comments = [ln for ln in text.splitlines() if ln.lstrip().startswith("#")]
    simulated = any("simulated" in ln.lower() for ln in comments)
    sep = ";" if text.count(";") > text.count(",") else ","
    try:
        # a semicolon table with numbers like "12,5" is the European spreadsheet export
        decimal = "," if sep == ";" and re.search(r"(^|;)\s*-?\d+,\d+\s*(;|$)", text, re.M) else "."
        df = pd.read_csv(io.StringIO(text), comment="#", sep=sep, decimal=decimal, skip_blank_lines=True)
    except Exception as exc:  # pandas raises several kinds for malformed text
        raise ValueError(f"{path}: not a readable CSV table ({exc})") from None
    if df.empty:
        raise ValueError(f"{path}: no sample rows")
    df.columns = [str(c).strip() for c in df.columns]
    # line numbers in the file (1-based, header counted) so the report points at real lines
    data_lines = [i + 1 for i, ln in enumerate(text.splitlines())
                  if ln.strip() and not ln.lstrip().startswith("#")][1:]
    src_rows = data_lines[: len(df)] if len(data_lines) >= len(df) else list(range(2, len(df) + 2))

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
    if not any(t in cols for t in TARGETS):
        raise ValueError(f"{path}: no CaCO3 or TOC column found (columns: {', '.join(df.columns)})")
    if "core" not in cols and not core:
        raise ValueError(f"{path}: no core column found; name the core for a single-core file")

    depth_cols = [cols[r] for r in ("top", "bottom", "mid") if r in cols]
    if depth_unit is None:
        units = {u for u in (_unit_of(c) for c in depth_cols) if u}
        if len(units) > 1:
            raise ValueError(f"{path}: depth columns disagree on their unit ({', '.join(sorted(units))})")
        if not units:
            raise ValueError(f"{path}: cannot tell the depth unit from {', '.join(map(repr, depth_cols))};"
                             " give it (mm, cm or m)")
        depth_unit = units.pop()
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
        out[t] = num(cols.get(t))
    out["sample"] = df[cols["sample"]].fillna("").astype(str) if "sample" in cols else ""
    out["source_row"] = src_rows

    notes = []
    if fraction is None:
        names = " ".join(str(cols.get(t, "")) for t in TARGETS).lower()
        ca = out["CaCO3"].dropna()
        if "frac" in names or "g/g" in names:
            fraction = True
        elif len(ca) >= 3 and ca.max() <= 1.0 and ca.max() > 0 and "%" not in names:
            fraction = True
        else:
            fraction = False
        if fraction:
            notes.append("targets read as fractions (all CaCO3 <= 1) and converted to wt%")
    if fraction:
        for t in TARGETS:
            out[t] = out[t] * 100.0

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
        present = [t for t in TARGETS if t in cols and not np.isnan(r[t])]
        for t in [t for t in TARGETS if t in cols and np.isnan(r[t])]:
            raw_val = df.at[idx, cols[t]]
            if not (isinstance(raw_val, float) and np.isnan(raw_val)) and str(raw_val).strip():
                flag("suspicious", f"{t} value {raw_val!r} is not a number; left out")
        for t in present:
            v = r[t]
            if v < 0 or v > 100:
                flag("suspicious", f"{t} = {v:g} wt% outside 0-100; left out")
                out.at[idx, t] = np.nan
        if "TOC" in present and 100 >= out.at[idx, "TOC"] > TOC_WARN:
            flag("suspicious", f"TOC = {out.at[idx, 'TOC']:g} wt% above {TOC_WARN:g} (kept)")
        ca, toc = out.at[idx, "CaCO3"], out.at[idx, "TOC"]
        if not np.isnan(ca) and not np.isnan(toc) and ca + toc > 100:
            flag("suspicious", f"CaCO3 + TOC = {ca + toc:g} wt% above 100 (kept)")
        if np.isnan(out.loc[idx, list(TARGETS)].astype(float)).all():
            flag("rejected", "no usable CaCO3 or TOC value"); keep[i] = False
    dup = out[keep].duplicated(["core", "depth_top_mm", "depth_bottom_mm", "depth_mm"], keep=False)
    for idx in dup[dup].index:
        r = out.loc[idx]
        issues.append(dict(source_row=r.source_row, core=r.core, depth_mm=r.depth_mm,
                           status="suspicious", reason="same core and depth as another row (both kept)"))
    samples = out[keep].reset_index(drop=True)
    return LabTable(samples=samples, issues=_issue_frame(issues), path=str(path), sha256=sha,
                    mapping=cols, depth_unit=depth_unit, fraction=bool(fraction),
                    simulated=simulated, notes=notes)


@dataclass
class MatchResult:
    """Samples matched to spectra: X[i] is the mean spectrum (counts) of sample i."""

    X: np.ndarray                    # (n, C) float64 mean counts per sample
    samples: pd.DataFrame           # matched samples: normalised columns + run, n_spectra, method
    report: pd.DataFrame            # every row not matched or flagged: source_row, core, depth_mm, status, reason
    grid: object = None             # energy grid of X (xrfcore.energy.Grid) when known

    @property
    def targets(self) -> pd.DataFrame:
        return self.samples[list(TARGETS)]

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
                  tolerance_mm: float = 5.0, grid=None) -> MatchResult:
    """Match a lab table to the spectra of a project (one run per core).

    run: the run key to use for every core (default: the core's first 10 kV run, else its first run).
    grid: an xrfcore.energy.Grid to resample every core's spectra onto (needed when cores differ).
    """
    from xrfcore import store

    samples = lab.samples if isinstance(lab, LabTable) else lab
    issues = list(lab.issues.to_dict("records")) if isinstance(lab, LabTable) else []
    Xs, parts, out_grid = [], [], grid
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
            if not kept:
                continue
            if out_grid is None:
                out_grid = target
            m = grp.loc[kept].copy()
            m["run"], m["method"], m["n_spectra"] = key, methods, nspec
            Xs.append(X); parts.append(m)
    matched = pd.concat(parts, ignore_index=True) if parts else samples.iloc[:0].assign(run="", method="", n_spectra=0)
    X = np.vstack(Xs) if Xs else np.zeros((0, 0))
    return MatchResult(X=X, samples=matched, report=_issue_frame(issues), grid=out_grid)


def choose_run(runs: list[str]) -> str | None:
    """The default run of a core: the first one taken at 10 kV, else the first one."""
    for r in runs:
        if re.match(r"^10\s*kV", str(r), re.I):
            return r
    return runs[0] if runs else None


def label_hash(samples: pd.DataFrame) -> str:
    """A hash of the normalised sample table (for model cards)."""
    cols = [c for c in ("core", "depth_top_mm", "depth_bottom_mm", "depth_mm", *TARGETS) if c in samples]
    return hashlib.sha256(samples[cols].to_csv(index=False).encode()).hexdigest()


def store_labels(project_path, lab: LabTable) -> pd.DataFrame:
    """Save a lab table into the project: replaces the stored samples of the cores it names and
    keeps those of other cores (one transaction). Returns the stored table."""
    from xrfcore import store

    with store.Project.open(project_path) as p:
        old, meta = p.labels(), p.labels_meta()
    new = lab.samples.assign(source_file=Path(lab.path).name)
    if len(old) and "core" in old.columns:
        old = old[~old["core"].isin(set(new["core"]))]
        new = pd.concat([old, new], ignore_index=True)
    files = dict(meta.get("files", {})) if isinstance(meta.get("files"), dict) else {}
    files[Path(lab.path).name] = {"sha256": lab.sha256, "mapping": lab.mapping, "depth_unit": lab.depth_unit,
                                  "simulated": lab.simulated, "cores": sorted(set(lab.samples["core"]))}
    with store.transaction(project_path) as w:
        w.write_labels(new, {"files": files, "simulated": any(f.get("simulated") for f in files.values())})
    return new
