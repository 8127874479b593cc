"""`xrfcore pretrain | adapt | reconstruct` (see xrfcore/cli.py).

`xrfcore pretrain` runs unchanged under `torchrun --nproc_per_node=N` (DDP; rank 0 writes)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from xrfcore.cli import fraction, nonnegative_int, positive_float, positive_int


def register(sub) -> None:
    """Add this area's subcommands to the argparse sub-parsers."""
    p = sub.add_parser("pretrain", help="pretrain a masked-autoencoder foundation model on a project's spectra")
    p.add_argument("-p", "--project", required=True, help="project file (.h5)")
    p.add_argument("-o", "--out", required=True, help="model folder (model.safetensors + model.json, "
                                                      "checkpoint.safetensors, metrics.jsonl)")
    p.add_argument("--size", default="tiny", choices=("tiny", "small", "base"))
    p.add_argument("--steps", type=positive_int, help="optimizer steps (wins over --epochs)")
    p.add_argument("--epochs", type=positive_float, help="passes over the data (default 10)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="spectra per step and process")
    p.add_argument("--lr", type=positive_float, default=5e-4, help="peak learning rate (after warm-up)")
    p.add_argument("--warmup-steps", type=nonnegative_int, help="default: 5%% of the steps")
    p.add_argument("--mask-ratio", type=fraction, default=0.5)
    p.add_argument("--transform", default="zscore", choices=("zscore", "log_zscore", "log1p", "global"))
    p.add_argument("--window-channels", type=positive_int, help="read only the first N channels of the grid "
                                                       "(512 = 0-10.24 keV at 20 eV/channel)")
    p.add_argument("--window-kev", nargs=2, type=float, metavar=("LO", "HI"),
                   help="energy window in keV (end rounded up to whole patches), e.g. 0 20.48; default: chosen "
                        "from the data (from 0 keV to the smallest multiple of 8 patches holding 99.5 %% of the "
                        "counts: 0-10.24 keV for 10 kV Avaatech, 0-20.48 keV for a Mo-tube 30 kV Itrax)")
    p.add_argument("--cores", nargs="+", help="cores to use (default: all)")
    p.add_argument("--val-cores", nargs="+", default=[], help="cores held out whole for validation")
    p.add_argument("--kv", type=float, help="only spectra measured at this tube voltage (e.g. 10)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"),
                   help="mixed precision on CUDA (never used on the CPU)")
    p.add_argument("--no-augment", action="store_true",
                   help="train on the spectra as they are, without the default gain/offset/resolution "
                        "augmentation (ranges: xrfcore/train/augment.py, recorded in the card); "
                        "a resumed run keeps its checkpoint's choice")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, help="torch CPU threads per process (default: the usable "
                                                "cores / processes on this node)")
    p.add_argument("--checkpoint-every", type=nonnegative_int, default=0, help="steps (default: each epoch)")
    p.add_argument("--log-every", type=positive_int, default=10, help="steps between metrics rows")
    p.add_argument("--resume", help="continue from a checkpoint.safetensors (or its folder)")
    p.add_argument("--force", action="store_true", help="overwrite a model already in the folder")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("adapt", help="adapt a foundation model to a project: continue masked-spectrum "
                                     "pretraining from it on the project's spectra",
                       description="Continue masked-spectrum pretraining of an installed foundation model "
                                   "(default: the shipped one) on a project's spectra, keeping its architecture, "
                                   "grid and input transform, and its energy window when that takes the spectra "
                                   "(else a window chosen from them: only the position embeddings are "
                                   "re-initialised); reports the reconstruction error on "
                                   "held-out cores (or, with 1-2 cores, held-out depth blocks) before and after.")
    p.add_argument("-p", "--project", required=True, help="project file (.h5)")
    p.add_argument("--model", help="base foundation model: installed name or id, or a path "
                                   "(default: the shipped default model)")
    p.add_argument("-o", "--out", help="model folder; a bare NAME goes into your models folder (listed by "
                                       "`xrfcore models`); default: adapted-<project>-<time> there")
    p.add_argument("--cores", nargs="+", help="cores to use (default: all)")
    p.add_argument("--val-cores", nargs="+", help="cores held out whole for the before/after table (default: "
                                                  "1 in 5 with 3 or more cores, else depth blocks)")
    p.add_argument("--steps", type=positive_int, help="optimizer steps (default: about 3 epochs, 200-5000 on "
                                                      "the CPU, 500-20000 on CUDA)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="spectra per step")
    p.add_argument("--lr", type=positive_float, default=2e-4, help="peak learning rate (lower than from scratch)")
    p.add_argument("--warmup-steps", type=nonnegative_int, help="default: 2%% of the steps, at most 50")
    p.add_argument("--mask-ratio", type=fraction, default=0.5)
    p.add_argument("--kv", type=float, help="only spectra measured at this tube voltage (e.g. 10)")
    p.add_argument("--allow-window-loss", action="store_true",
                   help="with --keep-window or --window-kev: adapt even where the spectra reach past the window "
                        "(those counts are not seen) or end inside it")
    wg = p.add_mutually_exclusive_group()
    wg.add_argument("--keep-window", action="store_true",
                    help="keep the base's energy window even where it cannot take the spectra (default: keep it "
                         "only when it holds 99.5 %% of their counts and they reach its end, else choose one from "
                         "the data; the position embeddings are then re-initialised, every other weight carried)")
    wg.add_argument("--window-kev", nargs=2, type=float, metavar=("LO", "HI"),
                    help="energy window in keV for the adapted model (end rounded up to whole patches)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"))
    p.add_argument("--no-augment", action="store_true", help="no gain/offset/resolution augmentation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: the usable cores)")
    p.add_argument("--force", action="store_true", help="replace a model already in the folder")
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser("reconstruct", help="hide part of a spectrum and let the model fill it in (counts)")
    p.add_argument("model", help="model (folder, .safetensors or .json) or a research .pth/.ckpt")
    p.add_argument("-p", "--project", required=True)
    p.add_argument("--core", required=True)
    p.add_argument("--depth", type=float, required=True, help="depth in mm (the nearest spectrum is used)")
    p.add_argument("--run", help="run key (default: the core's first run)")
    p.add_argument("--mask-ratio", type=fraction, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", help="CSV file: channel, energy, measured, hidden, reconstruction, error")
    p.add_argument("--force", action="store_true", help="replace an existing -o file")
    p.set_defaults(func=cmd_reconstruct)


def _same_folder(resume, out) -> bool:
    """Whether --resume names the -o folder itself (or its checkpoint): extending a run in place."""
    r = Path(resume)
    r = r if r.is_dir() else r.parent
    return r.resolve() == Path(out).resolve()


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _default_threads() -> int:
    """CPU cores this process may use, shared among the processes torchrun started on this node
    (BLAS pools stay pinned to 1 by the CLI; torch's own intra-op pool gets the cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def cmd_pretrain(args) -> int:
    from xrfcore.cli import UserError, progress_bar
    from xrfcore.jobs import Cancelled
    from xrfcore.model.config import ModelConfig
    from xrfcore.train.data import load_project
    from xrfcore.train.pretrain import TrainConfig, pretrain

    from xrfcore.outputs import TRAINING_FILES, OutputRefused, check_model_folder

    out = Path(args.out)
    if (out / "model.json").exists() and not (args.force or args.resume):
        raise UserError(f"{out} already holds a model; choose another folder, --resume or --force")
    try:  # not onto the project or the checkpoint resumed from; a folder of other things needs --force
        check_model_folder(out, force=bool(args.force or args.resume), extra_ok=TRAINING_FILES,
                           inputs=(args.project,) + ((args.resume,) if args.resume and not
                                                     _same_folder(args.resume, out) else ()))
    except OutputRefused as exc:
        raise UserError(str(exc)) from None
    args.interrupt_note = (f"the model files appear in {out} only when complete (a model already there "
                           "is untouched); complete checkpoints written so far are kept there for --resume")
    if args.window_channels and args.window_kev:
        raise UserError("give --window-channels or --window-kev, not both")
    overrides = {"window_channels": args.window_channels} if args.window_channels else {}
    cfg = ModelConfig.preset(args.size, **overrides)
    choose_window = not (args.window_channels or args.resume)
    transform = args.transform
    if args.resume:  # the architecture and transform come from the checkpoint
        from xrfcore.train.pretrain import checkpoint_path
        from xrfcore.train.state import read_meta

        meta = read_meta(checkpoint_path(args.resume))
        cfg = ModelConfig.from_dict(meta["model_config"])
        transform = meta["transform"]["name"]
    main = _rank() == 0
    bar = progress_bar("reading") if main else None
    grids = []
    try:
        data = load_project(args.project, cfg, cores=args.cores, kv=args.kv, progress=bar or (lambda *a: None),
                            on_run=lambda c, r, rd, keep: grids.append(rd.grid))
    finally:
        if bar:
            bar.close()
    wrec = None
    if choose_window:  # the energy window from the data (xrfcore.train.window), or the one asked for
        from xrfcore.train import window as win
        total = data.counts.sum(0, dtype=float)
        try:
            wrec = (win.from_kev(cfg, *args.window_kev, total=total, data_end=win.data_end_kev(grids))
                    if args.window_kev else win.choose(total, cfg, data_end=win.data_end_kev(grids)))
        except ValueError as exc:
            raise UserError(str(exc)) from None
        cfg = win.apply(cfg, wrec)
        if main:
            print(win.text(wrec) + f"; {wrec['how']}", file=sys.stderr)
    train, val = data.split_cores(args.val_cores)
    if len(train) == 0:
        raise UserError("no training spectra left after holding out the validation cores")
    threads = args.threads or _default_threads()
    tc = TrainConfig(steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     warmup_steps=args.warmup_steps, mask_ratio=args.mask_ratio, transform=transform,
                     seed=args.seed, device=args.device, amp=args.amp, threads=threads,
                     log_every=args.log_every, checkpoint_every=args.checkpoint_every,
                     out_dir=str(out), resume=args.resume, augment=not args.no_augment)
    info = {"project": str(Path(args.project).resolve()), "train": train.summary(),
            "val": val.summary() if len(val) else None, "val_cores": list(args.val_cores),
            "kv": args.kv, "simulated": train.summary()["simulated"]}
    if wrec is not None:
        info["window"] = {k: wrec[k] for k in ("energy_kev", "window_channels", "counts_inside", "how")}
    if main:  # tube anode (from the spectra's lines), kV range and scanner, for card["instrument"]
        from xrfcore.instrument import training_instrument
        info.update(training_instrument(args.project, train.core, train.run, train.counts, cfg.grid()))
    if main:
        sim = info["simulated"]
        print(f"pretraining {args.size} on {len(train)} spectra from {len(info['train']['cores'])} cores"
              f"{f', validating on {len(val)} from {len(args.val_cores)}' if len(val) else ''}"
              f"{' (SIMULATED data)' if sim is True else ' (partly simulated data)' if sim == 'mixed' else ''}",
              file=sys.stderr)
    bar = progress_bar("pretrain") if main else None
    try:
        model, card = pretrain(train.counts, cfg, tc, progress=bar or (lambda *a: None),
                               X_val=val.counts if len(val) else None, data_info=info)
    except Cancelled:
        raise UserError("cancelled; the last complete checkpoint (if any) is kept for --resume") from None
    finally:
        if bar:
            bar.close()
    if main:
        m = card["metrics"]
        print(f"model {out / 'model.safetensors'}: train loss {m['train_loss']:.4f}"
              + (f", validation loss {m['val_loss']:.4f}" if m["val_loss"] is not None else ""))
    return 0


def _adapt_out(out):
    """-o: a bare name goes into the user's models folder (registered); a path is used as given."""
    from xrfcore.models_registry import _NAME_OK, user_models_dir

    if out is None:
        return None
    if "/" not in out and "\\" not in out and _NAME_OK.match(out) and not Path(out).exists():
        return user_models_dir(create=True) / out
    return Path(out)


def cmd_adapt(args) -> int:
    from xrfcore.cli import UserError, progress_bar
    from xrfcore.jobs import Cancelled
    from xrfcore.outputs import OutputRefused, check_model_folder
    from xrfcore.train import adapt as ad

    from xrfcore import models_registry

    try:
        base = models_registry.resolve(args.model, kind="mae")
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    out = _adapt_out(args.out) or ad.default_out(args.project)
    try:  # never onto the project or the base model; an existing model needs --force
        check_model_folder(out, force=args.force, inputs=(args.project, base))
    except OutputRefused as exc:
        raise UserError(str(exc)) from None
    args.interrupt_note = f"the adapted model appears in {out} only when complete; the base model is untouched"
    bar = progress_bar("adapt")

    def estimate(e):
        print(f"measured {e['s_per_1000_spectra']:.3g} s per 1,000 spectra on {e['device']}: "
                  f"{e['steps']} steps x {e['batch_size']} spectra, about {e['total_s'] / 60:.1f} min"
                  + (" (fewer --steps is quicker)" if e["total_s"] > 600 and "cpu" in e["device"] else ""), file=sys.stderr)
    try:
        res = ad.adapt(args.project, out, base=base, cores=args.cores, val_cores=args.val_cores,
                       steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
                       mask_ratio=args.mask_ratio, device=args.device, amp=args.amp,
                       augment=not args.no_augment, seed=args.seed, kv=args.kv,
                       allow_window_loss=args.allow_window_loss, threads=args.threads or _default_threads(),
                       window="base" if args.keep_window else tuple(args.window_kev) if args.window_kev else "auto",
                       progress=bar, on_estimate=estimate)
    except Cancelled:
        raise UserError("cancelled; nothing was written and the base model is untouched") from None
    except ad.AdaptRefused as exc:
        raise UserError(str(exc)) from None
    finally:
        bar.close()
    card = res["card"]
    a = card["adaptation"]
    print(f"adapted {card['adapted_from']['name']} on {a['n_spectra']} spectra ({a['steps']} steps, "
          f"{a['device']}, {a['wall_s']:.0f} s); held out: {a['held_out']}")
    w = a["window"]
    print(w["text"])
    if w["changed"]:
        print("re-initialised: " + "; ".join(f"{r['parameter']} {r['shape_before']} -> {r['shape_after']} ({r['how']})"
                                             for r in w["reinitialised"])
              + f"; carried over: {w['carried_over']}; input transform {w['transform']}")
        print("before / after are each model's own input-space loss (different windows: not comparable); "
              f"rel before / after compare, in counts over {a['relative_error']['energy_kev'][0]:g}-"
              f"{a['relative_error']['energy_kev'][1]:g} keV")
    print(ad.table_text(res["table"]))
    print(f"model {res['path']} ({card['id']})")
    return 0


def _load_any(path):
    from xrfcore.model import checkpoint as ck

    if Path(path).suffix in (".pth", ".ckpt", ".pt"):
        return ck.load_research_model(path, kind="mae")
    model, card = ck.load(path)
    if card["kind"] != "mae":
        from xrfcore.cli import UserError

        raise UserError(f"{path}: a {card['kind']} has no decoder; reconstruct needs a pretrained (mae) model")
    return model, card


def cmd_reconstruct(args) -> int:
    import numpy as np

    from xrfcore.cli import UserError
    from xrfcore.cli import check_output
    from xrfcore.reconstruct import reconstruct
    from xrfcore.store import Project

    if args.out:  # before any work: never onto the project or the model, never over a file unasked
        check_output(args.out, inputs=(args.project, args.model), force=args.force)
    model, card = _load_any(args.model)
    with Project.open(args.project) as p:
        if args.core not in p.cores():
            raise UserError(f"{args.project}: no core {args.core!r} (cores: {', '.join(p.cores())})")
        runs = p.runs(args.core)
        run = args.run or (runs[0] if runs else None)
        if run not in runs:
            raise UserError(f"{args.project}: core {args.core} has no run {run!r} (runs: {', '.join(runs)})")
        data = p.read_run(args.core, run)
    if len(data) == 0:
        raise UserError(f"{args.core}/{run} holds no active spectra")
    depth = data.meta["depth_mm"].to_numpy(float)
    i = int(np.nanargmin(np.abs(depth - args.depth)))
    r = reconstruct(model, card, data.counts[i], args.mask_ratio, args.seed, grid=data.grids.row(i))
    scanner = str(data.meta["scanner"].iloc[i]) if "scanner" in data.meta else ""
    simulated = scanner.startswith("simulated") or card.get("simulated_data") is True
    head = [f"xrfcore reconstruction{' (SIMULATED data)' if simulated else ''}",
            f"model: {card.get('id', args.model)} (simulated training data: {card.get('simulated_data')})",
            f"project: {args.project}", f"core: {args.core}", f"run: {run}", f"depth_mm: {depth[i]:g}",
            f"spectrum: {data.meta['source_path'].iloc[i]}", f"scanner: {scanner}",
            f"mask_ratio: {args.mask_ratio}", f"seed: {args.seed}",
            f"loss (model space, hidden patches): {r['loss']:.5f}",
            f"rmse_hidden_counts: {r['rmse_hidden']:.3f}", f"relative_hidden: {r['relative_hidden']:.4f}"]
    if args.out:
        import pandas as pd

        from xrfcore.fileio import atomic_open

        df = pd.DataFrame({"channel": np.arange(len(r["measured"])) + model.cfg.window_start,
                           "energy_kev": np.round(r["energies_kev"], 5), "measured": r["measured"],
                           "hidden": r["mask"].astype(int), "reconstruction": np.round(r["reconstruction"], 3),
                           "error": np.round(r["error"], 3)})
        text = "".join(f"# {line}\n" for line in head) + df.to_csv(index=False)
        with atomic_open(args.out) as f:
            f.write(text)
        print(f"wrote {args.out}")
    else:
        print("\n".join(head))
    return 0
