"""Screenshot of Advanced > *Adapt the model to this project* when it has finished: the loss curve in
the Training tab and the before/after reconstruction table (adapt_dialog.png).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_adapt_screenshot.py [--steps 60]

Imports the bundled SIMULATED sample core into a new project, opens it and adapts the shipped
foundation model to it on the CPU (few steps: the point is what the app shows, not the model).
"""
from __future__ import annotations

import argparse
import sys

from _shots import HERE, private_home, pump, save_over_window


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE / "adapt_dialog.png"))
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    home = private_home()

    from PySide6.QtWidgets import QApplication, QInputDialog, QMessageBox
    app = QApplication.instance() or QApplication([])
    from app import engine
    from app.main_window import MainWindow
    from xrfcore import importer

    importer.import_folder(engine.sample_core_folder(), home / "sample.h5")
    win = MainWindow()
    win.resize(1366, 768)
    win.show()
    win.settings.device = "cpu"
    win.open_project(str(home / "sample.h5"))
    pump(app, lambda: win.view is not None and win.is_idle())
    asked = []
    QInputDialog.getInt = staticmethod(lambda *a, **k: (asked.append(a[2]), (args.steps, True))[1])
    shown = []

    def information(parent, title, text, *a, **k):
        box = QMessageBox(QMessageBox.Information, title, text, QMessageBox.Ok, parent)
        shown.append(box)
    QMessageBox.information = staticmethod(information)
    win.adapt()
    pump(app, lambda: bool(shown) and win.is_idle(), timeout=1800.0, settle=1.0)
    box = shown[-1]
    save_over_window(app, win, box, args.out)
    print("asked:", asked[0].replace("\n", " | "))
    print("shown:", box.text())
    box.close()
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
