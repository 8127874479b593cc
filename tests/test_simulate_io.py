"""Simulated core-series folders, HDF5 archives and the simulate CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xrfcore.simulate.writers import RUN_FOLDER, simulate_folder


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "a"
    simulate_folder(out, cores=2, length_m=0.6, step_mm=20, seed=5)
    return out


def test_same_seed_same_bytes(folder, tmp_path):
    b = tmp_path / "b"
    simulate_folder(b, cores=2, length_m=0.6, step_mm=20, seed=5)
    fa, fb = _files(folder), _files(b)
    assert fa.keys() == fb.keys()
    assert all(fa[k] == fb[k] for k in fa), [k for k in fa if fa[k] != fb[k]][:3]
    c = tmp_path / "c"
    simulate_folder(c, cores=1, length_m=0.6, step_mm=20, seed=6)
    fc = _files(c)
    spe = [k for k in fc if k.endswith(".spe")]
    assert any(fc[k] != fa.get(k) for k in spe)


def test_folder_layout_and_labels(folder):
    cores = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert cores == ["SIM01-1", "SIM02-1"]
    assert "SIMULATED" in (folder / "README.md").read_text()
    spes = sorted((folder / "SIM01-1" / RUN_FOLDER).glob("*.spe"))
    assert len(spes) == 30
    name = spes[0].name
    assert name.startswith("SIM01-1_00000 ") and "10kV 200uA" in name and "Sett Low" in name
    text = spes[0].read_bytes().decode("latin-1")
    assert "$SPEC_REM:\r\nSIMULATED" in text and "\r\n$DATA:\r\n0 2047\r\n" in text
    # no temp folders left behind
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    for core in cores:
        for kind in ("lab_samples", "truth"):
            lines = (folder / core / f"{core}_{kind}.csv").read_text().splitlines()
            assert lines[0].startswith("#") and "SIMULATED" in lines[0]
    lab = pd.read_csv(folder / "SIM01-1" / "SIM01-1_lab_samples.csv", comment="#")
    assert list(lab.columns) == ["core", "depth_top_mm", "depth_bottom_mm", "CaCO3", "TOC"]
    assert np.all(lab.depth_bottom_mm - lab.depth_top_mm == 10)
    assert lab.CaCO3.between(0, 100).all() and (lab.TOC >= 0).all()
    assert 4 <= len(lab) <= 7


def test_lab_csv_readable_by_labels_module(folder):
    labels = pytest.importorskip("xrfcore.labels")
    table = labels.read_lab_csv(folder / "SIM01-1" / "SIM01-1_lab_samples.csv")
    df = table.samples if hasattr(table, "samples") else table
    assert len(df) >= 4


def test_import_reads_every_file_with_truth_depths(folder, tmp_path):
    from xrfcore.importer import import_folder
    from xrfcore.store import Project

    proj = tmp_path / "p.h5"
    report = import_folder(folder, proj)
    assert report.counts["rejected"] == 0 and report.counts["warning"] == 0
    with Project.open(proj) as p:
        assert sorted(p.cores()) == ["SIM01-1", "SIM02-1"]
        run = p.read_run("SIM01-1", p.runs("SIM01-1")[0])
    truth = pd.read_csv(folder / "SIM01-1" / "SIM01-1_truth.csv", comment="#")
    np.testing.assert_allclose(np.sort(run.meta["depth_mm"].to_numpy()), np.sort(truth.depth_mm.to_numpy()))
    assert run.counts.shape == (30, 2048)
    assert (run.meta["current_ua"] == 200).all() and (run.meta["real_s"] > run.meta["live_s"]).all()
    # total cps in the header is the simulated input count rate
    merged = run.meta.assign(depth=run.meta["depth_mm"].round(1)).merge(truth, left_on="depth", right_on="depth_mm")
    np.testing.assert_allclose(merged["total_cps"], merged["icr_cps"], rtol=1e-5, atol=1)


def test_cli_simulate_and_errors(tmp_path, capsys):
    from xrfcore.cli import main

    out = tmp_path / "cli"
    assert main(["simulate", "-o", str(out), "--length-m", "0.2", "--step-mm", "20", "--seed", "1"]) == 0
    assert len(list((out / "SIM01-1" / RUN_FOLDER).glob("*.spe"))) == 10
    before = _files(out)
    # existing core without --overwrite: one clear line, nothing changed
    assert main(["simulate", "-o", str(out), "--length-m", "0.2", "--step-mm", "20", "--seed", "2"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert _files(out) == before
    assert main(["simulate", "-o", str(out), "--length-m", "0.2", "--step-mm", "20", "--seed", "2",
                 "--overwrite"]) == 0
    assert _files(out) != before
    assert main(["simulate", "-o", str(out), "--head", "nope"]) == 2
    assert "unknown head" in capsys.readouterr().err
    assert main(["simulate", "-o", str(out), "--step-mm", "0"]) == 2


def test_cancel_leaves_nothing(tmp_path):
    from xrfcore.jobs import CancelToken, Cancelled

    token = CancelToken()
    calls = []

    def progress(done, total, msg=""):
        calls.append(done)
        if len(calls) == 1:
            token.cancel()

    out = tmp_path / "cancel"
    with pytest.raises(Cancelled):
        simulate_folder(out, length_m=1.0, step_mm=5, seed=1, progress=progress, token=token)
    assert not list(out.iterdir())


def test_archive_through_import(tmp_path):
    """The archive is written as raw Avaatech folders and imported by import_folder: the project's
    import log names the files, runs are labelled simulated, truth rides along, same seed same spectra."""
    from xrfcore.simulate.archive import simulate_archive, truth_from_header
    from xrfcore.store import Project

    proj = tmp_path / "arch.h5"
    out = simulate_archive(proj, 130, 3, seed=4)
    assert out["spectra"] == 130 and out["heads"] == ["avaatech-a", "avaatech-b", "avaatech-c"]
    assert out["import"]["rejected"] == 0 and out["files"] == 130
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # temp folder removed
    total = 0
    with Project.open(proj) as p:
        for core in p.cores():
            for run in p.runs(core):
                rd = p.read_run(core, run)
                total += len(rd)
                assert (rd.meta["scanner"] == "simulated-avaatech").all()
                assert rd.meta["source_path"].str.endswith(".spe").all()
                assert rd.meta["source_path"].str.startswith(f"{core}/Run 1 at  10kV/").all()
                assert rd.meta["gain_kev"].isna().all()    # the files state no calibration
                hdr = rd.meta["header"].iloc[0]
                hdr = json.loads(hdr) if isinstance(hdr, str) else hdr
                assert "SIMULATED" in hdr["SPEC_REM"] and "head=avaatech-" in hdr["SPEC_REM"]
                truth = truth_from_header(hdr)
                assert 0 <= truth["CaCO3"] <= 100 and "gain_scale" in truth
        log = p.import_log()
    assert total == 130
    assert len(log) == 130 and log["file"].str.endswith(".spe").all() and (log["status"] == "ok").all()
    assert log["folder"].str.contains("SIMULATED-archive-130-spectra-seed4").all()
    # same seed, same spectra; importing the same archive again adds nothing
    proj2 = tmp_path / "arch2.h5"
    simulate_archive(proj2, 130, 3, seed=4)
    with Project.open(proj) as p, Project.open(proj2) as q:
        for c in p.cores():
            r = p.runs(c)[0]
            assert np.array_equal(p.read_run(c, r).counts, q.read_run(c, r).counts)
    again = simulate_archive(proj2, 130, 3, seed=4)
    assert again["spectra"] == 0 and again["import"]["skipped"] == 130


def test_archive_keep_raw_and_cancel(tmp_path):
    from xrfcore.jobs import CancelToken, Cancelled
    from xrfcore.simulate.archive import simulate_archive

    raw = tmp_path / "raw"
    simulate_archive(tmp_path / "a.h5", 40, 2, seed=1, keep_raw=raw)
    assert len(list(raw.rglob("*.spe"))) == 40 and len(list(raw.glob("*/*_truth.csv"))) == 2
    assert "SIMULATED" in (raw / "README.md").read_text()
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        simulate_archive(tmp_path / "b.h5", 40, 2, seed=1, token=token)
    assert not (tmp_path / "b.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "raw"]


def test_simulate_gain_and_offset_move_fe_ka_on_the_nominal_grid(tmp_path):
    from xrfcore.cli import main
    from xrfcore.energy import lines_in_range
    from xrfcore.io.avaatech import read_spe

    out = tmp_path / "g"
    assert main(["simulate", "-o", str(out), "--length-m", "0.3", "--head", "avaatech-a", "--gain", "0.0205",
                 "--offset-ch", "3", "--seed", "1"]) == 0
    spes = sorted(out.rglob("*.spe"))
    assert len(spes) == 30
    text = spes[0].read_text(encoding="latin-1")
    assert "SIMULATED" in text and "head=avaatech-a-g0.02050-o+3.00ch" in text
    total = sum(read_spe(p.read_bytes()).counts.astype(float) for p in spes)
    fe = next(ln.kev for ln in lines_in_range(6.3, 6.5, ["Fe"]) if ln.line == "Ka")
    expected = fe / 0.0205 - 3          # channel i is centred at 0.0205 * (i + 3) keV
    top = 295 + int(np.argmax(total[295:325]))
    sl = slice(top - 2, top + 3)
    found = float((total[sl] * np.arange(2048)[sl]).sum() / total[sl].sum())
    assert found == pytest.approx(expected, abs=0.5)
    assert fe / 0.020 - found > 10        # on the nominal 0.020 grid it reads ~0.21 keV low
    assert main(["simulate", "-o", str(tmp_path / "x"), "--gain", "0.5"]) == 2


def test_randomised_heads_beyond_named(tmp_path):
    from xrfcore.simulate.archive import archive_heads

    heads = archive_heads(np.random.default_rng(0), 6)
    assert [h.name for h in heads[:3]] == ["avaatech-a", "avaatech-b", "avaatech-c"]
    assert len({h.name for h in heads}) == 6
    assert len({(h.det_be_um, h.gain, h.psi1_deg) for h in heads}) == 6
