"""Store benchmark (issue 15 items 3-5): import speed and memory, appending to a big core, small writes.

Every measurement runs in a fresh process per code tree (``--tree NEW`` and, with ``--ref-tree``,
e.g. the landed main, side by side in the same run), so peak RSS is the import's own:

  1. import of N files (N = 1k / 5k / 20k; raw folders written by ``xrfcore simulate``, 1 mm
     steps) with ``import_folder`` in one process: ms/file wall against the parse ceiling (read the
     bytes, numpy-parse the number block) of the same files in the same run; peak RSS.
  2. adding 300 files (a deeper stretch of the same simulated core, ``--append``) to the N-file core,
     against the same 300 files imported as a new core into the same project (``--rename``).
  3. a small write (store a lab table; store one core's predictions) into a project of 1k / 10k /
     50k (/ 200k) spectra, against copy + fsync of that project file.

    PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_store.py [--quick] [--ref-tree /work/main]
        [--out tests/benchmarks/results/store.md]

--quick: 1k / 5k imports, 300 added to the 5k core, small writes at 1k / 10k / 50k (< 10 min).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

WORKER = r"""
import json, os, resource, sys, time, shutil
from pathlib import Path
job = json.loads(sys.argv[1])
out = {}
if job["what"] == "import":
    from xrfcore import importer, calibration   # noqa: F401  (lazy imports, e.g. scipy, before timing)
    import scipy.ndimage  # noqa: F401
    t = time.perf_counter()
    rep = importer.import_folder(job["folder"], job["project"], workers=1, append=job.get("append", False),
                                 rename=job.get("rename"))
    out["wall"] = time.perf_counter() - t
    out["added"] = rep.added
elif job["what"] == "ceiling":
    import numpy as np
    paths = [os.path.join(d, f) for d, _, fs in os.walk(job["folder"]) for f in fs if f.endswith(".spe")]
    for p in paths:                                          # page cache
        Path(p).read_bytes()
    t = time.perf_counter()
    for p in paths:
        raw = Path(p).read_bytes()
        k = raw.index(b"$DATA:")
        k = raw.index(b"\n", raw.index(b"\n", k) + 1)
        np.fromstring(raw[k:], dtype=np.int64, sep=" ")
    out["wall"] = time.perf_counter() - t
    out["files"] = len(paths)
elif job["what"] == "small":
    import numpy as np, pandas as pd
    from xrfcore import store
    proj = Path(job["project"])
    n = 200
    lab = pd.DataFrame({"core": ["B0"] * n, "top_mm": np.arange(n) * 10.0, "bottom_mm": np.arange(n) * 10.0 + 5,
                        "CaCO3": np.linspace(0, 90, n), "TOC": np.linspace(0, 3, n), "source_file": "lab.csv"})
    pred = pd.DataFrame({"core": "B0", "depth_mm": np.arange(1000.0), "CaCO3": np.linspace(0, 90, 1000),
                         "CaCO3_lo": 0.0, "CaCO3_hi": 1.0, "ood_flag": False, "model_id": "m"})
    times = {"labels": [], "predictions": [], "copy_fsync": []}
    for i in range(job["repeats"]):
        t = time.perf_counter()
        with store.transaction(proj) as w:
            w.write_labels(lab.assign(CaCO3=lab["CaCO3"] + i), {"files": {}})
        times["labels"].append(time.perf_counter() - t)
        t = time.perf_counter()
        with store.transaction(proj) as w:
            w.write_predictions("B0", "m", pred.assign(CaCO3=pred["CaCO3"] + i), {"model_id": "m"})
        times["predictions"].append(time.perf_counter() - t)
        t = time.perf_counter()
        tmp = proj.with_name(proj.name + ".copy")
        shutil.copyfile(proj, tmp)
        fd = os.open(tmp, os.O_RDONLY); os.fsync(fd); os.close(fd)
        os.unlink(tmp)
        times["copy_fsync"].append(time.perf_counter() - t)
    out = {k: min(v) for k, v in times.items()}
    out["size_mb"] = proj.stat().st_size / 1e6
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(out))
"""

BUILD = r"""
import json, sys
import numpy as np
from xrfcore import store
from xrfcore.io.records import SpectrumRecord
path, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
e = np.arange(2048) * 0.02
shape = 20 * np.exp(-e / 3) + 3000 * np.exp(-0.5 * ((e - 3.69) / 0.08) ** 2) + 800 * np.exp(-0.5 * ((e - 6.4) / 0.09) ** 2)
with store.transaction(path) as w:
    for b0 in range(0, n, 2000):
        core = f"B{b0 // 10000}"
        recs = [SpectrumRecord(counts=rng.poisson(shape).astype(np.int32), source_path=f"{core}/{i}.spe",
                               sha256=f"{i:064d}", scanner="simulated avaatech", core=core,
                               depth_mm=float(i % 10000), position_mm=float(i % 10000), kv=10.0, run=1)
                for i in range(b0, min(n, b0 + 2000))]
        w.write_run(core, "10kV-Run1", recs, finalize=False)
"""


def run_job(tree: Path, job: dict, timeout: int = 1800) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "XRFCORE_IMPORT_WORKERS": "1"}
    r = subprocess.run([sys.executable, "-c", WORKER, json.dumps(job)], capture_output=True, text=True,
                       env=env, timeout=timeout, cwd=str(tree))
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if r.returncode or line is None:
        raise RuntimeError(f"{tree}: {job['what']} failed: {r.stderr[-2000:]}")
    return json.loads(line[7:])


def simulate(folder: Path, n: int, seed: int = 1) -> None:
    """One simulated core of n + 300 files at 1 mm; the deepest 300 moved to folder/../add300."""
    if folder.exists():
        return
    length = (n + 300) / 1000.0
    subprocess.run([sys.executable, "-m", "xrfcore", "simulate", "-o", str(folder), "--length-m", f"{length:g}",
                    "--step-mm", "1", "--seed", str(seed)], check=True, cwd=str(REPO), capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    spes = sorted(folder.rglob("*.spe"), key=lambda p: p.stat().st_mtime_ns)
    files = sorted(spes, key=lambda p: p.name)
    # the deepest 300 by the simulator's depth order (file names carry section and position)
    from xrfcore.io import avaatech
    files.sort(key=lambda p: avaatech.read_record(p, folder).depth_mm)
    add = folder.parent / f"add300-{n}"
    for p in files[n:]:
        dst = add / p.relative_to(folder)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, dst)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} on {os.cpu_count()} CPUs"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tree", default=str(REPO), help="code tree measured (default: this one)")
    ap.add_argument("--ref-tree", help="a second code tree measured side by side (e.g. the landed main)")
    ap.add_argument("--work", help="folder for data (kept; reused when it exists)")
    ap.add_argument("--out", default=str(HERE / "results" / "store.md"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    sizes = [1000, 5000] if args.quick else [1000, 5000, 20000]
    small = [1000, 10000, 50000] if args.quick else [1000, 10000, 50000, 200000]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="xrfcore-bench-store-"))
    work.mkdir(parents=True, exist_ok=True)
    trees = [("new", Path(args.tree))] + ([("ref", Path(args.ref_tree))] if args.ref_tree else [])
    lines = [f"# Store benchmark ({'quick' if args.quick else 'full'})", "",
             f"`{' '.join(['python tests/benchmarks/bench_store.py'] + (argv if argv is not None else sys.argv[1:]))}`"
             f"; {time.strftime('%Y-%m-%d %H:%M')}; {load()}; trees: "
             + ", ".join(f"{k} = {v}" for k, v in trees), ""]

    def emit(s=""):
        print(s, flush=True)
        lines.append(s)

    emit("## 1. import: ms/file against the parse ceiling, peak RSS")
    emit("")
    emit("| files | tree | ceiling ms/file | import ms/file | ceiling / import | peak RSS MB |")
    emit("|---|---|---|---|---|---|")
    for n in sizes:
        folder = work / f"sim{n}"
        simulate(folder, n)
        for name, tree in trees:
            ceil = run_job(tree, {"what": "ceiling", "folder": str(folder)})
            proj = work / f"p{n}-{name}.h5"
            if proj.exists():
                proj.unlink()
            imp = run_job(tree, {"what": "import", "folder": str(folder), "project": str(proj)})
            assert imp["added"] == n, imp
            c, i = 1e3 * ceil["wall"] / ceil["files"], 1e3 * imp["wall"] / n
            emit(f"| {n} | {name} | {c:.3f} | {i:.3f} | {100 * c / i:.0f} % | {imp['maxrss_mb']:.0f} |")
    emit("")
    emit(f"## 2. adding 300 files to the {sizes[-1]}-file core against a new 300-file core (same project)")
    emit("")
    emit("| tree | add 300 s | peak MB | new 300-file core s | peak MB | add / new |")
    emit("|---|---|---|---|---|---|")
    n = sizes[-1]
    for name, tree in trees:
        base = work / f"p{n}-{name}.h5"
        res = {}
        for mode in ("append", "rename"):
            proj = work / f"p{n}-{name}-{mode}.h5"
            shutil.copyfile(base, proj)
            job = {"what": "import", "folder": str(work / f"add300-{n}"), "project": str(proj)}
            job.update({"append": True} if mode == "append" else {"rename": "NEW300"})
            res[mode] = run_job(tree, job)
            assert res[mode]["added"] == 300, res[mode]
            proj.unlink()
            shutil.rmtree(proj.with_name(proj.name + ".parts"), ignore_errors=True)
        a, r = res["append"], res["rename"]
        emit(f"| {name} | {a['wall']:.2f} | {a['maxrss_mb']:.0f} | {r['wall']:.2f} | {r['maxrss_mb']:.0f} | "
             f"{a['wall'] / r['wall']:.2f} x |")
    emit("")
    emit(f"## 3. small writes (min of {args.repeats}) against copy + fsync of the project file")
    emit("")
    emit("| spectra | file MB | tree | lab samples ms | one core's predictions ms | copy+fsync ms | "
         "labels / copy | predictions / copy |")
    emit("|---|---|---|---|---|---|---|---|")
    for n in small:
        src = work / f"small{n}.h5"
        if not src.exists():
            subprocess.run([sys.executable, "-c", BUILD, str(src), str(n)], check=True, cwd=str(REPO),
                           env={**os.environ, "PYTHONPATH": str(REPO)})
        for name, tree in trees:
            proj = work / f"small{n}-{name}.h5"
            shutil.copyfile(src, proj)
            r = run_job(tree, {"what": "small", "project": str(proj), "repeats": args.repeats})
            emit(f"| {n} | {r['size_mb']:.0f} | {name} | {1e3 * r['labels']:.1f} | {1e3 * r['predictions']:.1f} | "
                 f"{1e3 * r['copy_fsync']:.1f} | {r['labels'] / r['copy_fsync']:.2f} | "
                 f"{r['predictions'] / r['copy_fsync']:.2f} |")
            proj.unlink()
            shutil.rmtree(proj.with_name(proj.name + ".parts"), ignore_errors=True)
    emit("")
    emit(f"{load()} at the end")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
