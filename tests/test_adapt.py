"""Adapting a foundation model to a project (xrfcore/train/adapt.py, `xrfcore adapt`): continued
masked-spectrum pretraining from a base model, held-out before/after table, lineage card, atomic
output, cancel, refusal of a base whose window cannot take the spectra."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from xrfcore import models_registry, store
from xrfcore.jobs import CancelToken, Cancelled
from xrfcore.model import checkpoint
from xrfcore.train import adapt as ad
from xrfcore.train.data import SpectraSet

torch.set_num_threads(1)
CH = 256
X_ = np.linspace(0, 1, CH)


def peaks(share, centres, level=3000.0, rng=None):
    a = np.exp(-((X_ - centres[0]) / 0.02) ** 2) + 0.02
    b = np.exp(-((X_ - centres[1]) / 0.03) ** 2) + 0.02
    lam = level * (share[:, None] * a + (1 - share[:, None]) * b)
    return (rng or np.random.default_rng(0)).poisson(lam).astype(np.int32)


def micro_cfg():
    from xrfcore.model.config import ModelConfig
    return ModelConfig.preset("tiny", channels=CH, embed_dim=32, depth=1, num_heads=2,
                              decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)


def make_project(path, cores, n=40, centres=(0.45, 0.6), seed=0):
    with store.transaction(path) as w:
        for i, core in enumerate(cores):
            rng = np.random.default_rng(seed + i)
            depth = np.arange(n) * 10.0
            share = 0.5 + 0.4 * np.sin(depth / (80 + 20 * i) + i)
            meta = pd.DataFrame({"depth_mm": depth, "section": "1", "position_mm": depth, "kv": 10.0,
                                 "live_s": 10.0, "current_ua": 200.0, "active": True, "valid": True,
                                 "scanner": "simulated-avaatech", "core": core})
            w.write_table(core, "10kV-Run1", peaks(share, centres, rng=rng), meta)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A micro foundation model pretrained on peaks at 0.3 / 0.7 of the window."""
    from xrfcore.train.pretrain import TrainConfig, pretrain

    rng = np.random.default_rng(1)
    X, Xv = peaks(rng.uniform(0.05, 0.95, 300), (0.3, 0.7), rng=rng), peaks(rng.uniform(0.05, 0.95, 60), (0.3, 0.7), rng=rng)
    out = tmp_path_factory.mktemp("base")
    tc = TrainConfig(steps=40, batch_size=64, lr=2e-3, device="cpu", out_dir=str(out), seed=0, augment=None,
                     transform="log_zscore")
    pretrain(X, micro_cfg(), tc, X_val=Xv, data_info={"simulated": True})
    return out / "model"


def files_sha(folder):
    return {p.name: checkpoint.sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


def test_adapt_lowers_the_held_out_error_and_records_lineage(base, tmp_path):
    proj = make_project(tmp_path / "p.h5", ["A", "B", "C"])
    before_files = files_sha(base.parent)
    live, est = [], []
    out = tmp_path / "adapted"
    res = ad.adapt(proj, out, base=base, steps=40, batch_size=32, lr=1e-3, device="cpu", augment=True,
                   on_metrics=live.append, on_estimate=est.append)
    card = res["card"]
    a, b = card["adaptation"], card["adapted_from"]
    # held out: one whole core of three (1 in 5, at least one), the rest adapted on
    assert a["held_out"] == "cores" and len(a["held_out_groups"]) == 1
    held = a["held_out_groups"][0]["core"]
    assert held not in a["cores"] and len(a["cores"]) == 2
    rows = {r["held_out"]: r for r in res["table"]}
    assert set(rows) == {held, "all held-out"}
    for r in rows.values():
        assert r["after"] < r["before"], r
    assert card["metrics"]["val_loss"] == pytest.approx(rows["all held-out"]["after"])
    assert card["metrics"]["val_loss_before"] == pytest.approx(rows["all held-out"]["before"])
    # lineage
    bcard = checkpoint.load_card(base)
    assert b["id"] == bcard["id"] and b["weights_sha256"] == bcard["weights_sha256"]
    assert a["steps"] == 40 and a["steps_chosen"] == "given" and a["lr"] == 1e-3 and "cpu" in a["device"]
    assert a["wall_s"] > 0 and len(a["data_sha256"]) == 64 and a["augment"] is not None
    assert card["transform"] == bcard["transform"] and card["config"] == bcard["config"]  # base's transform
    assert card["simulated_data"] is True and card["name"] == "adapted"
    assert card["id"] != bcard["id"]
    # OOD reference from the held-out spectra, arrays beside the weights
    assert card["ood_reference"]["recon"]["spectra"] == "validation"
    assert (out / card["ood_reference"]["file"]).is_file()
    # files: loadable model, markdown card with the table, metrics, nothing else
    model, card2 = checkpoint.load(out / "model")
    assert card2["adaptation"]["before_after"] == json.loads(json.dumps(res["table"]))
    assert "before" in (out / "model.md").read_text() and held in (out / "model.md").read_text()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == len(live) > 0
    assert est and est[0]["s_per_1000_spectra"] > 0 and est[0]["steps"] == 40
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]
    assert files_sha(base.parent) == before_files  # the base is untouched
    # the weights moved away from the base's
    base_model, _ = checkpoint.load(base)
    assert not torch.equal(model.state_dict()["blocks.0.attn.qkv.weight"], base_model.state_dict()["blocks.0.attn.qkv.weight"])


def test_holdout_depth_blocks_for_one_or_two_cores_and_named_cores():
    n = 50
    depth = np.concatenate([np.arange(n) * 10.0, np.arange(n) * 5.0])
    core = np.array(["A"] * n + ["B"] * n, dtype=object)
    data = SpectraSet(np.zeros((2 * n, 4), np.float32), core, np.array(["r"] * 2 * n, dtype=object), depth,
                      np.zeros(2 * n, bool))
    mask, groups, kind = ad.holdout(data)
    assert kind == "depth blocks" and [g["core"] for g in groups] == ["A", "B"]
    assert 0.15 < mask.mean() < 0.25   # two blocks of ten
    a = np.flatnonzero(groups[0]["mask"])
    assert len(np.split(a, np.flatnonzero(np.diff(a) > 1) + 1)) == 2   # two contiguous blocks
    assert not mask[[0, n - 1, n, 2 * n - 1]].any()  # the core ends stay in training
    assert "depth blocks" in groups[0]["what"] and "mm" in groups[0]["what"]
    mask, groups, kind = ad.holdout(data, val_cores=["B"])
    assert kind == "cores" and mask.sum() == n and groups[0]["name"] == "B"
    with pytest.raises(ad.AdaptRefused, match="every core"):
        ad.holdout(data, val_cores=["A", "B"])
    with pytest.raises(ad.AdaptRefused, match="not in the data"):
        ad.holdout(data, val_cores=["Z"])


def test_default_steps_follow_data_size_and_device():
    assert ad.default_steps(1000, 128, "cpu") == 200
    assert ad.default_steps(100_000, 128, "cpu") == 2344
    assert ad.default_steps(10_000_000, 128, "cpu") == 5000
    assert ad.default_steps(10_000_000, 128, "cuda") == 20000


def test_cancel_and_failure_leave_nothing_half_written(base, tmp_path, monkeypatch):
    proj = make_project(tmp_path / "p.h5", ["A"], n=40)
    token = CancelToken()

    def stop(done, total, msg=""):
        if done == 2:
            token.cancel()
    out = tmp_path / "m"
    with pytest.raises(Cancelled):
        ad.adapt(proj, out, base=base, steps=5, batch_size=16, device="cpu", progress=stop, token=token)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".part" in p.name]

    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(checkpoint, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        ad.adapt(proj, out, base=base, steps=2, batch_size=16, device="cpu")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_cli_end_to_end_into_the_models_folder(base, tmp_path, monkeypatch, capsys):
    from xrfcore.cli import main

    monkeypatch.setenv("XRFCORE_HOME", str(tmp_path / "home"))
    proj = make_project(tmp_path / "p.h5", ["A", "B"], n=40)
    args = ["adapt", "-p", str(proj), "--model", str(base), "-o", "my-adapted", "--steps", "4",
            "--batch-size", "16", "--device", "cpu", "--no-augment", "--threads", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "depth blocks" in printed and "before" in printed and "all held-out" in printed
    found = [e for e in models_registry.list_models(kind="mae") if e["name"] == "my-adapted"]
    assert len(found) == 1 and found[0]["source"] == "user"
    assert models_registry.resolve("my-adapted") == models_registry.user_models_dir() / "my-adapted" / "model.safetensors"
    card = found[0]
    assert card["adaptation"]["augment"] is None and card["adapted_from"]["path"] == str(base)
    assert main(args) == 2   # an existing model is not replaced unasked
    assert main(args + ["--force"]) == 0


def test_a_base_whose_window_cannot_take_the_spectra_is_refused_when_kept(tmp_path, capsys):
    """The shipped default (read up to 10.24 keV) against spectra that end at 5.12 keV: refused with
    --keep-window; by default the window comes from the data (0-5.12 keV) and the CLI says so."""
    from xrfcore.cli import main

    if models_registry.default_model() is None:
        pytest.skip("no shipped default model")
    proj = make_project(tmp_path / "p.h5", ["A"], n=30)
    args = ["adapt", "-p", str(proj), "-o", str(tmp_path / "m"), "--steps", "2", "--device", "cpu", "--threads", "1"]
    assert main(args + ["--keep-window"]) == 2
    err = capsys.readouterr().err
    assert models_registry.DEFAULT_MODEL in err and "keV" in err and "--allow-window-loss" in err
    assert not (tmp_path / "m").exists()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "energy window 0-5.12 keV" in out and "changed from the base's 0-10.24 keV" in out
    card = checkpoint.load_card(tmp_path / "m" / "model")
    assert card["config"]["window_channels"] == 256 and card["adaptation"]["window"]["changed"]
