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
    """Salts per unit mass of seawater at 35 psu (sulphate oxygen included: O4/S mass ratio ~ 2)."""
    v = np.zeros(len(ELEMENTS))
    for s, f in SEAWATER_SALTS.items():
        v[INDEX[s]] += f
    v[INDEX["O"]] += 2 * SEAWATER_SALTS["S"]
    return v


def pore_water_vector(salinity=1.0) -> np.ndarray:
    """Pore-water element fractions; ``salinity`` relative to seawater (1 = 35 psu, 0 = fresh).
    Scalar -> (Z,), array (B,) -> (B, Z). The salt fractions are per mass of seawater (Cl 1.935 %
    of the pore water at salinity 1), water makes up the rest."""
    s = np.asarray(salinity, dtype=float)
    salt = _salt_vector()
    v = (1.0 - s.reshape(-1, 1) * salt.sum()) * formula_vector("H2O")[None, :] + s.reshape(-1, 1) * salt[None, :]
    v = v / v.sum(axis=1, keepdims=True)
    return v[0] if s.ndim == 0 else v


@functools.lru_cache(maxsize=1)
def seawater_vector() -> np.ndarray:
    return pore_water_vector(1.0)


@functools.lru_cache(maxsize=1)
def component_vectors() -> dict[str, np.ndarray]:
    carb = 0.9985 * formula_vector("CaCO3") + 0.0015 * formula_vector("SrCO3")  # ~1200 ppm Sr
    # 52 % C: OM = TOC / 0.52; organic S (proteins, C/S ~ 45 by weight) stays in fresh water too
    om = formula_vector("C6H10O3N0.6S0.05")
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

# Pyrite: C/S (by weight) of normal marine sediments (Berner & Raiswell 1983). Pyrite formation
# is sulphate-limited in fresh and brackish water (lakes: C/S ~ 10-50), so C/S rises as the pore
# water freshens: C/S = 2.8 / (0.2 + 0.8 salinity), 14 in fresh water.
C_S_MARINE = 2.8
# Pyrite sits in framboids (mean diameter ~ 5-7 um in modern sediments, Wilkin et al. 1996;
# packing ~ 0.6) in which S Ka and the Rh L lines exciting it are absorbed within ~1 um: the
# mineralogical (particle) effect. The simulator is homogeneous, so pyrite enters with the
# intensity-equivalent amounts of S and Fe (self-absorption factor of a grain relative to the
# same S spread in the wet matrix).
PYRITE_FRAMBOID_UM = 6.0
PYRITE_PACKING = 0.6


def pyrite_c_s(salinity) -> np.ndarray:
    """C/S weight ratio of pyrite formation for pore-water ``salinity`` (relative to seawater)."""
    s = np.clip(np.asarray(salinity, dtype=float), 0.0, 1.5)
    return C_S_MARINE / (0.2 + 0.8 * s)


def _slab_factor(x):
    x = np.maximum(np.asarray(x, dtype=float), 1e-9)
    return -np.expm1(-x) / x


@functools.lru_cache(maxsize=4)
def pyrite_grain_factors(d_um: float = PYRITE_FRAMBOID_UM, psi1_deg: float = 50.0,
                         psi2_deg: float = 40.0) -> tuple[float, float]:
    """(S, Fe) intensity factors of pyrite in framboids of diameter ``d_um`` relative to the
    same mass homogeneously dispersed in a wet clay: ratio of the slab self-absorption factors
    (1 - e^-x)/x over the mean chord 2d/3 for the grain and for the matrix. S: excited at
    ~2.75 keV (Rh L), emits 2.31 keV; Fe: excited at ~8 keV, emits 6.40 keV."""
    if d_um <= 0:
        return 1.0, 1.0
    from xrfcore.simulate.tables import mu_compound

    s1, s2 = np.sin(np.radians(psi1_deg)), np.sin(np.radians(psi2_deg))
    chord = 2.0 / 3.0 * d_um * 1e-4
    pyr = {"Fe": 0.4655, "S": 0.5345}
    mud = 0.45 * terrigenous_vector() + 0.55 * formula_vector("H2O")
    matrix = {s: float(w) for s, w in zip(ELEMENTS, mud) if w > 0}
    out = []
    for e_in, e_out in ((2.75, 2.308), (8.0, 6.40)):
        ein, eout = np.array([e_in]), np.array([e_out])
        chi_g = 5.0 * PYRITE_PACKING * (mu_compound(pyr, ein)[0] / s1 + mu_compound(pyr, eout)[0] / s2)
        chi_m = 1.6 * (mu_compound(matrix, ein)[0] / s1 + mu_compound(matrix, eout)[0] / s2)
        out.append(float(_slab_factor(chi_g * chord) / _slab_factor(chi_m * chord)))
    return out[0], out[1]


@functools.lru_cache(maxsize=4)
def pyrite_vector(d_um: float = PYRITE_FRAMBOID_UM) -> np.ndarray:
    """Intensity-equivalent pyrite: FeS2 with its S and Fe scaled by the framboid factors."""
    fs, ffe = pyrite_grain_factors(d_um)
    v = formula_vector("FeS2").copy()
    v[INDEX["S"]] *= fs
    v[INDEX["Fe"]] *= ffe
    return v


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
            mn_pct=None, p_extra_pct=None, br_per_toc_ppm: float = 60.0, salinity=1.0,
            pyrite_grain_um: float = PYRITE_FRAMBOID_UM) -> np.ndarray:
    """Wet-sediment element mass fractions (B, Z).

    caco3, toc, opal, ash: dry-basis fractions (0-1); water: wet-basis water fraction (0-1);
    terr: (Z,) or (B, Z) terrigenous end-member; pyrite_s: pyrite S (dry fraction, default
    TOC / C/S, C/S = 2.8 in marine pore water, rising to ~35 in fresh water: ``pyrite_c_s``);
    pyrite_grain_um: framboid size for the pyrite particle effect (0: homogeneous); ba_ppm: barite Ba; mn_pct: Mn as MnO2 (wt% Mn); p_extra_pct: apatite P (wt%);
    salinity: pore-water salinity relative to seawater (scalar or (B,)).
    The terrigenous fraction is the remainder; if the rest exceeds 95 % it is scaled down.
    """
    caco3, toc, opal, water, ash = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (caco3, toc, opal, water, ash))
    n = max(len(caco3), len(toc), len(opal), len(water))
    caco3, toc, opal, water, ash = (np.broadcast_to(x, (n,)).astype(float) for x in (caco3, toc, opal, water, ash))
    cv = component_vectors()
    sal = np.broadcast_to(np.asarray(salinity, float), (n,)) if np.ndim(salinity) else np.full(n, float(salinity))
    pyr_s = toc / pyrite_c_s(sal) if pyrite_s is None else np.broadcast_to(np.asarray(pyrite_s, float), (n,))
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
        vec = pyrite_vector(float(pyrite_grain_um)) if k == "pyrite" else cv[k]
        dry = dry + (f * scale)[:, None] * vec[None, :]
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
