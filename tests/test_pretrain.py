"""Pretraining loop: learns, resumes exactly, validates on held-out data, cancels cleanly, NaN guard."""
import json

import numpy as np
import pytest
import torch

from xrfcore.jobs import CancelToken, Cancelled
from xrfcore.model import checkpoint as ck
from xrfcore.model.config import ModelConfig
from xrfcore.train.distributed import shard_indices
from xrfcore.train.pretrain import TrainConfig, pretrain
from xrfcore.train.schedule import WarmupCosine

torch.set_num_threads(1)
CFG = ModelConfig.preset("tiny", embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32,
                         decoder_depth=1, decoder_num_heads=2, window_channels=512)


def spectra(n=96, seed=0):
    """Peaks at random positions over a smooth background (counts)."""
    rng = np.random.default_rng(seed)
    ch = np.arange(2048)[None]
    centre = rng.uniform(100, 450, (n, 1))
    lam = 5 + 200 * np.exp(-0.5 * ((ch - centre) / 8.0) ** 2) + 50 * np.exp(-ch / 300.0)
    return rng.poisson(lam).astype(np.float32)


def test_schedule_warmup_then_cosine():
    s = WarmupCosine(1e-3, total_steps=100, warmup_steps=10, min_lr=1e-5)
    assert s(0) == pytest.approx(1e-4) and s(9) == pytest.approx(1e-3)
    assert s(10) == pytest.approx(1e-3) and s(99) < 2e-5 and s(55) < s(20)


def test_shards_cover_and_disjoint():
    a, b = shard_indices(11, 0, 2, 0, 1), shard_indices(11, 1, 2, 0, 1)
    assert len(a) == len(b) == 6 and set(a) | set(b) == set(range(11))
    assert not np.array_equal(shard_indices(11, 0, 2, 1, 1), a)  # reshuffled per epoch


def test_pretrain_learns_and_writes(tmp_path):
    X = spectra(160)
    seen, prog, live = [], [], []
    model, card = pretrain(X[:128], CFG, TrainConfig(steps=30, batch_size=32, lr=2e-3, log_every=5,
                                                     out_dir=str(tmp_path), seed=1),
                           progress=lambda d, t, m="": prog.append((d, t)), X_val=X[128:],
                           data_info={"simulated": True, "cores": ["A"]},
                           batch_hook=lambda step, idx: seen.append(idx.copy()), on_metrics=live.append)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 30 and "val_loss" in rows[-1]
    assert rows[-1]["loss"] < rows[0]["loss"] * 0.8
    assert prog[-1] == (30, 30) and len(prog) == 31  # "starting" + every step
    assert live == rows
    assert len(seen) == 30 and all(len(i) == 32 for i in seen)
    assert set(np.concatenate(seen[:4])) == set(range(128))  # one epoch = 4 steps sees everything
    loaded, card2 = ck.load(tmp_path / "model")
    assert card2["simulated_data"] is True and card2["training"]["steps"] == 30
    assert card2["data"]["n_val"] == 32 and card2["metrics"]["val_loss"] == pytest.approx(rows[-1]["val_loss"])
    assert card2["config"]["window_channels"] == 512 and card2["transform"]["name"] == "zscore"
    assert card2["training"]["mixed_precision"] == "off"  # never autocast on the CPU
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_is_exact(tmp_path):
    X = spectra(64, seed=2)
    tc = dict(steps=4, batch_size=24, lr=1e-3, warmup_steps=1, seed=5, log_every=1)
    full, _ = pretrain(X, CFG, TrainConfig(**tc))
    token = CancelToken()

    def stop_at_2(done, total, msg=""):
        if done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        pretrain(X, CFG, TrainConfig(**tc, out_dir=str(tmp_path), checkpoint_every=1), progress=stop_at_2,
                 token=token)
    assert (tmp_path / "checkpoint.safetensors").exists()
    assert not (tmp_path / "model.json").exists() and not list(tmp_path.glob("*.tmp"))  # no model on cancel
    resumed, card = pretrain(X, CFG, TrainConfig(**tc, out_dir=str(tmp_path / "r"),
                                                 resume=str(tmp_path / "checkpoint.safetensors")))
    assert card["training"]["resumed_from_step"] == 2
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), k
    with pytest.raises(ValueError, match="differ"):
        pretrain(X[:-1], CFG, TrainConfig(**tc, resume=str(tmp_path)))


def test_nan_guard_and_bad_input():
    X = spectra(32)
    X[3, 10] = np.nan
    with pytest.raises(FloatingPointError, match="diverged"):
        pretrain(X, CFG, TrainConfig(steps=2, batch_size=32))
    with pytest.raises(ValueError, match="channels"):
        pretrain(np.ones((4, 1000)), CFG, TrainConfig(steps=1))
    with pytest.raises(ValueError, match="mask ratio"):
        pretrain(spectra(8), CFG, TrainConfig(steps=1, mask_ratio=1.0))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            pretrain(spectra(8), CFG, TrainConfig(steps=1, device="cuda"))


@pytest.mark.cuda
def test_pretrain_cuda_mixed_precision(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    model, card = pretrain(spectra(64), CFG, TrainConfig(steps=4, batch_size=16, device="cuda",
                                                         out_dir=str(tmp_path)))
    assert card["training"]["mixed_precision"] in ("bfloat16", "float16")
    assert next(model.parameters()).is_cuda
    tc = TrainConfig(steps=6, batch_size=16, device="cuda", resume=str(tmp_path))
    pretrain(spectra(64), CFG, tc)


def make_project(path, cores=(("A", 40, 2048, 0.02), ("B", 40, 2048, 0.02), ("C", 24, 1024, 0.04))):
    """A small project of synthetic (simulated-labelled) spectra; core C on another grid."""
    import pandas as pd

    from xrfcore.store import transaction

    with transaction(path) as p:
        for i, (core, n, channels, gain) in enumerate(cores):
            X = spectra(n, seed=10 + i)
            if channels != 2048:
                X = X.reshape(n, channels, -1).sum(-1)
            meta = pd.DataFrame({"depth_mm": np.arange(n) * 10.0, "kv": 10.0, "active": True, "valid": True,
                                 "scanner": "simulated-avaatech", "gain_kev": gain, "offset_kev": 0.0,
                                 "source_path": [f"{core}/{j}.spe" for j in range(n)], "core": core})
            p.write_table(core, "10kV-Run1", X.astype(np.int32), meta)
    return path


def test_cli_pretrain_reconstruct_models(tmp_path, capsys, monkeypatch):
    from xrfcore.cli import main
    from xrfcore.train.data import load_project

    proj = make_project(tmp_path / "p.h5")
    cfg = ModelConfig.preset("tiny", window_channels=512)
    data = load_project(proj, cfg)
    assert data.counts.shape == (104, 2048) and data.simulated.all()
    assert sorted(set(data.core)) == ["A", "B", "C"]
    out = tmp_path / "m"
    rc = main(["pretrain", "-p", str(proj), "-o", str(out), "--steps", "3", "--batch-size", "16",
               "--val-cores", "C", "--window-channels", "512", "--threads", "1", "--device", "cpu"])
    assert rc == 0
    card = json.loads((out / "model.json").read_text())
    assert card["simulated_data"] is True and card["data"]["val_cores"] == ["C"]
    assert card["data"]["n_train"] == 80 and card["data"]["n_val"] == 24
    assert "pretrain" in card["command_line"] or card["command_line"]
    assert main(["pretrain", "-p", str(proj), "-o", str(out), "--steps", "1"]) == 2  # refuses to overwrite
    assert "already holds a model" in capsys.readouterr().err
    # extend the run from its last checkpoint; the architecture comes from the checkpoint
    assert main(["pretrain", "-p", str(proj), "-o", str(tmp_path / "m2"), "--steps", "5", "--batch-size", "16",
                 "--val-cores", "C", "--threads", "1", "--resume", str(out)]) == 0
    card2 = json.loads((tmp_path / "m2" / "model.json").read_text())
    assert card2["training"]["resumed_from_step"] == 3 and card2["config"]["window_channels"] == 512
    csv = tmp_path / "rec.csv"
    assert main(["reconstruct", str(out), "-p", str(proj), "--core", "C", "--depth", "52",
                 "--seed", "2", "-o", str(csv)]) == 0
    text = csv.read_text()
    assert text.startswith("# xrfcore reconstruction (SIMULATED data)") and "# depth_mm: 50" in text
    import pandas as pd

    df = pd.read_csv(csv, comment="#")
    assert len(df) == 512 and df["hidden"].sum() == 256
    assert list(df.columns) == ["channel", "energy_kev", "measured", "hidden", "reconstruction", "error"]
    monkeypatch.setenv("XRFCORE_HOME", str(tmp_path / "home"))
    capsys.readouterr()
    assert main(["models", "--dir", str(out)]) == 0
    listed = capsys.readouterr().out
    assert card["id"] in listed and "SIMULATED" in listed
    assert main(["pretrain", "-p", str(proj), "-o", str(tmp_path / "x"), "--val-cores", "Z"]) == 2
    assert "validation cores not in the data: Z" in capsys.readouterr().err
