"""`xrfcore suggest`: depths to take the next lab samples at (see xrfcore/sampling.py)."""
from __future__ import annotations

from xrfcore.cli import positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser("suggest", help="suggest K depths (1 cm samples) to send to the lab next",
                       description="Depths whose spectra the lab samples taken so far do not resemble (in the "
                       "model's embedding space), and, with a fine-tuned model, where its intervals are widest or "
                       "the spectrum is out of distribution; never a crack or within the spacing of a sample.")
    p.add_argument("-p", "--project", required=True, help="project file (.h5)")
    p.add_argument("--model", help="foundation or fine-tuned model (path or installed name; default: the "
                   "default foundation model)")
    p.add_argument("--core", action="append", help="core to sample (repeatable; default: all cores)")
    p.add_argument("-k", type=positive_int, required=True, help="how many depths")
    p.add_argument("--labels", help="lab samples CSV already taken (besides those stored in the project)")
    p.add_argument("--spacing-mm", type=positive_float, default=20.0,
                   help="least distance between sample centres, to each other and to samples taken (default 20)")
    p.add_argument("--sample-mm", type=positive_float, default=10.0, help="sample thickness (default 10 mm)")
    p.add_argument("--run", help="run key (default: each core's first 10 kV run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("-o", "--out", help="sampling list CSV (default: print only)")
    p.add_argument("--force", action="store_true", help="replace an existing -o file")
    p.set_defaults(func=cmd_suggest)


def cmd_suggest(args) -> int:
    from xrfcore import sampling
    from xrfcore.cli import check_output, progress_bar

    if args.out:
        check_output(args.out, inputs=(args.project, args.labels, args.model), force=args.force)
    bar = progress_bar("suggest")
    try:
        df = sampling.suggest(args.project, args.model, args.k, cores=args.core, labels_csv=args.labels,
                              run=args.run, spacing_mm=args.spacing_mm, sample_mm=args.sample_mm,
                              seed=args.seed, device=args.device, progress=bar)
    finally:
        bar.close()
    prov = df.attrs["provenance"]
    print(f"{len(df)} depth(s) to sample on {len(prov['cores'])} core(s), model {prov['model_id']} "
          f"({prov['model_kind']}); {prov['existing_samples']} lab sample(s) already taken, "
          f"{prov['excluded_low_counts']} low-count (crack) depth(s) excluded"
          + (" (SIMULATED data)" if prov.get("simulated") else ""))
    if prov.get("note"):
        print(f"  note: {prov['note']}")
    for r in df.itertuples(index=False):
        print(f"  {r.rank:>3}  {r.core}  {r.depth_top_mm:g}-{r.depth_bottom_mm:g} mm  {r.reason}")
    if args.out:
        sampling.write_csv(args.out, df)
        print(f"wrote {args.out}")
    return 0
