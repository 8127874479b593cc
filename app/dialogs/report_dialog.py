"""A table of per-item results (import report, lab-sample matching) that can be saved as CSV."""
from __future__ import annotations

import pandas as pd
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QHeaderView, QLabel,
                               QPushButton, QTableView, QVBoxLayout, QWidget)

from app.errors import report_exception
from app.views.frame_model import FrameModel


def save_frame_csv(parent, df: pd.DataFrame, suggested: str, header: str = "") -> str | None:
    """Ask for a file name and write df as CSV (temp file + replace via pandas is enough here)."""
    path, _ = QFileDialog.getSaveFileName(parent, "Save table as CSV", suggested, "CSV files (*.csv)")
    if not path:
        return None
    write_frame_csv(path, df, header)
    return path


def write_frame_csv(path, df: pd.DataFrame, header: str = "") -> None:
    from xrfcore.fileio import atomic_open

    with atomic_open(path, newline="") as f:
        for line in header.splitlines():
            f.write(f"# {line}\n")
        df.to_csv(f, index=False)


class ReportTable(QWidget):
    """Summary line + table + 'Export CSV…' button; reusable inside other dialogs."""

    def __init__(self, parent=None, csv_name: str = "report.csv"):
        super().__init__(parent)
        self.csv_name = csv_name
        self.header = ""
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.model = FrameModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSortingEnabled(False)
        self.table.setTextElideMode(Qt.ElideMiddle)
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.export_btn = QPushButton("Export CSV…")
        self.export_btn.clicked.connect(self._export)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.summary)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.export_btn)

    def set_report(self, df: pd.DataFrame, summary: str, header: str = "") -> None:
        self.model.set_frame(df)
        self.summary.setText(summary)
        self.header = header
        self.table.resizeColumnsToContents()
        # long file paths are elided in the middle (file name kept) so the status, message, core
        # and run columns stay in view; the tooltip shows the whole path
        cap = 420
        for c in range(self.model.columnCount()):
            if self.table.columnWidth(c) > cap:
                self.table.setColumnWidth(c, cap)

    def _export(self) -> None:
        try:
            save_frame_csv(self, self.model.df, self.csv_name, self.header)
        except Exception as exc:  # noqa: BLE001
            report_exception(self, "Could not save the table", exc)


class ReportDialog(QDialog):
    def __init__(self, title: str, df: pd.DataFrame, summary: str, parent=None,
                 csv_name: str = "report.csv", header: str = ""):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(900, 500)
        self.report = ReportTable(self, csv_name)
        self.report.set_report(df, summary, header)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        lay = QVBoxLayout(self)
        lay.addWidget(self.report, 1)
        lay.addWidget(buttons)
