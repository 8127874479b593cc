"""The app with a non-default lab target: the labels dialog picks Fe (mg/kg) instead of CaCO3/TOC,
the fine-tune dialog offers it, head-mode fine-tuning and prediction follow, the downcore view
draws an Fe panel with its unit."""
from __future__ import annotations

import pandas as pd

from tests.gui.conftest import wait_idle
from tests.test_targets import fe_lab_csv


def test_labels_dialog_picks_fe_then_finetune_and_predict(window, qtbot, project, tiny_mae, tmp_path,
                                                          errors_shown, monkeypatch):
    w = window
    w.settings.default_model = str(tiny_mae)
    w.settings.device = "cpu"
    csv = fe_lab_csv(tmp_path / "lab_fe.csv")
    w.open_project(str(project))
    qtbot.waitUntil(lambda: w.view is not None, timeout=30_000)
    wait_idle(qtbot, w)

    from app.dialogs import labels_dialog
    seen = {}

    def pick_fe(self):
        qtbot.waitUntil(lambda: self.lab is not None, timeout=30_000)
        items = [self.target_list.item(i) for i in range(self.target_list.count())]
        seen["offered"] = [it.text() for it in items]
        seen["ticked"] = self.target_columns()
        self.set_targets(["Fe (mg/kg)"])   # the operator ticks Fe only
        self.check()
        qtbot.waitUntil(lambda: self.lab is not None and self.lab.targets == ["Fe"], timeout=30_000)
        seen["status"] = self.status.text()
        assert self.buttons.button(self.buttons.StandardButton.Ok).isEnabled()
        return 1
    monkeypatch.setattr(labels_dialog.LabelsDialog, "exec", pick_fe)
    w.load_lab_samples(str(csv))
    wait_idle(qtbot, w)
    # numeric columns are offered (not the text column), CaCO3 / TOC ticked by default
    assert seen["offered"] == ["CaCO3", "TOC", "Fe (mg/kg)", "Mn_ppm"]
    assert seen["ticked"] == ["CaCO3", "TOC"] and "Targets: Fe (mg/kg)" in seen["status"]
    qtbot.waitUntil(lambda: w.view is not None and w.view.label_targets == {"Fe": "mg/kg"}, timeout=30_000)
    assert w.downcore.targets() == ["CaCO3", "TOC", "Fe"]
    assert w.downcore.panels["Fe"].plot.getAxis("top").labelText == "Fe (mg/kg)"
    assert len(w.downcore.panels["Fe"].labs.data) == 30

    from app.dialogs import finetune_dialog
    dialogs = []

    def run_then_predict(self):
        dialogs.append(self)
        assert list(self.target_boxes) == ["Fe"] and self.target_boxes["Fe"].text() == "Fe (mg/kg)"
        self.start()
        qtbot.waitUntil(lambda: self.outcome != "", timeout=120_000)
        assert self.outcome == "ok", self.status.text()
        self.predict_btn.click()
        return 1
    monkeypatch.setattr(finetune_dialog.FinetuneDialog, "exec", run_then_predict)
    w.finetune()
    card = dialogs[0].result["card"]
    assert card["targets"] == ["Fe"] and card["target_units"] == {"Fe": "mg/kg"}
    assert set(dialogs[0].view.pvm_plots) == {"Fe"} and "mg/kg" in dialogs[0].view.metrics.text()
    qtbot.waitUntil(lambda: w.view is not None and w.view.prediction is not None, timeout=120_000)
    wait_idle(qtbot, w)
    df = w.view.prediction
    assert {"Fe", "Fe_lo", "Fe_hi"} <= set(df.columns) and df["Fe"].notna().all()
    assert w.downcore.panels["Fe"].has_data
    x_lo, _ = w.downcore.panels["Fe"].lo.getData()
    x_mid, _ = w.downcore.panels["Fe"].line.getData()
    assert len(x_mid) == 300 and (x_lo <= x_mid + 1e-6).all()
    assert isinstance(df, pd.DataFrame) and not errors_shown
