"""Main-window actions for whole cruises (a mixin of MainWindow, like ModelActions): import a parent
folder of core folders in one job, predict every core with one model, export every core (one CSV
per core or one long CSV), compare two cores side by side."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from app import engine_cruise
from app.errors import show_error


class CruiseActions:
    def build_cruise_menu(self, menubar) -> None:
        c = menubar.addMenu("C&ruise")
        self.act_import_cruise = self._action(
            c, "Import a cruise folder…", self.import_cruise_folder,
            tip="A folder holding one folder per core: every core imported in one job, one report")
        self.act_predict_all = self._action(
            c, "Predict all cores", self.predict_all_cores,
            tip="The current model on every core of the project, in one background job (Cancel stores nothing)")
        self.act_export_all = self._action(
            c, "Export all cores…", self.export_all_cores,
            tip="One CSV per core into a folder, or one long CSV with a core column")
        self.act_compare = self._action(
            c, "Compare two cores…", self.compare_cores,
            tip="Two cores side by side: a predicted target or an element ratio on one value scale")
        for a in (self.act_import_cruise, self.act_predict_all, self.act_export_all, self.act_compare):
            a.setToolTip(a.statusTip())

    def update_cruise_actions(self) -> None:
        cores = [c["core"] for c in (self.info or {}).get("cores", [])]
        has_preds = any(c.get("predictions") for c in (self.info or {}).get("cores", []))
        self.act_predict_all.setEnabled(bool(self.project and cores and self.model_path))
        self.act_export_all.setEnabled(bool(self.project and has_preds))
        self.act_compare.setEnabled(bool(self.project and len(cores) >= 2))

    def project_cores(self) -> list[str]:
        return [c["core"] for c in (self.info or {}).get("cores", [])]

    # ---------------------------------------------------------------- import
    def import_cruise_folder(self, folder: str = "") -> None:
        from app.dialogs.import_dialog import ImportDialog
        if not folder:
            folder = QFileDialog.getExistingDirectory(self, "Cruise folder (one folder per core)")
            if not folder:
                return
        dlg = ImportDialog(self, folder=folder, current_project=self.project,
                           projects_folder=self.settings.project_folder(),
                           section_unit=self.settings.section_unit, cruise=True)
        self.import_dialog = dlg
        if dlg.exec() and dlg.project_path:
            self.settings.section_unit = dlg.unit_combo.currentData()
            self.open_project(dlg.project_path)
        elif dlg.outcome in ("cancelled", "failed"):
            self.statusBar().showMessage(f"Cruise import {dlg.outcome}; the project is unchanged", 10000)

    # ---------------------------------------------------------------- predict
    def predict_all_cores(self) -> None:
        if self.project is None or not self.model_path:
            show_error(self, "Predict all cores", "Fine-tune a model (or load one) first.")
            return
        n = len(self.project_cores())
        self.start_job(engine_cruise.predict_all_cores, self.project, self.model_path,
                       device=self.settings.device, name="predict-all", uses_torch=True,
                       text=f"Predicting {n} cores", on_success=self._all_predicted)

    def _all_predicted(self, res: dict) -> None:
        self.last_predict_all = res
        self.statusBar().showMessage(res["summary"], 20000)
        if res["skipped"]:
            QMessageBox.warning(self, "Predict all cores", res["summary"])
        self.open_project(self.project)

    # ---------------------------------------------------------------- export
    def export_all_cores(self) -> None:
        from app.dialogs.cruise_export_dialog import CruiseExportDialog
        from xrfcore.outputs import OutputRefused, check_output
        if self.project is None:
            return
        models = engine_cruise.models_with_predictions(self.project)
        if not models:
            show_error(self, "Export all cores", "There are no predictions yet: predict the cores first.")
            return
        dlg = CruiseExportDialog(self, self.project, models, len(self.project_cores()))
        self.cruise_export_dialog = dlg
        if not dlg.exec():
            return
        mid, path, long = dlg.choice()
        if not path:
            return
        try:  # never onto the project itself
            check_output(path, inputs=(self.project,), force=True, folder=not long)
        except OutputRefused as exc:
            show_error(self, "Export all cores", str(exc))
            return
        existing = [Path(path)] if long else [Path(path) / f"{c}_{mid}.csv" for c in models[mid]]
        existing = [p for p in existing if p.exists()]
        if existing and QMessageBox.question(
                self, "Export all cores", f"{len(existing)} file(s) exist already ({existing[0]}…).\n"
                "Replace them?") != QMessageBox.StandardButton.Yes:
            return
        self.start_job(engine_cruise.export_all_cores, self.project, mid, path, long=long, name="export-all",
                       text="Exporting all cores", on_success=self._all_exported)

    def _all_exported(self, res: dict) -> None:
        self.last_export_all = res
        where = res["files"][0] if len(res["files"]) == 1 else str(Path(res["files"][0]).parent)
        self.statusBar().showMessage(f"Exported {len(res['cores'])} cores ({res['rows']} rows) to {where}", 10000)

    # ---------------------------------------------------------------- compare
    def compare_cores(self) -> None:
        from app.views.compare_view import CompareDialog
        cores = self.project_cores()
        if self.project is None or len(cores) < 2:
            show_error(self, "Compare two cores", "The project needs two cores or more.")
            return
        a = self.view.core if self.view is not None else cores[0]
        b = next(c for c in cores if c != a)
        dlg = CompareDialog(self.project, cores, self, core_a=a, core_b=b)
        self.compare_dialog = dlg
        dlg.show()   # not modal: the main window stays usable beside it
