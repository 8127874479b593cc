"""Whole cruises (issue 14 item 4): a parent folder of core folders imported as one job with one
report naming each core; every core predicted with one model in one transaction; one CSV per core
or one long CSV; exports carry the labels hash, the seeds and every column's unit."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.test_finetune import base_path  # noqa: F401  (fixture)
from tests.test_importer import make_core
from tests.test_predict import lab_csv, make_project
from xrfcore import cruise, export, store
from xrfcore.cli import main
from xrfcore.train import finetune as ft


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, base_path):  # noqa: F811
    """Three cores, a head model fine-tuned on the project's stored lab samples of two of them."""
    from xrfcore import labels
    d = tmp_path_factory.mktemp("cruise")
    proj = d / "p.h5"
    truth = make_project(proj, cores=("K1", "K2", "K3"), n=40)
    lab = lab_csv(d / "lab.csv", {c: truth[c] for c in ("K1", "K2")}, step=2)
    labels.store_labels(proj, labels.read_lab_csv(lab))
    _, card, _ = ft.finetune_project(proj, None, base_path, d / "model", mode="head")
    return d, proj, card


def test_cli_import_of_a_parent_folder_names_every_core(tmp_path, capsys):
    parent = tmp_path / "cruise"
    for i, core in enumerate(("GeoB1-1", "GeoB2-1", "GeoB3-1")):
        make_core(parent, np.random.default_rng(i), core=core, positions=(10, 20), runs=((1, 10),))
    proj = tmp_path / "p.h5"
    assert main(["import", str(parent), "-p", str(proj)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("Found 3 cores in cruise: GeoB1-1 (4 files, +4 spectra)")
    assert out.count("Import of ") == 1                     # one job, one report
    with store.Project.open(proj) as p:
        assert p.cores() == ["GeoB1-1", "GeoB2-1", "GeoB3-1"]
    assert [f.name for f in cruise.core_folders(parent)] == ["GeoB1-1", "GeoB2-1", "GeoB3-1"]
    assert cruise.core_folders(parent / "GeoB1-1") == []       # a core's run folders are not cores


def test_predict_all_then_export_per_core_and_long(predicted, tmp_path, capsys):
    d, proj, card = predicted
    calls = []
    res = cruise.predict_all(proj, d / "model", device="cpu", progress=lambda a, b, m="": calls.append((a, b)))
    assert res["predicted"] == {"K1": 40, "K2": 40, "K3": 40} and not res["skipped"]
    assert calls[-1][0] == calls[-1][1] and all(a <= b for a, b in calls)
    with store.Project.open(proj) as p:
        assert all(p.predictions(c) == [store.safe_name(card["id"])] for c in ("K1", "K2", "K3"))
    assert "3 cores predicted" in cruise.predict_summary(res)

    # one CSV per core, into a folder
    out = tmp_path / "per_core"
    assert main(["export", "-p", str(proj), "--all-cores", "--model", card["id"], "-o", str(out)]) == 0
    files = sorted(out.glob("*.csv"))
    assert [f.name.split("_")[0] for f in files] == ["K1", "K2", "K3"]
    assert export.read_provenance(files[2])["core"] == "K3"
    # one long CSV: a core column, every core named in the header; the model is found by default
    long = tmp_path / "long.csv"
    assert main(["export", "-p", str(proj), "--all-cores", "--long", "-o", str(long)]) == 0
    assert "3 cores (K1, K2, K3)" in capsys.readouterr().out
    df = pd.read_csv(long, comment="#")
    assert len(df) == 120 and df["core"].tolist() == ["K1"] * 40 + ["K2"] * 40 + ["K3"] * 40
    prov = export.read_provenance(long)
    assert json.loads(prov["cores"]) == ["K1", "K2", "K3"] and prov["model_id"] == card["id"]
    schemes = json.loads(prov["interval_scheme_by_core"])
    assert schemes == {"K1": "within-core", "K2": "within-core", "K3": "by-core"}
    assert long.read_text().startswith("# SIMULATED DATA")
    # an existing file is not replaced unasked
    assert main(["export", "-p", str(proj), "--all-cores", "--long", "-o", str(long)]) != 0
    assert main(["export", "-p", str(proj), "--core", "K1", "--long", "-o", str(tmp_path / "x.csv")]) != 0


def test_export_header_has_labels_hash_seeds_and_units(predicted, tmp_path):
    d, proj, card = predicted
    from xrfcore import predict
    predict.predict_core(proj, "K2", d / "model", device="cpu")
    out = tmp_path / "k2.csv"
    predict.export_core(proj, "K2", card["id"], out)
    prov = export.read_provenance(out)
    # a model fine-tuned on the project's stored lab samples: the matched table's hash, not None
    assert prov["labels_sha256"] == card["labels"]["table_sha256"] and prov["labels_sha256"] != "None"
    seeds = json.loads(prov["seeds"])
    assert seeds["seed"] == card["seeds"]["seed"] and seeds["ood_mask_seeds"] == [0, 1, 2]
    units = json.loads(prov["column_units"])
    assert units["depth_mm"] == "mm" and units["CaCO3"] == "wt%" and units["TOC_hi"] == "wt%"
    assert json.loads(prov["units"]) == {"CaCO3": "wt%", "TOC": "wt%"}


def test_export_fills_in_what_older_stored_predictions_lack(predicted, tmp_path):
    """Predictions stored before the labels hash and seeds were kept: filled in from the model card."""
    d, proj, card = predicted
    meta = {"model_path": str(d / "model"), "labels_sha256": None}
    export.complete_provenance(meta)
    assert meta["labels_sha256"] == card["labels"]["table_sha256"] and meta["seeds"]["seed"] == 0
    assert export.complete_provenance({"model_path": str(tmp_path / "gone")}).get("seeds") is None


def test_cancelled_predict_all_stores_nothing(predicted, tmp_path):
    import shutil

    from xrfcore.jobs import CancelToken, Cancelled
    d, proj0, _ = predicted
    proj = tmp_path / "copy.h5"
    shutil.copyfile(proj0, proj)
    before = proj.read_bytes()
    tok = CancelToken()

    def prog(done, total, msg=""):
        if "K2" in msg:        # the first core is done: cancel in the second
            tok.cancel()
    with pytest.raises(Cancelled):
        cruise.predict_all(proj, d / "model", device="cpu", progress=prog, token=tok)
    assert proj.read_bytes() == before
