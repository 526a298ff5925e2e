"""The SII's rules on every format, measured on paper in mm: PDFs rendered by pdftoppm, tickets
laid out from their ESC/POS bytes by tests/escpos_decode.py; zxing-cpp reads every timbre.

Rules (Instructivo Técnico A.2.5; Manual de Muestras Impresas v3.0; Res. Ex. 74/2020):
quiet zone >= 0.25 in (6.35 mm) on all four sides; facturas, notas, guías: timbre 2 x 5 cm to
4 x 9 cm, >= 2 cm from the left edge, rolls >= 7.5 cm; boletas: timbre >= 2 x 4.5 cm, paper
>= 5.7 cm, > 200 dpi; document box letters >= 10 pt, bold; legends >= 6 pt; no letters within
0.5 cm of the edge; amounts as amounts.
"""

from __future__ import annotations

import pytest

from printing_fixtures import (
    ONE_PER_TYPE,
    box_clearance,
    decode_ticket,
    find_timbres,
    ink_margins,
    issue_examples,
    pdf_strings,
    pdf_text,
    rasterise,
)
from sync.printing.escpos import render_ticket
from sync.printing.layout import build_layout, money
from sync.printing.pdf import render_pdf
from sync.printing.profiles import load_profile
from sync.printing.rules import LayoutRefused
from sync.printing.service import source_of
from sync.totals import global_dr_amounts

QUIET = 6.35
BOLETAS = {"39_boleta.txt", "41_boleta_exenta.txt"}
DPI = 300


@pytest.fixture(scope="module")
def issued(engine):
    return issue_examples(engine, "printing-rules")


def _layout(doc, cfg, **kw):
    return build_layout(source_of(doc), cfg.company, cfg.printing, **kw)


def _check_size(t, boleta: bool, where: str) -> None:
    short, long_ = t.short_long
    if boleta:
        assert short >= 20 and long_ >= 45, f"{where}: {short:.1f} x {long_:.1f} mm under 2 x 4.5 cm"
    else:
        assert 20 <= short <= 40 and 50 <= long_ <= 90, f"{where}: {short:.1f} x {long_:.1f} mm outside 2x5..4x9 cm"
        assert t.left >= 20, f"{where}: timbre {t.left:.2f} mm from the left edge (>= 20)"
    for side, mm in t.quiet.items():
        assert mm >= QUIET, f"{where}: quiet zone {side} {mm:.2f} mm < {QUIET}"


@pytest.mark.parametrize("fmt", ["letter", "a4", "80mm", "58mm"])
@pytest.mark.parametrize("name", ONE_PER_TYPE)
def test_pdf_timbre_has_its_quiet_zone_and_size_on_every_paper(name, fmt, issued, sandbox_config, tmp_path):
    doc, boleta = issued[name], name in BOLETAS
    layout = _layout(doc, sandbox_config, cedible=True)
    if fmt == "58mm" and not boleta:
        with pytest.raises(LayoutRefused) as e:
            render_pdf([layout], fmt=fmt)
        assert e.value.code == "PRINT_PAPER_TOO_NARROW" and "7,5 cm" in e.value.detail
        return
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(render_pdf([layout], fmt=fmt))
    page = rasterise(pdf, tmp_path / "p", dpi=DPI)
    [t] = find_timbres(page, DPI)
    assert t.payload == doc.ted
    _check_size(t, boleta and fmt not in ("letter", "a4"), f"{name} {fmt}")
    if fmt in ("letter", "a4"):  # sheets: the Manual's box for every document, boletas too
        assert t.short_long[0] <= 40 and t.short_long[1] <= 90 and t.left >= 20
    left, right = ink_margins(page, DPI)
    assert left >= 5 and right >= 5, f"ink {left:.2f} / {right:.2f} mm from the edges"


@pytest.mark.parametrize("profile_name", ["generic-80mm", "generic-58mm", "epson-tm-t88"])
@pytest.mark.parametrize("name", ONE_PER_TYPE)
def test_ticket_timbre_has_its_quiet_zone_and_size(name, profile_name, issued, sandbox_config):
    doc, boleta = issued[name], name in BOLETAS
    profile = load_profile(profile_name)
    layout = _layout(doc, sandbox_config, cedible=True)
    if profile.paper_mm < 75 and not boleta:
        with pytest.raises(LayoutRefused):
            render_ticket(layout, profile)
        return
    d = decode_ticket(render_ticket(layout, profile), profile)
    [paper] = d.copies
    mm = profile.dot_mm
    if d.pdf417:  # the printer draws it: measure the box its size (ISO 15438) takes on the paper
        [(x, y, w, h)] = d.symbols[0]
        assert d.pdf417[0].data == doc.ted
        quiet = box_clearance(paper, (x, y, w, h), profile.dpi)
        assert min(quiet.values()) >= QUIET, quiet
        assert min(w, h) * mm >= 20 and max(w, h) * mm >= 45
    else:
        [t] = find_timbres(paper, profile.dpi)
        assert t.payload == doc.ted
        _check_size(t, boleta, f"{name} {profile_name}")
    left, right = ink_margins(paper, profile.dpi)
    assert left >= 5 and right >= 5, f"ink {left:.2f} / {right:.2f} mm from the edges"


@pytest.mark.parametrize("profile_name", ["generic-80mm", "generic-58mm"])
def test_ticket_document_box_is_bold_10_pt_and_within_the_manuals_sizes(profile_name, issued, sandbox_config):
    profile = load_profile(profile_name)
    name = "33_factura.txt" if profile.paper_mm >= 75 else "39_boleta.txt"
    d = decode_ticket(render_ticket(_layout(issued[name], sandbox_config), profile), profile)
    lines = d.lines[0]
    frame = [i for i, (_, _, text, _) in enumerate(lines) if text.strip().startswith(("╔", "╚"))]
    assert len(frame) == 2
    top, bottom = lines[frame[0]], lines[frame[1]]
    inside = lines[frame[0] + 1 : frame[1]]
    texts = " ".join(text.strip("║ ") for _, _, text, _ in inside)
    assert "R.U.T.: 76.543.210-3" in texts and f"N° {issued[name].folio}" in texts
    for _, height, _, bold in inside:
        assert bold and height * profile.dot_mm / (25.4 / 72) >= 10  # points
    width_mm = len(top[2].strip()) * profile.char_dots * profile.dot_mm
    height_mm = (bottom[0] + bottom[1] - top[0]) * profile.dot_mm
    if profile.paper_mm >= 75:  # Circular 32/2005, for facturas & co.: 1.5 x 5.5 cm to 4 x 8 cm
        assert 55 <= width_mm <= 80 and 15 <= height_mm <= 40, (width_mm, height_mm)
    legends = [line for line in lines if "Timbre Electrónico SII" in line[2]]
    assert legends and legends[0][1] * profile.dot_mm / (25.4 / 72) >= 6


@pytest.mark.parametrize("fmt", ["letter", "80mm"])
def test_pdf_document_box_is_bold_10_pt_and_legends_6_pt(fmt, issued, sandbox_config):
    for name in ("33_factura.txt", "39_boleta.txt"):
        doc = issued[name]
        strings = pdf_strings(render_pdf([_layout(doc, sandbox_config)], fmt=fmt))
        box = [s for s in strings if s[2].startswith("R.U.T.:") or s[2] == f"N° {doc.folio}"]
        assert len(box) == 2 and all(font == "Helvetica-Bold" and size >= 10 for font, size, _ in box), box
        legend = [s for s in strings if "Timbre Electrónico SII" in s[2]]
        assert legend and all(size >= 6 for _, size, _ in legend)


def test_a_percent_discount_prints_its_peso_amount(issued, sandbox_config, tmp_path):
    doc = issued["33_factura.txt"]
    [g] = doc.documento.dsc_rcg_global
    assert g.tpo_valor == "%"
    [amount] = global_dr_amounts(doc.documento)
    assert amount and amount > 100  # pesos, not the rate
    layout = _layout(doc, sandbox_config)
    label, value = layout.totals[0]
    assert (label, value) == ("Descuento cliente frecuente (2%)", money(amount))
    pdf = tmp_path / "f.pdf"
    pdf.write_bytes(render_pdf([layout], fmt="letter"))
    text = pdf_text(pdf)
    assert f"$ {money(amount)}" in text and "$ 2%" not in text
    profile = load_profile("generic-80mm")
    ticket = decode_ticket(render_ticket(layout, profile), profile).text
    assert f"$ {money(amount)}" in ticket and "$ 2%" not in ticket


def test_every_total_is_an_amount(issued, sandbox_config):
    for doc in issued.values():
        for label, value in _layout(doc, sandbox_config).totals:
            assert value.replace(".", "").lstrip("-").isdigit(), (label, value)
