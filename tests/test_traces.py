"""Downcore traces (xrfcore.traces) on the imported (SIMULATED) sample core and on the tube lines:
element windows, ratios, normalisations, and what cannot be read is said."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xrfcore import store, traces
from xrfcore.traces import TraceSpec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    p = tmp_path_factory.mktemp("tr") / "p.h5"
    exe = str(Path(sys.executable).with_name("xrfcore"))
    subprocess.run([exe, "import", str(ROOT / "resources" / "sample_core" / "SIM01-1"), "-p", str(p)],
                   check=True, stdout=subprocess.DEVNULL)
    with store.Project.open(p) as pr:
        c = pr.cores()[0]
        return pr.read_run(c, pr.runs(c)[0])


def test_specs_and_labels():
    assert [s.label() for s in traces.DEFAULT_TRACES] == ["Ca", "Fe", "ln(Ca/Fe)"]
    assert TraceSpec("Fe", normalise="scatter", log=True).label() == "ln(Fe/scatter)"
    assert TraceSpec("K", normalise="cps").label() == "K cps"
    with pytest.raises(ValueError, match="normalisation"):
        TraceSpec("Ca", normalise="per gram")


def test_values_on_the_sample_core(run):
    live = run.meta["live_s"].to_numpy(float)
    ca = traces.trace_values(run.counts, run.grid, TraceSpec("Ca"), kv=10)
    fe = traces.trace_values(run.counts, run.grid, TraceSpec("Fe"), kv=10)
    r = traces.trace_values(run.counts, run.grid, TraceSpec("Ca", "Fe", log=True), kv=10)
    assert np.allclose(r, np.log((ca + 1) / (fe + 1)))
    assert np.allclose(traces.trace_values(run.counts, run.grid, TraceSpec("Ca", normalise="cps"),
                                           live_s=live, kv=10), ca / live)
    per_mille = traces.trace_values(run.counts, run.grid, TraceSpec("Ca", normalise="sum"), kv=10)
    assert ((per_mille > 0) & (per_mille < 1000)).all()
    sc = traces.trace_values(run.counts, run.grid, TraceSpec("Ca", normalise="scatter"), kv=10)
    assert np.isfinite(sc).all() and np.corrcoef(sc, ca)[0, 1] > 0.5
    # the Ca-rich and Ca-poor parts of the core tell apart in the ratio
    assert np.ptp(r) > 1.0
    els = traces.elements_in_range(run.grid, 10)
    assert {"Al", "Si", "K", "Ca", "Ti", "Fe"} <= set(els) and "Sr" not in els and "Zr" not in els
    with pytest.raises(ValueError, match="Sr: no line"):
        traces.trace_values(run.counts, run.grid, TraceSpec("Sr"), kv=10)
    with pytest.raises(ValueError, match="live time"):
        traces.trace_values(run.counts, run.grid, TraceSpec("Ca", normalise="cps"), live_s=None, kv=10)


def test_scatter_line_follows_the_tube():
    from xrfcore.energy import Grid
    g = Grid(2048, 0.02, 0.0)
    assert traces.scatter_line("Rh", 10, g) == pytest.approx(traces.line_kev("Rh", "La"))
    assert traces.scatter_line("Mo", 30, g) == pytest.approx(traces.line_kev("Mo", "Ka"))
    assert "Sr" in traces.elements_in_range(g, 30) and "Sr" not in traces.elements_in_range(g, 10)
