"""`xrfcore models` from the model registry (xrfcore/models_registry.py): list the installed models
with their cards, show one card, import a research state dict.

    xrfcore models [--dir D] [--kind mae|regressor] [--json]
    xrfcore models --card NAME|PATH|default        print the model card (markdown, else the JSON)
    xrfcore models --import FILE.pth [--name N] [--kind auto|mae|regressor] [--force]
    xrfcore models --add-ood-reference MODEL -p archive.h5 [--val-cores C ...] [--cores C ...]

To replace the older `models` subcommand in cli_pretrain.py: register this module's ``register``
in xrfcore/cli.py AREAS and drop the `models` parser there (argparse refuses two of one name).
"""
from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("models", help="list installed models with their cards; show a card; import a research model",
                       description="Installed models: the ones shipped with xrfcore, then your own models folder "
                                   "($XRFCORE_HOME/data/models or the user data folder), then --dir folders.")
    add_arguments(p)
    p.set_defaults(func=cmd_models)


def add_arguments(p) -> None:
    p.add_argument("--dir", action="append", default=[], help="also look in this folder (repeatable)")
    p.add_argument("--kind", choices=("mae", "regressor"), help="only foundation (mae) or fine-tuned (regressor) models")
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.add_argument("--card", metavar="MODEL", help="print the card of a model (name, id, path or 'default')")
    p.add_argument("--import", dest="import_", metavar="FILE", help="import a research state dict (.pth/.ckpt; "
                   "read with weights_only=True) into your models folder as safetensors + card")
    p.add_argument("--name", help="name of the imported model (default: the file's stem)")
    p.add_argument("--import-kind", default="auto", choices=("auto", "mae", "regressor"),
                   help="what the imported file holds (auto: regressor when it has an fc head)")
    p.add_argument("--force", action="store_true", help="overwrite an imported model of the same name")
    p.add_argument("--add-ood-reference", metavar="MODEL", help="add what a foundation model knows (its "
                   "reconstruction-error quantiles and embedding statistics, xrfcore/ood.py) to its card, "
                   "from the spectra of a project (-p); the weights are not changed")
    p.add_argument("-p", "--project", help="project file for --add-ood-reference (e.g. the pretraining archive)")
    p.add_argument("--val-cores", nargs="+", help="held-out cores for the reconstruction quantiles "
                   "(default: the card's validation cores found in the project)")
    p.add_argument("--cores", nargs="+", help="other cores to sample for the embedding statistics "
                   "(default: all other cores of the project)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (for --add-ood-reference)")


def describe(e: dict) -> str:
    """Two lines about one listed model (as printed by `xrfcore models`)."""
    if "error" in e:
        return f"{e['name']}: unreadable card ({e['error']})\n    {e['card_path']}"
    cfg = e.get("config", {})
    width = cfg.get("window_channels") or cfg.get("channels", 0) - cfg.get("window_start", 0)
    sim = {True: "SIMULATED data", False: "real data"}.get(e.get("simulated_data"), "data not stated")
    if e.get("simulated_data") == "mixed":
        sim = "partly SIMULATED data"
    val = (e.get("metrics") or {}).get("val_loss")
    extra = f"  val loss {val:.4f}" if isinstance(val, (int, float)) else ""
    card = f"  card {e['card_md']}" if e.get("card_md") else ""
    return (f"{e['name']:28s} {e.get('kind', '?'):9s} {cfg.get('size', '?'):6s} {width:5d} ch  {sim}  "
            f"[{e['source']}]  {e.get('id', '')}{extra}\n    {e['path']}{card}")


def cmd_models(args) -> int:
    from xrfcore import models_registry as reg
    from xrfcore.cli import UserError

    if args.add_ood_reference:
        return _add_ood_reference(args)
    if args.import_:
        try:
            card_path = reg.import_research(args.import_, args.name, kind=args.import_kind, overwrite=args.force)
        except FileExistsError as exc:
            raise UserError(f"{exc} (use --force)") from None
        card = reg.read_card(card_path)
        print(f"imported {args.import_} as {card['name']} ({card['id']}, {card['kind']}): {card_path.with_suffix('.safetensors')}")
        return 0
    if args.card:
        try:
            path = reg.resolve(args.card, kind=args.kind or "mae")
        except FileNotFoundError as exc:
            raise UserError(str(exc)) from None
        text = reg.card_text(path)
        if text is None:
            from xrfcore.model.checkpoint import paths
            text = json.dumps(reg.read_card(paths(path)[1]), indent=2)
        print(text)
        return 0
    found = reg.list_models(args.dir, kind=args.kind)
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    if not found:
        print("no models found in: " + ", ".join(str(d) for d in reg.search_dirs(args.dir)))
        return 0
    default = reg.default_model()
    for e in found:
        first, _, rest = describe(e).partition("\n")
        mark = "  (default)" if default is not None and Path(e["path"]) == default else ""
        print(first + mark + "\n" + rest)
    return 0


def _add_ood_reference(args) -> int:
    from xrfcore import models_registry as reg, ood
    from xrfcore.cli import UserError, progress_bar
    from xrfcore.train.device import resolve_device

    if not args.project:
        raise UserError("--add-ood-reference needs the project whose spectra describe the model (-p)")
    try:
        path = reg.resolve(args.add_ood_reference, kind="mae")
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    bar = progress_bar("OOD reference")
    try:
        card = ood.add_reference(path, args.project, val_cores=args.val_cores, cores=args.cores,
                                 device=str(resolve_device(args.device)), progress=bar)
    finally:
        bar.close()
    r = card["ood_reference"]
    print(f"{card.get('name', card['id'])}: OOD reference added ({r['source']})\n"
          f"  reconstruction limit {r['recon']['limit']:.5f} (median {r['recon']['median']:.5f}, "
          f"{r['recon']['n']} {r['recon']['spectra']} spectra); embedding limit {r['embedding']['limit']:.2f}\n"
          f"  arrays: {ood.sidecar(path)} (sha256 {r['sha256'][:12]}); weights unchanged")
    return 0

