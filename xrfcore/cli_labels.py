"""`xrfcore labels`: load a lab table into a project (its targets chosen) or show the stored ones."""
from __future__ import annotations

from pathlib import Path

from xrfcore.cli import nonnegative_float


def register(sub) -> None:
    p = sub.add_parser("labels", help="load a lab-samples CSV into a project (choose its target columns), "
                       "or show the stored lab samples' targets")
    p.add_argument("-p", "--project", required=True, help="project file (.h5)")
    p.add_argument("labels", nargs="?", help="lab samples CSV (core, depth interval or mid-depth, lab values); "
                   "without it: show the stored targets")
    add_lab_options(p)
    p.add_argument("--run", help="run key to match labels against (default: each core's first 10 kV run)")
    p.add_argument("--tolerance-mm", type=nonnegative_float, default=5.0, help="nearest-spectrum tolerance for mid-depths")
    p.add_argument("--accept-lab-warnings", action="store_true",
                   help="store lab samples that need a check (covering under a fifth of a core, TOC above 20 wt%%)")
    p.set_defaults(func=cmd_labels)


def add_lab_options(p) -> None:
    """The options that say how to read a lab table (shared with `xrfcore finetune`)."""
    p.add_argument("--targets", metavar="LIST",
                   help="comma-separated target columns: any numeric lab column, by header ('Fe (mg/kg)') or "
                   "by name ('Fe'); default: CaCO3 and/or TOC (finetune without --labels: the stored targets)")
    p.add_argument("--depth-unit", choices=("mm", "cm", "m"), help="unit of the depth columns (default: from names)")
    p.add_argument("--map", action="append", default=[], metavar="ROLE=COLUMN",
                   help="column mapping, e.g. --map top=Top --map CaCO3='Carb %%' (roles: core top bottom mid CaCO3 TOC sample)")
    p.add_argument("--core", help="core name when the lab file has no core column")
    p.add_argument("--units", metavar="UNIT",
                   help="unit of the lab values when the column headers do not state it: wt%% or fraction "
                   "(CaCO3 / TOC), or per target, e.g. CaCO3=wt%%,TOC=fraction,Fe=mg/kg")


def mapping(items) -> dict:
    from xrfcore.cli import UserError

    out = {}
    for item in items:
        role, sep, col = item.partition("=")
        if not sep:
            raise UserError(f"--map expects ROLE=COLUMN, got {item!r}")
        out[role.strip()] = col
    return out


def print_lab(lab, match) -> None:
    """What was read and matched: targets with units, notes, coverage, the rows not used."""
    print(f"labels: {Path(lab.path).name}: {len(lab.samples)} samples read, {match.summary()}")
    print("  targets: " + ", ".join(f"{t} ({u or 'no unit'}; column {lab.target_columns.get(t, t)!r}, "
                                    f"{int(lab.samples[t].notna().sum())} values)"
                                    for t, u in lab.target_units.items()))
    for note in lab.notes:
        print(f"  note: {note}")
    for line in match.coverage_text().splitlines():
        print(f"  coverage: {line}")
    if len(match.report):
        rep = match.report
        print(f"  {len(rep)} row(s) not used or flagged (file line, core, reason):")
        for r in rep.head(15).itertuples(index=False):
            print(f"    line {r.source_row}  {r.core}  [{r.status}] {r.reason}")
        if len(rep) > 15:
            print(f"    ... and {len(rep) - 15} more")


def cmd_labels(args) -> int:
    from xrfcore import labels as lb
    from xrfcore.cli import UserError

    if not args.labels:
        have = lb.stored_targets(args.project)
        if not have:
            print(f"{args.project}: no lab samples stored")
            return 0
        from xrfcore import store
        with store.Project.open(args.project) as p:
            df = p.labels()
        print(f"{args.project}: {len(df)} lab samples stored; targets: "
              + ", ".join(f"{t} ({u or 'no unit'}, {int(df[t].notna().sum()) if t in df else 0} values)"
                          for t, u in have.items()))
        return 0
    lab = lb.read_lab_csv(args.labels, mapping(args.map) or None, args.depth_unit, core=args.core,
                          units=args.units, targets=args.targets)
    match = lb.match_project(args.project, lab, run=args.run, tolerance_mm=args.tolerance_mm)
    print_lab(lab, match)
    if not match.usable:
        raise UserError(f"{args.labels}: no sample matches a spectrum of {args.project}; nothing was stored")
    if match.confirm and not args.accept_lab_warnings:
        raise UserError(f"{args.labels}: these lab samples need a check before use: " + " | ".join(match.confirm)
                        + "; nothing was stored; fix the table, or accept them with --accept-lab-warnings")
    for item in match.confirm:
        print(f"  ACCEPTED (--accept-lab-warnings): {item}")
    stored = lb.store_labels(args.project, lab)
    print(f"stored {len(lab.samples)} lab samples in {args.project} ({len(stored)} in all); targets: "
          + ", ".join(lb.stored_targets(args.project)))
    return 0
