"""End to end from the command line: simulate -> import -> pretrain (tiny) -> finetune -> predict -> export."""
import json

import pandas as pd
import pytest

from xrfcore.cli import main


def run(*argv):
    rc = main([str(a) for a in argv])
    assert rc == 0, argv
    return rc


def test_cli_simulate_to_export(tmp_path, capsys):
    sim, proj = tmp_path / "sim", tmp_path / "p.h5"
    run("simulate", "-o", sim, "--cores", 2, "--length-m", 1.5, "--step-mm", 10, "--seed", 3)
    run("import", sim, "-p", proj)
    run("pretrain", "-p", proj, "-o", tmp_path / "pre", "--steps", 15, "--batch-size", 32,
        "--window-channels", 512, "--device", "cpu", "--threads", 1)
    labs = sorted(sim.rglob("*_lab_samples.csv"))
    assert len(labs) == 2
    lab = tmp_path / "lab.csv"
    with open(lab, "w") as f:
        f.write("# SIMULATED lab samples, both cores\n")
        pd.concat([pd.read_csv(p, comment="#") for p in labs]).to_csv(f, index=False)
    capsys.readouterr()
    run("finetune", "-p", proj, "--labels", lab, "--model", tmp_path / "pre", "--mode", "head",
        "--device", "cpu", "-o", tmp_path / "ft")
    out = capsys.readouterr().out
    assert "samples matched" in out and "CaCO3: R2" in out and "SIMULATED" in out
    card = json.loads((tmp_path / "ft" / "model.json").read_text())
    assert card["simulated_data"] is True and card["labels"]["matched"] >= 20
    run("predict", tmp_path / "ft", "-p", proj, "--device", "cpu", "-o", tmp_path / "preds")
    out = capsys.readouterr().out
    assert len(list((tmp_path / "preds").glob("*.csv"))) == 2
    cores = [c["core"] for c in __import__("xrfcore.store").store.Project.open(proj).info()["cores"]]
    assert len(cores) == 2 and all(c in out for c in cores)
    csv = tmp_path / "out.csv"
    run("export", "-p", proj, "--core", cores[0], "--model", card["id"], "-o", csv)
    text = csv.read_text()
    assert text.startswith("# SIMULATED DATA") and f"# model_id: {card['id']}" in text
    df = pd.read_csv(csv, comment="#")
    assert {"CaCO3", "CaCO3_lo", "CaCO3_hi", "TOC", "TOC_lo", "TOC_hi", "ood_flag", "model_id"} <= set(df.columns)
    assert len(df) > 100 and df.CaCO3.between(0, 100).all() and (df.CaCO3_lo <= df.CaCO3_hi).all()


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "lab.csv"
    bad.write_text("core,depth,CaCO3\nA,1,2\n")
    rc = main(["finetune", "-p", str(tmp_path / "none.h5"), "--labels", str(bad), "--model", "x",
               "-o", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2 and "lab.csv" in err and "depth unit" in err and len(err.strip().splitlines()) == 1


def test_cli_finetune_without_any_model_installed(tmp_path, capsys, monkeypatch):
    from xrfcore import models_registry

    monkeypatch.setattr(models_registry, "shipped_models_dir", lambda: None)
    monkeypatch.setenv("XRFCORE_HOME", str(tmp_path / "home"))
    lab = tmp_path / "lab.csv"
    lab.write_text("core,depth_mm,CaCO3\nA,1,2\n")
    rc = main(["finetune", "-p", "p.h5", "--labels", str(lab), "-o", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2 and "no pretrained model is installed" in err and "--mode scratch" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_finetune_uses_the_default_model(tmp_path, capsys):
    """Sample core -> fine-tune without --model (the shipped foundation model) -> predict."""
    from xrfcore import models_registry
    from xrfcore._paths import sample_core_dir

    default = models_registry.default_model()
    if default is None:
        pytest.skip("no foundation model installed")
    sample = sample_core_dir()
    lab = sorted(sample.rglob("*_lab_samples.csv"))[0]
    proj = tmp_path / "s.h5"
    run("import", sample, "-p", proj)
    capsys.readouterr()
    run("finetune", "-p", proj, "--labels", lab, "--device", "cpu", "-o", tmp_path / "ft")
    out = capsys.readouterr().out
    assert f"pretrained model: {default}" in out and "default foundation model" in out
    card = json.loads((tmp_path / "ft" / "model.json").read_text())
    assert card["base_model"]["path"] == str(default.with_suffix(""))
    run("predict", tmp_path / "ft", "-p", proj, "--device", "cpu", "-o", tmp_path / "p.csv")
    df = pd.read_csv(tmp_path / "p.csv", comment="#")
    assert len(df) > 100 and df.CaCO3.notna().all()
