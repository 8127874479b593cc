"""Where the app keeps things (platformdirs) and the user's choices (a small JSON file).

``XRFCORE_HOME`` overrides every folder (tests and portable installs use it).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import platformdirs

from xrfcore.fileio import atomic_open

APP = "xrfcore"
MAX_RECENT = 8


def _base(kind: str) -> Path:
    home = os.environ.get("XRFCORE_HOME")
    if home:
        return Path(home) / kind
    fn = {
        "data": platformdirs.user_data_dir,
        "log": platformdirs.user_log_dir,
        "config": platformdirs.user_config_dir,
    }[kind]
    return Path(fn(APP, appauthor=False))


def data_dir() -> Path:
    """Default folder for projects and models the user makes."""
    p = _base("data")
    p.mkdir(parents=True, exist_ok=True)
    return p


def log_dir() -> Path:
    p = _base("log")
    p.mkdir(parents=True, exist_ok=True)
    return p


def config_dir() -> Path:
    p = _base("config")
    p.mkdir(parents=True, exist_ok=True)
    return p


def projects_dir() -> Path:
    p = data_dir() / "projects"
    p.mkdir(parents=True, exist_ok=True)
    return p


def models_dir() -> Path:
    p = data_dir() / "models"
    p.mkdir(parents=True, exist_ok=True)
    return p


@dataclass
class Settings:
    device: str = "auto"                 # auto | cpu | cuda
    default_model: str = ""              # path to a foundation model; "" = the shipped default
    projects_folder: str = ""            # "" = projects_dir()
    recent_projects: list[str] = field(default_factory=list)
    section_unit: str = "auto"

    @classmethod
    def path(cls) -> Path:
        return config_dir() / "settings.json"

    @classmethod
    def load(cls) -> "Settings":
        try:
            raw = json.loads(cls.path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        s = cls(**known)
        s.recent_projects = [str(p) for p in s.recent_projects if isinstance(p, str)]
        return s

    def save(self) -> None:
        # temp file then os.replace: a crash never leaves half a settings file
        with atomic_open(self.path()) as f:
            json.dump(asdict(self), f, indent=2)

    def add_recent(self, project: str | Path) -> None:
        p = str(Path(project).resolve())
        self.recent_projects = [p] + [r for r in self.recent_projects if r != p]
        del self.recent_projects[MAX_RECENT:]

    def project_folder(self) -> Path:
        if self.projects_folder:
            p = Path(self.projects_folder)
            p.mkdir(parents=True, exist_ok=True)
            return p
        return projects_dir()


DEFAULT_WINDOW = (1400, 860)


def fit_window(avail_w: int, avail_h: int, want: tuple[int, int] = DEFAULT_WINDOW) -> tuple[int, int]:
    """The window size that fits the screen's available area (a 1366x768 laptop less its panels):
    the wanted size, shrunk to 96 % of the width and 92 % of the height (room for the frame)."""
    if avail_w <= 0 or avail_h <= 0:
        return want
    return min(want[0], int(avail_w * 0.96)), min(want[1], int(avail_h * 0.92))


def window_size(widget=None, want: tuple[int, int] = DEFAULT_WINDOW) -> tuple[int, int]:
    """fit_window for the screen the widget is on (the primary screen otherwise)."""
    from PySide6.QtGui import QGuiApplication
    screen = (widget.screen() if widget is not None else None) or QGuiApplication.primaryScreen()
    if screen is None:
        return want
    g = screen.availableGeometry()
    return fit_window(g.width(), g.height(), want)
