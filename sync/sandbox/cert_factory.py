"""Self-signed test certificates shaped like the SII-accredited ones (demo sandbox and tests).

They carry what the signing code and the SII look at: an RSA-2048 key, the holder's RUT in the
SubjectAltName otherName 1.3.6.1.4.1.8321.1 (IA5String, as the accredited CAs encode it) and in
the subject serialNumber. Never valid before the real SII: nobody trusts the issuer.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from cryptography.x509.oid import NameOID

from sync.rut import Rut
from sync.signing.certificate import OID_SII_RUT


def _ia5(text: str) -> bytes:
    raw = text.encode("ascii")
    assert len(raw) < 128
    return bytes([0x16, len(raw)]) + raw


def make_test_certificate(
    rut: Rut, name: str, *, not_before: datetime, not_after: datetime, password: str | bytes
) -> bytes:
    """A PKCS#12 (AES-256, PBES2) with a fresh RSA-2048 key and a self-signed certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dtesync sandbox (sin validez legal)"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, str(rut)),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.OtherName(OID_SII_RUT, _ia5(str(rut)))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    secret = password.encode("utf-8") if isinstance(password, str) else password
    return pkcs12.serialize_key_and_certificates(
        name.encode("utf-8"), key, cert, None, BestAvailableEncryption(secret)
    )
