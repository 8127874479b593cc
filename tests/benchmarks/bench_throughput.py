"""Pretraining and inference throughput, peak memory, energy-window effect (CPU; CUDA if present).

Compares, in one run on the same simulated archive and the same model:
  bare    the model step alone on a batch already in memory (forward + backward + AdamW)
  e2e     xrfcore's pretrain() on the project's spectra (in memory, one tensor), and with the
          HDF5 read included
  ref     the research-style pipeline: one CSV per spectrum read with np.loadtxt through a
          torch DataLoader (num_workers=0), z-scored per item
and prints spectra/s, the ratios (goal: e2e / bare >= 0.9), inference rates, peak memory and the
cost/gain of reading only 0-10.24 keV (512 channels, 32 tokens) instead of 2048 channels.

    .venv/bin/python tests/benchmarks/bench_throughput.py [--quick] [--device cpu|cuda|auto]
All data are SIMULATED (xrfcore.simulate).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from xrfcore.model.config import ModelConfig  # noqa: E402
from xrfcore.model.mae import MaskedAutoencoderViT  # noqa: E402
from xrfcore.model.transforms import make_transform, window  # noqa: E402
from xrfcore.reconstruct import reconstruct  # noqa: E402
from xrfcore.train.data import load_project  # noqa: E402
from xrfcore.train.device import resolve_device  # noqa: E402
from xrfcore.train.pretrain import TrainConfig, _param_groups, mask_generator, pretrain  # noqa: E402


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizer(model, device):
    return torch.optim.AdamW(_param_groups(model, 0.05), lr=5e-4, betas=(0.9, 0.95),
                             foreach=device.type == "cuda")


def autocast(device, on=True):
    if device.type == "cuda" and on:
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    import contextlib
    return contextlib.nullcontext()


def train_steps(model, opt, batches, device, mask_ratio=0.5, amp=True, cpu_bf16=False):
    """Run the steps; returns spectra/s over them (after the caller's warm-up)."""
    n = 0
    sync(device)
    t = time.perf_counter()
    for step, xb in enumerate(batches):
        xb = xb.to(device, non_blocking=True)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if cpu_bf16 else autocast(device, amp)
        with ctx:
            loss, _, _ = model(xb, mask_ratio, generator=mask_generator(device, 0, step, 0))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        n += len(xb)
    sync(device)
    return n / (time.perf_counter() - t)


def bare(cfg, Z, batch, device, **kw):
    """Closure run(k) -> spectra/s of k bare steps (batches already in memory), after warm-up."""
    torch.manual_seed(0)
    model = MaskedAutoencoderViT(cfg).to(device)
    t = time.perf_counter()
    opt = make_optimizer(model, device)
    first_opt_s = time.perf_counter() - t
    Zd = Z.to(device)
    rng = np.random.default_rng(0)

    def batches(k):
        for _ in range(k):
            yield Zd[torch.from_numpy(rng.integers(0, len(Zd), batch)).to(device)]

    t = time.perf_counter()
    train_steps(model, opt, batches(2), device, **kw)  # warm-up (lazy AdamW state, kernels)
    warm_s = time.perf_counter() - t
    run = lambda k: train_steps(model, opt, batches(k), device, **kw)  # noqa: E731
    return run, first_opt_s, warm_s, model


def e2e(X, cfg, batch, device):
    """Closure run(k) -> steady-state spectra/s of xrfcore's pretrain() (k + 2 steps; the rate is
    taken from its own metrics rows between step 2 and the end, so setup is excluded) + setup s."""
    setup = []

    def run(k):
        rows = []
        t = time.perf_counter()
        pretrain(X, cfg, TrainConfig(steps=k + 2, batch_size=batch, log_every=1, warmup_steps=1,
                                     device=str(device), seed=0), on_metrics=rows.append)
        wall = time.perf_counter() - t
        setup.append(wall - (rows[-1]["time_s"] - rows[0]["time_s"]) * (k + 2) / (k + 1))
        return k * batch / (rows[-1]["time_s"] - rows[1]["time_s"])

    return run, setup


class CsvSpectra(torch.utils.data.Dataset):
    """The research pipeline: one CSV file per spectrum, np.loadtxt, per-item z-score."""

    def __init__(self, files, cfg):
        self.files, self.cfg = files, cfg

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        x = np.loadtxt(self.files[i], delimiter=",", dtype=np.float32)[self.cfg.window]
        return torch.from_numpy((x - x.mean()) / max(float(x.std()), 1e-6))


def reference(cfg, X, batch, device, folder):
    """Closure run(k) -> spectra/s of k steps fed by CSV files through a DataLoader; data-only rate."""
    files = []
    for i, x in enumerate(X):
        f = folder / f"spe_{i:06d}.csv"
        np.savetxt(f, x[None], delimiter=",", fmt="%d")
        files.append(f)
    loader = torch.utils.data.DataLoader(CsvSpectra(files, cfg), batch_size=batch, shuffle=True,
                                         num_workers=0, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = MaskedAutoencoderViT(cfg).to(device)
    opt = make_optimizer(model, device)

    def batches(k):
        got = 0
        while got < k:
            for xb in loader:
                yield xb
                got += 1
                if got >= k:
                    return

    train_steps(model, opt, batches(2), device)

    def data_only(k):
        t = time.perf_counter()
        n = sum(len(xb) for xb in batches(k))
        return n / (time.perf_counter() - t)

    return (lambda k: train_steps(model, opt, batches(k), device)), data_only


def rounds(fns: dict, k: int, n_rounds: int) -> dict:
    """Interleave the measurements (A B C A B C ...) so load changes on a shared machine hit all
    alike; returns name -> list of rates."""
    out = {name: [] for name in fns}
    for _ in range(n_rounds):
        for name, fn in fns.items():
            out[name].append(fn(k))
    return out


def window_error(m_full, m_win, X, seed=7):
    """Relative error in counts (sum |error| / sum counts) on the same hidden 0-10.24 keV patches
    for the 2048-channel model and the 512-channel model (half of each model's patches hidden)."""
    rng = np.random.default_rng(seed)
    low = np.zeros(32, bool)
    low[rng.choice(32, 16, replace=False)] = True
    high = np.zeros(96, bool)
    high[rng.choice(96, 48, replace=False)] = True
    card = {"transform": make_transform("zscore").to_dict()}
    out = []
    for model, mask in ((m_full, np.concatenate([low, high])), (m_win, low)):
        r = reconstruct(model, card, X, mask=mask)
        hid = r["mask"][:, :512]
        out.append(float(np.abs(r["error"][:, :512][hid]).sum() / max(r["measured"][:, :512][hid].sum(), 1e-9)))
    return out


def train_and_infer(args, cfg, X, Z, batch, steps, device, load_s, tmp, rows, n_rounds):
    """Training throughput (bare / pretrain() / CSV reference, interleaved) and inference rates."""
    bare_run, first_opt_s, warm_s, model = bare(cfg, Z, batch, device)
    e2e_run, e2e_setup = e2e(X, cfg, batch, device)
    n_ref = min(len(X), max(batch * 4, 256))
    (tmp / "csv").mkdir()
    ref_run, ref_data = reference(cfg, X[:n_ref], batch, device, tmp / "csv")
    fns = {"bare": bare_run, "e2e": e2e_run, "ref": ref_run}
    if device.type == "cpu" and not args.quick:
        fns["bf16"] = bare(cfg, Z, batch, device, cpu_bf16=True)[0]
    got = rounds(fns, steps, n_rounds)
    best = {k: max(v) for k, v in got.items()}
    med = {k: float(np.median(v)) for k, v in got.items()}
    fmt = lambda v: "/".join(f"{x:.1f}" for x in v)  # noqa: E731
    rows.append(("bare model step (best of rounds)", best["bare"],
                 f"rounds {fmt(got['bare'])}; first AdamW construction {first_opt_s:.2f} s, "
                 f"2 warm-up steps {warm_s:.2f} s"))
    rows.append(("pretrain() steady state (best)", best["e2e"],
                 f"rounds {fmt(got['e2e'])}; e2e/bare best {best['e2e'] / best['bare']:.2f}, "
                 f"median {med['e2e'] / med['bare']:.2f}; setup per call {np.median(e2e_setup):.2f} s"))
    seen = steps * batch
    with_load = seen / (seen / best["e2e"] + float(np.median(e2e_setup)) + load_s)
    rows.append((f"... one {steps}-step run incl. setup + HDF5 read", with_load,
                 "setup and the read are once per run; they vanish over a real run's epochs"))
    rows.append(("reference: CSV per spectrum + DataLoader", best["ref"],
                 f"rounds {fmt(got['ref'])}; data alone {ref_data(max(2, steps // 2)):.0f} spectra/s; "
                 f"xrfcore / reference {best['e2e'] / best['ref']:.2f}"))
    if "bf16" in got:
        rows.append(("CPU bf16 autocast (not used by xrfcore)", best["bf16"],
                     f"rounds {fmt(got['bf16'])}; {best['bf16'] / best['bare']:.2f}x the fp32 rate"))
    rss_train = maxrss_mb()
    m_e2e = model
    e2e_loop, bare_rate, ref_rate = best["e2e"], best["bare"], best["ref"]

    # -- inference -------------------------------------------------------------------------
    model.eval()
    Zd = Z.to(device)
    with torch.no_grad():
        model.embed(Zd[:8])
        sync(device)
        t = time.perf_counter()
        k = 0
        for i in range(0, min(len(Zd), 1024), 256):
            model.embed(Zd[i:i + 256])
            k += len(Zd[i:i + 256])
        sync(device)
        emb_rate = k / (time.perf_counter() - t)
    rows.append(("inference: embed (encoder, no mask)", emb_rate, "batch 256"))
    card_e2e = {"transform": make_transform("zscore").to_dict()}
    t = time.perf_counter()
    n_rec = min(len(X), 512)
    reconstruct(m_e2e, card_e2e, X[:n_rec], 0.5, 0)
    rows.append(("inference: reconstruct() in counts", n_rec / (time.perf_counter() - t),
                 "one batch, incl. window, transform and inverse"))

    return e2e_loop, bare_rate, ref_rate, rss_train


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run (about a minute on 1 CPU thread)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--spectra", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--window-steps", type=int, help="training steps of each model in the energy-window "
                                                     "comparison (default: the timed steps per round)")
    ap.add_argument("--window-only", action="store_true", help="run only the energy-window comparison")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    n_spec = args.spectra or (512 if args.quick else 2048)
    steps = args.steps or (4 if args.quick else 10)  # timed steps per round
    batch = args.batch or (32 if args.quick else 64)
    if device.type == "cuda":
        batch = args.batch or 256
        steps = args.steps or 30
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"# xrfcore throughput benchmark on SIMULATED spectra | device: {card} | torch {torch.__version__}")
    print(f"# {n_spec} spectra, model {args.size}, batch {batch}, {steps} timed steps per round, mask ratio 0.5")
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from xrfcore.simulate.archive import simulate_archive

        t = time.perf_counter()
        simulate_archive(tmp / "archive.h5", n_spec, args.heads, seed=0)
        print(f"# simulated the archive in {time.perf_counter() - t:.1f} s (not timed below)")

        cfg = ModelConfig.preset(args.size)
        cfg512 = ModelConfig.preset(args.size, window_channels=512)

        # -- data path: HDF5 -> memory -> transform -------------------------------------------
        tracemalloc.start()
        t = time.perf_counter()
        data = load_project(tmp / "archive.h5", cfg)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        Z = torch.from_numpy(make_transform("zscore").apply(window(data.counts, cfg)))
        prep_s = time.perf_counter() - t
        _, data_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        X = data.counts
        rows.append(("HDF5 -> memory (load_project)", len(X) / load_s, f"{load_s:.2f} s, tracemalloc peak "
                     f"{data_peak / 2**20:.0f} MiB for {X.nbytes / 2**20:.0f} MiB of spectra"))
        rows.append(("window + z-score (whole set)", len(X) / prep_s, f"{prep_s:.2f} s"))

        # -- training throughput: bare step, pretrain(), CSV reference, interleaved ----------------
        rss0 = maxrss_mb()
        n_rounds = 2 if args.quick else 3
        if args.window_only:
            e2e_loop = bare_rate = ref_rate = float("nan")
            rss_train = rss0
        else:
            e2e_loop, bare_rate, ref_rate, rss_train = train_and_infer(args, cfg, X, Z, batch, steps, device,
                                                                       load_s, tmp, rows, n_rounds)

        # -- energy window: 2048 channels (128 tokens) vs 0-10.24 keV (512 channels, 32 tokens) --
        Z512 = torch.from_numpy(make_transform("zscore").apply(window(X, cfg512)))
        w_steps = args.window_steps or max(4, steps)
        n_eval = min(len(X) // 4, 512)  # held out from the window models' training
        Xw_train, Xw_eval = X[n_eval:], X[:n_eval]
        m_full, _ = pretrain(Xw_train, cfg, TrainConfig(steps=w_steps, batch_size=batch, lr=1e-3, device=str(device),
                                                 seed=1, log_every=w_steps))
        m_win, _ = pretrain(Xw_train, cfg512, TrainConfig(steps=w_steps, batch_size=batch, lr=1e-3, device=str(device),
                                                   seed=1, log_every=w_steps))
        wr = rounds({"full": bare(cfg, Z, batch, device)[0], "win": bare(cfg512, Z512, batch, device)[0]},
                    max(4, steps // 2), n_rounds)
        r_full, r_win = max(wr["full"]), max(wr["win"])
        l_full, l_win = window_error(m_full, m_win, Xw_eval)
        rows.append(("window 2048 ch (128 tokens): bare step", r_full,
                     f"after {w_steps} steps: relative error on hidden 0-10.24 keV channels of "
                     f"{n_eval} held-out spectra {l_full:.3f}"))
        rows.append(("window 512 ch (32 tokens): bare step", r_win,
                     f"after {w_steps} steps: relative error there {l_win:.3f}; speed-up {r_win / r_full:.2f}x"))

    print()
    print(f"{'measurement':44s} {'spectra/s':>10s}  notes")
    for name, rate, note in rows:
        print(f"{name:44s} {rate:10.1f}  {note}")
    print()
    print(f"peak RSS: {rss0:.0f} MiB after loading, {rss_train:.0f} MiB after training, {maxrss_mb():.0f} MiB at the end")
    if device.type == "cuda":
        print(f"peak CUDA memory allocated: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    if not args.window_only:
        print(f"RESULT e2e/bare = {e2e_loop / bare_rate:.2f} (goal >= 0.9); e2e/reference = {e2e_loop / ref_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
