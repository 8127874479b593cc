"""xrfcore.sampling / `xrfcore suggest`: K distinct depths, spaced, never at the lab samples taken
nor on a crack, deterministic for a seed, and spread over every lithology."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.test_finetune import CH, base_path  # noqa: F401  (fixture)
from xrfcore import export, sampling, store

CRACK = (300.0, 330.0)   # mm: counts x0.2 (a crack) inside lithology A


def make_project(path, n=200, step=5.0):
    """One core, two lithologies: A (peak at 0.3) above 500 mm, B (peak at 0.7) below; a crack in A."""
    rng = np.random.default_rng(0)
    depth = np.arange(n) * step
    x = np.linspace(0, 1, CH)
    a = np.exp(-((x - 0.3) / 0.02) ** 2) + 0.02
    b = np.exp(-((x - 0.7) / 0.03) ** 2) + 0.02
    share = np.where(depth < 500, 0.85, 0.15) + rng.normal(0, 0.03, n)
    level = np.where((depth >= CRACK[0]) & (depth < CRACK[1]), 0.2, 1.0)
    counts = rng.poisson(3000 * level[:, None] * (share[:, None] * a + (1 - share[:, None]) * b)).astype(np.int32)
    meta = pd.DataFrame({"depth_mm": depth, "section": "1", "position_mm": depth, "kv": 10.0, "live_s": 10.0,
                         "current_ua": 1000.0, "active": True, "valid": True, "scanner": "simulated-avaatech",
                         "core": "K1"})
    with store.transaction(path) as w:
        w.write_table("K1", "10kV-Run1", counts, meta)
    return path


@pytest.fixture
def proj(tmp_path):
    return make_project(tmp_path / "p.h5")


def lab_file(path, tops, core="K1"):
    pd.DataFrame({"core": core, "depth_top_mm": tops, "depth_bottom_mm": np.asarray(tops) + 10.0,
                  "CaCO3": 40.0 + np.arange(len(tops)), "TOC": 1.0}).to_csv(path, index=False)
    return path


def check_spacing(df, spacing=20.0):
    for _, g in df.groupby("core"):
        d = np.sort(g.depth_mm.to_numpy())
        assert (np.diff(d) >= spacing).all(), d


def test_k_distinct_spaced_deterministic(proj, base_path):  # noqa: F811
    df = sampling.suggest(proj, base_path, 8, device="cpu", seed=3)
    assert list(df.columns) == sampling.COLUMNS and len(df) == 8
    assert list(df["rank"]) == list(range(1, 9))
    assert df.depth_mm.is_unique
    assert ((df.depth_bottom_mm - df.depth_top_mm) == 10).all()
    assert ((df.depth_top_mm + df.depth_bottom_mm) / 2 == df.depth_mm).all()
    check_spacing(df)
    assert df.reason.str.len().gt(10).all()
    again = sampling.suggest(proj, base_path, 8, device="cpu", seed=3)
    pd.testing.assert_frame_equal(df, again)
    wide = sampling.suggest(proj, base_path, 8, device="cpu", seed=3, spacing_mm=60)
    check_spacing(wide, 60)


def test_both_lithologies_sampled(proj, base_path):  # noqa: F811
    df = sampling.suggest(proj, base_path, 2, device="cpu")
    assert sorted(df.depth_mm < 500) == [False, True], df   # one in A, one in B


def test_existing_samples_seed_the_choice(proj, base_path, tmp_path):  # noqa: F811
    taken = [100.0, 200.0, 400.0, 450.0]                     # all in lithology A
    lab = lab_file(tmp_path / "lab.csv", taken)
    one = sampling.suggest(proj, base_path, 1, labels_csv=lab, device="cpu")
    assert one.depth_mm.iat[0] >= 500, one                   # B first: nothing like it is labelled
    assert one.reason.iat[0].startswith("far from every labelled spectrum")
    df = sampling.suggest(proj, base_path, 30, labels_csv=lab, device="cpu")
    mids = np.array(taken) + 5
    gap = np.abs(df.depth_mm.to_numpy()[:, None] - mids[None]).min(1)
    assert (gap >= 20).all(), df[gap < 20]
    assert df.attrs["provenance"]["existing_samples"] == 4


def test_cracks_never_suggested(proj, base_path):  # noqa: F811
    df = sampling.suggest(proj, base_path, 60, device="cpu")
    assert len(df) >= 40                                     # most of the core (spacing 20 mm over 1 m)
    in_crack = (df.depth_bottom_mm > CRACK[0]) & (df.depth_top_mm < CRACK[1])
    assert not in_crack.any(), df[in_crack]
    cand = sampling.candidates(proj)
    assert cand.table.low_counts.sum() == 3                  # 300-330 mm: three 1 cm intervals
    assert df.attrs["provenance"]["excluded_low_counts"] == 3


def test_select_weights_and_ood_reasons():
    rng = np.random.default_rng(1)
    n = 60
    tab = pd.DataFrame({"core": "C", "depth_top_mm": np.arange(n) * 10.0, "depth_bottom_mm": np.arange(n) * 10.0 + 10,
                        "depth_mm": np.arange(n) * 10.0 + 5, "low_counts": False})
    E = rng.normal(size=(n, 8))
    E[40:45] += 8.0                                          # an unusual group (x5 depths)
    why = [""] * n
    for i in (40, 41, 42):
        why[i] = "low counts (x0.30 of expected): crack or gap?"
    for i in (43, 44):
        why[i] = "far from the lab samples (distance 3.0x the usual limit)"
    df = sampling.select(tab, E, 5, ood_reasons=why, seed=0)
    rows = set(df.attrs["rows"])
    assert not rows & {40, 41, 42}                           # flagged cracks: never
    assert rows & {43, 44}                                   # flagged otherwise: sampled, and said why
    assert df.reason.str.startswith("out of distribution").any()
    # two equal groups of depths: the one whose intervals are wider gets the first sample
    G = np.vstack([rng.normal(-1, 0.05, (30, 8)), rng.normal(1, 0.05, (30, 8))])
    widest = np.array(["CaCO3"] * n, object)
    for wide in (slice(0, 30), slice(30, 60)):
        w = np.ones(n)
        w[wide] = 3.0
        first = sampling.select(tab, G, 1, weights=w, widest=widest)
        assert first.attrs["rows"][0] in range(n)[wide]
        assert first.reason.iat[0].startswith("widest CaCO3 interval (3.0x the median width)")
    a, b = (sampling.select(tab, E, 6, seed=s) for s in (7, 7))
    pd.testing.assert_frame_equal(a, b)


def test_finetuned_model(proj, base_path, tmp_path):  # noqa: F811
    from xrfcore.train import finetune as ft
    lab = lab_file(tmp_path / "lab.csv", [50.0, 100.0, 150.0, 200.0, 250.0, 400.0, 450.0, 600.0, 700.0])
    ft.finetune_project(proj, lab, base_path, tmp_path / "model", mode="head", accept_lab_warnings=True)
    df = sampling.suggest(proj, tmp_path / "model", 6, device="cpu")   # the lab samples are now stored
    prov = df.attrs["provenance"]
    assert prov["model_kind"] == "fine-tuned" and prov["existing_samples"] == 9
    mids = np.array([55.0, 105, 155, 205, 255, 405, 455, 605, 705])
    assert (np.abs(df.depth_mm.to_numpy()[:, None] - mids[None]).min(1) >= 20).all()
    assert not ((df.depth_bottom_mm > CRACK[0]) & (df.depth_top_mm < CRACK[1])).any()
    check_spacing(df)


def test_cli_writes_sampling_list(proj, base_path, tmp_path, capsys):  # noqa: F811
    from xrfcore.cli import main
    out = tmp_path / "sampling_list.csv"
    assert main(["suggest", "-p", str(proj), "--model", str(base_path), "-k", "4", "--core", "K1",
                 "--seed", "5", "--device", "cpu", "-o", str(out)]) == 0
    text = out.read_text().splitlines()
    assert text[0].startswith("# SIMULATED DATA")
    prov = export.read_provenance(out)
    assert prov["seed"] == "5" and prov["project"] == "p.h5" and prov["model_id"]
    assert "xrfcore_version" in prov and "created" in prov
    df = pd.read_csv(out, comment="#")
    assert list(df.columns) == sampling.COLUMNS and len(df) == 4
    assert "4 depth(s) to sample" in capsys.readouterr().out
    assert main(["suggest", "-p", str(proj), "--model", str(base_path), "-k", "4", "-o", str(out)]) == 2  # exists
    assert main(["suggest", "-p", str(proj), "--model", str(base_path), "-k", "2", "--core", "NOPE"]) == 2
