"""Sampling benchmark on SIMULATED cores: do the depths `xrfcore suggest` picks teach a fine-tune more
than evenly spaced or random lab samples?

Simulated cores (3 scanner heads) written as raw Avaatech folders and imported with `xrfcore import`
like a user's (``bench_accuracy.simulate``), the shipped foundation model, lab values available at
every candidate depth (1 cm intervals; the simulator's truth with lab error as
``bench_accuracy.lab_rows`` adds it: CaCO3 sd 1 wt%, TOC sd 3 % + 0.02 wt%). Per seed the cores are
split in half: training cores (where samples may be taken) and held-out cores. For K = 10, 20, 40:
head-mode fine-tune on K samples of the training cores chosen as
  * suggested: ``xrfcore.sampling`` with the foundation model (one round, no lab samples yet);
  * suggested, 2 rounds: K/2 suggested, fine-tune, then K/2 more suggested with the fine-tuned model
    (interval-width weights, seeded with the first K/2);
  * evenly spaced: K depths evenly spaced along the training cores (one after another), seeded phase;
  * random: K of the same candidate depths at random;
all from the same candidates (cracked / low-count depths excluded from every arm). R2 of CaCO3 and
TOC against the noise-free truth on every candidate depth of the held-out cores, and on the training
cores' depths not sampled; mean and sd over seeds (each seed: another split of the cores, other lab
errors). One K=10 suggestion is also made with the CLI (`xrfcore suggest`) and checked to match.

    .venv/bin/python tests/benchmarks/bench_sampling.py [--quick] [--seeds 3]

--quick: 10 cores x 150 spectra (minutes on 2 CPU cores); full: 24 cores x 300 spectra, 5 seeds.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
from tests.benchmarks.bench_accuracy import lab_rows, simulate  # noqa: E402
from xrfcore import __version__, sampling  # noqa: E402
from xrfcore.train import finetune as ft  # noqa: E402

TARGETS = ("CaCO3", "TOC")
METHODS = ("suggested", "suggested, 2 rounds", "evenly spaced", "random")
MODEL = HERE.parents[1] / "models" / "xrfcore-tiny-sim-v3"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def candidate_truth(tab: pd.DataFrame, truth: dict) -> pd.DataFrame:
    """Noise-free CaCO3 / TOC of each candidate interval: the truth averaged over [top, bottom]."""
    out = np.full((len(tab), 2), np.nan)
    for core, rows in tab.groupby("core").indices.items():
        t = truth[core]
        d = t.depth_mm.to_numpy(float)
        for i in rows:
            inside = (d >= tab.depth_top_mm.iat[i]) & (d <= tab.depth_bottom_mm.iat[i])
            if inside.any():
                out[i] = t.loc[inside, ["CaCO3", "TOC"]].mean().to_numpy(float)
    return pd.DataFrame(out, columns=list(TARGETS))


def lab_values(tab: pd.DataFrame, truth: dict, rng) -> pd.DataFrame:
    """Lab values (with lab error) at every candidate: ``bench_accuracy.lab_rows`` per 1 cm interval."""
    parts = []
    for core, rows in tab.groupby("core").indices.items():
        t = truth[core]
        tops = tab.depth_top_mm.to_numpy(float)[rows]
        r = lab_rows({core: t}, [core], 10.0, rng)  # every 1 cm from the first whole cm
        r = r.set_index("depth_top_mm").reindex(tops)
        parts.append(pd.DataFrame({"i": rows, "CaCO3": r.CaCO3.to_numpy(float), "TOC": r.TOC.to_numpy(float)}))
    p = pd.concat(parts).sort_values("i")
    return p.set_index("i")[list(TARGETS)].reindex(range(len(tab))).reset_index(drop=True)


def head_predict(reg, card, E) -> pd.DataFrame:
    """Head-mode predictions from precomputed embeddings (the encoder is frozen in head mode, so
    this equals Predictor.predict_counts; checked once in main)."""
    lin = reg.fc[0]
    Zp = E @ lin.weight.detach().numpy().T.astype(np.float64) + lin.bias.detach().numpy().astype(np.float64)
    out = {}
    for j, t in enumerate(card["targets"]):
        st = card["target_stats"][t]
        out[t] = ft.from_space(Zp[:, j] * st["std"] + st["mean"], st)
    return pd.DataFrame(out)


def intervals(reg, card, E, scheme="within-core") -> pd.DataFrame:
    """Predictions with their intervals (Predictor.half_width on the same embeddings)."""
    pr = ft.Predictor.from_model(reg, card, device="cpu")
    df = head_predict(reg, card, E)
    for j, t in enumerate(card["targets"]):
        st = card["target_stats"][t]
        v, half = ft.to_space(df[t].to_numpy(float), st), pr.half_width(t, j, E, scheme)
        df[f"{t}_lo"], df[f"{t}_hi"] = ft.from_space(v - half, st), ft.from_space(v + half, st)
    return df


def r2(y, p):
    return ft.regression_metrics(y, p)["r2"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, help="seeds (default 3 quick / 5 full)")
    ap.add_argument("--ks", default="10,20,40")
    ap.add_argument("--keep", help="keep the project in this folder")
    ap.add_argument("--reuse", action="store_true", help="with --keep: reuse the project kept there")
    ap.add_argument("--out", help="markdown file (default tests/benchmarks/results/sampling[_quick].md)")
    ap.add_argument("--render", metavar="JSON", help="only re-write the tables from a results .json")
    a = ap.parse_args(argv)
    if a.render:
        res = json.loads(Path(a.render).read_text())
        md = render(pd.DataFrame(res["rows"]), res["info"])
        Path(a.render).with_suffix(".md").write_text(md)
        print(md)
        return 0
    torch.set_num_threads(1)
    n_cores, core_spectra = (10, 150) if a.quick else (24, 300)
    seeds = list(range(a.seeds or (3 if a.quick else 5)))
    ks = [int(k) for k in a.ks.split(",")]
    t_all = time.time()
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="xrf-bench-sampling-"))
    work.mkdir(parents=True, exist_ok=True)
    project, kept = work / "archive.h5", work / "truth.pkl"
    if a.reuse and project.exists() and kept.exists():
        truth, head_of = pd.read_pickle(kept)
        log(f"reusing the project in {work}")
    else:
        if project.exists():
            project.unlink()
        log(f"simulating {n_cores} cores x {core_spectra} spectra, 3 heads (SIMULATED); importing with the CLI")
        truth, head_of = simulate(project, n_cores, core_spectra, 0)
        pd.to_pickle((truth, head_of), kept)
    t_sim = time.time() - t_all
    cores = sorted(c for c in truth if c != "UNSEENHEAD-1")  # the unseen-head core is another benchmark's
    encoder, _, card = sampling.load_model(MODEL, "cpu")
    from xrfcore.model.config import ModelConfig
    grid = ModelConfig.from_dict(card["config"]).grid()
    cand = sampling.candidates(project, cores, grid=grid)
    tab = cand.table
    E = sampling.embed(encoder, card, cand, device="cpu")
    Y = candidate_truth(tab, truth)
    usable = (~tab.low_counts.to_numpy()) & Y.notna().all(axis=1).to_numpy()
    log(f"{len(tab)} candidate depths on {len(cores)} cores; {int(tab.low_counts.sum())} low-count (crack) "
        f"excluded; {int(usable.sum())} usable; embedded in {time.time() - t_all - t_sim:.0f} s")
    core_of = tab.core.to_numpy()

    # the CLI makes the same suggestions as the library (first seed's training cores, K=10)
    rng0 = np.random.default_rng(0)
    train0 = sorted(rng0.permutation(cores)[: len(cores) // 2])
    csv = work / "sampling_list.csv"
    exe = str(Path(sys.executable).with_name("xrfcore"))
    cmd = [exe, "suggest", "-p", str(project), "--model", str(MODEL), "-k", "10", "--seed", "0",
           "--device", "cpu", "-o", str(csv), "--force"] + sum((["--core", c] for c in train0), [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(HERE.parents[1])))
    cli = pd.read_csv(csv, comment="#")
    sub = np.flatnonzero(np.isin(core_of, train0))
    lib = sampling.select(tab.iloc[sub].reset_index(drop=True), E[sub], 10, seed=0)
    cli_match = bool(np.array_equal(cli[["core", "depth_mm"]].to_numpy(), lib[["core", "depth_mm"]].to_numpy()))
    log(f"CLI sampling list {'matches' if cli_match else 'DIFFERS FROM'} the library's")

    rows, checked = [], False
    for s in seeds:
        rng = np.random.default_rng(1000 + s)
        perm = list(rng.permutation(cores))
        train_c, held_c = sorted(perm[: len(cores) // 2]), sorted(perm[len(cores) // 2:])
        lab = lab_values(tab, truth, rng)
        pool = np.flatnonzero(usable & np.isin(core_of, train_c) & lab.notna().all(axis=1).to_numpy())
        held = np.flatnonzero(usable & np.isin(core_of, held_c))
        ptab = tab.iloc[pool].reset_index(drop=True)
        for k in ks:
            picks = {}
            picks["suggested"] = pool[sampling.select(ptab, E[pool], k, seed=s).attrs["rows"]]
            pos = (np.arange(k) + rng.uniform()) * len(pool) / k
            picks["evenly spaced"] = pool[np.minimum(pos.astype(int), len(pool) - 1)]
            picks["random"] = np.sort(rng.choice(pool, k, replace=False))
            fits = {}

            def fit(idx):
                y = lab.iloc[idx].reset_index(drop=True)
                return ft.finetune(MODEL, cand.X[idx], y, groups=core_of[idx], grid=cand.grid, mode="head",
                                   seed=s, device="cpu", ood=False)
            # two rounds: the first half as suggested by the foundation model, then the fine-tuned
            # model's interval widths weight the second half
            first = pool[sampling.select(ptab, E[pool], k // 2, seed=s).attrs["rows"]]
            reg1, card1 = fit(first)
            w, widest, why = sampling.uncertainty(intervals(reg1, card1, E[pool]))
            taken = tab.iloc[first][["core", "depth_top_mm", "depth_bottom_mm", "depth_mm"]]
            more = sampling.select(ptab, E[pool], k - len(first), labels=taken, weights=w, widest=widest,
                                   ood_reasons=why, seed=s).attrs["rows"]
            picks["suggested, 2 rounds"] = np.concatenate([first, pool[more]])
            for meth in METHODS:
                idx = picks[meth]
                assert len(np.unique(idx)) == k, (meth, k, len(np.unique(idx)))
                reg, c = fit(idx)
                fits[meth] = (reg, c)
                if not checked:  # the fast path equals the Predictor's
                    pr = ft.Predictor.from_model(reg, c, device="cpu")
                    a1 = pr.predict_counts(cand.X[held[:50]], cand.grid)[list(TARGETS)].to_numpy(float)
                    a2 = head_predict(reg, c, E[held[:50]]).to_numpy(float)
                    assert np.allclose(a1, a2, rtol=1e-3, atol=1e-3), np.abs(a1 - a2).max()
                    checked = True
                rest = np.setdiff1d(pool, idx)
                row = {"seed": s, "K": k, "method": meth}
                for name, ev in (("held-out cores", held), ("training cores, other depths", rest)):
                    p = head_predict(reg, c, E[ev])
                    for t in TARGETS:
                        row[f"{name}|{t}"] = r2(Y[t].to_numpy(float)[ev], p[t].to_numpy(float))
                rows.append(row)
            log(f"seed {s} K {k}: " + "; ".join(
                f"{r['method']} {r['held-out cores|CaCO3']:.3f}/{r['held-out cores|TOC']:.3f}"
                for r in rows[-len(METHODS):]) + " (held-out R2 CaCO3/TOC)")
    df = pd.DataFrame(rows)
    info = dict(quick=a.quick, n_cores=len(cores), core_spectra=core_spectra, seeds=seeds, cand=len(tab),
                usable=int(usable.sum()), cracks=int(tab.low_counts.sum()), t_sim=t_sim,
                t_all=time.time() - t_all, cli_match=cli_match, heads=sorted(set(head_of[c] for c in cores)))
    md = render(df, info)
    print(md)
    out = Path(a.out) if a.out else HERE / "results" / ("sampling_quick.md" if a.quick else "sampling.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    out.with_suffix(".json").write_text(json.dumps({"info": info, "rows": rows}, indent=1, default=str))
    log(f"written {out}")
    return 0


def render(df: pd.DataFrame, info: dict) -> str:
    cols = [f"{n}|{t}" for n in ("held-out cores", "training cores, other depths") for t in TARGETS]
    g = df.groupby(["K", "method"], sort=False)[cols]
    mean, sd = g.mean(), g.std()
    L = [f"# Sampling benchmark on SIMULATED cores ({'quick' if info['quick'] else 'full'})", "",
         f"xrfcore {__version__}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, shipped model "
         f"{MODEL.name}, CPU (1 thread). SIMULATED data throughout.", "",
         f"- {info['n_cores']} simulated cores (up to {info['core_spectra']} spectra each, 1 cm apart) (heads {', '.join(info['heads'])}), "
         "written as raw Avaatech folders and imported with `xrfcore import`; "
         f"{info['cand']} candidate 1 cm intervals, {info['cracks']} low-count (crack) ones excluded from every "
         f"arm, {info['usable']} usable.",
         "- Per seed: the cores split in half (training cores / held-out cores), lab values with lab error "
         "at every candidate (bench_accuracy.lab_rows); head-mode fine-tune (ridge on the frozen encoder) "
         "on K samples of the training cores; R2 against the noise-free truth at every usable candidate "
         "depth of the held-out cores, and at the training cores' depths not sampled.",
         "- suggested: `xrfcore.sampling` with the foundation model, one round. suggested, 2 rounds: K/2 "
         "suggested, fine-tuned, K/2 more weighted by the fine-tuned model's interval widths. evenly "
         "spaced: along the training cores one after another (seeded phase). random: uniform.",
         f"- CLI check: `xrfcore suggest` (K=10, seed 0) {'gives the same depths as' if info['cli_match'] else 'DIFFERS from'}"
         " the library call.",
         f"- Seeds: {len(info['seeds'])}; mean ± sd over seeds. Total {info['t_all'] / 60:.1f} min "
         f"(simulation + import {info['t_sim'] / 60:.1f} min).", "",
         "| K | method | held-out CaCO3 R2 | held-out TOC R2 | training cores (other depths) CaCO3 R2 "
         "| training cores TOC R2 |", "|---|---|---|---|---|---|"]
    for (k, meth), m in mean.iterrows():
        s = sd.loc[(k, meth)]
        L.append(f"| {k} | {meth} | " + " | ".join(f"{m[c]:.3f} ± {s[c]:.3f}" for c in cols) + " |")
    med = g.median()
    L += ["", "Medians over seeds (R2 of TOC on held-out cores is fragile: with few samples the log-space TOC "
          "head extrapolates to absurd values at a few unusual depths of some held-out cores, and one such "
          "seed sets the mean):", "",
          "| K | method | held-out CaCO3 R2 | held-out TOC R2 | training cores CaCO3 R2 | training cores TOC R2 |",
          "|---|---|---|---|---|---|"]
    for (k, meth), m in med.iterrows():
        L.append(f"| {k} | {meth} | " + " | ".join(f"{m[c]:.3f}" for c in cols) + " |")
    L += ["", "## Suggested minus evenly spaced: mean paired difference over seeds (seeds where suggested is better)", "",
          "| K | method | held-out CaCO3 | held-out TOC | training CaCO3 | training TOC |", "|---|---|---|---|---|---|"]
    for k in sorted(df.K.unique()):
        ev = df[(df.K == k) & (df.method == "evenly spaced")].set_index("seed")[cols]
        for meth in ("suggested", "suggested, 2 rounds"):
            d = df[(df.K == k) & (df.method == meth)].set_index("seed")[cols] - ev
            L.append(f"| {k} | {meth} | " + " | ".join(f"{d[c].mean():+.3f} ({int((d[c] > 0).sum())}/{len(d)})"
                                                      for c in cols) + " |")
    verdict = []
    for k in sorted(df.K.unique()):
        ev = mean.loc[(k, "evenly spaced")]
        su = mean.loc[(k, "suggested")]
        better = [c for c in cols if su[c] > ev[c]]
        verdict.append(f"K={k}: suggested beats evenly spaced on {len(better)} of {len(cols)} means"
                       + (f" ({', '.join(better)})" if better else ""))
    L += ["", "## Verdict (target: suggested beats evenly spaced at every K)", "", *[f"- {v}" for v in verdict],
          "- Reading: CaCO3 is near its ceiling (R2 ~0.98) with 10 evenly spaced samples on these simulated cores, "
          "so the arms differ by less than the spread over seeds; TOC on held-out cores is dominated by a few "
          "absurd log-space extrapolations (see the medians), so its means move by whole units with one seed. "
          "Three seeds on 12 cores are few: differences under about two sd are not evidence either way."]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
