"""Interval calibration that follows where the labels come from (within-core / by-core), narrow as
well as valid, and reproducible fine-tuning (issue 12, items 5 and 6)."""
import numpy as np
import pandas as pd
import pytest

from tests.test_finetune import CH, base_path, synthetic  # noqa: F401  (fixture)
from tests.test_predict import lab_csv, make_project
from xrfcore import export, predict
from xrfcore.train import finetune as ft


def test_small_samples_use_a_student_t_width_not_the_largest_residual():
    rng = np.random.default_rng(0)
    r = rng.normal(size=10)
    r[0] = 12.0  # one outlier among 10: the conformal order statistic would be exactly it
    q, est = ft.interval_quantile(r, 0.1)
    assert est == "student-t" and q < 12.0
    rms = np.sqrt(np.mean(r ** 2))
    assert q == pytest.approx(1.833 * rms * np.sqrt(1.1), rel=1e-3)
    assert ft.interval_quantile(r[:2], 0.1) == (float("inf"), "none")
    big = rng.normal(size=500)
    assert ft.interval_quantile(big, 0.1) == (ft.conformal_quantile(big, 0.1), "conformal")
    # normal errors, 10 calibration residuals: coverage close to 90 %, width close to 1.645 sigma
    cover, width = [], []
    for _ in range(400):
        q, _ = ft.interval_quantile(rng.normal(size=10), 0.1)
        cover.append(np.mean(np.abs(rng.normal(size=200)) <= q))
        width.append(q)
    assert 0.87 <= np.mean(cover) <= 0.93 and np.mean(width) < 1.5 * 1.645


def _cores_with_offsets(n=240, cores=8, seed=0, bias_sd=6.0):
    """Synthetic spectra whose CaCO3 carries a per-core offset the spectra do not show: whole new
    cores are harder than new samples of known cores (the case that made by-core widths wide)."""
    X, y, g = synthetic(n, seed=seed, cores=cores)
    bias = np.random.default_rng(seed + 1).normal(0, bias_sd, cores)
    y = y.copy()
    y["CaCO3"] = np.clip(y["CaCO3"] + bias[np.array([int(c[1:]) for c in g])], 0, 100)
    return X, y, g


def test_head_mode_stores_both_schemes_with_widths_bounded_by_the_out_of_fold_rmse(base_path):  # noqa: F811
    X, y, g = _cores_with_offsets()
    reg, card = ft.finetune(base_path, X, y, groups=g, mode="head", device="cpu", ood=False)
    assert card["interval_scheme"]["labelled_cores"] == sorted(set(g))
    for t in ("CaCO3", "TOC"):
        sch = card["conformal"][t]["schemes"]
        assert set(sch) == {"within-core", "by-core"}
        for s in sch.values():
            m = s["method"]
            assert s[f"estimator_{m}"] == "conformal" and s[f"cv_coverage_{m}"] >= 0.8
    ca = card["conformal"]["CaCO3"]["schemes"]
    pr = ft.Predictor.from_model(reg, card, device="cpu")
    Xt, yt, gt = _cores_with_offsets(120, seed=0)  # new samples of the same cores (same offsets)
    for scheme in ("within-core", "by-core"):
        p = pr.predict_counts(Xt, scheme=scheme)
        assert p.attrs["interval_scheme"] == scheme
        hw = ((p.CaCO3_hi - p.CaCO3_lo) / 2).to_numpy()
        rmse = ca[scheme]["rmse_oof"]
        assert np.mean(hw) <= 1.5 * 1.645 * rmse, (scheme, np.mean(hw), rmse)
    w = pr.predict_counts(Xt, scheme="within-core")
    cov = predict.interval_coverage(yt.CaCO3, w.CaCO3_lo, w.CaCO3_hi)
    assert cov >= 0.8  # new samples of labelled cores: the within-core intervals still cover


def test_labels_from_the_predicted_core_use_within_core_calibration_and_say_so(tmp_path, base_path):  # noqa: F811
    proj = tmp_path / "p.h5"
    truth = make_project(proj, cores=("K1", "K2", "K3", "K4"))
    lab = lab_csv(tmp_path / "lab.csv", {k: v for k, v in truth.items() if k != "K4"})
    _, card, _ = ft.finetune_project(proj, lab, base_path, tmp_path / "model", mode="head")
    assert card["interval_scheme"]["labelled_cores"] == ["K1", "K2", "K3"]
    heads = {}
    for core in ("K2", "K4"):
        df = predict.predict_core(proj, core, tmp_path / "model")
        predict.export_core(proj, core, card["id"], tmp_path / f"{core}.csv")
        heads[core] = export.read_provenance(tmp_path / f"{core}.csv")
        assert df.attrs["provenance"]["interval_scheme"] == heads[core]["interval_scheme"]
    assert heads["K2"]["interval_scheme"] == "within-core" and "lab samples were used" in heads["K2"]["interval_scheme_reason"]
    assert heads["K4"]["interval_scheme"] == "by-core" and "no lab samples" in heads["K4"]["interval_scheme_reason"]
    assert '"method"' in heads["K2"]["interval_calibration"]
    from app.main_window import interval_words
    assert "within-core" in interval_words({"interval_scheme": "within-core", "interval": "90 % conformal"})


@pytest.mark.parametrize("mode", ["full", "scratch"])
def test_identical_fine_tunes_give_identical_predictions(base_path, mode):  # noqa: F811
    X, y, g = synthetic(64, seed=3)
    outs = []
    for _ in range(2):
        reg, card = ft.finetune(base_path, X, y, groups=g, mode=mode, epochs=4, batch_size=16, seed=7,
                                device="cpu", ood=False)
        p = ft.Predictor.from_model(reg, card, device="cpu").predict_counts(X[:16], scheme="by-core")
        outs.append((p, card))
    (p1, c1), (p2, c2) = outs
    pd.testing.assert_frame_equal(p1[["CaCO3", "CaCO3_lo", "TOC", "TOC_hi"]], p2[["CaCO3", "CaCO3_lo", "TOC", "TOC_hi"]])
    assert [h.get("val_loss") for h in c1["history"]] == [h.get("val_loss") for h in c2["history"]]
    # the split feeds both calibrations: whole held-out cores and random samples of the others
    assert "validation cores" in c1["validation"]["scheme"] and "random samples" in c1["validation"]["scheme"]
    assert c1["conformal"]["CaCO3"]["schemes"]["within-core"]["n"] > 0
