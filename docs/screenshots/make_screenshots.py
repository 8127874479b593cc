"""Make the README screenshots from the real app on the bundled (SIMULATED) sample core.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/make_screenshots.py

Drives the journey as an operator would (import, lab samples, fine-tune, predict, reconstruction)
and grabs each window. Uses the shipped foundation model when one is installed, else pretrains a
tiny one on the sample core first (--pretrain-steps) and says so in the captions file.
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
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--pretrain-steps", type=int, default=150)
    args = ap.parse_args()
    out = Path(args.out)
    home = Path(tempfile.mkdtemp(prefix="xrfcore-shots-"))
    os.environ["XRFCORE_HOME"] = str(home)

    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    from app import engine
    from app.main_window import MainWindow

    def pump(cond=None, timeout=900.0, settle=0.3):
        end = time.monotonic() + timeout
        while time.monotonic() < end and (cond is not None and not cond()):
            app.processEvents()
            time.sleep(0.01)
        if cond is not None and not cond():
            raise SystemExit("timed out")
        t = time.monotonic() + settle
        while time.monotonic() < t:
            app.processEvents()
            time.sleep(0.01)

    def shot(widget, name):
        pump(settle=0.4)
        path = out / name
        widget.grab().save(str(path))
        print("saved", path)

    win = MainWindow()
    win.resize(1500, 900)
    win.show()
    win.warm_up()
    pump(win.is_idle)
    shot(win, "first_run.png")

    # the import dialog with its report, on the sample core
    from app.dialogs.import_dialog import ImportDialog
    sample = engine.sample_core_folder()
    d = ImportDialog(win, folder=str(sample), projects_folder=home / "shots")
    d.resize(1000, 560)
    d.show()
    d.start()
    pump(lambda: d.outcome != "")
    shot(d, "import_report.png")
    d.close()

    win.open_sample_core()
    pump(lambda: win.view is not None and win.is_idle())
    base = win.base_model()
    caption = f"the shipped foundation model {Path(base).name}" if base else ""
    if not base:
        win.pretrain_options = {"window_channels": 512}
        from PySide6.QtWidgets import QInputDialog, QMessageBox
        QInputDialog.getInt = staticmethod(lambda *a, **k: (args.pretrain_steps, True))
        QMessageBox.information = staticmethod(lambda *a, **k: None)
        win.pretrain()
        pump(lambda: win.foundation_path is not None and win.is_idle(), timeout=3600)
        shot(win, "pretrain.png")
        base = win.foundation_path
        caption = f"tiny model pretrained here on the sample core for {args.pretrain_steps} steps"

    from app.dialogs.finetune_dialog import FinetuneDialog
    f = FinetuneDialog(win.project, win, device="cpu", base_model=base, cuda=win.cuda_available)
    f.modelReady.connect(win.set_model)
    f.resize(1100, 700)
    f.show()
    f.start()
    pump(lambda: f.outcome != "", timeout=3600)
    shot(f, "finetune.png")
    f.close()
    win.show_finetune_result(f.result)

    win.predict()
    pump(lambda: win.view is not None and win.view.prediction is not None and win.is_idle())
    win.trace_actions[("Ca", "Fe")].setChecked(True)
    win.select_depth(1500.0)
    win.overlay_current()
    win.select_depth(2800.0)
    win.tabs.setCurrentWidget(win.spectrum)
    shot(win, "main_window.png")
    win.select_depth(2300.0)           # a typical depth (2795 mm is flagged out of distribution)
    win.tabs.setCurrentWidget(win.recon)
    pump(lambda: win.recon.masked_spans() > 0 and win.is_idle())
    shot(win, "reconstruction.png")
    win.tabs.setCurrentWidget(win.training)
    shot(win, "training_tab.png")
    (out / "CAPTIONS.txt").write_text(
        "Screenshots of xrfcore-gui on the bundled SIMULATED sample core (not real data), made by "
        f"docs/screenshots/make_screenshots.py under Xvfb; base model: {caption}.\n")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
