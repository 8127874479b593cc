"""Scan records: what a reader returns for one measurement point.

This is the contract between the readers (``xrfcore.io.avaatech``,
``xrfcore.io.itrax``) and the project store (``xrfcore.store``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class ParseError(ValueError):
    """The one documented error of every reader: names the file and the problem.

    ``str(err)`` is a plain sentence fit for an import report.
    """

    def __init__(self, path: str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class SpectrumRecord:
    """One measured spectrum with everything known about where and how it was taken.

    Missing values are ``None`` (numbers) or ``""`` (text), never guessed.
    """

    counts: np.ndarray                 # int32 (C,), raw channel counts
    source_path: str                   # path relative to the imported folder (posix)
    sha256: str                        # hash of the file's bytes
    scanner: str                       # "avaatech" | "itrax" | "simulated-avaatech" ...
    core: str                          # core name the record belongs to
    section: str = ""                  # section token from the file name, e.g. "00050", "10430B", "00TC"
    section_top_mm: float | None = None
    position_mm: float | None = None   # X along the section
    depth_mm: float | None = None      # composite depth = section top + position
    y_mm: float | None = None
    kv: float | None = None
    current_ua: float | None = None    # microampere (Avaatech $TUBE_CUR is mA: converted)
    live_s: float | None = None
    real_s: float | None = None
    total_cps: float | None = None
    date: str = ""                     # ISO 8601 local time, "" if unknown
    filter: str = ""
    setting: str = ""                  # MCA setting, e.g. "Sett Low"
    slit_dc_mm: float | None = None
    slit_cc_mm: float | None = None
    run: int | None = None             # run number (Run <n>)
    run_label: str = ""                # the run folder name as found
    replicate: int = 0
    gain_kev: float | None = None      # keV per channel, if known
    offset_kev: float | None = None
    valid: bool = True                 # scanner's own validity flag (Itrax)
    header: dict[str, str] = field(default_factory=dict)   # raw tag -> value text, nothing lost
    warnings: list[str] = field(default_factory=list)

    @property
    def run_key(self) -> str:
        """Name of the run (excitation) this record belongs to, e.g. ``10kV-Run1``."""
        kv = "?" if self.kv is None else f"{self.kv:g}"
        run = "" if self.run is None else f"-Run{self.run}"
        return f"{kv}kV{run}"
