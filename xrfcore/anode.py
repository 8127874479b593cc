"""Tube anode of a run from its spectrum: the tube's own lines come back as Rayleigh (and
Compton) scatter.

Every candidate's lines (K lines when the voltage excites them, else L lines above 1.5 keV) are
fitted together with the sample's lines near them and a smooth background (weighted non-negative
least squares), allowing a small energy shift and a range of peak widths (uncalibrated grids,
other detectors). The candidate whose scatter is the largest share of all counts wins; the
confidence falls when a second candidate is close or the peak is weak.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

ANODES = ("Rh", "Mo", "Ag", "Cr", "Cu", "W")
MIN_Z = 8.0                 # an anode's scatter must stand this many standard errors above zero
MIN_SHARE = 0.002           # ... and be at least this share of all counts
SHIFT_STEPS = np.linspace(-1.0, 1.0, 21)   # times max(0.1 keV, 2.5 % of the region's energy)
WIDTH_SCALES = (0.8, 1.0, 1.25, 1.6)
SAMPLE_ELEMENTS = ("Al", "Si", "P", "S", "Cl", "Ar", "K", "Ca", "Ti", "V", "Cr", "Mn", "Fe", "Co",
                   "Ni", "Cu", "Zn", "Ga", "As", "Se", "Br", "Rb", "Sr", "Y", "Zr", "Nb", "Mo",
                   "Pd", "Ag", "Cd", "Sn", "Ba", "Hg", "Pb", "W", "Rh")


# --------------------------------------------------------------------------- line fitting

@lru_cache(maxsize=None)
def _edges(el: str) -> tuple[float, float]:
    import xraylib as xrl

    z = xrl.SymbolToAtomicNumber(el)
    return float(xrl.EdgeEnergy(z, xrl.K_SHELL)), float(xrl.EdgeEnergy(z, xrl.L3_SHELL))


@lru_cache(maxsize=None)
def _lines(el: str) -> dict[str, float]:
    from xrfcore.energy import LINES

    return {ln.line: ln.kev for ln in LINES if ln.element == el}


def _kb_ratio(z: int) -> float:
    # approximate K beta / K alpha intensity ratio (grows with Z)
    return float(np.interp(z, [12, 16, 20, 26, 38, 47], [0.01, 0.06, 0.11, 0.135, 0.165, 0.2]))


def _shell_lines(el: str, shell: str) -> list[tuple[float, float]]:
    """(keV, relative intensity) of an element's K or L group from energy.LINES."""
    import xraylib as xrl

    ln = _lines(el)
    if shell == "K" and "Ka" in ln:
        return [(ln["Ka"], 1.0)] + ([(ln["Kb"], _kb_ratio(xrl.SymbolToAtomicNumber(el)))] if "Kb" in ln else [])
    if shell == "L" and "La" in ln:
        return [(ln["La"], 1.0)] + ([(ln["Lb"], 0.55)] if "Lb" in ln else [])
    return []


def anode_signature(anode: str, kv: float | None) -> tuple[str, list[tuple[float, float]]] | None:
    """The tube lines that show at ``kv``: K lines when the voltage excites them, else L lines
    above 1.5 keV (below that they are lost in the sample's light-element lines); None when none."""
    k_edge, l3_edge = _edges(anode)
    kv = float("inf") if kv is None or not np.isfinite(kv) else float(kv)
    if kv > k_edge * 1.03 and _shell_lines(anode, "K"):
        return "K", _shell_lines(anode, "K")
    lines = _shell_lines(anode, "L")
    if kv > l3_edge * 1.03 and lines and lines[0][0] > 1.5:
        return "L", lines
    return None


def _sigma(kev, scale: float) -> np.ndarray:
    # silicon-drift detector resolution: 2.355 sigma = sqrt(noise^2 + 2.355^2 F eps E)
    return scale * np.sqrt(0.09 ** 2 + 0.002308 * np.asarray(kev, float)) / 2.355


def _compton(kev: float, theta_deg: float) -> float:
    return kev / (1 + kev / 511.0 * (1 - np.cos(np.radians(theta_deg))))


@dataclass
class AnodeScore:
    anode: str
    shell: str | None            # "K" | "L" | None (no line excited at this kV)
    lines_kev: list = field(default_factory=list)
    counts: float = 0.0          # fitted scatter counts of the tube lines (Rayleigh + Compton)
    share: float = 0.0           # counts / all counts of the spectrum
    z: float = 0.0               # narrow (Rayleigh) peak / its standard error: the evidence


@dataclass
class AnodeDetection:
    anode: str | None            # None when no candidate is convincing
    confidence: float            # 0..1
    kv: float | None
    scores: list = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scores"] = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in s.items()}
                       for s in d["scores"]]
        d["confidence"] = round(self.confidence, 3)
        return d


def _fit_region(spec, e, lo, hi, targets, nuisance, compton_for, shift_grid, widths):
    """Weighted non-negative fit of line templates + Bernstein background over [lo, hi] keV.
    Returns {target name: (counts, standard error)} for the best shift/width."""
    from scipy.optimize import nnls

    m = (e >= lo) & (e <= hi)
    if m.sum() < 20:
        return None
    x, y = e[m], spec[m]
    w = 1.0 / np.sqrt(np.maximum(y, 1.0))
    t = (x - lo) / (hi - lo)
    deg = 3
    from math import comb
    bern = [comb(deg, k) * t ** k * (1 - t) ** (deg - k) * max(y.mean(), 1.0) for k in range(deg + 1)]
    gain = float(np.median(np.diff(e)))
    best = None
    for sh in shift_grid:
        for ws in widths:
            cols, names = [], []
            for name, lines in list(targets.items()) + list(nuisance.items()):
                col = np.zeros_like(x)
                for kev, rel in lines:
                    s = _sigma(kev, ws)
                    col += rel * np.exp(-0.5 * ((x - kev - sh) / s) ** 2) * gain / (s * np.sqrt(2 * np.pi))
                cols.append(col)
                names.append(name)
            for name in compton_for:  # broad Compton humps of K scatter (several angles)
                for theta in (90.0, 115.0, 140.0):
                    col = np.zeros_like(x)
                    for kev, rel in targets[name]:
                        ec = _compton(kev, theta)
                        s = 0.018 * kev + _sigma(kev, ws)
                        col += rel * np.exp(-0.5 * ((x - ec - sh) / s) ** 2) * gain / (s * np.sqrt(2 * np.pi))
                    cols.append(col)
                    names.append(f"{name} compton")
            A = np.column_stack(cols + bern)
            coef, rnorm = nnls(A * w[:, None], y * w, maxiter=50 * A.shape[1])
            if best is None or rnorm < best[0]:
                best = (rnorm, coef, A, names)
    rnorm, coef, A, names = best
    Aw = A * w[:, None]
    active = coef > 0
    se = np.full(len(coef), np.inf)
    if active.any():
        cov = np.linalg.pinv(Aw[:, active].T @ Aw[:, active])
        dof = max(len(y) - int(active.sum()), 1)
        scale = max(rnorm ** 2 / dof, 1.0)  # widen errors when the model fits worse than Poisson
        se[active] = np.sqrt(np.clip(np.diag(cov), 0, None) * scale)
    out = {}
    for name in targets:
        i = names.index(name)
        comp = sum(float(coef[j]) for j, n in enumerate(names) if n == f"{name} compton")
        out[name] = (float(coef[i]), float(se[i]) if active[i] else float(np.sqrt(max(y.mean(), 1.0))), comp)
    return out


def _regions(sigs: dict, top: float) -> list[tuple[float, float, list[str]]]:
    """Fit regions: each excited signature +-0.45 keV (K lines: down to their Compton humps),
    overlapping ones merged so that competing anodes are fitted together."""
    spans = []
    for a, sig in sigs.items():
        if sig is None or sig[1][0][0] > top - 0.3:
            continue
        kevs = [k for k, _ in sig[1]]
        lo = min(kevs) * (0.9 if sig[0] == "K" else 1.0) - 0.45
        spans.append([lo, min(max(kevs) + 0.45, top), [a]])
    spans.sort()
    merged = []
    for sp in spans:
        if merged and sp[0] <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], sp[1])
            merged[-1][2] += sp[2]
        else:
            merged.append(sp)
    return [tuple(m) for m in merged]


def detect_anode(counts, grid, kv: float | None = None) -> AnodeDetection:
    """The tube anode of a spectrum (or of the sum of a run's spectra, which is better) on
    ``grid``; ``kv`` decides which tube lines can show (None: all)."""
    from xrfcore.energy import as_grid

    g = as_grid(grid)
    spec = np.asarray(counts, float)
    if spec.ndim == 2:
        spec = spec.sum(axis=0)
    e = g.energies()
    total = float(spec.sum())
    kv = None if kv is None or not np.isfinite(kv) else float(kv)
    if total <= 0:
        return AnodeDetection(None, 0.0, kv, [], "empty spectrum")
    top = min(g.max_kev, kv if kv else g.max_kev)
    sigs = {a: anode_signature(a, kv) for a in ANODES}
    scores = {a: AnodeScore(a, sig[0] if sig else None, [round(k, 3) for k, _ in sig[1]] if sig else [])
              for a, sig in sigs.items()}
    for lo, hi, names in _regions(sigs, top):
        targets = {a: sigs[a][1] for a in names}
        nuisance = {}
        for el in SAMPLE_ELEMENTS:
            for sh in ("K", "L"):
                ls = _shell_lines(el, sh)
                if el in targets and sigs[el][0] == sh:
                    continue  # the anode's own lines are a target
                if ls and ls[0][0] > 1.0 and any(lo - 0.3 <= k <= hi + 0.3 for k, _ in ls):
                    nuisance[f"{el} {sh}"] = ls
        compton = [a for a in names if sigs[a][0] == "K"]
        shifts = SHIFT_STEPS * max(0.1, 0.025 * (lo + hi) / 2)  # uncalibrated grids: gain off by ~2 %
        fit = _fit_region(spec, e, lo, hi, targets, nuisance, compton, shifts, WIDTH_SCALES)
        if fit is None:
            continue
        for a in names:
            c, se, comp = fit[a]
            # the share counts Rayleigh + Compton scatter; the evidence (z) is the narrow Rayleigh peak
            sc = scores[a]
            sc.counts, sc.share, sc.z = c + comp, (c + comp) / total, (c / se if se > 0 else 0.0)
    scores = [scores[a] for a in ANODES]
    ok = sorted((s for s in scores if s.z >= MIN_Z and s.share >= MIN_SHARE), key=lambda s: -s.share)
    if not ok:
        return AnodeDetection(None, 0.0, kv, scores, "no tube lines recognised")
    best = ok[0]
    second = ok[1].share if len(ok) > 1 else 0.0
    conf = best.share / (best.share + second) * min(1.0, best.z / 15.0)
    return AnodeDetection(best.anode, float(conf), kv, scores,
                          f"{best.anode} {best.shell} lines, {100 * best.share:.1f} % of the counts")
