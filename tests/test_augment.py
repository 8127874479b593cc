"""Gain/offset/resolution augmentation of pretraining batches (xrfcore.train.augment)."""
import numpy as np
import pytest
import torch

from xrfcore.model.config import ModelConfig
from xrfcore.model.transforms import make_transform
from xrfcore.train.augment import AugmentConfig, Augmenter, apply_transform, generator
from xrfcore.train.pretrain import TrainConfig, pretrain

torch.set_num_threads(1)
CFG = ModelConfig.preset("tiny", embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32,
                         decoder_depth=1, decoder_num_heads=2, window_channels=512)


def peak(centre=300.0, sigma=3.0, height=1000.0, n=2048):
    ch = np.arange(n)
    return height * np.exp(-0.5 * ((ch - centre) / sigma) ** 2)


def params(gain=1.0, offset=0.0, fwhm=0.0, n=1):
    return {"on": torch.ones(n, dtype=torch.bool), "gain": torch.full((n,), gain, dtype=torch.float64),
            "offset": torch.full((n,), offset, dtype=torch.float64),
            "fwhm_ev": torch.full((n,), fwhm, dtype=torch.float64)}


def centroid(y, lo, hi):
    ch = np.arange(lo, hi)
    return float((y[lo:hi] * ch).sum() / y[lo:hi].sum())


@pytest.mark.parametrize("gain,offset", [(1.0, 3.0), (1.0, -3.0), (1.025, 0.0), (0.99, 2.0), (1.025, 3.0)])
def test_peak_moves_where_the_head_would_put_it_and_counts_are_kept(gain, offset):
    aug = Augmenter(AugmentConfig(), CFG)
    x = peak()
    y = aug(torch.tensor(x[None, aug.src]), params=params(gain, offset))[0].numpy()
    expected = (300.0 - offset) / gain   # channel i holds energy g0 * (gain * i + offset)
    assert centroid(y, 270, 330) == pytest.approx(expected, abs=0.02)
    assert y.sum() == pytest.approx(x.sum(), rel=1e-9)
    assert y.shape == (CFG.input_channels,)


def test_broadening_adds_in_quadrature_and_keeps_counts():
    aug = Augmenter(AugmentConfig(), CFG)
    x = peak(sigma=3.0)
    y = aug(torch.tensor(x[None, aug.src]), params=params(fwhm=60.0))[0].numpy()
    ch = np.arange(512)
    mean = centroid(y, 0, 512)
    var = float((y * (ch - mean) ** 2).sum() / y.sum())
    add = 60.0 / 1000 / 2.3548 / 0.02   # sigma in channels
    assert mean == pytest.approx(300.0, abs=1e-6)
    assert var == pytest.approx(3.0 ** 2 + add ** 2 + 1 / 12, rel=0.02)   # + the channel width
    assert y.sum() == pytest.approx(x.sum(), rel=1e-9)


def test_unaugmented_rows_pass_unchanged_and_margin_covers_the_range():
    aug = Augmenter(AugmentConfig(), CFG)
    assert aug.src.start == 0 and aug.src.stop >= 512 * 1.03 + 4
    x = np.random.default_rng(0).poisson(40, (4, 2048)).astype(np.float32)
    p = params(1.02, 2.0, 30.0, n=4)
    p["on"] = torch.tensor([True, False, True, False])
    y = aug(torch.tensor(x[:, aug.src]), params=p).numpy()
    assert np.array_equal(y[[1, 3]], x[[1, 3], :512])
    assert not np.allclose(y[0], x[0, :512])


def test_same_seed_same_batch_other_step_other_batch():
    aug = Augmenter(AugmentConfig(), CFG)
    x = torch.tensor(np.random.default_rng(1).poisson(50, (16, 2048)).astype(np.float32))[:, aug.src]
    a = aug(x, generator(3, 7, 0))
    b = aug(x, generator(3, 7, 0))
    assert torch.equal(a, b)
    assert not torch.equal(a, aug(x, generator(3, 8, 0)))
    assert not torch.equal(a, aug(x, generator(3, 7, 1)))   # another rank
    d = aug.draw(4000, generator(0, 0, 0))
    on = d["on"].numpy()
    assert 0.75 < on.mean() < 0.85
    g = (d["gain"].numpy()[on] - 1) * 100
    assert g.min() < -1.4 and g.max() > 2.9 and np.abs(d["offset"].numpy()[on]).max() > 3.9


@pytest.mark.parametrize("name", ["zscore", "log_zscore", "log1p", "global"])
def test_torch_transform_matches_numpy(name):
    X = np.random.default_rng(2).poisson(30, (8, 512)).astype(np.float32)
    t = make_transform(name)
    if name == "global":
        t.fit(X)
    assert np.allclose(apply_transform(t, torch.tensor(X)).numpy(), t.apply(X), atol=1e-5)


def test_config_in_card_and_off_switch():
    rng = np.random.default_rng(0)
    X = rng.poisson(5 + peak(rng.uniform(100, 400))[None].repeat(24, 0)).astype(np.float32)
    _, card = pretrain(X, CFG, TrainConfig(steps=2, batch_size=8, seed=1))
    aug = card["training"]["config"]["augment"]
    assert aug["gain_pct"] == [-1.5, 3.0] and aug["offset_ch"] == [-4.0, 4.0] and aug["prob"] == 0.8
    _, card = pretrain(X, CFG, TrainConfig(steps=2, batch_size=8, seed=1, augment=False))
    assert card["training"]["config"]["augment"] is None
    assert TrainConfig(augment={"gain_pct": [0, 1]}).augment.gain_pct == (0.0, 1.0)
    with pytest.raises(ValueError):
        AugmentConfig(gain_pct=(2, 1))


def test_intensity_thins_counts_binomially_and_old_cards_keep_it_off():
    aug = Augmenter(AugmentConfig(intensity=(0.4, 0.4), gain_pct=(0, 0), offset_ch=(0, 0), fwhm_ev=(0, 0),
                                  prob=1.0), CFG)
    x = torch.tensor(np.random.default_rng(3).poisson(200, (64, 2048)).astype(np.float64))[:, aug.src]
    y = aug(x, generator(0, 0, 0)).numpy()
    kept = x[:, aug.out_in_src].numpy()
    assert np.array_equal(y, np.round(y)) and (y <= kept).all()          # whole counts, never more
    assert y.sum() / kept.sum() == pytest.approx(0.4, rel=0.01)
    # binomial: variance n p (1 - p) about n p, which a plain scaling (no noise) would not have
    assert np.var(y - 0.4 * kept) == pytest.approx(0.4 * 0.6 * kept.mean(), rel=0.15)
    d = Augmenter(AugmentConfig(), CFG).draw(4000, generator(0, 0, 0))
    k = d["intensity"].numpy()[d["on"].numpy()]
    assert 0.35 <= k.min() < 0.37 and 0.97 < k.max() <= 1.0
    assert AugmentConfig.from_any({"gain_pct": [0, 1]}).intensity == (1.0, 1.0)
    with pytest.raises(ValueError):
        AugmentConfig(intensity=(0.5, 1.5))


def test_thinning_keeps_nan_as_nan_and_returns():
    aug = Augmenter(AugmentConfig(intensity=(0.5, 0.5), prob=1.0), CFG)
    x = torch.tensor(np.random.default_rng(4).poisson(50, (4, 2048)).astype(np.float64))[:, aug.src]
    x[1, 20] = float("nan")
    y = aug(x, generator(0, 0, 0))
    assert torch.isnan(y[1]).any() and torch.isfinite(y[[0, 2, 3]]).all()
