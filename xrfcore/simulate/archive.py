"""Pretraining archives of simulated spectra, read the way a user's folder is read.

K randomised heads (domain randomisation); each head scans a few simulated cores of ~5 m at
1 cm. :func:`simulate_archive` writes every core as a raw Avaatech folder (``.spe`` files with no
energy calibration, as real ones) into a temp folder and imports the lot with
``importer.import_folder`` in one transaction, so the model is trained on spectra as they are
imported (each head's gain/offset included), not on each head's exact calibration. Files say
SIMULATED (the import labels them ``simulated-avaatech``) and carry the head, the seed and the
per-spectrum truth in remark lines (see :func:`truth_from_header`).

:func:`simulate_records` is the older shortcut (records with the head's exact calibration, no
files), kept for benchmarks that need spectra in memory.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from xrfcore import __version__
from xrfcore.io.records import SpectrumRecord
from xrfcore.jobs import CancelToken, ProgressFn, no_progress
from xrfcore.simulate.downcore import generate_core
from xrfcore.simulate.forward import pin_blas_threads, simulator_for
from xrfcore.simulate.heads import HEADS, random_head, sample_nuisances
from xrfcore.simulate.writers import RUN_FOLDER, SLIT_DC_MM, TRUTH_PREFIX, plan_scan, write_core

CORE_SPECTRA = 500        # spectra per simulated core (5 m at 1 cm)
BATCH = 512


def archive_heads(rng: np.random.Generator, k: int) -> list:
    """The named heads first (a, b, c), then randomised ones."""
    named = list(HEADS.values())
    out = named[:k]
    for i in range(len(out), k):
        out.append(random_head(rng, f"sim-head-{i + 1:02d}", base=named[i % len(named)]))
    return out


def _core_plans(n_spectra: int, n_heads: int, seed: int):
    """(head, core name, spectra, rng) of each simulated core, heads in turn; same seed, same plan."""
    if n_spectra < 1:
        raise ValueError(f"--spectra must be at least 1, got {n_spectra}")
    if n_heads < 1:
        raise ValueError(f"--heads must be at least 1, got {n_heads}")
    root = np.random.SeedSequence(seed)
    heads = archive_heads(np.random.default_rng(root.spawn(1)[0]), n_heads)
    per_head = np.full(n_heads, n_spectra // n_heads)
    per_head[: n_spectra % n_heads] += 1
    core_no = 0
    for hi, (head, n_h) in enumerate(zip(heads, per_head)):
        made = 0
        while made < n_h:
            core_no += 1
            n_core = int(min(CORE_SPECTRA, n_h - made))
            yield head, f"SIMA{core_no:04d}-1", n_core, np.random.default_rng(
                np.random.SeedSequence([seed, hi, core_no]))
            made += n_core


def simulate_records(n_spectra: int, n_heads: int, seed: int = 0, *, progress: ProgressFn = no_progress,
                     token: CancelToken | None = None):
    """Yield lists of SpectrumRecord (one list per simulated core) until ``n_spectra`` are made.

    Records carry the head's exact gain/offset (no files, no import): for in-memory benchmarks."""
    pin_blas_threads(1)
    done = 0
    for head, core, n_core, rng in _core_plans(n_spectra, n_heads, seed):
        if token is not None:
            token.raise_if_cancelled()
        sim = simulator_for(head)
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
        done += n_core
        progress(done, n_spectra, f"{head.name} {core}")
        yield recs


README = """# SIMULATED pretraining archive (not measurements)

Raw Avaatech-style folders written by `xrfcore simulate-archive` (xrfcore {version}): {n} spectra
from {k} scanner heads, seed {seed}. Every .spe file says SIMULATED in `$SPEC_REM:`, with its head,
the seed and its truth (`truth {{json}}`); each core folder also has `<core>_truth.csv`. The files
state no energy calibration (as real Avaatech files): each head's gain and offset are in the counts.

Heads (parameters as JSON): see heads.json.
"""


def write_archive_folder(root: str | os.PathLike, n_spectra: int, n_heads: int, seed: int = 0, *,
                         progress: ProgressFn = no_progress, token: CancelToken | None = None) -> dict:
    """Write the archive as raw Avaatech core folders under ``root`` (which must not exist);
    returns {core: head name}. Same seed, same bytes."""
    pin_blas_threads(1)
    root = Path(root)
    plans = list(_core_plans(n_spectra, n_heads, seed))   # validates the arguments first
    root.mkdir(parents=True)
    head_of, heads, done = {}, {}, 0
    for head, core, n_core, rng in plans:
        if token is not None:
            token.raise_if_cancelled()
        length_mm = n_core * 10.0
        plan = plan_scan(rng, length_mm, 10.0)   # 10 mm steps: exactly n_core positions
        series = generate_core(rng, core, length_mm)
        start = dt.datetime(2016, 1, 1, 8) + dt.timedelta(days=int(rng.integers(0, 8 * 365)))
        write_core(root, core, series, plan, head, seed, rng, length_mm, start=start, progress=progress,
                   token=token, done0=done, total=n_spectra, truth_remark=True)
        done += n_core
        head_of[core] = head.name
        heads[head.name] = head.to_dict()
    (root / "heads.json").write_text(json.dumps(heads, indent=1, sort_keys=True), encoding="utf-8")
    (root / "README.md").write_text(README.format(version=__version__, n=n_spectra, k=n_heads, seed=seed),
                                    encoding="utf-8")
    return head_of


def simulate_archive(project_path: str | os.PathLike, n_spectra: int, n_heads: int, seed: int = 0, *,
                     progress: ProgressFn = no_progress, token: CancelToken | None = None,
                     keep_raw: str | os.PathLike | None = None) -> dict:
    """Simulate an archive as raw Avaatech folders and import them into a project with
    ``import_folder`` (one transaction: all or nothing; files already in the project are skipped).

    The folders go to a temp folder beside the project (about 20 kB per spectrum on disk), removed
    afterwards, or to ``keep_raw`` (must not exist), kept. Returns spectra added, files, cores,
    heads, the import report's counts and seconds spent writing and importing.
    """
    import time

    from xrfcore.importer import import_folder

    project_path = Path(project_path)
    parent = project_path.parent if str(project_path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{project_path}: folder {parent} does not exist")
    if keep_raw is not None and Path(keep_raw).exists():
        raise FileExistsError(f"{keep_raw} already exists; choose a new folder for the raw files")
    total = 2 * n_spectra   # writing, then importing
    tmp = None if keep_raw is not None else Path(tempfile.mkdtemp(prefix=".simulate-archive.", dir=parent))
    # the folder name is what the import log shows
    root = Path(keep_raw) if keep_raw is not None else tmp / f"SIMULATED-archive-{n_spectra}-spectra-seed{seed}"
    try:
        t0 = time.perf_counter()
        try:
            head_of = write_archive_folder(root, n_spectra, n_heads, seed, token=token,
                                           progress=lambda d, t, m="": progress(d, total, f"writing {m}"))
        except BaseException:
            if keep_raw is not None and root.exists():   # no half-written raw folder is kept
                shutil.rmtree(root, ignore_errors=True)
            raise
        t1 = time.perf_counter()
        report = import_folder(root, project_path, token=token,
                               progress=lambda d, t, m="": progress(n_spectra + d * n_spectra // max(t, 1),
                                                                     total, f"importing: {m}"))
        t2 = time.perf_counter()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    bad = report.rejected
    if bad:   # cannot happen with the writer and reader in step; say so loudly if it does
        raise RuntimeError(f"simulated archive: {len(bad)} files rejected on import, e.g. "
                           f"{bad[0].path}: {bad[0].message}")
    return {"spectra": report.added, "files": len(report.files), "cores": len(head_of),
            "heads": sorted(set(head_of.values())), "import": report.counts,
            "write_s": round(t1 - t0, 2), "import_s": round(t2 - t1, 2)}


def truth_from_header(header) -> dict | None:
    """The truth a simulated archive spectrum carries (from its stored header), or None."""
    if isinstance(header, str):
        header = json.loads(header) if header else {}
    rem = (header or {}).get("SPEC_REM", "")
    for line in str(rem).splitlines():
        if line.startswith(TRUTH_PREFIX):
            return json.loads(line[len(TRUTH_PREFIX):])
    return None
