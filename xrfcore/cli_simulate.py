"""Simulator subcommands of `xrfcore`: simulate, simulate-archive (see xrfcore/cli.py)."""
from __future__ import annotations

import time

from xrfcore.cli import UserError, positive_float, positive_int, progress_bar


def register(sub) -> None:
    """Add this area's subcommands to the argparse sub-parsers."""
    p = sub.add_parser("simulate", help="write SIMULATED Avaatech core series (raw .spe + lab samples + truth)",
                       description="Simulate Avaatech 10 kV core series with known CaCO3/TOC (physics model; "
                                   "every file is labelled SIMULATED). Same seed, same bytes.")
    p.add_argument("-o", "--output", required=True, metavar="FOLDER")
    p.add_argument("--cores", type=positive_int, default=1, metavar="N", help="number of core series (default 1)")
    p.add_argument("--length-m", type=positive_float, default=3.0, metavar="L", help="core length in m (default 3)")
    p.add_argument("--step-mm", type=positive_float, default=10.0, metavar="S", help="scan step in mm (default 10)")
    p.add_argument("--head", default="avaatech-a", metavar="NAME",
                   help="scanner head: avaatech-a (default), avaatech-b (a replaced head), avaatech-c")
    p.add_argument("--gain", type=positive_float, metavar="KEV_PER_CH",
                   help="override the head's gain, e.g. 0.0205 (real heads: about 0.0198-0.0205)")
    p.add_argument("--offset-ch", type=float, metavar="N",
                   help="override the head's zero offset, in channels: channel i is centred at gain*(i+N) keV, "
                        "so peaks sit N channels lower (the files state no calibration, as real ones)")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--overwrite", action="store_true", help="replace existing core folders of the same name")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("simulate-archive", help="simulate spectra of K scanner heads and import them into a project",
                       description="Simulate N spectra from K heads (named, then domain-randomised) as raw Avaatech "
                                   "folders (SIMULATED, no energy calibration in the files, as real ones) and import "
                                   "them into an HDF5 project for pretraining, in one transaction.")
    p.add_argument("-p", "--project", required=True, metavar="PROJECT.h5")
    p.add_argument("--spectra", type=positive_int, required=True, metavar="N")
    p.add_argument("--heads", type=positive_int, default=3, metavar="K")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--keep-raw", metavar="FOLDER",
                   help="keep the raw folders (with truth CSVs) here instead of a temp folder (~20 kB/spectrum)")
    p.set_defaults(func=cmd_archive)


def cmd_simulate(args) -> int:
    from xrfcore.simulate.heads import HEADS
    from xrfcore.simulate.writers import simulate_folder

    if args.head not in HEADS:
        raise UserError(f"unknown head {args.head!r}; choose one of {', '.join(sorted(HEADS))}")
    bar = progress_bar("simulate")
    t0 = time.perf_counter()
    try:
        folders = simulate_folder(args.output, cores=args.cores, length_m=args.length_m, step_mm=args.step_mm,
                                  head=args.head, seed=args.seed, overwrite=args.overwrite, progress=bar,
                                  gain=args.gain, offset_ch=args.offset_ch)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    finally:
        bar.close()
    print(f"Wrote {len(folders)} SIMULATED core series to {args.output} in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f.name for f in folders))
    return 0


def cmd_archive(args) -> int:
    from xrfcore.simulate.archive import simulate_archive

    bar = progress_bar("simulate-archive")
    t0 = time.perf_counter()
    try:
        out = simulate_archive(args.project, args.spectra, args.heads, args.seed, progress=bar,
                               keep_raw=args.keep_raw)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    finally:
        bar.close()
    skipped = out["import"]["skipped"]
    print(f"Imported {out['spectra']} SIMULATED spectra ({out['cores']} cores, heads {', '.join(out['heads'])}) "
          f"into {args.project} in {time.perf_counter() - t0:.1f} s (writing {out['write_s']:.1f} s, "
          f"import {out['import_s']:.1f} s)" + (f"; {skipped} files were already in the project" if skipped else ""))
    return 0
