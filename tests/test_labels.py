import numpy as np
import pandas as pd
import pytest

from xrfcore import labels


def write(tmp_path, text, name="lab.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_detect_common_names():
    cols = labels.detect_columns(["Core", "depth_top_mm", "depth_bottom_mm", "CaCO3 (wt%)", "TOC"])
    assert cols == {"core": "Core", "top": "depth_top_mm", "bottom": "depth_bottom_mm",
                    "CaCO3": "CaCO3 (wt%)", "TOC": "TOC"}
    cols = labels.detect_columns(["core", "Depth (cm)", "CaCO3", "TOC (%)"])
    assert cols["mid"] == "Depth (cm)" and cols["TOC"] == "TOC (%)"
    cols = labels.detect_columns(["core", "top_cm", "bottom_cm", "caco3"])
    assert cols["top"] == "top_cm" and cols["bottom"] == "bottom_cm"


def test_read_interval_mm_with_simulated_comment(tmp_path):
    p = write(tmp_path, "# SIMULATED lab samples\ncore,depth_top_mm,depth_bottom_mm,CaCO3,TOC\n"
                        "A,0,10,50.5,0.4\nA,100,110,60,0.5\n")
    t = labels.read_lab_csv(p)
    assert t.simulated and t.depth_unit == "mm" and len(t.samples) == 2
    assert t.samples.depth_mm.tolist() == [5.0, 105.0]
    assert t.samples.source_row.tolist() == [3, 4]
    assert len(t.issues) == 0


def test_units_cm_and_m(tmp_path):
    t = labels.read_lab_csv(write(tmp_path, "core,top_cm,bottom_cm,CaCO3\nA,1,2,10\n"))
    assert t.samples.depth_top_mm[0] == 10 and t.samples.depth_bottom_mm[0] == 20
    t = labels.read_lab_csv(write(tmp_path, "core,Depth (m),CaCO3 (wt%)\nA,1.5,10\n", "b.csv"))
    assert t.samples.depth_mm[0] == 1500 and np.isnan(t.samples.depth_top_mm[0])
    t = labels.read_lab_csv(write(tmp_path, "core,depth,CaCO3\nA,15,10\n", "c.csv"), depth_unit="cm")
    assert t.samples.depth_mm[0] == 150


def test_unknown_unit_and_missing_columns_are_clear(tmp_path):
    p = write(tmp_path, "core,depth,CaCO3\nA,15,10\n")
    with pytest.raises(ValueError, match="lab.csv.*depth unit"):
        labels.read_lab_csv(p)
    p = write(tmp_path, "core,depth_cm,foo\nA,15,10\n", "x.csv")
    with pytest.raises(ValueError, match="x.csv.*no CaCO3 or TOC"):
        labels.read_lab_csv(p)
    p = write(tmp_path, "depth_cm,CaCO3\n15,10\n", "y.csv")
    with pytest.raises(ValueError, match="no core column"):
        labels.read_lab_csv(p)
    t = labels.read_lab_csv(p, core="K1")
    assert t.samples.core[0] == "K1"


def test_mapping_overrides(tmp_path):
    p = write(tmp_path, "kern;oben;unten;karbonat;org\nA;0;1;40;1\n")
    t = labels.read_lab_csv(p, mapping={"core": "kern", "top": "oben", "bottom": "unten",
                                        "CaCO3": "karbonat", "TOC": "org"}, depth_unit="cm")
    assert t.samples.iloc[0][["depth_top_mm", "depth_bottom_mm", "CaCO3", "TOC"]].tolist() == [0, 10, 40, 1]
    with pytest.raises(ValueError, match="not found"):
        labels.read_lab_csv(p, mapping={"core": "nope"}, depth_unit="cm")


def test_fraction_stated_not_guessed(tmp_path):
    # values <= 1 without a stated unit could be fractions or a carbonate-poor core: never guessed
    p = write(tmp_path, "core,depth_mm,CaCO3,TOC\nA,1,0.5,0.01\nA,2,0.6,0.02\nA,3,0.7,0.005\n")
    with pytest.raises(labels.LabUnitsError, match="CaCO3.*does not state its unit"):
        labels.read_lab_csv(p)
    t = labels.read_lab_csv(p, units="fraction")
    assert t.fraction and t.samples.CaCO3.tolist() == pytest.approx([50, 60, 70])
    assert t.samples.TOC.tolist() == pytest.approx([1, 2, 0.5])
    assert t.units == {"CaCO3": "fraction", "TOC": "fraction"}
    t = labels.read_lab_csv(p, fraction=False)
    assert t.samples.CaCO3.max() == pytest.approx(0.7)
    # a header unit says it
    t = labels.read_lab_csv(write(tmp_path, "core,depth_mm,CaCO3 (fraction),TOC [g/g]\nA,1,0.5,0.01\n", "f.csv"))
    assert t.samples.CaCO3[0] == pytest.approx(50) and t.samples.TOC[0] == pytest.approx(1)


def test_bad_rows_reported_not_dropped_silently(tmp_path):
    p = write(tmp_path, "core,depth_top_mm,depth_bottom_mm,CaCO3,TOC\n"
                        "A,0,10,50,0.5\n"      # fine
                        "A,20,10,50,0.5\n"     # bottom above top
                        "A,30,40,150,0.5\n"    # CaCO3 out of range, TOC kept
                        "A,40,50,20,25\n"      # TOC > 20 warn
                        "A,50,60,,\n"          # no target
                        "A,60,70,abc,1\n"      # not a number
                        ",70,80,10,1\n")       # no core
    t = labels.read_lab_csv(p)
    rep = t.issues.set_index("source_row")
    assert 3 in rep.index and "bottom" in rep.loc[3, "reason"]
    assert "outside 0-100" in rep.loc[4, "reason"]
    assert "above 20" in rep.loc[5, "reason"]
    assert "no usable" in rep.loc[6, "reason"]
    assert "not a number" in rep.loc[7, "reason"]
    assert 8 in rep.index
    # every input row is either a sample or in the report
    assert set(t.samples.source_row) | set(t.issues.source_row) == set(range(2, 9))
    row4 = t.samples.set_index("source_row").loc[4]
    assert np.isnan(row4.CaCO3) and row4.TOC == 0.5


def test_match_interval_average_and_nearest():
    depth = np.arange(0, 100, 5.0)  # 0..95 mm
    counts = np.tile(np.arange(4), (len(depth), 1)) + depth[:, None]
    meta = pd.DataFrame({"depth_mm": depth, "active": True})
    meta.loc[2, "active"] = False  # 10 mm spectrum is an inactive duplicate
    samples = pd.DataFrame({
        "core": "A", "depth_top_mm": [0, 41, np.nan, np.nan, 200], "depth_bottom_mm": [12, 44, np.nan, np.nan, 210],
        "depth_mm": [6, 42.5, 51, 77.5, 205], "CaCO3": 1.0, "TOC": 1.0, "source_row": [2, 3, 4, 5, 6]})
    X, kept, methods, nspec, issues = labels.match_spectra(samples, meta, counts, tolerance_mm=2)
    assert kept == [0, 1, 2]
    assert methods == ["interval", "nearest", "nearest"] and nspec == [2, 1, 1]
    np.testing.assert_allclose(X[0], np.arange(4) + 2.5)  # mean of 0 and 5 mm; 10 mm inactive
    np.testing.assert_allclose(X[2], np.arange(4) + 50)
    reasons = {i["source_row"]: i["reason"] for i in issues}
    assert "nearest at 40" in reasons[3] or "nearest at 45" in reasons[3]
    assert "within 2 mm" in reasons[5]
    assert "outside the scanned range" in reasons[6]


def test_choose_run():
    assert labels.choose_run(["30kV-Run1", "10kV-Run2"]) == "10kV-Run2"
    assert labels.choose_run(["30kV-Run1"]) == "30kV-Run1"
    assert labels.choose_run([]) is None


def test_store_labels_merges_by_core(tmp_path):
    from xrfcore import store
    proj = tmp_path / "p.h5"
    store.Project.create(proj).close()
    a = labels.read_lab_csv(write(tmp_path, "core,depth_mm,CaCO3\nA,1,10\nB,1,20\n", "a.csv"))
    labels.store_labels(proj, a)
    b = labels.read_lab_csv(write(tmp_path, "core,depth_mm,CaCO3\nB,2,30\nC,1,40\n", "b.csv"))
    labels.store_labels(proj, b)
    with store.Project.open(proj) as p:
        df = p.labels()
        assert sorted(zip(df.core, df.CaCO3)) == [("A", 10), ("B", 30), ("C", 40)]
        assert set(p.labels_meta()["files"]) == {"a.csv", "b.csv"}


def test_semicolon_decimal_comma(tmp_path):
    p = write(tmp_path, "Core;Depth (cm);CaCO3 (wt%);TOC (%)\nA;12,5;45,25;0,8\nA;13;50;1\n")
    t = labels.read_lab_csv(p)
    assert t.samples.depth_mm.tolist() == [125.0, 130.0]
    assert t.samples.CaCO3.tolist() == [45.25, 50.0] and t.samples.TOC.tolist() == [0.8, 1.0]
