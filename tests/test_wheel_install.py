"""The wheel carries resources/ and models/: build it, install it into a fresh virtual environment
(no editable install, no checkout on the path), and predict on the bundled sample core with the
shipped default model. Slow (a venv, torch and the dependencies are installed): `-m slow`.

Needs pip to reach the package index (or a local wheel cache) for the dependencies; torch is
installed first as ``torch==2.13.0`` so the CPU build at hand is used (``XRFCORE_TEST_TORCH`` overrides).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from xrfcore.models_registry import DEFAULT_MODEL

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def run(cmd, cwd, env, timeout=900):
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def clean_copy(dst: Path) -> Path:
    """The working tree as git sees it (tracked + new files, nothing ignored): no build/ leftovers."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, files):
        src = REPO / os.fsdecode(f)
        if src.is_file():
            target = dst / os.fsdecode(f)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())
    return dst


def test_wheel_installs_and_predicts_on_the_sample_core(tmp_path):
    if not any((REPO / "models").glob("*.safetensors")):
        pytest.fail("models/ holds no model to ship")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "XRFCORE_MODELS", "XRFCORE_RESOURCES", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               XRFCORE_HOME=str(tmp_path / "home"), QT_QPA_PLATFORM="offscreen")
    src = clean_copy(tmp_path / "src")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", tmp_path / "wheel", src], tmp_path, env)
    wheel = next((tmp_path / "wheel").glob("xrfcore-*.whl"))

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path, env)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    bindir = py.parent
    run([py, "-m", "pip", "install", "-q", os.environ.get("XRFCORE_TEST_TORCH", "torch==2.13.0")], tmp_path, env)
    run([py, "-m", "pip", "install", "-q", wheel], tmp_path, env)

    work = tmp_path / "work"
    work.mkdir()
    where = run([py, "-c", "import xrfcore, xrfcore._paths as p, xrfcore.models_registry as r; "
                           "print(xrfcore.__file__); print(p.sample_core_dir()); print(r.default_model())"],
                work, env).split("\n")
    pkg, sample, model = (Path(x) for x in where[:3])
    for p in (pkg, sample, model):  # everything comes from the installed package, not the checkout
        assert venv in p.parents, p
    assert model.name == f"{DEFAULT_MODEL}.safetensors"
    labels = next(sample.rglob("*lab_samples.csv"))

    xrf = bindir / "xrfcore"
    run([xrf, "import", sample, "-p", "sample.h5"], work, env)
    run([xrf, "finetune", "-p", "sample.h5", "--labels", labels, "--model", model, "--mode", "head",
         "-o", "ft"], work, env)
    out = run([xrf, "predict", "ft", "-p", "sample.h5", "-o", "pred.csv"], work, env)
    assert "depths" in out
    text = (work / "pred.csv").read_text()
    assert "SIMULATED" in text  # provenance header says the data are simulated
    df = pd.read_csv(work / "pred.csv", comment="#")
    assert len(df) >= 250 and df["CaCO3"].notna().all() and df["CaCO3"].between(0, 100).all()
