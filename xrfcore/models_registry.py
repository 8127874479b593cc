"""Installed models: the ones shipped with xrfcore and the user's own; the default foundation model;
importing a research state dict.

Models are ``NAME.safetensors`` + ``NAME.json`` (the card, see ``xrfcore.model.checkpoint``), with
an optional human-readable card ``NAME.md`` beside them. They are looked for in

1. the shipped ``models/`` (``xrfcore._paths.shipped_models_dir()``: repository, wheel or app bundle),
2. the user's models folder: ``$XRFCORE_HOME/data/models`` when set, else the platformdirs user data
   folder's ``models/`` (the same folder the app's settings use),
3. any extra folders the caller names.

Only card files are read to list models (no torch), so the listing is cheap; loading goes through
``xrfcore.model.checkpoint.load``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from xrfcore._paths import shipped_models_dir

APP = "xrfcore"
CARD_FORMAT = "xrfcore-model"          # as xrfcore.model.checkpoint.CARD_FORMAT (not imported: no torch here)
DEFAULT_MODEL = "xrfcore-tiny-sim-v3"   # stem of the shipped default foundation model in models/
COPY_STEMS = ("base_mae",)              # copies of a base model kept inside fine-tuned model folders
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


# ---------------------------------------------------------------------------- folders
def user_models_dir(create: bool = False) -> Path:
    """The user's models folder (``$XRFCORE_HOME/data/models`` or the platformdirs data folder)."""
    home = os.environ.get("XRFCORE_HOME")
    if home:
        p = Path(home) / "data" / "models"
    else:
        import platformdirs

        p = Path(platformdirs.user_data_dir(APP, appauthor=False)) / "models"
    if create:
        p.mkdir(parents=True, exist_ok=True)
    return p


def search_dirs(extra=()) -> list[Path]:
    """Shipped models first, then the user's folder, then ``extra`` (duplicates dropped)."""
    dirs = []
    shipped = shipped_models_dir()
    if shipped is not None:
        dirs.append(shipped)
    dirs.append(user_models_dir())
    dirs += [Path(d) for d in extra]
    out, seen = [], set()
    for d in dirs:
        key = os.path.normcase(str(d.resolve()) if d.exists() else str(d))
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


# ---------------------------------------------------------------------------- listing
def read_card(card_path) -> dict:
    """A model card (JSON) as a dict; ValueError with the file name when it is not one."""
    import stat

    card_path = Path(card_path)
    st = card_path.stat()
    if not stat.S_ISREG(st.st_mode) or st.st_size > 32 << 20:  # a FIFO or device would hang the listing
        raise ValueError(f"{card_path}: not a regular file of a sane size; not read")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{card_path}: model card is not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ValueError(f"{card_path}: not an xrfcore model card")
    return card


def _entry(card_path: Path, source: str) -> dict:
    try:
        card = read_card(card_path)
    except (ValueError, OSError) as exc:
        card = {"error": str(exc)}
    weights = card_path.with_suffix(".safetensors")
    md = card_path.with_suffix(".md")
    card["path"] = str(weights)
    card["card_path"] = str(card_path)
    card["card_md"] = str(md) if md.is_file() else None
    card["name"] = card.get("name") or (card_path.parent.name if card_path.stem == "model" else card_path.stem)
    card["source"] = source
    return card


def list_models(extra=(), kind: str | None = None) -> list[dict]:
    """Every installed model: its card plus ``path`` (weights), ``card_path``, ``card_md`` (the
    markdown card or None), ``name`` and ``source`` ("shipped" | "user" | "extra"); unreadable
    cards come back with ``error``. ``kind``: only "mae" (foundation) or "regressor" models."""
    shipped = shipped_models_dir()
    user = user_models_dir()
    found = []
    for d in search_dirs(extra):
        if not d.is_dir():
            continue
        source = "shipped" if shipped is not None and d == shipped else "user" if d == user else "extra"
        for card_path in sorted(d.rglob("*.json")):
            if card_path.stem in COPY_STEMS or not card_path.with_suffix(".safetensors").is_file():
                continue
            e = _entry(card_path, source)
            if kind is None or e.get("kind") == kind:
                found.append(e)
    return found


def default_model(kind: str = "mae") -> Path | None:
    """Weights path of the default foundation model: the shipped ``DEFAULT_MODEL``, else the first
    installed foundation model (shipped before user); None when there is none."""
    shipped = shipped_models_dir()
    if shipped is not None:
        p = shipped / f"{DEFAULT_MODEL}.safetensors"
        if p.is_file() and p.with_suffix(".json").is_file():
            return p
    for e in list_models(kind=kind):
        if "error" not in e:
            return Path(e["path"])
    return None


def adapted_for(project, extra=()) -> dict | None:
    """The newest installed foundation model adapted to ``project`` (``xrfcore adapt``: its card's
    ``adaptation.project`` is this project's resolved path), as a :func:`list_models` entry; None if
    there is none. Fine-tuning offers it by default for that project, in later sessions too."""
    key = os.path.normcase(str(Path(project).resolve()))
    hits = [e for e in list_models(extra, kind="mae") if "error" not in e
            and os.path.normcase(str((e.get("adaptation") or {}).get("project", ""))) == key]
    return max(hits, key=lambda e: str(e.get("created", ""))) if hits else None


def resolve(model: str | os.PathLike | None, kind: str = "mae") -> Path:
    """A model given as a path, an installed model's name or id, "default" or None -> its path.

    Paths are returned as given (the loader checks them). Raises FileNotFoundError naming what is
    installed when nothing matches."""
    if model is None or str(model) in ("", "default"):
        p = default_model(kind)
        if p is None:
            raise FileNotFoundError("no pretrained model is installed (looked in: "
                                    + ", ".join(str(d) for d in search_dirs()) + "); pretrain one with "
                                    "`xrfcore pretrain` or import one with `xrfcore.models_registry.import_research`")
        return p
    p = Path(model)
    if p.exists() or p.suffix in (".safetensors", ".json", ".pth", ".ckpt", ".pt") or len(p.parts) > 1:
        return p
    found = [e for e in list_models() if "error" not in e]
    for e in found:
        if str(model) in (e["name"], e.get("id")):
            return Path(e["path"])
    names = ", ".join(sorted({e["name"] for e in found})) or "none"
    raise FileNotFoundError(f"no model named {model!r} (installed: {names})")


def card_text(path) -> str | None:
    """The markdown model card beside a model (``NAME.md``), or None."""
    p = Path(path)
    md = (p if p.suffix == "" else p.with_suffix("")).with_suffix(".md")
    return md.read_text(encoding="utf-8") if md.is_file() else None


# ---------------------------------------------------------------------------- import
def import_research(src, name: str | None = None, dest_dir=None, *, kind: str = "auto",
                    overwrite: bool = False, notes: str = "", **cfg_overrides) -> Path:
    """Convert a research state dict (``.pth``/``.ckpt``) into ``NAME.safetensors`` + ``NAME.json``.

    The file is read with ``torch.load(weights_only=True)`` (tensors and plain containers only;
    never an arbitrary pickle), loaded strictly into our architecture, and saved with a card that
    records the source file and its sha256. ``dest_dir`` defaults to the user's models folder.
    Returns the card path. Raises ValueError (not a usable state dict, bad name) or FileExistsError."""
    from xrfcore.model import checkpoint as ck

    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: file not found")
    name = name or src.stem
    if not _NAME_OK.match(name):
        raise ValueError(f"model name {name!r}: use letters, digits, '.', '_' or '-' (no spaces or slashes)")
    dest = Path(dest_dir) if dest_dir is not None else user_models_dir(create=True)
    stem = dest / name
    if not overwrite and (stem.with_suffix(".safetensors").exists() or stem.with_suffix(".json").exists()):
        raise FileExistsError(f"{stem}.safetensors already exists; choose another name or overwrite")
    model, card = ck.load_research_model(src, kind=kind, **cfg_overrides)
    for key in ("format", "format_version", "kind", "config"):  # save() writes these itself
        card.pop(key, None)
    card["name"] = name
    card["source"]["imported_from"] = src.name
    card["notes"] = "; ".join(x for x in (card.get("notes", ""), notes) if x)
    return ck.save(stem, model, card)
