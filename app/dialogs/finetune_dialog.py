"""Fine-tune settings, a live loss curve with Cancel, then validation R2/RMSE and predicted vs measured."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QProgressBar, QPushButton, QRadioButton, QSpinBox,
                               QVBoxLayout)

from app import engine
from app.dialogs.instrument_dialog import ask_allow_mismatch
from app.errors import show_error
from app.formatting import model_name, short_path
from app.settings import models_dir
from app.views.training_view import TrainingView
from app.workers import JobThread


class FinetuneDialog(QDialog):
    """Runs engine.finetune_project in a JobThread. ``result`` holds the outcome after success."""

    modelReady = Signal(str)

    def __init__(self, project: str, parent=None, *, device: str = "auto", base_model: str = "",
                 cuda: bool | None = None):
        super().__init__(parent)
        self.setWindowTitle("Fine-tune on the lab samples")
        self.resize(980, 640)
        self.project = project
        self.job: JobThread | None = None
        self.result: dict | None = None
        self.outcome = ""
        self.allow_mismatch = False   # set when the user chose "Fine-tune anyway"

        form = QFormLayout()
        # one box per target of the stored lab samples (CaCO3 / TOC, or any lab column chosen when
        # the lab samples were loaded), with its unit
        try:
            stored = engine.label_targets(project)
        except Exception:  # noqa: BLE001 (an unreadable project fails with its reason on Start)
            stored = {}
        self.target_boxes: dict[str, QCheckBox] = {}
        trow = QHBoxLayout()
        for t, u in (stored or {"CaCO3": "wt%", "TOC": "wt%"}).items():
            box = QCheckBox(f"{t} ({u})" if u else t)
            box.setChecked(True)
            self.target_boxes[t] = box
            trow.addWidget(box)
        self.t_caco3, self.t_toc = self.target_boxes.get("CaCO3"), self.target_boxes.get("TOC")
        trow.addStretch(1)
        form.addRow("Targets", trow)
        self.head = QRadioButton("Head only (fast: encoder frozen)")
        self.full = QRadioButton("Full (all weights, slower)")
        self.head.setChecked(True)
        g = QButtonGroup(self)
        g.addButton(self.head)
        g.addButton(self.full)
        mrow = QHBoxLayout()
        mrow.addWidget(self.head)
        mrow.addWidget(self.full)
        mrow.addStretch(1)
        form.addRow("Mode", mrow)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(60)
        self.epochs.setToolTip("Full mode only (early stopping on validation loss)")
        form.addRow("Epochs", self.epochs)
        self.head.toggled.connect(lambda on: self.epochs.setEnabled(not on))
        self.epochs.setEnabled(False)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setCurrentText(device if device in ("auto", "cpu", "cuda") else "auto")
        if cuda is False:
            self.device.model().item(2).setEnabled(False)
            self.device.setToolTip("No CUDA GPU found on this computer")
        form.addRow("Device", self.device)
        self.base = QComboBox()
        self.base.setMinimumWidth(520)
        for card_path, card in engine.find_models("mae"):
            self.base.addItem(engine.describe_model(card_path, card), str(card_path.with_suffix("")))
        if base_model:
            i = self.base.findData(str(Path(base_model).with_suffix("")))
            if i < 0:
                self.base.insertItem(0, str(base_model), str(base_model))
                i = 0
            self.base.setCurrentIndex(i)
        browse = QPushButton("Other…")
        browse.clicked.connect(self._browse)
        brow = QHBoxLayout()
        brow.addWidget(self.base, 1)
        brow.addWidget(browse)
        form.addRow("Base model", brow)

        self.view = TrainingView()
        self.view.loss_plot.setVisible(False)
        self.view.pvm_title.setText("Start: the model is fitted to the lab samples, then checked on "
                                    "samples it did not see (validation, shown here).")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.bar = QProgressBar()
        self.start_btn = QPushButton("Start")
        self.start_btn.setDefault(True)
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        self.close_btn = QPushButton("Close")
        self.close_btn.clicked.connect(self.reject)
        # the next step of the journey from here: close and predict every depth of the core
        self.predict_after = False
        self.predict_btn = QPushButton("Predict the core")
        self.predict_btn.setToolTip("Close this window and predict the targets at every depth with the new model")
        self.predict_btn.setEnabled(False)
        self.predict_btn.clicked.connect(self._predict_now)
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.start_btn)
        row.addWidget(self.cancel_btn)
        row.addWidget(self.predict_btn)
        row.addWidget(self.close_btn)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.status)
        lay.addLayout(row)

    def _browse(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Base model card", str(models_dir()), "Model cards (*.json)")
        if f:
            self.base.insertItem(0, f, str(Path(f).with_suffix("")))
            self.base.setCurrentIndex(0)

    def targets(self) -> list[str]:
        return [t for t, b in self.target_boxes.items() if b.isChecked()]

    def settings(self) -> dict:
        return {"mode": "head" if self.head.isChecked() else "full", "targets": self.targets(),
                "epochs": self.epochs.value(), "device": self.device.currentText(),
                "base_model": self.base.currentData()}

    def start(self) -> None:
        s = self.settings()
        if not s["targets"]:
            show_error(self, "Fine-tune", "Choose at least one target (" + ", ".join(self.target_boxes) + ").")
            return
        if not s["base_model"]:
            show_error(self, "Fine-tune", "No foundation model is installed. Choose a model file "
                       "(Other…) or pretrain one (Advanced > Pretrain on this project's spectra).")
            return
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        from xrfcore.outputs import fresh_folder  # never onto an existing model folder
        out = fresh_folder(models_dir(), f"finetuned-{Path(self.project).stem}-{stamp}")
        self.view.reset()
        self.predict_btn.setEnabled(False)
        self.view.pvm_title.setText("Fine-tuning…")
        # head mode fits a ridge head in one step: there is no loss curve to watch
        self.view.loss_plot.setVisible(s["mode"] != "head")
        self.status.setText("Fine-tuning…")
        self.start_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.bar.setRange(0, 0)
        self.job = JobThread(engine.finetune_project, self.project, s["base_model"], out, mode=s["mode"],
                             targets=s["targets"], epochs=s["epochs"], device=s["device"],
                             allow_instrument_mismatch=self.allow_mismatch,
                             name="finetune", uses_torch=True, parent=self)
        self.job.progress.connect(self._on_progress)
        self.job.succeeded.connect(self._on_done)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.start()

    def cancel(self) -> None:
        if self.job is not None and self.job.isRunning():
            self.cancel_btn.setEnabled(False)
            self.status.setText("Cancelling… no model will be saved")
            self.job.cancel()

    def _on_progress(self, done: int, total: int, msg: str) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(done)
        if msg:
            self.status.setText(msg)
        self.view.add_progress(done, total, msg)

    def _on_done(self, result: dict) -> None:
        self.result = result
        self.outcome = "ok"
        card = result["card"]
        self.view.show_validation(result["measured"], result["predicted"], card.get("metrics", {}),
                                  fit=result.get("fit", "validation"), scheme=result.get("scheme", ""),
                                  units=result.get("units"))
        sim = "  Trained on SIMULATED data." if card.get("simulated_data") else ""
        base = (card.get("base_model") or {}).get("id") or ""
        base_name = self.base.currentText().split(" (")[0] if self.base.currentData() else base
        self.status.setText(f"Saved model {model_name(card)} (base: {base_name}) in "
                            f"{short_path(Path(result['path']).parent)}.{sim}  Next: Predict the core.")
        self.status.setToolTip(str(Path(result["path"]).parent))
        self._finish()
        self.modelReady.emit(result["path"])

    def _predict_now(self) -> None:
        self.predict_after = True
        self.accept()

    def _on_failed(self, message: str) -> None:
        info = engine.instrument_refusal(self.job.error if self.job is not None else None)
        if info is not None and not self.allow_mismatch:
            # the lab samples' runs come from another instrument than the base model's: ask
            self._finish()
            if ask_allow_mismatch(self, info, "Fine-tune"):
                self.allow_mismatch = True
                self.start()
                return
            self.outcome = "refused"
            self.status.setText("Not fine-tuned: " + message)
            return
        self.outcome = "failed"
        self.status.setText("Fine-tuning failed: " + message)
        self._finish()
        show_error(self, "Fine-tune", message)

    def _on_cancelled(self) -> None:
        self.outcome = "cancelled"
        self.status.setText("Cancelled; no model was saved.")
        self._finish()

    def _finish(self) -> None:
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.predict_btn.setEnabled(self.outcome == "ok")
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if self.outcome == "ok" else 0)

    def reject(self) -> None:
        if self.job is not None and self.job.isRunning():
            self.cancel()
            self.job.wait()
        super().reject()
