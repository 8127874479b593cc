"""Export a core's predictions to CSV (with the provenance header written by xrfcore.export)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLineEdit, QPushButton, QVBoxLayout)


class ExportDialog(QDialog):
    def __init__(self, parent, cores_models: dict[str, list[str]], folder: Path, core: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Export predictions as CSV")
        self.resize(640, 160)
        self.cores_models = cores_models
        self.folder = Path(folder)
        form = QFormLayout()
        self.core = QComboBox()
        self.core.addItems([c for c, m in cores_models.items() if m])
        if core:
            self.core.setCurrentText(core)
        self.model = QComboBox()
        self.path = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        form.addRow("Core", self.core)
        form.addRow("Model", self.model)
        form.addRow("File", row)
        self.core.currentTextChanged.connect(self._fill_models)
        self.model.currentTextChanged.connect(self._suggest)
        self._fill_models(self.core.currentText())
        buttons = QDialogButtonBox(QDialogButtonBox.Save | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(buttons)

    def _fill_models(self, core: str) -> None:
        self.model.clear()
        models = self.cores_models.get(core, [])
        self.model.addItems(models)
        if models:
            self.model.setCurrentIndex(len(models) - 1)
        self._suggest()

    def _suggest(self, *_):
        c, m = self.core.currentText(), self.model.currentText()
        if c and m:
            self.path.setText(str(self.folder / f"{c}_{m}_downcore.csv"))

    def _browse(self) -> None:
        f, _ = QFileDialog.getSaveFileName(self, "Export CSV", self.path.text(), "CSV files (*.csv)")
        if f:
            self.path.setText(f)

    def choice(self) -> tuple[str, str, str]:
        return self.core.currentText(), self.model.currentText(), self.path.text().strip()
