"""A fake SII that issues real-format CAF files, for the demo and the tests.

The fake signs with IDK 666. The SII only knows IDK 100 (maullin) and 300 (palena), so a
document stamped with a fake CAF can never pass for a real one, and `verify_frma` refuses to
vouch for it (None) unless the caller passes `FakeSii.trusted_keys` explicitly. Same choice
as LibreDTE's CafFaker.

Keys are derived from a seed by our own prime search: deterministic (a test run or a demo
rebuilt with the same seed gets the same CAFs, and nothing slow is repeated), and able to
make the RSA-512, e=3 folio keys real CAFs carry, which `cryptography` refuses to generate.
These keys protect nothing: they are test fixtures by construction.
"""

from __future__ import annotations

import base64
import hashlib
import random
import secrets
from datetime import date
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from sync.rut import Rut
from sync.sii_bytes import flatten

FAKE_IDK = 666
FOLIO_KEY_BITS, FOLIO_KEY_EXPONENT = 512, 3  # what the SII issues
FAKE_SII_KEY_BITS = 1024

_SMALL_PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73)


def _is_probable_prime(n: int) -> bool:
    """Miller-Rabin with the first 20 primes as bases: ample for random (non-adversarial) n."""
    if n < 2:
        return False
    for p in (2, *_SMALL_PRIMES):
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, *_SMALL_PRIMES):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, e: int, rng: random.Random) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (0b11 << (bits - 2)) | 1
        if candidate % e != 1 and _is_probable_prime(candidate):
            return candidate


@lru_cache(maxsize=256)
def rsa_key(bits: int, e: int, seed: str) -> rsa.RSAPrivateKey:
    """An RSA key of exactly `bits` bits derived from `seed` (cached per process)."""
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    while True:
        p, q = _prime(bits // 2, e, rng), _prime(bits // 2, e, rng)
        if p != q and (p * q).bit_length() == bits:
            break
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, p * q),
    )
    return numbers.private_key()


def _b64int(value: int) -> str:
    return base64.b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).decode("ascii")


class FakeSii:
    """The sandbox's CAF authority: an RSA key standing in for the SII under IDK 666.

    `seed=None` draws fresh randomness (keys differ on every run).
    """

    def __init__(self, seed: int | str | None = 0):
        self.seed = secrets.token_hex(16) if seed is None else str(seed)
        self.private_key = rsa_key(FAKE_SII_KEY_BITS, 65537, f"fake-sii:{self.seed}")
        self.public_key = self.private_key.public_key()

    @property
    def trusted_keys(self) -> dict[int, rsa.RSAPublicKey]:
        """Pass as `extra_keys`/`trusted_keys` wherever a fake CAF must verify."""
        return {FAKE_IDK: self.public_key}

    def make_caf(
        self, rut_emisor: Rut | str, razon_social: str, tipo_dte: int, desde: int, hasta: int, fa: date
    ) -> bytes:
        """A CAF file as the SII delivers it: ISO-8859-1, no encoding declared, keys in PEM."""
        rut = rut_emisor if isinstance(rut_emisor, Rut) else Rut.parse(rut_emisor)
        folio_key = rsa_key(
            FOLIO_KEY_BITS, FOLIO_KEY_EXPONENT, f"folios:{self.seed}:{rut}:{tipo_dte}:{desde}:{hasta}:{fa}"
        )
        n = folio_key.public_key().public_numbers()
        root = etree.Element("AUTORIZACION")
        caf = etree.SubElement(root, "CAF", version="1.0")
        da = etree.SubElement(caf, "DA")
        for tag, text in (("RE", str(rut)), ("RS", razon_social), ("TD", str(tipo_dte))):
            etree.SubElement(da, tag).text = text
        rng = etree.SubElement(da, "RNG")
        etree.SubElement(rng, "D").text = str(desde)
        etree.SubElement(rng, "H").text = str(hasta)
        etree.SubElement(da, "FA").text = fa.isoformat()
        rsapk = etree.SubElement(da, "RSAPK")
        etree.SubElement(rsapk, "M").text = _b64int(n.n)
        etree.SubElement(rsapk, "E").text = _b64int(n.e)
        etree.SubElement(da, "IDK").text = str(FAKE_IDK)
        frma = self.private_key.sign(flatten(da), padding.PKCS1v15(), hashes.SHA1())
        etree.SubElement(caf, "FRMA", algoritmo="SHA1withRSA").text = base64.b64encode(frma).decode("ascii")
        etree.SubElement(root, "RSASK").text = folio_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ).decode("ascii")
        etree.SubElement(root, "RSAPUBK").text = folio_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")
        body = etree.tostring(root, encoding="iso-8859-1", xml_declaration=False, pretty_print=True)
        return b'<?xml version="1.0"?>\n' + body


_DEFAULT: FakeSii | None = None


def default_fake_sii() -> FakeSii:
    """The process-wide FakeSii(seed=0), shared so its key is derived once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = FakeSii(0)
    return _DEFAULT


def make_caf(
    rut_emisor: Rut | str,
    razon_social: str,
    tipo_dte: int,
    desde: int,
    hasta: int,
    fa: date,
    *,
    sii: FakeSii | None = None,
) -> bytes:
    """`FakeSii.make_caf` with the default fake SII unless `sii` is given."""
    return (sii or default_fake_sii()).make_caf(rut_emisor, razon_social, tipo_dte, desde, hasta, fa)
