"""Training view: live loss curve, then validation R2/RMSE and a predicted-vs-measured plot."""
from __future__ import annotations

import re

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from app.formatting import sig

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"
# xrfcore's messages: "loss 0.1234 val 0.2345" (pretrain), "epoch 3: train 0.123 val 0.456" (fine-tune)
_LOSS_RE = re.compile(r"(?<![a-z_])(train_loss|val_loss|train|val|loss)(?:\s*[=:]\s*|\s+)" + _NUM, re.I)


def parse_losses(message: str) -> dict[str, float]:
    """Pick ``loss=0.12 val_loss=0.3`` style numbers out of a progress message."""
    out = {}
    for key, val in _LOSS_RE.findall(message or ""):
        key = key.lower()
        out["train" if key in ("loss", "train", "train_loss") else "val"] = float(val)
    return out


class TrainingView(QWidget):
    """Loss curve (left) and one predicted-vs-measured plot per target (right: CaCO3 and TOC
    differ by two orders of magnitude, so they do not share axes)."""

    TARGET_COLOURS = {"CaCO3": "#1f77b4", "TOC": "#2ca02c"}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss_plot = pg.PlotWidget(background="w", title="Loss")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setLabel("left", "loss")
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.addLegend(offset=(-10, 10))   # top right: curves start top left
        self.train_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#1f77b4", width=1.3), name="train")
        self.val_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#ff7f0e", width=1.3),
                                             symbol="o", symbolSize=4, name="validation")
        self.pvm = pg.GraphicsLayoutWidget()
        self.pvm.setBackground("w")
        self.pvm_title = QLabel("")
        self.pvm_title.setAlignment(Qt.AlignCenter)
        self.pvm_title.setWordWrap(True)
        self.pvm_plots: dict[str, pg.PlotItem] = {}
        self.fit = ""
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        self.metrics.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.addWidget(self.pvm_title)
        right.addWidget(self.pvm, 1)
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot, 1)
        plots.addLayout(right, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(plots, 1)
        lay.addWidget(self.metrics)
        self.reset()

    def set_loss_note(self, note: str) -> None:
        self.loss_plot.setTitle(f"Loss ({note})" if note else "Loss")

    def reset(self) -> None:
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self.train_curve.setData([], [])
        self.val_curve.setData([], [])
        self.pvm.clear()
        self.pvm_plots = {}
        self.fit = ""
        self.pvm_title.setText("Nothing trained in this session yet. Model > Fine-tune… shows here how "
                               "well the model predicts lab samples it did not see (validation).")
        self.metrics.setText("")

    def add_progress(self, done: int, total: int, message: str) -> None:
        losses = parse_losses(message)
        if losses and not self.train and not self.val:   # fine-tuning counts epochs, pretraining steps
            self.loss_plot.setLabel("bottom", "epoch" if "epoch" in (message or "").lower() else "step")
        if "train" in losses and np.isfinite(losses["train"]) and losses["train"] > 0:
            self.train.append((done, losses["train"]))
            x, y = zip(*self.train)
            self.train_curve.setData(list(x), list(y))
        if "val" in losses and np.isfinite(losses["val"]) and losses["val"] > 0:
            self.val.append((done, losses["val"]))
            x, y = zip(*self.val)
            self.val_curve.setData(list(x), list(y))

    def show_validation(self, measured: dict, predicted: dict, metrics: dict, *,
                        fit: str = "validation", scheme: str = "", units: dict | None = None) -> None:
        """measured/predicted: target -> values (None/NaN = not measured or not predicted);
        metrics: target -> {r2, rmse, n, ...} (the card's validation metrics);
        fit: "validation" (held-out predictions) or "training fit" (in-sample, shown as such);
        units: target -> unit (default wt% for every target)."""
        units = units or {}
        self.pvm.clear()
        self.pvm_plots = {}
        self.fit = fit
        held_out = fit == "validation"
        if held_out:
            self.pvm_title.setText("<b>Validation</b>: predicted vs measured on held-out lab samples"
                                   + (f", {scheme}" if scheme else ""))
        else:
            self.pvm_title.setText("<b>Fit on the labelled samples</b> (in-sample, optimistic: not a "
                                   "validation; the R²/RMSE below are out-of-fold)")
        targets = [t for t in measured if len(_values(measured[t]))]
        for i, t in enumerate(targets):
            m, p = _values(measured[t]), _values(predicted.get(t, []))
            if len(m) != len(p):
                continue
            ok = np.isfinite(m) & np.isfinite(p)
            plot = self.pvm.addPlot(row=0, col=i)
            self.pvm_plots[t] = plot
            u = _unit_text(units.get(t, "wt%"))
            plot.setLabel("bottom", f"measured {t} {u}".rstrip())
            plot.setLabel("left", f"predicted {t} {u}".rstrip())
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setTitle(_target_title(t, metrics.get(t), int(ok.sum()), held_out, units.get(t, "wt%")), size="9pt")
            if ok.any():
                lo = float(min(m[ok].min(), p[ok].min()))
                hi = float(max(m[ok].max(), p[ok].max()))
                pad = 0.05 * (hi - lo or 1.0)
                lo, hi = lo - pad, hi + pad
                plot.plot([lo, hi], [lo, hi], pen=pg.mkPen("#999999", style=Qt.DashLine))
                plot.plot(m[ok], p[ok], pen=None, symbol="o", symbolSize=6,
                          symbolBrush=self.TARGET_COLOURS.get(t, "#7f3f98"), symbolPen=pg.mkPen("k", width=0.5))
                plot.setXRange(lo, hi, padding=0)
                plot.setYRange(lo, hi, padding=0)
        parts = []
        for t, m in metrics.items():
            if isinstance(m, dict):
                parts.append(f"{t}: {_metric_text(m, units.get(t, 'wt%'))}")
        lead = "Validation" + (f", {scheme}" if scheme else "")
        self.metrics.setText(f"{lead} — " + ";  ".join(parts) if parts else "")


def _values(v) -> np.ndarray:
    """A list with None for missing values (JSON) -> float array with NaN."""
    if isinstance(v, np.ndarray):
        return v.astype(float).ravel()
    return np.array([np.nan if x is None else x for x in (v or [])], float)


def _unit_text(u: str) -> str:
    return "(wt %)" if u == "wt%" else (f"({u})" if u else "")


def _metric_text(m: dict, unit: str = "wt%") -> str:
    r2, rmse = m.get("r2", m.get("R2")), m.get("rmse", m.get("RMSE"))
    bits = []
    if r2 is not None:
        bits.append(f"R² {float(r2):.3f}")
    if rmse is not None:
        bits.append(f"RMSE {sig(rmse, 3)} {'wt %' if unit == 'wt%' else unit}".rstrip())
    if m.get("n") is not None:
        bits.append(f"n {int(m['n'])}")
    return ", ".join(bits)


def _target_title(t: str, m, n_points: int, held_out: bool, unit: str = "wt%") -> str:
    metric = _metric_text(m, unit) if isinstance(m, dict) else ""
    kind = "validation" if held_out else "in-sample fit"
    return f"{t} ({kind}, {n_points} samples)" + (f"<br>{metric}" if metric else "")
