"""Training view: live loss curve, then validation R2/RMSE and a predicted-vs-measured plot."""
from __future__ import annotations

import re

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

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
    TARGET_COLOURS = {"CaCO3": "#1f77b4", "TOC": "#2ca02c"}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss_plot = pg.PlotWidget(background="w", title="Loss")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.addLegend()
        self.train_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#1f77b4", width=1.3), name="train")
        self.val_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#ff7f0e", width=1.3),
                                             symbol="o", symbolSize=4, name="validation")
        self.pvm_plot = pg.PlotWidget(background="w", title="Validation: predicted vs measured")
        self.pvm_plot.setLabel("bottom", "measured (wt %)")
        self.pvm_plot.setLabel("left", "predicted (wt %)")
        self.pvm_plot.addLegend()
        self.diag = self.pvm_plot.plot([0, 100], [0, 100], pen=pg.mkPen("#999999", style=Qt.DashLine))
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        self.metrics.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot, 1)
        plots.addWidget(self.pvm_plot, 1)
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
        for item in list(self.pvm_plot.listDataItems()):
            if item is not self.diag:
                self.pvm_plot.removeItem(item)
        self.metrics.setText("")

    def add_progress(self, done: int, total: int, message: str) -> None:
        losses = parse_losses(message)
        if "train" in losses and np.isfinite(losses["train"]) and losses["train"] > 0:
            self.train.append((done, losses["train"]))
            x, y = zip(*self.train)
            self.train_curve.setData(list(x), list(y))
        if "val" in losses and np.isfinite(losses["val"]) and losses["val"] > 0:
            self.val.append((done, losses["val"]))
            x, y = zip(*self.val)
            self.val_curve.setData(list(x), list(y))

    def show_validation(self, measured: dict, predicted: dict, metrics: dict) -> None:
        """measured/predicted: target -> array; metrics: target -> {r2, rmse, ...}."""
        lo, hi = np.inf, -np.inf
        for t, m in measured.items():
            m = np.asarray(m, float)
            p = np.asarray(predicted.get(t, []), float)
            if len(m) == 0 or len(m) != len(p):
                continue
            self.pvm_plot.plot(m, p, pen=None, symbol="o", symbolSize=6,
                               symbolBrush=self.TARGET_COLOURS.get(t, "#7f3f98"), name=t)
            lo, hi = min(lo, np.nanmin(m), np.nanmin(p)), max(hi, np.nanmax(m), np.nanmax(p))
        if np.isfinite(lo):
            self.diag.setData([lo, hi], [lo, hi])
        parts = []
        for t, m in metrics.items():
            if isinstance(m, dict):
                r2, rmse = m.get("r2", m.get("R2")), m.get("rmse", m.get("RMSE"))
                bits = []
                if r2 is not None:
                    bits.append(f"R² {float(r2):.3f}")
                if rmse is not None:
                    bits.append(f"RMSE {float(rmse):.3g} wt %")
                parts.append(f"{t}: " + ", ".join(bits))
        self.metrics.setText("Validation — " + ";  ".join(parts) if parts else "")
