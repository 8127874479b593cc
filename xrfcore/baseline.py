"""The NMF + SVR reference method (Lee et al. 2022, Sci Rep 12:20860), in scikit-learn.

Two variants, both: spectrum / its sum -> NMF -> RBF SVR fitted on ln(target), predictions exp(...)
so never negative, clamped to 100 wt%.

- ``fit_published``: the paper's settings (`PUBLISHED`): the whole raw spectrum (2048 channels on an
  Avaatech head), NMF with 4 (CaCO3) / 13 (TOC) components, coordinate-descent solver, up to 10,000
  iterations; SVR gamma 1000, C 100 (CaCO3) / 10 (TOC); no scaling between them. The baseline of
  every table.
- ``fit_baseline``: a variant tuned here (labelled "tuned" wherever it appears): NMF components
  chosen by cross-validation, a StandardScaler, C 10, gamma "scale", 400 NMF iterations.

Both mirror `train.finetune.finetune`: counts and a target table in, a fitted model
(``.predict(X) -> DataFrame``) and a card out. Any lab target can be fitted: CaCO3 and TOC as
published (ln, clamped to 0-100 wt%); another target (Fe, BSi...) with the CaCO3 settings, on ln(y)
when ``xrfcore.targets.log_rule`` says so (labels all > 0 and right-skewed), else linear, clamped at 0
when its labels are all >= 0.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xrfcore.jobs import CancelToken, no_progress

TARGETS = ("CaCO3", "TOC")
LN_FLOOR = 0.01  # wt%: ln needs positive targets; lab zeros / detection limits sit here
# Lee et al. 2022 (see ../shared/reference/published-results.md): per target
PUBLISHED = {"CaCO3": {"n_components": 4, "C": 100.0, "gamma": 1000.0},
             "TOC": {"n_components": 13, "C": 10.0, "gamma": 1000.0}}
PUBLISHED_NMF = {"solver": "cd", "max_iter": 10000}
PUBLISHED_CHANNELS = 2048  # the whole Avaatech spectrum, not the model's window


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


def _published_pipeline(target: str, seed: int):
    from sklearn.decomposition import NMF
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVR

    p = _settings(target)
    return make_pipeline(NMF(n_components=p["n_components"], random_state=seed, **PUBLISHED_NMF),
                         SVR(kernel="rbf", C=p["C"], gamma=p["gamma"]))


def _space(t: str, v: np.ndarray) -> dict:
    """ln (CaCO3, TOC as published; others when the log rule says so) or linear, and the clamp."""
    from xrfcore import targets as tg

    if t in TARGETS:
        return {"space": "log", "clamp": [0.0, 100.0], "reason": "published: ln(wt%)"}
    log, reason, _ = tg.log_rule(v)
    return {"space": "log" if log else "linear", "clamp": [0.0, None] if np.nanmin(v) >= 0 else [None, None],
            "reason": reason}


def _to(v: np.ndarray, sp: dict) -> np.ndarray:
    return np.log(np.clip(v, LN_FLOOR, None)) if sp["space"] == "log" else v


@dataclass
class BaselineModel:
    targets: list
    pipes: dict = field(default_factory=dict)
    chosen: dict = field(default_factory=dict)   # target -> {"n_components": k, "cv_rmse_ln": ...}
    channels: int = 0
    spaces: dict = field(default_factory=dict)   # target -> {"space", "clamp"}; missing: ln, 0-100

    def predict(self, X) -> pd.DataFrame:
        Xn = sum_normalise(X)
        if Xn.shape[1] != self.channels:
            raise ValueError(f"baseline was fitted on {self.channels} channels, got {Xn.shape[1]}")
        out = {}
        for t in self.targets:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sp = self.spaces.get(t, {"space": "log", "clamp": [0.0, 100.0]})
                z = self.pipes[t].predict(Xn)
                lo = -np.inf if sp["clamp"][0] is None else sp["clamp"][0]
                hi = np.inf if sp["clamp"][1] is None else sp["clamp"][1]
                out[t] = np.clip(np.exp(np.minimum(z, 700)) if sp["space"] == "log" else z, lo, hi)
        return pd.DataFrame(out)


def fit_baseline(X, y: pd.DataFrame, *, targets=TARGETS, components=(2, 4, 8, 13), cv: int = 5,
                 C: float = 10.0, gamma="scale", seed: int = 0, progress=no_progress,
                 token: CancelToken | None = None):
    """Fit NMF + SVR per target; the number of NMF components is chosen by k-fold CV (RMSE of ln y,
    or of y for a target modelled linearly).

    X: (n, C) counts; y: DataFrame with the target columns (NaN = not measured, skipped per target).
    Returns (BaselineModel, card dict).
    """
    from sklearn.model_selection import KFold, cross_val_score

    Xn = sum_normalise(X)
    targets = _present(targets, y)
    model = BaselineModel(targets=targets, channels=Xn.shape[1])
    steps = len(targets) * (len(components) + 1)
    done = 0
    for t in targets:
        v = y[t].to_numpy(float)
        ok = np.isfinite(v)
        if ok.sum() < 3:
            raise ValueError(f"{t}: only {int(ok.sum())} labelled samples; need at least 3")
        model.spaces[t] = _space(t, v[ok])
        Xt, zt = Xn[ok], _to(v[ok], model.spaces[t])
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
        model.chosen[t] = {"n_components": int(best), "cv_rmse_ln": scores[best], **model.spaces[t],
                           "cv_grid": {str(k_): v_ for k_, v_ in scores.items()}, "n_train": int(ok.sum())}
        done += 1
        progress(done, steps, f"baseline {t}: fitted with {best} components")
    card = {"kind": "baseline-nmf-svr", "targets": targets, "seed": seed, "cv_folds": cv,
            "svr": {"C": C, "gamma": gamma}, "chosen": model.chosen, "channels": model.channels}
    return model, card


def fit_published(X, y: pd.DataFrame, *, targets=TARGETS, seed: int = 0, progress=no_progress,
                  token: CancelToken | None = None):
    """NMF + SVR with the published settings (`PUBLISHED`), per target, on ln(target).

    X: (n, C) counts, the whole spectrum (the paper used all 2048 channels); y: DataFrame with the
    target columns (NaN = not measured, skipped per target). Returns (BaselineModel, card dict).
    """
    Xn = sum_normalise(X)
    targets = _present(targets, y)
    model = BaselineModel(targets=targets, channels=Xn.shape[1])
    for i, t in enumerate(targets):
        if token is not None:
            token.raise_if_cancelled()
        v = y[t].to_numpy(float)
        ok = np.isfinite(v)
        if ok.sum() < 3:
            raise ValueError(f"{t}: only {int(ok.sum())} labelled samples; need at least 3")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NMF convergence chatter with few samples
            model.spaces[t] = _space(t, v[ok])
            model.pipes[t] = _published_pipeline(t, seed).fit(Xn[ok], _to(v[ok], model.spaces[t]))
        model.chosen[t] = {**_settings(t), "n_train": int(ok.sum()), **model.spaces[t]}
        progress(i + 1, len(targets), f"baseline (published) {t}: fitted")
    card = {"kind": "baseline-nmf-svr-published", "targets": targets, "seed": seed,
            "settings": {t: {**_settings(t), **PUBLISHED_NMF} for t in targets},
            "chosen": model.chosen, "channels": model.channels,
            "note": "" if model.channels == PUBLISHED_CHANNELS else
            f"fitted on {model.channels} channels; the paper used {PUBLISHED_CHANNELS}"}
    return model, card


def _settings(target: str) -> dict:
    """The published settings of a target; a target the paper did not fit: CaCO3's."""
    return PUBLISHED.get(target, PUBLISHED["CaCO3"])


def _present(targets, y: pd.DataFrame) -> list:
    """The targets ``y`` has (CaCO3 / TOC missing: skipped; another target missing: an error)."""
    missing = [t for t in targets if t not in y.columns and t not in TARGETS]
    if missing:
        raise ValueError(f"target {', '.join(map(repr, missing))} not in the lab samples "
                         f"(columns: {', '.join(map(str, y.columns))})")
    out = [t for t in targets if t in y.columns]
    if not out:
        raise ValueError("no target column (CaCO3 or TOC) to fit")
    return out
