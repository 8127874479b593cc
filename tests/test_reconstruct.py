"""Reconstruction in counts: shapes, explicit masks, seeds, the inverse transform."""
import numpy as np
import pytest
import torch

from xrfcore.model.config import ModelConfig
from xrfcore.model.mae import MaskedAutoencoderViT
from xrfcore.model.transforms import make_transform
from xrfcore.reconstruct import reconstruct, reconstruction_errors

torch.set_num_threads(1)
CFG = ModelConfig.preset("tiny", embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32,
                         decoder_depth=1, decoder_num_heads=2, window_channels=512)


def _counts(n=3):
    rng = np.random.default_rng(0)
    return rng.poisson(40 * np.exp(-0.5 * ((np.arange(2048) - 300) / 10) ** 2) + 3, (n, 2048)).astype(float)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MaskedAutoencoderViT(CFG).eval()


def test_single_spectrum(model):
    card = {"transform": make_transform("zscore").to_dict()}
    c = _counts(1)[0]
    r = reconstruct(model, card, c, mask_ratio=0.5, seed=3)
    assert r["measured"].shape == r["reconstruction"].shape == r["mask"].shape == (512,)
    assert np.array_equal(r["measured"], c[:512].astype(np.float32))
    assert r["mask"].sum() == 256 and r["mask"].reshape(32, 16).all(1).sum() == 16
    assert r["energies_kev"][0] == 0 and r["energies_kev"][-1] == pytest.approx(10.22)
    assert np.allclose(r["error"], r["reconstruction"] - r["measured"], atol=1e-3)
    again = reconstruct(model, card, c, mask_ratio=0.5, seed=3)
    other = reconstruct(model, card, c, mask_ratio=0.5, seed=4)
    assert np.array_equal(r["mask"], again["mask"]) and np.array_equal(r["reconstruction"], again["reconstruction"])
    assert not np.array_equal(r["mask"], other["mask"])
    # the inverse transform puts predictions on the spectrum's own count scale
    assert abs(float(r["reconstruction"].mean()) - float(c[:512].mean())) < 5 * c[:512].std()


def test_explicit_channel_mask_batch_and_transforms(model):
    c = _counts(3)
    mask = np.zeros(512, bool)
    mask[100:150] = True  # channels: patches 6..9 touched -> hidden
    for name in ("zscore", "log1p", "global"):
        t = make_transform(name).fit(c[:, :512])
        r = reconstruct(model, {"transform": t.to_dict()}, c, mask=mask)
        assert r["mask"].shape == (3, 512)
        assert np.array_equal(np.flatnonzero(r["mask"][0]), np.arange(96, 160))
        assert r["loss"].shape == (3,) and np.isfinite(r["reconstruction"]).all()
    with pytest.raises(ValueError, match="patches"):
        reconstruct(model, {"transform": {"name": "zscore"}}, c, mask=np.zeros(100, bool))
    e = reconstruction_errors(model, {"transform": {"name": "zscore"}}, c, seed=1, batch_size=2)
    assert e.shape == (3,) and np.array_equal(e, reconstruction_errors(model, {"transform": {"name": "zscore"}},
                                                                      c, seed=1, batch_size=2))


def test_other_grid_resampled(model):
    from xrfcore.energy import Grid

    c = _counts(2)[:, ::2]  # 1024 channels at 40 eV: same energy range
    r = reconstruct(model, {"transform": {"name": "zscore"}}, c, grid=Grid(1024, 0.04, 0.0))
    assert r["measured"].shape == (2, 512)
    with pytest.raises(ValueError, match="grid"):
        reconstruct(model, {"transform": {"name": "zscore"}}, c)
