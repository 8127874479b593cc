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
