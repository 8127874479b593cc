"""Benchmark of the simulator: batched vs single-spectrum forward model, and archive writing.

Run: .venv/bin/python tests/benchmarks/bench_simulate.py [--archive N]
Prints spectra/s for the single-spectrum path and for batches in the same run (ratio), and the
time to write an N-spectrum archive into an HDF5 project (extrapolated to 50,000).
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from xrfcore.simulate.archive import simulate_archive
from xrfcore.simulate.downcore import random_compositions
from xrfcore.simulate.forward import pin_blas_threads, simulator_for
from xrfcore.simulate.heads import get_head, sample_nuisances


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", type=int, default=200)
    ap.add_argument("--batched", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--archive", type=int, default=10000)
    a = ap.parse_args()
    pin_blas_threads(1)
    print(f"load average before: {os.getloadavg()}  (2-core machine shared with other jobs)")
    t0 = time.perf_counter()
    sim = simulator_for(get_head("avaatech-a"))
    print(f"build tables + response: {time.perf_counter() - t0:.2f} s")
    rng = np.random.default_rng(0)
    w, comp = random_compositions(rng, max(a.single, a.batched))
    nz = sample_nuisances(rng, sim.head, comp["water"])

    t0 = time.perf_counter()
    for i in range(a.single):
        sim.simulate(w[i:i + 1], nz.take(slice(i, i + 1)), rng)
    single = a.single / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    for i0 in range(0, a.batched, a.batch):
        sl = slice(i0, min(a.batched, i0 + a.batch))
        sim.simulate(w[sl], nz.take(sl), rng)
    batched = a.batched / (time.perf_counter() - t0)
    print(f"single-spectrum path: {single:8.1f} spectra/s ({a.single} spectra)")
    print(f"batched ({a.batch}):       {batched:8.1f} spectra/s ({a.batched} spectra)  ratio {batched / single:.1f}x")
    print(f"target >= 500 spectra/s batched: {'met' if batched >= 500 else 'NOT met'}")

    if a.archive:
        with tempfile.TemporaryDirectory() as d:
            proj = Path(d) / "archive.h5"
            t0 = time.perf_counter()
            out = simulate_archive(proj, a.archive, 3, seed=1)
            dt = time.perf_counter() - t0
            size = proj.stat().st_size / 1e6
        est = dt * 50000 / a.archive
        print(f"archive of {out['spectra']} spectra ({out['cores']} cores, 3 heads): {dt:.1f} s, {size:.0f} MB "
              f"-> 50,000 extrapolated {est:.0f} s ({'<' if est < 180 else '>='} 3 min target)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
