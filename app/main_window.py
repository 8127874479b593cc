"""Main window: first-run page, project tree (cores -> runs), downcore + spectrum + reconstruction
views, menus, background jobs with a progress bar and Cancel in the status bar."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence, QShortcut
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QInputDialog, QLabel, QListWidget,
                               QMainWindow, QMessageBox, QProgressBar, QPushButton, QSplitter,
                               QStackedWidget, QTabWidget, QTreeWidget, QTreeWidgetItem, QVBoxLayout,
                               QWidget)

from app import engine
from app.cruise_actions import CruiseActions
from app.errors import log_file, report_exception, show_error
from app.model_actions import ModelActions
from app.plot_actions import PlotActions
from app.sampling_actions import SamplingActions
from app.settings import Settings, log_dir, window_size
from app.trace_actions import TraceActions
from app.views.downcore_view import DowncoreView
from app.views.reconstruction_view import ReconstructionView
from app.views.spectrum_view import SpectrumView
from app.views.training_view import TrainingView
from app.workers import JobThread

log = logging.getLogger("xrfcore.app.main")


def interval_words(meta: dict) -> str:
    """How the downcore view names the interval bands: the calibration scheme the prediction used
    (within-core when the core's lab samples trained the model, by-core otherwise)."""
    scheme = (meta or {}).get("interval_scheme")
    level = (meta or {}).get("interval") or "intervals"
    if scheme == "within-core":
        return f"{level} intervals, within-core calibration (this core's lab samples trained the model)"
    if scheme == "by-core":
        return f"{level} intervals, by-core calibration (no lab samples of this core in the model)"
    return "intervals"

class FirstRunPage(QWidget):
    def __init__(self, window: "MainWindow"):
        super().__init__()
        title = QLabel("<h1>xrfcore</h1><p>XRF core-scanner spectra to downcore CaCO<sub>3</sub> and TOC.</p>")
        title.setAlignment(Qt.AlignCenter)
        self.open_folder = QPushButton("Open core folder…")
        self.open_project = QPushButton("Open project…")
        self.open_sample = QPushButton("Open sample core (SIMULATED)")
        self.open_sample.setToolTip("A bundled core series made by the physics simulator: not real data")
        for b in (self.open_folder, self.open_project, self.open_sample):
            b.setMinimumHeight(44)
            b.setMinimumWidth(320)
        self.open_folder.clicked.connect(lambda: window.open_core_folder())
        self.open_project.clicked.connect(lambda: window.open_project_dialog())
        self.open_sample.clicked.connect(lambda: window.open_sample_core())
        self.recent = QListWidget()
        self.recent.setMaximumHeight(140)
        self.recent.itemActivated.connect(lambda it: window.open_project(it.text()))
        self.hint = QLabel("You can also drop a core folder or a project file (.h5) on this window.")
        self.hint.setAlignment(Qt.AlignCenter)
        col = QVBoxLayout()
        col.addStretch(1)
        col.addWidget(title)
        for b in (self.open_folder, self.open_project, self.open_sample):
            col.addWidget(b, 0, Qt.AlignHCenter)
        col.addWidget(QLabel("Recent projects"), 0, Qt.AlignHCenter)
        col.addWidget(self.recent)
        col.addWidget(self.hint)
        col.addStretch(2)
        row = QHBoxLayout(self)
        row.addStretch(1)
        row.addLayout(col, 2)
        row.addStretch(1)

    def set_recent(self, paths: list[str]) -> None:
        self.recent.clear()
        self.recent.addItems([p for p in paths if Path(p).exists()])


class ProgressPanel(QWidget):
    """Status-bar progress of the current background job, with Cancel."""

    def __init__(self):
        super().__init__()
        self.label = QLabel("")
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(220)
        self.cancel_btn = QPushButton("Cancel")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.cancel_btn)
        self.job: JobThread | None = None
        self.cancel_btn.clicked.connect(self._cancel)
        self.hide()

    def attach(self, job: JobThread, text: str) -> None:
        self.job = job
        self.label.setText(text)
        self.bar.setRange(0, 0)
        self.cancel_btn.setEnabled(True)
        job.progress.connect(self.on_progress)
        self.show()

    def on_progress(self, done: int, total: int, msg: str) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(done)
        if msg:
            self.label.setText(msg[:80])

    def detach(self, job: JobThread) -> None:
        if self.job is job:
            self.job = None
            self.hide()

    def _cancel(self) -> None:
        if self.job is not None:
            self.cancel_btn.setEnabled(False)
            self.label.setText("Cancelling…")
            self.job.cancel()


class MainWindow(ModelActions, PlotActions, TraceActions, SamplingActions, CruiseActions, QMainWindow):
    idleChanged = Signal(bool)
    coreShown = Signal()

    def __init__(self, settings: Settings | None = None):
        super().__init__()
        self.settings = settings or Settings.load()
        self.setWindowTitle("xrfcore")
        self.resize(*window_size(self))   # 1400x860, or less on a small screen (1366x768 laptop)
        self.setAcceptDrops(True)
        self.jobs: list[JobThread] = []
        self.project: str | None = None
        self.info: dict = {}
        self.view: engine.CoreView | None = None
        self.idx = 0
        self.model_path: str | None = None          # fine-tuned regressor used by Predict
        self.foundation_path: str | None = None     # masked autoencoder used by Reconstruction
        self.foundation_for: str | None = None      # the project it was pretrained / adapted on, if any
        self.demo = False

        self.first = FirstRunPage(self)
        self.first.set_recent(self.settings.recent_projects)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Project"])
        self.tree.itemClicked.connect(self._on_tree_item)
        self.tree.itemActivated.connect(self._on_tree_item)
        self.downcore = DowncoreView()
        self.downcore.depthClicked.connect(self.select_depth)
        self.spectrum = SpectrumView()
        self.spectrum.stepRequested.connect(self.step)
        self.spectrum.overlayRequested.connect(self.overlay_current)
        self.spectrum.sumRangeRequested.connect(self.sum_depth_range)
        self.recon = ReconstructionView()
        self.recon.requested.connect(self.reconstruct)
        self.training = TrainingView()
        self.training.loss_plot.setVisible(False)   # shown by pretraining and full fine-tuning
        self.tabs = QTabWidget()
        self.tabs.addTab(self.spectrum, "Spectrum")
        self.tabs.addTab(self.recon, "Reconstruction")
        self.tabs.addTab(self.training, "Training")
        self.tabs.currentChanged.connect(self._on_tab)
        right = QSplitter(Qt.Horizontal)
        right.addWidget(self.downcore)
        right.addWidget(self.tabs)
        right.setStretchFactor(0, 2)
        right.setStretchFactor(1, 3)
        right.setSizes([480, 700])
        self.center = right
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.tree)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([220, 1180])
        self.workspace = split
        self.stack = QStackedWidget()
        self.stack.addWidget(self.first)
        self.stack.addWidget(self.workspace)
        self.setCentralWidget(self.stack)

        self.progress = ProgressPanel()
        self.statusBar().addPermanentWidget(self.progress)
        self.banner = QLabel("")
        self.statusBar().addWidget(self.banner)
        for key, d in ((Qt.Key_Down, 1), (Qt.Key_Up, -1), (Qt.Key_PageDown, 10), (Qt.Key_PageUp, -10)):
            sc = QShortcut(QKeySequence(key), self.center)
            sc.setContext(Qt.WidgetWithChildrenShortcut)
            sc.activated.connect(lambda d=d: self.step(d))
        self._cursor_depth = 0.0
        self._cursor_timer = QTimer(self, singleShot=True, interval=40)
        self._cursor_timer.timeout.connect(lambda: self.downcore.set_cursor(self._cursor_depth))
        self._build_menus()
        self._update_actions()
        try:
            self.spectrum.set_lines(engine.line_rows())
        except Exception as exc:  # the line table is a nicety: log, keep going
            log.warning("no emission-line table: %s", exc)

    # ------------------------------------------------------------------ menus
    def _action(self, menu, text, slot, shortcut=None, tip=""):
        a = QAction(text, self)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        if tip:
            a.setStatusTip(tip)
        a.triggered.connect(lambda _checked=False: slot())
        menu.addAction(a)
        return a

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self.act_open_folder = self._action(f, "Open core folder…", self.open_core_folder, "Ctrl+I")
        self._action(f, "Open project…", self.open_project_dialog, "Ctrl+O")
        self._action(f, "Open sample core (SIMULATED)", self.open_sample_core)
        self.recent_menu = f.addMenu("Recent projects")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        f.addSeparator()
        self.act_labels = self._action(f, "Load lab samples…", self.load_lab_samples, "Ctrl+L")
        self.act_export = self._action(f, "Export CSV…", self.export_csv, "Ctrl+E")
        self.act_report = self._action(f, "Import log", self.show_import_log)
        f.addSeparator()
        self._action(f, "Save or copy a plot…", self.save_plot, "Ctrl+Shift+S",
                     tip="PNG, SVG or PDF at a chosen size, or the clipboard, with title and provenance")
        f.addSeparator()
        self._action(f, "Quit", self.close, "Ctrl+Q")
        m = mb.addMenu("&Model")
        self.act_finetune = self._action(m, "Fine-tune…", self.finetune, "Ctrl+T")
        self.act_predict = self._action(m, "Predict", self.predict, "Ctrl+P")
        self.act_suggest = self._action(m, "Suggest sampling depths…", self.suggest_sampling,
                                        tip="Where to take the next lab samples (marked on the downcore view)")
        m.addSeparator()
        self._action(m, "Load model…", self.load_model)
        self.act_save_model = self._action(m, "Save model as…", self.save_model)
        v = mb.addMenu("&View")
        self.build_trace_menu(v)
        self._action(v, "Overlay this depth", self.overlay_current, "Ctrl+D")
        self._action(v, "Sum depth range…", self.sum_depth_range)
        self.build_cruise_menu(mb)   # import / predict / export all cores, compare two (cruise_actions)
        adv = mb.addMenu("&Advanced")
        self.act_adapt = self._action(adv, "Adapt the model to this project…", self.adapt)
        self.act_pretrain = self._action(adv, "Pretrain on this project's spectra…", self.pretrain)
        self._action(adv, "Settings…", self.edit_settings)
        # the operator's journey, left to right, one click each
        tb = self.addToolBar("Journey")
        tb.setObjectName("journey")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonTextOnly)
        for a in (self.act_open_folder, self.act_labels, self.act_finetune, self.act_predict, self.act_export):
            tb.addAction(a)
        self.toolbar = tb
        h = mb.addMenu("&Help")
        self._action(h, "Open log folder", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(log_dir()))))
        self._action(h, "About", self.about)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent_projects:
            if Path(p).exists():
                self._action(self.recent_menu, p, lambda p=p: self.open_project(p))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def _update_actions(self) -> None:
        has_core = self.view is not None
        for a in (self.act_labels, self.act_report, self.act_adapt, self.act_pretrain):
            a.setEnabled(self.project is not None)
        # fine-tuning needs lab samples that match this core's spectra: say why it is off
        n_lab = engine.matched_lab_samples(self.view) if has_core else 0
        if self.project is None:
            why = "Open a project first"
        elif not has_core:
            why = "Import a core and load its lab samples first"
        elif n_lab == 0:
            why = (f"Fine-tuning needs lab samples of {self.view.core}: none loaded yet "
                   "(File > Load lab samples…)" if not len(self.view.labels) else
                   f"Fine-tuning needs lab samples of {self.view.core}: none of the loaded ones lies "
                   "within the core's scanned depths (check their depth unit)")
        else:
            why = ""
        self.act_finetune.setEnabled(not why)
        self.act_finetune.setToolTip(why or f"Fine-tune a model on the {n_lab} lab samples of {self.view.core}")
        self.act_finetune.setStatusTip(why)
        self.act_predict.setEnabled(has_core and self.model_path is not None)
        self.act_suggest.setEnabled(has_core)
        self.act_export.setEnabled(has_core and bool(self.view and self.view.predictions))
        self.act_save_model.setEnabled(self.model_path is not None)
        self.update_cruise_actions()

    # ------------------------------------------------------------------ jobs
    def start_job(self, fn, *args, name: str, text: str, on_success=None, on_failed=None,
                  on_cancelled=None, uses_torch=False, show=True, **kwargs) -> JobThread:
        job = JobThread(fn, *args, name=name, uses_torch=uses_torch, parent=self, **kwargs)
        self.jobs.append(job)
        if on_success is not None:
            job.succeeded.connect(on_success)
        job.failed.connect(on_failed or (lambda msg, t=text: self._job_failed(t, msg)))
        if on_cancelled is not None:
            job.cancelled.connect(on_cancelled)
        else:
            job.cancelled.connect(lambda t=text: self.statusBar().showMessage(f"{t}: cancelled", 5000))
        job.finished.connect(lambda j=job: self._job_finished(j))
        if show:
            self.progress.attach(job, text)
        self.idleChanged.emit(False)
        job.start()
        return job

    def _job_failed(self, what: str, message: str) -> None:
        # already logged with its traceback by the worker
        QMessageBox.critical(self, what, f"{what} failed:\n{message}\n\nDetails are in the log:\n{log_file()}")

    def _job_finished(self, job: JobThread) -> None:
        self.progress.detach(job)
        if job in self.jobs:
            self.jobs.remove(job)
        job.deleteLater()
        if not self.jobs:
            self.idleChanged.emit(True)

    def warm_up(self) -> None:
        """Import torch in the background once (slow the first time) and learn whether CUDA exists."""
        def ok(info):
            self.cuda_available = info["cuda"]
        self.start_job(engine.warm_up, name="warm-up", text="Starting", show=False, uses_torch=True,
                       on_success=ok, on_failed=lambda m: log.warning("torch warm-up failed: %s", m))

    def is_idle(self) -> bool:
        return not self.jobs

    def busy_with(self, name: str) -> bool:
        return any(j.name == name for j in self.jobs)

    def closeEvent(self, ev) -> None:
        for j in list(self.jobs):
            j.cancel()
        for j in list(self.jobs):
            j.wait(10000)
        self.settings.save()
        super().closeEvent(ev)

    # ------------------------------------------------------------------ opening
    def open_core_folder(self, folder: str = "") -> None:
        from app.dialogs.import_dialog import ImportDialog
        if not folder:
            folder = QFileDialog.getExistingDirectory(self, "Open core folder")
            if not folder:
                return
        dlg = ImportDialog(self, folder=folder, current_project=self.project,
                           projects_folder=self.settings.project_folder(),
                           section_unit=self.settings.section_unit)
        self.import_dialog = dlg
        if dlg.exec() and dlg.project_path:
            self.settings.section_unit = dlg.unit_combo.currentData()
            self.open_project(dlg.project_path)
        elif dlg.outcome in ("cancelled", "failed"):
            self.statusBar().showMessage(f"Import {dlg.outcome}; the project is unchanged", 10000)

    def open_project_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", str(self.settings.project_folder()),
                                              "xrfcore projects (*.h5);;All files (*)")
        if path:
            self.open_project(path)

    def open_sample_core(self) -> None:
        """The bundled simulated core, imported with its labels into a fresh folder of this session's
        own (never the user's data folder, never a demo project someone else left behind)."""
        folder = engine.sample_core_folder()
        if folder is None:
            show_error(self, "Sample core", "The bundled sample core was not found in this installation.")
            return
        self.demo = True
        project = getattr(self, "demo_project", None)
        if project is not None and project.exists():   # opened earlier in this session
            self.open_project(str(project))
            return
        project = self.demo_project = engine.demo_project_path()
        labels = engine.sample_labels_file(folder)
        self.start_job(engine.import_with_labels, str(folder), str(project), labels_csv=labels,
                       name="import-sample", text="Importing the sample core (SIMULATED)",
                       on_success=lambda _r: self.open_project(str(project)))

    def open_project(self, path: str) -> None:
        path = str(Path(path).resolve())
        if self.stack.currentIndex() == 0:
            # lay out and paint the (empty) workspace while the worker reads the file
            self.downcore.set_title(f"Opening {Path(path).name}…")
            self.stack.setCurrentIndex(1)
        self.start_job(engine.open_project, path, name="open", text=f"Opening {Path(path).name}",
                       on_success=lambda res: self._on_project_info(path, *res),
                       on_failed=self._open_failed)

    def _open_failed(self, message: str) -> None:
        if self.project is None:
            self.stack.setCurrentIndex(0)
        self.downcore.set_title(f"{self.view.core} · {self.view.run}" if self.view else "No core open")
        self._job_failed("Opening the project", message)

    def _on_project_info(self, path: str, info: dict, view: engine.CoreView | None = None) -> None:
        self.project, self.info = path, info
        self.offer_adapted(path)
        self.settings.add_recent(path)
        self.settings.save()
        self.first.set_recent(self.settings.recent_projects)
        self.tree.clear()
        root = QTreeWidgetItem([Path(path).name])
        root.setToolTip(0, path)
        self.tree.addTopLevelItem(root)
        first = None
        for c in info.get("cores", []):
            citem = QTreeWidgetItem([f"{c['core']}  ({c['spectra']} spectra)"])
            citem.setData(0, Qt.UserRole, (c["core"], None))
            root.addChild(citem)
            for r in c["runs"]:
                ritem = QTreeWidgetItem([f"{r['run']}  ({r['spectra']})"])
                ritem.setData(0, Qt.UserRole, (c["core"], r["run"]))
                citem.addChild(ritem)
            for mid in c.get("predictions", []):
                pitem = QTreeWidgetItem([f"prediction: {mid}"])
                pitem.setToolTip(0, f"Lab targets predicted by model {mid}: click to show it")
                pitem.setData(0, Qt.UserRole, (c["core"], "prediction:" + mid))
                citem.addChild(pitem)
            if first is None and c["runs"]:
                first = (c["core"], engine.default_run([r["run"] for r in c["runs"]]))
        self.tree.expandAll()
        self.stack.setCurrentIndex(1)
        self.setWindowTitle(f"xrfcore: {Path(path).name}")
        if first is None:
            self.banner.setText("The project has no spectra yet: import a core folder.")
        elif view is not None:
            self.show_core(view)
        else:
            self.load_core(*first)
        self._update_actions()

    def _on_tree_item(self, item, _col=0) -> None:
        data = item.data(0, Qt.UserRole)
        if not data or self.project is None:
            return
        core, run = data
        if run is None:
            runs = self.info.get("runs", {}).get(core, [])
            run = engine.default_run(runs)
        if run and run.startswith("prediction:"):
            self.show_prediction(core, run.split(":", 1)[1])
            return
        if run and (self.view is None or (self.view.core, self.view.run) != (core, run)):
            self.load_core(core, run)

    def load_core(self, core: str, run: str) -> None:
        self.start_job(engine.load_core, self.project, core, run, name="load",
                       text=f"Reading {core} {run}", on_success=self.show_core)

    def show_core(self, view: engine.CoreView) -> None:
        self.view = view
        n = len(view.depth)
        sim = "  [SIMULATED data]" if view.simulated else ""
        self.downcore.clear()
        self.downcore.set_title(f"{view.core} · {view.run} · {n} spectra{sim}")
        self.downcore.set_depths(view.depth)
        try:
            e = engine.energies_of(view.run_data.grid)
        except Exception as exc:
            log.warning("energy grid unavailable: %s", exc)
            e = np.arange(view.run_data.counts.shape[1], dtype=float)
        kv = view.run_data.meta["kv"].to_numpy(float) if "kv" in view.run_data.meta else np.array([])
        kv = kv[np.isfinite(kv)]
        self.spectrum.set_energies(e, max_kev=float(kv.max()) + 1.0 if len(kv) else None)
        self.recon.set_energies(e)
        self.spectrum.clear_overlays()
        self.show_labels()
        if view.prediction is not None:
            self._draw_prediction(view.prediction, view.prediction_meta)
            if not self.model_path:
                # the model that made the stored predictions, when it is installed: Predict and
                # the reconstruction view (its base autoencoder) use it again
                df = view.prediction
                mid = (view.prediction_meta or {}).get("model_id") or (
                    str(df["model_id"].iloc[0]) if "model_id" in df and len(df) else "")
                found = engine.find_model_by_id(mid)
                if found:
                    self.set_model(found)
        self.draw_traces_and_sections()
        self.idx = 0
        self._banner_base = (("SIMULATED sample core: not real measurements.  " if view.simulated else "")
                             + f"{view.core}: {n} spectra, depth "
                             + (f"{view.depth[0]:.0f}-{view.depth[-1]:.0f} mm" if n else "-"))
        self.refresh_banner()
        if n:
            self.set_index(0)
        self._update_actions()
        self.coreShown.emit()

    def refresh_banner(self) -> None:
        self.banner.setText(getattr(self, "_banner_base", "") + self.next_step_hint())

    def next_step_hint(self) -> str:
        """What to do next on this core, for the status bar (empty once it is predicted)."""
        v = self.view
        if v is None or v.prediction is not None:
            return ""
        if not len(v.labels):
            return ".  Next: Load lab samples…"
        if not self.model_path:
            base = self.foundation_path or self.base_model()
            name = Path(base).name if base else ""
            return (f".  Next: Fine-tune… ({len(v.labels)} lab samples"
                    + (f", foundation model {name})" if name else ")"))
        return ".  Next: Predict"

    def show_labels(self) -> None:
        v = self.view
        if v is None:
            return
        labs = v.labels
        self.downcore.set_targets(engine.view_targets(v))  # a panel per target (CaCO3, TOC, Fe...)
        for t in self.downcore.targets():
            if len(labs) and t in labs.columns:
                top = labs["depth_top_mm"] if "depth_top_mm" in labs else None
                bot = labs["depth_bottom_mm"] if "depth_bottom_mm" in labs else None
                self.downcore.set_lab_samples(t, labs["depth_mm"], labs[t], top, bot)
            else:
                self.downcore.set_lab_samples(t, [], [])

    def _draw_prediction(self, df, meta: dict) -> None:
        if self.view is not None and set(self.downcore.targets()) != set(engine.view_targets(self.view)):
            self.show_labels()  # new panels for the prediction's targets, with the lab samples
        for t in self.downcore.targets():
            if t in df.columns:
                self.downcore.set_prediction(t, df["depth_mm"], df[t], df.get(f"{t}_lo"), df.get(f"{t}_hi"))
        if "ood_flag" in df.columns:
            self.downcore.set_ood(df["depth_mm"], df["ood_flag"].astype(bool),
                                  reasons=df["ood_reason"] if "ood_reason" in df.columns else None)
        mid = meta.get("model_id") or (df["model_id"].iloc[0] if "model_id" in df and len(df) else "")
        sim = " (SIMULATED)" if meta.get("simulated") or (self.view and self.view.simulated) else ""
        self.downcore.set_title(f"{self.view.core} · {self.view.run} · predicted by {mid}{sim}; "
                                f"bands: {interval_words(meta)}, red points: lab samples, orange: out of distribution")
        self.downcore.set_interval_text(interval_words(meta).split(" (")[0])
        self.downcore.set_stale(meta.get("stale_reasons") or [])

    def show_prediction(self, core: str, model_id: str) -> None:
        if self.view is None or self.view.core != core:
            return
        df, meta = engine.read_predictions(self.project, core, model_id)
        self.view.prediction, self.view.prediction_meta = df, meta
        self._draw_prediction(df, meta)

    # ------------------------------------------------------------------ depth stepping
    def set_index(self, i: int) -> None:
        v = self.view
        if v is None or not len(v.depth):
            return
        self.idx = int(np.clip(i, 0, len(v.depth) - 1))
        row = int(v.order[self.idx])
        counts = v.run_data.counts[row]
        meta = v.run_data.meta
        sec = meta["section"].iat[row] if "section" in meta else ""
        pos = meta["position_mm"].iat[row] if "position_mm" in meta else np.nan
        self.spectrum.show_spectrum(counts, f"{v.core}  depth {v.depth[self.idx]:.1f} mm  "
                                            f"(section {sec}, position {pos:.1f} mm)  "
                                            + engine.energy_text(v.run_data, row)
                                    + ("  SIMULATED" if v.simulated else ""))
        # the downcore cursor follows at most every 40 ms: when a key is held, the spectrum
        # redraw keeps the frame rate and the cursor catches up (moving it repaints three panels)
        self._cursor_depth = float(v.depth[self.idx])
        if not self._cursor_timer.isActive():
            self._cursor_timer.start()
        if self.tabs.currentWidget() is self.recon and self.recon.isVisible():
            self._recon_timer_start()

    def step(self, delta: int) -> None:
        self.set_index(self.idx + delta)

    def select_depth(self, depth_mm: float) -> None:
        if self.view is None or not len(self.view.depth):
            return
        self.set_index(int(np.argmin(np.abs(self.view.depth - depth_mm))))

    def current_counts(self) -> np.ndarray | None:
        if self.view is None or not len(self.view.depth):
            return None
        return self.view.run_data.counts[int(self.view.order[self.idx])]

    def overlay_current(self) -> None:
        c = self.current_counts()
        if c is not None:
            self.spectrum.add_overlay(c, f"{self.view.depth[self.idx]:.1f} mm")

    def sum_depth_range(self) -> None:
        if self.view is None:
            return
        text, ok = QInputDialog.getText(self, "Sum depth range", "Depth range in mm (from-to):",
                                        text=f"{self.view.depth[self.idx]:.0f}-{self.view.depth[self.idx] + 100:.0f}")
        if not ok:
            return
        try:
            a, b = (float(x) for x in text.replace(" ", "").split("-", 1))
        except ValueError:
            show_error(self, "Sum depth range", f"Not a depth range: {text!r} (write e.g. 100-250)")
            return
        self.add_sum_overlay(min(a, b), max(a, b))

    def add_sum_overlay(self, a: float, b: float) -> None:
        v = self.view

        def done(res):
            counts, n = res
            if n == 0:
                show_error(self, "Sum depth range", f"No spectra between {a:g} and {b:g} mm.")
                return
            self.spectrum.add_overlay(counts, f"sum {a:g}-{b:g} mm ({n} spectra)")
        self.start_job(engine.sum_range, self.project, v.core, v.run, a, b, name="sum",
                       text="Summing spectra", on_success=done)

    # ------------------------------------------------------------------ tabs
    def _on_tab(self, _i: int) -> None:
        if self.tabs.currentWidget() is self.recon:
            self._recon_timer_start()

    def _recon_timer_start(self) -> None:
        if not hasattr(self, "_recon_timer"):
            self._recon_timer = QTimer(self, singleShot=True, interval=150)
            self._recon_timer.timeout.connect(lambda: self.reconstruct(self.recon.mask_ratio(), self.recon.seed))
        self._recon_timer.start()

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, ev) -> None:
        urls = ev.mimeData().urls() if ev.mimeData().hasUrls() else []
        if urls and urls[0].isLocalFile():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        p = Path(ev.mimeData().urls()[0].toLocalFile())
        ev.acceptProposedAction()
        # leave the drop handler before a modal dialog opens
        if p.is_dir():
            QTimer.singleShot(0, lambda: self.open_core_folder(str(p)))
        elif p.suffix.lower() in (".h5", ".hdf5"):
            QTimer.singleShot(0, lambda: self.open_project(str(p)))
        else:
            QTimer.singleShot(0, lambda: show_error(self, "Open", f"{p.name}: drop a core folder or a project file (.h5)."))

    # ------------------------------------------------------------------ lab samples, import log
    def load_lab_samples(self, path: str = "") -> None:
        from app.dialogs.labels_dialog import LabelsDialog
        if self.project is None:
            return
        if not path:
            from xrfcore.labtables import FILE_FILTER
            path, _ = QFileDialog.getOpenFileName(self, "Lab samples", "", f"{FILE_FILTER};;All files (*)")
            if not path:
                return
        try:
            dlg = LabelsDialog(path, self.project, self, default_core=self.view.core if self.view else "")
        except Exception as exc:  # noqa: BLE001
            report_exception(self, "Lab samples", exc)
            return
        self.labels_dialog = dlg
        dlg.check()
        if dlg.exec() and dlg.lab is not None:
            self.start_job(engine.store_labels, self.project, dlg.lab, name="labels",
                           text="Saving lab samples", on_success=self._labels_saved)

    def _labels_saved(self, n: int) -> None:
        self.statusBar().showMessage(f"{n} lab samples saved in the project", 5000)
        if self.view is not None:
            self.load_core(self.view.core, self.view.run)

    def show_import_log(self) -> None:
        from app.dialogs.report_dialog import ReportDialog
        from xrfcore import store
        try:
            with store.Project.open(self.project) as p:
                df = p.import_log()
        except Exception as exc:  # noqa: BLE001
            report_exception(self, "Import log", exc)
            return
        ReportDialog("Import log", df, f"{len(df)} files in the import log", self,
                     csv_name="import-log.csv").exec()
