"""Entry script of the desktop bundle (PyInstaller): the GUI, or the command line with ``cli``.

    xrfcore-gui [GUI options]            the app (``--self-test``: fine-tune + predict on the sample core)
    xrfcore-gui cli COMMAND [...]        the ``xrfcore`` command line from the same bundle
"""
import os
import sys

# BLAS/OpenMP pools pinned before numpy/torch load (as the console scripts do)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "cli":
        from xrfcore.cli import main as cli_main

        return cli_main(sys.argv[2:])
    from app.main import main as gui_main

    return gui_main(sys.argv[1:])


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.freeze_support()  # frozen apps must not re-run main() in worker processes
    sys.exit(main())
