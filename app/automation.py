"""Unattended runs: --screenshot (wait until idle, save the main window) and --self-test."""
from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication

log = logging.getLogger("xrfcore.app.automation")
STABLE_S = 0.6


class Autopilot(QObject):
    """Emits done(exit_code) once its task is finished (or failed, or timed out)."""

    done = Signal(int)

    def __init__(self, win, *, screenshot: str | None = None, self_test: bool = False,
                 timeout_s: float = 600.0):
        super().__init__(win)
        self.win, self.screenshot, self.self_test = win, screenshot, self_test
        self.deadline = time.monotonic() + timeout_s
        self.idle_since: float | None = None
        self.timer = QTimer(self, interval=100)
        self.timer.timeout.connect(self._tick)
        self.stage = "wait-core"

    def start(self) -> None:
        self.timer.start()

    def _fail(self, msg: str, code: int = 1) -> None:
        self.timer.stop()
        log.error("autopilot: %s", msg)
        print(f"xrfcore-gui: {msg}", file=sys.stderr)
        self.done.emit(code)

    def _ready(self) -> bool:
        w = self.win
        if not w.is_idle():
            self.idle_since = None
            return False
        if self.idle_since is None:
            self.idle_since = time.monotonic()
        return time.monotonic() - self.idle_since >= STABLE_S

    def _tick(self) -> None:
        modal = QApplication.activeModalWidget()
        if modal is not None and modal is not self.win:
            text = getattr(modal, "text", lambda: "")()
            self._fail(f"a dialog is open: {modal.windowTitle()}: {text}", 2)
            modal.close()
            return
        if time.monotonic() > self.deadline:
            self._fail("timed out waiting for the application to become idle")
            return
        if not self._ready():
            return
        if self.stage == "wait-core":
            if self.win.stack.currentIndex() == 1 and self.win.view is None:
                return  # project open, core still loading
            if self.self_test and self.win.view is None and time.monotonic() - self.idle_since < 3.0:
                return  # give the sample core a moment to start opening
            if self.self_test:
                self._run_self_test()
                return
            self._shoot()

    def _shoot(self) -> None:
        self.timer.stop()
        QApplication.processEvents()
        path = Path(self.screenshot)
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = self.win.grab().save(str(path))
        if not ok:
            self._fail(f"could not write the screenshot {path}")
            return
        print(f"screenshot saved: {path}")
        self.done.emit(0)

    def _run_self_test(self) -> None:
        from app import engine
        self.stage = "self-test"
        w = self.win
        if w.view is None:
            self._fail("the sample core did not open")
            return
        base = w.base_model()
        if not base:
            self._fail("no pretrained model is installed")
            return
        # the self-test's fine-tuned model is thrown away at exit (its predictions stay in the
        # sample project, labelled with its model id)
        self._tmp = tempfile.TemporaryDirectory(prefix="xrfcore-selftest-")
        out = Path(self._tmp.name) / "model"
        print(f"self-test: base model {Path(base).name}")

        def fine(res):
            w.start_job(engine.predict_table, w.project, w.view.core, w.view.run, res["path"],
                        device="cpu", name="predict", uses_torch=True, text="self-test predict",
                        on_success=predicted, on_failed=lambda m: self._fail("predict failed: " + m))

        def predicted(df):
            model_id = str(df["model_id"].iloc[0]) if len(df) else "?"
            targets = [t for t in df.columns if f"{t}_lo" in df.columns and df[t].notna().any()]
            ok = len(df) == len(w.view.depth) and len(df) > 0 and bool(targets) \
                and all(df[t].notna().all() for t in targets)
            print(f"self-test: {len(df)} depths predicted by {model_id}: {'ok' if ok else 'FAILED'}")
            self.timer.stop()
            self.done.emit(0 if ok else 1)

        w.start_job(engine.finetune_project, w.project, base, out, mode="head", device="cpu",
                    name="finetune", uses_torch=True, text="self-test fine-tune", on_success=fine,
                    on_failed=lambda m: self._fail("fine-tune failed: " + m))
