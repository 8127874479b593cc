"""Reproduce the shipped default foundation model, models/xrfcore-tiny-sim-v3.

    .venv/bin/python packaging/make_default_model.py [--work DIR] [--stage all|simulate|pretrain|ship]
                                                     [--threads 2] [--device cpu] [--spectra N]

1. simulate: a SIMULATED archive (simulator v2, xrfcore/simulate/REALISM.md), 72,000 spectra from 9
   scanner heads (avaatech-a/b/c + 6 domain-randomised heads), 144 cores of 500 spectra, every site type (pelagic carbonate,
   hemipelagic, siliceous upwelling, mixed), seed 2026, written as raw Avaatech folders (no
   calibration in the files) and imported like a user's folder (calibrated at import):
       xrfcore simulate-archive -p DIR/archive.h5 --spectra 72000 --heads 9 --seed 2026
2. pretrain: the tiny masked autoencoder on the 0-10.24 keV window, log + per-spectrum z-score
   input (log_zscore), intensity/gain/offset/resolution augmentation on (the default), one
   uninterrupted 5,000-step run (warm-up, then cosine from 1e-3), nine whole cores (one per head) held out for the
   reconstruction loss. On a GPU use --device cuda; under torchrun it runs unchanged. Then the OOD
   reference (what the model knows) from the held-out cores: xrfcore models --add-ood-reference.
3. ship: the run's model.* -> models/xrfcore-tiny-sim-v3.safetensors + .json, the card completed
   with the archive's hash and the commands above. The markdown card (models/*.md) is written by hand
   from these numbers and the benchmarks (packaging/bench_default_model.py,
   tests/benchmarks/bench_recon_import.py).

v1 (mae-tiny-1637a90a94e3, z-scored counts, in the git history) was replaced because its features
carried little of the TOC signal: the z-score of raw counts is dominated by the largest peaks.
v2 (mae-tiny-391f6d13403f) was trained on records with each head's exact calibration, without
augmentation: the heads' gain/offset spread never reached it (issue 10). v2c (mae-tiny-d7ee2c2570ed)
was v2 read through the import path with augmentation, on simulator v1. v3: simulator v2 (S, Cl,
incomplete charge collection, partial pile-up, tube intensity; issue 12), 9 heads, intensity augmentation.

Floating-point results differ slightly between CPUs, thread counts and torch builds, so a rerun
gives a model of the same quality, not the same bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = "xrfcore-tiny-sim-v3"      # shipped as models/<NAME>.safetensors + .json
FOLDER = "v3"                   # the training run's folder under --work
SEED_ARCHIVE = 2026
SPECTRA, HEADS = 72000, 9
STEPS, LR, TRANSFORM = 5000, "1e-3", "log_zscore"


def val_cores(spectra: int = SPECTRA, heads: int = HEADS) -> list[str]:
    """The last core of each head (the archive numbers cores head by head, 500 spectra a core)."""
    from xrfcore.simulate.archive import CORE_SPECTRA

    out, no = [], 0
    for h in range(heads):
        per_head = spectra // heads + (1 if h < spectra % heads else 0)
        no += -(-per_head // CORE_SPECTRA)
        out.append(f"SIMA{no:04d}-1")
    return out


VAL_CORES = val_cores()   # SIMA0016-1, SIMA0032-1, ... SIMA0144-1


def simulate_cmd(work: Path, spectra: int = SPECTRA) -> list[str]:
    return ["xrfcore", "simulate-archive", "-p", str(work / "archive.h5"), "--spectra", str(spectra),
            "--heads", str(HEADS), "--seed", str(SEED_ARCHIVE)]


def pretrain_cmd(work: Path, threads: int, device: str, spectra: int = SPECTRA) -> list[str]:
    return ["xrfcore", "pretrain", "-p", str(work / "archive.h5"), "-o", str(work / FOLDER),
            "--size", "tiny", "--window-channels", "512", "--steps", str(STEPS), "--batch-size", "64",
            "--lr", LR, "--mask-ratio", "0.5", "--transform", TRANSFORM, "--seed", "0",
            "--threads", str(threads), "--device", device, "--checkpoint-every", "100", "--log-every", "10",
            "--val-cores", *val_cores(spectra)]


def ood_cmd(work: Path, spectra: int = SPECTRA) -> list[str]:
    """What the model knows (xrfcore/ood.py), measured on the held-out cores, written beside it."""
    return ["xrfcore", "models", "--add-ood-reference", str(work / FOLDER / "model"), "-p", str(work / "archive.h5"),
            "--val-cores", *val_cores(spectra)]


def sh(cmd: list[str]) -> None:
    exe = Path(sys.executable).with_name(cmd[0])
    cmd = [str(exe) if exe.exists() else cmd[0]] + cmd[1:]
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def archive_summary(path: Path) -> dict:
    """Spectra and cores of the archive, read from the project (no torch)."""
    from xrfcore.store import Project

    n, cores = 0, 0
    with Project.open(path) as p:
        for core in p.cores():
            cores += 1
            for run in p.runs(core):
                n += len(p.read_run(core, run))
    return {"spectra": n, "cores": cores}


def val_loss_by_core(mae, card: dict, archive: Path) -> dict:
    """The card's val_loss per held-out core (with its head), so a benchmark on one head compares
    with that head's figure, not the six-head mean."""
    import numpy as np
    import torch

    from xrfcore.model.transforms import from_dict, window
    from xrfcore.train.data import load_project
    from xrfcore.train.pretrain import evaluate

    cores = card["data"]["val_cores"]
    heads = card["data"]["archive"]["heads"]
    d = load_project(archive, mae.cfg, cores=cores)
    tr, out = from_dict(card["transform"]), {}
    for i, c in enumerate(cores):   # VAL_CORES: the last core of each head, in head order
        Z = torch.from_numpy(tr.apply(window(np.asarray(d.counts[d.core == c]), mae.cfg)))
        out[c] = {"head": heads[i], "n": len(Z),
                  "val_loss": evaluate(mae, Z, card["metrics"]["mask_ratio"], 256)}
    return out


def ship(work: Path, threads: int, device: str, hardware_note: str, out: Path) -> Path:
    from xrfcore.model import checkpoint

    run = work / FOLDER
    _, card = checkpoint.load(run / "model")  # weights checked against their card
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{NAME}.safetensors"
    tmp = weights.with_suffix(".tmp")
    shutil.copyfile(run / "model.safetensors", tmp)
    os.replace(tmp, weights)
    assert sha256(weights) == card["weights_sha256"]
    if card.get("ood_reference"):  # its OOD arrays (xrfcore/ood.py) go beside it, named after it
        shutil.copyfile(run / card["ood_reference"]["file"], out / f"{NAME}.ood.safetensors")
        card["ood_reference"]["file"] = f"{NAME}.ood.safetensors"
    archive = work / "archive.h5"
    card["name"] = NAME
    card["weights_file"] = weights.name
    card["description"] = ("Default xrfcore foundation model: a tiny masked-autoencoder ViT pretrained by masked "
                           "spectrum modeling on SIMULATED Avaatech 10 kV spectra (0-10.24 keV), log + z-score input, "
                           "read through the import path (raw folders, energy calibration at import) with "
                           "intensity/gain/offset/resolution augmentation. It has never "
                           "seen a real spectrum. Fine-tune it on your own labelled samples; pretrain on your "
                           f"own archive for a real foundation model. Card for people: {NAME}.md")
    card["data"]["project"] = "archive.h5 (simulated; see data.archive)"
    card["data"]["archive"] = {
        "command": " ".join(["xrfcore"] + simulate_cmd(Path("."))[1:]),
        "path": "raw Avaatech folders (no calibration in the files) imported with import_folder, "
                "calibrated per run and spectrum at import",
        "file": "archive.h5", "file_sha256": sha256(archive), **archive_summary(archive),
        "heads": ["avaatech-a", "avaatech-b", "avaatech-c"][:HEADS] + [f"sim-head-{i:02d}" for i in range(4, HEADS + 1)],
        "site_types": ["pelagic carbonate", "hemipelagic", "siliceous upwelling", "mixed"],
        "seed": SEED_ARCHIVE,
    }
    w = Path("scratch/pretrain")
    card["reproduce"] = {
        "script": f"packaging/make_default_model.py --threads {threads} --device {device}",
        "simulate": " ".join(simulate_cmd(w)),
        "pretrain": " ".join(pretrain_cmd(w, threads, device)),
        "ood_reference": " ".join(ood_cmd(w)),
        "benchmark": "packaging/bench_default_model.py (tests/benchmarks/bench_accuracy.py with this model)",
    }
    card["metrics"]["val_loss_by_core"] = val_loss_by_core(checkpoint.load(run / "model")[0], card, archive)
    card["hardware"] = {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "torch_threads": threads,
                        "device": card["training"]["device"], "note": hardware_note}
    checkpoint.write_json(out / f"{NAME}.json", card)
    checkpoint.load(out / NAME)  # the shipped pair loads and its hash matches
    print(f"shipped {weights} ({weights.stat().st_size / 2**20:.1f} MiB), id {card['id']}")
    return weights


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(REPO / "scratch" / "pretrain"))
    ap.add_argument("--stage", default="all", choices=("all", "simulate", "pretrain", "ship"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--hardware-note", default="")
    ap.add_argument("--models", default=str(REPO / "models"), help="where to ship it (default models/)")
    ap.add_argument("--spectra", type=int, default=SPECTRA,
                    help=f"archive size (default {SPECTRA}; smaller only to test the script, never to ship)")
    a = ap.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    if a.spectra != SPECTRA and a.stage in ("all", "ship"):
        ap.error("--spectra other than the default is for testing the simulate/pretrain stages, not for shipping")
    if a.stage in ("all", "simulate") and not (work / "archive.h5").exists():
        sh(simulate_cmd(work, a.spectra))
    if a.stage in ("all", "pretrain"):
        sh(pretrain_cmd(work, a.threads, a.device, a.spectra))
        sh(ood_cmd(work, a.spectra))
    if a.stage in ("all", "ship"):
        ship(work, a.threads, a.device, a.hardware_note, Path(a.models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
