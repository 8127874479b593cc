"""Save or copy a plot: which plot, the size in pixels, then a file (PNG / SVG / PDF) or the clipboard."""
from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QPushButton, QSpinBox, QVBoxLayout)

from app.errors import show_error
from app.views.plot_export import FORMATS, copy_plot, export_plot


class PlotDialog(QDialog):
    """``plots``: {name: (pyqtgraph view, title)}; ``provenance``: the line printed under every plot."""

    def __init__(self, plots: dict, provenance: str, parent=None, current: str | None = None,
                 folder: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Save or copy a plot")
        self.plots, self.provenance, self.folder = plots, provenance, folder
        self.saved: list[str] = []
        self.which = QComboBox()
        self.which.addItems(list(plots))
        if current in plots:
            self.which.setCurrentText(current)
        self.width_box, self.height_box = QSpinBox(), QSpinBox()
        for b in (self.width_box, self.height_box):
            b.setRange(200, 10000)
            b.setSuffix(" px")
        self.which.currentTextChanged.connect(self._default_size)
        self._default_size(self.which.currentText())
        size = QHBoxLayout()
        size.addWidget(self.width_box)
        size.addWidget(QLabel("x"))
        size.addWidget(self.height_box)
        form = QFormLayout()
        form.addRow("Plot", self.which)
        form.addRow("Size", size)
        note = QLabel(f"Printed under the plot: {provenance}")
        note.setWordWrap(True)
        save, copy = QPushButton("Save as PNG / SVG / PDF…"), QPushButton("Copy to clipboard")
        save.clicked.connect(self.save)
        copy.clicked.connect(self.copy)
        close = QDialogButtonBox(QDialogButtonBox.Close)
        close.rejected.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(save)
        buttons.addWidget(copy)
        buttons.addStretch(1)
        buttons.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(note)
        lay.addLayout(buttons)

    def _default_size(self, name: str) -> None:
        view = self.plots[name][0]
        self.width_box.setValue(max(800, view.width()))
        self.height_box.setValue(max(500, view.height()))

    def chosen(self):
        view, title = self.plots[self.which.currentText()]
        return view, (self.width_box.value(), self.height_box.value()), title

    def save(self, path: str | None = None) -> str | None:
        if not path:
            path, filt = QFileDialog.getSaveFileName(self, "Save plot", self.folder, ";;".join(FORMATS.values()))
            if not path:
                return None
            ext = next((e for e, f in FORMATS.items() if f == filt), ".png")
            if not path.lower().endswith(tuple(FORMATS)):
                path += ext
        view, size, title = self.chosen()
        try:
            export_plot(view, path, size, title, self.provenance)
        except (OSError, ValueError) as exc:
            show_error(self, "Save plot", str(exc))
            return None
        self.saved.append(path)
        return path

    def copy(self) -> None:
        view, size, title = self.chosen()
        copy_plot(view, size, title, self.provenance)
