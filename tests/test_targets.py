"""Any lab target: header names and units, choosing targets, the log rule, storing, fine-tuning,
predicting and exporting a non-default target (Fe in mg/kg) end to end from the command line."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from xrfcore import labels as lb, store, targets as tg
from xrfcore.cli import main
from xrfcore.train import finetune as ft


def _sample_dir():
    from xrfcore._paths import sample_core_dir
    d = sample_core_dir()
    if d is None or not (d / "SIM01-1").is_dir():
        pytest.skip("the bundled sample core is not there")
    return d


def fe_lab_csv(path, seed: int = 0):
    """The sample core's lab table plus lab columns derived from its SIMULATED composition (truth
    CSV, averaged over each lab sample's interval): Fe in mg/kg of dry sediment from the terrigenous
    and ash fractions (PAAS 7.2 / ash 8.5 wt% Fe2O3, 69.94 % Fe in Fe2O3) with 3 % lab noise, and Mn in
    ppm (right-skewed: a Mn-rich top, then ~210 ppm)."""
    d = _sample_dir() / "SIM01-1"
    lab = pd.read_csv(d / "SIM01-1_lab_samples.csv", comment="#")
    truth = pd.read_csv(d / "SIM01-1_truth.csv", comment="#")
    rng = np.random.default_rng(seed)
    fe, mn = [], []
    for a, b in zip(lab.depth_top_mm, lab.depth_bottom_mm):
        t = truth[(truth.depth_mm >= a - 5) & (truth.depth_mm <= b + 5)]
        terr = 100 - t.CaCO3 - 2.5 * t.TOC - t.opal - t.ash
        fe.append(float((0.6994 * (7.2 * terr + 8.5 * t.ash) * 100).mean()))
        mn.append(float(t.Mn.mean() * 1e4))
    lab["Fe (mg/kg)"] = np.round(np.array(fe) * rng.normal(1, 0.03, len(fe)), 0)
    lab["Mn_ppm"] = np.round(mn, 1)
    lab["lithology"] = "nannofossil ooze"
    with open(path, "w") as f:
        f.write("# SIMULATED lab samples: Fe and Mn derived from the simulated composition\n")
        lab.to_csv(f, index=False)
    return path


# --------------------------------------------------------------------------- names, units, choice

@pytest.mark.parametrize("header, name, unit", [
    ("Fe (mg/kg)", "Fe", "mg/kg"), ("Fe [ppm]", "Fe", "ppm"), ("Fe_ppm", "Fe", "ppm"), ("BSi wt%", "BSi", "wt%"),
    ("grain size (um)", "grain size", "um"), ("water %", "water", "%"), ("Zr", "Zr", None),
    ("Ti_mg_kg", "Ti", "mg/kg"), ("Br (cps)", "Br", "cps")])
def test_split_header(header, name, unit):
    assert tg.split_header(header) == (name, unit)


def test_targets_chosen_by_name_header_or_default(tmp_path):
    csv = fe_lab_csv(tmp_path / "lab.csv")
    lab = lb.read_lab_csv(csv)  # default: CaCO3 and TOC, exactly as before
    assert lab.targets == ["CaCO3", "TOC"] and "Fe" not in lab.samples
    assert list(lab.samples.columns) == ["core", "depth_top_mm", "depth_bottom_mm", "depth_mm", "CaCO3", "TOC",
                                         "sample", "source_row"]
    lab = lb.read_lab_csv(csv, targets="Fe,CaCO3")
    assert lab.targets == ["Fe", "CaCO3"] and lab.target_units == {"Fe": "mg/kg", "CaCO3": "wt%"}
    assert lab.samples["Fe"].between(1000, 80000).all() and lab.samples["TOC"].isna().all()
    lab = lb.read_lab_csv(csv, targets=["Mn_ppm", "Fe (mg/kg)"], units="Fe=ppm")
    assert lab.target_units == {"Mn": "ppm", "Fe": "ppm"}  # a given unit wins over the header
    with pytest.raises(ValueError, match=r"lab.csv: column 'lithology' is not numeric.*nannofossil"):
        lb.read_lab_csv(csv, targets="lithology")
    with pytest.raises(ValueError, match=r"lab.csv: unknown target 'Cu': no such column.*numeric: .*Fe \(mg/kg\)"):
        lb.read_lab_csv(csv, targets="Fe,Cu")
    with pytest.raises(ValueError, match=r"column 'depth_top_mm' is the top column"):
        lb.read_lab_csv(csv, targets="depth_top_mm")
    # no CaCO3 / TOC and no target chosen: the message names the file and the numeric columns
    only_fe = tmp_path / "fe.csv"
    pd.read_csv(csv, comment="#").drop(columns=["CaCO3", "TOC"]).to_csv(only_fe, index=False)
    with pytest.raises(ValueError, match=r"fe.csv: no CaCO3 or TOC column found.*--targets.*Fe \(mg/kg\)"):
        lb.read_lab_csv(only_fe)


def test_log_rule_skewed_positive_is_log_caco3_stays_linear():
    rng = np.random.default_rng(0)
    skewed = np.exp(rng.normal(3, 0.8, 40))           # lognormal: right-skewed, all > 0
    assert tg.choose_space("Mn", skewed)["space"] == "log"
    assert tg.choose_space("Mn", skewed - skewed.min())["space"] == "linear"   # a zero: never log
    assert tg.choose_space("Fe", rng.normal(30000, 3000, 40))["space"] == "linear"   # symmetric
    assert tg.choose_space("d13C", rng.normal(-1, 0.5, 40))["clamp"] == [None, None]  # negative: unclamped
    assert tg.choose_space("Mn", skewed[:4])["space"] == "linear"                  # too few to tell
    # CaCO3 keeps linear even when right-skewed; TOC keeps log even when symmetric; the operator wins
    assert tg.choose_space("CaCO3", skewed)["space"] == "linear"
    assert tg.choose_space("TOC", rng.normal(1, 0.1, 40))["space"] == "log"
    assert tg.choose_space("CaCO3", skewed, forced_log=("CaCO3",))["space"] == "log"
    assert tg.choose_space("Mn", skewed, forced_linear=("Mn",))["space"] == "linear"
    # a log target that is not wt%: no 100 cap, floor from its own labels
    st = tg.choose_space("Mn", skewed, unit="ppm")
    assert st["clamp"] == [0.0, None] and st["floor"] == pytest.approx(skewed.min() / 2)
    assert tg.from_space(tg.to_space(np.array([5000.0]), st), st)[0] == pytest.approx(5000.0)
    # the sample core's own labels agree with the established choice: TOC log, CaCO3 linear
    lab = pd.read_csv(_sample_dir() / "SIM01-1" / "SIM01-1_lab_samples.csv", comment="#")
    assert tg.log_rule(lab.TOC)[0] and not tg.log_rule(lab.CaCO3)[0]


def test_config_and_usable_targets_name_the_problem():
    assert ft.FinetuneConfig(targets="Fe,CaCO3").targets == ("Fe", "CaCO3")
    with pytest.raises(ValueError, match="log_targets must be among the targets"):
        ft.FinetuneConfig(targets=("Fe",), log_targets=("Zr",))
    with pytest.raises(ValueError, match="both log_targets and linear_targets"):
        ft.FinetuneConfig(targets=("Fe",), log_targets=("Fe",), linear_targets=("Fe",))
    y = pd.DataFrame({"CaCO3": [1.0, 2, 3], "Fe": [1.0, 2, 3], "lith": ["a", "b", "c"]})
    assert tg.usable(("CaCO3", "TOC", "Fe"), y) == ["CaCO3", "Fe"]   # a missing default: skipped
    with pytest.raises(ValueError, match="target 'Zr' is not in the lab samples"):
        tg.usable(("Fe", "Zr"), y)
    with pytest.raises(ValueError, match="target 'lith': the lab column is not numeric"):
        tg.usable(("lith",), y)


def test_stored_targets_old_and_new_projects(tmp_path):
    csv = fe_lab_csv(tmp_path / "lab.csv")
    proj = tmp_path / "p.h5"
    with store.transaction(proj) as w:  # a project stored before any-target: no "targets" in the meta
        w.write_labels(lb.read_lab_csv(csv).samples, {"files": {}})
    assert lb.stored_targets(proj) == {"CaCO3": "wt%", "TOC": "wt%"}
    lb.store_labels(proj, lb.read_lab_csv(csv, targets="Fe,CaCO3"))
    assert lb.stored_targets(proj) == {"Fe": "mg/kg", "CaCO3": "wt%"}
    with store.Project.open(proj) as p:
        assert p.labels()["Fe"].notna().all()
        assert p.labels_meta()["files"]["lab.csv"]["target_columns"]["Fe"] == "Fe (mg/kg)"
    # another core's lab table with Fe in another unit is refused, naming both units
    other = tmp_path / "other.csv"
    pd.read_csv(csv, comment="#").assign(core="X").rename(columns={"Fe (mg/kg)": "Fe (ppm)"}).to_csv(other, index=False)
    with pytest.raises(ValueError, match="Fe is in ppm here but in mg/kg"):
        lb.store_labels(proj, lb.read_lab_csv(other, targets="Fe"))


def test_baseline_any_target(tmp_path):
    from xrfcore import baseline

    rng = np.random.default_rng(0)
    X = rng.poisson(50, (30, 64)).astype(float)
    ca = X[:, :8].sum(1)
    y = pd.DataFrame({"CaCO3": ca / ca.max() * 80, "Mn": np.exp((ca - ca.mean()) / ca.std())})
    model, card = baseline.fit_published(X, y, targets=("CaCO3", "Mn"))
    assert card["targets"] == ["CaCO3", "Mn"] and card["settings"]["Mn"]["C"] == baseline.PUBLISHED["CaCO3"]["C"]
    assert model.spaces["CaCO3"]["space"] == "log" and model.spaces["Mn"]["space"] == "log"
    p = model.predict(X)
    assert list(p.columns) == ["CaCO3", "Mn"] and (p["Mn"] > 0).all()
    with pytest.raises(ValueError, match="target 'Zr' not in the lab samples"):
        baseline.fit_baseline(X, y, targets=("Zr",))


# --------------------------------------------------------------------------- end to end, CLI

def run(*argv):
    rc = main([str(a) for a in argv])
    assert rc == 0, argv


def test_cli_labels_finetune_predict_export_fe(tmp_path, capsys):
    from xrfcore import models_registry

    if models_registry.default_model() is None:
        pytest.skip("no foundation model installed")
    csv = fe_lab_csv(tmp_path / "lab.csv")
    proj = tmp_path / "s.h5"
    run("import", _sample_dir(), "-p", proj)
    capsys.readouterr()
    # a non-numeric or unknown target: one line naming the file and column, exit code 2
    assert main(["labels", "-p", str(proj), str(csv), "--targets", "lithology"]) == 2
    assert "lab.csv: column 'lithology' is not numeric" in capsys.readouterr().err
    run("labels", "-p", proj, csv, "--targets", "Fe,CaCO3,Mn")
    out = capsys.readouterr().out
    assert "Fe (mg/kg; column 'Fe (mg/kg)', 30 values)" in out and "stored 30 lab samples" in out
    run("labels", "-p", proj)
    assert "targets: Fe (mg/kg, 30 values), CaCO3 (wt%, 30 values), Mn (ppm, 30 values)" in capsys.readouterr().out
    # finetune without --labels: the stored targets; head mode, the shipped foundation model
    run("finetune", "-p", proj, "--mode", "head", "--device", "cpu", "-o", tmp_path / "ft")
    out = capsys.readouterr().out
    assert "Fe: R2" in out and "mg/kg" in out and "Mn: R2" in out
    card = json.loads((tmp_path / "ft" / "model.json").read_text())
    assert card["targets"] == ["Fe", "CaCO3", "Mn"] and card["config"]["n_outputs"] == 3
    assert card["target_units"] == {"Fe": "mg/kg", "CaCO3": "wt%", "Mn": "ppm"}
    sp = {t: card["target_stats"][t]["space"] for t in card["targets"]}
    assert sp["CaCO3"] == "linear" and sp["Mn"] == "log"   # Mn: positive and right-skewed
    assert "skew" in card["target_stats"]["Mn"]["space_reason"] and card["target_stats"]["Fe"]["clamp"] == [0.0, None]
    assert card["metrics"]["Fe"]["r2"] > 0.8 and card["metrics"]["CaCO3"]["r2"] > 0.8
    md = (tmp_path / "ft" / "model.md").read_text()
    assert "| Fe | mg/kg |" in md and "| Mn | ppm | log |" in md and "| CaCO3 | wt% | linear |" in md
    # predict stores every target; export writes a column set per target with the unit
    run("predict", tmp_path / "ft", "-p", proj, "--device", "cpu")
    assert "Fe " in capsys.readouterr().out
    csv_out = tmp_path / "out.csv"
    run("export", "-p", proj, "--core", "SIM01-1", "--model", card["id"], "-o", csv_out)
    text = csv_out.read_text()
    assert '# units: {"CaCO3": "wt%", "Fe": "mg/kg", "Mn": "ppm"}' in text
    df = pd.read_csv(csv_out, comment="#")
    assert {"Fe (mg/kg)", "Fe_lo (mg/kg)", "Fe_hi (mg/kg)", "Mn (ppm)", "Mn_lo (ppm)", "Mn_hi (ppm)",
            "CaCO3", "CaCO3_lo", "CaCO3_hi"} <= set(df.columns) and "TOC" not in df.columns
    assert len(df) == 300 and (df["Fe_lo (mg/kg)"] <= df["Fe (mg/kg)"]).all()
    assert (df["Fe (mg/kg)"] <= df["Fe_hi (mg/kg)"]).all() and df["Fe (mg/kg)"].between(1000, 80000).all()
    # Mn in log space: the interval is a factor either side
    ratio = df["Mn_hi (ppm)"] / df["Mn (ppm)"]
    assert np.allclose(ratio, df["Mn (ppm)"] / df["Mn_lo (ppm)"], rtol=1e-3) and (ratio > 1).all()
    # a target the stored lab samples lack: refused, naming it
    assert main(["finetune", "-p", str(proj), "--targets", "Zr", "--device", "cpu", "-o", str(tmp_path / "z")]) == 2
    assert "target 'Zr' is not among the targets of the stored lab samples" in capsys.readouterr().err
    assert math.isfinite(card["conformal"]["Fe"]["q"])
