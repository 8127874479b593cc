"""Energy scale: channel <-> keV, count-conserving resampling, emission-line table.

Convention (MCA): channel ``i`` (0-based) is centred at ``offset + gain * i`` keV and
covers ``offset + gain * (i - 0.5)`` to ``offset + gain * (i + 0.5)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

__all__ = ["Grid", "RowGrids", "DEFAULT_AVAATECH", "as_grid", "resample", "Line", "LINES", "lines_in_range"]


@dataclass(frozen=True)
class Grid:
    """A channel grid: number of channels and the linear energy calibration in keV."""

    channels: int
    gain_kev: float
    offset_kev: float = 0.0

    def __post_init__(self):
        if int(self.channels) != self.channels or self.channels < 1:
            raise ValueError(f"channels must be a positive whole number, not {self.channels!r}")
        if not np.isfinite(self.gain_kev) or self.gain_kev <= 0:
            raise ValueError(f"gain must be a positive number of keV per channel, not {self.gain_kev!r}")
        if not np.isfinite(self.offset_kev):
            raise ValueError(f"offset must be a finite number of keV, not {self.offset_kev!r}")
        object.__setattr__(self, "channels", int(self.channels))
        object.__setattr__(self, "gain_kev", float(self.gain_kev))
        object.__setattr__(self, "offset_kev", float(self.offset_kev))

    def energies(self) -> np.ndarray:
        """Channel centres in keV, shape (channels,)."""
        return self.offset_kev + self.gain_kev * np.arange(self.channels, dtype=np.float64)

    def edges(self) -> np.ndarray:
        """Channel edges in keV, shape (channels + 1,)."""
        return self.offset_kev + self.gain_kev * (np.arange(self.channels + 1, dtype=np.float64) - 0.5)

    def channel_of(self, kev):
        """Fractional channel index of an energy (scalar or array); round it to index."""
        out = (np.asarray(kev, dtype=np.float64) - self.offset_kev) / self.gain_kev
        return float(out) if out.ndim == 0 else out

    @property
    def max_kev(self) -> float:
        return self.offset_kev + self.gain_kev * (self.channels - 0.5)

    def to_dict(self) -> dict:
        return {"channels": self.channels, "gain_kev": self.gain_kev, "offset_kev": self.offset_kev}


DEFAULT_AVAATECH = Grid(2048, 0.020, 0.0)


class RowGrids:
    """One energy calibration per spectrum (rows of a run calibrated one by one).

    ``gain_kev`` / ``offset_kev`` are the run's own (median) calibration, so code that only needs
    an energy axis for display can treat this like a :class:`Grid`; :func:`resample` and
    :func:`on_grid` move every row from its own calibration.
    """

    def __init__(self, channels: int, gains, offsets, run: Grid | None = None):
        self.channels = int(channels)
        self.gains = np.asarray(gains, dtype=np.float64).reshape(-1)
        self.offsets = np.asarray(offsets, dtype=np.float64).reshape(-1)
        if self.gains.shape != self.offsets.shape:
            raise ValueError("one gain and one offset per spectrum")
        if not (np.all(np.isfinite(self.gains)) and np.all(self.gains > 0) and np.all(np.isfinite(self.offsets))):
            raise ValueError("per-spectrum gains must be positive and offsets finite")
        if run is None:
            run = Grid(self.channels, float(np.median(self.gains)) if len(self.gains) else 0.02,
                       float(np.median(self.offsets)) if len(self.offsets) else 0.0)
        self.run = run

    gain_kev = property(lambda self: self.run.gain_kev)
    offset_kev = property(lambda self: self.run.offset_kev)
    max_kev = property(lambda self: self.run.max_kev)

    def __len__(self) -> int:
        return len(self.gains)

    def __repr__(self) -> str:
        return f"RowGrids({self.channels} channels, {len(self)} rows, run {self.run})"

    def energies(self) -> np.ndarray:
        return self.run.energies()

    def channel_of(self, kev):
        return self.run.channel_of(kev)

    def to_dict(self) -> dict:
        return self.run.to_dict()

    def row(self, i: int) -> Grid:
        return Grid(self.channels, float(self.gains[i]), float(self.offsets[i]))

    def take(self, idx) -> "RowGrids":
        return RowGrids(self.channels, self.gains[idx], self.offsets[idx], self.run)

    def uniform(self) -> Grid | None:
        """The one grid every row shares, or None."""
        if len(self) and np.all(self.gains == self.gains[0]) and np.all(self.offsets == self.offsets[0]):
            return Grid(self.channels, float(self.gains[0]), float(self.offsets[0]))
        return None


def as_grid(g) -> Grid:
    """A :class:`Grid` from a Grid, any object with channels/gain_kev/offset_kev, or a dict
    (a :class:`RowGrids` gives its run-level grid)."""
    if isinstance(g, Grid):
        return g
    if isinstance(g, RowGrids):
        return g.run
    if isinstance(g, dict):
        return Grid(g["channels"], g["gain_kev"], g.get("offset_kev", 0.0))
    return Grid(g.channels, g.gain_kev, g.offset_kev)


def on_grid(counts, src, dst) -> np.ndarray:
    """``counts`` on grid ``dst``: returned as they are when ``src`` is the same grid (or either is
    None), otherwise resampled (count-conserving, float64)."""
    if src is None or dst is None:
        return np.asarray(counts)
    if isinstance(src, RowGrids):
        u = src.uniform()
        src = u if u is not None else src
    if not isinstance(src, RowGrids) and as_grid(src) == as_grid(dst):
        return np.asarray(counts)
    return resample(counts, src, dst)


@lru_cache(maxsize=64)
def _weights(src: Grid, dst: Grid) -> tuple[np.ndarray, np.ndarray]:
    """For each destination edge: the source edge index below it and the fraction beyond."""
    src_edges = src.edges()
    # Destination edges expressed in source-edge units, clipped to the source range.
    pos = np.clip((dst.edges() - src_edges[0]) / src.gain_kev, 0.0, float(src.channels))
    k = np.minimum(np.floor(pos).astype(np.int64), src.channels - 1)
    return k, pos - k


def resample(counts, src: Grid, dst: Grid) -> np.ndarray:
    """Move spectra from grid ``src`` onto grid ``dst``, conserving counts.

    ``counts`` is (C,) or (N, C) with C = ``src.channels``. The cumulative counts are
    interpolated linearly at the destination edges (counts spread evenly inside each
    source channel), then differenced. Counts outside the destination's energy range
    are dropped; inside the overlap, totals are kept exactly (to rounding).
    Returns float64 of shape (dst.channels,) or (N, dst.channels).
    """
    if isinstance(src, RowGrids):
        return _resample_rows(counts, src, as_grid(dst))
    src, dst = as_grid(src), as_grid(dst)
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"counts must be (channels,) or (spectra, channels), got shape {arr.shape}")
    if arr.shape[-1] != src.channels:
        raise ValueError(f"counts have {arr.shape[-1]} channels but the source grid has {src.channels}")
    if src == dst:
        return arr.copy()
    k, t = _weights(src, dst)
    cum = np.zeros(arr.shape[:-1] + (arr.shape[-1] + 1,), dtype=np.float64)
    np.cumsum(arr, axis=-1, out=cum[..., 1:])
    at_edges = cum[..., k] * (1.0 - t) + cum[..., k + 1] * t
    return np.diff(at_edges, axis=-1)


def _resample_rows(counts, src: RowGrids, dst: Grid, block: int = 2048) -> np.ndarray:
    """:func:`resample` with each row's own source calibration (same cumulative-count scheme)."""
    arr = np.asarray(counts, dtype=np.float64)
    single = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.ndim != 2 or arr.shape[-1] != src.channels or len(arr) != len(src):
        raise ValueError(f"counts of shape {np.shape(counts)} do not match {src!r}")
    out = np.empty((len(arr), dst.channels), dtype=np.float64)
    dst_edges = dst.edges()
    n = src.channels
    for i in range(0, len(arr), block):
        a = arr[i:i + block]
        g, o = src.gains[i:i + block, None], src.offsets[i:i + block, None]
        # destination edges in source-edge units of each row (row's first edge at offset - gain/2)
        pos = np.clip((dst_edges[None, :] - (o - 0.5 * g)) / g, 0.0, float(n))
        k = np.minimum(np.floor(pos).astype(np.int64), n - 1)
        t = pos - k
        cum = np.zeros((len(a), n + 1), dtype=np.float64)
        np.cumsum(a, axis=-1, out=cum[:, 1:])
        at = np.take_along_axis(cum, k, 1) * (1.0 - t) + np.take_along_axis(cum, k + 1, 1) * t
        out[i:i + block] = np.diff(at, axis=-1)
    return out[0] if single else out


# --------------------------------------------------------------------------- lines

class Line(NamedTuple):
    element: str
    line: str        # "Ka", "Kb", "La", "Lb"
    kev: float
    z: int


def _build_lines() -> tuple[Line, ...]:
    import xraylib

    wanted = [("Ka", xraylib.KA_LINE), ("Kb", xraylib.KB_LINE),
              ("La", xraylib.LA_LINE), ("Lb", xraylib.LB_LINE)]
    out: list[Line] = []
    for z in range(11, 93):
        symbol = xraylib.AtomicNumberToSymbol(z)
        for name, code in wanted:
            if z > 56 and name.startswith("K"):
                continue  # heavy elements: only L lines fall inside a core scanner's range
            try:
                kev = float(xraylib.LineEnergy(z, code))
            except ValueError:
                continue
            if kev > 0:
                out.append(Line(symbol, name, kev, z))
    return tuple(sorted(out, key=lambda ln: ln.kev))


# K alpha/beta for Z 11-56 and L alpha/beta for Z 11-92 (this includes the Rh L tube lines).
LINES: tuple[Line, ...] = _build_lines()


def lines_in_range(lo_kev: float, hi_kev: float, elements=None) -> list[Line]:
    """Lines with lo <= keV <= hi, sorted by energy; optionally only some element symbols."""
    keep = None if elements is None else {e.strip().capitalize() for e in elements}
    return [ln for ln in LINES
            if lo_kev <= ln.kev <= hi_kev and (keep is None or ln.element in keep)]
