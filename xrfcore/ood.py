"""Out-of-distribution scores that know what the model knows.

A foundation model card carries ``ood_reference``: quantiles of its masked reconstruction error
(fixed masks, its own input transform, the error used at prediction) on held-out spectra, and the
statistics of its encoder embedding (mean + a shrunk-covariance whitening matrix, 192 x 192 for
tiny: too many numbers for a readable card, so they live in ``<stem>.ood.safetensors`` beside the
weights, with the file's sha256 in the card). The weights and their hash are not touched.

A fine-tuned model's score is the largest of (each divided by its limit, > 1 = flagged):
  recon      reconstruction error / the foundation reference's limit (old cards: the labelled cores')
  embedding  Mahalanobis distance of the foundation embedding / the foundation reference's limit
  lab        mean distance to the 5 nearest lab-reference spectra (labelled cores, whitened
             foundation embedding) / the limit from leave-one-core-out (one core: depth blocks)
  counts     |log counts per live s and uA - expected from the spectrum's band shape| / limit:
             the log + z-score input makes the autoencoder nearly blind to a pure scaling (cracks)
and ``ood_reason`` names the parts over their limit. Cards without these fields keep the old score.
"""
from __future__ import annotations

import datetime as _dt
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from xrfcore.jobs import no_progress

SEEDS = (0, 1, 2)
MASK_RATIO = 0.5
REF_MAX = 3000          # spectra per reference part (fixed-seed sample)
LIMIT_Q = 0.995         # foundation limits: this quantile of the reference
SHRINK = 0.2            # covariance shrinkage towards the mean variance (192 dims, a few 1000 rows)
LAB_K, LAB_Q, LAB_MAX = 5, 0.99, 2000
BANDS = 32              # intensity model: log band fractions of the window -> log counts
COUNTS_Z, COUNTS_MIN = 5.0, float(np.log(1.5))
SIDE = ".ood.safetensors"
POOL = "mean"           # embedding used for the distances (see embed)
VERSION = 2             # card["ood"]["version"]; cards without it score as before


# --------------------------------------------------------------------------- pieces

def _quantiles(v) -> dict:
    v = np.asarray(v, float)
    return {str(q): float(np.quantile(v, q / 100)) for q in (1, 5, 25, 50, 75, 90, 95, 99, 99.5, 99.9)}


def _sample(n: int, k: int, seed: int) -> np.ndarray:
    return np.arange(n) if n <= k else np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


def recon_errors(mae, Xin, *, seeds=SEEDS, mask_ratio=MASK_RATIO, device="cpu", batch=256, token=None,
                 progress=no_progress):
    """(N,) masked-patch error with fixed masks (finetune.reconstruction_errors)."""
    from xrfcore.train.finetune import reconstruction_errors
    return reconstruction_errors(mae, Xin, seeds=tuple(seeds), mask_ratio=mask_ratio, device=device,
                                 batch=batch, token=token, progress=progress)


def embed(mae, Xin, *, device="cpu", batch=256, token=None, progress=no_progress) -> np.ndarray:
    """(N, D) mean of the encoder's patch tokens, whatever the model's own pool: the fine-tuned
    heads' default input, so a head-mode prediction's embedding is reused (no second pass)."""
    import torch

    mae = mae.to(device).eval()
    out = [np.zeros((0, mae.cfg.embed_dim))]
    with torch.no_grad():
        for i in range(0, len(Xin), batch):
            if token is not None:
                token.raise_if_cancelled()
            xb = torch.from_numpy(np.ascontiguousarray(Xin[i:i + batch])).to(device)
            out.append(mae.encode(xb)[:, 1:].mean(1).double().cpu().numpy())
            progress(min(i + batch, len(Xin)), len(Xin), "embedding")
    return np.concatenate(out)


def whitening(E: np.ndarray, shrink: float = SHRINK) -> tuple[np.ndarray, np.ndarray]:
    """(mean, W) with |W (e - mean)| the Mahalanobis distance under a shrunk covariance (W symmetric)."""
    mu = E.mean(0)
    S = np.cov(E - mu, rowvar=False)
    C = (1 - shrink) * S + shrink * np.trace(S) / len(S) * np.eye(len(S))
    lam, V = np.linalg.eigh(C)
    W = (V / np.sqrt(np.maximum(lam, 1e-12))) @ V.T
    return mu.astype(np.float32), W.astype(np.float32)


def whiten(E, mean, W) -> np.ndarray:
    return (np.asarray(E, np.float64) - mean) @ np.asarray(W, np.float64)


def knn_distance(Q: np.ndarray, R: np.ndarray, k: int = LAB_K) -> np.ndarray:
    """Mean Euclidean distance of each row of Q to its k nearest rows of R."""
    if len(R) == 0:
        return np.full(len(Q), np.inf)
    k = min(k, len(R))
    out = np.empty(len(Q))
    r2 = (R ** 2).sum(1)
    for i in range(0, len(Q), 512):
        q = Q[i:i + 512]
        d2 = np.maximum((q ** 2).sum(1)[:, None] - 2 * q @ R.T + r2[None], 0)
        out[i:i + 512] = np.sqrt(np.partition(d2, k - 1, axis=1)[:, :k]).mean(1)
    return out


def band_features(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sqrt band fractions (N, BANDS), log total) of window counts: the shape, and the level.
    Fractions stay unbiased when counts are thinned (a log with +1 in near-empty bands did not, and
    hid most of a x0.3 drop)."""
    W = np.asarray(W, np.float64)
    nb = BANDS if W.shape[1] % BANDS == 0 else 1
    B = W.reshape(len(W), nb, -1).sum(2)
    tot = np.maximum(B.sum(1), 1.0)
    return np.sqrt(np.maximum(B, 0) / tot[:, None]), np.log(tot)


def exposure(meta: pd.DataFrame) -> np.ndarray | None:
    """live time x current per spectrum, or None where not known for every row."""
    if meta is None or "live_s" not in meta or "current_ua" not in meta:
        return None
    e = meta["live_s"].to_numpy(float) * meta["current_ua"].to_numpy(float)
    return e if len(e) and np.all(np.isfinite(e) & (e > 0)) else None


# --------------------------------------------------------------------------- foundation reference

def foundation_reference(mae, card: dict, X_train=None, X_val=None, *, grid=None, seed: int = 0,
                         n_max: int = REF_MAX, device="cpu", batch: int = 256, source: str = "",
                         progress=no_progress, token=None) -> tuple[dict, dict]:
    """(card entry, arrays) from counts on ``grid`` (default the model grid).

    Reconstruction quantiles come from the validation spectra when given (held-out cores: the
    error on new cores, not on memorised ones), else a fixed-seed sample of the training spectra.
    The embedding statistics use both: a few validation cores alone are too narrow a picture of
    what the model knows (fitted on 5 cores, every new core came out far)."""
    from xrfcore.model import transforms as tfm

    t = tfm.from_dict(card["transform"])
    parts = []
    for name, X in (("validation", X_val), ("training", X_train)):
        if X is not None and len(X):
            idx = _sample(len(X), n_max, seed)
            parts.append((name, tfm.window(np.asarray(X)[idx], mae.cfg, grid)))
    if not parts:
        raise ValueError("an OOD reference needs spectra (training and/or validation)")
    progress(0, 3, "reference: reconstruction errors")
    rec_name, rec_W = parts[0]
    err = recon_errors(mae, t.apply(rec_W), device=device, batch=batch, token=token)
    progress(1, 3, "reference: embeddings")
    Wall = np.vstack([w for _, w in parts])
    E = embed(mae, t.apply(Wall), device=device, batch=batch, token=token)
    mean, Wh = whitening(E)
    d = np.linalg.norm(whiten(E, mean, Wh), axis=1)
    _, logc = band_features(Wall)
    progress(3, 3, "reference: done")
    ref = {"version": 1, "seeds": list(SEEDS), "mask_ratio": MASK_RATIO, "transform": t.to_dict(),
           "source": source, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "recon": {"n": int(len(err)), "spectra": rec_name, "limit_quantile": LIMIT_Q,
                     "limit": float(np.quantile(err, LIMIT_Q)), "median": float(np.median(err)),
                     "quantiles": _quantiles(err)},
           "embedding": {"n": int(len(E)), "spectra": " + ".join(n for n, _ in parts), "pool": POOL,
                         "shrinkage": SHRINK, "limit_quantile": LIMIT_Q, "limit": float(np.quantile(d, LIMIT_Q)),
                         "quantiles": _quantiles(d)},
           "log_counts": {"what": "ln(total counts in the window)", "quantiles": _quantiles(logc)}}
    return ref, {"emb_mean": mean, "emb_whiten": Wh}


def sidecar(model_path) -> Path:
    from xrfcore.model.checkpoint import paths
    w = paths(model_path)[0]
    return w.with_name(w.stem + SIDE)


def save_arrays(path, arrays: dict) -> str:
    from safetensors.numpy import save_file

    from xrfcore.export import file_sha256
    from xrfcore.fileio import atomic_path

    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}, str(tmp))
    return file_sha256(path)


def load_arrays(path, sha256: str | None) -> dict:
    from safetensors.numpy import load_file

    from xrfcore.export import file_sha256

    from xrfcore.model.checkpoint import MAX_ARRAYS_BYTES, check_finite, regular_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: out-of-distribution reference file is missing")
    regular_file(path, "out-of-distribution reference file", MAX_ARRAYS_BYTES)
    if sha256 and file_sha256(path) != sha256:
        raise ValueError(f"{path}: out-of-distribution reference does not match its card (sha256 differs)")
    arrays = load_file(str(path))
    check_finite(arrays, path, "out-of-distribution reference")
    return arrays


def attach(card: dict, ref: dict, arrays: dict, model_path=None) -> dict:
    """Put ``ref`` into ``card``; with ``model_path`` also write the arrays beside the weights."""
    ref = dict(ref)
    if model_path is not None:
        f = sidecar(model_path)
        ref.update(file=f.name, sha256=save_arrays(f, arrays))
    card["ood_reference"] = ref
    return card


def read_reference(model, card: dict, model_path=None) -> tuple[dict, dict] | None:
    """(ref, arrays) of a foundation model (in memory or beside ``model_path``), or None."""
    ref = card.get("ood_reference")
    if not ref:
        return None
    arrays = getattr(model, "ood_arrays", None)
    if arrays is None and model_path is not None:
        from xrfcore.model.checkpoint import inside, member

        f = sidecar(model_path)  # <weights stem>.ood.safetensors, else the name the card gives
        f = f if f.exists() else member(f.parent, ref.get("file", f.name), "out-of-distribution reference")
        if f.exists():
            inside(f, f.parent, "out-of-distribution reference")
        if not f.is_file():
            warnings.warn(f"{f}: the OOD reference file of this model is missing; the out-of-distribution "
                          "score falls back to the labelled cores only", stacklevel=2)
            return None
        arrays = load_arrays(f, ref.get("sha256"))
    return (ref, arrays) if arrays is not None else None


def add_reference(model_path, project_path, *, val_cores=None, cores=None, n_max: int = REF_MAX,
                  seed: int = 0, device: str = "cpu", progress=no_progress, token=None) -> dict:
    """Add ``ood_reference`` to an existing foundation model's card (the weights stay as they are).

    ``val_cores``: held-out cores for the reconstruction quantiles (default: the card's
    ``data.val_cores`` found in the project); ``cores``: training-like cores (default: the others)."""
    from xrfcore.model import checkpoint
    from xrfcore.train.data import load_project

    mae, card = checkpoint.load(model_path)
    if card.get("kind") != "mae":
        raise ValueError(f"{model_path}: an OOD reference belongs to a foundation (mae) model, not a {card.get('kind')}")
    # no `cores` given: every core of the project (the held-out ones and the training-like others)
    data = load_project(project_path, mae.cfg, cores=None if cores is None else list(cores) + list(val_cores or []))
    names = set(data.core.tolist())
    if val_cores is None:
        val_cores = [c for c in ((card.get("data") or {}).get("val_cores") or []) if c in names]
    is_val = np.isin(data.core, list(val_cores))
    Xv, Xt = data.counts[is_val], data.counts[~is_val]
    src = (f"{Path(project_path).name}: {int(is_val.sum())} spectra of held-out cores {', '.join(val_cores) or '-'}"
           f", {int((~is_val).sum())} of {len(names - set(val_cores))} other cores (up to {n_max} each, seed {seed})")
    ref, arrays = foundation_reference(mae, card, Xt, Xv, seed=seed, n_max=n_max, device=device,
                                       source=src, progress=progress, token=token)
    ref["data_sha256"] = {"validation": data.select(is_val).sha256() if is_val.any() else None,
                          "other": data.select(~is_val).sha256() if (~is_val).any() else None}
    attach(card, ref, arrays, model_path)
    checkpoint.write_json(checkpoint.paths(model_path)[1], card)
    return card


# --------------------------------------------------------------------------- fine-tuning

def lab_reference(project_path, samples: pd.DataFrame, grid) -> tuple[np.ndarray | None, dict]:
    """Every active spectrum of the labelled cores' runs on ``grid``, with core, depth, exposure."""
    from xrfcore import store as st
    from xrfcore.energy import on_grid

    X, core, depth, expo = [], [], [], []
    with st.Project.open(project_path) as p:
        for c, key in samples[["core", "run"]].drop_duplicates().itertuples(index=False):
            rd = p.read_run(c, key)
            X.append(on_grid(rd.counts, getattr(rd, "grids", rd.grid), grid))
            core += [c] * len(rd)
            depth.append(rd.meta["depth_mm"].to_numpy(float))
            e = exposure(rd.meta)
            expo.append(e if e is not None else np.full(len(rd), np.nan))
    if not X:
        return None, {}
    e = np.concatenate(expo)
    return np.vstack(X), {"core": np.array(core), "depth_mm": np.concatenate(depth),
                          "exposure": e if np.isfinite(e).all() else None}


def _block_folds(core, depth, n: int, folds: int = 5) -> np.ndarray:
    """Fold of each reference spectrum: whole cores when there are several (a new core is what gets
    predicted), else 10 depth blocks, block i -> fold i % 5 (neighbouring depths are near copies, so
    leaving out single spectra would judge far too tightly)."""
    if core is None:
        return np.random.default_rng(0).permutation(np.arange(n) % folds)
    names, f = np.unique(core, return_inverse=True)
    if len(names) > 1:
        return f
    f = np.zeros(n, int)
    for c in np.unique(core):
        idx = np.flatnonzero(core == c)
        idx = idx[np.argsort(np.nan_to_num(np.asarray(depth, float)[idx]), kind="stable")]
        f[idx] = (np.arange(len(idx)) * 10 // max(len(idx), 1)) % folds
    return f


def _ridge(F, y, alpha):
    mu, sd = F.mean(0), F.std(0) + 1e-9
    Z = (F - mu) / sd
    w = np.linalg.solve(Z.T @ Z + alpha * len(Z) * np.eye(Z.shape[1]), Z.T @ (y - y.mean()))
    return w / sd, float(y.mean() - (mu / sd) @ w)


def intensity_model(W, expo, fold) -> tuple[dict, np.ndarray]:
    """Expected log counts (per live s and uA when known) from the band shape, fitted on the lab
    reference (ridge, its strength by cross-validation); the limit from the CV residuals."""
    F, t = band_features(W)
    t = t - np.log(expo) if expo is not None else t
    best = (None, 1.4826 * np.median(np.abs(t - np.median(t))), 0.0)  # < 50 spectra: the median level
    w, b = np.zeros(F.shape[1]), float(np.median(t))
    for alpha in ((1e-4, 1e-3, 1e-2, 1e-1) if len(t) >= 50 else ()):
        res = np.empty(len(t))
        for k in np.unique(fold):
            wk, bk = _ridge(F[fold != k], t[fold != k], alpha)
            res[fold == k] = t[fold == k] - F[fold == k] @ wk - bk
        s = 1.4826 * np.median(np.abs(res - np.median(res)))
        if best[0] is None or s < best[1]:
            best = (alpha, s, float(np.median(res)))
    if best[0] is not None:
        w, b = _ridge(F, t, best[0])
    return {"normalised": "per live second and uA" if expo is not None else "counts", "alpha": best[0],
            "bias": float(b + best[2]), "cv_robust_sd": float(best[1]), "n": int(len(t)),
            "limit_log": float(max(COUNTS_Z * best[1], COUNTS_MIN))}, w.astype(np.float32)


def finetune_reference(mae, base_card: dict, reference, X, *, base_path=None, grid=None,
                       reference_info=None, embedding_from: str = "base", legacy=None, seed: int = 0,
                       device="cpu", batch: int = 256, token=None) -> tuple[dict, dict]:
    """(card["ood"], arrays) for a fine-tuned model. ``reference``: single spectra of the labelled
    cores (default ``X``, the labelled spectra); ``reference_info``: their core, depth_mm, exposure.
    ``legacy()`` -> the old card["ood"] (lab-reference recon p99), used when the base has no
    reference of its own."""
    from xrfcore.model import transforms as tfm

    info = dict(reference_info or {})
    R = np.asarray(reference) if reference is not None else np.asarray(X)
    if reference is None:
        info = {}
    keep = _sample(len(R), LAB_MAX, seed)
    R = R[keep]
    core = np.asarray(info["core"])[keep] if info.get("core") is not None else None
    depth = np.asarray(info["depth_mm"])[keep] if info.get("depth_mm") is not None else None
    expo = np.asarray(info["exposure"])[keep] if info.get("exposure") is not None else None
    t = tfm.from_dict(base_card["transform"])
    fref = read_reference(mae, base_card, base_path)
    out = legacy() if (fref is None and legacy is not None) else {
        "mae_file": "base_mae", "transform": t.to_dict(), "seeds": list(SEEDS), "mask_ratio": MASK_RATIO,
        "reference_n": int(len(R)), "reference": "single training spectra" if reference is not None
        else "labelled (averaged) spectra"}
    if fref is not None:
        fr, fa = fref
        mean, Wh = fa["emb_mean"], fa["emb_whiten"]
        out.update(seeds=list(fr["seeds"]), mask_ratio=fr["mask_ratio"],
                   p99=fr["recon"]["limit"])  # an old reader's err / p99 is then the foundation part
        out["foundation"] = {k: v for k, v in fr.items() if k not in ("file", "sha256")}
    WR = tfm.window(R, mae.cfg, grid)
    WX = tfm.window(np.asarray(X), mae.cfg, grid)
    E = embed(mae, t.apply(np.vstack([WR, WX])), device=device, batch=batch, token=token)
    if fref is None:  # no foundation statistics: whiten with the lab reference's own
        mean, Wh = whitening(E)
    Z = whiten(E, mean, Wh)
    fold = _block_folds(core, depth, len(R))
    cv = np.concatenate([knn_distance(Z[:len(R)][fold == k], Z[:len(R)][fold != k]) for k in np.unique(fold)])
    counts, w = intensity_model(WR, expo, fold)
    out.update(version=VERSION, embedding_from=embedding_from,
               lab={"n": int(len(Z)), "k": LAB_K, "limit_quantile": LAB_Q,
                    "limit": float(np.quantile(cv, LAB_Q)) if len(cv) else float("inf"),
                    "folds": "random" if core is None else "cores" if len(set(core)) > 1 else "depth blocks"},
               counts=counts)
    arrays = {"emb_mean": mean, "emb_whiten": Wh, "lab_ref": Z.astype(np.float32), "counts_w": w}
    return out, arrays


def save_finetuned(out, reg, card: dict) -> None:
    arrays = getattr(reg, "ood_arrays", None)
    if arrays is not None and (card.get("ood") or {}).get("version") == VERSION:
        f = Path(out) / "ood.safetensors"
        card["ood"]["file"] = {"file": f.name, "sha256": save_arrays(f, arrays)}


def load_finetuned(path, card: dict) -> dict | None:
    o = card.get("ood") or {}
    if o.get("version") != VERSION or not o.get("file"):
        return None
    from xrfcore.model.checkpoint import member, paths
    f = member(paths(path)[0].parent, o["file"].get("file"), "out-of-distribution reference")
    return load_arrays(f, o["file"].get("sha256"))


# --------------------------------------------------------------------------- prediction

def describe(card: dict) -> str:
    o = card.get("ood") or {}
    if not o:
        return "not available"
    if o.get("version") != VERSION:
        return "reconstruction error / training 99th percentile; flag > 1"
    base = "foundation reference" if o.get("foundation") else "labelled cores' reconstruction p99"
    return (f"max of: reconstruction error / limit ({base}), embedding distance / limit, distance to the "
            f"lab reference / limit, counts vs expected / limit; flag > 1")


def _x(v: float) -> str:
    return f"{v:.2f}" if v < 2 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _reason(parts: dict, extra: dict) -> str:
    """The parts over their limit, largest first, in words."""
    p, items = parts, []
    fnd = ([f"reconstruction error {_x(extra['recon_x'])}x typical"] if p.get("recon", 0) > 1 else []) + \
          ([f"features {_x(p['embedding'])}x past their limit"] if p.get("embedding", 0) > 1 else [])
    if fnd:
        items.append((max(p.get("recon", 0), p.get("embedding", 0)),
                      f"unlike the foundation model's training spectra ({', '.join(fnd)})"))
    if p.get("lab", 0) > 1:
        items.append((p["lab"], f"far from the lab samples (distance {_x(p['lab'])}x the usual limit)"))
    if p.get("counts", 0) > 1:
        r = extra["counts_ratio"]
        items.append((p["counts"], f"low counts (x{r:.2f} of expected): crack or gap?" if r < 1
                      else f"high counts (x{r:.2f} of expected)"))
    if p.get("legacy", 0) > 1:
        items.append((p["legacy"], f"reconstruction error {_x(p['legacy'])}x the labelled cores' 99th percentile"))
    return "; ".join(t for _, t in sorted(items, key=lambda it: -it[0]))


def work_units(pr) -> int:
    """Passes over the spectra that ``score`` makes for a Predictor (for one honest progress total)."""
    o = pr.card.get("ood") or {}
    if getattr(pr, "mae", None) is None or not o:
        return 0
    new = o.get("version") == VERSION and getattr(pr, "ood_arrays", None) is not None
    return len(o.get("seeds", SEEDS)) + (1 if new and o.get("embedding_from") != "regressor" else 0)


def score(pr, counts, grid, E, exposure=None, *, batch: int = 256, token=None,
          progress=no_progress) -> pd.DataFrame:
    """ood_score, ood_flag, ood_reason per spectrum for a Predictor ``pr`` (E: its embeddings).
    ``progress(done, total)`` counts ``work_units(pr)`` passes over the spectra."""
    from xrfcore.model import transforms as tfm

    n = len(E)
    units = max(1, work_units(pr))
    n_seeds = len((pr.card.get("ood") or {}).get("seeds", SEEDS))
    o = pr.card.get("ood") or {}
    arrays = getattr(pr, "ood_arrays", None)
    if pr.mae is None or not o:
        return pd.DataFrame({"ood_score": np.full(n, np.nan), "ood_flag": False, "ood_reason": ""})
    mt = tfm.from_dict(o["transform"]) if o.get("transform") else pr.transform
    W = tfm.window(counts, pr.mae.cfg, grid)
    Xin = mt.apply(W)
    err = recon_errors(pr.mae, Xin, seeds=o.get("seeds", SEEDS), mask_ratio=o.get("mask_ratio", MASK_RATIO),
                       device=pr.device, batch=batch, token=token,
                       progress=lambda d, t, m="": progress(d * n_seeds, n * units, "out-of-distribution: reconstruction"))
    if o.get("version") != VERSION or arrays is None:  # an old card: as before
        s = err / o["p99"] if o["p99"] > 0 else np.full(n, np.inf)
        return pd.DataFrame({"ood_score": s, "ood_flag": s > 1.0,
                             "ood_reason": [_reason({"legacy": v}, {}) for v in s]})
    parts, extra = {}, {}
    fnd = o.get("foundation")
    if fnd:
        parts["recon"] = err / fnd["recon"]["limit"]
        extra["recon_x"] = err / max(fnd["recon"]["median"], 1e-12)
    else:
        parts["legacy"] = err / o["p99"] if o.get("p99") else np.zeros(n)
    Ef = E if o.get("embedding_from") == "regressor" else embed(
        pr.mae, Xin, device=pr.device, batch=batch, token=token,
        progress=lambda d, t, m="": progress(n * n_seeds + d, n * units, "out-of-distribution: embedding"))
    Z = whiten(Ef, arrays["emb_mean"], arrays["emb_whiten"])
    if fnd:
        parts["embedding"] = np.linalg.norm(Z, axis=1) / fnd["embedding"]["limit"]
    parts["lab"] = knn_distance(Z, np.asarray(arrays["lab_ref"], np.float64)) / o["lab"]["limit"]
    c = o["counts"]
    F, logc = band_features(W)
    if c["normalised"] != "counts":
        logc = logc - np.log(exposure) if exposure is not None else None
    if logc is not None:
        r = logc - F @ np.asarray(arrays["counts_w"], np.float64) - c["bias"]
        parts["counts"] = np.abs(r) / c["limit_log"]
        extra["counts_ratio"] = np.exp(r)
    total = np.max(np.column_stack(list(parts.values())), axis=1)
    reasons = [_reason({k: float(v[i]) for k, v in parts.items()}, {k: float(v[i]) for k, v in extra.items()})
               if total[i] > 1 else "" for i in range(n)]
    out = pd.DataFrame({"ood_score": total, "ood_flag": total > 1.0, "ood_reason": reasons})
    for k in ("recon", "embedding", "lab", "counts"):  # each part over its limit (not stored)
        out[f"ood_{k}"] = parts.get(k, parts.get("legacy") if k == "recon" else np.full(n, np.nan))
    return out
