"""Silicon drift detector: efficiency, line response (Gaussian + tail + shelf + Si escape + Si
internal fluorescence + soft discriminator), incomplete charge collection, pile-up (sum peaks
and the partial-energy continuum) and dead time.
"""
from __future__ import annotations

import numpy as np
import xraylib as xrl
from scipy.special import erf, erfc, erfcx

from xrfcore.simulate.tables import BE, RHO_BE, RHO_SI, SI, mu_compound

PAIR_EV = 3.85          # eV per electron-hole pair in Si
SI_KA = 1.740           # keV, Si Ka (escape shift and internal fluorescence)
SI_K_EDGE = 1.839


def efficiency(e: np.ndarray, be_um: float, dead_um: float, si_um: float) -> np.ndarray:
    """Fraction of photons absorbed in the active Si behind the Be window and dead layer."""
    e = np.asarray(e, dtype=np.float64)
    mu_si = mu_compound(SI, e)
    return (np.exp(-mu_compound(BE, e) * RHO_BE * be_um * 1e-4)
            * np.exp(-mu_si * RHO_SI * dead_um * 1e-4)
            * (1.0 - np.exp(-mu_si * RHO_SI * si_um * 1e-4)))


def fwhm_kev(e: np.ndarray, noise_ev: float, fano: float) -> np.ndarray:
    e_ev = np.asarray(e) * 1000.0
    return np.sqrt(noise_ev**2 + 2.3548**2 * fano * PAIR_EV * e_ev) / 1000.0


def escape_probability(e: np.ndarray) -> np.ndarray:
    """Si K escape probability per detected photon (front-side incidence, Reed & Ware form)."""
    e = np.asarray(e, dtype=np.float64)
    out = np.zeros_like(e)
    ok = e > SI_K_EDGE
    if not ok.any():
        return out
    omega = xrl.FluorYield(14, xrl.K_SHELL)
    jump = xrl.JumpFactor(14, xrl.K_SHELL)
    mu_k = xrl.CS_Total(14, SI_KA)
    ee = e[ok]
    tau = np.array([xrl.CS_Photo(14, float(x)) for x in ee])
    mu_e = np.array([xrl.CS_Total(14, float(x)) for x in ee])
    out[ok] = 0.5 * omega * (1 - 1 / jump) * (tau / mu_e) * (1 - (mu_k / mu_e) * np.log1p(mu_e / mu_k))
    return out


ICC_TAIL_SHARE = 0.3     # share of incomplete-charge-collection events close to the peak (tail);
                         # the rest spreads as a flat shelf down to zero energy


def icc_fraction(e: np.ndarray, icc_um: float) -> np.ndarray:
    """Incomplete charge collection: fraction of detected photons absorbed in the partial-
    collection layer (thickness ``icc_um``) just behind the dead layer. Their charge is partly
    lost to the entrance surface, so they land below the peak. Largest just above the Si K edge
    (1.84 keV: Si absorbs strongly, photons stop within ~1 um), i.e. for P, S, Cl, Rh L, Ar, K;
    small below the edge (Al, Si Ka) and above ~5 keV (Fe: ~0.5 % per 0.25 um)."""
    e = np.asarray(e, dtype=np.float64)
    if icc_um <= 0:
        return np.zeros_like(e)
    return 1.0 - np.exp(-mu_compound(SI, e) * RHO_SI * icc_um * 1e-4)


def response_fractions(e: np.ndarray, tail_frac: float, shelf_frac: float, icc_um: float = 0.0):
    """(tail, shelf, escape, main) fractions of detected photons of energy ``e``; ``main`` is the
    Gaussian peak, i.e. what a peak fit (bAxil "Area") counts."""
    e = np.asarray(e, dtype=np.float64)
    p_esc = escape_probability(e)
    icc = icc_fraction(e, icc_um)
    tail = np.minimum(tail_frac * 2.0 / np.maximum(e, 0.1), 0.2) + ICC_TAIL_SHARE * icc
    shelf = shelf_frac * np.ones_like(e) + (1 - ICC_TAIL_SHARE) * icc
    main = 1.0 - tail - shelf - p_esc
    return tail, shelf, p_esc, main


def _gauss_bins(edges: np.ndarray, centre: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Gaussian probability in each channel bin, (N, C)."""
    z = (edges[None, :] - centre[:, None]) / (np.sqrt(2.0) * sigma[:, None])
    c = 0.5 * erf(z)
    return c[:, 1:] - c[:, :-1]


def response_matrix(e: np.ndarray, extra_sigma: np.ndarray | None, *, channels: int, gain: float,
                    offset: float, noise_ev: float, fano: float, tail_frac: float, shelf_frac: float,
                    lld_kev: float, be_um: float, dead_um: float, si_um: float,
                    icc_um: float = 0.0) -> np.ndarray:
    """Counts per channel per incident photon of energy ``e`` (rows), efficiency included.

    ``extra_sigma`` (keV) widens the Gaussian (Doppler broadening of Compton scatter).
    """
    e = np.asarray(e, dtype=np.float64)
    ch = np.arange(channels)
    centres = offset + gain * ch
    edges = offset + gain * (np.arange(channels + 1) - 0.5)
    sig = fwhm_kev(e, noise_ev, fano) / 2.3548
    if extra_sigma is not None:
        sig = np.sqrt(sig**2 + extra_sigma**2)
    eff = efficiency(e, be_um, dead_um, si_um)
    # generic tail ~1.5 % at 2 keV falling as 1/E, flat shelf, plus incomplete charge collection
    tail, shelf, p_esc, main = response_fractions(e, tail_frac, shelf_frac, icc_um)

    r = main[:, None] * _gauss_bins(edges, e, sig)
    # low-energy exponentially modified Gaussian tail, decay length 2 sigma (erfcx: no overflow)
    beta = 2.0 * sig
    x = centres[None, :] - e[:, None]
    s = sig[:, None]
    b = beta[:, None]
    arg = (x / s + s / b) / np.sqrt(2.0)
    pos = arg > 0
    emg_pos = erfcx(np.where(pos, arg, 0.0)) * np.exp(-0.5 * (x / s) ** 2)
    emg_neg = np.exp(np.minimum(x / b + 0.5 * (s / b) ** 2, 0.0)) * erfc(np.where(pos, 0.0, arg))
    emg = (1.0 / (2.0 * b)) * np.where(pos, emg_pos, emg_neg)
    r += tail[:, None] * emg * gain
    # flat shelf from 0 to E with a Gaussian-smoothed edge
    shelf_shape = 0.5 * (1.0 - erf(x / (np.sqrt(2.0) * s))) * gain / e[:, None]
    r += shelf[:, None] * shelf_shape
    # Si escape peak
    esc_e = e - SI_KA
    has = p_esc > 0
    if has.any():
        sig_esc = fwhm_kev(np.maximum(esc_e[has], 0.05), noise_ev, fano) / 2.3548
        r[has] += p_esc[has, None] * _gauss_bins(edges, esc_e[has], sig_esc)
    # Si internal fluorescence (dead layer), ~3e-4 per photon above the Si K edge
    si_fl = np.where(e > SI_K_EDGE, 3e-4, 0.0)
    sig_si = fwhm_kev(np.array([SI_KA]), noise_ev, fano) / 2.3548
    r += si_fl[:, None] * _gauss_bins(edges, np.array([SI_KA]), sig_si)[0][None, :]
    # soft lower-level discriminator
    r *= 1.0 / (1.0 + np.exp(-(centres[None, :] - lld_kev) / 0.03))
    return r * eff[:, None]


def pile_up(rate: np.ndarray, icr: np.ndarray, tau_pu_s: float, gain: float, offset: float,
            tau_partial_s: float = 0.0) -> np.ndarray:
    """Two-photon pile-up, batched (B, C).

    Sum peaks: (1-p) s + (p/2) (s*s)/ICR with p = 1 - exp(-ICR tau_pu) (pairs closer than the
    pile-up rejector resolves). Partial-energy pile-up, q = 1 - exp(-ICR tau_partial): a second
    pulse inside the slow shaping time that the fast channel does not see (low-energy photons
    fall below its threshold) adds only part of its energy, so the pair lands anywhere between
    E1 and E1 + E2: a continuum under and above every peak, reaching up to twice the tube
    voltage (the real "tail above 10 keV" at 10 kV)."""
    b, c = rate.shape
    n = 2 * c
    f = np.fft.rfft(rate, n=n, axis=1)
    conv = np.fft.irfft(f * f, n=n, axis=1)[:, :c]
    part = None
    if tau_partial_s > 0:
        # u * E2 with u ~ U(0, 1): density at channel k is sum over m >= k of s(m) / (m + 1)
        m = np.arange(c) - offset / gain
        frac = rate / np.maximum(m + 1.0, 1.0)[None, :]
        g = np.cumsum(frac[:, ::-1], axis=1)[:, ::-1]
        part = np.maximum(np.fft.irfft(f * np.fft.rfft(g, n=n, axis=1), n=n, axis=1)[:, :c], 0.0)
    # channel i+j holds energy 2*offset + gain*(i+j): shift by offset/gain channels
    shift = offset / gain
    if abs(shift) > 1e-6:
        idx = np.arange(c) - shift
        i0 = np.floor(idx).astype(int)
        fr = idx - i0
        ok0 = (i0 >= 0) & (i0 < c)
        ok1 = (i0 + 1 >= 0) & (i0 + 1 < c)
        shifted = np.zeros_like(conv)
        shifted[:, ok0] += conv[:, i0[ok0]] * (1 - fr[ok0])
        shifted[:, ok1] += conv[:, i0[ok1] + 1] * fr[ok1]
        conv = shifted
    conv = np.maximum(conv, 0.0)
    p = 1.0 - np.exp(-icr * tau_pu_s)
    safe = np.maximum(icr, 1e-9)
    out = (1.0 - p)[:, None] * rate + (p / 2.0 / safe)[:, None] * conv
    if part is not None:
        q = 1.0 - np.exp(-icr * tau_partial_s)
        out = out - q[:, None] * rate + (q / 2.0 / safe)[:, None] * part
    return out


def real_time(live_s: float, icr: np.ndarray, tau_dead_s: float) -> np.ndarray:
    """Paralyzable dead time: output rate = ICR exp(-ICR tau), so real = live * exp(ICR tau)."""
    return live_s * np.exp(icr * tau_dead_s)
