"""Project subcommands of `xrfcore`: import, info, export-spectra (see xrfcore/cli.py)."""
from __future__ import annotations

import csv
import datetime as _dt
import json
import sys
from pathlib import Path

from xrfcore.cli import UserError, check_output, progress_bar
from xrfcore.fileio import atomic_open


def register(sub) -> None:
    """Add this area's subcommands to the argparse sub-parsers."""
    p = sub.add_parser("import", help="import a scanner folder (Avaatech or Itrax) into a project",
                       description="Import every spectrum file under FOLDER into PROJECT.h5 (created if "
                                   "missing). Files already in the project are skipped; bad files are "
                                   "rejected with the reason and the rest is imported.")
    p.add_argument("folder", metavar="FOLDER")
    p.add_argument("-p", "--project", required=True, metavar="PROJECT.h5")
    p.add_argument("--core", metavar="NAME", help="core name for every spectrum (default: from folders/file names)")
    p.add_argument("--section-unit", choices=("auto", "cm", "mm"), default="auto",
                   help="unit of the section top in Avaatech file names (auto: 4 digits cm, 5-6 mm)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a file was rejected")
    p.add_argument("--report", metavar="FILE.csv", help="write the per-file report as CSV")
    p.add_argument("--force", action="store_true", help="replace an existing --report file")
    same = p.add_mutually_exclusive_group()
    same.add_argument("--append", action="store_true",
                      help="when the project already has a core of this name from another folder: add "
                           "these spectra to it (without this, such an import is refused)")
    same.add_argument("--rename", metavar="NEWNAME",
                      help="when the project already has a core of this name from another folder: import "
                           "this folder's core under NEWNAME instead")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("info", help="show the cores, runs and import log of a project")
    p.add_argument("project", metavar="PROJECT.h5")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export-spectra", help="write the spectra of a core as CSV (metadata + channel counts)")
    p.add_argument("project", metavar="PROJECT.h5")
    p.add_argument("--core", required=True, metavar="C")
    p.add_argument("--run", metavar="R", help="one run (default: every run of the core)")
    p.add_argument("--all", action="store_true", help="include inactive rows (duplicates, replicates)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.csv")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_export_spectra)


def cmd_import(args) -> int:
    from xrfcore.importer import import_folder

    if not Path(args.folder).is_dir():
        raise UserError(f"{args.folder}: no such folder")
    if args.report:  # before the import: never onto the project or the folder, never over a file unasked
        check_output(args.report, inputs=(args.project, args.folder), force=args.force, what="report")
    bar = progress_bar("import")
    try:
        report = import_folder(args.folder, args.project, core=args.core,
                               section_unit=args.section_unit, progress=bar,
                               append=args.append, rename=args.rename)
    finally:
        bar.close()
    from xrfcore.cruise import cores_line
    print(cores_line(report))   # a parent folder of many core folders: one import, every core named
    print(report.summary())
    if args.report:
        report.to_csv(args.report)
        print(f"Report written to {args.report}")
    return 1 if (args.strict and report.rejected) else 0


def _open(path):
    from xrfcore.store import Project

    if not Path(path).exists():
        raise UserError(f"{path}: no such project file")
    return Project.open(path)


def _fmt_list(vals, unit: str) -> str:
    return "/".join(f"{v:g}" for v in vals) + f" {unit}" if vals else f"? {unit}"


def cmd_info(args) -> int:
    with _open(args.project) as p:
        info = p.info()
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    print(f"Project {info['path']} (schema {info['schema_version']}, xrfcore {info['xrfcore_version']}, "
          f"created {info['created']}, modified {info['modified']})")
    if not info["cores"]:
        print("No cores yet.")
    for c in info["cores"]:
        print(f"Core {c['core']}: {len(c['runs'])} run(s), {c['spectra']} spectra ({c['active']} active)"
              + (f", predictions: {', '.join(c['predictions'])}" if c["predictions"] else ""))
        for r in c["runs"]:
            depth = ("depth unknown" if r["depth_min_mm"] is None
                     else f"depth {r['depth_min_mm']:.1f}-{r['depth_max_mm']:.1f} mm")
            extra = ", ".join(x for x in (" ".join(r["filter"]), " ".join(r["setting"])) if x)
            sim = " [SIMULATED]" if any(s.startswith("simulated") for s in r["scanner"]) else ""
            print(f"  {r['run']}: {r['spectra']} spectra ({r['active']} active), {depth}, "
                  f"{r['channels']} ch x {r['gain_kev']:.5f} keV, {_fmt_list(r['kv'], 'kV')}, "
                  f"{_fmt_list(r['current_ua'], 'uA')}, {_fmt_list(r['live_s'], 's live')}"
                  + (f", {extra}" if extra else "") + sim)
            print("    " + _calibration_line(r))
            if not r.get("checksummed", True):
                print("    integrity: UNCHECKED (written by an older xrfcore without checksums: damage "
                      "to these spectra cannot be detected; import the core again to add them)")
            for w in (r.get("calibration") or {}).get("warnings", []):
                print(f"    WARNING: {w}")
    log = info["import_log"]
    if log["files"]:
        print(f"Import log: {log['imports']} import(s), {log['files']} file rows ({log['ok']} ok, "
              f"{log['warning']} warning, {log['rejected']} rejected, {log['skipped']} skipped), "
              f"last {log['last']}")
    if info.get("labels"):
        print(f"Labels: {info['labels']} lab samples")
    return 0


def _calibration_line(r: dict) -> str:
    """'energy: 19.981 eV/ch, offset -0.4 eV; calibrated from lines ...; per spectrum: 100 own fit'."""
    cal = r.get("calibration") or {}
    by = ", ".join(f"{v} {k}" for k, v in (cal.get("by_source") or {}).items())
    if not cal:
        return (f"energy: {r['gain_kev'] * 1000:.3f} eV/ch, offset {r['offset_kev'] * 1000:+.1f} eV; "
                f"{r.get('grid_source') or 'grid of an older import'} (not calibrated: `xrfcore import` it again)")
    return (f"energy: {r['gain_kev'] * 1000:.3f} eV/ch, offset {r['offset_kev'] * 1000:+.1f} eV; "
            f"{r.get('grid_source', '')}" + (f"; per spectrum: {by}" if by else ""))


META_EXPORT = ("depth_mm", "section", "section_top_mm", "position_mm", "y_mm", "replicate", "active",
               "valid", "kv", "current_ua", "live_s", "real_s", "total_cps", "date", "filter",
               "setting", "slit_dc_mm", "slit_cc_mm", "scanner", "source_path", "sha256", "cal_gain_kev", "cal_offset_kev",
               "cal_source")


def _cell(v) -> str:
    if isinstance(v, float):
        return "" if v != v else f"{v:g}"
    return str(v)


def cmd_export_spectra(args) -> int:
    from xrfcore import __version__

    check_output(args.output, inputs=(args.project,), force=args.force)

    with _open(args.project) as p:
        runs = [args.run] if args.run else p.runs(args.core)   # raises a clear error for a bad core
        data = {run: p.read_run(args.core, run, active_only=not args.all) for run in runs}
    if not runs:
        raise UserError(f"core {args.core!r} has no runs")
    channels = {d.counts.shape[1] for d in data.values()}
    if len(channels) > 1:
        raise UserError(f"runs of {args.core} have different channel counts {sorted(channels)}: "
                        "export one run at a time with --run")
    n_ch = channels.pop()
    simulated = any(s.startswith("simulated") for d in data.values() for s in d.meta["scanner"])
    out = Path(args.output)
    bar = progress_bar("export")
    try:
        with atomic_open(out, newline="") as fh:
            fh.write(f"# xrfcore {__version__} export-spectra\n"
                     f"# project: {Path(args.project).resolve()}\n# core: {args.core}\n"
                     f"# runs: {', '.join(runs)}\n# rows: {'all (active column marks the used ones)' if args.all else 'active only'}\n"
                     f"# exported: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}\n")
            for run, d in data.items():
                fh.write(f"# energy calibration {run}: {d.grid.channels} channels, gain {d.grid.gain_kev:g} keV/ch, "
                         f"offset {d.grid.offset_kev:g} keV ({d.attrs.get('grid_source', '')}); counts are raw, "
                         f"each spectrum's own calibration is in cal_gain_kev / cal_offset_kev\n")
            if simulated:
                fh.write("# SIMULATED data: these spectra were made by the xrfcore simulator, not measured\n")
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["run", *META_EXPORT, *(f"ch{i:04d}" for i in range(n_ch))])
            done, total = 0, sum(len(d) for d in data.values())
            for run, d in data.items():
                cols = [d.meta[c].tolist() for c in META_EXPORT]
                for i in range(len(d)):
                    w.writerow([run, *(_cell(col[i]) for col in cols), *d.counts[i].tolist()])
                    done += 1
                    if done % 200 == 0:
                        bar(done, total, run)
            bar(total, total, "")
    finally:
        bar.close()
    print(f"Wrote {total} spectra of {args.core} ({', '.join(runs)}) to {out}", file=sys.stderr)
    return 0
