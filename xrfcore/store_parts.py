"""Small writes that stay small: lab samples and predictions kept beside the project file.

Storing lab samples or one core's predictions used to copy the whole project file (a 200,000-
spectrum project: 240 MB, ~0.7 s). They now go, when nothing else is written in the same
transaction, into small HDF5 files in a folder beside the project, ``NAME.parts/``::

    NAME.parts/index.json       {"base": <the project file's generation>, "modified": ...,
                                 "labels": "e-<id>.h5" | null,
                                 "predictions": {core: {model_id: "e-<id>.h5"}}}
    NAME.parts/e-<id>.h5        one frame (same layout and checksums as in the project file)

A small write (under the project's lock): write the new entry files (fsynced), then replace
``index.json`` atomically (temp + fsync + ``os.replace`` + fsync of the folder), then remove the
entries the index no longer names. A kill at any moment leaves either the old index (old entries
still there) or the new one (new entries complete): nothing is lost; orphans are removed by the
next writer. Readers see the project file with the index's entries laid over it, but only when
the index's ``base`` is the project file's ``generation`` (a uuid every full transaction writes):
the next full transaction folds the entries into its copy of the project, writes a new
generation, replaces the file, then removes the folder; a kill between the replace and the
removal leaves an index whose base no longer matches, which readers ignore and the next writer
removes. So after any import the project is one file again. See docs/store_design.md.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path

import h5py

from xrfcore.fileio import atomic_open

PARTS_SUFFIX = ".parts"
INDEX = "index.json"


def parts_dir(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.parent / f"{path.name}{PARTS_SUFFIX}"


def empty_index(base: str) -> dict:
    return {"base": base, "modified": "", "labels": None, "predictions": {}}


def read_index(path: str | os.PathLike, generation: str | None) -> dict | None:
    """The index that applies to the project file of ``generation`` (None: no entries)."""
    if not generation:
        return None
    f = parts_dir(path) / INDEX
    try:
        index = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        from xrfcore.store_check import DamagedProjectError
        raise DamagedProjectError(f"{path}: the index of its lab samples and predictions ({f}) cannot be "
                                  f"read ({exc}); nothing was written; restore the project file and its "
                                  f"{parts_dir(path).name} folder from a backup") from None
    if not isinstance(index, dict) or index.get("base") != generation:
        return None          # left by a full write that folded it into the project file: stale
    index.setdefault("labels", None)
    index.setdefault("predictions", {})
    return index


def entry_path(path, name: str) -> Path:
    return parts_dir(path) / name


def open_entry(path, name: str) -> h5py.File:
    """An entry file for reading (FileNotFoundError when a writer has just replaced it)."""
    p = entry_path(path, name)
    if not p.exists():
        raise FileNotFoundError(p)
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        from xrfcore.store_check import DamagedProjectError
        raise DamagedProjectError(f"{path}: a stored frame of its lab samples or predictions ({p}) is "
                                  f"damaged ({exc}); nothing was written; load the lab samples or predict "
                                  "again, or restore the project from a backup") from None


def referenced(index: dict | None) -> set[str]:
    if not index:
        return set()
    names = {index["labels"]} if index.get("labels") else set()
    for models in index.get("predictions", {}).values():
        names.update(models.values())
    return names


def write_entries(path, base: str, old: dict | None, labels, predictions: dict, now: str,
                  write_frame) -> None:
    """Commit staged small writes (caller holds the project's lock). ``labels``: (df, meta) or
    None; ``predictions``: {(core, model): (df, meta)}; ``write_frame(group, df, meta)``."""
    folder = parts_dir(path)
    folder.mkdir(exist_ok=True)
    index = json.loads(json.dumps(old)) if old else empty_index(base)
    index["base"] = base

    def put(group: str, df, meta) -> str:
        name = f"e-{uuid.uuid4().hex[:16]}.h5"
        p = folder / name
        with h5py.File(p, "w") as h5:
            write_frame(h5.require_group(group), df, meta)
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return name

    if labels is not None:
        index["labels"] = put("labels", *labels)
    for (core, model), (df, meta) in predictions.items():
        index["predictions"].setdefault(core, {})[model] = put(f"cores/{core}/predictions/{model}", df, meta)
    index["modified"] = now
    with atomic_open(folder / INDEX) as fh:
        json.dump(index, fh, ensure_ascii=False, indent=1)
    _fsync_dir(folder)
    remove_unreferenced(path, index)


def remove_unreferenced(path, index: dict | None) -> None:
    """Entry files no index names (replaced ones, or orphans of a killed writer)."""
    folder = parts_dir(path)
    keep = referenced(index) | {INDEX}
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def clear(path) -> None:
    """Remove the folder (its entries are in the project file now, or stale): index first."""
    folder = parts_dir(path)
    if not folder.exists():
        return
    with contextlib.suppress(OSError):
        os.unlink(folder / INDEX)
        _fsync_dir(folder)
    shutil.rmtree(folder, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
