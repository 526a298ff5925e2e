"""CAF files: parsing from bytes, FRMA against the SII keys, the sandbox FakeSii."""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from conftest import DATA, SAMPLES
from sync.errors import DteSyncError
from sync.folios.caf import add_months, caf_from_element, load_caf, sii_caf_keys, verify_frma
from sync.rut import Rut
from sync.sandbox.caf_factory import FAKE_IDK, FakeSii, default_fake_sii, make_caf

TED_FILES = [
    SAMPLES / "sii-official" / "F60T33-ejemplo-oficial-SII.xml",
    *sorted((SAMPLES / "cl-sii").glob("DTE--*.xml")),
    SAMPLES / "ted-vectors" / "TED-39-76694449-3-F43641-IT1-trailing-space.xml",
]
RUT = Rut.parse("76192083-9")


def _embedded_caf(path: Path) -> etree._Element:
    root = etree.parse(str(path)).getroot()
    return next(e for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "CAF")


@pytest.fixture(scope="module")
def caf_bytes() -> bytes:
    return make_caf(RUT, "COMERCIAL ÑANDÚ LTDA", 33, 1, 500, date(2024, 1, 31))


@pytest.mark.parametrize("path", TED_FILES, ids=lambda p: p.name)
def test_every_caf_embedded_in_a_real_ted_verifies_with_the_sii_key(path):
    caf = caf_from_element(_embedded_caf(path))
    assert caf.idk in (100, 300)
    assert verify_frma(caf) is True


@pytest.mark.parametrize("idk,cert", [(100, "IDK100-maullin-certificacion.cer"), (300, "IDK300-palena-produccion.cer")])
def test_shipped_sii_keys_match_openssl_extraction_from_the_sii_certificates(idk, cert):
    pem = subprocess.run(
        ["openssl", "x509", "-in", str(DATA / "sii-caf-certs" / cert), "-pubkey", "-noout"],
        check=True, capture_output=True,
    ).stdout
    expected = serialization.load_pem_public_key(pem).public_numbers()
    assert sii_caf_keys()[idk].public_numbers() == expected


def test_tampered_da_fails_frma():
    el = _embedded_caf(TED_FILES[0])
    el.find(".//{*}H").text = "2000"
    assert verify_frma(caf_from_element(el)) is False


def test_load_caf_reads_latin1_file_without_encoding_declaration(caf_bytes):
    assert caf_bytes.startswith(b'<?xml version="1.0"?>')
    assert "ÑANDÚ".encode("iso-8859-1") in caf_bytes
    caf = load_caf(caf_bytes)
    assert caf.razon_social == "COMERCIAL ÑANDÚ LTDA"
    assert (caf.rut_emisor, caf.tipo_dte, caf.desde, caf.hasta) == (RUT, 33, 1, 500)
    assert caf.fecha_autorizacion == date(2024, 1, 31)


def test_caf_xml_is_the_exact_caf_element_of_the_file(caf_bytes):
    caf = load_caf(caf_bytes)
    assert caf.caf_xml.startswith(b'<CAF version="1.0">') and caf.caf_xml.endswith(b"</CAF>")
    assert caf.caf_xml in caf_bytes


def test_fingerprint_ignores_file_indentation(caf_bytes):
    reindented = caf_bytes.replace(b"\n  ", b"\n\t\t")
    assert reindented != caf_bytes
    assert load_caf(reindented).fingerprint == load_caf(caf_bytes).fingerprint


def test_private_key_is_loaded_and_matches_rsapk(caf_bytes):
    caf = load_caf(caf_bytes)
    assert caf.private_key.public_key().public_numbers() == caf.public_key.public_numbers()


def test_fake_caf_keys_are_rsa512_with_exponent_3_like_real_cafs(caf_bytes):
    caf = load_caf(caf_bytes)
    assert caf.public_key.key_size == 512
    assert caf.public_key.public_numbers().e == 3
    assert b"<E>Aw==</E>" in caf_bytes


def test_fake_caf_uses_idk_666_and_is_not_verifiable_without_the_fake_key(caf_bytes):
    caf = load_caf(caf_bytes)
    assert caf.idk == FAKE_IDK == 666
    assert verify_frma(caf) is None


def test_fake_caf_frma_verifies_with_the_fake_sii_key(caf_bytes):
    assert verify_frma(load_caf(caf_bytes), extra_keys=default_fake_sii().trusted_keys) is True


def test_fake_caf_frma_fails_with_another_fake_sii(caf_bytes):
    assert verify_frma(load_caf(caf_bytes), extra_keys=FakeSii(seed=1).trusted_keys) is False


def test_extra_keys_cannot_replace_the_real_sii_keys():
    caf = caf_from_element(_embedded_caf(TED_FILES[0]))  # IDK 100, genuine
    assert verify_frma(caf, extra_keys={100: default_fake_sii().public_key}) is True


def test_fake_sii_is_deterministic_for_a_seed():
    args = (RUT, "X", 39, 1, 10, date(2024, 1, 1))
    assert FakeSii(seed=7).make_caf(*args) == FakeSii(seed=7).make_caf(*args)
    assert FakeSii(seed=7).make_caf(*args) != FakeSii(seed=8).make_caf(*args)


def test_expires_six_months_after_fa_for_expiring_types():
    caf = load_caf(make_caf(RUT, "X", 33, 1, 10, date(2024, 1, 15)))
    assert caf.expires_on == date(2024, 7, 15)
    assert not caf.is_expired(date(2024, 7, 14))
    assert caf.is_expired(date(2024, 7, 15))


def test_boleta_caf_never_expires():
    caf = load_caf(make_caf(RUT, "X", 39, 1, 10, date(2020, 1, 1)))
    assert caf.expires_on is None
    assert not caf.is_expired(date(2030, 1, 1))


def test_six_months_clamps_to_the_end_of_a_shorter_month():
    assert add_months(date(2023, 8, 31), 6) == date(2024, 2, 29)
    assert add_months(date(2023, 10, 31), 6) == date(2024, 4, 30)


def test_contains_is_the_inclusive_range(caf_bytes):
    caf = load_caf(caf_bytes)
    assert caf.contains(1) and caf.contains(500)
    assert not caf.contains(0) and not caf.contains(501)


def _malformed_detail(data: bytes) -> str:
    with pytest.raises(DteSyncError) as info:
        load_caf(data)
    assert info.value.code == "CAF_MALFORMED"
    return info.value.params["detail"]


def test_not_xml_is_malformed():
    assert "XML" in _malformed_detail(b"this is not a CAF")


def test_wrong_root_is_malformed():
    assert "AUTORIZACION" in _malformed_detail(b"<?xml version='1.0'?><DTE/>")


def test_doctype_is_refused(caf_bytes):
    data = caf_bytes.replace(b"<AUTORIZACION>", b'<!DOCTYPE x [<!ENTITY e "x">]><AUTORIZACION>')
    assert "DOCTYPE" in _malformed_detail(data)


def test_missing_private_key_is_malformed(caf_bytes):
    start, end = caf_bytes.index(b"<RSASK>"), caf_bytes.index(b"</RSASK>") + len(b"</RSASK>")
    assert "RSASK" in _malformed_detail(caf_bytes[:start] + caf_bytes[end:])


def test_private_key_of_another_caf_is_malformed(caf_bytes):
    other = make_caf(RUT, "X", 33, 501, 600, date(2024, 1, 31))
    sk = lambda d: d[d.index(b"<RSASK>") : d.index(b"</RSASK>")]  # noqa: E731
    assert "RSASK" in _malformed_detail(caf_bytes.replace(sk(caf_bytes), sk(other)))


def test_non_numeric_range_is_malformed(caf_bytes):
    assert "RNG/D" in _malformed_detail(caf_bytes.replace(b"<D>1</D>", b"<D>uno</D>"))


def test_invalid_rut_is_malformed(caf_bytes):
    assert "DA/RE" in _malformed_detail(caf_bytes.replace(b"76192083-9", b"76192083-0"))
