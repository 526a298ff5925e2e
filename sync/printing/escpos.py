"""The ticket: a Layout rendered to ESC/POS bytes for one printer profile.

python-escpos (its `Dummy` printer, i.e. no I/O) produces the commands for styles, the raster
image (GS v 0), the cut and the cash drawer. Two things it does not do are done here:
- PDF417: python-escpos has no call for it; the native symbol is `GS ( k` function 065..081
  (cn = 48), with our column count, module width, row height 3 and error-correction level 5,
  and the TED stored as its exact ISO-8859-1 bytes.
- Text: the code page is pinned by the profile (`ESC t n` + the matching Python codec)
  instead of python-escpos's guesswork, whose table numbers differ between vendors.
"""

from __future__ import annotations

import logging
import textwrap

from sync.printing import pdf417
from sync.printing.layout import Layout, exento_mark, quantity_text
from sync.printing.profiles import Profile

log = logging.getLogger("dtesync.printing")

ESC, GS = b"\x1b", b"\x1d"
QUIET_INSIDE_MM = 2.5  # the paper's own margin (about 4 mm) makes up the rest of the 0.25 in


def warm_up(profile: Profile) -> None:
    """Import python-escpos and load its capabilities now (~0.3 s), not on the first ticket."""
    _dummy(profile)


def _dummy(profile: Profile):
    from escpos.printer import Dummy

    return Dummy(profile=profile.escpos_profile)


def pdf417_native(ted: bytes, columns: int, module_dots: int) -> bytes:
    """GS ( k PDF417: columns, auto rows, module width, row height 3, ECL 5, store, print."""

    def fn(f: int, params: bytes) -> bytes:
        n = len(params) + 2
        return GS + b"(k" + bytes((n & 0xFF, n >> 8, 48, f)) + params

    return b"".join((
        fn(65, bytes((columns,))),  # number of data columns
        fn(66, b"\x00"),  # rows: automatic
        fn(67, bytes((module_dots,))),  # module width in dots
        fn(68, bytes((pdf417.ROW_RATIO,))),  # row height = 3 x module width
        fn(69, bytes((48, 48 + pdf417.SECURITY_LEVEL))),  # error correction by level: 5
        fn(70, b"\x00"),  # standard PDF417, not truncated
        fn(80, b"\x30" + ted),  # store the data
        fn(81, b"\x30"),  # print
    ))


class Ticket:
    """Builds one ticket's bytes; `text` encodes with the profile's pinned code page."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.p = _dummy(profile)
        self.width = profile.chars_per_line

    def raw(self, data: bytes) -> None:
        self.p._raw(data)

    def text(self, s: str) -> None:
        self.raw(s.encode(self.profile.code_page, errors="replace"))

    def line(self, s: str = "", *, align: str = "left", bold: bool = False, double: bool = False) -> None:
        self.p.set(align=align, bold=bold, double_height=double, double_width=False, normal_textsize=not double)
        width = self.width
        for part in textwrap.wrap(s, width) or [""]:
            self.text(part + "\n")

    def pair(self, left: str, right: str, *, bold: bool = False) -> None:
        self.p.set(align="left", bold=bold, normal_textsize=True)
        room = self.width - len(right) - 1
        parts = textwrap.wrap(left, max(room, 8)) or [""]
        for part in parts[:-1]:
            self.text(part + "\n")
        self.text(parts[-1].ljust(room) + " " + right + "\n")

    def rule(self, ch: str = "-") -> None:
        self.line(ch * self.width)

    def output(self) -> bytes:
        return self.p.output


def timbre_plan(ted: bytes, profile: Profile) -> pdf417.Plan:
    return pdf417.plan_for_roll(ted, _across_modules(profile))


def render_ticket(L: Layout, profile: Profile, *, cut: bool = True, drawer: bool = False,
                  native: bool | None = None) -> bytes:
    """ESC/POS bytes for one copy. `native` None: as the profile says (GS ( k if it has it and
    the symbol fits upright; otherwise a GS v 0 raster)."""
    t = Ticket(profile)
    t.p.hw("INIT")
    t.raw(ESC + b"t" + bytes((profile.code_page_number,)))
    if drawer:
        t.p.cashdraw(profile.drawer_pin)
    t.rule("=")
    t.line(f"R.U.T.: {L.rut_emisor}", align="center", bold=True)
    t.line(L.doc_name, align="center", bold=True)
    t.line(f"N° {L.folio}", align="center", bold=True, double=True)
    t.rule("=")
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
    t.line()
    _timbre(t, L.ted, profile, native)
    t.line(L.legends[0], align="center", bold=True)
    t.line(L.legends[1], align="center")
    t.line(L.legends[2], align="center")
    for s in L.footer:
        t.line(s, align="center")
    if L.copy_label:
        t.line()
        t.line(L.copy_label, align="center", bold=True, double=True)
    t.p.set(align="left", bold=False, normal_textsize=True)
    if cut and profile.cut != "none":
        t.p.cut(mode="PART" if profile.cut == "partial" else "FULL")
    else:
        t.p.print_and_feed(profile.feed_before_cut)
    return t.output()


def _across_modules(profile: Profile) -> int:
    quiet = round(QUIET_INSIDE_MM / (profile.module_dots * profile.dot_mm))
    return profile.width_dots // profile.module_dots - 2 * quiet


def _timbre(t: Ticket, ted: bytes, profile: Profile, native: bool | None) -> None:
    use_native = profile.native_pdf417 if native is None else native
    columns = pdf417.columns_for_width(ted, _across_modules(profile)) if use_native else None
    if columns is not None:  # the printer encodes: we only choose the geometry
        t.p.set(align="center")
        t.raw(pdf417_native(ted, columns, profile.module_dots))
        t.text("\n")
    else:
        plan = timbre_plan(ted, profile)
        img = pdf417.render(plan.symbol, profile.module_dots, rotate=plan.rotated)
        t.p.set(align="left")
        t.p.image(img, impl="bitImageRaster", center=True, fragment_height=4096)


def sample_ticket(profile: Profile, station: str, *, cut: bool = True) -> bytes:
    """`dtesync printers test`: code page, widths and a PDF417 (not a tax document)."""
    t = Ticket(profile)
    t.p.hw("INIT")
    t.raw(ESC + b"t" + bytes((profile.code_page_number,)))
    t.line("dtesync - prueba de impresora", align="center", bold=True)
    t.line(f"Estación: {station}")
    t.line(f"Perfil: {profile.name} ({profile.width_dots} puntos, {profile.code_page})")
    t.line("Ñandú Peñalolén ¿áéíóú ü?")
    t.line("25° N° $1.990")
    t.line(("1234567890" * 10)[: t.width])  # a full line: shows the characters per line
    sample = f"dtesync {station} {profile.name} Ñ á °".encode("latin-1")
    _timbre(t, sample, profile, None)
    t.line("Documento de prueba: sin validez tributaria", align="center")
    if cut and profile.cut != "none":
        t.p.cut(mode="PART" if profile.cut == "partial" else "FULL")
    else:
        t.p.print_and_feed(profile.feed_before_cut)
    return t.output()
