"""Masked-spectrum pretraining: AdamW (0.9, 0.95), warm-up + cosine, gradient clipping, mixed
precision on CUDA, NaN guard, validation on held-out cores, exact resume, DDP under torchrun.

``pretrain(X, cfg, train_cfg, progress, token) -> (model, card)``; ``X`` is counts on the model grid.
The mask of step s on rank r is drawn from a generator seeded by (seed, s, r), and the batch order
by (seed, epoch), so a resumed run repeats exactly what an uninterrupted one would have done.
Gain/offset/resolution augmentation (``train.augment``, on by default) acts on the counts of each
batch before the input transform, drawn from a generator seeded the same way.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xrfcore.jobs import CancelToken, ProgressFn, no_progress
from xrfcore.model import checkpoint
from xrfcore.instrument import for_card as instrument_for_card
from xrfcore.model.config import ModelConfig
from xrfcore.model.mae import MaskedAutoencoderViT
from xrfcore.model.transforms import from_dict as transform_from_dict, make_transform, window
from xrfcore.train import distributed as D
from xrfcore.train.augment import AugmentConfig, Augmenter, apply_transform
from xrfcore.train.augment import generator as augment_generator
from xrfcore.train.data import counts_sha256
from xrfcore.train.device import amp_dtype, describe, resolve_device
from xrfcore.train.schedule import WarmupCosine, set_lr
from xrfcore.train.state import load_state, read_meta, save_state

CHECKPOINT_NAME = "checkpoint.safetensors"
METRICS_NAME = "metrics.jsonl"
MODEL_NAME = "model"


@dataclass
class TrainConfig:
    steps: int | None = None          # optimizer steps in total (wins over epochs)
    epochs: float | None = None       # passes over the (per-rank) training data; default 10
    batch_size: int = 128             # per process
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_steps: int | None = None   # default: 5 % of the steps
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: float = 1.0            # max gradient norm; 0 = off
    mask_ratio: float = 0.5
    transform: str = "zscore"
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"                 # auto | bf16 | fp16 | off (CUDA only; never on CPU)
    log_every: int = 10
    val_every: int = 0                # steps; 0 = at the end of each epoch
    checkpoint_every: int = 0         # steps; 0 = at the end of each epoch (needs out_dir)
    out_dir: str | None = None        # model, checkpoint and metrics log go here (rank 0)
    resume: str | None = None         # a checkpoint.safetensors (or the folder holding it)
    threads: int | None = None        # torch CPU threads (None: leave as is)
    # gain/offset/resolution augmentation of the counts (None or False: off); a resumed run
    # keeps its checkpoint's setting
    augment: AugmentConfig | dict | bool | None = field(default_factory=AugmentConfig)

    def __post_init__(self):
        self.augment = AugmentConfig.from_any(self.augment)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["augment"] = self.augment.to_dict() if self.augment is not None else None
        return d


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue  # fixed sin-cos positions
        (no_decay if p.ndim < 2 or name.endswith(("cls_token", "mask_token")) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _batches(n: int, batch: int) -> int:
    return max(1, math.ceil(n / batch))


def mask_generator(device, seed: int, step: int, rank: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 1009 + rank * 7919 + 17) % (2 ** 63))
    return g


@torch.no_grad()
def evaluate(model, Z: torch.Tensor, mask_ratio: float, batch_size: int, dtype=None, seed: int = 12345) -> float:
    """Mean masked-reconstruction loss over Z (fixed masks, so values compare across steps)."""
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(Z), batch_size):
        xb = Z[i:i + batch_size]
        g = mask_generator(Z.device, seed, i, 0)
        with _autocast(Z.device, dtype):
            loss, pred, mask = model(xb, mask_ratio, generator=g)
        total += float(model.loss_per_sample(xb, pred, mask).sum())
        n += len(xb)
    model.train()
    return total / max(n, 1)


def _autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def checkpoint_path(resume) -> Path:
    p = Path(resume)
    return p / CHECKPOINT_NAME if p.is_dir() else p


def pretrain(X, cfg: ModelConfig, train_cfg: TrainConfig, progress: ProgressFn = no_progress,
             token: CancelToken | None = None, *, X_val=None, data_info: dict | None = None,
             batch_hook=None, on_metrics=None, init_state: dict | None = None,
             init_transform: dict | None = None):
    """Pretrain a masked autoencoder on ``X`` (counts, (N, cfg.channels), on the model grid).

    ``X_val``: counts of held-out cores for validation. ``data_info``: what the card records about
    the data (cores, simulated flag, source...). ``batch_hook(step, indices)``: sees each batch's
    sample indices (tests). ``on_metrics(row)``: each metrics row (step, epoch, lr, loss,
    spectra_per_s, time_s[, val_loss]) as it is logged (live loss plots).
    ``init_state`` / ``init_transform``: continue from an existing foundation model (its state dict,
    same architecture and grid, and its fitted ``Transform.to_dict()``, kept as it is) instead of
    random weights and a transform fitted to ``X`` (xrfcore.train.adapt); ignored when resuming.
    Under torchrun each rank trains on its shard; rank 0 writes files.
    Returns (model on its device, in eval mode, card). Raises ``Cancelled`` (nothing half-written:
    only complete checkpoints from earlier steps remain) or ``FloatingPointError`` on a NaN loss.
    """
    t_start = time.perf_counter()
    tc = train_cfg
    if tc.threads:
        torch.set_num_threads(int(tc.threads))
    dev_pref = resolve_device(tc.device)  # raises early when CUDA is asked for but absent
    info = D.init_from_env(dev_pref.type == "cuda")
    try:
        return _pretrain(X, cfg, tc, progress if info.is_main else no_progress, token, X_val,
                         data_info or {}, batch_hook, on_metrics, info, t_start, init_state, init_transform)
    finally:
        D.shutdown(info)


def _pretrain(X, cfg, tc, progress, token, X_val, data_info, batch_hook, on_metrics, info, t_start,
              init_state=None, init_transform=None):
    device = resolve_device(tc.device, info.local_rank)
    dtype = amp_dtype(device, tc.amp)
    out = Path(tc.out_dir) if tc.out_dir else None
    if not 0.0 <= tc.mask_ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {tc.mask_ratio}")

    resume_meta = None
    if tc.resume:
        resume_meta = read_meta(checkpoint_path(tc.resume))
        ckpt_cfg = ModelConfig.from_dict(resume_meta["model_config"])
        if ckpt_cfg != cfg:
            raise ValueError(f"{tc.resume}: checkpoint was trained with another architecture/grid "
                             f"({ckpt_cfg.size}, {ckpt_cfg.input_channels} channels)")
        # resume exactly: the checkpoint's augmentation (none in checkpoints made before it existed)
        tc = dataclasses.replace(tc, augment=resume_meta.get("train_config", {}).get("augment"))

    # -- data: window, transform, into one tensor on the device ----------------------------------
    X = np.asarray(X)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"training data must be a non-empty (spectra, channels) array, got {X.shape}")
    data_sha = counts_sha256(X)
    Xw = window(X, cfg)
    if resume_meta is not None:
        if resume_meta["data_sha256"] != data_sha:
            raise ValueError(f"{tc.resume}: the training data differ from the checkpoint's "
                             "(sha256 mismatch); resume needs the same spectra")
        transform = transform_from_dict(resume_meta["transform"])
    elif init_transform is not None:  # continued pretraining: the base model's fitted transform
        transform = transform_from_dict(init_transform)
    else:
        transform = make_transform(tc.transform).fit(Xw)
    augmenter = Augmenter(tc.augment, cfg) if tc.augment is not None else None
    if augmenter is None:   # transformed once
        Z = torch.from_numpy(transform.apply(Xw)).to(device)
    else:   # counts of the window plus a margin: augmented, then transformed, per batch
        Z = torch.from_numpy(np.ascontiguousarray(X[:, augmenter.src], dtype=np.float32)).to(device)
    del Xw
    Zv = None
    if X_val is not None and len(X_val):
        Zv = torch.from_numpy(transform.apply(window(np.asarray(X_val), cfg))).to(device)
    n = len(Z)
    per_rank = math.ceil(n / info.world_size)
    steps_per_epoch = _batches(per_rank, tc.batch_size)
    total = int(tc.steps) if tc.steps else int(math.ceil((tc.epochs or 10) * steps_per_epoch))
    if total <= 0:
        raise ValueError("nothing to train: steps or epochs must be positive")
    warmup = tc.warmup_steps if tc.warmup_steps is not None else max(1, int(0.05 * total))
    sched = WarmupCosine(tc.lr, total, warmup, tc.min_lr)
    val_every = tc.val_every or steps_per_epoch
    ckpt_every = tc.checkpoint_every or steps_per_epoch

    # -- model, optimizer ---------------------------------------------------------------------
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed % (2 ** 32))
    model = MaskedAutoencoderViT(cfg)
    if init_state is not None and resume_meta is None:
        model.load_state_dict(init_state, strict=True)
    model = model.to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, tc.weight_decay), lr=tc.lr, betas=tuple(tc.betas),
                                  foreach=device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    history: list[dict] = []
    start = 0
    if resume_meta is not None:
        meta = load_state(checkpoint_path(tc.resume), model, optimizer, scaler, device)
        start = int(meta["step"])
        history = meta.get("history", [])
        if start >= total:
            raise ValueError(f"{tc.resume}: checkpoint is at step {start}, the run has {total} steps")
    net = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    def write_metrics(row: dict) -> None:
        history.append(row)
        if out and info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            with open(out / METRICS_NAME, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def state_meta(step: int) -> dict:
        return {"step": step, "total_steps": total, "schedule": sched.state_dict(),
                "model_config": cfg.to_dict(), "train_config": tc.to_dict(),
                "transform": transform.to_dict(), "data_sha256": data_sha, "history": history[-1000:],
                "world_size": info.world_size}

    # -- loop -----------------------------------------------------------------------------------
    model.train()
    epoch_idx, epoch_cache = -1, None
    run_loss, run_n, seen = 0.0, 0, 0
    t_loop = time.perf_counter()
    last_val = None
    progress(start, total, "starting")
    for step in range(start, total):
        if token is not None:
            token.raise_if_cancelled()
        epoch, pos = divmod(step, steps_per_epoch)
        if epoch != epoch_idx:
            epoch_idx = epoch
            epoch_cache = D.shard_indices(n, info.rank, info.world_size, epoch, tc.seed)
        idx = epoch_cache[pos * tc.batch_size:(pos + 1) * tc.batch_size]
        if batch_hook is not None:
            batch_hook(step, idx)
        xb = Z[torch.from_numpy(idx).to(device)]
        if augmenter is not None:
            xb = apply_transform(transform, augmenter(xb, augment_generator(tc.seed, step, info.rank)))
        lr = sched(step)
        set_lr(optimizer, lr)
        with _autocast(device, dtype):
            loss, _, _ = net(xb, tc.mask_ratio, generator=mask_generator(device, tc.seed, step, info.rank))
        mean_loss = float(D.all_mean(loss.detach(), info))
        if not math.isfinite(mean_loss):
            raise FloatingPointError(
                f"pretraining diverged: loss is {mean_loss} at step {step + 1} (lr {lr:.2e}); "
                "lower the learning rate, check the spectra for empty or corrupt rows, or use --amp off")
        scaler.scale(loss).backward()
        if tc.clip_grad and tc.clip_grad > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        run_loss += mean_loss * len(idx)
        run_n += len(idx)
        seen += len(idx) * info.world_size
        done = step + 1
        end_of_epoch = done % steps_per_epoch == 0
        do_val = Zv is not None and info.is_main and (done % val_every == 0 or done == total)
        if done % max(1, tc.log_every) == 0 or end_of_epoch or done == total or do_val:
            el = time.perf_counter() - t_loop
            row = {"step": done, "epoch": round(done / steps_per_epoch, 4), "lr": lr,
                   "loss": run_loss / max(run_n, 1), "spectra_per_s": seen / el if el > 0 else None,
                   "time_s": round(time.perf_counter() - t_start, 3)}
            if do_val:
                last_val = evaluate(model, Zv, tc.mask_ratio, max(tc.batch_size, 256), dtype)
                row["val_loss"] = last_val
            write_metrics(row)
            if on_metrics is not None and info.is_main:
                on_metrics(row)
            run_loss, run_n = 0.0, 0
        progress(done, total, f"loss {mean_loss:.4f}" + (f" val {last_val:.4f}" if last_val is not None else ""))
        if out and info.is_main and (done % ckpt_every == 0) and done < total:
            save_state(out / CHECKPOINT_NAME, model, optimizer, state_meta(done), scaler)
    D.barrier(info)

    # -- result ---------------------------------------------------------------------------------
    wall = time.perf_counter() - t_start
    train_rows = [r for r in history if "loss" in r]
    card = {
        "transform": transform.to_dict(),
        "simulated_data": data_info.get("simulated"),
        # tube, kV range, energy window and grid the model knows (xrfcore.instrument)
        "instrument": instrument_for_card(cfg, data_info),
        "seeds": {"seed": tc.seed, "mask": "generator seeded by (seed, step, rank)"},
        "training": {"task": "masked spectrum modeling", "config": tc.to_dict(), "steps": total,
                     "steps_per_epoch": steps_per_epoch, "epochs": total / steps_per_epoch,
                     "world_size": info.world_size, "device": describe(device),
                     "mixed_precision": str(dtype).replace("torch.", "") if dtype else "off",
                     "wall_s": round(wall, 2), "resumed_from_step": start or None},
        "data": {"n_train": n, "n_val": 0 if Zv is None else len(Zv), "train_sha256": data_sha,
                 "val_sha256": counts_sha256(X_val) if Zv is not None else None, **data_info},
        "metrics": {"train_loss": train_rows[-1]["loss"] if train_rows else None,
                    "val_loss": last_val, "mask_ratio": tc.mask_ratio},
    }
    if info.is_main:  # what the model knows, for out-of-distribution scores (xrfcore.ood)
        from xrfcore import ood
        ref, model.ood_arrays = ood.foundation_reference(model, card, X, X_val, seed=tc.seed, device=device,
                                                          source="end of pretraining")
        if not out:
            ood.attach(card, ref, model.ood_arrays, None)
    if out and info.is_main:
        # the final model files as one set: written into a staging folder that holds the run's
        # checkpoint and metrics (and anything else in out) and replaces out in one rename, so an
        # interrupt leaves the previous folder (with its last checkpoint for --resume) or the new one
        from xrfcore.fileio import atomic_dir
        with atomic_dir(out, keep=lambda name: True) as stage:
            ood.attach(card, ref, model.ood_arrays, stage / MODEL_NAME)
            checkpoint.save(stage / MODEL_NAME, model, card)
            # the final model supersedes the resumable state; keep one for extending the run
            save_state(stage / CHECKPOINT_NAME, model, optimizer, state_meta(total), scaler)
    return model.eval(), card
