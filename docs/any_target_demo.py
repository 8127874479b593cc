"""Helpers of docs/any_target_demo.md (SIMULATED data).

    python docs/any_target_demo.py lab OUT_DIR     # lab_fe_train.csv + lab_fe_heldout.csv
    python docs/any_target_demo.py score CSV HELDOUT  # exported predictions vs held-out lab Fe

Fe is derived from the sample core's simulated composition: the simulator is re-run with the sample
core's seed (7, one 3 m core, 10 mm steps: resources/sample_core/README.md), which reproduces its
truth CSV (checked below), and the dry-sediment Fe mass fraction of each lab sample's depth interval
(xrfcore.simulate.sediment.compose, no pore water) is written in mg/kg with 3 % lab noise.
Every third lab sample is held out of the fine-tuning and only used to score the predictions.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "resources" / "sample_core" / "SIM01-1"


def fe_mg_kg(top, bottom) -> np.ndarray:
    from xrfcore.simulate.downcore import generate_core
    from xrfcore.simulate.sediment import ELEMENTS, compose
    from xrfcore.simulate.writers import plan_scan

    rng = np.random.default_rng(np.random.SeedSequence(7).spawn(1)[0])
    plan_scan(rng, 3000.0, 10.0)                 # the same draws as `xrfcore simulate --seed 7`
    series = generate_core(rng, "SIM01-1", 3000.0)
    truth = pd.read_csv(CORE / "SIM01-1_truth.csv", comment="#")
    w = series.window(truth.depth_mm - 5, truth.depth_mm + 5)
    err = float(np.abs(100 * w["caco3"] - truth.CaCO3).max())
    assert err < 0.01, f"the simulator no longer reproduces the sample core (CaCO3 off by {err:.3f} wt%)"
    win = series.window(np.asarray(top, float), np.asarray(bottom, float))
    dry = compose(win["caco3"], win["toc"], win["opal"], 0.0, series.terr, ash=win["ash"],
                  ba_ppm=win["ba_ppm"], mn_pct=win["mn_pct"], p_extra_pct=win["p_extra_pct"],
                  salinity=series.salinity)
    return dry[:, list(ELEMENTS).index("Fe")] * 1e6


def make_lab(out: Path) -> None:
    lab = pd.read_csv(CORE / "SIM01-1_lab_samples.csv", comment="#")
    fe = fe_mg_kg(lab.depth_top_mm, lab.depth_bottom_mm)
    lab["Fe (mg/kg)"] = np.round(fe * np.random.default_rng(1).normal(1, 0.03, len(fe)), 0)
    head = "# SIMULATED lab samples: Fe (mg/kg dry) from the simulated composition, 3 % lab noise\n"
    held = np.arange(len(lab)) % 3 == 2
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("lab_fe_train.csv", lab[~held]), ("lab_fe_heldout.csv", lab[held])):
        with open(out / name, "w") as f:
            f.write(head)
            part.to_csv(f, index=False)
        print(f"{out / name}: {len(part)} samples, Fe {part['Fe (mg/kg)'].min():.0f}-"
              f"{part['Fe (mg/kg)'].max():.0f} mg/kg")


def score(pred_csv: Path, heldout_csv: Path) -> None:
    pred = pd.read_csv(pred_csv, comment="#")
    lab = pd.read_csv(heldout_csv, comment="#")
    got = []
    for a, b in zip(lab.depth_top_mm, lab.depth_bottom_mm):  # mean prediction over the sample interval
        inside = pred[(pred.depth_mm >= a) & (pred.depth_mm <= b)]
        if not len(inside):
            inside = pred.iloc[[int(np.argmin(np.abs(pred.depth_mm - (a + b) / 2)))]]
        got.append(inside[["Fe (mg/kg)", "Fe_lo (mg/kg)", "Fe_hi (mg/kg)"]].mean().to_numpy())
    got = np.array(got)
    y, p = lab["Fe (mg/kg)"].to_numpy(float), got[:, 0]
    r2 = 1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    rmse = float(np.sqrt(((y - p) ** 2).mean()))
    cover = float(np.mean((y >= got[:, 1]) & (y <= got[:, 2])))
    print(f"held-out lab samples: n={len(y)}  R2 {r2:.3f}  RMSE {rmse:.0f} mg/kg "
          f"({100 * rmse / y.mean():.1f} % of the mean {y.mean():.0f} mg/kg)  "
          f"inside the 90 % interval: {100 * cover:.0f} %")


if __name__ == "__main__":
    if sys.argv[1] == "lab":
        make_lab(Path(sys.argv[2]))
    else:
        score(Path(sys.argv[2]), Path(sys.argv[3]))
