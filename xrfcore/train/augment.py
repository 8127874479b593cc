"""Intensity / gain / offset / resolution augmentation of counts on the model grid, per batch, in torch.

Intensity: the raw counts are thinned binomially to a share drawn log-uniformly in ``intensity``
(a weaker tube, a shorter live time, a less efficient head: fewer counts with the Poisson noise
such a measurement has). Thinning is the only exact way to change intensity; more counts than
measured cannot be made, so the archive's heads carry the upper end.

Each spectrum (counts on the model grid, gain g0 keV/channel, zero offset) is re-read as a head
with gain ``g0 * (1 + gain_pct / 100)`` and zero offset ``offset_ch * g0`` keV would have recorded
it, imported on the nominal grid (Avaatech files carry no calibration): channel ``i`` then holds the
energies centred on ``g0 * ((1 + gain_pct / 100) * i + offset_ch)``, so a positive offset moves
peaks down. Extra Gaussian broadening (``fwhm_ev``, added in quadrature to the detector's own, as a
noisier detector would) is applied first. The resampling interpolates the cumulative counts (as
``energy.resample``), so counts are conserved inside the range. Spectra not drawn for augmentation
(``1 - prob``) pass through unchanged, so the model also sees well-calibrated spectra.

Why: real heads run 0.0198-0.0205 keV/channel and drift; a model trained on one exact scale
reconstructs a shifted spectrum badly (issue 10).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass
class AugmentConfig:
    """Ranges drawn uniformly per spectrum (recorded in the card through TrainConfig)."""

    gain_pct: tuple[float, float] = (-1.5, 3.0)   # real heads -1 .. +2.5 % around 0.0200, plus drift
    offset_ch: tuple[float, float] = (-4.0, 4.0)  # head zero offset in model channels
    fwhm_ev: tuple[float, float] = (0.0, 60.0)    # extra resolution, in quadrature
    prob: float = 0.8                             # share of spectra augmented
    intensity: tuple[float, float] = (0.35, 1.0)  # share of counts kept (binomial thinning)

    def __post_init__(self):
        for name in ("gain_pct", "offset_ch", "fwhm_ev", "intensity"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"augment {name}: need low <= high, got ({lo}, {hi})")
            setattr(self, name, (lo, hi))
        if self.gain_pct[0] <= -50 or self.fwhm_ev[0] < 0:
            raise ValueError("augment: gain_pct must stay above -50 % and fwhm_ev be >= 0")
        if not 0.0 < self.intensity[0] <= self.intensity[1] <= 1.0:
            raise ValueError(f"augment intensity must lie in (0, 1], got {self.intensity}")
        if not 0.0 <= float(self.prob) <= 1.0:
            raise ValueError(f"augment prob must be in [0, 1], got {self.prob}")
        self.prob = float(self.prob)

    @classmethod
    def from_any(cls, value) -> "AugmentConfig | None":
        """None/False: off; True: defaults; a dict (e.g. from a card) or an AugmentConfig."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):  # a card from before intensity augmentation keeps it off
            return cls(**{"intensity": (1.0, 1.0),
                          **{f.name: value[f.name] for f in dataclasses.fields(cls) if f.name in value}})
        raise TypeError(f"augment must be None, a bool, a dict or AugmentConfig, not {type(value).__name__}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def generator(seed: int, step: int, rank: int) -> torch.Generator:
    """CPU generator of one step's augmentation (same seed, step and rank: same draws, any device)."""
    state = np.random.SeedSequence([int(seed) % (2 ** 63), int(step), int(rank), 0xA06]).generate_state(2)
    g = torch.Generator()
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


class Augmenter:
    """Counts of the source slice ``src`` of the grid (the window plus the margin the largest
    shift and kernel need) -> augmented counts on the model window, float64."""

    def __init__(self, aug: AugmentConfig, cfg):
        self.aug = aug
        self.g0 = float(cfg.gain_kev)
        self.w0 = int(cfg.window_start)
        self.cw = int(cfg.input_channels)
        s_lo, s_hi = 1 + aug.gain_pct[0] / 100, 1 + aug.gain_pct[1] / 100
        self.half = int(math.ceil(4 * self._sigma_ch(aug.fwhm_ev[1]))) if aug.fwhm_ev[1] > 0 else 0
        # source edge positions the window's edges can reach (edge q sits at channel q - 0.5)
        q_lo = min(s_lo, s_hi) * (self.w0 - 0.5) + aug.offset_ch[0] + 0.5
        q_hi = max(s_lo, s_hi) * (self.w0 + self.cw - 0.5) + aug.offset_ch[1] + 0.5
        lo = max(0, int(math.floor(q_lo)) - self.half - 1)
        hi = min(int(cfg.channels), int(math.ceil(q_hi)) + self.half + 1)
        self.src = slice(lo, hi)
        self.out_in_src = slice(self.w0 - lo, self.w0 - lo + self.cw)   # the window inside src

    def _sigma_ch(self, fwhm_ev):
        return fwhm_ev / 1000.0 / FWHM_PER_SIGMA / self.g0

    def draw(self, n: int, gen: torch.Generator) -> dict:
        """Per-spectrum parameters (CPU tensors): gain scale, offset (channels), extra FWHM (eV),
        share of counts kept."""
        a = self.aug
        u = torch.rand((n, 5), generator=gen, dtype=torch.float64)
        on = u[:, 3] < a.prob
        gain = 1 + (a.gain_pct[0] + u[:, 0] * (a.gain_pct[1] - a.gain_pct[0])) / 100
        offset = a.offset_ch[0] + u[:, 1] * (a.offset_ch[1] - a.offset_ch[0])
        fwhm = a.fwhm_ev[0] + u[:, 2] * (a.fwhm_ev[1] - a.fwhm_ev[0])
        lo, hi = math.log(a.intensity[0]), math.log(a.intensity[1])
        keep = torch.exp(lo + u[:, 4] * (hi - lo))
        return {"on": on, "gain": torch.where(on, gain, 1.0), "offset": torch.where(on, offset, 0.0),
                "fwhm_ev": torch.where(on, fwhm, 0.0), "intensity": torch.where(on, keep, 1.0)}

    def __call__(self, counts: torch.Tensor, gen: torch.Generator | None = None, params: dict | None = None):
        """(B, src width) counts -> (B, window) augmented counts (float64, on counts' device)."""
        x = counts.to(torch.float64)
        keep = x[:, self.out_in_src]
        p = params if params is not None else self.draw(len(x), gen)
        on = p["on"].to(x.device)
        if not bool(on.any()):
            return keep
        xs = x[on]
        gain, offset, fwhm = (p[k].to(x.device)[on] for k in ("gain", "offset", "fwhm_ev"))
        if "intensity" in p and self.aug.intensity[0] < 1.0:
            xs = self._thin(xs, p["intensity"][on.cpu()], gen)
        if self.half > 0:
            xs = self._broaden(xs, fwhm)
        out = keep.clone()
        out[on] = self._rescale(xs, gain, offset)
        return out

    @staticmethod
    def _thin(x: torch.Tensor, keep: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Binomial thinning of (integer) counts, drawn on the CPU with the step's generator so the
        draws do not depend on the device."""
        n = x.detach().cpu()
        bad = ~torch.isfinite(n)          # torch.binomial never returns on a NaN count
        n = torch.where(bad, 0.0, n).round().clamp_min(0)
        prob = keep.to(n.dtype)[:, None].expand_as(n).contiguous()
        out = torch.binomial(n, prob, generator=gen)
        out[bad] = float("nan")           # bad input stays bad, for the training's NaN guard
        return out.to(x.device, x.dtype)

    def _broaden(self, x: torch.Tensor, fwhm_ev: torch.Tensor) -> torch.Tensor:
        """Each row convolved with its own Gaussian (integrated over channels, so narrow kernels
        stay exact and each kernel sums to 1)."""
        sigma = self._sigma_ch(fwhm_ev).clamp_min(1e-3)[:, None]
        k = torch.arange(-self.half, self.half + 1, device=x.device, dtype=x.dtype)[None]
        r2 = math.sqrt(2.0)
        w = 0.5 * (torch.erf((k + 0.5) / (r2 * sigma)) - torch.erf((k - 0.5) / (r2 * sigma)))
        w = w / w.sum(1, keepdim=True)
        b = len(x)
        y = torch.nn.functional.conv1d(x[None], w.flip(1)[:, None, :], padding=self.half, groups=b)
        return y[0]

    def _rescale(self, x: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Window channel i takes the source counts between edge positions s*(i -+ 0.5) + o."""
        lo = self.src.start
        n = x.shape[1]
        i = torch.arange(self.w0, self.w0 + self.cw + 1, device=x.device, dtype=x.dtype)[None]
        q = gain[:, None] * (i - 0.5) + offset[:, None] + 0.5 - lo     # edge positions in src
        q = q.clamp(0.0, float(n))
        k = torch.clamp(q.floor().long(), max=n - 1)
        t = q - k
        cum = torch.zeros((len(x), n + 1), dtype=x.dtype, device=x.device)
        torch.cumsum(x, dim=1, out=cum[:, 1:])
        at = cum.gather(1, k) * (1 - t) + cum.gather(1, k + 1) * t
        return at[:, 1:] - at[:, :-1]


def apply_transform(transform, x: torch.Tensor) -> torch.Tensor:
    """``transform.apply`` on a torch batch (float64 statistics, float32 out), so augmented
    batches need no trip through numpy."""
    from xrfcore.model.transforms import EPS

    name = transform.name
    x = x.to(torch.float64)
    if name in ("log1p", "log_zscore"):
        x = torch.log1p(x.clamp_min(0))
    if name in ("zscore", "log_zscore"):
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, unbiased=False, keepdim=True)
        x = (x - mean) / torch.where(std > EPS, std, torch.ones_like(std))
    elif name == "global":
        mean = torch.as_tensor(transform.mean, dtype=torch.float32, device=x.device)
        std = torch.as_tensor(transform.std, dtype=torch.float32, device=x.device)
        return (x.to(torch.float32) - mean) / std       # float32, as the numpy version
    elif name != "log1p":
        raise ValueError(f"no torch version of transform {name!r}")
    return x.to(torch.float32)
