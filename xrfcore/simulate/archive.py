"""Pretraining archives: simulated spectra straight into an HDF5 project (no text files).

K randomised heads (domain randomisation); each head scans a few simulated cores of ~5 m at
1 cm. Records carry scanner="simulated-avaatech", the head name and the seed in their header,
plus the true composition, so the archive is labelled simulated wherever it goes.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

import numpy as np

from xrfcore import __version__
from xrfcore.io.records import SpectrumRecord
from xrfcore.jobs import CancelToken, ProgressFn, no_progress
from xrfcore.simulate.downcore import generate_core
from xrfcore.simulate.forward import pin_blas_threads, simulator_for
from xrfcore.simulate.heads import HEADS, random_head, sample_nuisances
from xrfcore.simulate.writers import RUN_FOLDER, SLIT_DC_MM, plan_scan

CORE_SPECTRA = 500        # spectra per simulated core (5 m at 1 cm)
BATCH = 512


def archive_heads(rng: np.random.Generator, k: int) -> list:
    """The named heads first (a, b, c), then randomised ones."""
    named = list(HEADS.values())
    out = named[:k]
    for i in range(len(out), k):
        out.append(random_head(rng, f"sim-head-{i + 1:02d}", base=named[i % len(named)]))
    return out


def simulate_records(n_spectra: int, n_heads: int, seed: int = 0, *, progress: ProgressFn = no_progress,
                     token: CancelToken | None = None):
    """Yield lists of SpectrumRecord (one list per simulated core) until ``n_spectra`` are made."""
    pin_blas_threads(1)
    if n_spectra < 1:
        raise ValueError(f"--spectra must be at least 1, got {n_spectra}")
    if n_heads < 1:
        raise ValueError(f"--heads must be at least 1, got {n_heads}")
    root = np.random.SeedSequence(seed)
    rng_heads = np.random.default_rng(root.spawn(1)[0])
    heads = archive_heads(rng_heads, n_heads)
    per_head = np.full(n_heads, n_spectra // n_heads)
    per_head[: n_spectra % n_heads] += 1
    done = 0
    core_no = 0
    for hi, (head, n_h) in enumerate(zip(heads, per_head)):
        sim = simulator_for(head)
        made = 0
        while made < n_h:
            if token is not None:
                token.raise_if_cancelled()
            core_no += 1
            n_core = int(min(CORE_SPECTRA, n_h - made))
            rng = np.random.default_rng(np.random.SeedSequence([seed, hi, core_no]))
            core = f"SIMA{core_no:04d}-1"
            length_mm = n_core * 10.0
            plan = plan_scan(rng, length_mm, 10.0)
            series = generate_core(rng, core, length_mm)
            win = series.window(np.maximum(plan.depth_mm - SLIT_DC_MM / 2, 0), plan.depth_mm + SLIT_DC_MM / 2)
            w = series.compositions(win)
            nz = sample_nuisances(rng, head, win["water"], salinity=series.salinity, sections=plan.section_top_mm)
            start = dt.datetime(2016, 1, 1, 8) + dt.timedelta(days=int(rng.integers(0, 8 * 365)))
            recs = []
            for i0 in range(0, n_core, BATCH):
                sl = slice(i0, min(n_core, i0 + BATCH))
                res = sim.simulate(w[sl], nz.take(sl), rng)
                for j in range(res.counts.shape[0]):
                    i = i0 + j
                    counts = res.counts[j]
                    key = f"{seed}/{head.name}/{core}/{i}".encode()
                    sha = hashlib.sha256(key + counts.tobytes()).hexdigest()
                    top = float(plan.section_top_mm[i])
                    date = start + dt.timedelta(seconds=20.0 * i)
                    recs.append(SpectrumRecord(
                        counts=counts, source_path=f"simulated/{head.name}/{core}/{i:05d}.spe", sha256=sha,
                        scanner="simulated-avaatech", core=core, section=f"{int(round(top)):05d}",
                        section_top_mm=top, position_mm=float(plan.position_mm[i]),
                        depth_mm=float(plan.depth_mm[i]), y_mm=0.0, kv=head.kv, current_ua=head.current_ua,
                        live_s=float(res.live_s[j]), real_s=float(round(res.real_s[j], 3)),
                        total_cps=float(round(res.icr[j])), date=date.isoformat(), filter="No-Filter",
                        setting="Sett Low", slit_dc_mm=SLIT_DC_MM, slit_cc_mm=12.0, run=1,
                        run_label=RUN_FOLDER, replicate=0, gain_kev=head.gain, offset_kev=head.offset,
                        header={"SIMULATED": "true", "head": head.name, "seed": str(seed),
                                "xrfcore": __version__,
                                "truth": json.dumps({"CaCO3": round(float(win["caco3"][i] * 100), 3),
                                                     "TOC": round(float(win["toc"][i] * 100), 4),
                                                     "opal": round(float(win["opal"][i] * 100), 3),
                                                     "water": round(float(win["water"][i] * 100), 3)}),
                                "nuisance": json.dumps({"film_um": round(float(nz.film_um[i]), 3),
                                                        "air_fraction": round(float(nz.air_fraction[i]), 4),
                                                        "geometry_scale": round(float(nz.geometry_scale[i]), 4),
                                                        "gain_scale": round(float(nz.gain_scale[i]), 6)}),
                                "head_params": json.dumps(head.to_dict(), sort_keys=True) if i == 0 else ""},
                    ))
            made += n_core
            done += n_core
            progress(done, n_spectra, f"{head.name} {core}")
            yield recs


def simulate_archive(project_path: str | os.PathLike, n_spectra: int, n_heads: int, seed: int = 0, *,
                     progress: ProgressFn = no_progress, token: CancelToken | None = None) -> dict:
    """Simulate and write an archive into a project in one store transaction (all or nothing)."""
    from xrfcore import store

    msg = f"SIMULATED archive: {n_spectra} spectra, {n_heads} heads, seed {seed} (xrfcore {__version__})"
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    n = 0
    cores, heads = set(), set()
    # one transaction (all or nothing), one core in memory at a time
    with store.transaction(project_path) as p:
        for recs in simulate_records(n_spectra, n_heads, seed, progress=progress, token=token):
            core = recs[0].core
            p.write_run(core, recs[0].run_key, recs)
            p.append_import_log([{"time": now, "folder": "(simulated)", "file": f"simulated/{core}",
                                  "status": "ok", "message": msg}])
            n += len(recs)
            cores.add(core)
            heads.add(recs[0].header["head"])
        if token is not None:
            token.raise_if_cancelled()
    return {"spectra": n, "cores": len(cores), "heads": sorted(heads)}
