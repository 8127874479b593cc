"""Folder import: hash skipping, per-file report, atomicity on failure/cancel, duplicates."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from xrfcore import importer, store
from xrfcore.io import avaatech
from xrfcore.jobs import CancelToken, Cancelled

C = 2048
_E = np.arange(C) * 0.02
SHAPE = (20 * np.exp(-_E / 3) + 3000 * np.exp(-0.5 * ((_E - 3.69) / 0.08) ** 2)
         + 800 * np.exp(-0.5 * ((_E - 6.40) / 0.09) ** 2) + 50 * np.exp(-((_E - 12) / 6) ** 2))
T0 = dt.datetime(2017, 8, 1, 16, 0, 0)


def write_spectrum(folder: Path, rng, *, core="C1", section="00000", x=10.0, kv=10, run=1, rep=0,
                   when=T0, name_core=None) -> Path:
    """One realistic Avaatech file written by the project's writer."""
    meta = dict(core=name_core or core, section=section, position_mm=float(x), y_mm=0.0, kv=kv,
                current_ua=150, live_s=10, real_s=15, total_cps=100000, date=when, run=run,
                replicate=rep, filter="No-Filter" if kv == 10 else "Pd-Thin",
                setting="Sett Low" if kv == 10 else "Sett Middle", slit_dc_mm=10, slit_cc_mm=12,
                remark=["test fixture"])
    d = folder / f"Run {run} at  {kv}kV"
    d.mkdir(parents=True, exist_ok=True)
    path = d / avaatech.spe_file_name(meta)
    avaatech.write_spe(path, rng.poisson(SHAPE), meta)
    return path


def make_core(root: Path, rng, core="C1", positions=range(10, 100, 10), runs=((1, 10), (2, 30))) -> Path:
    """A core folder: two sections x positions x runs."""
    folder = root / core
    for run, kv in runs:
        for s, section in enumerate(("00000", "00950")):
            for x in positions:
                write_spectrum(folder, rng, core=core, section=section, x=x, kv=kv, run=run,
                               when=T0 + dt.timedelta(minutes=10 * s + x / 10 + run * 60))
    return folder


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def n_spectra(path, core="C1") -> int:
    with store.Project.open(path) as p:
        return sum(p.n_spectra(core, r) for r in p.runs(core))


@pytest.fixture
def rng():
    return np.random.default_rng(1)


def test_import_twice_adds_nothing_and_new_files_only(tmp_path, rng):
    folder = make_core(tmp_path / "data", rng, positions=range(10, 60, 10))
    proj = tmp_path / "p.h5"
    r1 = importer.import_folder(folder, proj)
    assert r1.counts == {"ok": 20, "warning": 0, "rejected": 0, "skipped": 0}
    assert set(r1.written) == {"C1/10kV-Run1", "C1/30kV-Run2"}
    assert n_spectra(proj) == 20
    r2 = importer.import_folder(folder, proj)
    assert r2.counts["skipped"] == 20 and r2.added == 0
    assert "Nothing new was added" in r2.summary()
    assert n_spectra(proj) == 20
    # three new files appear in the folder: only those are imported
    new = [write_spectrum(folder, rng, section="01900", x=x, when=T0 + dt.timedelta(days=1))
           for x in (10, 20, 30)]
    r3 = importer.import_folder(folder, proj)
    assert r3.counts == {"ok": 3, "warning": 0, "rejected": 0, "skipped": 20}
    assert sorted(f.path for f in r3.files if f.status == "ok") == \
        sorted(p.relative_to(folder).as_posix() for p in new)
    assert n_spectra(proj) == 23
    with store.Project.open(proj) as p:
        d = p.read_run("C1", "10kV-Run1")
        assert d.meta["depth_mm"].is_monotonic_increasing
        assert d.meta["depth_mm"].max() == 1930.0
        log = p.import_log()
        assert len(log) == 20 + 20 + 23 and set(log["status"]) == {"ok", "skipped"}
        assert p.info()["import_log"]["imports"] == 3


def test_bad_files_are_rejected_with_reasons(tmp_path, rng):
    folder = make_core(tmp_path / "data", rng, positions=(10, 20), runs=((1, 10),))
    run_dir = folder / "Run 1 at  10kV"
    good = sorted(run_dir.iterdir())[0].read_bytes()
    (run_dir / "empty.spe").write_bytes(b"")
    (run_dir / "garbage.spe").write_bytes(bytes(range(256)) * 8)
    (run_dir / "truncated.spe").write_bytes(good[: len(good) // 2])
    (run_dir / "texttoken.spe").write_bytes(good.replace(b"$DATA:\r\n0 2047\r\n", b"$DATA:\r\n0 2047\r\nabc "))
    proj = tmp_path / "p.h5"
    rep = importer.import_folder(folder, proj)
    assert rep.counts["ok"] == 4 and rep.counts["rejected"] == 4
    why = {Path(f.path).name: f.message for f in rep.rejected}
    assert "empty" in why["empty.spe"]
    assert "binary" in why["garbage.spe"]
    assert "truncated" in why["truncated.spe"] or "count" in why["truncated.spe"]
    assert "abc" in why["texttoken.spe"]
    assert n_spectra(proj) == 4
    text = rep.summary()
    assert "Rejected files (4)" in text and "garbage.spe" in text
    csv_path = tmp_path / "report.csv"
    rep.to_csv(csv_path)
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("# xrfcore") and "path,status,message,core,run" in lines
    assert sum(",rejected," in ln for ln in lines) == 4


def test_unreadable_file_is_rejected(tmp_path, rng, monkeypatch):
    folder = make_core(tmp_path / "data", rng, positions=(10, 20, 30), runs=((1, 10),))
    victim = sorted((folder / "Run 1 at  10kV").iterdir())[1]
    victim.chmod(0)
    if os.access(victim, os.R_OK):        # running as root: simulate the permission error
        real = importer._read_bytes

        def deny(path):
            if Path(path) == victim:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)
        monkeypatch.setattr(importer, "_read_bytes", deny)
    try:
        rep = importer.import_folder(folder, tmp_path / "p.h5")
    finally:
        victim.chmod(0o644)
    assert rep.counts["rejected"] == 1 and rep.counts["ok"] == 5
    assert rep.rejected[0].path.endswith(victim.name)
    assert rep.rejected[0].message == "cannot read: permission denied"
    assert n_spectra(tmp_path / "p.h5") == 5


def test_write_error_mid_import_leaves_project_unchanged(tmp_path, rng, monkeypatch):
    proj = tmp_path / "p.h5"
    importer.import_folder(make_core(tmp_path / "a", rng, core="A", positions=(10, 20)), proj)
    before = digest(proj)
    folder = make_core(tmp_path / "b", rng, core="B", positions=(10, 20))
    real = store.WritableProject.write_run
    calls = []

    def failing(self, *args, **kw):
        calls.append(args)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, *args, **kw)

    monkeypatch.setattr(store.WritableProject, "write_run", failing)
    with pytest.raises(OSError, match="No space left"):
        importer.import_folder(folder, proj)
    assert len(calls) == 2
    assert digest(proj) == before
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "p.h5"]       # no temp file left
    monkeypatch.setattr(store.WritableProject, "write_run", real)
    rep = importer.import_folder(folder, proj)                       # works once the disk is fine
    assert rep.added == 8


def test_cancelled_import_changes_nothing(tmp_path, rng):
    folder = make_core(tmp_path / "data", rng, positions=(10, 20, 30))
    proj = tmp_path / "p.h5"
    token = CancelToken()

    def cancel_midway(done, total, message=""):
        if done >= 3:
            token.cancel()

    with pytest.raises(Cancelled):
        importer.import_folder(folder, proj, progress=cancel_midway, token=token)
    assert not proj.exists()                                  # a new project is not created
    importer.import_folder(make_core(tmp_path / "other", rng, core="X", positions=(10,)), proj)
    before = digest(proj)

    def cancel_while_writing(done, total, message=""):
        if message.startswith("writing C1"):
            token.cancel()

    token = CancelToken()
    with pytest.raises(Cancelled):
        importer.import_folder(folder, proj, progress=cancel_while_writing, token=token)
    assert digest(proj) == before
    assert sorted(os.listdir(tmp_path)) == ["data", "other", "p.h5"]


def test_duplicates_rescans_and_replicates(tmp_path, rng):
    folder = tmp_path / "C7"
    # overlapping section edges: section 00000 at 960 mm and section 00950 at 10 mm -> depth 960
    write_spectrum(folder, rng, core="C7", section="00000", x=960, when=T0)
    write_spectrum(folder, rng, core="C7", section="00950", x=10, when=T0 + dt.timedelta(hours=1))
    # a manual rescan (suffix B) of 00950 at 50 mm, one day later, in a Rescan folder
    write_spectrum(folder, rng, core="C7", section="00950", x=50, when=T0)
    write_spectrum(folder / "Rescan_00950", rng, core="C7", section="00950B", x=50,
                   when=T0 + dt.timedelta(days=1))
    # 0048 (cm, 4 digits) vs 048 (3 digits, read as cm with a warning): same section top
    write_spectrum(folder, rng, core="C7", section="0048", x=20, when=T0)
    write_spectrum(folder, rng, core="C7", section="048", x=20, when=T0 - dt.timedelta(days=3))
    # replicates at 100 mm
    for rep in (0, 1, 2):
        write_spectrum(folder, rng, core="C7", section="00000", x=100, rep=rep,
                       when=T0 + dt.timedelta(seconds=20 * rep))
    proj = tmp_path / "p.h5"
    rep = importer.import_folder(folder, proj)
    assert rep.counts["rejected"] == 0 and rep.added == 9
    warned = {Path(f.path).name.split()[0]: f.message for f in rep.files if f.status == "warning"}
    assert "ambiguous" in warned["C7_048"]
    with store.Project.open(proj) as p:
        m = p.read_run("C7", "10kV-Run1", active_only=False).meta
        assert len(m) == 9
        at960 = m[m["depth_mm"] == 960.0]
        assert len(at960) == 2 and at960.loc[at960["active"], "section"].tolist() == ["00950"]
        at1000 = m[m["depth_mm"] == 1000.0]
        assert at1000.loc[at1000["active"], "section"].tolist() == ["00950B"]
        assert at1000.loc[at1000["active"], "source_path"].iloc[0].startswith("Rescan_00950/")
        at500 = m[m["depth_mm"] == 500.0]
        assert sorted(at500["section"]) == ["0048", "048"]
        assert at500.loc[at500["active"], "section"].tolist() == ["0048"]
        at100 = m[m["depth_mm"] == 100.0]
        assert sorted(at100["replicate"]) == [0, 1, 2]
        assert at100.loc[at100["active"], "replicate"].tolist() == [0]
        assert len(p.read_run("C7", "10kV-Run1")) == 4         # one per depth


def test_core_override_and_section_unit(tmp_path, rng):
    folder = tmp_path / "SO264-69-2"
    # core in the file name differs from the folder
    write_spectrum(folder, rng, core="SO264-69-2", name_core="SO264-69-1", section="13560", x=10)
    rep = importer.import_folder(folder, tmp_path / "a.h5")
    assert rep.files[0].status == "warning" and "differs from the folder" in rep.files[0].message
    with store.Project.open(tmp_path / "a.h5") as p:
        assert p.cores() == ["SO264-69-2"]
        assert p.read_run("SO264-69-2", "10kV-Run1").meta["depth_mm"].tolist() == [13570.0]
    rep = importer.import_folder(folder, tmp_path / "b.h5", core="MyCore", section_unit="cm")
    with store.Project.open(tmp_path / "b.h5") as p:
        assert p.cores() == ["MyCore"]
        assert p.read_run("MyCore", "10kV-Run1").meta["depth_mm"].tolist() == [135610.0]
    with pytest.raises(ValueError, match="section unit"):
        importer.import_folder(folder, tmp_path / "c.h5", section_unit="inch")
    with pytest.raises(FileNotFoundError):
        importer.import_folder(tmp_path / "nope", tmp_path / "c.h5")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ValueError, match="no spectrum files"):
        importer.import_folder(tmp_path / "emptydir", tmp_path / "c.h5")


def test_newer_project_refused_before_any_work(tmp_path, rng):
    import h5py

    proj = tmp_path / "p.h5"
    folder = make_core(tmp_path / "d", rng, positions=(10,), runs=((1, 10),))
    importer.import_folder(folder, proj)
    with h5py.File(proj, "r+") as f:
        f.attrs["schema_version"] = 7
    with pytest.raises(store.ProjectError, match="newer xrfcore"):
        importer.import_folder(folder, proj)


def test_import_real_itrax_files(tmp_path, realdata):
    src = realdata / "itrax"
    scan = tmp_path / "CD166_19_S1"
    (scan / "XRF data").mkdir(parents=True)
    shutil.copy(src / "CD166_19_S1_Results.txt", scan / "Results.txt")
    shutil.copy(src / "L000676.spe", scan / "XRF data" / "L000676.spe")
    (scan / "XRF data" / "L000677.spe").write_text("not a spectrum\n")
    assert importer.detect_scanner(tmp_path) == "itrax"
    proj = tmp_path / "p.h5"
    rep = importer.import_folder(tmp_path, proj)
    assert rep.scanner == "itrax"
    assert rep.counts["rejected"] == 1 and rep.counts["ok"] + rep.counts["warning"] == 1
    with store.Project.open(proj) as p:
        (core,) = p.cores()
        (run,) = p.runs(core)
        d = p.read_run(core, run)
        assert d.counts.shape == (1, 2048)
        assert abs(d.grid.gain_kev - 0.0103) < 0.0005          # from the result table, not nominal
        assert d.meta["scanner"][0] == "itrax"
    assert importer.import_folder(tmp_path, proj).counts["skipped"] == 1


def test_batched_writes_give_the_same_project(tmp_path, rng, monkeypatch):
    folder = make_core(tmp_path / "data", rng, positions=range(10, 60, 10))
    write_spectrum(folder, rng, section="00000", x=10, when=T0 + dt.timedelta(days=2))  # a rescan
    one = importer.import_folder(folder, tmp_path / "one.h5")
    monkeypatch.setattr(importer, "BATCH", 3)
    many = importer.import_folder(folder, tmp_path / "many.h5")
    assert one.counts == many.counts and one.written == many.written
    with store.Project.open(tmp_path / "one.h5") as a, store.Project.open(tmp_path / "many.h5") as b:
        for run in a.runs("C1"):
            ra, rb = a.read_run("C1", run, active_only=False), b.read_run("C1", run, active_only=False)
            np.testing.assert_array_equal(ra.counts, rb.counts)
            assert ra.meta["active"].tolist() == rb.meta["active"].tolist()
            assert ra.meta["sha256"].tolist() == rb.meta["sha256"].tolist()


def _bad_files(folder: Path, rng) -> None:
    """A rejected file, a duplicate of another file's content and a file already seen."""
    d = folder / "Run 1 at  10kV"
    (d / "broken.spe").write_bytes(b"$ACC_VOLT:\r\n10.0\r\n$DATA:\r\n0 2047\r\n1 2 3\r\n")
    first = sorted(d.glob("*.spe"))[0]
    shutil.copyfile(first, d / ("copy of " + first.name))


def _same_projects(a_path, b_path, core="C1") -> None:
    with store.Project.open(a_path) as a, store.Project.open(b_path) as b:
        assert a.runs(core) == b.runs(core)
        for run in a.runs(core):
            ra, rb = a.read_run(core, run, active_only=False), b.read_run(core, run, active_only=False)
            np.testing.assert_array_equal(ra.counts, rb.counts)
            for col in ra.meta.columns:
                assert ra.meta[col].astype(str).tolist() == rb.meta[col].astype(str).tolist(), col


def test_worker_pool_gives_the_same_report_and_project(tmp_path, rng, monkeypatch):
    folder = make_core(tmp_path / "data", rng, positions=range(10, 60, 10))
    _bad_files(folder, rng)
    monkeypatch.setattr(importer, "POOL_CHUNK", 3)      # many small chunks, several in flight
    serial = importer.import_folder(folder, tmp_path / "serial.h5", workers=1)
    pooled = importer.import_folder(folder, tmp_path / "pooled.h5", workers=2)
    rows = [(f.path, f.status, f.message, f.core, f.run) for f in serial.files]
    assert rows == [(f.path, f.status, f.message, f.core, f.run) for f in pooled.files]
    assert serial.counts["rejected"] == 1 and serial.counts["skipped"] == 1
    assert serial.written == pooled.written
    _same_projects(tmp_path / "serial.h5", tmp_path / "pooled.h5")
    again = importer.import_folder(folder, tmp_path / "pooled.h5", workers=2)   # known content skipped
    assert again.added == 0 and again.counts["skipped"] == len(again.files) - 1


class _NoPool:
    def __init__(self, *a, **k):
        raise OSError("no processes here")


def _die(*args):
    os._exit(3)          # a worker killed mid-task: the pool breaks


@pytest.mark.parametrize("failure", ["cannot start", "worker dies"])
def test_worker_pool_failure_falls_back_to_serial(tmp_path, rng, monkeypatch, failure):
    folder = make_core(tmp_path / "data", rng, positions=range(10, 40, 10))
    monkeypatch.setattr(importer, "POOL_CHUNK", 2)
    serial = importer.import_folder(folder, tmp_path / "serial.h5", workers=1)
    if failure == "cannot start":
        monkeypatch.setattr(importer, "ProcessPoolExecutor", _NoPool)
    else:
        monkeypatch.setattr(importer, "_parse_chunk", _die)
    pooled = importer.import_folder(folder, tmp_path / "pooled.h5", workers=2)
    assert [(f.path, f.status) for f in serial.files] == [(f.path, f.status) for f in pooled.files]
    _same_projects(tmp_path / "serial.h5", tmp_path / "pooled.h5")


def test_cancel_with_worker_pool_changes_nothing(tmp_path, rng, monkeypatch):
    import multiprocessing

    folder = make_core(tmp_path / "data", rng, positions=range(10, 60, 10))
    monkeypatch.setattr(importer, "POOL_CHUNK", 2)
    proj = tmp_path / "p.h5"
    importer.import_folder(make_core(tmp_path / "other", rng, core="X", positions=(10,)), proj)
    before = digest(proj)
    token = CancelToken()

    def cancel_midway(done, total, message=""):
        if done >= 5:
            token.cancel()

    with pytest.raises(Cancelled):
        importer.import_folder(folder, proj, progress=cancel_midway, token=token, workers=2)
    assert digest(proj) == before
    assert multiprocessing.active_children() == []           # the workers are gone


def test_worker_count_follows_folder_size_idle_cores_and_setting(monkeypatch):
    monkeypatch.delenv("XRFCORE_IMPORT_WORKERS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert importer._n_workers(100, None) == 1                      # small folder: no pool
    assert importer._n_workers(5000, None) == importer.POOL_WORKERS
    monkeypatch.setattr(os, "getloadavg", lambda: (3.9, 3.0, 2.0))   # busy machine: no pool
    assert importer._n_workers(5000, None) == 1
    assert importer._n_workers(100, 3) == 3                          # asked for: given
    assert importer._n_workers(100, 9) == 4                          # at most one per core
    monkeypatch.setenv("XRFCORE_IMPORT_WORKERS", "1")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert importer._n_workers(5000, None) == 1
