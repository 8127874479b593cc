"""Realism and behaviour tests of the physics simulator (xrfcore.simulate)."""
from __future__ import annotations

import numpy as np
import pytest
import xraylib as xrl

from xrfcore.simulate.areas import window_areas
from xrfcore.simulate.forward import detected_shares, line_counts, simulator_for
from xrfcore.simulate.heads import HEADS, fixed_nuisances, get_head, sample_nuisances
from xrfcore.simulate.sediment import compose, reference_composition, terrigenous_vector


@pytest.fixture(scope="module")
def sim():
    return simulator_for(get_head("avaatech-a"))


def _mud(**kw):
    p = dict(caco3=0.08, toc=0.008, opal=0.02, water=0.55)
    p.update(kw)
    return compose(terr=terrigenous_vector(), mn_pct=0.05, **p)


def _rate(sim, w):
    w = np.atleast_2d(w)
    spec, icr = sim.rates(w, fixed_nuisances(sim.head, len(w)))
    return spec, icr


def _peak_channel(spec, e_kev, head, half_width_ch=4):
    c0 = int(round((e_kev - head.offset) / head.gain))
    seg = spec[c0 - half_width_ch:c0 + half_width_ch + 1]
    return c0 - half_width_ch + int(np.argmax(seg)), c0


@pytest.mark.parametrize("el,line", [("Si", "KL3"), ("K", "KL3"), ("Ca", "KL3"), ("Ti", "KL3"),
                                     ("Fe", "KL3"), ("Ca", "KM3")])
def test_line_positions_within_one_channel(sim, el, line):
    spec, _ = _rate(sim, _mud())
    e = xrl.LineEnergy(xrl.SymbolToAtomicNumber(el), getattr(xrl, f"{line}_LINE"))
    got, expected = _peak_channel(spec[0], e, sim.head)
    assert abs(got - expected) <= 1, f"{el} {line}: peak at channel {got}, xraylib says {expected}"


def test_line_positions_follow_head_gain_and_offset():
    head = get_head("avaatech-b")
    sim_b = simulator_for(head)
    spec, _ = _rate(sim_b, _mud())
    e = xrl.LineEnergy(26, xrl.KL3_LINE)
    got, expected = _peak_channel(spec[0], e, head)
    assert abs(got - expected) <= 1


def test_ca_ka_and_kb_resolved(sim):
    spec, _ = _rate(sim, _mud(caco3=0.6))
    e = sim.head.offset + sim.head.gain * np.arange(sim.head.channels)
    s = spec[0]
    ka = s[(e > 3.6) & (e < 3.78)].max()
    kb = s[(e > 3.95) & (e < 4.08)].max()
    valley = s[(e > 3.78) & (e < 3.95)].min()
    assert kb > 5 * valley, "Ca Kb must stand clear of the valley between Ka and Kb"
    assert ka > kb


def test_total_rate_of_a_mud_is_order_1e5(sim):
    w = reference_composition("terrigenous clay")
    res = sim.simulate(w, rng=np.random.default_rng(0))
    assert 5e4 < res.icr[0] < 2.5e5
    assert sim.head.current_ua == 200.0


def test_real_time_exceeds_live_time(sim):
    res = sim.simulate(np.array([reference_composition(n) for n in
                                 ("carbonate ooze", "terrigenous clay")]), rng=np.random.default_rng(1))
    assert np.all(res.real_s > res.live_s)
    # more counts (carbonate ooze) -> more dead time
    assert res.real_s[0] > res.real_s[1]
    # paralyzable: live = real * exp(-ICR tau)
    tau = sim.head.dead_time_us * 1e-6
    np.testing.assert_allclose(res.live_s, res.real_s * np.exp(-res.icr * tau), rtol=1e-9)


def test_ca_counts_non_linear_in_caco3(sim):
    caco3 = np.array([0.05, 0.2, 0.45, 0.7, 0.9])
    w = _mud(caco3=caco3, opal=0.0)
    ca = line_counts(sim, w)["Ca"]
    # matrix effect: the sensitivity dI/dCaCO3 changes by tens of percent across the range (the
    # exciting beam is absorbed more by Ca, Ca Ka less by a carbonate than by a K/Fe-bearing clay)
    slope_low = (ca[1] - ca[0]) / (caco3[1] - caco3[0])
    slope_high = (ca[4] - ca[3]) / (caco3[4] - caco3[3])
    assert abs(np.log(slope_high / slope_low)) > np.log(1.25)
    per_unit = ca / caco3
    assert per_unit.max() > 1.2 * per_unit.min()
    # a straight line through the ends misses the middle points clearly
    lin = ca[0] + (ca[4] - ca[0]) * (caco3 - caco3[0]) / (caco3[4] - caco3[0])
    assert np.max(np.abs(ca - lin) / ca) > 0.05
    # the same seen in Poisson spectra through plain window areas (dead time included)
    res = sim.simulate(w, rng=np.random.default_rng(2))
    win = window_areas(res.counts, sim.head.gain, sim.head.offset, ["Ca"])["Ca"]
    assert np.all(np.diff(win) > 0)
    lin = win[0] + (win[4] - win[0]) * (caco3 - caco3[0]) / (caco3[4] - caco3[0])
    assert np.max(np.abs(win - lin) / win) > 0.05


def test_more_toc_or_water_raises_scatter_share(sim):
    # at fixed everything else: pyrite not tied to TOC here (it would add S and Fe fluorescence)
    toc = detected_shares(sim, _mud(toc=np.array([0.002, 0.06]), water=0.5, pyrite_s=0.002))["scatter_share"]
    assert toc[1] > toc[0]
    water = detected_shares(sim, _mud(water=np.array([0.4, 0.75])))["scatter_share"]
    assert water[1] > water[0] + 0.02
    # carbonate ooze scatters least, diatom mud most (spec section 2.6 ordering)
    names = ("carbonate ooze", "terrigenous clay", "diatomaceous mud")
    sh = detected_shares(sim, np.array([reference_composition(n) for n in names]))["scatter_share"]
    assert sh[0] < sh[1] < sh[2]


def test_counts_are_poisson(sim):
    w = np.repeat(_mud()[None, 0], 400, axis=0)
    res = sim.simulate(w, rng=np.random.default_rng(3), keep_rate=True)
    expected = res.rate[0] * res.live_s[0]
    m = res.counts.mean(0)
    v = res.counts.var(0, ddof=1)
    sel = (expected > 20) & (expected < 5e4)
    assert sel.sum() > 300
    np.testing.assert_allclose(m[sel].sum(), expected[sel].sum(), rtol=0.01)
    ratio = v[sel] / m[sel]
    assert 0.93 < ratio.mean() < 1.07          # Poisson: variance == mean
    assert res.counts.dtype == np.int32 and res.counts.min() >= 0


def test_reproducible_with_seed(sim):
    w = np.repeat(_mud()[None, 0], 5, axis=0)
    a = sim.simulate(w, rng=np.random.default_rng(9)).counts
    b = sim.simulate(w, rng=np.random.default_rng(9)).counts
    c = sim.simulate(w, rng=np.random.default_rng(10)).counts
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_water_film_and_air_attenuate_light_elements(sim):
    w = np.repeat(_mud()[None, 0], 2, axis=0)
    nz = fixed_nuisances(sim.head, 2)
    nz.film_um[:] = [0.0, 10.0]
    lc = line_counts(sim, w, nz)
    assert lc["Al"][1] < 0.5 * lc["Al"][0]
    assert lc["Fe"][1] > 0.9 * lc["Fe"][0]
    assert lc["Cl"][1] > lc["Cl"][0]            # the film emits Cl of its own
    nz = fixed_nuisances(sim.head, 2)
    nz.air_fraction[:] = [0.05, 1.0]
    lc = line_counts(sim, w, nz)
    assert lc["Ar"][1] > 10 * lc["Ar"][0]
    assert lc["Si"][1] < 0.6 * lc["Si"][0] and lc["Rh-La"][1] < lc["Rh-La"][0]


def test_new_head_shifts_spectra():
    a, b = simulator_for(get_head("avaatech-a")), simulator_for(get_head("avaatech-b"))
    w = _mud()
    la, lb = line_counts(a, w), line_counts(b, w)
    # light elements relative to Fe change by tens of percent (detector window, angles, tube)
    assert abs(np.log((lb["Al"] / lb["Fe"]) / (la["Al"] / la["Fe"]))) > np.log(1.3)
    ra, _ = _rate(a, w)
    rb, _ = _rate(b, w)
    # and the same channel no longer means the same energy
    e_fe = xrl.LineEnergy(26, xrl.KL3_LINE)
    pa, _ = _peak_channel(ra[0], e_fe, a.head, 8)
    pb, _ = _peak_channel(rb[0], e_fe, b.head, 8)
    assert abs(pa - pb) >= 2
    assert set(HEADS) >= {"avaatech-a", "avaatech-b"}


def test_nuisances_vary_spectra_and_carry_cracks():
    head = get_head("avaatech-a")
    rng = np.random.default_rng(4)
    nz = sample_nuisances(rng, head, np.full(2000, 0.6), crack_prob=0.05)
    assert np.all(nz.film_um >= 0) and np.all((nz.air_fraction >= 0) & (nz.air_fraction <= 1))
    cracks = nz.geometry_scale < 0.85
    assert 40 < cracks.sum() < 200
    assert nz.air_fraction[cracks].mean() > 3 * np.median(nz.air_fraction)
    assert np.abs(nz.gain_scale - 1).max() < 0.02
    # a section with a poor helium flush: air (and so Ar Ka) up for the whole section
    sec = np.repeat([0, 1], 50)
    nz0 = sample_nuisances(np.random.default_rng(5), head, np.full(100, 0.6), sections=sec, he_loss_prob=0.0)
    nz1 = sample_nuisances(np.random.default_rng(5), head, np.full(100, 0.6), sections=sec, he_loss_prob=1.0)
    assert np.median(nz1.air_fraction) > 2.5 * np.median(nz0.air_fraction)


def test_sum_and_escape_peaks_in_carbonate(sim):
    w = reference_composition("carbonate ooze")
    spec, _ = _rate(sim, w)
    e = sim.head.offset + sim.head.gain * np.arange(sim.head.channels)
    s = spec[0]
    near = (e > 7.25) & (e < 7.5)
    side = (e > 7.9) & (e < 8.1)
    assert s[near].max() > 1.5 * s[side].mean(), "Ca Ka + Ka pile-up peak at 7.38 keV"
    esc = (e > 1.9) & (e < 2.0)
    assert s[esc].max() > s[(e > 2.12) & (e < 2.2)].mean()


def test_compositions_are_mass_fractions():
    w = compose(np.linspace(0, 0.95, 11), 0.05, 0.3, 0.6, terrigenous_vector())
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert np.all(w >= 0)
    with pytest.raises(ValueError):
        simulator_for(get_head("avaatech-a")).simulate(np.ones((1, 3)))
    with pytest.raises(ValueError, match="unknown scanner head"):
        get_head("nope")
