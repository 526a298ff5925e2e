"""The company's signing certificate (PKCS#12 / .pfx), loaded once and reused.

Loading decrypts the key and parses the certificate once; every signature after that reuses
the same key object, and the KeyInfo values (modulus, exponent, DER certificate, base64) are
precomputed here because every Signature carries them.

The holder's RUT is in the SubjectAltName otherName 1.3.6.1.4.1.8321.1 (the SII-accredited
CAs put it there; RutEnvia of an envelope must equal it), with the subject serialNumber as a
fallback for certificates that lack it.

Legacy .pfx files (pbeWithSHA1And40BitRC2-CBC, the default of old Windows/Java exports) load
natively: the `cryptography` wheels bundle OpenSSL with its *legacy provider* loaded. Only when
that provider is off (a distro build, or CRYPTOGRAPHY_OPENSSL_NO_LEGACY set) does RC2 fail; that
case is detected and reported as CERT_LEGACY_PBE with the one-line `openssl` re-export to fix it,
instead of a misleading "wrong password".

The password never comes from the config file: it is a reference to an environment variable or
to a file that only its owner may read (`read_secret`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from sync.errors import DteSyncError
from sync.rut import Rut, RutError
from sync.secrets import read_secret

X509Certificate = x509.Certificate  # the field `x509` below shadows the module in the class body
# SAN otherName carrying the holder's RUT in SII-accredited certificates.
OID_SII_RUT = x509.ObjectIdentifier("1.3.6.1.4.1.8321.1")
# pbeWithSHA1And40BitRC2-CBC / pbeWithSHA1And128BitRC2-CBC, DER-encoded OID bodies.
_RC2_OIDS = (bytes.fromhex("2a864886f70d010c0106"), bytes.fromhex("2a864886f70d010c0105"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


@dataclass(frozen=True, eq=False)
class Certificate:
    """A loaded signing certificate: key, X.509 and the precomputed KeyInfo values."""

    private_key: rsa.RSAPrivateKey = field(repr=False)
    x509: X509Certificate = field(repr=False)
    rut: Rut | None
    subject: str
    not_before: datetime
    not_after: datetime
    modulus_b64: str = field(repr=False)
    exponent_b64: str = field(repr=False)
    der_b64: str = field(repr=False)

    @classmethod
    def from_key_and_cert(cls, key: PrivateKeyTypes, cert: X509Certificate) -> Certificate:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DteSyncError(
                "CERT_UNREADABLE", found="PKCS#12", params={"detail": "la clave no es RSA (el SII exige RSA)"}
            )
        numbers = key.public_key().public_numbers()
        return cls(
            private_key=key,
            x509=cert,
            rut=rut_of(cert),
            subject=cert.subject.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            modulus_b64=_b64(_int_bytes(numbers.n)),
            exponent_b64=_b64(_int_bytes(numbers.e)),
            der_b64=_b64(cert.public_bytes(serialization.Encoding.DER)),
        )

    def sign_sha1(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-1: the only signature method the SII accepts."""
        return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA1())


# --- RUT extraction ----------------------------------------------------------------------


def _der_string(der: bytes) -> str | None:
    """Decode one DER string TLV (IA5/UTF8/Printable/Visible); None if it is something else."""
    if len(der) < 2 or der[0] not in (0x16, 0x0C, 0x13, 0x1A):
        return None
    length, pos = der[1], 2
    if length & 0x80:
        n = length & 0x7F
        length, pos = int.from_bytes(der[2 : 2 + n], "big"), 2 + n
    return der[pos : pos + length].decode("latin-1")


def _parse_rut_text(text: str | None) -> Rut | None:
    if not text:
        return None
    match = re.search(r"\d[\d.]*-?[\dkK]", text)
    try:
        return Rut.parse(match.group(0)) if match else None
    except RutError:
        return None


def rut_of(cert: x509.Certificate) -> Rut | None:
    """The holder's RUT: SAN otherName 1.3.6.1.4.1.8321.1, else subject serialNumber, else None."""
    try:
        san = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        san = []
    for name in san:
        if isinstance(name, x509.OtherName) and name.type_id == OID_SII_RUT:
            rut = _parse_rut_text(_der_string(name.value))
            if rut:
                return rut
    for attr in cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        rut = _parse_rut_text(str(attr.value))
        if rut:
            return rut
    return None


# --- loading -------------------------------------------------------------------------------


def _legacy_provider_loaded() -> bool:
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        return bool(getattr(rust_openssl, "_legacy_provider_loaded", True))
    except Exception:  # pragma: no cover - other backends: assume it is there
        return True


def load_pkcs12(data: bytes, password: str | bytes, *, now: datetime, source: str = "PKCS#12") -> Certificate:
    """Decrypt a .pfx/.p12 and check it is valid at `now` (typed errors, never raw ValueError)."""
    secret = password.encode("utf-8") if isinstance(password, str) else password
    try:
        key, cert, _chain = pkcs12.load_key_and_certificates(data, secret)
    except ValueError as exc:
        text = str(exc).lower()
        if "password" not in text:
            raise DteSyncError("CERT_UNREADABLE", found=source, params={"detail": str(exc)}) from None
        if any(oid in data for oid in _RC2_OIDS) and not _legacy_provider_loaded():
            raise DteSyncError("CERT_LEGACY_PBE", found=source) from None
        raise DteSyncError("CERT_PASSWORD", found=source) from None
    except Exception as exc:  # unsupported algorithms and the like
        raise DteSyncError("CERT_UNREADABLE", found=source, params={"detail": str(exc)}) from None
    if key is None or cert is None:
        raise DteSyncError(
            "CERT_UNREADABLE", found=source, params={"detail": "el archivo no trae clave privada y certificado"}
        )
    certificate = Certificate.from_key_and_cert(key, cert)
    check_validity(certificate, now)
    return certificate


def check_validity(cert: Certificate, now: datetime) -> None:
    """CERT_EXPIRED / CERT_NOT_YET_VALID at `now` (naive datetimes are taken as UTC)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    dates = {"valid_from": cert.not_before.isoformat(), "expired_on": cert.not_after.isoformat()}
    if now > cert.not_after:
        raise DteSyncError("CERT_EXPIRED", found=cert.subject, params=dates)
    if now < cert.not_before:
        raise DteSyncError("CERT_NOT_YET_VALID", found=cert.subject, params=dates)


def load_certificate_file(
    path: str | Path, password_source: object, *, now: datetime, environ: Mapping[str, str] | None = None
) -> Certificate:
    """Read the .pfx at `path` with the password named by `password_source` (a SecretRef)."""
    password = read_secret(password_source, name="certificate.password", environ=environ)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DteSyncError("CERT_UNREADABLE", found=str(path), params={"detail": exc.strerror}) from None
    return load_pkcs12(data, password, now=now, source=str(path))
