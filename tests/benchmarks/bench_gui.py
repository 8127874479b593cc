"""GUI benchmark (not collected by pytest): run  .venv/bin/python tests/benchmarks/bench_gui.py

1. Open a project holding a 10,000-spectrum core and show it (target < 1 s); reference: the bare
   store read of the same run (the floor any viewer pays).
2. Step through depths, redrawing the spectrum and the downcore cursor (target >= 30 frames/s);
   reference: the same number of bare setData calls without painting.
3. Longest event-loop stall while a real fine-tune runs in its worker thread (10 ms QTimer, target
   < 100 ms); reference: the same measurement with nothing running.
Options: --spectra N (default 10000), --quick (1,000 spectra, fewer steps).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402


def make_project(path: Path, n: int, seed: int = 0) -> None:
    """A core of n spectra at 1 cm: the sample core's spectra with fresh Poisson noise, tiled."""
    from xrfcore import importer, store
    from xrfcore.io.records import SpectrumRecord
    tmp = path.with_name("sample.h5")
    importer.import_folder(REPO / "resources" / "sample_core", tmp)
    with store.Project.open(tmp) as p:
        rd = p.read_run("SIM01-1", "10kV-Run1")
    rng = np.random.default_rng(seed)
    base = rd.counts.astype(float)
    recs = []
    for i in range(n):
        c = rng.poisson(base[i % len(base)]).astype(np.int32)
        recs.append(SpectrumRecord(counts=c, source_path=f"bench/{i:05d}.spe", sha256=f"{i:064x}",
                                   scanner="simulated-avaatech", core="BENCH-1", section=f"{i // 100:05d}",
                                   section_top_mm=float(i // 100 * 1000), position_mm=float(i % 100 * 10 + 5),
                                   depth_mm=float(i * 10 + 5), kv=10.0, current_ua=200.0, live_s=10.0,
                                   real_s=11.0, run=1, run_label="Run 1 at  10kV", gain_kev=0.02, offset_kev=0.0))
    store.add_records(path, recs, "benchmark core (SIMULATED)")
    tmp.unlink()


def pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


def bench_open(app, win, project: Path) -> dict:
    from xrfcore import store
    t = time.perf_counter()
    with store.Project.open(project) as p:
        rd = p.read_run("BENCH-1", "10kV-Run1")
    t_read = time.perf_counter() - t
    shown = []
    win.coreShown.connect(lambda: shown.append(time.perf_counter()))
    t0 = time.perf_counter()
    win.open_project(str(project))
    while not shown:
        app.processEvents()
        time.sleep(0.001)
    win.repaint()
    app.processEvents()
    t_open = time.perf_counter() - t0
    return {"n": len(rd), "read_s": t_read, "open_s": t_open}


def bench_steps(app, win, steps: int) -> dict:
    """Arrow-key stepping as the user sees it: step, then let Qt paint what changed. Paint events
    of the spectrum's viewport are counted so a frame that was never drawn cannot count."""
    from PySide6.QtCore import QEvent, QObject

    class PaintCounter(QObject):
        n = 0

        def eventFilter(self, obj, ev):
            if ev.type() == QEvent.Paint:
                PaintCounter.n += 1
            return False
    counter = PaintCounter()
    win.spectrum.plot.viewport().installEventFilter(counter)
    win.tabs.setCurrentWidget(win.spectrum)
    win.set_index(0)
    pump(app, 0.2)
    PaintCounter.n = 0
    t = time.perf_counter()
    for i in range(steps):
        win.step(1)
        app.processEvents()
    fps = steps / (time.perf_counter() - t)
    painted = PaintCounter.n
    pump(app, 0.1)
    counts = win.view.run_data.counts
    e = win.spectrum.energies
    t = time.perf_counter()
    for i in range(steps):
        win.spectrum.curve.setData(e, np.maximum(counts[i], 0.5))
    bare = steps / (time.perf_counter() - t)
    return {"fps": fps, "painted": painted, "bare_setdata_per_s": bare}


WHY = False   # --why: print what the threads were doing during each stall over 150 ms


def measure_gaps(app, seconds: float, until=None) -> list[float]:
    import threading
    import traceback
    from PySide6.QtCore import QTimer
    gaps, last = [], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now
    timer = QTimer(interval=10)
    timer.timeout.connect(tick)
    timer.start()
    stop = threading.Event()

    def watchdog(main_id=threading.get_ident()):
        seen = 0.0
        while not stop.wait(0.03):
            if time.perf_counter() - last[0] > 0.15 and last[0] != seen:
                seen = last[0]
                for tid, fr in sys._current_frames().items():
                    if tid != threading.get_ident():
                        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in
                                            reversed(traceback.extract_stack(fr)[-6:]))
                        print(f"    stall: {'GUI' if tid == main_id else 'worker'} at {where}")
    if WHY:
        threading.Thread(target=watchdog, daemon=True).start()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and (until is None or not until()):
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    stop.set()
    return gaps


def base_model(tmp: Path) -> tuple[str, str]:
    from app import engine
    default = engine.default_foundation_model()   # the app's default: the shipped model
    if default:
        return default, f"default {Path(default).name}"
    import torch
    from xrfcore.model import checkpoint
    from xrfcore.model.config import ModelConfig
    from xrfcore.model.mae import MaskedAutoencoderViT
    from xrfcore.model.transforms import make_transform
    torch.manual_seed(0)
    out = tmp / "tiny_mae"
    checkpoint.save(out, MaskedAutoencoderViT(ModelConfig.preset("tiny")),
                    {"transform": make_transform("zscore").to_dict(), "simulated_data": True})
    return str(out), "random-init tiny (no shipped model found)"


def bench_finetune_stall(app, win, tmp: Path, mode: str, epochs: int) -> dict:
    from app.dialogs.finetune_dialog import FinetuneDialog
    from xrfcore import importer, labels
    proj = tmp / "ft.h5"
    if not proj.exists():
        importer.import_folder(REPO / "resources" / "sample_core", proj)
        lab = labels.read_lab_csv(next((REPO / "resources" / "sample_core").rglob("*lab_samples*.csv")))
        from app import engine
        engine.store_labels(proj, lab)
    model, kind = base_model(tmp)
    idle = measure_gaps(app, 1.0)
    d = FinetuneDialog(str(proj), win, device="cpu", base_model=model, cuda=False)
    (d.head if mode == "head" else d.full).setChecked(True)
    d.epochs.setValue(epochs)
    t = time.perf_counter()
    d.start()
    gaps = measure_gaps(app, 600, until=lambda: d.outcome != "")
    wall = time.perf_counter() - t
    if d.outcome != "ok":
        raise SystemExit(f"fine-tune did not finish: {d.outcome} {d.status.text()}")
    d.job.wait()
    d.deleteLater()
    return {"mode": mode, "model": kind, "wall_s": wall, "idle_max_ms": 1000 * max(idle),
            "max_ms": 1000 * max(gaps), "p99_ms": 1000 * float(np.percentile(gaps, 99)),
            "ticks": len(gaps)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spectra", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full-epochs", type=int, default=3)
    ap.add_argument("--why", action="store_true", help="print where the threads were in each long stall")
    args = ap.parse_args()
    global WHY
    WHY = args.why
    if args.quick:
        args.spectra, args.steps = 1000, 100
    tmp = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    os.environ["XRFCORE_HOME"] = str(tmp / "home")
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    from app.main_window import MainWindow
    import torch
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, Qt platform {app.platformName()}")

    project = tmp / "bench.h5"
    t = time.perf_counter()
    make_project(project, args.spectra)
    print(f"built a {args.spectra}-spectrum core project in {time.perf_counter() - t:.1f} s "
          f"({project.stat().st_size / 1e6:.0f} MB)")
    win = MainWindow()
    win.resize(1400, 860)
    win.show()
    app.processEvents()

    # as at start-up: torch and the training modules are imported in a worker first
    win.warm_up()
    while not win.is_idle():
        app.processEvents()
        time.sleep(0.01)
    o = bench_open(app, win, project)
    print(f"[open]  {o['n']} spectra: open + show {o['open_s'] * 1000:.0f} ms (target < 1000 ms); "
          f"bare store read {o['read_s'] * 1000:.0f} ms; ratio open/read {o['open_s'] / o['read_s']:.2f}")
    s = bench_steps(app, win, args.steps)
    print(f"[step]  {s['fps']:.0f} frames/s redrawing the spectrum ({s['painted']} paints for {args.steps} steps; "
          f"downcore cursor follows every 40 ms) (target >= 30); bare setData "
          f"{s['bare_setdata_per_s']:.0f}/s; ratio {s['fps'] / s['bare_setdata_per_s']:.2f}")
    for mode, epochs in (("head", 0), ("full", args.full_epochs)):
        r = bench_finetune_stall(app, win, tmp, mode, max(epochs, 1))
        print(f"[stall] fine-tune {mode} ({r['model']} base model, {r['wall_s']:.1f} s): longest event-loop "
              f"gap {r['max_ms']:.0f} ms (target < 100 ms), p99 {r['p99_ms']:.0f} ms over {r['ticks']} ticks; "
              f"idle reference {r['idle_max_ms']:.0f} ms; ratio {r['max_ms'] / max(r['idle_max_ms'], 1e-3):.1f}")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
