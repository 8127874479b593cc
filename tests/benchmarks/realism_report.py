"""Realism report: simulated element areas vs real Avaatech 10 kV exports (tables + PNG).

Run from the repository root (needs ../shared/reference/realdata; pyqtgraph draws the PNG
offscreen; xrfcore itself never imports Qt):

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/benchmarks/realism_report.py \
        [--real ../shared/reference/realdata] [--png xrfcore/simulate/realism.png]

Prints the markdown tables used in xrfcore/simulate/REALISM.md.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import argparse
from pathlib import Path

import numpy as np

from xrfcore.simulate import realism
from xrfcore.simulate.forward import simulator_for
from xrfcore.simulate.heads import Head, get_head
from xrfcore.simulate.sediment import reference_composition

PLOT_ELEMENTS = ("Mg", "Al", "Si", "P", "S", "Cl", "Ar", "K", "Ca", "Ti", "Mn", "Fe", "Rh-La", "Ba-La")


def fmt(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 1e4 else f"{x:.2e}".replace("e+0", "e")


def tables(real, pops: dict[str, dict]) -> str:
    lines = []
    names = list(pops)
    rows = {n: {r["element"]: r for r in realism.compare(real, pops[n])} for n in names}
    lines.append("| element | real LAM+ (200 uA) p5..p95 | all exports p5..p95 | "
                 + " | ".join(f"sim median ({n})" for n in names) + " |")
    lines.append("|---|---|---|" + "---|" * len(names))
    for el in realism.ELEMENTS + ("throughput", "real_live"):
        r0 = rows[names[0]].get(el)
        if r0 is None:
            continue
        lam = f"{fmt(r0['real_lo'])} .. {fmt(r0['real_hi'])}" if "real_lo" in r0 else "-"
        allr = f"{fmt(r0['all_lo'])} .. {fmt(r0['all_hi'])}" if "all_lo" in r0 else "-"
        cells = []
        for n in names:
            r = rows[n][el]
            ok = []
            if "inside" in r:
                ok.append("L" if r["inside"] else "l")
            if "all_inside" in r:
                ok.append("A" if r["all_inside"] else "a")
            cells.append(f"{fmt(r['sim'][1])} {''.join(ok)}")
        lines.append(f"| {el} | {lam} | {allr} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| element | real ratio to Fe p5..p95 (all exports) | "
                 + " | ".join(f"sim ratio median ({n})" for n in names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for el in realism.ELEMENTS:
        r0 = rows[names[0]].get(el)
        if r0 is None or "sim_ratio" not in r0:
            continue
        cells = [f"{rows[n][el]['sim_ratio'][1]:.3g} {'in' if rows[n][el]['ratio_inside'] else 'OUT'}" for n in names]
        lines.append(f"| {el} | {r0['real_ratio_lo']:.3g} .. {r0['real_ratio_hi']:.3g} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| file | n | " + " | ".join(PLOT_ELEMENTS) + " | throughput |")
    lines.append("|---|---|" + "---|" * (len(PLOT_ELEMENTS) + 1))
    for name, rec in real.items():
        cells = [fmt(float(np.nanmedian(rec[e]))) if e in rec else "-" for e in PLOT_ELEMENTS]
        lines.append(f"| {name}{'' if rec['absolute'] else ' *'} | {rec['n']} | " + " | ".join(cells)
                     + f" | {fmt(float(np.nanmedian(rec['throughput'])))} |")
    return "\n".join(lines)


PROTOTYPE = dict(film_um=2.0, air_fraction=0.05, det_be_um=12.5, psi1_deg=45.0, psi2_deg=45.0, rhl_scale=1.0,
                 geometry=1.6e-4, dead_time_us=1.8)


def attribution() -> str:
    """Ratios to Fe of a PAAS clay (8 % CaCO3, 55 % water), prototype head -> tuned head, one change at a time."""
    from xrfcore.simulate.forward import Simulator, line_counts

    w = reference_composition("terrigenous clay")
    tuned = get_head("avaatech-a")
    steps = [("prototype (spec defaults)", {})]
    cum = {}
    for label, key in (("+ film 2 -> 6 um", "film_um"), ("+ air 0.05 -> 0.12", "air_fraction"),
                       ("+ detector Be 12.5 -> 25 um", "det_be_um"), ("+ angles 45/45 -> 50/40 deg", "psi"),
                       ("+ Rh L x1.0 -> x1.3", "rhl_scale")):
        if key == "psi":
            cum.update(psi1_deg=tuned.psi1_deg, psi2_deg=tuned.psi2_deg)
        else:
            cum[key] = getattr(tuned, key)
        steps.append((label, dict(cum)))
    els = ("Al", "Si", "S", "Cl", "Ar", "K", "Ti", "Rh-La")
    out = ["| head | " + " | ".join(f"{e}/Fe" for e in els) + " |", "|---|" + "---|" * len(els)]
    for label, kw in steps:
        head = Head(name="x", **{**PROTOTYPE, **kw, "ar_view_cm": tuned.ar_view_cm})
        lc = line_counts(Simulator(head), w)
        out.append(f"| {label} | " + " | ".join(f"{lc[e][0] / lc['Fe'][0]:.3f}" for e in els) + " |")
    return "\n".join(out)


def draw_png(real, pop: dict, path: Path, title: str) -> None:
    import pyqtgraph as pg
    from pyqtgraph.exporters import ImageExporter
    from pyqtgraph.Qt import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    pg.setConfigOptions(background="w", foreground="k", antialias=True)
    win = pg.GraphicsLayoutWidget()
    win.resize(1300, 1000)
    win.show()
    els = [e for e in PLOT_ELEMENTS if e in pop]
    ticks = [[(i, e) for i, e in enumerate(els)]]
    colours = [(120, 120, 120), (200, 120, 0), (0, 150, 0), (150, 0, 150), (0, 120, 200), (200, 0, 0),
               (90, 60, 30)]

    def panel(row: int, ratio: bool, label: str):
        p = win.addPlot(row=row, col=0, title=label)
        p.getAxis("bottom").setTicks(ticks)
        p.setLabel("left", "log10 ratio to Fe-Ka" if ratio else "log10 counts per 10 s (200 uA)")
        p.showGrid(y=True, alpha=0.3)
        for k, (name, rec) in enumerate(real.items()):
            if not ratio and not rec["absolute"]:
                continue
            xs, lo, hi, med = [], [], [], []
            for i, e in enumerate(els):
                if e not in rec or (ratio and e == "Fe"):
                    continue
                v = rec[e] / rec["Fe"] if ratio else rec[e]
                v = v[np.isfinite(v) & (v > 0)]
                if len(v) < 5:
                    continue
                xs.append(i - 0.3 + 0.08 * k)
                q = np.log10(np.percentile(v, [5, 50, 95]))
                lo.append(q[0]); med.append(q[1]); hi.append(q[2])
            xs, lo, med, hi = map(np.array, (xs, lo, med, hi))
            col = colours[k % len(colours)]
            p.addItem(pg.ErrorBarItem(x=xs, y=med, top=hi - med, bottom=med - lo, pen=pg.mkPen(col, width=2)))
            p.addItem(pg.ScatterPlotItem(x=xs, y=med, size=5, brush=pg.mkBrush(col), pen=None, name=name))
        xs, lo, med, hi = [], [], [], []
        for i, e in enumerate(els):
            if ratio and e == "Fe":
                continue
            v = pop[e] / pop["Fe"] if ratio else pop[e]
            v = v[np.isfinite(v) & (v > 0)]
            q = np.log10(np.percentile(v, [5, 50, 95]))
            xs.append(i + 0.3); lo.append(q[0]); med.append(q[1]); hi.append(q[2])
        xs, lo, med, hi = map(np.array, (xs, lo, med, hi))
        p.addItem(pg.ErrorBarItem(x=xs, y=med, top=hi - med, bottom=med - lo, pen=pg.mkPen((0, 0, 230), width=4)))
        p.addItem(pg.ScatterPlotItem(x=xs, y=med, size=11, symbol="s", brush=pg.mkBrush(0, 0, 230), pen=None))
        return p

    panel(0, False, f"{title}: element areas, real LAM+ xlsx files (thin, p5-median-p95) vs SIMULATED (blue squares)")
    panel(1, True, "Ratio to Fe: all real exports (thin; bAxil lake cores included) vs SIMULATED (blue squares)")
    # a simulated spectrum of a terrigenous clay, log counts
    sim = simulator_for(get_head("avaatech-a"))
    res = sim.simulate(reference_composition("terrigenous clay"), rng=np.random.default_rng(0))
    e = sim.head.offset + sim.head.gain * np.arange(sim.head.channels)
    p = win.addPlot(row=2, col=0, title="SIMULATED spectrum, terrigenous clay (8 % CaCO3, 55 % water), 10 kV 200 uA 10 s live")
    p.plot(e[e < 12], np.log10(np.maximum(res.counts[0][e < 12], 0.5)), pen=pg.mkPen((0, 0, 0), width=1))
    p.setLabel("bottom", "energy (keV)")
    p.setLabel("left", "log10 counts")
    app.processEvents()
    ex = ImageExporter(win.scene())
    ex.parameters()["width"] = 1300
    path.parent.mkdir(parents=True, exist_ok=True)
    ex.export(str(path))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", default=str(Path(__file__).resolve().parents[3] / "shared/reference/realdata"))
    ap.add_argument("--png", default="xrfcore/simulate/realism.png")
    ap.add_argument("--cores", type=int, default=24)
    a = ap.parse_args()
    real = realism.read_real(a.real)
    if not real:
        raise SystemExit(f"no real exports found under {a.real}")
    pops = {
        "all sites": realism.simulated_population(n_cores=a.cores, seed=11),
        "hemipelagic": realism.simulated_population(n_cores=a.cores // 2, seed=12, site="hemipelagic"),
        "prototype head, all sites": realism.simulated_population(
            n_cores=a.cores, seed=11, head=Head(name="prototype", **PROTOTYPE)),
    }
    print(attribution())
    print()
    print(tables(real, pops))
    draw_png(real, pops["all sites"], Path(a.png), "avaatech-a defaults")
    print(f"\nPNG written to {a.png}")


if __name__ == "__main__":
    main()
