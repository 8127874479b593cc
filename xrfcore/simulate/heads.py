"""Scanner heads (instrument states) and per-spectrum nuisances.

A head is everything that is fixed for a project or a hardware configuration: tube, angles,
windows, detector, electronics. Nuisances vary spectrum by spectrum: water film under the foil,
helium loss and cracks, surface height (geometry), gain drift. Most geometric values are
assumptions (no public drawing of the Avaatech prism); they are exposed here so they can be
randomised for pretraining and recalibrated once real spectra of known composition exist.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Head:
    name: str = "avaatech-a"
    kv: float = 10.0
    current_ua: float = 200.0
    live_s: float = 10.0
    tube_be_um: float = 125.0
    tube_takeoff_deg: float = 20.0
    rhl_scale: float = 1.3          # Ebel's Rh L output looks low vs real Rh-La/Fe (REALISM.md)
    psi1_deg: float = 50.0          # incidence, from the core surface (assumed)
    psi2_deg: float = 40.0          # take-off towards the detector (assumed)
    path_in_cm: float = 1.5         # He-flushed path tube -> sample
    path_out_cm: float = 1.0        # sample -> detector
    air_fraction: float = 0.12      # residual air in the He flush (real Ar Ka says ~0.1; REALISM.md)
    ar_view_cm: float = 0.6         # effective length of air seen by tube and detector (Ar Ka)
    foil_um: float = 4.0            # Ultralene-like foil, modelled as C3H6
    film_um: float = 6.0            # mean pore-water film under the foil at 55 % water (REALISM.md)
    det_be_um: float = 25.0         # 1 mil Be (assumed; 12.5 um made Al/Si far too high)
    det_dead_um: float = 0.1
    det_si_um: float = 450.0
    noise_ev: float = 90.0
    fano: float = 0.115
    tail_frac: float = 0.015
    shelf_frac: float = 0.002
    lld_kev: float = 0.55
    channels: int = 2048
    gain: float = 0.0200            # keV per channel
    offset: float = 0.0             # keV
    geometry: float = 1.75e-4       # G = Omega_tube * Omega_det / 4 pi (sr); v2: x1.3 so that an
                                    # Fe-rich clay gives the real LAM+ Fe Ka and total cps at 200 uA
    dead_time_us: float = 2.1
    pileup_ns: float = 120.0
    # v2 detector physics (REALISM.md): partial-charge-collection layer at the SDD entrance
    # (incomplete charge collection: tail + shelf, strongest just above the Si K edge) and the
    # pile-up of pulses the fast channel misses (low-energy photons): partial-energy continuum
    icc_um: float = 0.25
    pileup_partial_ns: float = 400.0

    def replace(self, **kw) -> "Head":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def detector_key(self) -> tuple:
        """Parameters the response matrix depends on."""
        return (self.channels, self.gain, self.offset, self.noise_ev, self.fano, self.tail_frac,
                self.shelf_frac, self.lld_kev, self.det_be_um, self.det_dead_um, self.det_si_um,
                self.psi1_deg, self.psi2_deg, self.kv, self.icc_um)


# Named heads. "avaatech-b" stands for a replaced detector/head: thinner detector window, worse
# resolution, other gain/offset, angles and geometry, thinner tube window: Al/Si/S/Cl rise relative
# to Fe and peaks move by channels, so a model trained on head A sees a shifted domain (as real
# head changes did).
HEADS: dict[str, Head] = {
    "avaatech-a": Head(),
    "avaatech-b": Head(name="avaatech-b", det_be_um=12.5, det_dead_um=0.05, noise_ev=115.0,
                       gain=0.0203, offset=-0.030, geometry=1.55e-4, psi1_deg=55.0, psi2_deg=45.0,
                       tube_be_um=75.0, rhl_scale=1.6, foil_um=6.0, dead_time_us=2.1, pileup_ns=200.0),
    "avaatech-c": Head(name="avaatech-c", current_ua=150.0, det_be_um=18.0, noise_ev=70.0,
                       gain=0.0199, offset=0.020, geometry=2.35e-4, tube_takeoff_deg=25.0,
                       air_fraction=0.08, dead_time_us=1.8, pileup_ns=80.0, film_um=3.0),
}


def get_head(name: str) -> Head:
    try:
        return HEADS[name]
    except KeyError:
        raise ValueError(f"unknown scanner head {name!r}; known heads: {', '.join(sorted(HEADS))}") from None


def random_head(rng: np.random.Generator, name: str, base: Head | None = None) -> Head:
    """Domain randomisation of a head within the spec's plausible ranges."""
    b = base or Head()
    return b.replace(
        name=name,
        current_ua=float(rng.choice([150.0, 200.0, 250.0, 300.0])),
        tube_be_um=float(rng.choice([75.0, 125.0])),
        tube_takeoff_deg=float(rng.uniform(15, 30)),
        rhl_scale=float(rng.uniform(0.9, 1.8)),
        psi1_deg=float(np.round(rng.uniform(44, 56), 1)),
        psi2_deg=float(np.round(rng.uniform(35, 48), 1)),
        air_fraction=float(np.exp(rng.uniform(np.log(0.03), np.log(0.3)))),
        foil_um=float(rng.uniform(3, 6)),
        film_um=float(rng.uniform(3.0, 10.0)),
        det_be_um=float(rng.uniform(12, 35)),
        det_dead_um=float(rng.uniform(0.03, 0.2)),
        noise_ev=float(rng.uniform(60, 130)),
        gain=float(0.0200 * (1 + rng.uniform(-0.003, 0.003)) * rng.choice([0.99, 1.0, 1.0, 1.02])),
        offset=float(rng.uniform(-0.04, 0.04)),
        geometry=float(b.geometry * np.exp(rng.normal(0, 0.25))),   # real heads differ ~x2 per uA
        dead_time_us=float(rng.uniform(1.8, 2.2)),
        pileup_ns=float(rng.uniform(50, 250)),
        tail_frac=float(rng.uniform(0.008, 0.03)),
        icc_um=float(rng.uniform(0.1, 0.5)),
        pileup_partial_ns=float(rng.uniform(200, 800)),
    )


@dataclass
class Nuisance:
    """Per-spectrum nuisances, arrays of length B."""

    film_um: np.ndarray
    air_fraction: np.ndarray
    geometry_scale: np.ndarray
    gain_scale: np.ndarray          # 1 + drift
    film_salinity: np.ndarray | None = None   # salts of the film relative to seawater (None: 1)

    def take(self, sl) -> "Nuisance":
        fs = None if self.film_salinity is None else self.film_salinity[sl]
        return Nuisance(self.film_um[sl], self.air_fraction[sl], self.geometry_scale[sl], self.gain_scale[sl], fs)


def sample_nuisances(rng: np.random.Generator, head: Head, water: np.ndarray, *, salinity: float = 1.0,
                     crack_prob: float = 0.02, drift_sd: float = 1e-4, sections=None,
                     he_loss_prob: float = 0.08) -> Nuisance:
    """Film grows with water content (gamma-distributed); helium loss and cracks; surface height
    (geometry x exp(N(0, 0.04))); gain drift as a random walk along the run.

    ``sections`` (one label per spectrum): each section independently has a poor helium flush
    with probability ``he_loss_prob`` (air x3-8 for the whole section, as in real cores whose
    Ar Ka reaches 2-3e4 counts)."""
    water = np.asarray(water, dtype=float)
    n = len(water)
    mean_film = head.film_um * np.clip(water / 0.55, 0.3, 3.0) ** 2
    film = rng.gamma(3.0, mean_film / 3.0)
    air = head.air_fraction * np.exp(rng.normal(0, 0.3, n))
    geo = np.exp(rng.normal(0, 0.04, n))
    if sections is not None:
        sec = np.asarray(sections)
        for u in np.unique(sec):
            if rng.random() < he_loss_prob:
                air[sec == u] *= rng.uniform(3.0, 8.0)
    crack = rng.random(n) < crack_prob
    geo[crack] *= rng.uniform(0.3, 0.8, crack.sum())
    air[crack] += rng.uniform(0.2, 0.8, crack.sum())
    air = np.clip(air, 0.0, 1.0)
    drift = np.cumsum(rng.normal(0, drift_sd, n))
    return Nuisance(film_um=film, air_fraction=air, geometry_scale=geo, gain_scale=1.0 + drift,
                    film_salinity=np.full(n, float(salinity)))


def fixed_nuisances(head: Head, n: int) -> Nuisance:
    """No nuisance: the head's nominal film, air and geometry for every spectrum (tests)."""
    return Nuisance(film_um=np.full(n, head.film_um), air_fraction=np.full(n, head.air_fraction),
                    geometry_scale=np.ones(n), gain_scale=np.ones(n))
