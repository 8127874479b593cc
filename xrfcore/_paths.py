"""Where the shipped data live: ``resources/`` (the SIMULATED sample core) and ``models/``
(pretrained weights + cards).

The repository keeps both at the top level. A wheel (``pip install .``) carries them inside the
package as ``xrfcore/resources`` and ``xrfcore/models`` (pyproject.toml maps the folders there),
and the PyInstaller app bundles them at the same place, so one lookup serves every install:

1. ``$XRFCORE_RESOURCES`` / ``$XRFCORE_MODELS`` when set (portable installs, tests);
2. inside the package (wheel install, frozen app);
3. the repository checkout the package was imported from (editable install, source tree).
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _find(name: str, env: str) -> Path | None:
    if os.environ.get(env):
        p = Path(os.environ[env])
        return p if p.is_dir() else None
    inside = PACKAGE_DIR / name
    if inside.is_dir():
        return inside
    root = PACKAGE_DIR.parent
    # only a source checkout: never a stray top-level folder of the same name in site-packages
    if (root / "pyproject.toml").is_file() and (root / name).is_dir():
        return root / name
    return None


def resources_dir() -> Path | None:
    """The bundled resources folder (holds ``sample_core/``), or None when it was not installed."""
    return _find("resources", "XRFCORE_RESOURCES")


def sample_core_dir() -> Path | None:
    r = resources_dir()
    return r / "sample_core" if r is not None and (r / "sample_core").is_dir() else None


def shipped_models_dir() -> Path | None:
    """The folder of models shipped with xrfcore, or None when none were installed."""
    return _find("models", "XRFCORE_MODELS")
