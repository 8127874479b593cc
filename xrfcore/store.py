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

Runs are appended in batches, never rewritten (store_runs): resizable datasets, an ``order`` dataset
(sorted position -> physical row; absent when stored sorted) and per-channel sums for the energy
calibration (``cal_sum_valid``, ``cal_sum_all``); readers see rows sorted by depth, so a depth range
is one contiguous slice of sorted positions. ``generation`` (root attr): a uuid written by every full
transaction; lab samples and predictions stored alone go to small files in ``NAME.parts/`` tied to
it (store_parts; docs/store_design.md), folded into the file by the next full transaction.
Integrity: every dataset of a run, of the lab samples and of the predictions is written with HDF5
Fletcher-32 checksums (per chunk), verified by HDF5 on every read; a mismatch, an undecodable chunk or a
missing dataset raises :class:`DamagedProjectError` (one sentence: which file, what, what to do), never
garbage. Files written before checksums still read (``info()`` says they are unchecked); a run
without checksums but with ``counts_sha256`` is verified against it when read whole.
Every write goes through :func:`transaction`: the project is copied to a temp file in the
same folder (when the transaction first touches the file: not for lab samples / predictions alone),
modified, flushed, fsynced and moved over the original with ``os.replace``.
A failure or a cancel removes the temp file; the original is never touched.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import h5py
import numpy as np
import pandas as pd

from xrfcore import __version__
from xrfcore.io.records import SpectrumRecord
from xrfcore import store_parts, store_runs
from xrfcore.store_runs import read_table as _read_table  # noqa: F401 (re-exported)
from xrfcore.jobs import CancelToken, ProgressFn, no_progress
from xrfcore.store_check import (  # noqa: F401 (re-exported)
    ProjectError, raised_by_h5py, DamagedProjectError, _TMP_NAME, _user_path, _what, damaged,
    _read_ds, _dataset, counts_sha256, content_sha256, _HDF5_SIGNATURE, _has_hdf5_signature,
    _open_error)
from xrfcore.store_lock import (  # noqa: F401 (re-exported)
    TMP_SUFFIX, _locks, _locks_guard, _live_temps, _lock_for, _pid_alive, clean_stray_temps,
    LOCK_SUFFIX, LOCK_GRACE_S, _fcntl, _OsLock, _lock_holder, _flock_nb, _acquire_file_lock,
    _acquire_pid_lock, _fsync_file, _fsync_dir, RESERVE_BYTES, DiskFullError, _mb, _disk_full,
    _is_disk_full, _check_free_space, _reserve_space)

from xrfcore.store_tables import (  # noqa: F401 (re-exported)
    CHUNK_ROWS, GZIP_LEVEL, NOMINAL_GAIN, COLUMNS, CAL_COLUMNS, COLUMN_KINDS, LOG_COLUMNS, Grid,
    RunData, _make_grid, _now, safe_name, _empty_value, _JSON, _FIELDS, _GET_FIELDS, records_to_table,
    _as_array, _take, _concat, sort_and_flag, _write_column, _read_column, _write_table,
    REQUIRED_COLUMNS, _write_frame, _read_frame, _attr, _run_attrs)

SCHEMA_VERSION = 1
CHUNK_CACHE_BYTES = 64 << 20          # a whole 1,000 x 2048 run decompresses without re-reads



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
        counts, cols = store_runs.read_table(g)
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
            depth = store_runs.sorted_column(g, "depth_mm")
            known = int(np.count_nonzero(~np.isnan(depth)))
            i0 = int(np.searchsorted(depth[:known], lo, side="left"))
            i1 = int(np.searchsorted(depth[:known], hi, side="right"))
            sl = slice(i0, max(i0, i1))
        counts, cols = store_runs.read_table(g, sl)
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

    # --- lab samples and predictions: the project file with the small writes of
    # NAME.parts/ laid over it (store_parts; folded into the file by the next full write)
    def _parts_index(self) -> dict | None:
        gen = self._h5.attrs.get("generation")
        return store_parts.read_index(self.path, _attr(gen) if gen is not None else None)

    def _overlaid(self, pick, group: str, read):
        """``read(h5 group)`` of the entry ``pick(index)`` names, else of ``group`` in the project
        file (None when neither has it). An entry replaced by a writer meanwhile: index re-read."""
        for _ in range(5):
            name = pick(self._parts_index() or {})
            if not name:
                break
            try:
                with store_parts.open_entry(self.path, name) as f:
                    return read(f[group])
            except FileNotFoundError:
                continue
        return read(self._h5[group]) if group in self._h5 else None

    def _labels_frame(self):
        return self._overlaid(lambda ix: ix.get("labels"), "labels",
                              lambda g: (_read_frame(g)[0], json.loads(g.attrs.get("meta", "{}"))))

    def labels(self, core: str | None = None) -> pd.DataFrame:
        got = self._labels_frame()
        if got is None:
            return pd.DataFrame()
        df = got[0]
        if core is not None and "core" in df.columns:
            df = df[df["core"] == core].reset_index(drop=True)
        return df

    def labels_meta(self) -> dict:
        got = self._overlaid(lambda ix: ix.get("labels"), "labels",
                             lambda g: json.loads(g.attrs.get("meta", "{}")))
        return got if got is not None else {}

    def predictions(self, core: str) -> list[str]:
        g = self._core(core)
        names = set(g["predictions"].keys()) if "predictions" in g else set()
        names |= set((self._parts_index() or {}).get("predictions", {}).get(safe_name(core), {}))
        return sorted(names)

    def read_predictions(self, core: str, model_id: str) -> tuple[pd.DataFrame, dict]:
        c, m = safe_name(core), safe_name(model_id)
        self._core(core)
        got = self._overlaid(lambda ix: ix.get("predictions", {}).get(c, {}).get(m),
                             f"cores/{c}/predictions/{m}", _read_frame)
        if got is None:
            raise ProjectError(f"{self.path}: core {core!r} has no predictions of model {model_id!r}")
        return got

    def info(self) -> dict:
        """Summary of the project (what `xrfcore info --json` prints)."""
        a = self._h5.attrs
        out: dict[str, Any] = {
            "path": str(self.path), "schema_version": int(a["schema_version"]),
            "xrfcore_version": _attr(a.get("xrfcore_version", "")),
            "created": _attr(a.get("created", "")),
            "modified": max(_attr(a.get("modified", "")), (self._parts_index() or {}).get("modified", "")),
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
            out["cores"].append({
                "core": core, "runs": runs,
                "spectra": sum(r["spectra"] for r in runs), "active": sum(r["active"] for r in runs),
                "predictions": self.predictions(core),
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
    ``calibrations[(core, run)]``: the energy calibration of each run written (for reports).

    The temp copy is made on first use (``_h5``): a transaction that only stores lab samples or
    predictions stages them and commits them as small files beside the project (store_parts)."""

    def __init__(self, h5, path, materialize=None, peek=None):
        self._file = h5
        self.path = Path(path)
        self._materialize = materialize   # () -> the temp copy's h5py.File (folds NAME.parts/ in)
        self._peek = peek                 # the project file, read-only (checks while staging)
        self.calibrations: dict = {}
        self.staged_labels = None         # (df, meta)
        self.staged_predictions: dict = {}  # (core, model) -> (df, meta)
        self._fresh: dict = {}            # (core, run) -> physical rows appended, not finalized

    @property
    def _h5(self) -> h5py.File:
        if self._file is None:
            self._file = self._materialize()
            if self.staged_labels is not None:
                self.write_labels(*self.staged_labels)
            for (c, m), (df, meta) in self.staged_predictions.items():
                self.write_predictions(c, m, df, meta)
            self.staged_labels, self.staged_predictions = None, {}
        return self._file

    @_h5.setter
    def _h5(self, h5) -> None:
        self._file = h5

    @property
    def materialized(self) -> bool:
        return self._file is not None

    def _parts_index(self) -> dict | None:
        return None     # folded into the temp copy when it was made

    def close(self) -> None:
        for h in (self._file, self._peek):
            if h is not None and h.id.valid:
                h.close()

    def write_run(self, core: str, run: str, records: Iterable[SpectrumRecord], *,
                  replace: bool = False, finalize: bool = True) -> dict:
        """Add records to a run (or replace it): appended, never rewritten (store_runs).

        A record whose sha256 is already in the run is not added again. ``finalize``: sort,
        re-flag ``active`` and calibrate now; else at :meth:`finalize_runs` (an import calls it
        once at its end; the transaction does before it commits).
        Returns {'added': n, 'duplicates': n, 'total': n}.
        """
        records = list(records)
        runs = self._h5.require_group(f"cores/{safe_name(core)}").require_group("runs")
        name = safe_name(run)
        if replace and name in runs:
            del runs[name]
            self._fresh.pop((core, run), None)
        g = runs[name] if name in runs else None
        if g is not None:
            known = set(_read_column(_dataset(g, "sha256"), slice(None)))
            fresh = [r for r in records if r.sha256 not in known or not r.sha256]
        else:
            fresh = records
        dup = len(records) - len(fresh)
        if not fresh and g is not None:
            return {"added": 0, "duplicates": dup, "total": int(_dataset(g, "spectra").shape[0])}
        if not fresh:
            raise ValueError(f"no records to write to {core}/{run}")
        new = records_to_table(fresh)
        if g is not None and _dataset(g, "spectra").shape[1] != new[0].shape[1]:
            raise ValueError(f"{fresh[0].source_path}: {new[0].shape[1]} channels, "
                             f"run {core}/{run} has {_dataset(g, 'spectra').shape[1]}")
        if g is None:
            g = store_runs.create(runs, name, new[0].shape[1])
        elif not store_runs.appendable(g):
            g = store_runs.convert(runs, name)
        n0, n1 = store_runs.append(g, new)
        self._fresh.setdefault((core, run), []).append(np.arange(n0, n1))
        if finalize:
            self.finalize_runs([(core, run)])
        return {"added": len(fresh), "duplicates": dup, "total": int(n1)}

    def finalize_runs(self, which=None) -> None:
        """Sort, flag and calibrate the runs appended to (``which``: [(core, run)]; all)."""
        for key in list(self._fresh if which is None else which):
            rows = self._fresh.pop(key, None)
            if rows is None:
                continue
            g = self._run(*key)
            self.calibrations[key] = store_runs.finalize(g, key[1], np.concatenate(rows))

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
        self._fresh.pop((core, run), None)
        _write_table(runs, safe_name(run), table, _run_attrs(table, run)[0])

    def delete_run(self, core: str, run: str) -> None:
        del self._core(core)["runs"][safe_name(run)]
        self._fresh.pop((core, run), None)

    def write_labels(self, df: pd.DataFrame, meta: dict | None = None) -> None:
        if self._file is None and self._peek is not None:
            self.staged_labels = (df.copy(), dict(meta or {}))
            return
        if "labels" in self._h5:
            del self._h5["labels"]
        _write_frame(self._h5.create_group("labels"), df, meta or {})

    def write_predictions(self, core: str, model_id: str, df: pd.DataFrame, meta: dict | None = None) -> None:
        if self._file is None and self._peek is not None:
            if f"cores/{safe_name(core)}" not in self._peek:
                raise ProjectError(f"{self.path}: no core {core!r}")
            self.staged_predictions[(safe_name(core), safe_name(model_id))] = (df.copy(), dict(meta or {}))
            return
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
        project = None
        try:
            clean_stray_temps(path, locked=isinstance(lock, _OsLock))
            reserve = RESERVE_BYTES + max(0, int(reserve_bytes))
            exists = path.exists()
            if exists:
                _migrate_unlocked(path)  # checks the schema; migrates an older file first
            elif not create:
                raise FileNotFoundError(f"{path}: no such project file")
            peek, base, index = None, None, None
            if exists:
                try:
                    peek = _open_h5(path, "r")
                except OSError as exc:
                    raise _open_error(path, exc) from None
                gen = peek.attrs.get("generation")
                base = _attr(gen) if gen is not None else None
                index = store_parts.read_index(path, base)
                if not base:
                    peek.close()

            def materialize() -> h5py.File:
                if peek is not None and peek.id.valid:
                    peek.close()
                if exists:
                    size = path.stat().st_size
                    _check_free_space(path, folder, size + reserve)
                    shutil.copyfile(path, tmp)
                    _reserve_space(path, tmp, size + reserve)
                    h5 = _open_h5(tmp, "r+")
                    _fold_parts(h5, path, index)
                    return h5
                _check_free_space(path, folder, reserve)
                with h5py.File(tmp, "w", fs_strategy="fsm", fs_persist=True) as new:
                    new.attrs["schema_version"] = SCHEMA_VERSION
                    new.attrs["xrfcore_version"] = __version__
                    new.attrs["created"] = _now()
                    new.create_group("cores")
                _reserve_space(path, tmp, reserve)
                return _open_h5(tmp, "r+")

            # small writes stay small only on a file with a generation (written by this version)
            project = WritableProject(None, path, materialize, peek if base else None)
            if not exists:
                project._h5
            yield project
            if project.materialized:
                project.finalize_runs()
                h5 = project._h5
                h5.attrs["modified"] = _now()
                h5.attrs["xrfcore_version"] = __version__
                h5.attrs["generation"] = uuid.uuid4().hex
                h5.flush()
                project.close()
                _fsync_file(tmp)
                os.replace(tmp, path)
                _fsync_dir(folder)
                store_parts.clear(path)      # its entries are in the file now (and stale by generation)
            elif project.staged_labels is not None or project.staged_predictions:
                project.close()
                _check_free_space(path, folder, RESERVE_BYTES)
                try:
                    store_parts.write_entries(path, base, index, project.staged_labels,
                                              project.staged_predictions, _now(), _write_frame)
                except BaseException:
                    store_parts.remove_unreferenced(path, store_parts.read_index(path, base))
                    raise
        except (OSError, RuntimeError) as exc:
            if _is_disk_full(exc) and not isinstance(exc, DiskFullError):
                raise _disk_full(path, folder) from exc
            raise
        finally:
            if project is not None:
                with contextlib.suppress(Exception):
                    project.close()
            _live_temps.discard(str(tmp))
            if tmp.exists():
                with contextlib.suppress(OSError):
                    tmp.unlink()
            with contextlib.suppress(OSError):
                lock.unlink()


def _fold_parts(h5: h5py.File, path: Path, index: dict | None) -> None:
    """Copy the small writes of NAME.parts/ into a transaction's temp copy of the project."""
    if not index:
        return
    todo = []
    if index.get("labels"):
        todo.append(("labels", index["labels"]))
    for core, models in index.get("predictions", {}).items():
        todo += [(f"cores/{core}/predictions/{m}", name) for m, name in models.items()]
    for group, name in todo:
        if group.startswith("cores/") and f"cores/{group.split('/')[1]}" not in h5:
            continue        # its core was deleted since
        if group in h5:
            del h5[group]
        parent, leaf = group.rpartition("/")[::2]
        with store_parts.open_entry(path, name) as f:
            _read_frame(f[group])                      # checked (checksums) before it is copied
            f.copy(f[group], h5.require_group(parent) if parent else h5, name=leaf)


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
