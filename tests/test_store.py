"""The HDF5 project store: round trip, depth slices, schema checks, atomic writes, active flags."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest

from xrfcore import store
from xrfcore.io.records import SpectrumRecord
from xrfcore.jobs import Cancelled

C = 2048
_E = np.arange(C) * 0.02
SHAPE = (20 * np.exp(-_E / 3) + 3000 * np.exp(-0.5 * ((_E - 3.69) / 0.08) ** 2)
         + 800 * np.exp(-0.5 * ((_E - 6.40) / 0.09) ** 2) + 50 * np.exp(-((_E - 12) / 6) ** 2))


def make_record(rng, *, depth, core="C1", kv=10.0, run=1, replicate=0, date="2017-08-01T16:00:00",
                section="00000", source=None, scanner="avaatech", channels=C) -> SpectrumRecord:
    counts = rng.poisson(SHAPE[:channels]).astype(np.int32)
    src = source or f"{core}/Run {run} at  {kv:g}kV/{section}_{depth}_{replicate}_{date}.spe"
    return SpectrumRecord(
        counts=counts, source_path=src,
        sha256=hashlib.sha256(counts.tobytes() + src.encode()).hexdigest(),
        scanner=scanner, core=core, section=section, section_top_mm=0.0,
        position_mm=None if depth is None else float(depth),
        depth_mm=None if depth is None else float(depth), y_mm=0.0, kv=kv, current_ua=150.0,
        live_s=10.0, real_s=15.0, total_cps=1.0e5, date=date, filter="No-Filter", setting="Sett Low",
        run=run, run_label=f"Run {run} at  {kv:g}kV", replicate=replicate,
        header={"ACC_VOLT": f"{kv:.1f}", "SPEC_REM": "test ü"}, warnings=["a warning"] if depth == 5 else [],
    )


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def project(tmp_path, rng):
    path = tmp_path / "p.h5"
    depths = rng.permutation(np.arange(0, 100, 1.0))        # unsorted on purpose
    store.add_records(path, [make_record(rng, depth=d) for d in depths], "test records")
    return path


def test_round_trip(tmp_path, rng):
    recs = [make_record(rng, depth=d) for d in (30.0, 10.0, 20.0)]
    recs.append(make_record(rng, depth=15.0, kv=30.0, run=2))
    path = tmp_path / "p.h5"
    out = store.add_records(path, recs, "round trip")
    assert out[("C1", "10kV-Run1")]["added"] == 3
    with store.Project.open(path) as p:
        assert p.schema_version == store.SCHEMA_VERSION
        assert p.cores() == ["C1"]
        assert p.runs("C1") == ["10kV-Run1", "30kV-Run2"]
        d = p.read_run("C1", "10kV-Run1")
        assert d.counts.dtype == np.int32 and d.counts.shape == (3, C)
        assert list(d.meta["depth_mm"]) == [10.0, 20.0, 30.0]          # sorted by depth
        by_depth = {r.depth_mm: r for r in recs}
        for i, depth in enumerate(d.meta["depth_mm"]):
            np.testing.assert_array_equal(d.counts[i], by_depth[depth].counts)
            assert d.meta["sha256"][i] == by_depth[depth].sha256
            assert d.meta["source_path"][i] == by_depth[depth].source_path
        for col in ("depth_mm", "section", "position_mm", "y_mm", "kv", "current_ua", "live_s", "real_s",
                    "total_cps", "date", "replicate", "source_path", "sha256", "active", "valid"):
            assert col in d.meta.columns
        assert d.meta["current_ua"].tolist() == [150.0] * 3
        assert d.meta["date"][0] == "2017-08-01T16:00:00"
        assert '"test ü"' in d.meta["header"][0]
        assert d.meta["active"].all()
        # the synthetic Ca Ka / Fe Ka peaks calibrate the run close to the nominal 20 eV/channel
        assert d.grid.channels == C and abs(d.grid.gain_kev / 0.02 - 1) < 0.005 and abs(d.grid.offset_kev) < 0.03
        assert d.attrs["grid_source"].startswith("calibrated from lines: 2 lines (Ca Ka, Fe Ka)")
        info = p.info()
        assert info["cores"][0]["spectra"] == 4
        assert info["import_log"]["files"] == 4
        with pytest.raises(store.ProjectError, match="no core 'X'"):
            p.read_run("X", "10kV-Run1")
        with pytest.raises(store.ProjectError, match="no run"):
            p.read_run("C1", "50kV-Run3")


def test_read_depth_range(project):
    with store.Project.open(project) as p:
        d = p.read_run("C1", "10kV-Run1", depth_range=(10.0, 19.5))
        assert d.meta["depth_mm"].tolist() == [float(x) for x in range(10, 20)]
        full = p.read_run("C1", "10kV-Run1")
        np.testing.assert_array_equal(d.counts, full.counts[10:20])
        assert len(p.read_run("C1", "10kV-Run1", depth_range=(500, 600))) == 0
        assert len(p.read_run("C1", "10kV-Run1", depth_range=(-5, 0))) == 1


def test_newer_schema_refused(project):
    with h5py.File(project, "r+") as f:
        f.attrs["schema_version"] = store.SCHEMA_VERSION + 1
    before = digest(project)
    with pytest.raises(store.ProjectError, match=r"newer xrfcore \(schema 2\), this version reads up to 1"):
        store.Project.open(project)
    with pytest.raises(store.ProjectError, match="newer xrfcore"):
        with store.transaction(project):
            pass
    assert digest(project) == before


def test_not_a_project(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("hello")
    with pytest.raises(store.ProjectError, match="not an xrfcore project"):
        store.Project.open(bad)
    with pytest.raises(FileNotFoundError):
        store.Project.open(tmp_path / "missing.h5")
    with pytest.raises(ValueError, match="read-only"):
        store.Project.open(bad, mode="a")


def test_older_schema_is_migrated(project, monkeypatch):
    def v1_to_v2(h5):
        h5.attrs["migrated_marker"] = "yes"

    monkeypatch.setattr(store, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(store, "MIGRATIONS", {1: v1_to_v2})
    with store.Project.open(project) as p:
        assert p.schema_version == 2
        assert p._h5.attrs["migrated_marker"] == "yes"
        assert p._h5.attrs["migrated_from"] == 1
        assert len(p.read_run("C1", "10kV-Run1")) == 100


def test_failed_or_cancelled_transaction_leaves_file_unchanged(project, rng):
    before = digest(project)
    with pytest.raises(RuntimeError):
        with store.transaction(project) as p:
            p.write_run("C1", "10kV-Run1", [make_record(rng, depth=500.0)])
            raise RuntimeError("boom")
    with pytest.raises(Cancelled):
        with store.transaction(project) as p:
            p.write_run("C2", "10kV-Run1", [make_record(rng, depth=1.0, core="C2")])
            raise Cancelled("cancelled by the user")
    assert digest(project) == before
    assert [f.name for f in project.parent.iterdir()] == [project.name]     # no temp left
    # a transaction on a missing file that fails creates nothing
    new = project.parent / "new.h5"
    with pytest.raises(RuntimeError):
        with store.transaction(new):
            raise RuntimeError("boom")
    assert not new.exists()


def test_stray_temp_of_killed_process_is_ignored_and_cleaned(project, rng):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    stray = project.parent / f".{project.name}.{pid}.0123456789ab{store.TMP_SUFFIX}"
    stray.write_bytes(b"half written")
    with store.Project.open(project) as p:          # reading ignores it
        assert len(p.read_run("C1", "10kV-Run1")) == 100
    with store.transaction(project) as p:
        p.write_run("C1", "10kV-Run1", [make_record(rng, depth=500.0)])
    assert not stray.exists()
    with store.Project.open(project) as p:
        assert len(p.read_run("C1", "10kV-Run1")) == 101


def test_active_flags_duplicates_and_replicates(tmp_path, rng):
    recs = [
        make_record(rng, depth=10.0, date="2017-08-01T10:00:00", section="00000"),
        # overlapping section edge: same composite depth from the next section, measured later
        make_record(rng, depth=10.04, date="2017-08-02T10:00:00", section="00950"),
        # a rescan of 20 mm, older than the first scan (dates decide, not order)
        make_record(rng, depth=20.0, date="2017-08-03T10:00:00"),
        make_record(rng, depth=20.0, date="2017-07-01T10:00:00", section="00000B"),
        # replicates of 30 mm
        make_record(rng, depth=30.0, replicate=0),
        make_record(rng, depth=30.0, replicate=1, date="2017-08-01T16:00:05"),
        make_record(rng, depth=30.0, replicate=2, date="2017-08-01T16:00:10"),
        # no depth (trigger core): keyed by section + position
        make_record(rng, depth=None, section="00TC"),
    ]
    path = tmp_path / "p.h5"
    store.add_records(path, recs, "flags")
    with store.Project.open(path) as p:
        allrows = p.read_run("C1", "10kV-Run1", active_only=False)
        m = allrows.meta
        assert len(m) == 8                                   # everything kept
        assert np.isnan(m["depth_mm"].iloc[-1])              # unknown depth last
        at10 = m[np.isclose(m["depth_mm"], 10.0, atol=0.05)]
        assert at10["active"].tolist() == [False, True] and at10["section"].iloc[1] == "00950"
        at20 = m[m["depth_mm"] == 20.0]
        assert at20.loc[at20["active"], "date"].tolist() == ["2017-08-03T10:00:00"]
        at30 = m[m["depth_mm"] == 30.0]
        assert at30.loc[at30["active"], "replicate"].tolist() == [0]
        assert sorted(at30["replicate"]) == [0, 1, 2]
        active = p.read_run("C1", "10kV-Run1")
        assert len(active) == 4
        assert active.meta["active"].all()


def test_merge_skips_known_hashes(project, rng):
    with store.Project.open(project) as p:
        d = p.read_run("C1", "10kV-Run1")
        n = len(d)
    rec = make_record(rng, depth=5.5)
    with store.transaction(project) as p:
        r1 = p.write_run("C1", "10kV-Run1", [rec])
        r2 = p.write_run("C1", "10kV-Run1", [rec])
    assert r1 == {"added": 1, "duplicates": 0, "total": n + 1}
    assert r2 == {"added": 0, "duplicates": 1, "total": n + 1}
    bad = make_record(rng, depth=7.0, channels=1024)
    with pytest.raises(ValueError, match="1024 channels"):
        with store.transaction(project) as p:
            p.write_run("C1", "10kV-Run1", [bad])


def test_labels_predictions_and_log(project):
    labels = pd.DataFrame({"core": ["C1", "C1", "C2"], "top_mm": [0.0, 10.0, 5.0],
                           "CaCO3 / wt%": [12.5, np.nan, 40.0], "n": [1, 2, 3], "ok": [True, False, True]})
    preds = pd.DataFrame({"depth_mm": [1.0, 2.0], "CaCO3": [10.0, 11.0], "flag": ["", "ood"]})
    with store.transaction(project) as p:
        p.write_labels(labels, {"source": "lab.csv"})
        p.write_predictions("C1", "model/a", preds, {"model": "tiny", "seed": 0})
        p.append_import_log([{"time": "t", "folder": "f", "file": "x.spe", "status": "rejected",
                              "message": "bad"}])
    with store.Project.open(project) as p:
        got = p.labels()
        pd.testing.assert_frame_equal(got, labels, check_dtype=False)
        assert len(p.labels("C1")) == 2
        assert p.labels_meta() == {"source": "lab.csv"}
        assert p.predictions("C1") == ["model_a"]
        df, meta = p.read_predictions("C1", "model/a")
        pd.testing.assert_frame_equal(df, preds, check_dtype=False)
        assert meta == {"model": "tiny", "seed": 0}
        log = p.import_log()
        assert len(log) == 101 and log["status"].iloc[-1] == "rejected"
        assert p.info()["import_log"]["rejected"] == 1


def test_compressed_size(tmp_path, rng):
    # realistic counts: ~1e5-1e6 counts per spectrum; stored size must stay <= 40 % of raw int32
    recs = []
    for i in range(300):
        r = make_record(rng, depth=float(i))
        r.counts = rng.poisson(SHAPE * rng.uniform(1, 10)).astype(np.int32)
        recs.append(r)
    path = tmp_path / "p.h5"
    store.add_records(path, recs, "size")
    raw = 300 * C * 4
    with h5py.File(path) as f:
        stored = f["cores/C1/runs/10kV-Run1/spectra"].id.get_storage_size()
    assert stored <= 0.40 * raw
    assert os.path.getsize(path) <= 0.40 * raw


def test_create(tmp_path):
    path = tmp_path / "empty.h5"
    with store.Project.create(path) as p:
        assert p.cores() == [] and p.info()["cores"] == []
    with pytest.raises(FileExistsError):
        store.Project.create(path)


def test_large_counts_round_trip(tmp_path, rng):
    small = [make_record(rng, depth=d) for d in (1.0, 2.0)]
    big = [make_record(rng, depth=d, kv=30.0, run=2) for d in (1.0, 2.0)]
    big[1].counts[100] = 3_000_000                        # above uint16: stored as int32
    path = tmp_path / "p.h5"
    store.add_records(path, small + big, "dtypes")
    with store.Project.open(path) as p:
        for recs, run in ((small, "10kV-Run1"), (big, "30kV-Run2")):
            d = p.read_run("C1", run)
            assert d.counts.dtype == np.int32
            np.testing.assert_array_equal(d.counts, np.stack([r.counts for r in recs]))
        assert p._h5["cores/C1/runs/10kV-Run1/spectra"].dtype == np.uint16
        assert p._h5["cores/C1/runs/30kV-Run2/spectra"].dtype == np.int32


def test_lock_file_blocks_a_second_writer_and_stale_locks_are_taken_over(project, rng):
    lock = project.parent / f".{project.name}{store.LOCK_SUFFIX}"
    holder = subprocess.Popen(                                 # a live process holds the lock
        [sys.executable, "-c", "import sys; from pathlib import Path; from xrfcore import store\n"
         "store._acquire_file_lock(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()",
         str(project)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = digest(project)
        with pytest.raises(store.ProjectError, match=f"another xrfcore process \\(pid {holder.pid}\\)"):
            with store.transaction(project) as p:
                p.write_run("C1", "10kV-Run1", [make_record(rng, depth=500.0)])
        assert digest(project) == before
    finally:
        holder.stdin.close()
        holder.wait(10)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    lock.write_text(dead.stdout)                              # left by a killed process
    with store.transaction(project) as p:
        p.write_run("C1", "10kV-Run1", [make_record(rng, depth=500.0)])
    assert not lock.exists()
    with store.Project.open(project) as p:
        assert len(p.read_run("C1", "10kV-Run1")) == 101


def test_killed_writer_leaves_project_unchanged(project):
    """A process killed inside a transaction leaves the project as it was (plus a stray temp)."""
    before = digest(project)
    code = (
        "import os, sys, numpy as np\n"
        "from xrfcore import store\n"
        "from xrfcore.io.records import SpectrumRecord\n"
        "rec = SpectrumRecord(counts=np.ones(2048, np.int32), source_path='k.spe', sha256='k' * 64,\n"
        "                     scanner='avaatech', core='C1', depth_mm=999.0, kv=10.0, run=1)\n"
        "with store.transaction(sys.argv[1]) as p:\n"
        "    p.write_run('C1', '10kV-Run1', [rec])\n"
        "    p._h5.flush()\n"
        "    os._exit(9)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(project)], capture_output=True, text=True)
    assert r.returncode == 9, r.stderr
    assert digest(project) == before
    leftovers = [f for f in project.parent.iterdir() if f != project]
    assert leftovers                                           # the killed writer's temp + lock
    with store.Project.open(project) as p:
        assert len(p.read_run("C1", "10kV-Run1")) == 100
    with store.transaction(project) as p:                      # the next writer cleans up
        p.append_import_log([{"time": "t", "folder": "f", "file": "x", "status": "ok", "message": ""}])
    assert [f.name for f in project.parent.iterdir()] == [project.name]
