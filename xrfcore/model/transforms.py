"""Input transforms: counts on the model window -> network input, and back.

``zscore`` (default; per-spectrum instance normalisation, best in the published work),
``log1p`` (log(1 + counts)), ``global`` (per-channel mean/std fitted on the training set).
The choice and its statistics go into the model card (``to_dict``/``from_dict``).
Arrays are numpy (N, C) or (C,); outputs are float32.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-6


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


class Transform:
    name = ""

    def fit(self, X) -> "Transform":
        return self

    def apply(self, X) -> np.ndarray:
        raise NotImplementedError

    def invert(self, Z, ref=None) -> np.ndarray:
        """Back to counts. ``ref``: the measured counts the input was made from (needed by zscore)."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"name": self.name}

    __call__ = apply


class ZScore(Transform):
    """Each spectrum minus its own mean, over its own standard deviation."""
    name = "zscore"
    CHUNK = 4096  # rows per block: float64 statistics without a float64 copy of the whole set

    @staticmethod
    def _stats(X: np.ndarray):
        X = np.asarray(X, dtype=np.float64)
        mean = X.mean(axis=-1, keepdims=True)
        std = X.std(axis=-1, keepdims=True)
        return mean, np.where(std > EPS, std, 1.0)

    def _blocks(self, X, fn) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim < 2:
            return fn(X[None], X[None])[0]
        out = np.empty(X.shape, dtype=np.float32)
        for i in range(0, len(X), self.CHUNK):
            out[i:i + self.CHUNK] = fn(X[i:i + self.CHUNK], None)
        return out

    @staticmethod
    def _pre(X) -> np.ndarray:
        """Counts -> the values that are z-scored (float64)."""
        return np.asarray(X, dtype=np.float64)

    @staticmethod
    def _post(V) -> np.ndarray:
        """Inverse of ``_pre``."""
        return V

    def apply(self, X) -> np.ndarray:
        def fn(block, _):
            V = self._pre(block)
            mean, std = self._stats(V)
            return ((V - mean) / std).astype(np.float32)
        return self._blocks(X, fn)

    def invert(self, Z, ref=None) -> np.ndarray:
        if ref is None:
            raise ValueError(f"{self.name}.invert needs the measured spectrum (ref) for its mean and scale")
        mean, std = self._stats(self._pre(ref))
        return self._post(_f32(Z) * std + mean).astype(np.float32)


class Log1p(Transform):
    name = "log1p"

    def apply(self, X) -> np.ndarray:
        return np.log1p(np.clip(_f32(X), 0, None)).astype(np.float32)

    def invert(self, Z, ref=None) -> np.ndarray:
        return np.expm1(_f32(Z)).astype(np.float32)


class LogZScore(ZScore):
    """log(1 + counts), then each spectrum minus its own mean over its own standard deviation.

    The z-score of raw counts is dominated by the largest peaks (Ca, Fe, the tube scatter), so a
    masked-reconstruction loss on it barely sees minor lines and the scatter continuum, where
    organic matter shows (dilution, S, the coherent/incoherent ratio); the log evens that out."""
    name = "log_zscore"

    @staticmethod
    def _pre(X) -> np.ndarray:
        return np.log1p(np.clip(np.asarray(X, dtype=np.float64), 0, None))

    @staticmethod
    def _post(V) -> np.ndarray:
        return np.expm1(V)


class GlobalChannel(Transform):
    """Per-channel standardisation with statistics of the training set (stored in the card)."""
    name = "global"

    def __init__(self, mean=None, std=None):
        self.mean = None if mean is None else _f32(mean)
        self.std = None if std is None else _f32(std)

    def fit(self, X) -> "GlobalChannel":
        X = _f32(X)
        if X.ndim != 2 or len(X) < 2:
            raise ValueError("global normalisation needs at least 2 spectra to fit")
        self.mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = X.std(axis=0, dtype=np.float64)
        self.std = np.where(std > EPS, std, 1.0).astype(np.float32)
        return self

    def _check(self, X) -> None:
        if self.mean is None:
            raise ValueError("global normalisation used before fit(): no channel statistics")
        if np.shape(X)[-1] != self.mean.shape[0]:
            raise ValueError(f"spectra have {np.shape(X)[-1]} channels, statistics {self.mean.shape[0]}")

    def apply(self, X) -> np.ndarray:
        self._check(X)
        return ((_f32(X) - self.mean) / self.std).astype(np.float32)

    def invert(self, Z, ref=None) -> np.ndarray:
        self._check(Z)
        return (_f32(Z) * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict:
        d = {"name": self.name}
        if self.mean is not None:
            d["mean"] = [float(v) for v in self.mean]
            d["std"] = [float(v) for v in self.std]
        return d


TRANSFORMS = {"zscore": ZScore, "log_zscore": LogZScore, "log1p": Log1p, "global": GlobalChannel}


def make_transform(name: str = "zscore", stats: dict | None = None) -> Transform:
    """A transform by name; ``stats`` (e.g. {"mean": [...], "std": [...]}) for fitted ones."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; choose one of {', '.join(TRANSFORMS)}")
    if name == "global":
        stats = stats or {}
        return GlobalChannel(stats.get("mean"), stats.get("std"))
    return TRANSFORMS[name]()


def from_dict(d: dict) -> Transform:
    d = dict(d)
    return make_transform(d.pop("name"), d)


def prepare(counts, cfg, transform: Transform, src_grid=None) -> np.ndarray:
    """Counts -> network input: resample onto the model grid (when ``src_grid`` differs),
    cut the energy window, apply the transform. (N, C_src) or (C_src,) -> float32."""
    X = window(counts, cfg, src_grid)
    return transform.apply(X)


def window(counts, cfg, src_grid=None) -> np.ndarray:
    """Counts on the model window (resampled when ``src_grid`` is given and differs)."""
    X = np.asarray(counts)
    if src_grid is not None and not same_grid(src_grid, cfg):
        from xrfcore.energy import resample

        X = resample(X, src_grid, cfg.grid())
    if X.shape[-1] != cfg.channels:
        raise ValueError(f"spectra have {X.shape[-1]} channels but the model grid has {cfg.channels}; "
                         "pass their grid so they can be resampled")
    return _f32(X[..., cfg.window])


def same_grid(grid, cfg) -> bool:
    if hasattr(grid, "uniform"):          # per-spectrum calibrations (energy.RowGrids)
        grid = grid.uniform()
        if grid is None:
            return False
    return (int(grid.channels) == cfg.channels and abs(float(grid.gain_kev) - cfg.gain_kev) < 1e-9
            and abs(float(grid.offset_kev) - cfg.offset_kev) < 1e-9)
