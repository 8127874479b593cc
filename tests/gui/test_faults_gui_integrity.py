"""Issue 11, part C, in the app: Fine-tune needs lab samples, lab-table checks in the labels dialog,
stale predictions marked in the downcore view, damaged projects as one plain sentence."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.gui.conftest import wait_idle


def open_in(window, qtbot, path):
    window.open_project(str(path))
    qtbot.waitUntil(lambda: window.view is not None, timeout=30_000)
    wait_idle(qtbot, window)


def test_finetune_disabled_until_the_core_has_lab_samples(window, qtbot, project, lab_csv):
    """Was: *Fine-tune* enabled with no lab samples."""
    open_in(window, qtbot, project)
    act = window.act_finetune
    assert not act.isEnabled()
    assert "needs lab samples of SIM01-1" in act.toolTip() and "Load lab samples" in act.toolTip()
    from app import engine
    from xrfcore import labels
    engine.store_labels(project, labels.read_lab_csv(lab_csv))
    window.load_core(window.view.core, window.view.run)
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: len(window.view.labels) > 0, timeout=30_000)
    assert act.isEnabled() and "lab samples of SIM01-1" in act.toolTip()


def dialog(qtbot, path, project):
    from app.dialogs.labels_dialog import LabelsDialog
    d = LabelsDialog(path, str(project), default_core="SIM01-1")
    qtbot.addWidget(d)
    return d


def checked(qtbot, d):
    d.check()
    qtbot.waitUntil(lambda: d.job is not None and d.job.isFinished(), timeout=30_000)
    qtbot.wait(50)


def test_labels_dialog_cm_read_as_mm_cannot_be_used_silently(qtbot, project, lab_csv, tmp_path, errors_shown):
    """Was: lab depths in cm read as mm: every row flagged, yet *Use these samples* stayed enabled and
    nothing said the samples cover 10 % of the core."""
    df = pd.read_csv(lab_csv, comment="#")
    bad = tmp_path / "cm_as_mm.csv"
    df.assign(depth_top_mm=df.depth_top_mm / 10, depth_bottom_mm=df.depth_bottom_mm / 10).to_csv(
        bad, index=False, header=["core", "depth_top_mm", "depth_bottom_mm", "CaCO3 (wt%)", "TOC (wt%)"])
    d = dialog(qtbot, bad, project)
    checked(qtbot, d)
    ok = d.buttons.button(d.buttons.StandardButton.Ok)
    assert not ok.isEnabled() and "tick the box" in ok.toolTip()
    assert d.warnings.isVisibleTo(d) and "cover only" in d.warnings.text()
    assert "Depth coverage: SIM01-1: samples span" in d.status.text()
    assert d.accept_box.isVisibleTo(d)
    d.accept_box.setChecked(True)
    assert ok.isEnabled()
    # the right unit: nothing to confirm
    d.unit.setCurrentText("cm")
    checked(qtbot, d)
    assert d.pending() == [] and ok.isEnabled() and not d.accept_box.isVisibleTo(d)
    assert not errors_shown


def test_labels_dialog_matching_nothing_is_disabled_with_reason(qtbot, project, tmp_path):
    bad = tmp_path / "other.csv"
    bad.write_text("core,depth_mm,CaCO3 (wt%)\nNOT-THIS-CORE,10,40\nNOT-THIS-CORE,20,41\n")
    d = dialog(qtbot, bad, project)
    checked(qtbot, d)
    ok = d.buttons.button(d.buttons.StandardButton.Ok)
    assert not ok.isEnabled() and "no sample matches" in ok.toolTip()
    assert "cannot be used" in d.warnings.text() and not d.accept_box.isVisibleTo(d)


def test_labels_dialog_unit_question_shown_in_the_dialog(qtbot, project, tmp_path, errors_shown):
    """TOC as a fraction beside CaCO3 in wt%: the dialog asks (no popup); choosing the unit reads it."""
    p = tmp_path / "frac.csv"
    p.write_text("core,depth_top_mm,depth_bottom_mm,CaCO3 (wt%),TOC\n"
                 "SIM01-1,100,110,45,0.0084\nSIM01-1,500,510,50,0.0091\nSIM01-1,900,910,38,0.012\n")
    d = dialog(qtbot, p, project)
    checked(qtbot, d)
    assert "does not state its unit" in d.status.text() and not errors_shown
    assert not d.buttons.button(d.buttons.StandardButton.Ok).isEnabled()
    d.values.setCurrentText("fraction (0-1, converted to wt%)")
    checked(qtbot, d)
    # the header says CaCO3 is wt%, the choice applies to the unstated TOC only
    assert d.lab.units == {"CaCO3": "wt%", "TOC": "fraction"}
    assert d.lab.samples.CaCO3.tolist() == [45, 50, 38]
    assert d.lab.samples.TOC.tolist() == pytest.approx([0.84, 0.91, 1.2])


def test_stale_prediction_is_marked_in_the_view(window, qtbot, project):
    """Was: after the spectra changed, the old prediction still displayed as if current."""
    from xrfcore import store
    with store.Project.open(project) as p:
        n = int(p.read_run("SIM01-1", "10kV-Run1").counts.shape[0])
    df = pd.DataFrame({"core": "SIM01-1", "depth_mm": np.arange(n - 20) * 5.0, "CaCO3": 50.0,
                       "CaCO3_lo": 45.0, "CaCO3_hi": 55.0, "ood_flag": False, "model_id": "m-old"})
    with store.transaction(project) as w:
        w.write_predictions("SIM01-1", "m-old", df, {"model_id": "m-old", "run": "10kV-Run1"})
    open_in(window, qtbot, project)
    assert window.view.prediction is not None
    stale = window.downcore.stale
    assert stale.isVisibleTo(window) and stale.text().startswith("STALE prediction: spectra changed")
    assert f"this prediction has {n - 20} depths" in stale.text()


def test_damaged_project_dialog_is_one_plain_sentence(window, qtbot, project, errors_shown):
    data = project.read_bytes()
    project.write_bytes(data[: len(data) // 3])
    window.open_project(str(project))
    qtbot.waitUntil(lambda: bool(errors_shown), timeout=30_000)
    wait_idle(qtbot, window)
    title, text = errors_shown[-1]
    assert str(project) in text and "damaged" in text and "truncated" in text
    assert "nothing was written" in text and "backup" in text
    assert "Unable to" not in text and "Traceback" not in text
