"""Settings: device, default foundation model, projects folder, recent projects; shows data folders."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QListWidget, QPushButton, QVBoxLayout)

from app import engine
from app.settings import Settings, config_dir, data_dir, log_dir, models_dir


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.resize(720, 420)
        self.s = settings
        form = QFormLayout()
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setCurrentText(settings.device)
        form.addRow("Device", self.device)
        self.model = QComboBox()
        shipped = Path(engine.default_foundation_model()).name if engine.default_foundation_model() else "none installed"
        self.model.addItem(f"(shipped default: {shipped})", "")
        for card_path, card in engine.find_models("mae"):
            self.model.addItem(engine.describe_model(card_path, card), str(card_path.with_suffix("")))
        i = self.model.findData(settings.default_model)
        if i < 0 and settings.default_model:
            self.model.addItem(settings.default_model, settings.default_model)
            i = self.model.count() - 1
        self.model.setCurrentIndex(max(i, 0))
        form.addRow("Default base model", self.model)
        self.projects = QLineEdit(settings.projects_folder or str(settings.project_folder()))
        b = QPushButton("Browse…")
        b.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.projects, 1)
        row.addWidget(b)
        form.addRow("Projects folder", row)
        for name, path in (("Data folder", data_dir()), ("Models folder", models_dir()),
                           ("Log folder", log_dir()), ("Settings folder", config_dir())):
            lab = QLabel(str(path))
            lab.setTextInteractionFlags(lab.textInteractionFlags() | lab.textInteractionFlags().TextSelectableByMouse)
            form.addRow(name, lab)
        self.recent = QListWidget()
        self.recent.addItems(settings.recent_projects)
        clear = QPushButton("Clear recent projects")
        clear.clicked.connect(self.recent.clear)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(QLabel("Recent projects"))
        lay.addWidget(self.recent, 1)
        lay.addWidget(clear)
        lay.addWidget(buttons)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Projects folder", self.projects.text())
        if d:
            self.projects.setText(d)

    def apply(self) -> None:
        self.s.device = self.device.currentText()
        self.s.default_model = self.model.currentData() or ""
        self.s.projects_folder = self.projects.text().strip()
        self.s.recent_projects = [self.recent.item(i).text() for i in range(self.recent.count())]
        self.s.save()
