"""Load lab samples: preview the file (CSV, .xlsx, .xls, .ods), map its columns, pick the target
columns, check matched / unmatched rows, then accept. Every problem is shown in the dialog, beside the
mapping."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QTabWidget,
                               QVBoxLayout, QWidget)

from app.dialogs.report_dialog import ReportTable
from app.errors import plain_message
from app.workers import JobThread, call_job

ROLE_LABELS = [("core", "Core"), ("top", "Top depth"), ("bottom", "Bottom depth"),
               ("mid", "Mid depth (if no interval)"), ("CaCO3", "CaCO3"), ("TOC", "TOC"),
               ("sample", "Sample id")]
NONE = "(none)"
VALUE_UNITS = [("from column names", None), ("wt%", "wt%"), ("fraction (0-1, converted to wt%)", "fraction")]


def numeric_columns(path: str | Path) -> list[str]:
    """The columns of a lab table that are mostly numbers (possible targets); [] if unreadable."""
    from xrfcore.labtables import read_table
    from xrfcore.targets import numeric_columns as numeric
    try:
        return numeric(read_table(path).frame)
    except Exception:  # noqa: BLE001 (the dialog shows an unreadable file with its reason)
        return []


def csv_columns(path: str | Path) -> list[str]:
    """Column names of a lab table (CSV or spreadsheet); ValueError / OSError naming the file."""
    from xrfcore.labtables import read_table
    return [str(c) for c in read_table(path).frame.columns]


def _check(path, mapping, unit, core, project, units=None, targets=None):
    from xrfcore import labels
    lab = labels.read_lab_csv(path, mapping=mapping, depth_unit=unit, core=core, units=units, targets=targets)
    match = labels.match_project(project, lab) if project else None
    return lab, match


class LabelsDialog(QDialog):
    """After accept(): ``lab`` (xrfcore.labels.LabTable) and ``match`` (MatchResult or None)."""

    def __init__(self, path: str | Path, project: str | None, parent=None, default_core: str = ""):
        super().__init__(parent)
        from xrfcore import labels

        self.setWindowTitle(f"Lab samples: {Path(path).name}")
        self.resize(900, 600)
        self.path, self.project = str(path), project
        self.lab = None
        self.match = None
        self.job: JobThread | None = None
        # the file as read, shown before the mapping; a file that cannot be read is said so here,
        # beside the mapping, not in a message box before it
        from xrfcore.labtables import read_table
        self.read_error = ""
        try:
            self.table = read_table(path)
            self.columns = [str(c) for c in self.table.frame.columns]
        except Exception as exc:  # noqa: BLE001
            self.table, self.columns = None, []
            self.read_error = plain_message(exc)
        detected = labels.detect_columns(self.columns)
        self.preview = ReportTable(self, "lab-table-preview.csv")
        self.preview.export_btn.setVisible(False)
        self.preview.setMaximumHeight(220)
        self._fill_preview()

        form = QFormLayout()
        self.combos: dict[str, QComboBox] = {}
        for role, text in ROLE_LABELS:
            cb = QComboBox()
            cb.addItem(NONE)
            cb.addItems(self.columns)
            if role in detected:
                cb.setCurrentText(detected[role])
            self.combos[role] = cb
            form.addRow(text, cb)
        self.unit = QComboBox()
        self.unit.addItems(["from column names", "mm", "cm", "m"])
        form.addRow("Depth unit", self.unit)
        self.values = QComboBox()
        self.values.addItems([text for text, _ in VALUE_UNITS])
        self.values.setToolTip("Unit of the CaCO3 / TOC values when the column headers do not state it")
        form.addRow("Values", self.values)
        # the target columns: any numeric lab column (CaCO3 / TOC ticked when the file has them)
        self.target_list = QListWidget()
        self.target_list.setToolTip("The lab values to fine-tune on: any numeric column (Fe, BSi, grain "
                                    "size...); the unit comes from the header, e.g. 'Fe (mg/kg)'")
        roles = {c for r, c in detected.items() if r not in ("CaCO3", "TOC")}
        from xrfcore.targets import numeric_columns as numeric
        for col in (numeric(self.table.frame) if self.table is not None else []):
            if col in roles:
                continue
            it = QListWidgetItem(col)
            it.setFlags(it.flags() | Qt.ItemIsUserCheckable)
            it.setCheckState(Qt.Checked if col in (detected.get("CaCO3"), detected.get("TOC")) else Qt.Unchecked)
            self.target_list.addItem(it)
        self.target_list.setMaximumHeight(110)
        form.addRow("Targets", self.target_list)
        self.core_edit = QLineEdit(default_core)
        self.core_edit.setPlaceholderText("core name when the file has no core column")
        form.addRow("Core (single-core files)", self.core_edit)
        self.check_btn = QPushButton("Check matching")
        self.check_btn.clicked.connect(self.check)
        self.status = QLabel("Map the columns, then check which rows match spectra.")
        self.status.setWordWrap(True)
        # what needs a person's OK (low depth coverage, TOC above 20 wt%): shown, then ticked
        self.warnings = QLabel("")
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #b00000")
        self.warnings.setVisible(False)
        self.accept_box = QCheckBox("I have checked these warnings: use the samples anyway")
        self.accept_box.setVisible(False)
        self.accept_box.toggled.connect(lambda _on: self._update_ok())

        self.matched = ReportTable(self, "matched-samples.csv")
        self.unmatched = ReportTable(self, "unmatched-samples.csv")
        tabs = QTabWidget()
        tabs.addTab(self.matched, "Matched rows")
        tabs.addTab(self.unmatched, "Unmatched and flagged rows")
        self.tabs = tabs

        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.button(QDialogButtonBox.Ok).setText("Use these samples")
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(False)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        top = QHBoxLayout()
        left = QWidget()
        left.setLayout(form)
        top.addWidget(left)
        lay = QVBoxLayout(self)
        lay.addWidget(self.preview)
        lay.addLayout(top)
        row = QHBoxLayout()
        row.addWidget(self.check_btn)
        row.addWidget(self.status, 1)
        lay.addLayout(row)
        lay.addWidget(self.warnings)
        lay.addWidget(self.accept_box)
        lay.addWidget(tabs, 1)
        lay.addWidget(self.buttons)

    def _fill_preview(self, n: int = 12) -> None:
        t = self.table
        if t is None:
            self.preview.set_report(pd.DataFrame(), "File preview: this file cannot be read as a table.")
            return
        head = t.frame.head(n).copy()
        head.insert(0, "line" if t.kind == "csv" else "row", t.source_rows[: len(head)])
        self.preview.set_report(head, f"File preview (first {len(head)} of {len(t.frame)} rows): "
                                      f"{t.describe()}, {len(t.frame.columns)} columns"
                                      + (f"; {len(t.comments)} comment line(s)" if t.comments else ""))

    def mapping(self) -> dict:
        return {role: (None if cb.currentText() == NONE else cb.currentText())
                for role, cb in self.combos.items()}

    def depth_unit(self) -> str | None:
        u = self.unit.currentText()
        return None if u.startswith("from") else u

    def target_columns(self) -> list[str] | None:
        """The ticked target columns (None when none is ticked: CaCO3 / TOC if the file has them)."""
        cols = [self.target_list.item(i).text() for i in range(self.target_list.count())
                if self.target_list.item(i).checkState() == Qt.Checked]
        return cols or None

    def set_targets(self, columns) -> None:
        """Tick exactly these target columns."""
        for i in range(self.target_list.count()):
            it = self.target_list.item(i)
            it.setCheckState(Qt.Checked if it.text() in set(columns) else Qt.Unchecked)

    def value_units(self) -> str | None:
        return dict(VALUE_UNITS).get(self.values.currentText())

    def _update_ok(self) -> None:
        """*Use these samples*: only with matched samples, and with every warning ticked off."""
        ok_btn = self.buttons.button(QDialogButtonBox.Ok)
        if self.lab is None:
            ok_btn.setEnabled(False)
            return
        n = len(self.match.samples) if self.match is not None else len(self.lab.samples)
        pending = self.pending()
        if n == 0:
            why = "no sample matches a spectrum of this project"
        elif pending and not self.accept_box.isChecked():
            why = "check the warnings above and tick the box to use these samples"
        else:
            why = ""
        ok_btn.setEnabled(not why)
        ok_btn.setToolTip(why)

    def pending(self) -> list[str]:
        """What needs the user's OK before these samples are used."""
        if self.match is not None:
            return list(self.match.confirm)
        return list(self.lab.confirm) if self.lab is not None else []

    def check(self) -> None:
        if self.read_error:   # nothing to map: say why, where the mapping would be
            self._on_failed(self.read_error)
            self.status.setText("This file cannot be read as a table: " + self.read_error)
            self.check_btn.setEnabled(False)
            return
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(False)
        self.check_btn.setEnabled(False)
        self.status.setStyleSheet("")
        self.status.setText("Checking…")
        self.accept_box.setChecked(False)
        self.job = JobThread(call_job(_check, self.path, self.mapping(), self.depth_unit(),
                                      self.core_edit.text().strip() or None, self.project,
                                      self.value_units(), self.target_columns()),
                             name="labels-check", parent=self)
        self.job.succeeded.connect(self._on_checked)
        self.job.failed.connect(self._on_failed)
        self.job.start()

    def _on_checked(self, result) -> None:
        self.check_btn.setEnabled(True)
        self.lab, self.match = result
        if self.match is not None:
            cols = [c for c in ("source_row", "core", "depth_top_mm", "depth_bottom_mm", "depth_mm",
                                *self.lab.targets, "run", "method", "n_spectra")
                    if c in self.match.samples.columns]
            self.matched.set_report(self.match.samples[cols], self.match.summary())
            rep = self.match.report
            summary = self.match.summary()
        else:
            self.matched.set_report(self.lab.samples, f"{len(self.lab.samples)} samples read")
            rep = self.lab.issues
            summary = f"{len(self.lab.samples)} samples read (no project open to match against)"
        self.unmatched.set_report(rep, f"{len(rep)} rows not used or flagged")
        notes = "; ".join(self.lab.notes)
        sim = ".  These lab values are SIMULATED." if self.lab.simulated else ""
        coverage = self.match.coverage_text() if self.match is not None else ""
        targets = "Targets: " + ", ".join(f"{t} ({u})" if u else t for t, u in self.lab.target_units.items())
        self.status.setText(summary + (f" ({notes})" if notes else "") + sim + f"\n{targets}"
                            + (f"\nDepth coverage: {coverage}" if coverage else ""))
        n = len(self.match.samples) if self.match is not None else len(self.lab.samples)
        pending = self.pending()
        if n == 0:
            self.warnings.setText("These samples cannot be used: no sample matches a spectrum of this "
                                  "project (see the unmatched rows: wrong core name or depth unit?).")
        else:
            self.warnings.setText("Please check: " + "\n".join(pending) if pending else "")
        self.warnings.setVisible(n == 0 or bool(pending))
        self.accept_box.setVisible(n > 0 and bool(pending))
        self._update_ok()
        if n == 0:
            self.tabs.setCurrentIndex(1)

    def _on_failed(self, message: str) -> None:
        # shown in the dialog, where the mapping, depth unit or value unit can be changed
        from app.errors import log, setup_logging
        setup_logging()
        self.check_btn.setEnabled(True)
        self.lab, self.match = None, None
        self._update_ok()
        self.warnings.setVisible(False)
        self.accept_box.setVisible(False)
        self.status.setStyleSheet("color: #b00000")
        self.status.setText("This file cannot be used as mapped: " + message)
        log.warning("lab samples %s: %s", self.path, message)

    def samples(self) -> pd.DataFrame:
        return self.lab.samples if self.lab is not None else pd.DataFrame()


def load_error_message(exc: BaseException) -> str:
    return plain_message(exc)
