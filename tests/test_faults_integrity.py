"""Issue 11, part C: stored-data integrity, damaged projects, stale predictions, lab tables.

Each test is built from a case found by fault injection or by a new operator: damage is reported
(never exported), a damaged file gives one plain sentence, out-of-date predictions say so, and lab
tables with unstated or implausible units / depths are never used silently.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from tests.test_finetune import base_path  # noqa: F401  (fixture)
from tests.test_importer import make_core
from tests.test_predict import lab_csv, make_project
from xrfcore import labels, predict, store
from xrfcore.cli import main

RUN = "cores/C1/runs/10kV-Run1"


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A real project written by the importer (CLI), once per module; tests copy it."""
    root = tmp_path_factory.mktemp("imported")
    folder = make_core(root / "data", np.random.default_rng(3), positions=(10, 20, 30))
    proj = root / "p.h5"
    rc, _, err = cli("import", folder, "-p", proj)
    assert rc == 0, err
    return proj


@pytest.fixture
def project(imported, tmp_path):
    dst = tmp_path / "p.h5"
    shutil.copyfile(imported, dst)
    return dst


def flip(path, offset: int, mask: int = 0xFF) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([b ^ mask]))


def chunk_span(path, name: str) -> tuple[int, int]:
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(0)
        return int(info.byte_offset), int(info.size)


# ------------------------------------------------------------------ 1. damage inside a compressed chunk

def test_chunk_damage_is_reported_never_exported(project, tmp_path):
    """Was: 13 of 40 random damages inside a compressed chunk exported garbage with exit 0."""
    off, size = chunk_span(project, f"{RUN}/spectra")
    original = project.read_bytes()
    rng = np.random.default_rng(11)
    for k in range(12):
        project.write_bytes(original)
        flip(project, off + int(rng.integers(0, size)), int(rng.integers(1, 256)))
        out = tmp_path / f"spectra{k}.csv"
        rc, _, err = cli("export-spectra", project, "--core", "C1", "-o", out)
        assert rc != 0, f"damage {k} exported"
        assert "the stored spectra of core 'C1' run '10kV-Run1' are damaged (checksum mismatch)" in err
        assert "nothing was written" in err and "re-import the core" in err and str(project) in err
        assert len(err.strip().splitlines()) == 1 and "h5py" not in err
        assert not out.exists() and not list(tmp_path.glob(f".spectra{k}*"))


def test_damaged_metadata_column_and_predict_path(project, tmp_path):
    """The per-run metadata (depths, flags) is checksummed too: damage there is not silently used."""
    off, size = chunk_span(project, f"{RUN}/depth_mm")
    flip(project, off + size // 2)
    out = tmp_path / "x.csv"
    rc, _, err = cli("export-spectra", project, "--core", "C1", "-o", out)
    assert rc != 0 and "depth_mm values of core 'C1' run '10kV-Run1' are damaged" in err
    assert not out.exists()
    with store.Project.open(project) as p, pytest.raises(store.DamagedProjectError, match="checksum mismatch"):
        p.read_run("C1", "10kV-Run1")


def test_new_runs_carry_checksums_and_content_ids(project):
    with h5py.File(project, "r") as f:
        g = f[RUN]
        assert g["spectra"].fletcher32 and g["depth_mm"].fletcher32 and g["source_path"].fletcher32
        assert len(g.attrs["counts_sha256"]) == 64 and len(g.attrs["content_sha256"]) == 64
    with store.Project.open(project) as p:
        rd = p.read_run("C1", "10kV-Run1", active_only=False)
        # appended runs: counts_sha256 chains the batches' hashes (store_runs); the content id is
        # that chain + the depths and active flags readers see
        assert rd.attrs["content_sha256"] == store.content_sha256(
            rd.attrs["counts_sha256"], rd.meta["depth_mm"].to_numpy(float), rd.meta["active"].to_numpy(bool))
        assert all(r["checksummed"] for c in p.info()["cores"] for r in c["runs"])


def strip_checksums(path):
    """Rewrite a project's runs the way an older xrfcore wrote them (no checksums, no hashes)."""
    with h5py.File(path, "r+") as f:
        for core in f["cores"]:
            for run in f["cores"][core]["runs"]:
                g = f["cores"][core]["runs"][run]
                for name in list(g):
                    data, attrs = g[name][()], dict(g[name].attrs)
                    del g[name]
                    g.create_dataset(name, data=data, compression="gzip" if name == "spectra" else None, shuffle=name == "spectra")
                    g[name].attrs.update(attrs)
                for a in ("counts_sha256", "content_sha256"):
                    g.attrs.pop(a, None)


def test_old_projects_without_checksums_still_work_and_say_unchecked(project, tmp_path):
    strip_checksums(project)
    rc, out, _ = cli("info", project)
    assert rc == 0 and "integrity: UNCHECKED" in out
    rc, _, err = cli("export-spectra", project, "--core", "C1", "-o", tmp_path / "s.csv")
    assert rc == 0, err
    with store.Project.open(project) as p:
        assert not p.info()["cores"][0]["runs"][0]["checksummed"]
        assert len(p.run_content_id("C1", "10kV-Run1")) == 64   # computed for old runs
    # a run that keeps its hash but lost its checksums is verified against the hash
    with h5py.File(project, "r+") as f:
        f[RUN].attrs["counts_sha256"] = "0" * 64
    with store.Project.open(project) as p, pytest.raises(store.DamagedProjectError, match="checksum mismatch"):
        p.read_run("C1", "10kV-Run1")


# ------------------------------------------------------------------ 2. damaged projects: one plain sentence

@pytest.mark.parametrize("damage", ["truncated", "superblock", "missing dataset", "missing column"])
def test_damaged_project_is_one_plain_sentence(project, tmp_path, damage):
    before_files = set(tmp_path.iterdir())
    if damage == "truncated":
        data = project.read_bytes()
        project.write_bytes(data[: len(data) // 2])
    elif damage == "superblock":
        flip(project, 20)     # inside the superblock, after the signature
        flip(project, 40)
    elif damage == "missing dataset":
        with h5py.File(project, "r+") as f:
            del f[f"{RUN}/spectra"]
    else:
        with h5py.File(project, "r+") as f:
            del f[f"{RUN}/depth_mm"]
    out = tmp_path / "x.csv"
    for argv in (("export-spectra", project, "--core", "C1", "-o", out), ("info", project)):
        rc, _, err = cli(*argv)
        assert rc == 2
        line = err.strip()
        assert len(line.splitlines()) == 1, line
        assert str(project) in line and "damaged" in line and "nothing was written" in line
        assert "restore" in line and "backup" in line
        for jargon in ("Unable to", "synchronously", "sblock", "object '", "KeyError", "errno"):
            assert jargon not in line, line
    assert not out.exists() and set(tmp_path.iterdir()) == before_files


def test_damage_during_an_import_leaves_the_file_alone(project, tmp_path):
    """A write (here: an import into a damaged project) fails with the sentence; nothing changes."""
    data = project.read_bytes()
    project.write_bytes(data[: len(data) // 2])
    before = project.read_bytes()
    folder = make_core(tmp_path / "more", np.random.default_rng(5), core="C2", positions=(10,))
    rc, _, err = cli("import", folder, "-p", project)
    assert rc != 0 and "damaged" in err and "nothing was written" in err
    assert project.read_bytes() == before


# ------------------------------------------------------------------ 3. stale predictions

@pytest.fixture
def predicted(tmp_path, base_path):  # noqa: F811
    from xrfcore.train import finetune as ft

    proj = tmp_path / "p.h5"
    truth = make_project(proj, n=60)
    lab = lab_csv(tmp_path / "lab.csv", truth)
    _, card, _ = ft.finetune_project(proj, lab, base_path, tmp_path / "model", mode="head")
    predict.predict_core(proj, "K2", tmp_path / "model")
    return proj, card["id"], tmp_path / "model", truth


def test_predictions_go_stale_when_spectra_labels_or_model_change(predicted, tmp_path):
    proj, mid, model, truth = predicted
    assert predict.stale_reasons(proj, "K2", mid) == []
    out = tmp_path / "fresh.csv"
    rc, _, err = cli("export", "-p", proj, "--core", "K2", "--model", mid, "-o", out)
    assert rc == 0 and "STALE" not in out.read_text() and "STALE" not in err

    # lab samples change (a new table loaded for a core)
    new = tmp_path / "lab2.csv"
    new.write_text("core,depth_top_mm,depth_bottom_mm,CaCO3 (wt%),TOC (wt%)\nK1,0,10,50,1\nK1,100,110,40,1\n")
    labels.store_labels(proj, labels.read_lab_csv(new))
    reasons = predict.stale_reasons(proj, "K2", mid)
    assert len(reasons) == 1 and reasons[0].startswith("lab samples changed")

    # the export says so: first header line + a warning on stderr; the numbers are still written
    out = tmp_path / "stale.csv"
    rc, _, err = cli("export", "-p", proj, "--core", "K2", "--model", mid, "-o", out)
    assert rc == 0 and "WARNING: these predictions are STALE (lab samples changed" in err
    first = out.read_text().splitlines()[0]
    assert first.startswith("# STALE PREDICTIONS: out of date, lab samples changed")
    assert len(pd.read_csv(out, comment="#")) == 60

    # the spectra behind them change (a re-import / append rewrites the run)
    with store.Project.open(proj) as p:
        rd = p.read_run("K2", "10kV-Run1", active_only=False)
    with store.transaction(proj) as w:
        w.write_table("K2", "10kV-Run1", rd.counts + 1, rd.meta)
    reasons = predict.stale_reasons(proj, "K2", mid)
    assert any(r.startswith("spectra changed") for r in reasons)

    # the model changes in place (its card re-written)
    card = model / "model.json"
    card.write_text(card.read_text() + "\n")
    reasons = predict.stale_reasons(proj, "K2", mid)
    assert any(r.startswith("model changed") for r in reasons) and len(reasons) == 3


def test_prediction_without_recorded_basis_is_checked_by_its_depths(tmp_path):
    """Was: after two same-name cores merged (6,300 spectra), the old 300-row prediction displayed
    and exported as if current. A prediction made before the basis was recorded is compared by its
    number of depths."""
    proj = tmp_path / "p.h5"
    make_project(proj, cores=("K1",), n=40)
    df = pd.DataFrame({"core": "K1", "depth_mm": np.arange(30) * 5.0, "CaCO3": 50.0, "model_id": "m-old"})
    with store.transaction(proj) as w:
        w.write_predictions("K1", "m-old", df, {"model_id": "m-old", "run": "10kV-Run1"})
    reasons = predict.stale_reasons(proj, "K1", "m-old")
    assert reasons and "now has 40 active spectra, this prediction has 30 depths" in reasons[0]
    rc, _, err = cli("export", "-p", proj, "--core", "K1", "--model", "m-old", "-o", tmp_path / "o.csv")
    assert rc == 0 and "STALE" in err and (tmp_path / "o.csv").read_text().startswith("# STALE PREDICTIONS")


# ------------------------------------------------------------------ 4. lab tables

def write(tmp_path, text, name="lab.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_toc_fraction_beside_caco3_wt_percent_is_refused_unless_stated(tmp_path):
    """Was: TOC 0.0084 (a fraction) beside CaCO3 in wt% accepted: a x100 error."""
    p = write(tmp_path, "core,depth_top_mm,depth_bottom_mm,CaCO3,TOC\n"
                        "A,0,10,45.2,0.0084\nA,20,30,50.1,0.0091\nA,40,50,38.0,0.0120\n")
    with pytest.raises(labels.LabUnitsError, match=r"TOC column 'TOC' does not state its unit.*fractions \(x100\)"):
        labels.read_lab_csv(p)
    # the CLI refuses with the same one line, before any model is needed
    rc, _, err = cli("finetune", "-p", tmp_path / "none.h5", "--labels", p, "--mode", "scratch",
                     "-o", tmp_path / "m")
    assert rc == 2 and "does not state its unit" in err and "--units" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m").exists()
    # stated: by option, per target, or in the header
    t = labels.read_lab_csv(p, units="CaCO3=wt%,TOC=fraction")
    assert t.samples.TOC.tolist() == pytest.approx([0.84, 0.91, 1.2]) and t.samples.CaCO3[0] == 45.2
    assert t.units == {"CaCO3": "wt%", "TOC": "fraction"} and t.unit_sources["TOC"] == "given"
    h = write(tmp_path, "core,depth_top_mm,depth_bottom_mm,CaCO3 (wt%),TOC (fraction)\nA,0,10,45.2,0.0084\n", "h.csv")
    t = labels.read_lab_csv(h)
    assert t.samples.TOC[0] == pytest.approx(0.84) and "TOC fraction (column 'TOC (fraction)')" in t.notes[0]
    # one unit for every target fills in the unstated ones; the header's own unit stays
    m = write(tmp_path, "core,depth_top_mm,depth_bottom_mm,CaCO3 (wt%),TOC\nA,0,10,45.2,0.0084\n", "m.csv")
    t = labels.read_lab_csv(m, units="fraction")
    assert t.units == {"CaCO3": "wt%", "TOC": "fraction"} and t.samples.CaCO3[0] == 45.2
    # fraction-like TOC under a '%' header is read as stated, but needs an explicit OK
    w = write(tmp_path, "core,depth_top_mm,depth_bottom_mm,CaCO3 (wt%),TOC (%)\nA,0,10,45.2,0.0084\n", "w.csv")
    t = labels.read_lab_csv(w)
    assert t.samples.TOC[0] == 0.0084 and "fractions under a % header" in t.confirm[0]


def test_carbonate_poor_core_is_not_scaled_as_fractions(tmp_path):
    """Was: CaCO3 0.2-0.95 wt% (a carbonate-poor core) silently taken as fractions and scaled x100."""
    rows = "".join(f"A,{i * 20},{i * 20 + 10},{v},1.2\n" for i, v in enumerate([0.2, 0.45, 0.95, 0.6]))
    p = write(tmp_path, "core,depth_top_mm,depth_bottom_mm,CaCO3,TOC\n" + rows)
    with pytest.raises(labels.LabUnitsError, match="carbonate-poor core, or fractions"):
        labels.read_lab_csv(p)
    h = write(tmp_path, "core,depth_top_mm,depth_bottom_mm,CaCO3 (wt%),TOC [%]\n" + rows, "h.csv")
    t = labels.read_lab_csv(h)
    assert t.samples.CaCO3.tolist() == [0.2, 0.45, 0.95, 0.6] and not t.fraction
    assert labels.read_lab_csv(p, units="wt%").samples.CaCO3.max() == 0.95
    # a unit stated in the file's comment lines counts too (the bundled sample tables do this)
    c = write(tmp_path, "# CaCO3 and TOC in wt% of dry sediment\ncore,depth_top_mm,depth_bottom_mm,CaCO3,TOC\n"
              + rows, "c.csv")
    assert labels.read_lab_csv(c).samples.CaCO3.max() == 0.95


def test_toc_above_20_needs_confirmation(tmp_path):
    p = write(tmp_path, "core,depth_mm,CaCO3 (wt%),TOC (wt%)\nA,5,40,1\nA,15,35,32.5\nA,25,30,2\n")
    t = labels.read_lab_csv(p)
    assert len(t.samples) == 3 and len(t.confirm) == 1
    assert "TOC above 20 wt%" in t.confirm[0] and "32.5" in t.confirm[0] and "lines 3" in t.confirm[0]


def core_project(tmp_path, length_mm=4000.0):
    """One core scanned every 10 mm over ``length_mm``."""
    proj = tmp_path / "c.h5"
    n = int(length_mm // 10)
    rng = np.random.default_rng(0)
    with store.transaction(proj) as w:
        meta = pd.DataFrame({"depth_mm": np.arange(n) * 10.0, "section": "1", "kv": 10.0, "active": True,
                             "valid": True, "scanner": "simulated-avaatech", "core": "A"})
        w.write_table("A", "10kV-Run1", rng.poisson(50, (n, 64)).astype(np.int32), meta)
    return proj


def test_depths_in_cm_read_as_mm_show_coverage_and_need_confirmation(tmp_path):
    """Was: every row flagged, yet the samples were usable and nothing said they cover 10 % of the core."""
    proj = core_project(tmp_path)
    tops = np.arange(0, 400, 20)         # cm, every 20 cm over 4 m ...
    text = "core,depth_top_mm,depth_bottom_mm,CaCO3,TOC\n" + "".join(   # ... but the header says mm
        f"A,{t},{t + 1},{40 + i % 5},{1 + i % 3 * 0.1}\n" for i, t in enumerate(tops))
    p = write(tmp_path, text)
    m = labels.match_project(proj, labels.read_lab_csv(p))
    cov = m.coverage.set_index("core").loc["A"]
    assert cov.coverage == pytest.approx(381 / 3990, abs=0.01)
    assert "samples span 0-381 mm of the core's 0-3990 mm (10 % covered)" in m.coverage_text()
    assert m.usable and len(m.confirm) == 1 and "cover only 10 % of the core" in m.confirm[0]
    assert "cm read as mm" in m.confirm[0]
    # fine-tuning refuses it unless accepted (the CLI names the option)
    rc, _, err = cli("finetune", "-p", proj, "--labels", p, "--mode", "scratch", "-o", tmp_path / "m")
    assert rc == 2 and "cover only 10 % of the core" in err and "--accept-lab-warnings" in err
    assert "nothing was trained" in err and not (tmp_path / "m").exists()
    # read in the right unit, the same table covers the core
    m = labels.match_project(proj, labels.read_lab_csv(p, depth_unit="cm"))
    assert m.confirm == [] and m.coverage.coverage.iloc[0] > 0.9


def test_table_matching_nothing_is_not_usable(tmp_path):
    proj = core_project(tmp_path)
    p = write(tmp_path, "core,depth_mm,CaCO3 (wt%)\nB,10,40\nB,20,41\n")
    m = labels.match_project(proj, labels.read_lab_csv(p))
    assert not m.usable and len(m.samples) == 0
    p = write(tmp_path, "core,depth_mm,CaCO3 (wt%)\nA,90000,40\nA,95000,41\n", "far.csv")
    m = labels.match_project(proj, labels.read_lab_csv(p))
    assert not m.usable and "outside the scanned range" in m.report.reason.iloc[0]
    assert m.confirm and "cover only 0 %" in m.confirm[0]


def test_overlapping_intervals_warned_and_absurd_depths_refused(tmp_path):
    p = write(tmp_path, "core,depth_top_cm,depth_bottom_cm,CaCO3 (wt%)\n"
                        "A,0,2,40\n"
                        "A,1,3,41\n"            # overlaps the first
                        "A,10,11,42\n"
                        "A,1e11,1.00001e11,43\n"  # 1e12 mm
                        "A,20,inf,44\n")
    t = labels.read_lab_csv(p)
    rep = t.issues.set_index("source_row")
    assert "overlaps line 2 (0-20 mm" in rep.loc[3, "reason"] and rep.loc[3, "status"] == "suspicious"
    assert "not a core depth" in rep.loc[5, "reason"] and rep.loc[5, "status"] == "rejected"
    assert rep.loc[6, "status"] == "rejected"
    assert sorted(t.samples.source_row) == [2, 3, 4]
    assert any("1 sample interval(s) overlap" in n for n in t.notes)


def test_finetune_cli_accepts_low_coverage_only_when_told(tmp_path, base_path):  # noqa: F811
    proj = tmp_path / "p.h5"
    truth = make_project(proj, cores=("K1", "K2", "K3"), n=60)
    rows = [dict(core=c, depth_top_mm=t.depth_mm[j] / 10, depth_bottom_mm=t.depth_mm[j] / 10 + 1,
                 CaCO3=round(t.CaCO3[j], 2), TOC=round(t.TOC[j], 3))
            for c, t in truth.items() for j in range(0, 60, 3)]
    lab = tmp_path / "lab.csv"
    pd.DataFrame(rows).to_csv(lab, index=False)
    rc, _, err = cli("finetune", "-p", proj, "--labels", lab, "--model", base_path, "-o", tmp_path / "m")
    assert rc == 2 and "--accept-lab-warnings" in err and not (tmp_path / "m").exists()
    rc, out, err = cli("finetune", "-p", proj, "--labels", lab, "--model", base_path, "-o", tmp_path / "m",
                       "--accept-lab-warnings")
    assert rc == 0, err
    assert "coverage: K1: samples span" in out and "ACCEPTED (--accept-lab-warnings)" in out
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert card["labels"]["matched"] > 0
