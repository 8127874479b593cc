import numpy as np
import pandas as pd
import pytest

from xrfcore import export


def table():
    return pd.DataFrame({"core": "A", "depth_mm": [0.0, 10.0], "section": "1", "position_mm": [0.0, 10.0],
                         "CaCO3": [50.0, 51.5], "CaCO3_lo": [45.0, 46.5], "CaCO3_hi": [55.0, 56.5],
                         "TOC": [0.5, 0.6], "TOC_lo": [0.2, 0.3], "TOC_hi": [0.8, 0.9],
                         "ood_score": [0.5, 1.4], "ood_flag": [False, True],
                         "ood_reason": ["", "unlike the foundation model's training spectra (reconstruction "
                                        "error 4.2x typical, features 1.3x past their limit)"], "model_id": "m1"})


def test_write_and_read_back(tmp_path):
    p = tmp_path / "out" / "pred.csv"
    export.write_predictions_csv(p, table()[list(reversed(table().columns))],
                                 {"model_id": "m1", "weights_sha256": "ab" * 32, "simulated": True,
                                  "card": {"metrics": {"CaCO3": {"r2": 0.9}}}, "core": "A"})
    text = p.read_text()
    assert text.startswith("# SIMULATED DATA")
    prov = export.read_provenance(p)
    assert prov["model_id"] == "m1" and prov["core"] == "A" and "xrfcore_version" in prov
    assert '"r2": 0.9' in prov["card"]
    back = pd.read_csv(p, comment="#")
    assert list(back.columns) == export.PREDICTION_COLUMNS
    np.testing.assert_allclose(back.CaCO3, [50.0, 51.5])
    assert back.ood_flag.tolist() == [False, True]
    assert back.ood_reason.fillna("").tolist() == table().ood_reason.tolist()  # commas survive quoting
    assert not list(p.parent.glob("*.tmp"))


def test_not_simulated_has_no_banner_and_failure_leaves_old_file(tmp_path):
    p = tmp_path / "pred.csv"
    export.write_predictions_csv(p, table(), {"model_id": "m1", "simulated": False})
    assert not p.read_text().startswith("# SIMULATED")
    before = p.read_text()
    with pytest.raises(ValueError, match="depth_mm"):
        export.write_predictions_csv(p, table().drop(columns="depth_mm"), {})
    bad = table()
    bad["weird"] = [object(), object()]

    class Boom:
        def __str__(self):
            raise RuntimeError("boom")
    bad["weird"] = [Boom(), Boom()]
    with pytest.raises(RuntimeError):
        export.write_predictions_csv(p, bad, {})
    assert p.read_text() == before
    assert not list(tmp_path.glob("*.tmp"))
