"""Certificate loading: PKCS#12 (modern and RC2-40 legacy), RUT extraction, validity, password sources."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from conftest import SAMPLES
from sync.errors import DteSyncError
from sync.rut import Rut
from sync.sandbox.cert_factory import make_test_certificate
from sync.signing.certificate import (
    load_certificate_file,
    load_pkcs12,
    read_secret,
    rut_of,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
RUT = Rut.parse("13185095-6")
SII_SAMPLE = SAMPLES / "sii-official" / "F60T33-ejemplo-oficial-SII.xml"
RC2_40_OID = bytes.fromhex("2a864886f70d010c0106")


@pytest.fixture(scope="module")
def p12() -> bytes:
    return make_test_certificate(
        RUT, "Juana Prueba", not_before=NOW - timedelta(days=30), not_after=NOW + timedelta(days=365), password="s3cret"
    )


def _legacy_copy(p12: bytes, tmp_path: Path, *options: str) -> bytes:
    """Re-export with the openssl CLI using the old PBE algorithms old Windows exports use."""
    src, pem, out = tmp_path / "in.p12", tmp_path / "all.pem", tmp_path / "legacy.p12"
    src.write_bytes(p12)
    subprocess.run(["openssl", "pkcs12", "-in", src, "-passin", "pass:s3cret", "-nodes", "-out", pem], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "pkcs12", "-export", *options, "-in", pem, "-passout", "pass:s3cret", "-out", out],
                   check=True, capture_output=True)
    return out.read_bytes()


def test_loads_factory_certificate_with_rut_from_san(p12):
    cert = load_pkcs12(p12, "s3cret", now=NOW)
    assert cert.rut == RUT
    assert "Juana Prueba" in cert.subject
    numbers = cert.private_key.public_key().public_numbers()
    assert int.from_bytes(base64.b64decode(cert.modulus_b64), "big") == numbers.n
    assert base64.b64decode(cert.exponent_b64) == b"\x01\x00\x01"
    assert x509.load_der_x509_certificate(base64.b64decode(cert.der_b64)) == cert.x509


def test_rut_of_real_sii_certificate_comes_from_san_othername():
    text = etree.parse(str(SII_SAMPLE)).getroot().findtext(".//{*}X509Certificate")
    cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
    assert rut_of(cert) == Rut.parse("7880442-4")  # the Caratula's RutEnvia of the same file


def _bare_cert(subject_attrs) -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name(subject_attrs)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
            .sign(key, hashes.SHA256()))


def test_rut_falls_back_to_subject_serial_number():
    cert = _bare_cert([x509.NameAttribute(NameOID.COMMON_NAME, "X"),
                       x509.NameAttribute(NameOID.SERIAL_NUMBER, "13.185.095-6")])
    assert rut_of(cert) == RUT


def test_rut_is_none_without_san_or_serial_number():
    assert rut_of(_bare_cert([x509.NameAttribute(NameOID.COMMON_NAME, "X")])) is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_rc2_40_legacy_pkcs12_loads(p12, tmp_path):
    legacy = _legacy_copy(p12, tmp_path, "-legacy", "-certpbe", "PBE-SHA1-RC2-40", "-keypbe", "PBE-SHA1-3DES")
    assert RC2_40_OID in legacy
    assert load_pkcs12(legacy, "s3cret", now=NOW).rut == RUT


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_descert_legacy_pkcs12_loads(p12, tmp_path):
    legacy = _legacy_copy(p12, tmp_path, "-descert")
    assert load_pkcs12(legacy, b"s3cret", now=NOW).rut == RUT


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_rc2_40_without_legacy_provider_says_so_instead_of_wrong_password(p12, tmp_path):
    legacy = tmp_path / "l.p12"
    legacy.write_bytes(_legacy_copy(p12, tmp_path, "-legacy", "-certpbe", "PBE-SHA1-RC2-40"))
    code = (
        "import sys, datetime\n"
        "from sync.signing.certificate import load_pkcs12\n"
        "from sync.errors import DteSyncError\n"
        f"data = open({str(legacy)!r}, 'rb').read()\n"
        "try:\n"
        "    load_pkcs12(data, 's3cret', now=datetime.datetime(2026, 6, 1))\n"
        "except DteSyncError as e:\n"
        "    print(e.code)\n"
    )
    env = dict(os.environ, CRYPTOGRAPHY_OPENSSL_NO_LEGACY="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "CERT_LEGACY_PBE"


def test_wrong_password_is_cert_password(p12):
    with pytest.raises(DteSyncError) as exc:
        load_pkcs12(p12, "wrong", now=NOW)
    assert exc.value.code == "CERT_PASSWORD"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_wrong_password_on_legacy_pkcs12_is_cert_password(p12, tmp_path):
    legacy = _legacy_copy(p12, tmp_path, "-legacy", "-certpbe", "PBE-SHA1-RC2-40")
    with pytest.raises(DteSyncError) as exc:
        load_pkcs12(legacy, "wrong", now=NOW)
    assert exc.value.code == "CERT_PASSWORD"


def test_garbage_is_cert_unreadable():
    with pytest.raises(DteSyncError) as exc:
        load_pkcs12(b"not a pfx at all", "x", now=NOW)
    assert exc.value.code == "CERT_UNREADABLE"


def test_expired_certificate_is_cert_expired_with_the_date(p12):
    with pytest.raises(DteSyncError) as exc:
        load_pkcs12(p12, "s3cret", now=NOW + timedelta(days=400))
    assert exc.value.code == "CERT_EXPIRED"
    assert exc.value.params["expired_on"].startswith((NOW + timedelta(days=365)).date().isoformat())
    assert "venció el 2027-06-01" in exc.value.message()


def test_not_yet_valid_certificate_is_cert_not_yet_valid(p12):
    with pytest.raises(DteSyncError) as exc:
        load_pkcs12(p12, "s3cret", now=NOW - timedelta(days=31))
    assert exc.value.code == "CERT_NOT_YET_VALID"
    assert exc.value.params["valid_from"].startswith("2026-05-02")


def test_certificate_file_with_password_from_env(p12, tmp_path):
    (tmp_path / "c.pfx").write_bytes(p12)
    cert = load_certificate_file(tmp_path / "c.pfx", {"env": "DTESYNC_CERT_PW"}, now=NOW,
                                 environ={"DTESYNC_CERT_PW": "s3cret"})
    assert cert.rut == RUT


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_certificate_file_with_password_from_private_file(p12, tmp_path):
    (tmp_path / "c.pfx").write_bytes(p12)
    secret = tmp_path / "pw.txt"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    assert load_certificate_file(tmp_path / "c.pfx", {"file": str(secret)}, now=NOW).rut == RUT


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_password_file_readable_by_others_is_refused(tmp_path):
    secret = tmp_path / "pw.txt"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    with pytest.raises(DteSyncError) as exc:
        read_secret({"file": str(secret)})
    assert exc.value.code == "SECRET_FILE_INSECURE"
    assert "0o644" in exc.value.message() and "chmod 600" in exc.value.message()


def test_missing_env_var_is_secret_missing():
    with pytest.raises(DteSyncError) as exc:
        read_secret({"env": "NOPE"}, environ={})
    assert exc.value.code == "SECRET_MISSING"


@pytest.mark.parametrize("ref", [{"env": "A", "file": "b"}, {}, {"value": "s3cret"}])
def test_secret_ref_must_name_exactly_one_source(ref):
    with pytest.raises(DteSyncError) as exc:
        read_secret(ref, environ={"A": "x"})
    assert exc.value.code == "CONFIG_INVALID"


def test_missing_certificate_file_is_cert_unreadable(tmp_path):
    with pytest.raises(DteSyncError) as exc:
        load_certificate_file(tmp_path / "none.pfx", {"env": "P"}, now=NOW, environ={"P": "x"})
    assert exc.value.code == "CERT_UNREADABLE"
