"""Batched forward model: wet-sediment compositions -> Avaatech-like 10 kV spectra.

Physics (see the simulator spec and REALISM.md): Ebel Rh tube with Rh L lines; He/air path with
Ar; foil; pore-water film (absorbs and emits); primary fluorescence of a thick sample plus
secondary fluorescence as a per-shell enhancement factor; Rayleigh and Compton scatter of the
whole tube spectrum (Doppler-broadened Compton); SDD efficiency and response (Gaussian, tail,
shelf, Si escape); pile-up; paralyzable dead time (live vs real); gain drift; Poisson counts.

Everything composition-independent is tabulated once per head (``Simulator``); a batch of B
compositions then costs a few (B, K, L) array operations and one (B, N) x (N, C) product.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")   # effective only if numpy's BLAS is not loaded yet

import numpy as np

from xrfcore.simulate import detector
from xrfcore.simulate.heads import Head, Nuisance, fixed_nuisances
from xrfcore.simulate.sediment import seawater_vector
from xrfcore.simulate.tables import (AIR, ELEMENTS, FOIL, INDEX, RHO_AIR, RHO_FOIL, RHO_HE,
                                     RHO_SEAWATER, build_tables, mu_compound)
from xrfcore.simulate.tube import rh_line_energies, tube_spectrum

_FILM_ELEMENTS = ("Na", "Mg", "S", "Cl", "K", "Ca")   # seawater elements whose film lines matter
CHUNK = 128


@functools.lru_cache(maxsize=1)
def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # the env vars set above are then the only guard
        return None
    return ThreadpoolController()


class single_blas_thread:
    """Context manager: BLAS pinned to one thread inside, as it was outside (default OpenBLAS
    threading made the small products here ~10x slower on 2 shared cores). Cheap (~10 us)."""

    def __enter__(self):
        c = _controller()
        self._ctx = None if c is None else c.limit(limits=1, user_api="blas")
        return self

    def __exit__(self, *exc):
        if self._ctx is not None:
            self._ctx.restore_original_limits()


def pin_blas_threads(n: int = 1) -> None:
    """Pin BLAS threads for the rest of the process (command-line jobs and benchmarks only)."""
    c = _controller()
    if c is not None:
        c.limit(limits=n, user_api="blas")


@dataclass
class SimResult:
    counts: np.ndarray        # (B, C) int32
    live_s: np.ndarray        # (B,)
    real_s: np.ndarray        # (B,)
    icr: np.ndarray           # (B,) input count rate (cps), written as total cps
    rate: np.ndarray | None = None   # (B, C) expected recorded rate (cps per channel), if kept


@functools.lru_cache(maxsize=8)
def _response(head_key: tuple, head: Head, energies_key: bytes, doppler_key: bytes, n_plain: int):
    e = np.frombuffer(energies_key)
    dop = np.frombuffer(doppler_key)
    extra = np.concatenate([np.zeros(n_plain), dop / 2.3548])
    r = detector.response_matrix(
        e, extra, channels=head.channels, gain=head.gain, offset=head.offset, noise_ev=head.noise_ev,
        fano=head.fano, tail_frac=head.tail_frac, shelf_frac=head.shelf_frac, lld_kev=head.lld_kev,
        be_um=head.det_be_um, dead_um=head.det_dead_um, si_um=head.det_si_um, icc_um=head.icc_um)
    eff = detector.efficiency(e, head.det_be_um, head.det_dead_um, head.det_si_um)
    return r.astype(np.float32), eff


@functools.lru_cache(maxsize=8)
def _peak_fraction(head: Head, energies_key: bytes) -> np.ndarray:
    e = np.frombuffer(energies_key)
    return detector.response_fractions(e, head.tail_frac, head.shelf_frac, head.icc_um)[3]


class Simulator:
    """Forward model for one head (instrument state). Build once, call ``simulate`` on batches."""

    def __init__(self, head: Head):
        self.head = head
        t = build_tables(float(head.kv), float(head.psi1_deg), float(head.psi2_deg), rh_line_energies())
        self.t = t
        inc_e, tube = tube_spectrum(head.kv, head.current_ua, head.tube_takeoff_deg, head.tube_be_um,
                                    head.rhl_scale)
        if not np.allclose(inc_e, t.inc_e):
            raise RuntimeError("tube and table energy grids differ")
        self.tube = tube
        self.s1 = np.sin(np.radians(head.psi1_deg))
        self.s2 = np.sin(np.radians(head.psi2_deg))
        self.g = self.s1 / self.s2
        sw = seawater_vector()
        self.sw = sw
        # attenuation of the materials on the way, at incident, line and Compton energies
        sw_mix = {s: w for s, w in zip(ELEMENTS, sw) if w > 0}

        def mats(e):
            return dict(foil=mu_compound(FOIL, e), sw=mu_compound(sw_mix, e), air=mu_compound(AIR, e),
                        he=mu_compound({"He": 1.0}, e))
        self.m_inc = mats(t.inc_e)
        self.m_line = mats(t.line_e)
        self.m_compt = mats(t.e_compt)
        self.m_ar = mats(np.array([t.ar_e]))
        # film emission: lines of seawater elements
        film_el = {INDEX[s] for s in _FILM_ELEMENTS}
        self.film_lines = np.array([i for i, el in enumerate(t.line_el) if el in film_el])
        self.sw_rayl = sw @ t.dcs_rayl
        self.sw_compt = sw @ t.dcs_compt
        self.sw_mu_compt = self.m_compt["sw"]
        # coarse aggregation matrix for the secondary-fluorescence grid
        kc = len(t.coarse_e)
        self.coarse = np.zeros((len(t.inc_e), kc))
        self.coarse[np.arange(len(t.inc_e)), t.coarse_index] = 1.0
        self.exc_el = t.line_el[t.exc_line]
        # detector response rows: sample lines, Ar Ka, Rayleigh (inc_e), Compton (e_compt)
        rows_e = np.concatenate([t.line_e, [t.ar_e], t.inc_e, t.e_compt])
        n_plain = len(t.line_e) + 1 + len(t.inc_e)
        self.R, self.eff = _response(head.detector_key(), head, rows_e.tobytes(),
                                     t.doppler_fwhm.astype(np.float64).tobytes(), n_plain)
        self.n_lines = len(t.line_e)
        # share of each row's detected photons in the Gaussian peak (what a peak fit counts)
        self.peak_frac = _peak_fraction(head, rows_e.tobytes())
        # line groups for the primary term: same element and shell, within 30 eV
        reps: list[int] = []
        index = np.empty(len(t.lines), dtype=np.int64)
        for i, ln in enumerate(t.lines):
            for j, r in enumerate(reps):
                m = t.lines[r]
                if m.z == ln.z and m.shell == ln.shell and abs(m.energy - ln.energy) < 0.03:
                    index[i] = j
                    break
            else:
                index[i] = len(reps)
                reps.append(i)
        self.rep_lines = np.array(reps)
        self.rep_index = index
        qr = t.q[self.rep_lines][index]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(qr > 0, t.q / np.where(qr > 0, qr, 1.0), 0.0)
        self.rep_ratio = ratio.max(axis=1)          # constant over energy (checked in tests)
        self.q_rep32 = t.q[self.rep_lines].T.astype(np.float32)

    # -- pieces -------------------------------------------------------------------------------
    def _path(self, m: dict, air: np.ndarray, length_cm: float) -> np.ndarray:
        mu = air[:, None] * RHO_AIR * m["air"][None, :] + (1 - air)[:, None] * RHO_HE * m["he"][None, :]
        return np.exp(-mu * length_cm)

    def _out_atten(self, m: dict, nz: Nuisance) -> np.ndarray:
        h = self.head
        film = np.exp(-(m["sw"][None, :] * RHO_SEAWATER * nz.film_um[:, None] * 1e-4) / self.s2)
        foil = np.exp(-m["foil"] * RHO_FOIL * h.foil_um * 1e-4 / self.s2)[None, :]
        return film * foil * self._path(m, nz.air_fraction, h.path_out_cm)

    def source_rates(self, w: np.ndarray, nz: Nuisance) -> np.ndarray:
        """Photons/s arriving at the detector window per response row, (B, N)."""
        h, t = self.head, self.t
        w = np.asarray(w, dtype=np.float64)
        b = len(w)
        gb = h.geometry * nz.geometry_scale
        # beam on the film (after path and foil) and on the sediment (after the film)
        s_film = self.tube[None, :] * self._path(self.m_inc, nz.air_fraction, h.path_in_cm) * np.exp(
            -self.m_inc["foil"] * RHO_FOIL * h.foil_um * 1e-4 / self.s1)[None, :]
        t_film_in = np.exp(-(self.m_inc["sw"][None, :] * RHO_SEAWATER * nz.film_um[:, None] * 1e-4) / self.s1)
        s_sed = s_film * t_film_in

        mu_k = w @ t.mu_inc                     # (B, K)
        mu_l = w @ t.mu_line                    # (B, L)
        # primary fluorescence: G w_i sum_k S_k Q_l(E_k) / (mu_k + g mu_l), computed once per group
        # of lines of one shell within 30 eV (Ka1/Ka2 ...: same Q up to a constant ratio)
        rep = self.rep_lines
        prim_rep = np.empty((b, len(rep)))
        q32 = self.q_rep32                      # (K, R)
        mu_r = mu_l[:, rep]
        for i0 in range(0, b, CHUNK):
            sl = slice(i0, i0 + CHUNK)
            den = mu_k[sl, :, None].astype(np.float32) + np.float32(self.g) * mu_r[sl, None, :].astype(np.float32)
            np.divide(q32[None], den, out=den)
            prim_rep[sl] = np.einsum("bk,bkl->bl", s_sed[sl].astype(np.float32), den)
        prim = prim_rep[:, self.rep_index] * self.rep_ratio[None, :]
        prim *= w[:, t.line_el]
        enh = self._secondary(w, s_sed, mu_l)
        fluor = prim * enh
        fluor *= self._out_atten(self.m_line, nz)

        # film emission (thin layer of seawater): its Cl, Na, S ... lines
        fl = self.film_lines
        t_cm = nz.film_um * 1e-4 * RHO_SEAWATER
        mus_k = self.m_inc["sw"]
        mus_l = self.m_line["sw"][fl]
        chi = mus_k[:, None] / self.s1 + mus_l[None, :] / self.s2          # (K, Lf)
        den = mus_k[:, None] + self.g * mus_l[None, :]
        base = (t.q[fl].T / den).astype(np.float32)                         # (K, Lf)
        film_em = np.empty((b, len(fl)))
        for i0 in range(0, b, CHUNK):
            sl = slice(i0, i0 + CHUNK)
            frac = -np.expm1(-(chi[None, :, :] * t_cm[sl, None, None]).astype(np.float32))
            film_em[sl] = np.einsum("bk,bkl->bl", s_film[sl].astype(np.float32), frac * base[None])
        film_em *= self.sw[t.line_el[fl]][None, :]
        if nz.film_salinity is not None:     # film lines are all salt elements
            film_em *= nz.film_salinity[:, None]
        foil_path_out = (np.exp(-self.m_line["foil"] * RHO_FOIL * h.foil_um * 1e-4 / self.s2)[None, :]
                         * self._path(self.m_line, nz.air_fraction, h.path_out_cm))
        fluor[:, fl] += film_em * foil_path_out[:, fl]
        fluor *= gb[:, None]

        # scatter of the whole tube spectrum (sediment, thick) + film (thin layer)
        ray = s_sed * (w @ t.dcs_rayl) / (mu_k * (1 + self.g))
        mu_c = w @ t.mu_compt
        com = s_sed * (w @ t.dcs_compt) / (mu_k + self.g * mu_c)
        # sediment scatter leaves through the film too
        ray *= np.exp(-(self.m_inc["sw"][None, :] * RHO_SEAWATER * nz.film_um[:, None] * 1e-4) / self.s2)
        com *= np.exp(-(self.m_compt["sw"][None, :] * RHO_SEAWATER * nz.film_um[:, None] * 1e-4) / self.s2)
        chi_r = mus_k * (1 / self.s1 + 1 / self.s2)
        ray += s_film * self.sw_rayl * -np.expm1(-chi_r[None, :] * t_cm[:, None]) / (mus_k * (1 + self.g))
        chi_c = mus_k / self.s1 + self.sw_mu_compt / self.s2
        com += s_film * self.sw_compt * -np.expm1(-chi_c[None, :] * t_cm[:, None]) / (mus_k + self.g * self.sw_mu_compt)
        foil_out_k = np.exp(-self.m_inc["foil"] * RHO_FOIL * h.foil_um * 1e-4 / self.s2)[None, :]
        foil_out_c = np.exp(-self.m_compt["foil"] * RHO_FOIL * h.foil_um * 1e-4 / self.s2)[None, :]
        ray *= foil_out_k * self._path(self.m_inc, nz.air_fraction, h.path_out_cm) * gb[:, None]
        com *= foil_out_c * self._path(self.m_compt, nz.air_fraction, h.path_out_cm) * gb[:, None]

        # Ar Ka from the residual air that both tube and detector see
        s_air = self.tube[None, :] * self._path(self.m_inc, nz.air_fraction, 0.5 * h.path_in_cm)
        ar = (gb * nz.air_fraction * RHO_AIR * AIR["Ar"] * h.ar_view_cm * (s_air @ t.q_ar)
              * self._path(self.m_ar, nz.air_fraction, 0.5 * h.path_out_cm)[:, 0])
        return np.concatenate([fluor, ar[:, None], ray, com], axis=1)

    def _secondary(self, w, s_sed, mu_l) -> np.ndarray:
        """Secondary-fluorescence enhancement factor (1 + S/P) per line, (B, L).

        Shiraiwa-Fujino thick-sample form on a 100 eV grid per excited K shell; exciters are the
        strong lines of Si..Fe, Sr, Ba; applied to all lines of the shell.
        """
        t = self.t
        sc = s_sed @ self.coarse                              # (B, Kc)
        mu_c = w @ t.mu_coarse                                # (B, Kc)
        mu_g = mu_l[:, t.grp_line]                            # (B, Lg)
        mu_m = w @ t.mu_exc                                   # (B, M)
        inv = 1.0 / (mu_c[:, :, None] + self.g * mu_g[:, None, :])            # (B, Kc, Lg)
        a = (self.s1 / mu_c[:, :, None]) * np.log1p(mu_c[:, :, None] / (mu_m[:, None, :] * self.s1))
        x = sc[:, :, None] * t.q_exc_coarse.T[None]                            # (B, Kc, M)
        invt = np.transpose(inv, (0, 2, 1))                                    # (B, Lg, Kc)
        t1 = invt @ (x * a)                                                    # (B, Lg, M)
        t2 = invt @ x
        bl = (self.s2 / mu_g[:, :, None]) * np.log1p(mu_g[:, :, None] / (mu_m[:, None, :] * self.s2))
        sec = 0.5 * t.q_grp_at_exc[None] * w[:, self.exc_el][:, None, :] * (t1 + bl * t2)
        sec = sec.sum(axis=2)                                                  # (B, Lg)
        prim = np.einsum("bk,gk,bkg->bg", sc, t.q_grp_coarse, inv)
        ratio = np.where(prim > 0, sec / np.maximum(prim, 1e-300), 0.0)
        enh = np.ones((len(w), self.n_lines))
        has = t.grp_of_line >= 0
        enh[:, has] += ratio[:, t.grp_of_line[has]]
        return enh

    def rates(self, w: np.ndarray, nz: Nuisance) -> tuple[np.ndarray, np.ndarray]:
        """Expected recorded rate per channel (B, C) and the input count rate (B,)."""
        h = self.head
        src = self.source_rates(w, nz)
        icr = src @ self.eff
        spec = (src.astype(np.float32) @ self.R).astype(np.float64)
        spec = _apply_gain(spec, nz.gain_scale)
        spec = detector.pile_up(spec, icr, h.pileup_ns * 1e-9, h.gain, h.offset,
                                tau_partial_s=h.pileup_partial_ns * 1e-9)
        return spec, icr

    def simulate(self, w: np.ndarray, nz: Nuisance | None = None, rng: np.random.Generator | None = None,
                 keep_rate: bool = False) -> SimResult:
        """Poisson spectra for compositions ``w`` (B, Z) under nuisances ``nz``."""
        w = np.atleast_2d(np.asarray(w, dtype=np.float64))
        if w.shape[1] != len(ELEMENTS):
            raise ValueError(f"compositions must have {len(ELEMENTS)} columns (ELEMENTS), got {w.shape[1]}")
        nz = nz or fixed_nuisances(self.head, len(w))
        rng = rng or np.random.default_rng()
        with single_blas_thread():
            spec, icr = self.rates(w, nz)
        live = np.full(len(w), float(self.head.live_s))
        counts = rng.poisson(spec * live[:, None]).astype(np.int32)
        real = detector.real_time(self.head.live_s, icr, self.head.dead_time_us * 1e-6)
        return SimResult(counts=counts, live_s=live, real_s=real, icr=icr, rate=spec if keep_rate else None)


def _apply_gain(spec: np.ndarray, gain_scale: np.ndarray) -> np.ndarray:
    """Per-spectrum gain drift: channel c now sees energy of nominal channel c * scale."""
    if np.all(gain_scale == 1.0):
        return spec
    b, c = spec.shape
    idx = np.arange(c)[None, :] * gain_scale[:, None]
    i0 = np.clip(np.floor(idx).astype(np.int64), 0, c - 2)
    fr = np.clip(idx - i0, 0.0, 1.0)
    rows = np.arange(b)[:, None]
    out = spec[rows, i0] * (1 - fr) + spec[rows, i0 + 1] * fr
    return out * gain_scale[:, None]


@functools.lru_cache(maxsize=16)
def simulator_for(head: Head) -> Simulator:
    return Simulator(head)


def detected_shares(sim: Simulator, w: np.ndarray, nz: Nuisance | None = None) -> dict[str, np.ndarray]:
    """Detected photon rates (cps) by origin: fluorescence (sample + film), Ar, Rayleigh, Compton."""
    w = np.atleast_2d(w)
    nz = nz or fixed_nuisances(sim.head, len(w))
    src = sim.source_rates(w, nz) * sim.eff[None, :]
    n_l, k = sim.n_lines, len(sim.t.inc_e)
    out = {"fluorescence": src[:, :n_l].sum(1), "argon": src[:, n_l],
           "rayleigh": src[:, n_l + 1:n_l + 1 + k].sum(1), "compton": src[:, n_l + 1 + k:].sum(1)}
    out["total"] = out["fluorescence"] + out["argon"] + out["rayleigh"] + out["compton"]
    out["scatter_share"] = (out["rayleigh"] + out["compton"]) / out["total"]
    return out


def line_counts(sim: Simulator, w: np.ndarray, nz: Nuisance | None = None) -> dict[str, np.ndarray]:
    """Detected counts per live time of each element's Ka lines (Ka1 + Ka2; La for L-only
    elements), of Ar Ka and of the Rh La scatter (Rayleigh + Compton of Rh La1,2) that land in
    the Gaussian peak (tail, shelf and escape excluded): what an ideal peak fit would report,
    comparable to bAxil's '<El>-Ka Area'."""
    w = np.atleast_2d(w)
    nz = nz or fixed_nuisances(sim.head, len(w))
    src = sim.source_rates(w, nz) * (sim.eff * sim.peak_frac)[None, :] * sim.head.live_s
    out: dict[str, np.ndarray] = {}
    has_k = {ln.element for ln in sim.t.lines if ln.shell == "K"}
    for i, ln in enumerate(sim.t.lines):
        if ln.label.endswith(("Ka1", "Ka2")) or (ln.element not in has_k and ln.label.endswith(("La1", "La2"))):
            out[ln.element] = out.get(ln.element, 0.0) + src[:, i]
    n_l, k, nc = sim.n_lines, len(sim.t.inc_e), sim.t.n_cont
    out["Ar"] = src[:, n_l]
    la = [nc + j for j, e in enumerate(sim.t.inc_e[nc:]) if abs(e - 2.695) < 0.01]
    out["Rh-La"] = src[:, [n_l + 1 + j for j in la]].sum(1) + src[:, [n_l + 1 + k + j for j in la]].sum(1)
    return out
