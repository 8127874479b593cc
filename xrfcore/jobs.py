"""The Job protocol shared by the CLI and the GUI.

A job is a plain function that takes ``progress(done, total, message)`` and a
``CancelToken``. It calls ``token.raise_if_cancelled()`` at safe points; the
caller catches ``Cancelled``. A cancelled job must leave files as they were.
"""
from __future__ import annotations

import threading
from typing import Callable, Protocol


class Cancelled(Exception):
    """Raised inside a job when its cancel token was set."""


class Progress(Protocol):
    def __call__(self, done: int, total: int, message: str = "") -> None: ...


def no_progress(done: int, total: int, message: str = "") -> None:
    """Progress callback that ignores everything."""


class CancelToken:
    """Thread-safe flag: the GUI thread sets it, the worker polls it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def should_cancel(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


ProgressFn = Callable[[int, int, str], None]
