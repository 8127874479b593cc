"""Screenshot of what the app shows for a real 30 kV Mo-tube Itrax run predicted with a model made for
10 kV Rh-tube spectra: the instrument-mismatch dialog over the main window (mo_tube_30kv.png).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_mo_tube_screenshot.py

Imports the real Itrax replicates (../shared/reference/realdata/itrax/CD166_19_S1_replicates) into a
new project, fine-tunes a head on the bundled SIMULATED sample core from the shipped foundation model
(its card: Rh tube, 10 kV, 0-10.24 keV), opens the Itrax project and presses Predict.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from _shots import HERE, REPO, private_home, pump, save_over_window
ITRAX = Path(os.environ.get("XRFCORE_SHARED", REPO.parent / "shared")) / "reference" / "realdata" / "itrax" \
    / "CD166_19_S1_replicates"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE / "mo_tube_30kv.png"))
    args = ap.parse_args()
    if not ITRAX.is_dir():
        raise SystemExit(f"real Itrax files not found at {ITRAX}")
    home = private_home()

    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    from app import engine
    from app.dialogs import instrument_dialog
    from app.main_window import MainWindow
    from xrfcore import importer
    from xrfcore.train import finetune as ft

    # a model fine-tuned from the shipped foundation model on the SIMULATED sample core
    sample = engine.sample_core_folder()
    importer.import_folder(sample, home / "sample.h5")
    model_dir = home / "models" / "finetuned-sample"
    ft.finetune_project(home / "sample.h5", engine.sample_labels_file(sample / "SIM01-1"),
                        engine.default_foundation_model(), model_dir, mode="head", device="cpu")
    # the real Itrax scan, imported as a user does
    importer.import_folder(ITRAX, home / "CD166_19_S1.h5")

    win = MainWindow()
    win.resize(1500, 900)
    win.show()
    win.settings.device = "cpu"
    win.open_project(str(home / "CD166_19_S1.h5"))
    pump(app, lambda: win.view is not None and win.is_idle())
    win.set_model(str(model_dir / "model"))
    win.select_depth(80.0)
    pump(app, settle=0.5)

    def shoot(dlg):
        save_over_window(app, win, dlg, args.out)
        dlg.cancel_btn.click()
        return 0
    instrument_dialog.InstrumentMismatchDialog.exec = shoot
    win.predict()
    pump(app, lambda: Path(args.out).exists() and win.is_idle())
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
