"""`xrfcore` command line: one dispatcher; each area registers its own subcommands.

Areas: ``cli_project`` (import, info, export-spectra), ``cli_simulate`` (simulate,
simulate-archive), ``cli_pretrain`` (pretrain, reconstruct, models), ``cli_labels`` (labels), ``cli_finetune``
(finetune, predict, export, bench), ``cli_models`` (models), ``cli_sampling`` (suggest).
Each module has ``register(subparsers)``; a subcommand sets ``func(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from xrfcore import __version__

AREAS = ("xrfcore.cli_project", "xrfcore.cli_simulate", "xrfcore.cli_pretrain", "xrfcore.cli_labels",
         "xrfcore.cli_finetune", "xrfcore.cli_models", "xrfcore.cli_sampling")


class UserError(Exception):
    """An error whose message is for the user: printed as one line, exit code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so cleanup runs as for Ctrl-C (exit code 143)."""


def _on_sigterm(signum, frame):
    raise Terminated()


# -- argument types: numbers that must be positive (argparse reports a bad one as a usage error)
def _number(kind, text: str, ok, what: str):
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
    if v != v or v in (float("inf"), float("-inf")) or not ok(v):
        raise argparse.ArgumentTypeError(f"{text} is not {what}")
    return v


def positive_int(text: str) -> int:
    return _number(int, text, lambda v: v > 0, "a positive whole number")


def nonnegative_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 0, "zero or a positive whole number")


def positive_float(text: str) -> float:
    return _number(float, text, lambda v: v > 0, "a positive number")


def nonnegative_float(text: str) -> float:
    return _number(float, text, lambda v: v >= 0, "zero or a positive number")


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    return _number(float, text, lambda v: 0 <= v < 1, "a fraction from 0 up to (not including) 1")


def check_output(path, *, inputs=(), force: bool = False, folder: bool = False, what: str = "output"):
    """``xrfcore.outputs.check_output`` with its refusal as a UserError (one line, exit 2)."""
    from xrfcore.outputs import OutputRefused, check_output as _check

    try:
        return _check(path, inputs=inputs, force=force, folder=folder, what=what)
    except OutputRefused as exc:
        raise UserError(str(exc)) from None


def pin_threads() -> None:
    """Pin BLAS/OpenMP threads before numpy/torch start their pools (default threading is slow here)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def progress_bar(desc: str = ""):
    """A ``progress(done, total, message)`` callback drawing a tqdm bar on stderr; call ``.close()``.

    When stderr is not a terminal (a log file, a pipe) it prints a plain line now and then instead
    (every $XRFCORE_PROGRESS_SECONDS, default 10 s; nothing for work that ends sooner)."""
    if not sys.stderr.isatty():
        return _progress_lines(desc)
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


def _progress_lines(desc: str):
    import time

    try:
        every = float(os.environ.get("XRFCORE_PROGRESS_SECONDS", "10"))
    except ValueError:
        every = 10.0
    state = {"last": time.monotonic(), "printed": False, "done": 0, "total": 0}

    def progress(done: int, total: int, message: str = "") -> None:
        state["done"], state["total"] = done, total
        now = time.monotonic()
        if now - state["last"] >= every and total:
            state["last"], state["printed"] = now, True
            print(f"{desc}: {100 * done / max(total, 1):.0f}% ({done}/{total})" + (f" {message[-60:]}" if message else ""),
                  file=sys.stderr, flush=True)

    def close() -> None:
        if state["printed"]:
            print(f"{desc}: {'done' if state['done'] >= state['total'] else 'stopped'}", file=sys.stderr, flush=True)

    progress.close = close  # type: ignore[attr-defined]
    return progress


def _store():
    from xrfcore import store  # imported late: `xrfcore --help` stays fast
    return store


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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (argparse printed it): its exit status, not an exception
        if exc.code in (0, None):
            raise
        return int(exc.code) if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    import signal
    import threading

    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        term = isinstance(exc, Terminated)
        # every output is written whole or not at all (fileio.atomic_*, store transactions, model
        # folders renamed into place): what an interrupt leaves is the state before that write
        note = getattr(args, "interrupt_note", None) or \
            "nothing is half-written: outputs and model folders appear only when complete"
        print(f"xrfcore {args.command}: {'terminated (SIGTERM)' if term else 'interrupted (Ctrl-C)'}; {note}",
              file=sys.stderr, flush=True)
        return 143 if term else 130
    except Exception as exc:  # one clear line, not a traceback
        if args.debug:
            raise
        kind = "" if isinstance(exc, (UserError, OSError, ValueError)) else f"{type(exc).__name__}: "
        if isinstance(exc, (OSError, KeyError, RuntimeError)) and _store().raised_by_h5py(exc):
            # a damaged project that xrfcore.store did not already describe: one plain sentence
            where = getattr(args, "project", None) or "the project file"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            exc, kind = (f"{where}: the project file is damaged or unreadable ({first}); nothing was "
                         "written; restore it from a backup, or import the cores again into a new project"), ""
        print(f"xrfcore {args.command}: error: {kind}{exc}", file=sys.stderr)
        return 2
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())
