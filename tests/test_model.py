"""1-D MAE ViT and regressor: research parameter names, masking, pooling, windows, transforms."""
import numpy as np
import pytest
import torch

from xrfcore.model.config import ModelConfig
from xrfcore.model.mae import MaskedAutoencoderViT, masking_ids
from xrfcore.model.pos_embed import sincos_1d
from xrfcore.model.regressor import SpectrumRegressor
from xrfcore.model.transforms import from_dict, make_transform, prepare

torch.set_num_threads(1)
MINI = dict(embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)


def research_encoder_shapes(d=768, depth=12, channels=2048, patch=16, mlp=4):
    """Key names and shapes of the published research MaskedAutoencoderViT / SpectrumRegressor
    (MAE adapted to 1-D; timm Block naming), written out explicitly."""
    n = channels // patch
    s = {"patch_embed.proj.weight": (d, 1, patch), "patch_embed.proj.bias": (d,),
         "cls_token": (1, 1, d), "pos_embed": (1, n + 1, d)}
    for i in range(depth):
        s.update({f"blocks.{i}.norm1.weight": (d,), f"blocks.{i}.norm1.bias": (d,),
                  f"blocks.{i}.attn.qkv.weight": (3 * d, d), f"blocks.{i}.attn.qkv.bias": (3 * d,),
                  f"blocks.{i}.attn.proj.weight": (d, d), f"blocks.{i}.attn.proj.bias": (d,),
                  f"blocks.{i}.norm2.weight": (d,), f"blocks.{i}.norm2.bias": (d,),
                  f"blocks.{i}.mlp.fc1.weight": (mlp * d, d), f"blocks.{i}.mlp.fc1.bias": (mlp * d,),
                  f"blocks.{i}.mlp.fc2.weight": (d, mlp * d), f"blocks.{i}.mlp.fc2.bias": (d,)})
    s.update({"norm.weight": (d,), "norm.bias": (d,)})
    return s


def research_mae_shapes():
    s = research_encoder_shapes()
    de = 512
    s.update({"decoder_embed.weight": (de, 768), "decoder_embed.bias": (de,), "mask_token": (1, 1, de),
              "decoder_pos_embed": (1, 129, de)})
    for i in range(8):
        s.update({f"decoder_blocks.{i}.norm1.weight": (de,), f"decoder_blocks.{i}.norm1.bias": (de,),
                  f"decoder_blocks.{i}.attn.qkv.weight": (3 * de, de), f"decoder_blocks.{i}.attn.qkv.bias": (3 * de,),
                  f"decoder_blocks.{i}.attn.proj.weight": (de, de), f"decoder_blocks.{i}.attn.proj.bias": (de,),
                  f"decoder_blocks.{i}.norm2.weight": (de,), f"decoder_blocks.{i}.norm2.bias": (de,),
                  f"decoder_blocks.{i}.mlp.fc1.weight": (4 * de, de), f"decoder_blocks.{i}.mlp.fc1.bias": (4 * de,),
                  f"decoder_blocks.{i}.mlp.fc2.weight": (de, 4 * de), f"decoder_blocks.{i}.mlp.fc2.bias": (de,)})
    s.update({"decoder_norm.weight": (de,), "decoder_norm.bias": (de,),
              "decoder_pred.weight": (16, de), "decoder_pred.bias": (16,)})
    return s


def test_base_mae_loads_research_state_dict_strictly():
    shapes = research_mae_shapes()
    # spot checks written out literally (mae_vit_base_patch16_dec512d8b over 2048 channels)
    literal = {"patch_embed.proj.weight": (768, 1, 16), "patch_embed.proj.bias": (768,),
               "cls_token": (1, 1, 768), "pos_embed": (1, 129, 768), "decoder_pos_embed": (1, 129, 512),
               "mask_token": (1, 1, 512), "decoder_pred.weight": (16, 512), "decoder_pred.bias": (16,),
               "blocks.0.attn.qkv.weight": (2304, 768), "blocks.11.mlp.fc1.weight": (3072, 768),
               "decoder_embed.weight": (512, 768), "decoder_blocks.7.mlp.fc2.weight": (512, 2048),
               "norm.weight": (768,), "decoder_norm.bias": (512,)}
    assert all(shapes[k] == v for k, v in literal.items())
    assert len(shapes) == (4 + 12 * 12 + 2) + (4 + 8 * 12 + 4)
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(v, generator=g) * 0.02 for k, v in shapes.items()}
    model = MaskedAutoencoderViT(ModelConfig.preset("base"))
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert own == shapes
    model.load_state_dict(sd, strict=True)
    assert torch.equal(model.state_dict()["blocks.11.mlp.fc2.bias"], sd["blocks.11.mlp.fc2.bias"])
    loss, pred, mask = model(torch.randn(2, 2048), 0.5)
    assert pred.shape == (2, 128, 16) and torch.isfinite(loss)


def test_base_regressor_has_research_head_names():
    shapes = research_encoder_shapes()
    shapes.update({"fc.0.weight": (2, 768), "fc.0.bias": (2,)})
    model = SpectrumRegressor(ModelConfig.preset("base", head="sigmoid100"))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    sd = {k: torch.zeros(v) for k, v in shapes.items()}
    model.load_state_dict(sd, strict=True)
    out = model(torch.randn(3, 2048))
    assert out.shape == (3, 2) and torch.allclose(out, torch.full_like(out, 50.0))  # sigmoid(0) * 100


def test_presets_sizes():
    n = sum(p.numel() for p in MaskedAutoencoderViT(ModelConfig.preset("tiny")).parameters())
    assert 2.5e6 < n < 3.6e6
    base = ModelConfig.preset("base")
    assert (base.embed_dim, base.depth, base.num_heads, base.decoder_embed_dim, base.decoder_depth,
            base.decoder_num_heads, base.patch_size, base.num_patches) == (768, 12, 12, 512, 8, 16, 16, 128)
    with pytest.raises(ValueError, match="unknown model size"):
        ModelConfig.preset("huge")
    assert ModelConfig.from_dict(base.to_dict()) == base


def test_positions_fixed_sincos():
    m = MaskedAutoencoderViT(ModelConfig.preset("tiny", **MINI))
    assert not m.pos_embed.requires_grad and not m.decoder_pos_embed.requires_grad
    assert torch.equal(m.pos_embed[0, 0], torch.zeros(32))
    assert torch.allclose(m.pos_embed[0], sincos_1d(32, 128))
    assert torch.allclose(m.pos_embed[0, 2, :16], torch.sin(torch.tensor(1.0) / 10000 ** (torch.arange(16) / 16.0)))


def test_random_masking_seeded_and_explicit():
    m = MaskedAutoencoderViT(ModelConfig.preset("tiny", **MINI)).eval()
    x = torch.randn(4, 2048)
    a = m(x, 0.5, generator=torch.Generator().manual_seed(3))
    b = m(x, 0.5, generator=torch.Generator().manual_seed(3))
    c = m(x, 0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[2], b[2]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[2], c[2])
    assert (a[2].sum(1) == 64).all()
    assert not torch.equal(a[2][0], a[2][1])  # per-sample masks
    explicit = torch.zeros(128, dtype=torch.bool)
    explicit[10:40] = True
    loss, pred, mask = m(x, mask=explicit)
    assert torch.equal(mask[0].bool(), explicit) and torch.equal(mask[3].bool(), explicit)
    # loss = mean squared error on the hidden patches only
    target = x.reshape(4, 128, 16)
    manual = ((pred - target) ** 2).mean(-1)[:, 10:40].mean()
    assert torch.allclose(loss, manual, atol=1e-6)
    with pytest.raises(ValueError, match="same number"):
        bad = torch.zeros(2, 128, dtype=torch.bool)
        bad[0, :3] = True
        m(x[:2], mask=bad)
    ids_keep, mk, restore = masking_ids(1, 8, mask=torch.tensor([0, 1, 0, 1, 0, 0, 1, 1]))
    assert ids_keep.tolist() == [[0, 2, 4, 5]]


def test_loss_on_all_and_per_sample():
    cfg = ModelConfig.preset("tiny", loss_on="all", **MINI)
    m = MaskedAutoencoderViT(cfg).eval()
    x = torch.randn(3, 2048)
    loss, pred, mask = m(x, 0.75, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(loss, ((pred - x.reshape(3, 128, 16)) ** 2).mean(), atol=1e-6)
    assert m.loss_per_sample(x, pred, mask).shape == (3,)


def test_embed_pooling_and_regressor_from_mae():
    mae = MaskedAutoencoderViT(ModelConfig.preset("tiny", **MINI)).eval()
    x = torch.randn(5, 2048)
    e = mae.embed(x)
    assert e.shape == (5, 32)
    assert torch.allclose(e, mae.encode(x)[:, 0])
    reg = SpectrumRegressor.from_mae(mae, pool="mean").eval()
    assert torch.allclose(reg.embed(x), mae.encode(x)[:, 1:].mean(1), atol=1e-6)
    assert reg(x).shape == (5, 2)
    other = MaskedAutoencoderViT(ModelConfig.preset("tiny", **{**MINI, "embed_dim": 64}))
    with pytest.raises(ValueError, match="another shape"):
        SpectrumRegressor(ModelConfig.preset("tiny", **MINI)).load_encoder(other)


def test_energy_window_fewer_tokens():
    cfg = ModelConfig.preset("tiny", window_channels=512, **MINI)
    assert cfg.num_patches == 32 and cfg.window_kev() == pytest.approx((0.0, 10.24))
    m = MaskedAutoencoderViT(cfg)
    assert m.pos_embed.shape == (1, 33, 32)
    with pytest.raises(ValueError, match="512"):
        m(torch.randn(2, 2048))
    counts = np.random.default_rng(0).poisson(20, (3, 2048))
    z = prepare(counts, cfg, make_transform("zscore"))
    assert z.shape == (3, 512)
    assert m(torch.from_numpy(z))[1].shape == (3, 32, 16)
    with pytest.raises(ValueError, match="does not fit"):
        ModelConfig.preset("tiny", window_start=2000, window_channels=512)
    with pytest.raises(ValueError, match="divide"):
        ModelConfig.preset("tiny", window_channels=500)


def test_transforms_roundtrip():
    rng = np.random.default_rng(1)
    X = rng.poisson(30, (6, 256)).astype(np.float32)
    z = make_transform("zscore").apply(X)
    assert np.allclose(z.mean(1), 0, atol=1e-5) and np.allclose(z.std(1), 1, atol=1e-4)
    assert np.allclose(make_transform("zscore").invert(z, ref=X), X, atol=1e-3)
    assert np.allclose(make_transform().apply(np.zeros((1, 256))), 0)  # flat spectrum: no NaN
    with pytest.raises(ValueError, match="ref"):
        make_transform("zscore").invert(z)
    lg = make_transform("log1p")
    assert np.allclose(lg.invert(lg.apply(X)), X, rtol=1e-5)
    gl = make_transform("global").fit(X)
    zg = gl.apply(X)
    assert np.allclose(zg.mean(0), 0, atol=1e-5)
    again = from_dict(gl.to_dict())
    assert np.allclose(again.apply(X), zg) and np.allclose(again.invert(zg), X, atol=1e-3)
    lz = make_transform("log_zscore")
    zl = lz.apply(X)
    assert np.allclose(zl.mean(1), 0, atol=1e-5) and np.allclose(zl.std(1), 1, atol=1e-4)
    assert np.allclose(lz.invert(zl, ref=X), X, rtol=1e-3, atol=1e-2)
    # a minor line 100x smaller than the main one moves the log input far more than the z-score
    peak = np.full((1, 256), 5.0); peak[0, 50] = 20000.0
    minor = peak.copy(); minor[0, 200] = 200.0
    assert np.abs(lz.apply(minor) - lz.apply(peak)).max() > 10 * np.abs(
        make_transform("zscore").apply(minor) - make_transform("zscore").apply(peak)).max()
    assert from_dict(lz.to_dict()).name == "log_zscore"
    with pytest.raises(ValueError, match="before fit"):
        make_transform("global").apply(X)
    with pytest.raises(ValueError, match="unknown transform"):
        make_transform("sqrt")


@pytest.mark.cuda
def test_cuda_forward_bf16():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    m = MaskedAutoencoderViT(ModelConfig.preset("tiny")).cuda()
    x = torch.randn(8, 2048, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, pred, mask = m(x, 0.5, generator=g)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
