"""Screenshot of Advanced > *Adapt the model to this project* when it has finished: the loss curve in
the Training tab and the before/after reconstruction table (adapt_dialog.png).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_adapt_screenshot.py [--steps 60]

Imports the bundled SIMULATED sample core into a new project, opens it and adapts the shipped
foundation model to it on the CPU (few steps: the point is what the app shows, not the model).
"""
from __future__ import annotations

import argparse
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE / "adapt_dialog.png"))
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="xrfcore-shots-"))
    os.environ["XRFCORE_HOME"] = str(home)

    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QColor, QPainter
    from PySide6.QtWidgets import QApplication, QInputDialog, QMessageBox
    app = QApplication.instance() or QApplication([])
    from app import engine
    from app.main_window import MainWindow
    from xrfcore import importer

    def pump(cond=None, timeout=1800.0, settle=0.3):
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

    importer.import_folder(engine.sample_core_folder(), home / "sample.h5")
    win = MainWindow()
    win.resize(1366, 768)
    win.show()
    win.settings.device = "cpu"
    win.open_project(str(home / "sample.h5"))
    pump(lambda: win.view is not None and win.is_idle())
    asked = []
    QInputDialog.getInt = staticmethod(lambda *a, **k: (asked.append(a[2]), (args.steps, True))[1])
    shown = []

    def information(parent, title, text, *a, **k):
        box = QMessageBox(QMessageBox.Information, title, text, QMessageBox.Ok, parent)
        shown.append(box)
    QMessageBox.information = staticmethod(information)
    win.adapt()
    pump(lambda: bool(shown) and win.is_idle(), settle=1.0)
    box = shown[-1]
    box.show()
    box.adjustSize()
    pump(settle=0.5)
    canvas = win.grab()
    over = box.grab()
    p = QPainter(canvas)
    p.fillRect(canvas.rect(), QColor(0, 0, 0, 60))
    p.drawPixmap(QPoint((canvas.width() - over.width()) // 2, (canvas.height() - over.height()) // 3), over)
    p.end()
    canvas.save(args.out)
    print("asked:", asked[0].replace("\n", " | "))
    print("shown:", box.text())
    print("saved", args.out)
    box.close()
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
