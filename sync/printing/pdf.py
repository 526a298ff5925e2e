"""The PDF printed representation (reportlab): letter/A4 sheets and 80/58 mm rolls.

Sizes follow the SII (sync.printing.rules): the timbre within 4 x 9 cm (at least 2 x 5 cm;
boletas 2 x 4.5 cm), at the bottom, at least 2 cm from the left edge, with 0.25 in of blank
paper on each of its four sides; the document box in bold letters of 10 pt or more; no text
within 0.5 cm of the paper's edges. The barcode is an embedded raster image, one pixel per
module, placed at the module size (0.254 mm = 6 dots at 600 dpi on sheets, as the Manual de
Muestras Impresas asks of rendered output; 0.25 mm = 2 dots at 203 dpi on rolls, the thermal
printers' grid), so no module is ever resampled. Text stays text (the SII rejects documents
drawn as images).

A timbre that does not fit one way is laid out another: on sheets with a smaller module
(5 dots at 600 dpi, still above the SII's 6.7 mil), on rolls rotated 90°. When no way fits,
render_pdf raises LayoutRefused and the status file says why there is no PDF.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from reportlab import rl_config
from reportlab.lib.colors import black, white
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader, simpleSplit
from reportlab.pdfgen.canvas import Canvas

from sync.printing import pdf417
from sync.printing.layout import Layout, exento_mark, quantity_text
from sync.printing.rules import QUIET_MM, TIMBRE_LEFT_MM, LayoutRefused, roll_timbre

# Streams stay binary (Flate only): reportlab's default also wraps them in ASCII85, in pure Python
# without its C accelerator, for 7-bit transports no PDF of ours travels by (13 % of a NAME.pdf's
# rendering time, and 15 % larger files). This process renders every PDF with this module.
rl_config.useA85 = 0

SHEETS = {"letter": LETTER, "a4": A4}
ROLLS = {"80mm": (80 * mm, 72 * mm), "58mm": (58 * mm, 48 * mm)}  # paper, the thermal print area
SHEET_X_MM = (0.254, 5 * 25.4 / 600)  # 10 mil (6 dots at 600 dpi), then 8.3 mil (5 dots at 600 dpi)
ROLL_X_MM = 0.25  # 2 dots at 203 dpi, the thermal printers' grid
QUIET = QUIET_MM * mm
SLACK_MM = 0.5  # kept beyond every minimum distance: a PDF viewer or printer rounds positions
CLEAR = QUIET + SLACK_MM * mm  # what we leave around the symbol
TEXT_EDGE = 5 * mm  # no letters within 0.5 cm of the paper's edge
BOX_PT = 10.0  # the document box's letters (Manual §1.1.4: 10 or more, bold)
FONT, BOLD = "Helvetica", "Helvetica-Bold"


@dataclass
class Timbre:
    image: ImageReader
    width: float  # points, barcode only (the image adds a quiet zone around it)
    height: float
    quiet: float  # points of white the image carries on each side
    plan: pdf417.Plan
    left: float = 0.0  # on a roll: from the paper's left edge to the symbol, points

    def draw(self, c: Canvas, x: float, y: float) -> None:
        """Barcode's lower-left corner at (x, y); its quiet zone lies outside that box."""
        q = self.quiet
        c.drawImage(self.image, x - q, y - q, width=self.width + 2 * q, height=self.height + 2 * q)


def _image(plan: pdf417.Plan, x_mm: float, left_mm: float = 0.0) -> Timbre:
    quiet_px = round(QUIET_MM / x_mm)
    img = pdf417.render(plan.symbol, 1, quiet_px=quiet_px, rotate=plan.rotated).convert("L")
    w, h = plan.size_modules()  # (across, along) the paper = (image width, image height)
    return Timbre(ImageReader(img), w * x_mm * mm, h * x_mm * mm, quiet_px * x_mm * mm, plan, left_mm * mm)


def sheet_timbre(ted: bytes) -> Timbre:
    """At most 4 x 9 cm on a sheet: 10 mil modules, or 8.3 mil when the TED needs it."""
    last: pdf417.Pdf417Error | None = None
    for x_mm in SHEET_X_MM:
        try:
            return _image(pdf417.plan_for_sheet(ted, x_mm), x_mm)
        except pdf417.Pdf417Error as exc:
            last = exc
    raise LayoutRefused("TIMBRE_TOO_LARGE", str(last))


def roll_timbre_image(ted: bytes, tipo_dte: int, fmt: str) -> Timbre:
    """Placed by the SII's rules for this document type on this roll (raises LayoutRefused)."""
    paper, printable = ROLLS[fmt]
    t = roll_timbre(ted, tipo_dte=tipo_dte, paper_mm=paper / mm, printable_mm=printable / mm, x_mm=ROLL_X_MM,
                    slack_mm=SLACK_MM)
    return _image(t.plan, ROLL_X_MM, t.left_mm)


def timbre_image(ted: bytes, *, sheet: bool, tipo_dte: int = 39, fmt: str = "80mm") -> Timbre:
    return sheet_timbre(ted) if sheet else roll_timbre_image(ted, tipo_dte, fmt)


def render_pdf(copies: list[Layout], *, fmt: str) -> bytes:
    """One page (sheets) or one roll page per copy: the original, then CEDIBLE copies.
    Raises LayoutRefused when the timbre fits no layout the SII allows on this paper."""
    buf = io.BytesIO()
    c = Canvas(buf, pagesize=SHEETS.get(fmt, LETTER), pageCompression=1, invariant=1)
    c.setTitle(f"{copies[0].doc_name} N° {copies[0].folio}")
    c.setAuthor(copies[0].emisor_name)
    c.setCreator("dtesync")
    for layout in copies:
        if fmt in SHEETS:
            _sheet(c, layout, SHEETS[fmt])
        else:
            _roll(c, layout, fmt)
    c.save()
    return buf.getvalue()


# --- sheets -----------------------------------------------------------------------------------------
def _text_lines(c: Canvas, lines: list[str], x: float, y: float, width: float, font: str, size: float,
                lead: float | None = None) -> float:
    """Draw wrapped lines from top baseline `y` down; returns the next baseline."""
    lead = lead or size * 1.25
    c.setFont(font, size)
    for line in lines:
        for part in simpleSplit(line, font, size, width) or [""]:
            c.drawString(x, y, part)
            y -= lead
    return y


def _sheet(c: Canvas, L: Layout, size: tuple[float, float]) -> None:
    W, H = size
    c.setPageSize(size)
    margin = 12 * mm
    top = H - margin
    box_w, box_x = 75 * mm, W - margin - 75 * mm
    # emisor (top left)
    x = margin
    if L.logo and L.logo.is_file():
        c.drawImage(str(L.logo), x, top - 18 * mm, width=30 * mm, height=18 * mm, preserveAspectRatio=True, mask="auto")
        x += 33 * mm
    y = _text_lines(c, [L.emisor_name], x, top - 4 * mm, box_x - x - 4 * mm, BOLD, 12)
    y = _text_lines(c, L.emisor_lines, x, y, box_x - x - 4 * mm, FONT, 8)
    # document box (top right): RUT, name, folio; "S.I.I. - unidad" under it
    name_lines = simpleSplit(L.doc_name, BOLD, 12, box_w - 8 * mm)
    box_h = (4 + len(name_lines)) * 5.2 * mm
    c.setStrokeColorRGB(0.8, 0, 0)
    c.setLineWidth(0.7 * mm)
    c.rect(box_x, top - box_h, box_w, box_h)
    c.setFillColorRGB(0.8, 0, 0)
    by = top - 8 * mm
    for text in [f"R.U.T.: {L.rut_emisor}", *name_lines, f"N° {L.folio}"]:
        c.setFont(BOLD, 12)
        c.drawCentredString(box_x + box_w / 2, by, text)
        by -= 6.5 * mm
    c.setFillColor(black)
    c.setStrokeColor(black)
    c.setFont(BOLD, 9)
    c.drawCentredString(box_x + box_w / 2, top - box_h - 5 * mm, L.sii_unidad)
    y = min(y, top - box_h - 9 * mm) - 4 * mm
    c.setFont(FONT, 9)
    c.drawRightString(W - margin, y, L.fecha)
    y -= 3 * mm
    # receptor and extra rows in a frame, two columns
    rows = L.receptor + L.extra
    if rows:
        y = _kv_frame(c, rows, margin, y, W - 2 * margin)
    if L.references:
        y = _table(c, "Referencias", ["Tipo documento", "Folio", "Fecha", "Razón"], [0.38, 0.14, 0.14, 0.34],
                   [[r.tipo, r.folio, r.fecha, r.razon] for r in L.references], margin, y - 2 * mm, W - 2 * margin)
    # the bottom zone is reserved: legends, the timbre with its quiet zone, the acuse, totals
    timbre = sheet_timbre(L.ted)
    tyb = margin + 7 * mm + CLEAR  # the symbol's lower edge: two legend lines and the quiet zone under it
    zone_top = tyb + timbre.height + CLEAR  # nothing above the symbol closer than that
    first_total = zone_top + 2 * mm + (len(L.totals) - 1) * 5 * mm
    cols = ["Código", "Descripción", "Cant.", "Unid.", "P. Unit.", "Dscto.", "Valor"]
    widths = [0.12, 0.40, 0.09, 0.07, 0.11, 0.09, 0.12]
    rows_detail = [[ln.codigo, ln.nombre + (f" — {ln.descripcion}" if ln.descripcion else "") + exento_mark(ln),
                    ln.cantidad, ln.unidad, ln.precio, ln.descuento, ln.valor] for ln in L.lines]

    def new_page() -> float:
        c.showPage()
        c.setPageSize(size)
        c.setFont(FONT, 8)
        c.drawString(margin, H - margin, f"{L.doc_name} N° {L.folio} (continuación)")
        return H - margin - 6 * mm

    y = _table(c, None, cols, widths, rows_detail, margin, y - 3 * mm, W - 2 * margin,
               bottom=first_total + 10 * mm, new_page=new_page, right_cols={2, 4, 5, 6})
    for note in [*L.notes, *L.footer]:
        y = _text_lines(c, [note], margin, y - 2 * mm, W - 2 * margin, FONT, 8)
    # totals (right), above the timbre zone
    ty = first_total
    if y - 6 * mm < ty:  # the detail ran long: totals and timbre on their own page
        new_page()
    for label, value in L.totals:
        c.setFont(BOLD if label.upper().endswith("TOTAL") else FONT, 9)
        c.drawRightString(W - margin - 30 * mm, ty, label)
        c.drawRightString(W - margin, ty, f"$ {value}")
        ty -= 5 * mm
    # timbre: bottom left, 2 cm from the left edge; legends under it, past its quiet zone
    tx = (TIMBRE_LEFT_MM + SLACK_MM) * mm
    timbre.draw(c, tx, tyb)
    cx = tx + timbre.width / 2
    c.setFont(BOLD, 8)
    c.drawCentredString(cx, tyb - CLEAR - 0.75 * 8, L.legends[0])
    c.setFont(FONT, 7)
    c.drawCentredString(cx, tyb - CLEAR - 0.75 * 8 - 3.5 * mm, L.legends[1] + " - " + L.legends[2])
    if L.acuse_recibo:
        _acuse(c, tx + timbre.width + CLEAR + 2 * mm, tyb - 2 * mm, W - margin, timbre.height + 2 * mm, L.acuse_text)
    if L.copy_label:
        c.setFont(BOLD, 14)
        c.drawRightString(W - margin, margin + 2 * mm, L.copy_label)
    c.showPage()


def _kv_frame(c: Canvas, rows: list[tuple[str, str]], x: float, y: float, width: float) -> float:
    """Label/value pairs in two columns inside a frame; long values wrap, nothing is cut."""
    lead, col_w, label_w = 4.2 * mm, width / 2, 26 * mm
    half = (len(rows) + 1) // 2
    cols = [rows[:half], rows[half:]]
    wrapped = [[(label, simpleSplit(value, FONT, 8, col_w - label_w - 4 * mm) or [""]) for label, value in col]
               for col in cols]
    height = max(sum(len(v) for _, v in col) for col in wrapped) * lead + 3 * mm
    c.setLineWidth(0.3)
    c.rect(x, y - height, width, height)
    for k, col in enumerate(wrapped):
        cy = y - 4.5 * mm
        cx = x + 2 * mm + k * col_w
        for label, parts in col:
            c.setFont(BOLD, 8)
            c.drawString(cx, cy, f"{label}:")
            c.setFont(FONT, 8)
            for part in parts:
                c.drawString(cx + label_w, cy, part)
                cy -= lead
    return y - height


def _table(c: Canvas, title: str | None, cols: list[str], widths: list[float], rows: list[list[str]], x: float,
           y: float, width: float, *, bottom: float = 0.0, new_page: Callable[[], float] | None = None,
           right_cols: frozenset[int] | set[int] = frozenset()) -> float:
    lead = 4.2 * mm
    xs = [x]
    for w in widths[:-1]:
        xs.append(xs[-1] + w * width)

    def header(y: float) -> float:
        if title:
            c.setFont(BOLD, 8)
            c.drawString(x, y - 3.5 * mm, title)
            y -= 4.5 * mm
        c.setFillColorRGB(0.9, 0.9, 0.9)
        c.rect(x, y - lead - 1 * mm, width, lead + 1 * mm, stroke=0, fill=1)
        c.setFillColor(black)
        c.setFont(BOLD, 8)
        for i, name in enumerate(cols):
            if i in right_cols:
                c.drawRightString(xs[i] + widths[i] * width - 1.5 * mm, y - lead + 0.3 * mm, name)
            else:
                c.drawString(xs[i] + 1.5 * mm, y - lead + 0.3 * mm, name)
        return y - lead - 1.5 * mm

    y = header(y)
    c.setFont(FONT, 8)
    for row in rows:
        wrapped = [simpleSplit(str(v), FONT, 8, widths[i] * width - 3 * mm) or [""] for i, v in enumerate(row)]
        n = max(len(w) for w in wrapped)
        if new_page is not None and y - n * lead < bottom:
            y = header(new_page())
            c.setFont(FONT, 8)
        for k in range(n):
            y -= lead
            for i, parts in enumerate(wrapped):
                if k < len(parts):
                    if i in right_cols:
                        c.drawRightString(xs[i] + widths[i] * width - 1.5 * mm, y + 1 * mm, parts[k])
                    else:
                        c.drawString(xs[i] + 1.5 * mm, y + 1 * mm, parts[k])
    c.setLineWidth(0.3)
    c.line(x, y - 0.5 * mm, x + width, y - 0.5 * mm)
    return y - 1 * mm


def _acuse(c: Canvas, x: float, y: float, right: float, height: float, text: str) -> None:
    """Acuse de recibo box (Ley 19.983): Nombre, RUT, Fecha, Recinto, Firma and the legal text."""
    w = right - x
    c.setLineWidth(0.5)
    c.rect(x, y, w, height)
    ly = y + height - 5 * mm
    c.setFont(BOLD, 8)
    c.drawString(x + 2 * mm, ly, "Acuse de Recibo")
    c.setFont(FONT, 8)
    for label in ("Nombre: ______________________________", "RUT: ______________  Fecha: __________",
                  "Recinto: ____________  Firma: __________"):
        ly -= 5 * mm
        c.drawString(x + 2 * mm, ly, label)
    _text_lines(c, [text], x + 2 * mm, ly - 5 * mm, w - 4 * mm, FONT, 6, 7)


# --- rolls -----------------------------------------------------------------------------------------------
def _roll(c: Canvas, L: Layout, fmt: str) -> None:
    """A continuous-paper page: the whole ticket on one page, as tall as it needs."""
    paper, _ = ROLLS[fmt]
    timbre = roll_timbre_image(L.ted, L.tipo_dte, fmt)  # refuses before anything is drawn
    margin = TEXT_EDGE + SLACK_MM * mm
    printable = paper - 2 * margin
    ops: list[Callable[[float], object]] = []
    height = [0.0]

    def add(h: float, draw: Callable[[float], object]) -> None:
        top = height[0]
        ops.append(lambda H: draw(H - top))
        height[0] += h

    def text(font: str, size: float, how: Callable[[float, float, str], object], x: float,
             s: str) -> Callable[[float], None]:
        def draw(y: float) -> None:
            c.setFont(font, size)
            how(x, y - size, s)

        return draw

    def centered(s: str, font: str, size: float) -> None:
        for part in simpleSplit(s, font, size, printable) or [""]:
            add(size * 1.3, text(font, size, c.drawCentredString, paper / 2, part))

    def left(s: str, font: str = FONT, size: float = 7.5) -> None:
        for part in simpleSplit(s, font, size, printable) or [""]:
            add(size * 1.3, text(font, size, c.drawString, margin, part))

    def pair(label: str, value: str, font: str = FONT, size: float = 7.5) -> None:
        def draw(y: float) -> None:
            c.setFont(font, size)
            c.drawString(margin, y - size, label)
            c.drawRightString(paper - margin, y - size, value)

        add(size * 1.3, draw)

    def right(s: str, font: str, size: float) -> None:
        add(size * 1.3, text(font, size, c.drawRightString, paper - margin, s))

    def rule() -> None:
        def draw(y: float) -> None:
            c.setLineWidth(0.4)
            c.line(margin, y - 1 * mm, paper - margin, y - 1 * mm)

        add(2 * mm, draw)

    add(margin, lambda y: None)
    # the document box, centred (Manual §1.1.7, "Formato Papel Continuo"): bold 10 pt, 0.6 mm frame
    box_lines = [f"R.U.T.: {L.rut_emisor}", *simpleSplit(L.doc_name, BOLD, BOX_PT, printable - 6 * mm), f"N° {L.folio}"]
    pitch = BOX_PT * 1.35
    box_h = len(box_lines) * pitch + 4 * mm

    def box(y: float) -> None:
        c.setLineWidth(0.6 * mm)
        inset = 0.3 * mm  # half the frame's width: its outer edge stays on the text margin
        c.rect(margin + inset, y - box_h, printable - 2 * inset, box_h)
        for i, t in enumerate(box_lines):
            c.setFont(BOLD, BOX_PT)
            c.drawCentredString(paper / 2, y - 2 * mm - BOX_PT - i * pitch, t)

    add(box_h + 1.5 * mm, box)
    centered(L.sii_unidad, BOLD, 8)
    add(1.5 * mm, lambda y: None)
    left(L.emisor_name, BOLD, 8.5)
    for line in L.emisor_lines:
        left(line, FONT, 7)
    rule()
    for label, value in L.receptor:
        left(f"{label}: {value}")
    left(f"Fecha: {L.fecha}")
    for label, value in L.extra:
        left(f"{label}: {value}")
    for r in L.references:
        left(f"Ref.: {r.tipo} N° {r.folio} {r.fecha} {r.razon}".strip())
    rule()
    for ln in L.lines:
        left(ln.nombre + exento_mark(ln), FONT, 7.5)
        qty = quantity_text(ln)
        pair(qty, ln.valor)
    rule()
    for label, value in L.totals:
        pair(label, f"$ {value}", BOLD if label.upper().endswith("TOTAL") else FONT, 8.5 if label == "TOTAL" else 7.5)
    for note in L.notes:
        left(note, FONT, 7)
    if L.acuse_recibo:
        rule()
        left("Acuse de Recibo", BOLD, 7.5)
        for label in ("Nombre:", "RUT:", "Fecha:", "Recinto:", "Firma:"):
            left(f"{label} ____________________", FONT, 7.5)
        left(L.acuse_text, FONT, 6)
    add(CLEAR, lambda y: None)
    add(timbre.height, lambda y: timbre.draw(c, timbre.left, y - timbre.height))
    add(CLEAR, lambda y: None)
    centered(L.legends[0], BOLD, 7)
    centered(L.legends[1], FONT, 6.5)
    centered(L.legends[2], FONT, 6.5)
    for line in L.footer:
        centered(line, FONT, 6.5)
    if L.copy_label:  # the destination legend, bottom right
        add(2 * mm, lambda y: None)
        right(L.copy_label, BOLD, 11)
    add(margin + 2 * mm, lambda y: None)
    H = height[0]
    c.setPageSize((paper, H))
    c.setFillColor(white)
    c.setFillColor(black)
    for op in ops:
        op(H)
    c.showPage()
