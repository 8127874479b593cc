"""Where to take the next lab samples: K depths (1 cm, like the lab's) that a fine-tune learns most from.

Candidates are the whole-centimetre intervals of the chosen cores' scanned depths (the mean of the
active, valid spectra inside each, as ``labels.match_spectra`` matches a lab sample). Each is embedded
by the model's encoder (``finetune.embed_inputs``, mean of the patch tokens: what the ridge head of
``xrfcore finetune --mode head`` reads) and the embeddings are z-scored.

Selection: greedy weighted facility location (k-medoids) in that space, seeded with the lab samples
already taken: each step adds the candidate that most reduces the weighted sum, over every candidate
depth, of its distance to the nearest sample (taken or suggested). So the first suggestions stand for
the largest groups of similar depths and later ones fill what no sample resembles yet; every
lithology gets a sample before any is sampled twice. With a fine-tuned model (``Predictor``), each
depth's weight grows with its interval width (relative to the median; the widest of CaCO3 / TOC, TOC
in log space) and doubles where the spectrum is flagged out of distribution, so the depths the model
is least sure of count more. Never suggested: a depth within ``spacing_mm`` of a sample taken or
suggested on the same core (or overlapping it), and a cracked / low-count spectrum (its counts under
half the core's median per live second and uA, or the model's ``ood_reason`` says low counts): a
sample there teaches nothing. Deterministic for a seed (the seed draws the subsets used on projects
with more than ``MAX_DEMAND`` / ``MAX_CANDIDATES`` depths, and breaks ties).
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from xrfcore.jobs import CancelToken, no_progress

COLUMNS = ["core", "depth_top_mm", "depth_bottom_mm", "depth_mm", "rank", "reason"]
SAMPLE_MM = 10.0        # a lab sample: 1 cm
SPACING_MM = 20.0       # centre to centre, between suggestions and to the samples already taken
LOW_COUNTS = 0.5        # counts under this fraction of the core's median: crack or gap, never suggested
OOD_BOOST = 2.0
FAR = 2.0               # a suggestion this many times the usual neighbour distance away: "far"
MAX_DEMAND, MAX_CANDIDATES = 2000, 6000


@dataclass
class Candidates:
    table: pd.DataFrame       # core, run, depth_top_mm, depth_bottom_mm, depth_mm, n_spectra, low_counts, counts_ratio
    X: np.ndarray             # (N, C) mean counts per interval on ``grid``
    grid: object
    simulated: bool = False


def candidates(project_path, cores=None, *, grid=None, run=None, sample_mm: float = SAMPLE_MM) -> Candidates:
    """The 1 cm (``sample_mm``) intervals of each core's scanned depths with their mean spectrum."""
    from xrfcore import energy, labels as lb, store as st
    from xrfcore.predict import _is_simulated

    rows, Xs, simulated, out_grid = [], [], False, grid
    with st.Project.open(project_path) as p:
        have = p.cores()
        missing = [c for c in (cores or []) if c not in have]
        if missing:
            raise ValueError(f"{project_path}: no core {', '.join(map(repr, missing))} (cores: {', '.join(have)})")
        for core in (list(cores) if cores else have):
            runs = p.runs(core)
            key = run if run is not None else lb.choose_run(runs)
            if key not in runs:
                raise ValueError(f"{project_path}: core {core!r} has no run {key!r} (runs: {', '.join(runs)})")
            rd = p.read_run(core, key, active_only=True)
            simulated = simulated or _is_simulated(rd.meta)
            d = rd.meta["depth_mm"].to_numpy(float)
            use = rd.meta["valid"].to_numpy(bool) & np.isfinite(d)
            if not use.any():
                continue
            out_grid = out_grid if out_grid is not None else energy.as_grid(rd.grid)
            counts = np.asarray(energy.on_grid(rd.counts, rd.grids, out_grid), float)[use]
            bins = np.floor(d[use] / sample_mm).astype(np.int64)
            ub, inv = np.unique(bins, return_inverse=True)
            n = np.bincount(inv, minlength=len(ub)).astype(float)
            X = np.zeros((len(ub), counts.shape[1]))
            np.add.at(X, inv, counts)
            X /= n[:, None]
            tot = counts.sum(1)
            live = rd.meta["live_s"].to_numpy(float)[use] * rd.meta["current_ua"].to_numpy(float)[use]
            rate = tot / live if np.all(np.isfinite(live) & (live > 0)) else tot
            per = np.bincount(inv, weights=rate, minlength=len(ub)) / n
            ratio = per / max(float(np.median(per)), 1e-12)
            rows.append(pd.DataFrame({"core": core, "run": key, "depth_top_mm": ub * sample_mm,
                                      "depth_bottom_mm": (ub + 1) * sample_mm, "depth_mm": (ub + 0.5) * sample_mm,
                                      "n_spectra": n.astype(int), "counts_ratio": ratio,
                                      "low_counts": ratio < LOW_COUNTS}))
            Xs.append(X)
    if not rows:
        raise ValueError(f"{project_path}: no active, valid spectra with depths in the chosen cores")
    return Candidates(pd.concat(rows, ignore_index=True), np.vstack(Xs), out_grid, simulated)


def load_model(model_path, device: str = "auto"):
    """(encoder with a mean-pool head, Predictor or None, card): a fine-tuned model gives its
    Predictor (intervals, OOD); a foundation model its encoder as the head of a fine-tune reads it."""
    from xrfcore.model import checkpoint
    from xrfcore.model.regressor import SpectrumRegressor
    from xrfcore.train.finetune import Predictor

    card = checkpoint.load_card(model_path)
    if card.get("task") == "regression":
        pr = Predictor(model_path, device=device)
        return pr.model, pr, pr.card
    mae, card = checkpoint.load(model_path)
    return SpectrumRegressor.from_mae(mae, pool="mean"), None, card


def embed(encoder, card: dict, cand: Candidates, *, device: str = "auto", progress=no_progress,
          token=None) -> np.ndarray:
    """(N, D) encoder embeddings of the candidates (``finetune.embed_inputs``)."""
    from xrfcore.model import transforms as tfm
    from xrfcore.train.finetune import embed_inputs, resolve_device

    Xin = tfm.prepare(cand.X, encoder.cfg, tfm.from_dict(card["transform"]), src_grid=cand.grid)
    E = embed_inputs(encoder, Xin, device=resolve_device(device), progress=progress, token=token,
                     msg="embedding candidate depths")
    encoder.cpu()
    return E


def uncertainty(pred: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """From a prediction table (``Predictor.predict_counts``): (interval width relative to its
    median, widest of CaCO3 / TOC; TOC in log space), the target that is widest, and the OOD reason
    of each row ('' when not flagged)."""
    rel, which = [], []
    for t in ("CaCO3", "TOC"):
        lo, hi = pred.get(f"{t}_lo"), pred.get(f"{t}_hi")
        if lo is None or not np.isfinite(np.asarray(hi, float) - np.asarray(lo, float)).any():
            continue
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        w = np.log(np.maximum(hi, 1e-3) / np.maximum(lo, 1e-3)) if t == "TOC" else hi - lo
        med = np.nanmedian(w)
        rel.append(np.where(np.isfinite(w), w / med, 1.0) if med > 0 else np.ones(len(w)))
        which.append(t)
    if not rel:
        return np.ones(len(pred)), np.array([""] * len(pred), object), [""] * len(pred)
    R = np.column_stack(rel)
    flag = pred["ood_flag"].to_numpy(bool) if "ood_flag" in pred else np.zeros(len(pred), bool)
    why = pred["ood_reason"].fillna("").astype(str).to_numpy() if "ood_reason" in pred else [""] * len(pred)
    return R.max(1), np.array(which, object)[R.argmax(1)], [w if f else "" for w, f in zip(why, flag)]


def is_crack(reason: str) -> bool:
    return "low counts" in reason or "crack" in reason


def _existing_rows(table: pd.DataFrame, labels: pd.DataFrame | None, sample_mm: float) -> list[tuple]:
    """Per lab sample already taken: (core, centre, half-width, candidate rows it covers)."""
    out = []
    if labels is None or not len(labels):
        return out
    for r in labels.itertuples(index=False):
        top, bot = getattr(r, "depth_top_mm", np.nan), getattr(r, "depth_bottom_mm", np.nan)
        mid = getattr(r, "depth_mm", np.nan)
        if np.isfinite(top) and np.isfinite(bot):
            mid, half = (top + bot) / 2, (bot - top) / 2
        elif np.isfinite(mid):
            half = 0.0
        else:
            continue
        on = np.flatnonzero(table["core"].to_numpy() == str(r.core))
        dd = np.abs(table["depth_mm"].to_numpy(float)[on] - mid)
        rows = on[dd <= half + sample_mm / 2] if len(on) else on
        if not len(rows) and len(on) and dd.min() <= sample_mm:
            rows = on[[int(np.argmin(dd))]]
        out.append((str(r.core), float(mid), float(half), rows))
    return out


def select(table: pd.DataFrame, E: np.ndarray, k: int, *, labels: pd.DataFrame | None = None,
           eligible=None, weights=None, widest=None, ood_reasons=None, spacing_mm: float = SPACING_MM,
           sample_mm: float = SAMPLE_MM, seed: int = 0, token=None) -> pd.DataFrame:
    """Choose ``k`` rows of ``table`` (see the module text). ``eligible``: rows that may be suggested
    (default all but low counts); demand (what the samples must stand for) is the eligible rows' cores'
    non-crack depths. ``weights`` / ``widest`` / ``ood_reasons``: from :func:`uncertainty`."""
    n = len(table)
    rng = np.random.default_rng(seed)
    core = table["core"].astype(str).to_numpy()
    depth = table["depth_mm"].to_numpy(float)
    crack = table["low_counts"].to_numpy(bool) if "low_counts" in table else np.zeros(n, bool)
    why = list(ood_reasons) if ood_reasons is not None else [""] * n
    crack = crack | np.array([is_crack(w) for w in why], bool)
    ok = (~crack) if eligible is None else (np.asarray(eligible, bool) & ~crack)
    w = np.ones(n) if weights is None else np.clip(np.nan_to_num(np.asarray(weights, float), nan=1.0), 0.5, 5.0)
    w = w * np.where([bool(x) for x in why], OOD_BOOST, 1.0)
    E = np.asarray(E, np.float64)
    mu, sd = E.mean(0), E.std(0)
    Z = (E - mu) / np.where(sd > 1e-8, sd, 1.0)
    # the depths the samples must stand for: every non-crack depth of the cores that can be sampled
    demand = np.flatnonzero(np.isin(core, np.unique(core[ok])) & ~crack)
    if len(demand) > MAX_DEMAND:
        demand = np.sort(rng.choice(demand, MAX_DEMAND, replace=False))
    cand = np.flatnonzero(ok)
    if len(cand) > MAX_CANDIDATES:
        cand = np.sort(rng.choice(cand, MAX_CANDIDATES, replace=False))
    facilities = []
    for c, mid, half, rows in _existing_rows(table, labels, sample_mm):
        near = np.flatnonzero(core[cand] == c)
        gap = np.abs(depth[cand[near]] - mid)
        ok_rows = gap >= max(spacing_mm, half + sample_mm / 2)
        cand = np.delete(cand, near[~ok_rows])
        if len(rows):
            facilities.append(Z[rows].mean(0))
    nearest = np.full(n, np.inf)
    for f in facilities:
        nearest = np.minimum(nearest, np.linalg.norm(Z - f, axis=1))
    cand = cand[rng.permutation(len(cand))]  # ties go to a seeded order
    D = np.sqrt(np.maximum((Z[demand] ** 2).sum(1)[:, None] - 2 * Z[demand] @ Z[cand].T
                           + (Z[cand] ** 2).sum(1)[None], 0)).astype(np.float32)
    far = float(D.max()) * 2 + 1.0 if D.size else 1.0
    cur = np.minimum(nearest[demand], far)
    wd = w[demand].astype(np.float32)
    alive = np.ones(len(cand), bool)
    picks, reasons = [], []
    # the usual distance from a depth to its most similar other depth: the scale of "far"
    usual = float(np.median(np.partition(D, 1, axis=1)[:, 1])) if D.shape[0] and D.shape[1] > 1 else 1.0
    for step in range(k):
        if token is not None:
            token.raise_if_cancelled()
        if not alive.any():
            break
        gain = (wd[:, None] * np.maximum(cur[:, None] - D, 0)).sum(0)
        gain[~alive] = -1.0
        j = int(np.argmax(gain))
        i = int(cand[j])
        if why[i]:
            reason = f"out of distribution: {why[i]}"
        elif widest is not None and weights is not None and w[i] >= 1.25:
            reason = f"widest {widest[i]} interval ({w[i]:.1f}x the median width)"
        elif not facilities and not picks:
            reason = "most typical spectrum of the cores"
        elif nearest[i] >= FAR * usual:
            reason = f"far from every labelled spectrum ({nearest[i] / max(usual, 1e-12):.1f}x the usual distance)"
        else:
            reason = "many similar depths not yet sampled"
        picks.append(i)
        reasons.append(reason)
        cur = np.minimum(cur, D[:, j])
        nearest = np.minimum(nearest, np.linalg.norm(Z - Z[i], axis=1))
        alive &= ~((core[cand] == core[i]) & (np.abs(depth[cand] - depth[i]) < spacing_mm))
    # how many depths each suggestion stands for (nearest among the samples taken and suggested)
    if picks:
        Dp = np.column_stack([np.linalg.norm(Z[demand] - Z[p], axis=1) for p in picks])
        fac = np.full(len(demand), np.inf)
        for f in facilities:
            fac = np.minimum(fac, np.linalg.norm(Z[demand] - f, axis=1))
        best = np.where(Dp.min(1) < fac, Dp.argmin(1), -1)
        scale = (np.isin(core, np.unique(core[ok])) & ~crack).sum() / max(len(demand), 1)
        counts = np.bincount(best[best >= 0], minlength=len(picks)) * scale
        reasons = [f"{r}; stands for about {max(1, int(round(c)))} depth(s) like it" for r, c in zip(reasons, counts)]
    out = table.iloc[picks][["core", "depth_top_mm", "depth_bottom_mm", "depth_mm"]].reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    out["reason"] = reasons
    out.attrs["rows"] = np.asarray(picks, int)
    return out


def suggest(project_path, model_path=None, k: int = 10, *, cores=None, labels_csv=None, run=None,
            spacing_mm: float = SPACING_MM, sample_mm: float = SAMPLE_MM, seed: int = 0,
            use_stored_labels: bool = True, device: str = "auto", progress=no_progress,
            token: CancelToken | None = None) -> pd.DataFrame:
    """K depths to sample next on ``cores`` (all by default) of a project; ``model_path``: a
    foundation or fine-tuned model (None: the default foundation model). The lab samples already
    taken (stored in the project, and ``labels_csv``) are not suggested again and seed the choice.
    Returns COLUMNS; ``df.attrs["provenance"]`` for the CSV header."""
    from xrfcore import __version__, labels as lb, models_registry, store as st
    from xrfcore.model.config import ModelConfig

    token = token or CancelToken()
    if k < 1:
        raise ValueError(f"k must be a positive whole number, not {k}")
    model_path = models_registry.resolve(model_path)
    progress(0, 100, "reading spectra")
    encoder, pr, card = load_model(model_path, device)
    grid = ModelConfig.from_dict(card["config"]).grid()
    taken = []
    if use_stored_labels:
        with st.Project.open(project_path) as p:
            stored = p.labels()
        if len(stored):
            taken.append(stored)
    if labels_csv is not None:
        taken.append(lb.read_lab_csv(labels_csv).samples)
    taken = pd.concat(taken, ignore_index=True) if taken else None
    choose = list(cores) if cores else None
    with st.Project.open(project_path) as p:
        every = p.cores()
    extra = sorted(set(taken["core"].astype(str)) & set(every) - set(choose)) if (taken is not None and choose) else []
    cand = candidates(project_path, (choose + extra) if choose else None, grid=grid, run=run, sample_mm=sample_mm)
    token.raise_if_cancelled()
    tab = cand.table
    eligible = tab["core"].isin(choose).to_numpy() if choose else np.ones(len(tab), bool)
    E = embed(encoder, card, cand, device=device, token=token,
              progress=lambda d, t, m="": progress(5 + int(45 * d / max(t, 1)), 100, m))
    weights = widest = reasons = None
    if pr is not None:
        parts = []
        for c, rows in tab.groupby("core", sort=False).indices.items():
            df = pr.predict_counts(cand.X[rows], cand.grid, token=token, scheme=pr.scheme_for(c),
                                   progress=lambda d, t, m="": progress(50 + int(45 * d / max(t, 1)), 100, f"{c}: {m}"))
            parts.append(df.set_index(pd.Index(rows)))
        pred = pd.concat(parts).sort_index()
        weights, widest, reasons = uncertainty(pred)
    out = select(tab, E, k, labels=taken, eligible=eligible, weights=weights, widest=widest,
                 ood_reasons=reasons, spacing_mm=spacing_mm, sample_mm=sample_mm, seed=seed, token=token)
    n_taken = 0 if taken is None else len(taken)
    out.attrs["provenance"] = {
        "xrfcore_version": __version__, "what": "suggested sampling depths (xrfcore suggest)",
        "model_id": card.get("id"), "model_kind": "fine-tuned" if pr is not None else "foundation",
        "project": Path(project_path).name, "cores": sorted(set(tab["core"][eligible])),
        "seed": seed, "k": k, "suggested": len(out), "sample_mm": sample_mm, "spacing_mm": spacing_mm,
        "existing_samples": n_taken, "candidates": int(eligible.sum()),
        "excluded_low_counts": int((tab["low_counts"] & eligible).sum()),
        "method": "weighted facility location on z-scored encoder embeddings, seeded with the samples taken"
                  + ("; weights: interval width, x2 out of distribution" if pr is not None else ""),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "simulated": bool(cand.simulated or card.get("simulated_data")),
        "model_trained_on_simulated_data": card.get("simulated_data"),
    }
    if len(out) < k:
        out.attrs["provenance"]["note"] = (f"only {len(out)} of {k} depths could be suggested "
                                           f"(spacing {spacing_mm:g} mm, samples taken, cracks excluded)")
    progress(100, 100, "done")
    return out


def write_csv(path, df: pd.DataFrame, provenance: dict | None = None) -> None:
    """The sampling list with its '#' provenance header (SIMULATED on its first line when so)."""
    from xrfcore import export

    export.write_csv_atomic(path, df[COLUMNS], export.provenance_lines(provenance or df.attrs.get("provenance", {})))
