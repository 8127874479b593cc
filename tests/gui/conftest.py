"""GUI test fixtures: offscreen Qt (set in tests/conftest.py), a private app home, the sample core."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "resources" / "sample_core"


@pytest.fixture(autouse=True)
def app_home(tmp_path, monkeypatch):
    """Settings, logs, projects and models of the app go to a temp folder."""
    from app import errors
    home = tmp_path / "home"
    monkeypatch.setenv("XRFCORE_HOME", str(home))
    # the log file follows XRFCORE_HOME: drop a handler set up by an earlier test
    root = logging.getLogger("xrfcore")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    errors._configured = False
    yield home


@pytest.fixture
def sample_core() -> Path:
    if not (SAMPLE / "SIM01-1").is_dir():
        pytest.skip("the bundled sample core is not in resources/")
    return SAMPLE


@pytest.fixture
def lab_csv(sample_core) -> Path:
    return next(sample_core.rglob("*lab_samples*.csv"))


@pytest.fixture(scope="session")
def imported_project(tmp_path_factory) -> Path:
    """The sample core imported once per session (tests copy it)."""
    if not (SAMPLE / "SIM01-1").is_dir():
        pytest.skip("the bundled sample core is not in resources/")
    from xrfcore import importer
    path = tmp_path_factory.mktemp("proj") / "sample.h5"
    importer.import_folder(SAMPLE, path)
    return path


@pytest.fixture
def project(imported_project, tmp_path) -> Path:
    dst = tmp_path / "project.h5"
    shutil.copyfile(imported_project, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_mae(tmp_path_factory) -> Path:
    """A tiny masked autoencoder (random weights, real card and safetensors): enough to exercise the
    fine-tune / predict / reconstruct wiring quickly."""
    import torch
    from xrfcore.model import checkpoint
    from xrfcore.model.config import ModelConfig
    from xrfcore.model.mae import MaskedAutoencoderViT
    from xrfcore.model.transforms import make_transform

    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", window_channels=512, depth=2, decoder_depth=1)
    model = MaskedAutoencoderViT(cfg)
    out = tmp_path_factory.mktemp("models") / "tiny_mae"
    checkpoint.save(out, model, {"transform": make_transform("zscore").to_dict(), "simulated_data": True})
    return out


def wait_idle(qtbot, win, timeout=60_000):
    qtbot.waitUntil(win.is_idle, timeout=timeout)


def synthetic_spectra(n=50, channels=2048, seed=0):
    rng = np.random.default_rng(seed)
    e = np.arange(channels) * 0.02
    base = 50 * np.exp(-e / 3) + 200 * np.exp(-0.5 * ((e - 3.69) / 0.07) ** 2) \
        + 80 * np.exp(-0.5 * ((e - 6.40) / 0.08) ** 2)
    return rng.poisson(base * rng.uniform(0.5, 1.5, (n, 1))).astype(np.int32), e


@pytest.fixture
def errors_shown(monkeypatch):
    """Capture QMessageBox.critical instead of blocking on a modal dialog."""
    from PySide6.QtWidgets import QMessageBox
    shown = []
    monkeypatch.setattr(QMessageBox, "critical",
                        staticmethod(lambda parent, title, text, *a, **k: shown.append((title, text))))
    return shown


@pytest.fixture
def window(qtbot, errors_shown):
    """The main window, shown; its jobs cancelled and waited for afterwards."""
    from app.main_window import MainWindow
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    yield w
    for j in list(w.jobs):
        j.cancel()
    for j in list(w.jobs):
        j.wait(20000)
