"""`xrfcore import | info | export-spectra` through the dispatcher and the installed script."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_importer import make_core
from xrfcore.cli import main


@pytest.fixture
def folder(tmp_path):
    f = make_core(tmp_path / "data", np.random.default_rng(3), positions=(10, 20, 30))
    (f / "Run 1 at  10kV" / "broken.spe").write_text("$SPEC_ID:\nx\n$DATA:\n0 2047\n1 2 3\n")
    return f


def test_import_info_export(tmp_path, folder, capsys):
    proj = tmp_path / "p.h5"
    report = tmp_path / "report.csv"
    assert main(["import", str(folder), "-p", str(proj), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "12 ok" in out and "1 rejected" in out
    assert "broken.spe: truncated data block" in out
    assert ",rejected," in report.read_text()

    assert main(["import", str(folder), "-p", str(proj), "--strict"]) == 1      # rejected file
    assert "12 skipped" in capsys.readouterr().out

    assert main(["info", str(proj), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    (core,) = info["cores"]
    assert core["core"] == "C1" and core["spectra"] == 12 and core["active"] == 12
    run = {r["run"]: r for r in core["runs"]}["10kV-Run1"]
    assert run["depth_min_mm"] == 10.0 and run["depth_max_mm"] == 980.0
    assert run["kv"] == [10.0] and run["current_ua"] == [150.0] and run["live_s"] == [10.0]
    assert info["import_log"]["rejected"] == 2 and info["import_log"]["imports"] == 2

    assert main(["info", str(proj)]) == 0
    text = capsys.readouterr().out
    assert "Core C1: 2 run(s), 12 spectra (12 active)" in text and "10kV-Run1" in text

    out_csv = tmp_path / "spectra.csv"
    assert main(["export-spectra", str(proj), "--core", "C1", "--run", "10kV-Run1", "-o", str(out_csv)]) == 0
    header = [ln for ln in out_csv.read_text().splitlines() if ln.startswith("#")]
    assert any("core: C1" in ln for ln in header) and any("energy calibration 10kV-Run1" in ln for ln in header)
    df = pd.read_csv(out_csv, comment="#")
    assert len(df) == 6 and "ch2047" in df.columns and df["depth_mm"].is_monotonic_increasing
    from xrfcore.store import Project
    with Project.open(proj) as p:
        counts = p.read_run("C1", "10kV-Run1").counts
    np.testing.assert_array_equal(df[[f"ch{i:04d}" for i in range(2048)]].to_numpy(), counts)

    assert main(["export-spectra", str(proj), "--core", "C1", "--all", "-o", str(out_csv)]) == 2  # exists
    assert main(["export-spectra", str(proj), "--core", "C1", "--all", "-o", str(out_csv), "--force"]) == 0
    assert len(pd.read_csv(out_csv, comment="#")) == 12


def test_errors_are_one_line(tmp_path, folder, capsys):
    assert main(["info", str(tmp_path / "missing.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such project file" in err
    assert main(["import", str(tmp_path / "nofolder"), "-p", str(tmp_path / "p.h5")]) == 2
    assert "no such folder" in capsys.readouterr().err
    main(["import", str(folder), "-p", str(tmp_path / "p.h5")])
    capsys.readouterr()
    assert main(["export-spectra", str(tmp_path / "p.h5"), "--core", "nope", "-o", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no core 'nope'" in err
    assert not (tmp_path / "x.csv").exists()


def test_installed_script(tmp_path, folder):
    exe = shutil.which("xrfcore", path=str(Path(sys.executable).parent)) or shutil.which("xrfcore")
    if exe is None:
        pytest.skip("the xrfcore console script is not installed")
    proj = tmp_path / "p.h5"
    r = subprocess.run([exe, "import", str(folder), "-p", str(proj), "--strict"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "broken.spe" in r.stdout
    r = subprocess.run([exe, "info", str(proj), "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["cores"][0]["spectra"] == 12
