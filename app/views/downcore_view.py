"""Downcore view: depth runs downward on a shared vertical axis, one panel per quantity.

Predictions are drawn with their interval band, lab samples as points (with their depth interval),
out-of-distribution depths shaded, and optional element-window traces (e.g. ln(Ca/Fe)).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget
from app.views.plotting import cache_axes

PANEL_COLOURS = {"CaCO3": "#1f77b4", "TOC": "#2ca02c"}
TRACE_COLOUR = "#7f3f98"
OOD_BRUSH = QColor(255, 140, 0, 60)
MAX_OOD_SPANS = 400


def runs_of_true(flags: np.ndarray) -> list[tuple[int, int]]:
    """Index spans [start, stop) where flags is True (contiguous runs)."""
    f = np.asarray(flags, dtype=bool)
    if not f.any():
        return []
    d = np.diff(np.concatenate([[0], f.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def ood_tip(depth, reasons, most: int = 4) -> str:
    """Tooltip of a shaded span: its depths and the reasons of its first few flagged depths."""
    lines = [f"Out of distribution, {depth[0]:g}-{depth[-1]:g} mm ({len(depth)} depths)"]
    lines += [f"{d:g} mm: {r}" for d, r in list(zip(depth, reasons))[:most] if r]
    return "\n".join(lines + (["..."] if len(depth) > most else []))


class DowncorePanel:
    def __init__(self, plot: pg.PlotItem, name: str, units: str):
        self.plot, self.name = plot, name
        colour = PANEL_COLOURS.get(name, TRACE_COLOUR)
        plot.setLabel("top", f"{name} {units}".strip())
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.invertY(True)
        cache_axes(plot)
        self.lo = pg.PlotCurveItem(pen=pg.mkPen(None))
        self.hi = pg.PlotCurveItem(pen=pg.mkPen(None))
        band = QColor(colour)
        band.setAlpha(60)
        self.band = pg.FillBetweenItem(self.lo, self.hi, brush=band)
        self.line = pg.PlotCurveItem(pen=pg.mkPen(colour, width=1.3))
        self.labs = pg.ScatterPlotItem(size=7, brush=pg.mkBrush("#d62728"), pen=pg.mkPen("k"),
                                       symbol="o")
        self.lab_bars = pg.ErrorBarItem(x=np.array([]), y=np.array([]), pen=pg.mkPen("#d62728"))
        for it in (self.band, self.lo, self.hi, self.line, self.lab_bars, self.labs):
            plot.addItem(it)
        self.ood: list[pg.LinearRegionItem] = []
        self.has_data = False

    def set_series(self, depth, value, lo=None, hi=None) -> None:
        depth = np.asarray(depth, float)
        self.line.setData(np.asarray(value, float), depth, connect="finite")
        if lo is not None and hi is not None:
            self.lo.setData(np.asarray(lo, float), depth)
            self.hi.setData(np.asarray(hi, float), depth)
        else:
            self.lo.setData([], [])
            self.hi.setData([], [])
        self.has_data = True

    def set_labs(self, depth, value, top=None, bottom=None) -> None:
        depth, value = np.asarray(depth, float), np.asarray(value, float)
        ok = np.isfinite(depth) & np.isfinite(value)
        self.labs.setData(value[ok], depth[ok])
        if top is not None and bottom is not None:
            top, bottom = np.asarray(top, float)[ok], np.asarray(bottom, float)[ok]
            self.lab_bars.setData(x=value[ok], y=depth[ok], top=bottom - depth[ok],
                                  bottom=depth[ok] - top)
        else:
            self.lab_bars.setData(x=np.array([]), y=np.array([]))

    def set_ood(self, spans_mm: list[tuple[float, float]], tips: list[str] | None = None) -> None:
        for r in self.ood:
            self.plot.removeItem(r)
        self.ood = []
        for i, (a, b) in enumerate(spans_mm[:MAX_OOD_SPANS]):
            r = pg.LinearRegionItem(values=(a, b), orientation="horizontal", movable=False,
                                    brush=OOD_BRUSH, pen=pg.mkPen(None))
            r.setZValue(-10)
            if tips and tips[i]:
                r.setToolTip(tips[i])  # why it is flagged, on hover
            self.plot.addItem(r)
            self.ood.append(r)

    def clear(self) -> None:
        for it in (self.line, self.lo, self.hi, self.labs):
            it.setData([], [])
        self.lab_bars.setData(x=np.array([]), y=np.array([]))
        self.set_ood([])
        self.has_data = False


class DowncoreView(QWidget):
    """Panels side by side sharing the depth axis. Click a depth to select it."""

    depthClicked = Signal(float)

    def __init__(self, parent=None, targets=("CaCO3", "TOC")):
        super().__init__(parent)
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground("w")
        self.title = QLabel("No core open")
        self.title.setWordWrap(True)
        self.title.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        # shown when the prediction drawn is out of date (xrfcore.predict.stale_reasons)
        self.stale = QLabel("")
        self.stale.setWordWrap(True)
        self.stale.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.stale.setStyleSheet("background: #fff3cd; color: #8a4b00; font-weight: bold; padding: 3px")
        self.stale.setVisible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.title)
        lay.addWidget(self.stale)
        lay.addWidget(self.glw, 1)
        self.panels: dict[str, DowncorePanel] = {}
        self.cursors: list[pg.InfiniteLine] = []
        first = None
        for t in list(targets) + ["traces"]:
            p = self.glw.addPlot()
            p.setMenuEnabled(False)
            if first is None:
                first = p
                p.setLabel("left", "Depth (mm)")
            else:
                p.setYLink(first)
                p.getAxis("left").setStyle(showValues=False)
            units = "" if t == "traces" else "(wt %)"
            self.panels[t] = DowncorePanel(p, "element traces" if t == "traces" else t, units)
            cur = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen("#444444", width=1))
            p.addItem(cur, ignoreBounds=True)
            self.cursors.append(cur)
        self.trace_items: dict[str, pg.PlotCurveItem] = {}
        self._trace_plot = self.panels["traces"].plot
        self._trace_plot.setVisible(False)  # shown when a trace is switched on
        self.depth_range = (0.0, 1.0)
        self.ood_spans: list[tuple[float, float]] = []
        self.ood_tips: list[str] = []
        self.glw.scene().sigMouseClicked.connect(self._on_click)

    def set_title(self, text: str) -> None:
        self.title.setText(text)

    def set_stale(self, reasons: list[str]) -> None:
        """Mark the drawn prediction out of date (empty list: current)."""
        reasons = list(reasons or [])
        self.stale.setText("STALE prediction: " + "; ".join(reasons) + ". Predict again for current values."
                           if reasons else "")
        self.stale.setToolTip("\n".join(reasons))
        self.stale.setVisible(bool(reasons))

    def set_depths(self, depth_mm: np.ndarray) -> None:
        d = np.asarray(depth_mm, float)
        d = d[np.isfinite(d)]
        if len(d):
            self.depth_range = (float(d.min()), float(d.max()))
            first = next(iter(self.panels.values())).plot
            first.setYRange(*self.depth_range, padding=0.02)

    def set_prediction(self, target: str, depth, value, lo=None, hi=None) -> None:
        if target in self.panels:
            self.panels[target].set_series(depth, value, lo, hi)

    def set_lab_samples(self, target: str, depth, value, top=None, bottom=None) -> None:
        if target in self.panels:
            self.panels[target].set_labs(depth, value, top, bottom)

    def set_ood(self, depth, flags, step_mm: float | None = None, reasons=None) -> None:
        """Shade depths whose out-of-distribution flag is set (merged into spans); ``reasons`` (text
        per depth) become each span's tooltip."""
        depth = np.asarray(depth, float)
        flags = np.asarray(flags, bool)
        order = np.argsort(depth)
        depth, flags = depth[order], flags[order]
        why = np.asarray(reasons, dtype=object)[order] if reasons is not None else None
        if step_mm is None:
            step_mm = float(np.median(np.diff(depth))) if len(depth) > 1 else 1.0
        half = step_mm / 2
        runs = runs_of_true(flags)
        self.ood_spans = [(depth[a] - half, depth[b - 1] + half) for a, b in runs]
        self.ood_tips = [ood_tip(depth[a:b], why[a:b]) for a, b in runs] if why is not None else []
        for p in self.panels.values():
            p.set_ood(self.ood_spans, self.ood_tips)

    def set_trace(self, name: str, depth, values) -> None:
        panel = self.panels["traces"]
        colours = ["#7f3f98", "#8c564b", "#e377c2", "#17becf"]
        if name not in self.trace_items:
            item = pg.PlotCurveItem(pen=pg.mkPen(colours[len(self.trace_items) % 4], width=1.1))
            panel.plot.addItem(item)
            self.trace_items[name] = item
        self.trace_items[name].setData(np.asarray(values, float), np.asarray(depth, float),
                                       connect="finite")
        self._trace_plot.setVisible(True)
        panel.plot.setLabel("top", ", ".join(self.trace_items))

    def remove_trace(self, name: str) -> None:
        item = self.trace_items.pop(name, None)
        if item is not None:
            self.panels["traces"].plot.removeItem(item)
        self.panels["traces"].plot.setLabel("top", ", ".join(self.trace_items) or "element traces")
        self._trace_plot.setVisible(bool(self.trace_items))

    def set_suggestions(self, depths, ranks=None, tips=None) -> None:
        """Suggested sampling depths as dashed lines across the panels, numbered in the first
        (empty: none); ``tips``: text per depth on hover."""
        for plot, line in getattr(self, "_suggestion_lines", []):
            plot.removeItem(line)
        self._suggestion_lines, self.suggested = [], [float(d) for d in depths]
        pen = pg.mkPen("#9467bd", width=1.5, style=pg.QtCore.Qt.PenStyle.DashLine)
        for n, p in enumerate(self.panels.values()):
            for i, d in enumerate(self.suggested):
                label = f"#{ranks[i]}" if ranks is not None and n == 0 else None
                line = pg.InfiniteLine(pos=d, angle=0, movable=False, pen=pen, label=label,
                                       labelOpts={"position": 0.92, "color": "#9467bd"})
                if tips:
                    line.setToolTip(tips[i])
                p.plot.addItem(line, ignoreBounds=True)
                self._suggestion_lines.append((p.plot, line))

    def set_cursor(self, depth_mm: float) -> None:
        for c in self.cursors:
            c.setValue(depth_mm)

    def clear(self) -> None:
        self.set_stale([])
        self.set_suggestions([])
        for p in self.panels.values():
            p.clear()
        for name in list(self.trace_items):
            self.remove_trace(name)
        self.ood_spans = []

    def _on_click(self, ev) -> None:
        pos = ev.scenePos()
        for p in self.panels.values():
            if p.plot.sceneBoundingRect().contains(pos):
                y = p.plot.getViewBox().mapSceneToView(pos).y()
                self.depthClicked.emit(float(y))
                return
