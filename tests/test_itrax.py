"""Itrax reader on the real example files (skipped when ../shared is absent) and synthetic edits."""
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xrfcore.energy import Grid, LINES
from xrfcore.io.itrax import read_itrax_folder, read_itrax_spe, read_result_table
from xrfcore.io.records import ParseError


@pytest.fixture
def itrax(realdata):
    return realdata / "itrax"


def test_real_spectrum(itrax):
    spe = read_itrax_spe((itrax / "L000676.spe").read_bytes(), "L000676.spe")
    h = spe.header
    assert spe.counts.shape == (2048,) and spe.counts.dtype == np.int32
    assert abs(int(spe.counts.sum()) - float(h["events_in_run"])) <= 10
    live, run = spe.number("livetime"), spe.number("runtime")
    icr, ocr = spe.number("input_count_rate"), spe.number("output_count_rate")
    assert 0 < live < run
    assert 1 - live / run == pytest.approx(1 - ocr / icr, abs=2e-3)
    assert h["Tube anode"] == "Mo" and spe.number("Tube voltage") == 30
    assert spe.units["Position"] == "mm" and spe.number("Position") == pytest.approx(707.540018)
    assert spe.warnings == []


def test_real_results_table(itrax):
    df = read_result_table(itrax / "CD166_19_S1_Results.txt")
    assert len(df) == 1283
    assert df.columns[0] == "filename" and df.columns[-2] == "Dt" and df.columns[-1] == "file"
    assert not any(c.startswith("Unnamed") for c in df.columns)
    row = df[df["file"] == "L000676.spe"].iloc[0]
    assert row["E-gain"] * 1000 == pytest.approx(10.27, abs=0.01)     # eV per channel
    assert row["E-offset"] == pytest.approx(-0.009931)
    assert row["cps"] == 44598          # the Q-Spec re-evaluation reports the input rate
    assert row["validity"] is True or row["validity"] == True  # noqa: E712
    assert "as reported" in df.attrs["cps_note"]
    assert "re-evaluated" in df.attrs["title"]


def test_real_1024_era_table(itrax):
    df = read_result_table(itrax / "WASA_N10-1_result.txt")
    assert len(df) == 531
    assert df["E-gain"].median() * 1000 == pytest.approx(19.3, abs=0.05)
    assert int((~df["validity"]).sum()) == 9
    assert df["file"].iloc[0] == "L000000.spe"
    assert "Cr coh" in df.columns


def make_scan(tmp_path, itrax, name="CD166_19_S1", table="Results.txt", zipped=False):
    scan = tmp_path / name
    scan.mkdir()
    if zipped:
        with zipfile.ZipFile(scan / "XRF Data.zip", "w") as zf:
            zf.write(itrax / "L000676.spe", "L000676.spe")
    else:
        (scan / "XRF data").mkdir()
        shutil.copy(itrax / "L000676.spe", scan / "XRF data" / "L000676.spe")
    if table:
        shutil.copy(itrax / "CD166_19_S1_Results.txt", scan / table)
    return scan


@pytest.mark.parametrize("zipped", [False, True])
def test_real_folder(tmp_path, itrax, zipped):
    scan = make_scan(tmp_path, itrax, zipped=zipped)
    (rec,) = read_itrax_folder(scan)
    assert rec.scanner == "itrax" and rec.core == "CD166_19_S1"
    assert rec.source_path == ("XRF Data.zip/L000676.spe" if zipped else "XRF data/L000676.spe")
    assert len(rec.sha256) == 64
    assert rec.counts.shape == (2048,)
    assert rec.depth_mm == rec.position_mm == pytest.approx(707.540018)
    assert (rec.kv, rec.current_ua) == (30.0, 30000.0)
    assert rec.live_s == pytest.approx(13.480499) and rec.real_s == pytest.approx(15.000049)
    assert rec.gain_kev == pytest.approx(0.010267) and rec.offset_kev == pytest.approx(-0.009931)
    assert rec.total_cps == 44598 and rec.valid
    assert rec.date == "2020-09-22T20:08:00"
    assert rec.header["result_table"] == "Results.txt"
    assert rec.warnings == []


def test_calibration_puts_peaks_where_they_belong(tmp_path, itrax):
    (rec,) = read_itrax_folder(make_scan(tmp_path, itrax))
    grid = Grid(rec.counts.size, rec.gain_kev, rec.offset_kev)
    for element in ("Ca", "Fe", "Sr"):
        kev = next(ln.kev for ln in LINES if ln.element == element and ln.line == "Ka")
        ch = int(round(grid.channel_of(kev)))
        peak = ch - 6 + int(np.argmax(rec.counts[ch - 6: ch + 7]))
        assert abs(peak - grid.channel_of(kev)) <= 2, element


def test_folder_without_table_row_or_table(tmp_path, itrax):
    scan = make_scan(tmp_path, itrax, table=None)
    (rec,) = read_itrax_folder(scan, core="MyCore")
    assert rec.core == "MyCore" and rec.gain_kev is None
    assert any("energy scale unknown" in w for w in rec.warnings)
    # A table without the row
    lines = (itrax / "CD166_19_S1_Results.txt").read_bytes().split(b"\n")
    (scan / "result.txt").write_bytes(b"\n".join(ln for ln in lines if b"L000676" not in ln))
    (rec,) = read_itrax_folder(scan)
    assert rec.gain_kev is None and any("no row for L000676.spe" in w for w in rec.warnings)


def test_invalid_row_marks_record(tmp_path, itrax):
    scan = make_scan(tmp_path, itrax, table=None)
    lines = (itrax / "CD166_19_S1_Results.txt").read_text(encoding="latin-1").split("\n")
    out = []
    for ln in lines:
        if "L000676" in ln:
            cells = ln.split("\t")
            cells[3] = "0"
            ln = "\t".join(cells)
        out.append(ln)
    (scan / "result.txt").write_text("\r\n".join(out), encoding="latin-1")
    (rec,) = read_itrax_folder(scan)
    assert rec.valid is False and any("validity 0" in w for w in rec.warnings)


def _synthetic(counts, channel_fmt="{:.3f}", count_fmt="{:.3f}"):
    head = ["Date:\t18-Jun-18\t\t", "Time:\t10:15 AM\t\t", "Section name:\tN10-1\t\t",
            "Position\t6.000000\tmm\t", "Tube voltage:\t30\tkV\t", "Tube current:\t50\tmA\t",
            f"number_mca_channels\t{len(counts)}.000000\tno:\t", "livetime\t8.5\tseconds\t",
            "runtime\t10.0\tseconds\t", "channel\tcontent\t\t"]
    data = [f"{channel_fmt.format(i + 1)}\t{count_fmt.format(c)}" for i, c in enumerate(counts)]
    return ("\r".join(head) + "\r" + "\r\n".join(data) + "\r\n").encode("latin-1")


def test_1024_channels_and_integer_counts():
    counts = np.random.default_rng(0).poisson(20, 1024)
    spe = read_itrax_spe(_synthetic(counts, "{}", "{}"), "L000000.spe")
    assert spe.counts.size == 1024 and np.array_equal(spe.counts, counts)
    assert spe.header["Section name"] == "N10-1"


def test_1024_folder_record(tmp_path, itrax):
    scan = tmp_path / "N10-1_REP1"
    (scan / "XRF data").mkdir(parents=True)
    counts = np.random.default_rng(1).poisson(20, 1024)
    (scan / "XRF data" / "L000000.spe").write_bytes(_synthetic(counts))
    (scan / "XRF data" / "sumspectra.spe").write_bytes(_synthetic(counts * 5))
    shutil.copy(itrax / "WASA_N10-1_result.txt", scan / "result.txt")
    (rec,) = read_itrax_folder(scan)
    assert rec.core == "N10-1" and rec.replicate == 1
    assert rec.gain_kev == pytest.approx(0.019295) and rec.counts.size == 1024
    assert rec.date == "2018-06-18T10:15:00" and rec.current_ua == 50000.0


def test_channel_count_mismatch_is_warned():
    data = _synthetic(np.ones(1024)).replace(b"number_mca_channels\t1024", b"number_mca_channels\t2048")
    assert any("number_mca_channels" in w for w in read_itrax_spe(data).warnings)


@pytest.mark.parametrize("data,needle", [
    (b"", "empty"),
    (b"\x00\x01\x02garbage", "binary"),
    (b"Date:\t22-Sep-20\t\t\r1.000\t2.000\r\n", "channel"),
    (_synthetic([1.0, 2.5, 3.0]), "whole numbers"),
    (_synthetic([1.0, -2.0, 3.0]), "negative"),
    (_synthetic([1, 2, 3]).replace(b"2.000\t2.000\r\n", b""), "channel numbers"),
    (_synthetic([1, 2, 3]).replace(b"3.000\t3.000", b"3.000\tabc"), "text token 'abc'"),
    (_synthetic([1, 2, 3]).replace(b"3.000\t3.000", b"3.000"), "channel and a count"),
])
def test_bad_itrax_spectra(data, needle):
    with pytest.raises(ParseError) as info:
        read_itrax_spe(data, "L1.spe")
    assert needle in info.value.problem and info.value.path == "L1.spe"


def test_bad_table(tmp_path):
    p = tmp_path / "result.txt"
    p.write_text("just one line\n")
    with pytest.raises(ParseError, match="not an Itrax result table"):
        read_result_table(p)
    with pytest.raises(ParseError, match="cannot read"):
        read_result_table(tmp_path / "missing.txt")


def test_unparseable_spectrum_is_collected(tmp_path):
    scan = tmp_path / "S"
    (scan / "XRF data").mkdir(parents=True)
    (scan / "XRF data" / "L000001.spe").write_bytes(b"garbage")
    (scan / "XRF data" / "L000002.spe").write_bytes(_synthetic(np.ones(1024)))
    errors = []
    recs = read_itrax_folder(scan, errors=errors)
    assert len(recs) == 1 and len(errors) == 1 and "L000001.spe" in str(errors[0])
    with pytest.raises(ParseError):
        read_itrax_folder(scan)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_parse_error(data):
    try:
        read_itrax_spe(data, "fuzz.spe")
    except ParseError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 30), st.binary(max_size=8)), max_size=5))
def test_mutated_spectra_only_parse_error(edits):
    raw = bytearray(_synthetic(np.arange(64) % 7))
    for pos, cut, insert in edits:
        pos %= len(raw) + 1
        raw[pos:pos + cut] = insert
    try:
        spe = read_itrax_spe(bytes(raw), "fuzz.spe")
    except ParseError:
        return
    assert (spe.counts >= 0).all()


def test_decimal_comma_counts_rejected_plainly():
    data = _synthetic([1, 2, 3]).replace(b"3.000\t3.000", b"3.000\t3,000")
    with pytest.raises(ParseError, match="3,000"):
        read_itrax_spe(data, "L1.spe")


# --------------------------------------------------------------------------- sum spectra, tables alone

REPLICATES = "CD166_19_S1_replicates"


def test_real_sum_spectrum_is_read_as_a_spectrum(itrax):
    from xrfcore.io.itrax import describe_sum_spectrum, is_sum_spectrum_name, read_sum_spectrum

    path = itrax / REPLICATES / "REP1" / "sumspectra.spe"
    spe = read_sum_spectrum(path.read_bytes(), "sumspectra.spe")
    assert spe.counts.shape == (2048,) and spe.counts.sum() > 1e6
    assert spe.header["Tube anode"] == "Mo" and spe.number("Tube voltage") == 30
    text = describe_sum_spectrum(spe)
    assert text.startswith("Itrax sum spectrum: read (2048 channels") and "Mo tube at 30 kV" in text
    assert "kept as the scan's sum (not a depth)" in text
    assert is_sum_spectrum_name("a/b/SumSpectra_2.spe") and not is_sum_spectrum_name("L000676.spe")


def test_scan_folder_imports_its_depths_and_reports_the_sum_apart(tmp_path, itrax):
    from xrfcore import store
    from xrfcore.importer import import_folder

    rep1 = itrax / REPLICATES / "REP1"
    report = import_folder(rep1, tmp_path / "p.h5", workers=1)
    rows = {f.path: f for f in report.files}
    assert rows["sumspectra.spe"].status == "skipped"
    assert "Itrax sum spectrum: read" in rows["sumspectra.spe"].message
    assert "not a depth" in rows["sumspectra.spe"].message
    assert report.added == 99    # the 99 raw spectra of the zip; the sum is not one of the depths
    with store.Project.open(tmp_path / "p.h5") as p:
        (core,) = p.cores()
        (run,) = p.runs(core)
        assert p.n_spectra(core, run) == 99
    assert "Not imported (not a depth spectrum)" in report.summary() and "sumspectra.spe" in report.summary()


def test_results_tables_without_raw_spectra_are_named_not_rejected_as_avaatech(tmp_path, itrax):
    from xrfcore.importer import TABLE_WITHOUT_SPECTRA, import_folder

    rep1 = itrax / REPLICATES / "REP1"
    only = tmp_path / "REP1-no-spectra"
    only.mkdir()
    for name in ("result.txt", "Results.txt", "sumspectra.spe", "document.txt"):
        shutil.copy(rep1 / name, only / name)
    with pytest.raises(ValueError) as err:   # nothing to import: said file by file, in one message
        import_folder(only, tmp_path / "p.h5")
    msg = str(err.value)
    assert f"result.txt: {TABLE_WITHOUT_SPECTRA}" in msg and f"Results.txt: {TABLE_WITHOUT_SPECTRA}" in msg
    assert "sumspectra.spe: Itrax sum spectrum: read" in msg
    assert "Avaatech" not in msg and not (tmp_path / "p.h5").exists()

    # beside Avaatech spectra: those are imported, the Itrax files reported for what they are
    src = Path(__file__).resolve().parents[1] / "resources" / "sample_core" / "SIM01-1" / "Run 1 at  10kV"
    run = tmp_path / "mixed" / "SIM01-1" / src.name
    run.mkdir(parents=True)
    for f in sorted(src.glob("*.spe"))[:3]:
        shutil.copy(f, run / f.name)
    for name in ("result.txt", "sumspectra.spe"):
        shutil.copy(rep1 / name, tmp_path / "mixed" / name)
    report = import_folder(tmp_path / "mixed", tmp_path / "p.h5", workers=1)
    rows = {f.path: f for f in report.files}
    assert report.added == 3 and not report.rejected
    assert rows["result.txt"].status == "skipped" and rows["result.txt"].message == TABLE_WITHOUT_SPECTRA
    assert rows["sumspectra.spe"].status == "skipped" and "Itrax sum spectrum: read" in rows["sumspectra.spe"].message
    assert TABLE_WITHOUT_SPECTRA in report.summary()


def test_unreadable_sum_spectrum_is_rejected_with_its_reason(tmp_path):
    from xrfcore.importer import import_folder

    (tmp_path / "scan").mkdir()
    (tmp_path / "scan" / "sumspectra.spe").write_text("Date:\t1-Jan-20\t\r\nnothing else\r\n")
    with pytest.raises(ValueError, match=r"sumspectra.spe: Itrax sum spectrum \(sumspectra\*.spe\) unreadable: "
                                         r"no 'channel<TAB>content' line"):
        import_folder(tmp_path / "scan", tmp_path / "p.h5")
