"""Signing: the company certificate and the SII XMLDSig profile."""

from sync.signing.certificate import Certificate, load_certificate_file, load_pkcs12
from sync.signing.xmldsig import SignatureResult, c14n, sign_after, sign_enveloped, verify_signatures

__all__ = [
    "Certificate",
    "SignatureResult",
    "c14n",
    "load_certificate_file",
    "load_pkcs12",
    "sign_after",
    "sign_enveloped",
    "verify_signatures",
]
