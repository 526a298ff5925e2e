"""`dtesync verify` (sync.verify): real SII samples pass; every kind of tampering fails,
and xmlsec1 independently agrees on the signature tampering."""

from __future__ import annotations

import pytest
from lxml import etree

from conftest import SAMPLES, xmlsec1_verifies
from sync.sandbox.build import examples_dir
from sync.sandbox.caf_factory import default_fake_sii
from sync.verify import verify_bytes

REAL_SAMPLES = sorted(SAMPLES.glob("sii-official/*.xml")) + sorted(SAMPLES.glob("cl-sii/DTE--*.xml")) + \
    sorted(SAMPLES.glob("ted-vectors/*.xml"))


@pytest.fixture(scope="module")
def signed(engine):
    issued = engine.issue((examples_dir() / "33_factura.txt").read_bytes(), "v.txt", doc_key="verify-fixture")
    return issued.dte_xml


def verdict(data: bytes) -> bool:
    return verify_bytes(data, "t.xml", caf_keys=default_fake_sii().trusted_keys).ok


@pytest.mark.parametrize("sample", REAL_SAMPLES, ids=lambda p: p.name)
def test_real_sii_samples_verify(sample):
    report = verify_bytes(sample.read_bytes(), sample.name)
    assert report.ok, [str(c) for c in report.checks]


def test_namespace_less_sample_is_accepted_with_a_warning():
    report = verify_bytes((SAMPLES / "cl-sii" / "DTE--76354771-K--33--170.xml").read_bytes(), "x")
    assert report.ok
    assert any(c.status == "WARN" for c in report.checks)


def test_our_own_output_verifies(signed):
    assert verdict(signed)


@pytest.mark.parametrize(
    "old,new",
    [
        (b"<MntTotal>", b"<MntTotal>1"),  # an amount
        (b"<Folio>", b"<Folio>9"),  # the folio
        (b"<RUTRecep>77123456-9</RUTRecep>", b"<RUTRecep>11111111-1</RUTRecep>"),  # a RUT
    ],
    ids=["amount", "folio", "rut"],
)
def test_tampered_content_fails_verify_and_xmlsec1(signed, old, new, tmp_path):
    tampered = signed.replace(old, new, 1)
    assert tampered != signed
    assert not verdict(tampered)
    path = tmp_path / "t.xml"
    path.write_bytes(tampered)
    assert not xmlsec1_verifies(path)


def test_one_byte_of_the_signature_value_changed_fails(signed, tmp_path):
    start = signed.index(b"<SignatureValue>") + len(b"<SignatureValue>")
    flipped = signed[:start] + (b"B" if signed[start:start + 1] != b"B" else b"C") + signed[start + 1:]
    assert not verdict(flipped)
    path = tmp_path / "t.xml"
    path.write_bytes(flipped)
    assert not xmlsec1_verifies(path)


def test_caf_of_another_range_in_the_ted_fails(signed):
    root = etree.fromstring(signed)
    rng = root.find(".//{*}TED/{*}DD/{*}CAF/{*}DA/{*}RNG")
    rng.find("{*}D").text, rng.find("{*}H").text = "5000", "6000"
    assert not verdict(etree.tostring(root, xml_declaration=True, encoding="ISO-8859-1"))


def test_unsigned_input_is_not_a_valid_dte():
    assert not verdict((examples_dir() / "33_factura.xml").read_bytes())


def test_doctype_is_refused():
    assert not verdict(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><DTE>&a;</DTE>')
