"""Writing a project safely: the per-project lock (an OS lock, or a pid file where there is none),
stray temp files of killed transactions, fsync and disk-space reservation (see
:func:`xrfcore.store.transaction`)."""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import os
import re
import shutil
import threading
from pathlib import Path

from xrfcore.store_check import ProjectError

TMP_SUFFIX = ".xrfcore-tmp"

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_live_temps: set[str] = set()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(path.resolve()), threading.Lock())


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stray_temps(path: str | os.PathLike, *, locked: bool = False) -> list[Path]:
    """Remove temp files left by killed transactions on this project (not live ones).
    ``locked``: the caller holds the project's OS lock, so no other process is writing it and
    every temp that is not this process's live one is stray (its pid may now be another program's)."""
    path = Path(path)
    removed = []
    pat = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[0-9a-f]+" + re.escape(TMP_SUFFIX) + "$")
    for p in path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"):
        m = pat.match(p.name)
        if not m or str(p) in _live_temps:
            continue
        if not locked and int(m.group(1)) != os.getpid() and _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


LOCK_SUFFIX = ".xrfcore-lock"
LOCK_GRACE_S = 10        # a lock file without a readable pid younger than this may be being written

try:                     # POSIX: an OS lock, released by the kernel when its process dies
    import fcntl as _fcntl
except ImportError:      # Windows: the pid-file lock below
    _fcntl = None


class _OsLock:
    """An ``flock`` held on the lock file. ``unlink()`` releases it (same call as the Path of the
    pid-file lock): the file is removed while still held, then unlocked and closed."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def unlink(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        try:
            _fcntl.flock(self.fd, _fcntl.LOCK_UN)   # also for forked children sharing the descriptor
        finally:
            os.close(self.fd)
            self.fd = None

    def exists(self) -> bool:
        return self.path.exists()


def _lock_holder(lock: Path) -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return f" (pid {int(lock.read_text().split()[0])})"
    return ""


def _flock_nb(fd: int, grace_s: float = 0.5) -> None:
    """flock without waiting for a live holder; a holder that has just died releases its lock a
    moment after it is gone (measured: ~1 ms), so a busy lock is retried briefly first."""
    deadline = _dt.datetime.now().timestamp() + grace_s
    while True:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if _dt.datetime.now().timestamp() >= deadline:
                raise
            threading.Event().wait(0.02)


def _acquire_file_lock(path: Path):
    """A lock beside the project, so two processes never write it at the same time (the second
    would silently drop the first's changes at os.replace).

    POSIX: an ``flock`` on ``.NAME.xrfcore-lock``, which dies with its process, so a lock file left
    by a killed process, an empty one, or one naming a pid now used by another program never
    blocks; the pid written into it only names the holder in the message. Elsewhere (or on a
    file system without flock): the pid file alone, created exclusively.
    """
    lock = path.parent / f".{path.name}{LOCK_SUFFIX}"
    if _fcntl is None:
        return _acquire_pid_lock(path, lock)
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise ProjectError(f"{path}: cannot lock the project for writing ({lock}: "
                               f"{exc.strerror or exc}); nothing was changed") from None
        try:
            _flock_nb(fd)
        except BlockingIOError:
            os.close(fd)
            raise ProjectError(f"{path}: another xrfcore process{_lock_holder(lock)} is writing this "
                               "project; try again when it has finished") from None
        except OSError:          # no flock here (some network file systems): the pid file
            os.close(fd)
            return _acquire_pid_lock(path, lock)
        try:                     # its holder may have released (removed) it between open and flock
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except OSError:
            same = False
        if not same:
            os.close(fd)
            continue
        with contextlib.suppress(OSError):   # the holder's pid, for others' message only (disk full: none)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return _OsLock(lock, fd)
    raise ProjectError(f"{path}: cannot lock the project for writing ({lock}); nothing was changed")


def _acquire_pid_lock(path: Path, lock: Path) -> Path:
    """The pid-file lock (no flock): created exclusively, the pid written in one write; a file
    without a pid is taken over after LOCK_GRACE_S (its writer died between create and write)."""
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                text = lock.read_text().split()
                pid = int(text[0]) if text else None
                age = _dt.datetime.now().timestamp() - lock.stat().st_mtime
            except (OSError, ValueError):
                pid, age = None, 0.0
                if not lock.exists():
                    continue
            if (pid is not None and pid != os.getpid() and _pid_alive(pid)) or (pid is None and age < LOCK_GRACE_S):
                raise ProjectError(f"{path}: another xrfcore process{f' (pid {pid})' if pid else ''} is "
                                   "writing this project; try again when it has finished")
            with contextlib.suppress(OSError):      # left by a killed process: take it over
                lock.unlink()
            continue
        except OSError as exc:
            raise ProjectError(f"{path}: cannot lock the project for writing ({lock}: "
                               f"{exc.strerror or exc}); nothing was changed") from None
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:                      # e.g. disk full: leave no empty lock behind
            os.close(fd)
            with contextlib.suppress(OSError):
                lock.unlink()
            raise ProjectError(f"{path}: cannot lock the project for writing ({lock}: "
                               f"{exc.strerror or exc}); nothing was changed") from None
        os.close(fd)
        return lock
    raise ProjectError(f"{path}: cannot lock the project for writing ({lock})")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


RESERVE_BYTES = 16 << 20   # disk space every write reserves beyond the project's size and reserve_bytes


class DiskFullError(OSError):
    """Not enough free disk space to write the project; nothing was changed."""


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _disk_full(path: Path, folder: Path, need: int | None = None, free: int | None = None) -> DiskFullError:
    detail = f" (it needs about {_mb(need)} free, {_mb(free)} are free)" if need is not None else ""
    err = DiskFullError(f"{path}: the disk is full (No space left on device): not enough free space in {folder} to write the "
                        f"project{detail}; nothing was changed (the project is as it was): free some "
                        "space and try again")
    err.errno = errno.ENOSPC
    return err


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return True
    return isinstance(exc, (OSError, RuntimeError)) and ("errno = 28" in str(exc)
                                                         or "No space left on device" in str(exc))


def _check_free_space(path: Path, folder: Path, need: int) -> None:
    """Refuse up front when the temp copy of the project cannot fit."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < need:
        raise _disk_full(path, folder, need, free)


def _reserve_space(path: Path, tmp: Path, size: int) -> None:
    """Allocate ``size`` bytes for the temp copy now (HDF5 truncates the file to its real end on
    close), so HDF5 never meets a full disk while it writes: its writes fail inside the library
    and leave it in a state that crashes the process at exit."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(tmp, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, max(size, 1))
    except OSError as exc:
        if _is_disk_full(exc):
            raise _disk_full(path, tmp.parent) from None
        # EOPNOTSUPP / EINVAL: a file system that cannot preallocate; the free-space check stands
    finally:
        os.close(fd)
