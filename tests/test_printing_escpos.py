"""ESC/POS tickets, parsed back by tests/escpos_decode.py and checked with zxing-cpp."""

from __future__ import annotations

import pytest

from escpos_decode import decode
from printing_fixtures import ONE_PER_TYPE, decode_ticket, issue_examples, read_pdf417
from sync.config import PrintStation
from sync.printing.escpos import job_start, render_ticket, reprint_marker
from sync.printing.layout import build_layout
from sync.printing.profiles import load_profile
from sync.printing.rules import LayoutRefused
from sync.printing.service import (
    render_job,
    source_of,
    ticket_bytes,
    with_marker,
)
from sync.printing.stations import Station

BOLETAS = ["39_boleta.txt", "41_boleta_exenta.txt"]
OTHERS = [n for n in ONE_PER_TYPE if n not in BOLETAS]


@pytest.fixture(scope="module")
def issued(engine):
    return issue_examples(engine, "printing-escpos")


def _layout(doc, cfg, **kw):
    return build_layout(source_of(doc), cfg.company, cfg.printing, **kw)


def _decoded(data: bytes, profile) -> object:
    return decode(data, {profile.code_page_number: profile.code_page})


@pytest.mark.parametrize("name", BOLETAS)
def test_native_pdf417_payload_is_the_ted_with_sii_parameters(name, issued, sandbox_config):
    profile = load_profile("epson-tm-t88")  # a model known to draw GS ( k
    d = _decoded(render_ticket(_layout(issued[name], sandbox_config), profile), profile)
    assert len(d.pdf417) == 1 and not d.rasters
    sym = d.pdf417[0]
    assert sym.data == issued[name].ted
    assert (sym.ecl, sym.row_height, sym.module, sym.truncated) == (5, 3, 2, 0)
    assert (17 * sym.columns + 69) * sym.module <= profile.width_dots


@pytest.mark.parametrize("name", OTHERS)
def test_facturas_notas_guias_always_get_a_raster_timbre(name, issued, sandbox_config):
    """Their timbre must fit 4 x 9 cm: on a roll only rotated, which GS ( k cannot do."""
    profile = load_profile("epson-tm-t88")
    d = _decoded(render_ticket(_layout(issued[name], sandbox_config), profile), profile)
    assert not d.pdf417 and len(d.rasters) == 1


def test_generic_profiles_default_to_a_raster_timbre(issued, sandbox_config):
    for name in ("generic-80mm", "generic-58mm"):
        profile = load_profile(name)
        assert not profile.native_pdf417
        d = _decoded(render_ticket(_layout(issued["39_boleta.txt"], sandbox_config), profile), profile)
        assert not d.pdf417 and len(d.rasters) == 1


@pytest.mark.parametrize("profile_name", ["generic-80mm", "generic-58mm", "epson-tm-t88"])
@pytest.mark.parametrize("name", ONE_PER_TYPE)
def test_raster_timbre_rebuilt_from_gs_v_0_decodes_to_the_ted(profile_name, name, issued, sandbox_config):
    profile = load_profile(profile_name)
    layout = _layout(issued[name], sandbox_config)
    if profile.paper_mm < 75 and name in OTHERS:
        with pytest.raises(LayoutRefused) as e:
            render_ticket(layout, profile, native=False)
        assert e.value.code == "PRINT_PAPER_TOO_NARROW"
        return
    d = _decoded(render_ticket(layout, profile, native=False), profile)
    assert len(d.rasters) == 1 and not d.pdf417
    img = d.rasters[0]
    assert img.width <= profile.width_dots
    found = read_pdf417(img)
    assert [b.bytes for b in found] == [issued[name].ted]


@pytest.mark.parametrize("profile_name, name", [("generic-80mm", "52_guia_despacho.txt"),
                                                ("epson-tm-t88", "52_guia_despacho.txt"),
                                                ("generic-58mm", "39_boleta.txt")])
def test_spanish_text_decodes_under_the_pinned_code_page(profile_name, name, issued, sandbox_config):
    profile = load_profile(profile_name)
    data = render_ticket(_layout(issued[name], sandbox_config), profile)
    d = _decoded(data, profile)
    assert d.code_pages == [profile.code_page_number]
    flat = " ".join(d.text.split())
    expected = ["N° ", "Ferretería Los Aromos SpA", "Timbre Electrónico SII", "Verifique documento: www.sii.cl"]
    expected += (["GUÍA DE DESPACHO ELECTRÓNICA", "Constructora Peñalolén Ltda.", "Luis Aravena Núñez"]
                 if name.startswith("52") else ["BOLETA ELECTRÓNICA", "Ñuñoa"])
    for text in expected:
        assert text in flat, text
    assert "Ñ".encode(profile.code_page) in data and "?" not in d.text.replace("¿", "")


def test_every_copy_starts_by_cancelling_kanji_mode_and_pinning_the_code_page(issued, sandbox_config):
    """ESC @, FS . (cancel Kanji: 58 mm and Xprinter-class printers start in it), ESC t n."""
    profile = load_profile("generic-80mm")
    station = Station(PrintStation("caja", {"type": "file", "path": "/dev/null"}, copies=2, cedible=True), profile)
    data = ticket_bytes(source_of(issued["33_factura.txt"]), station, sandbox_config)
    d = _decoded(data, profile)
    pinned = job_start(profile)
    assert pinned == b"\x1b@\x1c.\x1bt\x13\x1b2"
    assert d.starts == [pinned[2:]] * 3
    assert data.count(pinned) == 3 and data.startswith(pinned)


def test_58mm_profile_prints_the_timbre_rotated_within_384_dots(issued, sandbox_config):
    profile = load_profile("generic-58mm")
    d = _decoded(render_ticket(_layout(issued["39_boleta.txt"], sandbox_config), profile), profile)
    img = d.rasters[0]
    assert img.width == 384 and img.height > img.width  # rows run across the paper
    assert not d.pdf417  # this profile has no GS ( k


def test_station_copies_cedible_and_drawer(issued, sandbox_config):
    profile = load_profile("generic-80mm")
    station = Station(PrintStation("caja", {"type": "file", "path": "/dev/null"}, copies=2, cash_drawer=True,
                                   cedible=True), profile)
    d = _decoded(ticket_bytes(source_of(issued["33_factura.txt"]), station, sandbox_config), profile)
    assert len(d.cuts) == 3 and len(d.rasters) == 3  # two originals and the cedible copy
    assert d.drawer == [0]  # one kick, pin 2 (ESC p 0)
    assert d.text.count("CEDIBLE") == 1 and "Acuse de Recibo" in d.text
    boleta = _decoded(ticket_bytes(source_of(issued["39_boleta.txt"]), station, sandbox_config), profile)
    assert len(boleta.cuts) == 2 and "CEDIBLE" not in boleta.text  # boletas have no cedible copy


def test_reprint_mark_heads_every_copy_and_the_timbre_still_reads(issued, sandbox_config):
    profile = load_profile("generic-80mm")
    station = Station(PrintStation("caja", {"type": "file", "path": "/dev/null"}, copies=2), profile)
    job = render_job(source_of(issued["39_boleta.txt"]), station, sandbox_config)
    marked = with_marker(job.data, job.offsets, reprint_marker(profile, "Un envío anterior pudo quedar incompleto"))
    d = decode_ticket(marked, profile)
    assert len(d.copies) == 2
    for lines in d.lines:
        first = [text.strip() for _, _, text, _ in lines[:2]]
        assert first == ["*** REIMPRESIÓN ***", "Un envío anterior pudo quedar incompleto"]
    found = [b.bytes for img in d.rasters for b in read_pdf417(img)]
    assert found == [issued["39_boleta.txt"].ted] * 2


def test_a_daemon_that_prints_no_ticket_never_loads_pil_or_pdf417gen() -> None:
    """2.6 MB of the daemon's memory budget: they load with a printer station's warm-up, or
    when a symbol is first drawn, not with the printing stage's modules."""
    import subprocess
    import sys

    code = ("import sys, sync.app, sync.daemon, sync.printing.service, sync.engine_process; "
            "print(sorted(m for m in ('PIL', 'pdf417gen') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
