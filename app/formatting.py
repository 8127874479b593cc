"""Numbers and model names as an operator reads them (display only)."""
from __future__ import annotations

import math
from pathlib import Path


def sig(x, digits: int = 4, unit: str = "") -> str:
    """``x`` with ``digits`` significant digits ('-' when missing or not a number)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "-"
    if not math.isfinite(v):
        return "-"
    # whole numbers up to a million as plain digits (1117 counts, not 1.12e+03)
    s = f"{v:.0f}" if 10 ** digits <= abs(v) < 1e7 else f"{v:.{digits}g}"
    return f"{s} {unit}" if unit else s


def model_name(card: dict | None, path=None) -> str:
    """The name an operator knows a model by: card name, else its id, else its folder/file name."""
    card = card or {}
    for key in ("name", "id"):
        if card.get(key):
            return str(card[key])
    if path:
        p = Path(path)
        return p.parent.name if p.stem in ("model", "base_mae") else p.stem
    return "unnamed model"


def short_path(path, keep: int = 2) -> str:
    """The last ``keep`` parts of a path ('…/folder/file'), for one-line messages."""
    p = Path(path)
    parts = p.parts[-keep:]
    return str(Path(*parts)) if len(p.parts) <= keep else "…/" + "/".join(parts)
