"""The lab-samples dialog with the tables labs send (issue 14 item 6): an Excel workbook and a
semicolon / decimal-comma CSV are previewed before the mapping, mapped, matched and stored; problems
are shown in the dialog beside the mapping."""
from __future__ import annotations

import pandas as pd
import pytest

from tests.gui.conftest import wait_idle


def _xlsx_from(lab_csv, path):
    openpyxl = pytest.importorskip("openpyxl")
    df = pd.read_csv(lab_csv, comment="#")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "CaCO3 TOC"
    ws.append(["# SIMULATED lab values (converted from the sample core's CSV)"])
    ws.append(list(df.columns))
    for row in df.itertuples(index=False):
        ws.append(list(row))
    wb.save(path)
    return df


def test_xlsx_previewed_mapped_and_stored(window, qtbot, project, lab_csv, tmp_path, errors_shown, monkeypatch):
    from app.dialogs import labels_dialog
    w = window
    w.open_project(str(project))
    qtbot.waitUntil(lambda: w.view is not None, timeout=30_000)
    wait_idle(qtbot, w)
    xlsx = tmp_path / "lab results.xlsx"
    df = _xlsx_from(lab_csv, xlsx)
    seen = {}

    def accept_after_check(self):
        qtbot.waitUntil(lambda: self.lab is not None, timeout=30_000)
        seen["preview_rows"] = self.preview.model.rowCount()
        seen["preview_cols"] = list(self.preview.model.df.columns)
        seen["preview_text"] = self.preview.summary.text()
        seen["mapping"] = self.mapping()
        seen["matched"] = self.matched.model.rowCount()
        return 1
    monkeypatch.setattr(labels_dialog.LabelsDialog, "exec", accept_after_check)
    w.load_lab_samples(str(xlsx))
    wait_idle(qtbot, w)
    qtbot.waitUntil(lambda: w.view is not None and len(w.view.labels) == len(df), timeout=30_000)
    assert seen["preview_rows"] == min(12, len(df)) and seen["preview_cols"][:2] == ["row", "core"]
    assert "Excel workbook, sheet 'CaCO3 TOC'" in seen["preview_text"] and f"{len(df)} rows" in seen["preview_text"]
    assert seen["mapping"]["top"] == "depth_top_mm" and seen["mapping"]["CaCO3"] == "CaCO3"
    assert seen["matched"] == len(df) and not errors_shown
    assert w.view.labels["CaCO3"].round(2).tolist() == df["CaCO3"].round(2).tolist()


def test_semicolon_decimal_comma_csv_preview_and_error_beside_the_mapping(qtbot, project, tmp_path):
    from app.dialogs.labels_dialog import LabelsDialog
    p = tmp_path / "labor.csv"
    p.write_text("Kern;Tiefe oben (cm);Tiefe unten (cm);CaCO3 (wt%);TOC (wt%)\n"
                 "SIM01-1;2,1;3,1;75,32;0,801\nSIM01-1;12,5;13,5;59,62;0,998\n", encoding="cp1252")
    d = LabelsDialog(p, str(project))
    qtbot.addWidget(d)
    assert d.preview.model.rowCount() == 2 and "semicolon-separated CSV, decimal comma" in d.preview.summary.text()
    assert d.preview.model.df["line"].tolist() == [2, 3]
    # German headers: the depth columns are not recognised; the reader's complaint is shown in the
    # dialog, and the mapping beside it fixes it
    d.check()
    qtbot.waitUntil(lambda: d.check_btn.isEnabled(), timeout=30_000)
    assert "no depth column" in d.status.text() and "labor.csv" in d.status.text()
    assert not d.buttons.button(d.buttons.StandardButton.Ok).isEnabled()
    d.combos["core"].setCurrentText("Kern")
    d.combos["top"].setCurrentText("Tiefe oben (cm)")
    d.combos["bottom"].setCurrentText("Tiefe unten (cm)")
    d.check()
    qtbot.waitUntil(lambda: d.lab is not None, timeout=30_000)
    assert len(d.lab.samples) == 2 and d.lab.samples["depth_top_mm"].tolist() == [21.0, 125.0]
    assert d.lab.samples["CaCO3"].tolist() == [75.32, 59.62]
    assert len(d.match.samples) == 2 and "labor.csv" not in d.status.text()
