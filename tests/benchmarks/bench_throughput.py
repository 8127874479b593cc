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


def bare(cfg, Z, steps, batch, device, **kw):
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
    return train_steps(model, opt, batches(steps), device, **kw), first_opt_s, warm_s, model


class CsvSpectra(torch.utils.data.Dataset):
    """The research pipeline: one CSV file per spectrum, np.loadtxt, per-item z-score."""

    def __init__(self, files, cfg):
        self.files, self.cfg = files, cfg

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        x = np.loadtxt(self.files[i], delimiter=",", dtype=np.float32)[self.cfg.window]
        return torch.from_numpy((x - x.mean()) / max(float(x.std()), 1e-6))


def reference(cfg, X, steps, batch, device, folder):
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
    rate = train_steps(model, opt, batches(steps), device)
    t = time.perf_counter()
    n = sum(len(xb) for xb in batches(max(2, steps // 2)))
    data_only = n / (time.perf_counter() - t)
    return rate, data_only


@torch.no_grad()
def window_loss(model, Z, cfg, patches: int, device, seed=123) -> float:
    """Masked-reconstruction loss on the first ``patches`` patches (0-10.24 keV for both models)."""
    model.eval()
    x = Z.to(device)
    loss, pred, mask = model(x, 0.5, generator=mask_generator(device, seed, 0, 0))
    per_patch = model._per_patch(x, pred)[:, :patches]
    m = mask[:, :patches]
    model.train()
    return float((per_patch * m).sum() / m.sum())


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
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    n_spec = args.spectra or (512 if args.quick else 2048)
    steps = args.steps or (8 if args.quick else 30)
    batch = args.batch or (32 if args.quick else 64)
    if device.type == "cuda":
        batch = args.batch or 256
        steps = args.steps or 50
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"# xrfcore throughput benchmark on SIMULATED spectra | device: {card} | torch {torch.__version__}")
    print(f"# {n_spec} spectra, model {args.size}, batch {batch}, {steps} timed steps, mask ratio 0.5")
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

        # -- bare model step ---------------------------------------------------------------------
        rss0 = maxrss_mb()
        bare_rate, first_opt_s, warm_s, model = bare(cfg, Z, steps, batch, device)
        rows.append(("bare model step", bare_rate, f"first AdamW construction {first_opt_s:.2f} s, "
                     f"2 warm-up steps {warm_s:.2f} s"))

        # -- end to end (pretrain) --------------------------------------------------------------
        t = time.perf_counter()
        m_e2e, c_e2e = pretrain(X, cfg, TrainConfig(steps=steps + 2, batch_size=batch, log_every=2,
                                                    warmup_steps=1, device=str(device), seed=0))
        wall = time.perf_counter() - t
        e2e_loop = c_e2e["training"]["steps"] * batch / max(wall, 1e-9)
        seen = (steps + 2) * batch
        e2e_with_load = seen / (wall + load_s)
        rows.append(("pretrain() end to end, in memory", e2e_loop,
                     f"{wall:.2f} s incl. transform, init, optimizer; ratio to bare {e2e_loop / bare_rate:.2f}"))
        rows.append(("... plus the HDF5 read", e2e_with_load,
                     f"ratio to bare {e2e_with_load / bare_rate:.2f} (the read is once per run, "
                     f"{100 * load_s / (wall + load_s):.0f}% of this short run)"))
        rss_train = maxrss_mb()

        # -- research-style reference ------------------------------------------------------------
        n_ref = min(len(X), max(batch * 4, 256))
        (tmp / "csv").mkdir()
        ref_rate, ref_data = reference(cfg, X[:n_ref], steps, batch, device, tmp / "csv")
        rows.append(("reference: CSV per spectrum + DataLoader", ref_rate,
                     f"data alone {ref_data:.0f} spectra/s; xrfcore e2e / reference {e2e_loop / ref_rate:.2f}"))

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

        # -- energy window: 2048 channels (128 tokens) vs 0-10.24 keV (512 channels, 32 tokens) --
        Z512 = torch.from_numpy(make_transform("zscore").apply(window(X, cfg512)))
        w_steps = max(4, steps)
        m_full, _ = pretrain(X, cfg, TrainConfig(steps=w_steps, batch_size=batch, lr=1e-3, device=str(device),
                                                 seed=1, log_every=w_steps))
        m_win, _ = pretrain(X, cfg512, TrainConfig(steps=w_steps, batch_size=batch, lr=1e-3, device=str(device),
                                                   seed=1, log_every=w_steps))
        r_full, *_ = bare(cfg, Z, max(4, steps // 2), batch, device)
        r_win, *_ = bare(cfg512, Z512, max(4, steps // 2), batch, device)
        n_eval = min(len(X), 512)
        # both losses on the 0-10.24 keV patches; z-scores differ (the full window's z-score also
        # spans the empty channels above ~10.5 keV), so compare them as rough indications
        l_full = window_loss(m_full, Z[:n_eval], cfg, 32, device)
        l_win = window_loss(m_win, Z512[:n_eval], cfg512, 32, device)
        rows.append(("window 2048 ch (128 tokens): bare step", r_full,
                     f"masked loss on 0-10.24 keV after {w_steps} steps {l_full:.4f}"))
        rows.append(("window 512 ch (32 tokens): bare step", r_win,
                     f"masked loss on 0-10.24 keV after {w_steps} steps {l_win:.4f}; speed-up {r_win / r_full:.2f}x"))

        if device.type == "cpu" and not args.quick:
            r_bf, *_ = bare(cfg, Z, 3, batch, device, cpu_bf16=True)
            rows.append(("CPU bf16 autocast (not used)", r_bf, f"{bare_rate / r_bf:.1f}x slower than fp32"))

    print()
    print(f"{'measurement':44s} {'spectra/s':>10s}  notes")
    for name, rate, note in rows:
        print(f"{name:44s} {rate:10.1f}  {note}")
    print()
    print(f"peak RSS: {rss0:.0f} MiB after loading, {rss_train:.0f} MiB after training, {maxrss_mb():.0f} MiB at the end")
    if device.type == "cuda":
        print(f"peak CUDA memory allocated: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    print(f"RESULT e2e/bare = {e2e_loop / bare_rate:.2f} (goal >= 0.9); e2e/reference = {e2e_loop / ref_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
