"""Printer profiles: TOML data from printers/ (shipped as sync/data/printers), see docs/printing.md."""

from __future__ import annotations

import codecs
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sync.errors import DteSyncError

BUILTIN = Path(__file__).resolve().parent.parent / "data" / "printers"
CUTS = ("partial", "full", "none")


@dataclass(frozen=True)
class Profile:
    name: str
    width_dots: int
    dpi: int
    chars_per_line: int
    code_page: str  # Python codec
    code_page_number: int  # ESC t n
    native_pdf417: bool
    module_dots: int
    cut: str
    feed_before_cut: int = 4
    drawer_pin: int = 2
    escpos_profile: str = "default"
    paper_mm: int = 80
    description: str = ""

    @property
    def dot_mm(self) -> float:
        return 25.4 / self.dpi


def _invalid(where: str, detail: str) -> DteSyncError:
    return DteSyncError("PRINTER_PROFILE_INVALID", found=where, params={"detail": detail})


def parse_profile(data: dict, where: str) -> Profile:
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
