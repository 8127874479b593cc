"""Reading a lab table as labs send it: CSV (comma, semicolon, tab or bar separated; decimal point or
decimal comma, detected), Excel (.xlsx via openpyxl, .xls via xlrd) or OpenDocument (.ods via odfpy).

:func:`read_table` gives the raw table (header + data rows, '#' comment lines set apart, the line or
spreadsheet row of each data row) that ``xrfcore.labels.read_lab_csv`` maps and checks, and that
the app previews before the mapping. Errors are ``ValueError`` naming the file.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SPREADSHEETS = {".xlsx": "openpyxl", ".xlsm": "openpyxl", ".xls": "xlrd", ".ods": "odf"}
SEPARATORS = (",", ";", "\t", "|")
SEP_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}
FILE_FILTER = "Lab tables (*.csv *.txt *.tsv *.xlsx *.xlsm *.xls *.ods)"
_COMMA_NUMBER = re.compile(r"^\s*[-+]?\d+,\d+\s*$")
_POINT_NUMBER = re.compile(r"^\s*[-+]?\d*\.\d+\s*$")


@dataclass
class RawTable:
    """A lab table as read: ``frame`` (header row as columns), its rows' lines in the file."""

    frame: pd.DataFrame
    comments: list[str]
    source_rows: list[int]       # 1-based line (CSV) or spreadsheet row of each data row
    sha256: str
    kind: str                    # "csv" | "xlsx" | "xls" | "ods"
    sep: str = ","
    decimal: str = "."
    sheet: str = ""
    sheets: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """'semicolon-separated CSV, decimal comma' / 'Excel sheet "Lab" (1 of 2)'."""
        if self.kind == "csv":
            return (f"{SEP_NAMES.get(self.sep, repr(self.sep))}-separated CSV, decimal "
                    f"{'comma' if self.decimal == ',' else 'point'}")
        what = {"ods": "OpenDocument spreadsheet"}.get(self.kind, "Excel workbook")
        more = f" (first of {len(self.sheets)} sheets)" if len(self.sheets) > 1 else ""
        return f"{what}, sheet {self.sheet!r}{more}"


def is_spreadsheet(path) -> bool:
    return Path(path).suffix.lower() in SPREADSHEETS


def read_table(path) -> RawTable:
    """Read a lab table (CSV or spreadsheet, see the module doc); ValueError/OSError naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OSError(f"{path}: cannot read lab file ({exc.strerror or exc})") from None
    sha = hashlib.sha256(raw).hexdigest()
    if is_spreadsheet(path):
        return _read_spreadsheet(path, raw, sha)
    if raw.startswith(b"PK\x03\x04") or raw.startswith(b"\xd0\xcf\x11\xe0"):
        raise ValueError(f"{path}: a spreadsheet (Excel or OpenDocument) saved under another name; "
                         "save it as .xlsx / .ods (or as CSV) and load that")
    return _read_csv(path, raw, sha)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:   # a European spreadsheet's CSV export: Windows-1252
        return raw.decode("cp1252", errors="replace")


def detect_separator(lines: list[str]) -> str:
    """The separator that splits the header and the first data rows into the same (largest) number
    of fields; a comma when none splits anything."""
    best, best_key = ",", (-1, -1)
    for sep in SEPARATORS:
        rows = list(csv.reader(lines[:30], delimiter=sep))
        if not rows or len(rows[0]) < 2:
            continue
        n = len(rows[0])
        agree = sum(len(r) == n for r in rows[1:]) / max(len(rows) - 1, 1)
        key = (agree >= 0.8, n)
        if key > best_key:
            best, best_key = sep, key
    return best


def detect_decimal(lines: list[str], sep: str) -> str:
    """',' when the cells are numbers written with a decimal comma (12,5) more often than with a
    point (a comma-separated file always has '.')."""
    if sep == ",":
        return "."
    comma = point = 0
    for row in csv.reader(lines[1:200], delimiter=sep):
        for cell in row:
            comma += bool(_COMMA_NUMBER.match(cell))
            point += bool(_POINT_NUMBER.match(cell))
    return "," if comma > point else "."


def _read_csv(path: Path, raw: bytes, sha: str) -> RawTable:
    text = _decode(raw)
    all_lines = text.splitlines()
    comments = [ln for ln in all_lines if ln.lstrip().startswith("#")]
    lines = [ln for ln in all_lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{path}: the file is empty (no header line)")
    if "\x00" in lines[0]:
        raise ValueError(f"{path}: not a CSV table (binary content)")
    sep = detect_separator(lines)
    if len(next(csv.reader(lines[:1], delimiter=sep))) < 2:
        raise ValueError(f"{path}: not a CSV table (one column only in the header line)")
    decimal = detect_decimal(lines, sep)
    try:
        df = pd.read_csv(io.StringIO(text), comment="#", sep=sep, decimal=decimal, skip_blank_lines=True)
    except Exception as exc:  # noqa: BLE001 (pandas raises several kinds for malformed text)
        raise ValueError(f"{path}: not a readable CSV table ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    data_lines = [i + 1 for i, ln in enumerate(all_lines)
                  if ln.strip() and not ln.lstrip().startswith("#")][1:]
    rows = data_lines[: len(df)] if len(data_lines) >= len(df) else list(range(2, len(df) + 2))
    return RawTable(df, comments, rows, sha, "csv", sep, decimal)


def _cell_text(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    return str(v).strip()


def _read_spreadsheet(path: Path, raw: bytes, sha: str) -> RawTable:
    ext = path.suffix.lower()
    engine = SPREADSHEETS[ext]
    try:
        book = pd.read_excel(io.BytesIO(raw), sheet_name=None, header=None, dtype=object, engine=engine)
    except ImportError as exc:
        raise ValueError(f"{path}: reading {ext} files needs the Python package "
                         f"{'odfpy' if engine == 'odf' else engine} ({exc}); install it, or save the "
                         "table as CSV") from None
    except Exception as exc:  # noqa: BLE001 (each engine has its own errors for a broken file)
        raise ValueError(f"{path}: not a readable {ext} spreadsheet ({' '.join(str(exc).split())})") from None
    sheets = [str(s) for s in book]
    name = next((s for s in book if book[s].dropna(how="all").shape[0] > 1), None)
    if name is None:
        raise ValueError(f"{path}: no sheet holds a table (a header row and data rows)")
    grid = book[name]
    comments, header, body, rows = [], None, [], []
    for i in range(len(grid)):
        cells = list(grid.iloc[i])
        texts = [_cell_text(v) for v in cells]
        if not any(texts):
            continue
        first = next(t for t in texts if t)
        if first.startswith("#"):
            comments.append(" ".join(t for t in texts if t))
            continue
        if header is None:
            header = [t or f"column {j + 1}" for j, t in enumerate(texts)]
            continue
        body.append(cells)
        rows.append(i + 1)   # the spreadsheet's own row number
    if header is None or not body:
        raise ValueError(f"{path}: sheet {name!r} has no data rows under its header")
    while header and header[-1].startswith("column ") and all(_cell_text(r[len(header) - 1]) == "" for r in body):
        header.pop()   # empty trailing columns of a spreadsheet
    if len(header) < 2:
        raise ValueError(f"{path}: sheet {name!r} has one column only")
    df = pd.DataFrame([r[:len(header)] for r in body], columns=header)
    for c in df.columns:   # numbers typed as text with a decimal comma ('12,5'): read as numbers
        df[c] = df[c].map(lambda v: float(v.replace(",", ".")) if isinstance(v, str) and _COMMA_NUMBER.match(v)
                          else v)
    df = df.replace({None: np.nan}).infer_objects()
    return RawTable(df, comments, rows, sha, ext.lstrip("."), sheet=str(name), sheets=sheets)


def preview(path, n: int = 12) -> tuple[pd.DataFrame, str]:
    """(the first ``n`` rows as read, a line saying how it was read) for the mapping dialog."""
    t = read_table(path)
    head = t.frame.head(n).copy()
    head.insert(0, "line" if t.kind == "csv" else "row", t.source_rows[: len(head)])
    return head, f"{t.describe()}; {len(t.frame)} rows, {len(t.frame.columns)} columns"
