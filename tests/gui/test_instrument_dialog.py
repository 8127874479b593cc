"""Predicting a run from another instrument (30 kV) with a model made for 10 kV Rh-tube spectra: the
app names both in a dialog; "Predict anyway" predicts (mismatch recorded), Cancel leaves nothing."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.gui.conftest import synthetic_spectra, wait_idle


@pytest.fixture
def shown(monkeypatch):
    from PySide6.QtWidgets import QMessageBox
    out = []
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda p, t, x, *a, **k: out.append((t, x))))
    return out


@pytest.fixture
def setup(qtbot, project, lab_csv, tiny_mae, tmp_path, shown):
    from app.main_window import MainWindow
    from xrfcore import store
    from xrfcore.train import finetune as ft
    ft.finetune_project(project, lab_csv, tiny_mae, tmp_path / "model", mode="head", device="cpu")
    counts, _ = synthetic_spectra(n=20)
    depth = np.arange(20) * 10.0
    meta = pd.DataFrame({"depth_mm": depth, "section": "1", "position_mm": depth, "kv": 30.0, "active": True,
                         "valid": True, "scanner": "avaatech", "core": "K30"})
    with store.transaction(project) as w:
        w.write_table("K30", "30kV-Run1", counts, meta)
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    w.settings.device = "cpu"
    w.open_project(str(project))
    qtbot.waitUntil(lambda: w.view is not None, timeout=30_000)
    wait_idle(qtbot, w)
    w.load_core("K30", "30kV-Run1")
    qtbot.waitUntil(lambda: w.view is not None and w.view.core == "K30", timeout=30_000)
    wait_idle(qtbot, w)
    w.set_model(str(tmp_path / "model" / "model"))
    yield w
    for j in list(w.jobs):
        j.cancel()
        j.wait(20000)


@pytest.mark.parametrize("anyway", [True, False])
def test_mismatch_dialog_names_run_and_model(qtbot, setup, shown, monkeypatch, anyway):
    from app.dialogs import instrument_dialog
    from xrfcore import store
    w = setup
    asked = []

    def fake_exec(self):
        asked.append((self.windowTitle(), self.text(), self.informativeText(), self.anyway_btn.text()))
        (self.anyway_btn if anyway else self.cancel_btn).click()
        return 0
    monkeypatch.setattr(instrument_dialog.InstrumentMismatchDialog, "exec", fake_exec)
    w.predict()
    qtbot.waitUntil(lambda: len(asked) == 1, timeout=60_000)
    wait_idle(qtbot, w)
    title, text, info, button = asked[0]
    assert title == "Instrument mismatch" and button == "Predict anyway"
    assert "Run: core K30 run 30kV-Run1:" in info and "at 30 kV" in info
    assert "was trained for a Rh tube at 10 kV (0-10.24 keV)" in info and "30 kV (model: 10 kV)" in info
    assert "--allow" not in info and not shown
    with store.Project.open(w.project) as p:
        preds = p.predictions("K30")
        if anyway:
            assert len(preds) == 1
            _, meta = p.read_predictions("K30", preds[0])
            assert meta["instrument_check"]["result"] == "mismatch allowed"
        else:
            assert preds == []
    if anyway:
        qtbot.waitUntil(lambda: w.view is not None and w.view.core == "K30" and w.view.prediction is not None,
                        timeout=30_000)
    assert len(asked) == 1   # asked once, never again for the allowed run


@pytest.mark.parametrize("anyway", [True, False])
def test_finetune_dialog_asks_before_using_runs_of_another_instrument(qtbot, project, lab_csv, tiny_mae,
                                                                      tmp_path, shown, monkeypatch, anyway):
    import json
    import shutil

    from app import engine
    from app.dialogs import instrument_dialog
    from app.dialogs.finetune_dialog import FinetuneDialog
    from xrfcore import labels
    # a foundation model that says it was made for a Mo tube at 30 kV; the sample core is Rh, 10 kV
    base = tmp_path / "mo_mae"
    for ext in (".safetensors", ".json"):
        shutil.copyfile(tiny_mae.with_suffix(ext), base.with_suffix(ext))
    card = json.loads(base.with_suffix(".json").read_text())
    card["instrument"] = {"tube_anode": "Mo", "kv": [30.0, 30.0]}
    base.with_suffix(".json").write_text(json.dumps(card))
    engine.store_labels(project, labels.read_lab_csv(lab_csv))
    asked = []

    def fake_exec(self):
        asked.append(self.informativeText())
        (self.anyway_btn if anyway else self.cancel_btn).click()
        return 0
    monkeypatch.setattr(instrument_dialog.InstrumentMismatchDialog, "exec", fake_exec)
    d = FinetuneDialog(str(project), device="cpu", base_model=str(base), cuda=False)
    qtbot.addWidget(d)
    d.start()
    qtbot.waitUntil(lambda: d.outcome != "", timeout=60_000)
    d.job.wait()
    # the labelled core's only run is named, with the model
    assert len(asked) == 1 and "Run: core SIM01-1 run 10kV-Run1: Rh tube at 10 kV" in asked[0]
    assert "was trained for a Mo tube at 30 kV" in asked[0] and "--allow" not in asked[0]
    if anyway:
        assert d.outcome == "ok", d.status.text()
        assert d.result["card"]["labels"]["instrument_check"][0]["result"] == "mismatch allowed"
    else:
        assert d.outcome == "refused" and d.result is None and "Not fine-tuned" in d.status.text()
    assert not shown
