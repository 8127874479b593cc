"""Energy calibration at import: recovery on simulated heads, failure reporting, stated calibrations."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xrfcore import calibration as cal, importer, store
from xrfcore.energy import Grid, RowGrids, resample
from xrfcore.simulate.heads import HEADS
from xrfcore.simulate.writers import simulate_folder

ITRAX = Path(__file__).resolve().parents[2] / "shared" / "reference" / "realdata" / "itrax" / "CD166_19_S1_replicates"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Two simulated heads written as raw folders (no calibration in the files) and imported."""
    out = {}
    for head in ("avaatech-b", "avaatech-c"):
        root = tmp_path_factory.mktemp(head)
        folders = simulate_folder(root / "raw", cores=1, length_m=0.6, step_mm=10.0, head=head, seed=5)
        proj = root / "p.h5"
        rep = importer.import_folder(folders[0], proj)
        truth = pd.read_csv(next(folders[0].glob("*_truth.csv")), comment="#")
        out[head] = (proj, rep, truth)
    return out


@pytest.mark.parametrize("head", ["avaatech-b", "avaatech-c"])
def test_import_recovers_each_spectrum_calibration(imported, head):
    proj, rep, truth = imported[head]
    h = HEADS[head]
    with store.Project.open(proj) as p:
        core = p.cores()[0]
        rd = p.read_run(core, p.runs(core)[0])
    assert rd.attrs["grid_source"].startswith("calibrated from lines")
    g = rd.grids
    t = truth.set_index("depth_mm").loc[rd.meta["depth_mm"].to_numpy(float)]
    true_gain = h.gain * t["gain_scale"].to_numpy(float)     # the simulator's per-spectrum drift
    assert (rd.meta["cal_source"] == "spectrum").mean() > 0.9
    assert np.median(np.abs(g.gains / true_gain - 1)) < 0.001              # gain within 0.1 %
    ch400 = (g.offsets + g.gains * 400 - (h.offset + true_gain * 400)) / h.gain
    assert np.median(np.abs(ch400)) < 0.3                                 # within 0.3 channel
    key = next(iter(rep.calibration))
    assert "energy:" in rep.summary() and rep.calibration[key].run.status == "ok"


def test_calibrated_spectra_line_up_on_the_model_grid(imported):
    """After calibration, Fe Ka of both heads lands in the same channel of the 20 eV grid."""
    peaks = []
    for head in ("avaatech-b", "avaatech-c"):
        with store.Project.open(imported[head][0]) as p:
            core = p.cores()[0]
            rd = p.read_run(core, p.runs(core)[0])
        X = resample(rd.counts, rd.grids, Grid(2048, 0.02, 0.0)).sum(0)
        lo = 300
        peaks.append(lo + int(np.argmax(X[lo:340])))
        raw = lo + int(np.argmax(rd.counts.sum(0)[lo:340]))
        assert raw != peaks[-1] or head == "avaatech-c"   # head b's raw Fe Ka sits channels off
    assert peaks[0] == peaks[1] == 320                      # 6.40 keV / 0.020


def test_spectra_without_lines_keep_nominal_and_warn(tmp_path):
    from xrfcore.io import avaatech

    rng = np.random.default_rng(0)
    folder = tmp_path / "BLANK-1" / "Run 1 at  10kV"
    folder.mkdir(parents=True)
    for x in (10, 20, 30):
        meta = dict(core="BLANK-1", section="00000", position_mm=float(x), y_mm=0.0, kv=10.0, current_ua=150.0,
                    live_s=10.0, real_s=12.0, total_cps=1000.0, date="2020-01-01T10:00:00", run=1, replicate=0,
                    filter="No-Filter", setting="Sett Low", slit_dc_mm=10.0, slit_cc_mm=12.0, remark=["flat"])
        avaatech.write_spe(folder / avaatech.spe_file_name(meta), rng.poisson(40, 2048), meta)
    rep = importer.import_folder(tmp_path / "BLANK-1", tmp_path / "p.h5")
    c = next(iter(rep.calibration.values()))
    assert c.run.status == "failed" and (c.source == "nominal").all()
    assert any("calibration failed" in w and ".spe" in w for w in c.warnings)   # names the files
    assert rep.counts["warning"] == 3 and all("not calibrated" in f.message for f in rep.files)
    with store.Project.open(tmp_path / "p.h5") as p:
        rd = p.read_run("BLANK-1", "10kV-Run1")
    assert rd.grid.gain_kev == 0.02 and rd.attrs["grid_source"].startswith("nominal")


@pytest.mark.skipif(not ITRAX.is_dir(), reason="real Itrax example files not present")
def test_itrax_keeps_its_stated_calibration_and_checks_it(tmp_path):
    rep = importer.import_folder(ITRAX, tmp_path / "p.h5")
    for key, c in rep.calibration.items():
        assert (c.source == "file").all()
        assert "lines agree within" in c.run.message and not c.warnings
    # the line fit of the real sum spectrum agrees with the result table's calibration
    with store.Project.open(tmp_path / "p.h5") as p:
        core = p.cores()[0]
        rd = p.read_run(core, p.runs(core)[0])
    f = cal.fit_spectrum(rd.counts.sum(0), rd.grid, kv=30.0)
    assert f.status == "ok" and {"Ca Ka", "Fe Ka", "Sr Ka"} <= {u["line"] for u in f.lines}
    assert abs(cal.shift_kev(f.gain_kev, f.offset_kev, rd.grid.gain_kev, rd.grid.offset_kev)) < 0.01


def test_coarse_search_finds_large_shifts_and_fit_is_exact_on_shifted_copies(imported):
    with store.Project.open(imported["avaatech-c"][0]) as p:
        core = p.cores()[0]
        rd = p.read_run(core, p.runs(core)[0])
    base = resample(rd.counts, rd.grids, Grid(2048, 0.02, 0.0))     # calibrated 20 eV spectra
    for gain, off in ((0.0198, -0.06), (0.0205, 0.06), (0.0196, 0.1)):
        X = resample(base, Grid(2048, 0.02, 0.0), Grid(2048, gain, off))   # as a head (gain, off) records
        f = cal.fit_spectrum(X.sum(0), Grid(2048, 0.02, 0.0), kv=10.0)
        assert abs(f.gain_kev / gain - 1) < 0.001 and abs(f.offset_kev - off) < 0.3 * gain


def test_row_grids_resample_each_row_from_its_own_calibration():
    rng = np.random.default_rng(1)
    X = rng.poisson(30, (4, 2048)).astype(float)
    gains, offs = np.array([0.0198, 0.02, 0.0203, 0.0205]), np.array([0.01, 0.0, -0.03, 0.05])
    dst = Grid(2048, 0.02, 0.0)
    Y = resample(X, RowGrids(2048, gains, offs), dst)
    for i in range(4):
        np.testing.assert_allclose(Y[i], resample(X[i], Grid(2048, gains[i], offs[i]), dst), atol=1e-9)
    same = RowGrids(2048, np.full(4, 0.02), np.zeros(4))
    from xrfcore.energy import on_grid
    assert on_grid(X, same, dst) is not None and np.array_equal(on_grid(X, same, dst), X)
