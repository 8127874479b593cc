"""Whole cruises in the app (issue 14 item 4), offscreen: a parent folder of core folders imported in
one job with one report; Predict all cores (progress, Cancel stores nothing); Export all cores as one
CSV per core or one long CSV; Compare two cores side by side on one value scale."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from tests.gui.conftest import wait_idle
from tests.test_finetune import base_path  # noqa: F401  (fixture)
from tests.test_importer import make_core


@pytest.fixture
def cruise_folder(tmp_path):
    parent = tmp_path / "cruise M123"
    for i, core in enumerate(("GeoB1-1", "GeoB2-1", "GeoB3-1")):
        make_core(parent, np.random.default_rng(i), core=core, positions=(10, 20, 30), runs=((1, 10),))
    return parent


@pytest.fixture(scope="module")
def cruise_model(tmp_path_factory, base_path):  # noqa: F811
    """A project of three cores and a head model fine-tuned on two of them."""
    from tests.test_predict import lab_csv, make_project
    from xrfcore.train import finetune as ft
    d = tmp_path_factory.mktemp("cruise_gui")
    proj = d / "cruise.h5"
    truth = make_project(proj, cores=("K1", "K2", "K3"), n=30)
    lab = lab_csv(d / "lab.csv", {c: truth[c] for c in ("K1", "K2")}, step=2)
    ft.finetune_project(proj, lab, base_path, d / "model", mode="head", store_labels=False)
    return proj, d / "model"


def test_import_a_cruise_folder_one_job_one_report(qtbot, cruise_folder, tmp_path, errors_shown):
    from app.dialogs.import_dialog import ImportDialog, report_frame
    d = ImportDialog(folder=str(cruise_folder), projects_folder=tmp_path, cruise=True)
    qtbot.addWidget(d)
    assert d.windowTitle() == "Import a cruise folder"
    assert d.found_label.text().startswith("3 core folders: GeoB1-1, GeoB2-1, GeoB3-1")
    assert not d.core_edit.isVisibleTo(d)              # no one core name for every core
    d.core_edit.setText("WRONG")                       # even if set, never used for a cruise
    d.start()
    qtbot.waitUntil(lambda: d.outcome == "ok", timeout=60_000)
    df = report_frame(d.report)
    assert sorted(df["core"].unique()) == ["GeoB1-1", "GeoB2-1", "GeoB3-1"] and len(df) == 18
    assert d.report_table.summary.text().startswith("Found 3 cores in cruise M123: GeoB1-1 (6 files")
    from xrfcore import store
    with store.Project.open(tmp_path / "cruise M123.h5") as p:
        assert p.cores() == ["GeoB1-1", "GeoB2-1", "GeoB3-1"]
    assert not errors_shown


def test_cruise_menu_import_predict_all_export_compare(window, qtbot, cruise_model, tmp_path, errors_shown,
                                                       monkeypatch):
    from app.dialogs import cruise_export_dialog
    from xrfcore import export, store
    w = window
    w.settings.device = "cpu"
    proj = tmp_path / "cruise.h5"
    shutil.copyfile(cruise_model[0], proj)
    w.open_project(str(proj))
    qtbot.waitUntil(lambda: w.view is not None, timeout=30_000)
    wait_idle(qtbot, w)
    texts = [a.text() for a in w.menuBar().actions()]
    assert "C&ruise" in texts
    assert w.act_import_cruise.isEnabled() and w.act_compare.isEnabled()
    assert not w.act_predict_all.isEnabled() and not w.act_export_all.isEnabled()   # no model yet
    assert "one folder per core" in w.act_import_cruise.toolTip()

    # Cancel: nothing is stored
    w.set_model(str(cruise_model[1] / "model"))
    assert w.act_predict_all.isEnabled()
    before = proj.read_bytes()
    w.predict_all_cores()
    assert w.progress.isVisibleTo(w) and "Predicting 3 cores" in w.progress.label.text()
    w.progress.cancel_btn.click()
    wait_idle(qtbot, w, timeout=120_000)
    assert proj.read_bytes() == before

    # Predict all cores: one job, every core stored
    seen = []
    w.predict_all_cores()
    w.jobs[-1].progress.connect(lambda d, t, m: seen.append(m))
    qtbot.waitUntil(lambda: getattr(w, "last_predict_all", None) is not None, timeout=180_000)
    wait_idle(qtbot, w)
    res = w.last_predict_all
    assert res["predicted"] == {"K1": 30, "K2": 30, "K3": 30} and not errors_shown
    assert any("(3 of 3)" in m for m in seen)
    with store.Project.open(proj) as p:
        assert all(p.predictions(c) for c in ("K1", "K2", "K3"))
    qtbot.waitUntil(lambda: w.act_export_all.isEnabled(), timeout=30_000)

    # Export all cores: one long CSV, then one CSV per core
    out = tmp_path / "all.csv"

    def long_csv(self):
        self.long.setChecked(True)
        self.path.setText(str(out))
        return 1
    monkeypatch.setattr(cruise_export_dialog.CruiseExportDialog, "exec", long_csv)
    w.export_all_cores()
    qtbot.waitUntil(lambda: out.exists(), timeout=30_000)
    wait_idle(qtbot, w)
    df = pd.read_csv(out, comment="#")
    assert len(df) == 90 and list(df["core"].unique()) == ["K1", "K2", "K3"]
    assert json.loads(export.read_provenance(out)["cores"]) == ["K1", "K2", "K3"]
    folder = tmp_path / "per core"

    def per_core(self):
        assert self.per_core.isChecked() and self.path_label.text() == "Folder"
        self.path.setText(str(folder))
        return 1
    monkeypatch.setattr(cruise_export_dialog.CruiseExportDialog, "exec", per_core)
    w.export_all_cores()
    qtbot.waitUntil(lambda: len(list(folder.glob("*.csv"))) == 3, timeout=30_000)
    wait_idle(qtbot, w)
    assert sorted(p.name.split("_")[0] for p in folder.glob("*.csv")) == ["K1", "K2", "K3"]

    # Compare two cores: the predicted CaCO3 of K1 beside K3, one value scale, interval bands
    w.compare_cores()
    d = w.compare_dialog
    qtbot.addWidget(d)
    assert (d.a.currentText(), d.b.currentText()) == (w.view.core, "K2" if w.view.core != "K2" else "K1")
    d.b.setCurrentText("K3")
    i = next(i for i in range(d.what.count()) if d.what.itemData(i)[0] == "prediction"
             and d.what.itemData(i)[2] == "CaCO3")
    d.what.setCurrentIndex(i)
    xa, ya = d.left.line.getData()
    xb, yb = d.right.line.getData()
    assert len(xa) == len(xb) == 30 and np.all(np.diff(ya) >= 0)
    assert d.left.plot.titleLabel.text.startswith(w.view.core) and d.right.plot.titleLabel.text.startswith("K3")
    assert len(d.right.band_lo.getData()[0]) == 30
    ra, rb = d.x_ranges()
    assert ra == pytest.approx(rb)                                    # linked value axes
    lo, hi = ra
    assert lo <= min(np.nanmin(xa), np.nanmin(xb)) and hi >= max(np.nanmax(xa), np.nanmax(xb))
    d.left.plot.setXRange(10, 20, padding=0)
    assert d.x_ranges()[1] == pytest.approx((10, 20))
    assert "shared" in d.note.text() and not errors_shown


def test_compare_element_ratio_of_imported_cores(qtbot, cruise_folder, tmp_path):
    from app.views.compare_view import CompareDialog
    from xrfcore import importer
    proj = tmp_path / "c.h5"
    importer.import_folder(cruise_folder, proj)
    d = CompareDialog(str(proj), ["GeoB1-1", "GeoB2-1", "GeoB3-1"], core_a="GeoB1-1", core_b="GeoB3-1")
    qtbot.addWidget(d)
    keys = [d.what.itemData(i) for i in range(d.what.count())]
    assert keys[0] == ("ratio", "Ca", "Fe")                           # no predictions yet: ratios only
    xa, ya = d.left.line.getData()
    assert len(xa) == 6 and np.isfinite(xa).all() and d.left.plot.getAxis("bottom").labelText == "ln(Ca/Fe)"
    assert d.x_ranges()[0] == pytest.approx(d.x_ranges()[1])
    d.depth_link.setCurrentIndex(1)
    d.left.plot.setYRange(0, 5000, padding=0)
    assert d.right.plot.viewRange()[1] == pytest.approx([0, 5000])
