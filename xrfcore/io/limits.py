"""Size limits and safe reads for raw scanner files: nothing is read unbounded.

A spectrum file is a few kB to a few hundred kB; anything over MAX_FILE_BYTES (64 MB) is not a
spectrum and is rejected unread, so a huge file, a zip entry that inflates to gigabytes, a FIFO
or a link to ``/dev/zero`` can neither hang an import nor exhaust memory. Special files (FIFO,
device, socket) are refused before any read: opening is non-blocking and checked with fstat.
"""
from __future__ import annotations

import os
import stat
import zipfile

from xrfcore.io.records import ParseError

MAX_FILE_BYTES = 64 << 20     # a spectrum file, a result table or one zip entry
MAX_HEADER_BYTES = 1 << 20    # the text header of one spectrum (the usual one is under 2 kB)
MAX_STORED_HEADER_CHARS = 16 << 10   # header text kept per spectrum in the project (the rest: a warning)
_READ_CHUNK = 1 << 20


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n < (1 << 30) else f"{n / (1 << 30):.2f} GB"


def special_kind(mode: int) -> str:
    """'a FIFO (named pipe)' / 'a device' / 'a socket' / 'a folder' / '' for a regular file."""
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def read_file_limited(path, rel: str | None = None, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; else :class:`ParseError` (unread).

    Opened non-blocking (a FIFO does not wait for a writer), checked with fstat (a link to a
    device or a FIFO is refused), read with a bound (a file that grows is still cut off).
    Other OSErrors (permission denied, missing) propagate for the caller's own message.
    """
    rel = str(path) if rel is None else rel
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        kind = special_kind(st.st_mode)
        if kind:
            raise ParseError(rel, f"{kind}, not a regular file: skipped unread")
        if st.st_size > limit:
            raise ParseError(rel, f"the file is {_mb(st.st_size)}, over the {_mb(limit)} limit for one "
                                  "file: not a spectrum, rejected unread")
        parts, n = [], 0
        while True:
            block = os.read(fd, min(_READ_CHUNK, limit + 1 - n))
            if not block:
                break
            parts.append(block)
            n += len(block)
            if n > limit:
                raise ParseError(rel, f"the file is over the {_mb(limit)} limit for one file: "
                                      "not a spectrum, rejected")
        return b"".join(parts)
    finally:
        os.close(fd)


def read_zip_entry_limited(zf: zipfile.ZipFile, info: zipfile.ZipInfo, rel: str,
                           limit: int = MAX_FILE_BYTES) -> bytes:
    """One zip entry, at most ``limit`` bytes inflated: the declared size is checked before any
    read, and the read is bounded (a lying header cannot inflate past the limit)."""
    if info.file_size > limit:
        raise ParseError(rel, f"the zip entry inflates to {_mb(info.file_size)}, over the {_mb(limit)} "
                              "limit for one file: rejected unread")
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ParseError(rel, f"the zip entry inflates to over the {_mb(limit)} limit for one file: rejected")
    return data
