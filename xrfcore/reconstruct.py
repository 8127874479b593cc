"""Masked reconstruction of any spectrum, in counts, for the overlay view and error scores.

``reconstruct(model, card, counts, mask_ratio=0.5, seed=0, mask=None)`` hides patches (random,
seeded, or an explicit mask), lets the autoencoder fill them in and maps the prediction back to
counts with the inverse of the model's input transform.
"""
from __future__ import annotations

import numpy as np
import torch

from xrfcore.model.transforms import from_dict as transform_from_dict, window


def _energies(cfg) -> np.ndarray:
    return (cfg.offset_kev + cfg.gain_kev * np.arange(cfg.channels, dtype=np.float64))[cfg.window]


def _patch_mask(mask, cfg, n: int) -> torch.Tensor:
    """Explicit mask per patch (L,) / (N, L) or per channel of the window (C,) / (N, C) -> patches.
    A patch is hidden when any of its channels is."""
    m = np.asarray(mask).astype(bool)
    if m.shape[-1] == cfg.input_channels and cfg.input_channels != cfg.num_patches:
        m = m.reshape(*m.shape[:-1], cfg.num_patches, cfg.patch_size).any(axis=-1)
    if m.shape[-1] != cfg.num_patches:
        raise ValueError(f"mask must cover {cfg.num_patches} patches or {cfg.input_channels} channels, "
                         f"got {m.shape[-1]}")
    if m.ndim == 1:
        m = np.broadcast_to(m, (n, m.shape[0]))
    return torch.from_numpy(np.ascontiguousarray(m))


@torch.no_grad()
def reconstruct(model, card: dict, counts, mask_ratio: float = 0.5, seed: int = 0, mask=None,
                grid=None) -> dict:
    """Reconstruct spectra (C,) or (N, C) given on ``grid`` (default: the model grid).

    Returns a dict, arrays squeezed like the input:
      measured        counts on the model window (float)
      energies_kev    (Cw,) channel energies of the window
      mask            per channel bool, True = hidden from the model
      reconstruction  the model's output in counts (all channels; hidden ones are its guesses)
      error           reconstruction - measured (counts, per channel)
      loss            masked-patch mean squared error in model space (as in training), per spectrum
      rmse_hidden     root mean squared error in counts over hidden channels, per spectrum
      relative_hidden sum |error| / sum measured over hidden channels, per spectrum
      patch_size      channels per patch (the unit the mask hides)
    """
    model = getattr(model, "module", model)
    cfg = model.cfg
    transform = transform_from_dict(card["transform"])
    single = np.ndim(counts) == 1
    measured = window(np.atleast_2d(np.asarray(counts, dtype=np.float64)), cfg, grid)
    z = transform.apply(measured)
    device = next(model.parameters()).device
    x = torch.from_numpy(z).to(device)
    was_training = model.training
    model.eval()
    try:
        g = torch.Generator(device=device).manual_seed(int(seed))
        pm = None if mask is None else _patch_mask(mask, cfg, len(x)).to(device)
        _, pred, pmask = model(x, mask_ratio, generator=g, mask=pm)
        loss = model.loss_per_sample(x, pred, pmask).float().cpu().numpy()
    finally:
        model.train(was_training)
    pred = pred.float()
    if cfg.norm_pix_loss:  # prediction is per-patch normalised: put the patch's own scale back
        t = model.patchify(x).float()
        pred = pred * (t.var(-1, keepdim=True) + 1e-6) ** 0.5 + t.mean(-1, keepdim=True)
    rec = transform.invert(model.unpatchify(pred).cpu().numpy(), ref=measured)
    ch_mask = pmask.bool().cpu().numpy().repeat(cfg.patch_size, axis=1)
    err = rec - measured
    hidden = ch_mask.sum(1)
    rmse = np.sqrt(np.where(ch_mask, err ** 2, 0).sum(1) / np.maximum(hidden, 1))
    rel = np.abs(np.where(ch_mask, err, 0)).sum(1) / np.maximum(np.where(ch_mask, measured, 0).sum(1), 1e-9)
    out = {"measured": measured.astype(np.float32), "energies_kev": _energies(cfg), "mask": ch_mask,
           "reconstruction": rec.astype(np.float32), "error": err.astype(np.float32), "loss": loss,
           "rmse_hidden": rmse, "relative_hidden": rel, "mask_ratio": float(pmask.float().mean()),
           "seed": int(seed), "patch_size": int(cfg.patch_size)}
    if single:
        for k in ("measured", "mask", "reconstruction", "error"):
            out[k] = out[k][0]
        for k in ("loss", "rmse_hidden", "relative_hidden"):
            out[k] = float(out[k][0])
    return out


@torch.no_grad()
def reconstruction_errors(model, card: dict, counts, mask_ratio: float = 0.5, seed: int = 0,
                          grid=None, batch_size: int = 256) -> np.ndarray:
    """(N,) masked-reconstruction loss per spectrum in model space, with masks fixed by ``seed``
    (so scores of the same spectrum compare across calls): the basis of an out-of-distribution score."""
    X = np.atleast_2d(np.asarray(counts))
    out = [reconstruct(model, card, X[i:i + batch_size], mask_ratio, seed + i, grid=grid)["loss"]
           for i in range(0, len(X), batch_size)]
    return np.concatenate(out) if out else np.zeros(0)
