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


def test_self_test_with_the_shipped_default_model(qapp, sample_core, no_hook, app_home, capsys):
    """No settings, no pretraining: the shipped foundation model is found and used."""
    from app.main import main
    from xrfcore import models_registry
    if models_registry.default_model("mae") is None:
        pytest.skip("no foundation model is shipped in models/")
    assert main(["--self-test", "--timeout", "300"]) == 0
    out = capsys.readouterr().out
    assert f"base model {models_registry.DEFAULT_MODEL}" in out and "300 depths predicted" in out
    # the throw-away model's predictions are not left in the user's sample project
    from app.settings import projects_dir
    from xrfcore import store
    with store.Project.open(projects_dir() / "sample_core_SIMULATED.h5") as p:
        assert p.predictions("SIM01-1") == []
