"""Instrument check: the X-ray tube and voltage a run was measured with, what a model was trained
for, and whether the two agree.

- :func:`detect_anode` (``xrfcore.anode``) names the tube anode from a run's sum spectrum.
- :func:`describe_model` reads what a model card says it was trained for (``card["instrument"]``)
  or infers it for older cards.
- :func:`check_run` compares a run with a model: anode, kV, energy window; it always reports the
  share of counts outside the model's window (those never reach the model).
- :func:`choose_run` picks the run of a core that matches the model's kV, or refuses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xrfcore.anode import ANODES, AnodeDetection, detect_anode  # noqa: F401 (re-exported)

# Simulated Avaatech models (xrfcore/simulate) are an Rh tube at 10 kV: the default for cards
# that predate card["instrument"] and say they were trained on simulated data.
SIMULATED_DEFAULT = {"tube_anode": "Rh", "kv": [10.0, 10.0], "scanner": "avaatech (simulated)"}
KV_TOLERANCE = 0.5          # kV: 9.6 kV still counts as a 10 kV run
OUTSIDE_SHARE_LIMIT = 0.05  # more of a run's counts outside the model's window is a mismatch
DETECT_CONFIDENCE = 0.7     # below this a detected anode is only a note, never a reason to refuse


class InstrumentMismatch(ValueError):
    """A run measured with another tube, voltage or energy range than the model was trained for."""

    def __init__(self, message: str, check: "RunCheck | None" = None):
        super().__init__(message)
        self.check = check


# --------------------------------------------------------------------------- what a model knows

def _kv_text(kv) -> str:
    if not kv:
        return "an unknown voltage"
    lo, hi = kv
    return f"{lo:g} kV" if abs(hi - lo) < 1e-9 else f"{lo:g}-{hi:g} kV"


def _window(cfg) -> tuple[list[float], dict]:
    """(energy_kev [first channel, end], grid dict) of a ModelConfig (or a card's config dict)."""
    if isinstance(cfg, dict):
        from xrfcore.model.config import ModelConfig
        cfg = ModelConfig.from_dict(cfg)
    lo, hi = cfg.window_kev()
    grid = {"channels": cfg.channels, "gain_kev": cfg.gain_kev, "offset_kev": cfg.offset_kev,
            "window_start": cfg.window_start, "window_channels": cfg.input_channels}
    return [round(lo, 4), round(hi, 4)], grid


def for_card(cfg, data_info: dict | None) -> dict:
    """card["instrument"] of a pretrained model: its grid and window from ``cfg``, tube and kV from
    what the data said (``data_info``: tube_anode, kv_range or kv, scanner, simulated)."""
    d = dict(data_info or {})
    energy_kev, grid = _window(cfg)
    out = {"tube_anode": d.get("tube_anode"), "kv": d.get("kv_range"), "energy_kev": energy_kev,
           "grid": grid, "scanner": d.get("scanner"), "source": "pretraining data"}
    if out["kv"] is None and d.get("kv") is not None:
        out["kv"] = [float(d["kv"]), float(d["kv"])]
    if d.get("simulated") is True and (out["tube_anode"] is None or out["kv"] is None):
        out["tube_anode"] = out["tube_anode"] or SIMULATED_DEFAULT["tube_anode"]
        out["kv"] = out["kv"] or list(SIMULATED_DEFAULT["kv"])
        out["scanner"] = out["scanner"] or SIMULATED_DEFAULT["scanner"]
        out["source"] = "pretraining data; simulated Avaatech default (Rh tube, 10 kV) where not stated"
    return out


def describe_model(card: dict) -> dict:
    """What a model was trained for: tube_anode, kv [lo, hi], energy_kev [lo, hi] (its input
    window), grid, scanner, source. From ``card["instrument"]`` when the card states it; otherwise
    inferred from its config (window, grid), ``data.kv`` and ``simulated_data`` (simulated models are
    Avaatech, Rh tube, 10 kV: the simulator's only setting). Unknown fields are None."""
    energy_kev, grid = _window(card["config"])
    stated = card.get("instrument")
    if isinstance(stated, dict):
        out = {"tube_anode": stated.get("tube_anode"), "kv": stated.get("kv"),
               "energy_kev": energy_kev, "grid": grid, "scanner": stated.get("scanner"),
               "source": stated.get("source") or "model card"}
        if stated.get("energy_kev") and [round(v, 2) for v in stated["energy_kev"]] != \
                [round(v, 2) for v in energy_kev]:
            out["source"] += f" (window corrected from the config; card said {stated['energy_kev']})"
        return out
    base = card.get("base_model") or {}
    simulated = card.get("simulated_data") is True or base.get("simulated_data") is True
    kv = (card.get("data") or {}).get("kv")
    out = {"tube_anode": None, "kv": [float(kv), float(kv)] if kv is not None else None,
           "energy_kev": energy_kev, "grid": grid, "scanner": None,
           "source": "inferred from the card (no instrument stated)"}
    if simulated:
        out.update({k: (list(v) if isinstance(v, list) else v) for k, v in SIMULATED_DEFAULT.items()})
        out["source"] = "assumed: trained on simulated Avaatech spectra (Rh tube, 10 kV)"
    return out


def model_text(desc: dict) -> str:
    """'a Rh tube at 10 kV (0-10.24 keV)'"""
    lo, hi = desc["energy_kev"]
    tube = f"a {desc['tube_anode']} tube" if desc.get("tube_anode") else "an unknown tube"
    return f"{tube} at {_kv_text(desc.get('kv'))} ({lo:g}-{hi:g} keV)"


def for_finetuned(base_card: dict | None, cfg, checks: list | None = None) -> dict:
    """card["instrument"] of a fine-tuned model: the base model's (stated or inferred); a model
    trained from scratch takes the tube and kV of the runs it was fitted on."""
    if base_card is not None:
        d = describe_model(base_card)
        d["source"] = f"base model {base_card.get('id')}: {d['source']}"
        return d
    checks = checks or []
    anodes = sorted({c.get("run_tube_anode") for c in checks if c.get("run_tube_anode")})
    kvs = [c["run_kv"] for c in checks if c.get("run_kv") is not None and np.isfinite(c["run_kv"])]
    energy_kev, grid = _window(cfg)
    return {"tube_anode": anodes[0] if len(anodes) == 1 else None, "kv": [min(kvs), max(kvs)] if kvs else None,
            "energy_kev": energy_kev, "grid": grid, "scanner": None,
            "source": "runs of the lab samples (trained from scratch)"}


# --------------------------------------------------------------------------- a run against a model

@dataclass
class RunCheck:
    """A run compared with a model. ``mismatches`` empty: the model was trained for such spectra."""

    core: str
    run: str
    kv: float | None
    anode: str | None                 # stated in the files, else detected (None: not known)
    anode_source: str                 # "file headers" | "spectrum lines" | ""
    detection: dict
    model: dict                       # describe_model()
    model_id: str
    outside_share: float              # counts outside the model's energy window / all counts
    above_share: float
    below_share: float
    run_max_kev: float
    mismatches: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    allowed: bool = False             # the user chose to go on despite mismatches
    kinds: list = field(default_factory=list)   # per mismatch: anode | kv | grid | window
    base_id: str | None = None        # the foundation model a fine-tuned model came from

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def run_text(self) -> str:
        tube = f"{self.anode} tube" if self.anode else "tube not recognised"
        kv = f"{self.kv:g} kV" if self.kv is not None and np.isfinite(self.kv) else "unknown kV"
        return f"core {self.core} run {self.run}: {tube} at {kv}"

    def window_text(self) -> str:
        lo, hi = self.model["energy_kev"]
        return (f"{100 * self.outside_share:.1f} % of the counts outside the model's {lo:g}-{hi:g} keV "
                "window (not seen by the model)")

    def message(self) -> str:
        """'core C run R: Mo tube at 30 kV, 34 % of its counts outside 0-10.24 keV; model M was
        trained for a Rh tube at 10 kV (0-10.24 keV).'"""
        lo, hi = self.model["energy_kev"]
        extra = [m for k, m in zip(self.kinds, self.mismatches) if k == "grid"]
        share = (f", {100 * self.outside_share:.0f} % of its counts outside {lo:g}-{hi:g} keV"
                 if "window" in self.kinds else "")
        return (f"{self.run_text()}{share}{''.join('; ' + m for m in extra)}; model {self.model_name()} "
                f"was trained for {model_text(self.model)}.")

    def model_name(self) -> str:
        """'regressor-tiny-… (fine-tuned from mae-tiny-…)' or the id alone."""
        return f"{self.model_id} (fine-tuned from {self.base_id})" if self.base_id else self.model_id

    def summary(self) -> str:
        return f"{self.run_text()}; model: {model_text(self.model)}; {self.window_text()}"

    def to_dict(self) -> dict:
        return {"result": "ok" if self.ok else ("mismatch allowed" if self.allowed else "mismatch"),
                "core": self.core, "run": self.run, "run_kv": self.kv, "run_tube_anode": self.anode,
                "anode_from": self.anode_source,
                "anode_detected": self.detection.get("anode"),
                "anode_confidence": self.detection.get("confidence"),
                "model_tube_anode": self.model.get("tube_anode"), "model_kv": self.model.get("kv"),
                "model_energy_kev": self.model.get("energy_kev"), "model_instrument_source": self.model.get("source"),
                "counts_outside_window": round(self.outside_share, 5),
                "counts_above_window": round(self.above_share, 5),
                "mismatches": list(self.mismatches), "notes": list(self.notes), "summary": self.summary()}


def stated_anode(meta) -> str | None:
    """The tube anode the files state (Itrax headers: 'Tube anode'); None when none does."""
    import re

    if meta is None or "header" not in getattr(meta, "columns", ()):
        return None
    found = set()
    for h in meta["header"].astype(str).unique()[:50]:
        m = re.search(r'"Tube anode:?"\s*:\s*"\s*([A-Za-z]{1,2})\s*"', h)
        if m:
            found.add(m.group(1).capitalize())
    return found.pop() if len(found) == 1 else None


def window_edges(desc: dict) -> tuple[float, float]:
    """Energy edges (keV) of a model's input window: its first and last channel's outer edges
    (``energy_kev`` names the first channel's centre, as ModelConfig.window_kev does)."""
    lo, hi = desc["energy_kev"]
    half = 0.5 * float((desc.get("grid") or {}).get("gain_kev", 0.0))
    return lo - half, hi - half


def window_shares(total_spectrum, grid, edges) -> tuple[float, float]:
    """(share below, share above) the window ``edges`` (keV) of the counts of a spectrum on ``grid``."""
    from xrfcore.energy import as_grid

    g = as_grid(grid)
    s = np.asarray(total_spectrum, float)
    tot = s.sum()
    if tot <= 0:
        return 0.0, 0.0
    lo, hi = edges
    ch = g.edges()
    # fraction of each channel that lies inside the window (channels straddling an edge count in part)
    inside = np.clip(np.round((np.minimum(ch[1:], hi) - np.maximum(ch[:-1], lo)) / g.gain_kev, 9), 0, 1)
    centre = g.energies()
    below = float((s * (1 - inside) * (centre < (lo + hi) / 2)).sum() / tot)
    above = float((s * (1 - inside) * (centre >= (lo + hi) / 2)).sum() / tot)
    return below, above


def check_run(card: dict, attrs: dict | None, counts, grid, *, meta=None, core: str = "",
              run: str = "") -> RunCheck:
    """Compare a run (its attrs / meta, counts (N, C) or a sum spectrum, grid) with a model card:
    tube anode, kV, energy window. The share of counts outside the model's window is always given."""
    from xrfcore.energy import as_grid

    desc = describe_model(card)
    attrs = attrs or {}
    g = as_grid(grid)
    spec = np.asarray(counts, float)
    spec = spec.sum(axis=0) if spec.ndim == 2 else spec
    kv = attrs.get("kv")
    kvs = meta["kv"].to_numpy(float) if meta is not None and "kv" in getattr(meta, "columns", ()) else None
    if (kv is None or not np.isfinite(kv)) and kvs is not None and np.isfinite(kvs).any():
        kv = float(np.nanmedian(kvs))
    kv = float(kv) if kv is not None and np.isfinite(kv) else None
    det = detect_anode(spec, g, kv)
    stated = stated_anode(meta)
    notes = []
    if stated:
        anode, source = stated, "file headers"
        if det.anode and det.anode != stated and det.confidence >= DETECT_CONFIDENCE:
            notes.append(f"the files state a {stated} tube but the spectrum lines look like {det.anode} "
                         f"(confidence {det.confidence:.2f})")
    elif det.anode and det.confidence >= DETECT_CONFIDENCE:
        anode, source = det.anode, "spectrum lines"
    else:
        anode, source = None, ""
        notes.append("tube anode not recognised from the spectrum lines"
                     + (f" (best guess {det.anode}, confidence {det.confidence:.2f})" if det.anode else ""))
    below, above = window_shares(spec, g, window_edges(desc))
    mism, kinds = [], []

    def add(kind, text):
        mism.append(text)
        kinds.append(kind)
    if desc.get("tube_anode") and anode and anode != desc["tube_anode"]:
        add("anode", f"{anode} tube (model: {desc['tube_anode']})")
    elif not desc.get("tube_anode"):
        notes.append("the model does not state its tube anode")
    mkv = desc.get("kv")
    if mkv and kv is not None and not (mkv[0] - KV_TOLERANCE <= kv <= mkv[1] + KV_TOLERANCE):
        add("kv", f"{kv:g} kV (model: {_kv_text(mkv)})")
    elif mkv and kvs is not None and np.isfinite(kvs).any() and \
            (np.nanmax(kvs) > mkv[1] + KV_TOLERANCE or np.nanmin(kvs) < mkv[0] - KV_TOLERANCE):
        add("kv", f"spectra at {np.nanmin(kvs):g}-{np.nanmax(kvs):g} kV (model: {_kv_text(mkv)})")
    elif kv is None:
        notes.append("the run does not state its tube voltage")
    lo, hi = desc["energy_kev"]
    if g.max_kev < hi - g.gain_kev:
        add("grid", f"its spectra end at {g.max_kev:.2f} keV, the model reads up to {hi:g} keV")
    if below + above > OUTSIDE_SHARE_LIMIT:
        add("window", f"{100 * (below + above):.0f} % of its counts lie outside the model's {lo:g}-{hi:g} keV window")
    return RunCheck(core, run, kv, anode, source, det.to_dict(), desc, card.get("id", "unsaved"),
                    below + above, above, below, float(g.max_kev), mism, notes, kinds=kinds,
                    base_id=(card.get("base_model") or {}).get("id"))


def check_or_refuse(card: dict, rd, *, core: str, run: str, allow: bool = False,
                    action: str = "predict") -> RunCheck:
    """check_run on a store.RunData; raises InstrumentMismatch (naming run and model) on a mismatch
    unless ``allow``."""
    chk = check_run(card, rd.attrs, rd.counts, rd.grid, meta=rd.meta, core=core, run=run)
    if chk.mismatches:
        if not allow:
            raise InstrumentMismatch(f"{chk.message()} Use --allow-instrument-mismatch to {action} anyway.", chk)
        chk.allowed = True
    return chk


# --------------------------------------------------------------------------- choosing a run

class NoMatchingRun(ValueError):
    """A core has no run at the model's kV and none was named. ``reason`` is the message without
    the command-line hint."""

    def __init__(self, reason: str, hint: str = "", model: str = ""):
        super().__init__(f"{reason}; {hint}" if hint else reason)
        self.reason = reason
        self.model = model    # 'mae-tiny-… was trained for a Rh tube at 10 kV (0-10.24 keV)'


def runs_with_kv(project, core: str) -> dict[str, float | None]:
    """{run key: kV} of a core (an open store.Project)."""
    out = {}
    for r in project.runs(core):
        kv = project.run_attrs(core, r).get("kv")
        out[r] = float(kv) if kv is not None and np.isfinite(kv) else None
    return out


def choose_run(runs_kv: dict, card: dict, *, core: str, run: str | None = None,
               allow: bool = False) -> tuple[str, str]:
    """(run key, how it was chosen) for predicting ``core`` with a model. A named run is used as
    it is (check_run judges it). Otherwise the run at the model's kV; with none, refuse (listing the
    runs and their kV) unless ``allow`` and the core has exactly one run."""
    from xrfcore import labels

    if run is not None:
        return run, "named by the user"
    if not runs_kv:
        raise NoMatchingRun(f"core {core} has no runs")
    desc = describe_model(card)
    mkv = desc.get("kv")
    if not mkv:  # the model does not say: the default rule, said out loud
        key = labels.choose_run(list(runs_kv))
        return key, "default run (the model does not state its kV)"
    match = [r for r, kv in runs_kv.items()
             if kv is not None and mkv[0] - KV_TOLERANCE <= kv <= mkv[1] + KV_TOLERANCE]
    if match:
        return labels.choose_run(match), f"the run at the model's {_kv_text(mkv)}"
    if allow and len(runs_kv) == 1:
        return next(iter(runs_kv)), "the core's only run (instrument mismatch allowed)"
    listing = ", ".join(f"{r} ({'?' if kv is None else f'{kv:g}'} kV)" for r, kv in runs_kv.items())
    raise NoMatchingRun(f"core {core} has no run at {_kv_text(mkv)}, the voltage model {card.get('id')} "
                        f"was trained for (runs: {listing})", "choose one with --run RUN",
                        f"{card.get('id')} was trained for {model_text(desc)}")


# --------------------------------------------------------------------------- training data

def training_instrument(project_path, core, run, counts, grid) -> dict:
    """tube_anode, kv_range, scanner of the spectra a model is pretrained on (data_info keys).
    ``core``/``run``: per spectrum; ``counts`` on ``grid``. The anode is detected once per
    (kV, scanner) group of runs, on the sum of its spectra."""
    from xrfcore import store

    core, run = np.asarray(core), np.asarray(run)
    groups: dict = {}
    with store.Project.open(project_path) as p:
        for c, r in sorted(set(zip(core.tolist(), run.tolist()))):
            a = p.run_attrs(c, r)
            kv = a.get("kv")
            kv = float(kv) if kv is not None and np.isfinite(kv) else None
            groups.setdefault((kv, str(a.get("scanner", ""))), []).append((c, r))
    anodes, kvs, scanners = set(), [], set()
    for (kv, scanner), members in groups.items():
        keep = np.zeros(len(core), bool)
        for c, r in members:
            keep |= (core == c) & (run == r)
        X = np.asarray(counts)
        total = np.zeros(X.shape[1])
        for i in range(0, len(X), 8192):  # block sums: no copy of a large archive
            total += keep[i:i + 8192].astype(X.dtype) @ X[i:i + 8192]
        det = detect_anode(total, grid, kv)
        if det.anode and det.confidence >= DETECT_CONFIDENCE:
            anodes.add(det.anode)
        if kv is not None:
            kvs.append(kv)
        if scanner:
            scanners.add(scanner)
    return {"tube_anode": anodes.pop() if len(anodes) == 1 else ("mixed: " + "+".join(sorted(anodes)) if anodes else None),
            "kv_range": [min(kvs), max(kvs)] if kvs else None,
            "scanner": "+".join(sorted(scanners)) or None}


def check_labelled_runs(project_path, samples, card: dict | None, *, run: str | None = None,
                        allow: bool = False) -> list[dict]:
    """Fine-tuning: check the run each labelled core will be matched on (``run``, else
    labels.choose_run, the rule labels.match_project applies) against the base model ``card``.
    Raises NoMatchingRun / InstrumentMismatch as prediction does; returns RunCheck.to_dict() per
    core. Without a base model (scratch) the runs are only described."""
    from xrfcore import labels, store

    out = []
    with store.Project.open(project_path) as p:
        have = set(p.cores())
        for core in sorted(set(map(str, samples["core"])) & have):
            rkv = runs_with_kv(p, core)
            if not rkv:
                continue
            key = run if run is not None else labels.choose_run(list(rkv))
            if card is not None and run is None and len(rkv) > 1:
                # one run of several is taken by labels.choose_run: it must be the model's kV
                # (a core's only run is checked below, and named in the refusal)
                want, _ = choose_run(rkv, card, core=core, allow=allow)
                if want != key:
                    kv = "?" if rkv[key] is None else f"{rkv[key]:g}"
                    desc = describe_model(card)
                    raise NoMatchingRun(f"core {core}: the default run {key} is at {kv} kV but model "
                                        f"{card.get('id')} was trained for {_kv_text(desc['kv'])}",
                                        f"choose the run with --run {want}",
                                        f"{card.get('id')} was trained for {model_text(desc)}")
            if key not in rkv:
                continue  # labels.match_project reports the samples as unmatched
            rd = p.read_run(core, key)
            if card is not None:
                out.append(check_or_refuse(card, rd, core=core, run=key, allow=allow, action="fine-tune").to_dict())
            else:
                kv = rkv[key]
                det = detect_anode(rd.counts, rd.grid, kv)
                anode = stated_anode(rd.meta) or (det.anode if det.confidence >= DETECT_CONFIDENCE else None)
                out.append({"result": "no base model", "core": core, "run": key, "run_kv": kv,
                            "run_tube_anode": anode, "summary": f"core {core} run {key}: "
                            f"{anode or 'unrecognised'} tube at {'?' if kv is None else f'{kv:g}'} kV"})
    return out
