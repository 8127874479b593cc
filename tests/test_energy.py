import numpy as np
import pytest

from xrfcore.energy import DEFAULT_AVAATECH, LINES, Grid, lines_in_range, resample


def test_grid_energies_and_channel_of():
    g = Grid(2048, 0.02, 0.0)
    e = g.energies()
    assert e.shape == (2048,)
    assert e[0] == 0.0 and e[320] == pytest.approx(6.4)
    assert g.channel_of(6.4) == pytest.approx(320.0)
    assert np.allclose(g.channel_of(e), np.arange(2048))
    assert g.edges()[0] == pytest.approx(-0.01)
    assert DEFAULT_AVAATECH == Grid(2048, 0.020, 0.0)


def test_bad_grid_rejected():
    with pytest.raises(ValueError):
        Grid(0, 0.02)
    with pytest.raises(ValueError):
        Grid(2048, -0.02)


def test_identity_resample():
    rng = np.random.default_rng(0)
    x = rng.poisson(30, size=(5, 2048))
    y = resample(x, DEFAULT_AVAATECH, Grid(2048, 0.020, 0.0))
    assert y.dtype == np.float64
    assert np.array_equal(y, x)
    # Same grid built differently but numerically equal -> still identity
    assert np.allclose(resample(x[0], DEFAULT_AVAATECH, Grid(2048, 0.02, 0.0)), x[0])


@pytest.mark.parametrize("dst", [Grid(1024, 0.0205, -0.01), Grid(2048, 0.0103, 0.0),
                                 Grid(4096, 0.01, 0.005), Grid(2048, 0.0199, 0.02)])
def test_resample_conserves_counts(dst):
    rng = np.random.default_rng(1)
    src = Grid(1024, 0.0193, -0.0167)        # an Itrax 1024-channel calibration
    x = rng.poisson(20, size=(3, 1024)).astype(float)
    # Zero counts near the ends so nothing falls outside any destination range.
    x[:, :5] = 0
    x[:, -5:] = 0
    src_hi = src.max_kev
    if dst.max_kev >= src_hi and dst.edges()[0] <= src.edges()[0]:
        y = resample(x, src, dst)
        assert y.shape == (3, dst.channels)
        assert np.allclose(y.sum(axis=1), x.sum(axis=1))
        assert (y >= -1e-9).all()
    else:
        # Partial overlap: totals kept for what lies inside the destination range.
        y = resample(x, src, dst)
        assert y.sum() <= x.sum() + 1e-6


def test_conservation_when_destination_covers_source():
    rng = np.random.default_rng(2)
    src = Grid(2048, 0.010267, -0.009931)   # Itrax CD166 2020 calibration
    x = rng.poisson(5, size=2048).astype(float)
    x[0] = 0  # channel 0 starts below the destination's first edge
    y = resample(x, src, DEFAULT_AVAATECH)
    assert y.shape == (2048,)
    assert y.sum() == pytest.approx(x.sum(), rel=1e-12)


def test_shifted_gain_moves_peak_to_right_channel():
    src = Grid(2048, 0.0103, 0.0)
    dst = DEFAULT_AVAATECH
    x = np.zeros(2048)
    fe_ka = 6.4
    ch = int(round(src.channel_of(fe_ka)))
    x[ch] = 1000.0
    y = resample(x, src, dst)
    assert int(np.argmax(y)) == int(round(dst.channel_of(src.energies()[ch])))
    assert abs(dst.energies()[np.argmax(y)] - fe_ka) < dst.gain_kev
    assert y.sum() == pytest.approx(1000.0)


def test_shape_errors():
    with pytest.raises(ValueError):
        resample(np.zeros(100), DEFAULT_AVAATECH, Grid(100, 0.02))
    with pytest.raises(ValueError):
        resample(np.zeros((2, 2, 2048)), DEFAULT_AVAATECH, Grid(100, 0.02))


def test_lines_table():
    fe = [ln for ln in LINES if ln.element == "Fe"]
    ka = [ln for ln in fe if ln.line == "Ka"][0]
    assert ka.kev == pytest.approx(6.40, abs=0.01)
    rh = {ln.line: ln.kev for ln in LINES if ln.element == "Rh"}
    assert rh["La"] == pytest.approx(2.70, abs=0.01)
    assert "Lb" in rh
    assert any(ln.element == "Na" and ln.line == "Ka" for ln in LINES)
    assert any(ln.element == "Ba" and ln.line == "Ka" for ln in LINES)
    assert any(ln.element == "Pb" and ln.line == "La" for ln in LINES)
    sel = lines_in_range(6.0, 7.5)
    assert all(6.0 <= ln.kev <= 7.5 for ln in sel)
    assert [ln.kev for ln in sel] == sorted(ln.kev for ln in sel)
    assert {"Fe", "Mn"} <= {ln.element for ln in sel}
    assert [ln.element for ln in lines_in_range(0, 40, elements=["ca"])] == ["Ca", "Ca"] or \
        {ln.element for ln in lines_in_range(0, 40, elements=["ca"])} == {"Ca"}


def test_grid_like_objects_accepted():
    from collections import namedtuple
    G = namedtuple("G", "channels gain_kev offset_kev")
    x = np.arange(2048, dtype=float)
    y = resample(x, G(2048, 0.02, 0.0), {"channels": 1024, "gain_kev": 0.04, "offset_kev": 0.01})
    assert y.shape == (1024,)
    assert y.sum() == pytest.approx(x.sum(), rel=1e-12)


def test_on_grid_passes_same_grid_through_and_resamples_others():
    from xrfcore.energy import Grid, on_grid
    x = np.arange(20.0).reshape(2, 10)
    src = Grid(10, 0.02, 0.0)
    assert on_grid(x, src, {"channels": 10, "gain_kev": 0.02, "offset_kev": 0.0}) is x
    assert on_grid(x, src, None) is x
    y = on_grid(x, src, Grid(10, 0.04, 0.0))   # covers the source range: totals kept
    assert y.shape == (2, 10) and np.allclose(y.sum(axis=1), x.sum(axis=1))
