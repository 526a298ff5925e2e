"""JSON input: same element names as the SII XML, order-free, arrays for repetitions."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import SAMPLES
from sync.errors import DteSyncErrors
from sync.parse import parse_document, parse_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "sync" / "data" / "examples"
LIBREDTE = SAMPLES / "libredte-inputs" / "033_001_simple.json"

CONTENT = {
    "Encabezado": {
        "IdDoc": {"TipoDTE": 33, "FchEmis": "2025-03-14"},
        "Receptor": {"RUTRecep": "77123456-9", "RznSocRecep": "Constructora Peñalolén Ltda."},
    },
    "Detalle": [
        {"NmbItem": "Tornillo", "QtyItem": 500, "PrcItem": 35},
        {"NmbItem": "Cemento Polpaico 25 kg", "QtyItem": 40, "PrcItem": 4290},
    ],
}


def dump(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def errors(data: bytes, source: str = "doc.json") -> list:
    with pytest.raises(DteSyncErrors) as info:
        parse_document(data, source)
    return info.value.errors


def only(data: bytes, source: str = "doc.json"):
    found = errors(data, source)
    assert len(found) == 1, [str(e) for e in found]
    return found[0]


def with_detail(**fields) -> dict:
    content = json.loads(json.dumps(CONTENT))
    content["Detalle"][1].update(fields)
    return content


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_every_json_example_parses(path):
    assert parse_file(path).tipo_dte == int(path.name[:2])


def test_libredte_style_input_parses():
    doc = parse_file(LIBREDTE)
    assert doc.folio == 1 and doc.encabezado.emisor.acteco == [726000]
    assert doc.detalle[0].qty_item == 450


def test_the_three_root_forms_parse_equal():
    plain = parse_document(dump(CONTENT), "a.json")
    assert parse_document(dump({"Documento": CONTENT}), "a.json") == plain
    assert parse_document(dump({"DTE": {"version": "1.0", "Documento": CONTENT}}), "a.json") == plain


def test_single_object_where_an_array_is_expected_is_an_array_of_one():
    one = dict(CONTENT, Detalle=CONTENT["Detalle"][0])
    assert [d.nmb_item for d in parse_document(dump(one), "a.json").detalle] == ["Tornillo"]


def test_numbers_and_strings_give_the_same_values():
    as_strings = with_detail(QtyItem="40", PrcItem="4290")
    assert parse_document(dump(as_strings), "a.json") == parse_document(dump(CONTENT), "a.json")


def test_decimal_numbers_keep_their_exact_text():
    doc = parse_document(b'{"Encabezado":{"IdDoc":{"TipoDTE":39}},"Detalle":{"NmbItem":"Pan","QtyItem":0.1}}', "a.json")
    assert doc.detalle[0].qty_item == Decimal("0.1")


def test_null_means_absent():
    doc = parse_document(dump(with_detail(DscItem=None, CdgItem=None)), "a.json")
    assert doc.detalle[1].dsc_item is None and doc.detalle[1].cdg_item == []


def test_bom_is_accepted():
    assert parse_document(b"\xef\xbb\xbf" + dump(CONTENT), "a.json") == parse_document(dump(CONTENT), "a.json")


def test_invalid_utf8_is_an_encoding_error_with_its_line():
    data = json.dumps(CONTENT, ensure_ascii=False, indent=1).encode("latin-1")
    e = only(data)
    assert e.code == "INPUT_ENCODING" and e.line == data[: data.index(b"\xf1")].count(b"\n") + 1


def test_error_paths_use_json_notation():
    e = only(dump(with_detail(PrcItem="4.290,00")))
    assert (e.code, e.path, e.field) == ("FIELD_INVALID", "Documento.Detalle[1].PrcItem", "PrcItem")
    assert e.line is None


def test_malformed_json_names_the_line():
    e = only(b'{\n "Encabezado": {\n  "IdDoc": {"TipoDTE": 33,}\n }\n}')
    assert (e.code, e.line) == ("JSON_MALFORMED", 3)


def test_extension_hint_reports_non_json_content_as_malformed_json():
    assert only(b"hola", "F1.json").code == "JSON_MALFORMED"


def test_array_root_is_refused():
    assert only(b"[1, 2]", "F1.json").code == "INPUT_UNKNOWN_FORMAT"


def test_duplicate_key_is_reported_not_collapsed():
    data = b'{"Encabezado":{"IdDoc":{"TipoDTE":33,"TipoDTE":34}},"Detalle":{"NmbItem":"x"}}'
    e = errors(data)[0]
    assert (e.code, e.field, e.path) == ("FIELD_REPEATED", "TipoDTE", "Documento.Encabezado.IdDoc.TipoDTE")


def test_boolean_value_is_invalid():
    e = only(dump(with_detail(QtyItem=True)))
    assert (e.code, e.found) == ("FIELD_INVALID", "true")


def test_nan_is_not_a_number():
    assert only(b'{"Encabezado":{"IdDoc":{"TipoDTE":33}},"Detalle":{"NmbItem":"x","QtyItem":NaN}}').code == "JSON_MALFORMED"


def test_object_where_a_value_is_expected_is_invalid():
    e = only(dump(with_detail(NmbItem={"texto": "x"})))
    assert (e.code, e.path) == ("FIELD_INVALID", "Documento.Detalle[1].NmbItem")


def test_value_where_a_group_is_expected_is_invalid():
    content = dict(CONTENT, Encabezado=dict(CONTENT["Encabezado"], Receptor="Constructora"))
    e = only(dump(content))
    assert (e.code, e.field, e.expected) == ("FIELD_INVALID", "Receptor", "grupo de campos")


def test_unknown_key_suggests_the_right_case():
    e = only(dump(with_detail(nmbitem="x")))
    assert (e.code, e.field, e.expected) == ("FIELD_UNKNOWN", "nmbitem", "NmbItem")


def test_signature_next_to_documento_is_refused():
    e = only(dump({"DTE": {"Documento": CONTENT, "Signature": {}}}))
    assert (e.code, e.field) == ("INPUT_SIGNED", "Signature")


def test_wrong_rut_and_missing_field_are_reported_together():
    content = json.loads(json.dumps(CONTENT))
    content["Encabezado"]["Receptor"]["RUTRecep"] = "77123456-0"
    del content["Detalle"][0]["NmbItem"]
    assert {(e.code, e.path) for e in errors(dump(content))} == {
        ("RUT_INVALID", "Documento.Encabezado.Receptor.RUTRecep"),
        ("FIELD_REQUIRED", "Documento.Detalle[0].NmbItem"),
    }


def test_too_many_lines_in_a_factura():
    content = dict(CONTENT, Detalle=[{"NmbItem": f"Item {i}"} for i in range(61)])
    e = only(dump(content))
    assert (e.code, e.found, e.expected, e.path) == ("TOO_MANY", 61, 60, "Documento.Detalle[60]")


def test_deeply_nested_json_is_refused_without_crashing():
    data = b'{"Detalle":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert errors(data)[0].code in ("JSON_MALFORMED", "FIELD_INVALID", "FIELD_REQUIRED")
