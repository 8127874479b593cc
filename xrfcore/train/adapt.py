"""Adapt a foundation model to a project: continued masked-spectrum pretraining on the project's own
(unlabelled) spectra, starting from an installed model (default: the shipped one).

``adapt(project, out, base=...) -> dict`` is a Job (progress + cancel token, xrfcore.jobs). It keeps
the base's architecture, input grid and fitted input transform, and its energy window when that takes
the project's spectra; otherwise (e.g. a 0-10.24 keV model and Itrax 30 kV spectra, a third of whose
counts lie above 10.24 keV) the window comes from the data (xrfcore.train.window: the rule, and which
weights are re-initialised: only the fixed position embeddings; per-channel transform statistics are
refitted), and the CLI, the card (``adaptation.window``) and the app say so. It trains every weight
with a lower learning rate than pretraining from scratch (2e-4, short warm-up), with the same
gain/offset/resolution augmentation (on by default); and reports the masked-reconstruction loss on
held-out spectra before (the base model) and after, in the metric of a card's ``val_loss``
(``train.pretrain.evaluate``: fixed masks). Held out: whole cores when the project has 3 or more
(``val_cores``, else 1 in 5 chosen with the seed), else depth blocks (each core cut into 10 blocks of
equal depth, blocks 3 and 8 held out: 20 %, contiguous, away from the core ends).

The result is a model folder (model.safetensors + model.json + model.md + OOD arrays +
metrics.jsonl) written in one rename (nothing half-written on error or cancel); by default in the
user's models folder, so it is listed and resolvable by name like any installed model. Its card
records the lineage under ``adapted_from`` / ``adaptation``. With ``window="base"`` a base whose window
cannot take the project's spectra (spectra that end inside it, or more than 5 % of their counts
outside it) is refused with the reason. Besides the loss in each model's own input space (which
differs between windows), the table gives the median relative error in counts on the hidden channels
of the energy range both windows read (``window.relative_error``): the one number that compares.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import time
from pathlib import Path

import numpy as np

from xrfcore.jobs import CancelToken, ProgressFn, no_progress

ADAPT_LR = 2e-4
EPOCHS = 3
STEP_LIMITS = {"cpu": (200, 5000), "cuda": (500, 20000)}
AUTO_VAL_EVERY = 5          # with >= 3 cores: 1 core in 5 held out (at least one)
BLOCKS, HOLDOUT_BLOCKS = 10, (2, 7)   # 1-2 cores: blocks 3 and 8 of 10 (0-based 2, 7) held out
EVAL_BATCH = 256
METRIC = ("masked reconstruction loss in the model's input space (xrfcore.train.pretrain.evaluate: "
          "fixed masks, the card's val_loss metric); lower is better")
REL_METRIC = ("median over spectra of sum |reconstruction - measured| / sum measured, in counts, over the hidden "
              "channels in the energy range both the base's and the adapted model's windows read (the same "
              "patches hidden for both: xrfcore.train.window.relative_error)")


class AdaptRefused(ValueError):
    """The base model cannot take the project's spectra (window / grid), or nothing can be held out."""


def default_steps(n_train: int, batch_size: int, device_type: str) -> int:
    """About EPOCHS passes over the data, clamped to the device's limits (STEP_LIMITS)."""
    lo, hi = STEP_LIMITS.get(device_type, STEP_LIMITS["cpu"])
    return int(min(hi, max(lo, math.ceil(EPOCHS * n_train / max(1, batch_size)))))


# wall seconds per 1,000 spectra drawn, tiny model, 2-core CPU (measured by test_adapt's CLI run on a
# busy machine: 14.8 s, 9 CPU-s); a GPU is far faster: the estimate is for the CPU only
CPU_S_PER_1000_SPECTRA = 15.0
HOLDOUT_SHARE = 0.2   # about 1 core in 5, or 2 depth blocks in 10, is held out


def plan(n_spectra: int, device_type: str = "cpu", batch_size: int = 128, steps: int | None = None) -> dict:
    """Steps chosen for a project of ``n_spectra`` and, on the CPU, an estimate of the time:
    {"steps", "batch_size", "spectra_drawn", "cpu_minutes"} (cpu_minutes None on a GPU)."""
    n_train = max(1, int(round(n_spectra * (1 - HOLDOUT_SHARE))))
    bs = max(1, min(int(batch_size), n_train))
    n = int(steps) if steps else default_steps(n_train, bs, device_type)
    drawn = n * bs
    minutes = drawn / 1000 * CPU_S_PER_1000_SPECTRA / 60 if device_type == "cpu" else None
    return {"steps": n, "batch_size": bs, "spectra_drawn": drawn, "cpu_minutes": minutes}


def model_name(path, card: dict) -> str:
    p = Path(path)
    p = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return card.get("name") or (p.parent.name if p.name == "model" else p.name)


def default_out(project) -> Path:
    """A fresh folder in the user's models folder: adapted-<project>-<time>."""
    from xrfcore.models_registry import user_models_dir
    from xrfcore.outputs import fresh_folder

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return fresh_folder(user_models_dir(create=True), f"adapted-{Path(project).stem}-{stamp}")


# ----------------------------------------------------------------------------- held-out spectra
def holdout(data, val_cores=None, seed: int = 0) -> tuple[np.ndarray, list[dict], str]:
    """(held-out mask, groups, kind). ``groups``: one per held-out core (cores) or per core's block
    set (depth blocks): {"name", "core", "mask", "what"}. ``kind``: "cores" | "depth blocks"."""
    cores = sorted(set(map(str, data.core.tolist())))
    core = data.core.astype(str)
    if val_cores:
        unknown = sorted(set(val_cores) - set(cores))
        if unknown:
            raise AdaptRefused(f"held-out cores not in the data: {', '.join(unknown)} (cores: {', '.join(cores)})")
        if set(val_cores) >= set(cores):
            raise AdaptRefused("every core is held out; leave at least one core to adapt on")
        chosen = sorted(set(val_cores))
    elif len(cores) >= 3:
        k = max(1, len(cores) // AUTO_VAL_EVERY)
        chosen = sorted(np.random.default_rng(seed).choice(cores, k, replace=False).tolist())
    else:
        chosen = None
    if chosen is not None:
        groups = [{"name": c, "core": c, "mask": core == c, "what": "whole core"} for c in chosen]
        return np.isin(core, chosen), groups, "cores"
    mask = np.zeros(len(core), bool)
    groups = []
    for c in cores:
        sel = core == c
        d = data.depth_mm[sel].astype(float)
        ok = np.isfinite(d)
        if ok.sum() < 2 * BLOCKS:
            raise AdaptRefused(f"core {c} has {int(ok.sum())} spectra with a depth; holding out depth blocks "
                               f"needs at least {2 * BLOCKS} (or adapt on 3 or more cores, held out whole)")
        lo, hi = float(d[ok].min()), float(d[ok].max())
        span = hi - lo if hi > lo else 1.0
        block = np.full(len(d), -1)
        block[ok] = np.clip(((d[ok] - lo) / span * BLOCKS).astype(int), 0, BLOCKS - 1)
        held = np.isin(block, HOLDOUT_BLOCKS)
        idx = np.flatnonzero(sel)
        mask[idx[held]] = True
        ranges = ", ".join(f"{lo + b * span / BLOCKS:.0f}-{lo + (b + 1) * span / BLOCKS:.0f} mm"
                           for b in HOLDOUT_BLOCKS)
        m = np.zeros(len(core), bool)
        m[idx[held]] = True
        groups.append({"name": f"{c} (depth blocks {', '.join(str(b + 1) for b in HOLDOUT_BLOCKS)} of {BLOCKS})",
                       "core": c, "mask": m, "what": f"depth blocks {ranges}"})
    return mask, groups, "depth blocks"


# ----------------------------------------------------------------------------- the job
def adapt(project, out=None, *, base=None, cores=None, val_cores=None, steps: int | None = None,
          batch_size: int = 128, lr: float = ADAPT_LR, warmup_steps: int | None = None,
          mask_ratio: float = 0.5, device: str = "auto", amp: str = "auto", augment=True, seed: int = 0,
          kv: float | None = None, allow_window_loss: bool = False, window="auto", threads: int | None = None,
          log_every: int | None = None, progress: ProgressFn = no_progress, token: CancelToken | None = None,
          on_metrics=None, on_estimate=None) -> dict:
    """Continue masked-spectrum pretraining of ``base`` (path, installed name/id, None = the shipped
    default) on ``project``'s spectra; write the adapted model into ``out`` (default: a fresh folder
    in the user's models folder). Returns {"path", "out", "card", "table", "estimate"}.

    ``on_metrics(row)``: each logged training row (live loss); ``on_estimate(dict)``: the measured
    speed once the first steps ran (s_per_1000_spectra, total_s). ``window``: "auto" (the base's
    window if it takes the spectra, else one chosen from them: xrfcore.train.window), "base" (keep
    it; refuse spectra it cannot take unless ``allow_window_loss``) or (lo, hi) keV.
    Raises ``Cancelled`` (nothing written), ``AdaptRefused`` (the base cannot take these spectra;
    nothing to hold out)."""
    import torch

    from xrfcore import models_registry, ood
    from xrfcore.fileio import atomic_dir, atomic_open
    from xrfcore.instrument import check_run, describe_model, training_instrument
    from xrfcore.model import checkpoint
    from xrfcore.model.transforms import from_dict as transform_from_dict, window as window_counts
    from xrfcore.train.augment import AugmentConfig
    from xrfcore.train.data import load_project
    from xrfcore.train.device import amp_dtype, describe, resolve_device
    from xrfcore.train import window as win
    from xrfcore.train.pretrain import MODEL_NAME, METRICS_NAME, TrainConfig, evaluate, pretrain

    t0 = time.perf_counter()
    if threads:
        torch.set_num_threads(int(threads))
    dev = resolve_device(device)
    dtype = amp_dtype(dev, amp)
    base_path = models_registry.resolve(base, kind="mae")
    base_model, base_card = checkpoint.load(base_path)
    if base_card.get("kind") != "mae":
        raise AdaptRefused(f"{base_path}: a {base_card.get('kind')} model has no decoder; adapt a foundation "
                           "(mae) model")
    cfg = base_model.cfg
    out = Path(out) if out is not None else default_out(project)
    base_desc = describe_model(base_card)

    # -- data, checked run by run against the base's window ------------------------------------
    checks, refusals = [], []

    def on_run(core, run, rd, keep):
        if token is not None:
            token.raise_if_cancelled()
        chk = check_run(base_card, rd.attrs, rd.counts[keep], rd.grid, meta=rd.meta[keep], core=core, run=run)
        checks.append(chk)
        bad = [m for k, m in zip(chk.kinds, chk.mismatches) if k in ("grid", "window")]
        if bad:
            refusals.append(f"{core}/{run}: " + "; ".join(bad))

    data = load_project(project, cfg, cores=cores, kv=kv, progress=progress, token=token, on_run=on_run)
    lo_kev, hi_kev = base_desc["energy_kev"]
    total = np.zeros(cfg.channels)
    for i in range(0, len(data), 8192):
        total += data.counts[i:i + 8192].sum(0, dtype=np.float64)
    data_end = min((c.run_max_kev for c in checks), default=None)
    try:
        wrec = win.for_adaptation(cfg, total, data_end, window=window)
    except ValueError as exc:
        raise AdaptRefused(str(exc)) from None
    if wrec.get("beyond_data") and not allow_window_loss:
        raise AdaptRefused(f"window {wrec['energy_kev'][0]:g}-{wrec['energy_kev'][1]:g} keV: {wrec['beyond_data']}; "
                           "ask for a window inside the spectra or allow it (--allow-window-loss)")
    if refusals and not wrec["changed"] and not allow_window_loss:
        raise AdaptRefused(
            f"base model {model_name(base_path, base_card)} reads {lo_kev:g}-{hi_kev:g} keV "
            f"({cfg.input_channels} channels), which cannot take these spectra: " + " | ".join(refusals[:5])
            + (f" (and {len(refusals) - 5} more runs)" if len(refusals) > 5 else "")
            + ". The base's window was kept (--keep-window / a window asked for); without it adapt chooses the "
              "window from the data; or choose runs that fit (--kv, --cores) or allow the loss (--allow-window-loss)")
    new_cfg = win.apply(cfg, wrec) if wrec["changed"] else cfg
    is_val, groups, kind = holdout(data, val_cores, seed)
    train, val = data.select(~is_val), data.select(is_val)
    if len(train) == 0 or len(val) == 0:
        raise AdaptRefused("nothing left to adapt on or to hold out; add spectra or choose other cores")
    bs = max(1, min(int(batch_size), len(train)))
    n_steps = int(steps) if steps else default_steps(len(train), bs, dev.type)
    warm = warmup_steps if warmup_steps is not None else max(1, min(50, n_steps // 50))

    # -- before: the base model on the held-out spectra -----------------------------------------
    transform = transform_from_dict(base_card["transform"])
    new_transform, transform_note = dict(base_card["transform"]), "kept (the base's window)"
    if wrec["changed"]:
        new_transform, transform_note = win.refit_transform(base_card["transform"], window_counts(train.counts, new_cfg))
    common = win.common_range(cfg, new_cfg)
    all_groups = groups + [{"name": "all held-out", "mask": is_val}]

    def losses(model, tf, mcfg, mcard) -> tuple[dict, dict]:
        res, rel = {}, {}
        for g in all_groups:
            if token is not None:
                token.raise_if_cancelled()
            Z = torch.from_numpy(tf.apply(window_counts(data.counts[g["mask"]], mcfg))).to(dev)
            res[g["name"]] = evaluate(model, Z, mask_ratio, EVAL_BATCH, dtype)
            r = win.relative_error(model, mcard, data.counts[g["mask"]], *common, mask_ratio=mask_ratio, seed=seed)
            rel[g["name"]] = float(np.median(r)) if len(r) else None
        return res, rel

    progress(0, n_steps, "reconstruction error of the base model on the held-out spectra")
    before, rel_before = losses(base_model.to(dev), transform, cfg, base_card)
    base_model.cpu()

    # -- train ------------------------------------------------------------------------------------
    aug = base_card.get("training", {}).get("config", {}).get("augment") if augment else None
    aug = (aug or AugmentConfig()) if augment else None
    tc = TrainConfig(steps=n_steps, batch_size=bs, lr=lr, min_lr=lr / 100, warmup_steps=warm,
                     mask_ratio=mask_ratio, transform=str(base_card["transform"].get("name", "zscore")),
                     seed=seed, device=str(dev), amp=amp, log_every=log_every or max(1, n_steps // 100),
                     augment=aug)
    sim = train.summary()["simulated"]
    base_sim = base_card.get("simulated_data")
    both_sim = True if (sim is True and base_sim is True) else False if (sim is False and base_sim is False) \
        else "mixed"
    info = {"project": str(Path(project).resolve()), "train": train.summary(), "val": val.summary(),
            "val_cores": [g["core"] for g in groups] if kind == "cores" else [], "held_out": kind,
            "kv": kv, "simulated": sim}
    info.update(training_instrument(project, train.core, train.run, train.counts, cfg.grid()))
    rows, est = [], {}
    t_first = {}

    def prog(done, total, message=""):
        if done == 1:
            t_first["t"], t_first["cpu"] = time.perf_counter(), time.process_time()
        k = min(10, total - 1)
        if k > 0 and done == 1 + k and "t" in t_first and not est:
            per = (time.perf_counter() - t_first["t"]) / (k * bs) * 1000
            cpu = (time.process_time() - t_first["cpu"]) / (k * bs) * 1000   # CPU seconds, all threads
            est.update(s_per_1000_spectra=round(per, 3), cpu_s_per_1000_spectra=round(cpu, 3), steps=total, batch_size=bs, device=describe(dev),
                       total_s=round(per * total * bs / 1000, 1), measured_on_steps=k)
            if on_estimate is not None:
                on_estimate(dict(est))
        progress(done, total, message)

    def metrics(row):
        rows.append(row)
        if on_metrics is not None:
            on_metrics(row)

    init, reinit = win.rewindow_state(checkpoint.state_tensors(base_model), cfg, new_cfg)
    del base_model
    model, card = pretrain(train.counts, new_cfg, tc, prog, token, X_val=val.counts, data_info=info,
                           on_metrics=metrics, init_state=init, init_transform=new_transform)
    after, rel_after = losses(model, transform_from_dict(new_transform), new_cfg, card)
    same = not wrec["changed"]
    table = [{"held_out": name, "what": next((g["what"] for g in groups if g["name"] == name), "all of the above"),
              "n_spectra": int((next((g["mask"] for g in groups if g["name"] == name), is_val)).sum()),
              "before": before[name], "after": after[name],
              "change_pct": round(100 * (after[name] - before[name]) / before[name], 2) if before[name] and same else None,
              "rel_before": rel_before[name], "rel_after": rel_after[name],
              "rel_change_pct": round(100 * (rel_after[name] - rel_before[name]) / rel_before[name], 2)
              if rel_before[name] else None}
             for name in before]
    wall = time.perf_counter() - t0

    # -- card: the base's lineage, what it was adapted on, before/after --------------------------
    card["name"] = out.name
    card["simulated_data"] = both_sim
    card["adapted_from"] = {"id": base_card.get("id"), "name": model_name(base_path, base_card),
                            "path": str(base_path), "weights_sha256": base_card.get("weights_sha256"),
                            "simulated_data": base_sim, "instrument": base_card.get("instrument"),
                            "val_loss": (base_card.get("metrics") or {}).get("val_loss")}
    card["adaptation"] = {
        "task": "continued masked spectrum modeling from the base model (same architecture and grid; "
                + ("same window and input transform)" if same else
                   "energy window changed: position embeddings re-initialised, every other weight carried over)"),
        "window": {"changed": not same, "reason": wrec["reason"], "how": wrec["how"], "rule": win.RULE,
                   "base_energy_kev": [round(v, 4) for v in cfg.window_kev()], "base_patches": cfg.num_patches,
                   "energy_kev": wrec["energy_kev"], "window_start": wrec["window_start"],
                   "window_channels": wrec["window_channels"], "patches": new_cfg.num_patches,
                   "counts_inside": wrec["counts_inside"], "data_end_kev": data_end,
                   "reinitialised": reinit, "carried_over": "every other weight, bit for bit" if reinit else "every weight",
                   "transform": transform_note, "text": win.text(wrec, cfg)},
        "relative_error": {"metric": REL_METRIC, "energy_kev": [round(v, 4) for v in common]},
        "project": str(Path(project).resolve()), "data_sha256": train.sha256(), "held_out_sha256": val.sha256(),
        "cores": train.summary()["cores"], "n_spectra": len(train), "held_out": kind,
        "held_out_groups": [{"name": g["name"], "core": g["core"], "what": g["what"],
                             "n_spectra": int(g["mask"].sum())} for g in groups],
        "steps": n_steps, "steps_chosen": "given" if steps else
        f"about {EPOCHS} epochs, {STEP_LIMITS.get(dev.type, STEP_LIMITS['cpu'])[0]}-"
        f"{STEP_LIMITS.get(dev.type, STEP_LIMITS['cpu'])[1]} steps on {dev.type}",
        "batch_size": bs, "lr": lr, "warmup_steps": warm, "augment": tc.augment.to_dict() if tc.augment else None,
        "device": describe(dev), "wall_s": round(wall, 2), "speed": est or None,
        "metric": METRIC, "mask_ratio": mask_ratio, "before_after": table,
        "window_loss_allowed": bool(refusals) and allow_window_loss and same, "window_notes": refusals,
        "instrument_notes": sorted({f"{c.core}/{c.run}: " + "; ".join(c.mismatches)
                                    for c in checks if c.mismatches and c.run}),
    }
    card["metrics"]["val_loss_before"] = before["all held-out"]
    card["metrics"]["val_loss"] = after["all held-out"]

    # -- write: one folder, in one rename ---------------------------------------------------------
    if token is not None:
        token.raise_if_cancelled()
    from xrfcore.outputs import model_keep

    ref = {k: v for k, v in card["ood_reference"].items() if k not in ("file", "sha256")}
    with atomic_dir(out, keep=model_keep) as stage:
        ood.attach(card, ref, model.ood_arrays, stage / MODEL_NAME)
        card_path = checkpoint.save(stage / MODEL_NAME, model, card)
        saved = json.loads(card_path.read_text(encoding="utf-8"))
        # replaced, never written through: a carried-over file is a hard link to the old folder's
        with atomic_open(stage / f"{MODEL_NAME}.md") as f:
            f.write(markdown(saved))
        with atomic_open(stage / METRICS_NAME) as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return {"path": str(out / MODEL_NAME), "out": str(out), "card": saved, "table": table, "estimate": est,
            "metrics": rows}


# ----------------------------------------------------------------------------- reporting
def table_text(table: list[dict]) -> str:
    """The before/after table as aligned text (CLI, model.md)."""
    w = max([len("held out")] + [len(r["held_out"]) for r in table])
    lines = [f"{'held out':{w}s}  {'spectra':>7s}  {'before':>9s}  {'after':>9s}  {'change':>7s}  "
             f"{'rel before':>10s}  {'rel after':>9s}  {'change':>7s}"]

    def pct(v):
        return f"{v:+.1f} %" if v is not None else "-"

    def num(v, n):
        return f"{v:{n}.4f}" if v is not None else f"{'-':>{n}s}"
    for r in table:
        lines.append(f"{r['held_out']:{w}s}  {r['n_spectra']:7d}  {r['before']:9.5f}  {r['after']:9.5f}  "
                     f"{pct(r.get('change_pct')):>7s}  {num(r.get('rel_before'), 10)}  {num(r.get('rel_after'), 9)}  "
                     f"{pct(r.get('rel_change_pct')):>7s}")
    return "\n".join(lines)


def markdown(card: dict) -> str:
    a, b = card["adaptation"], card["adapted_from"]
    sim = {True: "SIMULATED", False: "real", "mixed": "partly SIMULATED"}.get(card.get("simulated_data"), "not stated")
    speed = a.get("speed") or {}
    return "\n".join([
        f"# {card.get('name')} (adapted foundation model)", "",
        f"Adapted from **{b['name']}** (`{b['id']}`, weights sha256 `{str(b['weights_sha256'])[:16]}...`) by "
        f"continued masked-spectrum pretraining on {a['n_spectra']} spectra of cores {', '.join(a['cores'])} "
        f"of `{a['project']}` (data sha256 `{a['data_sha256'][:16]}...`). Training data: {sim}.", "",
        f"- steps: {a['steps']} ({a['steps_chosen']}), batch {a['batch_size']}, lr {a['lr']:g}, "
        f"augmentation {'on' if a['augment'] else 'off'}",
        f"- device: {a['device']}; wall time {a['wall_s']:.0f} s"
        + (f"; {speed['s_per_1000_spectra']:.3g} s per 1,000 spectra" if speed else ""),
        f"- grid and architecture: those of the base ({card['config'].get('size')}); "
        + (f"{a['window']['text']}; re-initialised: {', '.join(r['parameter'] for r in a['window']['reinitialised'])}"
           f"; input transform {a['window']['transform']}" if (a.get("window") or {}).get("changed") else
           f"window ({card['instrument'].get('energy_kev')} keV) and input transform: the base's"), "",
        f"Held out ({a['held_out']}); before / after: {a['metric']}"
        + ("; with another window before and after these are in different input spaces (no change given)"
           if (a.get("window") or {}).get("changed") else "")
        + (f". rel before / after: {a['relative_error']['metric']}, "
           f"{a['relative_error']['energy_kev'][0]:g}-{a['relative_error']['energy_kev'][1]:g} keV"
           if a.get("relative_error") else "") + ":", "", "```", table_text(a["before_after"]), "```", ""])
