"""Atomic file writes: the target is either the old file or the complete new one, never half.

Every writer in xrfcore and app goes through here (CSV exports, model cards and weights,
raw .spe files, reports, settings). The HDF5 project has its own copy-modify-replace
transaction in ``store.py`` because it edits a file in place.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (for libraries that write by file name);
    on success it replaces ``path``; on any error or cancel it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, fsync: bool = True,
                **open_kw) -> Iterator[IO]:
    """``open()`` for writing that only replaces ``path`` once the block has finished."""
    if "b" not in mode:
        open_kw.setdefault("encoding", "utf-8")
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, mode, **open_kw) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())


# -- whole folders (model folders) ---------------------------------------------------------------
@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM for the duration of the block (a few renames), then deliver them.

    Only possible in the main thread; elsewhere the block runs as is."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list = []
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, lambda s, f: got.append((s, f)))
        except (ValueError, OSError):  # pragma: no cover - not the main interpreter
            pass
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        for s, f in got[:1]:
            h = old.get(s)
            if callable(h):
                h(s, f)
            elif h == signal.SIG_DFL:
                signal.raise_signal(s)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(AT_FDCWD, os.fsencode(str(a)), AT_FDCWD, os.fsencode(str(b)), RENAME_EXCHANGE)
    return rc == 0


def _carry(src: Path, dst: Path, keep) -> None:
    """Hard-link (else copy) the plain files of ``src`` that ``keep(name)`` accepts into ``dst``."""
    import shutil

    for entry in os.scandir(src):
        if entry.name.startswith(".") and entry.name.endswith(".part"):
            continue  # a temporary file of an interrupted write
        if not entry.is_file(follow_symlinks=False) or not keep(entry.name):
            continue
        try:
            os.link(entry.path, dst / entry.name)
        except OSError:
            shutil.copy2(entry.path, dst / entry.name)


@contextmanager
def atomic_dir(path: str | os.PathLike, *, keep=None) -> Iterator[Path]:
    """Yield an empty staging folder beside ``path``; when the block finishes it becomes ``path``
    as a whole (an existing folder is swapped out and deleted), on any error, Ctrl-C or kill it is
    removed (or, after kill -9, left as a hidden ``.NAME.part-*`` folder) and ``path`` is untouched.

    ``keep(name) -> bool``: plain files of the existing folder carried into the staging folder
    first (hard links), e.g. a training run's checkpoint and metrics or the user's own notes;
    files written in the block replace them (write by atomic_path/os.replace, never append)."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import secrets

    stage = path.parent / f".{path.name}.part-{secrets.token_hex(4)}"
    os.mkdir(stage)  # (not mkdtemp: the folder gets the user's usual permissions, not 0700)
    try:
        if keep is not None and path.is_dir():
            _carry(path, stage, keep)
        yield stage
        with deferred_signals():
            _replace_dir(stage, path)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _replace_dir(stage: Path, path: Path) -> None:
    """Put folder ``stage`` at ``path``; an existing folder there is swapped out and deleted."""
    import shutil

    fd = os.open(stage, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if not path.exists() and not path.is_symlink():
        os.rename(stage, path)
    elif path.is_symlink() or not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder (or is a link): not replaced")
    elif _exchange(stage, path):
        shutil.rmtree(stage, ignore_errors=True)  # now holds the old folder
    else:  # two renames: for a moment only the hidden .old folder holds the previous model
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.rmdir(old)
        os.rename(path, old)
        try:
            os.rename(stage, path)
        except BaseException:
            os.rename(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else os.unlink(old)
    try:  # make the renames durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
