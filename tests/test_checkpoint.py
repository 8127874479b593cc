"""Model files: safetensors + JSON card round trip, hash check, research state dicts, no unpickling."""
import json
import pickle

import pytest
import torch

from xrfcore.model import checkpoint as ck
from xrfcore.model.config import ModelConfig
from xrfcore.model.mae import MaskedAutoencoderViT
from xrfcore.model.regressor import SpectrumRegressor
from xrfcore.model.transforms import make_transform

torch.set_num_threads(1)
MINI = dict(embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)


def _card():
    X = torch.rand(4, 2048).numpy() * 100
    return {"transform": make_transform("global").fit(X).to_dict(), "simulated_data": True,
            "seeds": {"seed": 7}, "data": {"train_sha256": "ab" * 32}, "metrics": {"val_loss": 0.5}}


def test_save_load_roundtrip(tmp_path):
    model = MaskedAutoencoderViT(ModelConfig.preset("tiny", window_channels=1024, **MINI)).eval()
    card_path = ck.save(tmp_path / "mine", model, _card())
    assert card_path == tmp_path / "mine.json" and (tmp_path / "mine.safetensors").exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    card = json.loads(card_path.read_text())
    for key in ("id", "kind", "config", "transform", "weights_sha256", "xrfcore_version", "created",
                "command_line", "simulated_data", "seeds", "metrics", "data"):
        assert key in card
    assert card["kind"] == "mae" and card["config"]["window_channels"] == 1024
    assert card["simulated_data"] is True and len(card["transform"]["mean"]) == 2048
    for where in (tmp_path / "mine", tmp_path / "mine.safetensors", card_path):
        loaded, card2 = ck.load(where)
        assert card2 == card
    x = torch.randn(2, 1024)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(model(x, generator=g())[0], loaded(x, generator=g())[0])
    reg = SpectrumRegressor.from_mae(model)
    ck.save(tmp_path / "reg.safetensors", reg, _card())
    reg2, c = ck.load(tmp_path / "reg")
    assert isinstance(reg2, SpectrumRegressor) and c["kind"] == "regressor"
    assert torch.equal(reg.eval()(x), reg2(x))


def test_folder_path_and_card_needed(tmp_path):
    model = MaskedAutoencoderViT(ModelConfig.preset("tiny", **MINI))
    with pytest.raises(ValueError, match="transform"):
        ck.save(tmp_path / "m", model, {})
    ck.save(tmp_path, model, _card())
    assert (tmp_path / "model.safetensors").exists()
    loaded, card = ck.load(tmp_path)
    assert card["id"].startswith("mae-tiny-")


def test_tampered_weights_refused(tmp_path):
    model = MaskedAutoencoderViT(ModelConfig.preset("tiny", **MINI))
    ck.save(tmp_path / "m", model, _card())
    w = tmp_path / "m.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="do not match their card"):
        ck.load(tmp_path / "m")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ck.load(tmp_path / "m")


def test_research_files_load_weights_only(tmp_path):
    cfg = ModelConfig.preset("tiny", **MINI)
    src = MaskedAutoencoderViT(cfg)
    sd = src.state_dict()
    torch.save({"model": sd, "epoch": 3}, tmp_path / "mae.pth")
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "mae.ckpt")
    for name in ("mae.pth", "mae.ckpt"):
        got = ck.load_research_state_dict(tmp_path / name)
        assert set(got) == set(sd)
        model, card = ck.load_research_model(tmp_path / name)
        assert isinstance(model, MaskedAutoencoderViT) and card["kind"] == "mae"
        assert card["config"]["depth"] == 2 and card["config"]["embed_dim"] == 32
        assert torch.equal(model.state_dict()["blocks.1.attn.qkv.weight"], sd["blocks.1.attn.qkv.weight"])
    # a research regressor (fc = Sequential(Linear, Sigmoid)) and an MAE file used as a regressor
    reg = SpectrumRegressor(cfg.replace(head="sigmoid100"))
    torch.save(reg.state_dict(), tmp_path / "reg.pth")
    model, card = ck.load_research_model(tmp_path / "reg.pth", num_heads=2)  # shapes cannot tell heads
    assert isinstance(model, SpectrumRegressor) and card["config"]["head"] == "sigmoid100"
    x = torch.randn(2, 2048)
    assert torch.equal(model(x), reg.eval()(x))
    enc, _ = ck.load_research_model(tmp_path / "mae.pth", kind="regressor")
    assert torch.equal(enc.state_dict()["norm.weight"], sd["norm.weight"])


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_arbitrary_pickle_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(ValueError, match="weights_only"):
        ck.load_research_state_dict(path)
    (tmp_path / "junk.ckpt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a plain tensor state dict"):
        ck.load_research_state_dict(tmp_path / "junk.ckpt")
