"""Sediment compositions: components (dry basis) + pore water -> element mass fractions (wet).

Textbook end-members (Taylor & McLennan 1985 PAAS; standard seawater; Berner & Raiswell 1983
C/S); not checked against a primary source here. CaCO3 and TOC are reported on a dry,
salt-free basis (the salt is counted with the pore water).
"""
from __future__ import annotations

import functools

import numpy as np
import xraylib as xrl

from xrfcore.simulate.tables import ELEMENTS, INDEX

_SYM = {xrl.SymbolToAtomicNumber(s): s for s in ELEMENTS}


def formula_vector(formula: str) -> np.ndarray:
    """Element mass fractions of a chemical formula as a vector over ELEMENTS."""
    d = xrl.CompoundParser(formula)
    v = np.zeros(len(ELEMENTS))
    for z, m in zip(d["Elements"], d["massFractions"]):
        if z not in _SYM:
            raise ValueError(f"element Z={z} of {formula} is not in the simulator's element set")
        v[INDEX[_SYM[z]]] += m
    return v


def oxides_vector(oxides_wt: dict[str, float], trace_ppm: dict[str, float] | None = None) -> np.ndarray:
    """Mixture of oxides in wt% (+ trace elements in ppm); the rest to 100 % counted as H2O."""
    v = np.zeros(len(ELEMENTS))
    total = 0.0
    for f, wt in oxides_wt.items():
        v += wt / 100.0 * formula_vector(f)
        total += wt / 100.0
    for sym, ppm in (trace_ppm or {}).items():
        v[INDEX[sym]] += ppm * 1e-6
        total += ppm * 1e-6
    if total < 1.0:
        v += (1.0 - total) * formula_vector("H2O")
    return v / v.sum()


# Post-Archean Australian Shale (wt% oxides) and PAAS-like traces (ppm)
PAAS = {"SiO2": 62.8, "Al2O3": 18.9, "Fe2O3": 7.2, "K2O": 3.7, "MgO": 2.2, "CaO": 1.3,
        "Na2O": 1.2, "TiO2": 1.0, "P2O5": 0.16, "MnO": 0.11}
PAAS_TRACE = {"V": 150, "Cr": 110, "Ni": 55, "Cu": 50, "Zn": 85, "Rb": 160, "Sr": 200, "Zr": 210, "Ba": 650}
# Volcanic ash (andesitic glass), Fe/Ti-rich relative to PAAS per unit Al
ASH = {"SiO2": 58.0, "Al2O3": 16.0, "Fe2O3": 8.5, "CaO": 6.5, "MgO": 3.5, "Na2O": 3.8, "K2O": 1.6,
       "TiO2": 1.2, "P2O5": 0.25, "MnO": 0.16}
ASH_TRACE = {"V": 180, "Cr": 40, "Ni": 20, "Cu": 40, "Zn": 80, "Rb": 50, "Sr": 450, "Zr": 180, "Ba": 450}

# Seawater: salts as fractions of the water mass (Cl 1.935 %, Na 1.077 %, ...)
SEAWATER_SALTS = {"Cl": 0.01935, "Na": 0.01077, "Mg": 0.0013, "S": 0.0009, "Ca": 0.0004,
                  "K": 0.0004, "Br": 0.000067}


@functools.lru_cache(maxsize=1)
def _salt_vector() -> np.ndarray:
    """Salts per unit mass of water at 35 psu (sulphate oxygen included: O4/S mass ratio ~ 2)."""
    v = np.zeros(len(ELEMENTS))
    for s, f in SEAWATER_SALTS.items():
        v[INDEX[s]] += f
    v[INDEX["O"]] += 2 * SEAWATER_SALTS["S"]
    return v


def pore_water_vector(salinity=1.0) -> np.ndarray:
    """Pore-water element fractions; ``salinity`` relative to seawater (1 = 35 psu, 0 = fresh).
    Scalar -> (Z,), array (B,) -> (B, Z)."""
    s = np.asarray(salinity, dtype=float)
    v = formula_vector("H2O")[None, :] + s.reshape(-1, 1) * _salt_vector()[None, :]
    v = v / v.sum(axis=1, keepdims=True)
    return v[0] if s.ndim == 0 else v


@functools.lru_cache(maxsize=1)
def seawater_vector() -> np.ndarray:
    return pore_water_vector(1.0)


@functools.lru_cache(maxsize=1)
def component_vectors() -> dict[str, np.ndarray]:
    carb = 0.9985 * formula_vector("CaCO3") + 0.0015 * formula_vector("SrCO3")  # ~1200 ppm Sr
    om = formula_vector("C6H10O3N0.6")              # 52 % C: OM = TOC / 0.52
    return {
        "caco3": carb,
        "om": om,
        "opal": formula_vector("SiO2(H2O)0.4"),
        "pyrite": formula_vector("FeS2"),
        "barite": formula_vector("BaSO4"),
        "mno2": formula_vector("MnO2"),
        "apatite": formula_vector("Ca5(PO4)3OH"),
        "ash": oxides_vector(ASH, ASH_TRACE),
        "br": np.eye(len(ELEMENTS))[INDEX["Br"]],
    }


OM_PER_TOC = 1.0 / 0.52


def terrigenous_vector(si_al: float = 1.0, k_al: float = 1.0, ti_al: float = 1.0, fe_al: float = 1.0,
                       ca_al: float = 1.0) -> np.ndarray:
    """PAAS with Si/Al (quartz), K/Al (illite vs kaolinite), Ti/Al (aeolian), Fe/Al scaled."""
    ox = dict(PAAS)
    ox["SiO2"] *= si_al
    ox["K2O"] *= k_al
    ox["TiO2"] *= ti_al
    ox["Fe2O3"] *= fe_al
    ox["CaO"] *= ca_al
    tot = sum(ox.values())
    ox = {k: v * 98.57 / tot for k, v in ox.items()}
    return oxides_vector(ox, PAAS_TRACE)


def random_terrigenous(rng: np.random.Generator, spread: float = 0.2) -> tuple[np.ndarray, dict]:
    """A per-core terrigenous end-member: log-normal ratios around PAAS."""
    p = {k: float(np.exp(rng.normal(0, spread))) for k in ("si_al", "k_al", "ti_al", "fe_al", "ca_al")}
    return terrigenous_vector(**p), p


def compose(caco3, toc, opal, water, terr: np.ndarray, *, ash=0.0, pyrite_s=None, ba_ppm=None,
            mn_pct=None, p_extra_pct=None, br_per_toc_ppm: float = 60.0, salinity=1.0) -> np.ndarray:
    """Wet-sediment element mass fractions (B, Z).

    caco3, toc, opal, ash: dry-basis fractions (0-1); water: wet-basis water fraction (0-1);
    terr: (Z,) or (B, Z) terrigenous end-member; pyrite_s: pyrite S (dry fraction, default
    TOC/2.8); ba_ppm: barite Ba; mn_pct: Mn as MnO2 (wt% Mn); p_extra_pct: apatite P (wt%);
    salinity: pore-water salinity relative to seawater (scalar or (B,)).
    The terrigenous fraction is the remainder; if the rest exceeds 95 % it is scaled down.
    """
    caco3, toc, opal, water, ash = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (caco3, toc, opal, water, ash))
    n = max(len(caco3), len(toc), len(opal), len(water))
    caco3, toc, opal, water, ash = (np.broadcast_to(x, (n,)).astype(float) for x in (caco3, toc, opal, water, ash))
    cv = component_vectors()
    pyr_s = toc / 2.8 if pyrite_s is None else np.broadcast_to(np.asarray(pyrite_s, float), (n,))
    ba = np.broadcast_to(np.asarray(300.0 if ba_ppm is None else ba_ppm, float), (n,))
    mn = np.broadcast_to(np.asarray(0.0 if mn_pct is None else mn_pct, float), (n,))
    pex = np.broadcast_to(np.asarray(0.0 if p_extra_pct is None else p_extra_pct, float), (n,))
    fr = {
        "caco3": caco3,
        "om": toc * OM_PER_TOC,
        "opal": opal,
        "pyrite": pyr_s / 0.5345,
        "barite": ba * 1e-6 / 0.5884,
        "mno2": mn / 100.0 / 0.6319,
        "apatite": pex / 100.0 / 0.1850,
        "ash": ash,
        "br": toc * 100 * br_per_toc_ppm * 1e-6,
    }
    rest = sum(fr.values())
    scale = np.where(rest > 0.95, 0.95 / np.maximum(rest, 1e-12), 1.0)
    terr_frac = 1.0 - rest * scale
    terr = np.asarray(terr, dtype=float)
    terr_b = np.broadcast_to(terr, (n, len(ELEMENTS)))
    dry = terr_frac[:, None] * terr_b
    for k, f in fr.items():
        dry = dry + (f * scale)[:, None] * cv[k][None, :]
    pw = np.broadcast_to(np.atleast_2d(pore_water_vector(salinity)), (n, len(ELEMENTS)))
    wet = (1.0 - water)[:, None] * dry + water[:, None] * pw
    return wet / wet.sum(axis=1, keepdims=True)


def water_from_porosity(phi, rho_solid: float = 2.65, rho_water: float = 1.025):
    """Wet-basis water mass fraction from porosity."""
    phi = np.asarray(phi, dtype=float)
    return phi * rho_water / (phi * rho_water + (1.0 - phi) * rho_solid)


# Three reference sediments of the spec (dry fractions; water wet basis)
REFERENCE_SEDIMENTS = {
    "carbonate ooze": dict(caco3=0.85, toc=0.003, opal=0.02, water=0.45),
    "diatomaceous mud": dict(caco3=0.05, toc=0.045, opal=0.40, water=0.72),
    "terrigenous clay": dict(caco3=0.08, toc=0.008, opal=0.02, water=0.55),
}


def reference_composition(name: str, **kw) -> np.ndarray:
    p = dict(REFERENCE_SEDIMENTS[name])
    p.update(kw)
    return compose(terr=terrigenous_vector(), mn_pct=0.08, **p)[0]
