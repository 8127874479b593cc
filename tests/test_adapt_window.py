"""The energy window comes from the data (xrfcore/train/window.py; issue 13 item 3): adapting the
shipped 0-10.24 keV model to spectra reaching 20 keV (an Itrax-like Mo tube at 30 kV) re-initialises
the position embeddings only and carries every other weight bit for bit, says so, and the result
reconstructs and predicts on those spectra; pretraining from scratch picks the window from the data."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from xrfcore import models_registry, store
from xrfcore.energy import Grid
from xrfcore.model import checkpoint
from xrfcore.model.config import ModelConfig
from xrfcore.train import adapt as ad
from xrfcore.train import window as win

torch.set_num_threads(1)
ITRAX_GRID = Grid(2048, 0.01027, -0.0099)   # 0-21 keV, as the real CD166_19_S1 scans
# (keV, width keV, weight): Ca, Fe, Sr, Zr, Mo Ka incoherent + coherent (Mo tube at 30 kV)
LINES = [(3.69, 0.07, 1.0), (6.40, 0.08, 0.8), (14.16, 0.1, 0.15), (15.77, 0.1, 0.05),
         (17.1, 0.35, 1.2), (17.48, 0.1, 0.5)]


def itrax_like(n, seed=0):
    """Counts on ITRAX_GRID: lines + a continuum up to 20 keV; about a third of the counts above
    10.24 keV, 99.5 % below about 20.3 keV."""
    rng = np.random.default_rng(seed)
    e = ITRAX_GRID.energies()
    cont = np.clip(e - 1.0, 0, None) * np.clip(20.5 - e, 0, None) / 60
    out = []
    for i in range(n):
        s = 0.5 + 0.4 * np.sin(i / 7)
        lam = 40 * cont
        for j, (k, w, a) in enumerate(LINES):
            lam = lam + 900 * a * (s if j < 2 else 1 - 0.5 * s) * np.exp(-0.5 * ((e - k) / w) ** 2)
        out.append(rng.poisson(lam))
    return np.asarray(out, np.int32)


def make_project(path, cores=("A",), n=60, seed=0):
    with store.transaction(path) as w:
        for i, core in enumerate(cores):
            depth = np.arange(n) * 10.0
            meta = pd.DataFrame({"depth_mm": depth, "section": "1", "position_mm": depth, "kv": 30.0,
                                 "live_s": 15.0, "current_ua": 30000.0, "active": True, "valid": True,
                                 "scanner": "itrax", "core": core, "gain_kev": ITRAX_GRID.gain_kev,
                                 "offset_kev": ITRAX_GRID.offset_kev})
            w.write_table(core, "30kV", itrax_like(n, seed + i), meta)
    return path


@pytest.fixture(scope="module")
def shipped():
    path = models_registry.default_model()
    if path is None:
        pytest.skip("no shipped default model")
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("itrax") / "p.h5")


def test_the_rule_keeps_10_kv_at_512_channels_and_widens_for_30_kv():
    cfg = ModelConfig.preset("tiny")
    e = cfg.grid().energies()
    t10 = np.where(e < 9.4, 1.0, 0.0) + np.where(e < 20, 1e-6, 0)       # 99.5 % below ~9.4 keV
    rec = win.choose(t10, cfg)
    assert rec["window_start"] == 0 and rec["window_channels"] == 512 and rec["energy_kev"] == [0.0, 10.24]
    t30 = np.where(e < 20.3, 1.0, 0.0)
    rec = win.choose(t30, cfg)
    assert rec["window_channels"] == 1024 and rec["energy_kev"] == [0.0, 20.48]
    # never past the spectra's own end: a whole block would reach 23.04 keV, the data stop at 21.0
    rec = win.choose(np.where(e < 20.6, 1.0, 0.0), cfg, data_end=21.0)
    assert rec["window_channels"] == 1040 and rec["window_channels"] % cfg.patch_size == 0
    # asked for: the end rounded up to whole patches; outside the grid refused
    rec = win.from_kev(cfg, 0, 20)
    assert rec["window_channels"] == 1008 and rec["energy_kev"] == [0.0, 20.16]
    with pytest.raises(ValueError, match="outside the model grid"):
        win.from_kev(cfg, 0, 45)


def test_rewindow_remakes_only_the_position_embeddings_and_refits_per_channel_statistics(shipped):
    model, card = checkpoint.load(shipped)
    old = checkpoint.state_tensors(model)
    new_cfg = model.cfg.replace(window_channels=1024)
    state, notes = win.rewindow_state(old, model.cfg, new_cfg)
    assert sorted(n["parameter"] for n in notes) == ["decoder_pos_embed", "pos_embed"]
    assert state["pos_embed"].shape == (1, 65, model.cfg.embed_dim)
    for k, v in old.items():
        if k not in win.POS_KEYS:
            assert torch.equal(state[k], v), k
    from xrfcore.model.mae import MaskedAutoencoderViT
    MaskedAutoencoderViT(new_cfg).load_state_dict(state, strict=True)   # fits the wider model
    X = np.abs(np.random.default_rng(0).normal(10, 3, (20, 1024)))
    tf, note = win.refit_transform({"name": "global", "mean": [1.0] * 512, "std": [1.0] * 512}, X)
    assert len(tf["mean"]) == 1024 and "refitted" in note
    tf, note = win.refit_transform(card["transform"], X)
    assert tf == card["transform"] and "kept" in note


def test_adapting_the_shipped_model_to_20_kev_spectra(shipped, project, tmp_path, capsys):
    """lr 0: the adapted weights are the carried-over ones, so bit-for-bit can be checked end to end."""
    base, bcard = checkpoint.load(shipped)
    res = ad.adapt(project, tmp_path / "m0", base=shipped, steps=1, lr=0.0, batch_size=16, device="cpu",
                   augment=None)
    a = res["card"]["adaptation"]
    w = a["window"]
    assert w["changed"] and w["base_energy_kev"] == [0.0, 10.24] and w["energy_kev"] == [0.0, 20.48]
    assert w["patches"] == 64 and w["base_patches"] == 32 and w["counts_inside"] >= 0.995
    assert sorted(r["parameter"] for r in w["reinitialised"]) == ["decoder_pos_embed", "pos_embed"]
    assert "bit for bit" in w["carried_over"] and "kept" in w["transform"]
    assert "% of the counts" in w["reason"] and "0-10.24 keV" in w["reason"]
    card = json.loads((tmp_path / "m0" / "model.json").read_text())
    assert card["config"]["window_channels"] == 1024 and card["instrument"]["energy_kev"] == [0.0, 20.48]
    assert card["instrument"]["kv"] == [30.0, 30.0] and card["transform"] == bcard["transform"]
    model, _ = checkpoint.load(tmp_path / "m0" / "model")
    sd, bsd = model.state_dict(), base.state_dict()
    assert set(sd) == set(bsd)
    for k in bsd:
        if k in win.POS_KEYS:
            assert sd[k].shape[1] == 65 and bsd[k].shape[1] == 33
        else:
            assert torch.equal(sd[k], bsd[k]), k
    # the table compares in counts on the common range (the input-space losses are in other spaces)
    row = res["table"][-1]
    assert row["change_pct"] is None and 0 < row["rel_before"] and 0 < row["rel_after"]
    assert a["relative_error"]["energy_kev"] == [0.0, 10.24]
    assert "changed from the base" in (tmp_path / "m0" / "model.md").read_text()


def test_adapted_model_reconstructs_and_predicts_and_the_cli_says_what_changed(shipped, project, tmp_path, capsys):
    from xrfcore.cli import main
    from xrfcore.reconstruct import reconstruct
    from xrfcore.train import finetune as ft

    out = tmp_path / "m"
    assert main(["adapt", "-p", str(project), "--model", str(shipped), "-o", str(out), "--steps", "3",
                 "--batch-size", "16", "--device", "cpu", "--threads", "1", "--no-augment"]) == 0
    printed = capsys.readouterr().out
    assert "0-20.48 keV" in printed and "changed from the base's 0-10.24 keV" in printed
    assert "re-initialised: pos_embed" in printed and "decoder_pos_embed" in printed and "rel before" in printed
    model, card = checkpoint.load(out / "model")
    X = itrax_like(8, seed=5)
    r = reconstruct(model, card, X, grid=ITRAX_GRID)
    assert r["reconstruction"].shape == (8, 1024) and np.isfinite(r["reconstruction"]).all()
    assert r["energies_kev"][-1] == pytest.approx(20.46)
    y = pd.DataFrame({"CaCO3": 30 + 10 * np.sin(np.arange(24) / 7), "TOC": 1 + 0.2 * np.cos(np.arange(24) / 5)})
    reg, rcard = ft.finetune(out / "model", itrax_like(24, seed=7).astype(float), y, grid=ITRAX_GRID, mode="head",
                             epochs=2, seed=0, device="cpu", ood=False)
    assert reg.cfg.window_channels == 1024
    p = ft.Predictor.from_model(reg, rcard, device="cpu").predict_counts(X, ITRAX_GRID)
    assert len(p) == 8 and np.isfinite(p["CaCO3"]).all() and np.isfinite(p["TOC"]).all()


def test_keep_window_refuses_and_a_fitting_project_keeps_the_window(shipped, project, tmp_path, capsys):
    from xrfcore.cli import main

    assert main(["adapt", "-p", str(project), "--model", str(shipped), "-o", str(tmp_path / "k"), "--keep-window",
                 "--steps", "1", "--device", "cpu", "--threads", "1"]) == 2
    assert "10.24 keV" in capsys.readouterr().err and not (tmp_path / "k").exists()
    cfg = ModelConfig.preset("tiny", window_channels=512)
    e = cfg.grid().energies()
    rec = win.for_adaptation(cfg, np.where(e < 9.0, 1.0, 0.0), 40.0)
    assert not rec["changed"] and rec["window_channels"] == 512 and "kept" in rec["reason"]
    rec = win.for_adaptation(cfg, np.where(e < 9.0, 1.0, 0.0), 40.0, window=(0, 20.48))
    assert rec["changed"] and rec["window_channels"] == 1024


def test_pretraining_from_scratch_picks_the_window_from_the_data(project, tmp_path, capsys):
    from xrfcore.cli import main

    out = tmp_path / "scratch"
    assert main(["pretrain", "-p", str(project), "-o", str(out), "--steps", "2", "--batch-size", "16",
                 "--device", "cpu", "--threads", "1", "--no-augment"]) == 0
    assert "energy window 0-20.48 keV" in capsys.readouterr().err
    card = checkpoint.load_card(out / "model")
    assert card["config"]["window_start"] == 0 and card["config"]["window_channels"] == 1024
    assert card["instrument"]["energy_kev"] == [0.0, 20.48]
    assert card["data"]["window"]["how"].startswith("chosen from the data")
    out2 = tmp_path / "asked"
    assert main(["pretrain", "-p", str(project), "-o", str(out2), "--steps", "1", "--batch-size", "16",
                 "--device", "cpu", "--threads", "1", "--window-kev", "0", "15"]) == 0
    assert checkpoint.load_card(out2 / "model")["config"]["window_channels"] == 752   # 15 keV -> 47 patches


def test_simulated_10_kv_archive_keeps_the_512_channel_window(tmp_path):
    """What `xrfcore simulate` + `xrfcore import` give (the shipped model's data): 0-10.24 keV."""
    import subprocess
    import sys

    from xrfcore.train.data import load_project

    def run(*a):
        subprocess.run([sys.executable, "-m", "xrfcore", *map(str, a)], check=True, capture_output=True)
    run("simulate", "-o", tmp_path / "raw", "--cores", "1", "--length-m", "0.3", "--seed", "4")
    run("import", tmp_path / "raw", "-p", tmp_path / "s.h5")
    cfg = ModelConfig.preset("tiny")
    grids = []
    data = load_project(tmp_path / "s.h5", cfg, on_run=lambda c, r, rd, k: grids.append(rd.grid))
    rec = win.choose(data.counts.sum(0, dtype=float), cfg, data_end=win.data_end_kev(grids))
    assert rec["window_channels"] == 512 and rec["energy_kev"] == [0.0, 10.24]
