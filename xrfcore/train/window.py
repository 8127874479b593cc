"""A model's energy window, chosen from the spectra it is trained on, and moving a foundation model
to another window (xrfcore.train.adapt, `xrfcore pretrain`).

The rule (``choose``), for pretraining from scratch and for adapting where the base's window cannot
take the data: the window starts at the grid's first channel (0 keV on the 20 eV grid) and ends at
the smallest whole number of blocks of ``BLOCK_PATCHES`` = 8 patches (128 channels = 2.56 keV on
the 20 eV grid) that holds at least ``COUNT_SHARE`` = 99.5 % of all counts of the training spectra
(summed over spectra, on the model grid), capped at the grid's end and at the spectra's own end (the
lowest end among the runs; a window never reads channels the detector did not count).
Why: starting at 0 keeps patch boundaries and position numbering the same from model to model
(a 10.24 keV model's patches are the first 32 of a 20.48 keV model's), so weights carry over
exactly; blocks of 8 patches keep small differences in the count distribution from moving the
window. Measured (xrfcore import, 20 eV grid): simulated 10 kV Avaatech archives hold 99.5 % of
their counts below 9.5 keV -> 4 blocks = 512 channels = 0-10.24 keV, today's window (the shipped
model's); the real Itrax CD166_19_S1 (Mo tube, 30 kV, 2048 x 10.27 eV = 0-21 keV) below 20.35 keV ->
8 blocks = 1024 channels = 0-20.48 keV.

Adapting (``for_adaptation``) keeps the base's window when it holds >= 99.5 % of the counts and the
spectra reach its end; otherwise it takes the window ``choose`` gives (or the one asked for). Patch
size and grid stay, so every weight carries over bit for bit except the fixed sin-cos position
embeddings (``pos_embed``, ``decoder_pos_embed``), which are made again for the new patch count
(``rewindow_state``); a transform with per-channel statistics (``global``) is refitted on the new
window (``refit_transform``). The adaptation's card records all of it.
"""
from __future__ import annotations

import math

import numpy as np

COUNT_SHARE = 0.995
BLOCK_PATCHES = 8
RULE = (f"from the grid's first channel to the smallest whole number of blocks of {BLOCK_PATCHES} patches "
        f"holding >= {100 * COUNT_SHARE:g} % of all counts of the training spectra, within the grid and "
        "the spectra's own end")
POS_KEYS = ("pos_embed", "decoder_pos_embed")


def data_end_kev(grids) -> float | None:
    """The energy (keV, upper channel edge) where the shortest of the runs' spectra ends."""
    ends = [float(getattr(g, "max_kev")) for g in grids if g is not None]
    return min(ends) if ends else None


def _max_channels(cfg, start: int, data_end: float | None) -> int:
    """Channels from ``start`` that fit in the grid and (one source channel of slack) the data."""
    n = cfg.channels - start
    if data_end is not None:
        edge0 = cfg.offset_kev - 0.5 * cfg.gain_kev   # lower edge of channel 0
        n = min(n, int(math.floor((data_end - edge0) / cfg.gain_kev + 1e-6)) - start)
    return n


def _record(cfg, start: int, channels: int, total, how: str, q_kev=None) -> dict:
    lo = cfg.offset_kev + start * cfg.gain_kev
    t = np.asarray(total, np.float64) if total is not None else None
    share = float(t[start:start + channels].sum() / t.sum()) if t is not None and t.sum() > 0 else None
    return {"window_start": int(start), "window_channels": int(channels), "patches": channels // cfg.patch_size,
            "energy_kev": [round(lo, 4), round(lo + channels * cfg.gain_kev, 4)],
            "counts_inside": None if share is None else round(share, 5),
            "count_share_kev": None if q_kev is None else round(float(q_kev), 3), "how": how}


def choose(total, cfg, *, data_end: float | None = None, share: float = COUNT_SHARE) -> dict:
    """The window for spectra whose summed counts on ``cfg``'s grid are ``total`` (see RULE):
    {"window_start", "window_channels", "patches", "energy_kev", "counts_inside", "count_share_kev", "how"}."""
    t = np.asarray(total, np.float64)
    if t.ndim != 1 or len(t) != cfg.channels:
        raise ValueError(f"the summed spectrum has {t.shape} channels, the grid {cfg.channels}")
    if not t.sum() > 0:
        raise ValueError("the spectra hold no counts: no energy window can be chosen from them")
    c = np.cumsum(t) / t.sum()
    k = int(np.searchsorted(c, share - 1e-12)) + 1          # channels from 0 holding >= share
    p, block = cfg.patch_size, BLOCK_PATCHES * cfg.patch_size
    limit = _max_channels(cfg, 0, data_end) // p * p
    if limit < p:
        raise ValueError(f"the spectra end at {data_end:.2f} keV, below one patch of the model grid")
    n = min(int(math.ceil(k / block)) * block, limit)
    q_kev = cfg.offset_kev + (k - 0.5) * cfg.gain_kev
    return _record(cfg, 0, n, t, f"chosen from the data: {RULE} ({100 * share:g} % below {q_kev:.2f} keV)", q_kev)


def from_kev(cfg, lo: float, hi: float, *, total=None, data_end: float | None = None) -> dict:
    """The window asked for in keV (channel centres, as ModelConfig.window_kev), its end rounded up
    to whole patches; refused (ValueError) when it leaves the grid or is empty."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"energy window {lo:g}-{hi:g} keV: the end must be above the start")
    start = int(round((lo - cfg.offset_kev) / cfg.gain_kev))
    end = int(round((hi - cfg.offset_kev) / cfg.gain_kev))
    n = int(math.ceil((end - start) / cfg.patch_size)) * cfg.patch_size
    if start < 0 or start + n > cfg.channels:
        g = cfg.grid()
        raise ValueError(f"energy window {lo:g}-{hi:g} keV is outside the model grid "
                         f"({g.offset_kev:g}-{g.offset_kev + g.channels * g.gain_kev:g} keV, {g.channels} channels "
                         f"x {1000 * g.gain_kev:g} eV)")
    rec = _record(cfg, start, n, total, f"asked for: {lo:g}-{hi:g} keV, rounded to whole patches of "
                                        f"{cfg.patch_size} channels")
    if data_end is not None and n > _max_channels(cfg, start, data_end):
        rec["beyond_data"] = f"the spectra end at {data_end:.2f} keV, inside the window (channels above read zero)"
    return rec


def apply(cfg, rec: dict):
    """``cfg`` with the window of ``rec``."""
    return cfg.replace(window_start=int(rec["window_start"]), window_channels=int(rec["window_channels"]))


def same_window(cfg, rec: dict) -> bool:
    return cfg.window_start == rec["window_start"] and cfg.input_channels == rec["window_channels"]


def for_adaptation(base_cfg, total, data_end: float | None, *, window="auto") -> dict:
    """The window an adaptation of a model with ``base_cfg`` uses for spectra summing to ``total``.
    ``window``: "auto" (the base's when it holds >= COUNT_SHARE of the counts and the spectra reach
    its end, else ``choose``), "base" (the base's) or (lo, hi) keV. Adds "changed" and "reason"."""
    base = _record(base_cfg, base_cfg.window_start, base_cfg.input_channels, total, "the base model's window")
    if window == "base":
        return dict(base, changed=False, reason="kept: the base's window was asked for")
    if isinstance(window, (tuple, list)):
        rec = from_kev(base_cfg, float(window[0]), float(window[1]), total=total, data_end=data_end)
        return dict(rec, changed=not same_window(base_cfg, rec), reason="asked for")
    if window != "auto":
        raise ValueError(f"window must be 'auto', 'base' or (lo, hi) keV, not {window!r}")
    reaches = data_end is None or _max_channels(base_cfg, base_cfg.window_start, data_end) >= base_cfg.input_channels
    inside = base["counts_inside"]
    if reaches and inside is not None and inside >= COUNT_SHARE:
        return dict(base, changed=False, reason=f"kept: the base's window holds {100 * inside:.2f} % of the "
                                                f"counts (>= {100 * COUNT_SHARE:g} %) and the spectra reach its end")
    rec = choose(total, base_cfg, data_end=data_end)
    lo, hi = base["energy_kev"]
    why = (f"the spectra end at {data_end:.2f} keV, inside the base's {lo:g}-{hi:g} keV" if not reaches else
           f"the base's {lo:g}-{hi:g} keV window holds {100 * inside:.1f} % of the counts "
           f"(< {100 * COUNT_SHARE:g} %)")
    return dict(rec, changed=not same_window(base_cfg, rec), reason=why)


def rewindow_state(state: dict, old_cfg, new_cfg) -> tuple[dict, list[dict]]:
    """A foundation model's state dict moved from ``old_cfg``'s window to ``new_cfg``'s (same grid
    gain, patch size and widths): every tensor as it is, except the fixed sin-cos position
    embeddings, made again for the new patch count. Returns (state, what was re-initialised)."""
    import torch

    from xrfcore.model.pos_embed import sincos_1d

    for f in ("patch_size", "embed_dim", "decoder_embed_dim", "depth", "decoder_depth", "gain_kev"):
        if getattr(old_cfg, f) != getattr(new_cfg, f):
            raise ValueError(f"moving a model to another window keeps its {f} ({getattr(old_cfg, f)}); "
                             f"{getattr(new_cfg, f)} asked for")
    out, notes = dict(state), []
    n_old, n_new = old_cfg.num_patches, new_cfg.num_patches
    if old_cfg.window_start == new_cfg.window_start and n_old == n_new:
        return out, notes
    for key, dim in (("pos_embed", new_cfg.embed_dim), ("decoder_pos_embed", new_cfg.decoder_embed_dim)):
        if key not in state:
            continue
        out[key] = sincos_1d(dim, n_new).unsqueeze(0).to(state[key].dtype)
        same = min(n_old, n_new)
        kept = bool(torch.equal(out[key][:, :same + 1], state[key][:, :same + 1]))
        notes.append({"parameter": key, "shape_before": list(state[key].shape), "shape_after": list(out[key].shape),
                      "how": f"fixed sin-cos table made for {n_new} patches (+ cls), not trained"
                             + (f"; positions 0-{same - 1} hold the same values as the base's" if kept else "")})
    return out, notes


def refit_transform(transform: dict, counts_window) -> tuple[dict, str]:
    """A fitted transform for the new window: per-channel statistics (``global``) refitted on the
    training spectra's window; per-spectrum transforms kept as they are."""
    from xrfcore.model.transforms import make_transform

    if transform.get("name") == "global":
        return make_transform("global").fit(counts_window).to_dict(), \
            "global: per-channel mean/std refitted on the adaptation spectra in the new window"
    return dict(transform), f"{transform.get('name')}: per-spectrum, no per-channel statistics; kept"


def text(rec: dict, base_cfg=None) -> str:
    """One line for the CLI / dialog: 'energy window 0-20.48 keV (1024 channels, 64 patches): ...'."""
    lo, hi = rec["energy_kev"]
    s = f"energy window {lo:g}-{hi:g} keV ({rec['window_channels']} channels, {rec['patches']} patches)"
    if base_cfg is not None and rec.get("changed"):
        blo, bhi = base_cfg.window_kev()
        s += f", changed from the base's {blo:g}-{bhi:g} keV ({base_cfg.num_patches} patches): {rec['reason']}"
    elif rec.get("reason"):
        s += f", {rec['reason']}"
    if rec.get("counts_inside") is not None:
        s += f"; {100 * rec['counts_inside']:.2f} % of the counts inside"
    return s


# ----------------------------------------------------------------------------- one measure for two windows
def energy_masks(cfg, n: int, lo_kev: float, hi_kev: float, mask_ratio: float = 0.5, seed: int = 0) -> np.ndarray:
    """(n, patches) bool, True = hidden: per spectrum, ``mask_ratio`` of the patches inside
    ``lo_kev``-``hi_kev`` and the same share of the others, drawn from numbers keyed by spectrum and
    by each patch's first grid channel. Two models on the same grid with different windows hide the
    same patches of their common range (so their errors there compare)."""
    u = np.random.default_rng(seed).random((n, cfg.channels))
    p = cfg.patch_size
    first = cfg.window_start + p * np.arange(cfg.num_patches)
    e_lo = cfg.offset_kev + first * cfg.gain_kev      # channel centres, as ModelConfig.window_kev
    e_hi = e_lo + p * cfg.gain_kev
    common = (e_lo >= lo_kev - 1e-9) & (e_hi <= hi_kev + 1e-9)
    keys = u[:, first]
    m = np.zeros((n, cfg.num_patches), bool)
    for part in (common, ~common):
        idx = np.flatnonzero(part)
        k = int(round(mask_ratio * len(idx)))
        if k:
            order = np.argsort(keys[:, idx], axis=1, kind="stable")[:, :k]
            sub = np.zeros((n, len(idx)), bool)
            np.put_along_axis(sub, order, True, axis=1)
            m[:, idx] = sub
    return m


def relative_error(model, card: dict, counts, lo_kev: float, hi_kev: float, *, mask_ratio: float = 0.5,
                   seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """(N,) relative reconstruction error in counts, sum |error| / sum measured over the hidden
    channels between ``lo_kev`` and ``hi_kev`` (``energy_masks``), of spectra ``counts`` on the model
    grid: a measure two models with different windows (and transforms) share."""
    from xrfcore.reconstruct import reconstruct

    cfg = getattr(model, "module", model).cfg
    X = np.atleast_2d(np.asarray(counts))
    masks = energy_masks(cfg, len(X), lo_kev, hi_kev, mask_ratio, seed)
    e = cfg.offset_kev + cfg.gain_kev * np.arange(cfg.channels)[cfg.window]
    inside = (e >= lo_kev - 1e-9) & (e < hi_kev - 1e-9)
    out = []
    for i in range(0, len(X), batch_size):
        r = reconstruct(model, card, X[i:i + batch_size], mask=masks[i:i + batch_size])
        sel = np.atleast_2d(r["mask"]) & inside
        err = np.abs(np.where(sel, np.atleast_2d(r["error"]), 0)).sum(1)
        out.append(err / np.maximum(np.where(sel, np.atleast_2d(r["measured"]), 0).sum(1), 1e-9))
    return np.concatenate(out) if out else np.zeros(0)


def common_range(cfg_a, cfg_b) -> tuple[float, float]:
    """Energies (keV) both windows read, as ModelConfig.window_kev gives them (first channel's centre,
    first channel's centre + channels x gain)."""
    (a0, a1), (b0, b1) = cfg_a.window_kev(), cfg_b.window_kev()
    return round(max(a0, b0), 6), round(min(a1, b1), 6)
