"""Training data in memory: every active spectrum of a project, read run by run (large chunks),
resampled onto the model grid when the run's grid differs. No per-file loaders, no workers."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from xrfcore.jobs import CancelToken, ProgressFn, no_progress


@dataclass
class SpectraSet:
    counts: np.ndarray      # float32 (N, channels) on the model grid (not windowed)
    core: np.ndarray        # (N,) core name
    run: np.ndarray         # (N,) run key
    depth_mm: np.ndarray    # (N,)
    simulated: np.ndarray   # (N,) bool: scanner recorded as simulated
    source: str = ""        # project path

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def select(self, keep: np.ndarray) -> "SpectraSet":
        return SpectraSet(self.counts[keep], self.core[keep], self.run[keep], self.depth_mm[keep],
                          self.simulated[keep], self.source)

    def split_cores(self, val_cores) -> tuple["SpectraSet", "SpectraSet"]:
        """(train, validation): validation holds the named cores whole."""
        val_cores = list(val_cores or [])
        unknown = sorted(set(val_cores) - set(self.core.tolist()))
        if unknown:
            raise ValueError(f"validation cores not in the data: {', '.join(unknown)} "
                             f"(cores: {', '.join(sorted(set(self.core.tolist())))})")
        is_val = np.isin(self.core, val_cores)
        return self.select(~is_val), self.select(is_val)

    def sha256(self) -> str:
        return counts_sha256(self.counts)

    def summary(self) -> dict:
        cores = sorted(set(self.core.tolist()))
        sim = bool(self.simulated.all()) if len(self) else None
        if len(self) and self.simulated.any() and not self.simulated.all():
            sim = "mixed"
        return {"n_spectra": len(self), "cores": cores, "sha256": self.sha256(),
                "simulated": sim, "source": self.source}


def counts_sha256(X: np.ndarray) -> str:
    """sha256 of the spectra as float32 (shape included), hashed in blocks (no full copy)."""
    X = np.asarray(X)
    h = hashlib.sha256(repr(X.shape).encode())
    for i in range(0, len(X), 4096):
        h.update(np.ascontiguousarray(X[i:i + 4096], dtype=np.float32))
    return h.hexdigest()


def load_project(project_path, cfg, *, cores=None, kv: float | None = None,
                 progress: ProgressFn = no_progress, token: CancelToken | None = None,
                 on_run=None) -> SpectraSet:
    """All active, valid spectra of ``cores`` (default all) on ``cfg``'s grid; ``kv`` keeps only
    spectra measured at that tube voltage. ``on_run(core, run, run_data, keep)``: sees each run as
    read (its own grid, before resampling), e.g. to check it against a model's window."""
    from xrfcore.store import Project

    parts = []
    with Project.open(project_path) as p:
        names = p.cores()
        wanted = list(cores) if cores else names
        missing = sorted(set(wanted) - set(names))
        if missing:
            raise ValueError(f"{project_path}: no core named {', '.join(missing)} "
                             f"(cores: {', '.join(names) or 'none'})")
        jobs = [(c, r) for c in wanted for r in p.runs(c)]
        for i, (core, run) in enumerate(jobs):
            if token is not None:
                token.raise_if_cancelled()
            progress(i, len(jobs), f"reading {core}/{run}")
            data = p.read_run(core, run)
            keep = np.ones(len(data), bool)
            if "valid" in data.meta:
                keep &= data.meta["valid"].to_numpy(bool)
            if kv is not None:
                keep &= np.isclose(data.meta["kv"].to_numpy(float), kv)
            if not keep.any():
                continue
            if on_run is not None:
                on_run(core, run, data, keep)
            X = _on_grid(data.counts[keep], data.grids.take(keep), cfg)
            scanner = data.meta["scanner"].astype(str).to_numpy()[keep] if "scanner" in data.meta \
                else np.full(int(keep.sum()), "")
            parts.append((X, np.full(len(X), core, dtype=object), np.full(len(X), run, dtype=object),
                          data.meta["depth_mm"].to_numpy(float)[keep],
                          np.char.startswith(scanner.astype(str), "simulated")))
        progress(len(jobs), len(jobs), "spectra in memory")
    if not parts:
        raise ValueError(f"{project_path}: no usable spectra"
                         + (f" at {kv:g} kV" if kv is not None else "")
                         + (f" in cores {', '.join(wanted)}" if cores else ""))
    cols = list(zip(*parts))
    return SpectraSet(np.concatenate(cols[0]), np.concatenate(cols[1]), np.concatenate(cols[2]),
                      np.concatenate(cols[3]), np.concatenate(cols[4]).astype(bool), str(project_path))


def _on_grid(counts: np.ndarray, grid, cfg) -> np.ndarray:
    from xrfcore.energy import on_grid

    return np.asarray(on_grid(counts, grid, cfg.grid()), dtype=np.float32)
