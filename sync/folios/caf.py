"""CAF (Código de Autorización de Folios): the SII file that authorizes a folio range.

A CAF file is `<AUTORIZACION><CAF version="1.0"><DA>…</DA><FRMA/></CAF><RSASK/><RSAPUBK/>`,
ISO-8859-1 bytes behind a declaration that names no encoding (real CAFs start with
`<?xml version="1.0"?>` and carry an Ñ in RS as one Latin-1 byte), so it is always read from
bytes. The `<CAF>` element is copied verbatim into every DD, and its FRMA (the SII's signature
over the flattened DA) is what proves the range is genuine.
"""

from __future__ import annotations

import base64
import calendar
import copy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property, lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from sync.data.sii_caf_keys import SII_CAF_PUBLIC_KEYS_PEM
from sync.errors import DteSyncError
from sync.rut import Rut, RutError
from sync.sii import TipoDte
from sync.sii_bytes import flatten, has_quotes, local_name

CAF_VALIDITY_MONTHS = 6  # Res. Ex. SII 58/2017, for the types whose TipoDte.caf_expires


@dataclass(frozen=True)
class Caf:
    """One CAF: its DA facts, its keys (parsed once) and the exact `<CAF>` bytes."""

    rut_emisor: Rut
    razon_social: str
    tipo_dte: int
    desde: int
    hasta: int
    fecha_autorizacion: date
    idk: int
    caf_xml: bytes = field(repr=False)  # `<CAF version="1.0">…</CAF>`, ISO-8859-1, as in the file
    public_key: rsa.RSAPublicKey = field(repr=False, compare=False)
    private_key: rsa.RSAPrivateKey | None = field(repr=False, compare=False)
    frma: bytes = field(repr=False)  # the SII signature over the flattened DA
    _element: etree._Element = field(repr=False, compare=False)
    _copies: dict[str | None, etree._Element] = field(default_factory=dict, repr=False, compare=False)

    @property
    def expires_on(self) -> date | None:
        """First day the CAF may no longer stamp (FA + 6 months), None if it never expires."""
        tipo = TipoDte.of(self.tipo_dte)
        if tipo is None or not tipo.caf_expires:
            return None
        return add_months(self.fecha_autorizacion, CAF_VALIDITY_MONTHS)

    def is_expired(self, now: date) -> bool:
        expires = self.expires_on
        return expires is not None and now >= expires

    def contains(self, folio: int) -> bool:
        return self.desde <= folio <= self.hasta

    @property
    def size(self) -> int:
        return self.hasta - self.desde + 1

    @property
    def fingerprint(self) -> str:
        """sha256 of the flattened `<CAF>`: same CAF whatever the file's indentation."""
        return hashlib.sha256(self.flat_caf.encode("iso-8859-1")).hexdigest()

    @property
    def da(self) -> etree._Element:
        """The `<DA>` element (present: `caf_from_element` checked it)."""
        da = _child(self._element, "DA")
        if da is None:
            raise _malformed("falta CAF/DA")
        return da

    @property
    def da_bytes(self) -> bytes:
        """The bytes FRMA signs (SII quote escaping)."""
        return flatten(self.da)

    @cached_property
    def flat_caf(self) -> str:
        """flatten(`<CAF>`) as text, computed once: the constant tail of every DD."""
        return flatten(self._element).decode("iso-8859-1")

    def caf_element(self, namespace: str | None = None) -> etree._Element:
        """A fresh copy of `<CAF>` to append to a DD (in `namespace` when given)."""
        base = self._copies.get(namespace)
        if base is None:
            base = _retag(self._element, namespace)
            self._copies[namespace] = base
        return copy.deepcopy(base)


def add_months(day: date, months: int) -> date:
    """Calendar months, clamped to the month's last day (Aug 31 + 6 -> Feb 28/29)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


# --- parsing ---------------------------------------------------------------------------------

_DECL_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


def _malformed(detail: str) -> DteSyncError:
    return DteSyncError("CAF_MALFORMED", params={"detail": detail})


def _parse_bytes(data: bytes) -> etree._Element:
    """Latin-1 unless the file declares an encoding it really is in (real CAFs declare none)."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise _malformed("trae DOCTYPE o entidades")
    encoding = "iso-8859-1"
    declared = _DECL_ENCODING.match(data)
    if declared:
        name = declared.group(1).decode("ascii").lower()
        try:
            data.decode(name)
            encoding = name
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        parser = etree.XMLParser(
            encoding=encoding, resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True
        )
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        raise _malformed(f"XML mal formado ({e})") from None


def _child(el: etree._Element, name: str) -> etree._Element | None:
    for c in el:
        if isinstance(c.tag, str) and local_name(c.tag) == name:
            return c
    return None


def _text(el: etree._Element, path: str) -> str:
    node: etree._Element | None = el
    for name in path.split("/"):
        node = _child(node, name) if node is not None else None
        if node is None:
            raise _malformed(f"falta {path}")
    return (node.text or "").strip() if node is not None else ""


def _int(el: etree._Element, path: str) -> int:
    text = _text(el, path)
    if not text.isdigit():
        raise _malformed(f"{path} no es un número: {text!r}")
    return int(text)


def _b64int(text: str, what: str) -> int:
    try:
        return int.from_bytes(base64.b64decode("".join(text.split()), validate=True), "big")
    except ValueError:
        raise _malformed(f"{what} no es base64") from None


def load_caf(data: bytes) -> Caf:
    """Parse a CAF file's bytes; CAF_MALFORMED (with detail) for anything unusable."""
    root = _parse_bytes(data)
    if local_name(root.tag) != "AUTORIZACION":
        raise _malformed(f"la raíz es <{local_name(root.tag)}>, se esperaba <AUTORIZACION>")
    caf_el = _child(root, "CAF")
    if caf_el is None:
        raise _malformed("falta AUTORIZACION/CAF")
    private_key = _load_private_key(_text(root, "RSASK"))
    caf = caf_from_element(caf_el, raw=_raw_caf(data), private_key=private_key)
    if private_key.public_key().public_numbers() != caf.public_key.public_numbers():
        raise _malformed("RSASK no corresponde a RSAPK")
    pubk = _child(root, "RSAPUBK")
    if pubk is not None and (pubk.text or "").strip():
        try:
            declared = serialization.load_pem_public_key((pubk.text or "").strip().encode("ascii"))
        except (ValueError, TypeError, UnicodeEncodeError):
            raise _malformed("RSAPUBK no es una llave pública PEM") from None
        if not isinstance(declared, rsa.RSAPublicKey) or declared.public_numbers() != caf.public_key.public_numbers():
            raise _malformed("RSAPUBK no corresponde a RSAPK")
    return caf


def _raw_caf(data: bytes) -> bytes | None:
    start, end = data.find(b"<CAF"), data.rfind(b"</CAF>")
    return data[start : end + len(b"</CAF>")] if 0 <= start < end else None


def _load_private_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise _malformed("RSASK no es una llave privada PEM") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _malformed("RSASK no es una llave RSA")
    return key


def caf_from_element(
    caf_el: etree._Element, *, raw: bytes | None = None, private_key: rsa.RSAPrivateKey | None = None
) -> Caf:
    """A Caf from a `<CAF>` element (a file's, or the copy inside a TED: no private key then)."""
    da = _child(caf_el, "DA")
    frma = _child(caf_el, "FRMA")
    if da is None or frma is None:
        raise _malformed("falta CAF/DA o CAF/FRMA")
    if _child(da, "RSAPK") is None:
        raise _malformed("falta DA/RSAPK (solo se admiten CAF con llave RSA)")
    try:
        rut = Rut.parse(_text(da, "RE"))
    except RutError as e:
        raise _malformed(f"DA/RE inválido ({e.reason})") from None
    try:
        fa = date.fromisoformat(_text(da, "FA"))
    except ValueError:
        raise _malformed(f"DA/FA no es una fecha: {_text(da, 'FA')!r}") from None
    desde, hasta = _int(da, "RNG/D"), _int(da, "RNG/H")
    if not 0 < desde <= hasta:
        raise _malformed(f"rango de folios inválido {desde}-{hasta}")
    modulus, exponent = _b64int(_text(da, "RSAPK/M"), "RSAPK/M"), _b64int(_text(da, "RSAPK/E"), "RSAPK/E")
    try:
        public_key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    except ValueError as e:
        raise _malformed(f"RSAPK inválida ({e})") from None
    standalone = copy.deepcopy(caf_el)
    if raw is None:
        raw = flatten(standalone)
    return Caf(
        rut_emisor=rut,
        razon_social=_text(da, "RS"),
        tipo_dte=_int(da, "TD"),
        desde=desde,
        hasta=hasta,
        fecha_autorizacion=fa,
        idk=_int(da, "IDK"),
        caf_xml=raw,
        public_key=public_key,
        private_key=private_key,
        frma=_b64(frma.text or ""),
        _element=standalone,
    )


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except ValueError:
        raise _malformed("FRMA no es base64") from None


def _retag(el: etree._Element, namespace: str | None) -> etree._Element:
    """Deep copy of `el` with every element moved into `namespace` (None: no namespace)."""

    def q(tag: str) -> str:
        return f"{{{namespace}}}{tag}" if namespace else tag

    out = etree.Element(q(local_name(el.tag)), dict(el.attrib), nsmap={None: namespace} if namespace else None)
    out.text = el.text

    def fill(src: etree._Element, dst: etree._Element) -> None:
        for c in src:
            if not isinstance(c.tag, str):
                continue
            n = etree.SubElement(dst, q(local_name(c.tag)), dict(c.attrib))
            n.text, n.tail = c.text, c.tail
            fill(c, n)

    fill(el, out)
    return out


# --- FRMA -----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def sii_caf_keys() -> dict[int, rsa.RSAPublicKey]:
    """The SII's CAF signing keys by IDK (100 certificación, 300 producción), parsed once."""
    keys = {}
    for idk, pem in SII_CAF_PUBLIC_KEYS_PEM.items():
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, rsa.RSAPublicKey):
            raise TypeError(f"the SII CAF key for IDK {idk} is not RSA")
        keys[idk] = key
    return keys


def verify_frma(caf: Caf, extra_keys: Mapping[int, rsa.RSAPublicKey] | None = None) -> bool | None:
    """Does FRMA verify with the SII key for the CAF's IDK? None when the IDK is unknown.

    `extra_keys` adds signers explicitly (the sandbox FakeSii, IDK 666); the SII's own two keys
    always apply and cannot be overridden. A DA holding quotes also gets the plain C14N reading.
    """
    keys = dict(extra_keys or {})
    keys.update(sii_caf_keys())
    key = keys.get(caf.idk)
    if key is None:
        return None
    da = caf.da
    readings = (True, False) if has_quotes(da) else (True,)
    for sii_quotes in readings:
        try:
            key.verify(caf.frma, flatten(da, sii_quotes=sii_quotes), padding.PKCS1v15(), hashes.SHA1())
            return True
        except InvalidSignature:
            continue
    return False
