"""The ticket: a Layout rendered to ESC/POS bytes for one printer profile.

python-escpos (its `Dummy` printer, i.e. no I/O) produces the commands for styles, the cut and
the cash drawer. What it does not do is done here:
- Every copy starts with the same pinned sequence: ESC @ (initialise), FS . (cancel Kanji
  mode: many 58 mm and Xprinter-class printers start in it and print accents as Chinese
  characters), ESC t n (the profile's code page) and ESC 2 (default line spacing). The text
  is encoded with the matching Python codec, not python-escpos's guesswork.
- Text keeps >= 5 mm from the paper's edges (one blank column where the print area comes
  closer); the document box is framed, its letters bold and double height (>= 10 pt).
- The timbre follows the SII's rules (sync.printing.rules): boletas centred with their quiet
  zone, facturas/notas/guías rotated within 4 x 9 cm and >= 2 cm from the left edge, and
  0.25 in of blank paper before and after it. Boletas may use the printer's own PDF417
  (`GS ( k` 065..081, cn = 48: our columns, module, row height 3, ECL 5, the TED's exact
  ISO-8859-1 bytes) when the profile says the model draws it; everything else is a GS v 0
  raster built here, one bit per dot.
"""

from __future__ import annotations

import logging
import math
import textwrap
from typing import TYPE_CHECKING, Any

from sync.printing import pdf417
from sync.printing.layout import Layout, exento_mark, quantity_text
from sync.printing.profiles import Profile
from sync.printing.rules import QUIET_MM, LayoutRefused, RollTimbre, roll_timbre
from sync.sii import is_boleta

if TYPE_CHECKING:
    from PIL import Image  # loaded when a raster is drawn (sync.printing.pdf417)

log = logging.getLogger("dtesync.printing")

ESC, GS, FS = b"\x1b", b"\x1d", b"\x1c"
FRAGMENT_ROWS = 960  # GS v 0 images are sent in slices of at most this many dot rows
_INVERT = bytes(255 - b for b in range(256))
BOX = {"tl": "╔", "tr": "╗", "bl": "╚", "br": "╝", "h": "═", "v": "║"}  # in CP437/850/858


def job_start(profile: Profile) -> bytes:
    """The sequence every copy begins with: initialise, cancel Kanji mode, pin the code page,
    default line spacing."""
    return ESC + b"@" + FS + b"." + ESC + b"t" + bytes((profile.code_page_number,)) + ESC + b"2"


def warm_up(profile: Profile) -> None:
    """Import python-escpos and load its capabilities (~0.3 s), and build the PDF417 error-
    correction table (~20 ms), now rather than on the first ticket."""
    _dummy(profile)
    pdf417.error_correction([1])


def _dummy(profile: Profile) -> Any:
    from escpos.printer import Dummy

    return Dummy(profile=profile.escpos_profile)


def pdf417_native(ted: bytes, columns: int, module_dots: int) -> bytes:
    """GS ( k PDF417: columns, auto rows, module width, row height 3, ECL 5, store, print."""
    return pdf417_setup(columns, module_dots) + pdf417_store(ted) + _fn(81, b"\x30")


def _fn(f: int, params: bytes) -> bytes:
    n = len(params) + 2
    return GS + b"(k" + bytes((n & 0xFF, n >> 8, 48, f)) + params


def pdf417_setup(columns: int, module_dots: int) -> bytes:
    return b"".join((
        _fn(65, bytes((columns,))),  # number of data columns
        _fn(66, b"\x00"),  # rows: automatic
        _fn(67, bytes((module_dots,))),  # module width in dots
        _fn(68, bytes((pdf417.ROW_RATIO,))),  # row height = 3 x module width
        _fn(69, bytes((48, 48 + pdf417.SECURITY_LEVEL))),  # error correction by level: 5
        _fn(70, b"\x00"),  # standard PDF417, not truncated
    ))


def pdf417_store(data: bytes) -> bytes:
    return _fn(80, b"\x30" + data)


PDF417_SIZE_QUERY = _fn(82, b"\x30")  # answer: 37h 2Fh <width> 1Fh <height> 1Fh 31h 1Fh <30h|31h> 00h


def parse_size_answer(answer: bytes) -> tuple[int, int, bool] | None:
    """(width, height in dots, printable) from a GS ( k fn 82 answer; None if it is not one."""
    if len(answer) < 9 or answer[:2] != b"\x37\x2f" or not answer.endswith(b"\x00"):
        return None
    parts = answer[2:-1].split(b"\x1f")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit() or parts[2] != b"1":
        return None
    return int(parts[0]), int(parts[1]), parts[3] == b"0"


def raster(img: Image.Image) -> bytes:
    """GS v 0 of a 1-bit image (black = 0 in PIL), in slices of FRAGMENT_ROWS dot rows."""
    img = img.convert("1")
    width_bytes = (img.width + 7) // 8
    out = []
    for top in range(0, img.height, FRAGMENT_ROWS):
        part = img.crop((0, top, width_bytes * 8, min(img.height, top + FRAGMENT_ROWS)))
        bits = part.tobytes().translate(_INVERT)  # PIL packs white as 1; GS v 0 prints 1
        out.append(GS + b"v0\x00" + bytes((width_bytes & 0xFF, width_bytes >> 8, part.height & 0xFF, part.height >> 8))
                   + bits)
    return b"".join(out)


class Ticket:
    """Builds one copy's bytes: pinned start, text kept off the paper's edges."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.p = _dummy(profile)
        self.width = profile.text_columns
        self.indent = " " * profile.text_indent
        self.raw(job_start(profile))

    def raw(self, data: bytes) -> None:
        self.p._raw(data)

    def text(self, s: str) -> None:
        self.raw(s.encode(self.profile.code_page, errors="replace"))

    def style(self, *, align: str = "left", bold: bool = False, double: bool = False) -> None:
        self.p.set(align=align, bold=bold, double_height=double, double_width=False, normal_textsize=not double)

    def line(self, s: str = "", *, align: str = "left", bold: bool = False, double: bool = False) -> None:
        self.style(align=align, bold=bold, double=double)
        for part in textwrap.wrap(s, self.width) or [""]:
            if align == "left":
                part = self.indent + part
            elif align == "right":
                part = part + self.indent
            self.text(part + "\n")

    def pair(self, left: str, right: str, *, bold: bool = False) -> None:
        self.style(bold=bold)
        room = self.width - len(right) - 1
        parts = textwrap.wrap(left, max(room, 8)) or [""]
        for part in parts[:-1]:
            self.text(self.indent + part + "\n")
        self.text(self.indent + parts[-1].ljust(room) + " " + right + "\n")

    def rule(self, ch: str = "-") -> None:
        self.line(ch * self.width)

    def feed_mm(self, mm: float) -> None:
        """Blank paper (ESC J, in dots), e.g. the timbre's quiet zone."""
        dots = math.ceil(mm / self.profile.dot_mm - 1e-9)
        while dots > 0:
            self.raw(ESC + b"J" + bytes((min(dots, 255),)))
            dots -= 255

    def box(self, lines: list[str]) -> None:
        """The document box (Manual §1.1.4): framed, centred, bold, double-height letters."""
        inner = self.width - 2
        rows = [s for text in lines for s in textwrap.wrap(text, inner) or [""]]
        char_h = 24  # font A cell height in dots
        self.style(align="center", bold=True)
        self.raw(ESC + b"3" + bytes((char_h,)))  # rows touch: the frame's sides join up
        self.text(BOX["tl"] + BOX["h"] * inner + BOX["tr"] + "\n")
        self.style(align="center", bold=True, double=True)
        self.raw(ESC + b"3" + bytes((2 * char_h,)))
        for row in rows:
            self.text(BOX["v"] + row.center(inner) + BOX["v"] + "\n")
        self.style(align="center", bold=True)
        self.raw(ESC + b"3" + bytes((char_h,)))
        self.text(BOX["bl"] + BOX["h"] * inner + BOX["br"] + "\n")
        self.raw(ESC + b"2")

    def finish(self, cut: bool) -> bytes:
        self.style()
        if cut and self.profile.cut != "none":
            self.p.cut(mode="PART" if self.profile.cut == "partial" else "FULL")
        else:
            self.p.print_and_feed(self.profile.feed_before_cut)
        return bytes(self.p.output)


def place_timbre(ted: bytes, tipo_dte: int, profile: Profile) -> RollTimbre:
    """Where this document's timbre goes on this printer's paper (raises LayoutRefused)."""
    return roll_timbre(ted, tipo_dte=tipo_dte, paper_mm=profile.paper_mm, printable_mm=profile.printable_mm,
                       x_mm=profile.module_dots * profile.dot_mm, snap_mm=profile.dot_mm)


def timbre_mode(ted: bytes, tipo_dte: int, profile: Profile, native: bool | None = None) -> str:
    """"native" (GS ( k) or "raster" (GS v 0) for this document on this printer."""
    want = profile.native_pdf417 if native is None else native
    if not want or not is_boleta(tipo_dte):  # a factura's timbre goes rotated: only a raster can
        return "raster"
    return "raster" if place_timbre(ted, tipo_dte, profile).plan.rotated else "native"


def render_ticket(L: Layout, profile: Profile, *, cut: bool = True, drawer: bool = False,
                  native: bool | None = None) -> bytes:
    """ESC/POS bytes for one copy. `native` None: as the profile says. Raises LayoutRefused
    when the SII's rules do not let this document go on this paper."""
    timbre = place_timbre(L.ted, L.tipo_dte, profile)  # refuse before building anything
    t = Ticket(profile)
    if drawer:
        t.p.cashdraw(profile.drawer_pin)
    t.box([f"R.U.T.: {L.rut_emisor}", L.doc_name, f"N° {L.folio}"])
    t.line(L.sii_unidad, align="center", bold=True)
    t.line()
    t.line(L.emisor_name, bold=True)
    for s in L.emisor_lines:
        t.line(s)
    t.rule()
    for label, value in L.receptor:
        t.line(f"{label}: {value}")
    t.line(f"Fecha: {L.fecha}")
    for label, value in L.extra:
        t.line(f"{label}: {value}")
    for r in L.references:
        t.line(f"Ref.: {r.tipo} N° {r.folio} {r.fecha} {r.razon}".strip())
    t.rule()
    for ln in L.lines:
        t.line(ln.nombre + exento_mark(ln))
        t.pair(quantity_text(ln), ln.valor)
    t.rule()
    for label, value in L.totals:
        t.pair(label, f"$ {value}", bold=label.upper().endswith("TOTAL"))
    for note in L.notes:
        t.line(note)
    if L.acuse_recibo:
        t.rule()
        t.line("Acuse de Recibo", bold=True)
        for label in ("Nombre:", "RUT:", "Fecha:", "Recinto:", "Firma:"):
            t.line(f"{label} " + "_" * (t.width - len(label) - 2))
        t.line(L.acuse_text)
    _timbre(t, L.ted, timbre, timbre_mode(L.ted, L.tipo_dte, profile, native))
    t.line(L.legends[0], align="center", bold=True)
    t.line(L.legends[1], align="center")
    t.line(L.legends[2], align="center")
    for s in L.footer:
        t.line(s, align="center")
    if L.copy_label:  # the destination legend, bottom right (Manual §1.1.7)
        t.line()
        t.line(L.copy_label, align="right", bold=True, double=True)
    return t.finish(cut)


def _timbre(t: Ticket, ted: bytes, timbre: RollTimbre, mode: str) -> None:
    """The symbol with 0.25 in of blank paper before and after it (and across, by placement)."""
    profile = t.profile
    t.style()
    if mode == "native":  # the printer encodes and centres it: we only choose the geometry
        t.feed_mm(QUIET_MM)
        t.style(align="center")
        t.raw(pdf417_native(ted, timbre.plan.columns, profile.module_dots))
        t.feed_mm(QUIET_MM)
        t.style()
        return
    t.raw(raster(timbre_raster(timbre, profile)))


def timbre_raster(timbre: RollTimbre, profile: Profile) -> Image.Image:
    """The print area's width in dots, the symbol at its place, blank rows for the quiet zone."""
    from PIL import Image

    sym = pdf417.render(timbre.plan.symbol, profile.module_dots, rotate=timbre.plan.rotated)
    quiet = math.ceil(QUIET_MM / profile.dot_mm - 1e-9)
    img = Image.new("1", (profile.width_dots, sym.height + 2 * quiet), 1)
    x = round((timbre.left_mm - profile.edge_mm) / profile.dot_mm)
    img.paste(sym, (x, quiet))
    return img


def reprint_marker(profile: Profile, reason: str) -> bytes:
    """Printed at the top of every copy of a job sent again: never a silent duplicate."""
    t = Ticket(profile)
    t.p._output_list.clear()  # the copy's own start sequence comes before this marker
    t.line("*** REIMPRESIÓN ***", align="center", bold=True, double=True)
    t.line(reason, align="center")
    t.rule("*")
    t.style()
    return bytes(t.p.output)


def sample_ticket(profile: Profile, station: str, ted: bytes, *, tipo_dte: int = 39, native: bool | None = None,
                  cut: bool = True, notes: list[str] | None = None) -> bytes:
    """`dtesync printers test`: code page, widths and a full-size timbre drawn the way this
    station draws a boleta's (not a tax document)."""
    t = Ticket(profile)
    t.line("dtesync - prueba de impresora", align="center", bold=True)
    t.line(f"Estación: {station}")
    t.line(f"Perfil: {profile.name} ({profile.width_dots} puntos, {profile.dpi} dpi, {profile.code_page})")
    t.line("Ñandú Peñalolén ¿áéíóú ü?")
    t.line("25° N° $1.990")
    t.line(("1234567890" * 10)[: t.width])  # a full line: shows the usable characters per line
    for note in notes or []:
        t.line(note)
    timbre = place_timbre(ted, tipo_dte, profile)
    _timbre(t, ted, timbre, timbre_mode(ted, tipo_dte, profile, native))
    t.line("Documento de prueba: sin validez tributaria", align="center")
    return t.finish(cut)


__all__ = ["LayoutRefused", "job_start", "render_ticket", "reprint_marker", "sample_ticket", "timbre_mode"]
