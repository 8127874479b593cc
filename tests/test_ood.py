"""Out-of-distribution score that knows what the foundation model knows (xrfcore/ood.py)."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from xrfcore import export, ood, predict, store
from xrfcore.model import checkpoint, transforms as tfm
from xrfcore.train import finetune as ft

CH = 256
X_ = np.linspace(0, 1, CH)


def peaks(share, centres=(0.3, 0.7), level=3000.0, rng=None):
    """Spectra mixing two peaks (the foundation model's world) or peaks elsewhere (alien)."""
    a = np.exp(-((X_ - centres[0]) / 0.02) ** 2) + 0.02
    b = np.exp(-((X_ - centres[1]) / 0.03) ** 2) + 0.02
    lam = level * (share[:, None] * a + (1 - share[:, None]) * b)
    return (rng or np.random.default_rng(0)).poisson(lam).astype(np.int32)


def micro_cfg():
    from xrfcore.model.config import ModelConfig
    return ModelConfig.preset("tiny", channels=CH, embed_dim=32, depth=2, num_heads=2,
                              decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)


@pytest.fixture(scope="module")
def foundation(tmp_path_factory):
    """A micro foundation model pretrained by `pretrain` (with a validation set) into a folder."""
    from xrfcore.train.pretrain import TrainConfig, pretrain

    rng = np.random.default_rng(1)
    X, Xv = peaks(rng.uniform(0.05, 0.95, 600), rng=rng), peaks(rng.uniform(0.05, 0.95, 120), rng=rng)
    out = tmp_path_factory.mktemp("mae")
    extra = {"augment": None} if "augment" in {f.name for f in dataclasses.fields(TrainConfig)} else {}
    tc = TrainConfig(steps=200, batch_size=64, lr=2e-3, device="cpu", out_dir=str(out), seed=0, **extra)
    pretrain(X, micro_cfg(), tc, X_val=Xv, data_info={"simulated": True})
    return out / "model"


def make_project(path, cores, n=60, centres=(0.3, 0.7), seed=0, level=3000.0):
    """Cores with a smooth downcore mixture; live time and current stated (counts per s and uA)."""
    truth = {}
    with store.transaction(path) as w:
        for i, core in enumerate(cores):
            rng = np.random.default_rng(seed + i)
            depth = np.arange(n) * 10.0
            share = 0.5 + 0.4 * np.sin(depth / (80 + 20 * i) + i)
            meta = pd.DataFrame({"depth_mm": depth, "section": "1", "position_mm": depth, "kv": 10.0,
                                 "live_s": 10.0, "current_ua": 200.0, "active": True, "valid": True,
                                 "scanner": "simulated-avaatech", "core": core})
            w.write_table(core, "10kV-Run1", peaks(share, centres, level, rng), meta)
            truth[core] = pd.DataFrame({"depth_mm": depth, "CaCO3": 90 * share + 2, "TOC": 0.2 + 2 * (1 - share)})
    return truth


def lab_csv(path, truth, step=3):
    rows = [dict(core=c, depth_top_mm=t.depth_mm[j], depth_bottom_mm=t.depth_mm[j] + 10,
                 CaCO3=round(t.CaCO3[j], 2), TOC=round(t.TOC[j], 3))
            for c, t in truth.items() for j in range(0, len(t) - 1, step)]
    with open(path, "w") as f:
        f.write("# SIMULATED lab samples\n")
        pd.DataFrame(rows).to_csv(f, index=False)
    return path


def without_reference(model, folder):
    """A copy of a foundation model whose card has no OOD reference (weights unchanged)."""
    w, c = checkpoint.paths(model)
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(w.read_bytes())
    card = json.loads(c.read_text())
    card.pop("ood_reference")
    checkpoint.write_json(folder / "model.json", card)
    return folder / "model"


def test_pretraining_writes_the_reference_into_the_card(foundation):
    card = checkpoint.load_card(foundation)
    ref = card["ood_reference"]
    assert ref["recon"]["spectra"] == "validation" and ref["recon"]["n"] == 120
    assert ref["embedding"]["spectra"] == "validation + training" and ref["embedding"]["n"] == 720
    assert 0 < ref["recon"]["median"] < ref["recon"]["limit"] and ref["embedding"]["limit"] > 0
    assert ref["seeds"] == list(ood.SEEDS) and ref["transform"] == card["transform"]
    side = foundation.parent / ref["file"]
    assert side.name == "model.ood.safetensors"
    arrays = ood.load_arrays(side, ref["sha256"])
    assert arrays["emb_whiten"].shape == (32, 32) and arrays["emb_mean"].shape == (32,)
    checkpoint.load(foundation)  # the weights still match their hash


def test_reference_can_be_added_to_an_existing_model(foundation, tmp_path):
    from xrfcore import cli

    bare = without_reference(foundation, tmp_path / "bare")
    make_project(tmp_path / "a.h5", ["A1", "A2"])
    sha = checkpoint.load_card(bare)["weights_sha256"]
    assert cli.main(["models", "--add-ood-reference", str(bare), "-p", str(tmp_path / "a.h5"),
                     "--val-cores", "A2", "--device", "cpu"]) == 0
    card = checkpoint.load_card(bare)
    assert card["weights_sha256"] == sha and card["ood_reference"]["recon"]["n"] == 60
    assert "A2" in card["ood_reference"]["source"] and ood.read_reference(None, card, bare) is not None
    checkpoint.load(bare)


def test_spectra_unlike_the_foundation_are_flagged_even_with_lab_samples_from_them(foundation, tmp_path):
    proj = tmp_path / "alien.h5"
    truth = make_project(proj, ["Z1"], centres=(0.15, 0.9), n=80)  # peaks the foundation never saw
    lab = lab_csv(tmp_path / "lab.csv", truth)
    ft.finetune_project(proj, lab, foundation, tmp_path / "m", mode="head")
    df = predict.predict_core(proj, "Z1", tmp_path / "m", store=False, device="cpu")
    assert df.ood_flag.mean() >= 0.95
    assert df.ood_reason.str.startswith("unlike the foundation model's training spectra").mean() >= 0.95
    # the old score (the labelled core's own reconstruction error as reference) lets it through
    ft.finetune_project(proj, lab, without_reference(foundation, tmp_path / "bare"), tmp_path / "m_old",
                        mode="head", store_labels=False)
    old = ft.Predictor(tmp_path / "m_old", device="cpu").predict_counts(
        store.Project.open(proj).read_run("Z1", "10kV-Run1").counts)
    assert (old.ood_recon > 1).mean() < 0.2


def test_counts_x03_flagged_as_crack_and_ordinary_cores_pass(foundation, tmp_path):
    proj = tmp_path / "p.h5"
    truth = make_project(proj, ["K1", "K2", "K3", "K4"])
    lab = lab_csv(tmp_path / "lab.csv", {c: truth[c] for c in ("K1", "K2", "K3")})
    _, card, _ = ft.finetune_project(proj, lab, foundation, tmp_path / "m", mode="head")
    o = card["ood"]
    assert o["version"] == ood.VERSION and o["foundation"]["recon"]["limit"] > 0 and o["lab"]["folds"] == "cores"
    assert o["counts"]["normalised"] == "per live second and uA" and o["embedding_from"] == "regressor"
    assert (tmp_path / "m" / o["file"]["file"]).exists()
    with store.Project.open(proj) as p:
        rd = p.read_run("K4", "10kV-Run1")
    thin = np.random.default_rng(0).binomial(rd.counts.astype(np.int64), 0.3)
    with store.transaction(proj) as w:
        w.write_table("K4-crack", "10kV-Run1", thin, rd.meta.assign(core="K4-crack"))
    ok = predict.predict_core(proj, "K4", tmp_path / "m", store=False, device="cpu")
    assert ok.ood_flag.mean() <= 0.05 and (ok.ood_reason[~ok.ood_flag] == "").all()
    crack = predict.predict_core(proj, "K4-crack", tmp_path / "m", store=False, device="cpu")
    assert crack.ood_flag.mean() >= 0.95
    assert crack.ood_reason.str.contains(r"low counts \(x0\.[23]\d of expected\): crack or gap\?").mean() >= 0.95


def test_old_card_without_the_new_fields_still_predicts_and_csv_has_the_reason(foundation, tmp_path):
    proj = tmp_path / "p.h5"
    truth = make_project(proj, ["K1", "K2"])
    ft.finetune_project(proj, lab_csv(tmp_path / "lab.csv", truth), foundation, tmp_path / "m", mode="head")
    card_path = tmp_path / "m" / "model.json"
    card = json.loads(card_path.read_text())
    # a card as written before this change: the old fields only, no arrays file
    card["ood"] = {k: card["ood"][k] for k in ("mae_file", "transform", "seeds", "mask_ratio", "p99")}
    card["ood"].update(reference_n=120, reference="single training spectra")
    checkpoint.write_json(card_path, card)
    (tmp_path / "m" / "ood.safetensors").unlink()
    pr = ft.Predictor(tmp_path / "m", device="cpu")
    assert pr.ood_arrays is None
    with store.Project.open(proj) as p:
        rd = p.read_run("K2", "10kV-Run1")
    X = np.vstack([rd.counts[:20], np.random.default_rng(1).poisson(50, size=(3, CH))])
    out = pr.predict_counts(X)
    err = ood.recon_errors(pr.mae, tfm.prepare(X, pr.mae.cfg, tfm.from_dict(card["ood"]["transform"])))
    np.testing.assert_allclose(out.ood_score, err / card["ood"]["p99"], rtol=1e-4)
    assert out.ood_flag[20:].all() and out.ood_reason[20:].str.contains("99th percentile").all()
    df = predict.predict_core(proj, "K2", tmp_path / "m", device="cpu", predictor=pr)
    assert list(df.columns) == predict.COLUMNS
    predict.export_core(proj, "K2", card["id"], tmp_path / "k2.csv")
    csv = pd.read_csv(tmp_path / "k2.csv", comment="#", keep_default_na=False)
    assert "ood_reason" in csv.columns and list(csv.columns) == export.PREDICTION_COLUMNS
    assert (csv.ood_reason[csv.ood_flag.astype(str) == "True"] != "").all()
    assert "99th percentile" in export.read_provenance(tmp_path / "k2.csv")["ood"]
