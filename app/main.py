"""Entry point of ``xrfcore-gui``.

    xrfcore-gui [PROJECT.h5 | CORE_FOLDER] [--demo] [--screenshot FILE.png] [--self-test]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# BLAS/OpenMP pinned before numpy/torch load: default OpenBLAS threading is very slow on small machines
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="xrfcore-gui", description="xrfcore desktop application")
    ap.add_argument("path", nargs="?", help="a project file (.h5) or a core folder to import")
    ap.add_argument("--demo", action="store_true", help="open the bundled SIMULATED sample core")
    ap.add_argument("--screenshot", metavar="FILE.png",
                    help="when idle, save a screenshot of the main window and exit")
    ap.add_argument("--self-test", action="store_true",
                    help="load the model, predict on the sample core, exit 0 when it works")
    ap.add_argument("--size", default="", help="window size for screenshots (WxH; default: 1400x860, or "
                    "less to fit the screen)")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up --screenshot/--self-test after this many s")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.errors import install_excepthook, setup_logging

    setup_logging()
    install_excepthook()
    existing = QApplication.instance()
    app = existing or QApplication(sys.argv[:1])
    app.setApplicationName("xrfcore")
    from app.main_window import MainWindow

    win = MainWindow()
    if args.size:
        try:
            w, h = (int(x) for x in args.size.lower().split("x"))
            win.resize(w, h)
        except ValueError:
            pass
    win.show()
    win.warm_up()
    if args.demo or (args.self_test and not args.path):
        QTimer.singleShot(0, win.open_sample_core)
    elif args.path:
        p = Path(args.path)
        QTimer.singleShot(0, lambda: win.open_core_folder(str(p)) if p.is_dir() else win.open_project(str(p)))

    from PySide6.QtCore import QEventLoop

    # our own event loop when a QApplication already runs (embedding, tests): quitting it leaves
    # the host application's loop alone
    loop = QEventLoop() if existing is not None else app
    status = {"code": 0}
    if args.screenshot or args.self_test:
        from app.automation import Autopilot
        pilot = Autopilot(win, screenshot=args.screenshot, self_test=args.self_test, timeout_s=args.timeout)
        pilot.done.connect(lambda code: (status.__setitem__("code", code), loop.quit()))
        pilot.start()
    rc = loop.exec()
    if existing is not None:
        win.close()
    return status["code"] if (args.screenshot or args.self_test) else rc


if __name__ == "__main__":
    sys.exit(main())
