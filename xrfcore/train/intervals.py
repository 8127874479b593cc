"""Prediction intervals of fine-tuned models: conformal / Student-t half-widths, the ridge leverage
scale and the cross-validated choice between plain and normalised intervals (the method is described
in :mod:`xrfcore.train.finetune`)."""
from __future__ import annotations

import math

import numpy as np

# Interval calibration schemes (card ``conformal[target]["schemes"]``): "within-core" from residuals
# of held-out samples of the labelled cores (for predicting those cores), "by-core" from residuals
# of whole held-out cores (for any other core). Leverage states are stored under these key prefixes.
SCHEMES = ("within-core", "by-core")
SCHEME_PREFIX = {"by-core": "f", "within-core": "w"}


def conformal_quantile(residuals, alpha: float = 0.1) -> float:
    """Split-conformal half-width: the ceil((n+1)(1-alpha))-th smallest |residual| (inf if n too small)."""
    r = np.sort(np.abs(np.asarray(residuals, float)[np.isfinite(residuals)]))
    n = len(r)
    k = math.ceil((n + 1) * (1 - alpha))
    if n == 0 or k > n:
        return float("inf")
    return float(r[k - 1])


CONFORMAL_MIN_N = 40   # below this many calibration residuals the order statistic is too noisy


def interval_quantile(residuals, alpha: float = 0.1) -> tuple[float, str]:
    """Half-width covering 1 - alpha of new residuals, and the estimator used.

    With at least ``CONFORMAL_MIN_N`` residuals: the split-conformal quantile. Below that the
    conformal order statistic is the largest or second-largest residual (n = 10: the largest, a
    single outlier decides the width: the +-33 wt% CaCO3 half-widths of 10-label models against an
    RMSE of 6), so the width comes from the residuals' root mean square instead: the Student-t
    prediction interval t(1 - alpha/2, n - 1) x RMS x sqrt(1 + 1/n) (about 1.9 x RMS at n = 10,
    exact for normal errors). Fewer than 3 residuals: inf (no interval can be calibrated)."""
    r = np.abs(np.asarray(residuals, float))
    r = r[np.isfinite(r)]
    n = len(r)
    if n >= CONFORMAL_MIN_N:
        return conformal_quantile(r, alpha), "conformal"
    if n < 3:
        return float("inf"), "none"
    from scipy.stats import t as student_t
    rms = float(np.sqrt(np.mean(r ** 2)))
    return float(student_t.ppf(1 - alpha / 2, n - 1) * rms * math.sqrt(1 + 1 / n)), "student-t"


def leverage_state(E: np.ndarray, Z: np.ndarray, chosen_alphas) -> dict:
    """What the ridge prediction-variance factor needs: standardisation and, per target, the
    inverse of (Es'Es + alpha I) on the rows that target was fitted on (numpy arrays)."""
    mu, sd = E.mean(0), E.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    Es = (E - mu) / sd
    st = {"mu": mu.astype(np.float64), "sd": sd.astype(np.float64)}
    for j, a in enumerate(chosen_alphas):
        ok = np.isfinite(Z[:, j])
        if a is None or ok.sum() < 2:
            continue
        Ek = Es[ok] - Es[ok].mean(0)
        st[f"M{j}"] = np.linalg.inv(Ek.T @ Ek + a * np.eye(E.shape[1]))
        st[f"n{j}"] = np.array([ok.sum()], np.float64)
    return st


def leverage_scale(state: dict, E: np.ndarray, j: int) -> np.ndarray:
    """Relative prediction spread sqrt(1 + 1/n + h(x)) of target j (h: ridge leverage of x).

    Near the training embeddings it is ~1; it grows where a spectrum's embedding lies in directions
    the labelled samples did not span (new scanner head, unseen lithology)."""
    if f"M{j}" not in state:
        return np.ones(len(E))
    xs = (np.asarray(E, np.float64) - state["mu"]) / state["sd"]
    h = np.einsum("id,de,ie->i", xs, np.asarray(state[f"M{j}"], np.float64), xs)
    return np.sqrt(1.0 + 1.0 / float(state[f"n{j}"][0]) + np.maximum(h, 0.0))


def mean_leverage_scale(states: dict, E: np.ndarray, j: int, prefix: str = "f") -> np.ndarray:
    """leverage_scale averaged over the fold states stored as ``{prefix}{k}_{key}`` (see finetune;
    prefix "f": by-core folds, "w": within-core folds)."""
    folds = sorted({k.split("_", 1)[0] for k in states
                    if k.startswith(prefix) and k.split("_", 1)[0][1:].isdigit() and "_" in k})
    if not folds:
        return np.ones(len(E))
    return np.mean([leverage_scale({k.split("_", 1)[1]: v for k, v in states.items() if k.startswith(f + "_")},
                                   E, j) for f in folds], axis=0)


def calibrate(res: np.ndarray, scale: np.ndarray, fold: np.ndarray, alpha: float) -> dict:
    """Conformal calibration of one target from out-of-fold residuals (wt%).

    Two scores: plain |r| (constant width) and normalised |r| / scale (width grows with the
    leverage scale). Each is checked by cross-validating the calibration itself: the quantile from
    all folds but one, coverage and width measured on that fold (whole cores when the folds are).
    Of the methods whose measured coverage reaches 1 - alpha (less 2 % or one sample), the one with
    the narrower mean interval is used; if neither does, the one that covers more."""
    ok = np.isfinite(res) & np.isfinite(scale)
    res, scale, fold = np.abs(res[ok]), scale[ok], fold[ok]
    out = {}
    for name, score, mult in (("plain", res, np.ones_like(scale)), ("normalised", res / scale, scale)):
        q, est = interval_quantile(score, alpha)
        cov, width = [], []
        for f in np.unique(fold):
            qf = interval_quantile(score[fold != f], alpha)[0]
            inside = fold == f
            cov.append(score[inside] <= qf)
            width.append(np.full(inside.sum(), qf) * mult[inside])
        cov = np.concatenate(cov) if cov else np.zeros(0, bool)
        width = np.concatenate(width) if width else np.zeros(0)
        finite = np.isfinite(width)
        out[name] = {"q": q if math.isfinite(q) else None, "estimator": est,
                     "cv_coverage": float(cov.mean()) if len(cov) else None,
                     "cv_mean_halfwidth": float(width[finite].mean()) if finite.any() else None}
    p, nz = out["plain"], out["normalised"]
    if None in (p["cv_mean_halfwidth"], nz["cv_mean_halfwidth"], nz["q"]):  # too few labels to check
        method = "plain"
    else:
        # valid first (measured coverage no more than one sample or 2 % short of nominal), then narrow:
        # with few labels the leverage scale is heavy-tailed and "normalised" can be valid but useless
        tol = max(0.02, 1.0 / max(1, len(res)))
        valid = {m: out[m]["cv_coverage"] >= 1 - alpha - tol for m in out}
        if valid["plain"] and valid["normalised"]:
            method = "normalised" if nz["cv_mean_halfwidth"] < p["cv_mean_halfwidth"] else "plain"
        elif valid["plain"] != valid["normalised"]:
            method = "plain" if valid["plain"] else "normalised"
        else:
            method = "normalised" if nz["cv_coverage"] > p["cv_coverage"] else "plain"
    return {"method": method, **{f"{k}_{m}": v for m, d in out.items() for k, v in d.items()}}
