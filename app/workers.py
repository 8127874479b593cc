"""Run an xrfcore job function in a QThread and turn its callbacks into Qt signals.

The JobThread object lives in the GUI thread, so slots connected to its signals run in the GUI
thread (queued). Cancelling sets the xrfcore CancelToken directly from the GUI thread: a cancel
*signal* queued to a busy worker would never be delivered.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

from PySide6.QtCore import QThread, Signal

from xrfcore.jobs import Cancelled, CancelToken

from app.errors import log_exception, plain_message

log = logging.getLogger("xrfcore.app.workers")

PROGRESS_INTERVAL_S = 0.03   # at most ~30 progress signals a second reach the GUI


def pin_torch_threads() -> None:
    """Leave one core to the GUI thread (torch's intra-op pool otherwise takes them all)."""
    n = max(1, (os.cpu_count() or 2) - 1)
    try:
        import torch
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    except Exception:  # torch missing or already initialised differently: harmless
        pass


class JobThread(QThread):
    """``fn(*args, progress=..., token=..., **kwargs)`` in a background thread.

    Signals: progress(done, total, message), succeeded(result), failed(message), cancelled().
    Exactly one of succeeded / failed / cancelled is emitted, then QThread.finished.
    """

    progress = Signal(int, int, str)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, fn: Callable[..., Any], *args, name: str = "job", uses_torch: bool = False,
                 parent=None, **kwargs):
        super().__init__(parent)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.name = name
        self.uses_torch = uses_torch
        self.token = CancelToken()
        self.result: Any = None
        self.error: BaseException | None = None
        self._last_emit = 0.0

    def cancel(self) -> None:
        """Called from the GUI thread; the job sees it at its next safe point."""
        self.token.cancel()

    def _progress(self, done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        # throttle, but always deliver the last step and any message-bearing step of a short job
        if done >= total or now - self._last_emit >= PROGRESS_INTERVAL_S:
            self._last_emit = now
            self.progress.emit(int(done), int(total), str(message))

    def run(self) -> None:  # worker thread
        if self.uses_torch:
            pin_torch_threads()
        log.info("job %s started", self.name)
        try:
            self.result = self.fn(*self.args, progress=self._progress, token=self.token, **self.kwargs)
        except Cancelled:
            log.info("job %s cancelled", self.name)
            self.cancelled.emit()
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message
            self.error = exc
            log_exception(exc, f"job {self.name} failed")
            self.failed.emit(plain_message(exc))
        else:
            log.info("job %s finished", self.name)
            self.succeeded.emit(self.result)


def call_job(fn: Callable[..., Any], *args, **kwargs) -> Callable[..., Any]:
    """Adapt a plain function (no progress/token) to the job signature."""
    def job(*, progress, token):
        token.raise_if_cancelled()
        out = fn(*args, **kwargs)
        token.raise_if_cancelled()
        return out
    return job
