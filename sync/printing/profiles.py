"""Printer profiles: TOML data from printers/ (shipped as sync/data/printers), see docs/printing.md.

A profile says what the printer is (paper, dots, resolution, code page, what it can draw and
answer) and how long to wait for it. The geometry helpers turn that into the SII's terms: how
far text and the timbre sit from the paper's edges, in mm.
"""

from __future__ import annotations

import codecs
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync.errors import DteSyncError

BUILTIN = Path(__file__).resolve().parent.parent / "data" / "printers"
CUTS = ("partial", "full", "none")
STATUS_MODES = ("dle_eot", "none")
ACK_MODES = ("gs_r", "status")
TEXT_EDGE_MM = 5.0  # Manual de Muestras Impresas §1.1.2: no letters within 0,5 cm of the edge


@dataclass(frozen=True)
class Profile:
    name: str
    width_dots: int
    dpi: int
    chars_per_line: int
    code_page: str  # Python codec
    code_page_number: int  # ESC t n
    module_dots: int
    cut: str
    native_pdf417: bool = False  # only models known to draw GS ( k PDF417 say true
    feed_before_cut: int = 4
    drawer_pin: int = 2
    escpos_profile: str = "default"
    paper_mm: float = 80
    description: str = ""
    char_dots: int = 12  # font A cell width in dots (12 x 24)
    status: str = "dle_eot"  # "dle_eot": answers real-time status; "none": never asked
    ack: str = "gs_r"  # end of job: "gs_r" (answered once printed) or "status" (DLE EOT again)
    clear_buffer: bool = False  # understands DLE DC4 fn=8 (clear buffers after a fault)
    connect_timeout: float = 3.0  # s to open the connection
    io_timeout: float = 5.0  # s without progress while sending before the printer counts as stalled
    status_timeout: float = 1.5  # s for a status answer
    print_timeout: float = 30.0  # s for the end-of-job answer (a long ticket prints meanwhile)
    status_poll: float = 2.0  # s between status queries while the printer reports a fault

    @property
    def dot_mm(self) -> float:
        return 25.4 / self.dpi

    @property
    def printable_mm(self) -> float:
        return self.width_dots * self.dot_mm

    @property
    def edge_mm(self) -> float:
        """Unprinted paper on each side of the print area (the head is centred on the roll)."""
        return max(0.0, (self.paper_mm - self.printable_mm) / 2)

    @property
    def text_indent(self) -> int:
        """Characters left blank at each end of a line so text stays >= 5 mm from the edges."""
        short = TEXT_EDGE_MM - self.edge_mm
        return 0 if short <= 0 else math.ceil(short / (self.char_dots * self.dot_mm) - 1e-9)

    @property
    def text_columns(self) -> int:
        return self.chars_per_line - 2 * self.text_indent

    @property
    def line_pitch_mm(self) -> float:
        return self.char_dots * self.dot_mm


def _invalid(where: str, detail: str) -> DteSyncError:
    return DteSyncError("PRINTER_PROFILE_INVALID", found=where, params={"detail": detail})


def parse_profile(data: dict[str, Any], where: str) -> Profile:
    try:
        p = Profile(**{k: v for k, v in data.items() if k != "raster"})
    except TypeError as exc:
        raise _invalid(where, str(exc)) from None
    try:
        codecs.lookup(p.code_page)
    except LookupError:
        raise _invalid(where, f"code_page {p.code_page!r} no es un códec conocido") from None
    if p.cut not in CUTS:
        raise _invalid(where, f"cut debe ser {', '.join(CUTS)}")
    if p.module_dots * 25.4 / p.dpi < 0.170 - 1e-9:
        raise _invalid(where, "module_dots bajo el mínimo del SII (X >= 6,7 mils = 0,170 mm)")
    if not 0 <= p.code_page_number <= 255 or p.drawer_pin not in (2, 5):
        raise _invalid(where, "code_page_number 0..255 y drawer_pin 2 o 5")
    if p.status not in STATUS_MODES or p.ack not in ACK_MODES:
        raise _invalid(where, f"status debe ser {' o '.join(STATUS_MODES)}; ack debe ser {' o '.join(ACK_MODES)}")
    if p.chars_per_line * p.char_dots > p.width_dots or p.text_columns < 16:
        raise _invalid(where, "chars_per_line x char_dots no cabe en width_dots (o quedan menos de 16 columnas)")
    for key in ("connect_timeout", "io_timeout", "status_timeout", "print_timeout", "status_poll"):
        value = getattr(p, key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise _invalid(where, f"{key} debe ser un número de segundos > 0")
    return p


def load_profile(name_or_path: str, extra_dir: Path | None = None) -> Profile:
    """A profile by name (the extra folder first, then the built-in ones) or by file path."""
    candidates = [Path(name_or_path)] if name_or_path.endswith(".toml") else []
    for folder in (extra_dir, BUILTIN):
        if folder is not None:
            candidates.append(folder / f"{name_or_path}.toml")
    for path in candidates:
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise _invalid(str(path), str(exc)) from None
            return parse_profile(data, str(path))
    raise DteSyncError("PRINTER_PROFILE_UNKNOWN", found=name_or_path, params={"known": ", ".join(builtin_names())})


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN.glob("*.toml"))
