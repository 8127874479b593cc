"""Downcore series of sediment composition: age model, orbital cycles + red noise, site-specific
links to CaCO3 / TOC / opal, turbidites and ash layers, bioturbation, compaction porosity,
coupled minor elements (pyrite, Ba, Mn, P) and a per-core terrigenous end-member.

Everything is computed on a 1 mm grid, then averaged over the scanner's down-core slit at each
measurement position (and over 1 cm intervals for the lab samples).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xrfcore.simulate.sediment import component_vectors, compose, random_terrigenous, water_from_porosity

SITE_TYPES = ("pelagic carbonate", "hemipelagic", "siliceous upwelling", "mixed")


@dataclass
class CoreSeries:
    """Fine-grid (1 mm) truth of one core."""

    name: str
    depth_mm: np.ndarray          # (D,) 0.5, 1.5, ... mm
    caco3: np.ndarray             # dry fractions
    toc: np.ndarray
    opal: np.ndarray
    ash: np.ndarray
    water: np.ndarray             # wet fraction
    mn_pct: np.ndarray
    ba_ppm: np.ndarray
    p_extra_pct: np.ndarray
    event: np.ndarray             # "", "turbidite", "ash"
    salinity: float               # pore water relative to seawater (1 = marine, <1 brackish/lake)
    terr: np.ndarray              # (Z,) terrigenous end-member
    params: dict = field(default_factory=dict)

    def _avg(self, x: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
        """Mean of a fine-grid quantity over [top, bottom) mm intervals (cumulative sums)."""
        cs = np.concatenate([[0.0], np.cumsum(x)])
        i0 = np.clip(np.floor(top).astype(int), 0, len(x) - 1)
        i1 = np.clip(np.ceil(bottom).astype(int), i0 + 1, len(x))
        return (cs[i1] - cs[i0]) / (i1 - i0)

    def window(self, top_mm, bottom_mm) -> dict[str, np.ndarray]:
        top = np.asarray(top_mm, dtype=float)
        bottom = np.asarray(bottom_mm, dtype=float)
        out = {k: self._avg(getattr(self, k), top, bottom)
               for k in ("caco3", "toc", "opal", "ash", "water", "mn_pct", "ba_ppm", "p_extra_pct")}
        mid = np.clip(((top + bottom) / 2).astype(int), 0, len(self.event) - 1)
        out["event"] = self.event[mid]
        return out

    def compositions(self, win: dict[str, np.ndarray]) -> np.ndarray:
        return compose(win["caco3"], win["toc"], win["opal"], win["water"], self.terr, ash=win["ash"],
                       ba_ppm=win["ba_ppm"], mn_pct=win["mn_pct"], p_extra_pct=win["p_extra_pct"],
                       salinity=self.salinity)


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """AR(1) red noise with stationary standard deviation ``sd``."""
    e = rng.normal(0, sd * np.sqrt(1 - phi**2), n)
    out = np.empty(n)
    acc = rng.normal(0, sd)
    for i in range(n):          # n ~ 1e3-1e4: cheap; scipy.signal.lfilter would also do
        acc = phi * acc + e[i]
        out[i] = acc
    return out


def _logistic(x):
    from scipy.special import expit   # no overflow warnings for large |x|

    return expit(x)


def _running_mean(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    k = np.ones(width) / width
    pad = width // 2
    xp = np.pad(x, (pad, width - 1 - pad), mode="edge")
    return np.convolve(xp, k, mode="valid")


def generate_core(rng: np.random.Generator, name: str, length_mm: float, site: str | None = None,
                  salinity: float | None = None) -> CoreSeries:
    """One core's truth on a 1 mm grid."""
    d = int(np.ceil(length_mm)) + 20
    z = np.arange(d) + 0.5                                   # mm
    site = site or str(rng.choice(SITE_TYPES, p=[0.3, 0.35, 0.15, 0.2]))
    sar = float(rng.uniform(1.0, 10.0))                      # cm/kyr
    t = z / 10.0 / sar                                       # kyr
    # latent climate index: orbital cycles with random phases + red noise
    amps = rng.uniform(0.3, 1.0, 3) * np.array([1.0, 0.6, 0.4])
    c = np.zeros(d)
    for a, p in zip(amps, (100.0, 41.0, 23.0)):
        c += a * np.sin(2 * np.pi * t / p + rng.uniform(0, 2 * np.pi))
    c = c / max(np.std(c), 1e-9)
    phi = float(np.exp(-1.0 / rng.uniform(20.0, 80.0)))      # ~ 0.95-0.99 per mm (2-8 cm memory)
    sign = float(rng.choice([-1.0, 1.0]))                     # Atlantic vs Pacific-type carbonate
    if site == "pelagic carbonate":
        cmax, a_c, a_t, a_o = rng.uniform(0.85, 0.95), rng.uniform(1.0, 2.5), np.log(rng.uniform(0.15, 0.6)), -3.0
    elif site == "hemipelagic":
        cmax, a_c, a_t, a_o = rng.uniform(0.4, 0.7), rng.uniform(-1.5, 0.0), np.log(rng.uniform(0.5, 2.0)), -2.5
    elif site == "siliceous upwelling":
        cmax, a_c, a_t, a_o = rng.uniform(0.2, 0.5), rng.uniform(-2.5, -0.5), np.log(rng.uniform(1.5, 5.0)), rng.uniform(-0.5, 1.0)
    else:
        cmax, a_c, a_t, a_o = rng.uniform(0.6, 0.9), rng.uniform(-0.5, 1.0), np.log(rng.uniform(0.4, 1.5)), -1.5
    caco3 = cmax * _logistic(a_c + sign * 1.2 * c + _ar1(rng, d, phi, 0.5))
    toc = np.exp(a_t - sign * 0.35 * c + _ar1(rng, d, phi, 0.3)) / 100.0
    opal = 0.85 * _logistic(a_o - sign * 0.8 * c + _ar1(rng, d, phi, 0.5))
    ash = np.zeros(d)
    event = np.full(d, "", dtype=object)

    # events: turbidites (sharp base, graded, terrigenous, low TOC) and ash layers
    n_turb = rng.poisson(length_mm / 1500.0)
    for _ in range(n_turb):
        thick = int(min(rng.uniform(30, 200), d // 2))
        base = int(rng.uniform(thick, d))
        top = base - thick
        grade = np.linspace(0.3, 1.0, thick)     # coarse, pure terrigenous at the base
        sl = slice(top, base)
        caco3[sl] = caco3[sl] * (1 - grade) * 0.5
        opal[sl] = opal[sl] * (1 - grade) * 0.5
        toc[sl] = np.minimum(toc[sl], 0.002 + 0.003 * (1 - grade))
        event[sl] = "turbidite"
    n_ash = rng.poisson(length_mm / 2500.0)
    for _ in range(n_ash):
        thick = int(min(rng.uniform(10, 50), d // 2))
        top = int(rng.uniform(0, d - thick))
        sl = slice(top, top + thick)
        ash[sl] = rng.uniform(0.4, 0.9)
        event[sl] = "ash"

    # bioturbation: running mean of 2-10 cm (ash keeps a sharp base only partly)
    width = int(rng.uniform(20, 100))
    caco3, toc, opal = (_running_mean(x, width) for x in (caco3, toc, opal))
    ash = _running_mean(ash, max(3, width // 4))
    total = caco3 + toc / 0.52 + opal + ash
    over = total > 0.93
    if over.any():
        s = 0.93 / total[over]
        caco3[over] *= s
        toc[over] *= s
        opal[over] *= s
        ash[over] *= s

    # compaction porosity with opal (+) and carbonate (-) effects
    phi0, phi_inf = rng.uniform(0.72, 0.85), rng.uniform(0.5, 0.65)
    lc = rng.uniform(2000.0, 10000.0)
    poro = phi_inf + (phi0 - phi_inf) * np.exp(-z / lc) + 0.15 * opal - 0.08 * caco3
    poro += _ar1(rng, d, 0.98, 0.015)
    poro = np.clip(poro, 0.35, 0.93)
    water = water_from_porosity(poro)

    # coupled minor elements
    mn_base = float(np.exp(rng.uniform(np.log(0.005), np.log(0.08))))
    ox_depth = rng.uniform(100, 300)
    mn = mn_base + rng.uniform(0.1, 1.0) * np.exp(-z / ox_depth * 3.0)
    ba = 150.0 + 3000.0 * opal + 20000.0 * toc + rng.uniform(0, 300)
    p_extra = np.clip(rng.uniform(0.05, 0.18) + 1.0 * toc + _ar1(rng, d, 0.95, 0.005), 0.0, 0.5)
    terr, tparams = random_terrigenous(rng)
    if salinity is None:   # mostly marine; some brackish margins / lakes
        salinity = 1.0 if rng.random() < 0.8 else float(rng.uniform(0.0, 0.7))
    params = dict(site=site, sar_cm_kyr=sar, sign=sign, bioturbation_mm=width, phi0=phi0,
                  phi_inf=phi_inf, compaction_mm=lc, n_turbidites=int(n_turb), n_ash=int(n_ash),
                  terrigenous=tparams, mn_base_pct=mn_base, salinity=salinity)
    return CoreSeries(name=name, depth_mm=z, caco3=caco3, toc=toc, opal=opal, ash=ash, water=water,
                      mn_pct=mn, ba_ppm=ba, p_extra_pct=p_extra, event=event, salinity=float(salinity), terr=terr,
                      params=params)


def random_compositions(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict]:
    """Independent compositions over the whole plausible range (unit tests, quick archives)."""
    caco3 = rng.uniform(0, 0.9, n)
    opal = rng.uniform(0, 0.5, n) * (1 - caco3)
    toc = np.exp(rng.uniform(np.log(0.0005), np.log(0.06), n))
    water = rng.uniform(0.3, 0.8, n)
    terr, _ = random_terrigenous(rng)
    w = compose(caco3, toc, opal, water, terr, mn_pct=0.08)
    return w, dict(caco3=caco3, toc=toc, opal=opal, water=water)


__all__ = ["CoreSeries", "generate_core", "random_compositions", "component_vectors"]
