"""Lab tables as labs send them (issue 14 item 6): Excel .xlsx (written by openpyxl), OpenDocument
.ods (written by pandas/odfpy), CSV with semicolons / tabs and decimal commas, all detected."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xrfcore import labels, labtables


def _rows():
    return [["core", "depth_top (cm)", "depth_bottom (cm)", "CaCO3 (wt%)", "TOC (wt%)", "Fe (mg/kg)"],
            ["GeoB1-1", 10, 11, 45.5, 0.81, 21000],
            ["GeoB1-1", 20, 21, 50.25, 1.2, 19500],
            ["GeoB1-1", 30, 31, 38.0, 0.95, 23000]]


def test_xlsx_written_by_openpyxl(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Lab results"
    ws.append(["# carbonate by coulometry, lab of X"])          # a note above the table
    ws.append([])
    for r in _rows():
        ws.append(r)
    ws.append(["GeoB1-1", 40, 41, "47,5", "1,1", 20000])        # numbers typed as text, decimal comma
    wb.create_sheet("notes")
    p = tmp_path / "lab.xlsx"
    wb.save(p)

    t = labtables.read_table(p)
    assert list(t.frame.columns) == _rows()[0] and t.source_rows == [4, 5, 6, 7]
    assert t.kind == "xlsx" and t.sheet == "Lab results" and "first of 2 sheets" in t.describe()
    assert t.comments and "coulometry" in t.comments[0]
    lab = labels.read_lab_csv(p, targets="CaCO3,TOC,Fe")
    s = lab.samples
    assert len(s) == 4 and lab.depth_unit == "cm"
    np.testing.assert_allclose(s["depth_top_mm"], [100, 200, 300, 400])
    np.testing.assert_allclose(s["CaCO3"], [45.5, 50.25, 38.0, 47.5])
    np.testing.assert_allclose(s["TOC"], [0.81, 1.2, 0.95, 1.1])
    assert lab.target_units["Fe"] == "mg/kg" and list(s["source_row"]) == [4, 5, 6, 7]
    head, how = labtables.preview(p, n=2)
    assert list(head["row"]) == [4, 5] and "Excel" in how and "4 rows" in how


def test_ods_written_by_pandas(tmp_path):
    pytest.importorskip("odf")
    rows = _rows()
    p = tmp_path / "lab.ods"
    pd.DataFrame(rows[1:], columns=rows[0]).to_excel(p, engine="odf", index=False, sheet_name="Tabelle1")
    t = labtables.read_table(p)
    assert t.kind == "ods" and t.sheet == "Tabelle1" and "OpenDocument" in t.describe()
    lab = labels.read_lab_csv(p)
    assert len(lab.samples) == 3 and lab.samples["CaCO3"].tolist() == [45.5, 50.25, 38.0]


@pytest.mark.parametrize("sep", [";", "\t"])
def test_csv_separator_and_decimal_comma_detected(tmp_path, sep):
    # more decimal commas than separators on a line: counting characters would pick the comma
    text = (f"core{sep}top_cm{sep}bottom_cm{sep}CaCO3 (wt%){sep}TOC (wt%)\n"
            f"A{sep}10,5{sep}11,5{sep}45,25{sep}0,81\n"
            f"A{sep}20,5{sep}21,5{sep}50,5{sep}1,25\n")
    p = tmp_path / "lab.csv"
    p.write_text(text, encoding="cp1252")
    t = labtables.read_table(p)
    assert (t.sep, t.decimal) == (sep, ",")
    lab = labels.read_lab_csv(p)
    np.testing.assert_allclose(lab.samples["depth_top_mm"], [105, 205])
    np.testing.assert_allclose(lab.samples["CaCO3"], [45.25, 50.5])
    assert "decimal comma" in t.describe()


def test_plain_comma_csv_and_bad_files(tmp_path):
    p = tmp_path / "lab.csv"
    p.write_text("# SIMULATED\ncore,depth_mm,CaCO3 (wt%)\nA,5,40.5\nA,15,41\n")
    t = labtables.read_table(p)
    assert (t.sep, t.decimal) == (",", ".") and t.source_rows == [3, 4]
    assert labels.read_lab_csv(p).simulated
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"\x00\x01\x02garbage without separators\n")
    with pytest.raises(ValueError, match="junk.csv: not a CSV table"):
        labtables.read_table(junk)
    renamed = tmp_path / "lab_xlsx.csv"
    renamed.write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    with pytest.raises(ValueError, match="a spreadsheet .* saved under another name"):
        labtables.read_table(renamed)
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.xlsx: not a readable .xlsx spreadsheet"):
        labtables.read_table(broken)
