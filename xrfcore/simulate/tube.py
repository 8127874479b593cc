"""Rh-anode X-ray tube spectrum after Ebel (1999, X-Ray Spectrom. 28:255; L lines per Ebel 2003).

Formulas as summarised in the project's simulator spec (read from the literature and from
published implementations; no code copied). Output is photons s^-1 sr^-1 per bin (continuum) or
per line, for the given current, after the tube's Be window.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import xraylib as xrl

from xrfcore.simulate.tables import BE, RHO_BE, continuum_energies, mu_compound

Z_RH = 45
A_RH = 102.906

# Rh L lines emitted by the anode: (xraylib macro name, shell)
RH_L_LINES = (
    ("L3M1", "L3"), ("L3M4", "L3"), ("L3M5", "L3"), ("L3N5", "L3"), ("L3N1", "L3"),
    ("L2M1", "L2"), ("L2M4", "L2"), ("L2N4", "L2"),
    ("L1M2", "L1"), ("L1M3", "L1"), ("L1N2", "L1"), ("L1N3", "L1"),
)
_SHELL = {"L1": xrl.L1_SHELL, "L2": xrl.L2_SHELL, "L3": xrl.L3_SHELL}


def rh_line_energies() -> tuple[float, ...]:
    return tuple(float(xrl.LineEnergy(Z_RH, getattr(xrl, f"{m}_LINE"))) for m, _ in RH_L_LINES)


def _rho_z_bar(e0: float, u: np.ndarray) -> np.ndarray:
    z = Z_RH
    lnz = math.log(z)
    m = 0.1382 - 0.9211 / math.sqrt(z)
    eta = e0**m * (0.1904 - 0.2236 * lnz + 0.1292 * lnz**2 - 0.0149 * lnz**3)
    rho_zm = (A_RH / z) * (0.787e-5 * math.sqrt(0.0135 * z) * e0**1.5 + 0.735e-6 * e0**2)
    lnu = np.log(u)
    return rho_zm * lnu * (0.49269 - 1.0987 * eta + 0.78557 * eta**2) / (
        0.70256 - 1.09865 * eta + 1.0046 * eta**2 + lnu)


def _self_absorption(e: np.ndarray, rho_z: np.ndarray, takeoff_deg: float) -> np.ndarray:
    mu = np.array([xrl.CS_Total(Z_RH, float(x)) for x in np.atleast_1d(e)])
    chi = 2.0 * mu * rho_z * 1.0 / math.sin(math.radians(takeoff_deg))  # electron incidence 90 deg
    chi = np.maximum(chi, 1e-12)
    return (1.0 - np.exp(-chi)) / chi


@functools.lru_cache(maxsize=16)
def _tube_per_ma(e0_kv: float, takeoff_deg: float, be_um: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    e0 = float(e0_kv)
    e = continuum_energies(e0)
    de = e[1] - e[0]
    u = e0 / e
    x = 1.109 - 0.00435 * Z_RH + 0.00175 * e0
    f = _self_absorption(e, _rho_z_bar(e0, u), takeoff_deg)
    cont = 1.35e9 * Z_RH * (u - 1.0) ** x * f * de

    # L lines
    fc = -0.4814 + 0.03781 * Z_RH - 2.413e-4 * Z_RH**2
    c_s = {"L3": 4.94e13, "L2": 2.70e13 * fc, "L1": 0.71e13 * fc}
    omega_l = 0.0459
    le, lines = [], []
    for macro, shell in RH_L_LINES:
        mac = getattr(xrl, f"{macro}_LINE")
        el = float(xrl.LineEnergy(Z_RH, mac))
        edge = float(xrl.EdgeEnergy(Z_RH, _SHELL[shell]))
        u0 = e0 / edge
        lnu0 = math.log(u0)
        core = u0 * lnu0 + 1.0 - u0
        inv_s = (8 * 0.25 / Z_RH) * core * (
            1.0 + 16.05 * math.sqrt(0.0135 * Z_RH / edge) * (math.sqrt(u0) * lnu0 + 2 * (1 - math.sqrt(u0))) / core)
        r = 1.0 - 0.0081517 * Z_RH + 3.613e-5 * Z_RH**2 + 0.009583 * Z_RH * math.exp(-u0) + 0.001141 * e0
        p = float(xrl.RadRate(Z_RH, mac))
        fl = _self_absorption(np.array([el]), _rho_z_bar(e0, np.array([u0])), takeoff_deg)[0]
        le.append(el)
        lines.append(c_s[shell] * inv_s * r * omega_l * p * fl)
    le_a = np.array(le)
    lines_a = np.array(lines)
    # Be exit window of the tube
    t_be = be_um * 1e-4
    cont = cont * np.exp(-mu_compound(BE, e) * RHO_BE * t_be)
    lines_a = lines_a * np.exp(-mu_compound(BE, le_a) * RHO_BE * t_be)
    return e, cont, le_a, lines_a


def tube_spectrum(e0_kv: float = 10.0, current_ua: float = 200.0, takeoff_deg: float = 20.0,
                  be_um: float = 125.0, rhl_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Incident energies (continuum bin centres, then Rh L lines) and photons s^-1 sr^-1 each.

    ``rhl_scale`` multiplies the Rh L lines (Ebel's L output at 10 kV is uncertain; see REALISM.md).
    """
    e, cont, le, lines = _tube_per_ma(float(e0_kv), float(takeoff_deg), float(be_um))
    ma = current_ua / 1000.0
    return np.concatenate([e, le]), np.concatenate([cont, lines * rhl_scale]) * ma
