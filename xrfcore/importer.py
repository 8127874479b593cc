"""Import a scanner folder (Avaatech or Itrax) into a project, with a per-file report.

Every file is hashed first: content already in the project is skipped, so importing a
folder twice adds nothing and new files added to a folder import alone. A bad file is
rejected with its reason and never stops the import. Everything is written inside one
store transaction (a temp copy of the project, replaced only at the end), so a failure,
a cancel or a kill leaves the project as it was. Large folders are parsed by a pool of
worker processes (threads do not help: parsing is GIL-bound); the main process keeps the
report and writes the project, in file order, exactly as the serial path does.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import gc
import hashlib
import io
import json
import multiprocessing
import os
import sys
import threading
import time
import zipfile
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from xrfcore import __version__, store
from xrfcore.fileio import atomic_open
from xrfcore.io import avaatech
from xrfcore.io.limits import read_file_limited
from xrfcore.io.records import ParseError, SpectrumRecord
from xrfcore.jobs import CancelToken, ProgressFn, no_progress

STATUSES = ("ok", "warning", "rejected", "skipped")
_RESULT_TABLES = {"result.txt", "results.txt"}
_DUPLICATE = ("already in the project", "same content as")
TABLE_WITHOUT_SPECTRA = ("Itrax results table without raw spectra (XRF data/ or XRF Data.zip): "
                         "nothing to import from it")
BATCH = 1000          # new records held in memory before they are appended to the temp project
POOL_MIN_FILES = 2000  # fewer files parse faster in this process than a pool can start
POOL_WORKERS = 2       # worker processes for large folders with idle cores (XRFCORE_IMPORT_WORKERS
                       # overrides; 1 = none)
POOL_CHUNK = 250       # files per task: few round trips, still fine-grained progress and cancel


@dataclass
class FileResult:
    """What happened to one file."""

    path: str                  # relative to the imported folder (posix)
    status: str                # ok | warning | rejected | skipped
    message: str = ""
    core: str = ""
    run: str = ""


@dataclass
class ImportReport:
    """Per-file outcome of one import, plus what was written."""

    folder: str
    project: str
    scanner: str = ""
    started: str = ""
    files: list[FileResult] = field(default_factory=list)
    written: dict = field(default_factory=dict)     # "core/run" -> {added, duplicates, total}
    simulated: int = 0                               # new records made by a simulator
    calibration: dict = field(default_factory=dict)  # "core/run" -> calibration.RunCalibration

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(f.status for f in self.files)
        return {s: c.get(s, 0) for s in STATUSES}

    @property
    def rejected(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "rejected"]

    @property
    def added(self) -> int:
        return sum(w["added"] for w in self.written.values())

    def summary(self, max_lines: int = 50) -> str:
        c = self.counts
        lines = [
            f"Import of {self.folder} into {self.project} ({self.scanner or 'no spectra'}): "
            f"{len(self.files)} files: {c['ok']} ok, {c['warning']} with warnings, "
            f"{c['rejected']} rejected, {c['skipped']} skipped (already in the project, or not a depth "
            "spectrum: see below).",
            f"Added {self.added} spectra to {len(self.written)} run(s)."
            if self.written else "Nothing new was added.",
        ]
        for key, w in sorted(self.written.items()):
            lines.append(f"  {key}: +{w['added']} ({w['total']} spectra in the run)")
            cal = self.calibration.get(key)
            if cal is not None:
                lines.append(f"    energy: {cal.describe()}")
                lines.extend(f"    WARNING: {m}" for m in cal.warnings)
        if self.simulated:
            lines.append(f"Note: {self.simulated} of the new spectra are SIMULATED (marked so in their files).")
        for status, title in (("rejected", "Rejected files"), ("warning", "Warnings"),
                              ("not imported", "Not imported (not a depth spectrum)")):
            rows = ([f for f in self.files if f.status == "skipped" and not f.message.startswith(_DUPLICATE)]
                    if status == "not imported" else [f for f in self.files if f.status == status])
            if rows:
                lines.append(f"{title} ({len(rows)}):")
                for f in rows[:max_lines]:
                    lines.append(f"  {f.path}: {f.message}")
                if len(rows) > max_lines:
                    lines.append(f"  ... and {len(rows) - max_lines} more (see the CSV report)")
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the per-file report as CSV with a '#' header (written atomically)."""
        buf = io.StringIO()
        buf.write(f"# xrfcore {__version__} import report\n# folder: {self.folder}\n"
                  f"# project: {self.project}\n# started: {self.started}\n"
                  f"# scanner: {self.scanner}\n")
        for key, cal in sorted(self.calibration.items()):
            buf.write(f"# energy calibration {key}: {cal.describe()}\n")
            for m in cal.warnings:
                buf.write(f"# energy calibration {key} WARNING: {m}\n")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "status", "message", "core", "run"])
        for f in self.files:
            w.writerow([f.path, f.status, f.message, f.core, f.run])
        with atomic_open(path) as f:
            f.write(buf.getvalue())


# --------------------------------------------------------------------------- detection

def _walk(folder: Path, spe_paths: bool = True, errors: list | None = None) -> tuple[list[Path], list]:
    """(result tables, .spe files) under folder, sorted; the .spe files as str when not
    ``spe_paths`` (thousands of Path objects cost more than the walk itself). Folders that
    cannot be listed are appended to ``errors`` (OSError with its filename) when given."""
    tables, spes = [], []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=None if errors is None else errors.append):
        dirnames.sort()
        for fn in filenames:
            low = fn.lower()
            if low in _RESULT_TABLES:
                tables.append(os.path.join(dirpath, fn))
            elif low.endswith(".spe"):
                spes.append(os.path.join(dirpath, fn))
    spes.sort()
    return [Path(t) for t in sorted(tables)], ([Path(x) for x in spes] if spe_paths else spes)


def itrax_folders(folder: Path, tables: list[Path], spes: list[Path]) -> list[Path]:
    """Itrax scan folders: a result table beside an ``XRF data`` folder or ``XRF Data.zip``."""
    out = []
    for t in tables:
        d = t.parent
        names = {p.name.lower(): p for p in d.iterdir()}
        has_data = ("xrf data" in names and names["xrf data"].is_dir()) or "xrf data.zip" in names
        if has_data and d not in out:
            out.append(d)
    return out


def detect_scanner(folder: str | os.PathLike) -> str:
    """'avaatech', 'itrax', 'mixed' or '' (no spectrum files)."""
    folder = Path(folder)
    tables, spes = _walk(folder)
    itrax = itrax_folders(folder, tables, spes)
    rest = [s for s in spes if not any(d in s.parents for d in itrax)]
    if itrax and rest:
        return "mixed"
    return "itrax" if itrax else ("avaatech" if rest else "")


# --------------------------------------------------------------------------- import

def _rel(path: Path | str, root: Path | str) -> str:
    p, r = str(path), str(root).rstrip("/\\")
    if p.startswith(r) and p[len(r):len(r) + 1] in ("/", os.sep):   # fast path (thousands of files)
        p = p[len(r) + 1:]
    return p.replace(os.sep, "/")


def _read_bytes(path: Path, rel: str | None = None) -> bytes:
    """The file's bytes, bounded (64 MB); a FIFO, device or oversized file: ParseError, unread."""
    return read_file_limited(path, rel)


def _cannot_read(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "cannot read: permission denied"
    if isinstance(exc, IsADirectoryError):
        return "cannot read: it is a folder, not a file"
    return f"cannot read: {exc.strerror or exc}"


@contextlib.contextmanager
def _gc_paused():
    """No cyclic garbage collection during an import: it makes no reference cycles, and the
    collector's passes over thousands of live records cost ~5 % of the import (measured)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _parse_one(path: str, folder: str, core: str | None, section_unit: str, known) -> tuple:
    """One Avaatech file -> ("rejected", reason) | ("known", sha256) | ("record", record).

    Each file is read once: its bytes are hashed (known content is not parsed) and parsed.
    """
    try:
        data = _read_bytes(path)
    except ParseError as exc:
        return "rejected", exc.problem
    except OSError as exc:
        return "rejected", _cannot_read(exc)
    sha = hashlib.sha256(data).hexdigest()
    if sha in known:
        return "known", sha
    try:
        return "record", avaatech.read_record(path, folder, core=core, section_unit=section_unit,
                                              data=data, sha256=sha)
    except ParseError as exc:
        return "rejected", exc.problem
    except OSError as exc:
        return "rejected", _cannot_read(exc)
    except Exception as exc:   # a reader bug or an absurd value: this file only, never the import
        return "rejected", f"cannot be read ({type(exc).__name__}: {str(exc)[:200]})"


_worker_known: frozenset = frozenset()


def _init_worker(known: frozenset, importer_pid: int | None = None) -> None:
    global _worker_known
    _worker_known = known
    _die_with_parent(importer_pid)


PR_SET_PDEATHSIG = 1


def _die_with_parent(importer_pid: int | None) -> None:
    """A parse worker never outlives the import (a kill -9 of the importer left them running,
    holding memory): on Linux the kernel kills it when its parent dies (PR_SET_PDEATHSIG; with
    forkserver the parent is the fork server, which exits with the importer); everywhere a
    watchdog thread exits it once its parent or the importing process is gone."""
    ppid = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except Exception:   # no prctl: the watchdog below still works
            pass
    if os.getppid() != ppid:    # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != ppid or (importer_pid and not store._pid_alive(importer_pid)):
                os._exit(1)

    threading.Thread(target=watch, name="xrfcore-worker-watchdog", daemon=True).start()


def _parse_chunk(paths: list[str], folder: str, core: str | None, section_unit: str) -> list[tuple]:
    return [_parse_one(p, folder, core, section_unit, _worker_known) for p in paths]


def _n_workers(n_files: int, workers: int | None) -> int:
    """Worker processes for this import: ``workers`` or XRFCORE_IMPORT_WORKERS when given;
    else POOL_WORKERS for large folders on a machine with that many idle cores. On a busy
    machine the workers only add pickling work (measured: no wall-time gain at load 5 on 2
    cores), so the import stays in this process."""
    if workers is None:
        env = os.environ.get("XRFCORE_IMPORT_WORKERS", "").strip()
        if env.isdigit():
            workers = int(env)
        else:
            if n_files < POOL_MIN_FILES:
                return 1
            workers = POOL_WORKERS
            try:
                busy = os.getloadavg()[0]
            except (OSError, AttributeError):   # no load average (Windows)
                busy = 0.0
            if (os.cpu_count() or 1) - busy < workers - 0.5:
                return 1
    return max(1, min(workers, os.cpu_count() or 1))


def _pool_context():
    """fork on Linux when this process runs no other threads (starts in milliseconds; the
    workers never touch the open project); forkserver when it does (e.g. inside the GUI);
    the platform default elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.active_count() == 1 and "PySide6" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver")


def _parse_files(paths: list[str], folder: str, core: str | None, section_unit: str,
                 known: dict, workers: int):
    """Yield (path, outcome of _parse_one) in file order.

    With workers > 1 a process pool parses chunks of files (a few chunks in flight, so
    memory stays bounded) while the caller keeps the report and writes the project. Any
    failure of the pool (it cannot start, a worker dies, a result cannot be sent back)
    falls back to parsing the remaining files here; a ParseError never reaches the pool.
    Closing the generator (cancel, error) cancels the chunks not started yet.
    """
    done = 0
    if workers > 1 and len(paths) > POOL_CHUNK:
        chunks = [paths[i:i + POOL_CHUNK] for i in range(0, len(paths), POOL_CHUNK)]
        ex = None
        try:
            ex = ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_init_worker,
                                     initargs=(frozenset(known), os.getpid()))
            inflight: deque = deque()
            queued = iter(chunks)
            for chunk in queued:
                inflight.append(ex.submit(_parse_chunk, chunk, folder, core, section_unit))
                if len(inflight) >= 2 * workers:
                    break
            while inflight:
                try:
                    results = inflight.popleft().result()
                except Exception:       # the pool failed: parse the rest in this process
                    break
                nxt = next(queued, None)
                if nxt is not None:
                    inflight.append(ex.submit(_parse_chunk, nxt, folder, core, section_unit))
                for outcome in results:
                    yield paths[done], outcome
                    done += 1
        except Exception:               # could not start the pool
            pass
        finally:
            if ex is not None:
                ex.shutdown(wait=True, cancel_futures=True)
    for path in paths[done:]:
        yield path, _parse_one(path, folder, core, section_unit, known)


class SameNameCoreError(ValueError):
    """New spectra for a core the project already holds from another folder: two different
    cores that share a name are never merged silently (nothing was written). ``core``,
    ``existing`` (the folders it came from), ``new`` (the folder of these files)."""

    def __init__(self, project, core: str, existing, new: str):
        self.core, self.existing, self.new = core, sorted(existing), new
        where = ", ".join(self.existing) if self.existing else "an earlier import or a simulation"
        super().__init__(
            f"{project}: the project already has a core {core!r} (from {where}); these files of "
            f"{core!r} come from {new}. Two cores of one name are not merged without asking, so "
            f"nothing was changed: import with --append to add these spectra to the existing core, "
            f"or with --rename NEWNAME to import them as a new core")


def _origin(abs_file: str) -> str:
    """The core folder a spectrum file comes from: its folder, above run folders
    (``Run 1 at 10kV``), rescan / trigger-core levels and Itrax ``XRF data`` (an Itrax scan
    folder counts as its parent: the sections of one core sit side by side)."""
    d = os.path.dirname(abs_file)
    itrax = False
    while True:
        name = os.path.basename(d)
        low = name.lower()
        if low in ("xrf data", "xrf data.zip"):
            itrax = True
        elif not (avaatech.parse_run_folder(name) is not None or avaatech._is_skip_level(name)):
            break
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    return os.path.dirname(d) if itrax and os.path.dirname(d) != d else d


def _read_origins(p, core: str) -> set[str]:
    """The core folders a stored core came from: its ``origins`` attribute; for projects from
    before it, the import log's rows of the core's files."""
    g = p._h5[f"cores/{store.safe_name(core)}"]
    raw = g.attrs.get("origins")
    if raw is not None:
        return set(json.loads(raw.decode() if isinstance(raw, bytes) else raw))
    files: set[str] = set()
    runs = g["runs"] if "runs" in g else {}
    for run in runs:
        if "source_path" in runs[run]:
            files.update(x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
                         for x in runs[run]["source_path"][:])
    log = p.import_log()
    out = set()
    for fold, f, st in zip(log["folder"], log["file"], log["status"]):
        if st in ("ok", "warning") and f in files and fold and not str(fold).startswith("("):
            out.add(_origin(os.path.join(str(fold), str(f))))
    return out


_INT32 = 2 ** 31


def _record_problem(rec: SpectrumRecord, rel: str) -> str:
    """Why a parsed record cannot be stored (its file is rejected, the import goes on); ''."""
    for what, text in (("file name", rel), ("core name", rec.core)):
        try:
            str(text).encode("utf-8")
        except UnicodeEncodeError:
            return f"the {what} is not valid UTF-8 text: rename it"
    try:
        store.safe_name(rec.core)
    except ValueError:
        return f"{rec.core!r} cannot be a core name: set the core name (--core NAME)"
    try:
        store.safe_name(rec.run_key)
    except ValueError:
        return f"{rec.run_key!r} cannot be a run name"
    if not -_INT32 <= int(rec.replicate or 0) < _INT32:
        return f"replicate number {rec.replicate} is out of range ($Replicate_ID or the file name)"
    if rec.run is not None and not -_INT32 <= int(rec.run) < _INT32:
        return f"run number {rec.run} is out of range ($Run_ID or the file name)"
    return ""


def _display(rel: str) -> str:
    """A path fit for the report (a file name that is not UTF-8 shows replacement characters)."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _input_bytes(files, itrax_dirs) -> int:
    """About how many bytes the files to import hold (a zip: its entries inflated)."""
    total = 0
    for f in files:
        with contextlib.suppress(OSError):
            total += min(os.stat(f).st_size, 64 << 20)
    for d in itrax_dirs:
        for dirpath, _dirs, names in os.walk(d):
            for n in names:
                fp = os.path.join(dirpath, n)
                with contextlib.suppress(OSError, zipfile.BadZipFile, ValueError):
                    if n.lower().endswith(".zip"):
                        with zipfile.ZipFile(fp) as zf:
                            total += sum(min(i.file_size, 64 << 20) for i in zf.infolist())
                    else:
                        total += min(os.stat(fp).st_size, 64 << 20)
    return total


def import_folder(folder: str | os.PathLike, project_path: str | os.PathLike, *,
                  core: str | None = None, section_unit: str = "auto",
                  progress: ProgressFn = no_progress, token: CancelToken | None = None,
                  workers: int | None = None, append: bool = False,
                  rename: str | None = None) -> ImportReport:
    """Import every spectrum under ``folder`` into the project (created when missing).

    ``core`` overrides the core name of every record; ``section_unit`` ("auto" | "cm" |
    "mm") is the unit of the section top in Avaatech file names. Raises ``Cancelled``
    (project unchanged) or an OSError/ValueError naming the problem; bad files do not
    raise, they are rejected in the report. ``workers``: processes that parse the files
    (default: 2 from 2,000 files on when 2 cores are idle, else 1; the report and the
    project are the same either way).

    Same-name cores: new spectra of a core that the project already holds from another core
    folder raise :class:`SameNameCoreError` (nothing written) unless ``append`` (add them to
    that core) or ``rename`` (import that core under this new name). New files of a core from
    its own folder, and files already in the project (skipped), never ask.
    """
    if section_unit not in ("auto", "cm", "mm"):
        raise ValueError(f"section unit must be auto, cm or mm, not {section_unit!r}")
    folder = Path(folder)
    project_path = Path(project_path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    started = _dt.datetime.now().astimezone().isoformat(timespec="milliseconds")
    report = ImportReport(folder=str(folder.resolve()), project=str(project_path), started=started)

    walk_errors: list[OSError] = []
    tables, spes = _walk(folder, spe_paths=False, errors=walk_errors)
    unreadable = [FileResult(_display(_rel(e.filename or folder, folder)).rstrip("/") + "/", "rejected",
                             f"cannot read the folder ({e.strerror or e}): its files were not imported")
                  for e in walk_errors]
    itrax_dirs = itrax_folders(folder, tables, [])   # an Itrax scan may hold its spectra in a zip only
    if itrax_dirs:
        spes = [Path(x) for x in spes]
        ava_files = [str(x) for x in spes if not any(d in x.parents for d in itrax_dirs)]
    else:
        ava_files = spes
    # not depth spectra: Itrax sum spectra outside a scan folder, result tables without raw spectra
    loose = _loose_itrax_rows(folder, [t for t in tables if t.parent not in itrax_dirs],
                              [x for x in ava_files if _is_sum_name(x)])
    ava_files = [x for x in ava_files if not _is_sum_name(x)]
    if not ava_files and not itrax_dirs:
        why = "".join(f"; {r.path}: {r.message}" for r in unreadable + loose)
        raise ValueError(f"no spectra found in {folder}: "
                         + ("no depth spectra under it" if loose else "no spectrum files (.spe) under it") + why)
    report.scanner = "+".join(n for n, ok in (("avaatech", ava_files), ("itrax", itrax_dirs)) if ok)

    # Everything happens in one transaction on a temp copy: nothing is final until the end.
    # New records are written in batches, so memory stays bounded on huge folders.
    old_size = project_path.stat().st_size if project_path.exists() else 0
    reserve = (_input_bytes(ava_files, itrax_dirs) + old_size) // 4
    if rename is not None:
        rename = str(rename).strip()
        store.safe_name(rename)             # a usable name, or ValueError
    with store.transaction(project_path, reserve_bytes=reserve) as p, _gc_paused():   # refuses a newer schema first
        known = p.sha256s()
        stored_cores = set(p.cores())
        if rename is not None and store.safe_name(rename) in stored_cores:
            raise ValueError(f"{project_path}: the project already has a core {rename!r}; "
                             "choose another name for --rename")
        origins: dict[str, set[str]] = {}      # stored core -> the core folders it came from
        new_origins: dict[str, set[str]] = {}  # core written by this import -> its core folders
        renamed: dict[str, str] = {}           # core renamed by this import -> the new name
        written_cores: set[str] = set()
        channels = {(c, run): p.n_channels(c, run) for c in p.cores() for run in p.runs(c)}
        pending: list[SpectrumRecord] = []
        rows: dict[str, FileResult] = {r.path: r for r in loose}   # by relative path, in file order
        seen: dict[str, str] = {}             # sha256 -> first file of this import
        total = len(ava_files) + len(itrax_dirs)
        step = max(1, total // 200)

        def accept(rec: SpectrumRecord, rel: str) -> None:
            if core:
                rec.core = core
            problem = _record_problem(rec, rel)
            if problem:
                rows[rel] = FileResult(_display(rel), "rejected", problem)
                return
            if rec.sha256 in known or rec.sha256 in seen:
                pass                               # skipped below: never a same-name question
            else:
                org = _origin(os.path.join(report.folder, rel))
                name = store.safe_name(rec.core)
                if name in stored_cores:
                    if name not in origins:
                        origins[name] = _read_origins(p, name)
                    if org not in origins[name] and not append:
                        if rename is None or renamed.get(rename, name) != name:
                            raise SameNameCoreError(project_path, rec.core, origins[name], org)
                        renamed[rename] = name
                        rec.core = rename
                new_origins.setdefault(store.safe_name(rec.core), set()).add(org)
            if rec.sha256 in known:
                rows[rel] = FileResult(rel, "skipped", f"already in the project ({known[rec.sha256]})")
            elif rec.sha256 in seen:
                rows[rel] = FileResult(rel, "skipped", f"same content as {seen[rec.sha256]}")
            else:
                seen[rec.sha256] = rel
                pending.append(rec)
                report.simulated += rec.scanner.startswith("simulated")
                status = "warning" if rec.warnings else "ok"
                rows[rel] = FileResult(rel, status, "; ".join(rec.warnings), rec.core, rec.run_key)

        def flush(at: int) -> None:
            _check_channels(pending, rows, channels)
            groups = store.group_records(r for r in pending if rows[r.source_path].status != "rejected")
            pending.clear()
            for (c, run), recs in sorted(groups.items()):
                if token is not None:
                    token.raise_if_cancelled()
                progress(at, total, f"writing {c}/{run}")
                res = p.write_run(c, run, recs, finalize=False)   # appended; sorted + calibrated at the end
                if res["added"]:
                    written_cores.add(store.safe_name(c))
                key = f"{c}/{run}"
                old = report.written.get(key, {"added": 0, "duplicates": 0})
                report.written[key] = {"added": old["added"] + res["added"],
                                       "duplicates": old["duplicates"] + res["duplicates"],
                                       "total": res["total"]}
                channels[(store.safe_name(c), store.safe_name(run))] = len(recs[0].counts)

        sfolder = str(folder)
        n_workers = _n_workers(len(ava_files), workers)
        with contextlib.closing(_parse_files(ava_files, sfolder, core, section_unit, known,
                                             n_workers)) as parsed:
            for i, (path, (kind, value)) in enumerate(parsed):
                if token is not None:
                    token.raise_if_cancelled()
                if i % step == 0:
                    progress(i, total, f"reading {_display(os.path.basename(path))}")
                rel = _rel(path, sfolder)
                if _display(rel) != rel:   # not UTF-8: cannot be stored or reported as is
                    rows[rel] = (FileResult(_display(rel), "skipped", f"already in the project ({known[value]})")
                                 if kind == "known" else
                                 FileResult(_display(rel), "rejected", "the file name is not valid UTF-8 text: "
                                            "rename the file" + (f" ({value})" if kind == "rejected" else "")))
                    continue
                if kind == "record":
                    accept(value, rel)
                    if len(pending) >= BATCH:
                        flush(i)
                elif kind == "known":
                    rows[rel] = FileResult(rel, "skipped", f"already in the project ({known[value]})")
                else:
                    rows[rel] = FileResult(rel, "rejected", value)

        for j, d in enumerate(itrax_dirs):
            if token is not None:
                token.raise_if_cancelled()
            progress(len(ava_files) + j, total, f"reading Itrax folder {d.name}")
            _import_itrax_dir(d, folder, spes, accept, rows)
        if token is not None:
            token.raise_if_cancelled()
        flush(total)
        progress(total, total, "sorting and calibrating")
        p.finalize_runs()                     # once per run: sort keys, flags, energy calibration
        for (c, run), cal in p.calibrations.items():
            report.calibration[f"{c}/{run}"] = cal
        changed = _dt.datetime.now().astimezone().isoformat(timespec="milliseconds")
        for name in sorted(written_cores):
            g = p._h5[f"cores/{name}"]
            before = origins.get(name) if name in origins else (
                _read_origins(p, name) if name in stored_cores else set())
            g.attrs["origins"] = json.dumps(sorted(before | new_origins.get(name, set())), ensure_ascii=False)
            g.attrs["spectra_changed"] = changed   # stored predictions of the core predate this
        _calibration_warnings(report, rows)
        report.files = unreadable + list(rows.values())
        for f in report.files:      # e.g. an Itrax scan folder whose name is not UTF-8
            f.path, f.message = _display(f.path), _display(f.message)
        p.append_import_log({"time": started, "folder": report.folder, "file": f.path,
                             "status": f.status, "message": f.message} for f in report.files)
        if token is not None:
            token.raise_if_cancelled()   # last chance: the project is replaced only after this
        progress(total, total, "saving the project")
    progress(total, total, "done")
    return report


def import_into_new_project(folder: str | os.PathLike, project_path: str | os.PathLike,
                            **kw) -> ImportReport:
    """Import ``folder`` into a NEW project at ``project_path``, replacing a file already there
    only once the import has succeeded (the app's *New project file* onto an existing file,
    after the user confirmed): never merged into it; a failure or cancel leaves it as it was."""
    import uuid

    project_path = Path(project_path)
    tmp = project_path.parent / f".{project_path.name}.new-{uuid.uuid4().hex[:12]}.h5"
    try:
        report = import_folder(folder, tmp, **kw)
        with store._lock_for(project_path):
            lock = store._acquire_file_lock(project_path)
            try:
                os.replace(tmp, project_path)
                store._fsync_dir(project_path.parent)
            finally:
                lock.unlink()
        report.project = str(project_path)
        return report
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _calibration_warnings(report: ImportReport, rows: dict) -> None:
    """Put each run's energy-calibration problems on the files of this import they concern."""
    for key, cal in report.calibration.items():
        failed = cal.run.status == "failed" or any("plausible" in m for m in cal.warnings)
        for f in rows.values():
            if f.status in ("ok", "warning") and f"{f.core}/{f.run}" == key:
                msg = cal.files.get(f.path) or (
                    f"energy scale of run {key} not calibrated (see the run's calibration note)" if failed else "")
                if msg:
                    f.status = "warning"
                    f.message = "; ".join(x for x in (f.message, msg) if x)


def _import_itrax_dir(d: Path, root: Path, spes: list[Path], accept, rows: dict) -> None:
    """One Itrax scan folder: its reader reads the spectra and the result-table calibration."""
    prefix = _rel(d, root)
    prefix = "" if prefix in ("", ".") else prefix + "/"
    mine = [_rel(s, root) for s in spes if d in s.parents]
    errors: list[ParseError] = []
    try:
        from xrfcore.io import itrax
        recs = itrax.read_itrax_folder(d, errors=errors)
    except Exception as exc:   # this scan folder only, never the whole import
        why = (exc.problem if isinstance(exc, ParseError) else _cannot_read(exc)
               if isinstance(exc, OSError) else "Itrax files cannot be read by this xrfcore version"
               if isinstance(exc, ImportError) else f"cannot be read ({type(exc).__name__}: {str(exc)[:200]})")
        for rel in mine:
            rows[rel] = FileResult(rel, "rejected", why)
        return
    for err in errors:
        rel = prefix + err.path
        rows[rel] = FileResult(rel, "rejected", err.problem)
    for rec in recs:
        rel = prefix + rec.source_path
        rec.source_path = rel
        accept(rec, rel)
    for rel in mine:       # e.g. sumspectra.spe: not one measurement
        if rel not in rows:
            rows[rel] = (_sum_row(root / rel, rel) if _is_sum_name(rel) else
                         FileResult(rel, "skipped", "not a measurement of the scan (not imported)"))


def _is_sum_name(path) -> bool:
    from xrfcore.io.itrax import is_sum_spectrum_name

    return is_sum_spectrum_name(str(path))


def _sum_row(path: Path, rel: str) -> FileResult:
    """An Itrax sum spectrum (sumspectra*.spe), read and reported; never stored as a depth."""
    from xrfcore.io import itrax

    try:
        spe = itrax.read_sum_spectrum(_read_bytes(path, rel), rel)
    except ParseError as exc:
        return FileResult(rel, "rejected", f"Itrax sum spectrum (sumspectra*.spe) unreadable: {exc.problem}")
    except OSError as exc:
        return FileResult(rel, "rejected", _cannot_read(exc))
    msg = itrax.describe_sum_spectrum(spe) + "".join(f"; {w}" for w in spe.warnings)
    return FileResult(rel, "skipped", msg)


def _loose_itrax_rows(folder: Path, tables: list[Path], sums: list) -> list[FileResult]:
    """Report rows for Itrax files that hold no depth spectra: result tables with no ``XRF Data``
    folder or zip beside them, and sum spectra outside a scan folder."""
    rows = [FileResult(_rel(t, folder), "skipped", TABLE_WITHOUT_SPECTRA) for t in tables]
    rows += [_sum_row(Path(x), _rel(x, folder)) for x in sums]
    return rows


def _check_channels(records: list[SpectrumRecord], rows: dict,
                    existing: dict[tuple[str, str], int]) -> None:
    """A run holds one channel count: reject records that differ from the stored run, or
    from the majority of the new records of that run."""
    by_run: dict[tuple[str, str], list[SpectrumRecord]] = {}
    for r in records:
        by_run.setdefault((r.core, r.run_key), []).append(r)
    for (c, run), recs in by_run.items():
        major = existing.get((store.safe_name(c), store.safe_name(run)))
        if major is None:
            sizes = Counter(len(r.counts) for r in recs)
            if len(sizes) < 2:
                continue
            major = sizes.most_common(1)[0][0]
        for r in recs:
            if len(r.counts) != major:
                rows[r.source_path] = FileResult(
                    r.source_path, "rejected",
                    f"{len(r.counts)} channels, the other spectra of run {c}/{run} have {major}")
