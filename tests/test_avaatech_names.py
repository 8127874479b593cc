"""Avaatech file-name, section-token and folder rules (spec section 1.4-1.5)."""
import pytest

from xrfcore.io.avaatech import (
    core_from_folder_name,
    core_from_folders,
    parse_file_name,
    parse_run_folder,
    parse_section,
    spe_file_name,
)


def test_variant_a_bang_separated():
    n = parse_file_name("MI18-L8-A!0!0!   2.0!2019-04-16!15-33-35!15!10!1500!2.0!0.0!"
                        "No-Filter!2.0!6.0!Run1!Rep0!Sett Low.spe")
    assert n["variant"] == "A"
    assert n["core"] == "MI18-L8-A" and n["section"] == ""
    assert n["position_mm"] == 2.0 and n["y_mm"] == 0.0
    assert n["live_s"] == 15 and n["kv"] == 10 and n["current_ua"] == 1500
    assert n["filter"] == "No-Filter" and n["slit_dc_mm"] == 2.0 and n["slit_cc_mm"] == 6.0
    assert n["run"] == 1 and n["replicate"] == 0 and n["setting"] == "Sett Low"
    assert n["date"] == "2019-04-16T15:33:35"


def test_variant_a_core_with_spaces_axml_and_stray_dot():
    n = parse_file_name("BIC B 2-3m!0!0!1510.0!2019-04-16!15-33-35!40!30!125!1510.0!-22.9!"
                        "Pd-Thin!2.0!6.0!Run2!Rep1!Sett Middle.axml")
    assert n["core"] == "BIC B 2-3m" and n["y_mm"] == -22.9 and n["extension"] == ".axml"
    assert n["setting"] == "Sett Middle" and n["replicate"] == 1 and n["run"] == 2
    n = parse_file_name("ZUG18-7!0!0!   2.0!2019-04-16!15-33-35!15!10!1500!2.0!0.0!"
                        "No-Filter!2.0!6.0!Run1!Rep0!Sett Low.")
    assert n["variant"] == "A" and n["setting"] == "Sett Low"


def test_variant_b_fixed_width():
    n = parse_file_name("SO264-55-1_00050  970.0mm  10s  10kV 150uA No-Filter   0.0mm Run1 Rep0 Sett Low.spe")
    assert n["variant"] == "B"
    assert (n["core"], n["section"]) == ("SO264-55-1", "00050")
    assert (n["position_mm"], n["y_mm"], n["live_s"], n["kv"], n["current_ua"]) == (970.0, 0.0, 10, 10, 150)
    assert (n["filter"], n["run"], n["replicate"], n["setting"]) == ("No-Filter", 1, 0, "Sett Low")
    z = parse_file_name("ZH-16-10   45.0mm  30s  10kV 1500uA No-Filter   0.0mm Run1 Rep0")
    assert z["core"] == "ZH-16-10" and z["current_ua"] == 1500 and z["setting"] == ""


def test_variant_c_old_and_upper_case_extension():
    n = parse_file_name("SO202-37-2_0937   10.0mm  10s  10kV 1000uA F1.spe")
    assert n["variant"] == "C" and n["section"] == "0937" and n["filter"] == "F1"
    assert n["run"] is None and n["y_mm"] is None
    m = parse_file_name("LV28-44-3_0954 1000.0mm  12s  10kV 1200uA F1.SPE")
    assert m["variant"] == "C" and m["position_mm"] == 1000.0 and m["extension"] == ".spe"


def test_variant_d_tamu_prefixes():
    n = parse_file_name("Standard_1 X  50.0mm   6s   9kV 250uA No-Filter DC10.0mm CC12.0mm "
                        "Y  0.0mm Run1 Rep0 Sett Low.spe")
    assert n["variant"] == "D"
    assert n["core"] == "Standard_1" and n["section"] == ""
    assert (n["position_mm"], n["y_mm"], n["slit_dc_mm"], n["slit_cc_mm"]) == (50.0, 0.0, 10.0, 12.0)
    assert n["kv"] == 9 and n["current_ua"] == 250
    u = parse_file_name("U1489-1H-4A   40.0mm   6s   9kV 250uA No-Filter")
    assert u["core"] == "U1489-1H-4A" and u["position_mm"] == 40.0


def test_decimal_comma_in_name_and_rescan_word():
    n = parse_file_name("X_0269_Rescan  970,5mm  10s  10kV 150uA No-Filter   0,0mm Run1 Rep0 Sett Low.spe")
    assert n["section"] == "0269_Rescan" and n["position_mm"] == 970.5


def test_unrecognised_name():
    n = parse_file_name("notes.spe")
    assert n["variant"] == "" and n["position_mm"] is None


@pytest.mark.parametrize("token,unit,top,warn", [
    ("00050", "auto", 50.0, None),
    ("0954", "auto", 9540.0, None),
    ("13560", "auto", 13560.0, None),
    ("048", "auto", 480.0, "ambiguous"),
    ("048", "mm", 48.0, None),
    ("0954", "mm", 954.0, None),
    ("00050", "cm", 500.0, None),
    ("10430B", "auto", 10430.0, "rescan suffix"),
    ("00TC", "auto", None, "trigger core"),
    ("00TC", "cm", None, "trigger core"),
])
def test_section_rule(token, unit, top, warn):
    value, _suffix, warnings = parse_section(token, unit)
    assert value == top
    if warn is None:
        assert warnings == []
    else:
        assert any(warn in w for w in warnings)


def test_section_suffix_and_bad_unit():
    assert parse_section("10430B")[1] == "B"
    with pytest.raises(ValueError):
        parse_section("0954", "inch")


@pytest.mark.parametrize("name,expected", [
    ("Run 1 at  10kV", (1, 10.0, "")),
    ("Run 1 at  10kV_937-1138cm", (1, 10.0, "_937-1138cm")),
    ("Run 3 at  10kV_937-1138cm", (3, 10.0, "_937-1138cm")),
    ("Run 1 at  10kV_554-end", (1, 10.0, "_554-end")),
    ("Run 2 at  50kV", (2, 50.0, "")),
    ("Run 1 at   9kV", (1, 9.0, "")),
    ("Rescan_0269&0369", None),
    ("TC", None),
    ("SO264-55-1", None),
])
def test_run_folder(name, expected):
    assert parse_run_folder(name) == expected


def test_core_folder_rules():
    assert core_from_folders(["SO264-55-1", "Run 1 at  10kV"])[0] == "SO264-55-1"
    assert core_from_folders(["SO264-55-1", "Rescan_0269&0369", "Run 1 at  10kV"])[0] == "SO264-55-1"
    assert core_from_folders(["LV28-44-3", "TC", "Run 1 at  10kV"])[0] == "LV28-44-3"
    folder, run_folder, info = core_from_folders(["SO264-55-1_2021rescan_937-1138cm",
                                                  "Run 1 at  10kV_937-1138cm"])
    assert core_from_folder_name(folder) == "SO264-55-1"
    assert run_folder == "Run 1 at  10kV_937-1138cm" and info == (1, 10.0, "_937-1138cm")
    assert core_from_folder_name("LV28-44-3(554-1113cm)") == "LV28-44-3"
    assert core_from_folders(["a", "b"]) == ("", "", None)


def test_spe_file_name_is_variant_b_and_parses_back():
    meta = dict(core="SO264-55-1", section="00050", position_mm=970.0, live_s=10, kv=10,
                current_ua=150, filter="No-Filter", y_mm=0.0, run=1, replicate=0, setting="Sett Low")
    name = spe_file_name(meta)
    assert name == "SO264-55-1_00050  970.0mm  10s  10kV 150uA No-Filter   0.0mm Run1 Rep0 Sett Low.spe"
    big = spe_file_name({**meta, "position_mm": 1000.0, "current_ua": 1500, "kv": 9})
    n = parse_file_name(big)
    assert n["variant"] == "B" and n["position_mm"] == 1000.0 and n["current_ua"] == 1500 and n["kv"] == 9


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("!_ .,-0123456789XYDCmsukVARnepSt FLowTB")), max_size=120))
def test_any_name_parses_without_error(name):
    out = parse_file_name(name + ".spe")
    assert out["variant"] in ("", "A", "B", "C", "D")
    for unit in ("auto", "cm", "mm"):
        parse_section(out["section"], unit)


NAMES = [
    "SO264-55-1_00050  970.0mm  10s  10kV 150uA No-Filter   0.0mm Run1 Rep0 Sett Low.spe",
    "SO264-55-1_00050 1000.0mm  10s  10kV 150uA No-Filter -22.9mm Run2 Rep1 Sett Middle.spe",
    "ZH-16-10   45.0mm  30s  10kV 1500uA No-Filter   0.0mm Run1 Rep0",
    "SO202-37-2_0937   10.0mm  10s  10kV 1000uA F1.spe",
    "LV28-44-3_0954 1000.0mm  12s  10kV 1200uA F1.SPE",
    "X_10430B  970,5mm  10s  10kV 150uA Pd-Thin   0.0mm Run1 Rep0 Sett High.",
    "U1489-1H-4A   40.0mm   6s   9kV 250uA No-Filter",
]


@pytest.mark.parametrize("name", NAMES)
def test_fast_name_path_agrees_with_token_classifier(name):
    assert parse_file_name(name) == parse_file_name(name, fast=False)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("_ .,-0123456789mskVuARnepSt FLowT")), max_size=90))
def test_fast_and_general_name_paths_agree(name):
    fast, slow = parse_file_name(name), parse_file_name(name, fast=False)
    if fast["variant"] in ("B", "C") and fast != slow:
        # the token classifier may read more tokens; the fast path must never disagree on a field
        for key in ("core", "section", "position_mm", "kv", "current_ua", "live_s"):
            assert fast[key] == slow[key], (key, name)
