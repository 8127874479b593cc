"""The published NMF + SVR reference method (Lee et al. 2022, Sci Rep 12:20860), in scikit-learn.

Per target: spectrum / its sum -> NMF (components chosen by cross-validation over a small grid)
-> standard scaling -> RBF SVR, fitted on ln(target); predictions are exp(...) so never negative,
and clamped to 100 wt%. `fit_baseline` mirrors `train.finetune.finetune`: counts and a target
table in, a fitted model (``.predict(X) -> DataFrame``) and a card out.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xrfcore.jobs import CancelToken, no_progress

TARGETS = ("CaCO3", "TOC")
LN_FLOOR = 0.01  # wt%: ln needs positive targets; lab zeros / detection limits sit here


def sum_normalise(X) -> np.ndarray:
    X = np.asarray(X, np.float64)
    s = X.sum(1, keepdims=True)
    if np.any(s <= 0):
        raise ValueError("a spectrum has no counts; cannot sum-normalise it")
    return np.clip(X / s, 0, None)


def _pipeline(n_components: int, seed: int, C: float, gamma):
    from sklearn.decomposition import NMF
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    return make_pipeline(NMF(n_components=n_components, init="nndsvda", max_iter=400, random_state=seed),
                         StandardScaler(), SVR(kernel="rbf", C=C, gamma=gamma))


@dataclass
class BaselineModel:
    targets: list
    pipes: dict = field(default_factory=dict)
    chosen: dict = field(default_factory=dict)   # target -> {"n_components": k, "cv_rmse_ln": ...}
    channels: int = 0

    def predict(self, X) -> pd.DataFrame:
        Xn = sum_normalise(X)
        if Xn.shape[1] != self.channels:
            raise ValueError(f"baseline was fitted on {self.channels} channels, got {Xn.shape[1]}")
        out = {}
        for t in self.targets:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[t] = np.clip(np.exp(self.pipes[t].predict(Xn)), 0, 100)
        return pd.DataFrame(out)


def fit_baseline(X, y: pd.DataFrame, *, targets=TARGETS, components=(2, 4, 8, 13), cv: int = 5,
                 C: float = 10.0, gamma="scale", seed: int = 0, progress=no_progress,
                 token: CancelToken | None = None):
    """Fit NMF + SVR per target; the number of NMF components is chosen by k-fold CV (RMSE of ln y).

    X: (n, C) counts; y: DataFrame with the target columns (NaN = not measured, skipped per target).
    Returns (BaselineModel, card dict).
    """
    from sklearn.model_selection import KFold, cross_val_score

    Xn = sum_normalise(X)
    targets = [t for t in targets if t in y.columns]
    if not targets:
        raise ValueError("no target column (CaCO3 or TOC) to fit")
    model = BaselineModel(targets=targets, channels=Xn.shape[1])
    steps = len(targets) * (len(components) + 1)
    done = 0
    for t in targets:
        v = y[t].to_numpy(float)
        ok = np.isfinite(v)
        if ok.sum() < 3:
            raise ValueError(f"{t}: only {int(ok.sum())} labelled samples; need at least 3")
        Xt, zt = Xn[ok], np.log(np.clip(v[ok], LN_FLOOR, None))
        k = min(cv, int(ok.sum()))
        grid = [c for c in components if c < min(Xt.shape)] or [min(components[0], min(Xt.shape) - 1) or 1]
        scores = {}
        for ncomp in grid:
            if token is not None:
                token.raise_if_cancelled()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NMF convergence chatter on tiny folds
                s = cross_val_score(_pipeline(ncomp, seed, C, gamma), Xt, zt,
                                    cv=KFold(k, shuffle=True, random_state=seed),
                                    scoring="neg_root_mean_squared_error")
            scores[ncomp] = float(-s.mean())
            done += 1
            progress(done, steps, f"baseline {t}: {ncomp} components, CV RMSE(ln) {scores[ncomp]:.3f}")
        best = min(scores, key=scores.get)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.pipes[t] = _pipeline(best, seed, C, gamma).fit(Xt, zt)
        model.chosen[t] = {"n_components": int(best), "cv_rmse_ln": scores[best],
                           "cv_grid": {str(k_): v_ for k_, v_ in scores.items()}, "n_train": int(ok.sum())}
        done += 1
        progress(done, steps, f"baseline {t}: fitted with {best} components")
    card = {"kind": "baseline-nmf-svr", "targets": targets, "seed": seed, "cv_folds": cv,
            "svr": {"C": C, "gamma": gamma}, "chosen": model.chosen, "channels": model.channels}
    return model, card
