"""Issue 11 in the app's import dialog: *New project file* onto an existing file never merges
silently, a same-name core from another folder asks (append / rename / cancel), and a cancelled
import says so where the user is left."""
from __future__ import annotations

import hashlib

import pytest

from tests.test_faults_import import small_core


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def small_project(tmp_path):
    """A project holding a core SIM01-1 (6 spectra) from tmp/a/SIM01-1."""
    from xrfcore import importer
    path = tmp_path / "proj.h5"
    importer.import_folder(small_core(tmp_path / "a", "SIM01-1", seed=1), path)
    return path


def _cores(path) -> dict[str, int]:
    from xrfcore import store
    with store.Project.open(path) as p:
        return {c: sum(p.n_spectra(c, r) for r in p.runs(c)) for c in p.cores()}


def test_new_project_file_onto_an_existing_file_asks_and_never_merges(qtbot, tmp_path, small_project,
                                                                        errors_shown, monkeypatch):
    """Case: *New project file* onto an existing file merged silently (two different SIM01-1 cores
    became one). Now it asks: cancel leaves the file as it is; replace writes a new project."""
    from app.dialogs.import_dialog import ImportDialog
    other = small_core(tmp_path / "b", "SIM01-1", seed=2)
    before = sha(small_project)
    d = ImportDialog(folder=str(other), projects_folder=tmp_path)
    qtbot.addWidget(d)
    assert d.new_radio.isChecked()
    d.project_edit.setText(str(small_project))
    asked = []
    monkeypatch.setattr(d, "ask_overwrite", lambda p: asked.append(p) or False)
    d.start()
    assert asked == [str(small_project)] and d.job is None
    assert sha(small_project) == before
    assert "already exists" in d.status_label.text() and not d.status_label.isHidden()
    monkeypatch.setattr(d, "ask_overwrite", lambda p: True)
    d.start()
    qtbot.waitUntil(lambda: d.outcome in ("ok", "failed"), timeout=60_000)
    assert d.outcome == "ok", errors_shown
    assert _cores(small_project) == {"SIM01-1": 6}          # replaced, not 12 spectra in one core
    assert not [p for p in small_project.parent.iterdir() if p.name.startswith(".proj.h5")]


def test_same_name_core_from_another_folder_asks_append_rename_or_cancel(qtbot, tmp_path, small_project,
                                                                          errors_shown, monkeypatch):
    from app.dialogs.import_dialog import ImportDialog
    other = small_core(tmp_path / "b", "SIM01-1", seed=2)
    before = sha(small_project)

    def dialog(answer):
        d = ImportDialog(folder=str(other), current_project=str(small_project), projects_folder=tmp_path)
        qtbot.addWidget(d)
        assert d.add_radio.isChecked()
        asked = []
        monkeypatch.setattr(d, "ask_same_name", lambda err: asked.append(err) or answer)
        d.start()
        qtbot.waitUntil(lambda: d.outcome in ("ok", "failed", "cancelled"), timeout=60_000)
        d.job.wait()
        assert len(asked) == 1 and asked[0].core == "SIM01-1" and asked[0].new == str(other.resolve())
        return d

    d = dialog(("cancel", ""))
    assert d.outcome == "cancelled" and sha(small_project) == before
    assert "unchanged" in d.status_label.text() and not d.status_label.isHidden()
    assert not errors_shown
    d = dialog(("rename", "SIM01-1b"))
    assert d.outcome == "ok" and _cores(small_project) == {"SIM01-1": 6, "SIM01-1b": 6}
    other = small_core(tmp_path / "c", "SIM01-1", seed=3)
    d = dialog(("append", ""))
    assert d.outcome == "ok" and _cores(small_project) == {"SIM01-1": 12, "SIM01-1b": 6}
    assert not errors_shown


def test_cancelled_import_gives_visible_feedback(qtbot, tmp_path, small_project, errors_shown, monkeypatch):
    """Case: a cancelled import gave no visible feedback (the message was set on a page that was
    no longer shown). Now the settings page shows it, and the main window's status bar too."""
    from app.dialogs import import_dialog
    from app.main_window import MainWindow
    from xrfcore import importer
    from xrfcore.jobs import Cancelled

    def cancelled(*a, token=None, **k):
        raise Cancelled()
    monkeypatch.setattr(importer, "import_folder", cancelled)
    d = import_dialog.ImportDialog(folder=str(small_core(tmp_path / "b", "C2")),
                                   current_project=str(small_project), projects_folder=tmp_path)
    qtbot.addWidget(d)
    d.start()
    qtbot.waitUntil(lambda: d.outcome == "cancelled", timeout=30_000)
    assert d.pages.currentIndex() == 0
    assert not d.status_label.isHidden()
    assert d.status_label.text() == "Import cancelled; the project is unchanged."

    def fake_exec(self):
        self.outcome = "cancelled"
        return 0
    monkeypatch.setattr(import_dialog.ImportDialog, "exec", fake_exec)
    w = MainWindow()
    qtbot.addWidget(w)
    w.open_core_folder(str(tmp_path / "b"))
    assert "Import cancelled; the project is unchanged" in w.statusBar().currentMessage()
