"""Energy calibration from the spectra themselves: gain and offset (keV) of a run and of each
spectrum, fitted to the centroids of lines every sediment spectrum has.

Avaatech ``.spe`` files carry no calibration, and heads differ (about 0.0198-0.0205 keV per
channel) and drift. The run's sum spectrum gives a coarse match of the line comb, then each line's
centroid (log-parabola through the peak top: exact for a Gaussian, little moved by the
low-energy tail or a flat background) and a weighted straight line channel -> keV. Each spectrum
is then fitted the same way from the run's solution; where its own fit is poor it keeps the run's.
Raw counts are never changed: the calibration is stored beside them (see ``store``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

# Lines clear of blends in sediment spectra. Rh L / Compton / Rayleigh scatter and Ar Ka are left
# out: at 10 kV the Rh L Compton and Rayleigh peaks overlap unresolved (their blend moves with the
# scattering angle) and Ar Ka sits on Rh Lb2, so their centroids are not line energies.
CAL_LINES = (("Si", "Ka"), ("K", "Ka"), ("Ca", "Ka"), ("Ca", "Kb"), ("Ti", "Ka"), ("Mn", "Ka"),
             ("Fe", "Ka"), ("Fe", "Kb"), ("Cu", "Ka"), ("Zn", "Ka"), ("Br", "Ka"), ("Rb", "Ka"),
             ("Sr", "Ka"), ("Zr", "Ka"))
HALF = 3                  # channels each side of the peak top in the log-parabola
MIN_LINES_SPECTRUM = 3    # a spectrum's own fit needs this many lines, else it keeps the run's
MAX_RMS_EV = 15.0         # line residuals above this make a fit poor
PLAUSIBLE_GAIN = 0.04     # |gain / nominal - 1| beyond this is more than a head or drift explains
PLAUSIBLE_OFFSET_KEV = 0.2
SPECTRUM_SHIFT_KEV = 0.04  # a spectrum whose own fit moves Fe Ka by more (2 channels) is named
CHECK_KEV = 6.4           # where shifts are judged (Fe Ka)


@lru_cache(maxsize=1)
def line_table() -> tuple[tuple[str, float, float], ...]:
    """(name, keV, K edge keV) of CAL_LINES; Ka / Kb are the rate-weighted mean of their
    unresolved components (Fe Ka1/Ka2 differ by 13 eV: the blend's centroid is what is seen)."""
    import xraylib as xrl

    comps = {"Ka": (xrl.KL3_LINE, xrl.KL2_LINE), "Kb": (xrl.KM3_LINE, xrl.KM2_LINE)}
    out = []
    for el, ln in CAL_LINES:
        z = xrl.SymbolToAtomicNumber(el)
        e = np.array([xrl.LineEnergy(z, c) for c in comps[ln]])
        w = np.array([xrl.RadRate(z, c) for c in comps[ln]])
        out.append((f"{el} {ln}", float((e * w).sum() / w.sum()), float(xrl.EdgeEnergy(z, xrl.K_SHELL))))
    return tuple(out)


@dataclass
class Fit:
    """A calibration: keV = offset + gain * channel, and how well the lines agree."""

    gain_kev: float
    offset_kev: float
    status: str                    # ok | fair | failed
    rms_ev: float = float("nan")   # weighted rms of the line residuals
    lines: list = field(default_factory=list)   # {line, kev, channel, residual_ev, net}
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "fair")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rms_ev"] = None if not np.isfinite(self.rms_ev) else round(self.rms_ev, 2)
        return d


def _lines_for(lo_kev: float, hi_kev: float, kv: float | None):
    return [(n, e) for n, e, edge in line_table()
            if lo_kev + 0.3 < e < hi_kev - 0.2 and (kv is None or not np.isfinite(kv) or edge < kv)]


def _peak_response(spec: np.ndarray) -> np.ndarray:
    """Positive where a peak is: minus the second derivative of the smoothed sqrt spectrum."""
    from scipy.ndimage import gaussian_filter1d

    d2 = gaussian_filter1d(np.sqrt(np.maximum(spec, 0.0)), 2.5, order=2)
    return np.maximum(-d2, 0.0)


def coarse(spec: np.ndarray, nominal, lines, *, gain_span=(0.95, 1.06), offset_ch=16.0):
    """Grid search of (gain, offset) that puts the line comb on the strongest peak responses."""
    P = _peak_response(spec)
    e = np.array([x[1] for x in lines])
    f = np.arange(gain_span[0], gain_span[1] + 1e-9, 0.0015)
    o = nominal.offset_kev + nominal.gain_kev * np.arange(-offset_ch, offset_ch + 1e-9, 0.5)
    g = nominal.gain_kev * f
    ch = (e[None, None, :] - o[None, :, None]) / g[:, None, None]        # (G, O, L)
    inside = (ch >= 0) & (ch <= len(spec) - 1)
    resp = np.where(inside, np.interp(ch, np.arange(len(spec)), P), 0.0)
    # each line counts by a compressed weight so one huge Ca peak cannot outvote the comb; a mild
    # prior towards the nominal grid breaks ties (two peaks alone also fit K Ka / Mn Ka)
    prior = np.exp(-0.5 * ((f[:, None] - 1) / 0.03) ** 2 - 0.5 * ((o[None, :] - nominal.offset_kev)
                                                                  / (10 * nominal.gain_kev)) ** 2)
    score = np.sqrt(resp).sum(-1) * (0.9 + 0.1 * prior)
    i, j = np.unravel_index(np.argmax(score), score.shape)
    return float(g[i]), float(o[j])


def centroids(spectra: np.ndarray, predicted: np.ndarray, search: int = 3):
    """Peak-top centroids of many spectra at once.

    ``spectra`` (N, C), ``predicted`` (N, L) channels. For each line: the highest channel within
    +-``search`` of the prediction, then a weighted least-squares parabola of log counts over
    +-HALF channels. Returns (centre (N, L), weight (N, L): ~1/variance in channel^2, 0 = no
    peak)."""
    X = np.asarray(spectra, dtype=np.float64)
    n, c = X.shape
    L = predicted.shape[1]
    rows = np.arange(n)[:, None, None]
    p0 = np.rint(predicted).astype(np.int64)
    offs = np.arange(-search, search + 1)
    idx = np.clip(p0[:, :, None] + offs, HALF, c - 1 - HALF)
    top = np.take_along_axis(idx, np.argmax(X[rows, idx], axis=2)[..., None], 2)[..., 0]   # (N, L)
    k = np.arange(-HALF, HALF + 1, dtype=np.float64)
    y = X[rows, top[..., None] + k.astype(np.int64)]                                     # (N, L, K)
    w = np.maximum(y, 1.0)                       # Poisson: var(log y) ~ 1 / y
    ly = np.log(np.maximum(y, 0.5))
    V = np.stack([np.ones_like(k), k, k * k], axis=1)                                     # (K, 3)
    A = np.einsum("nlk,ka,kb->nlab", w, V, V)
    b = np.einsum("nlk,ka,nlk->nla", w, V, ly)
    ok = np.linalg.det(A) > 0
    A[~ok] = np.eye(3)
    coef = np.linalg.solve(A, b[..., None])[..., 0]
    a2, a1 = coef[..., 2], coef[..., 1]
    sigma2 = np.where(a2 < 0, -0.5 / np.where(a2 < 0, a2, -1.0), np.inf)
    shift = np.where(a2 < 0, -a1 / (2 * np.where(a2 < 0, a2, -1.0)), 0.0)
    centre = top + shift
    # net counts above the window edges: a peak must rise clearly out of its surroundings
    edge = 0.5 * (X[rows[..., 0], np.clip(top - 3 * HALF, 0, c - 1)] + X[rows[..., 0], np.clip(top + 3 * HALF, 0, c - 1)])
    net = (y.sum(-1) - edge * len(k))
    good = (ok & (a2 < 0) & (np.abs(shift) <= 1.0) & (sigma2 > 0.5) & (sigma2 < 900)
            & (net > 6.0 * np.sqrt(np.maximum(y.sum(-1), 1.0))) & (np.abs(centre - predicted) <= search + 1))
    weight = np.where(good, np.maximum(net, 0.0) / np.where(np.isfinite(sigma2), sigma2, 1.0), 0.0)
    return centre, weight, np.maximum(net, 0.0)


def line_fit(ch: np.ndarray, kev: np.ndarray, w: np.ndarray):
    """Weighted straight line keV = offset + gain * channel for each row (rows with < 2 lines:
    NaN). ``w`` is 1/var in channel^2; returns (gain, offset, rms_ev, n_lines)."""
    w = np.where(np.isfinite(ch), w, 0.0)
    ch = np.nan_to_num(ch)
    n = (w > 0).sum(-1)
    sw = w.sum(-1)
    safe = np.where(sw > 0, sw, 1.0)
    mc = (w * ch).sum(-1) / safe
    me = (w * kev).sum(-1) / safe
    dc = ch - mc[..., None]
    sxx = (w * dc * dc).sum(-1)
    spread = (n >= 2) & (sxx > 1e-9 * np.maximum(sw, 1e-12))
    gain = np.where(spread, (w * dc * (kev - me[..., None])).sum(-1) / np.where(spread, sxx, 1.0), np.nan)
    offset = me - gain * mc
    res = kev - (offset[..., None] + gain[..., None] * ch)
    rms = np.sqrt((w * res * res).sum(-1) / safe) * 1000.0
    return gain, offset, np.where(spread, rms, np.nan), n


def fit_spectrum(spec, nominal, kv: float | None = None, *, search_coarse: bool = True) -> Fit:
    """Calibrate one (sum) spectrum whose approximate grid is ``nominal``."""
    from xrfcore.energy import as_grid

    nominal = as_grid(nominal)
    spec = np.asarray(spec, dtype=np.float64)
    lines = _lines_for(0.0, nominal.max_kev * 1.05, kv)
    if len(lines) < 2:
        return Fit(nominal.gain_kev, nominal.offset_kev, "failed", message="fewer than 2 usable lines in range")
    g, o = coarse(spec, nominal, lines) if search_coarse else (nominal.gain_kev, nominal.offset_kev)
    e = np.array([x[1] for x in lines])
    fit = None
    for _ in range(3):   # the refined solution predicts the peaks better: iterate
        c, w, net = (a[0] for a in centroids(spec[None, :], ((e - o) / g)[None, :]))
        keep = w > 0
        gg, oo, rms, _ = (float(a[0]) for a in line_fit(c[None], e[None], w[None]))
        # drop the worst line while the residuals are poor (a blend or a misidentified peak)
        while np.isfinite(gg) and rms > MAX_RMS_EV and keep.sum() > 3:
            res = np.abs(e - (oo + gg * c)) * 1000
            keep[np.argmax(np.where(keep, res, -1.0))] = False
            gg, oo, rms, _ = (float(a[0]) for a in line_fit(c[None], e[None], np.where(keep, w, 0.0)[None]))
        if not np.isfinite(gg):
            break
        g, o = gg, oo
        fit = (c, np.where(keep, w, 0.0), net, rms, int(keep.sum()))
    if fit is None:
        return Fit(nominal.gain_kev, nominal.offset_kev, "failed", message="no two lines found")
    c, w, net, rms, n = fit
    used = [{"line": name, "kev": round(kev, 4), "channel": round(float(ci), 3),
             "residual_ev": round(float((kev - (o + g * ci)) * 1000), 2), "net": round(float(ni))}
            for (name, kev), ci, wi, ni in zip(lines, c, w, net) if wi > 0]
    msg = f"{n} lines ({', '.join(u['line'] for u in used)}), rms {rms:.1f} eV"
    if n >= 3 and rms <= MAX_RMS_EV:
        status = "ok"
    elif n == 2:
        status = "fair"       # two lines fix a line exactly: nothing to check it against
    else:
        return Fit(nominal.gain_kev, nominal.offset_kev, "failed", rms, used, "poor line fit: " + msg)
    return Fit(g, o, status, rms, used, msg)


def fit_rows(counts: np.ndarray, run_fit: Fit, kv: float | None = None):
    """Each spectrum's own calibration, started from the run's. Returns (gain (N,), offset (N,),
    good (N,) bool: enough lines and a small residual)."""
    X = np.asarray(counts)                 # as float64 block by block (bounded memory)
    n, c = X.shape
    lines = [(u["line"], u["kev"]) for u in run_fit.lines] or \
        _lines_for(0.0, run_fit.offset_kev + run_fit.gain_kev * c, kv)
    e = np.array([x[1] for x in lines])
    gains = np.full(n, run_fit.gain_kev)
    offsets = np.full(n, run_fit.offset_kev)
    good = np.zeros(n, dtype=bool)
    if len(e) < MIN_LINES_SPECTRUM or n == 0:
        return gains, offsets, good
    for i in range(0, n, 4096):
        Xb = np.asarray(X[i:i + 4096], dtype=np.float64)
        pred = np.broadcast_to((e - run_fit.offset_kev) / run_fit.gain_kev, (len(Xb), len(e)))
        ch, w, _ = centroids(Xb, pred)
        g, o, rms, k = line_fit(ch, np.broadcast_to(e, ch.shape), w)
        ok = (k >= MIN_LINES_SPECTRUM) & np.isfinite(g) & (rms <= MAX_RMS_EV) & (g > 0)
        gains[i:i + 4096] = np.where(ok, g, run_fit.gain_kev)
        offsets[i:i + 4096] = np.where(ok, o, run_fit.offset_kev)
        good[i:i + 4096] = ok
    return gains, offsets, good


def shift_kev(gain, offset, ref_gain, ref_offset, at_kev: float = CHECK_KEV):
    """How far (keV) the energy of the channel that ``ref`` puts at ``at_kev`` moves under (gain,
    offset)."""
    chan = (at_kev - ref_offset) / ref_gain
    return offset + gain * chan - at_kev


def plausible(fit: Fit, nominal) -> bool:
    return (abs(fit.gain_kev / nominal.gain_kev - 1) <= PLAUSIBLE_GAIN
            and abs(fit.offset_kev - nominal.offset_kev) <= PLAUSIBLE_OFFSET_KEV)


@dataclass
class RunCalibration:
    """The calibration of every row of a run, the run's own, and what is worth a warning."""

    gains: np.ndarray              # (N,) keV per channel used for each spectrum
    offsets: np.ndarray            # (N,) keV
    source: np.ndarray             # (N,) "spectrum" (own fit) | "run" | "file" | "nominal"
    run: Fit                       # the run's fit (or the stated / nominal grid)
    grid_source: str               # text for the run attrs and reports
    warnings: list = field(default_factory=list)    # run-level problems (plain sentences)
    files: dict = field(default_factory=dict)       # source path -> problem with that spectrum

    def summary(self) -> dict:
        src, n = self.source, len(self.source)
        own = src == "spectrum"
        out = {"gain_kev": self.run.gain_kev, "offset_kev": self.run.offset_kev, "grid_source": self.grid_source,
               "run_fit": self.run.to_dict(), "spectra": int(n),
               "by_source": {s: int((src == s).sum()) for s in ("spectrum", "run", "file", "nominal") if (src == s).any()},
               "warnings": list(self.warnings), "files_named": len(self.files)}
        if own.any():
            shift = shift_kev(self.gains[own], self.offsets[own], self.run.gain_kev, self.run.offset_kev)
            out["spectrum_shift_ev_at_6.4keV"] = {f"p{q}": round(float(np.percentile(shift, q)) * 1000, 2)
                                                  for q in (5, 50, 95)}
        return out

    def describe(self) -> str:
        """One line for reports: the run's calibration and how it was found."""
        by = self.summary()["by_source"]
        parts = ", ".join(f"{v} {k}" for k, v in by.items())
        return (f"gain {self.run.gain_kev * 1000:.3f} eV/ch, offset {self.run.offset_kev * 1000:+.1f} eV "
                f"({self.grid_source}; per spectrum: {parts})")


def _name_files(paths, limit: int = 5) -> str:
    paths = [str(p) for p in paths]
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def calibrate_run(counts, nominal, *, stated_gain=None, stated_offset=None, kv=None, valid=None,
                  paths=None, total=None) -> RunCalibration:
    """Calibrate a run. Spectra whose file states a calibration keep it (it is checked against the
    lines); the others get their own fit where it is good, else the run's fit, else ``nominal``.
    ``total``: the run's summed spectrum when ``counts`` are only some of its rows (an append)."""
    from xrfcore.energy import as_grid

    nominal = as_grid(nominal)
    X = np.asarray(counts)
    n = len(X)
    paths = np.asarray(paths if paths is not None else [f"row {i}" for i in range(n)], dtype=object)
    use = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    if not use.any():
        use = np.ones(n, bool)
    sg = np.full(n, np.nan) if stated_gain is None else np.asarray(stated_gain, dtype=np.float64)
    so = np.full(n, np.nan) if stated_offset is None else np.asarray(stated_offset, dtype=np.float64)
    stated = np.isfinite(sg) & (sg > 0)
    so = np.where(stated & ~np.isfinite(so), 0.0, so)
    if total is None:
        total = X[use].sum(0, dtype=np.float64) if n else np.zeros(X.shape[1] if X.ndim == 2 else 0)
    fit = fit_spectrum(np.asarray(total, dtype=np.float64), nominal, kv) if n else Fit(nominal.gain_kev, nominal.offset_kev, "failed", message="no spectra")
    warnings, files = [], {}

    if stated.all():
        # the file's own calibration is kept; the lines only check it
        g0, o0 = float(np.median(sg)), float(np.median(so))
        cal = RunCalibration(sg.copy(), so.copy(), np.full(n, "file", dtype=object),
                             Fit(g0, o0, "stated", message="stated in the files"), "stated in the files")
        if fit.status == "ok":
            d = shift_kev(fit.gain_kev, fit.offset_kev, g0, o0)
            cal.run.message = f"stated in the files; lines agree within {abs(d) * 1000:.0f} eV at {CHECK_KEV} keV ({fit.message})"
            if abs(d) > SPECTRUM_SHIFT_KEV:
                warnings.append(f"the calibration stated in the files puts lines {d * 1000:+.0f} eV off at "
                                f"{CHECK_KEV} keV (a line fit gives gain {fit.gain_kev * 1000:.3f} eV/ch, "
                                f"offset {fit.offset_kev * 1000:+.1f} eV); the stated one is kept")
        else:
            cal.run.message = f"stated in the files; not checked ({fit.message})"
        cal.warnings = warnings
        return cal

    gains, offsets = np.full(n, nominal.gain_kev), np.full(n, nominal.offset_kev)
    source = np.full(n, "nominal", dtype=object)
    if fit.ok and (fit.status == "ok" or plausible(fit, nominal)):
        if not plausible(fit, nominal):
            warnings.append(f"energy calibration moved more than a plausible drift: gain "
                            f"{fit.gain_kev * 1000:.3f} eV/ch, offset {fit.offset_kev * 1000:+.0f} eV against nominal "
                            f"{nominal.gain_kev * 1000:.3f} eV/ch, {nominal.offset_kev * 1000:+.0f} eV; check the "
                            f"element lines in the spectrum view ({_name_files(paths[use])})")
        g, o, good = fit_rows(X, fit, kv)
        gains[:], offsets[:] = np.where(good, g, fit.gain_kev), np.where(good, o, fit.offset_kev)
        source[:] = np.where(good, "spectrum", "run")
        grid_source = f"calibrated from lines: {fit.message}"
        moved = good & (np.abs(shift_kev(g, o, fit.gain_kev, fit.offset_kev)) > SPECTRUM_SHIFT_KEV)
        for i in np.flatnonzero(moved):
            d = shift_kev(g[i], o[i], fit.gain_kev, fit.offset_kev)
            files[str(paths[i])] = (f"energy scale {d * 1000:+.0f} eV off the run's at {CHECK_KEV} keV "
                                    f"(own line fit used: gain {g[i] * 1000:.3f} eV/ch, offset {o[i] * 1000:+.1f} eV)")
        if moved.any():
            warnings.append(f"{int(moved.sum())} spectra sit more than {SPECTRUM_SHIFT_KEV * 1000:.0f} eV off the "
                            f"run's energy scale at {CHECK_KEV} keV (drift?): {_name_files(paths[moved])}")
    else:
        why = fit.message if not fit.ok else (f"the fit (gain {fit.gain_kev * 1000:.3f} eV/ch, offset "
                                              f"{fit.offset_kev * 1000:+.0f} eV) is not plausible")
        warnings.append(f"energy calibration failed ({why}); the nominal {nominal.gain_kev * 1000:.1f} eV/ch "
                        f"is used: element lines may sit off their peaks ({_name_files(paths[use])})")
        grid_source = f"nominal (calibration failed: {why})"
        fit = Fit(nominal.gain_kev, nominal.offset_kev, "failed", fit.rms_ev, fit.lines, fit.message)
    # rows whose file stated a calibration keep it even in a mixed run
    gains[stated], offsets[stated], source[stated] = sg[stated], so[stated], "file"
    return RunCalibration(gains, offsets, source, fit, grid_source, warnings, files)


SOURCE_TEXT = {"spectrum": "own line fit", "run": "run's line fit", "file": "stated in the file",
               "nominal": "nominal, not calibrated"}


def describe_row(gain_kev: float, offset_kev: float, source: str) -> str:
    """'energy 19.981 eV/ch, -0.4 eV (own line fit)' for a spectrum's label."""
    return (f"energy {gain_kev * 1000:.3f} eV/ch, {offset_kev * 1000:+.1f} eV "
            f"({SOURCE_TEXT.get(str(source), str(source) or 'run grid')})")
