"""Write simulated Avaatech core series: raw .spe folders, lab-sample and truth CSVs, README.

Layout (one folder per core, written to a temp folder and renamed into place when complete):

    <out>/README.md                                    says: simulated
    <out>/<core>/README.md
    <out>/<core>/Run 1 at  10kV/<core>_<top mm, 5 digits>  <pos>mm  10s  10kV 200uA ... .spe
    <out>/<core>/<core>_lab_samples.csv                '#'-comment line says simulated
    <out>/<core>/<core>_truth.csv                      one row per spectrum
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xrfcore import __version__
from xrfcore.jobs import CancelToken, ProgressFn, no_progress
from xrfcore.simulate.downcore import CoreSeries, generate_core
from xrfcore.simulate.forward import pin_blas_threads, simulator_for
from xrfcore.simulate.heads import Head, get_head, sample_nuisances

RUN_FOLDER = "Run 1 at  10kV"
TRUTH_PREFIX = "truth "       # remark line carrying a spectrum's truth as JSON (archives)
SLIT_DC_MM = 10.0
SLIT_CC_MM = 12.0
BATCH = 256


@dataclass
class ScanPlan:
    section_top_mm: np.ndarray   # per spectrum
    position_mm: np.ndarray
    depth_mm: np.ndarray
    sections: list = field(default_factory=list)   # (top_mm, length_mm)


def plan_scan(rng: np.random.Generator, length_mm: float, step_mm: float) -> ScanPlan:
    """Sections of 1-1.5 m (10 mm multiples) and positions every ``step_mm`` inside each section."""
    if step_mm <= 0:
        raise ValueError(f"step must be positive, got {step_mm} mm")
    sections = []
    top = 0.0
    while top < length_mm - 1e-6:
        ln = float(np.round(rng.uniform(1000, 1500) / 10) * 10)
        ln = min(ln, length_mm - top)
        sections.append((top, ln))
        top += ln
    tops, pos = [], []
    for top, ln in sections:
        p = np.arange(step_mm / 2.0, ln, step_mm)
        tops.append(np.full(len(p), top))
        pos.append(np.round(p, 1))
    tops_a = np.concatenate(tops)
    pos_a = np.concatenate(pos)
    return ScanPlan(section_top_mm=tops_a, position_mm=pos_a, depth_mm=tops_a + pos_a, sections=sections)


def lab_samples(rng: np.random.Generator, series: CoreSeries, length_mm: float, spacing_mm: float = 100.0):
    """1 cm thick samples every ~10 cm with lab error (CaCO3 +-0.5 wt% + 2 %, TOC +-0.03 wt% + 5 %)."""
    tops = np.arange(rng.uniform(20, 80), length_mm - 10.0, spacing_mm)
    tops = np.round(tops + rng.uniform(-15, 15, len(tops)))
    tops = np.clip(tops, 0, length_mm - 10.0)
    if len(tops) == 0:                      # short core: one sample in the middle
        tops = np.array([max(0.0, np.floor(length_mm / 2 - 5))])
    bottoms = tops + 10.0
    win = series.window(tops, bottoms)
    ca_true, toc_true = win["caco3"] * 100, win["toc"] * 100
    ca = ca_true + rng.normal(0, 1, len(tops)) * np.hypot(0.5, 0.02 * ca_true)
    toc = toc_true * np.exp(rng.normal(0, 0.05, len(tops))) + rng.normal(0, 0.03, len(tops))
    return tops, bottoms, np.clip(ca, 0, 100), np.clip(toc, 0.0, 100), ca_true, toc_true


def _csv_text(comment: list[str], header: list[str], rows) -> str:
    buf = io.StringIO()
    for c in comment:
        buf.write(f"# {c}\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _f(x: float, nd: int) -> str:
    return f"{x:.{nd}f}"


README_TOP = """# SIMULATED core-scanner data (not measurements)

Written by `xrfcore simulate` (xrfcore {version}), a physics simulator of an Avaatech XRF core
scanner at 10 kV (Ebel Rh tube, fluorescence + scatter of a wet sediment, He path, foil, water film,
silicon drift detector with dead time, pile-up and Poisson noise). Every .spe file carries a
`SIMULATED` remark in `$SPEC_REM:`; every CSV starts with a `#` comment saying simulated.

Command: `{command}`
Seed: {seed}; scanner head: {head}.

Per core folder:
- `Run 1 at  10kV/*.spe`: raw Avaatech-style spectra (2048 channels, section top in the file name
  as 5-digit mm, X position in mm), import with `xrfcore import <folder> -p project.h5`;
- `<core>_lab_samples.csv`: 1 cm lab samples every ~10 cm (CaCO3, TOC in wt% of dry sediment, with
  simulated lab error);
- `<core>_truth.csv`: the true composition behind every spectrum (wt% dry; water wt% wet) and the
  per-spectrum nuisances (film, air fraction, geometry, gain drift).

Known limits of the simulation are listed in xrfcore/simulate/REALISM.md.
"""


def write_core(root: Path, core: str, series: CoreSeries, plan: ScanPlan, head: Head, seed: int,
               rng: np.random.Generator, length_mm: float, *, start: dt.datetime,
               progress: ProgressFn = no_progress, token: CancelToken | None = None,
               done0: int = 0, total: int = 0, truth_remark: bool = False) -> int:
    """Simulate and write one core series into ``root/<core>`` (root is a temp folder).

    ``truth_remark``: also put each spectrum's truth (composition, nuisances) in a ``truth {json}``
    remark line, so it survives an import into a project (pretraining archives)."""
    sim = simulator_for(head)
    top, bottom = plan.depth_mm - SLIT_DC_MM / 2, plan.depth_mm + SLIT_DC_MM / 2
    win = series.window(np.maximum(top, 0), bottom)
    w = series.compositions(win)
    nz = sample_nuisances(rng, head, win["water"], salinity=series.salinity, sections=plan.section_top_mm)
    n = len(w)
    core_dir = root / core
    run_dir = core_dir / RUN_FOLDER
    run_dir.mkdir(parents=True)
    from xrfcore.io.avaatech import spe_file_name, write_spe

    truth_rows = []
    t = start
    prev_top = None
    for i0 in range(0, n, BATCH):
        if token is not None:
            token.raise_if_cancelled()
        sl = slice(i0, min(n, i0 + BATCH))
        res = sim.simulate(w[sl], nz.take(sl), rng)
        for j in range(res.counts.shape[0]):
            i = i0 + j
            sec_top = float(plan.section_top_mm[i])
            if prev_top is not None and sec_top != prev_top:
                t += dt.timedelta(minutes=float(rng.uniform(20, 90)))   # next section loaded
            prev_top = sec_top
            meta = dict(
                core=core, section=f"{int(round(sec_top)):05d}", position_mm=float(plan.position_mm[i]),
                y_mm=0.0, kv=head.kv, current_ua=head.current_ua, live_s=head.live_s,
                real_s=int(round(float(res.real_s[j]))), total_cps=float(res.icr[j]), date=t,
                run=1, replicate=0, filter="No-Filter", setting="Sett Low", slit_dc_mm=SLIT_DC_MM,
                slit_cc_mm=SLIT_CC_MM,
                remark=["SIMULATED spectrum - xrfcore physics simulator, not a measurement",
                        f"xrfcore {__version__} head={head.name} seed={seed}"],
            )
            if truth_remark:
                meta["remark"].append(TRUTH_PREFIX + json.dumps({
                    "CaCO3": round(float(win["caco3"][i] * 100), 3), "TOC": round(float(win["toc"][i] * 100), 4),
                    "opal": round(float(win["opal"][i] * 100), 3), "water": round(float(win["water"][i] * 100), 3),
                    "film_um": round(float(nz.film_um[i]), 3), "air_fraction": round(float(nz.air_fraction[i]), 4),
                    "geometry_scale": round(float(nz.geometry_scale[i]), 4),
                    "gain_scale": round(float(nz.gain_scale[i]), 6)}, separators=(",", ":")))
            name = spe_file_name(meta)
            write_spe(run_dir / name, res.counts[j], meta)
            t += dt.timedelta(seconds=float(res.real_s[j]) + float(rng.uniform(6, 9)))
            truth_rows.append([
                core, _f(plan.depth_mm[i], 1), f"{RUN_FOLDER}/{name}", _f(sec_top, 0), _f(plan.position_mm[i], 1),
                _f(win["caco3"][i] * 100, 3), _f(win["toc"][i] * 100, 4), _f(win["opal"][i] * 100, 3),
                _f(win["ash"][i] * 100, 3), _f(win["water"][i] * 100, 3), _f(win["mn_pct"][i], 4),
                _f(win["ba_ppm"][i], 1), win["event"][i], head.name, _f(nz.film_um[i], 3),
                _f(nz.air_fraction[i], 4), _f(nz.geometry_scale[i], 4), _f(nz.gain_scale[i], 6),
                _f(res.icr[j], 0), _f(res.real_s[j], 3),
            ])
        progress(done0 + sl.stop, total, f"{core}: {sl.stop}/{n} spectra")

    if token is not None:
        token.raise_if_cancelled()
    comment = [f"SIMULATED data - xrfcore {__version__} simulator, seed {seed}, head {head.name}; not measurements"]
    (core_dir / f"{core}_truth.csv").write_text(_csv_text(
        comment + ["composition averaged over the 10 mm down-core slit; CaCO3, TOC, opal, ash in wt% of dry "
                   "solids (salt-free); water in wt% of wet sediment; Mn wt% dry; Ba ppm dry"],
        ["core", "depth_mm", "file", "section_top_mm", "position_mm", "CaCO3", "TOC", "opal", "ash",
         "water", "Mn", "Ba_ppm", "event", "head", "film_um", "air_fraction", "geometry_scale",
         "gain_scale", "icr_cps", "real_s"], truth_rows), encoding="utf-8", newline="")
    tops, bottoms, ca, toc, ca_true, toc_true = lab_samples(rng, series, length_mm)
    lab_rows = [[core, _f(a, 0), _f(b, 0), _f(c, 2), _f(d, 3)] for a, b, c, d in zip(tops, bottoms, ca, toc)]
    (core_dir / f"{core}_lab_samples.csv").write_text(_csv_text(
        comment + ["CaCO3 and TOC in wt% of dry sediment, 1 cm samples, with simulated lab error"],
        ["core", "depth_top_mm", "depth_bottom_mm", "CaCO3", "TOC"], lab_rows), encoding="utf-8", newline="")
    (core_dir / "README.md").write_text(
        f"# {core}: SIMULATED core series (not measurements)\n\nSee ../README.md. Core parameters:\n\n"
        f"```\n{json.dumps(series.params, indent=1, sort_keys=True)}\n```\n", encoding="utf-8")
    return n


def with_calibration(head: Head, gain: float | None = None, offset_ch: float | None = None) -> Head:
    """The head with another gain (keV/channel) and/or zero offset given in channels: channel i is
    centred at ``gain * (i + offset_ch)`` keV, so a positive offset moves peaks down. The name says so."""
    if gain is None and offset_ch is None:
        return head
    g = head.gain if gain is None else float(gain)
    if not 0.01 <= g <= 0.05:
        raise ValueError(f"--gain must be between 0.01 and 0.05 keV per channel, got {g}")
    if offset_ch is not None and not -100 <= offset_ch <= 100:
        raise ValueError(f"--offset-ch must be between -100 and 100 channels, got {offset_ch}")
    off = head.offset if offset_ch is None else float(offset_ch) * g
    return head.replace(gain=g, offset=off, name=f"{head.name}-g{g:.5f}-o{off / g:+.2f}ch")


def simulate_folder(out: str | os.PathLike, *, cores: int = 1, length_m: float = 3.0, step_mm: float = 10.0,
                    head: str | Head = "avaatech-a", seed: int = 0, overwrite: bool = False,
                    command: str = "", progress: ProgressFn = no_progress,
                    token: CancelToken | None = None, gain: float | None = None,
                    offset_ch: float | None = None) -> list[Path]:
    """Simulate ``cores`` core series into ``out``; returns the core folders written.

    ``gain`` (keV/channel) and ``offset_ch`` override the head's calibration (see
    :func:`with_calibration`); the files, like real Avaatech files, do not state it.

    Each core is built in a temp folder and renamed into place, so a failure or cancel leaves
    ``out`` as it was. Same arguments, same bytes.
    """
    pin_blas_threads(1)
    if cores < 1:
        raise ValueError(f"--cores must be at least 1, got {cores}")
    if not (0.05 <= length_m <= 100):
        raise ValueError(f"--length-m must be between 0.05 and 100 m, got {length_m}")
    if not (0.1 <= step_mm <= 500):
        raise ValueError(f"--step-mm must be between 0.1 and 500 mm, got {step_mm}")
    h0 = get_head(head) if isinstance(head, str) else head
    h = with_calibration(h0, gain, offset_ch)
    calib = (f" --gain {gain:g}" if gain is not None else "") + \
        (f" --offset-ch {offset_ch:g}" if offset_ch is not None else "")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"SIM{i + 1:02d}-1" for i in range(cores)]
    for nm in names:
        if (out / nm).exists() and not overwrite:
            raise FileExistsError(f"{out / nm} already exists; choose another folder or pass --overwrite")
    length_mm = float(length_m) * 1000.0
    children = np.random.SeedSequence(seed).spawn(cores)
    plans = []
    for nm, ss in zip(names, children):
        rng = np.random.default_rng(ss)
        plans.append((nm, rng, plan_scan(rng, length_mm, step_mm)))
    total = sum(len(p.depth_mm) for _, _, p in plans)
    done = 0
    written = []
    readme = README_TOP.format(version=__version__, seed=seed, head=h.name,
                               command=command or f"xrfcore simulate -o <folder> --cores {cores} "
                               f"--length-m {length_m:g} --step-mm {step_mm:g} --head {h0.name}{calib} --seed {seed}")
    # every core goes to one temp folder first; they are moved into place only when all are done
    tmp = Path(tempfile.mkdtemp(prefix=".simulate.", suffix=".part", dir=out))
    try:
        for nm, rng, plan in plans:
            series = generate_core(rng, nm, length_mm)
            start = dt.datetime(2017, 1, 1, 8, 0, 0) + dt.timedelta(
                days=int(rng.integers(0, 6 * 365)), minutes=int(rng.integers(0, 240)))
            write_core(tmp, nm, series, plan, h, seed, rng, length_mm, start=start,
                       progress=progress, token=token, done0=done, total=total)
            done += len(plan.depth_mm)
        (tmp / "README.md").write_text(readme, encoding="utf-8")
        if token is not None:
            token.raise_if_cancelled()
        for nm, _, _ in plans:
            dest = out / nm
            if dest.exists():
                old = tmp / f".{nm}.old"
                os.replace(dest, old)
            os.replace(tmp / nm, dest)
            written.append(dest)
        os.replace(tmp / "README.md", out / "README.md")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written
