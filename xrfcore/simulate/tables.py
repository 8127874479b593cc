"""Composition-independent physics tables, pre-computed once per geometry with xraylib.

Everything that does not depend on the sample composition (attenuation per element, line
production cross-sections, differential scatter cross-sections, Compton energies) is tabulated
here so that the forward model is a few matrix products over a batch of compositions.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import xraylib as xrl
import xraylib_np as xnp

# Elements the sediment model can contain (Ar lives only in the air of the path).
ELEMENTS: tuple[str, ...] = (
    "H", "C", "N", "O", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Ti", "V", "Cr",
    "Mn", "Fe", "Ni", "Cu", "Zn", "Br", "Rb", "Sr", "Zr", "Ba",
)
Z_OF = {s: xrl.SymbolToAtomicNumber(s) for s in ELEMENTS + ("Ar", "He", "Rh", "Be")}
INDEX = {s: i for i, s in enumerate(ELEMENTS)}

# Candidate emission lines (xraylib macro name, short label, shell). Selection happens per element.
_K_LINES = [("KL2", "Ka2"), ("KL3", "Ka1"), ("KM2", "Kb3"), ("KM3", "Kb1"), ("KM5", "Kb5"),
            ("KN2", "Kb2"), ("KN3", "Kb2")]
_L_LINES = [("L3M1", "Ll"), ("L3M4", "La2"), ("L3M5", "La1"), ("L3N1", "Lb6"), ("L3N5", "Lb2"),
            ("L3O4", "Lb5"), ("L2M1", "Ln"), ("L2M4", "Lb1"), ("L2N4", "Lg1"), ("L2O4", "Lg6"),
            ("L1M2", "Lb4"), ("L1M3", "Lb3"), ("L1N2", "Lg2"), ("L1N3", "Lg3")]
_SHELL_OF = {"K": xrl.K_SHELL, "L1": xrl.L1_SHELL, "L2": xrl.L2_SHELL, "L3": xrl.L3_SHELL}

# Sample emission lines worth simulating: >= 0.9 keV (below is cut by the discriminator and
# windows) and >= 0.2 % of the element's strongest line.
MIN_LINE_KEV = 0.9
MIN_REL_STRENGTH = 0.002

# Incident grid: 1.0-10.0 keV continuum in 20 eV bins (the tube spectrum is negligible below
# 1 keV after its Be window); the discrete Rh L lines are appended by tube.py.
CONT_STEP_KEV = 0.020

# Elements whose lines excite others strongly enough to matter (secondary fluorescence).
EXCITERS = ("Si", "P", "S", "Cl", "K", "Ca", "Ti", "Mn", "Fe", "Ba", "Sr")

# Air by mass (Ar is what shows up as the Ar Ka line); helium flush.
AIR = {"N": 0.7553, "O": 0.2318, "Ar": 0.0129}
RHO_AIR = 1.205e-3
RHO_HE = 1.664e-4


@dataclass(frozen=True)
class Line:
    element: str
    z: int
    macro: int          # xraylib line macro
    label: str          # e.g. "Ca Ka1"
    shell: str          # "K", "L1", "L2", "L3"
    energy: float       # keV


def continuum_energies(e0_kv: float) -> np.ndarray:
    """Bin centres of the continuum grid, 1 keV up to the tube voltage."""
    n = int(round((e0_kv - 1.0) / CONT_STEP_KEV))
    return 1.0 + CONT_STEP_KEV * (np.arange(n) + 0.5)


def _line_energy(z: int, macro: int) -> float:
    try:
        return float(xrl.LineEnergy(z, macro))
    except ValueError:
        return 0.0


@functools.lru_cache(maxsize=8)
def select_lines(e0_kv: float) -> tuple[Line, ...]:
    """Every K or L line >= 0.9 keV with its edge below E0 carrying >= 0.2 % of the element's
    strongest line (strength judged at an incident energy just below E0)."""
    out: list[Line] = []
    e_probe = e0_kv * 0.95
    for sym in ELEMENTS:
        z = Z_OF[sym]
        cands = []
        for group, shells in ((_K_LINES, "K"), (_L_LINES, "L")):
            for name, label in group:
                macro = getattr(xrl, f"{name}_LINE")
                shell = "K" if shells == "K" else name[:2]
                e = _line_energy(z, macro)
                if e < MIN_LINE_KEV:
                    continue
                try:
                    edge = xrl.EdgeEnergy(z, _SHELL_OF[shell])
                    q = xrl.CS_FluorLine_Kissel_Cascade(z, macro, e_probe) if edge < e_probe else 0.0
                except ValueError:
                    q = 0.0
                if q > 0:
                    cands.append((q, Line(sym, z, macro, f"{sym} {label}", shell, e)))
        if not cands:
            continue
        qmax = max(q for q, _ in cands)
        # merge duplicates (KN2/KN3 share a label: keep both, they are separate macros)
        out.extend(line for q, line in cands if q >= MIN_REL_STRENGTH * qmax)
    return tuple(out)


def mu_elements(energies: np.ndarray, symbols=ELEMENTS) -> np.ndarray:
    """Total mass attenuation (cm2/g), shape (n_elements, n_energies)."""
    z = np.array([Z_OF[s] for s in symbols], dtype=np.int64)
    return xnp.CS_Total(z, np.asarray(energies, dtype=np.float64))


def mu_compound(weights: dict[str, float], energies: np.ndarray) -> np.ndarray:
    """Mass attenuation of a mixture given as {symbol: mass fraction}."""
    syms = list(weights)
    w = np.array([weights[s] for s in syms])
    w = w / w.sum()
    return w @ mu_elements(energies, syms)


# Materials on the way: foil ~ polypropylene (C3H6), Be windows, Si detector, seawater.
FOIL = {"C": 0.8563, "H": 0.1437}
RHO_FOIL = 0.92
BE = {"Be": 1.0}
RHO_BE = 1.848
SI = {"Si": 1.0}
RHO_SI = 2.33
RHO_SEAWATER = 1.025


@dataclass
class Tables:
    """Pre-computed tables for one tube voltage and one pair of angles."""

    e0_kv: float
    psi1_deg: float
    psi2_deg: float
    inc_e: np.ndarray          # (K,) incident energies (continuum bins then Rh L lines)
    n_cont: int                # first n_cont entries of inc_e are continuum bins
    lines: tuple[Line, ...]
    line_e: np.ndarray         # (L,)
    line_el: np.ndarray        # (L,) element index into ELEMENTS
    mu_inc: np.ndarray         # (Z, K)
    mu_line: np.ndarray        # (Z, L)
    q: np.ndarray              # (L, K) line production cross-section at incident energies
    dcs_rayl: np.ndarray       # (Z, K) 4*pi*dsigma/dOmega at the scatter angle
    dcs_compt: np.ndarray      # (Z, K)
    e_compt: np.ndarray        # (K,) Compton-shifted energies
    mu_compt: np.ndarray       # (Z, K)
    doppler_fwhm: np.ndarray   # (K,) keV
    # secondary fluorescence
    grp_line: np.ndarray       # (Lg,) index of the representative line of each excited K group
    grp_of_line: np.ndarray    # (L,) group index or -1
    exc_line: np.ndarray       # (M,) indices of exciter lines
    q_grp_at_exc: np.ndarray   # (Lg, M) Q of the group line at the exciter energies (0 if below edge)
    mu_exc: np.ndarray         # (Z, M)
    coarse_index: np.ndarray   # (K,) coarse bin of each incident energy
    coarse_e: np.ndarray       # (Kc,)
    mu_coarse: np.ndarray      # (Z, Kc)
    q_grp_coarse: np.ndarray   # (Lg, Kc)
    q_exc_coarse: np.ndarray   # (M, Kc)
    # argon of the air in the path
    q_ar: np.ndarray           # (K,) Ar Ka production (cm2/g of Ar)
    ar_e: float

    @property
    def g(self) -> float:
        return np.sin(np.radians(self.psi1_deg)) / np.sin(np.radians(self.psi2_deg))

    @property
    def theta_rad(self) -> float:
        return np.radians(180.0 - self.psi1_deg - self.psi2_deg)


@functools.lru_cache(maxsize=16)
def build_tables(e0_kv: float, psi1_deg: float, psi2_deg: float, extra_e: tuple[float, ...]) -> Tables:
    """Tabulate everything for the given voltage, angles and extra incident energies (Rh L lines)."""
    cont = continuum_energies(e0_kv)
    inc_e = np.concatenate([cont, np.asarray(extra_e, dtype=np.float64)])
    lines = select_lines(e0_kv)
    line_e = np.array([ln.energy for ln in lines])
    line_el = np.array([INDEX[ln.element] for ln in lines])
    zs = np.array([Z_OF[s] for s in ELEMENTS], dtype=np.int64)

    mu_inc = xnp.CS_Total(zs, inc_e)
    mu_line = xnp.CS_Total(zs, line_e)
    q = np.zeros((len(lines), len(inc_e)))
    for i, ln in enumerate(lines):
        q[i] = xnp.CS_FluorLine_Kissel_Cascade(np.array([ln.z]), np.array([ln.macro]), inc_e)[0, 0]

    theta = np.radians(180.0 - psi1_deg - psi2_deg)
    th = np.array([theta])
    dcs_rayl = 4 * np.pi * xnp.DCS_Rayl(zs, inc_e, th)[:, :, 0]
    dcs_compt = 4 * np.pi * xnp.DCS_Compt(zs, inc_e, th)[:, :, 0]
    e_compt = inc_e / (1.0 + (inc_e / 510.999) * (1.0 - np.cos(theta)))
    mu_compt = xnp.CS_Total(zs, e_compt)
    # Doppler broadening: Gaussian, FWHM ~ 2 * p_z * q / 137 with p_z ~ 1 a.u. (q in keV units
    # of momentum transfer expressed via photon energies; gives ~55 eV at 2.7 keV, 90 deg).
    qmom = np.sqrt(inc_e**2 + e_compt**2 - 2 * inc_e * e_compt * np.cos(theta))
    doppler_fwhm = 2.0 * 1.0 * qmom / 137.036

    # --- secondary fluorescence: excited K shells of light elements, exciters = strong lines
    k_groups: dict[int, int] = {}
    for i, ln in enumerate(lines):
        if ln.shell != "K":
            continue
        cur = k_groups.get(ln.z)
        if cur is None or ln.label.endswith("Ka1"):
            k_groups[ln.z] = i
    grp_line = np.array(sorted(k_groups.values()))
    grp_of_line = np.full(len(lines), -1)
    for gi, li in enumerate(grp_line):
        for i, ln in enumerate(lines):
            if ln.z == lines[li].z and ln.shell == "K":
                grp_of_line[i] = gi
    exc_line = np.array([i for i, ln in enumerate(lines) if ln.element in EXCITERS])
    exc_e = line_e[exc_line]
    q_grp_at_exc = np.zeros((len(grp_line), len(exc_line)))
    for gi, li in enumerate(grp_line):
        ln = lines[li]
        edge = xrl.EdgeEnergy(ln.z, xrl.K_SHELL)
        ok = exc_e > edge
        if ok.any():
            q_grp_at_exc[gi, ok] = xnp.CS_FluorLine_Kissel_Cascade(
                np.array([ln.z]), np.array([ln.macro]), exc_e[ok])[0, 0]
    mu_exc = xnp.CS_Total(zs, exc_e)
    # coarse 100 eV grid for the secondary term (Rh lines keep their own coarse bins)
    coarse_edges = np.arange(1.0, e0_kv + 1e-9, 0.1)
    coarse_cont = np.clip(np.searchsorted(coarse_edges, cont, side="right") - 1, 0, len(coarse_edges) - 2)
    n_cb = len(coarse_edges) - 1
    coarse_index = np.concatenate([coarse_cont, n_cb + np.arange(len(extra_e))]).astype(np.int64)
    coarse_e = np.concatenate([0.5 * (coarse_edges[:-1] + coarse_edges[1:]), np.asarray(extra_e, float)])
    mu_coarse = xnp.CS_Total(zs, coarse_e)
    q_grp_coarse = np.zeros((len(grp_line), len(coarse_e)))
    for gi, li in enumerate(grp_line):
        ln = lines[li]
        q_grp_coarse[gi] = xnp.CS_FluorLine_Kissel_Cascade(np.array([ln.z]), np.array([ln.macro]), coarse_e)[0, 0]
    q_exc_coarse = np.zeros((len(exc_line), len(coarse_e)))
    for mi, li in enumerate(exc_line):
        ln = lines[li]
        q_exc_coarse[mi] = xnp.CS_FluorLine_Kissel_Cascade(np.array([ln.z]), np.array([ln.macro]), coarse_e)[0, 0]

    z_ar = np.array([Z_OF["Ar"]])
    q_ar = (xnp.CS_FluorLine_Kissel_Cascade(z_ar, np.array([xrl.KL3_LINE]), inc_e)[0, 0]
            + xnp.CS_FluorLine_Kissel_Cascade(z_ar, np.array([xrl.KL2_LINE]), inc_e)[0, 0])
    ar_e = float(xrl.LineEnergy(18, xrl.KL3_LINE))

    return Tables(
        e0_kv=e0_kv, psi1_deg=psi1_deg, psi2_deg=psi2_deg, inc_e=inc_e, n_cont=len(cont),
        lines=lines, line_e=line_e, line_el=line_el, mu_inc=mu_inc, mu_line=mu_line, q=q,
        dcs_rayl=dcs_rayl, dcs_compt=dcs_compt, e_compt=e_compt, mu_compt=mu_compt,
        doppler_fwhm=doppler_fwhm, grp_line=grp_line, grp_of_line=grp_of_line, exc_line=exc_line,
        q_grp_at_exc=q_grp_at_exc, mu_exc=mu_exc, coarse_index=coarse_index, coarse_e=coarse_e,
        mu_coarse=mu_coarse, q_grp_coarse=q_grp_coarse, q_exc_coarse=q_exc_coarse,
        q_ar=q_ar, ar_e=ar_e,
    )
