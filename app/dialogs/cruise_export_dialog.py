"""Export every core's predictions: one CSV per core into a folder, or one long CSV (a core column;
the provenance header names every core)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QButtonGroup, QComboBox, QDialog, QDialogButtonBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton,
                               QVBoxLayout)

from app.engine_cruise import default_export_name


class CruiseExportDialog(QDialog):
    def __init__(self, parent, project: str, models: dict[str, list[str]], n_cores: int):
        super().__init__(parent)
        self.setWindowTitle("Export all cores as CSV")
        self.resize(680, 220)
        self.project, self.models = project, models
        form = QFormLayout()
        self.model = QComboBox()
        for mid, cores in models.items():
            self.model.addItem(f"{mid}  ({len(cores)} of {n_cores} cores)", mid)
        self.per_core = QRadioButton("One CSV per core, into a folder")
        self.long = QRadioButton("One long CSV: every core, a 'core' column, every core named in the header")
        grp = QButtonGroup(self)
        grp.addButton(self.per_core)
        grp.addButton(self.long)
        self.per_core.setChecked(True)
        self.path = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        form.addRow("Model", self.model)
        form.addRow("As", self.per_core)
        form.addRow("", self.long)
        self.path_label = QLabel("Folder")
        form.addRow(self.path_label, row)
        self.model.currentIndexChanged.connect(lambda _i: self._suggest())
        self.long.toggled.connect(lambda _on: self._suggest())
        self._suggest()
        buttons = QDialogButtonBox(QDialogButtonBox.Save | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(buttons)

    def _suggest(self) -> None:
        mid = self.model.currentData()
        if mid:
            self.path.setText(str(default_export_name(self.project, mid, self.long.isChecked())))
        self.path_label.setText("File" if self.long.isChecked() else "Folder")

    def _browse(self) -> None:
        if self.long.isChecked():
            f, _ = QFileDialog.getSaveFileName(self, "Export all cores", self.path.text(), "CSV files (*.csv)")
        else:
            f = QFileDialog.getExistingDirectory(self, "Export all cores into folder", str(Path(self.path.text()).parent))
        if f:
            self.path.setText(f)

    def choice(self) -> tuple[str, str, bool]:
        """(model id, output path, long)"""
        return self.model.currentData(), self.path.text().strip(), self.long.isChecked()
