"""Downcore view: depth runs downward on a shared vertical axis, one panel per quantity.

One panel per target (CaCO3 and TOC, plus any other lab target of the stored lab samples or of the
prediction shown: ``set_targets``), each with its unit. Predictions are drawn with their interval
band, lab samples as points (with their depth interval), out-of-distribution depths shaded, and
element traces (counts or ratios, xrfcore.traces), one panel each. A target panel is shown once it
has something to draw (no empty axes after an import); a legend names every mark and the interval
level; section tops are marked; depth reads in mm, cm or m.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget
from app.views.plotting import cache_axes

PANEL_COLOURS = {"CaCO3": "#1f77b4", "TOC": "#2ca02c"}
OTHER_COLOURS = ["#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2"]
TRACE_COLOUR = "#7f3f98"
OOD_BRUSH = QColor(255, 120, 0, 110)     # clearly shaded: out-of-distribution depths must be seen
OOD_PEN = QColor(230, 100, 0, 200)
MIN_SPAN_SHARE = 0.004                     # a one-depth span is drawn at least this share of the core
MAX_OOD_SPANS = 400
DEPTH_UNITS = {"mm": 1.0, "cm": 0.1, "m": 0.001}
TRACE_COLOURS = ["#7f3f98", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e"]


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
    def __init__(self, plot: pg.PlotItem, name: str, units: str, colour: str | None = None):
        self.plot, self.name = plot, name
        colour = colour or PANEL_COLOURS.get(name, TRACE_COLOUR)
        plot.setLabel("top", f"{name} {units}".strip())
        plot.hideAxis("bottom")   # values read on the top axis, beside the name and unit
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
                                    brush=OOD_BRUSH, pen=pg.mkPen(OOD_PEN, width=1))
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

    def __init__(self, parent=None, targets=("CaCO3", "TOC"), units: dict | None = None):
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
        self.trace_items: dict[str, pg.PlotCurveItem] = {}
        self.depth_range = (0.0, 1.0)
        self.ood_spans: list[tuple[float, float]] = []
        self.ood_tips: list[str] = []
        self.units: dict[str, str] = {}
        self.depth_unit = "mm"
        self.section_tops: list[tuple[float, str]] = []
        self.interval_text = "90 % interval"
        self.legend: pg.LegendItem | None = None
        self._build({t: (units or {}).get(t, "wt%") for t in targets})
        self.glw.scene().sigMouseClicked.connect(self._on_click)

    # ---------------------------------------------------------------- layout
    def _add_plot(self) -> pg.PlotItem:
        p = self.glw.addPlot()
        p.setMenuEnabled(False)
        cur = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen("#444444", width=1))
        p.addItem(cur, ignoreBounds=True)
        self.cursors.append(cur)
        return p

    def _build(self, units: dict[str, str]) -> None:
        """One panel per target (in order); trace panels are added by set_trace."""
        self.glw.clear()
        self.panels, self.cursors, self.trace_items, self.units = {}, [], {}, dict(units)
        self.legend = None
        extra = 0
        for t in units:
            p = self._add_plot()
            colour = PANEL_COLOURS.get(t) or OTHER_COLOURS[extra % len(OTHER_COLOURS)]
            extra += t not in PANEL_COLOURS
            u = units[t]
            self.panels[t] = DowncorePanel(p, t, f"({'wt %' if u == 'wt%' else u})" if u else "", colour)
            p.setVisible(False)   # shown once it has a prediction or lab samples
        self._relayout()

    def _visible(self) -> list[DowncorePanel]:
        return [pn for pn in self.panels.values() if pn.plot.isVisible()]

    def _relayout(self) -> None:
        """The depth axis (values, label, unit) on the first shown panel only; section tops and the
        legend follow the shown panels."""
        scale = DEPTH_UNITS[self.depth_unit]
        shown = self._visible()
        # depth is linked to the first shown panel (a hidden one has no size to map ranges through)
        for pn in self.panels.values():
            pn.plot.setYLink(None)
        for pn in shown[1:]:
            pn.plot.setYLink(shown[0].plot)
        if shown:
            shown[0].plot.setYRange(*self.depth_range, padding=0.02)
        for i, pn in enumerate(shown):
            ax = pn.plot.getAxis("left")
            ax.setScale(scale)
            ax.setStyle(showValues=i == 0)
            ax.setLabel(f"Depth ({self.depth_unit})" if i == 0 else "")
        self._draw_sections()
        self._draw_legend()

    def _show(self, panel: DowncorePanel) -> None:
        if not panel.plot.isVisible():
            panel.plot.setVisible(True)
            self._relayout()

    def targets(self) -> list[str]:
        return [t for t in self.panels if not t.startswith("trace:")]

    def set_targets(self, units: dict[str, str]) -> None:
        """Show one panel per target ({target: unit}); panels are rebuilt (and emptied) only when the
        targets change. Traces, sections and depth range are kept."""
        if dict(units) == self.units:
            return
        traces = {n: it.getData() for n, it in self.trace_items.items()}
        self._build(dict(units))
        for n, (x, y) in traces.items():
            self.set_trace(n, y, x)
        self._relayout()

    # ---------------------------------------------------------------- depth
    def set_depth_unit(self, unit: str) -> None:
        """mm, cm or m on the depth axis (the data stay in mm)."""
        if unit not in DEPTH_UNITS:
            raise ValueError(f"depth unit must be one of {', '.join(DEPTH_UNITS)}, not {unit!r}")
        self.depth_unit = unit
        self._relayout()

    def set_sections(self, tops_mm, names=None) -> None:
        """Mark section boundaries (the depth where each section starts) on every panel."""
        names = list(names) if names is not None else [""] * len(tops_mm)
        self.section_tops = [(float(t), str(n)) for t, n in zip(tops_mm, names) if np.isfinite(t)]
        self._draw_sections()

    def _draw_sections(self) -> None:
        for pn in self.panels.values():
            for it in getattr(pn, "section_lines", []):
                pn.plot.removeItem(it)
            pn.section_lines = []
            if not pn.plot.isVisible():
                continue
            for k, (top, name) in enumerate(self.section_tops):
                if k == 0 and top <= self.depth_range[0]:
                    continue   # the core top is no boundary
                ln = pg.InfiniteLine(pos=top, angle=0, movable=False,
                                     pen=pg.mkPen("#555555", width=1, style=Qt.DashLine))
                ln.setToolTip(f"section {name} starts at {top * DEPTH_UNITS[self.depth_unit]:g} {self.depth_unit}")
                pn.plot.addItem(ln, ignoreBounds=True)
                pn.section_lines.append(ln)

    def set_interval_text(self, text: str) -> None:
        """What the bands are, for the legend (e.g. "90 % interval, by-core calibration")."""
        self.interval_text = text
        self._draw_legend()

    def _draw_legend(self) -> None:
        """One legend, in the first shown target panel with data: prediction, interval band (its
        level), lab samples, out of distribution."""
        if self.legend is not None:
            self.legend.scene() and self.legend.scene().removeItem(self.legend)
            self.legend = None
        host = next((pn for pn in self._visible() if not pn.name.startswith("trace:")), None)
        if host is None:
            return
        leg = pg.LegendItem(offset=(-5, 5), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 210))
        leg.setParentItem(host.plot.getViewBox())
        leg.addItem(host.line, "prediction")
        band = pg.PlotDataItem([0, 1], [0, 0], pen=pg.mkPen(None), fillLevel=1,
                               fillBrush=host.band.brush())
        leg.addItem(band, self.interval_text)
        leg.addItem(host.labs, "lab samples")
        ood = pg.PlotDataItem([0, 1], [0, 0], pen=pg.mkPen(OOD_PEN), fillLevel=1, fillBrush=OOD_BRUSH)
        leg.addItem(ood, "out of distribution (hover: why)")
        self.legend = leg

    # ---------------------------------------------------------------- content
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
            self._relayout()

    def set_prediction(self, target: str, depth, value, lo=None, hi=None) -> None:
        if target in self.panels:
            self.panels[target].set_series(depth, value, lo, hi)
            self._show(self.panels[target])

    def set_lab_samples(self, target: str, depth, value, top=None, bottom=None) -> None:
        if target in self.panels:
            self.panels[target].set_labs(depth, value, top, bottom)
            if len(np.atleast_1d(value)):
                self._show(self.panels[target])

    def set_ood(self, depth, flags, step_mm: float | None = None, reasons=None) -> None:
        """Shade depths whose out-of-distribution flag is set (merged into spans, each at least
        MIN_SPAN_SHARE of the core tall so a single depth is seen); ``reasons`` (text per depth)
        become each span's tooltip."""
        depth = np.asarray(depth, float)
        flags = np.asarray(flags, bool)
        order = np.argsort(depth)
        depth, flags = depth[order], flags[order]
        why = np.asarray(reasons, dtype=object)[order] if reasons is not None else None
        if step_mm is None:
            step_mm = float(np.median(np.diff(depth))) if len(depth) > 1 else 1.0
        half = max(step_mm / 2, MIN_SPAN_SHARE * (np.ptp(depth) if len(depth) else 0.0) / 2)
        runs = runs_of_true(flags)
        self.ood_spans = [(depth[a] - half, depth[b - 1] + half) for a, b in runs]
        self.ood_tips = [ood_tip(depth[a:b], why[a:b]) for a, b in runs] if why is not None else []
        for p in self.panels.values():
            p.set_ood(self.ood_spans, self.ood_tips)

    def set_trace(self, name: str, depth, values, unit: str = "") -> None:
        """A trace (element counts or a ratio) in its own panel, sharing the depth axis; ``unit``
        (e.g. "counts") lets the axis use SI prefixes (kcounts) instead of crowded long numbers."""
        key = "trace:" + name
        if key not in self.panels:
            p = self._add_plot()
            colour = TRACE_COLOURS[len(self.trace_items) % len(TRACE_COLOURS)]
            self.panels[key] = DowncorePanel(p, key, "", colour)
            p.setLabel("top", name, units=unit or None)
            self.trace_items[name] = self.panels[key].line
            self.panels[key].set_ood(self.ood_spans, self.ood_tips)
        self.trace_items[name].setData(np.asarray(values, float), np.asarray(depth, float), connect="finite")
        self.panels[key].has_data = True
        self._relayout()

    def remove_trace(self, name: str) -> None:
        key = "trace:" + name
        pn = self.panels.pop(key, None)
        self.trace_items.pop(name, None)
        if pn is not None:
            self.cursors = [c for c in self.cursors if c.getViewBox() is not pn.plot.getViewBox()]
            self.glw.removeItem(pn.plot)
            self._relayout()

    def set_suggestions(self, depths, ranks=None, tips=None) -> None:
        """Suggested sampling depths as dashed lines across the panels, numbered in the first
        (empty: none); ``tips``: text per depth on hover."""
        for plot, line in getattr(self, "_suggestion_lines", []):
            plot.removeItem(line)
        self._suggestion_lines, self.suggested = [], [float(d) for d in depths]
        pen = pg.mkPen("#9467bd", width=1.5, style=pg.QtCore.Qt.PenStyle.DashLine)
        shown = self._visible() or list(self.panels.values())
        for n, p in enumerate(shown):
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
        for name in list(self.trace_items):
            self.remove_trace(name)
        for p in self.panels.values():
            p.clear()
            p.plot.setVisible(False)
        self.ood_spans = []
        self.section_tops = []
        self._relayout()

    def _on_click(self, ev) -> None:
        pos = ev.scenePos()
        for p in self.panels.values():
            if p.plot.isVisible() and p.plot.sceneBoundingRect().contains(pos):
                y = p.plot.getViewBox().mapSceneToView(pos).y()
                self.depthClicked.emit(float(y))
                return
