"""The SII XMLDSig profile: signing checked by xmlsec1 and the official xmldsig XSD; verification of real samples."""

from __future__ import annotations

import base64
import shutil
import subprocess
from copy import deepcopy
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from conftest import REPO, SAMPLES
from sync.envio import new_dte_root, sign_dte, to_bytes
from sync.rut import Rut
from sync.sandbox.cert_factory import make_test_certificate
from sync.signing.certificate import load_pkcs12
from sync.signing.xmldsig import c14n, sign_after, sign_enveloped, verify_signatures
from sync.sii import DSIG_NS

SII_EXAMPLE = SAMPLES / "sii-official" / "F60T33-ejemplo-oficial-SII.xml"
CL_SII = sorted((SAMPLES / "cl-sii").glob("*.xml"))
SCHEMAS = REPO / "sync" / "schemas" / "sii"
NOW = datetime.now(timezone.utc)
D = "{%s}" % DSIG_NS
S = "{http://www.sii.cl/SiiDte}"
needs_xmlsec1 = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="needs xmlsec1")


@pytest.fixture(scope="module")
def cert():
    p12 = make_test_certificate(Rut.parse("13185095-6"), "Firma Prueba", not_before=NOW - timedelta(days=1),
                                not_after=NOW + timedelta(days=365), password="pw")
    return load_pkcs12(p12, "pw", now=NOW)


def xmlsec1(path: Path, *extra: str) -> bool:
    """xmlsec1's verdict, independent of our code (KeyValue key unless told otherwise)."""
    cmd = ["xmlsec1", "--verify", "--id-attr:ID", "Documento", "--id-attr:ID", "SetDTE", *extra, str(path)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def signed_sample_dte(cert) -> etree._Element:
    """The SII example's Documento in a standalone DTE, re-signed with our certificate."""
    source = etree.parse(str(SII_EXAMPLE)).getroot().find(f".//{S}Documento")
    root = new_dte_root()
    root.append(deepcopy(source))
    sign_dte(root, cert)
    return root


def write(tmp_path: Path, root: etree._Element, name: str = "f.xml") -> Path:
    path = tmp_path / name
    path.write_bytes(to_bytes(root))
    return path


def test_signature_follows_the_sii_profile(cert):
    root = signed_sample_dte(cert)
    documento, signature = root[0], root[1]
    assert signature.tag == D + "Signature" and signature.prefix is None
    assert signature.getprevious() is documento
    refs = signature.findall(f"{D}SignedInfo/{D}Reference")
    assert [r.get("URI") for r in refs] == ["#F60T33"]
    assert [t.get("Algorithm") for t in refs[0].iter(D + "Transform")] == [
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"]
    assert signature.find(f"{D}SignedInfo/{D}SignatureMethod").get("Algorithm") == DSIG_NS + "rsa-sha1"
    assert [e.tag for e in signature.find(D + "KeyInfo")] == [D + "KeyValue", D + "X509Data"]


def test_signature_validates_against_official_xmldsig_schema(cert):
    schema = etree.XMLSchema(etree.parse(str(SCHEMAS / "xmldsignature_v10.xsd")))
    signature = signed_sample_dte(cert)[1]
    assert schema.validate(etree.fromstring(etree.tostring(signature))), schema.error_log


def test_c14n_of_documento_declares_scope_once_without_spurious_empty_xmlns(cert):
    documento = signed_sample_dte(cert)[0]
    canonical = c14n(documento)
    assert canonical.startswith(b'<Documento xmlns="http://www.sii.cl/SiiDte" '
                                b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="F60T33">')
    assert b'xmlns=""' not in canonical
    assert b'xmlns=""' in etree.tostring(documento, method="c14n")  # the lxml trap this avoids


def test_signed_info_template_is_its_own_canonical_form(cert):
    signature = signed_sample_dte(cert)[1]
    value = base64.b64decode(signature.findtext(D + "SignatureValue"))
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    cert.private_key.public_key().verify(value, c14n(signature.find(D + "SignedInfo")),
                                         padding.PKCS1v15(), hashes.SHA1())


@needs_xmlsec1
def test_signed_dte_verifies_with_xmlsec1_using_keyvalue(cert, tmp_path):
    assert xmlsec1(write(tmp_path, signed_sample_dte(cert)))


@needs_xmlsec1
def test_x509certificate_is_the_signing_key_for_xmlsec1(cert, tmp_path):
    pem = tmp_path / "cert.pem"
    pem.write_bytes(cert.x509.public_bytes(serialization.Encoding.PEM))
    path = write(tmp_path, signed_sample_dte(cert))
    assert xmlsec1(path, "--enabled-key-data", "x509", "--trusted-pem", str(pem))
    assert not xmlsec1(path, "--enabled-key-data", "x509")  # untrusted: proves the x509 path was used


@needs_xmlsec1
def test_tampered_amount_fails_xmlsec1_and_verify_signatures(cert, tmp_path):
    root = signed_sample_dte(cert)
    root.find(f".//{S}MntTotal").text = "119001"
    assert not xmlsec1(write(tmp_path, root))
    [result] = verify_signatures(root)
    assert not result.digest_ok and result.signature_ok


@needs_xmlsec1
def test_one_flipped_signature_byte_fails_xmlsec1_and_verify_signatures(cert, tmp_path):
    root = signed_sample_dte(cert)
    node = root.find(f".//{D}SignatureValue")
    raw = bytearray(base64.b64decode(node.text))
    raw[100] ^= 0x01
    node.text = base64.b64encode(bytes(raw)).decode()
    assert not xmlsec1(write(tmp_path, root))
    [result] = verify_signatures(root)
    assert result.digest_ok and not result.signature_ok


def test_verify_reports_signer_and_consistent_keys(cert):
    [result] = verify_signatures(signed_sample_dte(cert))
    assert result.ok and result.key_consistent and not result.warnings
    assert result.signer_rut == Rut.parse("13185095-6") and result.signed_element == "Documento"


def test_sign_into_gives_the_same_bytes_as_sign_after_in_place(cert):
    from sync.envio import NSMAP
    from sync.signing.xmldsig import sign_into

    source = etree.parse(str(SII_EXAMPLE)).getroot().find(f".//{S}Documento")
    documento = etree.Element(S + "Documento", nsmap=NSMAP)  # a root of its own, as the engine builds it
    documento.attrib.update(source.attrib)
    documento.text = source.text
    documento[:] = deepcopy(source)[:]
    root = new_dte_root()
    canonical_as_root = c14n(documento)
    sign_into(root, documento, cert)
    assert c14n(root[0]) == canonical_as_root  # its C14N in place is the one signed
    documento.tail = source.tail  # outside the digest; the sample's layout, for the byte comparison
    assert to_bytes(root) == to_bytes(signed_sample_dte(cert))  # RSA PKCS#1 v1.5 is deterministic
    assert b'xmlns=""' not in canonical_as_root


def test_c14n_of_a_root_with_a_tail_avoids_the_lxml_trap():
    source = etree.parse(str(SII_EXAMPLE)).getroot().find(f".//{S}Documento")
    documento = etree.Element(S + "Documento", nsmap={None: S[1:-1]})
    documento[:] = deepcopy(source)[:]
    documento.tail = "\n"  # lxml then canonicalizes it as a non-root, with the spurious xmlns=""
    assert b'xmlns=""' in etree.tostring(documento, method="c14n")
    assert b'xmlns=""' not in c14n(documento)


def test_sign_into_refuses_an_element_whose_namespaces_differ_from_its_parent(cert):
    from sync.signing.xmldsig import sign_into

    documento = etree.Element(S + "Documento", ID="F1T33", nsmap={None: S[1:-1]})  # no xmlns:xsi
    with pytest.raises(ValueError):
        sign_into(new_dte_root(), documento, cert)


def test_sign_after_requires_an_id(cert):
    root = new_dte_root()
    documento = etree.SubElement(root, S + "Documento")
    with pytest.raises(ValueError):
        sign_after(documento, cert)


@needs_xmlsec1
def test_enveloped_seed_signature_verifies_with_xmlsec1(cert, tmp_path):
    seed = etree.fromstring(b"<getToken><item><Semilla>033069460498</Semilla></item></getToken>")
    sign_enveloped(seed, cert)
    path = tmp_path / "seed.xml"
    path.write_bytes(etree.tostring(seed, xml_declaration=True, encoding="UTF-8"))
    assert subprocess.run(["xmlsec1", "--verify", str(path)], capture_output=True).returncode == 0
    [result] = verify_signatures(seed)
    assert result.ok and result.reference == ""
    seed.find("item/Semilla").text = "033069460499"
    assert not verify_signatures(seed)[0].digest_ok


def test_sii_official_example_verifies_with_stated_assumptions():
    documento, set_dte = verify_signatures(etree.parse(str(SII_EXAMPLE)))
    assert documento.ok and set_dte.ok
    assert any("namespace-less" in w for w in documento.warnings)
    assert not set_dte.key_consistent  # the SII's example ships a KeyValue of another key
    assert any("different keys" in w for w in set_dte.warnings)
    assert set_dte.signer_rut == Rut.parse("7880442-4")


@pytest.mark.parametrize("path", CL_SII, ids=lambda p: p.name)
def test_cl_sii_samples_verify(path):
    results = verify_signatures(etree.parse(str(path)))
    assert results and all(r.ok and r.key_consistent for r in results)


@pytest.mark.parametrize("path", [SII_EXAMPLE, *CL_SII], ids=lambda p: p.name)
def test_tampered_samples_are_rejected(path):
    root = etree.parse(str(path)).getroot()
    amount = root.find(".//{*}MntTotal")
    amount.text = str(int(amount.text) + 1)
    results = verify_signatures(root)
    assert not results[0].digest_ok  # the first signature covers the first Documento


@pytest.mark.parametrize("path", [SII_EXAMPLE, *CL_SII], ids=lambda p: p.name)
def test_samples_with_a_flipped_signature_byte_are_rejected(path):
    root = etree.parse(str(path)).getroot()
    node = root.find(f".//{D}SignatureValue")
    raw = bytearray(base64.b64decode("".join(node.text.split())))
    raw[10] ^= 0x80
    node.text = base64.b64encode(bytes(raw)).decode()
    assert not verify_signatures(root)[0].signature_ok
