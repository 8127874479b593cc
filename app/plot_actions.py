"""Main-window actions for plots out: save (PNG / SVG / PDF) or copy any plot with its title and a
provenance line (a mixin of MainWindow, like ModelActions)."""
from __future__ import annotations

from pathlib import Path


class PlotActions:
    def plot_views(self) -> dict:
        """{name: (pyqtgraph view, title)} of every plot that can be saved or copied."""
        return {"Downcore": (self.downcore.glw, self.downcore.title.text()),
                "Spectrum": (self.spectrum.plot, self.spectrum.title.text()),
                "Reconstruction": (self.recon.plot, self.recon.title.text()),
                "Training loss": (self.training.loss_plot, "Training loss")}

    def plot_provenance(self) -> str:
        """The line printed under a saved plot: software, project, core and run, model, time."""
        import datetime as _dt

        import xrfcore
        v = self.view
        parts = [f"xrfcore {xrfcore.__version__}"]
        if self.project:
            parts.append(f"project {Path(self.project).name}")
        if v is not None:
            parts.append(f"{v.core} / {v.run}")
            mid = (v.prediction_meta or {}).get("model_id")
            if mid:
                parts.append(f"model {mid}")
        parts.append(_dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
        if v is not None and v.simulated:
            parts.append("SIMULATED data")
        return " · ".join(parts)

    def save_plot(self) -> None:
        from app.dialogs.plot_dialog import PlotDialog
        tab = self.tabs.tabText(self.tabs.currentIndex())
        current = "Training loss" if tab == "Training" else tab
        folder = str(Path(self.project).parent) if self.project else ""
        dlg = PlotDialog(self.plot_views(), self.plot_provenance(), self, current=current, folder=folder)
        self.plot_dialog = dlg
        dlg.exec()

