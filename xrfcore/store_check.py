"""Damage checks of project files: the project errors, one-sentence damage messages, checked
HDF5 reads and the run checksums (see :mod:`xrfcore.store`)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import h5py
import numpy as np


class ProjectError(ValueError):
    """A project file that cannot be used (not a project, newer schema, missing core/run)."""


def raised_by_h5py(exc: BaseException) -> bool:
    """Whether the exception was raised inside h5py (an HDF5 file it could not read); the CLI and
    the app turn such errors into the damaged-project sentence."""
    tb = exc.__traceback__
    while tb is not None:
        if "h5py" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


class DamagedProjectError(ProjectError):
    """The project file is damaged (truncated, bad header, checksum mismatch, missing dataset)."""


_TMP_NAME = re.compile(r"^\.(.+)\.\d+\.[0-9a-f]+" + re.escape(".xrfcore-tmp") + "$")


def _user_path(filename) -> str:
    """The project path a user knows (a transaction's temp copy named as its project)."""
    p = Path(filename)
    m = _TMP_NAME.match(p.name)
    return str(p.parent / m.group(1)) if m else str(p)


def _what(name: str) -> tuple[str, str]:
    """(what is stored at an HDF5 path, in words; what to do besides restoring a backup)."""
    parts = [x for x in str(name).split("/") if x]
    if len(parts) >= 4 and parts[0] == "cores" and parts[2] == "runs":
        col = parts[4] if len(parts) > 4 else "spectra"
        thing = "spectra" if col == "spectra" else f"{col} values"
        return f"the stored {thing} of core {parts[1]!r} run {parts[3]!r}", "re-import the core"
    if len(parts) >= 3 and parts[0] == "cores" and parts[2] == "predictions":
        model = f" of model {parts[3]!r}" if len(parts) > 3 else ""
        return f"the stored predictions{model} for core {parts[1]!r}", "predict again"
    if parts and parts[0] == "labels":
        return "the stored lab samples", "load the lab samples again"
    if parts and parts[0] == "import_log":
        return "the stored import log", "re-import the cores into a new project"
    return f"the stored data at {name}", "re-import the cores into a new project"


def damaged(filename, name: str, problem: str) -> DamagedProjectError:
    """The one-sentence error for damaged stored data at HDF5 path ``name``."""
    what, todo = _what(name)
    return DamagedProjectError(f"{_user_path(filename)}: {what} {problem}; nothing was written; "
                               f"restore the file from a backup or {todo}")


def _read_ds(ds: h5py.Dataset, sl=slice(None)) -> np.ndarray:
    """ds[sl], with HDF5's checksum / decompression failures turned into DamagedProjectError."""
    try:
        return ds[sl]
    except (OSError, RuntimeError) as exc:
        problem = ("are damaged (checksum mismatch)" if ds.fletcher32
                   else "are damaged (a stored block cannot be decoded)")
        raise damaged(ds.file.filename, ds.name, problem) from None


def _dataset(g: h5py.Group, key: str) -> h5py.Dataset:
    """g[key], a missing or unreadable one being damage (not h5py's KeyError)."""
    try:
        ds = g[key]
    except (KeyError, OSError, RuntimeError):
        raise damaged(g.file.filename, f"{g.name}/{key}", "are missing (the file is damaged)") from None
    if not isinstance(ds, h5py.Dataset):
        raise damaged(g.file.filename, f"{g.name}/{key}", "are missing (the file is damaged)")
    return ds


def counts_sha256(counts: np.ndarray) -> str:
    """sha256 of a run's counts as little-endian int32 (what ``read_run`` returns)."""
    return hashlib.sha256(np.ascontiguousarray(counts, dtype="<i4").tobytes()).hexdigest()


def content_sha256(counts_hash: str, depth, active) -> str:
    """A run's content id: its counts, depths and active flags (what a prediction used)."""
    h = hashlib.sha256(counts_hash.encode())
    h.update(np.ascontiguousarray(depth, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(active, dtype=bool).tobytes())
    return h.hexdigest()


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _has_hdf5_signature(path: Path) -> bool:
    """The HDF5 signature at offset 0 or 512 * 2^k (where HDF5 looks for it)."""
    try:
        with open(path, "rb") as fh:
            for off in (0, 512, 1024, 2048, 4096):
                fh.seek(off)
                if fh.read(8) == _HDF5_SIGNATURE:
                    return True
    except OSError:
        return False
    return False


def _open_error(path, exc: BaseException) -> DamagedProjectError:
    """One sentence for a project file HDF5 cannot open (instead of h5py's message)."""
    text = str(exc).lower()
    try:
        size = f"{Path(path).stat().st_size:,} bytes"
    except OSError:
        size = "size unknown"
    if "truncated" in text or "eof" in text:
        what = f"truncated (the file ends early, {size}: an interrupted copy or a full disk?)"
    elif "superblock" in text or "signature" in text:
        what = "its HDF5 header (superblock) is damaged"
    elif "checksum" in text:
        what = "its internal structure is damaged (metadata checksum mismatch)"
    else:  # h5py's 'Unable to synchronously open file (reason)': keep the reason only
        m = re.search(r"\(([^()]*)\)\s*$", str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        what = f"its internal structure cannot be read ({m.group(1) if m else type(exc).__name__})"
    return DamagedProjectError(f"{path}: the project file is damaged: {what}; nothing was written; "
                               "restore it from a backup, or import the cores again into a new project")
