"""The project file's schema and table I/O: run columns, records -> tables, sorting and the
``active`` flags, HDF5 reads and writes of runs and frames, a run's energy calibration (see
:mod:`xrfcore.store`; every name here is re-exported there)."""
from __future__ import annotations

import datetime as _dt
import json
import operator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import h5py
import numpy as np
import pandas as pd

from xrfcore.io.records import SpectrumRecord
from xrfcore.store_check import _read_ds, _dataset, counts_sha256, content_sha256, damaged

CHUNK_ROWS = 256
GZIP_LEVEL = 1                         # level 1 inflates ~40 % faster than 4 for ~1 % more size (measured)

# Nominal energy grids when the records carry none (keV per channel, offset keV).
NOMINAL_GAIN = {"avaatech": 0.020, "itrax-2048": 0.01027, "itrax-1024": 0.0193}

# Metadata columns of a run: (name, kind). Kinds: f = float64 (NaN = unknown),
# i = int32, b = bool, s = text (UTF-8), j = JSON text (lists/dicts).
COLUMNS: list[tuple[str, str]] = [
    ("depth_mm", "f"), ("section", "s"), ("position_mm", "f"), ("y_mm", "f"), ("kv", "f"),
    ("current_ua", "f"), ("live_s", "f"), ("real_s", "f"), ("total_cps", "f"), ("date", "s"),
    ("replicate", "i"), ("source_path", "s"), ("sha256", "s"), ("active", "b"), ("valid", "b"),
    ("section_top_mm", "f"), ("run", "f"), ("run_label", "s"), ("filter", "s"), ("setting", "s"),
    ("slit_dc_mm", "f"), ("slit_cc_mm", "f"), ("gain_kev", "f"), ("offset_kev", "f"),
    ("scanner", "s"), ("core", "s"), ("warnings", "j"), ("header", "j"),
    # the energy calibration each spectrum is read with (xrfcore.calibration; raw counts untouched)
    ("cal_gain_kev", "f"), ("cal_offset_kev", "f"), ("cal_source", "s"),
]
CAL_COLUMNS = ("cal_gain_kev", "cal_offset_kev", "cal_source")
COLUMN_KINDS = dict(COLUMNS)
LOG_COLUMNS = ("time", "folder", "file", "status", "message")


class Grid(NamedTuple):
    """Energy grid of a run (same fields as ``xrfcore.energy.Grid``)."""

    channels: int
    gain_kev: float
    offset_kev: float


@dataclass
class RunData:
    """Spectra of one run: ``counts`` (N, C) int32, ``meta`` (N rows, COLUMNS), grid, attrs."""

    counts: np.ndarray
    meta: pd.DataFrame
    grid: Any
    attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    @property
    def grids(self):
        """Each spectrum's own energy calibration (``energy.RowGrids``); rows calibrated before
        this existed, or never, fall back to the run's grid."""
        from xrfcore.energy import RowGrids, as_grid

        run = as_grid(self.grid)
        n = len(self)
        g = self.meta["cal_gain_kev"].to_numpy(float) if "cal_gain_kev" in self.meta else np.full(n, np.nan)
        o = self.meta["cal_offset_kev"].to_numpy(float) if "cal_offset_kev" in self.meta else np.full(n, np.nan)
        bad = ~(np.isfinite(g) & (g > 0) & np.isfinite(o))
        return RowGrids(run.channels, np.where(bad, run.gain_kev, g), np.where(bad, run.offset_kev, o), run)


def _make_grid(channels: int, gain: float, offset: float):
    try:  # the energy layer's Grid when it is there (same three fields)
        from xrfcore.energy import Grid as EnergyGrid
        return EnergyGrid(int(channels), float(gain), float(offset))
    except Exception:
        return Grid(int(channels), float(gain), float(offset))


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def safe_name(name: str) -> str:
    """An HDF5 group name for a core / run / model id ('/' is the path separator)."""
    clean = str(name).strip().replace("/", "_").replace("\\", "_")
    if clean in ("", ".", ".."):
        raise ValueError(f"invalid name {name!r} for a core, run or model")
    return clean


# --------------------------------------------------------------------------- tables
# A "table" is (counts (N, C) int32, dict column -> 1-D numpy array) for one run.

def _empty_value(kind: str):
    return {"f": np.nan, "i": 0, "b": False, "s": "", "j": ""}[kind]


# = json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=str), built once (headers never
# hold circular references, so the check is skipped)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str, check_circular=False)
_FIELDS = [name for name, _ in COLUMNS if name != "active" and name not in CAL_COLUMNS]
_GET_FIELDS = operator.attrgetter(*_FIELDS)


def records_to_table(records: list[SpectrumRecord]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Stack records into counts + column arrays (all rows must have the same channel count)."""
    if not records:
        raise ValueError("no records to write")
    n_ch = len(records[0].counts)
    for r in records:
        if len(r.counts) != n_ch:
            raise ValueError(f"{r.source_path}: {len(r.counts)} channels, the run has {n_ch}")
    counts = np.empty((len(records), n_ch), dtype=np.int32)
    for i, r in enumerate(records):
        counts[i] = r.counts
    # one attribute fetch per record, then columns (much cheaper than one getattr pass per column)
    columns = dict(zip(_FIELDS, zip(*[_GET_FIELDS(r) for r in records])))
    cols: dict[str, np.ndarray] = {}
    for name, kind in COLUMNS:
        if name == "active" or name in CAL_COLUMNS:   # set by sort_and_flag / calibration
            vals = [_empty_value(kind)] * len(records)
        elif kind == "j":
            enc = _JSON.encode
            vals = ["[]" if v == [] else enc(v) for v in columns[name]]
        else:
            vals = columns[name]
        cols[name] = _as_array(vals, kind)
    return counts, cols


def _as_array(vals: list, kind: str) -> np.ndarray:
    if kind == "f":
        return np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)
    if kind == "i":
        return np.array([0 if v is None else int(v) for v in vals], dtype=np.int32)
    if kind == "b":
        return np.array([bool(v) for v in vals], dtype=bool)
    return np.array(["" if v is None else str(v) for v in vals], dtype=object)


def _take(table, idx):
    counts, cols = table
    return counts[idx], {k: v[idx] for k, v in cols.items()}


def _concat(a, b):
    counts = np.concatenate([a[0], b[0]])
    cols = {k: np.concatenate([a[1][k], b[1][k]]) for k in a[1]}
    return counts, cols


def sort_and_flag(table):
    """Sort rows by depth (unknown depth last) and recompute the ``active`` flags.

    Rows at the same depth (rounded to 0.1 mm) are one measurement point: rescans,
    overlapping section edges and ``0048`` vs ``048`` are duplicates, Rep1+ are replicates.
    All rows are kept; exactly one per depth is active: the lowest replicate present (Rep0
    normally), and among those the latest date. So Rep1+ are never active where the depth
    has a Rep0, but a depth measured only as Rep1 (e.g. an Itrax _REP1 scan) is not lost.
    Rows without a depth are keyed by (section, position) instead.
    """
    order, active = sort_order(table[1])
    counts, cols = _take(table, order)
    cols["active"] = active
    return counts, cols


def sort_order(cols) -> tuple[np.ndarray, np.ndarray]:
    """(order: the rows' indices sorted as :func:`sort_and_flag` sorts them, the ``active`` flags
    of the rows in that order); needs the key columns only (no counts)."""
    depth = cols["depth_mm"]
    n = len(depth)
    nodepth = np.isnan(depth)
    dep = np.where(nodepth, 0.0, depth)
    position = np.nan_to_num(cols["position_mm"], nan=-1e300)
    section, replicate, date, source = cols["section"], cols["replicate"], cols["date"], cols["source_path"]
    # np.lexsort is stable and sorts by its last key first (numpy, not pandas: ~10x faster here)
    order = np.lexsort((source, date, replicate, position, section, dep, nodepth))
    nd, dep, position = nodepth[order], dep[order], position[order]
    dkey = np.where(nd, -1, np.round(dep * 10)).astype(np.int64)
    s = np.where(nd, section[order], "")
    p = np.where(nd, position, 0.0)
    # per depth: the lowest replicate present (Rep0 normally), latest date, then source path
    latest = np.lexsort((source[order], date[order], -replicate[order], p, s, nd, dkey))
    kd, kn, ks, kp = dkey[latest], nd[latest], s[latest], p[latest]
    last = np.ones(n, dtype=bool)       # the last row of each depth group in that order
    if n > 1:
        last[:-1] = ~((kd[1:] == kd[:-1]) & (kn[1:] == kn[:-1]) & (ks[1:] == ks[:-1]) & (kp[1:] == kp[:-1]))
    active = np.zeros(n, dtype=bool)
    active[latest[last]] = True
    return order, active


# --------------------------------------------------------------------------- HDF5 I/O

def _write_column(g: h5py.Group, name: str, values: np.ndarray, kind: str) -> None:
    n = len(values)
    if kind in ("s", "j"):
        enc = [str(v).encode("utf-8") for v in values]
        width = max([1] + [len(e) for e in enc])
        arr = np.array(enc, dtype=f"S{width}")
        # fixed-width bytes compress (variable-length strings would not)
        g.create_dataset(name, data=arr, chunks=(max(1, min(n, 1024)),),
                         compression="gzip", compression_opts=GZIP_LEVEL, fletcher32=True)
        g[name].attrs["kind"] = kind
    else:
        g.create_dataset(name, data=values, fletcher32=True)


def _read_column(ds: h5py.Dataset, sl: slice) -> np.ndarray:
    data = _read_ds(ds, sl)
    if data.dtype.kind == "S":   # a list comprehension is ~10x faster than np.char.decode here
        out = np.empty(len(data), dtype=object)
        out[:] = [x.decode("utf-8") for x in data.tolist()]
        return out
    return data


def _write_table(runs: h5py.Group, run: str, table, attrs: dict) -> None:
    counts, cols = table
    if run in runs:
        del runs[run]
    g = runs.create_group(run)
    n, c = counts.shape
    chash = counts_sha256(counts)
    attrs = {**attrs, "counts_sha256": chash,
             "content_sha256": content_sha256(chash, cols["depth_mm"], cols["active"])}
    # uint16 on disk when every count fits: half the bytes to inflate on every read (read_run
    # always returns int32)
    if n and 0 <= counts.min() and counts.max() <= np.iinfo(np.uint16).max:
        counts = counts.astype(np.uint16)
    g.create_dataset("spectra", data=counts, chunks=(max(1, min(n, CHUNK_ROWS)), max(1, c)),
                     compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True, fletcher32=True)
    for name, kind in COLUMNS:
        _write_column(g, name, cols[name], kind)
    for k, v in attrs.items():
        g.attrs[k] = v


REQUIRED_COLUMNS = ("depth_mm", "active")   # every layout had them: missing = damaged


def _read_table(g: h5py.Group, sl: slice = slice(None)):
    ds = _dataset(g, "spectra")
    counts = _read_ds(ds, sl).astype(np.int32, copy=False)
    if sl == slice(None) and not ds.fletcher32 and "counts_sha256" in g.attrs \
            and counts_sha256(counts) != _attr(g.attrs["counts_sha256"]):
        raise damaged(g.file.filename, ds.name, "are damaged (checksum mismatch)")
    cols = {}
    for name, kind in COLUMNS:
        if name in g or name in REQUIRED_COLUMNS:
            cols[name] = _read_column(_dataset(g, name), sl)
        else:  # written by an older layout: fill
            cols[name] = np.full(counts.shape[0], _empty_value(kind),
                                 dtype=object if kind in "sj" else None)
    return counts, cols


def _write_frame(g: h5py.Group, df: pd.DataFrame, meta: dict) -> None:
    """A DataFrame as one dataset per column (c0, c1...; names in attrs: any text is allowed)."""
    names = [str(c) for c in df.columns]
    kinds = []
    for i, col in enumerate(df.columns):
        s = df[col]
        if pd.api.types.is_bool_dtype(s):
            kind, arr = "b", s.to_numpy(dtype=bool)
        elif pd.api.types.is_integer_dtype(s) and not s.isna().any():
            kind, arr = "i", s.to_numpy(dtype=np.int64)
        elif pd.api.types.is_numeric_dtype(s):
            kind, arr = "f", s.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            kind = "s"
            arr = np.array(["" if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v)
                            for v in s], dtype=object)
        kinds.append(kind)
        if kind == "s":
            _write_column(g, f"c{i}", arr, "s")
        else:
            g.create_dataset(f"c{i}", data=arr, fletcher32=True)
    g.attrs["columns"] = json.dumps(names, ensure_ascii=False)
    g.attrs["kinds"] = json.dumps(kinds)
    g.attrs["meta"] = json.dumps(meta or {}, ensure_ascii=False, default=str)
    g.attrs["written"] = _now()


def _read_frame(g: h5py.Group) -> tuple[pd.DataFrame, dict]:
    if "columns" not in g.attrs:
        raise damaged(g.file.filename, g.name, "are damaged (no column list)")
    names = json.loads(g.attrs["columns"])
    data = {name: _read_column(_dataset(g, f"c{i}"), slice(None)) for i, name in enumerate(names)}
    return pd.DataFrame(data, columns=names), json.loads(g.attrs.get("meta", "{}"))


def _attr(v):
    return v.decode() if isinstance(v, bytes) else v


def _run_attrs(table, run: str):
    """The run's attributes, after calibrating its energy scale (fills the table's cal_* columns).
    Returns (attrs, calibration.RunCalibration)."""
    from xrfcore import calibration

    counts, cols = table
    scanner = next((s for s in cols["scanner"] if s), "")
    key = "avaatech"
    if "itrax" in scanner:
        key = "itrax-1024" if counts.shape[1] <= 1024 else "itrax-2048"
    kv = cols["kv"][~np.isnan(cols["kv"])]
    kv_run = float(np.median(kv)) if kv.size else np.nan
    stated = cols["gain_kev"][np.isfinite(cols["gain_kev"])]
    nominal = _make_grid(counts.shape[1], float(np.median(stated)) if stated.size else NOMINAL_GAIN[key],
                         float(np.nanmedian(cols["offset_kev"])) if stated.size and np.isfinite(cols["offset_kev"]).any()
                         else 0.0)
    cal = calibration.calibrate_run(counts, nominal, stated_gain=cols["gain_kev"], stated_offset=cols["offset_kev"],
                                    kv=kv_run, valid=cols["valid"], paths=cols["source_path"])
    cols["cal_gain_kev"], cols["cal_offset_kev"] = cal.gains, cal.offsets
    cols["cal_source"] = np.asarray(cal.source, dtype=object)
    summary = cal.summary()
    summary["nominal"] = {"gain_kev": nominal.gain_kev, "offset_kev": nominal.offset_kev,
                          "source": "files" if stated.size else f"nominal {key}"}
    attrs = {"name": run, "channels": int(counts.shape[1]), "gain_kev": float(cal.run.gain_kev),
             "offset_kev": float(cal.run.offset_kev), "grid_source": cal.grid_source, "kv": kv_run,
             "calibration": json.dumps(summary, default=str), "scanner": scanner,
             "simulated": bool(any(str(x).startswith("simulated") for x in cols["scanner"])),
             "written": _now()}
    return attrs, cal
