"""Model-side actions of the main window (fine-tune, predict, export, reconstruct, pretrain, models)."""
from __future__ import annotations

import datetime as _dt
import shutil
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from app import engine
from app.dialogs.instrument_dialog import ask_allow_mismatch
from app.errors import report_exception, show_error
from app.formatting import model_name, short_path, sig
from app.settings import models_dir


class ModelActions:
    """Mixin for MainWindow: every long step runs as a JobThread via ``self.start_job``."""

    cuda_available: bool | None = None

    # ---------------------------------------------------------------- models
    def base_model(self) -> str:
        """The foundation (masked autoencoder) model: setting, else the first one found."""
        if self.settings.default_model:
            return self.settings.default_model
        return engine.default_foundation_model()

    def recon_model(self) -> str:
        """The masked autoencoder used for reconstructions: the fine-tuned model's base, else the base."""
        if self.model_path:
            mae = Path(self.model_path).parent / "base_mae"
            if mae.with_suffix(".json").exists():
                return str(mae)
        return self.foundation_path or self.base_model()

    def set_model(self, path: str) -> None:
        self.model_path = str(path)
        self.statusBar().showMessage(f"Model: {short_path(Path(path).parent)}", 8000)
        self._update_actions()
        self.refresh_banner()

    def load_model(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Load model", str(models_dir()), "Model cards (*.json)")
        if not f:
            return
        try:
            from xrfcore.model import checkpoint
            card = checkpoint.load_card(f)
        except Exception as exc:  # noqa: BLE001
            report_exception(self, "Load model", exc)
            return
        stem = str(Path(f).with_suffix(""))
        if card.get("kind") == "regressor":
            self.set_model(stem)
        else:
            self.foundation_path, self.foundation_for = stem, None
            self.statusBar().showMessage(f"Base model for fine-tuning and reconstruction: {stem}", 8000)

    def save_model(self) -> None:
        if not self.model_path:
            return
        d = QFileDialog.getExistingDirectory(self, "Save the model into folder")
        if not d:
            return
        try:
            src = Path(self.model_path).parent
            dst = Path(d) / src.name
            tmp = Path(d) / f".{src.name}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp)
            tmp.rename(dst)
        except Exception as exc:  # noqa: BLE001
            report_exception(self, "Save model", exc)
            return
        self.statusBar().showMessage(f"Model saved in {dst}", 8000)

    # ---------------------------------------------------------------- fine-tune, predict, export
    def finetune(self) -> None:
        from app.dialogs.finetune_dialog import FinetuneDialog
        if self.project is None:
            return
        dlg = FinetuneDialog(self.project, self, device=self.settings.device,
                             base_model=self.foundation_path or self.base_model(), cuda=self.cuda_available)
        dlg.modelReady.connect(self.set_model)
        self.finetune_dialog = dlg
        dlg.exec()
        if dlg.result is not None:
            self.show_finetune_result(dlg.result)
            if dlg.predict_after:
                self.predict()

    def show_finetune_result(self, result: dict) -> None:
        """The Training tab keeps the last fine-tune's validation after its dialog is closed."""
        self.training.reset()
        self.training.loss_plot.setVisible(result["card"].get("mode") != "head")
        self.training.show_validation(result["measured"], result["predicted"],
                                      result["card"].get("metrics", {}), fit=result.get("fit", "validation"),
                                      scheme=result.get("scheme", ""), units=result.get("units"))
        warn = result["card"].get("skill_warnings") or []
        if warn:  # said where the validation is shown, and in the status bar: never silently weak
            self.training.metrics.setText("<b style='color:#b00'>Warning</b>: " + "<br>".join(warn))
            self.statusBar().showMessage("Fine-tuned, with a warning: " + warn[0], 20000)

    def predict(self) -> None:
        if self.view is None or not self.model_path:
            show_error(self, "Predict", "Fine-tune a model (or load one) first.")
            return
        self._start_predict(allow_instrument_mismatch=False)

    def _start_predict(self, allow_instrument_mismatch: bool) -> None:
        v = self.view
        text = f"Predicting {v.core}"
        job = {}

        def failed(message: str) -> None:
            # a run from another instrument: name both and let the user decide (engine refused it)
            info = engine.instrument_refusal(getattr(job.get("job"), "error", None))
            if info is None or allow_instrument_mismatch:
                self._job_failed(text, message)
            elif ask_allow_mismatch(self, info, "Predict"):
                self._start_predict(allow_instrument_mismatch=True)
            else:
                self.statusBar().showMessage(f"{text}: not predicted (instrument mismatch)", 8000)
        job["job"] = self.start_job(engine.predict_project, self.project, v.core, v.run, self.model_path,
                                    device=self.settings.device, name="predict", uses_torch=True, text=text,
                                    allow_instrument_mismatch=allow_instrument_mismatch,
                                    on_success=lambda mid: self._predicted(mid), on_failed=failed)

    def _predicted(self, model_id: str) -> None:
        self.statusBar().showMessage(f"Predictions of {model_id} stored in the project", 8000)
        if self.view is not None:
            self.open_project(self.project)

    def export_csv(self) -> None:
        from app.dialogs.export_dialog import ExportDialog
        if self.project is None:
            return
        cm = {c: c_info.get("predictions", []) for c_info in self.info.get("cores", [])
              for c in [c_info["core"]]}
        if self.view is not None:
            cm[self.view.core] = self.view.predictions
        if not any(cm.values()):
            show_error(self, "Export CSV", "There are no predictions to export yet: fine-tune and predict first.")
            return
        dlg = ExportDialog(self, cm, Path(self.project).parent, self.view.core if self.view else "")
        self.export_dialog = dlg
        if not dlg.exec():
            return
        core, mid, path = dlg.choice()
        if not path:
            return
        from xrfcore.outputs import OutputRefused, check_output
        try:  # never onto the project itself; an existing file is replaced only when the user says so
            check_output(path, inputs=(self.project,), force=True)
        except OutputRefused as exc:
            show_error(self, "Export CSV", str(exc))
            return
        if Path(path).exists() and QMessageBox.question(
                self, "Export CSV", f"{path} already exists.\nReplace it?") != QMessageBox.StandardButton.Yes:
            return
        self.start_job(engine.export_predictions, self.project, core, mid, path, name="export",
                       text="Exporting CSV",
                       on_success=lambda p: self.statusBar().showMessage(f"Exported {p}", 8000))

    # ---------------------------------------------------------------- reconstruction
    def reconstruct(self, mask_ratio: float, seed: int) -> None:
        counts = self.current_counts()
        if counts is None:
            return
        model = self.recon_model()
        if not model:
            self.recon.title.setText("No masked-autoencoder model: pretrain one or install the shipped model.")
            return
        if self.busy_with("reconstruct"):
            self._recon_timer_start()  # coalesce: try again once the running one is done
            return
        depth = float(self.view.depth[self.idx])
        sim = " (SIMULATED)" if self.view.simulated else ""
        label = recon_model_label(model)
        self.start_job(engine.reconstruct_one, model, counts,
                       self.view.run_data.grids.row(int(self.view.order[self.idx])), mask_ratio, seed,
                       name="reconstruct", uses_torch=True, show=False, text="Reconstruction",
                       on_success=lambda r: self.recon.show_result(
                           r, f"{self.view.core} at {depth:.1f} mm{sim}: reconstructed by {label}"))

    def _show_training(self) -> None:
        """The Training tab, emptied, with the loss plot: pretraining and adapting fill it live."""
        self.training.reset()
        self.training.loss_plot.setVisible(True)
        self.training.pvm_title.setText("")
        self.tabs.setCurrentWidget(self.training)

    # ---------------------------------------------------------------- pretrain
    pretrain_options: dict = {}   # extra engine.pretrain_project arguments (tests use a small window)

    def pretrain(self) -> None:
        if self.project is None:
            return
        steps, ok = QInputDialog.getInt(self, "Pretrain on this project's spectra",
                                        "Optimizer steps (tiny model; a few hundred for a quick look, "
                                        "many thousands for a real foundation model):", 300, 10, 1_000_000, 50)
        if not ok:
            return
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        from xrfcore.outputs import fresh_folder  # never onto an existing model folder
        out = fresh_folder(models_dir(), f"pretrained-{Path(self.project).stem}-{stamp}")
        self._show_training()

        def done(res):
            self.foundation_path, self.foundation_for = res["path"], self.project
            self.training.metrics.setText(pretrain_summary(res["card"], out))
            QMessageBox.information(self, "Pretraining", f"Model saved in {out}.\nIt is now the base "
                                    "model for fine-tuning and reconstruction in this session.")
        job = self.start_job(engine.pretrain_project, self.project, out, steps=steps,
                             device=self.settings.device, name="pretrain", uses_torch=True,
                             **self.pretrain_options,
                             text="Pretraining", on_success=done)
        job.progress.connect(self.training.add_progress)

    # ---------------------------------------------------------------- adapt
    def offer_adapted(self, project: str) -> None:
        """A model adapted to this project (in this or an earlier session) is the base for
        fine-tuning and reconstruction; one made for another project is dropped on switching."""
        hit = engine.adapted_model(project)
        if hit:
            self.foundation_path, self.foundation_for = hit["path"], project
            self.statusBar().showMessage(f"Fine-tuning starts from {hit['name']}, the model adapted to this "
                                         "project (Advanced > Load model to choose another)", 12000)
        elif self.foundation_for not in (None, project):
            self.foundation_path = self.foundation_for = None

    def adapt(self) -> None:
        """Continue pretraining the base model on this project's spectra; afterwards the adapted
        model is the base for fine-tuning and reconstruction of this session."""
        if self.project is None:
            return
        plan = engine.adapt_plan(self.project, self.settings.device)
        when = (f"About {plan['cpu_minutes']:.0f} min on this computer's CPU; fewer steps go faster "
                "(a GPU, if you have one, is much faster: choose it in Settings)."
                if plan["cpu_minutes"] is not None else f"On the GPU ({plan['device']}).")
        base = self.foundation_path or self.base_model()
        steps, ok = QInputDialog.getInt(
            self, "Adapt the model to this project",
            f"Continue pretraining {Path(str(base)).name} on this project's {plan['n_spectra']} spectra "
            f"(some held out to measure it before and after).\n{when}\nOptimizer steps:",
            plan["steps"], 10, 1_000_000, 50)
        if not ok:
            return
        self._show_training()

        def done(res):
            self.foundation_path, self.foundation_for = res["path"], self.project
            self.training.metrics.setText(f"Adapted model saved in {short_path(res['out'])}.")
            QMessageBox.information(self, "Adapt the model",
                                    "Reconstruction error (masked, lower is better) on held-out spectra, "
                                    f"before and after:\n\n{res['table_text']}\n\n"
                                    + (f"{res['window_text']}\n\n" if res.get("window_text") else "")
                                    + "The adapted model is now the "
                                    "base model for fine-tuning and reconstruction in this session.")
        job = self.start_job(engine.adapt_project, self.project, base=base, steps=steps,
                             device=self.settings.device, name="adapt", uses_torch=True,
                             text="Adapting the model", on_success=done)
        job.progress.connect(self.training.add_progress)

    # ---------------------------------------------------------------- settings, about
    def edit_settings(self) -> None:
        from app.dialogs.settings_dialog import SettingsDialog
        dlg = SettingsDialog(self.settings, self)
        if dlg.exec():
            dlg.apply()

    def about(self) -> None:
        import xrfcore
        QMessageBox.about(self, "About xrfcore",
                          f"xrfcore {xrfcore.__version__}\nXRF core-scanner spectra to downcore CaCO3 and TOC "
                          "with a masked-spectrum foundation model.\nThe bundled sample core and shipped "
                          "model are SIMULATED data.")


def pretrain_summary(card: dict, out) -> str:
    """One line for the Training tab after pretraining: the model's name, its losses (4 significant
    digits), where it was saved."""
    m = card.get("metrics") or {}
    losses = [f"{label} {sig(m[k])}" for k, label in (("train_loss", "final training loss"),
                                                          ("val_loss", "validation loss")) if m.get(k) is not None]
    sim = " Trained on SIMULATED spectra." if card.get("simulated_data") else ""
    steps = (card.get("training") or {}).get("steps")
    return (f"Pretrained {model_name(card, Path(out) / 'model')}"
            + (f" ({steps} steps)" if steps else "") + (": " + ", ".join(losses) if losses else "")
            + f". Saved in {short_path(out)}.{sim}")


def recon_model_label(model) -> str:
    """'xrfcore-tiny-sim-v3 (base model of finetuned-…)' for the reconstruction view's title."""
    from xrfcore import models_registry
    p = Path(model)
    try:
        card = models_registry.read_card(p.with_suffix(".json"))
    except (OSError, ValueError):
        card = {}
    name = model_name(card, p)
    sim = ", SIMULATED training data" if card.get("simulated_data") else ""
    if p.stem == "base_mae":
        return f"{name} (base of the fine-tuned model{sim})"
    return f"{name}{f' ({sim[2:]})' if sim else ''}"
