"""Views and wiring pieces on small in-memory arrays (no project, no model)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyqtgraph as pg
import pytest
from PySide6.QtCore import Qt

from tests.gui.conftest import synthetic_spectra


def test_spectrum_view_markers_readout_overlays(qtbot):
    from app.views.spectrum_view import SpectrumView
    v = SpectrumView()
    qtbot.addWidget(v)
    X, e = synthetic_spectra(3)
    v.set_energies(e, max_kev=11)
    v.set_lines([("Ca", "Ka", 3.69), ("Ca", "Kb", 4.01), ("Ca", "La", 0.34), ("Fe", "Ka", 6.40),
                 ("Ba", "La", 4.47)], selected=("Ca", "Fe"))
    v.show_spectrum(X[0], "depth 10 mm")
    assert v.marker_labels() == ["Ca Ka", "Fe Ka"]      # Ca La hidden: its K lines identify it
    v.set_elements(["Ba"])
    assert v.marker_labels() == ["Ba La"]
    assert "nearest line Ba La at 4.470 keV" in v.readout_text(4.4)
    v.set_elements(["Ca", "Fe"])
    text = v.readout_text(3.69)
    assert "3.690 keV" in text and f"counts {X[0][184]}" in text and "Ca Ka" in text
    v.add_overlay(X[1], "a")
    v.add_overlay(X[2], "b")
    assert v.overlay_labels() == ["a", "b"]
    v.log_box.setChecked(False)
    assert np.array_equal(v.curve.getData()[1], X[0].astype(float))
    assert v.plot.getViewBox().viewRange()[0][1] < 11.5      # the run's energy range survives the toggle
    assert v.plot.getViewBox().viewRange()[1][1] > X[0].max() * 1.2   # headroom for the line labels
    v.log_box.setChecked(True)
    assert v.curve.yData.min() >= 0.5            # zero counts drawn at 0.5 on a log axis
    v.add_overlay(X[2] * 10, "sum")                          # an overlay far above the spectrum stays in view
    assert 10 ** v.plot.getViewBox().viewRange()[1][1] > X[2].max() * 10
    v.clear_overlays()
    assert v.overlay_labels() == []
    steps = []
    v.stepRequested.connect(steps.append)
    qtbot.keyClick(v, Qt.Key_Down)
    qtbot.keyClick(v, Qt.Key_Up)
    assert steps == [1, -1]


def test_downcore_view_bands_labs_ood_traces(qtbot):
    from app.views.downcore_view import DowncoreView, runs_of_true
    assert runs_of_true(np.array([0, 1, 1, 0, 1], bool)) == [(1, 3), (4, 5)]
    v = DowncoreView()
    qtbot.addWidget(v)
    z = np.arange(100) * 10.0
    v.set_depths(z)
    v.set_prediction("CaCO3", z, np.full(100, 50.0), np.full(100, 45.0), np.full(100, 55.0))
    assert v.panels["CaCO3"].has_data
    x, y = v.panels["CaCO3"].hi.getData()
    assert np.allclose(x, 55) and np.allclose(y, z)
    v.set_lab_samples("TOC", [15.0, 95.0], [1.0, 2.0], [10.0, 90.0], [20.0, 100.0])
    assert len(v.panels["TOC"].labs.data) == 2
    flags = np.zeros(100, bool)
    flags[[3, 4, 5, 50]] = True
    v.set_ood(z, flags)
    assert v.ood_spans == [(25.0, 55.0), (495.0, 505.0)]
    assert len(v.panels["TOC"].ood) == 2
    why = np.where(flags, "low counts (x0.31 of expected): crack or gap?", "")
    v.set_ood(z, flags, reasons=why)  # the reason shows on hover
    tip = v.panels["CaCO3"].ood[0].toolTip()
    assert tip.startswith("Out of distribution, 30-50 mm (3 depths)") and "40 mm: low counts (x0.31" in tip
    v.set_trace("ln(Ca/Fe)", z, np.sin(z))
    v.set_trace("Ca", z, 1e5 + z)                     # each trace in its own panel (own scale)
    assert list(v.trace_items) == ["ln(Ca/Fe)", "Ca"]
    assert v.panels["trace:Ca"].plot.getAxis("top").labelText == "Ca"
    v.remove_trace("ln(Ca/Fe)")
    assert list(v.trace_items) == ["Ca"] and "trace:ln(Ca/Fe)" not in v.panels
    v.remove_trace("Ca")
    assert not v.trace_items
    got = []
    v.depthClicked.connect(got.append)
    v.set_cursor(200.0)
    assert v.cursors[0].value() == 200.0


def test_reconstruction_view_shades_masked_patches(qtbot):
    from app.views.reconstruction_view import ReconstructionView
    v = ReconstructionView()
    qtbot.addWidget(v)
    mask = np.zeros(512, bool)
    mask[16:48] = True
    mask[96:112] = True
    res = {"measured": np.ones(512), "reconstruction": np.ones(512) * 1.1, "mask": mask,
           "energies_kev": np.arange(512) * 0.02, "error": np.full(512, 0.1),
           "rmse_hidden": 0.1, "relative_hidden": 0.1, "loss": 0.2}
    res["reconstruction"][20] = -300.0                      # a model's guess can undershoot zero
    assert v.log_box.isChecked()                            # log counts by default
    assert v.measured.zValue() > v.recon.zValue()           # measured drawn over the reconstruction
    v.log_box.setChecked(False)
    v.show_result(res, "test")
    # per hidden patch (16 channels): three patches, the error of each on hover
    assert [(a, b) for a, b, *_ in v.patch_errors] == [(16, 32), (32, 48), (96, 112)]
    assert v.patch_at(100 * 0.02)[2] == pytest.approx(0.1)
    assert v.patch_at(60 * 0.02) is None
    first = v.patch_at(20 * 0.02)
    assert first[2] == pytest.approx((300 + 1 + 15 * 0.1) / 16)
    vb = v.plot.getPlotItem().vb
    v.resize(600, 400)
    v.show()
    qtbot.waitExposed(v)
    vb.setRange(xRange=(0, 10.24), yRange=(0, 2), padding=0)
    v._on_hover(vb.mapViewToScene(pg.Point(100 * 0.02, 1.0)))
    assert "Hidden patch 1.92-2.22 keV: relative error 10.0%" in v.hover_label.text()
    assert v.masked_spans() == 2
    assert "10.0%" in v.error_label.text()
    # drawn only on the hidden channels, never below zero counts
    y = v.recon.getData()[1]
    assert np.isnan(y[~mask]).all() and np.isfinite(y[mask]).all() and y[mask].min() == 0.0
    assert "hidden channels" in v.recon.opts["name"]
    v.all_box.setChecked(True)                                  # optionally everywhere
    y = v.recon.getData()[1]
    assert np.isfinite(y).all() and y.min() == 0.0
    v.log_box.setChecked(True)
    assert v.recon.yData.min() >= np.log10(0.5) - 1e-9          # log axis: 0.5 counts at least
    asked = []
    v.requested.connect(lambda r, s: asked.append((r, s)))
    v.set_mask_ratio(0.75)
    v.new_mask()
    assert asked == [(0.75, 1)]


def test_training_view_parses_losses_and_shows_metrics(qtbot):
    from app.views.training_view import TrainingView, parse_losses
    assert parse_losses("epoch 3: train 0.123 val 0.456") == {"train": 0.123, "val": 0.456}
    assert parse_losses("loss 0.0123 val 2e-2") == {"train": 0.0123, "val": 0.02}
    assert parse_losses("embedding labelled spectra") == {}
    v = TrainingView()
    qtbot.addWidget(v)
    v.add_progress(1, 10, "epoch 1: train 0.5 val 0.7")
    v.add_progress(2, 10, "epoch 2: train 0.4 val 0.6")
    assert v.train == [(1, 0.5), (2, 0.4)] and v.val == [(1, 0.7), (2, 0.6)]
    assert v.loss_plot.getPlotItem().getAxis("bottom").labelText == "epoch"
    v.show_validation({"CaCO3": [1, 2, 3]}, {"CaCO3": [1.1, 2.0, 2.9]}, {"CaCO3": {"r2": 0.97, "rmse": 0.08}})
    assert "R² 0.970" in v.metrics.text() and "RMSE 0.08" in v.metrics.text()


def test_validation_plot_one_panel_per_target_labelled(qtbot):
    from app.views.training_view import TrainingView
    v = TrainingView()
    qtbot.addWidget(v)
    metrics = {"CaCO3": {"r2": 0.94012345, "rmse": 5.1934567, "n": 3}, "TOC": {"r2": 0.0661, "rmse": 0.34912, "n": 2}}
    # held-out predictions as a card keeps them (JSON: None where a target was not measured)
    v.show_validation({"CaCO3": [10.0, 50.0, 80.0], "TOC": [0.5, None, 1.5]},
                      {"CaCO3": [12.0, 47.0, 79.0], "TOC": [0.7, 0.9, 1.2]}, metrics,
                      fit="validation", scheme="5-fold out-of-fold (random)")
    assert set(v.pvm_plots) == {"CaCO3", "TOC"}            # separate axes: TOC is not squashed
    assert "Validation" in v.pvm_title.text() and "5-fold" in v.pvm_title.text()
    toc = v.pvm_plots["TOC"]
    title = toc.titleLabel.text
    assert "TOC (validation, 2 samples)" in title and "R² 0.066" in title and "RMSE 0.349 wt %" in title
    x, y = toc.listDataItems()[-1].getData()
    assert list(x) == [0.5, 1.5] and list(y) == [0.7, 1.2]
    xr = toc.getViewBox().viewRange()[0]
    assert -0.1 < xr[0] < 0.5 and xr[1] < 2                          # its own range, not 0-100
    assert "RMSE 5.19 wt %" in v.metrics.text() and "5.1934" not in v.metrics.text()
    # a fit on the training samples is never called validation
    v.show_validation({"CaCO3": [1, 2, 3]}, {"CaCO3": [1, 2, 3]}, metrics, fit="training fit")
    assert "in-sample" in v.pvm_title.text() and "in-sample fit" in v.pvm_plots["CaCO3"].titleLabel.text
    v.reset()
    assert not v.pvm_plots


def test_numbers_and_names_for_operators():
    from app.formatting import model_name, sig
    from app.model_actions import pretrain_summary
    assert sig(0.13908596336841583) == "0.1391" and sig(None) == "-" and sig(float("nan")) == "-"
    assert sig(1117.4, 3, "counts") == "1117 counts" and sig(0.008391234, 3) == "0.00839"
    assert model_name({"name": "xrfcore-tiny-sim-v3", "id": "mae-x"}) == "xrfcore-tiny-sim-v3"
    assert model_name({}, "/m/finetuned-a/model") == "finetuned-a"
    text = pretrain_summary({"id": None, "metrics": {"train_loss": 0.13908596336841583, "val_loss": None},
                             "training": {"steps": 300}, "simulated_data": True},
                            "/tmp/x/models/pretrained-sample-20261127")
    assert text.startswith("Pretrained pretrained-sample-20261127 (300 steps): final training loss 0.1391")
    assert "None" not in text and "0.13908" not in text and "SIMULATED" in text


def test_validation_points_from_card():
    from app.engine import validation_points
    assert validation_points({"targets": ["CaCO3"], "validation": {"scheme": "x"}}) is None
    m, p = validation_points({"targets": ["CaCO3", "TOC"], "validation": {
        "measured": {"CaCO3": [1.0, 2.0], "TOC": [None, 0.5]}, "predicted": {"CaCO3": [1.5, 2.5], "TOC": [0.4, 0.6]}}})
    assert np.isnan(m["TOC"][0]) and p["CaCO3"].tolist() == [1.5, 2.5]


def test_job_thread_progress_result_cancel_and_failure(qtbot):
    from app.workers import JobThread
    from xrfcore.jobs import Cancelled  # noqa: F401

    def job(n, *, progress, token):
        for i in range(n):
            token.raise_if_cancelled()
            progress(i + 1, n, f"step {i + 1}")
        return n * 2

    t = JobThread(job, 5)
    seen = []
    t.progress.connect(lambda d, n, m: seen.append(d))
    with qtbot.waitSignal(t.succeeded, timeout=5000) as blocker:
        t.start()
    assert blocker.args == [10] and seen[-1] == 5
    t.wait()

    import threading
    gate = threading.Event()

    def slow(*, progress, token):
        gate.wait(5)
        token.raise_if_cancelled()
        return 1
    t2 = JobThread(slow)
    with qtbot.waitSignal(t2.cancelled, timeout=5000):
        t2.start()
        t2.cancel()          # set from the GUI thread while the worker is busy
        gate.set()
    t2.wait()

    def bad(*, progress, token):
        raise ValueError("lab.csv: no depth column found")
    t3 = JobThread(bad)
    with qtbot.waitSignal(t3.failed, timeout=5000) as b3:
        t3.start()
    assert b3.args == ["lab.csv: no depth column found"]
    t3.wait()


def test_settings_roundtrip_and_recent(app_home):
    from app.settings import Settings, data_dir, log_dir
    s = Settings.load()
    assert s.device == "auto" and str(data_dir()).startswith(str(app_home))
    assert str(log_dir()).startswith(str(app_home))
    for i in range(12):
        s.add_recent(app_home / f"p{i}.h5")
    s.device = "cpu"
    s.save()
    t = Settings.load()
    assert t.device == "cpu" and len(t.recent_projects) == 8 and t.recent_projects[0].endswith("p11.h5")


def test_frame_model_and_csv_export(tmp_path, qtbot):
    from app.dialogs.report_dialog import ReportDialog, write_frame_csv
    df = pd.DataFrame({"path": ["a.spe", "b.spe"], "status": ["ok", "rejected"], "message": ["", "empty file"]})
    d = ReportDialog("Report", df, "2 files", csv_name="r.csv")
    qtbot.addWidget(d)
    m = d.report.model
    assert m.rowCount() == 2 and m.headerData(2, Qt.Horizontal) == "message"
    assert m.data(m.index(1, 2)) == "empty file"
    out = tmp_path / "r.csv"
    write_frame_csv(out, df, header="import report for X")
    text = out.read_text()
    assert text.startswith("# import report for X\n") and "b.spe,rejected,empty file" in text


def test_traces_log_ratio_uses_line_windows():
    from xrfcore import energy, traces
    X, e = synthetic_spectra(4)
    g = energy.Grid(2048, 0.02, 0.0)
    ca = traces.window_counts(X, g, "Ca")
    fe = traces.window_counts(X, g, "Fe")
    assert ca.shape == (4,) and (ca > fe).all()
    r = traces.log_ratio(X, g, "Ca", "Fe")
    assert np.allclose(r, np.log((ca + 1) / (fe + 1)))


def test_a_weak_target_is_said_after_fine_tuning(window):
    w = window
    warn = ["TOC: validation R2 -0.61 (n=10): no skill, worse than the mean of the labels; do not use these values"]
    card = {"mode": "head", "metrics": {"TOC": {"r2": -0.61, "rmse": 1.4, "n": 10}}, "skill_warnings": warn}
    w.show_finetune_result({"card": card, "measured": {"TOC": [1.0, 2.0]}, "predicted": {"TOC": [1.5, 1.1]}})
    assert "Warning" in w.training.metrics.text() and "no skill" in w.training.metrics.text()
    assert "with a warning" in w.statusBar().currentMessage()


def test_downcore_view_second_pass(qtbot):
    """No empty target axes before there is something to draw; a legend with the interval level;
    section tops marked; depth in cm or m; a single flagged depth is still a visible band."""
    from app.views.downcore_view import DowncoreView
    v = DowncoreView()
    qtbot.addWidget(v)
    z = np.arange(300) * 10.0
    v.set_depths(z)
    assert not v.panels["CaCO3"].plot.isVisible() and not v.panels["TOC"].plot.isVisible()
    v.set_trace("Ca", z, 1e5 + z)
    assert v.panels["trace:Ca"].plot.getAxis("left").labelText == "Depth (mm)"
    v.set_lab_samples("TOC", [15.0], [1.0])
    assert v.panels["TOC"].plot.isVisible() and not v.panels["CaCO3"].plot.isVisible()
    v.set_prediction("CaCO3", z, np.full(300, 50.0), np.full(300, 45.0), np.full(300, 55.0))
    assert v.panels["CaCO3"].plot.isVisible()
    # the depth axis (values and label) on the first shown panel only
    assert v.panels["CaCO3"].plot.getAxis("left").labelText == "Depth (mm)"
    assert v.panels["TOC"].plot.getAxis("left").labelText == ""
    v.set_interval_text("90 % conformal intervals, by-core calibration")
    labels = [lab.text for _, lab in v.legend.items]
    assert labels == ["prediction", "90 % conformal intervals, by-core calibration", "lab samples",
                      "out of distribution (hover: why)"]
    v.set_sections([0.0, 1000.0, 2000.0], ["1", "2", "3"])
    assert [ln.value() for ln in v.panels["CaCO3"].section_lines] == [1000.0, 2000.0]
    assert "section 2 starts at 1000 mm" in v.panels["CaCO3"].section_lines[0].toolTip()
    v.set_depth_unit("m")
    ax = v.panels["CaCO3"].plot.getAxis("left")
    assert ax.labelText == "Depth (m)" and ax.scale == pytest.approx(0.001)
    assert "starts at 2 m" in v.panels["CaCO3"].section_lines[1].toolTip()
    with pytest.raises(ValueError):
        v.set_depth_unit("ft")
    flags = np.zeros(300, bool)
    flags[100] = True
    v.set_ood(z, flags)
    (a, b), = v.ood_spans
    assert b - a >= 0.004 * 2990 - 1e-9 and a < 1000 < b      # one depth: still a visible band
