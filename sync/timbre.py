"""The TED (Timbre Electrónico DTE): the DD summary signed with the CAF key.

The SII checks FRMT over the SII byte form of DD (SII Instructivo Técnico de Emisión
v15.10.09, Anexo 2 A.2.4; `sync.sii_bytes.flatten`: no namespace declarations, no
whitespace-only text between tags, ISO-8859-1, `&quot;`/`&apos;` in text). Stamping writes
those bytes directly from the DD texts (`_dd_flat`, pinned to `flatten` by a property test);
the PDF417 payload and verification flatten the element itself.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import TypedDict, Unpack

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from lxml import etree

from sync.errors import DteSyncError
from sync.folios.caf import Caf, caf_from_element, verify_frma
from sync.rut import Rut, RutError
from sync.sii_bytes import XML_WS, cut, flatten, has_quotes, latin1_text, local_name, sii_text

DD_TEXT_MAX = 40  # RSR and IT1 (XSD: 1..40), cut by characters, never trimmed
ALGORITHM = "SHA1withRSA"
_PKCS1V15 = padding.PKCS1v15()
_SHA1 = hashes.SHA1()


class DdFields(TypedDict):
    """What a DD says about its document (RE and the CAF come from the CAF itself)."""

    tipo_dte: int
    folio: int
    fch_emis: date
    rut_recep: str | Rut
    rzn_soc_recep: str
    mnt_total: int
    it1: str
    tsted: datetime


# --- building and stamping --------------------------------------------------------------------


_DD_TAGS = ("RE", "TD", "F", "FE", "RR", "RSR", "MNT", "IT1")  # then CAF, TSTED


def dd_fields(
    caf: Caf,
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


def build_dd(caf: Caf, *, namespace: str | None = None, **fields: Unpack[DdFields]) -> etree._Element:
    """DD in SII order RE TD F FE RR RSR MNT IT1 CAF TSTED (fields: see `dd_fields`).

    `namespace=SII_NS` builds the elements inside the DTE namespace so the TED can be
    appended to a namespaced Documento; the signed bytes are the same either way.
    """
    texts, tsted = dd_fields(caf, **fields)
    return _dd_element(caf, texts, tsted, namespace)


def _qualifier(namespace: str | None) -> Callable[[str], str]:
    """Tag names in `namespace` (None: no namespace)."""
    if namespace:
        return lambda t: f"{{{namespace}}}{t}"
    return lambda t: t


def _dd_element(caf: Caf, texts: tuple[str, ...], tsted: str, namespace: str | None) -> etree._Element:
    q = _qualifier(namespace)
    dd = etree.Element(q("DD"), nsmap={None: namespace} if namespace else None)
    for tag, text in zip(_DD_TAGS, texts, strict=True):
        etree.SubElement(dd, q(tag)).text = text
    dd.append(caf.caf_element(namespace))
    etree.SubElement(dd, q("TSTED")).text = tsted
    return dd


def _dd_flat(caf: Caf, texts: tuple[str, ...], tsted: str) -> bytes:
    """flatten(DD) without walking the tree: the hot path (a property test pins the equality)."""
    parts = ["<DD>"]
    for tag, text in zip(_DD_TAGS, texts, strict=True):
        parts.append(f"<{tag}>{sii_text(text)}</{tag}>")
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
    text = cut(latin1_text(value or "", field), DD_TEXT_MAX)
    if not text.strip(XML_WS):
        raise DteSyncError("FIELD_REQUIRED", field=field)
    return text


def stamp(caf: Caf, *, namespace: str | None = None, **fields: Unpack[DdFields]) -> etree._Element:
    """The TED element: DD (fields: see `dd_fields`) plus FRMT signed with the CAF key."""
    return stamp_with_bytes(caf, namespace=namespace, **fields)[0]


def stamp_with_bytes(
    caf: Caf, *, namespace: str | None = None, **fields: Unpack[DdFields]
) -> tuple[etree._Element, bytes]:
    """`stamp` plus `ted_bytes` of the result, computed once (the engine wants both)."""
    if caf.private_key is None:
        raise DteSyncError("CAF_MALFORMED", params={"detail": "el CAF no trae RSASK (llave privada)"})
    texts, tsted = dd_fields(caf, **fields)
    signed = _dd_flat(caf, texts, tsted)
    frmt = base64.b64encode(caf.private_key.sign(signed, _PKCS1V15, _SHA1)).decode("ascii")
    ted = copy.deepcopy(_ted_template(caf, namespace))
    dd, frmt_el = ted
    for child, text in zip(dd, texts, strict=False):  # RE..IT1 lead DD, in _DD_TAGS order
        child.text = text
    dd[-1].text = tsted
    frmt_el.text = frmt
    payload = b'<TED version="1.0">' + signed + f'<FRMT algoritmo="{ALGORITHM}">{frmt}</FRMT></TED>'.encode("ascii")
    return ted, payload


_TEMPLATES: dict[tuple[int, str | None], tuple[Caf, etree._Element]] = {}


def _ted_template(caf: Caf, namespace: str | None) -> etree._Element:
    """`<TED><DD>RE..IT1 CAF TSTED</DD><FRMT/></TED>` with empty texts, built once per CAF:
    a deep copy of it is cheaper than building ten elements and copying the CAF each time."""
    key = (id(caf), namespace)
    cached = _TEMPLATES.get(key)
    if cached is not None and cached[0] is caf:
        return cached[1]
    q = _qualifier(namespace)
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
        if isinstance(c.tag, str) and local_name(c.tag) == name:
            return c
    return None


def dd_values(ted: etree._Element) -> dict[str, str]:
    """DD's simple fields by tag (RE, TD, F, FE, RR, RSR, MNT, IT1, TSTED), text as written."""
    dd = _child(ted, "DD") if local_name(ted.tag) == "TED" else ted
    if dd is None:
        return {}
    return {local_name(c.tag): (c.text or "") for c in dd if isinstance(c.tag, str) and len(c) == 0}


def verify_ted(
    ted: etree._Element, *, extra_keys: Mapping[int, RSAPublicKey] | None = None
) -> list[str]:
    """Problems with a TED (empty list = valid): FRMT, FRMA, and DD consistent with its CAF.

    Works on a TED inside a namespaced DTE. A DD holding `"`/`'` is accepted if it verifies
    under either escaping, since issuers differ and no SII sample settles it.
    `extra_keys` adds CAF signers by IDK (the sandbox's fake SII, IDK 666).
    """
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


def _verifies(public_key: RSAPublicKey, signature_b64: str, element: etree._Element) -> bool:
    try:
        signature = base64.b64decode("".join(signature_b64.split()), validate=True)
    except ValueError:
        return False
    readings = (True, False) if has_quotes(element) else (True,)
    for sii_quotes in readings:
        try:
            public_key.verify(signature, flatten(element, sii_quotes=sii_quotes), _PKCS1V15, _SHA1)
            return True
        except InvalidSignature:
            continue
    return False


def _dd_consistency(v: dict[str, str], caf: Caf) -> list[str]:
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
