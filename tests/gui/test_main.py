"""The xrfcore-gui entry point: --demo --screenshot and --self-test, run in-process offscreen."""
from __future__ import annotations

import pytest


@pytest.fixture
def no_hook(monkeypatch):
    from app import errors
    monkeypatch.setattr(errors, "install_excepthook", lambda: None)  # keep pytest-qt's own hook


def test_demo_screenshot(qapp, tmp_path, sample_core, no_hook, app_home):
    from app.main import main
    png = tmp_path / "shot.png"
    assert main(["--demo", "--screenshot", str(png), "--size", "1200x800", "--timeout", "120"]) == 0
    from PySide6.QtGui import QImage
    img = QImage(str(png))
    assert img.width() == 1200 and img.height() == 800
    # the sample core was imported once into the user data folder, with its lab samples
    from app.settings import projects_dir
    from xrfcore import store
    with store.Project.open(projects_dir() / "sample_core_SIMULATED.h5") as p:
        assert p.cores() == ["SIM01-1"] and len(p.labels()) > 10


def test_self_test_finetunes_and_predicts(qapp, sample_core, tiny_mae, no_hook, app_home, capsys):
    from app.main import main
    from app.settings import Settings
    s = Settings.load()
    s.default_model, s.device = str(tiny_mae), "cpu"
    s.save()
    assert main(["--self-test", "--timeout", "300"]) == 0
    assert "300 depths predicted" in capsys.readouterr().out
