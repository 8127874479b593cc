"""Fine-tuning: a pretrained encoder (or a fresh one) -> regressor of the lab targets (CaCO3 / TOC by
default, any numeric lab column: xrfcore.targets) with a model card.

Modes
- ``head``: encoder frozen; embeddings computed once, then a ridge head per target (alpha by
  generalised cross-validation). Metrics and conformal residuals come from k-fold out-of-fold
  predictions (folds of whole cores with ``val="cores"``), then the head is refitted on all labels.
  Seconds for thousands of labels on a CPU.
- ``full``: all weights, AdamW, warm-up + cosine, gradient clipping, early stopping on a held-out
  validation split (whole cores or random); the head starts from the ridge fit (linear probe, then
  fine-tune), which keeps the pretrained features from being wrecked by a random head.
- ``scratch``: same architecture and loop as ``full`` from random weights, for comparison.

Targets are z-scored for training (statistics in the card); predictions are de-normalised and
clamped to the target's range ([0, 100] for wt%). TOC is modelled as ln(wt%) by default: its errors
grow with its level (dilution acts multiplicatively), so a log-space fit and log-space intervals stay
honest on low-TOC cores; CaCO3 spans 0-90 wt% and stays linear; any other target is put in log space
when its labels are all > 0 and clearly right-skewed (``xrfcore.targets.log_rule``);
``log_targets`` / ``linear_targets`` choose by hand. The card records each target's unit, space
and why (``target_stats``, ``target_units``).

Intervals (conformal, 90 % by default). Head mode: out-of-fold residuals from folds of whole cores
(a new core is the case operators care about). Up to 20 folds: with up to 20 labelled cores each fold
model misses one core, as close to the final model as cross-validation gets (with 5 folds the
intervals covered 94-97 % of held-out cores' labels where 90 % were asked). Each residual is scored
two ways: plain |r| (constant width) and |r| / s(x), s(x) = sqrt(1 + 1/n + h(x)) with h the ridge
leverage of the spectrum's embedding (wider where the labelled samples did not reach: a new scanner
head, an unseen lithology). The calibration
itself is cross-validated over the same folds; of the methods that reach the nominal coverage there,
the narrower is used, and the card records both (``conformal[target]``: method, q_plain,
q_normalised, cv_coverage_*, cv_mean_halfwidth_*). The leverage state is saved beside the model in
``calibration.safetensors``. Full / scratch: split-conformal on the held-out validation split.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xrfcore import targets as tg
from xrfcore.jobs import CancelToken, no_progress
from xrfcore.train.intervals import (  # noqa: F401 (re-exported)
    SCHEMES, SCHEME_PREFIX, conformal_quantile, CONFORMAL_MIN_N, interval_quantile,
    leverage_state, leverage_scale, mean_leverage_scale, calibrate)

TARGETS = ("CaCO3", "TOC")
MODES = ("head", "full", "scratch")


@dataclass
class FinetuneConfig:
    mode: str = "head"
    targets: tuple = TARGETS
    val: str = "cores"               # "cores" (whole cores held out) or "random"
    val_fraction: float = 0.2
    folds: int = 20                  # head mode: k-fold out-of-fold residuals (up to 20: leave one core out)
    epochs: int = 60                 # full / scratch
    lr: float = 1e-5                 # full: encoder learning rate (head gets 10x); larger wrecks the probe
    lp_standardise: bool = True      # full: linear probe on standardised embeddings
    lr_scratch: float = 5e-4
    weight_decay: float = 0.05
    batch_size: int = 32
    warmup_epochs: int = 3
    patience: int = 10
    min_epochs: int = 20             # no early stop before this: early validation losses are noisy
    clip_grad: float = 1.0
    alpha: float = 0.1               # 1 - interval coverage (0.1 -> 90 % intervals)
    log_targets: tuple = ()          # forced into log space: ln(max(y, floor)) (others: xrfcore.targets rule)
    linear_targets: tuple = ()       # forced linear
    log_floor: float = 0.01          # wt% targets' floor (others: half their smallest positive label)
    pool: str | None = "mean"        # head input: "mean" of the patch tokens or the "cls" token (None: the base's)
    transform: str | None = None     # scratch only: input transform (None: the base model's, else zscore)
    ridge_alphas: tuple = tuple(float(a) for a in np.logspace(-3, 4, 15))
    ood: bool = True                 # compute the OOD reference (needs the pretrained autoencoder)
    ood_seeds: tuple = (0, 1, 2)
    ood_mask_ratio: float = 0.5
    ood_reference_max: int = 2000
    seed: int = 0
    device: str = "auto"
    embed_batch: int = 256
    size: str = "tiny"               # scratch without a base model: architecture preset

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.val not in ("cores", "random"):
            raise ValueError(f"validation must be 'cores' or 'random', not {self.val!r}")
        self.targets = tuple(str(t).strip() for t in (tg.parse_list(self.targets) or ()))
        if not self.targets:
            raise ValueError("targets: choose at least one target (a lab column, e.g. CaCO3, TOC, Fe)")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"targets: a target is given twice ({', '.join(self.targets)})")
        for name in ("log_targets", "linear_targets"):
            v = tuple(tg.parse_list(getattr(self, name)) or ())
            bad = [t for t in v if t not in self.targets and t not in TARGETS]
            if bad:
                raise ValueError(f"{name} must be among the targets ({', '.join(self.targets)}), "
                                 f"not {', '.join(map(str, bad))}")
            setattr(self, name, v)
        both = set(self.log_targets) & set(self.linear_targets)
        if both:
            raise ValueError(f"{', '.join(sorted(both))} in both log_targets and linear_targets")
        if self.pool not in (None, "cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', not {self.pool!r}")


to_space, from_space = tg.to_space, tg.from_space  # lab value <-> model space (per target)


# --------------------------------------------------------------------------- small helpers

def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for but no CUDA GPU is available (use --device cpu)")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def _autocast(device):
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def regression_metrics(y, p) -> dict:
    y, p = np.asarray(y, float), np.asarray(p, float)
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    if len(y) == 0:
        return {"n": 0, "r2": None, "rmse": None, "mae": None}
    ss = ((y - y.mean()) ** 2).sum()
    return {"n": int(len(y)), "r2": float(1 - ((y - p) ** 2).sum() / ss) if ss > 0 else None,
            "rmse": float(np.sqrt(((y - p) ** 2).mean())), "mae": float(np.abs(y - p).mean())}


def split_indices(n: int, groups=None, val: str = "cores", fraction: float = 0.2, seed: int = 0):
    """(train_idx, val_idx, note): whole groups (cores) held out, or a random split."""
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(n * fraction))) if n >= 4 else 0
    if n_val == 0:
        return np.arange(n), np.arange(0), "too few labels for a validation split"
    if val == "cores" and groups is not None:
        g = np.asarray(groups)
        uniq = rng.permutation(np.unique(g))
        if len(uniq) >= 2:
            chosen, count = [], 0
            for c in uniq:
                if count >= n_val or len(chosen) >= len(uniq) - 1:
                    break
                chosen.append(c)
                count += int((g == c).sum())
            vmask = np.isin(g, chosen)
            return np.flatnonzero(~vmask), np.flatnonzero(vmask), f"validation cores: {', '.join(map(str, chosen))}"
        note = "one core only: random validation split instead of whole cores"
    else:
        note = "random validation split"
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val]), note


def split_two(n: int, groups=None, val: str = "cores", fraction: float = 0.2, seed: int = 0):
    """(train_idx, val_cores_idx, val_random_idx, note): a validation split with two parts, so that
    one fine-tune gives both interval calibrations: whole held-out cores (by-core) and random samples
    of the remaining cores (within-core), about half of ``fraction`` each (with fewer than 3 cores
    or 8 labels the split of ``split_indices`` alone: the other part is empty)."""
    g = None if groups is None else np.asarray(groups)
    if g is None or len(np.unique(g)) < 3 or n < 8:
        tr, va, note = split_indices(n, groups, val, fraction, seed)
        by_core = val == "cores" and "validation cores" in note
        return (tr, va, np.arange(0), note) if by_core else (tr, np.arange(0), va, note)
    tr, va_c, note = split_indices(n, g, "cores", fraction / 2, seed)
    rng = np.random.default_rng(seed + 1)
    n_r = max(1, int(round(n * fraction / 2)))
    perm = rng.permutation(tr)
    va_r = np.sort(perm[:n_r])
    return np.sort(perm[n_r:]), va_c, va_r, f"{note}; plus {len(va_r)} random samples of the other cores"


def kfold_indices(n: int, groups=None, val: str = "cores", k: int = 5, seed: int = 0):
    """Folds as a list of (train_idx, test_idx): by whole groups when val == 'cores' and possible."""
    rng = np.random.default_rng(seed)
    if val == "cores" and groups is not None:
        g = np.asarray(groups)
        uniq = rng.permutation(np.unique(g))
        if len(uniq) >= 2:
            kk = min(k, len(uniq))
            fold_of = {c: i % kk for i, c in enumerate(uniq)}
            f = np.array([fold_of[c] for c in g])
            return [(np.flatnonzero(f != i), np.flatnonzero(f == i)) for i in range(kk)]
    kk = min(k, n)
    f = rng.permutation(np.arange(n) % kk)
    return [(np.flatnonzero(f != i), np.flatnonzero(f == i)) for i in range(kk)]


# --------------------------------------------------------------------------- model pieces

def load_base(model_or_path):
    """(MaskedAutoencoderViT or SpectrumRegressor, card, path or None) from a module+card or a path."""
    from xrfcore.model import checkpoint

    if isinstance(model_or_path, tuple):
        model, card = model_or_path
        return model, card, None
    model, card = checkpoint.load(model_or_path)
    return model, card, str(checkpoint.paths(model_or_path)[0].with_suffix(""))


@torch.no_grad()
def embed_inputs(encoder, Xin: np.ndarray, *, device, batch: int = 256, progress=no_progress,
                 token=None, msg="embedding") -> np.ndarray:
    encoder = encoder.to(device).eval()
    out = []
    for i in range(0, len(Xin), batch):
        if token is not None:
            token.raise_if_cancelled()
        xb = torch.from_numpy(np.ascontiguousarray(Xin[i:i + batch])).to(device)
        with _autocast(device):
            out.append(encoder.embed(xb).float().cpu().numpy())
        progress(min(i + batch, len(Xin)), len(Xin), msg)
    return np.concatenate(out) if out else np.zeros((0, encoder.cfg.embed_dim), np.float32)


def fixed_masks(cfg, seeds, mask_ratio: float) -> list[torch.Tensor]:
    """One patch mask per seed, the same for every spectrum (so scores do not depend on batching)."""
    L = cfg.num_patches
    n_hide = min(L - 1, max(1, int(round(L * mask_ratio))))
    masks = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        m = torch.zeros(L, dtype=torch.bool)
        m[torch.randperm(L, generator=g)[:n_hide]] = True
        masks.append(m)
    return masks


@torch.no_grad()
def reconstruction_errors(mae, Xin: np.ndarray, *, seeds=(0, 1, 2), mask_ratio: float = 0.5,
                          device="cpu", batch: int = 256, progress=no_progress, token=None) -> np.ndarray:
    """Mean masked-patch MSE of the autoencoder per spectrum, averaged over fixed masks (seeds)."""
    mae = mae.to(device).eval()
    masks = [m.to(device) for m in fixed_masks(mae.cfg, seeds, mask_ratio)]
    out = np.zeros(len(Xin), np.float64)
    for i in range(0, len(Xin), batch):
        if token is not None:
            token.raise_if_cancelled()
        xb = torch.from_numpy(np.ascontiguousarray(Xin[i:i + batch])).to(device)
        acc = torch.zeros(len(xb), device=device)
        for m in masks:
            with _autocast(device):
                _, pred, mask = mae(xb, mask=m)
            acc += mae.loss_per_sample(xb, pred.float(), mask)
        out[i:i + len(xb)] = (acc / len(masks)).cpu().numpy()
        progress(min(i + batch, len(Xin)), len(Xin), "reconstruction error")
    return out


def _set_head(reg, W: np.ndarray, b: np.ndarray) -> None:
    lin = reg.fc[0]
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(W, dtype=lin.weight.dtype))
        lin.bias.copy_(torch.as_tensor(b, dtype=lin.bias.dtype))


def fit_ridge_head(E: np.ndarray, Z: np.ndarray, alphas, standardise: bool = True):
    """Ridge per target on (standardised) embeddings, folded back into one Linear: (W, b, alphas).

    Without standardising, near-constant embedding dimensions do not get large weights: a head that
    is then trained further with the encoder (full mode) stays well conditioned."""
    from sklearn.linear_model import RidgeCV

    mu, sd = E.mean(0), E.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0) if standardise else np.ones_like(sd)
    Es = (E - mu) / sd
    W = np.zeros((Z.shape[1], E.shape[1]))
    b = np.zeros(Z.shape[1])
    chosen = []
    for j in range(Z.shape[1]):
        ok = np.isfinite(Z[:, j])
        if ok.sum() < 2:
            chosen.append(None)
            continue
        r = RidgeCV(alphas=alphas).fit(Es[ok], Z[ok, j])
        W[j] = r.coef_ / sd
        b[j] = r.intercept_ - float((r.coef_ * mu / sd).sum())
        chosen.append(float(r.alpha_))
    return W, b, chosen


# --------------------------------------------------------------------------- main entry

def seed_everything(seed: int) -> None:
    """Seed every generator fine-tuning touches (Python, numpy's global, torch CPU and CUDA) and ask
    torch for deterministic kernels where that is cheap (warn only where none exists). Same seed,
    same device and thread count: the same model."""
    import random

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if hasattr(torch.backends, "cudnn"):
        torch.backends.cudnn.benchmark = False


def finetune(model_or_path, X, y: pd.DataFrame, *, groups=None, grid=None,
             config: FinetuneConfig | None = None, reference=None, reference_info: dict | None = None,
             labels_info: dict | None = None, target_units: dict | None = None,
             simulated: bool | None = None, out: str | Path | None = None, overwrite: bool = False,
             progress=no_progress, token: CancelToken | None = None, **overrides):
    """Fine-tune on labelled spectra.

    model_or_path: a pretrained model path (or (model, card)); None only with mode="scratch".
    X: (n, C) counts (mean spectrum per lab sample); grid: their energy grid (resampled to the
    model's when it differs). y: DataFrame with the targets' columns (NaN = not measured); a default
    target (CaCO3, TOC) it lacks is skipped, any other target it lacks is an error.
    target_units: {target: unit} for the card (default: wt% for CaCO3 / TOC, none for others).
    groups: core of each sample (for whole-core validation). reference: single spectra (counts)
    for the out-of-distribution reference distribution (default: X), reference_info: their core,
    depth_mm, exposure (``ood.lab_reference``). out: folder to save
    ``model`` (+ ``base_mae`` for the OOD score) into: written whole into a staging folder and
    renamed into place; a folder that already holds a model is refused unless ``overwrite``
    (checked before any work). Returns (regressor, card).
    """
    from xrfcore import instrument, ood as oodmod
    from xrfcore.model import transforms as tfm
    from xrfcore.model.config import ModelConfig
    from xrfcore.model.mae import MaskedAutoencoderViT
    from xrfcore.model.regressor import SpectrumRegressor

    cfg = config or FinetuneConfig()
    if overrides:
        cfg = FinetuneConfig(**{**asdict(cfg), **overrides})
    if out is not None:  # before any work: a model folder is never replaced without being asked
        from xrfcore.outputs import check_model_folder
        check_model_folder(out, force=overwrite, inputs=(
            None if model_or_path is None or isinstance(model_or_path, tuple) else model_or_path,))
    token = token or CancelToken()
    t0 = time.time()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    targets = tg.usable(cfg.targets, y)
    X = np.asarray(X)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"spectra ({X.shape}) and labels ({len(y)} rows) do not match")
    if len(X) < 3:
        raise ValueError(f"only {len(X)} labelled samples; need at least 3")

    base, base_card, base_path = (None, None, None)
    if model_or_path is not None:
        base, base_card, base_path = load_base(model_or_path)
    elif cfg.mode != "scratch":
        raise ValueError(f"mode {cfg.mode!r} needs a pretrained model")
    mcfg = base.cfg if base is not None else ModelConfig.preset(cfg.size)
    mcfg = mcfg.replace(n_outputs=len(targets), head="linear", **({"pool": cfg.pool} if cfg.pool else {}))
    if cfg.transform is not None and cfg.mode != "scratch":
        raise ValueError("transform can only be chosen with mode='scratch' (a pretrained encoder keeps its own)")
    transform = tfm.make_transform(cfg.transform) if cfg.transform else (
        tfm.from_dict(base_card["transform"]) if base_card else tfm.make_transform("zscore"))
    if transform.name == "global" and getattr(transform, "mean", None) is None:
        transform.fit(tfm.window(X, mcfg, grid))
    Xin = tfm.prepare(X, mcfg, transform, src_grid=grid)

    Y = y[targets].to_numpy(float)
    units = {t: (target_units or {}).get(t, tg.DEFAULT_UNIT if t in TARGETS else "") for t in targets}
    spaces = [tg.choose_space(t, Y[:, j], forced_log=cfg.log_targets, forced_linear=cfg.linear_targets,
                              floor=cfg.log_floor, unit=units[t]) for j, t in enumerate(targets)]
    Yt = np.column_stack([to_space(Y[:, j], spaces[j]) for j in range(len(targets))])
    mean = np.nanmean(Yt, 0)
    std = np.nanstd(Yt, 0)
    std = np.where(std > 1e-6, std, 1.0)
    Z = (Yt - mean) / std
    n = len(X)

    # --- the regressor
    reg = SpectrumRegressor(mcfg)
    if cfg.mode != "scratch":
        reg.load_encoder(base)
    reg.to(device)
    progress(0, 1, "embedding labelled spectra")
    history: list[dict] = []
    main = "by-core" if cfg.val == "cores" else "within-core"   # the scheme metrics are reported in
    # per calibration scheme: (rows, out-of-fold predictions in model space, leverage scale, fold id)
    sets: dict[str, tuple] = {}
    if cfg.mode == "head":
        E = embed_inputs(reg, Xin, device=device, batch=cfg.embed_batch, token=token, progress=progress)
        states: dict[str, np.ndarray] = {}
        for scheme, val in (("by-core", "cores"), ("within-core", "random")):
            folds = kfold_indices(n, groups, val, cfg.folds, cfg.seed)
            oof_s, scale_s, fold_s = np.full_like(Y, np.nan), np.ones_like(Y), np.zeros(n, int)
            for k, (tr, te) in enumerate(folds):
                token.raise_if_cancelled()
                if len(tr) < 2 or len(te) == 0:
                    continue
                W, b, a_k = fit_ridge_head(E[tr], Z[tr], cfg.ridge_alphas)
                oof_s[te] = (E[te] @ W.T + b) * std + mean
                lev = leverage_state(E[tr], Z[tr], a_k)
                # new spectra get the mean scale of the fold states, so calibration and use measure
                # s(x) the same way (a state from all labels would give smaller scales than calibrated on)
                states.update({f"{SCHEME_PREFIX[scheme]}{k}_{key}": v.astype(np.float32) for key, v in lev.items()})
                fold_s[te] = k
                for j in range(len(targets)):
                    scale_s[te, j] = leverage_scale(lev, E[te], j)
            by_cores = val == "cores" and groups is not None and len(set(groups)) > 1
            sets[scheme] = (np.arange(n), oof_s, scale_s, fold_s,
                            f"{len(folds)}-fold out-of-fold ({'whole cores' if by_cores else 'random'})")
        W, b, ridge_alpha = fit_ridge_head(E, Z, cfg.ridge_alphas)
        _set_head(reg, W, b)
        reg.calibration = states  # saved beside the model by save_finetuned
        history.append({"ridge_alpha": dict(zip(targets, ridge_alpha))})
    else:
        tr, va_core, va_rand, split_note = split_two(n, groups, cfg.val, cfg.val_fraction, cfg.seed)
        va = np.sort(np.concatenate([va_core, va_rand])).astype(int)
        if cfg.mode == "full":  # linear probe first (on training rows only)
            E = embed_inputs(reg, Xin[tr], device=device, batch=cfg.embed_batch, token=token)
            W, b, _ = fit_ridge_head(E, Z[tr], cfg.ridge_alphas, standardise=cfg.lp_standardise)
            _set_head(reg, W, b)
        history = _train_loop(reg, Xin, Z, tr, va, cfg, device, progress, token)
        oof_v = np.full_like(Y, np.nan)
        if len(va):
            oof_v[va] = _predict_norm(reg, Xin[va], device, cfg.embed_batch) * std + mean
        for scheme, part in (("by-core", va_core), ("within-core", va_rand)):
            if len(part) == 0:  # one core only: both schemes from the random part (and vice versa)
                part = va_rand if scheme == "by-core" else va_core
            sets[scheme] = (np.asarray(part, int), oof_v, np.ones_like(Y), np.zeros(n, int), split_note)
    reg.eval().cpu()
    val_idx, oof_t, scale, fold_id, val_note = sets[main]
    oof = np.column_stack([from_space(oof_t[:, j], spaces[j]) for j in range(len(targets))])

    metrics, conformal = {}, {}
    for j, t in enumerate(targets):
        yy, pp = Y[val_idx, j], oof[val_idx, j]
        metrics[t] = regression_metrics(yy, pp)
        per_scheme = {}
        for scheme, (rows, oof_s, scale_s, fold_s, note_s) in sets.items():
            # residuals in the space the target is modelled in (log for TOC)
            yt, pt = Yt[rows, j], oof_s[rows, j]
            fin = np.isfinite(yt) & np.isfinite(pt)
            res = (yt - pt)[fin]
            if cfg.mode == "head":
                cal = calibrate(res, scale_s[rows, j][fin], fold_s[rows][fin], cfg.alpha)
                text = (f"{note_s} residuals; {cal['method']} scores"
                        + (" (|residual| / ridge-leverage scale sqrt(1 + 1/n + h))" if cal["method"] == "normalised" else "")
                        + f" ({cal['estimator_' + cal['method']]} quantile)"
                        + "; cv_coverage: measured by cross-validating the calibration over the same folds")
            else:
                q, est = interval_quantile(res, cfg.alpha)
                cal = {"method": "plain", "q_plain": q if math.isfinite(q) else None, "estimator_plain": est}
                text = f"{est} quantile of the held-out {'cores' if scheme == 'by-core' else 'samples'} ({note_s})"
            oof_m = np.column_stack([from_space(oof_s[rows, jj], spaces[jj]) for jj in range(len(targets))])
            per_scheme[scheme] = {**cal, "n": int(len(res)), "calibration": f"{scheme}: {text}",
                                  "rmse_oof": regression_metrics(Y[rows, j], oof_m[:, j])["rmse"]}
        c = per_scheme[main]
        res_main = (Yt[val_idx, j] - oof_t[val_idx, j])
        res_main = res_main[np.isfinite(res_main)]
        conformal[t] = {"alpha": cfg.alpha, "q": c.get("q_plain"), "n": c["n"], "space": spaces[j]["space"],
                        "residual_quantiles": {str(p): float(np.quantile(res_main, p / 100)) for p in
                                               (5, 25, 50, 75, 95)} if len(res_main) else {},
                        **{k: v for k, v in c.items() if k not in ("n",)},
                        "scheme": main, "schemes": per_scheme}

    # --- out-of-distribution reference (xrfcore.ood): the foundation model's own reference, the
    # labelled cores' spectra, their counts; the old lab-only error quantiles when the base has none
    ood = None
    mae = base if isinstance(base, MaskedAutoencoderViT) else None
    if mae is not None and cfg.ood:
        mae_transform = tfm.from_dict(base_card["transform"])  # the autoencoder's own input, whatever the head's

        def legacy():
            ref = np.asarray(reference) if reference is not None else X
            if len(ref) > cfg.ood_reference_max:
                ref = ref[np.random.default_rng(cfg.seed).choice(len(ref), cfg.ood_reference_max, replace=False)]
            errs = reconstruction_errors(mae, tfm.prepare(ref, mae.cfg, mae_transform, src_grid=grid),
                                         seeds=cfg.ood_seeds, mask_ratio=cfg.ood_mask_ratio, device=device,
                                         batch=cfg.embed_batch, token=token)
            return {"mae_file": "base_mae", "transform": mae_transform.to_dict(),
                    "seeds": list(cfg.ood_seeds), "mask_ratio": cfg.ood_mask_ratio,
                    "reference_n": int(len(errs)), "reference": "single training spectra" if reference is not None
                    else "labelled (averaged) spectra", "p99": float(np.quantile(errs, 0.99)),
                    "quantiles": {str(p): float(np.quantile(errs, p / 100)) for p in (1, 5, 25, 50, 75, 95, 99)}}

        same_encoder = cfg.mode == "head" and mcfg.pool == oodmod.POOL and transform.to_dict() == mae_transform.to_dict()
        ood, reg.ood_arrays = oodmod.finetune_reference(
            mae, base_card, reference, X, base_path=base_path, grid=grid, reference_info=reference_info,
            embedding_from="regressor" if same_encoder else "base", legacy=legacy, seed=cfg.seed,
            device=device, batch=cfg.embed_batch, token=token)
        mae.cpu()

    card = {
        "transform": transform.to_dict(),
        "task": "regression", "targets": targets, "mode": cfg.mode,
        "target_stats": {t: {"mean": float(mean[j]), "std": float(std[j]), **spaces[j]}
                         for j, t in enumerate(targets)},
        "target_units": units,
        "clamp": [0.0, 100.0] if all(spaces[j]["clamp"] == [0.0, 100.0] for j in range(len(targets)))
        else {t: spaces[j]["clamp"] for j, t in enumerate(targets)},
        "instrument": instrument.for_finetuned(base_card, mcfg, (labels_info or {}).get("instrument_check")),
        "base_model": None if base_card is None else {
            "id": base_card.get("id"), "weights_sha256": base_card.get("weights_sha256"),
            "path": base_path, "simulated_data": base_card.get("simulated_data")},
        "labels": dict(labels_info or {}, n=int(n), n_per_target={t: int(np.isfinite(Y[:, j]).sum())
                                                                   for j, t in enumerate(targets)},
                       n_cores=int(len(set(groups))) if groups is not None else None,
                       cores=sorted(map(str, set(groups))) if groups is not None else None),
        "interval_scheme": {
            "rule": "within-core calibration for the cores the lab samples came from, by-core for any other core",
            "labelled_cores": sorted(map(str, set(groups))) if groups is not None else None,
            "default": "by-core" if groups is not None else "within-core",
            "metrics_scheme": main},
        "seeds": {"seed": cfg.seed},
        "finetune_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "validation": _validation_table(val_note, val_idx, targets, Y, oof, y, groups),
        "metrics": metrics,
        "skill_warnings": tg.skill_warnings(metrics),
        "conformal": conformal,
        "ood": ood,
        "simulated_data": bool(simulated) if simulated is not None else
        (base_card or {}).get("simulated_data"),
        "history": history,
        "train_seconds": round(time.time() - t0, 2),
        "device": str(device),
    }
    if out is not None:
        card = save_finetuned(out, reg, card, mae, base_card)
    progress(1, 1, "done")
    return reg, card


def _json_list(a) -> list:
    """Floats for JSON, with None where not finite (NaN is not valid JSON)."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(a, float)]


def _validation_table(scheme, val_idx, targets, Y, oof, y, groups) -> dict:
    """Per-sample validation predictions (out-of-fold in head mode, the held-out split otherwise) for
    the predicted-vs-measured plot: measured / predicted per target, with each sample's depth and core."""
    val_idx = np.asarray(val_idx, int)
    depth = y["depth_mm"].to_numpy(float)[val_idx] if "depth_mm" in y.columns else np.full(len(val_idx), np.nan)
    core = np.asarray(groups)[val_idx] if groups is not None else (
        y["core"].to_numpy()[val_idx] if "core" in y.columns else [None] * len(val_idx))
    return {"scheme": scheme, "n": int(len(val_idx)),
            "measured": {t: _json_list(Y[val_idx, j]) for j, t in enumerate(targets)},
            "predicted": {t: _json_list(oof[val_idx, j]) for j, t in enumerate(targets)},
            "depth_mm": _json_list(depth),
            "core": [None if c is None else str(c) for c in core]}


def save_finetuned(out, reg, card: dict, mae=None, base_card: dict | None = None) -> dict:
    """Save ``out/model`` (+ ``out/base_mae`` for the OOD score); returns the full saved card.

    The files are written into a hidden staging folder beside ``out`` that then replaces ``out`` in
    one rename (``fileio.atomic_dir``): Ctrl-C or a kill leaves the old folder (or none), never a
    mix. Files of an old ``out`` that are not model files are carried over."""
    from xrfcore.fileio import atomic_dir
    from xrfcore.outputs import model_keep

    with atomic_dir(out, keep=model_keep) as stage:
        return _save_finetuned(stage, reg, card, mae, base_card)


def _save_finetuned(out: Path, reg, card: dict, mae=None, base_card: dict | None = None) -> dict:
    import json

    from xrfcore.model import checkpoint

    lev = getattr(reg, "calibration", None)
    if lev is not None:  # leverage state for normalised intervals (plain arrays, no pickle)
        from safetensors.numpy import save_file

        from xrfcore.export import file_sha256
        from xrfcore.fileio import atomic_path

        with atomic_path(out / "calibration.safetensors") as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in lev.items()}, str(tmp))
        card["calibration_file"] = {"file": "calibration.safetensors",
                                    "sha256": file_sha256(out / "calibration.safetensors")}
    from xrfcore import ood as oodmod
    oodmod.save_finetuned(out, reg, card)  # the OOD arrays (ood.safetensors), hash into the card
    if mae is not None and card.get("ood"):
        bc = {k: v for k, v in (base_card or {}).items()
              if k not in ("config", "weights_sha256", "id", "kind", "ood_reference")}
        bc.setdefault("transform", card["transform"])
        mae_card = checkpoint.save(out / "base_mae", mae, bc)
        # the regressor's card vouches for the autoencoder it scores with (checked by Predictor)
        card["ood"]["mae_weights_sha256"] = json.loads(Path(mae_card).read_text())["weights_sha256"]
    path = checkpoint.save(out / "model", reg, card)
    full = json.loads(Path(path).read_text())
    from xrfcore.train.card_md import finetuned_markdown
    (out / "model.md").write_text(finetuned_markdown(full), encoding="utf-8")  # inside the staging folder
    return full


def _predict_norm(reg, Xin, device, batch) -> np.ndarray:
    reg.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(Xin), batch):
            xb = torch.from_numpy(np.ascontiguousarray(Xin[i:i + batch])).to(device)
            with _autocast(device):
                out.append(reg(xb).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, reg.cfg.n_outputs))


def _train_loop(reg, Xin, Z, tr, va, cfg: FinetuneConfig, device, progress, token) -> list[dict]:
    """AdamW + warm-up/cosine + clipping; early stopping on validation loss; best weights kept."""
    g = torch.Generator().manual_seed(cfg.seed)
    head = [p for n_, p in reg.named_parameters() if n_.startswith("fc.") and p.requires_grad]
    body = [p for n_, p in reg.named_parameters() if not n_.startswith("fc.") and p.requires_grad]
    lr = cfg.lr if cfg.mode == "full" else cfg.lr_scratch
    opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": lr * 10}],
                            betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    base_lrs = [lr, lr * 10]
    Xt = torch.from_numpy(np.ascontiguousarray(Xin))
    Zt = torch.from_numpy(Z.astype(np.float32))
    steps_per_epoch = max(1, math.ceil(len(tr) / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    best, best_state, bad, step, hist = float("inf"), None, 0, 0, []

    def masked_mse(pred, z):
        ok = torch.isfinite(z)
        return ((pred - torch.nan_to_num(z)) ** 2 * ok).sum() / ok.sum().clamp(min=1)

    if len(va):  # the starting point (linear probe, or random head) counts: training must beat it
        best = float(masked_mse(torch.from_numpy(_predict_norm(reg, Xin[va], device, cfg.embed_batch)), Zt[va]))
        best_state = {k: v.detach().cpu().clone() for k, v in reg.state_dict().items()}
        hist.append({"epoch": 0, "val_loss": best})

    for epoch in range(cfg.epochs):
        reg.train()
        perm = torch.from_numpy(tr)[torch.randperm(len(tr), generator=g)]
        run = 0.0
        for i in range(0, len(perm), cfg.batch_size):
            token.raise_if_cancelled()
            idx = perm[i:i + cfg.batch_size]
            f = (step + 1) / max(1, warm) if step < warm else \
                0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
            for grp, b in zip(opt.param_groups, base_lrs):
                grp["lr"] = b * f
            xb, zb = Xt[idx].to(device), Zt[idx].to(device)
            with _autocast(device):
                pred = reg(xb).float()
            loss = masked_mse(pred, zb)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"fine-tuning diverged (loss {loss.item()}) at epoch {epoch + 1}; "
                                         "lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(reg.parameters(), cfg.clip_grad)
            opt.step()
            run += loss.item() * len(idx)
            step += 1
        rec = {"epoch": epoch + 1, "train_loss": run / max(1, len(tr))}
        if len(va):
            pv = torch.from_numpy(_predict_norm(reg, Xin[va], device, cfg.embed_batch))
            vl = float(masked_mse(pv, Zt[va]))
            rec["val_loss"] = vl
            # a real improvement, not float noise: a change at the 1e-7 level (thread count,
            # summation order) must not flip which epoch is kept
            if vl < best - max(1e-6, 1e-3 * abs(best)):
                best, bad = vl, 0
                best_state = {k: v.detach().cpu().clone() for k, v in reg.state_dict().items()}
            else:
                bad += 1
        hist.append(rec)
        progress(epoch + 1, cfg.epochs, f"epoch {epoch + 1}: train {rec['train_loss']:.3f}"
                 + (f" val {rec['val_loss']:.3f}" if "val_loss" in rec else ""))
        if len(va) and bad >= cfg.patience and epoch + 1 >= cfg.min_epochs:
            break
    if best_state is not None:
        reg.load_state_dict(best_state)
    return hist


# --------------------------------------------------------------------------- applying a fine-tuned model

class Predictor:
    """A saved fine-tuned model ready to predict wt% with intervals and an OOD score."""

    def __init__(self, path, device: str = "auto"):
        from xrfcore.model import checkpoint, transforms as tfm

        self.path = Path(path)
        self.device = resolve_device(device)
        self.model, self.card = checkpoint.load(path)
        if self.card.get("task") != "regression":
            raise ValueError(f"{path}: not a fine-tuned regression model (kind {self.card.get('kind')!r})")
        self.transform = tfm.from_dict(self.card["transform"])
        self.targets = list(self.card["targets"])
        self.calibration = None
        folder = checkpoint.paths(path)[0].parent
        cal = self.card.get("calibration_file")
        if cal:  # every file the card names lies inside the model folder and matches its hash
            from safetensors.numpy import load_file

            f = checkpoint.member(folder, cal.get("file") if isinstance(cal, dict) else cal, "calibration file")
            if not f.exists():
                raise FileNotFoundError(f"{f}: calibration file of model {self.card.get('id')} is missing")
            checkpoint.regular_file(f, "calibration file", checkpoint.MAX_ARRAYS_BYTES)
            want = cal.get("sha256") if isinstance(cal, dict) else None
            if want and checkpoint.sha256_file(f) != want:
                raise ValueError(f"{f}: calibration file does not match the model card (sha256 differs); "
                                 "the file was changed or is incomplete, the model is refused")
            if not want:
                import warnings
                warnings.warn(f"{f}: the model card records no hash for its calibration file (an older "
                              "card); it is used unchecked", stacklevel=2)
            self.calibration = load_file(str(f))
            checkpoint.check_finite(self.calibration, f, "calibration")
        self.mae = None
        ood = self.card.get("ood")
        if ood:
            mae_path = checkpoint.member(folder, ood.get("mae_file", "base_mae"), "out-of-distribution autoencoder")
            if mae_path.with_suffix(".json").exists():
                checkpoint.inside(mae_path.with_suffix(".json"), folder, "out-of-distribution autoencoder card")
                self.mae, mcard = checkpoint.load(mae_path)
                want = ood.get("mae_weights_sha256")
                if want and mcard.get("weights_sha256") != want:
                    raise ValueError(f"{mae_path}: the out-of-distribution autoencoder is not the one this "
                                     "model was saved with (sha256 differs); the model is refused")
        from xrfcore import ood as oodmod
        self.ood_arrays = oodmod.load_finetuned(path, self.card)  # None for cards made before it

    @classmethod
    def from_model(cls, model, card: dict, mae=None, device: str = "auto") -> "Predictor":
        """A predictor around an in-memory fine-tuned model (e.g. straight from ``finetune``)."""
        from xrfcore.model import transforms as tfm

        self = cls.__new__(cls)
        self.path, self.device, self.model, self.card = None, resolve_device(device), model, card
        self.transform = tfm.from_dict(card["transform"])
        self.targets = list(card["targets"])
        self.mae = mae if card.get("ood") else None
        self.ood_arrays = getattr(model, "ood_arrays", None)
        self.calibration = getattr(model, "calibration", None)
        return self

    @property
    def model_id(self) -> str:
        return self.card.get("id", "unsaved")

    def scheme_for(self, core: str | None = None) -> str | None:
        """The interval calibration for a core: "within-core" when the model's lab samples came from
        it, "by-core" otherwise (None: a card from before both were stored)."""
        sch = self.card.get("interval_scheme")
        if not sch:
            return None
        labelled = sch.get("labelled_cores") or []
        if core is not None and str(core) in labelled:
            return "within-core"
        return "by-core" if core is not None else sch.get("default", "by-core")

    def scheme_text(self, scheme: str | None) -> str:
        """One line for export headers and the app: which calibration the intervals use."""
        if scheme is None:
            c = next(iter((self.card.get("conformal") or {}).values()), {})
            return f"single calibration ({c.get('calibration', 'not recorded')})"
        if scheme == "within-core":
            return ("within-core: this core's lab samples were used to fine-tune the model; intervals "
                    "calibrated on held-out samples of the labelled cores")
        return ("by-core: this core has no lab samples in the model; intervals calibrated on whole "
                "held-out labelled cores")

    def half_width(self, target: str, j: int, E: np.ndarray, scheme: str | None = None) -> np.ndarray:
        """Interval half-width (model space) per spectrum: the calibrated quantile of ``scheme``
        (the card's main calibration when None or not stored), times the leverage scale of the
        embedding when that calibration chose normalised scores."""
        c = (self.card.get("conformal") or {}).get(target, {})
        prefix = "f"
        if scheme is not None and scheme in (c.get("schemes") or {}):
            c, prefix = c["schemes"][scheme], SCHEME_PREFIX[scheme]
        elif c.get("scheme"):
            prefix = SCHEME_PREFIX.get(c["scheme"], "f")
        if c.get("method") == "normalised" and self.calibration is not None and c.get("q_normalised") is not None:
            return c["q_normalised"] * mean_leverage_scale(self.calibration, E, j, prefix)
        q = c.get("q_plain", c.get("q"))
        return np.full(len(E), np.inf if q is None else float(q))

    def predict_counts(self, counts, grid=None, *, batch: int = 256, progress=no_progress,
                       token=None, exposure=None, scheme: str | None = None) -> pd.DataFrame:
        """Predictions, intervals and the OOD score, flag and reason (``xrfcore.ood``) per spectrum;
        ``exposure``: live time x current per spectrum (``ood.exposure(meta)``) for the counts check;
        ``scheme``: the interval calibration, "within-core" (spectra of a labelled core) or "by-core"
        (any other core; see :meth:`scheme_for`), None: the card's main one.
        ``df.attrs["interval_scheme"]`` says which was used."""
        from xrfcore import ood as oodmod
        from xrfcore.model import transforms as tfm

        cfg = self.model.cfg
        Xin = tfm.prepare(counts, cfg, self.transform, src_grid=grid)
        # one total for all passes: the prediction, then the OOD score's (``ood.work_units`` per
        # spectrum: one per reconstruction seed, one more for a separate embedding)
        n_in = len(Xin)
        total = max(1, n_in * (1 + oodmod.work_units(self)))
        outs, embs = [], []
        self.model.to(self.device).eval()
        with torch.no_grad():
            for i in range(0, len(Xin), batch):
                if token is not None:
                    token.raise_if_cancelled()
                xb = torch.from_numpy(np.ascontiguousarray(Xin[i:i + batch])).to(self.device)
                with _autocast(self.device):
                    e = self.model.embed(xb)
                    o = self.model.fc(e).float()
                if cfg.head == "sigmoid100":
                    o = o * 100
                outs.append(o.cpu().numpy())
                embs.append(e.float().cpu().numpy())
                progress(min(i + batch, n_in), total, "predicting")
        Zp = np.concatenate(outs) if outs else np.zeros((0, len(self.targets)))
        E = np.concatenate(embs) if embs else np.zeros((0, cfg.embed_dim))
        df = pd.DataFrame(index=range(len(Xin)))
        for j, t in enumerate(self.targets):
            st = self.card["target_stats"][t]
            v = Zp[:, j] * st["std"] + st["mean"]
            half = self.half_width(t, j, E, scheme)  # in the target's model space (log for TOC)
            df[t], df[f"{t}_lo"], df[f"{t}_hi"] = from_space(v, st), from_space(v - half, st), from_space(v + half, st)
        for t in (TARGETS if set(self.targets) <= set(TARGETS) else ()):  # the classic columns
            if t not in df:
                df[t] = df[f"{t}_lo"] = df[f"{t}_hi"] = np.nan
        for k, v in oodmod.score(self, counts, grid, E, exposure, batch=batch, token=token,
                                 progress=lambda d, t, m="": progress(n_in + d, total, m)).items():
            df[k] = v.to_numpy()
        if self.mae is not None:
            self.mae.cpu()
        self.model.cpu()
        df.attrs["interval_scheme"] = scheme
        return df


# --------------------------------------------------------------------------- project-level job

def ood_reference(project_path, samples: pd.DataFrame, grid) -> np.ndarray | None:
    """The out-of-distribution reference: every active spectrum of the labelled cores' runs, on the
    model grid (the labelled spectra alone would make ordinary depths look unusual)."""
    from xrfcore import store as st
    from xrfcore.energy import on_grid

    refs = []
    with st.Project.open(project_path) as p:
        for core, key in samples[["core", "run"]].drop_duplicates().itertuples(index=False):
            rd = p.read_run(core, key)
            refs.append(on_grid(rd.counts, rd.grids, grid))
    return np.vstack(refs) if refs else None


def finetune_project(project_path, labels_csv, model_path, out, *, mapping=None, depth_unit=None,
                     run=None, tolerance_mm: float = 5.0, store_labels: bool = True, core=None,
                     progress=no_progress, token: CancelToken | None = None,
                     allow_instrument_mismatch: bool = False, units=None,
                     accept_lab_warnings: bool = False, **cfg_fields):
    """Match lab samples to the project's spectra, fine-tune, save into ``out``.

    ``targets`` (a config field): the targets to fit, default the lab table's (``read_lab_csv``) or
    the stored lab samples' targets. ``units``: the lab targets' unit (``labels.read_lab_csv``). A lab CSV that needs a person's OK
    (``MatchResult.confirm``: samples covering under a fifth of a core, TOC above 20 wt%) is refused
    unless ``accept_lab_warnings`` (stored lab samples were accepted when they were loaded).

    ``labels_csv``: a lab CSV (stored in the project after a successful fit), or None for the lab
    samples already stored in the project (what the app does after *Load lab samples*).
    ``model_path``: a path or an installed model's name; None uses the default foundation model
    (``xrfcore.models_registry.default_model``; FileNotFoundError when none is installed), except
    with ``mode="scratch"``. Each labelled core's run is checked against the base model's
    instrument (xrfcore.instrument): a mismatch raises unless ``allow_instrument_mismatch``.
    Returns (regressor, card, match).
    """
    from xrfcore import instrument, labels as lb, store as st

    token = token or CancelToken()
    wanted = tg.parse_list(cfg_fields.pop("targets", None))  # None: the lab table's / stored targets
    if cfg_fields.get("mode", "head") != "scratch" or model_path is not None:
        from xrfcore import models_registry
        model_path = models_registry.resolve(model_path)  # None -> the default foundation model
    if out is not None:  # refused before any work (the project, lab table or base model as -o too)
        from xrfcore.outputs import check_model_folder
        check_model_folder(out, force=bool(cfg_fields.get("overwrite")),
                           inputs=(project_path, labels_csv, model_path))
    if labels_csv is not None:
        lab = lb.read_lab_csv(labels_csv, mapping, depth_unit, core=core, units=units,
                              targets=None if set(wanted or ()) <= set(TARGETS) else wanted)
        source, samples_in, simulated = str(labels_csv), lab, lab.simulated
        info = {"file": str(Path(labels_csv).name), "sha256": lab.sha256}
        have = dict(lab.target_units)
    else:
        with st.Project.open(project_path) as p:
            samples_in, meta = p.labels(), p.labels_meta()
        if samples_in is None or not len(samples_in):
            raise ValueError(f"{project_path}: the project has no lab samples yet; load a lab CSV first")
        source = f"{project_path} (stored lab samples)"
        simulated = bool(meta.get("simulated"))
        info = {"files": sorted((meta.get("files") or {}).keys()), "stored_in_project": True}
        have = tg.stored(meta, samples_in)
        missing = [t for t in (wanted or ()) if t not in have and t not in TARGETS]
        if missing:
            raise ValueError(f"{project_path}: target {', '.join(map(repr, missing))} is not among the targets of "
                             f"the stored lab samples ({', '.join(have) or 'none'}); load a lab table with "
                             f"that column as a target (xrfcore labels ... --targets {','.join(missing)})")
    names = list(wanted) if wanted else list(have)
    cfg_fields["targets"] = tuple(names)
    grid, base_card = None, None
    if model_path is not None:
        from xrfcore.model import checkpoint
        from xrfcore.model.config import ModelConfig
        base_card = checkpoint.load_card(model_path)
        grid = ModelConfig.from_dict(base_card["config"]).grid()
    info["instrument_check"] = instrument.check_labelled_runs(
        project_path, samples_in.samples if hasattr(samples_in, "samples") else samples_in, base_card,
        run=run, allow=allow_instrument_mismatch)
    match = lb.match_project(project_path, samples_in, run=run, tolerance_mm=tolerance_mm, grid=grid,
                             targets=list(have))
    if labels_csv is not None and match.confirm and not accept_lab_warnings:
        raise ValueError(f"{source}: these lab samples need a check before use: " + " | ".join(match.confirm)
                         + "; nothing was trained; fix the table (depth unit, values), or accept them "
                         "with --accept-lab-warnings")
    if len(match.samples) < 3:
        raise ValueError(f"{source}: only {len(match.samples)} samples matched spectra in "
                         f"{project_path} ({match.summary()}); first reasons: "
                         + "; ".join(match.report["reason"].astype(str).head(3)))
    info.update({"table_sha256": lb.label_hash(match.samples, names), "matched": int(len(match.samples)),
                 "report_rows": int(len(match.report)), "simulated": simulated})
    from xrfcore import ood as oodmod
    ref, ref_info = oodmod.lab_reference(project_path, match.samples, grid)
    reg, card = finetune(model_path, match.X, match.samples, groups=match.samples["core"].to_numpy(),
                         grid=match.grid, reference=ref, reference_info=ref_info,
                         out=out, progress=progress, token=token, labels_info=info,
                         target_units={t: u for t, u in have.items() if t in names},
                         simulated=simulated or None, **cfg_fields)
    if store_labels and labels_csv is not None:
        lb.store_labels(project_path, lab)
    return reg, card, match
