"""Spectrum view: counts against keV, log/linear, element line markers, hover readout, overlays."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QPushButton, QSizePolicy, QSplitter, QVBoxLayout, QWidget)
from app.views.plotting import cache_axes

OVERLAY_COLOURS = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
DEFAULT_ELEMENTS = ("Al", "Si", "S", "K", "Ca", "Ti", "Mn", "Fe")


class SpectrumView(QWidget):
    """Shows one current spectrum plus pinned overlays.

    ``lines`` is a list of (element, line, keV) rows (from xrfcore.energy.LINES).
    Signals: stepRequested(+1/-1) for arrow keys, sumRangeRequested().
    """

    stepRequested = Signal(int)
    overlayRequested = Signal()
    sumRangeRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.energies = np.arange(2048, dtype=float)
        self.lines: list[tuple[str, str, float]] = []
        self._current: np.ndarray | None = None
        self._current_label = ""
        self._overlays: list[tuple[str, np.ndarray, pg.PlotDataItem]] = []
        self._overlay_top = 0.0   # highest count of the overlays: the count axis keeps them in view
        self._markers: list[pg.InfiniteLine] = []
        self.setFocusPolicy(Qt.StrongFocus)

        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "Energy", units="keV")
        self.plot.setLabel("left", "Counts")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.addLegend(offset=(-10, 10))
        self.curve = self.plot.plot([], [], pen=pg.mkPen("#1f4e99", width=1.2), name="current")
        self.plot.setMenuEnabled(False)
        self.plot.getPlotItem().getViewBox().setMouseMode(pg.ViewBox.RectMode)
        self.plot.setFocusPolicy(Qt.NoFocus)
        self.plot.getViewBox().disableAutoRange(axis=pg.ViewBox.YAxis)
        cache_axes(self.plot.getPlotItem())

        self.title = QLabel("No spectrum")
        self.title.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.readout = QLabel(" ")
        self.readout.setObjectName("readout")
        # labels whose text changes at every step or mouse move must not re-layout the window
        # (that repainted every plot and cost most of a step's time)
        for lab in (self.title, self.readout):
            lab.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.log_box = QCheckBox("Log counts")
        self.log_box.setChecked(True)
        self.log_box.toggled.connect(self._on_log)
        self.pin_btn = QPushButton("Overlay this depth")
        self.pin_btn.clicked.connect(self.overlayRequested.emit)
        self.clear_btn = QPushButton("Clear overlays")
        self.clear_btn.clicked.connect(self.clear_overlays)
        self.sum_btn = QPushButton("Sum depth range…")
        self.sum_btn.setToolTip("Sum the spectra of a depth range and overlay the result")
        self.sum_btn.clicked.connect(self.sumRangeRequested.emit)

        self.picker = QListWidget()
        self.picker.setToolTip("Elements whose emission lines are marked")
        self.picker.setMaximumWidth(70)
        self.picker.itemChanged.connect(lambda _item: self._draw_markers())

        bar = QHBoxLayout()
        bar.addStretch(1)
        for w in (self.log_box, self.pin_btn, self.clear_btn, self.sum_btn):
            bar.addWidget(w)
        body = QSplitter(Qt.Horizontal)
        body.addWidget(self.plot)
        body.addWidget(self.picker)
        body.setStretchFactor(0, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.title)
        lay.addLayout(bar)
        lay.addWidget(body, 1)
        lay.addWidget(self.readout)

        self._proxy = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse)
        self._on_log(True)

    # ---- data -------------------------------------------------------------------------------
    def set_energies(self, energies: np.ndarray, max_kev: float | None = None) -> None:
        """max_kev: right end of the view (e.g. tube kV + 1: nothing above it but pile-up)."""
        energies = np.asarray(energies, dtype=float)
        same = energies.shape == self.energies.shape and np.array_equal(energies, self.energies)
        self.energies = energies
        if not same or not self._markers:
            self._draw_markers()   # rebuilding the line markers is the slow part of opening a core
        if len(self.energies):
            hi = float(self.energies[-1]) if max_kev is None else min(float(self.energies[-1]), max_kev)
            self.plot.setXRange(max(0.0, float(self.energies[0])), hi, padding=0.01)

    def set_lines(self, lines, selected=DEFAULT_ELEMENTS) -> None:
        self.lines = [(str(e), str(l), float(k)) for e, l, k in lines]
        self.picker.blockSignals(True)
        self.picker.clear()
        for el in dict.fromkeys(e for e, _, _ in self.lines):
            item = QListWidgetItem(el)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if el in selected else Qt.Unchecked)
            self.picker.addItem(item)
        self.picker.blockSignals(False)
        self._draw_markers()

    def selected_elements(self) -> list[str]:
        return [self.picker.item(i).text() for i in range(self.picker.count())
                if self.picker.item(i).checkState() == Qt.Checked]

    def set_elements(self, elements) -> None:
        want = set(elements)
        self.picker.blockSignals(True)
        for i in range(self.picker.count()):
            it = self.picker.item(i)
            it.setCheckState(Qt.Checked if it.text() in want else Qt.Unchecked)
        self.picker.blockSignals(False)
        self._draw_markers()

    def _y(self, counts: np.ndarray) -> np.ndarray:
        y = np.asarray(counts, dtype=float)
        if self.log_box.isChecked():
            y = np.maximum(y, 0.5)  # log axis: empty channels drawn at 0.5 instead of -inf
        return y

    def show_spectrum(self, counts: np.ndarray, label: str = "") -> None:
        """Fast path used when stepping: one setData, nothing rebuilt."""
        self._current = np.asarray(counts)
        self._current_label = label
        n = min(len(self.energies), len(self._current))
        y = self._y(self._current[:n])
        self.curve.setData(self.energies[:n], y)
        self._fit_y(y)
        self.title.setText(label)

    def _fit_y(self, y: np.ndarray) -> None:
        """Rescale the count axis only when the spectrum no longer fits or fills under a third of it:
        while stepping, the axis (whose text is the costly part of a redraw) mostly stays put."""
        if not len(y):
            return
        top = max(float(np.max(y)), self._overlay_top)
        vb = self.plot.getViewBox()
        lo, hi = vb.viewRange()[1]
        if self.log_box.isChecked():
            want = np.log10(max(top, 1.0)) + 1.3   # headroom: line labels sit above the peaks
            if want - 0.1 > hi or want < hi - 0.5 or lo > -0.2:
                vb.setYRange(np.log10(0.5), want, padding=0)
        else:
            want = top * 1.45
            if want > hi or want < hi / 3 or lo != 0:
                vb.setYRange(0, max(want, 1.0), padding=0)

    def add_overlay(self, counts: np.ndarray, label: str) -> None:
        colour = OVERLAY_COLOURS[len(self._overlays) % len(OVERLAY_COLOURS)]
        counts = np.asarray(counts)
        n = min(len(self.energies), len(counts))
        item = self.plot.plot(self.energies[:n], self._y(counts[:n]),
                              pen=pg.mkPen(colour, width=1), name=label)
        self._overlays.append((label, counts, item))
        self._overlay_top = max(self._overlay_top, float(np.max(counts[:n])) if n else 0.0)
        if self._current is not None:
            self._fit_y(self._y(self._current))   # an overlay stays in view

    def overlay_labels(self) -> list[str]:
        return [lab for lab, _, _ in self._overlays]

    def clear_overlays(self) -> None:
        for _, _, item in self._overlays:
            self.plot.removeItem(item)
        self._overlays.clear()
        self._overlay_top = 0.0

    def clear(self) -> None:
        self.clear_overlays()
        self._current = None
        self.curve.setData([], [])
        self.title.setText("No spectrum")

    # ---- markers and readout -----------------------------------------------------------------
    def _draw_markers(self) -> None:
        for m in self._markers:
            self.plot.removeItem(m)
        self._markers.clear()
        if not self.lines:
            return
        chosen = set(self.selected_elements())
        hi = float(self.energies[-1]) if len(self.energies) else 0.0
        lo = float(self.energies[0]) if len(self.energies) else 0.0
        in_range = [r for r in self.lines if r[0] in chosen and lo <= r[2] <= hi]
        has_k = {el for el, line, _ in in_range if line.upper().startswith("K")}
        last_kev, last_pos = -1e9, 0.83   # labels of neighbouring lines take turns in height
        for el, line, kev in sorted(in_range, key=lambda r: r[2]):
            if el in has_k and not line.upper().startswith("K"):
                continue  # the K lines identify it; its L lines sit in the crowded low-energy end
            major = line.lower() in ("ka", "ka1") or (el not in has_k and line.lower() in ("la", "la1"))
            pos = 0.93
            if major:
                pos = 0.83 if kev - last_kev < 0.45 and last_pos == 0.93 else 0.93
                last_kev, last_pos = kev, pos
            m = pg.InfiniteLine(pos=kev, angle=90, movable=False,
                                pen=pg.mkPen("#888888" if major else "#bbbbbb",
                                             style=Qt.DashLine if major else Qt.DotLine),
                                label=f"{el} {line}" if major else None,
                                labelOpts={"position": pos, "color": "#444444", "rotateAxis": (1, 0),
                                           "anchors": [(0, 0), (0, 0)]})
            self.plot.addItem(m, ignoreBounds=True)
            self._markers.append(m)

    def marker_labels(self) -> list[str]:
        return [m.label.format for m in self._markers if getattr(m, "label", None) is not None]

    def nearest_line(self, kev: float):
        if not self.lines:
            return None
        chosen = set(self.selected_elements()) or {e for e, _, _ in self.lines}
        cands = [r for r in self.lines if r[0] in chosen]
        if not cands:
            return None
        return min(cands, key=lambda r: abs(r[2] - kev))

    def readout_text(self, kev: float) -> str:
        parts = [f"{kev:.3f} keV"]
        if self._current is not None and len(self.energies):
            i = int(min(np.abs(self.energies - kev).argmin(), len(self._current) - 1))  # nearest channel
            parts.append(f"counts {int(self._current[i])} (channel {i})")
        near = self.nearest_line(kev)
        if near is not None:
            parts.append(f"nearest line {near[0]} {near[1]} at {near[2]:.3f} keV")
        return "   ".join(parts)

    def _on_mouse(self, evt) -> None:
        pos = evt[0]
        vb = self.plot.getPlotItem().getViewBox()
        if not self.plot.sceneBoundingRect().contains(pos):
            return
        self.readout.setText(self.readout_text(vb.mapSceneToView(pos).x()))

    def _on_log(self, on: bool) -> None:
        vb = self.plot.getViewBox()
        x_range = vb.viewRange()[0]
        self.plot.setLogMode(x=False, y=on)
        vb.setXRange(*x_range, padding=0)   # the energy range chosen for the run stays
        vb.setYRange(0, 1, padding=0)  # forces a refit below
        if self._current is not None:
            self.show_spectrum(self._current, self._current_label)
        for _, counts, item in self._overlays:
            n = min(len(self.energies), len(counts))
            item.setData(self.energies[:n], self._y(counts[:n]))

    def keyPressEvent(self, ev) -> None:
        if ev.key() in (Qt.Key_Down, Qt.Key_Right):
            self.stepRequested.emit(1)
        elif ev.key() in (Qt.Key_Up, Qt.Key_Left):
            self.stepRequested.emit(-1)
        else:
            super().keyPressEvent(ev)
