"""Main-window action "Suggest sampling depths…" (a mixin of MainWindow, like ModelActions): asks K,
runs ``xrfcore.sampling.suggest`` in a job, marks the depths on the downcore view and offers to save
the sampling list CSV. No science here."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from app.errors import report_exception, show_error


class SamplingActions:
    suggestions = None   # the last sampling list (DataFrame) of the core shown

    def sampling_model(self) -> str | None:
        """The fine-tuned model when there is one (its intervals weight the choice), else the base."""
        return self.model_path or self.foundation_path or self.base_model() or None

    def suggest_sampling(self) -> None:
        v = self.view
        if v is None:
            show_error(self, "Suggest sampling depths", "Open a project and a core first.")
            return
        model = self.sampling_model()
        if not model:
            show_error(self, "Suggest sampling depths", "No model: install the shipped model or load one.")
            return
        k, ok = QInputDialog.getInt(
            self, "Suggest sampling depths",
            f"How many 1 cm samples of {v.core} to send to the lab next?\n(The lab samples already loaded "
            "are not suggested again; cracks are never suggested.)", 10, 1, 500, 1)
        if not ok:
            return
        from xrfcore import sampling
        self.start_job(sampling.suggest, self.project, model, k, cores=[v.core], run=v.run,
                       device=self.settings.device, name="suggest", uses_torch=True,
                       text=f"Suggesting sampling depths on {v.core}",
                       on_success=lambda df, core=v.core: self.show_suggestions(df, core))

    def show_suggestions(self, df, core: str) -> None:
        if self.view is None or self.view.core != core:
            return  # another core is shown now
        self.suggestions = df
        tips = [f"#{r.rank}: {r.depth_top_mm:g}-{r.depth_bottom_mm:g} mm\n{r.reason}" for r in df.itertuples()]
        self.downcore.set_suggestions(df["depth_mm"].to_numpy(float), df["rank"].tolist(), tips)
        prov = df.attrs.get("provenance", {})
        note = f"\n{prov['note']}" if prov.get("note") else ""
        lines = "\n".join(f"{r.rank}. {r.depth_top_mm:g}-{r.depth_bottom_mm:g} mm: {r.reason}"
                          for r in df.head(12).itertuples())
        more = f"\n… and {len(df) - 12} more" if len(df) > 12 else ""
        ans = QMessageBox.question(
            self, "Suggest sampling depths",
            f"{len(df)} depth(s) on {core}, marked on the downcore view (model {prov.get('model_id')}, "
            f"{prov.get('model_kind')}).{note}\n\n{lines}{more}\n\nSave the sampling list as CSV?")
        if ans == QMessageBox.StandardButton.Yes:
            self.save_sampling_list()

    def save_sampling_list(self, path: str = "") -> None:
        if self.suggestions is None:
            return
        if not path:
            folder = Path(self.project).parent if self.project else Path.home()
            path, _ = QFileDialog.getSaveFileName(self, "Save the sampling list",
                                                  str(folder / f"sampling_list_{self.view.core}.csv"),
                                                  "CSV files (*.csv)")
        if not path:
            return
        from xrfcore import sampling
        from xrfcore.outputs import OutputRefused, check_output
        try:  # never onto the project itself
            check_output(path, inputs=(self.project,), force=True)
            sampling.write_csv(path, self.suggestions)
        except OutputRefused as exc:
            show_error(self, "Save the sampling list", str(exc))
            return
        except Exception as exc:  # noqa: BLE001
            report_exception(self, "Save the sampling list", exc)
            return
        self.statusBar().showMessage(f"Sampling list saved: {path}", 8000)
