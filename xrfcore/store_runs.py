"""Runs written in bounded batches: rows are appended to a run's datasets, never rewritten.

A run's datasets are resizable along their rows. Each batch of new records is appended as is
(physical order = arrival order); :func:`finalize` then, from the key columns only (no counts),
sorts the run (depth, ...) and re-flags ``active``, and writes ``order`` (sorted position ->
physical row; absent when the rows happen to be stored sorted). Readers (:func:`read_table`)
return rows in sorted order, exactly as when runs were rewritten sorted.

Energy calibration is incremental: the run keeps the per-channel sums of its counts
(``cal_sum_valid``, ``cal_sum_all``), so the run's line fit needs no re-read; only the new rows, and
old rows that had no good fit of their own (source ``run``/``nominal``), are fitted again. Rows
with their own fit or a stated calibration keep it.

``counts_sha256`` of an appended run is a chain: sha256(previous value + sha256 of the batch's
int32 counts); runs are Fletcher-32 checksummed per chunk, which is what verifies reads.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

import h5py
import numpy as np

from xrfcore.store_check import _dataset, _read_ds, content_sha256, counts_sha256
from xrfcore.store_tables import (
    CHUNK_ROWS, COLUMNS, GZIP_LEVEL, NOMINAL_GAIN, REQUIRED_COLUMNS, _attr, _empty_value, _make_grid, _now,
    _read_column, _read_table as _read_plain, sort_order)

ORDER = "order"
SUMS = ("cal_sum_valid", "cal_sum_all")
BLOCK = 4096          # rows per block when reading scattered rows
_KEYS = ("depth_mm", "position_mm", "section", "replicate", "date", "source_path", "scanner", "kv",
         "gain_kev", "offset_kev", "valid", "cal_gain_kev", "cal_offset_kev", "cal_source")


def appendable(g: h5py.Group) -> bool:
    return "spectra" in g and g["spectra"].maxshape[0] is None and all(s in g for s in SUMS)


def create(runs: h5py.Group, name: str, channels: int) -> h5py.Group:
    g = runs.create_group(name)
    c = max(1, channels)
    g.create_dataset("spectra", shape=(0, c), maxshape=(None, c), dtype=np.uint16, chunks=(CHUNK_ROWS, c),
                     compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True, fletcher32=True)
    for name_, kind in COLUMNS:
        if kind in "sj":
            g.create_dataset(name_, shape=(0,), maxshape=(None,), dtype="S16", chunks=(1024,),
                             compression="gzip", compression_opts=GZIP_LEVEL, fletcher32=True)
            g[name_].attrs["kind"] = kind
        else:
            dt = {"f": np.float64, "i": np.int32, "b": bool}[kind]
            g.create_dataset(name_, shape=(0,), maxshape=(None,), dtype=dt, chunks=(1024,), fletcher32=True)
    for s in SUMS:
        g.create_dataset(s, data=np.zeros(c))
    g.attrs["counts_sha256"] = ""
    return g


def _append_1d(g: h5py.Group, name: str, values: np.ndarray, kind: str) -> None:
    ds = g[name]
    n = ds.shape[0]
    if kind in "sj":
        enc = np.array([str(v).encode("utf-8") for v in values], dtype=bytes)
        width = max(1, enc.dtype.itemsize)
        if width > ds.dtype.itemsize:          # a longer text than any before: widen this column
            old = ds[:]
            del g[name]
            w = max(width, 2 * old.dtype.itemsize)
            ds = g.create_dataset(name, shape=(n,), maxshape=(None,), dtype=f"S{w}", chunks=(1024,),
                                  compression="gzip", compression_opts=GZIP_LEVEL, fletcher32=True)
            if n:
                ds[:] = old
            ds.attrs["kind"] = kind
        values = enc.astype(ds.dtype)
    ds.resize((n + len(values),))
    ds[n:] = values


def append(g: h5py.Group, table) -> tuple[int, int]:
    """Append a table's rows (arrival order); returns the new rows' physical range."""
    counts, cols = table
    ds = g["spectra"]
    n0, m = ds.shape[0], len(counts)
    if ds.dtype == np.uint16 and m and (counts.min() < 0 or counts.max() > np.iinfo(np.uint16).max):
        ds = _widen_counts(g)
    ds.resize((n0 + m, ds.shape[1]))
    ds[n0:] = counts.astype(ds.dtype, copy=False)
    for name, kind in COLUMNS:
        _append_1d(g, name, cols[name], kind)
    valid = np.asarray(cols["valid"], bool)
    g["cal_sum_all"][...] = g["cal_sum_all"][...] + counts.sum(0, dtype=np.float64)
    g["cal_sum_valid"][...] = g["cal_sum_valid"][...] + counts[valid].sum(0, dtype=np.float64)
    chain = _attr(g.attrs.get("counts_sha256", ""))
    g.attrs["counts_sha256"] = hashlib.sha256((chain + counts_sha256(counts)).encode()).hexdigest()
    return n0, n0 + m


def _widen_counts(g: h5py.Group) -> h5py.Dataset:
    old = g["spectra"]
    n, c = old.shape
    new = g.create_dataset("spectra.int32", shape=(n, c), maxshape=(None, c), dtype=np.int32,
                           chunks=(CHUNK_ROWS, c), compression="gzip", compression_opts=GZIP_LEVEL,
                           shuffle=True, fletcher32=True)
    for i in range(0, n, BLOCK):
        new[i:i + BLOCK] = _read_ds(old, slice(i, i + BLOCK)).astype(np.int32)
    del g["spectra"]
    g.move("spectra.int32", "spectra")
    return g["spectra"]


def convert(runs: h5py.Group, name: str) -> h5py.Group:
    """A run written whole by an older xrfcore, rewritten once into the appendable layout."""
    counts, cols = _read_plain(runs[name])
    attrs = dict(runs[name].attrs)
    del runs[name]
    g = create(runs, name, counts.shape[1])
    for k in ("origins",):
        if k in attrs:
            g.attrs[k] = attrs[k]
    append(g, (counts, cols))
    return g


def _gather(ds: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """ds[rows] for any row indices (order kept), reading the rows' span block by block."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows),) + ds.shape[1:], dtype=ds.dtype)
    if not len(rows):
        return out
    lo, hi = int(rows.min()), int(rows.max()) + 1
    if hi - lo == len(rows) and np.array_equal(rows, np.arange(lo, hi)):
        return _read_ds(ds, slice(lo, hi))
    by = np.argsort(rows, kind="stable")
    srt = rows[by]
    for b0 in range(lo, hi, BLOCK):
        i0, i1 = np.searchsorted(srt, [b0, b0 + BLOCK])
        if i0 == i1:
            continue
        block = _read_ds(ds, slice(b0, min(hi, b0 + BLOCK)))
        out[by[i0:i1]] = block[srt[i0:i1] - b0]
    return out


def physical_rows(g: h5py.Group, sl: slice = slice(None)):
    """Physical rows of sorted positions ``sl`` (None: stored sorted, ``sl`` as is)."""
    if ORDER not in g:
        return None
    return _read_ds(_dataset(g, ORDER))[sl]


def sorted_column(g: h5py.Group, name: str) -> np.ndarray:
    data = _read_ds(_dataset(g, name))
    rows = physical_rows(g)
    return data if rows is None else data[rows]


def read_table(g: h5py.Group, sl: slice = slice(None)):
    """(counts int32, columns) of sorted positions ``sl`` (a run with or without ``order``)."""
    rows = physical_rows(g, sl)
    if rows is None:
        return _read_plain(g, sl)
    counts = _gather(_dataset(g, "spectra"), rows).astype(np.int32, copy=False)
    cols = {}
    for name, kind in COLUMNS:
        if name in g or name in REQUIRED_COLUMNS:
            ds = _dataset(g, name)
            data = _gather(ds, rows)
            if data.dtype.kind == "S":
                out = np.empty(len(data), dtype=object)
                out[:] = [x.decode("utf-8") for x in data.tolist()]
                data = out
            cols[name] = data
        else:
            cols[name] = np.full(len(rows), _empty_value(kind), dtype=object if kind in "sj" else None)
    return counts, cols


def finalize(g: h5py.Group, run: str, fresh: np.ndarray):
    """Sort, flag, calibrate and describe a run after appends; ``fresh``: physical rows added
    since the last finalize. Returns calibration.RunCalibration (rows in sorted order)."""
    cols = {k: _read_column(_dataset(g, k), slice(None)) for k in _KEYS if k in g}
    n = len(cols["depth_mm"])
    order, active_sorted = sort_order(cols)
    active = np.empty(n, dtype=bool)
    active[order] = active_sorted
    g["active"][...] = active
    if ORDER in g:
        del g[ORDER]
    if not np.array_equal(order, np.arange(n)):
        g.create_dataset(ORDER, data=order.astype(np.int64), fletcher32=True)
    cal, summary, nominal_note = _calibrate(g, cols, order, np.asarray(fresh, dtype=np.int64))
    scanner = next((s for s in cols["scanner"][order] if s), "")
    kv = cols["kv"][~np.isnan(cols["kv"])]
    summary["nominal"] = nominal_note
    g.attrs.update({
        "name": run, "channels": int(g["spectra"].shape[1]), "gain_kev": float(cal.run.gain_kev),
        "offset_kev": float(cal.run.offset_kev), "grid_source": cal.grid_source,
        "kv": float(np.median(kv)) if kv.size else np.nan,
        "calibration": json.dumps(summary, default=str), "scanner": scanner,
        "simulated": bool(any(str(x).startswith("simulated") for x in cols["scanner"])), "written": _now(),
        "content_sha256": content_sha256(_attr(g.attrs["counts_sha256"]), cols["depth_mm"][order], active_sorted)})
    return cal


def _calibrate(g: h5py.Group, cols: dict, order: np.ndarray, fresh: np.ndarray):
    from xrfcore import calibration

    n, c = g["spectra"].shape
    scanner = next((s for s in cols["scanner"][order] if s), "")
    key = "avaatech"
    if "itrax" in scanner:
        key = "itrax-1024" if c <= 1024 else "itrax-2048"
    kv = cols["kv"][~np.isnan(cols["kv"])]
    kv_run = float(np.median(kv)) if kv.size else np.nan
    sg, so = cols["gain_kev"], cols["offset_kev"]
    stated_rows = np.isfinite(sg) & (sg > 0)
    stated = sg[np.isfinite(sg)]
    nominal = _make_grid(c, float(np.median(stated)) if stated.size else NOMINAL_GAIN[key],
                         float(np.nanmedian(so)) if stated.size and np.isfinite(so).any() else 0.0)
    valid = np.asarray(cols["valid"], bool)
    total = g["cal_sum_valid"][...] if valid.any() else g["cal_sum_all"][...]
    src = np.asarray(cols.get("cal_source", np.full(n, "", dtype=object)), dtype=object)
    refit = np.zeros(n, dtype=bool)
    refit[fresh] = True
    refit |= ~np.isin(src, ("spectrum", "file"))          # no fit of their own: fitted again
    if refit.any() and stated_rows[refit].all() and not stated_rows.all():
        refit |= ~stated_rows                               # the run's own fit decides: all of them
    rows = np.flatnonzero(refit)
    X = _gather(g["spectra"], rows) if len(rows) else np.zeros((0, c), np.int32)
    part = calibration.calibrate_run(X, nominal, stated_gain=sg[rows], stated_offset=so[rows], kv=kv_run,
                                     valid=valid[rows], paths=cols["source_path"][rows], total=total)
    gains = np.asarray(cols.get("cal_gain_kev", np.full(n, np.nan)), dtype=np.float64).copy()
    offsets = np.asarray(cols.get("cal_offset_kev", np.full(n, np.nan)), dtype=np.float64).copy()
    gains[rows], offsets[rows], src = part.gains, part.offsets, src.copy()
    src[rows] = part.source
    run_fit = part.run
    if stated_rows.all():      # the run's grid: the medians of every row's stated calibration
        run_fit = dataclasses.replace(run_fit, gain_kev=float(np.median(sg)),
                                      offset_kev=float(np.median(np.where(np.isfinite(so), so, 0.0))))
    g["cal_gain_kev"][...] = gains
    g["cal_offset_kev"][...] = offsets
    _rewrite_text(g, "cal_source", src)
    cal = calibration.RunCalibration(gains[order], offsets[order], src[order], run_fit, part.grid_source,
                                     part.warnings, part.files)
    note = {"gain_kev": nominal.gain_kev, "offset_kev": nominal.offset_kev,
            "source": "files" if stated.size else f"nominal {key}"}
    return cal, cal.summary(), note


def _rewrite_text(g: h5py.Group, name: str, values) -> None:
    ds = g[name]
    enc = np.array([str(v).encode("utf-8") for v in values], dtype=bytes)
    if enc.dtype.itemsize > ds.dtype.itemsize:
        n = ds.shape[0]
        del g[name]
        ds = g.create_dataset(name, shape=(n,), maxshape=(None,), dtype=enc.dtype, chunks=(1024,),
                              compression="gzip", compression_opts=GZIP_LEVEL, fletcher32=True)
        ds.attrs["kind"] = "s"
    ds[...] = enc.astype(ds.dtype)
