"""Logging and error reporting: every error is logged with its traceback and shown as a plain dialog.

The user sees one sentence (and where the log is); the traceback goes only to the log file.
"""
from __future__ import annotations

import logging
import logging.handlers
import sys
import traceback

from app import settings

log = logging.getLogger("xrfcore.app")
_configured = False


def log_file():
    return settings.log_dir() / "xrfcore-gui.log"


def setup_logging() -> None:
    """Log to a rotating file in the user log folder (idempotent)."""
    global _configured
    if _configured:
        return
    handler = logging.handlers.RotatingFileHandler(
        log_file(), maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("xrfcore")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    _configured = True


def _raised_by_h5py(exc: BaseException) -> bool:
    from xrfcore.store import raised_by_h5py
    return raised_by_h5py(exc)


def plain_message(exc: BaseException) -> str:
    """One readable sentence for the user: the exception's own text, never a traceback."""
    text = str(exc).strip()
    if isinstance(exc, FileNotFoundError) and getattr(exc, "filename", None):
        return f"File not found: {exc.filename}"
    if isinstance(exc, PermissionError) and getattr(exc, "filename", None):
        return f"No permission to use {exc.filename}"
    if isinstance(exc, MemoryError):
        return "Not enough memory for this operation."
    if isinstance(exc, (OSError, KeyError, RuntimeError)) and _raised_by_h5py(exc):
        # a damaged project file that xrfcore.store did not already describe: no h5py jargon
        return ("The project file is damaged or unreadable (" + (text.splitlines()[0][:200] if text else
                type(exc).__name__) + "); nothing was written; restore it from a backup, or import the "
                "cores again into a new project.")
    if not text:
        return f"An unexpected error occurred ({type(exc).__name__})."
    # keep the first line only: multi-line texts are usually dumps
    return text.splitlines()[0][:500]


def log_exception(exc: BaseException, context: str = "") -> None:
    setup_logging()
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    log.error("%s%s", f"{context}: " if context else "", tb)


def show_error(parent, title: str, message: str, exc: BaseException | None = None) -> None:
    """Log, then show a modal dialog with the plain message."""
    from PySide6.QtWidgets import QMessageBox

    setup_logging()
    if exc is not None:
        log_exception(exc, title)
    else:
        log.error("%s: %s", title, message)
    QMessageBox.critical(parent, title, f"{message}\n\nDetails were written to the log:\n{log_file()}")


def report_exception(parent, title: str, exc: BaseException) -> None:
    show_error(parent, title, plain_message(exc), exc)


def install_excepthook() -> None:
    """Uncaught exceptions in Qt slots: log + dialog instead of a traceback on stderr or a crash."""
    def hook(etype, value, tb):
        if issubclass(etype, KeyboardInterrupt):
            sys.__excepthook__(etype, value, tb)
            return
        value.__traceback__ = tb
        try:
            from PySide6.QtWidgets import QApplication
            parent = QApplication.activeWindow()
            report_exception(parent, "Unexpected error", value)
        except Exception:  # last resort: at least the log
            log_exception(value, "unexpected error")
    sys.excepthook = hook
