"""Import benchmark: N realistic Avaatech files (written by the project's writer) into a project.

Compares, in one run on the same files (all in the page cache):
  (a) naive reference as in the research notebooks: readlines, float() per token, np.hstack per line;
  (b) ceiling: read the bytes, find $DATA:, parse only the number block with numpy;
  (c) xrfcore.importer.import_folder end to end (hash, parse + reconcile, write the HDF5 project).
Also: read-back time of one 1,000-spectrum core and project size / raw int32 size.

    .venv/bin/python tests/benchmarks/bench_import.py [--files 10000] [--naive-files 1000]

The spectra are SIMULATED (Poisson counts of a plausible 10 kV spectrum shape), labelled so in
each file's $SPEC_REM.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

from xrfcore import importer, store  # noqa: E402
from xrfcore.io import avaatech  # noqa: E402

C = 2048
PER_CORE = 1000


def spectrum_shape(rng) -> np.ndarray:
    """A plausible 10 kV Avaatech spectrum (expected counts per channel, ~1e5-1e6 counts)."""
    e = np.arange(C) * 0.02
    peaks = {3.69: 3000, 4.01: 400, 6.40: 800, 7.06: 120, 3.31: 300, 2.96: 900, 1.74: 250,
             1.49: 100, 5.41: 60, 2.70: 500}    # Ca Ka/Kb, Fe Ka/Kb, K, Ar, Si, Al, Cr, Rh L
    shape = 30 * np.exp(-e / 2.5) + 60 * np.exp(-((e - 8.5) / 1.8) ** 2)     # bremsstrahlung-ish
    for energy, height in peaks.items():
        sigma = 0.045 + 0.012 * energy ** 0.5
        shape += height * rng.uniform(0.3, 3.0) * np.exp(-0.5 * ((e - energy) / sigma) ** 2)
    return shape * rng.uniform(0.5, 4.0)


def write_files(root: Path, n: int, seed: int = 0, per_line: int = 8) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    t0 = dt.datetime(2019, 4, 16, 9, 0, 0)
    for i in range(n):
        core, j = divmod(i, PER_CORE)
        section, x = divmod(j, 100)
        meta = dict(core=f"SIM{core:03d}-1", section=f"{section * 1000:05d}", position_mm=10.0 * x,
                    y_mm=0.0, kv=10, current_ua=150, live_s=10, real_s=17, total_cps=0, run=1,
                    replicate=0, date=t0 + dt.timedelta(seconds=30 * i), filter="No-Filter",
                    setting="Sett Low", slit_dc_mm=10.0, slit_cc_mm=12.0,
                    remark=["SIMULATED spectrum (xrfcore import benchmark), not a measurement"])
        counts = rng.poisson(spectrum_shape(rng))
        meta["total_cps"] = counts.sum() / 10
        d = root / meta["core"] / "Run 1 at  10kV"
        if j == 0:
            d.mkdir(parents=True, exist_ok=True)
        p = d / avaatech.spe_file_name(meta)
        avaatech.write_spe(p, counts, meta, per_line=per_line)
        paths.append(p)
    return paths


def naive_read(path: Path) -> np.ndarray:
    """The research notebooks' reader: readlines, one small array per line, np.hstack."""
    with open(path) as fh:
        lines = fh.readlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "$DATA:") + 2
    data = np.array([])
    for line in lines[start:]:
        data = np.hstack((data, np.array([float(x) for x in line.split()])))
    return data


def ceiling_read(path: Path) -> np.ndarray:
    """Read the bytes and parse only the number block with numpy (no header, no checks).

    np.fromstring(text, sep=" ") is the fastest numpy text parse here (~2x np.array(split)).
    """
    raw = path.read_bytes()
    k = raw.index(b"$DATA:")
    k = raw.index(b"\n", raw.index(b"\n", k) + 1)          # skip "$DATA:" and "0 2047"
    return np.fromstring(raw[k:], dtype=np.int64, sep=" ")


def split_read(path: Path) -> np.ndarray:
    """The same with np.array(bytes.split()): the common numpy idiom, shown for context."""
    raw = path.read_bytes()
    k = raw.index(b"$DATA:")
    k = raw.index(b"\n", raw.index(b"\n", k) + 1)
    return np.array(raw[k:].split(), dtype=np.int32)


def timed(fn, paths) -> tuple[float, float]:
    """(wall, cpu) seconds per file. CPU time (this process) is robust to other jobs on the machine."""
    t, c = time.perf_counter(), time.process_time()
    for p in paths:
        fn(p)
    return (time.perf_counter() - t) / len(paths), (time.process_time() - c) / len(paths)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--naive-files", type=int, default=1000,
                    help="files timed with the (slow) naive reader; its rate is per file")
    ap.add_argument("--per-line", type=int, default=8,
                    help="counts per data line in the written files (the real layout is unknown; "
                         "the writer's default is 8)")
    ap.add_argument("--keep", metavar="DIR", help="write into DIR and keep it")
    args = ap.parse_args(argv)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="xrfcore-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        paths = write_files(root / "data", args.files, per_line=args.per_line)
        print(f"wrote {len(paths)} SIMULATED Avaatech files, {args.per_line} counts per line "
              f"({sum(p.stat().st_size for p in paths) / 1e6:.1f} MB) "
              f"in {time.perf_counter() - t:.1f} s")
        # same counts from every reader (sanity)
        for p in paths[:3]:
            a, b = naive_read(p), ceiling_read(p)
            c = avaatech.read_record(p, root / "data").counts
            assert np.array_equal(a, b) and np.array_equal(b, c), p
        timed(ceiling_read, paths)                                  # warm the page cache
        n_naive = min(args.naive_files, len(paths))
        naive = timed(naive_read, paths[:n_naive])
        ceiling = timed(ceiling_read, paths)
        split = timed(split_read, paths)
        data = root / "data"
        reader = timed(lambda p: avaatech.read_record(p, data), paths)
        proj = root / "bench.h5"
        t, c = time.perf_counter(), time.process_time()
        rep = importer.import_folder(data, proj)
        imp = ((time.perf_counter() - t) / len(paths), (time.process_time() - c) / len(paths))
        assert rep.counts["ok"] == len(paths), rep.summary()

        core = sorted({p.parent.parent.name for p in paths})[0]
        reads = []
        for _ in range(7):
            t, c = time.perf_counter(), time.process_time()
            with store.Project.open(proj) as pr:
                d = pr.read_run(core, "10kV-Run1")
            reads.append((time.perf_counter() - t, time.process_time() - c))
        size = proj.stat().st_size
        raw = len(paths) * C * 4

        def row(label, v, extra=""):
            print(f"{label:<27}: {1e3 * v[1]:7.3f} ms/file CPU, {1e3 * v[0]:7.3f} ms wall "
                  f"({1 / v[1]:6.0f} files/s CPU){extra}")

        print("per file (CPU time of this process; wall time also shown, the machine is shared):")
        row("(a) naive readlines+hstack", naive, f", {n_naive} files")
        row("(b) ceiling numpy block", ceiling)
        row("(b') numpy split variant", split, " (context only; ratios use b)")
        row("(c) import_folder", imp, f", {len(paths)} files, {imp[0] * len(paths):.1f} s wall")
        row("(d) read_record alone", reader, " (the Avaatech reader, part of c)")
        print(f"ratio c vs a (speed-up)    : {naive[1] / imp[1]:7.1f} x CPU, {naive[0] / imp[0]:.1f} x wall (target >= 20 x)")
        print(f"ratio c vs ceiling         : {100 * ceiling[1] / imp[1]:7.1f} % CPU, {100 * ceiling[0] / imp[0]:.1f} % wall (target >= 50 %)")
        print(f"ratio ceiling vs a         : {naive[1] / ceiling[1]:7.1f} x CPU (upper bound of c vs a)")
        wall = sorted(r[0] for r in reads)
        cpu = sorted(r[1] for r in reads)
        print(f"read back one core ({len(d)} spectra, open + read_run): min {1e3 * wall[0]:.1f} ms wall, "
              f"median {1e3 * statistics.median(wall):.1f} ms wall, median {1e3 * statistics.median(cpu):.1f} ms CPU "
              f"(target < 50 ms)")
        print(f"project size / raw int32   : {100 * size / raw:7.1f} %  ({size / 1e6:.1f} MB for "
              f"{raw / 1e6:.1f} MB raw; target <= 40 %)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
