"""Installed-model registry, shipped data locations, research import, and the package-data mapping."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from xrfcore import _paths, models_registry as reg
from xrfcore.model import checkpoint as ck
from xrfcore.model.config import ModelConfig
from xrfcore.model.mae import MaskedAutoencoderViT

REPO = Path(__file__).resolve().parents[1]


def small_cfg(**kw):
    fields = dict(embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=16, decoder_depth=1,
                  decoder_num_heads=2, window_channels=256)
    return ModelConfig.preset("tiny", **{**fields, **kw})


def save_mae(stem: Path, seed: int = 0, **card) -> Path:
    torch.manual_seed(seed)
    return ck.save(stem, MaskedAutoencoderViT(small_cfg()), {"transform": {"name": "zscore"}, **card})


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty user folder and no shipped models (XRFCORE_MODELS points at an empty folder)."""
    monkeypatch.setenv("XRFCORE_HOME", str(tmp_path / "home"))
    empty = tmp_path / "shipped"
    empty.mkdir()
    monkeypatch.setenv("XRFCORE_MODELS", str(empty))
    return tmp_path


# ---------------------------------------------------------------------------- locations
def test_source_checkout_finds_top_level_folders(monkeypatch):
    monkeypatch.delenv("XRFCORE_RESOURCES", raising=False)
    monkeypatch.delenv("XRFCORE_MODELS", raising=False)
    assert _paths.resources_dir() == REPO / "resources"
    assert _paths.sample_core_dir() == REPO / "resources" / "sample_core"
    assert _paths.shipped_models_dir() == REPO / "models"


def test_environment_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("XRFCORE_RESOURCES", str(tmp_path))
    assert _paths.resources_dir() == tmp_path
    assert _paths.sample_core_dir() is None  # no sample_core/ in it
    monkeypatch.setenv("XRFCORE_MODELS", str(tmp_path / "missing"))
    assert _paths.shipped_models_dir() is None


def test_user_dir_follows_xrfcore_home(home):
    assert reg.user_models_dir() == home / "home" / "data" / "models"
    assert not reg.user_models_dir().exists()
    assert reg.user_models_dir(create=True).is_dir()


def test_pyproject_lists_every_package_and_maps_the_data_folders():
    import tomllib

    st = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(st["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts)
               for top in ("xrfcore", "app") for p in (REPO / top).rglob("__init__.py")}
    assert on_disk - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert st["package-dir"] == {"xrfcore.resources": "resources", "xrfcore.models": "models"}
    assert "*.safetensors" in st["package-data"]["xrfcore.models"]


# ---------------------------------------------------------------------------- listing
def test_list_models_sources_kinds_and_copies(home, tmp_path):
    user = reg.user_models_dir(create=True)
    save_mae(user / "mine", name="mine")
    ft = user / "finetuned"
    save_mae(ft / "base_mae")              # copy kept inside a fine-tuned folder: not listed
    (ft / "model.json").write_text("{not json")
    (ft / "model.safetensors").write_bytes(b"x")
    (user / "orphan.json").write_text("{}")  # no weights beside it: not a model
    extra = tmp_path / "extra"
    save_mae(extra / "other", seed=1)

    found = reg.list_models(extra=[extra])
    by_name = {e["name"]: e for e in found}
    assert set(by_name) == {"mine", "finetuned", "other"}
    assert by_name["mine"]["source"] == "user" and by_name["other"]["source"] == "extra"
    assert by_name["mine"]["kind"] == "mae" and by_name["mine"]["path"].endswith("mine.safetensors")
    assert "error" in by_name["finetuned"] and "not valid JSON" in by_name["finetuned"]["error"]
    assert [e["name"] for e in reg.list_models(extra=[extra], kind="mae")] == ["mine", "other"]
    assert reg.list_models(kind="regressor") == []


def test_default_and_resolve(home):
    assert reg.default_model() is None
    with pytest.raises(FileNotFoundError, match="no pretrained model is installed"):
        reg.resolve(None)
    user = reg.user_models_dir(create=True)
    card_path = save_mae(user / "mine")
    card = json.loads(card_path.read_text())
    weights = user / "mine.safetensors"
    assert reg.default_model() == weights
    assert reg.resolve(None) == reg.resolve("default") == weights
    assert reg.resolve("mine") == reg.resolve(card["id"]) == weights
    assert reg.resolve("some/folder") == Path("some/folder")  # paths pass through to the loader
    with pytest.raises(FileNotFoundError, match=r"no model named 'nope' \(installed: mine\)"):
        reg.resolve("nope")


def test_shipped_default_wins_over_user_models(home, monkeypatch):
    shipped = home / "shipped"
    save_mae(shipped / reg.DEFAULT_MODEL)
    save_mae(reg.user_models_dir(create=True) / "mine", seed=1)
    (shipped / f"{reg.DEFAULT_MODEL}.md").write_text("# card\nSIMULATED\n")
    d = reg.default_model()
    assert d == shipped / f"{reg.DEFAULT_MODEL}.safetensors"
    assert reg.card_text(d).startswith("# card")
    assert [e["source"] for e in reg.list_models()] == ["shipped", "user"]
    assert reg.list_models()[0]["card_md"].endswith(".md")


# ---------------------------------------------------------------------------- research import
def test_import_research_state_dict_round_trip(home, tmp_path):
    torch.manual_seed(3)
    mae = MaskedAutoencoderViT(small_cfg(window_channels=None, channels=256))
    sd = {"module." + k: v for k, v in mae.state_dict().items()}
    src = tmp_path / "research.pth"
    torch.save({"model": sd, "epoch": 7}, src)

    # head counts are not in the tensor shapes: a non-preset width names them
    card_path = reg.import_research(src, name="published-mae", num_heads=2, decoder_num_heads=2)
    assert card_path == reg.user_models_dir() / "published-mae.json"
    model, card = ck.load(card_path)
    assert card["kind"] == "mae" and card["name"] == "published-mae"
    assert card["simulated_data"] is False
    assert card["source"]["sha256"] == ck.sha256_file(src) and card["source"]["imported_from"] == "research.pth"
    for k, v in mae.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert reg.resolve("published-mae") == card_path.with_suffix(".safetensors")

    with pytest.raises(FileExistsError):
        reg.import_research(src, name="published-mae")
    reg.import_research(src, name="published-mae", overwrite=True, num_heads=2, decoder_num_heads=2)
    with pytest.raises(ValueError, match="model name"):
        reg.import_research(src, name="../escape")


class NotATensor:  # pickled below: weights_only loading must refuse it
    pass


def test_import_refuses_arbitrary_pickles(home, tmp_path):
    src = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "obj": NotATensor()}, src)
    with pytest.raises(ValueError, match="weights_only"):
        reg.import_research(src)
    assert not reg.user_models_dir().exists() or list(reg.user_models_dir().iterdir()) == []
    with pytest.raises(FileNotFoundError):
        reg.import_research(tmp_path / "missing.pth")


def test_registry_imports_no_torch():
    import subprocess

    code = ("import sys, xrfcore.models_registry as r; r.list_models(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------- the shipped model
SHIPPED = REPO / "models" / f"{reg.DEFAULT_MODEL}.safetensors"


@pytest.mark.skipif(not SHIPPED.exists(), reason="the default model is not in models/ yet")
def test_shipped_default_model_loads_and_is_honest(monkeypatch):
    monkeypatch.delenv("XRFCORE_MODELS", raising=False)
    assert reg.default_model() == SHIPPED
    assert SHIPPED.stat().st_size < 30 * 2**20
    model, card = ck.load(SHIPPED)  # sha256 of the weights checked against the card
    assert card["kind"] == "mae" and card["simulated_data"] is True
    assert card["data"]["n_train"] >= 50_000 and card["data"]["train_sha256"]
    assert card["metrics"]["val_loss"] is not None
    text = reg.card_text(SHIPPED)
    assert text and "simulated" in text.lower() and "never seen a real spectrum" in text


# ---------------------------------------------------------------------------- `xrfcore models`
def models_cli(argv):
    import argparse

    from xrfcore import cli_models

    ap = argparse.ArgumentParser()
    cli_models.add_arguments(ap)
    args = ap.parse_args(argv)
    return cli_models.cmd_models(args)


def test_models_cli_lists_shows_cards_and_imports(home, tmp_path, capsys):
    assert models_cli([]) == 0
    assert "no models found" in capsys.readouterr().out
    torch.manual_seed(0)
    src = tmp_path / "research.ckpt"
    torch.save({"state_dict": MaskedAutoencoderViT(ModelConfig.preset("tiny", window_channels=256)).state_dict()}, src)
    assert models_cli(["--import", str(src), "--name", "paper"]) == 0
    assert "imported" in capsys.readouterr().out
    save_mae(home / "shipped" / reg.DEFAULT_MODEL, simulated_data=True)
    (home / "shipped" / f"{reg.DEFAULT_MODEL}.md").write_text("# The card\nnever seen a real spectrum\n")
    assert models_cli([]) == 0
    out = capsys.readouterr().out
    assert f"{reg.DEFAULT_MODEL}" in out and "(default)" in out and "[shipped]" in out
    assert "paper" in out and "real data" in out and "SIMULATED data" in out
    assert models_cli(["--card", "default"]) == 0
    assert capsys.readouterr().out.startswith("# The card")
    assert models_cli(["--card", "paper"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "paper"  # no markdown card: the JSON one
    from xrfcore.cli import UserError
    with pytest.raises(UserError, match="--force"):
        models_cli(["--import", str(src), "--name", "paper"])
    with pytest.raises(UserError, match="no model named"):
        models_cli(["--card", "nope"])
    assert models_cli(["--json", "--kind", "mae"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
