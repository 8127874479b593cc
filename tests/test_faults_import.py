"""Fault-injection regressions for the import path (issue 11): disk full, locks, special and huge
files, orphaned workers, files that used to abort a whole import, same-name cores.

Each test is built from a case of the issue, with real files where one can be made (a tmpfs that
fills up, a FIFO, a link to /dev/zero, a zip bomb, a kill -9), an injected fault where not.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xrfcore import cli, importer, store
from xrfcore.io import avaatech

from tests.test_importer import SHAPE, T0, write_spectrum

ROOT = Path(__file__).resolve().parents[1]
LINUX = sys.platform.startswith("linux")


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def small_core(root: Path, core: str, seed: int = 0, positions=(10, 20, 30)) -> Path:
    """A tiny Avaatech core folder: one run, two sections x positions."""
    rng = np.random.default_rng(seed)
    folder = root / core
    for s, section in enumerate(("00000", "00950")):
        for x in positions:
            write_spectrum(folder, rng, core=core, section=section, x=x, kv=10, run=1)
    return folder


def leftovers(project: Path) -> list[str]:
    """Temp copies and lock files beside a project (a clean write leaves none)."""
    return sorted(p.name for p in project.parent.iterdir()
                  if p.name.startswith(f".{project.name}."))


def run_py(code: str, *args, timeout=120, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, **kw)


# ------------------------------------------------------------------ 1. disk full

def _can_mount_tmpfs() -> bool:
    if not LINUX or shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-r", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                       capture_output=True)
    return r.returncode == 0


DISK_FULL_SCRIPT = r"""
set -u
mount -t tmpfs -o size=40m tmpfs "$MNT" || exit 97
cd "$ROOT"
PY="$PYEXE -m xrfcore"
$PY import "$SRC_A" -p "$MNT/P.h5" >/dev/null 2>&1 || { echo "first import failed"; exit 98; }
sha256sum "$MNT/P.h5" | cut -c1-64 > "$OUT/before"
# fill the disk, leaving about 1 MB
dd if=/dev/zero of="$MNT/ballast" bs=1M count=38 2>/dev/null
$PY import "$SRC_B" -p "$MNT/P.h5" > "$OUT/full.out" 2> "$OUT/full.err"
echo $? > "$OUT/full.rc"
sha256sum "$MNT/P.h5" | cut -c1-64 > "$OUT/after"
ls -a "$MNT" > "$OUT/ls"
rm "$MNT/ballast"
$PY import "$SRC_B" -p "$MNT/P.h5" > "$OUT/retry.out" 2> "$OUT/retry.err"
echo $? > "$OUT/retry.rc"
"""


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare + a user-namespace tmpfs mount")
def test_disk_full_import_is_a_clear_error_not_a_crash_and_leaves_no_lock(tmp_path):
    """Case: disk full during import -> segfault (exit -11), an empty lock file, and every retry
    said 'another xrfcore process (pid ?) is writing this project'. Now: exit 2 with one clear
    sentence, the project byte-identical, no temp or lock left, and the retry (space freed) works."""
    a = small_core(tmp_path / "a", "CA", seed=1)
    b = small_core(tmp_path / "b", "CB", seed=2)
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    env = {**os.environ, "MNT": str(mnt), "OUT": str(out), "ROOT": str(ROOT), "PYEXE": sys.executable,
           "SRC_A": str(a), "SRC_B": str(b), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["unshare", "-r", "-m", "sh", "-c", DISK_FULL_SCRIPT], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    rc = int((out / "full.rc").read_text())
    err = (out / "full.err").read_text()
    assert rc == 2, (rc, err)                                    # not 139 / -11
    assert "Segmentation" not in err and "Traceback" not in err
    assert "disk is full" in err and "nothing was changed" in err, err
    assert (out / "before").read_text() == (out / "after").read_text()
    names = (out / "ls").read_text().split()
    assert sorted(n for n in names if n not in (".", "..")) == ["P.h5", "ballast"], names
    assert int((out / "retry.rc").read_text()) == 0, (out / "retry.err").read_text()
    assert "another xrfcore process" not in (out / "retry.err").read_text()
    assert "CB/10kV-Run1: +6" in (out / "retry.out").read_text()


FILL_DURING_IMPORT = r"""
import os, sys
from xrfcore import importer, store
real = store._reserve_space
def reserve_then_fill(path, tmp, size):
    real(path, tmp, size)
    # another program fills the disk right after the reservation: HDF5 must not meet ENOSPC
    with open(os.path.join(os.path.dirname(tmp), "ballast"), "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 20)); fh.flush()
        except OSError:
            pass
store._reserve_space = reserve_then_fill
rep = importer.import_folder(sys.argv[1], sys.argv[2])
print("added", rep.added)
"""


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare + a user-namespace tmpfs mount")
def test_disk_filling_up_during_import_cannot_reach_hdf5(tmp_path):
    """The temp copy's space is reserved before HDF5 writes: a disk that fills up meanwhile
    (another program) does not make HDF5 fail mid-write (which crashed the process)."""
    a = small_core(tmp_path / "a", "CA", seed=1)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(FILL_DURING_IMPORT)
    cmd = (f"mount -t tmpfs -o size=40m tmpfs {mnt} && cd {ROOT} && "
           f"PYTHONPATH={ROOT} {sys.executable} {script} {a} {mnt}/P.h5 && "
           f"{sys.executable} -m xrfcore info {mnt}/P.h5 && ls -a {mnt}")
    r = subprocess.run(["unshare", "-r", "-m", "sh", "-c", cmd], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    assert "added 6" in r.stdout and "Core CA: 1 run(s), 6 spectra" in r.stdout
    assert "xrfcore-tmp" not in r.stdout and "xrfcore-lock" not in r.stdout


def test_injected_enospc_leaves_project_unchanged_and_no_temp_or_lock(tmp_path, monkeypatch):
    """ENOSPC injected where the disk runs full first (reserving the temp copy, copying the
    project, writing the lock's pid): a clear DiskFullError or none at all, never a stale lock."""
    project = tmp_path / "p.h5"
    importer.import_folder(small_core(tmp_path / "a", "CA"), project)
    before = digest(project)
    b = small_core(tmp_path / "b", "CB", seed=3)

    def enospc(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    for target, name in ((os, "posix_fallocate"), (shutil, "copyfile")):
        with monkeypatch.context() as m:
            m.setattr(target, name, enospc)
            with pytest.raises(store.DiskFullError, match="disk is full.*nothing was changed"):
                importer.import_folder(b, project)
        assert digest(project) == before
        assert leftovers(project) == []
    # the lock's pid cannot be written (full disk): the lock still works and is not left behind
    with monkeypatch.context() as m:
        m.setattr(os, "pwrite", enospc)
        rep = importer.import_folder(b, project)
    assert rep.added == 6 and leftovers(project) == []
    # the CLI: one sentence, exit 2
    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfile", enospc)
        assert cli.main(["import", str(small_core(tmp_path / "c", "CC", seed=4)), "-p", str(project)]) == 2


# ------------------------------------------------------------------ 2. locks

def test_empty_and_stale_lock_files_are_not_locks(tmp_path):
    """Case: an empty lock file (its writer died between create and write), or one naming a pid
    that now belongs to another program, blocked every import. Only a held OS lock blocks."""
    project = tmp_path / "p.h5"
    lock = tmp_path / f".p.h5{store.LOCK_SUFFIX}"
    lock.write_text("")                                          # empty: not a lock
    assert importer.import_folder(small_core(tmp_path / "a", "CA"), project).added == 6
    other = subprocess.Popen(["sleep", "30"])                    # a live pid of another program
    try:
        lock.write_text(f"{other.pid}\n")
        assert importer.import_folder(small_core(tmp_path / "b", "CB", seed=2), project).added == 6
    finally:
        other.kill()
        other.wait()
    assert leftovers(project) == []


def test_held_lock_blocks_and_dies_with_its_process(tmp_path):
    """A live writer's lock refuses a second writer (naming its pid); kill -9 of that writer
    releases it at once, whatever its lock file says."""
    project = tmp_path / "p.h5"
    importer.import_folder(small_core(tmp_path / "a", "CA"), project)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from xrfcore import store\n"
         "store._acquire_file_lock(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()",
         str(project)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        b = small_core(tmp_path / "b", "CB", seed=2)
        with pytest.raises(store.ProjectError, match=f"another xrfcore process \\(pid {holder.pid}\\)"):
            importer.import_folder(b, project)
        holder.kill()
        holder.wait(10)
        assert (tmp_path / f".p.h5{store.LOCK_SUFFIX}").exists()   # its file is still there ...
        assert importer.import_folder(b, project).added == 6       # ... and is no lock
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


# ------------------------------------------------------------------ 3. special and huge files

def _with_header(path: Path, extra: int) -> bytes:
    """A valid spectrum file whose header carries ``extra`` more bytes (one long remark)."""
    raw = path.read_bytes()
    i = raw.index(b"$DATA:")
    return raw[:i] + b"$SPEC_REM:\r\n" + b"x" * extra + b"\r\n" + raw[i:]


def test_fifo_dev_zero_huge_file_and_huge_header_are_rejected_unread(tmp_path):
    """Case: a .spe that is a FIFO or a link to /dev/zero hung the import; one valid spectrum
    with a 50 MB header among 50 files took 5 GB of RAM and grew the project to 2.47 GB. Now:
    special files are skipped with a reason, a file over 64 MB or a header over 1 MB is rejected
    unread, and a long (allowed) header is stored cut to 16 kB."""
    folder = small_core(tmp_path, "C1")
    run = folder / "Run 1 at  10kV"
    good = sorted(run.iterdir())[0]
    name = lambda x: good.name.replace("10.0mm", f"{x}.0mm")          # noqa: E731
    os.mkfifo(run / name(41))
    os.symlink("/dev/zero", run / name(42))
    (run / name(43)).write_bytes(_with_header(good, 2 << 20))         # 2 MB header: over 1 MB
    with open(run / name(44), "wb") as fh:                            # 65 MB: over the file limit
        fh.truncate(65 << 20)
    (run / name(45)).write_bytes(_with_header(good, 200_000).replace(b"10.0", b"45.0", 1))
    code = ("import sys; from xrfcore import importer\n"
            "rep = importer.import_folder(sys.argv[1], sys.argv[2])\n"
            "import json; print(json.dumps({f.path.rsplit('/', 1)[-1]: [f.status, f.message] for f in rep.files}))")
    t0 = time.monotonic()
    r = run_py(code, folder, tmp_path / "p.h5", timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.monotonic() - t0 < 100
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    assert rows[name(41)][0] == "rejected" and "FIFO" in rows[name(41)][1]
    assert rows[name(42)][0] == "rejected" and "device" in rows[name(42)][1]
    assert rows[name(43)][0] == "rejected" and "header" in rows[name(43)][1] and "1 MB" in rows[name(43)][1]
    assert rows[name(44)][0] == "rejected" and "64" in rows[name(44)][1] and "unread" in rows[name(44)][1]
    assert rows[name(45)][0] == "warning" and "only the first" in rows[name(45)][1]
    with store.Project.open(tmp_path / "p.h5") as p:
        d = p.read_run("C1", "10kV-Run1", active_only=False)
        assert len(d) == 7
        assert max(len(h) for h in d.meta["header"]) < 20_000
    assert (tmp_path / "p.h5").stat().st_size < 2_000_000


def _itrax_spectrum(counts) -> bytes:
    head = ["Date:\t18-Jun-18\t\t", "Time:\t10:15 AM\t\t", "Section name:\tN10-1\t\t",
            "Position\t6.000000\tmm\t", "Tube voltage:\t30\tkV\t", "Tube current:\t50\tmA\t",
            f"number_mca_channels\t{len(counts)}.000000\tno:\t", "livetime\t8.5\tseconds\t",
            "runtime\t10.0\tseconds\t", "channel\tcontent\t\t"]
    data = [f"{i + 1}\t{c}" for i, c in enumerate(counts)]
    return ("\r".join(head) + "\r" + "\r\n".join(data) + "\r\n").encode("latin-1")


def test_itrax_zip_bomb_entry_is_rejected_unread(tmp_path):
    """Case: an Itrax 'XRF Data.zip' holding a 3 GiB entry (3 MB compressed) took 4.2 GB RSS and
    a MemoryError. Now the entry's declared size is checked first and reads are bounded."""
    scan = tmp_path / "N10-1"
    scan.mkdir()
    (scan / "result.txt").write_text("title\r\nline 2\r\nfilename\tvalidity\tposition (mm)\r\n"
                                     "L000001.spe\t1\t6\r\nL000002.spe\t1\t7\r\n", encoding="latin-1")
    with zipfile.ZipFile(scan / "XRF Data.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("L000001.spe", _itrax_spectrum(np.random.default_rng(0).poisson(20, 1024)))
        with zf.open("L000002.spe", "w", force_zip64=True) as fh:       # 100 MB of zeros
            block = b"\0" * (4 << 20)
            for _ in range(25):
                fh.write(block)
    assert (scan / "XRF Data.zip").stat().st_size < 1_000_000
    rep = importer.import_folder(tmp_path, tmp_path / "p.h5")
    rows = {f.path: f for f in rep.files}
    bomb = rows["N10-1/XRF Data.zip/L000002.spe"]
    assert bomb.status == "rejected" and "64" in bomb.message and "unread" in bomb.message
    assert rows["N10-1/XRF Data.zip/L000001.spe"].status in ("ok", "warning")
    assert rep.added == 1


# ------------------------------------------------------------------ 4. workers die with the import

WORKER_IMPORT = r"""
import os, sys, time
from xrfcore import importer
importer.POOL_CHUNK = 5
real = importer._parse_one
def slow(*a, **k):
    time.sleep(0.2)
    return real(*a, **k)
importer._parse_one = slow
importer.import_folder(sys.argv[1], sys.argv[2], workers=2)
"""


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_kill_9_of_an_import_takes_its_parse_workers_with_it(tmp_path):
    """Case: kill -9 of an import with 2 parse workers left them running as orphans (23 still
    alive an hour later, holding 2.1 GB). Now they die with their parent, within a second or so."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "C1"
    for x in range(10, 70):
        write_spectrum(folder, rng, core="C1", x=x)
    proc = subprocess.Popen([sys.executable, "-c", WORKER_IMPORT, str(folder), str(tmp_path / "p.h5")],
                            env={**os.environ, "PYTHONPATH": str(ROOT), "XRFCORE_IMPORT_WORKERS": "2"},
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        workers: list[int] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(0.2)
            workers = [c for c in _children(proc.pid) if _alive(c)]
        assert len(workers) >= 2, f"no worker processes seen: {proc.poll()} {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "parse workers outlived the killed import"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "p.h5").exists()
    lock = str(tmp_path / f".p.h5{store.LOCK_SUFFIX}")
    holders = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{d}/fd"):
                if os.readlink(f"/proc/{d}/fd/{fd}") == lock:
                    holders.append((d, Path(f"/proc/{d}/stat").read_text()[:120],
                                    Path(f"/proc/{d}/cmdline").read_text()[:200]))
        except OSError:
            pass
    assert not holders, (workers, holders)
    assert importer.import_folder(folder, tmp_path / "p.h5").added == 60   # not locked by an orphan


# ------------------------------------------------------------------ 5. one bad file never aborts

def test_bad_names_overflow_and_unreadable_folder_reject_that_file_only(tmp_path, monkeypatch):
    """Case: one file named with a core '..', a non-UTF-8 file name, a $Replicate_ID that
    overflows, or one unreadable sub-folder aborted the whole import (or the folder was skipped
    without a word). Now each is rejected with a reason and the rest is imported."""
    flat = tmp_path / "flat"
    flat.mkdir()
    rng = np.random.default_rng(0)
    meta = dict(core="C2", section="00000", position_mm=10.0, y_mm=0.0, kv=10, current_ua=150, live_s=10,
                real_s=15, total_cps=100000, date=T0, run=1, replicate=0, filter="No-Filter",
                setting="Sett Low", slit_dc_mm=10, slit_cc_mm=12)
    for x in (10, 20, 30):
        avaatech.write_spe(flat / avaatech.spe_file_name({**meta, "position_mm": x}),
                           rng.poisson(SHAPE), {**meta, "position_mm": float(x)})
    dots = {**meta, "core": "..", "position_mm": 40.0}
    avaatech.write_spe(flat / avaatech.spe_file_name(dots), rng.poisson(SHAPE), dots)
    over = flat / avaatech.spe_file_name({**meta, "position_mm": 50.0})
    avaatech.write_spe(over, rng.poisson(SHAPE), {**meta, "position_mm": 50.0})
    over.write_bytes(over.read_bytes().replace(b"$Replicate_ID:\r\nRep0", b"$Replicate_ID:\r\nRep99999999999999999999"))
    assert b"Rep99999999999999999999" in over.read_bytes()
    bad_name = os.fsencode(flat) + b"/C2_00000 60mm \xff 10s 10kV 150uA No-Filter.spe"
    with open(bad_name, "wb") as fh:
        fh.write((flat / avaatech.spe_file_name({**meta, "position_mm": 10})).read_bytes().replace(b"10.0", b"60.0"))
    locked = flat / "locked"
    locked.mkdir()
    shutil.copy(over, locked / "x.spe")
    locked.chmod(0)
    if os.geteuid() == 0:             # root reads any folder: make this one fail as it would for a user
        real = os.scandir

        def scandir(path="."):
            if os.fspath(path) == str(locked):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path)
        monkeypatch.setattr(os, "scandir", scandir)
    try:
        rep = importer.import_folder(flat, tmp_path / "p.h5")
    finally:
        locked.chmod(0o755)
    rows = {f.path: f for f in rep.files}
    assert rep.added == 3 and rep.written == {"C2/10kV-Run1": {"added": 3, "duplicates": 0, "total": 3}}
    assert "cannot be a core name" in rows[avaatech.spe_file_name(dots)].message
    assert "replicate number" in rows[over.name].message and rows[over.name].status == "rejected"
    (bad,) = [f for f in rep.files if "\ufffd" in f.path]
    assert bad.status == "rejected" and "UTF-8" in bad.message
    assert rows["locked/"].status == "rejected" and "cannot read the folder" in rows["locked/"].message
    text = rep.summary()
    assert "locked/" in text and "UTF-8" in text and "replicate number" in text
    rep.to_csv(tmp_path / "r.csv")                                   # reportable as is
    assert "locked/" in (tmp_path / "r.csv").read_text(encoding="utf-8")


def test_empty_folder_says_no_spectra_and_exits_non_zero(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["import", str(tmp_path / "empty"), "-p", str(tmp_path / "p.h5")]) == 2
    assert f"no spectra found in {tmp_path / 'empty'}" in capsys.readouterr().err
    assert not (tmp_path / "p.h5").exists()


# ------------------------------------------------------------------ 6. same-name cores

def test_same_name_cores_never_merge_silently(tmp_path, capsys):
    """Case: two different cores named SIM01-1 became one core, and `import --core EXISTING` on
    another core's folder did the same. Now the CLI refuses unless --append or --rename; the same
    files again are skipped, and new files from the core's own folder need no question."""
    project = tmp_path / "p.h5"
    a = small_core(tmp_path / "a", "SIM01-1", seed=1)
    b = small_core(tmp_path / "b", "SIM01-1", seed=2)
    assert cli.main(["import", str(a), "-p", str(project)]) == 0
    before = digest(project)
    capsys.readouterr()
    assert cli.main(["import", str(b), "-p", str(project)]) == 2
    err = capsys.readouterr().err
    assert "already has a core 'SIM01-1'" in err and "--append" in err and "--rename" in err
    assert str(a) in err and str(b) in err
    assert digest(project) == before
    with pytest.raises(importer.SameNameCoreError) as info:
        importer.import_folder(b, project)
    assert info.value.core == "SIM01-1" and info.value.existing == [str(a.resolve())]
    # --core EXISTING on another core's folder
    c = small_core(tmp_path / "c", "OTHER", seed=3)
    assert cli.main(["import", str(c), "-p", str(project), "--core", "SIM01-1"]) == 2
    assert digest(project) == before
    # the same files from a copy elsewhere: skipped, no question
    shutil.copytree(a, tmp_path / "copy" / "SIM01-1")
    rep = importer.import_folder(tmp_path / "copy" / "SIM01-1", project)
    assert rep.counts["skipped"] == 6 and rep.added == 0
    # a new file in the core's own folder: imported, no question
    write_spectrum(a, np.random.default_rng(9), core="SIM01-1", x=77)
    assert importer.import_folder(a, project).added == 1
    # --rename: a new core; --append: added to the existing one
    capsys.readouterr()
    assert cli.main(["import", str(b), "-p", str(project), "--rename", "SIM01-1b"]) == 0
    assert cli.main(["import", str(c), "-p", str(project), "--core", "SIM01-1", "--append"]) == 0
    with store.Project.open(project) as p:
        assert p.cores() == ["SIM01-1", "SIM01-1b"]
        assert p.n_spectra("SIM01-1", "10kV-Run1") == 6 + 1 + 6
        assert p.n_spectra("SIM01-1b", "10kV-Run1") == 6
        g = p._h5["cores/SIM01-1"]
        assert set(json.loads(g.attrs["origins"])) == {str(a.resolve()), str(c.resolve())}
        assert g.attrs["spectra_changed"]
    # --rename onto a name already in the project is refused too
    d = small_core(tmp_path / "d", "SIM01-1", seed=5)
    assert cli.main(["import", str(d), "-p", str(project), "--rename", "SIM01-1b"]) == 2


def test_same_name_check_works_on_projects_from_before_origins(tmp_path):
    """A project written before cores recorded their folders: the import log tells them."""
    project = tmp_path / "p.h5"
    a = small_core(tmp_path / "a", "C1", seed=1)
    importer.import_folder(a, project)
    with store.transaction(project) as p:
        del p._h5["cores/C1"].attrs["origins"]
    write_spectrum(a, np.random.default_rng(9), core="C1", x=77)
    assert importer.import_folder(a, project).added == 1
    with pytest.raises(importer.SameNameCoreError):
        importer.import_folder(small_core(tmp_path / "b", "C1", seed=2), project)


def test_appending_to_a_core_makes_its_predictions_stale(tmp_path):
    """Case: after two SIM01-1 cores merged, the old 300-row prediction still showed as current.
    An --append changes the run's content, so the stored prediction is reported stale."""
    import pandas as pd

    from xrfcore import predict
    project = tmp_path / "p.h5"
    importer.import_folder(small_core(tmp_path / "a", "SIM01-1", seed=1), project)
    with store.Project.open(project) as p:
        basis = p.run_content_id("SIM01-1", "10kV-Run1")
    with store.transaction(project) as w:
        w.write_predictions("SIM01-1", "m1", pd.DataFrame({"depth_mm": np.arange(6.0), "CaCO3": np.ones(6)}),
                            {"run": "10kV-Run1", "spectra_sha256": basis})
    assert predict.stale_reasons(project, "SIM01-1", "m1") == []
    importer.import_folder(small_core(tmp_path / "b", "SIM01-1", seed=2), project, append=True)
    (reason,) = predict.stale_reasons(project, "SIM01-1", "m1")
    assert reason.startswith("spectra changed")
