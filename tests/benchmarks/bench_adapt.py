"""Adapting the foundation model to a project (issue 13 item 6), measured on the user's path.

Real: the shipped model adapted (`xrfcore adapt`, window chosen from the data: xrfcore.train.window)
on the real Itrax replicate scan REP1 of CD166_19_S1 (Mo tube, 30 kV; imported with `xrfcore import`),
depth blocks 3 and 8 of 10 held out (adapt's own rule). Reconstruction error before (shipped model,
0-10.24 keV), after (adapted) and of a model pretrained from scratch on the same REP1 spectra for the
same steps and window, on: REP1's held-out blocks; REP2 (the same depths measured again, imported
as its own project), all of it and its held-out-block depths; and SIMULATED spectra written by
`xrfcore simulate` and imported by `xrfcore import` (the shipped model's home). Three measures, said
exactly: val_loss = the card's metric (masked-patch MSE in the model's own input space: log +
z-score over its own window, so models with other windows are NOT comparable on it); rel (own
window) = median over spectra of sum|error|/sum counts over the hidden channels of the model's
window; rel 0-10.24 keV = the same over the hidden channels in 0-10.24 keV, the same patches hidden
for every model (xrfcore.train.window.relative_error): the one measure all models share.
Target: adapted real error within 3x of the simulated error (the shipped model on simulated spectra).

Simulated: cores of the benchmark head `bench-unseen-head` (outside the shipped model's training
heads; tests/benchmarks/bench_accuracy.unseen_head), written as raw Avaatech folders by the writer
behind `xrfcore simulate` (its --head takes only named heads) and imported with `xrfcore import`.
The label cores' unlabelled spectra adapt the shipped model (`xrfcore adapt --val-cores` the test
cores); a model is pretrained from scratch on the same spectra for the same steps (`xrfcore
pretrain`); each of the three (unadapted = shipped, adapted, scratch) is fine-tuned (head; full too
without --quick) with 10 / 50 / 100 lab samples of the label cores (seeded draws, mean +- sd over
seeds) and scored on the held-out cores: R2 and 90 % interval coverage for CaCO3 and TOC.
Target: adapted beats unadapted at every label count.

    .venv/bin/python tests/benchmarks/bench_adapt.py [--quick] [--steps N] [--seeds K] [--out FILE.md]
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPS = HERE.parents[2] / "shared" / "reference" / "realdata" / "itrax" / "CD166_19_S1_replicates"
if not REPS.is_dir():
    REPS = Path("/work/shared/reference/realdata/itrax/CD166_19_S1_replicates")
CORE = "CD166_19_S1"


def _f(v, nd=3) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def xrfcore(*args) -> str:
    cmd = [sys.executable, "-m", "xrfcore", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return res.stdout


def recon(model, card, counts, seed=0) -> dict:
    """The three measures (module docstring) of ``model`` on ``counts`` (on the 20 eV model grid)."""
    import torch

    from xrfcore.model.transforms import from_dict, window
    from xrfcore.train import window as win
    from xrfcore.train.pretrain import evaluate

    cfg = model.cfg
    Z = torch.from_numpy(from_dict(card["transform"]).apply(window(counts, cfg)))
    lo, hi = cfg.window_kev()
    return {"n": len(counts), "val_loss": evaluate(model, Z, 0.5, 256),
            "rel_own": float(np.median(win.relative_error(model, card, counts, lo, hi, seed=seed))),
            "rel_10": float(np.median(win.relative_error(model, card, counts, 0.0, 10.24, seed=seed)))}


def replicate_floor(x1, x2, cfg, transform) -> dict:
    """What no model can beat: two measurements of the same depths (REP1, REP2) differ by counting
    noise (and a little positioning); their difference / sqrt(2) estimates one measurement's noise.
    Same measures as ``recon`` but over all channels (noise does not depend on which are hidden)."""
    from xrfcore.model.transforms import from_dict, window

    tf = from_dict(transform)
    w1, w2 = window(x1, cfg), window(x2, cfg)
    z1, z2 = tf.apply(w1), tf.apply(w2)
    e = cfg.offset_kev + cfg.gain_kev * np.arange(cfg.channels)[cfg.window]
    in10 = e < 10.24 - 1e-9

    def rel(sel):
        return float(np.median(np.abs(w1[:, sel] - w2[:, sel]).sum(1) / np.maximum(w2[:, sel].sum(1), 1e-9)) / np.sqrt(2))
    return {"n": len(x1), "val_loss": float(((z1 - z2) ** 2).mean() / 2), "rel_own": rel(np.ones_like(in10)),
            "rel_10": rel(in10)}


# ----------------------------------------------------------------------------- real Itrax
def real_part(a, work: Path, shipped) -> dict:
    from xrfcore.model import checkpoint
    from xrfcore.model.config import ModelConfig
    from xrfcore.train import adapt as ad
    from xrfcore.train.data import load_project
    from xrfcore.train.pretrain import TrainConfig, pretrain

    log("real: importing REP1, REP2 (xrfcore import) and simulated spectra (xrfcore simulate + import)")
    xrfcore("import", REPS / "REP1", "-p", work / "rep1.h5", "--core", CORE)
    xrfcore("import", REPS / "REP2", "-p", work / "rep2.h5", "--core", CORE)
    xrfcore("simulate", "-o", work / "sim", "--cores", 1, "--length-m", a.sim_length, "--seed", 21)
    xrfcore("import", work / "sim", "-p", work / "sim.h5")
    steps, bs = a.steps_real, a.batch
    log(f"real: xrfcore adapt on REP1, {steps} steps x {bs}")
    t0 = time.time()
    out = xrfcore("adapt", "-p", work / "rep1.h5", "--model", shipped, "-o", work / "adapted_rep1", "--steps", steps,
                  "--batch-size", bs, "--device", "cpu", "--threads", a.threads, "--seed", 0)
    wall = time.time() - t0
    print(out)
    adapted, acard = checkpoint.load(work / "adapted_rep1" / "model")
    base, bcard = checkpoint.load(shipped)
    grid_cfg = ModelConfig.preset("tiny")
    rep1 = load_project(work / "rep1.h5", grid_cfg)
    is_val, groups, kind = ad.holdout(rep1, None, 0)
    train, val = rep1.select(~is_val), rep1.select(is_val)
    rep2 = load_project(work / "rep2.h5", grid_cfg)
    rep2_held = np.isin(np.round(rep2.depth_mm, 1), np.round(val.depth_mm, 1))
    sim = load_project(work / "sim.h5", grid_cfg)
    log(f"real: scratch pretraining on the same {len(train)} REP1 spectra, {steps} steps, window "
        f"{acard['config']['window_channels']} channels")
    cfg = ModelConfig.from_dict(acard["config"])
    t1 = time.time()
    scratch, scard = pretrain(train.counts, cfg, TrainConfig(steps=steps, batch_size=min(bs, len(train)), lr=5e-4,
                                                              transform="log_zscore", seed=0, device="cpu",
                                                              threads=a.threads, log_every=max(1, steps // 10)),
                              X_val=val.counts, data_info={"simulated": False})
    t_scratch = time.time() - t1
    sets = {"REP1 held-out blocks": val.counts, "REP2 (all depths, new measurement)": rep2.counts,
            "REP2 at the held-out depths": rep2.counts[rep2_held], "simulated (xrfcore simulate, avaatech-a)": sim.counts}
    models = {"before: shipped (0-10.24 keV)": (base, bcard),
              f"after: adapted ({acard['instrument']['energy_kev'][0]:g}-{acard['instrument']['energy_kev'][1]:g} keV)": (adapted, acard),
              "scratch on REP1, same steps and window": (scratch.cpu().eval(), scard)}
    rows = []
    for mname, (m, c) in models.items():
        for sname, X in sets.items():
            r = recon(m, c, X)
            rows.append({"model": mname, "set": sname, **r})
            log(f"  {mname:40s} {sname:42s} val_loss {r['val_loss']:.5f} rel own {r['rel_own']:.4f} rel 0-10 {r['rel_10']:.4f}")
    # noise floor: the same depths measured twice (REP1 vs REP2), in each window
    d1, d2 = np.round(rep1.depth_mm, 1), np.round(rep2.depth_mm, 1)
    common = np.intersect1d(d1, d2)
    i1, i2 = [np.array([np.flatnonzero(d == v)[0] for v in common]) for d in (d1, d2)]
    for mname, (m, c) in list(models.items())[:2]:
        r = replicate_floor(rep1.counts[i1], rep2.counts[i2], m.cfg, c["transform"])
        rows.append({"model": f"noise floor, {mname.split(':')[0]} window", "set": "REP1 vs REP2, same depths, / sqrt 2", **r})
        log(f"  floor ({mname.split(':')[0]} window): val_loss {r['val_loss']:.5f} rel own {r['rel_own']:.4f} rel 0-10 {r['rel_10']:.4f}")
    ad_card = acard["adaptation"]
    drawn = steps * ad_card["batch_size"]
    train_s = acard["training"]["wall_s"]
    speed = {"adapt_wall_s": round(wall, 1), "train_wall_s": train_s, "spectra_drawn": drawn,
             "s_per_1000_spectra": round(1000 * train_s / drawn, 2),
             "s_per_1000_first_steps": (ad_card.get("speed") or {}).get("s_per_1000_spectra"),
             "cpu_s_per_1000_first_steps": (ad_card.get("speed") or {}).get("cpu_s_per_1000_spectra"),
             "scratch_wall_s": round(t_scratch, 1), "window_patches": cfg.num_patches,
             "CPU_S_PER_1000_SPECTRA": ad.CPU_S_PER_1000_SPECTRA}
    return {"rows": rows, "window": ad_card["window"], "table": ad_card["before_after"], "speed": speed,
            "n_train": len(train), "n_val": len(val), "n_rep2": len(rep2), "n_rep2_held": int(rep2_held.sum()),
            "n_sim": len(sim), "steps": steps, "batch": ad_card["batch_size"]}


# ----------------------------------------------------------------------------- simulated unseen head
def sim_part(a, work: Path, shipped) -> dict:
    from bench_accuracy import TARGETS, evaluate, lab_rows, unseen_head, _truth_csv
    from xrfcore import labels as lb
    from xrfcore.predict import interval_coverage
    from xrfcore.simulate.writers import simulate_folder
    from xrfcore.train import finetune as ft

    head = unseen_head()
    n_lab, n_test = a.label_cores, a.test_cores
    log(f"simulated: {n_lab} label + {n_test} test cores of {head.name} x {a.core_length} m, written + imported")
    simulate_folder(work / "uh", cores=n_lab + n_test, length_m=a.core_length, head=head, seed=31)
    xrfcore("import", work / "uh", "-p", work / "uh.h5")
    cores = sorted(p.name for p in (work / "uh").iterdir() if p.is_dir() and not p.name.startswith("."))
    label_cores, test_cores = cores[:n_lab], cores[n_lab:]
    truth = {c: _truth_csv(work / "uh" / c) for c in cores}
    steps, bs = a.steps_sim, a.batch
    log(f"simulated: xrfcore adapt on the label cores' spectra ({steps} steps), test cores held out")
    t0 = time.time()
    print(xrfcore("adapt", "-p", work / "uh.h5", "--model", shipped, "-o", work / "adapted_uh", "--steps", steps,
                  "--batch-size", bs, "--device", "cpu", "--threads", a.threads, "--cores", *cores,
                  "--val-cores", *test_cores))
    t_adapt = time.time() - t0
    log("simulated: xrfcore pretrain from scratch on the same spectra, same steps")
    xrfcore("pretrain", "-p", work / "uh.h5", "-o", work / "scratch_uh", "--steps", steps, "--batch-size", bs,
            "--lr", "5e-4", "--transform", "log_zscore", "--device", "cpu", "--threads", a.threads,
            "--cores", *label_cores, "--log-every", max(1, steps // 10))
    bases = {"unadapted (shipped)": shipped, "adapted": work / "adapted_uh" / "model",
             "scratch (same spectra, steps)": work / "scratch_uh" / "model"}
    rng = np.random.default_rng(0)
    lab = pd.concat([lab_rows(truth, label_cores, a.spacing, rng), lab_rows(truth, test_cores, 30.0, rng)])
    with open(work / "lab.csv", "w") as f:
        f.write("# SIMULATED lab samples (bench_adapt, bench-unseen-head)\n")
        lab.to_csv(f, index=False)
    from xrfcore.model.config import ModelConfig
    m = lb.match_project(work / "uh.h5", lb.read_lab_csv(work / "lab.csv"), grid=ModelConfig.preset("tiny").grid())
    S = m.samples.reset_index(drop=True)
    is_test = S.core.isin(test_cores).to_numpy()
    pool, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    log(f"simulated: {len(pool)} labelled samples on the label cores, {len(test)} on the test cores")
    rows = []
    for b in a.budgets:
        if b > len(pool):
            continue
        for mode in a.modes:
            for name, base in bases.items():
                runs = []
                for s in range(a.seeds):
                    idx = np.sort(np.random.default_rng(100 + s).permutation(pool)[:b])
                    t1 = time.time()
                    reg, card = ft.finetune(base, m.X[idx], S.loc[idx, list(TARGETS)].reset_index(drop=True),
                                            groups=S.core.to_numpy()[idx], grid=m.grid, mode=mode, epochs=a.ft_epochs,
                                            patience=a.ft_patience, seed=s, device="cpu", ood=False)
                    pr = ft.Predictor.from_model(reg, card, device="cpu")
                    p = pr.predict_counts(m.X[test], m.grid, scheme="by-core")
                    y = S.loc[test].reset_index(drop=True)
                    ev = evaluate(p, y)
                    r = {"fit_s": time.time() - t1}
                    for t in TARGETS:
                        r[f"{t}_r2"] = ev[t]["r2"]
                        r[f"{t}_cov"] = interval_coverage(y[t], p[f"{t}_lo"], p[f"{t}_hi"]) if f"{t}_lo" in p else None
                    runs.append(r)
                row = {"labels": b, "mode": mode, "foundation": name, "seeds": a.seeds}
                for k in runs[0]:
                    v = [r[k] for r in runs if r[k] is not None]
                    row[k] = float(np.mean(v)) if v else None
                    row[k + "_sd"] = float(np.std(v)) if v else None
                rows.append(row)
                log(f"  {b:4d} {mode:4s} {name:30s} R2 CaCO3 {_f(row['CaCO3_r2'])}+-{_f(row['CaCO3_r2_sd'])} "
                    f"TOC {_f(row['TOC_r2'])}+-{_f(row['TOC_r2_sd'])} cov {_f(row['CaCO3_cov'], 2)}/{_f(row['TOC_cov'], 2)}")
    acard = json.loads((work / "adapted_uh" / "model.json").read_text())
    return {"rows": rows, "table": acard["adaptation"]["before_after"], "window": acard["adaptation"]["window"],
            "adapt_wall_s": round(t_adapt, 1), "train_wall_s": acard["training"]["wall_s"],
            "drawn": steps * acard["adaptation"]["batch_size"], "label_cores": label_cores, "test_cores": test_cores,
            "n_pool": len(pool), "n_test": len(test), "steps": steps}


# ----------------------------------------------------------------------------- report
def render(a, real, sim, info) -> str:
    L = [f"# Adapting the foundation model ({'quick' if a.quick else 'full'})", "",
         f"{info['date']}, xrfcore {info['version']}, shipped model {info['model_id']}, torch threads {a.threads}, "
         f"{info['cpu']}; total {info['total_s'] / 60:.1f} min. Command: `{info['command']}`", ""]
    if real:
        sp = real["speed"]
        L += ["## Real Itrax CD166_19_S1 (Mo tube, 30 kV): reconstruction error", "",
              f"Adapted with `xrfcore adapt` on REP1 ({real['n_train']} spectra; {real['n_val']} in depth blocks 3 and 8 "
              f"held out), {real['steps']} steps x {real['batch']}. {real['window']['text']}. Re-initialised: "
              + ", ".join(r["parameter"] for r in real["window"]["reinitialised"]) + f"; {real['window']['carried_over']}. "
              f"REP2: {real['n_rep2']} spectra ({real['n_rep2_held']} at the held-out depths); simulated: {real['n_sim']} "
              "spectra. val_loss: each model's own input space (different windows: not comparable across models); "
              "rel: median relative error in counts over hidden channels (own window / 0-10.24 keV, the same "
              "patches hidden for every model).", "",
              "| model | spectra | n | val_loss (own space) | rel (own window) | rel 0-10.24 keV |", "|---|---|---|---|---|---|"]
        for r in real["rows"]:
            L.append(f"| {r['model']} | {r['set']} | {r['n']} | {r['val_loss']:.5f} | {r['rel_own']:.4f} | {r['rel_10']:.4f} |")
        L += ["", "Noise floor rows: REP1 and REP2 spectra of the same depth differ by counting noise; their "
                  "difference over sqrt 2 (all channels, no model) estimates one measurement's noise, which a "
                  "reconstruction error cannot go far below (the simulated spectra carry less noise per channel "
                  "in 0-10.24 keV: 10 s Avaatech counts on 20 eV channels)."]
        by = {(r["model"].split(":")[0].split(" ")[0], r["set"].split(" ")[0] + (" held" if "held" in r["set"] else "")): r
              for r in real["rows"]}
        simref = by[("before", "simulated")]
        L += ["", "Real / simulated ratio (reference: the shipped model on the simulated spectra; target after <= 3x):", "",
              "| measure | real set | before (shipped) | after (adapted) | scratch | adapted on simulated |",
              "|---|---|---|---|---|---|"]
        for meas in ("val_loss", "rel_10", "rel_own"):
            for key in (("REP1", "REP1 held"), ("REP2", "REP2"), ("REP2h", "REP2 held")):
                k = key[1]
                vals = [by[(mm, k)][meas] / simref[meas] for mm in ("before", "after", "scratch")]
                L.append(f"| {meas} | {k} | {vals[0]:.1f}x | {vals[1]:.1f}x | {vals[2]:.1f}x | "
                         f"{by[('after', 'simulated')][meas] / simref[meas]:.1f}x |")
        fl = {r["model"].split(",")[1].strip().split(" ")[0]: r for r in real["rows"] if r["model"].startswith("noise floor")}
        if fl:
            L.append(f"| noise floor / simulated | REP1 vs REP2 | val_loss {fl['before']['val_loss'] / simref['val_loss']:.1f}x "
                     f"(0-10.24 keV window), {fl['after']['val_loss'] / simref['val_loss']:.1f}x (adapted window) | rel 0-10.24 keV "
                     f"{fl['before']['rel_10'] / simref['rel_10']:.1f}x | rel own (adapted window) "
                     f"{fl['after']['rel_own'] / simref['rel_own']:.1f}x | |")
        L += ["", f"CPU adaptation time: {sp['s_per_1000_spectra']:.1f} s per 1,000 spectra drawn over the whole run "
                  f"({sp['spectra_drawn']} drawn, training {sp['train_wall_s']:.0f} s; first steps "
                  f"{sp['s_per_1000_first_steps']} s, {sp['cpu_s_per_1000_first_steps']} CPU-s) with a "
                  f"{sp['window_patches']}-patch window; adapt.CPU_S_PER_1000_SPECTRA = {sp['CPU_S_PER_1000_SPECTRA']:g} "
                  "(measured with the 32-patch window). Whole `xrfcore adapt` command "
                  f"{sp['adapt_wall_s']:.0f} s; scratch pretraining {sp['scratch_wall_s']:.0f} s.", ""]
    if sim:
        L += ["## SIMULATED unseen head (bench-unseen-head): fine-tuning after adaptation", "",
              f"Label cores {', '.join(sim['label_cores'])} ({sim['n_pool']} lab samples), test cores "
              f"{', '.join(sim['test_cores'])} ({sim['n_test']} samples, never adapted or fine-tuned on). Adapted "
              f"{sim['steps']} steps ({sim['drawn']} spectra drawn, training {sim['train_wall_s']:.0f} s, "
              f"{1000 * sim['train_wall_s'] / sim['drawn']:.1f} s per 1,000). {sim['window']['text']}.", "",
              "Held-out test cores, reconstruction (`xrfcore adapt` table):", "", "| held out | n | before | after | rel before | rel after |",
              "|---|---|---|---|---|---|"]
        for r in sim["table"]:
            L.append(f"| {r['held_out']} | {r['n_spectra']} | {r['before']:.5f} | {r['after']:.5f} | "
                     f"{_f(r.get('rel_before'), 4)} | {_f(r.get('rel_after'), 4)} |")
        L += ["", f"R2 and 90 % interval coverage on the test cores, mean +- sd over {a.seeds} seeds (label draw and "
                  "fine-tuning seed):", "",
              "| labels | mode | foundation | CaCO3 R2 | TOC R2 | CaCO3 cov | TOC cov | fit s |", "|---|---|---|---|---|---|---|---|"]
        for r in sim["rows"]:
            L.append(f"| {r['labels']} | {r['mode']} | {r['foundation']} | {_f(r['CaCO3_r2'])} +- {_f(r['CaCO3_r2_sd'])} | "
                     f"{_f(r['TOC_r2'])} +- {_f(r['TOC_r2_sd'])} | {_f(r['CaCO3_cov'], 2)} | {_f(r['TOC_cov'], 2)} | {_f(r['fit_s'], 1)} |")
        wins = []
        for b in sorted({r["labels"] for r in sim["rows"]}):
            for mode in a.modes:
                g = {r["foundation"]: r for r in sim["rows"] if r["labels"] == b and r["mode"] == mode}
                if "adapted" in g and "unadapted (shipped)" in g:
                    for t in ("CaCO3", "TOC"):
                        ra, ru = g["adapted"][f"{t}_r2"], g["unadapted (shipped)"][f"{t}_r2"]
                        wins.append((b, mode, t, ra is not None and ru is not None and ra > ru))
        L += ["", "Adapted beats unadapted (R2): " + ", ".join(f"{b} {m} {t}: {'yes' if w else 'NO'}" for b, m, t, w in wins), ""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CPU variant (under 10 min on a free 2-core machine)")
    ap.add_argument("--model", help="base foundation model (default: the shipped one)")
    ap.add_argument("--steps-real", type=int)
    ap.add_argument("--steps-sim", type=int)
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=("real", "sim"))
    ap.add_argument("--out", help="markdown results (default tests/benchmarks/results/adapt[_quick].md)")
    ap.add_argument("--keep", help="work folder to keep (emptied first)")
    a = ap.parse_args(argv)
    q = a.quick
    a.steps_real = a.steps_real or (60 if q else 600)
    a.steps_sim = a.steps_sim or (60 if q else 600)
    a.seeds = a.seeds or (2 if q else 3)
    a.batch = 64
    a.sim_length = 2.0 if q else 3.0
    a.label_cores, a.test_cores, a.core_length = (3, 2, 1.0) if q else (4, 2, 2.0)
    a.spacing = 10.0 if q else 20.0
    a.budgets = [10, 50, 100]
    a.modes = ["head"] if q else ["head", "full"]
    a.ft_epochs, a.ft_patience = (15, 5) if q else (60, 10)
    import torch

    from xrfcore import __version__, models_registry
    from xrfcore.model import checkpoint

    torch.set_num_threads(a.threads)
    shipped = models_registry.resolve(a.model)
    work = Path(a.keep or tempfile.mkdtemp(prefix="bench_adapt_"))
    if a.keep:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    out = Path(a.out) if a.out else HERE / "results" / ("adapt_quick.md" if q else "adapt.md")
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(real, sim, final):   # after each part: a slow or interrupted run keeps what it measured
        info = {"date": dt.date.today().isoformat(), "version": __version__,
                "model_id": checkpoint.load_card(shipped)["id"], "cpu": f"{os.cpu_count()} logical CPUs",
                "total_s": time.time() - t0, "complete": final,
                "command": "python tests/benchmarks/bench_adapt.py " + " ".join(sys.argv[1:] if argv is None else argv)}
        md = render(a, real, sim, info)
        out.write_text(md + "\n")
        out.with_suffix(".json").write_text(json.dumps({"args": vars(a), "info": info, "real": real, "sim": sim},
                                                       indent=1, default=str))
        log(f"written {out} and {out.with_suffix('.json')}")
        return md
    real = real_part(a, work, shipped) if a.only in (None, "real") and REPS.is_dir() else None
    if real is not None:
        write(real, None, False)
    sim = sim_part(a, work, shipped) if a.only in (None, "sim") else None
    print(write(real, sim, True))
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
