"""Import a core folder: settings -> progress with Cancel -> report table (exportable)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QDialog, QFileDialog, QFormLayout,
                               QHBoxLayout, QInputDialog, QLabel, QLineEdit, QMessageBox,
                               QProgressBar, QPushButton, QRadioButton, QStackedWidget, QVBoxLayout,
                               QWidget)

from app.dialogs.report_dialog import ReportTable
from app.workers import JobThread

SECTION_UNITS = [
    ("auto", "Automatic: 4-digit section tokens are cm, 5-6 digits mm (3 digits: warned)"),
    ("cm", "Section depths in the file names are in cm"),
    ("mm", "Section depths in the file names are in mm"),
]


def report_frame(report) -> pd.DataFrame:
    """Per-file rows from an xrfcore ImportReport: the file name with its section and position (the
    depth part of the name, which a long path would hide), status, message, core, run, folder."""
    df = _raw_report_frame(report)
    if "path" not in df.columns or df.empty:
        return df
    paths = df["path"].astype(str)
    parts = [_name_depth(p) for p in paths]
    lead = pd.DataFrame({"file": [p.rsplit("/", 1)[-1] for p in paths],
                         "section": [a for a, _ in parts], "position_mm": [b for _, b in parts]})
    rest = df.drop(columns=["path"])
    rest["folder"] = [p.rsplit("/", 1)[0] if "/" in p else "" for p in paths]
    return pd.concat([lead, rest.reset_index(drop=True)], axis=1)


def _name_depth(path: str) -> tuple[str, float]:
    """(section, position in mm) read from an Avaatech file name ('', nan when it has none)."""
    from xrfcore.io.avaatech import parse_file_name
    try:
        f = parse_file_name(path.rsplit("/", 1)[-1])
    except Exception:  # noqa: BLE001 (any other scanner's name: no depth part shown)
        return "", float("nan")
    pos = f.get("position_mm")
    return str(f.get("section") or ""), float(pos) if pos is not None else float("nan")


def _raw_report_frame(report) -> pd.DataFrame:
    for name in ("to_frame", "as_frame", "frame", "table"):
        attr = getattr(report, name, None)
        if attr is not None:
            df = attr() if callable(attr) else attr
            if isinstance(df, pd.DataFrame):
                return df
    for name in ("files", "rows", "entries", "items"):
        rows = getattr(report, name, None)
        if rows is not None and not callable(rows):
            out = []
            for r in rows:
                out.append(r if isinstance(r, dict) else
                           {k: v for k, v in vars(r).items() if not k.startswith("_")})
            return pd.DataFrame(out)
    return pd.DataFrame()


def report_summary(report) -> str:
    s = getattr(report, "summary", None)
    return s() if callable(s) else str(s or "")


def default_project_path(folder: str | Path, projects_folder: Path) -> Path:
    name = Path(folder).name or "project"
    return Path(projects_folder) / f"{name}.h5"


class ImportDialog(QDialog):
    """After exec(): ``project_path`` (the project written) and ``report`` (the ImportReport)."""

    def __init__(self, parent=None, *, folder: str = "", current_project: str | None = None,
                 projects_folder: Path | None = None, section_unit: str = "auto", cruise: bool = False):
        super().__init__(parent)
        # cruise: a parent folder holding one folder per core, imported in one job (one report);
        # the core names come from each core's folder and files (no one name for all)
        self.cruise = cruise
        self.setWindowTitle("Import a cruise folder" if cruise else "Import a core folder")
        self.resize(820, 520)
        self.projects_folder = Path(projects_folder or Path.home())
        self.current_project = current_project
        self.project_path: str | None = None
        self.report = None
        self.job: JobThread | None = None
        self.outcome = ""  # "", "ok", "cancelled", "failed"

        self.pages = QStackedWidget()
        # page 0: settings
        s = QWidget()
        outer = QVBoxLayout(s)
        form = QFormLayout()
        outer.addLayout(form)
        self.folder_edit = QLineEdit(folder)
        self.folder_edit.textChanged.connect(self._suggest_project)
        b1 = QPushButton("Browse…")
        b1.clicked.connect(self._browse_folder)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(b1)
        form.addRow("Cruise folder" if cruise else "Core folder", row)
        self.found_label = QLabel("")
        self.found_label.setWordWrap(True)
        if cruise:
            form.addRow("", self.found_label)
            self.folder_edit.textChanged.connect(self._show_found)
        self.core_edit = QLineEdit()
        self.core_edit.setPlaceholderText("taken from the file names")
        form.addRow("Core name (optional)", self.core_edit)
        form.setRowVisible(self.core_edit, not cruise)
        self.unit_combo = QComboBox()
        for key, text in SECTION_UNITS:
            self.unit_combo.addItem(text, key)
        self.unit_combo.setCurrentIndex(max(0, [k for k, _ in SECTION_UNITS].index(section_unit)
                                            if section_unit in dict(SECTION_UNITS) else 0))
        form.addRow("Section depth unit", self.unit_combo)
        self.add_radio = QRadioButton("Add to the open project")
        self.new_radio = QRadioButton("New project file")
        grp = QButtonGroup(self)
        grp.addButton(self.add_radio)
        grp.addButton(self.new_radio)
        self.add_radio.setEnabled(bool(current_project))
        (self.add_radio if current_project else self.new_radio).setChecked(True)
        self.project_edit = QLineEdit()
        b2 = QPushButton("Browse…")
        b2.clicked.connect(self._browse_project)
        prow = QHBoxLayout()
        prow.addWidget(self.project_edit, 1)
        prow.addWidget(b2)
        form.addRow("Project", self.add_radio)
        form.addRow("", self.new_radio)
        form.addRow("Project file", prow)
        self.add_radio.toggled.connect(lambda on: self.project_edit.setEnabled(not on))
        self.project_edit.setEnabled(not self.add_radio.isChecked())
        self.start_btn = QPushButton("Import")
        self.start_btn.setDefault(True)
        self.start_btn.clicked.connect(self.start)
        close0 = QPushButton("Close")
        close0.clicked.connect(self.reject)
        brow = QHBoxLayout()
        brow.addStretch(1)
        brow.addWidget(close0)
        brow.addWidget(self.start_btn)
        what = QLabel("Every spectrum file (.spe) under the folder is read; files that cannot be used "
                      "are listed with the reason in the import report. Files already in the project are "
                      "skipped, so importing a folder again only adds what is new.")
        what.setWordWrap(True)
        what.setStyleSheet("color: #555555")
        outer.addSpacing(12)
        outer.addWidget(what)
        # the outcome of the last try (cancelled, failed), shown where the user is sent back to
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setStyleSheet("color: #9a5b00; font-weight: bold")
        self.status_label.setVisible(False)
        outer.addWidget(self.status_label)
        outer.addStretch(1)
        outer.addLayout(brow)
        self.pages.addWidget(s)

        # page 1: progress
        p = QWidget()
        pl = QVBoxLayout(p)
        self.progress_label = QLabel("Reading files…")
        self.progress_bar = QProgressBar()
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.cancel)
        pl.addStretch(1)
        pl.addWidget(self.progress_label)
        pl.addWidget(self.progress_bar)
        pl.addWidget(self.cancel_btn)
        pl.addStretch(1)
        self.pages.addWidget(p)

        # page 2: report
        r = QWidget()
        rl = QVBoxLayout(r)
        self.report_table = ReportTable(r, "import-report.csv")
        self.open_btn = QPushButton("Open project")
        self.open_btn.clicked.connect(self.accept)
        close2 = QPushButton("Close")
        close2.clicked.connect(self._close_after)
        rb = QHBoxLayout()
        rb.addStretch(1)
        rb.addWidget(close2)
        rb.addWidget(self.open_btn)
        rl.addWidget(self.report_table, 1)
        rl.addLayout(rb)
        self.pages.addWidget(r)

        lay = QVBoxLayout(self)
        lay.addWidget(self.pages)
        self._suggest_project(folder)
        if cruise:
            self._show_found(folder)

    def _show_found(self, folder: str) -> None:
        """How many core folders the cruise folder holds (the import finds the cores by their files)."""
        from app.engine_cruise import core_folders
        names = core_folders(folder) if folder and Path(folder).is_dir() else []
        self.found_cores = names
        self.found_label.setText(
            f"{len(names)} core folder{'s' if len(names) != 1 else ''}: " + ", ".join(names[:12])
            + (f" and {len(names) - 12} more" if len(names) > 12 else "") if names
            else "No sub-folder with spectra found yet: choose the folder that holds one folder per core.")

    # ---- settings page
    def _browse_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Core folder", self.folder_edit.text())
        if d:
            self.folder_edit.setText(d)

    def _browse_project(self) -> None:
        f, _ = QFileDialog.getSaveFileName(self, "Project file", self.project_edit.text(),
                                           "xrfcore projects (*.h5)")
        if f:
            self.project_edit.setText(f if f.endswith(".h5") else f + ".h5")

    def _suggest_project(self, folder: str) -> None:
        if folder:
            self.project_edit.setText(str(default_project_path(folder, self.projects_folder)))

    def target_project(self) -> str:
        if self.add_radio.isChecked() and self.current_project:
            return self.current_project
        return self.project_edit.text().strip()

    # ---- questions (methods, so tests can answer them)
    def ask_overwrite(self, project: str) -> bool:
        """*New project file* onto an existing file: replace it (confirmed) or cancel; never merge."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Project file exists",
                          f"{project} already exists.\n\nA new project file replaces it: the cores, lab "
                          "samples and predictions in it will be gone. To add this folder to it instead, "
                          "open it and choose 'Add to the open project'.", parent=self)
        replace = box.addButton("Replace the file", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is replace

    def ask_same_name(self, err) -> tuple[str, str]:
        """A core of this name from another folder is in the project: ('append', ''),
        ('rename', new name) or ('cancel', '')."""
        where = ", ".join(err.existing) or "an earlier import"
        box = QMessageBox(QMessageBox.Icon.Question, "Core name already in the project",
                          f"The project already has a core '{err.core}' (from {where}).\n\nThe files of "
                          f"'{err.core}' in {err.new} come from another folder: they may be another core "
                          "that shares the name. Nothing has been imported yet.", parent=self)
        append = box.addButton(f"Add them to '{err.core}'", QMessageBox.ButtonRole.AcceptRole)
        rename = box.addButton("Import under another name…", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is append:
            return "append", ""
        if box.clickedButton() is rename:
            name, ok = QInputDialog.getText(self, "Core name", "Import this core as:", text=f"{err.core}-2")
            if ok and name.strip():
                return "rename", name.strip()
        return "cancel", ""

    def _show_status(self, text: str) -> None:
        self.status_label.setText(text)
        self.status_label.setVisible(bool(text))

    # ---- running
    def start(self) -> None:
        from app.errors import show_error

        folder = self.folder_edit.text().strip()
        project = self.target_project()
        if not folder or not Path(folder).is_dir():
            show_error(self, "Import", f"The core folder does not exist: {folder or '(none given)'}")
            return
        if not project:
            show_error(self, "Import", "Choose where to save the project file.")
            return
        replace = False
        if self.new_radio.isChecked() and Path(project).exists():
            if not self.ask_overwrite(project):
                self._show_status(f"Not imported: {project} already exists and was left as it is.")
                return
            replace = True
        Path(project).parent.mkdir(parents=True, exist_ok=True)
        self._run(folder, project, replace=replace)

    def _run(self, folder: str, project: str, *, replace: bool = False, append: bool = False,
             rename: str | None = None) -> None:
        from xrfcore import importer

        self._show_status("")
        self._request = dict(folder=folder, project=project, replace=replace)
        self.project_path = project
        self.pages.setCurrentIndex(1)
        fn = importer.import_into_new_project if replace else importer.import_folder
        self.job = JobThread(fn, folder, project,
                             core=(self.core_edit.text().strip() or None) if not self.cruise else None,
                             section_unit=self.unit_combo.currentData(), append=append, rename=rename,
                             name="import", parent=self)
        self.job.progress.connect(self._on_progress)
        self.job.succeeded.connect(self._on_done)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.start()

    def cancel(self) -> None:
        if self.job is not None and self.job.isRunning():
            self.cancel_btn.setEnabled(False)
            self.progress_label.setText("Cancelling… the project is left as it was")
            self.job.cancel()

    def _on_progress(self, done: int, total: int, msg: str) -> None:
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
        self.progress_label.setText(msg or f"{done} of {total} files")

    def _on_done(self, report) -> None:
        self.report = report
        self.outcome = "ok"
        from xrfcore.cruise import cores_line
        self.report_table.set_report(report_frame(report), cores_line(report) + "\n" + report_summary(report),
                                     header=f"import report for {self.folder_edit.text()}")
        self.pages.setCurrentIndex(2)

    def _on_failed(self, message: str) -> None:
        from app.errors import show_error
        from xrfcore.importer import SameNameCoreError
        self.project_path = None
        self.pages.setCurrentIndex(0)
        err = getattr(self.job, "error", None)
        if isinstance(err, SameNameCoreError):
            choice, name = self.ask_same_name(err)
            if choice == "append":
                self._run(**self._request, append=True)
                return
            if choice == "rename":
                self._run(**self._request, rename=name)
                return
            self.outcome = "cancelled"
            self._show_status(f"Not imported: the project already has a core '{err.core}' from another "
                              "folder; the project is unchanged.")
            return
        self.outcome = "failed"
        self._show_status("Import failed; the project is unchanged.")
        show_error(self, "Import failed", message + "\nThe project was left as it was.")

    def _on_cancelled(self) -> None:
        self.outcome = "cancelled"
        self.project_path = None
        self.cancel_btn.setEnabled(True)
        self.pages.setCurrentIndex(0)
        self.progress_label.setText("Import cancelled; the project is unchanged.")
        self._show_status("Import cancelled; the project is unchanged.")

    def _close_after(self) -> None:
        self.reject()

    def reject(self) -> None:
        if self.job is not None and self.job.isRunning():
            self.cancel()
            self.job.wait()
        super().reject()
