"""Small writes stay small: lab samples and predictions beside the project (store_parts), folded
into the project file by the next full write; crash safety of each step (kill -9)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from xrfcore import store, store_parts
from tests.test_store import digest, make_record

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def project(tmp_path, rng):
    path = tmp_path / "p.h5"
    store.add_records(path, [make_record(rng, depth=d) for d in np.arange(0, 20, 1.0)], "test records")
    return path


def labels(v: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame({"core": ["C1", "C1"], "top_mm": [0.0, 10.0], "bottom_mm": [5.0, 15.0],
                         "CaCO3": [v, v + 1], "note": ["a", "ü"]})


def preds(v: float = 0.5) -> pd.DataFrame:
    return pd.DataFrame({"depth_mm": np.arange(4.0), "CaCO3": np.full(4, v), "ood_flag": [True, False] * 2})


def log_row():
    return [{"time": "t", "folder": "f", "file": "x", "status": "ok", "message": ""}]


def test_small_writes_leave_the_project_file_alone_and_read_back(project):
    before = digest(project)
    with store.transaction(project) as w:
        w.write_labels(labels(), {"source": "lab.csv"})
    with store.transaction(project) as w:
        w.write_predictions("C1", "model/a", preds(), {"model": "tiny"})
    assert digest(project) == before                       # no copy of the project file
    assert (store_parts.parts_dir(project) / "index.json").exists()
    with store.Project.open(project) as p:
        pd.testing.assert_frame_equal(p.labels(), labels())
        assert p.labels_meta() == {"source": "lab.csv"}
        assert p.predictions("C1") == ["model_a"]
        df, meta = p.read_predictions("C1", "model/a")
        pd.testing.assert_frame_equal(df, preds())
        assert meta == {"model": "tiny"} and p.info()["cores"][0]["predictions"] == ["model_a"]
        assert p.info()["labels"] == 2
    # replaced: the old entry file is removed, the new one read
    with store.transaction(project) as w:
        w.write_predictions("C1", "model/a", preds(0.7), {"model": "tiny", "v": 2})
    with store.Project.open(project) as p:
        assert p.read_predictions("C1", "model/a")[0]["CaCO3"].tolist() == [0.7] * 4
    entries = sorted(x.name for x in store_parts.parts_dir(project).iterdir())
    assert len(entries) == 3 and "index.json" in entries   # labels, predictions, index
    with pytest.raises(store.ProjectError, match="no core"):
        with store.transaction(project) as w:
            w.write_predictions("NOPE", "m", preds(), {})


def test_a_full_write_folds_them_into_the_file(project, rng):
    with store.transaction(project) as w:
        w.write_labels(labels(), {"source": "lab.csv"})
        w.write_predictions("C1", "m1", preds(), {"model": "m1"})
    with store.transaction(project) as w:
        w.append_import_log(log_row())
    assert not store_parts.parts_dir(project).exists()
    assert [f.name for f in project.parent.iterdir()] == [project.name]   # one file again
    with h5py.File(project, "r") as f:
        assert "labels" in f and "cores/C1/predictions/m1" in f
    with store.Project.open(project) as p:
        pd.testing.assert_frame_equal(p.labels(), labels())
        pd.testing.assert_frame_equal(p.read_predictions("C1", "m1")[0], preds())


def test_a_transaction_writing_more_than_small_things_is_one_atomic_copy(project, rng):
    before = digest(project)
    with store.transaction(project) as w:
        w.write_labels(labels(5.0), {})
        w.write_run("C1", "10kV-Run1", [make_record(rng, depth=50.0)])
    assert digest(project) != before and not store_parts.parts_dir(project).exists()
    with store.Project.open(project) as p:
        assert p.labels()["CaCO3"].tolist() == [5.0, 6.0]
    # staged, then read in the same transaction: the copy is made and holds the staged write
    with store.transaction(project) as w:
        w.write_labels(labels(7.0), {})
        assert w.labels()["CaCO3"].tolist() == [7.0, 8.0]
    # a failed small write changes nothing
    with pytest.raises(RuntimeError):
        with store.transaction(project) as w:
            w.write_labels(labels(9.0), {})
            raise RuntimeError("boom")
    with store.Project.open(project) as p:
        assert p.labels()["CaCO3"].tolist() == [7.0, 8.0]


def test_projects_without_a_generation_are_migrated_by_their_first_small_write(project):
    with h5py.File(project, "r+") as f:
        del f.attrs["generation"]                      # as written before small writes existed
    before = digest(project)
    with store.transaction(project) as w:
        w.write_labels(labels(), {})
    assert digest(project) != before and not store_parts.parts_dir(project).exists()
    before = digest(project)
    with store.transaction(project) as w:
        w.write_labels(labels(3.0), {})
    assert digest(project) == before
    with store.Project.open(project) as p:
        assert p.labels()["CaCO3"].tolist() == [3.0, 4.0]


def test_a_stale_index_is_ignored(project):
    """A kill between a full write's replace and the removal of NAME.parts/ leaves an index
    whose base is no longer the file's generation: readers ignore it, the next writer removes it."""
    with store.transaction(project) as w:
        w.write_labels(labels(1.0), {})
    stale = project.parent / "stale"
    os.rename(store_parts.parts_dir(project), stale)
    with store.transaction(project) as w:       # no parts: the file's labels are the old ones
        w.write_labels(labels(2.0), {})
        w.append_import_log(log_row())
    store_parts.clear(project)
    os.rename(stale, store_parts.parts_dir(project))
    with store.Project.open(project) as p:
        assert p.labels()["CaCO3"].tolist() == [2.0, 3.0]
    with store.transaction(project) as w:
        w.write_predictions("C1", "m", preds(), {})
    with store.Project.open(project) as p:
        assert p.labels()["CaCO3"].tolist() == [2.0, 3.0] and p.predictions("C1") == ["m"]
    assert len(list(store_parts.parts_dir(project).iterdir())) == 2   # stale entry removed


KILL_AT = r"""
import os, sys
import numpy as np, pandas as pd
from xrfcore import store, store_parts
where = sys.argv[2]
real_replace, real_clear = os.replace, store_parts.clear
def replace(a, b):
    if where == "before-index" and str(b).endswith("index.json"):
        os._exit(9)
    real_replace(a, b)
    if where == "after-index" and str(b).endswith("index.json"):
        os._exit(9)
os.replace = replace
def clear(path):
    if where == "before-clear":
        os._exit(9)
    real_clear(path)
store_parts.clear = clear
df = pd.DataFrame({"core": ["C1"], "top_mm": [0.0], "bottom_mm": [5.0], "CaCO3": [42.0]})
with store.transaction(sys.argv[1]) as w:
    w.write_labels(df, {"v": "new"})
    if where == "before-clear":
        w.append_import_log([{"time": "t", "folder": "f", "file": "x", "status": "ok", "message": ""}])
print("not killed")
"""


@pytest.mark.parametrize("where", ["before-index", "after-index", "before-clear"])
def test_kill_9_during_a_small_write_loses_nothing(project, where):
    with store.transaction(project) as w:
        w.write_labels(labels(1.0), {"v": "old"})
        w.write_predictions("C1", "m", preds(), {})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", KILL_AT, str(project), where], capture_output=True,
                       text=True, env=env, cwd=ROOT)
    assert r.returncode == 9, r.stdout + r.stderr
    with store.Project.open(project) as p:
        meta = p.labels_meta()
        assert meta["v"] == ("old" if where == "before-index" else "new")
        assert p.labels()["CaCO3"].tolist() == ([1.0, 2.0] if meta["v"] == "old" else [42.0])
        pd.testing.assert_frame_equal(p.read_predictions("C1", "m")[0], preds())   # never lost
    with store.transaction(project) as w:                  # the next writer cleans up
        w.append_import_log(log_row())
    assert [f.name for f in project.parent.iterdir()] == [project.name]
    with store.Project.open(project) as p:
        assert p.labels_meta()["v"] == ("old" if where == "before-index" else "new")
        pd.testing.assert_frame_equal(p.read_predictions("C1", "m")[0], preds())


def test_a_reader_survives_a_writer_replacing_an_entry(project, monkeypatch):
    with store.transaction(project) as w:
        w.write_labels(labels(1.0), {})
    p = store.Project.open(project)
    try:
        real = store_parts.open_entry
        calls = []

        def racing(path, name):           # a writer replaces the entry between index and open
            if not calls:
                calls.append(name)
                with store.transaction(project) as w:
                    w.write_labels(labels(2.0), {})
            return real(path, name)

        monkeypatch.setattr(store_parts, "open_entry", racing)
        assert p.labels()["CaCO3"].tolist() == [2.0, 3.0]
    finally:
        p.close()
