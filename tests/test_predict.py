import numpy as np
import pandas as pd
import pytest

from tests.test_finetune import CH, base_path, micro_cfg, synthetic  # noqa: F401  (fixture)
from xrfcore import export, predict, store
from xrfcore.train import finetune as ft


def make_project(path, cores=("K1", "K2", "K3"), n=80, seed=0):
    """A project with simulated-looking cores: depth 0..(n-1)*5 mm, CaCO3 a smooth downcore signal."""
    truth = {}
    with store.transaction(path) as w:
        for i, core in enumerate(cores):
            rng = np.random.default_rng(seed + i)
            depth = np.arange(n) * 5.0
            share = 0.5 + 0.4 * np.sin(depth / (60 + 15 * i) + i)
            x = np.linspace(0, 1, CH)
            a = np.exp(-((x - 0.3) / 0.02) ** 2) + 0.02
            b = np.exp(-((x - 0.7) / 0.03) ** 2) + 0.02
            counts = rng.poisson(3000 * (share[:, None] * a + (1 - share[:, None]) * b)).astype(np.int32)
            meta = pd.DataFrame({"depth_mm": depth, "section": "1", "position_mm": depth, "kv": 10.0,
                                 "active": True, "valid": True, "scanner": "simulated-avaatech", "core": core})
            w.write_table(core, "10kV-Run1", counts, meta)
            truth[core] = pd.DataFrame({"depth_mm": depth, "CaCO3": 90 * share + 2, "TOC": 0.2 + 2 * (1 - share)})
    return truth


def lab_csv(path, truth, step=4):
    rows = []
    for core, t in truth.items():
        for j in range(0, len(t) - 2, step):
            rows.append(dict(core=core, depth_top_mm=t.depth_mm[j], depth_bottom_mm=t.depth_mm[j] + 10,
                             CaCO3=round(t.CaCO3[j:j + 3].mean(), 2), TOC=round(t.TOC[j:j + 3].mean(), 3)))
    rows.append(dict(core="NOPE", depth_top_mm=0, depth_bottom_mm=10, CaCO3=10, TOC=1))
    with open(path, "w") as f:
        f.write("# SIMULATED lab samples\n")
        pd.DataFrame(rows).to_csv(f, index=False)
    return path


def test_finetune_predict_store_export(tmp_path, base_path):  # noqa: F811
    proj = tmp_path / "p.h5"
    truth = make_project(proj)
    lab = lab_csv(tmp_path / "lab.csv", truth)
    reg, card, match = ft.finetune_project(proj, lab, base_path, tmp_path / "model", mode="head")
    assert len(match.samples) == 60 and (match.report.reason.str.contains("not in the project")).sum() == 1
    assert card["simulated_data"] is True and card["labels"]["matched"] == 60
    with store.Project.open(proj) as p:
        assert len(p.labels()) == 61  # the whole lab table is kept, matched or not
    calls = []
    df = predict.predict_core(proj, "K2", tmp_path / "model", progress=lambda d, t, m="": calls.append(d))
    assert list(df.columns) == predict.COLUMNS and len(df) == 80 and calls
    assert (df.model_id == card["id"]).all()
    r2 = 1 - ((df.CaCO3 - truth["K2"].CaCO3) ** 2).sum() / ((truth["K2"].CaCO3 - truth["K2"].CaCO3.mean()) ** 2).sum()
    assert r2 > 0.8
    assert ((df.CaCO3_lo <= df.CaCO3) & (df.CaCO3 <= df.CaCO3_hi)).all()
    with store.Project.open(proj) as p:
        assert p.predictions("K2") == [store.safe_name(card["id"])]
        back, meta = p.read_predictions("K2", card["id"])
        assert meta["model_id"] == card["id"] and meta["simulated"] is True
        np.testing.assert_allclose(back.CaCO3, df.CaCO3)
    out = tmp_path / "k2.csv"
    predict.export_core(proj, "K2", card["id"], out)
    prov = export.read_provenance(out)
    assert prov["model_id"] == card["id"] and prov["core"] == "K2" and len(prov["project_sha256"]) == 64
    assert out.read_text().startswith("# SIMULATED DATA")
    csv = pd.read_csv(out, comment="#")
    assert list(csv.columns) == predict.COLUMNS and len(csv) == 80
    with pytest.raises(ValueError, match="no predictions of model"):
        predict.export_core(proj, "K1", card["id"], tmp_path / "x.csv")
    with pytest.raises(ValueError, match="no core"):
        predict.predict_core(proj, "ZZ", tmp_path / "model")


def test_cancelled_predict_leaves_project_unchanged(tmp_path, base_path):  # noqa: F811
    from xrfcore.jobs import CancelToken, Cancelled
    proj = tmp_path / "p.h5"
    truth = make_project(proj, cores=("K1", "K2"), n=40)
    lab = lab_csv(tmp_path / "lab.csv", truth, step=2)
    ft.finetune_project(proj, lab, base_path, tmp_path / "model", mode="head", store_labels=False)
    before = proj.read_bytes()
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        predict.predict_core(proj, "K1", tmp_path / "model", token=tok)
    assert proj.read_bytes() == before


def test_interval_coverage_on_held_out_labels(base_path):  # noqa: F811
    """90 % conformal intervals (as the Predictor gives them) cover ~90 % of a large held-out set."""
    X, y, g = synthetic(600, seed=21, cores=12)
    Xt, yt, _ = synthetic(3000, seed=22)
    reg, card = ft.finetune(base_path, X, y, groups=g, mode="head", ood=False)
    df = ft.Predictor.from_model(reg, card, device="cpu").predict_counts(Xt)
    cover = {t: predict.interval_coverage(yt[t], df[f"{t}_lo"], df[f"{t}_hi"]) for t in card["targets"]}
    print("coverage", cover, {t: card["conformal"][t]["method"] for t in card["targets"]})
    for t, c in cover.items():
        assert 0.86 <= c <= 0.94, (t, c)
        assert 0.86 <= card["conformal"][t][f"cv_coverage_{card['conformal'][t]['method']}"] <= 0.94


def test_finetune_on_the_projects_stored_lab_samples(tmp_path, base_path):  # noqa: F811
    """What the app does after Load lab samples: no CSV, the stored table is matched the same way."""
    proj = tmp_path / "p.h5"
    truth = make_project(proj, cores=("K1", "K2"), n=40)
    with pytest.raises(ValueError, match="no lab samples yet"):
        ft.finetune_project(proj, None, base_path, tmp_path / "m0", mode="head")
    lab = lab_csv(tmp_path / "lab.csv", truth, step=2)
    _, card_csv, match_csv = ft.finetune_project(proj, lab, base_path, tmp_path / "m1", mode="head")
    _, card, match = ft.finetune_project(proj, None, base_path, tmp_path / "m2", mode="head")
    assert len(match.samples) == len(match_csv.samples) == card["labels"]["matched"]
    assert card["labels"]["stored_in_project"] is True
    assert card["labels"]["table_sha256"] == card_csv["labels"]["table_sha256"]
    assert card["ood"] and card_csv["ood"]
