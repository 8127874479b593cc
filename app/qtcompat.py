"""Work around a reference-count bug of PySide6 6.12: ``SignalInstance.emit`` returns ``True``
without a new reference, so every emit (ours and pyqtgraph's) steals one reference to ``True``
and a long session dies with "Fatal Python error: bool_dealloc". Detected at import by measuring
``sys.getrefcount(True)`` around test emits; the wrapper only adds the missing reference, and is
only installed when the running PySide6 shows the bug.
"""
from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal, SignalInstance

_installed = False


def _leak_per_emit() -> int:
    class _Probe(QObject):
        sig = Signal(int)

    p = _Probe()
    n = 50
    before = sys.getrefcount(True)
    for _ in range(n):
        p.sig.emit(1)
    after = sys.getrefcount(True)
    # the probe stole n references: give them back whatever we decide below
    leaked = before - after
    for _ in range(max(0, leaked)):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(True))
    return round(leaked / n)


def install() -> bool:
    """Patch SignalInstance.emit when the bug is present; returns whether it was patched."""
    global _installed
    if _installed:
        return True
    if _leak_per_emit() != 1:
        return False
    original = SignalInstance.emit
    incref = ctypes.pythonapi.Py_IncRef
    obj = ctypes.py_object

    def emit(self, *args):
        result = original(self, *args)
        if result is True:
            incref(obj(True))
        return result

    SignalInstance.emit = emit
    _installed = True
    return True


PATCHED = install()
