"""What the screenshot scripts share: a private XRFCORE_HOME, the Qt event pump, and a modal
dialog drawn over its dimmed window."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")


def private_home() -> Path:
    """A fresh XRFCORE_HOME, so a screenshot never touches the user's data folder."""
    home = Path(tempfile.mkdtemp(prefix="xrfcore-shots-"))
    os.environ["XRFCORE_HOME"] = str(home)
    return home


def pump(app, cond=None, timeout: float = 900.0, settle: float = 0.3) -> None:
    """Process Qt events until ``cond()`` holds (SystemExit after ``timeout``), then ``settle`` s more."""
    end = time.monotonic() + timeout
    while cond is not None and not cond() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)
    if cond is not None and not cond():
        raise SystemExit("timed out")
    t = time.monotonic() + settle
    while time.monotonic() < t:
        app.processEvents()
        time.sleep(0.01)


def save_over_window(app, win, dlg, out) -> None:
    """``dlg`` drawn over ``win`` (dimmed behind it, as a modal question looks), saved as ``out``."""
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QColor, QPainter

    dlg.show()
    dlg.adjustSize()
    pump(app, settle=0.5)
    canvas = win.grab()
    over = dlg.grab()
    p = QPainter(canvas)
    p.fillRect(canvas.rect(), QColor(0, 0, 0, 60))
    p.drawPixmap(QPoint((canvas.width() - over.width()) // 2, (canvas.height() - over.height()) // 3), over)
    p.end()
    canvas.save(str(out))
    print("saved", out)
