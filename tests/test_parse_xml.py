"""XML input: the SII DTE structure, unsigned, as an ERP that already speaks XML writes it."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from conftest import SAMPLES
from sync.errors import DteSyncErrors
from sync.parse import parse_document, parse_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "sync" / "data" / "examples"
REAL = SAMPLES / "cl-sii"
NS = "http://www.sii.cl/SiiDte"

BODY = """<Documento>
  <Encabezado>
    <IdDoc><TipoDTE>33</TipoDTE><FchEmis>2025-03-14</FchEmis></IdDoc>
    <Receptor><RUTRecep>77123456-9</RUTRecep><RznSocRecep>Constructora Peñalolén Ltda.</RznSocRecep></Receptor>
  </Encabezado>
  <Detalle><NmbItem>Tornillo</NmbItem><QtyItem>500</QtyItem><PrcItem>35</PrcItem></Detalle>
  <Detalle><NmbItem>Cemento</NmbItem><QtyItem>40</QtyItem><PrcItem>4290</PrcItem></Detalle>
</Documento>"""


def xml(body: str = BODY, *, root: str = '<DTE xmlns="http://www.sii.cl/SiiDte" version="1.0">',
        encoding: str = "UTF-8", declare: bool = True) -> bytes:
    end = "</DTE>" if root else ""
    decl = f'<?xml version="1.0" encoding="{encoding}"?>\n' if declare else ""
    return (decl + root + body + end).encode("latin-1" if encoding.upper() == "ISO-8859-1" else "utf-8")


def errors(data: bytes, source: str = "doc.xml") -> list:
    with pytest.raises(DteSyncErrors) as info:
        parse_document(data, source)
    return info.value.errors


def only(data: bytes, source: str = "doc.xml"):
    found = errors(data, source)
    assert len(found) == 1, [str(e) for e in found]
    return found[0]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.xml")), ids=lambda p: p.name)
def test_every_xml_example_parses(path):
    assert parse_file(path).tipo_dte == int(path.name[:2])


def test_roots_with_and_without_namespace_version_or_dte_parse_equal():
    reference = parse_document(xml(), "a.xml")
    assert parse_document(xml(root="<DTE>"), "a.xml") == reference
    assert parse_document(xml(root='<DTE version="1.0">'), "a.xml") == reference
    assert parse_document(xml(root=""), "a.xml") == reference
    assert parse_document(xml(BODY.replace("<Documento>", f'<Documento xmlns="{NS}" ID="F1">'), root=""), "a.xml") == reference


def test_iso_8859_1_and_utf8_parse_equal():
    assert parse_document(xml(encoding="ISO-8859-1"), "a.xml") == parse_document(xml(), "a.xml")
    assert parse_document(xml(declare=False), "a.xml") == parse_document(xml(), "a.xml")


def test_latin1_example_is_latin1_on_disk():
    raw = (EXAMPLES / "33_factura.xml").read_bytes()
    assert b'encoding="ISO-8859-1"' in raw and "Ñuñoa".encode("latin-1") in raw


def test_utf8_declared_with_latin1_bytes_is_an_encoding_error():
    e = only(xml(declare=False).decode().encode("latin-1"))
    assert (e.code, e.line) == ("INPUT_ENCODING", 4)


def test_latin1_declared_with_utf8_content_is_an_encoding_error():
    data = xml().replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"')
    assert only(data).code == "INPUT_ENCODING"


def test_unsupported_declared_encoding():
    e = only(xml().replace(b"UTF-8", b"UTF-16"))
    assert (e.code, e.found) == ("INPUT_ENCODING", "UTF-16")


def test_malformed_xml_names_the_line():
    e = only(xml().replace(b"</QtyItem><PrcItem>35", b"</QtyItm><PrcItem>35"))
    assert (e.code, e.line) == ("XML_MALFORMED", 7)


def test_undefined_entity_is_malformed():
    assert only(xml(BODY.replace("Tornillo", "Tornillo &copy;"))).code == "XML_MALFORMED"


def test_value_error_names_path_and_line():
    e = only(xml(BODY.replace("<PrcItem>4290</PrcItem>", "<PrcItem>4.290,5</PrcItem>")))
    assert (e.code, e.path, e.line, e.field) == ("FIELD_INVALID", "Documento/Detalle[2]/PrcItem", 8, "PrcItem")


def test_unknown_element_and_foreign_namespace():
    body = BODY.replace("<NmbItem>Tornillo", '<Precio>1</Precio><x:y xmlns:x="urn:x">1</x:y><NmbItem>Tornillo')
    found = {(e.code, e.path) for e in errors(xml(body))}
    assert ("FIELD_UNKNOWN", "Documento/Detalle[1]/Precio") in found
    assert ("FIELD_UNKNOWN", "Documento/Detalle[1]/{urn:x}y") in found


def test_unknown_attribute_is_reported():
    e = only(xml(BODY.replace("<QtyItem>500", '<QtyItem unidad="kg">500')))
    assert (e.code, e.field, e.path) == ("FIELD_UNKNOWN", "@unidad", "Documento/Detalle[1]/QtyItem/@unidad")


def test_text_mixed_into_a_group_is_invalid():
    e = only(xml(BODY.replace("<Detalle><NmbItem>Tornillo", "<Detalle>hola<NmbItem>Tornillo")))
    assert (e.code, e.field) == ("FIELD_INVALID", "Detalle")


def test_ted_inside_documento_is_refused():
    e = only(xml(BODY.replace("</Documento>", "<TED version='1.0'><DD/></TED></Documento>")))
    assert (e.code, e.field) == ("INPUT_SIGNED", "TED")


def test_signature_next_to_documento_is_refused():
    sig = '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo/></Signature>'
    e = only(xml(BODY + sig))
    assert (e.code, e.field) == ("INPUT_SIGNED", "Signature")


def test_envelope_root_is_not_one_document():
    e = only(b'<EnvioDTE xmlns="http://www.sii.cl/SiiDte"><SetDTE/></EnvioDTE>')
    assert (e.code, e.found) == ("INPUT_UNKNOWN_FORMAT", "<EnvioDTE>")


def test_two_documentos_in_one_dte_are_refused():
    assert errors(xml(BODY + BODY))[0].code == "FIELD_REPEATED"


def test_empty_element_means_absent():
    doc = parse_document(xml(BODY.replace("<QtyItem>500</QtyItem>", "<QtyItem/><DscItem>  </DscItem>")), "a.xml")
    assert doc.detalle[0].qty_item is None and doc.detalle[0].dsc_item is None


def test_cdata_and_surrounding_whitespace():
    doc = parse_document(xml(BODY.replace("<NmbItem>Tornillo", "<NmbItem>\n   <![CDATA[Tornillo <6mm>]]>")), "a.xml")
    assert doc.detalle[0].nmb_item == "Tornillo <6mm>"


def _unsigned(path: Path) -> bytes:
    """A real signed DTE with the parts the engine adds removed (TED, TmstFirma, Signature),
    and the SII portal's DocPersonalizado, which is no part of an ERP's input."""
    tree = etree.parse(str(path))
    for el in list(tree.iter("{*}TED", "{*}TmstFirma", "{*}Signature", "{*}DocPersonalizado")):
        el.getparent().remove(el)
    return etree.tostring(tree, xml_declaration=True, encoding="ISO-8859-1")


@pytest.mark.parametrize("name", ["DTE--76399752-9--33--25568.xml", "DTE--60910000-1--33--2336600.xml",
                                  "DTE--96670340-7--61--110616.xml"])
def test_real_dte_without_its_timbre_and_signature_parses(name):
    path = REAL / name
    data = _unsigned(path)
    doc = parse_document(data, name)
    # Checked against the file read independently with XPath, not through our mapping.
    tree = etree.fromstring(data)
    text = lambda tag: tree.xpath(f"string(//*[local-name()='{tag}'])")  # noqa: E731
    assert doc.folio == int(text("Folio"))
    assert doc.encabezado.totales.mnt_total == int(text("MntTotal"))
    assert str(doc.encabezado.emisor.rut_emisor) == text("RUTEmisor")
    assert len(doc.detalle) == len(tree.xpath("//*[local-name()='Detalle']"))
    assert doc.detalle[0].nmb_item == re.sub(r"^\s+|\s+$", "", text("NmbItem"))


def test_real_signed_dte_is_refused_as_already_signed():
    path = REAL / "DTE--76399752-9--33--25568.xml"
    assert {e.code for e in errors(path.read_bytes())} == {"INPUT_SIGNED"}


def test_totals_given_in_the_input_are_kept_for_the_engine_to_check():
    body = BODY.replace("</Encabezado>", "<Totales><MntNeto>189100</MntNeto><TasaIVA>19</TasaIVA></Totales></Encabezado>")
    totales = parse_document(xml(body), "a.xml").encabezado.totales
    assert (totales.mnt_neto, totales.tasa_iva) == (189100, Decimal("19"))
