"""Avaatech .spe reader and writer: bad input, reconciliation, round trips, fuzzing."""
import hashlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrfcore.io.avaatech import find_spectra, read_record, read_spe, spe_file_name, write_spe
from xrfcore.io.records import ParseError

META = dict(core="SO264-55-1", section="00050", position_mm=970.0, y_mm=0.0, kv=10,
            current_ua=150, live_s=10, real_s=17, total_cps=236720,
            date="2017-08-01T16:15:15", run=1, replicate=0, filter="No-Filter",
            setting="Sett Low", slit_dc_mm=10.0, slit_cc_mm=12.0,
            remark=["measured at sea"])
COUNTS = np.random.default_rng(0).poisson(40, 2048).astype(np.int64)


def spe_bytes(tmp_path, counts=COUNTS, meta=META, **kw) -> bytes:
    p = tmp_path / "one.spe"
    write_spe(p, counts, meta, **kw)
    return p.read_bytes()


def replace_data(raw: bytes, new_block: str, newline=b"\r\n") -> bytes:
    head = raw[: raw.index(b"$DATA:")]
    return head + b"$DATA:" + newline + new_block.encode().replace(b"\n", newline)


def block(values, first=0, last=None) -> str:
    last = len(values) - 1 if last is None else last
    lines = [f"{first} {last}"]
    vals = [str(v) for v in values]
    lines += [" ".join(vals[i:i + 10]) for i in range(0, len(vals), 10)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- writer / reader round trip

@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
@pytest.mark.parametrize("decimal_comma", [False, True])
def test_round_trip(tmp_path, newline, decimal_comma):
    raw = spe_bytes(tmp_path, newline=newline, decimal_comma=decimal_comma)
    if decimal_comma:
        assert b"970,0" in raw and b"0,150" in raw
    spe = read_spe(raw, "one.spe")
    assert spe.counts.dtype == np.int32
    assert np.array_equal(spe.counts, COUNTS)
    assert (spe.first_channel, spe.last_channel) == (0, 2047)
    assert spe.tag("x_position") == "970.0" if not decimal_comma else spe.tag("X_POSITION") == "970,0"
    assert spe.tag("SPEC_REM") == "measured at sea"
    assert spe.warnings == []


def test_writer_is_atomic_and_realistic(tmp_path):
    p = tmp_path / "core" / "x.spe"
    write_spe(p, COUNTS, META)
    raw = p.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n")          # CRLF throughout
    assert raw.index(b"$X_Position:") < raw.index(b"$TotalCPS:") < raw.index(b"$DATA:")
    assert b"\r\n0 2047\r\n" in raw and b"08-01-2017 16:15:15" in raw
    assert sorted(os.listdir(p.parent)) == ["x.spe"]          # no temp file left
    with pytest.raises(ValueError):
        write_spe(p, -COUNTS, META)
    assert p.read_bytes() == raw                              # failed write left it as it was


def test_counts_per_line_do_not_matter(tmp_path):
    for per_line in (1, 7, 16, 2048):
        p = tmp_path / f"{per_line}.spe"
        write_spe(p, COUNTS, META, per_line=per_line)
        assert np.array_equal(read_spe(p.read_bytes()).counts, COUNTS)


# ----------------------------------------------------------------- bad input, parser level

def problem(raw: bytes) -> str:
    with pytest.raises(ParseError) as info:
        read_spe(raw, "bad.spe")
    assert info.value.path == "bad.spe"
    assert str(info.value).startswith("bad.spe: ")
    return info.value.problem


def test_empty_file():
    assert "empty" in problem(b"")
    assert "empty" in problem(b"  \r\n\r\n")


def test_binary_garbage():
    rng = np.random.default_rng(3)
    assert "binary" in problem(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes() + b"\x00")
    assert "binary" in problem(bytes(range(1, 9)) * 200)


def test_no_data_block():
    assert "$DATA:" in problem(b"$SPEC_ID:\r\nfoo\r\n$ACC_VOLT:\r\n10.0\r\n")


def test_truncated_block(tmp_path):
    raw = spe_bytes(tmp_path)
    msg = problem(raw[: len(raw) * 2 // 3])
    assert "truncated" in msg and "2048 expected" in msg


def test_2047_and_2049_counts(tmp_path):
    raw = spe_bytes(tmp_path)
    msg = problem(replace_data(raw, block(COUNTS[:2047], 0, 2047)))
    assert "truncated" in msg and "2047 counts found" in msg
    msg = problem(replace_data(raw, block(list(COUNTS) + [5], 0, 2047)))
    assert "too many" in msg and "2049" in msg
    # A file that declares 0 2046 and holds 2047 counts is fine (channels from the block).
    spe = read_spe(replace_data(raw, block(COUNTS[:2047], 0, 2046)))
    assert spe.counts.size == 2047


def test_text_token_named_with_position(tmp_path):
    raw = spe_bytes(tmp_path)
    vals = [str(v) for v in COUNTS]
    vals[100] = "12a"
    msg = problem(replace_data(raw, block(vals, 0, 2047)))
    assert "'12a'" in msg and "count number 101" in msg and "channel 100" in msg


def test_whole_number_floats_are_accepted_fractions_not(tmp_path):
    raw = spe_bytes(tmp_path)
    vals = [str(v) for v in COUNTS]
    vals[5] = f"{COUNTS[5]}.0"
    vals[6] = f"{COUNTS[6]},0"
    assert np.array_equal(read_spe(replace_data(raw, block(vals, 0, 2047))).counts, COUNTS)
    vals[7] = "3.5"
    assert "not a whole number" in problem(replace_data(raw, block(vals, 0, 2047)))


def test_negative_counts(tmp_path):
    raw = spe_bytes(tmp_path)
    vals = list(COUNTS)
    vals[300] = -4
    msg = problem(replace_data(raw, block(vals, 0, 2047)))
    assert "negative count -4 at channel 300" in msg


def test_too_large_count(tmp_path):
    raw = spe_bytes(tmp_path)
    vals = list(COUNTS)
    vals[3] = 10**25
    assert "too large" in problem(replace_data(raw, block(vals, 0, 2047)))


def test_all_zero_is_a_warning(tmp_path):
    spe = read_spe(spe_bytes(tmp_path, counts=np.zeros(2048, int)))
    assert spe.counts.sum() == 0 and any("zero" in w for w in spe.warnings)


def test_impossible_channel_range(tmp_path):
    raw = spe_bytes(tmp_path)
    assert "channel range" in problem(replace_data(raw, "2047 0\n1 2 3\n"))


def test_missing_first_last_line_is_warned(tmp_path):
    raw = spe_bytes(tmp_path)
    text = "\n".join(" ".join(str(v) for v in COUNTS[i:i + 8]) for i in range(0, 2048, 8))
    spe = read_spe(replace_data(raw, text + "\n"))
    assert np.array_equal(spe.counts, COUNTS)
    assert any("first last" in w for w in spe.warnings)


def test_trailing_block_after_counts(tmp_path):
    raw = spe_bytes(tmp_path) + b"$ROI:\r\n0\r\n"
    spe = read_spe(raw)
    assert np.array_equal(spe.counts, COUNTS) and spe.tags["ROI"] == "0"


def test_mixed_line_endings_and_bom(tmp_path):
    raw = spe_bytes(tmp_path)
    lines = raw.split(b"\r\n")
    ends = [b"\r\n", b"\n", b"\r"]
    mixed = b"".join(line + ends[i % 3] for i, line in enumerate(lines))
    spe = read_spe(b"\xef\xbb\xbf" + mixed)
    assert np.array_equal(spe.counts, COUNTS)
    assert spe.tag("ACC_VOLT") == "10.0" and spe.tag("MEAS_TIM") == "10 17"


def test_case_insensitive_tags_and_latin1(tmp_path):
    raw = spe_bytes(tmp_path).replace(b"$X_Position:", b"$x_position:")
    raw = raw.replace(b"measured at sea", "Probe Grönland µA".encode("latin-1"))
    spe = read_spe(raw)
    assert spe.tag("X_POSITION") == "970.0"
    assert spe.tag("SPEC_REM") == "Probe Grönland µA"


def test_tag_with_value_line_missing(tmp_path):
    raw = spe_bytes(tmp_path)
    raw = raw.replace(b"$X_Position:\r\n 970.0\r\n", b"$X_Position:\r\n")
    spe = read_spe(raw)
    assert spe.tag("X_Position") is None
    assert spe.tag("Y_Position") == "0.0"          # the next tag still reads right
    assert spe.tag("TotalCPS") == "236720"


# ----------------------------------------------------------------- records

def write_tree(root, rel_folder, meta=META, counts=COUNTS, name=None, **kw):
    folder = root / rel_folder
    p = folder / (name or spe_file_name(meta))
    write_spe(p, counts, meta, **kw)
    return p


def test_record_fields(tmp_path):
    p = write_tree(tmp_path, "SO264-55-1/Run 1 at  10kV")
    r = read_record(p, tmp_path)
    assert r.source_path == "SO264-55-1/Run 1 at  10kV/" + p.name
    assert r.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert r.scanner == "avaatech" and r.core == "SO264-55-1"
    assert (r.section, r.section_top_mm, r.position_mm, r.depth_mm) == ("00050", 50.0, 970.0, 1020.0)
    assert (r.kv, r.current_ua, r.live_s, r.real_s, r.total_cps) == (10.0, 150.0, 10.0, 17.0, 236720.0)
    assert r.date == "2017-08-01T16:15:15"
    assert (r.run, r.run_label, r.replicate, r.run_key) == (1, "Run 1 at  10kV", 0, "10kV-Run1")
    assert (r.filter, r.setting, r.slit_dc_mm, r.slit_cc_mm) == ("No-Filter", "Sett Low", 10.0, 12.0)
    assert r.gain_kev is None and r.offset_kev is None and r.valid
    assert r.header["ACC_VOLT"] == "10.0" and r.header["SPEC_REM"] == "measured at sea"
    assert r.warnings == []


def test_simulated_is_labelled(tmp_path):
    p = write_tree(tmp_path, "C1/Run 1 at  10kV",
                   meta={**META, "core": "C1", "remark": ["SIMULATED spectrum, xrfcore"]})
    assert read_record(p, tmp_path).scanner == "simulated-avaatech"


def test_decimal_comma_record(tmp_path):
    p = write_tree(tmp_path, "SO264-55-1/Run 1 at  10kV", decimal_comma=True)
    r = read_record(p, tmp_path)
    assert (r.position_mm, r.current_ua, r.kv, r.depth_mm) == (970.0, 150.0, 10.0, 1020.0)


def test_missing_x_value_falls_back_to_name(tmp_path):
    p = write_tree(tmp_path, "SO264-55-1/Run 1 at  10kV")
    p.write_bytes(p.read_bytes().replace(b"$X_Position:\r\n 970.0\r\n", b"$X_Position:\r\n"))
    r = read_record(p, tmp_path)
    assert r.position_mm == 970.0 and r.depth_mm == 1020.0
    assert any("$X_Position has no value" in w for w in r.warnings)


def test_old_short_header(tmp_path):
    meta = {**META, "core": "LV28-44-3", "section": "0954", "position_mm": 1000.0,
            "current_ua": 1200, "live_s": 12, "real_s": 16}
    name = "LV28-44-3_0954 1000.0mm  12s  10kV 1200uA F1.spe"
    p = write_tree(tmp_path, "LV28-44-3(554-1113cm)/Run 1 at  10kV", meta=meta, name=name,
                   old_header=True)
    raw = p.read_bytes()
    assert b"$X_Position" not in raw and b"$TotalCPS" not in raw
    assert raw.split(b"\r\n").index(b"$DATA:") < 25          # short header
    r = read_record(p, tmp_path)
    assert r.core == "LV28-44-3" and r.section_top_mm == 9540.0
    assert r.position_mm == 1000.0 and r.depth_mm == 10540.0
    assert r.total_cps is None and r.current_ua == 1200.0 and r.filter == "F1"
    assert any("old short header" in w for w in r.warnings)


def test_section_tokens_in_records(tmp_path):
    for section in ("10430B", "00TC", "048"):
        meta = {**META, "section": section}
        p = write_tree(tmp_path, "SO264-55-1/Run 1 at  10kV", meta=meta)
        r = read_record(p, tmp_path)
        assert r.section == section
        if section == "10430B":
            assert r.section_top_mm == 10430.0 and r.depth_mm == 11400.0
            assert any("rescan suffix" in w for w in r.warnings)
        elif section == "00TC":
            assert r.section_top_mm is None and r.depth_mm is None and r.position_mm == 970.0
            assert any("trigger core: depth must be entered manually" in w for w in r.warnings)
        else:
            assert r.section_top_mm == 480.0 and any("ambiguous" in w for w in r.warnings)
            r_mm = read_record(p, tmp_path, section_unit="mm")
            assert r_mm.section_top_mm == 48.0 and r_mm.depth_mm == 1018.0
            assert not any("ambiguous" in w for w in r_mm.warnings)
            assert read_record(p, tmp_path, section_unit="cm").section_top_mm == 480.0


def test_core_name_in_file_differs_from_folder(tmp_path):
    meta = {**META, "core": "SO264-69-1", "section": "13560"}
    p = write_tree(tmp_path, "SO264-69-2/Run 1 at  10kV", meta=meta)
    r = read_record(p, tmp_path)
    assert r.core == "SO264-69-2"
    assert any("SO264-69-1" in w and "differs from the folder" in w for w in r.warnings)
    assert read_record(p, tmp_path, core="MyCore").core == "MyCore"


def test_rescan_and_tc_folders(tmp_path):
    a = write_tree(tmp_path, "SO264-55-1/Rescan_0269&0369/Run 1 at  10kV",
                   meta={**META, "section": "0269"})
    b = write_tree(tmp_path, "SO264-55-1/TC/Run 1 at  10kV", meta={**META, "section": "00TC"})
    c = write_tree(tmp_path, "SO264-55-1_2021rescan_937-1138cm/Run 3 at  10kV_937-1138cm",
                   meta={**META, "section": "0937", "run": 3})
    for p in (a, b, c):
        assert read_record(p, tmp_path).core == "SO264-55-1"
    rc = read_record(c, tmp_path)
    assert rc.run == 3 and rc.run_label == "Run 3 at  10kV_937-1138cm" and rc.section_top_mm == 9370.0
    assert not any("differs from the folder" in w for w in rc.warnings)


def test_run_folder_with_suffix_and_kv_conflict(tmp_path):
    meta = {**META, "kv": 30, "run": 1}
    p = write_tree(tmp_path, "SO264-55-1/Run 1 at  10kV_937-1138cm", meta=meta)
    r = read_record(p, tmp_path)
    assert r.kv == 30.0                                     # header first
    assert any("differs from the run folder" in w for w in r.warnings)


def test_header_and_name_disagree(tmp_path):
    p = write_tree(tmp_path, "SO264-55-1/Run 1 at  10kV",
                   name=spe_file_name({**META, "position_mm": 960.0, "current_ua": 200}))
    r = read_record(p, tmp_path)
    assert r.position_mm == 970.0 and r.current_ua == 150.0
    assert any("X position in header" in w for w in r.warnings)
    assert any("tube current in header" in w for w in r.warnings)


def test_four_name_variants_as_records(tmp_path):
    names = {
        "A": "MI18-L8-A!0!0!   2.0!2019-04-16!15-33-35!15!10!1500!2.0!0.0!No-Filter!2.0!6.0!Run1!Rep0!Sett Low.spe",
        "B": "MI18-L8-A_00050    2.0mm  15s  10kV 1500uA No-Filter   0.0mm Run1 Rep0 Sett Low.spe",
        "C": "MI18-L8-A_0005    2.0mm  15s  10kV 1500uA F1.spe",
        "D": "MI18-L8-A X   2.0mm  15s  10kV 1500uA No-Filter DC2.0mm CC6.0mm Y  0.0mm Run1 Rep0 Sett Low.SPE",
    }
    meta = {**META, "core": "MI18-L8-A", "position_mm": 2.0, "current_ua": 1500, "live_s": 15,
            "date": None}
    for variant, name in names.items():
        p = write_tree(tmp_path / variant, "MI18-L8-A/Run 1 at  10kV", meta=meta, name=name)
        r = read_record(p, tmp_path / variant)
        assert r.core == "MI18-L8-A" and r.position_mm == 2.0 and r.current_ua == 1500.0, variant
        assert not any("differs from the folder" in w for w in r.warnings), variant
        if variant == "A":
            assert r.date == "2019-04-16T15:33:35"           # header date empty -> name date
            assert r.depth_mm == 2.0
        if variant == "C":
            assert r.section_top_mm == 50.0
    assert len(find_spectra(tmp_path)) == 4                  # .SPE found too


def test_bad_header_date_falls_back_and_warns(tmp_path):
    p = write_tree(tmp_path, "SO264-55-1/Run 1 at  10kV")
    p.write_bytes(p.read_bytes().replace(b"08-01-2017 16:15:15", b"31.08.2017 16:15"))
    r = read_record(p, tmp_path)
    assert r.date == "" and any("$DATE_MEA" in w for w in r.warnings)
    assert r.header["DATE_MEA"] == "31.08.2017 16:15"


def test_unreadable_and_bad_files_raise_parse_error(tmp_path):
    missing = tmp_path / "C" / "Run 1 at  10kV" / "gone.spe"
    with pytest.raises(ParseError) as info:
        read_record(missing, tmp_path)
    assert "cannot read" in str(info.value) and "C/Run 1 at  10kV/gone.spe" in str(info.value)
    bad = tmp_path / "C" / "Run 1 at  10kV" / "empty.spe"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"")
    with pytest.raises(ParseError, match="empty"):
        read_record(bad, tmp_path)


def test_find_spectra_sorted_and_filtered(tmp_path):
    write_tree(tmp_path, "B/Run 1 at  10kV")
    write_tree(tmp_path, "A/Run 2 at  30kV")
    (tmp_path / "A" / "notes.txt").write_text("x")
    found = find_spectra(tmp_path)
    assert [p.relative_to(tmp_path).parts[0] for p in found] == ["A", "B"]


# ----------------------------------------------------------------- property tests

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_only_parse_error(data):
    try:
        spe = read_spe(data, "fuzz.spe")
    except ParseError:
        return
    assert spe.counts.dtype == np.int32 and (spe.counts >= 0).all()


_VALID = None


def _valid_bytes() -> bytes:
    global _VALID
    if _VALID is None:
        import tempfile
        from pathlib import Path
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "v.spe"
            write_spe(p, COUNTS[:256], META)
            _VALID = p.read_bytes()
    return _VALID


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 40), st.binary(max_size=12)),
                max_size=6))
def test_mutated_valid_files_only_parse_error(edits):
    raw = bytearray(_valid_bytes())
    for pos, cut, insert in edits:
        pos %= len(raw) + 1
        raw[pos:pos + cut] = insert
    try:
        spe = read_spe(bytes(raw), "fuzz.spe")
    except ParseError:
        return
    assert spe.counts.size == spe.last_channel - spe.first_channel + 1
    assert (spe.counts >= 0).all()


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="0123456789 -.,\r\n\t$aDATA:", max_size=400))
def test_text_after_data_tag_only_parse_error(body):
    try:
        read_spe(b"$ACC_VOLT:\r\n10.0\r\n$DATA:\r\n" + body.encode(), "fuzz.spe")
    except ParseError:
        pass


def test_header_oddities(tmp_path):
    head = ("junk before\r\n$SPEC_REM:\r\n  line one\r\n\r\n line three \r\n$ACC_VOLT: 10.0\r\n"
            "$ACC_VOLT:\r\n30.0\r\n$$odd\r\n$Empty:\r\n$data:\r\n")
    raw = head.encode() + block(COUNTS).encode()
    spe = read_spe(raw)
    assert spe.tags["SPEC_REM"] == "line one\n\nline three"
    assert spe.tags["ACC_VOLT"] == "10.0" and spe.tags["ACC_VOLT#2"] == "30.0\n$$odd"
    assert spe.tags["Empty"] == "" and spe.tag("empty") is None
    assert spe.tags["_preamble"] == "junk before"
    assert any("more than once" in w for w in spe.warnings)
    assert any("before the first tag" in w for w in spe.warnings)
    assert np.array_equal(spe.counts, COUNTS)


def test_root_is_the_core_folder_or_absent(tmp_path):
    p = write_tree(tmp_path, "SO264-55-1/Run 2 at  30kV", meta={**META, "kv": 30, "run": 2})
    r = read_record(p, tmp_path / "SO264-55-1")
    assert r.core == "SO264-55-1" and r.source_path == "Run 2 at  30kV/" + p.name
    assert r.run_key == "30kV-Run2" and r.warnings == []
    r2 = read_record(p)
    assert r2.core == "SO264-55-1" and r2.source_path.endswith("SO264-55-1/Run 2 at  30kV/" + p.name)
    # No run folder at all: the core comes from the file name.
    q = write_tree(tmp_path, "flat", meta={**META, "core": "GeoB1234-5"})
    assert read_record(q, tmp_path).core == "GeoB1234-5"


def test_utf16_file_is_read(tmp_path):
    raw = spe_bytes(tmp_path)
    spe = read_spe(raw.decode("latin-1").encode("utf-16"))
    assert np.array_equal(spe.counts, COUNTS)
    assert "UTF-16" in problem(b"\xff\xfe" + b"\x00\xd8")       # lone surrogate


def test_record_from_given_bytes(tmp_path):
    """The importer passes the bytes it has read (and their hash): same record as from the path."""
    p = write_tree(tmp_path, "SO264-55-1/Run 1 at  10kV")
    data = p.read_bytes()
    a = read_record(p, tmp_path)
    for b in (read_record(p, tmp_path, data=data),
              read_record(p, tmp_path, data=data, sha256=hashlib.sha256(data).hexdigest())):
        assert np.array_equal(a.counts, b.counts)
        assert {k: v for k, v in vars(a).items() if k != "counts"} == \
               {k: v for k, v in vars(b).items() if k != "counts"}


_HEADER_LINES = ["$A:", "$ACC_VOLT:", "$X_Position:", " $B C:", "\t$X.Y-1:", "$:", "$A: inline", "10.0",
                 "  39133", "   0.0 ", "04-16-2019 09:00:00", "", " ", "$notatag", "a $b:", "x\t", "ü",
                 "\xa0x\xa0", "\x0b", "#1", "~ "]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_HEADER_LINES), max_size=12), st.sampled_from(["", "\n", "\n\n"]))
def test_header_fast_path_matches_general_parser(lines, end):
    """The one-pass parse of the usual header gives what the general parser gives."""
    from xrfcore.io.avaatech import _parse_header, _parse_header_general

    text = "\n".join(lines) + end
    w1, w2 = [], []
    fast, general = _parse_header(text, w1), _parse_header_general(text, w2)
    assert fast == general and list(fast) == list(general) and w1 == w2
