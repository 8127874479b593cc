"""Reconstruction view: measured spectrum, masked patches shaded, the model's reconstruction.

Log counts by default (the peaks and the background both matter); the measured curve is drawn over
the reconstruction, so the model's guess never hides what was measured; hovering a hidden patch
shows that patch's error."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider,
                               QVBoxLayout, QWidget)

from app.formatting import sig
from app.views.downcore_view import runs_of_true
from app.views.plotting import cache_axes

MASK_BRUSH = QColor(120, 120, 120, 55)


class ReconstructionView(QWidget):
    """``requested(mask_ratio, seed)`` asks the main window for a new reconstruction."""

    requested = Signal(float, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.energies = np.arange(2048, dtype=float)
        self.seed = 0
        self.mask_regions: list[pg.LinearRegionItem] = []
        self._last: dict | None = None

        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "Energy", units="keV")
        self.plot.setLabel("left", "Counts")
        self.plot.addLegend(offset=(-10, 10))
        self.plot.setMenuEnabled(False)
        cache_axes(self.plot.getPlotItem())
        # the reconstruction wide and pale underneath, the measured spectrum thin and dark on top
        self.recon = self.plot.plot([], [], pen=pg.mkPen(QColor(214, 39, 40, 150), width=3), name="reconstruction")
        self.measured = self.plot.plot([], [], pen=pg.mkPen("#1f4e99", width=1.1), name="measured")
        self.recon.setZValue(1)
        self.measured.setZValue(2)
        self.patch_errors: list[tuple] = []    # (first channel, last channel + 1, relative error, rmse)
        self.plot.scene().sigMouseMoved.connect(self._on_hover)

        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(5, 95)
        self.slider.setSingleStep(5)
        self.slider.setValue(50)
        self.slider.setToolTip("Share of patches hidden from the model")
        self.ratio_label = QLabel("mask 50 %")
        self.slider.valueChanged.connect(lambda v: self.ratio_label.setText(f"mask {v} %"))
        self.slider.sliderReleased.connect(self._request)
        self.new_btn = QPushButton("New mask")
        self.new_btn.clicked.connect(self.new_mask)
        self.log_box = QCheckBox("Log counts")
        self.log_box.setChecked(True)
        self.plot.setLogMode(y=True)
        self.log_box.toggled.connect(self._on_log)
        self.all_box = QCheckBox("Also on visible channels")
        self.all_box.setToolTip("By default the reconstruction is drawn only where the model could not "
                                "see the spectrum (grey bands): that is the test of the model")
        self.all_box.toggled.connect(self._redraw)
        self.error_label = QLabel("No reconstruction yet")
        self.hover_label = QLabel("Hover a grey (hidden) patch for its error")
        self.title = QLabel("Reconstruction: open a project and a model")
        for lab in (self.title, self.error_label, self.hover_label):   # long texts wrap instead of widening the tab
            lab.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
            lab.setWordWrap(True)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Mask ratio"))
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.ratio_label)
        bar.addWidget(self.new_btn)
        bar.addWidget(self.log_box)
        bar.addWidget(self.all_box)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.title)
        lay.addLayout(bar)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.error_label)
        lay.addWidget(self.hover_label)

    def mask_ratio(self) -> float:
        return self.slider.value() / 100.0

    def set_mask_ratio(self, r: float) -> None:
        self.slider.setValue(int(round(r * 100)))

    def new_mask(self) -> None:
        self.seed += 1
        self._request()

    def _request(self) -> None:
        self.requested.emit(self.mask_ratio(), self.seed)

    def set_energies(self, energies) -> None:
        self.energies = np.asarray(energies, float)

    def _y(self, a):
        """Counts for display: never below 0 (a model's guess can undershoot; counts cannot), and
        at least 0.5 on a log axis. The error figures use the unclipped values."""
        a = np.asarray(a, float)
        return np.maximum(a, 0.5 if self.log_box.isChecked() else 0.0)

    def _redraw(self, *_a) -> None:
        if self._last is not None:
            self.show_result(self._last)

    def show_result(self, result: dict, title: str = "") -> None:
        """``result`` from xrfcore.reconstruct.reconstruct for one spectrum: measured, mask (per
        channel bool), reconstruction (counts), energies_kev, and error figures."""
        self._last = result
        measured = np.asarray(result["measured"], float).ravel()
        recon = np.asarray(result["reconstruction"], float).ravel()
        mask = np.asarray(result["mask"], bool).ravel()
        e = result.get("energies_kev")
        e = np.asarray(e, float) if e is not None else self.energies
        if len(e) != len(measured):
            e = np.arange(len(measured), dtype=float)
        self.measured.setData(e, self._y(measured))
        shown = self._y(recon)
        if not self.all_box.isChecked() and len(mask) == len(shown):
            shown = np.where(mask, shown, np.nan)   # only the model's guesses for hidden channels
        self.recon.setData(e, shown, connect="finite")
        self.recon.opts["name"] = "reconstruction" + ("" if self.all_box.isChecked() else " (hidden channels)")
        for r in self.mask_regions:
            self.plot.removeItem(r)
        self.mask_regions = []
        self.energies_shown = e
        self.patch_errors = patch_errors(measured, recon, mask, int(result.get("patch_size", 16)))
        step = float(e[1] - e[0]) if len(e) > 1 else 1.0
        for a, b in runs_of_true(mask):
            r = pg.LinearRegionItem(values=(e[a] - step / 2, e[b - 1] + step / 2), movable=False,
                                    brush=MASK_BRUSH, pen=pg.mkPen(None))
            r.setZValue(-10)
            self.plot.addItem(r, ignoreBounds=True)
            self.mask_regions.append(r)
        parts = []
        for key, text, fmt in (("relative_hidden", "relative error on hidden channels", "{:.1%}"),
                               ("rmse_hidden", "RMSE on hidden channels", "counts"),
                               ("loss", "masked loss (model space)", "")):
            v = result.get(key)
            if v is not None and np.size(v) == 1:
                v = float(np.ravel(v)[0])
                parts.append(f"{text}: " + (fmt.format(v) if "{" in fmt else sig(v, 3, fmt)))
        share = mask.mean() if len(mask) else 0.0
        self.error_label.setText("Reconstruction error — " + ",  ".join(parts)
                                 + f".  Hidden from the model: {share:.0%} of the channels (grey bands), "
                                   f"mask {self.seed}.")
        if title:
            self.title.setText(title)

    def patch_at(self, energy_kev: float) -> tuple | None:
        """The hidden patch under an energy: (first, end, relative error, rmse), or None."""
        e = getattr(self, "energies_shown", None)
        if e is None or not len(e):
            return None
        i = int(np.clip(np.searchsorted(e, energy_kev), 0, len(e) - 1))
        return next((p for p in self.patch_errors if p[0] <= i < p[1]), None)

    def _on_hover(self, pos) -> None:
        vb = self.plot.getPlotItem().vb
        if not vb.sceneBoundingRect().contains(pos) or not self.patch_errors:
            return
        p = self.patch_at(vb.mapSceneToView(pos).x())
        e = self.energies_shown
        text = ("Hover a grey (hidden) patch for its error" if p is None else
                f"Hidden patch {e[p[0]]:.2f}-{e[p[1] - 1]:.2f} keV: relative error {p[2]:.1%}, "
                f"RMSE {sig(p[3], 3, 'counts')}")
        self.hover_label.setText(text)
        self.plot.setToolTip(text if p is not None else "")

    def masked_spans(self) -> int:
        return len(self.mask_regions)

    def _on_log(self, on: bool) -> None:
        self.plot.setLogMode(y=on)
        self._redraw()

    def clear(self) -> None:
        self.measured.setData([], [])
        self.recon.setData([], [])
        for r in self.mask_regions:
            self.plot.removeItem(r)
        self.mask_regions = []
        self.patch_errors = []
        self._last = None
        self.error_label.setText("No reconstruction yet")


def patch_errors(measured, recon, mask, patch: int) -> list[tuple]:
    """Per hidden patch: (first channel, end, sum |error| / sum measured, RMSE in counts)."""
    out = []
    for a in range(0, len(mask) - patch + 1, patch):
        if mask[a:a + patch].all():
            err = recon[a:a + patch] - measured[a:a + patch]
            out.append((a, a + patch, float(np.abs(err).sum() / max(measured[a:a + patch].sum(), 1e-9)),
                        float(np.sqrt(np.mean(err ** 2)))))
    return out
