"""The HDF5 project file: schema, versions and migrations, atomic writes.

Layout (schema 1)::

    /                        attrs: schema_version, xrfcore_version, created, modified
    /cores/<core>/runs/<run>/spectra     (N, C) counts, chunked by rows, gzip + shuffle; stored as
                                         uint16 when all counts fit, else int32 (read as int32)
    /cores/<core>/runs/<run>/<column>    one 1-D dataset per metadata column (COLUMNS)
                                         attrs: channels, gain_kev, offset_kev, grid_source, ...,
                                         counts_sha256 (of the int32 counts), content_sha256 (counts +
                                         depth + active flags: what predictions were made from)
    /cores/<core>/predictions/<model_id> a DataFrame (see _write_frame) + attrs meta (JSON)
    /labels                              a DataFrame + attrs meta (JSON)
    /import_log                          time, folder, file, status, message (one row per file)

Rows of a run are kept sorted by depth, so a depth range is one contiguous slice.
Integrity: every dataset of a run, of the lab samples and of the predictions is written with HDF5
Fletcher-32 checksums (per chunk), verified by HDF5 on every read; a mismatch, an undecodable chunk or a
missing dataset raises :class:`DamagedProjectError` (one sentence: which file, what, what to do), never
garbage. Files written before checksums still read (``info()`` says they are unchecked); a run
without checksums but with ``counts_sha256`` is verified against it when read whole.
Every write goes through :func:`transaction`: the project is copied to a temp file in the
same folder, modified, flushed, fsynced and moved over the original with ``os.replace``.
A failure or a cancel removes the temp file; the original is never touched.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import operator
import os
import re
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import h5py
import numpy as np
import pandas as pd

from xrfcore import __version__
from xrfcore.io.records import SpectrumRecord
from xrfcore.jobs import CancelToken, ProgressFn, no_progress

SCHEMA_VERSION = 1
CHUNK_ROWS = 256
GZIP_LEVEL = 1                         # level 1 inflates ~40 % faster than 4 for ~1 % more size (measured)
CHUNK_CACHE_BYTES = 64 << 20          # a whole 1,000 x 2048 run decompresses without re-reads
TMP_SUFFIX = ".xrfcore-tmp"

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


class ProjectError(ValueError):
    """A project file that cannot be used (not a project, newer schema, missing core/run)."""


def raised_by_h5py(exc: BaseException) -> bool:
    """Whether the exception was raised inside h5py (an HDF5 file it could not read); the CLI and
    the app turn such errors into the damaged-project sentence."""
    tb = exc.__traceback__
    while tb is not None:
        if "h5py" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


class DamagedProjectError(ProjectError):
    """The project file is damaged (truncated, bad header, checksum mismatch, missing dataset)."""


_TMP_NAME = re.compile(r"^\.(.+)\.\d+\.[0-9a-f]+" + re.escape(".xrfcore-tmp") + "$")


def _user_path(filename) -> str:
    """The project path a user knows (a transaction's temp copy named as its project)."""
    p = Path(filename)
    m = _TMP_NAME.match(p.name)
    return str(p.parent / m.group(1)) if m else str(p)


def _what(name: str) -> tuple[str, str]:
    """(what is stored at an HDF5 path, in words; what to do besides restoring a backup)."""
    parts = [x for x in str(name).split("/") if x]
    if len(parts) >= 4 and parts[0] == "cores" and parts[2] == "runs":
        col = parts[4] if len(parts) > 4 else "spectra"
        thing = "spectra" if col == "spectra" else f"{col} values"
        return f"the stored {thing} of core {parts[1]!r} run {parts[3]!r}", "re-import the core"
    if len(parts) >= 3 and parts[0] == "cores" and parts[2] == "predictions":
        model = f" of model {parts[3]!r}" if len(parts) > 3 else ""
        return f"the stored predictions{model} for core {parts[1]!r}", "predict again"
    if parts and parts[0] == "labels":
        return "the stored lab samples", "load the lab samples again"
    if parts and parts[0] == "import_log":
        return "the stored import log", "re-import the cores into a new project"
    return f"the stored data at {name}", "re-import the cores into a new project"


def damaged(filename, name: str, problem: str) -> DamagedProjectError:
    """The one-sentence error for damaged stored data at HDF5 path ``name``."""
    what, todo = _what(name)
    return DamagedProjectError(f"{_user_path(filename)}: {what} {problem}; nothing was written; "
                               f"restore the file from a backup or {todo}")


def _read_ds(ds: h5py.Dataset, sl=slice(None)) -> np.ndarray:
    """ds[sl], with HDF5's checksum / decompression failures turned into DamagedProjectError."""
    try:
        return ds[sl]
    except (OSError, RuntimeError) as exc:
        problem = ("are damaged (checksum mismatch)" if ds.fletcher32
                   else "are damaged (a stored block cannot be decoded)")
        raise damaged(ds.file.filename, ds.name, problem) from None


def _dataset(g: h5py.Group, key: str) -> h5py.Dataset:
    """g[key], a missing or unreadable one being damage (not h5py's KeyError)."""
    try:
        ds = g[key]
    except (KeyError, OSError, RuntimeError):
        raise damaged(g.file.filename, f"{g.name}/{key}", "are missing (the file is damaged)") from None
    if not isinstance(ds, h5py.Dataset):
        raise damaged(g.file.filename, f"{g.name}/{key}", "are missing (the file is damaged)")
    return ds


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
    counts, cols = table
    depth = cols["depth_mm"]
    n = len(depth)
    nodepth = np.isnan(depth)
    dep = np.where(nodepth, 0.0, depth)
    position = np.nan_to_num(cols["position_mm"], nan=-1e300)
    section, replicate, date, source = cols["section"], cols["replicate"], cols["date"], cols["source_path"]
    # np.lexsort is stable and sorts by its last key first (numpy, not pandas: ~10x faster here)
    order = np.lexsort((source, date, replicate, position, section, dep, nodepth))
    counts, cols = _take((counts, cols), order)
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
    cols["active"] = active
    return counts, cols


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


def counts_sha256(counts: np.ndarray) -> str:
    """sha256 of a run's counts as little-endian int32 (what ``read_run`` returns)."""
    return hashlib.sha256(np.ascontiguousarray(counts, dtype="<i4").tobytes()).hexdigest()


def content_sha256(counts_hash: str, depth, active) -> str:
    """A run's content id: its counts, depths and active flags (what a prediction used)."""
    h = hashlib.sha256(counts_hash.encode())
    h.update(np.ascontiguousarray(depth, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(active, dtype=bool).tobytes())
    return h.hexdigest()


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


# --------------------------------------------------------------------------- Project

class Project:
    """A project file opened for reading (use :func:`transaction` to write)."""

    def __init__(self, h5: h5py.File, path: Path):
        self._h5 = h5
        self.path = Path(path)

    # --- opening
    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r") -> "Project":
        if mode != "r":
            raise ValueError("Project.open is read-only; write with store.transaction(path)")
        path = Path(path)
        version = check_schema(path)
        if version < SCHEMA_VERSION:
            migrate(path)
        try:
            return cls(_open_h5(path, "r"), path)
        except OSError as exc:
            raise _open_error(path, exc) from None

    @classmethod
    def create(cls, path: str | os.PathLike, *, exist_ok: bool = False) -> "Project":
        """Create an empty project (atomically) and open it for reading."""
        path = Path(path)
        if path.exists() and not exist_ok:
            raise FileExistsError(f"{path}: a file of that name already exists")
        if not path.exists():
            with transaction(path, create=True):
                pass
        return cls.open(path)

    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reading
    @property
    def schema_version(self) -> int:
        return int(self._h5.attrs["schema_version"])

    def cores(self) -> list[str]:
        return sorted(self._h5["cores"].keys()) if "cores" in self._h5 else []

    def runs(self, core: str) -> list[str]:
        g = self._core(core)
        return sorted(g["runs"].keys()) if "runs" in g else []

    def _core(self, core: str) -> h5py.Group:
        key = f"cores/{safe_name(core)}"
        if key not in self._h5:
            raise ProjectError(f"{self.path}: no core {core!r} (cores: {', '.join(self.cores()) or 'none'})")
        return self._h5[key]

    def _run(self, core: str, run: str) -> h5py.Group:
        g = self._core(core)
        key = f"runs/{safe_name(run)}"
        if key not in g:
            raise ProjectError(f"{self.path}: core {core!r} has no run {run!r} "
                               f"(runs: {', '.join(self.runs(core)) or 'none'})")
        return g[key]

    def n_spectra(self, core: str, run: str) -> int:
        return int(_dataset(self._run(core, run), "spectra").shape[0])

    def n_channels(self, core: str, run: str) -> int:
        return int(_dataset(self._run(core, run), "spectra").shape[1])

    def run_attrs(self, core: str, run: str) -> dict:
        """A run's attributes (kv, scanner, grid, ...) without reading its spectra."""
        return {k: _attr(v) for k, v in self._run(core, run).attrs.items()}

    def run_content_id(self, core: str, run: str) -> str:
        """The run's content id (counts, depths, active flags): stored by every write of the run;
        computed from the data for runs written before it existed."""
        g = self._run(core, run)
        if "content_sha256" in g.attrs:
            return str(_attr(g.attrs["content_sha256"]))
        counts, cols = _read_table(g)
        return content_sha256(counts_sha256(counts), cols["depth_mm"], cols["active"])

    def labels_sha256(self) -> str:
        """A hash of the stored lab samples (all cores; '' when there are none)."""
        df = self.labels()
        if not len(df):
            return ""
        return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()

    def read_run(self, core: str, run: str, depth_range: tuple[float, float] | None = None,
                 active_only: bool = True) -> RunData:
        """Spectra of one run; ``depth_range=(lo, hi)`` mm, inclusive, is one contiguous slice."""
        g = self._run(core, run)
        sl = slice(None)
        if depth_range is not None:
            lo, hi = depth_range
            depth = _read_ds(_dataset(g, "depth_mm"))
            known = int(np.count_nonzero(~np.isnan(depth)))
            i0 = int(np.searchsorted(depth[:known], lo, side="left"))
            i1 = int(np.searchsorted(depth[:known], hi, side="right"))
            sl = slice(i0, max(i0, i1))
        counts, cols = _read_table(g, sl)
        if active_only:
            keep = np.asarray(cols["active"], dtype=bool)
            if not keep.all():
                counts, cols = _take((counts, cols), keep)
        meta = pd.DataFrame({name: cols[name] for name, _ in COLUMNS})
        attrs = {k: _attr(v) for k, v in g.attrs.items()}
        grid = _make_grid(counts.shape[1] if counts.ndim == 2 else attrs.get("channels", 0),
                          attrs.get("gain_kev", NOMINAL_GAIN["avaatech"]), attrs.get("offset_kev", 0.0))
        return RunData(counts=counts, meta=meta, grid=grid, attrs=attrs)

    def read_core(self, core: str, depth_range=None, active_only: bool = True) -> dict[str, RunData]:
        return {run: self.read_run(core, run, depth_range, active_only) for run in self.runs(core)}

    def sha256s(self) -> dict[str, str]:
        """Content hash -> 'core/run' of every stored spectrum (for skipping known files)."""
        out: dict[str, str] = {}
        for core in self.cores():
            for run in self.runs(core):
                for h in _read_column(self._run(core, run)["sha256"], slice(None)):
                    out[h] = f"{core}/{run}"
        return out

    def import_log(self) -> pd.DataFrame:
        if "import_log" not in self._h5:
            return pd.DataFrame(columns=list(LOG_COLUMNS))
        g = self._h5["import_log"]
        return pd.DataFrame({c: [_attr(v) for v in _read_ds(_dataset(g, c))] for c in LOG_COLUMNS})

    def labels(self, core: str | None = None) -> pd.DataFrame:
        if "labels" not in self._h5:
            return pd.DataFrame()
        df, _ = _read_frame(self._h5["labels"])
        if core is not None and "core" in df.columns:
            df = df[df["core"] == core].reset_index(drop=True)
        return df

    def labels_meta(self) -> dict:
        return json.loads(self._h5["labels"].attrs.get("meta", "{}")) if "labels" in self._h5 else {}

    def predictions(self, core: str) -> list[str]:
        g = self._core(core)
        return sorted(g["predictions"].keys()) if "predictions" in g else []

    def read_predictions(self, core: str, model_id: str) -> tuple[pd.DataFrame, dict]:
        g = self._core(core)
        key = f"predictions/{safe_name(model_id)}"
        if key not in g:
            raise ProjectError(f"{self.path}: core {core!r} has no predictions of model {model_id!r}")
        return _read_frame(g[key])

    def info(self) -> dict:
        """Summary of the project (what `xrfcore info --json` prints)."""
        a = self._h5.attrs
        out: dict[str, Any] = {
            "path": str(self.path), "schema_version": int(a["schema_version"]),
            "xrfcore_version": _attr(a.get("xrfcore_version", "")),
            "created": _attr(a.get("created", "")), "modified": _attr(a.get("modified", "")),
            "cores": [],
        }
        for core in self.cores():
            runs = []
            for run in self.runs(core):
                g = self._run(core, run)
                depth = _read_ds(_dataset(g, "depth_mm"))
                active = _read_ds(_dataset(g, "active")).astype(bool)
                spectra = _dataset(g, "spectra")
                known = depth[~np.isnan(depth)]
                settings = {}
                for col in ("kv", "current_ua", "live_s"):
                    vals = _read_ds(_dataset(g, col))
                    vals = np.unique(vals[~np.isnan(vals)])
                    settings[col] = [float(v) for v in vals[:20]]
                for col in ("filter", "setting", "scanner"):
                    settings[col] = sorted(set(_read_column(_dataset(g, col), slice(None))) - {""})[:20]
                runs.append({
                    "run": run, "spectra": int(len(depth)), "active": int(active.sum()),
                    "depth_min_mm": float(known.min()) if known.size else None,
                    "depth_max_mm": float(known.max()) if known.size else None,
                    "channels": int(g.attrs.get("channels", spectra.shape[1])),
                    # HDF5 per-chunk checksums (False: written by an older xrfcore, unchecked)
                    "checksummed": bool(spectra.fletcher32),
                    "gain_kev": float(g.attrs.get("gain_kev", np.nan)),
                    "offset_kev": float(g.attrs.get("offset_kev", np.nan)),
                    "grid_source": _attr(g.attrs.get("grid_source", "")),
                    "calibration": json.loads(_attr(g.attrs.get("calibration", "{}")) or "{}"),
                    **settings,
                })
            cg = self._core(core)
            out["cores"].append({
                "core": core, "runs": runs,
                "spectra": sum(r["spectra"] for r in runs), "active": sum(r["active"] for r in runs),
                "predictions": sorted(cg["predictions"].keys()) if "predictions" in cg else [],
            })
        log = self.import_log()
        out["import_log"] = {
            "imports": int(log["time"].nunique()) if len(log) else 0,
            "files": int(len(log)),
            **{s: int((log["status"] == s).sum()) for s in ("ok", "warning", "rejected", "skipped")},
            "last": str(log["time"].iloc[-1]) if len(log) else None,
        }
        out["labels"] = int(len(self.labels()))
        return out


class WritableProject(Project):
    """The project inside a :func:`transaction` (a temp copy; nothing is final until commit).
    ``calibrations[(core, run)]``: the energy calibration of each run written (for reports)."""

    def __init__(self, h5, path):
        super().__init__(h5, path)
        self.calibrations: dict = {}

    def write_run(self, core: str, run: str, records: Iterable[SpectrumRecord], *,
                  replace: bool = False) -> dict:
        """Merge records into a run (or replace it); re-sorts and re-flags ``active``.

        A record whose sha256 is already in the run is not added again.
        Returns {'added': n, 'duplicates': n, 'total': n}.
        """
        records = list(records)
        runs = self._h5.require_group(f"cores/{safe_name(core)}").require_group("runs")
        name = safe_name(run)
        old = None if (replace or name not in runs) else _read_table(runs[name])
        if old is not None:
            known = set(old[1]["sha256"])
            fresh = [r for r in records if r.sha256 not in known or not r.sha256]
        else:
            fresh = records
        dup = len(records) - len(fresh)
        if not fresh and old is not None:
            return {"added": 0, "duplicates": dup, "total": len(old[0])}
        if not fresh:
            raise ValueError(f"no records to write to {core}/{run}")
        new = records_to_table(fresh)
        if old is not None:
            if old[0].shape[1] != new[0].shape[1]:
                raise ValueError(f"{fresh[0].source_path}: {new[0].shape[1]} channels, "
                                 f"run {core}/{run} has {old[0].shape[1]}")
            new = _concat(old, new)
        table = sort_and_flag(new)
        attrs, cal = _run_attrs(table, run)
        _write_table(runs, name, table, attrs)
        self.calibrations[(core, run)] = cal
        return {"added": len(fresh), "duplicates": dup, "total": int(table[0].shape[0])}

    def write_table(self, core: str, run: str, counts: np.ndarray, meta: pd.DataFrame,
                    *, reflag: bool = False) -> None:
        """Replace a run with given counts + meta (e.g. after the user chose active rows)."""
        cols = {}
        for name, kind in COLUMNS:
            vals = meta[name].tolist() if name in meta else [_empty_value(kind)] * len(meta)
            cols[name] = _as_array(vals, kind)
        table = (np.asarray(counts, dtype=np.int32), cols)
        table = sort_and_flag(table) if reflag else table
        runs = self._h5.require_group(f"cores/{safe_name(core)}").require_group("runs")
        _write_table(runs, safe_name(run), table, _run_attrs(table, run)[0])

    def delete_run(self, core: str, run: str) -> None:
        del self._core(core)["runs"][safe_name(run)]

    def write_labels(self, df: pd.DataFrame, meta: dict | None = None) -> None:
        if "labels" in self._h5:
            del self._h5["labels"]
        _write_frame(self._h5.create_group("labels"), df, meta or {})

    def write_predictions(self, core: str, model_id: str, df: pd.DataFrame, meta: dict | None = None) -> None:
        preds = self._core(core).require_group("predictions")
        name = safe_name(model_id)
        if name in preds:
            del preds[name]
        _write_frame(preds.create_group(name), df, meta or {})

    def append_import_log(self, rows: Iterable[dict]) -> None:
        """Append rows {time, folder, file, status, message} to /import_log."""
        rows = list(rows)
        if not rows:
            return
        g = self._h5.require_group("import_log")
        dt = h5py.string_dtype("utf-8")
        for c in LOG_COLUMNS:
            vals = np.array([str(r.get(c, "")) for r in rows], dtype=object)
            if c not in g:
                g.create_dataset(c, data=vals, dtype=dt, maxshape=(None,), chunks=(1024,),
                                 compression="gzip", compression_opts=GZIP_LEVEL)
            else:
                ds = g[c]
                n = ds.shape[0]
                ds.resize((n + len(vals),))
                ds[n:] = vals


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


# --------------------------------------------------------------------------- files

def _open_h5(path: Path, mode: str) -> h5py.File:
    return h5py.File(path, mode, rdcc_nbytes=CHUNK_CACHE_BYTES, rdcc_nslots=10007)


def check_schema(path: str | os.PathLike) -> int:
    """Schema version of a project file; refuses non-projects and newer schemas."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such project file")
    if not h5py.is_hdf5(path):
        if _has_hdf5_signature(path):
            raise _open_error(path, OSError("superblock"))
        raise ProjectError(f"{path}: not an xrfcore project (not an HDF5 file; if it was one, its "
                           "header is damaged); nothing was written; open another project file or "
                           "restore this one from a backup")
    try:
        with h5py.File(path, "r") as f:
            if "schema_version" not in f.attrs:
                raise ProjectError(f"{path}: not an xrfcore project (no schema_version)")
            version = int(f.attrs["schema_version"])
    except (OSError, RuntimeError, KeyError) as exc:
        raise _open_error(path, exc) from None
    if version > SCHEMA_VERSION:
        raise ProjectError(f"{path}: made by a newer xrfcore (schema {version}), "
                           f"this version reads up to {SCHEMA_VERSION}; please update xrfcore")
    return version


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _has_hdf5_signature(path: Path) -> bool:
    """The HDF5 signature at offset 0 or 512 * 2^k (where HDF5 looks for it)."""
    try:
        with open(path, "rb") as fh:
            for off in (0, 512, 1024, 2048, 4096):
                fh.seek(off)
                if fh.read(8) == _HDF5_SIGNATURE:
                    return True
    except OSError:
        return False
    return False


def _open_error(path, exc: BaseException) -> DamagedProjectError:
    """One sentence for a project file HDF5 cannot open (instead of h5py's message)."""
    text = str(exc).lower()
    try:
        size = f"{Path(path).stat().st_size:,} bytes"
    except OSError:
        size = "size unknown"
    if "truncated" in text or "eof" in text:
        what = f"truncated (the file ends early, {size}: an interrupted copy or a full disk?)"
    elif "superblock" in text or "signature" in text:
        what = "its HDF5 header (superblock) is damaged"
    elif "checksum" in text:
        what = "its internal structure is damaged (metadata checksum mismatch)"
    else:  # h5py's 'Unable to synchronously open file (reason)': keep the reason only
        m = re.search(r"\(([^()]*)\)\s*$", str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        what = f"its internal structure cannot be read ({m.group(1) if m else type(exc).__name__})"
    return DamagedProjectError(f"{path}: the project file is damaged: {what}; nothing was written; "
                               "restore it from a backup, or import the cores again into a new project")


# Migrations: MIGRATIONS[v] turns an open schema-v file into schema v+1 (in a transaction).
MIGRATIONS: dict[int, Callable[[h5py.File], None]] = {}


def migrate(path: str | os.PathLike) -> int:
    """Bring an older project up to SCHEMA_VERSION (atomically); returns the old version."""
    path = Path(path)
    with _lock_for(path):
        lock = _acquire_file_lock(path)
        try:
            return _migrate_unlocked(path)
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_live_temps: set[str] = set()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(path.resolve()), threading.Lock())


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stray_temps(path: str | os.PathLike, *, locked: bool = False) -> list[Path]:
    """Remove temp files left by killed transactions on this project (not live ones).
    ``locked``: the caller holds the project's OS lock, so no other process is writing it and
    every temp that is not this process's live one is stray (its pid may now be another program's)."""
    path = Path(path)
    removed = []
    pat = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[0-9a-f]+" + re.escape(TMP_SUFFIX) + "$")
    for p in path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"):
        m = pat.match(p.name)
        if not m or str(p) in _live_temps:
            continue
        if not locked and int(m.group(1)) != os.getpid() and _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


LOCK_SUFFIX = ".xrfcore-lock"
LOCK_GRACE_S = 10        # a lock file without a readable pid younger than this may be being written

try:                     # POSIX: an OS lock, released by the kernel when its process dies
    import fcntl as _fcntl
except ImportError:      # Windows: the pid-file lock below
    _fcntl = None


class _OsLock:
    """An ``flock`` held on the lock file. ``unlink()`` releases it (same call as the Path of the
    pid-file lock): the file is removed while still held, then unlocked and closed."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def unlink(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        try:
            _fcntl.flock(self.fd, _fcntl.LOCK_UN)   # also for forked children sharing the descriptor
        finally:
            os.close(self.fd)
            self.fd = None

    def exists(self) -> bool:
        return self.path.exists()


def _lock_holder(lock: Path) -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return f" (pid {int(lock.read_text().split()[0])})"
    return ""


def _flock_nb(fd: int, grace_s: float = 0.5) -> None:
    """flock without waiting for a live holder; a holder that has just died releases its lock a
    moment after it is gone (measured: ~1 ms), so a busy lock is retried briefly first."""
    deadline = _dt.datetime.now().timestamp() + grace_s
    while True:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if _dt.datetime.now().timestamp() >= deadline:
                raise
            threading.Event().wait(0.02)


def _acquire_file_lock(path: Path):
    """A lock beside the project, so two processes never write it at the same time (the second
    would silently drop the first's changes at os.replace).

    POSIX: an ``flock`` on ``.NAME.xrfcore-lock``, which dies with its process, so a lock file left
    by a killed process, an empty one, or one naming a pid now used by another program never
    blocks; the pid written into it only names the holder in the message. Elsewhere (or on a
    file system without flock): the pid file alone, created exclusively.
    """
    lock = path.parent / f".{path.name}{LOCK_SUFFIX}"
    if _fcntl is None:
        return _acquire_pid_lock(path, lock)
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise ProjectError(f"{path}: cannot lock the project for writing ({lock}: "
                               f"{exc.strerror or exc}); nothing was changed") from None
        try:
            _flock_nb(fd)
        except BlockingIOError:
            os.close(fd)
            raise ProjectError(f"{path}: another xrfcore process{_lock_holder(lock)} is writing this "
                               "project; try again when it has finished") from None
        except OSError:          # no flock here (some network file systems): the pid file
            os.close(fd)
            return _acquire_pid_lock(path, lock)
        try:                     # its holder may have released (removed) it between open and flock
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except OSError:
            same = False
        if not same:
            os.close(fd)
            continue
        with contextlib.suppress(OSError):   # the holder's pid, for others' message only (disk full: none)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return _OsLock(lock, fd)
    raise ProjectError(f"{path}: cannot lock the project for writing ({lock}); nothing was changed")


def _acquire_pid_lock(path: Path, lock: Path) -> Path:
    """The pid-file lock (no flock): created exclusively, the pid written in one write; a file
    without a pid is taken over after LOCK_GRACE_S (its writer died between create and write)."""
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                text = lock.read_text().split()
                pid = int(text[0]) if text else None
                age = _dt.datetime.now().timestamp() - lock.stat().st_mtime
            except (OSError, ValueError):
                pid, age = None, 0.0
                if not lock.exists():
                    continue
            if (pid is not None and pid != os.getpid() and _pid_alive(pid)) or (pid is None and age < LOCK_GRACE_S):
                raise ProjectError(f"{path}: another xrfcore process{f' (pid {pid})' if pid else ''} is "
                                   "writing this project; try again when it has finished")
            with contextlib.suppress(OSError):      # left by a killed process: take it over
                lock.unlink()
            continue
        except OSError as exc:
            raise ProjectError(f"{path}: cannot lock the project for writing ({lock}: "
                               f"{exc.strerror or exc}); nothing was changed") from None
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:                      # e.g. disk full: leave no empty lock behind
            os.close(fd)
            with contextlib.suppress(OSError):
                lock.unlink()
            raise ProjectError(f"{path}: cannot lock the project for writing ({lock}: "
                               f"{exc.strerror or exc}); nothing was changed") from None
        os.close(fd)
        return lock
    raise ProjectError(f"{path}: cannot lock the project for writing ({lock})")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def transaction(path: str | os.PathLike, *, create: bool = True,
                reserve_bytes: int = 0) -> Iterator[WritableProject]:
    """The one way to write a project: copy -> modify -> flush/fsync -> os.replace.

    On any exception (``Cancelled`` included) the temp copy is removed and the project
    is exactly as before. ``create``: make a new project when ``path`` does not exist.
    ``reserve_bytes``: about how much the block will add (e.g. an import: its files' size);
    that much disk space (plus RESERVE_BYTES) is allocated for the temp copy before HDF5
    writes to it, so a full disk is a clear :class:`DiskFullError` up front, never a write
    error inside HDF5 (which leaves the library in a state that crashes the process).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: folder {folder} does not exist")
    with _lock_for(path):
        lock = _acquire_file_lock(path)
        tmp = folder / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}"
        _live_temps.add(str(tmp))
        h5 = None
        try:
            clean_stray_temps(path, locked=isinstance(lock, _OsLock))
            reserve = RESERVE_BYTES + max(0, int(reserve_bytes))
            if path.exists():
                _migrate_unlocked(path)  # checks the schema; migrates an older file first
                size = path.stat().st_size
                _check_free_space(path, folder, size + reserve)
                shutil.copyfile(path, tmp)
                _reserve_space(path, tmp, size + reserve)
                h5 = _open_h5(tmp, "r+")
            elif create:
                _check_free_space(path, folder, reserve)
                with h5py.File(tmp, "w", fs_strategy="fsm", fs_persist=True) as new:
                    new.attrs["schema_version"] = SCHEMA_VERSION
                    new.attrs["xrfcore_version"] = __version__
                    new.attrs["created"] = _now()
                    new.create_group("cores")
                _reserve_space(path, tmp, reserve)
                h5 = _open_h5(tmp, "r+")
            else:
                raise FileNotFoundError(f"{path}: no such project file")
            project = WritableProject(h5, path)
            yield project
            h5.attrs["modified"] = _now()
            h5.attrs["xrfcore_version"] = __version__
            h5.flush()
            h5.close()
            h5 = None
            _fsync_file(tmp)
            os.replace(tmp, path)
            _fsync_dir(folder)
        except (OSError, RuntimeError) as exc:
            if _is_disk_full(exc) and not isinstance(exc, DiskFullError):
                raise _disk_full(path, folder) from exc
            raise
        finally:
            if h5 is not None:
                with contextlib.suppress(Exception):
                    h5.close()
            _live_temps.discard(str(tmp))
            if tmp.exists():
                with contextlib.suppress(OSError):
                    tmp.unlink()
            with contextlib.suppress(OSError):
                lock.unlink()


RESERVE_BYTES = 16 << 20   # disk space every write reserves beyond the project's size and reserve_bytes


class DiskFullError(OSError):
    """Not enough free disk space to write the project; nothing was changed."""


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _disk_full(path: Path, folder: Path, need: int | None = None, free: int | None = None) -> DiskFullError:
    detail = f" (it needs about {_mb(need)} free, {_mb(free)} are free)" if need is not None else ""
    err = DiskFullError(f"{path}: the disk is full (No space left on device): not enough free space in {folder} to write the "
                        f"project{detail}; nothing was changed (the project is as it was): free some "
                        "space and try again")
    err.errno = errno.ENOSPC
    return err


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return True
    return isinstance(exc, (OSError, RuntimeError)) and ("errno = 28" in str(exc)
                                                         or "No space left on device" in str(exc))


def _check_free_space(path: Path, folder: Path, need: int) -> None:
    """Refuse up front when the temp copy of the project cannot fit."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < need:
        raise _disk_full(path, folder, need, free)


def _reserve_space(path: Path, tmp: Path, size: int) -> None:
    """Allocate ``size`` bytes for the temp copy now (HDF5 truncates the file to its real end on
    close), so HDF5 never meets a full disk while it writes: its writes fail inside the library
    and leave it in a state that crashes the process at exit."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(tmp, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, max(size, 1))
    except OSError as exc:
        if _is_disk_full(exc):
            raise _disk_full(path, tmp.parent) from None
        # EOPNOTSUPP / EINVAL: a file system that cannot preallocate; the free-space check stands
    finally:
        os.close(fd)


def _migrate_unlocked(path: Path) -> int:
    """Check the schema and migrate an older file in place, atomically (caller holds the lock)."""
    old = check_schema(path)
    if old >= SCHEMA_VERSION:
        return old
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}"
    _live_temps.add(str(tmp))
    try:
        shutil.copyfile(path, tmp)
        with _open_h5(tmp, "r+") as h5:
            v = old
            while v < SCHEMA_VERSION:
                if v not in MIGRATIONS:
                    raise ProjectError(f"{path}: no migration from schema {v} to {v + 1}")
                MIGRATIONS[v](h5)
                v += 1
                h5.attrs["schema_version"] = v
            h5.attrs["migrated_from"] = old
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        _live_temps.discard(str(tmp))
        if tmp.exists():
            tmp.unlink()
    return old


# --------------------------------------------------------------------------- shortcuts

def group_records(records: Iterable[SpectrumRecord], core: str | None = None) -> dict[tuple[str, str], list]:
    """Records grouped by (core, run_key); ``core`` overrides every record's core."""
    groups: dict[tuple[str, str], list] = {}
    for r in records:
        groups.setdefault((core or r.core, r.run_key), []).append(r)
    return groups


def add_records(project_path: str | os.PathLike, records: Iterable[SpectrumRecord], log_message: str,
                *, core: str | None = None, progress: ProgressFn = no_progress,
                token: CancelToken | None = None) -> dict:
    """Write records (e.g. simulated ones) into a project in one transaction, logged.

    Returns {(core, run): write_run result}.
    """
    records = list(records)
    groups = group_records(records, core)
    out = {}
    now = _now()
    with transaction(project_path) as p:
        for i, ((c, run), recs) in enumerate(sorted(groups.items())):
            if token is not None:
                token.raise_if_cancelled()
            progress(i, len(groups), f"writing {c}/{run}")
            out[(c, run)] = p.write_run(c, run, recs)
        sources = dict.fromkeys(r.source_path for r in records)
        p.append_import_log({"time": now, "folder": "(records)", "file": s, "status": "ok",
                             "message": log_message} for s in sources)
        if token is not None:
            token.raise_if_cancelled()
        progress(len(groups), len(groups), "saved")
    return out
