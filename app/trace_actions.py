"""Main-window actions for the downcore view's element traces, depth unit and section marks (a
mixin of MainWindow, like ModelActions). The values come from xrfcore.traces; nothing is computed
here."""
from __future__ import annotations

import numpy as np
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout)

from app.errors import report_exception

QUICK_RATIOS = [("Ca", "Fe"), ("Ca", "Ti"), ("Fe", "Ti"), ("Si", "Al"), ("K", "Ti"), ("Br", "Cl")]


class TraceDialog(QDialog):
    """Element counts or a ratio of two, optionally ln, with a normalisation for counts."""

    def __init__(self, elements: list[str], parent=None):
        from xrfcore.traces import NORMALISATIONS
        super().__init__(parent)
        self.setWindowTitle("Add a downcore trace")
        self.num, self.den, self.norm = QComboBox(), QComboBox(), QComboBox()
        self.num.addItems(elements)
        self.num.setCurrentText("Ca" if "Ca" in elements else elements[0])
        self.den.addItems(["(none: counts)"] + elements)
        for key, text in NORMALISATIONS.items():
            self.norm.addItem(text, key)
        self.log = QCheckBox("natural log (ln)")
        self.den.currentIndexChanged.connect(lambda i: self.norm.setEnabled(i == 0))
        form = QFormLayout(self)
        form.addRow("Element", self.num)
        form.addRow("Divided by", self.den)
        form.addRow("Counts as", self.norm)
        form.addRow("", self.log)
        bb = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        form.addRow(bb)

    def spec(self):
        from xrfcore.traces import TraceSpec
        den = self.den.currentText() if self.den.currentIndex() > 0 else None
        return TraceSpec(self.num.currentText(), den, self.log.isChecked(),
                         "counts" if den else self.norm.currentData())


class TraceActions:
    def build_trace_menu(self, view_menu) -> None:
        from xrfcore.traces import DEFAULT_TRACES, TraceSpec
        self.traces = {s.label(): s for s in DEFAULT_TRACES}   # after import: Ca, Fe, ln(Ca/Fe)
        tm = view_menu.addMenu("Element traces")
        self._action(tm, "Add a trace (element, ratio, normalisation)…", self.add_trace_dialog)
        self._action(tm, "Remove all traces", self.remove_all_traces)
        tm.addSeparator()
        self.trace_actions = {}
        for num, den in QUICK_RATIOS:
            spec = TraceSpec(num, den, log=True)
            a = QAction(spec.label(), self, checkable=True)
            a.setChecked(spec.label() in self.traces)
            a.toggled.connect(lambda on, s=spec: self.set_trace_on(s, on))
            tm.addAction(a)
            self.trace_actions[(num, den)] = a
        um = view_menu.addMenu("Depth unit")
        group = QActionGroup(self)
        self.depth_unit_actions = {}
        for unit in ("mm", "cm", "m"):
            a = QAction(unit, self, checkable=True)
            a.setChecked(unit == "mm")
            a.triggered.connect(lambda _c=False, u=unit: self.downcore.set_depth_unit(u))
            group.addAction(a)
            um.addAction(a)
            self.depth_unit_actions[unit] = a

    def add_trace_dialog(self) -> None:
        if self.view is None:
            return
        dlg = TraceDialog(self.trace_elements(), self)
        if dlg.exec():
            self.set_trace_on(dlg.spec(), True)

    def trace_elements(self) -> list[str]:
        from xrfcore import traces
        v = self.view
        kv = v.run_data.meta["kv"].to_numpy(float) if "kv" in v.run_data.meta else np.array([])
        kv = kv[np.isfinite(kv)]
        return traces.elements_in_range(v.run_data.grid, float(kv.max()) if len(kv) else None)

    def set_trace_on(self, spec, on: bool) -> None:
        name = spec.label()
        if not on:
            self.traces.pop(name, None)
            self.downcore.remove_trace(name)
            return
        self.traces[name] = spec
        if self.view is not None:
            self.draw_trace(spec)

    def remove_all_traces(self) -> None:
        for name in list(self.traces):
            self.traces.pop(name)
            self.downcore.remove_trace(name)
        for a in self.trace_actions.values():
            a.blockSignals(True)
            a.setChecked(False)
            a.blockSignals(False)

    def draw_trace(self, spec, quiet: bool = False) -> None:
        """Draw one trace; one these spectra cannot give is said (a dialog when the user asked for
        it, the status bar when it is a default drawn on opening a core) and not drawn."""
        from xrfcore import traces
        v = self.view
        meta = v.run_data.meta
        kv = meta["kv"].to_numpy(float) if "kv" in meta else np.array([])
        kv = kv[np.isfinite(kv)]
        try:
            values = traces.trace_values(v.run_data.counts, v.run_data.grid, spec,
                                         live_s=meta["live_s"].to_numpy(float) if "live_s" in meta else None,
                                         anode=getattr(v, "anode", None) or "Rh",
                                         kv=float(kv.max()) if len(kv) else None)
        except Exception as exc:  # noqa: BLE001
            self.downcore.remove_trace(spec.label())
            if quiet:   # kept in the set: the next core may have the line
                self.statusBar().showMessage(f"Trace {spec.label()} not drawn: {exc}", 10000)
                return
            report_exception(self, "Element trace", exc)
            self.traces.pop(spec.label(), None)
            a = self.trace_actions.get((spec.numerator, spec.denominator))
            if a is not None:
                a.blockSignals(True)
                a.setChecked(False)
                a.blockSignals(False)
            return
        unit = "" if spec.denominator or spec.log else {"counts": "counts", "cps": "cps"}.get(spec.normalise, "")
        self.downcore.set_trace(spec.label(), v.depth, np.asarray(values)[v.order], unit)

    def draw_traces_and_sections(self) -> None:
        """On showing a core: its traces, and its section tops marked."""
        v = self.view
        for spec in list(self.traces.values()):
            self.draw_trace(spec, quiet=True)
        meta = v.run_data.meta
        if "section" in meta and "depth_mm" in meta and len(meta):
            d = meta["depth_mm"].to_numpy(float)
            sec = meta["section"].astype(str).to_numpy()
            tops = {}
            for s_, dd in zip(sec, d):
                if np.isfinite(dd):
                    tops[s_] = min(tops.get(s_, np.inf), dd)
            top_col = meta["section_top_mm"].to_numpy(float) if "section_top_mm" in meta else None
            if top_col is not None:   # the section's own top where the file says it
                for s_, t in zip(sec, top_col):
                    if np.isfinite(t) and s_ in tops:
                        tops[s_] = min(tops[s_], t)
            order = sorted(tops.items(), key=lambda kv_: kv_[1])
            self.downcore.set_sections([t for _, t in order], [n for n, _ in order])
