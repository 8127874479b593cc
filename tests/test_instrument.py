"""Instrument check (xrfcore.instrument): tube anode from the spectrum lines on the real Itrax files
(Mo, 30 kV; skipped when ../shared is absent) and on simulated Avaatech cores (Rh, 10 kV); what a
model card says it was trained for; predict / fine-tune refuse a run from another instrument
unless allowed; the share of counts outside the model's window is always reported."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_finetune import CH, base_path  # noqa: F401  (fixture)
from tests.test_predict import lab_csv, make_project
from xrfcore import cli, export, instrument, predict, store
from xrfcore.energy import Grid
from xrfcore.models_registry import DEFAULT_MODEL
from xrfcore.train import finetune as ft

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / f"{DEFAULT_MODEL}.json"


@pytest.fixture(scope="module")
def itrax_project(tmp_path_factory):
    """The real Itrax replicates (Mo tube, 30 kV) imported as a user does."""
    from tests.conftest import REALDATA
    if not REALDATA.is_dir():
        pytest.skip(f"real example files not found at {REALDATA}")
    realdata = REALDATA
    from xrfcore import importer
    path = tmp_path_factory.mktemp("itrax") / "itrax.h5"
    importer.import_folder(realdata / "itrax" / "CD166_19_S1_replicates", path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory, base_path):  # noqa: F811
    """A fine-tuned micro model whose base card states no instrument but simulated data: Rh, 10 kV."""
    d = tmp_path_factory.mktemp("inst")
    proj = d / "p.h5"
    truth = make_project(proj, cores=("K1", "K2"), n=40)
    ft.finetune_project(proj, lab_csv(d / "lab.csv", truth, step=2), base_path, d / "model", mode="head")
    return d / "model", proj


def add_run(proj, core, run, kv, counts_fn=None, n=30, channels=CH):
    rng = np.random.default_rng(1)
    x = np.linspace(0, 1, channels)
    base = 3000 * (np.exp(-((x - 0.3) / 0.02) ** 2) + 0.05)
    counts = rng.poisson(np.tile(base if counts_fn is None else counts_fn(x), (n, 1))).astype(np.int32)
    depth = np.arange(n) * 10.0
    meta = pd.DataFrame({"depth_mm": depth, "section": "1", "position_mm": depth, "kv": kv, "active": True,
                         "valid": True, "scanner": "simulated-avaatech", "core": core})
    with store.transaction(proj) as w:
        w.write_table(core, run, counts, meta)


# --------------------------------------------------------------------------- anode detection

def test_real_itrax_run_is_a_mo_tube(itrax_project):
    with store.Project.open(itrax_project) as p:
        runs = [(c, r, p.read_run(c, r)) for c in p.cores() for r in p.runs(c)]
    assert len(runs) == 2
    for core, run, rd in runs:
        assert rd.attrs["kv"] == 30
        det = instrument.detect_anode(rd.counts, rd.grid, 30.0)
        assert det.anode == "Mo" and det.confidence >= instrument.DETECT_CONFIDENCE, det.to_dict()
        assert instrument.detect_anode(rd.counts[10], rd.grid, 30.0).anode == "Mo"  # one spectrum is enough
        assert instrument.stated_anode(rd.meta) == "Mo"   # and the Itrax headers say so


@pytest.fixture(scope="module")
def sim_project(tmp_path_factory):
    """A simulated Avaatech core (Rh tube, 10 kV) written as raw files and imported."""
    from xrfcore import importer
    from xrfcore.simulate.writers import simulate_folder
    d = tmp_path_factory.mktemp("sim")
    simulate_folder(d / "sim", cores=1, length_m=0.5)
    importer.import_folder(d / "sim", d / "sim.h5")
    return d / "sim.h5"


def test_simulated_avaatech_core_is_an_rh_tube(sim_project):
    with store.Project.open(sim_project) as p:
        core = p.cores()[0]
        rd = p.read_run(core, p.runs(core)[0])
    det = instrument.detect_anode(rd.counts, rd.grid, 10.0)
    assert det.anode == "Rh" and det.confidence >= 0.9, det.to_dict()
    assert {s["anode"]: s["shell"] for s in det.to_dict()["scores"]}["Rh"] == "L"  # no K lines at 10 kV
    # an uncalibrated grid (gain 2 % off, offset 3 channels) still shows an Rh tube
    g = rd.grid
    det = instrument.detect_anode(rd.counts, Grid(g.channels, g.gain_kev * 1.02, g.offset_kev + 0.06), 10.0)
    assert det.anode == "Rh"
    assert instrument.stated_anode(rd.meta) is None   # Avaatech files do not state their tube
    chk = instrument.check_run(json.loads(SHIPPED.read_text()), rd.attrs, rd.counts, rd.grid, meta=rd.meta)
    assert chk.ok and chk.anode == "Rh" and chk.anode_source == "spectrum lines" and chk.outside_share < 0.01


def test_no_tube_lines_no_guess():
    det = instrument.detect_anode(np.full(512, 100.0), Grid(512, 0.02), 10.0)
    assert det.anode is None and det.confidence == 0


# --------------------------------------------------------------------------- model cards

def test_describe_model_stated_and_inferred():
    card = json.loads(SHIPPED.read_text())
    d = instrument.describe_model(card)
    assert d["tube_anode"] == "Rh" and d["kv"] == [10, 10] and d["energy_kev"] == [0, 10.24]
    assert d["grid"]["channels"] == 2048 and d["grid"]["window_channels"] == 512
    assert instrument.model_text(d) == "a Rh tube at 10 kV (0-10.24 keV)"
    old = {k: v for k, v in card.items() if k != "instrument"}
    d = instrument.describe_model(old)   # cards before card["instrument"]: simulated -> Rh / 10 kV
    assert d["tube_anode"] == "Rh" and d["kv"] == [10, 10] and "assumed" in d["source"]
    d = instrument.describe_model(dict(old, simulated_data=False, data={"kv": 30}))
    assert d["tube_anode"] is None and d["kv"] == [30, 30]


def test_pretrained_card_states_instrument():
    from xrfcore.model.config import ModelConfig
    cfg = ModelConfig.preset("tiny", window_channels=512)
    inst = instrument.for_card(cfg, {"simulated": False, "tube_anode": "Mo", "kv_range": [30.0, 30.0],
                                     "scanner": "itrax"})
    assert inst["tube_anode"] == "Mo" and inst["kv"] == [30, 30] and inst["energy_kev"] == [0, 10.24]
    assert inst["grid"]["window_channels"] == 512 and inst["scanner"] == "itrax"
    inst = instrument.for_card(cfg, {"simulated": True})
    assert inst["tube_anode"] == "Rh" and inst["kv"] == [10, 10]


def test_cli_pretrain_card_states_the_instrument_of_its_data(sim_project, tmp_path):
    out = tmp_path / "mae"
    assert cli.main(["pretrain", "-p", str(sim_project), "-o", str(out), "--steps", "2", "--batch-size", "8",
                     "--window-channels", "512", "--threads", "1", "--device", "cpu"]) == 0
    inst = json.loads((out / "model.json").read_text())["instrument"]
    assert inst["tube_anode"] == "Rh" and inst["kv"] == [10, 10] and inst["energy_kev"] == [0, 10.24]
    assert inst["scanner"] == "simulated-avaatech" and inst["source"] == "pretraining data"


def test_finetuned_card_copies_the_base_instrument(model):
    from xrfcore.model import checkpoint
    card = checkpoint.load_card(model[0])
    assert card["instrument"]["tube_anode"] == "Rh" and card["instrument"]["kv"] == [10, 10]
    assert card["instrument"]["energy_kev"] == [0, CH * 0.02] and "base model" in card["instrument"]["source"]
    assert [c["result"] for c in card["labels"]["instrument_check"]] == ["ok", "ok"]


def test_window_share_counted_and_a_mismatch_when_large():
    card = json.loads(SHIPPED.read_text())
    grid = Grid(2048, 0.02)
    spec = np.where(grid.energies() > 10.24, 3.0, 1.0)  # 3/4 of the channels, 9/10 of the counts above
    below, above = instrument.window_shares(spec, grid, instrument.window_edges(instrument.describe_model(card)))
    assert below == 0 and above == pytest.approx(1 - 512 / (512 + 3 * 1536), abs=1e-3)
    chk = instrument.check_run(card, {"kv": 10.0}, spec, grid)
    assert "window" in chk.kinds and "outside 0-10.24 keV" in chk.message()


# --------------------------------------------------------------------------- predict / fine-tune

def test_predict_refuses_a_30kv_run_and_goes_on_when_allowed(model, tmp_path, capsys):
    path, src = model
    proj = tmp_path / "p.h5"
    proj.write_bytes(Path(src).read_bytes())
    add_run(proj, "K30", "30kV-Run1", 30.0)
    # no run at the model's kV: not silently used, the runs are listed
    with pytest.raises(instrument.NoMatchingRun, match=r"no run at 10 kV.*30kV-Run1 \(30 kV\).*--run"):
        predict.predict_core(proj, "K30", path)
    with pytest.raises(instrument.InstrumentMismatch) as exc:
        predict.predict_core(proj, "K30", path, run="30kV-Run1")
    msg = str(exc.value)
    assert msg.startswith("core K30 run 30kV-Run1: ") and "at 30 kV" in msg
    assert "was trained for a Rh tube at 10 kV (0-5.12 keV)" in msg and "--allow-instrument-mismatch" in msg
    with store.Project.open(proj) as p:
        assert p.predictions("K30") == []
    df = predict.predict_core(proj, "K30", path, allow_instrument_mismatch=True)   # the only run
    prov = df.attrs["provenance"]
    assert prov["instrument_check"]["result"] == "mismatch allowed" and len(df) == 30
    assert "30 kV (model: 10 kV)" in prov["instrument_check"]["mismatches"]
    assert "only run" in prov["run_choice"] and prov["counts_outside_window"] == 0
    # the command line says the same
    assert cli.main(["predict", str(path), "-p", str(proj), "--core", "K30", "--run", "30kV-Run1"]) == 2
    err = capsys.readouterr().err
    assert "Rh tube at 10 kV" in err and "at 30 kV" in err and "--allow-instrument-mismatch" in err
    out = tmp_path / "k30.csv"
    assert cli.main(["predict", str(path), "-p", str(proj), "--core", "K30", "--run", "30kV-Run1",
                     "--allow-instrument-mismatch", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "instrument check: mismatch allowed" in printed and "outside the model's 0-5.12 keV window" in printed
    assert '"result": "mismatch allowed"' in export.read_provenance(out)["instrument_check"]


def test_matching_run_ok_and_window_share_in_the_provenance(model, tmp_path):
    path, src = model
    proj = tmp_path / "p.h5"
    proj.write_bytes(Path(src).read_bytes())
    # a 10 kV run whose spectra reach twice as far as the model's window reads: counts are cut
    add_run(proj, "WIDE", "10kV-Run1", 10.0, counts_fn=lambda x: np.full_like(x, 200.0), channels=2 * CH)
    add_run(proj, "WIDE", "30kV-Run1", 30.0)
    df = predict.predict_core(proj, "K2", path)
    prov = df.attrs["provenance"]
    assert prov["instrument_check"]["result"] == "ok" and prov["counts_outside_window"] == 0
    assert prov["run_choice"].startswith("the run at the model's 10 kV")
    with pytest.raises(instrument.InstrumentMismatch, match="50 % of its counts outside 0-5.12 keV"):
        predict.predict_core(proj, "WIDE", path)   # picks the 10 kV run, then refuses the cut
    df = predict.predict_core(proj, "WIDE", path, allow_instrument_mismatch=True)
    prov = df.attrs["provenance"]
    assert prov["run"] == "10kV-Run1" and prov["counts_outside_window"] == pytest.approx(0.5, abs=0.01)
    out = tmp_path / "wide.csv"
    export.write_predictions_csv(out, df, prov)
    assert float(export.read_provenance(out)["counts_outside_window"]) == pytest.approx(0.5, abs=0.01)


def test_real_mo_30kv_run_is_refused(model, itrax_project, tmp_path):
    path, _ = model
    with pytest.raises(instrument.InstrumentMismatch) as exc:
        predict.predict_core(itrax_project, "REP1", path, run="30kV", store=False)
    msg = str(exc.value)
    assert msg.startswith("core REP1 run 30kV: Mo tube at 30 kV, ")
    assert f"model {exc.value.check.model_name()} was trained for a Rh tube at 10 kV" in msg
    assert "(fine-tuned from mae-tiny-" in msg
    df = predict.predict_core(itrax_project, "REP1", path, run="30kV", store=False, allow_instrument_mismatch=True)
    chk = df.attrs["provenance"]["instrument_check"]
    assert chk["run_tube_anode"] == "Mo" and chk["anode_detected"] == "Mo" and chk["counts_outside_window"] > 0.3


def test_finetune_refuses_runs_from_another_instrument(base_path, tmp_path):  # noqa: F811
    proj = tmp_path / "p.h5"
    add_run(proj, "K30", "30kV-Run1", 30.0, n=40)
    lab = tmp_path / "lab.csv"
    pd.DataFrame({"core": "K30", "depth_top_mm": np.arange(0, 390, 30.0), "depth_bottom_mm": np.arange(10, 400, 30.0),
                  "CaCO3": np.linspace(10, 80, 13), "TOC": np.linspace(0.2, 2, 13)}).to_csv(lab, index=False)
    with pytest.raises(instrument.InstrumentMismatch, match=r"^core K30 run 30kV-Run1: .*at 30 kV.*fine-tune anyway"):
        ft.finetune_project(proj, lab, base_path, tmp_path / "m1", mode="head")   # the core's only run
    assert not (tmp_path / "m1").exists()
    add_run(proj, "K30", "10kV-Run1", 10.0, n=40)   # now the default (10 kV) run matches the model
    _, card, _ = ft.finetune_project(proj, lab, base_path, tmp_path / "m0", mode="head")
    assert [(c["run"], c["result"]) for c in card["labels"]["instrument_check"]] == [("10kV-Run1", "ok")]
    with pytest.raises(instrument.InstrumentMismatch, match="fine-tune anyway"):
        ft.finetune_project(proj, lab, base_path, tmp_path / "m1", mode="head", run="30kV-Run1")
    _, card, _ = ft.finetune_project(proj, lab, base_path, tmp_path / "m2", mode="head", run="30kV-Run1",
                                     allow_instrument_mismatch=True)
    chk = card["labels"]["instrument_check"]
    assert [c["result"] for c in chk] == ["mismatch allowed"] and card["instrument"]["kv"] == [10, 10]
