"""`xrfcore finetune | predict | export | bench` (see xrfcore/cli.py)."""
from __future__ import annotations

import math
import runpy
import sys
from pathlib import Path

from xrfcore.cli import nonnegative_float, positive_float, positive_int
from xrfcore.cli_labels import add_lab_options, print_lab


def register(sub) -> None:
    """Add this area's subcommands to the argparse sub-parsers."""
    p = sub.add_parser("finetune", help="fine-tune a pretrained model on lab samples (CaCO3, TOC or any lab column)")
    p.add_argument("-p", "--project", required=True, help="project file (.h5)")
    p.add_argument("--labels", help="lab samples CSV (core, depth interval or mid-depth, CaCO3, TOC, other lab "
                   "values); default: the lab samples stored in the project (`xrfcore labels`)")
    p.add_argument("--model", help="pretrained model: a path (.safetensors/.json or folder) or an installed model's "
                   "name (`xrfcore models`); default: the shipped foundation model; not used by --mode scratch "
                   "unless given")
    p.add_argument("--mode", choices=("head", "full", "scratch"), default="head")
    p.add_argument("--val", choices=("cores", "random"), default="cores",
                   help="validation and interval calibration by whole cores (predicting new cores) or by a "
                   "random split (the lab samples come from the cores being predicted)")
    p.add_argument("--log-targets", metavar="LIST",
                   help="targets modelled as ln(value), intervals a factor either side ('none': every target "
                   "linear); default: TOC log, CaCO3 linear, any other target log when its labels are all > 0 "
                   "and right-skewed (the card says which and why)")
    p.add_argument("--linear-targets", metavar="LIST", help="targets modelled linearly whatever the rule says")
    p.add_argument("--epochs", type=positive_int, default=60, help="epochs for full/scratch (early stopping)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=None, help="learning rate (full: 1e-5 for the encoder, 10x for the head; scratch: 5e-4)")
    p.add_argument("--size", default="tiny", help="architecture for --mode scratch without --model")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", help="run key to match labels against (default: each core's run at the model's kV)")
    p.add_argument("--allow-instrument-mismatch", action="store_true",
                   help="fine-tune even on runs from another tube, kV or energy range than the base model's")
    p.add_argument("--tolerance-mm", type=nonnegative_float, default=5.0, help="nearest-spectrum tolerance for mid-depths")
    add_lab_options(p)
    p.add_argument("--accept-lab-warnings", action="store_true",
                   help="use lab samples that need a check (covering under a fifth of a core, e.g. cm read "
                   "as mm; TOC above 20 wt%%): refused without this")
    p.add_argument("--no-store-labels", action="store_true", help="do not save the lab table into the project")
    p.add_argument("-o", "--out", required=True, help="output folder for the fine-tuned model (written whole: "
                   "a half-written model folder never appears)")
    p.add_argument("--force", action="store_true", help="replace a model already in the -o folder (the old "
                   "one stays intact until the new one is complete)")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("predict", help="predict the model's targets (CaCO3/TOC...) with intervals and OOD flags "
                       "at every depth")
    p.add_argument("model", help="fine-tuned model folder (or .safetensors/.json)")
    p.add_argument("-p", "--project", required=True)
    p.add_argument("--core", action="append", help="core (repeatable; default: all cores)")
    p.add_argument("--run", help="run key (default: each core's run at the model's kV)")
    p.add_argument("--allow-instrument-mismatch", action="store_true",
                   help="predict even a run from another tube, kV or energy range than the model was trained for")
    p.add_argument("--device", default="auto")
    p.add_argument("-o", "--out", help="also export CSV: a file (one core) or a folder (one file per core)")
    p.add_argument("--force", action="store_true", help="replace existing CSV files")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export stored predictions of a core (or of every core) to CSV with a "
                       "provenance header")
    p.add_argument("-p", "--project", required=True)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--core", help="the core to export")
    which.add_argument("--all-cores", action="store_true",
                       help="every core with predictions of the model: -o is a folder (one CSV per core), "
                       "or with --long one CSV")
    p.add_argument("--long", action="store_true",
                   help="with --all-cores: one long CSV (a core column; the header names every core)")
    p.add_argument("--model", help="model id (as listed by `xrfcore info`); with --all-cores the default is "
                   "the model that predicted the most cores")
    p.add_argument("-o", "--out", required=True, help="CSV file to write (a folder for --all-cores without --long)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="run a benchmark (tests/benchmarks/) and print its table")
    p.add_argument("which", choices=("accuracy", "throughput", "ood", "sampling"))
    p.add_argument("--quick", action="store_true", help="small version (minutes)")
    p.add_argument("rest", nargs="*", help="further arguments for the benchmark script")
    p.set_defaults(func=cmd_bench)


def _mapping(items, core):
    from xrfcore.cli import UserError

    out = {}
    for item in items:
        role, sep, col = item.partition("=")
        if not sep:
            raise UserError(f"--map expects ROLE=COLUMN, got {item!r}")
        out[role.strip()] = col
    return out


def cmd_finetune(args) -> int:
    from xrfcore import labels as lb
    from xrfcore.cli import UserError, progress_bar
    from xrfcore.train.finetune import finetune_project

    from xrfcore import targets as tg

    targets = tg.parse_list(args.targets)
    if args.labels is None and (args.map or args.depth_unit or args.core or args.units):
        raise UserError("--map, --depth-unit, --core and --units describe a lab CSV: give it with --labels")
    log_list = tg.parse_list(args.log_targets) or ()
    extra = {"linear_targets": tg.parse_list(args.linear_targets) or ()}
    if [t.lower() for t in log_list] == ["none"]:  # every target linear
        log_list, extra["linear_targets"] = (), "all"
    log_targets = log_list
    if args.lr is not None:
        extra["lr" if args.mode == "full" else "lr_scratch"] = args.lr
    mapping = _mapping(args.map, args.core)
    from xrfcore.outputs import OutputRefused, check_model_folder
    try:  # before anything else: not onto the project, the lab table or the base model; not over a model
        check_model_folder(args.out, force=args.force, inputs=(args.project, args.labels, args.model))
    except OutputRefused as exc:
        raise UserError(str(exc)) from None
    # read first so a bad file fails with its own message before anything heavy starts
    if args.labels is not None:
        from xrfcore.targets import DEFAULT_TARGETS
        lab = lb.read_lab_csv(args.labels, mapping or None, args.depth_unit, core=args.core, units=args.units,
                              targets=None if set(targets or ()) <= set(DEFAULT_TARGETS) else targets)
        names = list(targets or lab.targets)
    else:
        lab = None
        have = lb.stored_targets(args.project)
        if not have:
            raise UserError(f"{args.project}: no lab samples stored; give a lab CSV with --labels, or load one "
                            f"first (xrfcore labels -p {args.project} LAB.csv)")
        names = list(targets or have)
    if extra["linear_targets"] == "all":
        extra["linear_targets"] = tuple(names)
    from xrfcore import models_registry

    model = args.model
    if args.mode != "scratch" or model:
        try:
            model = models_registry.resolve(model or None)
        except FileNotFoundError as exc:
            raise UserError(f"--mode {args.mode} needs a pretrained model: {exc}; or use --mode scratch") from None
        print(f"pretrained model: {model}" + ("" if args.model else " (default foundation model)"))
    bar = progress_bar(f"finetune ({args.mode})")
    try:
        reg, card, match = finetune_project(
            args.project, args.labels, model, args.out, mapping=mapping or None,
            depth_unit=args.depth_unit, run=args.run, tolerance_mm=args.tolerance_mm,
            store_labels=not args.no_store_labels, progress=bar, core=args.core,
            mode=args.mode, targets=tuple(names), log_targets=log_targets, val=args.val, epochs=args.epochs,
            batch_size=args.batch_size, device=args.device, seed=args.seed, size=args.size,
            allow_instrument_mismatch=args.allow_instrument_mismatch, overwrite=args.force,
            units=args.units, accept_lab_warnings=args.accept_lab_warnings, **extra)
    finally:
        bar.close()
    if lab is not None:
        print_lab(lab, match)
        for item in match.confirm:
            print(f"  ACCEPTED (--accept-lab-warnings): {item}")
    else:
        print(f"labels: the project's stored lab samples, {match.summary()}")
    for chk in (card.get("labels") or {}).get("instrument_check") or []:
        print(f"  instrument check: {chk['result']}; {chk['summary']}")
    print(f"model {card['id']} ({card['mode']}, validation: {card['validation']['scheme']})")
    units = tg.units_of(card)
    for t, m in card["metrics"].items():
        c = card["conformal"][t]
        q = c["q"]
        r2 = "n/a" if m["r2"] is None else f"{m['r2']:.3f}"
        rmse = "n/a" if m["rmse"] is None else f"{m['rmse']:.3f}"
        if c.get("method") == "normalised" and c.get("cv_mean_halfwidth_normalised") is not None:
            q, extra = c["cv_mean_halfwidth_normalised"], " on average (wider for unfamiliar spectra)"
        else:
            extra = ""
        if q is None:
            qs = "n/a (too few validation labels)"
        elif c.get("space") == "log":  # modelled as ln(wt%): the interval is a factor either side
            qs = f"x/ {math.exp(q):.2f} (relative){extra}"
        else:
            qs = f"+-{q:.3f}{extra}"
        cov = c.get(f"cv_coverage_{c.get('method', 'plain')}")
        covs = "" if cov is None else f", {100 * cov:.0f}% coverage measured by cross-validation"
        st = card["target_stats"][t]
        unit = f" {units[t]}" if units.get(t) else ""
        print(f"  {t}: R2 {r2}  RMSE {rmse}{unit}  (n={m['n']})  90% interval {qs}{covs}")
        print(f"    modelled {st.get('space', 'linear')}: {st.get('space_reason', '')}")
    for w in card.get("skill_warnings") or []:
        print(f"  WARNING {w}")
    if card.get("simulated_data"):
        print("  (trained on SIMULATED data)")
    print(f"saved to {Path(args.out) / 'model.safetensors'}")
    return 0


def cmd_predict(args) -> int:
    from xrfcore import export, store
    from xrfcore.cli import progress_bar
    from xrfcore.predict import predict_core
    from xrfcore.targets import units_of
    from xrfcore.train.finetune import Predictor

    from xrfcore.cli import UserError, check_output

    with store.Project.open(args.project) as p:
        have = p.cores()
    if not have:
        raise UserError(f"{args.project} has no cores yet: nothing to predict; import spectra first "
                        f"(`xrfcore import FOLDER -p {args.project}`)")
    missing = [c for c in args.core or [] if c not in have]
    if missing:
        raise UserError(f"{args.project}: no core {', '.join(map(repr, missing))} (cores: {', '.join(have)})")
    cores = args.core or have
    out = Path(args.out) if args.out else None
    targets = {}
    if out is not None and not (len(cores) == 1 and out.suffix.lower() == ".csv"):
        check_output(out, inputs=(args.project, args.model), force=True, folder=True, what="output folder")
    pr = Predictor(args.model, device=args.device)
    for core in cores:  # every file checked before the first prediction
        if out is not None:
            path = out if (len(cores) == 1 and out.suffix.lower() == ".csv") else out / f"{core}_{pr.model_id}.csv"
            targets[core] = check_output(path, inputs=(args.project, args.model), force=args.force)
    done: list[str] = []
    args.interrupt_note = ("nothing is half-written; predictions of cores finished before it are stored "
                           "and their CSV files written")
    for core in cores:
        bar = progress_bar(f"predict {core}")
        try:
            df = predict_core(args.project, core, args.model, args.run, progress=bar, predictor=pr,
                              allow_instrument_mismatch=args.allow_instrument_mismatch)
        finally:
            bar.close()
        ood = int(df["ood_flag"].sum())
        line = f"{core}: {len(df)} depths, model {pr.model_id}, {ood} flagged out-of-distribution"
        for t, u in units_of(pr.card).items():
            if t in df and df[t].notna().any():
                line += f"; {t} {df[t].min():.4g}-{df[t].max():.4g} {u}".rstrip()
        print(line)
        chk = df.attrs["provenance"].get("instrument_check") or {}
        if chk:
            print(f"  instrument check: {chk['result']}; {chk['summary']}")
        if out is not None:
            path = targets[core]
            export.write_predictions_csv(path, df, df.attrs["provenance"])
            print(f"  wrote {path}")
        done.append(core)
        args.interrupt_note = (f"nothing is half-written; finished before it: {', '.join(done)} (stored"
                               + (" and written" if out is not None else "") + ")")
    return 0


def cmd_export(args) -> int:
    from xrfcore.cli import UserError, check_output
    from xrfcore.predict import export_core

    if args.long and not args.all_cores:
        raise UserError("--long goes with --all-cores (one core's export is one table already)")
    if args.all_cores:
        return _export_all(args)
    if not args.model:
        raise UserError("--model is required with --core (model ids: `xrfcore info`)")

    check_output(args.out, inputs=(args.project,), force=args.force)
    df = export_core(args.project, args.core, args.model, args.out)
    print(f"wrote {len(df)} rows to {args.out}")
    for reason in df.attrs.get("stale") or []:
        print(f"WARNING: these predictions are STALE ({reason}); the file says so in its header; "
              "run `xrfcore predict` again for current values", file=sys.stderr)
    return 0


def _export_all(args) -> int:
    from xrfcore import cruise
    from xrfcore.cli import UserError

    models = cruise.common_models(args.project)
    if not models:
        raise UserError(f"{args.project}: no stored predictions yet; run `xrfcore predict` first")
    model = args.model or next(iter(models))
    if model not in models:
        raise UserError(f"{args.project}: no core has predictions of model {model!r} (models: {', '.join(models)})")
    res = cruise.export_all(args.project, model, args.out, long=args.long, force=args.force)
    what = f"one long CSV {args.out}" if args.long else f"{len(res['files'])} files in {args.out}"
    print(f"wrote {res['rows']} rows of {len(res['cores'])} cores ({', '.join(res['cores'])}), model {model}, "
          f"as {what}")
    if res["without"]:
        print(f"  cores without predictions of {model} (not exported): {', '.join(res['without'])}")
    for core, reason in res["stale"].items():
        print(f"WARNING: the predictions of {core} are STALE ({reason}); the file says so in its header; "
              "run `xrfcore predict` again for current values", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    from xrfcore.cli import UserError

    root = Path(__file__).resolve().parents[1] / "tests" / "benchmarks"
    script = root / f"bench_{args.which}.py"
    if not script.exists():
        raise UserError(f"benchmark script {script} not found (benchmarks ship with the source tree)")
    argv = [str(script)] + (["--quick"] if args.quick else []) + list(args.rest)
    old = sys.argv
    sys.argv = argv
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        sys.argv = old
    return 0
