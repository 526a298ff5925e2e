"""Hostile and broken inputs: refused with a typed error, never a crash, never a resolved entity."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.errors import DteSyncErrors
from sync.parse import parse_document, read_input

DOC = ('<Documento><Encabezado><IdDoc><TipoDTE>33</TipoDTE></IdDoc><Receptor><RUTRecep>77123456-9</RUTRecep>'
       '<RznSocRecep>{name}</RznSocRecep></Receptor></Encabezado><Detalle><NmbItem>x</NmbItem></Detalle></Documento>')


def codes(data: bytes, source: str = "doc.xml") -> list[str]:
    with pytest.raises(DteSyncErrors) as info:
        parse_document(data, source)
    return [e.code for e in info.value.errors]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
""" + DOC.format(name="&lol9;").encode()

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Documento [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
""" + DOC.format(name="&xxe;").encode()

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Documento SYSTEM "http://127.0.0.1:9/evil.dtd">
""" + DOC.format(name="x").encode()

PARAMETER_ENTITIES = b"""<?xml version="1.0"?>
<!DOCTYPE Documento [
 <!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd">
 %remote;
]>
""" + DOC.format(name="x").encode()


@pytest.mark.parametrize("data", [BILLION_LAUGHS, XXE, EXTERNAL_DTD, PARAMETER_ENTITIES],
                         ids=["billion-laughs", "xxe-file", "external-dtd", "parameter-entities"])
def test_doctype_and_entity_declarations_are_refused_outright(data):
    assert codes(data) == ["XML_DOCTYPE_FORBIDDEN"]


def test_doctype_is_refused_after_a_bom_and_whitespace():
    assert codes(b"\xef\xbb\xbf \n<!DOCTYPE Documento>" + DOC.format(name="x").encode()) == ["XML_DOCTYPE_FORBIDDEN"]


def test_doctype_is_refused_even_in_a_file_named_txt():
    assert codes(XXE, "F1.txt") == ["XML_DOCTYPE_FORBIDDEN"]


def test_passwd_never_reaches_the_document():
    with pytest.raises(DteSyncErrors) as info:
        parse_document(XXE, "doc.xml")
    assert "root:" not in str(info.value)


def test_input_over_the_size_limit_is_refused_before_parsing():
    assert codes(b"<" + b" " * 50_000_000) == ["INPUT_TOO_LARGE"]


def test_fifty_megabyte_file_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "big.xml"
    with big.open("wb") as fh:  # sparse: the size is there, the bytes are not
        fh.truncate(50 * 1024 * 1024)
    with pytest.raises(DteSyncErrors) as info:
        read_input(big)
    e = info.value.errors[0]
    assert (e.code, e.found, e.expected, e.source) == ("INPUT_TOO_LARGE", 50 * 1024 * 1024, 10_000_000, "big.xml")


def test_max_bytes_is_configurable(tmp_path):
    f = tmp_path / "F1.txt"
    f.write_bytes(b"x" * 2000)
    with pytest.raises(DteSyncErrors) as info:
        read_input(f, max_bytes=1000)
    assert info.value.code == "INPUT_TOO_LARGE"


def test_binary_garbage_is_refused():
    assert codes(bytes(range(256)) * 4, "F1.txt") == ["INPUT_BINARY"]


def test_utf16_is_refused_with_an_encoding_error():
    assert codes(DOC.format(name="x").encode("utf-16"), "F1.xml") == ["INPUT_ENCODING"]


@pytest.mark.parametrize("data", [b"", b"   \r\n\t", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n\n"])
def test_empty_input(data):
    assert codes(data, "F1.txt") == ["INPUT_EMPTY"]


def test_deeply_nested_xml_is_refused_without_crashing():
    data = b"<Documento>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</Documento>"
    assert codes(data)[0] in ("XML_MALFORMED", "FIELD_UNKNOWN")


def test_megabyte_long_line_is_handled():
    data = b"[Encabezado.IdDoc]\nTipoDTE=33\n[Detalle]\nNmbItem=" + b"x" * 1_000_000 + b"\n"
    assert "FIELD_TOO_LONG" in codes(data, "F1.txt")


def _never_crashes(data: bytes, source: str) -> None:
    try:
        parse_document(data, source)
    except DteSyncErrors as exc:
        assert exc.errors and all(e.code != "INTERNAL" for e in exc.errors), [str(e) for e in exc.errors]


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(["F.txt", "F.json", "F.xml", "F"]))
def test_random_bytes_only_ever_give_typed_errors(data, source):
    _never_crashes(data, source)


@FUZZ
@given(st.binary(max_size=500))
def test_random_bytes_after_an_xml_or_json_start_only_give_typed_errors(data):
    _never_crashes(b"<" + data, "F.xml")
    _never_crashes(b"{" + data, "F.json")


_TAGS = ["TipoDTE", "FchEmis", "RUTRecep", "RznSocRecep", "NmbItem", "QtyItem", "PrcItem", "IndExe",
         "Acteco", "TpoCodigo", "VlrCodigo", "Folio", "FchRef", "CodRef", "Foo", "TED"]
_SECTIONS = ["[Encabezado.IdDoc]", "[Encabezado.Receptor]", "[Detalle]", "[Detalle.CdgItem]", "[Referencia]",
             "[Encabezado.Transporte.Chofer]", "[Encabezado]", "[Detalle.Retenedor]", "[Nada]", "[", "[Detalle.NmbItem]"]
_VALUES = st.one_of(st.text(max_size=20), st.integers().map(str), st.sampled_from(["33", "39", "2025-02-30", "1-9"]))


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(_SECTIONS), st.builds(lambda t, v: f"{t}={v}", st.sampled_from(_TAGS), _VALUES),
                          st.text(max_size=30)), max_size=40))
def test_structured_txt_noise_only_gives_typed_errors(lines):
    _never_crashes("\n".join(lines).encode("utf-8", "surrogatepass"), "F.txt")


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(_TAGS + ["Encabezado", "IdDoc", "Detalle", "DTE",
                                                                        "Documento", "CdgItem"]), children, max_size=4)),
    max_leaves=30,
)


@FUZZ
@given(_JSON)
def test_structured_json_noise_only_gives_typed_errors(value):
    _never_crashes(json.dumps(value).encode(), "F.json")


def test_fuzz_found_nothing_internal_on_the_examples_truncated():
    """Every prefix of a real example (a half-written file) gives typed errors or a document."""
    root = os.path.join(os.path.dirname(__file__), "..", "sync", "data", "examples")
    for name in ("33_factura.txt", "33_factura.json", "33_factura.xml"):
        data = open(os.path.join(root, name), "rb").read()
        for cut in range(1, len(data), 97):
            _never_crashes(data[:cut], name)
