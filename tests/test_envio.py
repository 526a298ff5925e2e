"""EnvioDTE / EnvioBOLETA: each DTE's own signature verifies (xmlsec1) standalone AND in the envelope."""

from __future__ import annotations

import base64
import shutil
import subprocess
from copy import deepcopy
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from conftest import SAMPLES
from sync.envio import Caratula, build_envio, envelope_part, new_dte_root, sign_dte, to_bytes
from sync.errors import DteSyncError
from sync.rut import Rut
from sync.sandbox.cert_factory import make_test_certificate
from sync.signing.certificate import load_pkcs12
from sync.signing.xmldsig import sign_after, verify_signatures
from sync.sii import DSIG_NS

SII_EXAMPLE = SAMPLES / "sii-official" / "F60T33-ejemplo-oficial-SII.xml"
BOLETA = SAMPLES / "libredte-inputs" / "039-boleta_multidetalle-unsigned.xml"
SCHEMAS = Path(__file__).resolve().parents[1] / "sync" / "schemas" / "sii"
NOW = datetime.now(timezone.utc)
S = "{http://www.sii.cl/SiiDte}"
D = "{%s}" % DSIG_NS
SIGNER = Rut.parse("13185095-6")
pytestmark = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="needs xmlsec1")


@pytest.fixture(scope="module")
def cert():
    p12 = make_test_certificate(SIGNER, "Firma Prueba", not_before=NOW - timedelta(days=1),
                                not_after=NOW + timedelta(days=365), password="pw")
    return load_pkcs12(p12, "pw", now=NOW)


def caratula(rut_emisor: str = "97975000-5", **kw) -> Caratula:
    return Caratula(rut_emisor=Rut.parse(rut_emisor), fch_resol=date(2003, 9, 2), nro_resol=0,
                    tmst_firma_env=datetime(2026, 6, 1, 10, 30, 5), **kw)


def factura(cert, folio: int) -> bytes:
    """The SII example's (schema-complete) Documento as a standalone signed DTE with our key."""
    documento = deepcopy(etree.parse(str(SII_EXAMPLE)).getroot().find(f".//{S}Documento"))
    documento.set("ID", f"F{folio}T33")
    documento.find(f"{S}Encabezado/{S}IdDoc/{S}Folio").text = str(folio)
    root = new_dte_root()
    root.append(documento)
    sign_dte(root, cert)
    return to_bytes(root)


def boleta(cert, folio: int) -> bytes:
    """LibreDTE's unsigned boleta completed with a (dummy) TED and TmstFirma, signed standalone."""
    documento = etree.parse(str(BOLETA)).getroot().find(f"{S}Documento")
    documento.set("ID", f"B{folio}T39")
    ted = deepcopy(etree.parse(str(SII_EXAMPLE)).getroot().find(f".//{S}TED"))
    for td in ted.iter(S + "TD"):
        td.text = "39"
    documento.append(ted)
    etree.SubElement(documento, S + "TmstFirma").text = "2025-09-10T10:00:00"
    root = new_dte_root()
    root.append(documento)
    sign_dte(root, cert)
    return to_bytes(root)


def xmlsec1(path: Path, nth: int = 1) -> bool:
    """xmlsec1 on the nth Signature of the file (it only checks one per run)."""
    cmd = ["xmlsec1", "--verify", "--id-attr:ID", "Documento", "--id-attr:ID", "SetDTE",
           "--node-xpath", f"(//*[local-name()='Signature'])[{nth}]", str(path)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def save(tmp_path: Path, data: bytes, name: str) -> Path:
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def test_dte_signatures_verify_standalone_and_inside_envio_dte(cert, tmp_path):
    dtes = [factura(cert, 60), factura(cert, 61)]
    for i, dte in enumerate(dtes):
        assert xmlsec1(save(tmp_path, dte, f"dte{i}.xml"))
    envio = save(tmp_path, build_envio(dtes, caratula(), cert, boleta=False), "envio.xml")
    assert [xmlsec1(envio, n) for n in (1, 2, 3)] == [True, True, True]  # DTE, DTE, SetDTE
    results = verify_signatures(etree.parse(str(envio)))
    assert [r.reference for r in results] == ["#F60T33", "#F61T33", "#SetDoc"]
    assert all(r.ok and r.key_consistent and not r.warnings for r in results)


def test_boleta_signatures_verify_standalone_and_inside_envio_boleta(cert, tmp_path):
    dte = boleta(cert, 1)
    assert xmlsec1(save(tmp_path, dte, "boleta.xml"))
    envio = save(tmp_path, build_envio([dte], caratula("76192083-9"), cert, boleta=True), "envio.xml")
    assert xmlsec1(envio, 1) and xmlsec1(envio, 2)
    assert all(r.ok and not r.warnings for r in verify_signatures(etree.parse(str(envio))))


def test_envio_dte_validates_against_official_schema(cert):
    root = etree.fromstring(build_envio([factura(cert, 60), factura(cert, 61)], caratula(), cert, boleta=False))
    schema = etree.XMLSchema(etree.parse(str(SCHEMAS / "EnvioDTE_v10.xsd")))
    assert schema.validate(root), schema.error_log


def test_envio_boleta_validates_against_official_schema(cert):
    root = etree.fromstring(build_envio([boleta(cert, 1)], caratula("76192083-9"), cert, boleta=True))
    schema = etree.XMLSchema(etree.parse(str(SCHEMAS / "EnvioBOLETA_v11.xsd")))
    assert schema.validate(root), schema.error_log


def test_envelope_header_caratula_and_encoding(cert):
    data = build_envio([factura(cert, 60), factura(cert, 61)], caratula(), cert, boleta=False)
    assert data.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<EnvioDTE xmlns="http://www.sii.cl/SiiDte"')
    root = etree.fromstring(data)
    assert root.get("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation") == \
        "http://www.sii.cl/SiiDte EnvioDTE_v10.xsd"
    cover = root.find(f"{S}SetDTE/{S}Caratula")
    assert cover.findtext(S + "RutEnvia") == str(SIGNER)
    assert cover.findtext(S + "RutReceptor") == "60803000-K"
    assert cover.findtext(S + "TmstFirmaEnv") == "2026-06-01T10:30:05"
    assert [(s.findtext(S + "TpoDTE"), s.findtext(S + "NroDTE")) for s in cover.iter(S + "SubTotDTE")] == [("33", "2")]
    assert root[1].tag == D + "Signature" and root[0].get("ID") == "SetDoc"


def test_envelope_bytes_are_latin1(cert):
    data = build_envio([boleta(cert, 1)], caratula("76192083-9"), cert, boleta=True)
    assert "Tecnología".encode("latin-1") in data and "Tecnología".encode("utf-8") not in data


def test_tampered_amount_in_envelope_fails_xmlsec1_and_verify(cert, tmp_path):
    root = etree.fromstring(build_envio([factura(cert, 60)], caratula(), cert, boleta=False))
    root.find(f".//{S}MntTotal").text = "1"
    path = save(tmp_path, to_bytes(root), "t.xml")
    assert not xmlsec1(path, 1) and not xmlsec1(path, 2)
    assert [r.digest_ok for r in verify_signatures(root)] == [False, False]


def test_flipped_byte_of_set_signature_fails_xmlsec1_and_verify(cert, tmp_path):
    root = etree.fromstring(build_envio([factura(cert, 60)], caratula(), cert, boleta=False))
    node = root[1].find(D + "SignatureValue")
    raw = bytearray(base64.b64decode(node.text))
    raw[0] ^= 0x01
    node.text = base64.b64encode(bytes(raw)).decode()
    path = save(tmp_path, to_bytes(root), "t.xml")
    assert xmlsec1(path, 1) and not xmlsec1(path, 2)
    assert [r.signature_ok for r in verify_signatures(root)] == [True, False]


def test_dte_signed_with_only_xmlns_breaks_in_context_which_is_why_new_dte_root(cert, tmp_path):
    documento = deepcopy(etree.parse(str(SII_EXAMPLE)).getroot().find(f".//{S}Documento"))
    root = etree.Element(S + "DTE", nsmap={None: S[1:-1]}, version="1.0")
    root.append(documento)
    sign_after(documento, cert)
    assert xmlsec1(save(tmp_path, to_bytes(root), "dte.xml"))
    envio = save(tmp_path, build_envio([to_bytes(root)], caratula(), cert, boleta=False), "envio.xml")
    assert not xmlsec1(envio, 1)
    [dte, _] = verify_signatures(etree.parse(str(envio)))
    assert dte.ok and any("only xmlns SiiDte" in w for w in dte.warnings)


def test_sign_dte_refuses_a_root_without_the_envelope_namespaces(cert):
    root = etree.Element(S + "DTE", nsmap={None: S[1:-1]}, version="1.0")
    etree.SubElement(root, S + "Documento", ID="X")
    with pytest.raises(ValueError):
        sign_dte(root, cert)


def test_more_than_2000_dtes_is_too_many(cert):
    with pytest.raises(DteSyncError) as exc:
        build_envio([factura(cert, 60)] * 2001, caratula(), cert, boleta=False)
    assert exc.value.code == "TOO_MANY" and exc.value.expected == 2000


def test_more_than_500_boletas_is_too_many(cert):
    with pytest.raises(DteSyncError) as exc:
        build_envio([boleta(cert, 1)] * 501, caratula(), cert, boleta=True)
    assert exc.value.code == "TOO_MANY" and exc.value.expected == 500


def test_boleta_in_envio_dte_is_refused(cert):
    with pytest.raises(DteSyncError) as exc:
        build_envio([boleta(cert, 1)], caratula(), cert, boleta=False)
    assert exc.value.code == "TIPO_DTE_UNSUPPORTED"


def test_rut_envia_must_be_the_certificate_rut(cert):
    with pytest.raises(DteSyncError) as exc:
        build_envio([factura(cert, 60)], caratula(rut_envia=Rut.parse("7880442-4")), cert, boleta=False)
    assert exc.value.code == "ENVIO_RUT_ENVIA_MISMATCH"


# --- the envelope assembled from the DTEs' bytes ----------------------------------------------------


def test_envelope_assembled_from_bytes_equals_the_one_built_as_a_tree(cert):
    for dtes, boleta_ in (([factura(cert, 70), factura(cert, 71)], False), ([boleta(cert, 5), boleta(cert, 6)], True)):
        elements = [etree.fromstring(d) for d in dtes]
        from_bytes = build_envio(dtes, caratula(), cert, boleta=boleta_)
        from_parts = build_envio([envelope_part(d, e) for d, e in zip(dtes, elements)], caratula(), cert, boleta=boleta_)
        from_trees = build_envio(elements, caratula(), cert, boleta=boleta_)  # elements take the tree path
        assert from_bytes == from_parts == from_trees


def test_a_dte_not_in_dtesync_form_goes_through_the_tree_and_still_verifies(cert, tmp_path):
    ours = factura(cert, 80)
    other = factura(cert, 81).replace(b"?>\n", b"?>\n<!-- exported by another tool -->\n", 1)
    assert envelope_part(ours) is not None and envelope_part(other) is None
    envio = save(tmp_path, build_envio([ours, other], caratula(), cert, boleta=False), "envio.xml")
    assert [xmlsec1(envio, n) for n in (1, 2, 3)] == [True, True, True]


def test_envelope_parts_mixed_with_a_foreign_dte_go_through_the_tree_and_verify(cert, tmp_path):
    part = envelope_part(factura(cert, 90))
    foreign = factura(cert, 91).replace(b"?>\n", b"?>\n<!-- exported by another tool -->\n", 1)
    envio = save(tmp_path, build_envio([part, foreign], caratula(), cert, boleta=False), "envio.xml")
    assert [xmlsec1(envio, n) for n in (1, 2, 3)] == [True, True, True]
