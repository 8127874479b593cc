"""Itrax (Cox Analytical) core scanner: raw ``Lnnnnnn.spe`` spectra and the result table.

Follows /shared/spec/scanner-formats.md section 2, checked on the real files in
/shared/reference/realdata/itrax/. The raw spectra carry no energy calibration
(E0 = 0, E1 = 1); it comes from ``result.txt`` / ``Results.txt`` (``E-gain`` in keV per
channel, ``E-offset`` in keV). Array index 0 is the file's channel 1; the calibration is
applied as ``E-offset + E-gain * index`` (on L000676 the Ca, Sr and Mo K peaks sit within
about half a channel of their tabulated energies with this convention).
"""
from __future__ import annotations

import hashlib
import math
import io
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .limits import read_file_limited, read_zip_entry_limited
from .records import ParseError, SpectrumRecord

INT32_MAX = 2**31 - 1

__all__ = ["ItraxSpe", "read_itrax_spe", "read_result_table", "find_result_table",
           "read_itrax_folder", "CPS_NOTE"]

CPS_NOTE = ("cps as reported by the scanner software: output count rate in result.txt, "
            "input count rate in the Q-Spec Results.txt re-evaluation")


@dataclass
class ItraxSpe:
    header: dict[str, str]          # key (without trailing ':') -> value text
    units: dict[str, str]           # key -> unit text ("" when none)
    counts: np.ndarray              # int32 (C,)
    warnings: list[str] = field(default_factory=list)

    def number(self, key: str) -> float | None:
        return _num(self.header.get(key))


def _num(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        v = float(str(text).strip().replace(",", "."))
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _lines(text: str) -> list[str]:
    # Header lines end in a lone CR, data lines in CRLF: normalise both.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def read_itrax_spe(data: bytes, path: str = "<bytes>") -> ItraxSpe:
    """Parse one raw Itrax spectrum. Raises only :class:`ParseError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParseError(path, f"expected file bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data.strip():
        raise ParseError(path, "the file is empty")
    if b"\x00" in data:
        raise ParseError(path, "the file holds binary data, not a text spectrum")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = _lines(data.decode("latin-1"))
    start = None
    for i, line in enumerate(lines):
        cells = [c.strip().lower() for c in line.split("\t")]
        if len(cells) >= 2 and cells[0] == "channel" and cells[1] == "content":
            start = i
            break
    if start is None:
        raise ParseError(path, "no 'channel<TAB>content' line: this is not an Itrax spectrum file")
    header: dict[str, str] = {}
    units: dict[str, str] = {}
    for line in lines[:start]:
        if not line.strip():
            continue
        cells = line.split("\t")
        key = cells[0].strip().rstrip(":").strip()
        if not key:
            continue
        header[key] = cells[1].strip() if len(cells) > 1 else ""
        units[key] = cells[2].strip() if len(cells) > 2 else ""
    body = "\n".join(lines[start + 1:])
    tokens = body.split()
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        values = None
    if values is None:
        bad = next((t for t in tokens if not _is_float(t)), None)
        if bad is None:  # e.g. a decimal comma, which Itrax never writes
            raise ParseError(path, "unreadable numbers in the channel/count rows")
        raise ParseError(path, f"text token '{bad[:20]}' in the channel/count rows")
    if values.size == 0:
        raise ParseError(path, "no channel rows after the 'channel content' line")
    if values.size % 2:
        raise ParseError(path, "the channel rows do not all hold a channel and a count")
    channels, counts = values[0::2], values[1::2]
    n = counts.size
    if not np.array_equal(channels, np.arange(1, n + 1)):
        raise ParseError(path, "the channel numbers are not 1, 2, 3, ... (missing or shuffled rows)")
    if (counts < 0).any():
        i = int(np.argmax(counts < 0))
        raise ParseError(path, f"negative count {counts[i]:g} at channel {i + 1}")
    if not np.isfinite(counts).all() or (counts != np.round(counts)).any():
        raise ParseError(path, "counts are not whole numbers")
    if counts.max() > INT32_MAX:
        raise ParseError(path, "a count is too large for a 32-bit integer")
    warnings: list[str] = []
    declared = _num(header.get("number_mca_channels"))
    if declared is not None and int(declared) != n:
        warnings.append(f"{n} channel rows but number_mca_channels says {declared:g}")
    if n not in (1024, 2048):
        warnings.append(f"unusual number of channels: {n}")
    if not counts.any():
        warnings.append("all counts are zero")
    return ItraxSpe(header, units, counts.astype(np.int32), warnings)


# --------------------------------------------------------------------------- result table

def read_result_table(path) -> pd.DataFrame:
    """Read ``result.txt`` / ``Results.txt``: 2 title lines, then a tab-separated table.

    Returns the table with the empty trailing column dropped and a ``file`` column (the
    basename of ``filename``, for matching). ``validity`` is bool. ``E-gain`` is keV per
    channel, ``E-offset`` keV. ``cps`` is kept as reported (see :data:`CPS_NOTE`).
    ``df.attrs`` holds ``title`` (line 0) and ``cps_note``. Raises only ParseError.
    """
    path = Path(path)
    try:
        raw = read_file_limited(path, str(path))
    except OSError as exc:
        raise ParseError(str(path), f"cannot read the result table ({exc.strerror or exc})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = _lines(raw.decode("latin-1"))
    if len(lines) < 3 or "\t" not in lines[2]:
        raise ParseError(str(path), "not an Itrax result table (no tab-separated header on line 3)")
    try:
        df = pd.read_csv(io.StringIO("\n".join(lines[2:])), sep="\t", dtype={"filename": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise ParseError(str(path), f"cannot read the result table: {exc}") from None
    drop = [c for c in df.columns
            if (str(c).startswith("Unnamed") or not str(c).strip()) and df[c].isna().all()]
    df = df.drop(columns=drop)
    df.columns = [str(c).strip() for c in df.columns]
    if "filename" not in df.columns:
        raise ParseError(str(path), "the result table has no 'filename' column")
    df = df[df["filename"].notna() & (df["filename"].astype(str).str.strip() != "")].copy()
    df["file"] = [re.split(r"[\\/]", str(f).strip())[-1] for f in df["filename"]]
    if "validity" in df.columns:
        df["validity"] = pd.to_numeric(df["validity"], errors="coerce").fillna(0).astype(int) == 1
    df = df.reset_index(drop=True)
    df.attrs["title"] = lines[0].strip()
    df.attrs["cps_note"] = CPS_NOTE
    df.attrs["source"] = path.name
    return df


def find_result_table(folder) -> Path | None:
    """The scan's result table: ``Results.txt`` (Q-Spec re-evaluation) first, else ``result.txt``."""
    folder = Path(folder)
    files = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    for name in ("results.txt", "result.txt"):
        if name in files:
            return files[name]
    return None


# --------------------------------------------------------------------------- folder

def _spectrum_sources(folder: Path):
    """Yield (relative posix path, bytes-or-error) for every raw spectrum of a scan."""
    data_dir = next((p for p in folder.iterdir() if p.is_dir() and p.name.lower() == "xrf data"), None)
    if data_dir is not None:
        for p in sorted(data_dir.iterdir()):
            if not p.is_dir() and p.suffix.lower() == ".spe" and p.stem.lower() != "sumspectra":
                rel = p.relative_to(folder).as_posix()
                try:
                    yield rel, read_file_limited(p, rel)   # a FIFO, device or huge file: ParseError
                except ParseError as err:
                    yield rel, err
                except OSError as exc:
                    yield rel, ParseError(rel, f"cannot read the file ({exc.strerror or exc})")
        return
    zpath = next((p for p in folder.iterdir() if p.is_file() and p.name.lower() == "xrf data.zip"), None)
    if zpath is None:
        return
    try:
        st = zpath.stat()
        if not stat.S_ISREG(st.st_mode):
            yield zpath.name, ParseError(zpath.name, "not a regular file: skipped unread")
            return
        with zipfile.ZipFile(zpath) as zf:
            infos = sorted((i for i in zf.infolist()
                            if i.filename.lower().endswith(".spe") and not i.is_dir()
                            and Path(i.filename).stem.lower() != "sumspectra"), key=lambda i: i.filename)
            for info in infos:
                rel = f"{zpath.name}/{info.filename}"
                try:   # the declared size is checked before reading; the read is bounded
                    yield rel, read_zip_entry_limited(zf, info, rel)
                except ParseError as err:
                    yield rel, err
                except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, zlib.error) as exc:
                    yield rel, ParseError(rel, f"cannot read from the zip ({exc})")
    except (zipfile.BadZipFile, OSError) as exc:
        yield zpath.name, ParseError(zpath.name, f"cannot open the zip file ({exc})")


def _itrax_date(header: dict[str, str]) -> str:
    """``22-Sep-20`` + ``8:08 PM`` -> ISO; "" when the date cannot be read."""
    d, t = header.get("Date", "").strip(), header.get("Time", "").strip()
    for text, fmt in ((f"{d} {t}", "%d-%b-%y %I:%M %p"), (f"{d} {t}", "%d-%b-%y %H:%M"),
                      (f"{d} {t}", "%d-%b-%Y %I:%M %p"), (d, "%d-%b-%y")):
        try:
            return datetime.strptime(text, fmt).isoformat()
        except ValueError:
            continue
    return ""


def read_itrax_folder(folder, *, core: str | None = None, errors: list | None = None,
                      ) -> list[SpectrumRecord]:
    """Read every raw spectrum of one Itrax scan folder, calibrated from its result table.

    The spectra come from ``XRF data/`` (or ``XRF Data.zip``). A spectrum without a
    table row gets no calibration and a warning. Files that cannot be parsed are left
    out; their :class:`ParseError` is appended to ``errors`` when given, else raised.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ParseError(str(folder), "not a folder")
    table_path = find_result_table(folder)
    table = read_result_table(table_path) if table_path is not None else None
    rows = {}
    if table is not None:
        for _, row in table.iterrows():
            rows.setdefault(row["file"].lower(), row)
    rep = re.search(r"_REP(\d+)$", folder.name, re.I)
    records: list[SpectrumRecord] = []
    for rel, payload in _spectrum_sources(folder):
        try:
            if isinstance(payload, ParseError):
                raise payload
            records.append(_record(rel, payload, rows, table, table_path, folder, core, rep))
        except ParseError as err:
            if errors is None:
                raise
            errors.append(err)
    return records


def _record(rel, payload, rows, table, table_path, folder, core, rep) -> SpectrumRecord:
    spe = read_itrax_spe(payload, rel)
    h = spe.header
    warnings = list(spe.warnings)
    section_name = h.get("Section name", "").strip()
    if section_name.lower() in ("section", "sample"):
        section_name = ""  # the software's placeholder, not a name
    folder_core = re.sub(r"_(REP\d+|RAD)$", "", folder.name, flags=re.I)
    if core:
        core_name = core
    elif section_name:
        core_name = section_name
    else:
        core_name = folder_core
    base = rel.rsplit("/", 1)[-1]
    row = rows.get(base.lower())
    gain = offset = cps = None
    valid = True
    position = spe.number("Position")
    if row is None:
        if table is not None:
            warnings.append(f"no row for {base} in {table_path.name}: energy scale unknown")
        else:
            warnings.append("no result.txt / Results.txt in the scan folder: energy scale unknown")
    else:
        gain = _num(row.get("E-gain"))
        offset = _num(row.get("E-offset"))
        cps = _num(row.get("cps"))
        if "validity" in row.index:
            valid = bool(row["validity"])
        if not valid:
            warnings.append("marked invalid (validity 0) by the scanner software")
        table_pos = _num(row.get("position (mm)"))
        if position is None:
            position = table_pos
        elif table_pos is not None and abs(table_pos - position) > 0.05:
            warnings.append(f"position {position:g} mm in the spectrum differs from "
                            f"{table_pos:g} mm in the result table")
    if gain is not None and not (0.001 < gain < 0.1):
        warnings.append(f"E-gain {gain:g} keV/channel is implausible; ignored")
        gain = offset = None
    ma = spe.number("Tube current")
    header = {k: v for k, v in h.items()}
    header.update({f"unit:{k}": u for k, u in spe.units.items() if u})
    if table_path is not None:
        header["result_table"] = table_path.name
    if cps is None:
        cps = spe.number("output_count_rate")
    return SpectrumRecord(
        counts=spe.counts,
        source_path=rel,
        sha256=hashlib.sha256(payload).hexdigest(),
        scanner="itrax",
        core=core_name,
        section=section_name,
        section_top_mm=None,
        position_mm=position,
        depth_mm=position,
        y_mm=None,
        kv=spe.number("Tube voltage"),
        current_ua=None if ma is None else ma * 1000.0,
        live_s=spe.number("livetime"),
        real_s=spe.number("runtime"),
        total_cps=cps,
        date=_itrax_date(h),
        filter="",
        setting="",
        run=None,
        run_label="",
        replicate=int(rep.group(1)) if rep else 0,
        gain_kev=gain,
        offset_kev=offset,
        valid=valid,
        header=header,
        warnings=warnings,
    )


# --------------------------------------------------------------------------- sum spectrum

SUM_NOTE = "kept as the scan's sum (not a depth)"


def is_sum_spectrum_name(name: str) -> bool:
    """``sumspectra.spe``, ``sumspectra_2.spe``...: the scan's sum spectrum, written by the Itrax
    software beside the result table (not one measurement of the depth series)."""
    low = str(name).replace("\\", "/").rsplit("/", 1)[-1].lower()
    return low.startswith("sumspectra") and low.endswith(".spe")


def read_sum_spectrum(data: bytes, path: str = "<bytes>") -> ItraxSpe:
    """An Itrax sum spectrum (``sumspectra*.spe``): the raw-spectrum layout (a ``Date:`` header,
    CR-separated, then ``channel<TAB>content`` and channel/count rows) holding the sum of the
    scan's spectra; its Position is not a depth. Raises only ParseError."""
    return read_itrax_spe(data, path)


def describe_sum_spectrum(spe: ItraxSpe) -> str:
    """'Itrax sum spectrum: read (2048 channels, 5.1e+07 counts, Mo tube at 30 kV), kept as the
    scan's sum (not a depth)' for the import report."""
    parts = [f"{spe.counts.size} channels", f"{float(spe.counts.sum()):.3g} counts"]
    anode, kv = spe.header.get("Tube anode", "").strip(), spe.number("Tube voltage")
    if anode or kv is not None:
        parts.append(" ".join(x for x in (f"{anode} tube" if anode else "",
                                            f"at {kv:g} kV" if kv is not None else "") if x))
    return f"Itrax sum spectrum: read ({', '.join(parts)}), {SUM_NOTE}"
