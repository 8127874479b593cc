"""Where a command may write: never onto the project or one of its inputs, never over an existing
file or model without ``force`` (the CLI's ``--force``; the app asks or picks a fresh name).

``check_output`` is called by every CLI command that writes a file before any work starts, so a
refused output costs nothing. Model folders are written whole (``fileio.atomic_dir``);
``check_model_folder`` says whether one may be written at a path.
"""
from __future__ import annotations

import os
from pathlib import Path


class OutputRefused(ValueError):
    """An output path that would overwrite the project, an input, or (without force) an existing file."""


# files that make up a saved model folder (xrfcore.model.checkpoint, train.finetune, ood,
# train.pretrain); anything else in a folder being replaced is the user's and is kept
MODEL_FILES = ("model.json", "model.safetensors", "model.md", "model.ood.safetensors", "base_mae.json",
               "base_mae.safetensors", "base_mae.ood.safetensors", "calibration.safetensors",
               "ood.safetensors")
TRAINING_FILES = ("checkpoint.safetensors", "metrics.jsonl")


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _inside(inner: Path, outer: Path) -> bool:
    try:
        inner.resolve().relative_to(outer.resolve())
        return True
    except ValueError:
        return False


def _input_files(q: Path) -> list[Path]:
    """An input and the files it stands for: a model given as a stem or one of its two files means
    both (NAME.json + NAME.safetensors); a model folder, its model files."""
    out = [q]
    if q.suffix in ("", ".json", ".safetensors") and not q.is_dir():
        out += [q.with_suffix(".json"), q.with_suffix(".safetensors")]
    elif q.is_dir():
        out += [q / n for n in MODEL_FILES]
    return out


def check_output(path, *, inputs=(), force: bool = False, folder: bool = False, what: str = "output") -> Path:
    """Refuse ``path`` as an output when it is (or, for a ``folder`` output, holds) the project or an
    input file/folder (``inputs``; None entries are ignored), and when it already exists unless
    ``force``. A folder output counts as existing when it is not empty. Returns ``Path(path)``."""
    p = Path(path)
    for inp in inputs:
        if inp is None or str(inp) == "":
            continue
        q = Path(inp)
        if any(_same(p, c) for c in _input_files(q)) or (folder and _inside(q, p)):
            raise OutputRefused(f"{what} {p} would overwrite the input {q}; choose another path")
    if folder:
        if p.exists() and not p.is_dir():
            raise OutputRefused(f"{what} {p} exists and is not a folder")
        if p.is_dir() and any(p.iterdir()) and not force:
            raise OutputRefused(f"{what} {p} already exists and is not empty; choose another folder "
                                "or use --force to replace it")
        return p
    if p.is_dir():
        raise OutputRefused(f"{what} {p} is a folder; give a file name")
    if (p.exists() or p.is_symlink()) and not force:
        raise OutputRefused(f"{what} {p} already exists; use --force to replace it")
    return p


def check_model_folder(path, *, inputs=(), force: bool = False, extra_ok=()) -> Path:
    """A model folder may be written at ``path`` when it is new or empty, or (with ``force``) holds
    an xrfcore model; a folder that holds other things is never replaced as a whole (its files
    other than the model's are carried into the new folder, see ``model_keep``), a sub-folder
    refuses it. Inputs (project, lab table, base model) must not be the folder or inside it."""
    p = check_output(path, inputs=inputs, force=True, folder=True, what="model folder")
    if not p.is_dir() or not any(p.iterdir()):
        return p
    names = {e.name for e in p.iterdir() if not (e.name.startswith(".") and ".part" in e.name)}
    if (p / "model.json").exists() or names & set(MODEL_FILES) - {"model.md"}:
        if not force:
            raise OutputRefused(f"model folder {p} already holds a model; choose another folder or use "
                                "--force to replace it (the old model stays intact until the new one is "
                                "complete)")
    elif not force and not names <= set(extra_ok):
        raise OutputRefused(f"model folder {p} already exists and is not empty; choose a new or empty "
                            "folder, or --force to add the model to it")
    subdirs = [e.name for e in p.iterdir() if e.is_dir() and not e.name.startswith(".")]
    if subdirs:
        raise OutputRefused(f"model folder {p} holds sub-folders ({', '.join(sorted(subdirs)[:3])}); "
                            "choose a new or empty folder")
    return p


def model_keep(name: str) -> bool:
    """Files of an existing folder carried over when a fine-tuned model replaces it (not the old model's)."""
    return name not in MODEL_FILES


def fresh_folder(parent, stem: str) -> Path:
    """``parent/stem``, or ``stem-2``, ``stem-3``... : a folder name that is not taken yet (the app)."""
    parent = Path(parent)
    p, i = parent / stem, 1
    while p.exists() or p.is_symlink():
        i += 1
        p = parent / f"{stem}-{i}"
    return p
