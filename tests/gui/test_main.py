"""The xrfcore-gui entry point: --demo --screenshot and --self-test, run in-process offscreen."""
from __future__ import annotations

import pytest


@pytest.fixture
def no_hook(monkeypatch):
    from app import errors
    monkeypatch.setattr(errors, "install_excepthook", lambda: None)  # keep pytest-qt's own hook


@pytest.fixture
def demo_tmp(tmp_path, monkeypatch):
    """The system's temporary folder, where --demo makes its own project folder."""
    import tempfile
    d = tmp_path / "systmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def demo_projects(tmp) -> list:
    return sorted(tmp.glob("xrfcore-demo-SIMULATED-*/sample_core_SIMULATED.h5"))


def test_demo_screenshot(qapp, tmp_path, sample_core, no_hook, app_home, demo_tmp):
    from app.main import main
    png = tmp_path / "shot.png"
    assert main(["--demo", "--screenshot", str(png), "--size", "1200x800", "--timeout", "120"]) == 0
    from PySide6.QtGui import QImage
    img = QImage(str(png))
    assert img.width() == 1200 and img.height() == 800
    # the sample core was imported, with its lab samples, into a fresh temporary folder of its own:
    # nothing in the user's data folder
    from xrfcore import store
    found = demo_projects(demo_tmp)
    assert len(found) == 1
    with store.Project.open(found[0]) as p:
        assert p.cores() == ["SIM01-1"] and len(p.labels()) > 10
    assert not list(app_home.rglob("*.h5"))


def test_demo_never_reopens_an_existing_demo_project(qapp, tmp_path, sample_core, no_hook, app_home, demo_tmp):
    """Someone else's (or an earlier session's) demo project in the user's folder is left alone: a
    second --demo imports afresh into a new folder."""
    from app.main import main
    from app.settings import projects_dir
    planted = projects_dir() / "sample_core_SIMULATED.h5"
    planted.write_bytes(b"another person's project")
    for i in range(2):
        assert main(["--demo", "--screenshot", str(tmp_path / f"s{i}.png"), "--timeout", "120"]) == 0
    found = demo_projects(demo_tmp)
    assert len(found) == 2 and found[0].parent != found[1].parent
    assert planted.read_bytes() == b"another person's project"


def test_default_window_fits_a_laptop_screen(qapp):
    from app.settings import DEFAULT_WINDOW, fit_window
    w, h = fit_window(1366, 728)                 # 1366x768 less a 40 px panel
    assert w <= 1366 and h <= 728 - 40 and (w, h) != DEFAULT_WINDOW
    assert fit_window(2560, 1400) == DEFAULT_WINDOW
    from app.main_window import MainWindow
    win = MainWindow()
    g = win.screen().availableGeometry()
    assert win.width() <= g.width() and win.height() <= g.height()
    win.close()


def test_self_test_with_the_shipped_default_model(qapp, sample_core, no_hook, app_home, capsys, demo_tmp):
    """No settings, no pretraining: the shipped foundation model is found and used."""
    from app.main import main
    from xrfcore import models_registry
    if models_registry.default_model("mae") is None:
        pytest.skip("no foundation model is shipped in models/")
    assert main(["--self-test", "--timeout", "300"]) == 0
    out = capsys.readouterr().out
    assert f"base model {models_registry.DEFAULT_MODEL}" in out and "300 depths predicted" in out
    # the throw-away model's predictions are not left in the user's sample project
    from xrfcore import store
    with store.Project.open(demo_projects(demo_tmp)[0]) as p:
        assert p.predictions("SIM01-1") == []
