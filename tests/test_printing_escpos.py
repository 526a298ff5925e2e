"""ESC/POS tickets, parsed back by tests/escpos_decode.py and checked with zxing-cpp."""

from __future__ import annotations

import pytest
import zxingcpp

from escpos_decode import decode
from printing_fixtures import ONE_PER_TYPE, issue_examples
from sync.config import PrintStation
from sync.printing.escpos import render_ticket
from sync.printing.layout import build_layout
from sync.printing.profiles import load_profile
from sync.printing.service import source_of, ticket_bytes
from sync.printing.stations import Station


@pytest.fixture(scope="module")
def issued(engine):
    return issue_examples(engine, "printing-escpos")


def _layout(doc, cfg, **kw):
    return build_layout(source_of(doc), cfg.company, cfg.printing, **kw)


def _decoded(data: bytes, profile) -> object:
    return decode(data, {profile.code_page_number: profile.code_page})


@pytest.mark.parametrize("name", ONE_PER_TYPE)
def test_native_pdf417_payload_is_the_ted_with_sii_parameters(name, issued, sandbox_config):
    profile = load_profile("generic-80mm")
    d = _decoded(render_ticket(_layout(issued[name], sandbox_config), profile), profile)
    assert len(d.pdf417) == 1 and not d.rasters
    sym = d.pdf417[0]
    assert sym.data == issued[name].ted
    assert (sym.ecl, sym.row_height, sym.module, sym.truncated) == (5, 3, 2, 0)
    assert (17 * sym.columns + 69) * sym.module <= profile.width_dots


@pytest.mark.parametrize("profile_name", ["generic-80mm", "generic-58mm", "epson-tm-t88"])
@pytest.mark.parametrize("name", ["39_boleta.txt", "33_factura.txt", "52_guia_despacho.txt"])
def test_raster_timbre_rebuilt_from_gs_v_0_decodes_to_the_ted(profile_name, name, issued, sandbox_config):
    profile = load_profile(profile_name)
    d = _decoded(render_ticket(_layout(issued[name], sandbox_config), profile, native=False), profile)
    assert len(d.rasters) == 1 and not d.pdf417
    img = d.rasters[0]
    assert img.width <= profile.width_dots
    found = zxingcpp.read_barcodes(img.convert("L"), formats=zxingcpp.BarcodeFormat.PDF417)
    assert [b.bytes for b in found] == [issued[name].ted]


@pytest.mark.parametrize("profile_name", ["generic-80mm", "generic-58mm"])
def test_spanish_text_decodes_under_the_pinned_code_page(profile_name, issued, sandbox_config):
    profile = load_profile(profile_name)
    data = render_ticket(_layout(issued["52_guia_despacho.txt"], sandbox_config), profile)
    d = _decoded(data, profile)
    assert d.code_pages == [profile.code_page_number]
    flat = " ".join(d.text.split())
    for text in ("GUÍA DE DESPACHO ELECTRÓNICA", "N° ", "Constructora Peñalolén Ltda.", "Luis Aravena Núñez",
                 "Ferretería Los Aromos SpA", "Timbre Electrónico SII", "Verifique documento: www.sii.cl"):
        assert text in flat, text
    assert "Ñ".encode(profile.code_page) in data and "?" not in d.text.replace("¿", "")


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
    assert len(d.cuts) == 3 and len(d.pdf417) == 3  # two originals and the cedible copy
    assert d.drawer == [0]  # one kick, pin 2 (ESC p 0)
    assert d.text.count("CEDIBLE") == 1 and "Acuse de Recibo" in d.text
    boleta = _decoded(ticket_bytes(source_of(issued["39_boleta.txt"]), station, sandbox_config), profile)
    assert len(boleta.cuts) == 2 and "CEDIBLE" not in boleta.text  # boletas have no cedible copy
