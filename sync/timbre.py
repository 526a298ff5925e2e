"""The TED (Timbre Electrónico DTE): the DD summary signed with the CAF key.

The SII checks FRMT over the *flattened* bytes of DD (SII Instructivo Técnico de Emisión
v15.10.09, Anexo 2 A.2.4): no namespace
declarations, no whitespace-only text between tags, ISO-8859-1, `&quot;`/`&apos;` in text.
`flatten` produces exactly those bytes from any lxml element (also one taken from inside a
namespaced DTE), so the same function serves stamping, the PDF417 payload and verification.
"""

from __future__ import annotations

import base64
import copy
import re
import unicodedata
from datetime import date, datetime
from typing import TYPE_CHECKING, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

from sync.errors import DteSyncError
from sync.rut import Rut, RutError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    from sync.folios.caf import Caf

SII_NS = "http://www.sii.cl/SiiDte"
DD_TEXT_MAX = 40  # RSR and IT1 (XSD: 1..40), cut by characters, never trimmed
ALGORITHM = "SHA1withRSA"

# --- flattening -------------------------------------------------------------------------

_XML_WS = " \t\r\n"
_TEXT_SII = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "\r": "&#xD;"})
_TEXT_C14N = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#xD;"})
_NEEDS_ESCAPE = re.compile("[&<>\"'\r]")  # str.translate walks every character in Python; most texts need nothing
_PKCS1V15 = padding.PKCS1v15()
_SHA1 = hashes.SHA1()
_ATTR = str.maketrans(
    {"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"}
)


def flatten(element: etree._Element, *, sii_quotes: bool = True) -> bytes:
    """The exact bytes the SII signs for DD (FRMT) and DA (FRMA), and prints in the PDF417.

    Namespaces are dropped (local names only), whitespace-only text and tails are removed,
    comments and processing instructions are skipped, attributes are sorted as in C14N.
    `sii_quotes=False` gives the plain C14N escaping, only used to read third-party TEDs.
    """
    parts: list[str] = []
    _flatten_into(element, parts, _TEXT_SII if sii_quotes else _TEXT_C14N)
    return "".join(parts).encode("iso-8859-1", "xmlcharrefreplace")


def _flatten_into(el: etree._Element, out: list[str], table: dict) -> None:
    tag = el.tag.rpartition("}")[2]
    out.append("<" + tag)
    if el.attrib:
        for name, value in sorted((k.rpartition("}")[2], v) for k, v in el.attrib.items()):
            out.append(f' {name}="{value.translate(_ATTR)}"')
    out.append(">")
    text = el.text
    if text and text.strip(_XML_WS):
        out.append(text.translate(table))
    for child in el:
        if isinstance(child.tag, str):
            _flatten_into(child, out, table)
        tail = child.tail
        if tail and tail.strip(_XML_WS):
            out.append(tail.translate(table))
    out.append(f"</{tag}>")


def has_quotes(element: etree._Element) -> bool:
    """True when some text holds `"` or `'`, i.e. when the two escaping readings differ."""
    return any(t and ('"' in t or "'" in t) for t in element.itertext())


# --- text rules ---------------------------------------------------------------------------

# Typographic characters an ERP commonly sends (Word, Windows-1252) and their Latin-1 reading.
_LATIN1_FALLBACK = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...", "\u2022": "*", "\u20ac": "EUR", "\u2122": "TM", "\u02c6": "^", "\u02dc": "~",
    "\u0152": "OE", "\u0153": "oe", "\u2039": "<", "\u203a": ">", "\u2044": "/",
    "\u00a0": " ", "\u2007": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ",
    "\u200b": "", "\u200c": "", "\u200d": "", "\ufeff": "",
})


# Every character Latin-1 can carry and XML allows: tab, CR, LF, printable ASCII, 0xA0-0xFF.
PLAIN_LATIN1 = re.compile("[\t\n\r\x20-\x7e\xa0-\xff]*")


def latin1_text(value: str, field: str) -> str:
    """`value` made ISO-8859-1-encodable, or DteSyncError TEXT_NOT_LATIN1.

    Known typographic characters are transliterated (curly quotes, dashes, €, Œ, NBSP...),
    letters with accents Latin-1 lacks lose them (ą -> a, š -> s); anything else (emoji, CJK,
    control characters XML forbids) is refused, because a silent '?' would change the signed text.
    """
    if PLAIN_LATIN1.fullmatch(value):  # the common case, without a per-character loop
        return value
    out = []
    for ch in value.translate(_LATIN1_FALLBACK):
        out.append(ch if _latin1_ok(ch) else _transliterate(ch, field))
    return "".join(out)


def _latin1_ok(ch: str) -> bool:
    o = ord(ch)
    return o <= 0xFF and (o >= 0x20 or ch in "\t\n\r") and not 0x7F <= o <= 0x9F


def _has_forbidden_controls(value: str) -> bool:
    return any(not _latin1_ok(ch) for ch in value)


def _transliterate(ch: str, field: str) -> str:
    for form in ("NFKC", "NFKD"):
        decomposed = unicodedata.normalize(form, ch)
        kept = "".join(c for c in decomposed if not unicodedata.combining(c))
        if kept and all(_latin1_ok(c) for c in kept):
            return kept
    raise DteSyncError(
        "TEXT_NOT_LATIN1", field=field, found=ch, params={"codepoint": f"U+{ord(ch):04X}"}
    )


def cut(value: str, limit: int = DD_TEXT_MAX) -> str:
    """RSR/IT1 rule: the first `limit` characters, not trimmed (a trailing space is signed)."""
    return value[:limit]


# --- building and stamping --------------------------------------------------------------------


_DD_TAGS = ("RE", "TD", "F", "FE", "RR", "RSR", "MNT", "IT1")  # then CAF, TSTED


def dd_fields(
    caf: "Caf",
    *,
    tipo_dte: int,
    folio: int,
    fch_emis: date,
    rut_recep: str | Rut,
    rzn_soc_recep: str,
    mnt_total: int,
    it1: str,
    tsted: datetime,
) -> tuple[tuple[str, ...], str]:
    """The DD texts (RE..IT1 in SII order) and TSTED, validated and cut; typed errors otherwise."""
    if tipo_dte != caf.tipo_dte or not caf.contains(folio):
        raise DteSyncError("FOLIO_NOT_IN_CAF", field="Folio", params={"folio": folio, "tipo_dte": tipo_dte})
    if mnt_total < 0:
        raise DteSyncError("AMOUNT_NEGATIVE", field="MntTotal", found=mnt_total)
    texts = (
        str(caf.rut_emisor),
        str(tipo_dte),
        str(folio),
        fch_emis.isoformat(),
        _canonical_rut(rut_recep),
        _dd_text(rzn_soc_recep, "RznSocRecep"),
        str(int(mnt_total)),
        _dd_text(it1, "NmbItem"),
    )
    return texts, tsted.strftime("%Y-%m-%dT%H:%M:%S")


def build_dd(
    caf: "Caf",
    *,
    tipo_dte: int,
    folio: int,
    fch_emis: date,
    rut_recep: str | Rut,
    rzn_soc_recep: str,
    mnt_total: int,
    it1: str,
    tsted: datetime,
    namespace: str | None = None,
) -> etree._Element:
    """DD in SII order RE TD F FE RR RSR MNT IT1 CAF TSTED.

    `namespace=SII_NS` builds the elements inside the DTE namespace so the TED can be
    appended to a namespaced Documento; the signed bytes are the same either way.
    """
    texts, tsted = dd_fields(
        caf, tipo_dte=tipo_dte, folio=folio, fch_emis=fch_emis, rut_recep=rut_recep,
        rzn_soc_recep=rzn_soc_recep, mnt_total=mnt_total, it1=it1, tsted=tsted,
    )
    return _dd_element(caf, texts, tsted, namespace)


def _dd_element(caf: "Caf", texts: tuple[str, ...], tsted: str, namespace: str | None) -> etree._Element:
    q = (lambda t: f"{{{namespace}}}{t}") if namespace else (lambda t: t)
    dd = etree.Element(q("DD"), nsmap={None: namespace} if namespace else None)
    for tag, text in zip(_DD_TAGS, texts):
        etree.SubElement(dd, q(tag)).text = text
    dd.append(caf.caf_element(namespace))
    etree.SubElement(dd, q("TSTED")).text = tsted
    return dd


def _dd_flat(caf: "Caf", texts: tuple[str, ...], tsted: str) -> bytes:
    """flatten(DD) without walking the tree: the hot path (a property test pins the equality)."""
    parts = ["<DD>"]
    for tag, text in zip(_DD_TAGS, texts):
        parts.append(f"<{tag}>{text.translate(_TEXT_SII) if _NEEDS_ESCAPE.search(text) else text}</{tag}>")
    parts.append(caf.flat_caf)
    parts.append(f"<TSTED>{tsted}</TSTED></DD>")
    return "".join(parts).encode("iso-8859-1", "xmlcharrefreplace")


def _canonical_rut(value: str | Rut) -> str:
    if isinstance(value, Rut):
        return str(value)
    try:
        return str(Rut.parse(value))
    except RutError as e:
        raise DteSyncError("RUT_INVALID", field="RUTRecep", found=value, params={"detail": e.reason}) from None


def _dd_text(value: str, field: str) -> str:
    text = cut(latin1_text(value or "", field))
    if not text.strip(_XML_WS):
        raise DteSyncError("FIELD_REQUIRED", field=field)
    return text


def stamp(caf: "Caf", *, namespace: str | None = None, **dd_fields) -> etree._Element:
    """The TED element: DD (fields: see `dd_fields`) plus FRMT signed with the CAF key."""
    return stamp_with_bytes(caf, namespace=namespace, **dd_fields)[0]


def stamp_with_bytes(caf: "Caf", *, namespace: str | None = None, **fields) -> tuple[etree._Element, bytes]:
    """`stamp` plus `ted_bytes` of the result, computed once (the engine wants both)."""
    if caf.private_key is None:
        raise DteSyncError("CAF_MALFORMED", params={"detail": "el CAF no trae RSASK (llave privada)"})
    texts, tsted = dd_fields(caf, **fields)
    signed = _dd_flat(caf, texts, tsted)
    frmt = base64.b64encode(caf.private_key.sign(signed, _PKCS1V15, _SHA1)).decode("ascii")
    ted = copy.deepcopy(_ted_template(caf, namespace))
    dd, frmt_el = ted
    for child, text in zip(dd, texts):  # RE..IT1 lead DD, in _DD_TAGS order
        child.text = text
    dd[-1].text = tsted
    frmt_el.text = frmt
    payload = b'<TED version="1.0">' + signed + f'<FRMT algoritmo="{ALGORITHM}">{frmt}</FRMT></TED>'.encode("ascii")
    return ted, payload


_TEMPLATES: dict[tuple[int, str | None], tuple["Caf", etree._Element]] = {}


def _ted_template(caf: "Caf", namespace: str | None) -> etree._Element:
    """`<TED><DD>RE..IT1 CAF TSTED</DD><FRMT/></TED>` with empty texts, built once per CAF:
    a deep copy of it is cheaper than building ten elements and copying the CAF each time."""
    key = (id(caf), namespace)
    cached = _TEMPLATES.get(key)
    if cached is not None and cached[0] is caf:
        return cached[1]
    q = (lambda t: f"{{{namespace}}}{t}") if namespace else (lambda t: t)
    ted = etree.Element(q("TED"), version="1.0", nsmap={None: namespace} if namespace else None)
    ted.append(_dd_element(caf, ("",) * len(_DD_TAGS), "", namespace))
    etree.SubElement(ted, q("FRMT"), algoritmo=ALGORITHM)
    if len(_TEMPLATES) >= 64:  # the CAFs of one store are few; anything else is a test or a verify
        _TEMPLATES.clear()
    _TEMPLATES[key] = (caf, ted)  # holding the CAF keeps its id() from being reused
    return ted


def ted_bytes(ted: etree._Element) -> bytes:
    """The PDF417 payload: the whole `<TED version="1.0">…</TED>` flattened, ISO-8859-1."""
    return flatten(ted)


# --- verification -------------------------------------------------------------------------------


def _child(el: etree._Element, name: str) -> etree._Element | None:
    for c in el:
        if isinstance(c.tag, str) and c.tag.rpartition("}")[2] == name:
            return c
    return None


def dd_values(ted: etree._Element) -> dict[str, str]:
    """DD's simple fields by tag (RE, TD, F, FE, RR, RSR, MNT, IT1, TSTED), text as written."""
    dd = _child(ted, "DD") if ted.tag.rpartition("}")[2] == "TED" else ted
    if dd is None:
        return {}
    return {c.tag.rpartition("}")[2]: (c.text or "") for c in dd if isinstance(c.tag, str) and len(c) == 0}


def verify_ted(
    ted: etree._Element, *, extra_keys: Mapping[int, "RSAPublicKey"] | None = None
) -> list[str]:
    """Problems with a TED (empty list = valid): FRMT, FRMA, and DD consistent with its CAF.

    Works on a TED inside a namespaced DTE. A DD holding `"`/`'` is accepted if it verifies
    under either escaping, since issuers differ and no SII sample settles it.
    `extra_keys` adds CAF signers by IDK (the sandbox's fake SII, IDK 666).
    """
    from sync.folios.caf import caf_from_element, verify_frma

    dd, frmt = _child(ted, "DD"), _child(ted, "FRMT")
    if dd is None or frmt is None:
        return ["TED sin DD o FRMT"]
    caf_el = _child(dd, "CAF")
    if caf_el is None:
        return ["DD sin CAF"]
    try:
        caf = caf_from_element(caf_el)
    except DteSyncError as e:
        return [f"CAF del TED inválido: {e.params.get('detail', e.code)}"]
    problems: list[str] = []
    if frmt.get("algoritmo") != ALGORITHM:
        problems.append(f"FRMT algoritmo={frmt.get('algoritmo')!r}, se esperaba {ALGORITHM}")
    if not _verifies(caf.public_key, frmt.text or "", dd):
        problems.append("FRMT no verifica con la llave pública (RSAPK) del CAF")
    frma_ok = verify_frma(caf, extra_keys=extra_keys)
    if frma_ok is None:
        problems.append(f"FRMA no verificable: IDK {caf.idk} desconocido")
    elif not frma_ok:
        problems.append(f"FRMA del CAF no verifica con la llave del SII (IDK {caf.idk})")
    problems.extend(_dd_consistency(dd_values(dd), caf))
    return problems


def _verifies(public_key: "RSAPublicKey", signature_b64: str, element: etree._Element) -> bool:
    try:
        signature = base64.b64decode("".join(signature_b64.split()), validate=True)
    except ValueError:
        return False
    readings = (True, False) if has_quotes(element) else (True,)
    for sii_quotes in readings:
        try:
            public_key.verify(signature, flatten(element, sii_quotes=sii_quotes), padding.PKCS1v15(), hashes.SHA1())
            return True
        except InvalidSignature:
            continue
    return False


def _dd_consistency(v: dict[str, str], caf: "Caf") -> list[str]:
    problems = []
    if v.get("RE") != str(caf.rut_emisor):
        problems.append(f"DD/RE {v.get('RE')!r} distinto del RE del CAF {caf.rut_emisor}")
    if v.get("TD") != str(caf.tipo_dte):
        problems.append(f"DD/TD {v.get('TD')!r} distinto del TD del CAF {caf.tipo_dte}")
    folio = v.get("F", "")
    if not folio.isdigit() or not caf.contains(int(folio)):
        problems.append(f"DD/F {folio!r} fuera del rango del CAF {caf.desde}-{caf.hasta}")
    for tag in ("RSR", "IT1"):
        if len(v.get(tag, "")) > DD_TEXT_MAX:
            problems.append(f"DD/{tag} tiene más de {DD_TEXT_MAX} caracteres")
    return problems
