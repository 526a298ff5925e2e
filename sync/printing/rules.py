"""The SII's rules for a printed DTE, in millimetres, and where the timbre goes on a roll.

Sources (the SII's own documents):
- Instructivo Técnico (emisión DTE), annex A.2.5: PDF417, byte compaction, level 5,
  X >= 6,7 mil, rows 3:1, not truncated, and a quiet zone of at least 0,25 in on each of the
  four sides. This holds for every document and every paper.
- Manual de Muestras Impresas v3.0 (facturas, notas, guías): timbre at least 2 x 5 cm and at
  most 4 x 9 cm, at least 2 cm from the left edge, at the bottom (sheets and continuous paper);
  continuous paper at least 7,5 cm wide; no letters within 0,5 cm of the edge; the document
  box with letters of size 10 or more, in bold; legends under the timbre in size 6 or more.
- Res. Ex. SII 74/2020 §G (boletas): paper at least 5,7 cm wide, timbre at least 2 x 4,5 cm,
  generated at more than 200 dpi.

The 4 x 9 cm bound is read as a box the symbol must fit in either orientation: on 80 mm
paper a whole TED fits it only rotated 90° (its rows across the paper), 4 cm across and up
to 9 cm along.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sync.printing import pdf417
from sync.sii import is_boleta

QUIET_MM = pdf417.QUIET_MM  # 0.25 in on every side
TIMBRE_LEFT_MM = 20.0  # DTE: from the paper's left edge to the symbol
TIMBRE_MAX_MM = (40.0, 90.0)  # DTE: short x long side
TIMBRE_MIN_MM = {True: (20.0, 45.0), False: (20.0, 50.0)}  # by is_boleta
ROLL_MIN_MM = {True: 57.0, False: 75.0}  # paper width, by is_boleta
BOLETA_MIN_DPI = 200  # "mayor a 200 puntos por pulgada" (strictly more)
BOX_TEXT_PT = 10.0
LEGEND_PT = 6.0
TEXT_EDGE_MM = 5.0
# The TED sizes seen in the SII's and other issuers' documents are 740-880 bytes; 1000 bytes
# leaves room for long names (RSR, IT1 and the CAF's RS are up to 40 characters each, with
# XML escapes). `dtesync check` refuses a station whose roll cannot hold a timbre this size.
DESIGN_TED_BYTES = 1000


class LayoutRefused(ValueError):
    """This document cannot be printed on this paper under the SII's rules."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


def roll_refusal(tipo_dte: int, paper_mm: float) -> str | None:
    """Why `tipo_dte` may not go on `paper_mm` paper (None when it may)."""
    boleta = is_boleta(tipo_dte)
    need = ROLL_MIN_MM[boleta]
    if paper_mm + 1e-9 >= need:
        return None
    what = "boletas" if boleta else "facturas, notas y guías"
    return f"papel de {paper_mm:g} mm; el SII exige al menos {need / 10:g} cm para {what}".replace(".", ",")


@dataclass(frozen=True)
class RollTimbre:
    """A timbre placed on a roll: the symbol, its module in mm and its box on the paper."""

    plan: pdf417.Plan
    x_mm: float
    left_mm: float  # from the paper's left edge to the symbol (quiet zone excluded)

    @property
    def across_mm(self) -> float:
        return self.plan.size_modules()[0] * self.x_mm

    @property
    def along_mm(self) -> float:
        return self.plan.size_modules()[1] * self.x_mm


def roll_timbre(ted: bytes, *, tipo_dte: int, paper_mm: float, printable_mm: float, x_mm: float,
                snap_mm: float | None = None, slack_mm: float = 0.0) -> RollTimbre:
    """Where the timbre of a `tipo_dte` goes on a roll whose print area (`printable_mm`) is
    centred on the paper. Boletas: centred, as wide as the quiet zones allow. Facturas, notas,
    guías: within 4 x 9 cm, 2 cm or more from the left edge. `snap_mm` is the printer's dot:
    positions are rounded to whole dots, away from the edges; `slack_mm` is kept beyond each
    minimum distance (a PDF has no dot grid: its reader's rendering rounds). Raises LayoutRefused."""
    boleta = is_boleta(tipo_dte)
    refusal = roll_refusal(tipo_dte, paper_mm)
    if refusal:
        raise LayoutRefused("PRINT_PAPER_TOO_NARROW", refusal)
    edge = max(0.0, (paper_mm - printable_mm) / 2)
    right_limit = min(paper_mm - QUIET_MM - slack_mm, edge + printable_mm)  # symbol's right edge at most here
    left_min = max(QUIET_MM, edge) if boleta else max(TIMBRE_LEFT_MM, QUIET_MM, edge)
    left_min += slack_mm
    across = math.floor((right_limit - left_min) / x_mm + 1e-9)
    try:
        if boleta:
            plan = pdf417.plan_for_roll(ted, across)
        else:
            short, long_ = (math.floor(v / x_mm + 1e-9) for v in TIMBRE_MAX_MM)
            plan = pdf417.plan_in_box(ted, across, short_max=short, long_max=long_)
    except pdf417.Pdf417Error as exc:
        raise LayoutRefused("TIMBRE_TOO_LARGE", str(exc)) from None
    width = plan.size_modules()[0] * x_mm
    left = max(left_min, (paper_mm - width) / 2)  # centred when the rules allow it
    if snap_mm:
        left = edge + math.ceil((left - edge) / snap_mm - 1e-9) * snap_mm
    if left + width > right_limit + 1e-6:
        raise LayoutRefused("TIMBRE_TOO_LARGE", f"{width:.1f} mm no caben entre {left_min:g} y {right_limit:.1f} mm")
    return RollTimbre(plan, x_mm, left)


def capacity_ok(tipo_dte: int, *, paper_mm: float, printable_mm: float, x_mm: float,
                ted_bytes: int = DESIGN_TED_BYTES) -> str | None:
    """None when a TED of `ted_bytes` fits this roll for `tipo_dte`; else why not."""
    try:
        roll_timbre(b"\xd1" * ted_bytes, tipo_dte=tipo_dte, paper_mm=paper_mm, printable_mm=printable_mm, x_mm=x_mm)
    except LayoutRefused as exc:
        return exc.detail
    return None
