"""`xrfcore` command line: one dispatcher; each area registers its own subcommands.

Areas: ``cli_project`` (import, info, export-spectra), ``cli_simulate`` (simulate,
simulate-archive), ``cli_pretrain`` (pretrain, reconstruct, models), ``cli_finetune``
(finetune, predict, export, bench), ``cli_models`` (models).
Each module has ``register(subparsers)``; a subcommand sets ``func(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from xrfcore import __version__

AREAS = ("xrfcore.cli_project", "xrfcore.cli_simulate", "xrfcore.cli_pretrain", "xrfcore.cli_finetune",
         "xrfcore.cli_models")


class UserError(Exception):
    """An error whose message is for the user: printed as one line, exit code 2."""


def pin_threads() -> None:
    """Pin BLAS/OpenMP threads before numpy/torch start their pools (default threading is slow here)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def progress_bar(desc: str = ""):
    """A ``progress(done, total, message)`` callback drawing a tqdm bar on stderr; call ``.close()``."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=desc, unit="", dynamic_ncols=True, leave=True, disable=None)

    def progress(done: int, total: int, message: str = "") -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        if message:
            bar.set_postfix_str(message[-40:], refresh=False)
        bar.refresh()

    progress.close = bar.close  # type: ignore[attr-defined]
    return progress


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xrfcore", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xrfcore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in AREAS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    pin_threads()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("xrfcore: interrupted; nothing was changed", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line, not a traceback
        if args.debug:
            raise
        kind = "" if isinstance(exc, (UserError, OSError, ValueError)) else f"{type(exc).__name__}: "
        print(f"xrfcore {args.command}: error: {kind}{exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
