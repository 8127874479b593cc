"""Avaatech XRF core scanner ``.spe`` files: reader, file-name/folder rules, writer.

No real Avaatech ``.spe`` is public, so this follows /shared/spec/scanner-formats.md
(sections 1 and 5): the file is read by ``$TAG:`` lines, never by line number, because
an empty value drops its value line and every later line moves up.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path, PurePath

import numpy as np

from xrfcore.fileio import atomic_open
from xrfcore.io.limits import MAX_HEADER_BYTES, MAX_STORED_HEADER_CHARS, read_file_limited

from .records import ParseError, SpectrumRecord

INT32_MAX = 2**31 - 1

__all__ = [
    "SpeFile", "read_spe", "parse_file_name", "parse_run_folder", "parse_section",
    "split_core_section", "core_from_folders", "core_from_folder_name", "find_spectra",
    "read_record", "write_spe", "spe_file_name", "DEFAULT_CHANNELS",
]

DEFAULT_CHANNELS = 2048
MAX_CHANNELS = 65536
SPE_EXTENSIONS = (".spe",)


# --------------------------------------------------------------------------- reading

@dataclass
class SpeFile:
    """The content of one ``.spe`` file, before reconciliation with its name and folder."""

    tags: dict[str, str]               # tag name as written (no ``$``/``:``) -> value text
    counts: np.ndarray                 # int32 (C,)
    first_channel: int
    last_channel: int
    warnings: list[str] = field(default_factory=list)
    _index: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def tag(self, name: str) -> str | None:
        """Value text of a tag, case-insensitive; None when the tag is absent or empty."""
        return self.upper().get(name.upper()) or None

    def upper(self) -> dict[str, str]:
        """Tags keyed in upper case, values stripped (first spelling wins); built once."""
        if self._index is None:  # tags are not edited after parsing
            index = dict(zip(map(str.upper, self.tags), map(str.strip, self.tags.values())))
            if len(index) < len(self.tags):  # two spellings of one tag: the first wins
                index = {}
                for key, value in self.tags.items():
                    index.setdefault(key.upper(), value.strip())
            self._index = index
        return self._index


# A tag line: "$NAME:" at the start of a line (spaces or tabs before the "$" allowed).
_TAG_SPLIT = re.compile(r"^[ \t]*\$([A-Za-z0-9_ .\-]+):", re.M)
# The usual header, parsed in one pass: "$NAME:" lines (no spaces in NAME, nothing after the
# colon), each followed by at most one printable ASCII value line that does not start with "$"
# (spaces around the value are dropped, as the general parser strips them).
_SIMPLE_TAG = re.compile(r"\$([A-Za-z0-9_.\-]+):\n(?:[ \t]*([!-#%-~](?:[ -~]*[!-~])?)[ \t]*\n)?")
# "$DATA:" alone on its line; CR, LF or CRLF endings (bytes, so the data block is never decoded).
_DATA_LINE = re.compile(rb"(?:^|[\r\n])[ \t]*\$DATA:[ \t]*(?=[\r\n]|$)", re.I)
_TAIL_TAG = re.compile(rb"[\r\n][ \t]*\$")
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"
_DIGITS_SPACE = b"0123456789 \t\r\n\x0b\x0c"


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _looks_binary(data: bytes, header_end: int) -> bool:
    if b"\x00" in data:
        return True
    # The header (or the first 8 KiB); control bytes in the data block fail the count check.
    head = data[: header_end if header_end > 0 else 8192]
    bad = len(head) - len(head.translate(None, _CONTROL))
    return bad > max(2, len(head) // 100)


def _find_data_line(data: bytes) -> tuple[int, int]:
    """Start and end of the ``$DATA:`` line (alone on its line); (-1, -1) if absent."""
    i = data.find(b"$DATA:")
    while i >= 0:  # the common case: exact spelling, checked for line boundaries
        j = i + 6
        line_start = max(data.rfind(b"\n", 0, i), data.rfind(b"\r", 0, i)) + 1
        k = j
        while k < len(data) and data[k] in b" \t":
            k += 1
        if not data[line_start:i].strip(b" \t") and (k == len(data) or data[k] in b"\r\n"):
            return line_start, k
        i = data.find(b"$DATA:", j)
    m = _DATA_LINE.search(data)  # other letter case
    if m is None:
        return -1, -1
    return m.start() + (1 if data[m.start()] in b"\r\n" else 0), m.end()


def _text(data: bytes) -> str:
    """Decoded text with LF line endings (CR, LF and CRLF may be mixed)."""
    text = _decode(data)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def read_spe(data: bytes, path: str = "<bytes>") -> SpeFile:
    """Parse the bytes of an Avaatech ``.spe`` file.

    Raises only :class:`ParseError` (empty, binary, no ``$DATA:`` block, truncated or
    overlong data block, text or negative counts).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParseError(path, f"expected file bytes, got {type(data).__name__}")
    data = bytes(data)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 (e.g. re-saved in a Windows editor)
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeError:
            raise ParseError(path, "the file starts like UTF-16 text but cannot be decoded") from None
    if not data or data.isspace():
        raise ParseError(path, "the file is empty")
    start, end = _find_data_line(data)
    if _looks_binary(data, start):
        raise ParseError(path, "the file holds binary data, not a text spectrum")
    if start < 0:
        raise ParseError(path, "no '$DATA:' line: this is not an Avaatech spectrum file")
    if start > MAX_HEADER_BYTES:
        raise ParseError(path, f"the header is {start / (1 << 20):.1f} MB, over the "
                               f"{MAX_HEADER_BYTES >> 20} MB limit for a spectrum header: rejected unread")
    warnings: list[str] = []
    tags = _parse_header(_text(data[:start]), warnings)
    # Indices into data, so the data block is copied once (for the number parse).
    stop = len(data)
    # The data block ends at EOF or at the next tag line (e.g. a trailing $ROI: block).
    tail_match = _TAIL_TAG.search(data, end) if data.find(b"$", end) >= 0 else None
    if tail_match is not None:
        if len(data) - tail_match.start() > MAX_HEADER_BYTES:
            raise ParseError(path, f"the block after the counts is {(len(data) - tail_match.start()) / (1 << 20):.1f} "
                                   f"MB, over the {MAX_HEADER_BYTES >> 20} MB limit for a spectrum header: rejected")
        tail = _parse_header(_text(data[tail_match.start() + 1:]), warnings)
        for key, value in tail.items():
            tags[key if key not in tags else f"{key}#after-data"] = value
        stop = tail_match.start() + 1
    # First line after $DATA: is "first last".
    pos = end
    while pos < stop and data[pos] in b"\r\n":
        pos += 1
    cut = stop
    for sep in (b"\n", b"\r"):
        i = data.find(sep, pos, cut)
        if i >= 0:
            cut = i
    range_line = data[pos:cut]
    parts = range_line.split()
    if len(parts) == 2 and all(p.lstrip(b"+-").isdigit() for p in parts):
        first, last = int(parts[0]), int(parts[1])
        body = data[cut + 1:stop]
    else:
        warnings.append("the '$DATA:' block has no 'first last' channel line; assumed 0 2047")
        first, last = 0, DEFAULT_CHANNELS - 1
        body = data[pos:stop]
    shown_range = range_line.decode("latin-1").strip()[:40]
    if first < 0 or last < first or last - first + 1 > MAX_CHANNELS:
        raise ParseError(path, f"impossible channel range '{shown_range}' after $DATA:")
    expected = last - first + 1
    counts = _parse_counts(body, path, first)
    if counts.size < expected:
        raise ParseError(
            path,
            f"truncated data block: {counts.size} counts found, {expected} expected "
            f"(channels {first} to {last})",
        )
    if counts.size > expected:
        raise ParseError(
            path,
            f"too many counts in the data block: {counts.size} found, {expected} expected "
            f"(channels {first} to {last})",
        )
    # The int64 fast path saw only digits and whitespace, so it holds no negative numbers.
    if counts.dtype != np.int64 and counts.min() < 0:
        i = int(np.argmax(counts < 0))
        raise ParseError(path, f"negative count {float(counts[i]):g} at channel {first + i}")
    top = counts.max()
    if top > INT32_MAX:
        raise ParseError(path, "a count is too large for a 32-bit integer")
    if top == 0:
        warnings.append("all counts are zero")
    return SpeFile(tags, counts.astype(np.int32), first, last, warnings)


def _parse_header(text: str, warnings: list[str]) -> dict[str, str]:
    """A ``$TAG:`` line opens a tag; the lines up to the next tag line are its value.

    ``text`` has LF line endings. A tag whose value line is missing gets "" (the scanner
    drops empty value lines). Value lines are stripped; a line starting with ``$`` that
    is not a tag stays part of the value. One regex split, for speed.
    """
    # The usual layout in one C pass: [gap, name, value, gap, name, value, ..., gap]; it
    # applies when no gap is left (the whole text is simple tags) and no tag repeats.
    parts = _SIMPLE_TAG.split(text)
    if not any(parts[0::3]):
        tags = dict(zip(parts[1::3], [v or "" for v in parts[2::3]]))
        if 3 * len(tags) + 1 == len(parts):
            return tags
    return _parse_header_general(text, warnings)


def _parse_header_general(text: str, warnings: list[str]) -> dict[str, str]:
    """Any header: multi-line values, text after the colon, repeated tags, a preamble."""
    tags: dict[str, str] = {}
    parts = _TAG_SPLIT.split(text)      # [preamble, name, text after "name:", name, ...]
    preamble = parts[0].strip()
    for i in range(1, len(parts), 2):
        rest = parts[i + 1]
        nl = rest.find("\n")
        if nl < 0:
            inline, value = rest.strip(), ""
        else:
            inline, value = rest[:nl].strip(), rest[nl + 1:].strip()
        if inline:
            value = inline + "\n" + value if value else inline
        if "\n" in value:
            value = "\n".join(x.strip() for x in value.split("\n"))
        name = parts[i].strip()
        if name in tags:
            _store(tags, name, value, warnings)
        else:
            tags[name] = value
    if preamble:
        tags["_preamble"] = "\n".join(x.strip() for x in preamble.split("\n") if x.strip())
        warnings.append("text before the first tag was kept but not used")
    return tags


def _store(tags: dict[str, str], name: str, value: str, warnings: list[str]) -> None:
    key = name
    if key in tags:
        n = 2
        while f"{name}#{n}" in tags:
            n += 1
        key = f"{name}#{n}"
        warnings.append(f"tag ${name}: appears more than once; the first value is used")
    tags[key] = value


def _parse_counts(body: bytes, path: str, first: int) -> np.ndarray:
    """Counts as int64 (fast path) or float64 (exact below 2**53; range checked by the caller)."""
    if not body or body.isspace():
        return np.zeros(0, dtype=np.float64)
    if not body.translate(None, _DIGITS_SPACE):
        # Only digits and whitespace: plain integers (strtoll saturates, so too-large
        # numbers still fail the caller's 32-bit range check).
        return np.fromstring(body, dtype=np.int64, sep=" ")
    # Slow path: find what is wrong; whole numbers written as floats ("12.0", "12,0") pass.
    tokens = body.decode("latin-1").split()
    out = np.empty(len(tokens), dtype=np.float64)
    for i, tok in enumerate(tokens):
        try:
            value = float(tok.replace(",", "."))
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            shown = tok if len(tok) <= 20 else tok[:20] + "..."
            raise ParseError(path, f"text token '{shown}' among the counts (count number "
                                   f"{i + 1}, channel {first + i})")
        if value != int(value):
            raise ParseError(path, f"count '{tok}' is not a whole number (count number "
                                   f"{i + 1}, channel {first + i})")
        out[i] = value
    return out


# --------------------------------------------------------------------------- numbers, dates

def _num(text: str | None) -> float | None:
    if text is None:
        return None
    try:  # the usual case; float() ignores surrounding whitespace as str.strip() does
        value = float(text)
    except ValueError:
        t = text.strip().replace(",", ".")
        if not t:
            return None
        try:
            value = float(t)
        except ValueError:
            return None
    return value if math.isfinite(value) else None


def _int_after(prefix: str, text: str | None) -> int | None:
    """``Run1`` / ``Rep0`` / ``1`` -> the integer; None otherwise."""
    if text is None:
        return None
    t = text.strip()
    if t[: len(prefix)].lower() == prefix.lower():
        t = t[len(prefix):].strip()
    return int(t) if t.isdigit() and t.isascii() else None


_HEADER_DATE = re.compile(r"^(\d{1,2})-(\d{1,2})-(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


def _parse_header_date(text: str | None) -> str | None:
    """``MM-DD-YYYY HH:MM:SS`` (month first, as the scanner writes it) -> ISO; else None."""
    if not text:
        return None
    if len(text) == 19 and text[2] == "-" and text[5] == "-" and text[10] == " " \
            and text[13] == ":" and text[16] == ":":   # exactly as written: no regex needed
        digits = text[:2] + text[3:5] + text[6:10] + text[11:13] + text[14:16] + text[17:]
        if digits.isascii() and digits.isdigit():
            try:
                return datetime(int(text[6:10]), int(text[:2]), int(text[3:5]), int(text[11:13]),
                                int(text[14:16]), int(text[17:])).isoformat()
            except ValueError:
                return None
    m = _HEADER_DATE.match(" ".join(text.split()))
    if m is None:
        return None
    mo, day, year, hh, mi, ss = (int(g) if g else 0 for g in m.groups())
    try:
        return datetime(year, mo, day, hh, mi, ss).isoformat()
    except ValueError:
        return None


# --------------------------------------------------------------------------- file names

_MM = re.compile(r"^(X|Y|DC|CC)?(-?\d+(?:[.,]\d+)?)mm$", re.I)
_SEC = re.compile(r"^(\d+(?:[.,]\d+)?)s$", re.I)
_KV = re.compile(r"^(\d+(?:[.,]\d+)?)kV$", re.I)
_UA = re.compile(r"^(\d+(?:[.,]\d+)?)(?:uA|µA)$", re.I)
_RUN = re.compile(r"^Run(\d+)$", re.I)
_REP = re.compile(r"^Rep(\d+)$", re.I)
_PREFIX = re.compile(r"^(X|Y|DC|CC)$", re.I)
_SETT_VALUES = {"low", "middle", "high", "mid"}
_FILTER_F = re.compile(r"F\d", re.I)       # variant C filter field


def _strip_extension(name: str) -> tuple[str, str]:
    base = name if ("/" not in name and name not in ("", ".")) else PurePath(name).name
    low = base.lower()
    for ext in (".spe", ".axml", ".wax"):
        if low.endswith(ext):
            return base[: -len(ext)].rstrip("."), ext
    return base.rstrip(". "), ""


def _is_section_token(tok: str) -> bool:
    """A section token starts with 3+ digits (``00050``, ``048``, ``10430B``) or is a
    trigger core (``00TC``); ``Standard_1`` is a name, not a section."""
    m = re.match(r"^(\d+)(.*)$", tok)
    return bool(m) and (len(m.group(1)) >= 3 or "TC" in m.group(2).upper())


def split_core_section(token: str) -> tuple[str, str]:
    """``SO264-55-1_00050`` -> (``SO264-55-1``, ``00050``); no section -> (token, "").

    The section token follows the last ``_``; a trailing word such as ``_Rescan``
    stays with the section.
    """
    return _split_core_section(token.strip())


@lru_cache(maxsize=4096)   # one token per section: thousands of files share it
def _split_core_section(token: str) -> tuple[str, str]:
    parts = token.split("_")
    if len(parts) >= 3 and parts[-1].isalpha() and _is_section_token(parts[-2]) and parts[0]:
        return "_".join(parts[:-2]), parts[-2] + "_" + parts[-1]
    if len(parts) >= 2 and _is_section_token(parts[-1]) and parts[0]:
        return "_".join(parts[:-1]), parts[-1]
    return token, ""


def parse_file_name(name: str, *, fast: bool = True) -> dict:
    """Parse an Avaatech spectrum file name (variants A-D of the spec).

    Returns a dict with keys ``variant`` ("A".."D" or "" when nothing was recognised),
    ``core``, ``section``, ``position_mm``, ``y_mm``, ``live_s``, ``kv``, ``current_ua``,
    ``filter``, ``slit_dc_mm``, ``slit_cc_mm``, ``run``, ``replicate``, ``setting``,
    ``date`` (ISO or ""), ``extension``, ``unparsed`` (list of tokens not understood).
    Missing numbers are None.
    """
    stem, ext = _strip_extension(name)
    out: dict = {
        "variant": "", "core": "", "section": "", "position_mm": None, "y_mm": None,
        "live_s": None, "kv": None, "current_ua": None, "filter": "", "slit_dc_mm": None,
        "slit_cc_mm": None, "run": None, "replicate": None, "setting": "", "date": "",
        "depth_field_mm": None, "extension": ext, "unparsed": [],
    }
    fields = stem.split("!")
    if len(fields) == 17:
        return _parse_bang(fields, out)
    m = _NAME_BC.match(stem) if fast else None
    if m is not None:
        return _parse_bc(m, out)
    tokens = stem.split()
    if not tokens:
        return out
    # Core (and section) = the tokens before the first recognised measurement token.
    i = 0
    core_tokens = []
    while i < len(tokens) and not _is_measure_token(tokens[i], tokens, i):
        core_tokens.append(tokens[i])
        i += 1
    if not core_tokens:
        core_tokens, i = [tokens[0]], 1
    out["core"], out["section"] = split_core_section(" ".join(core_tokens))
    bare_mm = 0
    prefixed = False
    pending: str | None = None
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if _PREFIX.match(tok) and i < len(tokens) and _MM.match(tokens[i]) and not _MM.match(tokens[i]).group(1):
            pending = tok.upper()
            continue
        m = _MM.match(tok)
        if m:
            prefix = (m.group(1) or pending or "").upper()
            pending = None
            value = _num(m.group(2))
            if prefix:
                prefixed = True
            if not prefix:
                prefix = "X" if bare_mm == 0 else "Y" if bare_mm == 1 else ""
                bare_mm += 1
            key = {"X": "position_mm", "Y": "y_mm", "DC": "slit_dc_mm", "CC": "slit_cc_mm"}.get(prefix)
            if key and out[key] is None:
                out[key] = value
            else:
                out["unparsed"].append(tok)
            continue
        if (m := _SEC.match(tok)):
            out["live_s"] = _num(m.group(1))
        elif (m := _KV.match(tok)):
            out["kv"] = _num(m.group(1))
        elif (m := _UA.match(tok)):
            out["current_ua"] = _num(m.group(1))
        elif (m := _RUN.match(tok)):
            out["run"] = int(m.group(1))
        elif (m := _REP.match(tok)):
            out["replicate"] = int(m.group(1))
        elif tok.lower() == "sett":
            if i < len(tokens) and tokens[i].rstrip(".").lower() in _SETT_VALUES:
                out["setting"] = f"Sett {tokens[i].rstrip('.')}"
                i += 1
            else:
                out["setting"] = "Sett"
        elif not out["filter"] and out["kv"] is not None:
            out["filter"] = tok
        else:
            out["unparsed"].append(tok)
    if prefixed:
        out["variant"] = "D"
    elif _FILTER_F.fullmatch(out["filter"]):
        out["variant"] = "C"
    elif out["kv"] is not None or out["position_mm"] is not None:
        out["variant"] = "B"
    return out


_N = r"\d+(?:[.,]\d+)?"
# Variant B (and C without the Y/Run/Rep part): one regex for the usual fixed-width names;
# anything else goes through the token classifier below.
_NAME_BC = re.compile(
    rf"^(?P<first>[^\s!]+)\s+(?P<x>-?{_N})mm\s+(?P<live>{_N})s\s+(?P<kv>{_N})kV\s+"
    rf"(?P<ua>{_N})uA\s+(?P<filter>(?!Run\d)(?!Rep\d)(?!Sett\b)[^\s]+)"
    rf"(?:\s+(?P<y>-?{_N})mm\s+Run(?P<run>\d+)\s+Rep(?P<rep>\d+)"
    rf"(?:\s+Sett\s+(?P<sett>Low|Middle|High|Mid)\.?)?)?$", re.I)


def _parse_bc(m: re.Match, out: dict) -> dict:
    g = m.groupdict()
    out["core"], out["section"] = split_core_section(g["first"])
    out["position_mm"] = _num(g["x"])
    out["live_s"] = _num(g["live"])
    out["kv"] = _num(g["kv"])
    out["current_ua"] = _num(g["ua"])
    out["filter"] = g["filter"]
    if g["y"] is not None:
        out["y_mm"] = _num(g["y"])
        out["run"] = int(g["run"])
        out["replicate"] = int(g["rep"])
    if g["sett"]:
        out["setting"] = f"Sett {g['sett']}"
    out["variant"] = "C" if _FILTER_F.fullmatch(g["filter"]) else "B"
    return out


def _is_measure_token(tok: str, tokens: list[str], i: int) -> bool:
    if _MM.match(tok) or _SEC.match(tok) or _KV.match(tok) or _UA.match(tok):
        return True
    return bool(_PREFIX.match(tok) and i + 1 < len(tokens) and _MM.match(tokens[i + 1]))


def _parse_bang(fields: list[str], out: dict) -> dict:
    f = [x.strip() for x in fields]
    out["variant"] = "A"
    out["core"], out["section"] = split_core_section(f[0])
    out["core_id"], out["section_id"] = f[1], f[2]
    out["depth_field_mm"] = _num(f[3])
    try:
        out["date"] = datetime.strptime(f"{f[4]} {f[5]}", "%Y-%m-%d %H-%M-%S").isoformat()
    except ValueError:
        out["unparsed"] += [f[4], f[5]]
    out["live_s"] = _num(f[6])
    out["kv"] = _num(f[7])
    out["current_ua"] = _num(f[8])
    out["position_mm"] = _num(f[9])
    out["y_mm"] = _num(f[10])
    out["filter"] = f[11]
    out["slit_dc_mm"] = _num(f[12])
    out["slit_cc_mm"] = _num(f[13])
    out["run"] = _int_after("Run", f[14])
    out["replicate"] = _int_after("Rep", f[15])
    out["setting"] = f[16].rstrip(".").strip()
    return out


def parse_section(token: str, unit: str = "auto") -> tuple[float | None, str, list[str]]:
    """Section top in mm from a section token, the suffix kept, and warnings.

    ``auto``: 4 digits = cm, 5-6 digits = mm, fewer than 4 = ambiguous (read as cm, warned).
    ``cm``/``mm`` force the unit. A trigger core (``00TC``) has no numeric top.
    """
    top, suffix, warnings = _parse_section(token, unit)
    return top, suffix, list(warnings)


@lru_cache(maxsize=4096)
def _parse_section(token: str, unit: str) -> tuple[float | None, str, tuple[str, ...]]:
    top, suffix, warnings = _section_rule(token, unit)
    return top, suffix, tuple(warnings)


def _section_rule(token: str, unit: str) -> tuple[float | None, str, list[str]]:
    """Section top in mm from a section token, the suffix kept, and warnings.

    ``auto``: 4 digits = cm, 5-6 digits = mm, fewer than 4 = ambiguous (read as cm, warned).
    ``cm``/``mm`` force the unit. A trigger core (``00TC``) has no numeric top.
    """
    if unit not in ("auto", "cm", "mm"):
        raise ValueError(f"section unit must be auto, cm or mm, not {unit!r}")
    warnings: list[str] = []
    if not token:
        return None, "", warnings
    m = re.match(r"^(\d+)(.*)$", token)
    if m is None:
        warnings.append(f"section token '{token}' is not a number: depth must be entered manually")
        return None, token, warnings
    digits, suffix = m.group(1), m.group(2)
    if "TC" in suffix.upper():
        warnings.append(f"section '{token}' is a trigger core: depth must be entered manually")
        return None, suffix, warnings
    if suffix:
        warnings.append(f"section '{token}' has a rescan suffix '{suffix}'")
    n = len(digits)
    if unit == "auto":
        if n == 4:
            use = "cm"
        elif n in (5, 6):
            use = "mm"
        else:
            use = "cm"
            warnings.append(
                f"section token '{token}' has {n} digits: unit is ambiguous, read as cm "
                f"(override with section unit cm or mm)")
    else:
        use = unit
    value = float(int(digits))
    return (value * 10.0 if use == "cm" else value), suffix, warnings


# --------------------------------------------------------------------------- folders

_RUN_FOLDER = re.compile(r"^\s*Run\s*(\d+)\s*at\s*(\d+(?:[.,]\d+)?)\s*kV(.*)$", re.I)


def parse_run_folder(name: str) -> tuple[int, float, str] | None:
    """``Run 1 at  10kV_937-1138cm`` -> (1, 10.0, ``_937-1138cm``); None if not a run folder."""
    m = _RUN_FOLDER.match(name)
    if m is None:
        return None
    return int(m.group(1)), float(m.group(2).replace(",", ".")), m.group(3).strip()


def _is_skip_level(name: str) -> bool:
    """Folders between the core folder and the run folder (rescans, trigger cores)."""
    low = name.strip().lower()
    return low == "tc" or low.startswith("rescan") or low in ("rescans", "trigger core")


def core_from_folder_name(name: str) -> str:
    """``LV28-44-3(554-1113cm)`` -> ``LV28-44-3``; ``X_2021rescan_937-1138cm`` -> ``X``."""
    n = re.sub(r"\s*\([^)]*\)\s*$", "", name.strip())
    n = re.sub(r"_\d*\s*rescan.*$", "", n, flags=re.I)
    return n.strip() or name.strip()


def core_from_folders(parts: list[str]) -> tuple[str, str, tuple[int, float, str] | None]:
    """From the folder names above a file (outermost first): (core folder name, run folder
    name, parsed run folder). Empty strings when not found.

    The core folder is the folder above the run folder, skipping ``Rescan_*`` and ``TC``.
    """
    for idx in range(len(parts) - 1, -1, -1):
        parsed = parse_run_folder(parts[idx])
        if parsed is None:
            continue
        j = idx - 1
        while j >= 0 and _is_skip_level(parts[j]):
            j -= 1
        return (parts[j] if j >= 0 else ""), parts[idx], parsed
    return "", "", None


# --------------------------------------------------------------------------- records

def find_spectra(root) -> list[Path]:
    """Every ``.spe`` file under ``root`` (any case of the extension), sorted by relative path."""
    root = Path(root)
    if root.is_file():
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            if fn.lower().endswith(SPE_EXTENSIONS):
                found.append(Path(dirpath) / fn)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _close(a: float | None, b: float | None, tol: float) -> bool:
    return a is None or b is None or abs(a - b) <= tol


def _relative(path, root) -> tuple[str, tuple[str, ...]]:
    """(posix path relative to root, folder names between root and the file)."""
    spath = os.fspath(path)
    if root is not None:  # a file below root: its folder's part is worked out once per folder
        sroot = os.fspath(root).rstrip("/\\") or os.sep
        folder, sep, base = spath.rpartition(os.sep)
        if sep and spath.startswith(sroot) and spath[len(sroot):len(sroot) + 1] in ("/", os.sep) \
                and base not in ("", ".", "..") and "/" not in base:
            prefix, folders = _relative_folder(folder, sroot)
            return prefix + base, folders
    return _relative_path(spath, root)


@lru_cache(maxsize=1024)
def _relative_folder(folder: str, sroot: str) -> tuple[str, tuple[str, ...]]:
    """("<folders>/" or "", folder names) of the files in folder (only for folders below root)."""
    rel, folders = _relative_path(folder + os.sep + "f", sroot)
    return rel[:-1], folders


def _relative_path(spath: str, root) -> tuple[str, tuple[str, ...]]:
    if root is None:
        rel = os.path.basename(spath)
    else:
        sroot = os.fspath(root).rstrip("/\\") or os.sep
        if spath.startswith(sroot) and spath[len(sroot):len(sroot) + 1] in ("/", os.sep):
            rel = spath[len(sroot) + 1:]
        else:
            try:
                rel = os.path.relpath(os.path.abspath(spath), os.path.abspath(sroot))
            except ValueError:  # another drive (Windows)
                rel = os.path.basename(spath)
            if rel.startswith(".."):
                rel = os.path.basename(spath)
    rel = rel.replace(os.sep, "/")
    parts = tuple(p for p in rel.split("/") if p not in ("", "."))
    return "/".join(parts), parts[:-1]


@lru_cache(maxsize=64)
def _root_name(root: str) -> str:
    return os.path.basename(os.path.abspath(root))


@lru_cache(maxsize=1024)
def _folder_info(folder_parts: tuple[str, ...], root_name: str):
    """(core folder, run folder, parsed run folder, core name from the folder), per folder."""
    core_folder, run_folder, run_info = core_from_folders(list(folder_parts))
    if run_info is not None and not core_folder:
        # The run folder sits directly in the imported folder: that folder is the core.
        core_folder = root_name
    folder_core = core_from_folder_name(core_folder) if core_folder else ""
    return core_folder, run_folder, run_info, folder_core


def read_record(path, root=None, *, core: str | None = None, section_unit: str = "auto",
                data: bytes | None = None, sha256: str | None = None) -> SpectrumRecord:
    """Read one Avaatech spectrum file into a :class:`SpectrumRecord`.

    ``root`` is the imported folder: ``source_path`` is relative to it and only folders
    below it are read for the core and run (when the run folder sits directly in
    ``root``, root's own name is the core folder). Values come from the header first, then the file name, then the folders; every
    disagreement becomes a warning. Raises only :class:`ParseError`.

    ``data``: the file's bytes when the caller has already read them (the importer reads
    each file once for hash and parse); ``sha256``: their hex digest, if already computed.
    """
    if root is None:  # enough levels for <core>/<Rescan|TC>/<Run folder>/<file>
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(path)))))
    rel_posix, folder_parts = _relative(path, root)
    if data is None:
        try:
            data = read_file_limited(path, rel_posix)
        except OSError as exc:
            raise ParseError(rel_posix, f"cannot read the file ({exc.strerror or exc})") from None
        sha256 = None
    spe = read_spe(data, rel_posix)
    tag = spe.upper()
    warnings = list(spe.warnings)
    name = parse_file_name(rel_posix.rsplit("/", 1)[-1])
    if not name["variant"]:
        warnings.append("file name not recognised as an Avaatech spectrum name")
    root_name = _root_name(os.fspath(root)) if os.path.isabs(root) else \
        os.path.basename(os.path.abspath(root))
    core_folder, run_folder, run_info, folder_core = _folder_info(folder_parts, root_name)

    # Core
    name_core = name["core"]
    if core:
        core_name = core
    elif folder_core:
        core_name = folder_core
        if name_core and name_core != folder_core:
            warnings.append(
                f"core name in the file name '{name_core}' differs from the folder "
                f"'{core_folder}'; the folder's '{folder_core}' is used")
    else:
        core_name = name_core
    if not core_name:
        raise ParseError(rel_posix, "no core name in the file name or folders (set the core name)")

    # Position
    x_head = _num(tag.get("X_POSITION"))
    if tag.get("X_POSITION") and x_head is None:
        warnings.append(f"$X_Position value '{tag.get('X_POSITION')}' is not a number")
    position = x_head
    if position is None:
        position = name["position_mm"]
        if "X_POSITION" in tag:
            warnings.append("$X_Position has no value; position taken from the file name")
        else:
            warnings.append("old short header without $X_Position: position taken from the file name")
    elif not _close(x_head, name["position_mm"], 0.051):
        warnings.append(f"X position in header {x_head:g} mm differs from file name "
                        f"{name['position_mm']:g} mm; header used")
    y = _num(tag.get("Y_POSITION"))
    if y is None:
        y = name["y_mm"]

    # Excitation
    kv = _num(tag.get("ACC_VOLT"))
    if kv is not None and not _close(kv, name["kv"], 0.05):
        warnings.append(f"kV in header {kv:g} differs from file name {name['kv']:g}; header used")
    if kv is None:
        kv = name["kv"]
    if run_info is not None:
        if kv is None:
            kv = run_info[1]
        elif abs(kv - run_info[1]) > 0.05:
            warnings.append(f"kV {kv:g} differs from the run folder '{run_folder}' ({run_info[1]:g} kV)")
    ma = _num(tag.get("TUBE_CUR"))
    current = None
    if ma is not None:
        if ma >= 10:  # no Avaatech tube runs 10 mA: the value must already be in uA
            warnings.append(f"$TUBE_CUR {ma:g} is too large for mA; read as uA")
            current = ma
        else:
            current = round(ma * 1000.0, 6)
    if current is not None and name["current_ua"] is not None and \
            abs(current - name["current_ua"]) > max(1.0, 0.01 * name["current_ua"]):
        warnings.append(f"tube current in header {current:g} uA differs from file name "
                        f"{name['current_ua']:g} uA; header used")
    if current is None:
        current = name["current_ua"]

    live = real = None
    meas = tag.get("MEAS_TIM") or None
    if meas:
        vals = [_num(v) for v in meas.split()]
        if vals and vals[0] is not None:
            live = vals[0]
        if len(vals) > 1 and vals[1] is not None:
            real = vals[1]
    if live is None:
        live = name["live_s"]
    elif name["live_s"] is not None and not _close(live, name["live_s"], 0.5):
        warnings.append(f"live time in header {live:g} s differs from file name {name['live_s']:g} s")

    total_cps = _num(tag.get("TOTALCPS"))

    # Run and replicate
    run = _int_after("Run", tag.get("RUN_ID"))
    if run is None:
        run = name["run"]
    if run is None and run_info is not None:
        run = run_info[0]
    elif run is not None and run_info is not None and run != run_info[0]:
        warnings.append(f"run {run} differs from the run folder '{run_folder}'")
    replicate = _int_after("Rep", tag.get("REPLICATE_ID"))
    if replicate is None:
        replicate = name["replicate"]
    if replicate is None:
        replicate = 0

    slit_dc = _num(tag.get("SLIT_DC"))
    if slit_dc is None:
        slit_dc = name["slit_dc_mm"]
    slit_cc = _num(tag.get("SLIT_CC"))
    if slit_cc is None:
        slit_cc = name["slit_cc_mm"]

    # Date: header (month first), then the file name
    raw_date = tag.get("DATE_MEA") or None
    date = _parse_header_date(raw_date)
    if date is None:
        if raw_date:
            warnings.append(f"$DATE_MEA '{raw_date}' is not MM-DD-YYYY HH:MM:SS; not used")
        date = name["date"] or ""

    # Section and composite depth
    section = name["section"]
    top, _suffix, sec_warn = parse_section(section, section_unit)
    warnings += sec_warn
    if not section:
        top = 0.0
        warnings.append("no section top in the file name: depth = position")
    depth = None if (top is None or position is None) else round(top + position, 6)
    if position is None:
        warnings.append("no X position in header or file name: depth unknown")

    simulated = any("SIMULATED" in v.upper() for k, v in tag.items() if k.startswith("SPEC_REM"))
    scanner = "simulated-avaatech" if simulated else "avaatech"

    return SpectrumRecord(
        counts=spe.counts,
        source_path=rel_posix,
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        scanner=scanner,
        core=core_name,
        section=section,
        section_top_mm=top,
        position_mm=position,
        depth_mm=depth,
        y_mm=y,
        kv=kv,
        current_ua=current,
        live_s=live,
        real_s=real,
        total_cps=total_cps,
        date=date,
        filter=name["filter"],
        setting=name["setting"],
        slit_dc_mm=slit_dc,
        slit_cc_mm=slit_cc,
        run=run,
        run_label=run_folder,
        replicate=replicate,
        gain_kev=None,
        offset_kev=None,
        valid=True,
        header=_stored_header(spe.tags, warnings),
        warnings=warnings,
    )


def _stored_header(tags: dict[str, str], warnings: list[str]) -> dict[str, str]:
    """The header tags kept in the project: all of a usual header; an unusually long one is cut
    to MAX_STORED_HEADER_CHARS (each spectrum's header is a column of the project, padded to the
    longest: one huge header would grow every row), with a warning."""
    total = sum(len(k) + len(v) for k, v in tags.items())
    if total <= MAX_STORED_HEADER_CHARS:
        return dict(tags)
    out, used = {}, 0
    for k, v in tags.items():
        room = max(0, MAX_STORED_HEADER_CHARS - used - len(k))
        out[k] = v if len(v) <= room else v[:room] + f"... [cut: {len(v)} characters]"
        used += len(k) + min(len(v), room)
    warnings.append(f"the header is {total:,} characters; only the first {MAX_STORED_HEADER_CHARS:,} "
                    "are kept in the project")
    return out


# --------------------------------------------------------------------------- writing

def _fmt(value, spec: str, decimal_comma: bool) -> str:
    text = format(value, spec)
    return text.replace(".", ",") if decimal_comma else text


def _fmt_time(value) -> str:
    v = float(value)
    return str(int(v)) if v == int(v) else f"{v:g}"


def _as_datetime(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def spe_file_name(meta: dict) -> str:
    """Variant-B file name, e.g.
    ``SO264-55-1_00050  970.0mm  10s  10kV 150uA No-Filter   0.0mm Run1 Rep0 Sett Low.spe``.
    """
    core = meta["core"]
    section = str(meta.get("section", "") or "")
    first = f"{core}_{section}" if section else core
    ua = meta.get("current_ua", 150)
    return (
        f"{first}{float(meta.get('position_mm', 0.0)):7.1f}mm"
        f"{_fmt_time(meta.get('live_s', 10)):>4}s"
        f"{_fmt_time(meta.get('kv', 10)):>4}kV"
        f" {_fmt_time(ua):>3}uA"
        f" {meta.get('filter', 'No-Filter') or 'No-Filter'}"
        f"{float(meta.get('y_mm', 0.0) or 0.0):6.1f}mm"
        f" Run{int(meta.get('run', 1) or 1)} Rep{int(meta.get('replicate', 0) or 0)}"
        f" {meta.get('setting', 'Sett Low') or 'Sett Low'}.spe"
    )


def write_spe(path, counts, meta: dict, *, newline: str = "\r\n", old_header: bool = False,
              decimal_comma: bool = False, per_line: int = 8) -> None:
    """Write a realistic Avaatech ``.spe`` file atomically (temp file, then os.replace).

    ``meta`` keys: core, section, position_mm, y_mm, kv, current_ua (uA; written as mA),
    live_s, real_s, total_cps, date (datetime or ISO), run, replicate, filter, setting,
    slit_dc_mm, slit_cc_mm, remark (list of lines, e.g. "SIMULATED spectrum ...").
    A value that is None is written as its tag with no value line, as the scanner does.
    ``old_header`` writes the short pre-2016 header without $X_Position and $TotalCPS.
    """
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0:
        raise ValueError("counts must be a non-empty 1-D array")
    if not np.issubdtype(c.dtype, np.integer):
        if not np.all(np.isfinite(c)) or np.any(c != np.round(c)):
            raise ValueError("counts must be whole numbers")
    if np.any(c < 0):
        raise ValueError("counts must not be negative")
    c = c.astype(np.int64)
    dc = decimal_comma

    def val(key, spec):
        v = meta.get(key)
        return None if v is None else _fmt(float(v), spec, dc)

    remark = meta.get("remark") or []
    if isinstance(remark, str):
        remark = remark.splitlines()
    live, real = meta.get("live_s"), meta.get("real_s")
    meas = None
    if live is not None:
        meas = _fmt_time(live) + ("" if real is None else " " + _fmt_time(real))
        meas = meas.replace(".", ",") if dc else meas
    date = _as_datetime(meta.get("date"))
    date_txt = None if date is None else date.strftime("%m-%d-%Y %H:%M:%S")
    ua = meta.get("current_ua")
    ma = None if ua is None else _fmt(float(ua) / 1000.0, ".3f", dc)
    run = meta.get("run")
    rep = meta.get("replicate")
    spec_id = spe_file_name({**_name_defaults(meta)})[:-4] if meta.get("core") else ""

    if old_header:
        entries = [
            ("SPEC_ID", [spec_id]),
            ("SPEC_REM", list(remark)),
            ("DATE_MEA", [date_txt]),
            ("MEAS_TIM", [meas]),
            ("ACC_VOLT", [val("kv", ".1f")]),
            ("TUBE_CUR", [ma]),
            ("Slit_DC", [val("slit_dc_mm", ".2f")]),
            ("Slit_CC", [val("slit_cc_mm", ".2f")]),
        ]
    else:
        entries = [
            ("SPEC_ID", [spec_id]),
            ("SPEC_REM", list(remark)),
            ("USER_ID", [val("position_mm", ".1f")]),
            ("Core_ID", [str(meta.get("core_id", "0"))]),
            ("Section_ID", [str(meta.get("section_id", "0"))]),
            ("Depth", [val("position_mm", ".1f")]),
            ("Run_ID", [None if run is None else f"Run{int(run)}"]),
            ("X_Position", [None if meta.get("position_mm") is None
                            else _fmt(float(meta["position_mm"]), "6.1f", dc)]),
            ("Y_Position", [val("y_mm", ".1f")]),
            ("Replicate_ID", [None if rep is None else f"Rep{int(rep)}"]),
            ("Slit_DC", [val("slit_dc_mm", ".2f")]),
            ("Slit_CC", [val("slit_cc_mm", ".2f")]),
            ("TotalCPS", [None if meta.get("total_cps") is None
                          else f"{int(round(float(meta['total_cps']))):7d}"]),
            ("ACC_VOLT", [val("kv", "6.1f")]),
            ("TUBE_CUR", [ma]),
            ("MEAS_TIM", [meas]),
            ("DATE_MEA", [date_txt]),
        ]
    lines: list[str] = []
    for tag, values in entries:
        lines.append(f"${tag}:")
        lines.extend(v for v in values if v is not None and v != "")
    lines.append("$DATA:")
    lines.append(f"0 {c.size - 1}")
    width = max(1, int(per_line))
    vals = c.tolist()
    row = " ".join(["%7d"] * width)
    full = len(vals) - len(vals) % width
    lines.extend(row % tuple(vals[i:i + width]) for i in range(0, full, width))
    if full < len(vals):
        lines.append(" ".join("%7d" % v for v in vals[full:]))
    text = newline.join(lines) + newline
    # no fsync: the simulator writes thousands of files; the rename alone keeps each whole
    with atomic_open(path, "wb", fsync=False) as fh:
        fh.write(text.encode("latin-1", errors="replace"))


def _name_defaults(meta: dict) -> dict:
    out = dict(meta)
    for key, default in (("position_mm", 0.0), ("live_s", 10), ("kv", 10), ("current_ua", 150),
                         ("y_mm", 0.0), ("run", 1), ("replicate", 0)):
        if out.get(key) is None:
            out[key] = default
    return out


