"""The operator's journey on the bundled (SIMULATED) sample core, driven through the GUI offscreen:
import, look, load lab samples, fine-tune (head, tiny model), predict, export, reconstruction;
a cancelled import leaves the project unchanged; a bad labels file gives an error dialog."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest
from PySide6.QtCore import Qt

from tests.gui.conftest import wait_idle


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_first_run_page(window):
    assert window.stack.currentWidget() is window.first
    assert "SIMULATED" in window.first.open_sample.text()


def test_import_dialog_imports_and_reports(qtbot, sample_core, tmp_path, errors_shown):
    from app.dialogs.import_dialog import ImportDialog, report_frame
    from app.dialogs.report_dialog import write_frame_csv
    d = ImportDialog(folder=str(sample_core), projects_folder=tmp_path)
    qtbot.addWidget(d)
    assert d.project_edit.text() == str(tmp_path / "sample_core.h5")   # default from the folder name
    d.unit_combo.setCurrentIndex(0)
    d.start()
    qtbot.waitUntil(lambda: d.outcome == "ok", timeout=60_000)
    assert d.pages.currentIndex() == 2
    df = report_frame(d.report)
    assert len(df) == 300 and set(df["status"]) == {"ok"}
    # the depth part of each file name has columns of its own: no two rows look the same
    assert list(df.columns[:3]) == ["file", "section", "position_mm"]
    assert len(df.drop_duplicates(["section", "position_mm"])) == 300 and df["file"].str.endswith(".spe").all()
    shown = d.report_table.model
    assert [shown.headerData(i, Qt.Horizontal) for i in range(3)] == ["file", "section", "position_mm"]
    assert shown.data(shown.index(0, 2)) == "5"
    assert d.report_table.model.rowCount() == 300
    assert "300 files" in d.report_table.summary.text()
    write_frame_csv(tmp_path / "report.csv", d.report_table.model.df, d.report_table.header)
    back = pd.read_csv(tmp_path / "report.csv", comment="#")
    assert len(back) == 300 and "status" in back.columns
    assert (tmp_path / "sample_core.h5").exists() and not errors_shown


def test_cancelled_import_leaves_project_unchanged(qtbot, sample_core, project, tmp_path):
    from app.dialogs.import_dialog import ImportDialog
    # a second copy of the core under another name: all files are new to the project
    other = tmp_path / "other"
    shutil.copytree(sample_core, other)
    before = sha(project)
    d = ImportDialog(folder=str(other), current_project=str(project), projects_folder=tmp_path)
    qtbot.addWidget(d)
    d.core_edit.setText("OTHER-1")
    assert d.add_radio.isChecked() and d.target_project() == str(project)
    d.start()
    d.cancel()                      # the token is set directly from the GUI thread
    qtbot.waitUntil(lambda: d.outcome == "cancelled", timeout=60_000)
    d.job.wait()
    assert sha(project) == before
    assert "unchanged" in d.progress_label.text()
    assert not list(project.parent.glob(".*tmp*"))


def test_bad_labels_file_is_shown_in_the_dialog(window, qtbot, project, tmp_path, errors_shown, monkeypatch):
    window.open_project(str(project))
    qtbot.waitUntil(lambda: window.view is not None, timeout=30_000)
    wait_idle(qtbot, window)
    from app.dialogs import labels_dialog

    def fake_exec(self):
        if not self.read_error:
            qtbot.waitUntil(lambda: self.job is not None and self.job.isFinished(), timeout=30_000)
        qtbot.wait(50)
        return 0
    monkeypatch.setattr(labels_dialog.LabelsDialog, "exec", fake_exec)
    # 1. not a table at all: the dialog opens and says so where the mapping would be (no popup)
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"\x00\x01\x02garbage without separators\n")
    window.load_lab_samples(str(junk))
    assert not errors_shown
    dlg = window.labels_dialog
    assert "cannot be read as a table" in dlg.status.text() and "junk.csv" in dlg.status.text()
    assert "Traceback" not in dlg.status.text() and not dlg.check_btn.isEnabled()
    assert not dlg.buttons.button(dlg.buttons.StandardButton.Ok).isEnabled()
    # 2. a table without depth columns: read in the worker, the dialog reports it
    nodepth = tmp_path / "nodepth.csv"
    nodepth.write_text("core,CaCO3,TOC\nSIM01-1,50,1\n")
    shown_before = len(errors_shown)
    window.load_lab_samples(str(nodepth))
    # shown in the dialog, where the mapping can be changed (no popup before it opens)
    assert len(errors_shown) == shown_before
    status = window.labels_dialog.status.text()
    assert "no depth column" in status and "nodepth.csv" in status
    assert not window.labels_dialog.buttons.button(window.labels_dialog.buttons.StandardButton.Ok).isEnabled()
    # every error also went to the log file
    from app.errors import log_file
    assert "no depth column" in log_file().read_text()


def test_journey_labels_finetune_predict_export_reconstruct(window, qtbot, project, lab_csv, tiny_mae,
                                                            tmp_path, errors_shown, monkeypatch):
    w = window
    w.settings.default_model = str(tiny_mae)
    w.settings.device = "cpu"
    # open: tree of cores -> runs, downcore + spectrum views
    w.open_project(str(project))
    qtbot.waitUntil(lambda: w.view is not None, timeout=30_000)
    wait_idle(qtbot, w)
    assert w.stack.currentWidget() is w.workspace
    root = w.tree.topLevelItem(0)
    core_item = root.child(0)
    assert core_item.text(0).startswith("SIM01-1") and core_item.child(0).text(0).startswith("10kV-Run1")
    assert len(w.view.depth) == 300 and np.all(np.diff(w.view.depth) >= 0)
    assert "SIMULATED" in w.banner.text() and "Next: Load lab samples" in w.banner.text()
    assert [a.text() for a in w.toolbar.actions()][1:] == ["Load lab samples…", "Fine-tune…", "Predict", "Export CSV…"]
    # arrow keys step through depths
    w.spectrum.setFocus()
    qtbot.keyClick(w.spectrum, Qt.Key_Down)
    qtbot.keyClick(w.spectrum, Qt.Key_Down)
    assert w.idx == 2 and "depth 25.0 mm" in w.spectrum.title.text()
    w.select_depth(1000.0)
    assert abs(w.view.depth[w.idx] - 1000) <= 10
    w.overlay_current()
    w.add_sum_overlay(100.0, 200.0)
    wait_idle(qtbot, w)
    assert any(lab.startswith("sum 100-200 mm (10 spectra)") for lab in w.spectrum.overlay_labels())
    # after import: Ca, Fe and ln(Ca/Fe) drawn, no empty target axes, section tops marked
    assert list(w.downcore.trace_items) == ["Ca", "Fe", "ln(Ca/Fe)"]
    assert w.trace_actions[("Ca", "Fe")].isChecked()
    assert w.downcore.section_tops
    w.trace_actions[("Ca", "Fe")].setChecked(False)
    assert "ln(Ca/Fe)" not in w.downcore.trace_items
    w.trace_actions[("Ca", "Fe")].setChecked(True)
    assert "ln(Ca/Fe)" in w.downcore.trace_items
    from xrfcore.traces import TraceSpec
    w.set_trace_on(TraceSpec("Fe", normalise="scatter", log=True), True)
    assert "ln(Fe/scatter)" in w.downcore.trace_items
    w.set_trace_on(TraceSpec("Sr"), True)                  # not excited at 10 kV: said, not drawn
    assert errors_shown and "Sr" in errors_shown[-1][1] and "Sr" not in w.downcore.trace_items
    errors_shown.clear()
    w.depth_unit_actions["cm"].trigger()
    assert w.downcore.depth_unit == "cm"

    # load lab samples: mapping dialog shows matched rows, then they are stored
    from app.dialogs import labels_dialog

    def accept_after_check(self):
        qtbot.waitUntil(lambda: self.lab is not None, timeout=30_000)
        assert self.matched.model.rowCount() > 10
        assert self.buttons.button(self.buttons.StandardButton.Ok).isEnabled()
        assert "SIMULATED" in self.status.text()
        return 1
    monkeypatch.setattr(labels_dialog.LabelsDialog, "exec", accept_after_check)
    w.load_lab_samples(str(lab_csv))
    wait_idle(qtbot, w)
    qtbot.waitUntil(lambda: w.view is not None and len(w.view.labels) > 10, timeout=30_000)
    n_labels = len(w.view.labels)
    assert f"Next: Fine-tune… ({n_labels} lab samples, foundation model tiny_mae)" in w.banner.text()
    assert len(w.downcore.panels["CaCO3"].labs.data) == n_labels

    # fine-tune, head mode, tiny model, from the main window; "Predict the core" closes and predicts
    from app.dialogs import finetune_dialog
    dialogs = []

    def run_then_predict(self):
        dialogs.append(self)
        assert self.head.isChecked() and self.settings()["base_model"] == str(tiny_mae)
        assert not self.predict_btn.isEnabled()
        self.start()
        qtbot.waitUntil(lambda: self.outcome != "", timeout=120_000)
        assert self.outcome == "ok", self.status.text()
        assert self.predict_btn.isEnabled()
        self.predict_btn.click()
        return 1
    monkeypatch.setattr(finetune_dialog.FinetuneDialog, "exec", run_then_predict)
    w.finetune()
    d = dialogs[0]
    card = d.result["card"]
    assert set(card["metrics"]) == {"CaCO3", "TOC"}
    # out-of-distribution reference as `xrfcore finetune` makes it: the labelled core's single spectra
    assert card["ood"]["reference"] == "single training spectra" and card["ood"]["reference_n"] == 300
    assert "R²" in d.view.metrics.text() and "RMSE" in d.view.metrics.text()
    assert set(d.view.pvm_plots) == {"CaCO3", "TOC"} and not d.view.loss_plot.isVisibleTo(d)
    assert ("Validation" in d.view.pvm_title.text()) == (d.result["fit"] == "validation")
    assert "None" not in d.status.text() and "Saved model" in d.status.text()
    assert w.model_path == d.result["path"]
    assert set(w.training.pvm_plots) == {"CaCO3", "TOC"}   # the Training tab keeps the validation

    # predict (started by the dialog's button): stored in the project, drawn with bands and OOD shading
    qtbot.waitUntil(lambda: w.view is not None and w.view.prediction is not None, timeout=120_000)
    wait_idle(qtbot, w)
    assert "Next:" not in w.banner.text()
    # reopened in a later session, the project finds the installed model of its predictions
    w.model_path = None
    w.open_project(str(project))
    qtbot.waitUntil(lambda: w.model_path is not None, timeout=30_000)
    wait_idle(qtbot, w)
    from pathlib import Path
    assert Path(w.model_path).resolve() == Path(d.result["path"]).resolve()
    assert w.downcore.panels["CaCO3"].has_data and w.downcore.panels["TOC"].has_data
    x_lo, _ = w.downcore.panels["CaCO3"].lo.getData()
    x_mid, _ = w.downcore.panels["CaCO3"].line.getData()
    assert len(x_lo) == 300 and np.all(x_lo <= x_mid + 1e-9)
    assert "SIMULATED" in w.downcore.title.text()

    # export CSV through the dialog
    from app.dialogs import export_dialog
    out = tmp_path / "downcore.csv"

    def choose(self):
        self.path.setText(str(out))
        return 1
    monkeypatch.setattr(export_dialog.ExportDialog, "exec", choose)
    w.export_csv()
    wait_idle(qtbot, w)
    text = out.read_text()
    assert text.startswith("# SIMULATED DATA")
    assert f"# model_id: {card['id']}" in text
    df = pd.read_csv(out, comment="#")
    for col in ("core", "depth_mm", "section", "position_mm", "CaCO3", "CaCO3_lo", "CaCO3_hi", "TOC",
                "TOC_lo", "TOC_hi", "ood_flag", "model_id"):
        assert col in df.columns
    assert len(df) == 300 and (df["core"] == "SIM01-1").all() and (df["model_id"] == card["id"]).all()
    assert df["CaCO3"].between(0, 100).all() and (df["CaCO3_lo"] <= df["CaCO3"]).all()
    assert (df["TOC_hi"] >= df["TOC"]).all() and df["depth_mm"].is_monotonic_increasing

    # reconstruction view: masked patches shaded, reconstruction overlaid, new mask
    w.tabs.setCurrentWidget(w.recon)
    qtbot.waitUntil(lambda: w.recon.masked_spans() > 0, timeout=60_000)
    wait_idle(qtbot, w)
    first = [r.getRegion() for r in w.recon.mask_regions]
    assert len(w.recon.recon.getData()[0]) > 0 and "hidden" in w.recon.error_label.text()
    # the fine-tuned model's own base autoencoder reconstructs, named in the title
    assert w.recon_model().endswith("base_mae") and "base of the fine-tuned model" in w.recon.title.text()
    assert w.recon.log_box.isChecked()                       # log counts by default: data in log10
    y = w.recon.recon.getData()[1]
    assert np.nanmin(y) >= np.log10(0.5) - 1e-9 and np.isnan(y).any()  # hidden channels only, >= 0.5 counts
    w.recon.new_mask()
    qtbot.waitUntil(lambda: [r.getRegion() for r in w.recon.mask_regions] != first, timeout=60_000)
    wait_idle(qtbot, w)
    assert not errors_shown


def test_advanced_pretrain_on_project_spectra(window, qtbot, project, monkeypatch, errors_shown):
    from PySide6.QtWidgets import QInputDialog, QMessageBox
    w = window
    w.settings.device = "cpu"
    w.open_project(str(project))
    qtbot.waitUntil(lambda: w.view is not None, timeout=30_000)
    wait_idle(qtbot, w)
    monkeypatch.setattr(QInputDialog, "getInt", staticmethod(lambda *a, **k: (3, True)))
    infos = []
    monkeypatch.setattr(QMessageBox, "information", staticmethod(lambda *a, **k: infos.append(a)))
    w.pretrain_options = {"batch_size": 16, "window_channels": 256}
    w.pretrain()
    qtbot.waitUntil(lambda: w.foundation_path is not None or bool(errors_shown), timeout=120_000)
    wait_idle(qtbot, w)
    assert not errors_shown, errors_shown
    from pathlib import Path
    card = Path(w.foundation_path).with_suffix(".json")
    assert card.exists() and Path(w.foundation_path).with_suffix(".safetensors").exists()
    import json
    c = json.loads(card.read_text())
    assert c["kind"] == "mae" and c["simulated_data"] is True and c["training"]["steps"] == 3
    assert len(w.training.train) >= 1          # the live loss curve got points
    assert infos and w.recon_model() == w.foundation_path
    text = w.training.metrics.text()
    assert text.startswith("Pretrained pretrained-project-") and "(3 steps)" in text and "None" not in text


def test_drop_folder_or_project_and_settings(window, qtbot, project, sample_core, monkeypatch, errors_shown):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent
    w = window
    opened = []
    monkeypatch.setattr(w, "open_core_folder", lambda folder="": opened.append(folder))

    def drop(path):
        md = QMimeData()
        md.setUrls([QUrl.fromLocalFile(str(path))])
        ev = QDropEvent(QPointF(10, 10), Qt.CopyAction, md, Qt.LeftButton, Qt.NoModifier)
        w.dropEvent(ev)
        qtbot.wait(20)
    drop(sample_core)
    assert opened == [str(sample_core)]
    drop(project)
    qtbot.waitUntil(lambda: w.view is not None, timeout=30_000)
    wait_idle(qtbot, w)
    assert w.project == str(project.resolve())
    assert w.settings.recent_projects[0] == str(project.resolve())
    drop(project.with_suffix(".txt"))
    qtbot.waitUntil(lambda: bool(errors_shown), timeout=5_000)
    assert "drop a core folder" in errors_shown[-1][1]

    from app.dialogs.settings_dialog import SettingsDialog
    from app.settings import Settings
    d = SettingsDialog(w.settings, w)
    qtbot.addWidget(d)
    d.device.setCurrentText("cpu")
    d.recent.clear()
    d.apply()
    s = Settings.load()
    assert s.device == "cpu" and s.recent_projects == []


def test_opening_a_broken_project_shows_a_plain_error(window, qtbot, tmp_path, errors_shown):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"this is not an HDF5 file")
    window.open_project(str(bad))
    qtbot.waitUntil(lambda: bool(errors_shown), timeout=30_000)
    wait_idle(qtbot, window)
    title, text = errors_shown[-1]
    assert "broken.h5" in text and "Traceback" not in text
    assert window.stack.currentWidget() is window.first and window.project is None


def test_cancelled_finetune_saves_no_model(qtbot, project, lab_csv, tiny_mae, errors_shown):
    from app import engine
    from app.dialogs.finetune_dialog import FinetuneDialog
    from app.settings import models_dir
    from xrfcore import labels
    engine.store_labels(project, labels.read_lab_csv(lab_csv))
    d = FinetuneDialog(str(project), device="cpu", base_model=str(tiny_mae), cuda=False)
    qtbot.addWidget(d)
    d.full.setChecked(True)
    d.epochs.setValue(50)
    d.start()
    qtbot.waitUntil(lambda: d.status.text() != "Fine-tuning…" or d.outcome != "", timeout=60_000)  # first progress
    d.cancel()
    qtbot.waitUntil(lambda: d.outcome != "", timeout=60_000)
    d.job.wait()
    assert d.outcome == "cancelled" and d.result is None
    assert "no model was saved" in d.status.text()
    assert not list(models_dir().rglob("model.json")) and not errors_shown


def test_adapt_the_model_to_this_project(window, qtbot, project, monkeypatch, errors_shown):
    """Advanced > Adapt: the time estimate is shown before, the before/after table after, and the
    adapted model becomes the base for fine-tuning and reconstruction."""
    from PySide6.QtWidgets import QInputDialog, QMessageBox
    w = window
    w.settings.device = "cpu"
    w.open_project(str(project))
    qtbot.waitUntil(lambda: w.view is not None, timeout=30_000)
    wait_idle(qtbot, w)
    asked, infos = [], []

    def get_int(*a, **k):
        asked.append(a[2])
        return 3, True
    monkeypatch.setattr(QInputDialog, "getInt", staticmethod(get_int))
    monkeypatch.setattr(QMessageBox, "information", staticmethod(lambda *a, **k: infos.append(a)))
    assert w.act_adapt.isEnabled()
    w.adapt()
    qtbot.waitUntil(lambda: w.foundation_path is not None or bool(errors_shown), timeout=180_000)
    wait_idle(qtbot, w)
    assert not errors_shown, errors_shown
    assert "min on this computer's CPU" in asked[0] and "spectra" in asked[0]
    import json
    from pathlib import Path
    card = json.loads(Path(w.foundation_path).with_suffix(".json").read_text())
    assert card["adapted_from"]["id"] and card["adaptation"]["steps"] == 3
    table = infos[-1][2]
    assert "before" in table and "after" in table and "all held-out" in table
    # the sample core is simulated 10 kV: the window is the base's, and the dialog says so
    assert "Energy window kept: 0-10.24 keV" in table and "relative error in counts" in table
    assert w.recon_model() == w.foundation_path
    # a later session (a fresh window) opening the same project offers the adapted model by default;
    # opening another project drops it
    adapted = w.foundation_path
    w.foundation_path = w.foundation_for = None
    w.open_project(str(project))
    qtbot.waitUntil(lambda: w.foundation_path is not None, timeout=30_000)
    wait_idle(qtbot, w)
    assert w.foundation_path == adapted
    assert "adapted to this project" in w.statusBar().currentMessage()
    other = Path(str(project)).with_name("other.h5")
    import shutil
    shutil.copyfile(project, other)
    w.open_project(str(other))
    qtbot.waitUntil(lambda: w.project == str(other.resolve()), timeout=30_000)
    wait_idle(qtbot, w)
    assert w.foundation_path is None
