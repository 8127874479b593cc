"""Issue 11, part A: outputs, model folders, interrupts, model-folder security, CLI misuse.

Each test is built from a case found by fault injection (see the issue): the command line that lost
or damaged data, the crafted model folder that was loaded, the misuse that was accepted.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_finetune import CH, base_path, micro_cfg, synthetic  # noqa: F401  (fixture)
from tests.test_predict import lab_csv, make_project
from xrfcore import store
from xrfcore.cli import main
from xrfcore.model import checkpoint as ck
from xrfcore.train import finetune as ft

REPO = Path(__file__).resolve().parents[1]


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def folder_state(folder) -> dict:
    return {p.name: sha(p) for p in sorted(Path(folder).iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, base_path):  # noqa: F811
    """A project with 3 labelled cores, its lab table and a fine-tuned (head) model folder."""
    d = tmp_path_factory.mktemp("faults")
    proj = d / "P.h5"
    truth = make_project(proj, n=60)
    lab = lab_csv(d / "lab.csv", truth)
    model = d / "model"
    ft.finetune_project(proj, lab, base_path, model, mode="head", device="cpu")
    return {"dir": d, "project": proj, "lab": lab, "model": model, "base": base_path}


def copy_model(world, tmp_path, name="m") -> Path:
    dst = tmp_path / name
    shutil.copytree(world["model"], dst)
    return dst


def edit_card(folder, fn) -> None:
    p = Path(folder) / "model.json"
    card = json.loads(p.read_text())
    fn(card)
    p.write_text(json.dumps(card))


def no_staging_left(parent) -> bool:
    return not [p for p in Path(parent).iterdir() if p.name.startswith(".") and (".part-" in p.name or ".old-" in p.name)]


# ---------------------------------------------------------------------------------------- case 1
@pytest.mark.parametrize("argv", [
    ["export-spectra", "{P}", "--core", "K1", "-o", "{OUT}"],
    ["import", "{raw}", "-p", "{P}", "--report", "{OUT}"],
    ["export", "-p", "{P}", "--core", "K1", "--model", "x", "-o", "{OUT}"],
    ["reconstruct", "{model}", "-p", "{P}", "--core", "K1", "--depth", "10", "-o", "{OUT}"],
], ids=["export-spectra", "import-report", "export", "reconstruct"])
def test_outputs_never_overwrite_the_project(world, tmp_path, capsys, argv):
    """`-o P.h5` / `--report P.h5` overwrote the project; now refused before any work, even with
    --force, also through a link to the project."""
    proj = tmp_path / "P.h5"
    shutil.copy(world["project"], proj)
    (tmp_path / "raw").mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(proj)
    before = sha(proj)
    for target in (proj, link):
        args = [a.format(P=proj, OUT=target, raw=tmp_path / "raw", model=world["model"]) for a in argv]
        for extra in ([], ["--force"]):
            assert main(args + extra) == 2, args + extra
            err = capsys.readouterr().err
            assert "would overwrite the input" in err and len(err.strip().splitlines()) == 1, err
            assert sha(proj) == before


def test_existing_output_files_need_force(world, tmp_path, capsys):
    out = tmp_path / "spectra.csv"
    out.write_text("my notes\n")
    assert main(["export-spectra", str(world["project"]), "--core", "K1", "-o", str(out)]) == 2
    assert "already exists; use --force" in capsys.readouterr().err
    assert out.read_text() == "my notes\n"
    assert main(["export-spectra", str(world["project"]), "--core", "K1", "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith("# xrfcore")


# ---------------------------------------------------------------------------------------- case 2
def test_atomic_dir_keeps_the_old_folder_on_any_failure(tmp_path):
    from xrfcore.fileio import atomic_dir

    target = tmp_path / "m"
    target.mkdir()
    (target / "model.json").write_text("old")
    (target / "notes.txt").write_text("mine")
    for exc in (KeyboardInterrupt, RuntimeError):
        with pytest.raises(exc):
            with atomic_dir(target, keep=lambda n: n == "notes.txt") as stage:
                (stage / "calibration.safetensors").write_text("half")
                raise exc()
        assert folder_state(target) == {"model.json": sha(target / "model.json"), "notes.txt": sha(target / "notes.txt")}
        assert (target / "model.json").read_text() == "old" and no_staging_left(tmp_path)
    with atomic_dir(target, keep=lambda n: n == "notes.txt") as stage:
        (stage / "model.json").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["model.json", "notes.txt"]
    assert (target / "model.json").read_text() == "new" and no_staging_left(tmp_path)


def test_finetune_onto_an_existing_model_needs_force(world, tmp_path, capsys):
    """`finetune -o` onto a model folder overwrote it without a word; the base model folder, the
    project and the lab table are refused as -o outright."""
    out = copy_model(world, tmp_path)
    (out / "notes.txt").write_text("mine")
    before = folder_state(out)
    common = ["finetune", "-p", str(world["project"]), "--labels", str(world["lab"]), "--model",
              str(world["base"]), "--device", "cpu", "--no-store-labels"]
    assert main(common + ["-o", str(out)]) == 2
    assert "already holds a model" in capsys.readouterr().err and folder_state(out) == before
    for bad in (world["base"].parent, world["project"], world["lab"]):
        assert main(common + ["-o", str(bad), "--force"]) == 2
        assert "would overwrite the input" in capsys.readouterr().err
    old_id = json.loads((out / "model.json").read_text())["id"]
    assert main(common + ["-o", str(out), "--force", "--seed", "1"]) == 0
    card = json.loads((out / "model.json").read_text())
    assert (out / "notes.txt").read_text() == "mine"  # the user's file is carried over
    ft.Predictor(out, device="cpu")  # complete and consistent
    assert card["id"] != old_id or card["created"] and no_staging_left(tmp_path)
    # the core API refuses too (the app picks a fresh folder name instead)
    from xrfcore.outputs import OutputRefused, fresh_folder
    with pytest.raises(OutputRefused, match="already holds a model"):
        ft.finetune_project(world["project"], world["lab"], world["base"], out, store_labels=False)
    assert fresh_folder(tmp_path, "m") == tmp_path / "m-2"


def test_interrupt_while_saving_keeps_the_old_model(world, tmp_path, monkeypatch):
    """Ctrl-C between the calibration file and the weights left a half-written folder; now the old
    model is untouched and no staging folder is left."""
    out = copy_model(world, tmp_path)
    before = folder_state(out)
    real = ck.save

    def save_then_interrupt(path, *a, **k):
        r = real(path, *a, **k)  # base_mae (and calibration, ood arrays) written, model not yet
        raise KeyboardInterrupt
    monkeypatch.setattr(ck, "save", save_then_interrupt)
    X, y, g = synthetic(40, seed=3)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(world["base"], X, y, groups=g, mode="head", out=out, overwrite=True, device="cpu")
    assert folder_state(out) == before and no_staging_left(tmp_path)
    with pytest.raises(KeyboardInterrupt):  # a new folder: absent, not half-written
        ft.finetune(world["base"], X, y, groups=g, mode="head", out=tmp_path / "new", device="cpu")
    assert not (tmp_path / "new").exists() and no_staging_left(tmp_path)


def test_interrupted_pretraining_keeps_the_previous_model(tmp_path, monkeypatch):
    from xrfcore.train import pretrain as pt

    X, _, _ = synthetic(64, seed=1)
    out = tmp_path / "pre"
    tc = pt.TrainConfig(steps=4, batch_size=16, out_dir=str(out), device="cpu", checkpoint_every=2, log_every=1)
    pt.pretrain(X, micro_cfg(), tc)
    before = folder_state(out)
    real = ck.save

    def save_then_interrupt(path, *a, **k):
        real(path, *a, **k)
        raise KeyboardInterrupt
    monkeypatch.setattr(ck, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        pt.pretrain(X, micro_cfg(), pt.TrainConfig(steps=6, batch_size=16, out_dir=str(out), device="cpu",
                                                    checkpoint_every=2, seed=5, log_every=1))
    after = folder_state(out)
    for name in ("model.json", "model.safetensors", "model.ood.safetensors"):
        assert after[name] == before[name], name  # the model set is the old one, whole
    ck.load(out / "model")
    assert no_staging_left(tmp_path)
    # the run's own checkpoint (for --resume) was written during training as before
    assert after["checkpoint.safetensors"] != before["checkpoint.safetensors"]


# ------------------------------------------------------------------------------------- case 2 + 3
# a shell starts background jobs with SIGINT ignored: restore what a terminal user's process has
SIGINT_AS_IN_A_TERMINAL = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
SELF_SIGNAL = SIGINT_AS_IN_A_TERMINAL + """
import os, signal, sys
from xrfcore.model import checkpoint as ck
real = ck.save
def save(path, *a, **k):
    r = real(path, *a, **k)
    if os.path.basename(str(path)) == "base_mae":   # half the model folder is written
        os.kill(os.getpid(), signal.{sig})
    return r
ck.save = save
from xrfcore.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("XRFCORE_PROGRESS_SECONDS", None)
    return env


@pytest.mark.parametrize("sig,code,word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_signal_while_the_model_is_saved(world, tmp_path, sig, code, word):
    """A real SIGINT / SIGTERM reaching `xrfcore finetune --force` while it writes the model folder:
    one-line message, exit 130 / 143, the previous good model intact, nothing half-written."""
    out = copy_model(world, tmp_path)
    before = folder_state(out)
    r = subprocess.run([sys.executable, "-c", SELF_SIGNAL.format(sig=sig), "finetune", "-p", str(world["project"]),
                        "--labels", str(world["lab"]), "--model", str(world["base"]), "--device", "cpu",
                        "--no-store-labels", "-o", str(out), "--force"],
                       capture_output=True, text=True, timeout=600, env=_env(), cwd=tmp_path)
    assert r.returncode == code, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"xrfcore finetune: {word}") and "half-written" in last and "nothing was changed" not in last
    assert folder_state(out) == before and no_staging_left(tmp_path)
    ft.Predictor(out, device="cpu")


def test_ctrl_c_at_a_random_moment_of_finetune(world, tmp_path):
    """External SIGINT while `xrfcore finetune` runs into a new folder: the folder is absent or complete."""
    out = tmp_path / "new"
    run_cli = SIGINT_AS_IN_A_TERMINAL + "import runpy; runpy.run_module('xrfcore', run_name='__main__')"
    p = subprocess.Popen([sys.executable, "-c", run_cli, "finetune", "-p", str(world["project"]),
                          "--labels", str(world["lab"]), "--model", str(world["base"]), "--device", "cpu",
                          "--no-store-labels", "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    line = p.stdout.readline()  # "pretrained model: ..." : the work has started
    assert "pretrained model" in line
    time.sleep(np.random.default_rng().uniform(0.0, 1.5))
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=600)
    assert p.returncode in (0, 130), err[-2000:]
    if p.returncode == 130:
        assert "interrupted" in err.strip().splitlines()[-1]
    if out.exists():
        ft.Predictor(out, device="cpu")
    assert no_staging_left(tmp_path)


# ---------------------------------------------------------------------------------------- case 4
def test_card_files_must_lie_inside_the_model_folder(world, tmp_path):
    outside = tmp_path / "evil.safetensors"
    shutil.copy(world["model"] / "calibration.safetensors", outside)
    for name in ("../evil.safetensors", str(outside)):
        m = copy_model(world, tmp_path, "m" + str(len(name)))
        edit_card(m, lambda c: c["calibration_file"].update(file=name))
        with pytest.raises(ValueError, match="outside the model folder"):
            ft.Predictor(m, device="cpu")
    m = copy_model(world, tmp_path, "link")  # a link inside the folder that leads out of it
    (m / "calibration.safetensors").unlink()
    (m / "calibration.safetensors").symlink_to(outside)
    with pytest.raises(ValueError, match="outside the model folder"):
        ft.Predictor(m, device="cpu")
    m = copy_model(world, tmp_path, "mae")
    edit_card(m, lambda c: c["ood"].update(mae_file="../../base/base"))
    with pytest.raises(ValueError, match="outside the model folder"):
        ft.Predictor(m, device="cpu")
    m = copy_model(world, tmp_path, "ood")
    edit_card(m, lambda c: c["ood"]["file"].update(file="/etc/passwd"))
    with pytest.raises(ValueError, match="outside the model folder"):
        ft.Predictor(m, device="cpu")


def test_altered_calibration_file_is_refused(world, tmp_path):
    """A calibration file altered x50 was used for the intervals; the card's hash is now checked."""
    from safetensors.numpy import load_file, save_file

    m = copy_model(world, tmp_path)
    f = m / "calibration.safetensors"
    save_file({k: v * 50 for k, v in load_file(str(f)).items()}, str(f))
    with pytest.raises(ValueError, match="calibration file does not match the model card"):
        ft.Predictor(m, device="cpu")
    # an older card without the hash: used, with a warning
    edit_card(m, lambda c: c["calibration_file"].pop("sha256"))
    with pytest.warns(UserWarning, match="no hash for its calibration file"):
        ft.Predictor(m, device="cpu")
    # the autoencoder behind the OOD score is vouched for by the regressor's card
    m2 = copy_model(world, tmp_path, "m2")
    assert json.loads((m2 / "model.json").read_text())["ood"]["mae_weights_sha256"]
    edit_card(m2, lambda c: c["ood"].update(mae_weights_sha256="0" * 64))
    with pytest.raises(ValueError, match="autoencoder is not the one"):
        ft.Predictor(m2, device="cpu")


def test_non_finite_weights_are_refused(world, tmp_path):
    """A head of NaN weights predicted NaN; now refused on load, naming the file."""
    from safetensors.torch import load_file, save_file

    m = copy_model(world, tmp_path)
    w = m / "model.safetensors"
    sd = load_file(str(w))
    sd["fc.0.weight"][0, 0] = float("nan")
    save_file(sd, str(w), metadata={"format": "pt"})
    edit_card(m, lambda c: c.update(weights_sha256=ck.sha256_file(w)))  # a model saved that way
    with pytest.raises(ValueError, match=r"model.safetensors: weights entry 'fc.0.weight' holds NaN"):
        ft.Predictor(m, device="cpu")


@pytest.mark.parametrize("field,value", [("depth", 10_000), ("embed_dim", 1_000_000), ("channels", 10 ** 9),
                                         ("num_heads", "3"), ("mlp_ratio", 1e6)])
def test_huge_architecture_refused_before_allocation(world, tmp_path, field, value):
    m = copy_model(world, tmp_path)
    edit_card(m, lambda c: c["config"].update({field: value}))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="model architecture"):
        ck.load(m / "model", verify=False)
    assert time.perf_counter() - t0 < 5


def _in_thread(fn, timeout=20):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "hung"
    return box


def test_special_model_files_are_refused_unread(world, tmp_path):
    """A model file that is a link to /dev/zero, or a FIFO, hung the loader."""
    m = copy_model(world, tmp_path, "zero")
    (m / "model.safetensors").unlink()
    (m / "model.safetensors").symlink_to("/dev/zero")
    box = _in_thread(lambda: ck.load(m / "model"))
    assert isinstance(box.get("error"), ValueError) and "outside the model folder" in str(box["error"])
    m = copy_model(world, tmp_path, "fifo")
    (m / "calibration.safetensors").unlink()
    os.mkfifo(m / "calibration.safetensors")
    box = _in_thread(lambda: ft.Predictor(m, device="cpu"))
    assert isinstance(box.get("error"), ValueError) and "not a regular file" in str(box["error"])
    m = copy_model(world, tmp_path, "card")
    (m / "model.json").unlink()
    os.mkfifo(m / "model.json")
    box = _in_thread(lambda: ck.load_card(m / "model"))
    assert isinstance(box.get("error"), ValueError) and "not a regular file" in str(box["error"])


# ---------------------------------------------------------------------------------------- case 5
def test_torch_floor_closes_the_weights_only_bypass():
    text = (REPO / "pyproject.toml").read_text()
    assert '"torch>=2.6,<2.14"' in text


# ---------------------------------------------------------------------------------------- case 6
@pytest.mark.parametrize("argv", [
    ["finetune", "-p", "p.h5", "--labels", "l.csv", "-o", "m", "--epochs", "-5"],
    ["finetune", "-p", "p.h5", "--labels", "l.csv", "-o", "m", "--batch-size", "0"],
    ["finetune", "-p", "p.h5", "--labels", "l.csv", "-o", "m", "--lr", "-1e-3"],
    ["pretrain", "-p", "p.h5", "-o", "m", "--steps", "0"],
    ["pretrain", "-p", "p.h5", "-o", "m", "--epochs", "-1"],
    ["pretrain", "-p", "p.h5", "-o", "m", "--mask-ratio", "1.5"],
    ["simulate", "-o", "x", "--cores", "-2"],
    ["simulate-archive", "-p", "x.h5", "--spectra", "0"],
])
def test_negative_and_zero_numbers_are_refused(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "error: argument" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_predict_on_a_project_without_cores_says_so(world, tmp_path, capsys):
    proj = tmp_path / "empty.h5"
    store.Project.create(proj).close()
    assert main(["predict", str(world["model"]), "-p", str(proj), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "has no cores yet" in err and len(err.strip().splitlines()) == 1


def test_predict_progress_covers_every_phase(world, tmp_path, capsys, monkeypatch):
    """The bar reached 100 % after the first of four passes; piped output showed no progress."""
    from xrfcore import predict

    proj = tmp_path / "P.h5"
    shutil.copy(world["project"], proj)
    calls = []
    predict.predict_core(proj, "K1", world["model"], device="cpu", progress=lambda d, t, m="": calls.append((d, t, m)))
    frac = [d / t for d, t, _ in calls]
    assert frac == sorted(frac) and frac[-1] == 1.0
    after_prediction = max(d / t for d, t, m in calls if m == "predicting")
    assert after_prediction <= 0.5  # the OOD passes (3 reconstructions) come after it
    assert any("out-of-distribution" in m for *_, m in calls)
    # stderr is not a terminal here: plain progress lines instead of a bar
    monkeypatch.setenv("XRFCORE_PROGRESS_SECONDS", "0")
    assert not sys.stderr.isatty()
    assert main(["predict", str(world["model"]), "-p", str(proj), "--core", "K2", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("predict K2: ")]
    assert len(lines) >= 3 and lines[-1] == "predict K2: done" and "%" in lines[0]
