"""TED: golden tests against real SII TEDs, stamping, flattening rules, verification."""

from __future__ import annotations

import base64
import copy
import subprocess
from datetime import date, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from conftest import SAMPLES
from sync.errors import DteSyncError
from sync.folios.caf import caf_from_element, load_caf
from sync.rut import Rut
from sync.sandbox.caf_factory import default_fake_sii, make_caf
from sync.sii import SII_NS
from sync.sii_bytes import flatten, latin1_text
from sync.timbre import (
    build_dd,
    dd_values,
    stamp,
    stamp_with_bytes,
    ted_bytes,
    verify_ted,
)

BOLETA_VECTOR = SAMPLES / "ted-vectors" / "TED-39-76694449-3-F43641-IT1-trailing-space.xml"
TED_FILES = [
    SAMPLES / "sii-official" / "F60T33-ejemplo-oficial-SII.xml",
    *sorted((SAMPLES / "cl-sii").glob("DTE--*.xml")),
    BOLETA_VECTOR,
]
RUT = Rut.parse("76192083-9")
TRUSTED = default_fake_sii().trusted_keys


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _find(el: etree._Element, name: str) -> etree._Element:
    return next(e for e in el.iter() if isinstance(e.tag, str) and _local(e) == name)


def _sample_ted(path: Path) -> etree._Element:
    return _find(etree.parse(str(path)).getroot(), "TED")


def _rsapk(ted: etree._Element) -> rsa.RSAPublicKey:
    """The CAF public key read straight from the sample, without our CAF code."""
    num = lambda name: int.from_bytes(base64.b64decode(_find(ted, name).text), "big")  # noqa: E731
    return rsa.RSAPublicNumbers(num("E"), num("M")).public_key()


def _frmt(ted: etree._Element) -> bytes:
    return base64.b64decode("".join(_find(ted, "FRMT").text.split()))


def _fields_of(dd: etree._Element) -> dict:
    v = dd_values(dd)
    return dict(
        tipo_dte=int(v["TD"]), folio=int(v["F"]), fch_emis=date.fromisoformat(v["FE"]), rut_recep=v["RR"],
        rzn_soc_recep=v["RSR"], mnt_total=int(v["MNT"]), it1=v["IT1"], tsted=datetime.fromisoformat(v["TSTED"]),
    )


@pytest.fixture(scope="module")
def caf():
    return load_caf(make_caf(RUT, "EMPRESA DEMO SPA", 33, 1, 10_000, date(2024, 1, 10)))


@pytest.fixture
def fields():
    return dict(
        tipo_dte=33, folio=42, fch_emis=date(2024, 2, 1), rut_recep="77.777.777-7", rzn_soc_recep="CLIENTE LTDA",
        mnt_total=119_000, it1="Parlantes Multimedia 180W.", tsted=datetime(2024, 2, 1, 9, 33, 20),
    )


# --- golden: real SII TEDs ---------------------------------------------------------------------


@pytest.mark.parametrize("path", TED_FILES, ids=lambda p: p.name)
def test_flattened_dd_of_real_ted_verifies_with_its_rsapk(path):
    ted = _sample_ted(path)
    _rsapk(ted).verify(_frmt(ted), flatten(_find(ted, "DD")), padding.PKCS1v15(), hashes.SHA1())


@pytest.mark.parametrize("path", TED_FILES, ids=lambda p: p.name)
def test_verify_ted_finds_no_problem_in_real_ted(path):
    assert verify_ted(_sample_ted(path)) == []


@pytest.mark.parametrize("path", TED_FILES, ids=lambda p: p.name)
def test_dd_rebuilt_from_sample_values_is_byte_identical(path):
    dd = _find(_sample_ted(path), "DD")
    caf = caf_from_element(_find(dd, "CAF"))
    assert flatten(build_dd(caf, **_fields_of(dd))) == flatten(dd)


def test_official_sample_flattening_drops_the_dte_namespace():
    dd = _find(_sample_ted(TED_FILES[0]), "DD")
    assert dd.nsmap.get(None) == SII_NS
    assert flatten(dd).startswith(b"<DD><RE>97975000-5</RE><TD>33</TD><F>60</F>")
    assert b"xmlns" not in flatten(dd)


def test_boleta_it1_trailing_space_is_signed():
    dd = _find(_sample_ted(BOLETA_VECTOR), "DD")
    assert dd_values(dd)["IT1"].endswith(" ") and len(dd_values(dd)["IT1"]) == 40


def test_trimming_boleta_it1_breaks_frmt():
    ted = _sample_ted(BOLETA_VECTOR)
    it1 = _find(ted, "IT1")
    it1.text = it1.text.rstrip()
    assert any("FRMT" in p for p in verify_ted(ted))


def test_rebuilding_boleta_with_long_it1_cuts_at_40_keeping_the_space():
    dd = _find(_sample_ted(BOLETA_VECTOR), "DD")
    fields = _fields_of(dd) | {"it1": dd_values(dd)["IT1"] + "X MAS TEXTO QUE SOBRA"}
    assert flatten(build_dd(caf_from_element(_find(dd, "CAF")), **fields)) == flatten(dd)


def test_tampered_amount_breaks_frmt():
    ted = _sample_ted(TED_FILES[0])
    _find(ted, "MNT").text = "119001"
    assert verify_ted(ted) == ["FRMT no verifica con la llave pública (RSAPK) del CAF"]


def test_folio_outside_caf_range_is_reported():
    ted = _sample_ted(TED_FILES[0])  # CAF 1-200
    _find(ted, "F").text = "201"
    assert any("fuera del rango" in p for p in verify_ted(ted))


def test_emisor_other_than_caf_is_reported():
    ted = _sample_ted(TED_FILES[0])
    _find(_find(ted, "DD"), "RE").text = "76192083-9"
    assert any("DD/RE" in p for p in verify_ted(ted))


def test_verify_ted_accepts_the_ted_element_inside_an_envelope():
    root = etree.parse(str(TED_FILES[0])).getroot()
    assert _local(root) == "EnvioDTE"
    assert verify_ted(_find(root, "TED")) == []


# --- flattening rules -----------------------------------------------------------------------------


def test_flatten_escapes_quotes_per_sii_convention():
    el = etree.fromstring("<IT1>a\"b'c&amp;d&lt;e&gt;</IT1>")
    assert flatten(el) == b"<IT1>a&quot;b&apos;c&amp;d&lt;e&gt;</IT1>"


def test_flatten_keeps_text_whitespace_and_drops_indentation():
    el = etree.fromstring("<DD>\n  <RSR>EMPRESA  LTDA </RSR>\n  <M>abc\ndef</M>\n</DD>")
    assert flatten(el) == b"<DD><RSR>EMPRESA  LTDA </RSR><M>abc\ndef</M></DD>"


def test_flatten_is_iso_8859_1():
    assert flatten(etree.fromstring("<RSR>ÑUÑOA</RSR>")) == "<RSR>ÑUÑOA</RSR>".encode("iso-8859-1")


# --- stamping --------------------------------------------------------------------------------------


def test_stamped_ted_verifies(caf, fields):
    assert verify_ted(stamp(caf, **fields), extra_keys=TRUSTED) == []


def test_stamped_dd_has_sii_field_order(caf, fields):
    dd = stamp(caf, **fields).find("DD")
    assert [c.tag for c in dd] == ["RE", "TD", "F", "FE", "RR", "RSR", "MNT", "IT1", "CAF", "TSTED"]
    assert dd_values(dd)["RR"] == "77777777-7"
    assert dd_values(dd)["TSTED"] == "2024-02-01T09:33:20"


def test_frmt_verifies_with_openssl_cli_and_the_caf_file_public_key(caf, fields, tmp_path):
    ted = stamp(caf, **fields)
    pem = tmp_path / "rsapubk.pem"
    pem.write_bytes(caf.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "dd.bin").write_bytes(flatten(ted.find("DD")))
    (tmp_path / "frmt.bin").write_bytes(_frmt(ted))
    result = subprocess.run(
        ["openssl", "dgst", "-sha1", "-verify", str(pem), "-signature", str(tmp_path / "frmt.bin"),
         str(tmp_path / "dd.bin")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ted_bytes_is_the_flattened_ted_and_parses_back(caf, fields):
    ted, payload = stamp_with_bytes(caf, **fields)
    assert payload == ted_bytes(ted)
    assert payload.startswith(b'<TED version="1.0"><DD><RE>76192083-9</RE>')
    assert verify_ted(etree.fromstring(payload), extra_keys=TRUSTED) == []


def test_rsr_and_it1_are_cut_to_40_characters_without_trimming(caf, fields):
    name = "A" * 39 + " " + "sobra"
    dd = build_dd(caf, **fields | {"rzn_soc_recep": name, "it1": name})
    assert dd_values(dd)["RSR"] == dd_values(dd)["IT1"] == "A" * 39 + " "


def test_typographic_characters_are_transliterated_to_latin1(caf, fields):
    dd = build_dd(caf, **fields | {"it1": "Café “Añejo” — 5€"})
    assert dd_values(dd)["IT1"] == 'Café "Añejo" - 5EUR'


def test_characters_without_latin1_reading_are_rejected_with_a_typed_error(caf, fields):
    with pytest.raises(DteSyncError) as info:
        build_dd(caf, **fields | {"it1": "Torta 🎂"})
    assert info.value.code == "TEXT_NOT_LATIN1"
    assert info.value.field == "NmbItem" and info.value.params["codepoint"] == "U+1F382"


def test_accented_letters_outside_latin1_lose_the_accent():
    assert latin1_text("Šibenik Gdańsk", "x") == "Sibenik Gdansk"


def test_folio_outside_caf_is_refused(caf, fields):
    with pytest.raises(DteSyncError) as info:
        build_dd(caf, **fields | {"folio": 10_001})
    assert info.value.code == "FOLIO_NOT_IN_CAF"


def test_tipo_dte_other_than_caf_is_refused(caf, fields):
    with pytest.raises(DteSyncError) as info:
        build_dd(caf, **fields | {"tipo_dte": 34})
    assert info.value.code == "FOLIO_NOT_IN_CAF"


def test_invalid_receptor_rut_is_refused(caf, fields):
    with pytest.raises(DteSyncError) as info:
        build_dd(caf, **fields | {"rut_recep": "77777777-1"})
    assert info.value.code == "RUT_INVALID"


def test_blank_item_name_is_refused(caf, fields):
    with pytest.raises(DteSyncError) as info:
        build_dd(caf, **fields | {"it1": "   "})
    assert info.value.code == "FIELD_REQUIRED"


def test_fake_caf_ted_is_not_verifiable_without_the_fake_sii_key(caf, fields):
    assert verify_ted(stamp(caf, **fields)) == ["FRMA no verificable: IDK 666 desconocido"]


def test_namespaced_ted_sits_in_the_dte_namespace_and_verifies_after_reparse(caf, fields):
    dte = etree.Element(f"{{{SII_NS}}}DTE", nsmap={None: SII_NS}, version="1.0")
    documento = etree.SubElement(dte, f"{{{SII_NS}}}Documento")
    documento.append(stamp(caf, namespace=SII_NS, **fields))
    xml = etree.tostring(dte, encoding="ISO-8859-1")
    assert b'xmlns=""' not in xml and xml.count(b"xmlns=") == 1
    ted = etree.fromstring(xml).find(f"{{{SII_NS}}}Documento/{{{SII_NS}}}TED")
    assert ted is not None and verify_ted(ted, extra_keys=TRUSTED) == []


latin1_text_strategy = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_categories=("Cc",)), min_size=1, max_size=60
).filter(lambda s: s.strip(" "))


@settings(max_examples=150, deadline=None)
@given(rsr=latin1_text_strategy, it1=latin1_text_strategy, mnt=st.integers(0, 10**12))
def test_hot_path_signed_bytes_equal_flatten_of_the_dd_element(caf, rsr, it1, mnt):
    ted, payload = stamp_with_bytes(
        caf, tipo_dte=33, folio=7, fch_emis=date(2024, 3, 1), rut_recep="66666666-6",
        rzn_soc_recep=rsr, mnt_total=mnt, it1=it1, tsted=datetime(2024, 3, 1, 12, 0, 0),
    )
    assert payload == flatten(ted)
    reparsed = etree.fromstring(etree.tostring(copy.deepcopy(ted), encoding="ISO-8859-1"))
    assert flatten(reparsed) == payload
