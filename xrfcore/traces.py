"""Element-window traces for downcore plots: counts in a window around an emission line, log-ratios.

A quick look as operators use it (e.g. ln(Ca/Fe)), not a quantification: the window is +/- one
detector FWHM around the element's K-alpha (or L-alpha) line, with no background or overlap
correction. Used by the GUI's downcore view and available to scripts.
"""
from __future__ import annotations

from dataclasses import dataclass

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


# ---------------------------------------------------------------------------- any trace
# How element counts are normalised for a downcore trace (a ratio of two elements needs none: the
# exposure cancels). "scatter": over the tube's own scattered line (coherent + incoherent window),
# the usual correction for water content, porosity and surface effects.
NORMALISATIONS = {"counts": "counts", "cps": "counts per live second",
                  "sum": "per 1000 counts of the spectrum", "scatter": "over the tube-line scatter"}


@dataclass(frozen=True)
class TraceSpec:
    """One downcore trace: an element's window counts, or a ratio of two, optionally ln."""
    numerator: str
    denominator: str | None = None
    log: bool = False
    normalise: str = "counts"

    def __post_init__(self):
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, not {self.normalise!r}")

    def label(self) -> str:
        if self.denominator:
            inner = f"{self.numerator}/{self.denominator}"
        else:
            inner = self.numerator + ({"counts": "", "cps": " cps", "sum": " ‰ of sum",
                                       "scatter": "/scatter"}[self.normalise])
        return f"ln({inner})" if self.log else inner

    def to_dict(self) -> dict:
        return {"numerator": self.numerator, "denominator": self.denominator, "log": self.log,
                "normalise": self.normalise}


DEFAULT_TRACES = (TraceSpec("Ca"), TraceSpec("Fe"), TraceSpec("Ca", "Fe", log=True))


HEAVY = ("Ba", "W", "Hg", "Pb")   # read on their L-alpha line (K lines far above a core scanner's kV)


def pick_line(element: str, top_kev: float) -> str | None:
    """The line a trace of ``element`` reads: K-alpha below ``top_kev`` (the spectrum's end or the
    tube voltage), L-alpha for the heavy elements; None when neither is there."""
    for line in ("Ka", "La") if element in HEAVY else ("Ka",):
        try:
            if 0.9 < line_kev(element, line) < top_kev:
                return line
        except ValueError:
            continue
    return None


def _top_kev(grid, max_kev: float | None) -> float:
    g = energy.as_grid(grid.run if isinstance(grid, energy.RowGrids) else grid)
    e_end = float(g.energies()[-1])
    return min(e_end, 0.95 * max_kev) if max_kev else e_end


def elements_in_range(grid, max_kev: float | None = None) -> list[str]:
    """Elements a trace can read in these spectra (see :func:`pick_line`; ``max_kev``: the tube
    voltage), in order of their line's energy."""
    from xrfcore.anode import SAMPLE_ELEMENTS   # the elements core-scanner work reads
    top = _top_kev(grid, max_kev)
    out = [(line_kev(el, ln), el) for el in ("Mg",) + SAMPLE_ELEMENTS if (ln := pick_line(el, top))]
    return [el for _, el in sorted(out)]


def scatter_line(anode: str, kv: float | None, grid) -> float:
    """Energy of the tube line whose scatter is the normaliser: K-alpha when the tube voltage
    excites it and the spectrum holds it, else L-alpha (a 10 kV Rh tube: Rh L-alpha)."""
    g = energy.as_grid(grid.run if isinstance(grid, energy.RowGrids) else grid)
    top = float(g.energies()[-1])
    ka = line_kev(anode, "Ka")
    if ka < top and (kv is None or kv > ka * 1.15):
        return ka
    return line_kev(anode, "La")


def trace_values(counts, grid, spec: TraceSpec, *, live_s=None, anode: str = "Rh",
                 kv: float | None = None, pseudo: float = 1.0) -> np.ndarray:
    """One value per spectrum (rows of ``counts``) for ``spec``; ValueError naming what is missing
    (a line outside the spectrum, no live time for cps)."""
    if isinstance(grid, energy.RowGrids):
        counts, grid = energy.on_grid(counts, grid, grid.run), grid.run
    counts = np.asarray(counts, dtype=np.float64)
    top = _top_kev(grid, kv)

    def win(el):
        line = pick_line(el, top)
        if line is None:
            raise ValueError(f"{el}: no line of it is excited and inside these spectra "
                             f"(up to {top:.1f} keV)")
        return window_counts(counts, grid, el, line)
    if spec.denominator:
        a, b = win(spec.numerator), win(spec.denominator)
        v = (a + pseudo) / (b + pseudo)
    else:
        v = win(spec.numerator)
        if spec.normalise == "cps":
            if live_s is None or not np.all(np.isfinite(np.asarray(live_s, float))):
                raise ValueError("counts per second need the live time of every spectrum; this run lacks it")
            v = v / np.maximum(np.asarray(live_s, float), 1e-9)
        elif spec.normalise == "sum":
            v = 1000.0 * v / np.maximum(counts.sum(axis=-1), 1.0)
        elif spec.normalise == "scatter":
            kev = scatter_line(anode, kv, grid)
            e = energy.as_grid(grid).energies()
            hw = 2.5 * fwhm_kev(kev)   # coherent + incoherent together at this resolution
            s = counts[..., (e >= kev - hw) & (e <= kev + hw)].sum(axis=-1)
            v = (v + pseudo) / (s + pseudo)
    if spec.log:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.log(np.where(v > 0, v, np.nan))
    return v
