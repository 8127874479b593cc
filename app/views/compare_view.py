"""Compare two cores side by side: two downcore plots (depth down) of the same quantity, a predicted
target with its interval band or an element log-ratio, sharing the value axis."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QDialog, QHBoxLayout, QLabel, QVBoxLayout

from app import engine_cruise
from app.errors import plain_message

BAND = (80, 120, 200, 60)


class CoreColumn:
    """One core's plot: depth on the vertical axis (down), value on the horizontal."""

    def __init__(self, glw: pg.GraphicsLayoutWidget, col: int):
        self.plot = glw.addPlot(row=0, col=col)
        self.plot.invertY(True)
        self.plot.setLabel("left", "Depth (mm)")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.band_lo = self.plot.plot(pen=None)
        self.band_hi = self.plot.plot(pen=None)
        self.band = pg.FillBetweenItem(self.band_lo, self.band_hi, brush=pg.mkBrush(*BAND))
        self.plot.addItem(self.band)
        self.line = self.plot.plot(pen=pg.mkPen((20, 60, 160), width=1.5))

    def show(self, s: engine_cruise.Series | None, message: str = "") -> None:
        if s is None:
            for item in (self.line, self.band_lo, self.band_hi):
                item.setData([], [])
            self.plot.setTitle(message)
            return
        # downcore: x = value, y = depth
        self.line.setData(s.values, s.depth, connect="finite")
        if s.lo is not None and s.hi is not None:
            self.band_lo.setData(s.lo, s.depth)
            self.band_hi.setData(s.hi, s.depth)
        else:
            self.band_lo.setData([], [])
            self.band_hi.setData([], [])
        self.plot.setTitle(f"{s.core}{'  [SIMULATED]' if s.simulated else ''}")
        self.plot.setLabel("bottom", s.label)


class CompareDialog(QDialog):
    """Two cores, one quantity; the value axes are linked (same scale on both), the depth axes
    are free (cores differ in length) unless 'same depth scale' is chosen."""

    def __init__(self, project: str, cores: list[str], parent=None, core_a: str = "", core_b: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Compare two cores")
        self.resize(900, 640)
        self.project = project
        self.a = QComboBox()
        self.b = QComboBox()
        for cb in (self.a, self.b):
            cb.addItems(cores)
        self.a.setCurrentText(core_a or (cores[0] if cores else ""))
        self.b.setCurrentText(core_b or (cores[1] if len(cores) > 1 else ""))
        self.what = QComboBox()
        for label, key in engine_cruise.compare_choices(project):
            self.what.addItem(label, key)
        self.depth_link = QComboBox()
        self.depth_link.addItems(["own depth scale", "same depth scale"])
        top = QHBoxLayout()
        for text, w in (("Core", self.a), ("beside", self.b), ("Show", self.what), ("", self.depth_link)):
            if text:
                top.addWidget(QLabel(text))
            top.addWidget(w, 1 if w is self.what else 0)
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground("w")
        self.left = CoreColumn(self.glw, 0)
        self.right = CoreColumn(self.glw, 1)
        self.right.plot.setXLink(self.left.plot)      # one value scale for both cores
        self.note = QLabel("")
        self.note.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.glw, 1)
        lay.addWidget(self.note)
        for cb in (self.a, self.b, self.what, self.depth_link):
            cb.currentIndexChanged.connect(lambda _i: self.refresh())
        self.series: dict[str, engine_cruise.Series | None] = {}
        self.refresh()

    def refresh(self) -> None:
        key = self.what.currentData()
        if key is None:
            return
        notes = []
        self.series = {}
        for side, cb in (("left", self.a), ("right", self.b)):
            col = getattr(self, side)
            core = cb.currentText()
            try:
                s = engine_cruise.compare_series(self.project, core, key)
            except Exception as exc:  # noqa: BLE001 (a core without this prediction: said, not raised)
                s = None
                notes.append(plain_message(exc))
            self.series[side] = s
            col.show(s, f"{core}: nothing to show")
        self.right.plot.setYLink(self.left.plot if self.depth_link.currentIndex() == 1 else None)
        self._fit_values()
        band = " Bands: the prediction intervals." if key[0] == "prediction" else ""
        self.note.setText(("; ".join(notes) + ".  " if notes else "")
                          + "The value axis is shared: the same scale on both cores." + band)

    def _fit_values(self) -> None:
        vals = [np.concatenate([v for v in (s.values, s.lo, s.hi) if v is not None])
                for s in self.series.values() if s is not None]
        vals = np.concatenate(vals) if vals else np.array([])
        vals = vals[np.isfinite(vals)]
        if len(vals):
            lo, hi = float(vals.min()), float(vals.max())
            pad = 0.05 * (hi - lo or 1.0)
            self.left.plot.setXRange(lo - pad, hi + pad, padding=0)

    def x_ranges(self) -> tuple:
        return (tuple(self.left.plot.viewRange()[0]), tuple(self.right.plot.viewRange()[0]))
