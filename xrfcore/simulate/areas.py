"""Quick element areas from spectra: net counts in a window around a line, minus a linear
background interpolated from two side windows. Used for the realism comparison and tests (a
stand-in for bAxil's fitted areas: overlaps such as Cl Ka / Rh La are not deconvolved)."""
from __future__ import annotations

import numpy as np

# element -> (line energy keV, half window keV, left background keV, right background keV)
WINDOWS: dict[str, tuple[float, float, float, float]] = {
    "Al": (1.487, 0.09, 1.33, 1.63),
    "Si": (1.740, 0.10, 1.63, 1.88),
    "P": (2.013, 0.08, 1.90, 2.12),
    "S": (2.308, 0.08, 2.19, 2.50),
    "Cl": (2.622, 0.07, 2.48, 3.20),
    "Ar": (2.957, 0.06, 3.20, 3.20),
    "K": (3.313, 0.10, 3.20, 3.47),
    "Ca": (3.691, 0.12, 3.47, 4.28),
    "Ti": (4.510, 0.12, 4.28, 4.80),
    "Mn": (5.898, 0.12, 5.70, 6.14),
    "Fe": (6.403, 0.14, 6.14, 6.86),
    "Rh-La": (2.697, 0.07, 2.48, 3.20),
}


def window_areas(counts: np.ndarray, gain: float = 0.02, offset: float = 0.0,
                 elements=None) -> dict[str, np.ndarray]:
    """Net window areas per element for counts (B, C) or (C,)."""
    c = np.atleast_2d(np.asarray(counts, dtype=float))
    e = offset + gain * np.arange(c.shape[1])
    out = {}
    for el in elements or WINDOWS:
        e0, hw, lb, rb = WINDOWS[el]
        inw = (e >= e0 - hw) & (e <= e0 + hw)
        lw = (e >= lb - 0.03) & (e <= lb + 0.03)
        rw = (e >= rb - 0.03) & (e <= rb + 0.03)
        bl = c[:, lw].mean(1)
        br = c[:, rw].mean(1)
        if rb - lb > 1e-9:
            slope = (br - bl) / (rb - lb)
            bg = bl[:, None] + slope[:, None] * (e[inw][None, :] - lb)
        else:
            bg = bl[:, None] * np.ones(inw.sum())[None, :]
        out[el] = (c[:, inw] - np.clip(bg, 0, None)).sum(1)
    return out
