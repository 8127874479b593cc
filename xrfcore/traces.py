"""Element-window traces for downcore plots: counts in a window around an emission line, log-ratios.

A quick look as operators use it (e.g. ln(Ca/Fe)), not a quantification: the window is +/- one
detector FWHM around the element's K-alpha (or L-alpha) line, with no background or overlap
correction. Used by the GUI's downcore view and available to scripts.
"""
from __future__ import annotations

import numpy as np

from xrfcore import energy

# SDD resolution model: FWHM(E)^2 = FWHM_Mn^2 + 2.355^2 * eps * F * (E - 5.895 keV)
FWHM_MN_KEV = 0.140
_EPS_F_KEV = 3.64e-3 * 0.115


def fwhm_kev(kev: float) -> float:
    return float(np.sqrt(max(FWHM_MN_KEV ** 2 + 2.355 ** 2 * _EPS_F_KEV * (kev - 5.895), 1e-4)))


def line_kev(element: str, line: str | None = None) -> float:
    """Energy of an element's K-alpha line (L-alpha for heavy elements), or of the named line."""
    el = element.strip().capitalize()
    rows = [ln for ln in energy.LINES if ln.element == el]
    if not rows:
        raise ValueError(f"no emission line known for element {element!r}")
    for name in ([line] if line else ["Ka", "La"]):
        for ln in rows:
            if ln.line == name:
                return float(ln.kev)
    raise ValueError(f"element {element!r} has no {line} line in the table")


def window_counts(counts, grid, element: str, line: str | None = None,
                  half_width_kev: float | None = None) -> np.ndarray:
    """Counts summed over the window around the element's line, one value per spectrum (rows)."""
    if isinstance(grid, energy.RowGrids):   # each spectrum onto the run's own calibrated scale
        counts, grid = energy.on_grid(counts, grid, grid.run), grid.run
    g = energy.as_grid(grid)
    kev = line_kev(element, line)
    hw = fwhm_kev(kev) if half_width_kev is None else float(half_width_kev)
    e = g.energies()
    sel = (e >= kev - hw) & (e <= kev + hw)
    if not sel.any():
        raise ValueError(f"{element} line at {kev:.2f} keV lies outside the spectrum "
                         f"({e[0]:.2f}-{e[-1]:.2f} keV)")
    c = np.asarray(counts)
    return c[..., sel].sum(axis=-1).astype(np.float64)


def log_ratio(counts, grid, numerator: str, denominator: str, pseudo: float = 1.0) -> np.ndarray:
    """ln((a + pseudo) / (b + pseudo)) of two element windows, per spectrum."""
    if isinstance(grid, energy.RowGrids):
        counts, grid = energy.on_grid(counts, grid, grid.run), grid.run
    a = window_counts(counts, grid, numerator)
    b = window_counts(counts, grid, denominator)
    return np.log((a + pseudo) / (b + pseudo))
