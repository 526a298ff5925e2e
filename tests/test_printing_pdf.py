"""PDF printed representation: every document type, checked with poppler and zxing-cpp."""

from __future__ import annotations

import pytest
from PIL import Image

from escpos_decode import decode  # noqa: F401  (keeps the helper importable from here too)
from printing_fixtures import ONE_PER_TYPE, issue_examples, pdf_text, rasterise, read_pdf417
from sync.printing import pdf417
from sync.printing.layout import build_layout, cedible_label, source_from_dte_xml
from sync.printing.pdf import SHEET_X_MM, roll_timbre_image, sheet_timbre
from sync.printing.rules import LayoutRefused
from sync.printing.service import pdf_bytes, source_of
from sync.sii import TipoDte


@pytest.fixture(scope="module")
def issued(engine):
    return issue_examples(engine, "printing-pdf")


def _decode_all(img: Image.Image) -> list[bytes]:
    return [b.bytes for b in read_pdf417(img)]


@pytest.mark.parametrize("name", ONE_PER_TYPE)
def test_pdf_timbre_decodes_to_the_ted_and_text_is_spanish(name, issued, sandbox_config, tmp_path):
    doc = issued[name]
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(pdf_bytes(source_of(doc), sandbox_config))
    assert _decode_all(rasterise(pdf, tmp_path / "page")) == [doc.ted]
    text = pdf_text(pdf)
    name = TipoDte(doc.tipo_dte).printed_name
    assert name in text.replace("\n", " ") or name.split()[0] in text
    assert f"N° {doc.folio}" in text
    assert "Timbre Electrónico SII" in text
    assert "Res. 0 de 2014" in text
    assert "Ferretería Los Aromos SpA" in text
    assert "Verifique documento:" in text
    assert "S.I.I. - SANTIAGO CENTRO" in text


def test_pdf_streams_are_binary_flate_without_an_ascii85_layer(issued, sandbox_config):
    """ASCII85 (reportlab's default) is for 7-bit transports; it cost 13 % of the rendering."""
    pdf = pdf_bytes(source_of(issued["33_factura.txt"]), sandbox_config)
    assert pdf.startswith(b"%PDF-") and b"/FlateDecode" in pdf
    assert b"ASCII85Decode" not in pdf


@pytest.mark.parametrize("fmt", ["80mm", "58mm", "letter", "a4"])
def test_boleta_decodes_on_every_paper(fmt, issued, sandbox_config, tmp_path):
    from sync.printing.pdf import render_pdf

    doc = issued["39_boleta.txt"]
    layout = build_layout(source_of(doc), sandbox_config.company, sandbox_config.printing)
    pdf = tmp_path / "b.pdf"
    pdf.write_bytes(render_pdf([layout], fmt=fmt))
    assert _decode_all(rasterise(pdf, tmp_path / "p", dpi=300)) == [doc.ted]
    assert "Ñ" in pdf_text(pdf) or "ñ" in pdf_text(pdf)  # Ñuñoa in the casa matriz address


def test_cedible_copy_is_the_second_page_where_it_applies(issued, sandbox_config, tmp_path):
    for name, label in (("33_factura.txt", "CEDIBLE"), ("52_guia_despacho.txt", "CEDIBLE CON SU FACTURA"),
                        ("61_nota_credito.txt", None), ("39_boleta.txt", None)):
        doc = issued[name]
        pdf = tmp_path / f"{name}.pdf"
        pdf.write_bytes(pdf_bytes(source_of(doc), sandbox_config))
        pages = pdf_text(pdf).split("\f")
        if label is None:
            assert "CEDIBLE" not in pdf_text(pdf)
        else:
            assert "CEDIBLE" not in pages[0] and label in pages[1] and "Acuse de Recibo" in pages[1]
            assert _decode_all(rasterise(pdf, tmp_path / f"{name}-p2", page=2)) == [doc.ted]


def test_sheet_timbre_uses_10_mil_modules_within_4_by_9_cm(issued):
    for doc in issued.values():
        t = sheet_timbre(doc.ted)
        w_mm, h_mm = t.width / 72 * 25.4, t.height / 72 * 25.4
        assert 50 <= w_mm <= 90 and 20 <= h_mm <= 40, (w_mm, h_mm)  # 2 x 5 cm .. 4 x 9 cm
        assert t.width / t.plan.symbol.width_modules == pytest.approx(SHEET_X_MM[0] * 72 / 25.4)


def test_a_timbre_too_big_for_10_mil_is_laid_out_with_smaller_modules(tmp_path):
    """A TED near PDF417's limit does not fit 4 x 9 cm at 10 mil: 8.3 mil (5 dots at 600 dpi)
    still reads and stays above the SII's 6.7 mil."""
    ted = (bytes(range(32, 127)) * 11)[:1000]
    t = sheet_timbre(ted)
    x_mm = t.width / t.plan.symbol.width_modules / 72 * 25.4
    assert x_mm == pytest.approx(SHEET_X_MM[1]) and x_mm >= pdf417.MIN_X_MM
    assert t.height / 72 * 25.4 <= 40 and t.width / 72 * 25.4 <= 90
    img = pdf417.render(t.plan.symbol, 3, quiet_px=20).convert("L")
    assert _decode_all(img) == [ted]


def test_a_timbre_no_layout_fits_refuses_the_pdf_with_its_reason():
    with pytest.raises(LayoutRefused) as e:
        sheet_timbre(b"x" * 1200)  # more than 928 code words at level 5
    assert e.value.code == "TIMBRE_TOO_LARGE"
    with pytest.raises(LayoutRefused) as e:
        roll_timbre_image(b"x" * 1010, 33, "80mm")  # over the 4 x 9 cm a factura may take on a roll
    assert e.value.code == "TIMBRE_TOO_LARGE"


def test_timbre_uses_byte_compaction_and_level_5(issued):
    ted = issued["33_factura.txt"].ted
    sym = pdf417.encode(ted, 12)
    words = sym.high_level
    # Byte compaction per ISO 15438, derived here independently: latch 901 (924 when the length
    # is a multiple of 6), 6 bytes -> 5 base-900 words, the remainder one word per byte.
    expected = [924 if len(ted) % 6 == 0 else 901]
    for i in range(0, len(ted) - len(ted) % 6, 6):
        n = int.from_bytes(ted[i : i + 6], "big")
        expected += [(n // 900**k) % 900 for k in range(4, -1, -1)]
    expected += list(ted[len(ted) - len(ted) % 6 :])
    assert words[1 : 1 + len(expected)] == expected
    assert set(words[1 + len(expected) : words[0]]) <= {900}  # only padding after the data
    assert len(words) - words[0] == 2 ** (5 + 1)  # 64 error-correction words = level 5
    img = pdf417.render(sym, 2, quiet_px=20).convert("L")
    assert _decode_all(img) == [ted]


def test_error_correction_matches_pdf417gens_reference_implementation():
    import random

    from pdf417gen.error_correction import compute_error_correction_code_words

    rng = random.Random(417)
    for n in (1, 2, 3, 64, 500, 863):
        for _ in range(3):
            words = [rng.randrange(929) for _ in range(n)]
            assert pdf417.error_correction(words) == compute_error_correction_code_words(words, 5)


def test_the_symbol_image_matches_pdf417gens_renderer_module_for_module(issued):
    """Our renderer builds each row as one integer; pdf417gen's sets one pixel per module."""
    from pdf417gen.rendering import render_image
    from PIL import ImageChops

    assert issued
    for doc in issued.values():
        for columns in (9, 14, 20):
            sym = pdf417.encode(doc.ted, columns)
            ours = pdf417.render(sym, 2).convert("L")
            theirs = render_image(sym.rows, scale=2, ratio=pdf417.ROW_RATIO, padding=0).convert("L")
            assert ours.size == theirs.size
            assert ImageChops.difference(ours, theirs).getbbox() is None


def test_layout_rebuilt_from_the_outbox_xml_matches_the_issued_one(issued, sandbox_config):
    for doc in issued.values():
        src = source_from_dte_xml(doc.dte_xml)
        assert src.ted == doc.ted
        a = build_layout(src, sandbox_config.company, sandbox_config.printing)
        b = build_layout(source_of(doc), sandbox_config.company, sandbox_config.printing)
        assert a == b


def test_cedible_rules(issued):
    labels = {n: cedible_label(d.documento) for n, d in issued.items()}
    assert labels["33_factura.txt"] == labels["34_factura_exenta.txt"] == labels["46_factura_compra.txt"] == "CEDIBLE"
    assert labels["52_guia_despacho.txt"] == "CEDIBLE CON SU FACTURA"
    assert labels["56_nota_debito.txt"] is labels["61_nota_credito.txt"] is labels["39_boleta.txt"] is None


def test_a_pdf_that_cannot_be_written_says_why_in_the_status_file(issued, sandbox_config, tmp_path):
    from dataclasses import replace

    from sync.alerts import Alerts
    from sync.app import folders_of
    from sync.config import PrintingConfig
    from sync.filing import Filing
    from sync.journal import ClaimIntent
    from sync.printing.layout import PrintSource
    from sync.printing.service import PrintService

    folders = replace(sandbox_config.folders, inbox=tmp_path / "inbox", outbox=tmp_path / "outbox",
                      archive=tmp_path / "archive", rejected=tmp_path / "rejected", state=tmp_path / "state")
    cfg = replace(sandbox_config, folders=folders, printing=PrintingConfig(pdf=True))
    filing = Filing(folders_of(cfg))
    filing.open()
    [doc_id] = filing.journal.begin_claims([ClaimIntent("", "F.txt", "F", ".txt", None, 1, 0o100644)])
    [doc] = filing.journal.mark_claimed([(doc_id, "ab")])
    refreshed: list[int] = []
    filing.refresh = refreshed.append  # type: ignore[method-assign]
    svc = PrintService(cfg)
    svc.bind(filing, Alerts())
    factura = issued["33_factura.txt"]
    pdf = filing.result_path(doc, ".pdf")

    svc.pdf_writer.write(PrintSource(factura.documento, b"x" * 1200), doc)  # more than PDF417 holds at level 5
    entry = svc.status_entry(doc)["pdf"]
    assert entry["state"] == "failed" and entry["code"] == "TIMBRE_TOO_LARGE" and "1200" in entry["error"]
    assert not pdf.exists() and refreshed == [doc.id]
    pdf.mkdir(parents=True)  # something in the way of NAME.pdf
    svc.pdf_writer.write(source_of(factura), doc)
    assert svc.status_entry(doc)["pdf"]["code"] == "PDF_NOT_WRITTEN"
    pdf.rmdir()
    svc.pdf_writer.write(source_of(factura), doc)  # written at last: the entry goes away
    assert "pdf" not in svc.status_entry(doc) and pdf.read_bytes().startswith(b"%PDF")
    assert refreshed == [doc.id] * 3
    svc.stop()
    filing.close()
