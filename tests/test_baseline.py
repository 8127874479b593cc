import numpy as np
import pandas as pd
import pytest

from xrfcore import baseline
from xrfcore.jobs import CancelToken, Cancelled


def synthetic(n, seed=0, channels=64):
    """Spectra mixing two smooth end-members; CaCO3 follows the first one's share."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, channels)
    a = np.exp(-((x - 0.3) / 0.05) ** 2) + 0.05
    b = np.exp(-((x - 0.7) / 0.08) ** 2) + 0.05
    share = rng.uniform(0.05, 0.95, n)
    lam = 2000 * (share[:, None] * a + (1 - share[:, None]) * b)
    X = rng.poisson(lam).astype(float)
    y = pd.DataFrame({"CaCO3": 90 * share + 2, "TOC": 0.2 + 2 * (1 - share)})
    return X, y


def test_baseline_fits_and_predicts_well_in_distribution():
    X, y = synthetic(120)
    model, card = baseline.fit_baseline(X, y, components=(2, 4), cv=3)
    Xt, yt = synthetic(60, seed=1)
    p = model.predict(Xt)
    for t in ("CaCO3", "TOC"):
        r2 = 1 - ((p[t] - yt[t]) ** 2).sum() / ((yt[t] - yt[t].mean()) ** 2).sum()
        assert r2 > 0.8, (t, r2)
    assert (p.to_numpy() >= 0).all() and (p.to_numpy() <= 100).all()
    assert card["chosen"]["CaCO3"]["n_components"] in (2, 4)
    assert set(card["chosen"]["CaCO3"]["cv_grid"]) == {"2", "4"}


def test_baseline_skips_missing_targets_and_few_labels():
    X, y = synthetic(12)
    y.loc[:5, "TOC"] = np.nan
    model, _ = baseline.fit_baseline(X, y, components=(2,), cv=3)
    assert model.chosen["TOC"]["n_train"] == 6
    with pytest.raises(ValueError, match="at least 3"):
        baseline.fit_baseline(X[:2], y[:2], components=(2,))


def test_baseline_cancel_and_bad_input():
    X, y = synthetic(20)
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        baseline.fit_baseline(X, y, components=(2,), cv=2, token=tok)
    X[3] = 0
    with pytest.raises(ValueError, match="no counts"):
        baseline.fit_baseline(X, y, components=(2,))


def test_published_settings_fit_and_predict():
    X, y = synthetic(80, channels=256)
    model, card = baseline.fit_published(X, y)
    nmf, svr = model.pipes["CaCO3"][0], model.pipes["CaCO3"][1]
    assert (nmf.n_components, nmf.solver, nmf.max_iter) == (4, "cd", 10000)
    assert (svr.C, svr.gamma) == (100.0, 1000.0)
    assert model.pipes["TOC"][0].n_components == 13 and model.pipes["TOC"][1].C == 10.0
    assert len(model.pipes["CaCO3"]) == 2  # no scaler between NMF and SVR, as published
    assert "paper used 2048" in card["note"]
    Xt, yt = synthetic(40, seed=1, channels=256)
    p = model.predict(Xt)
    r2 = 1 - ((p["CaCO3"] - yt["CaCO3"]) ** 2).sum() / ((yt["CaCO3"] - yt["CaCO3"].mean()) ** 2).sum()
    assert r2 > 0.5, r2
    assert (p.to_numpy() >= 0).all() and (p.to_numpy() <= 100).all()
