"""GetTokenFromSeed's checks of a signed seed (auth manual v1.9 §5.2.2): the ESTADO codes
02 04 05 06 11 21 -07, in two strictnesses (Behaviour.seed_check).

- "strict": the manual's profile exactly: `<getToken><item><Semilla>`, one Reference URI=""
  with the enveloped-signature transform, digest and SignatureValue as declared.
- "sii": what the real SII evidently accepts. facturacion-electronica, a client used against
  the SII in production for years, signs `<getToken><Semilla>` (no `item`), with a c14n
  transform instead of the enveloped one (so its digest covers the seed before the signature
  was added) and an RSA-SHA256 SignatureValue under a SignatureMethod that says rsa-sha1. The
  SII gives it a token, so it cannot be re-checking the digest nor trusting SignatureMethod.
  What this mode still demands: a Signature, a Semilla, an X509Certificate whose key is the
  KeyValue's (21) and that really made the SignatureValue over SignedInfo (SHA-1 or SHA-256).
"""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from sync import safexml
from sync.rut import Rut
from sync.signing.certificate import rut_of
from sync.signing.xmldsig import ALG_ENVELOPED, c14n, verify_signatures
from sync.sii import DSIG_NS

_D = f"{{{DSIG_NS}}}"
GLOSA = {
    "02": "XML Invalido (SAXException), funcion valSignedXml",
    "04": "XML Invalido, elemento “Signature” no existe, función valSignedXml",
    "05": "XML Invalido, firma invalida, funcion valSignedXml",
    "06": "XML Invalido, elemento “Semilla” no existe, función getSeed",
    "11": "XML Invalido, elemento “Certificate” no existe, función getCertificado",
    "21": "Firma invalida (La llave pública no coincide con la del certificado)",
    "-07": "Error (12) parse ERROR en Validación del RUT",
}


class SeedRefused(Exception):
    def __init__(self, estado: str) -> None:
        super().__init__(estado)
        self.estado, self.glosa = estado, GLOSA[estado]


def checked_seed(xml: bytes, mode: str) -> tuple[str, Rut]:
    """(the seed, the signer's RUT) of a signed seed; raises SeedRefused with the ESTADO."""
    try:
        root = safexml.fromstring(xml.strip())
    except etree.XMLSyntaxError:
        raise SeedRefused("02") from None
    sig = root.find(f"{_D}Signature")
    if sig is None:
        raise SeedRefused("04")
    seed = root.findtext("item/Semilla") if mode == "strict" else root.findtext(".//Semilla")
    if not seed:
        raise SeedRefused("06")
    cert_text = sig.findtext(f"{_D}KeyInfo/{_D}X509Data/{_D}X509Certificate")
    if not cert_text:
        raise SeedRefused("11")
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode("".join(cert_text.split())))
    except ValueError:
        raise SeedRefused("11") from None
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or not _key_value_matches(sig, key):
        raise SeedRefused("21")
    if mode == "strict":
        _strict(root, sig)
    elif not _signature_value_ok(sig, key):
        raise SeedRefused("05")
    rut = rut_of(cert)
    if rut is None:
        raise SeedRefused("-07")
    return seed.strip(), rut


def _key_value_matches(sig: etree._Element, key: rsa.RSAPublicKey) -> bool:
    kv = sig.find(f"{_D}KeyInfo/{_D}KeyValue/{_D}RSAKeyValue")
    if kv is None:
        return True  # only the certificate: nothing to contradict it
    try:
        n = int.from_bytes(base64.b64decode("".join((kv.findtext(f"{_D}Modulus") or "").split())), "big")
    except ValueError:
        return False
    return n == key.public_numbers().n


def _strict(root: etree._Element, sig: etree._Element) -> None:
    ref = sig.find(f"{_D}SignedInfo/{_D}Reference")
    transforms = [t.get("Algorithm") for t in sig.iterfind(f"{_D}SignedInfo/{_D}Reference/{_D}Transforms/{_D}Transform")]
    if ref is None or ref.get("URI", "") != "" or ALG_ENVELOPED not in transforms:
        raise SeedRefused("05")
    results = verify_signatures(root)
    if not results or not results[0].ok:
        raise SeedRefused("05")


def _signature_value_ok(sig: etree._Element, key: rsa.RSAPublicKey) -> bool:
    signed_info = sig.find(f"{_D}SignedInfo")
    if signed_info is None:
        return False
    try:
        value = base64.b64decode("".join((sig.findtext(f"{_D}SignatureValue") or "").split()))
    except ValueError:
        return False
    data = c14n(signed_info)
    for algorithm in (hashes.SHA1(), hashes.SHA256()):
        try:
            key.verify(value, data, padding.PKCS1v15(), algorithm)
            return True
        except InvalidSignature:
            continue
    return False
