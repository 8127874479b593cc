"""Work around a reference-count bug of the installed PySide6/shiboken6 under Python 3.11.

This PySide6 build returns ``None`` from every void method (``setText``, ``update``, ...) and
``True`` from ``Signal.emit`` without adding a reference, as if those objects were immortal (they
are from Python 3.12 on). Under Python 3.11 each such call steals one reference, and a session
dies after a few minutes of drawing with "Fatal Python error: none_dealloc" (or bool_dealloc).

When the running combination shows the leak (measured at import), we give None, True and False a
reference count so large it cannot reach zero (what Python 3.12 does for them): the objects are
never freed anyway, so the only effect is that the crash cannot happen. Nothing is changed on a
PySide6 / Python that does not leak.
"""
from __future__ import annotations

import ctypes
import sys

IMMORTAL = 1 << 60
PATCHED = False


def _leaks() -> bool:
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        sig = Signal(int)

    p = _Probe()
    n = 64
    none0, true0 = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(n):
        p.setObjectName("probe")   # a void method
        p.sig.emit(1)              # returns True
    lost_none = none0 - sys.getrefcount(None)
    lost_true = true0 - sys.getrefcount(True)
    # give back what the probe took, whatever happens next
    for obj, lost in ((None, lost_none), (True, lost_true)):
        for _ in range(max(0, lost)):
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    return lost_none >= n // 2 or lost_true >= n // 2


def _immortalise(obj) -> None:
    # ob_refcnt is the first field of every PyObject (Py_ssize_t) in CPython 3.11
    ref = ctypes.c_ssize_t.from_address(id(obj))
    if ref.value < IMMORTAL:
        ref.value += IMMORTAL


def install() -> bool:
    global PATCHED
    if PATCHED:
        return True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False  # singletons are immortal there already
    if not _leaks():
        return False
    for obj in (None, True, False):
        _immortalise(obj)
    PATCHED = True
    return True


install()
