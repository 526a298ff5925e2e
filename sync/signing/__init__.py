"""Signing: the company certificate and the SII XMLDSig profile."""

from sync.signing.certificate import Certificate, SecretRef, load_certificate_file, load_pkcs12, read_secret
from sync.signing.xmldsig import SignatureResult, c14n, sign_after, sign_enveloped, verify_signatures

__all__ = [
    "Certificate",
    "SecretRef",
    "SignatureResult",
    "c14n",
    "load_certificate_file",
    "load_pkcs12",
    "read_secret",
    "sign_after",
    "sign_enveloped",
    "verify_signatures",
]
