"""Model > Suggest sampling depths…: asks K, runs the suggestion as a job, marks the depths on the
downcore view and saves the sampling list CSV (offscreen)."""
from __future__ import annotations

import pandas as pd
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from tests.gui.conftest import wait_idle


def test_suggest_sampling_depths(window, qtbot, project, tiny_mae, tmp_path, errors_shown, monkeypatch):
    assert not window.act_suggest.isEnabled()               # no core yet
    window.open_project(str(project))
    qtbot.waitUntil(lambda: window.view is not None, timeout=30_000)
    wait_idle(qtbot, window)
    assert window.act_suggest.isEnabled()
    assert window.act_suggest in window.menuBar().actions()[1].menu().actions()  # the Model menu
    window.foundation_path = str(tiny_mae)
    out = tmp_path / "sampling_list.csv"
    asked = []
    monkeypatch.setattr(QInputDialog, "getInt", staticmethod(lambda *a, **k: (asked.append(a) or (4, True))))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    window.act_suggest.trigger()
    assert asked
    qtbot.waitUntil(lambda: window.suggestions is not None, timeout=120_000)
    wait_idle(qtbot, window)
    assert not errors_shown
    df = window.suggestions
    assert len(df) == 4 and (df.core == window.view.core).all()
    assert sorted(window.downcore.suggested) == sorted(df.depth_mm)
    n_panels = sum(p.plot.isVisible() for p in window.downcore.panels.values())   # the panels shown
    assert len(window.downcore._suggestion_lines) == 4 * n_panels
    back = pd.read_csv(out, comment="#")
    assert list(back.depth_mm) == list(df.depth_mm)
    assert out.read_text().startswith("# SIMULATED DATA")
    window.downcore.clear()                                  # another core: the markers go
    assert window.downcore.suggested == [] and window.downcore._suggestion_lines == []
