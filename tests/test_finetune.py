import json

import numpy as np
import pandas as pd
import pytest
import torch

from xrfcore.jobs import CancelToken, Cancelled
from xrfcore.train import finetune as ft

CH = 256


def micro_cfg():
    from xrfcore.model.config import ModelConfig
    return ModelConfig.preset("tiny", channels=CH, embed_dim=32, depth=2, num_heads=2,
                              decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)


def synthetic(n, seed=0, cores=6):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, CH)
    a = np.exp(-((x - 0.3) / 0.02) ** 2) + 0.02
    b = np.exp(-((x - 0.7) / 0.03) ** 2) + 0.02
    share = rng.uniform(0.05, 0.95, n)
    X = rng.poisson(3000 * (share[:, None] * a + (1 - share[:, None]) * b)).astype(float)
    y = pd.DataFrame({"CaCO3": 90 * share + 2, "TOC": 0.2 + 2 * (1 - share)})
    groups = np.array([f"C{i % cores}" for i in range(n)])
    return X, y, groups


@pytest.fixture(scope="session")
def base_path(tmp_path_factory):
    from xrfcore.model import checkpoint
    from xrfcore.model.mae import MaskedAutoencoderViT
    from xrfcore.model.transforms import ZScore

    torch.manual_seed(0)
    mae = MaskedAutoencoderViT(micro_cfg())
    # a few hundred steps of masked modelling so reconstruction errors mean something
    X, _, _ = synthetic(512, seed=11)
    Xin = torch.from_numpy(ZScore().apply(X))
    opt = torch.optim.AdamW(mae.parameters(), lr=2e-3)
    for step in range(150):
        idx = torch.randint(0, len(Xin), (64,))
        loss, _, _ = mae(Xin[idx], 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    p = tmp_path_factory.mktemp("base") / "base"
    checkpoint.save(p, mae, {"transform": ZScore().to_dict(), "simulated_data": True})
    return p


def test_conformal_quantile_and_splits():
    r = np.arange(1, 20)  # 19 residuals: k = ceil(20 * 0.9) = 18
    assert ft.conformal_quantile(r, 0.1) == 18
    assert ft.conformal_quantile(r[:5], 0.1) == float("inf")
    tr, va, note = ft.split_indices(100, np.repeat(list("ABCDE"), 20), "cores", 0.2, seed=1)
    assert len(va) == 20 and set(np.repeat(list("ABCDE"), 20)[va]).__len__() == 1 and "cores" in note
    tr, va, note = ft.split_indices(100, None, "random", 0.2)
    assert len(va) == 20 and len(set(tr) | set(va)) == 100
    folds = ft.kfold_indices(30, np.repeat(list("ABC"), 10), "cores", 5)
    assert len(folds) == 3 and all(len(te) == 10 for _, te in folds)


def test_conformal_coverage_on_exchangeable_data():
    rng = np.random.default_rng(0)
    cover = []
    for _ in range(200):
        cal, test = rng.normal(size=200), rng.normal(size=1000)
        q = ft.conformal_quantile(cal, 0.1)
        cover.append(np.mean(np.abs(test) <= q))
    assert 0.88 <= np.mean(cover) <= 0.92


def test_calibration_prefers_valid_then_narrow():
    rng = np.random.default_rng(3)
    fold = np.repeat(np.arange(5), 60)
    res = rng.normal(size=300)
    # a heavy-tailed leverage scale unrelated to the errors: normalised scores stay valid but get wide
    scale = np.exp(rng.normal(0, 1.5, size=300))
    c = ft.calibrate(res, scale, fold, 0.1)
    assert c["cv_coverage_plain"] >= 0.88 and c["cv_mean_halfwidth_normalised"] > c["cv_mean_halfwidth_plain"]
    assert c["method"] == "plain"
    # errors that do grow with the scale: normalised is valid and narrower
    c = ft.calibrate(rng.normal(size=300) * scale, scale, fold, 0.1)
    assert c["method"] == "normalised" and c["cv_mean_halfwidth_normalised"] < c["cv_mean_halfwidth_plain"]


def test_head_mode_learns_and_saves(tmp_path, base_path):
    X, y, g = synthetic(120)
    y.loc[:9, "TOC"] = np.nan
    calls = []
    reg, card = ft.finetune(base_path, X, y, groups=g, mode="head", out=tmp_path / "m",
                            labels_info={"sha256": "x"}, progress=lambda d, t, m="": calls.append(d))
    assert card["mode"] == "head" and card["targets"] == ["CaCO3", "TOC"]
    assert card["metrics"]["CaCO3"]["r2"] > 0.8
    assert card["labels"]["n_per_target"]["TOC"] == 110
    assert card["conformal"]["CaCO3"]["q"] > 0 and card["ood"]["p99"] > 0
    assert card["simulated_data"] is True and card["base_model"]["weights_sha256"]
    v = card["validation"]  # per-sample out-of-fold predictions for the predicted-vs-measured plot
    assert len(v["measured"]["CaCO3"]) == len(v["predicted"]["TOC"]) == len(v["core"]) == len(v["depth_mm"]) == 120
    assert v["measured"]["TOC"][0] is None and v["core"][:2] == ["C0", "C1"]
    oof = np.array(v["predicted"]["CaCO3"], float)
    assert ft.regression_metrics(v["measured"]["CaCO3"], oof)["rmse"] == pytest.approx(card["metrics"]["CaCO3"]["rmse"])
    saved = json.loads((tmp_path / "m" / "model.json").read_text())
    assert saved["id"].startswith("regressor-") and (tmp_path / "m" / "base_mae.safetensors").exists()
    c = card["conformal"]["CaCO3"]
    assert c["method"] in ("plain", "normalised") and "whole cores" in c["calibration"]
    assert 0 < c["cv_coverage_plain"] <= 1 and c["q_normalised"] > 0
    assert card["calibration_file"]["sha256"] and (tmp_path / "m" / "calibration.safetensors").exists()
    pr = ft.Predictor(tmp_path / "m", device="cpu")
    assert pr.calibration is not None
    Xt, yt, _ = synthetic(60, seed=5)
    df = pr.predict_counts(Xt)
    r2 = 1 - ((df.CaCO3 - yt.CaCO3) ** 2).sum() / ((yt.CaCO3 - yt.CaCO3.mean()) ** 2).sum()
    assert r2 > 0.8
    assert ((df.CaCO3_lo <= df.CaCO3) & (df.CaCO3 <= df.CaCO3_hi)).all()
    assert df[["CaCO3", "TOC"]].min().min() >= 0 and df[["CaCO3", "TOC"]].max().max() <= 100
    # TOC is modelled in log space: the card says so, intervals are a factor either side
    assert card["target_stats"]["TOC"]["space"] == "log" and card["target_stats"]["CaCO3"]["space"] == "linear"
    assert card["conformal"]["TOC"]["space"] == "log"
    ok = df.TOC > 0.05
    ratio_hi, ratio_lo = df.TOC_hi[ok] / df.TOC[ok], df.TOC[ok] / df.TOC_lo[ok]
    assert np.allclose(ratio_hi, ratio_lo, rtol=1e-4) and (ratio_hi > 1).all()
    # an odd spectrum (flat noise) has a high out-of-distribution score
    odd = np.random.default_rng(1).poisson(50, size=(3, CH)).astype(float)
    d2 = pr.predict_counts(np.vstack([Xt[:20], odd]))
    assert d2.ood_score[20:].min() > d2.ood_score[:20].median()


@pytest.mark.parametrize("mode", ["full", "scratch"])
def test_full_and_scratch_modes_run(base_path, mode):
    X, y, g = synthetic(60)
    reg, card = ft.finetune(base_path, X, y[["CaCO3"]], groups=g, mode=mode, epochs=3, batch_size=16,
                            targets=("CaCO3",))
    assert card["targets"] == ["CaCO3"] and len([h for h in card["history"] if "train_loss" in h]) <= 3
    assert card["metrics"]["CaCO3"]["n"] > 0 and "validation cores" in card["validation"]["scheme"]


def test_scratch_with_its_own_transform_keeps_the_ood_score_on_the_base_input(base_path):
    X, y, g = synthetic(60)
    reg, card = ft.finetune(base_path, X, y, groups=g, mode="scratch", epochs=2, batch_size=16,
                            transform="log_zscore", pool="cls")
    assert card["transform"]["name"] == "log_zscore" and reg.cfg.pool == "cls"
    assert card["ood"]["transform"]["name"] == "zscore"  # the base autoencoder's own input
    from xrfcore.model import checkpoint, transforms as tfm

    mae, _ = checkpoint.load(base_path)
    pr = ft.Predictor.from_model(reg, card, mae=mae, device="cpu")
    want = ft.reconstruction_errors(mae, tfm.prepare(X[:10], mae.cfg, tfm.make_transform("zscore")),
                                    seeds=card["ood"]["seeds"], mask_ratio=card["ood"]["mask_ratio"])
    # this base has no OOD reference of its own: the reconstruction part is the labelled cores' p99
    assert np.allclose(pr.predict_counts(X[:10]).ood_recon, want / card["ood"]["p99"], rtol=1e-4)
    with pytest.raises(ValueError, match="only be chosen with mode='scratch'"):
        ft.finetune(base_path, X, y, groups=g, mode="head", transform="zscore")


def test_cancel_and_bad_input(base_path):
    X, y, g = synthetic(30)
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        ft.finetune(base_path, X, y, groups=g, mode="full", epochs=2, token=tok)
    with pytest.raises(ValueError, match="do not match"):
        ft.finetune(base_path, X[:5], y, mode="head")
    with pytest.raises(ValueError, match="mode"):
        ft.finetune(base_path, X, y, mode="nope")
    with pytest.raises(ValueError, match="needs a pretrained"):
        ft.finetune(None, X, y, mode="head")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["head", "full"])
def test_cuda_finetune_and_predict(tmp_path, base_path, mode):
    """bf16 autocast paths on the GPU give the same kind of result as on the CPU."""
    X, y, g = synthetic(80)
    reg, card = ft.finetune(base_path, X, y, groups=g, mode=mode, epochs=3, device="cuda",
                            out=tmp_path / "m")
    assert card["device"].startswith("cuda") and card["metrics"]["CaCO3"]["n"] > 0
    df = ft.Predictor(tmp_path / "m", device="cuda").predict_counts(X[:10])
    dc = ft.Predictor(tmp_path / "m", device="cpu").predict_counts(X[:10])
    assert np.abs(df.CaCO3 - dc.CaCO3).max() < 2.0  # bf16 vs fp32, wt%


def test_leverage_scale_grows_off_the_labelled_embeddings():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(5, 20))
    E = rng.normal(size=(200, 5)) @ basis + 0.01 * rng.normal(size=(200, 20))
    Z = (E @ rng.normal(size=20))[:, None]
    st = ft.leverage_state(E, Z, [1.0])
    near = rng.normal(size=(50, 5)) @ basis
    far = near + rng.normal(size=(50, 20))  # components the labelled samples never spanned
    s_near, s_far = ft.leverage_scale(st, near, 0), ft.leverage_scale(st, far, 0)
    assert np.all(s_near >= 1) and np.median(s_far) > 2 * np.median(s_near)


def test_calibrate_prefers_normalised_scores_when_the_scale_explains_the_error():
    rng = np.random.default_rng(1)
    n = 2000
    fold = np.repeat(np.arange(10), n // 10)  # ten "cores"
    scale = rng.uniform(1, 5, n)
    cal = ft.calibrate(scale * rng.normal(size=n), scale, fold, 0.1)
    assert cal["method"] == "normalised"
    assert 0.87 <= cal["cv_coverage_normalised"] <= 0.93 and 0.87 <= cal["cv_coverage_plain"] <= 0.93
    assert cal["cv_mean_halfwidth_normalised"] < cal["cv_mean_halfwidth_plain"]
    # a scale unrelated to the error: both calibrations still cover, plain is not worse
    cal = ft.calibrate(rng.normal(size=n), scale, fold, 0.1)
    assert 0.87 <= cal["cv_coverage_plain"] <= 0.93 and cal["method"] == "plain"
    # too few labels to cross-validate the calibration: plain (constant) widths
    assert ft.calibrate(rng.normal(size=6), np.ones(6), np.arange(6), 0.1)["method"] == "plain"


def test_target_space_round_trip():
    log, lin = {"space": "log", "floor": 0.01}, {"space": "linear"}
    y = np.array([0.0, 0.005, 0.3, 2.0, 45.0])
    assert np.allclose(ft.from_space(ft.to_space(y, log), log), np.maximum(y, 0.01))
    assert np.allclose(ft.from_space(ft.to_space(y, lin), lin), y)
    assert ft.from_space(np.array([10.0]), log)[0] == 100.0  # exp overflow clamped, not inf
    assert ft.from_space(np.array([-3.0, 120.0]), lin).tolist() == [0.0, 100.0]
    with pytest.raises(ValueError, match="log_targets"):
        ft.FinetuneConfig(log_targets=("Fe",))


def test_a_target_without_skill_is_warned_about_in_card_and_export(tmp_path, base_path):
    """A target the spectra say nothing about (labels shuffled): the card, the predictions' provenance
    and the CSV header all carry the warning; a target learned well carries none."""
    from xrfcore import export, predict
    X, y, g = synthetic(120)
    y["TOC"] = np.random.default_rng(3).permutation(y["TOC"].to_numpy())
    _, card = ft.finetune(base_path, X, y, groups=g, mode="head", ood=False)
    warn = card["skill_warnings"]
    assert len(warn) == 1 and warn[0].startswith("TOC: validation R2 -") and "no skill" in warn[0]
    prov = predict.provenance(card)
    assert prov["skill_warnings"] == warn
    df = pd.DataFrame({"core": ["C0"], "depth_mm": [5.0], "CaCO3": [40.0], "TOC": [1.0]})
    export.write_predictions_csv(tmp_path / "p.csv", df, prov)
    head = [ln for ln in (tmp_path / "p.csv").read_text().splitlines() if ln.startswith("# WARNING")]
    assert head == ["# WARNING " + warn[0]]
    from xrfcore.targets import skill_warnings
    assert skill_warnings({"CaCO3": {"r2": 0.95, "n": 9}, "TOC": {"r2": 0.3, "n": 9}}) == [
        "TOC: validation R2 0.30 (n=9): weak; use with care"]
