"""Document model -> `<Documento>` XML, every tag in the order the SII XSD fixes.

The order comes from sync/dte/tag_order.py (generated from the shipped XSDs), per schema
kind: 'dte' (DTE_v10.xsd: 33, 34, 46, 52, 56, 61) or 'boleta' (EnvioBOLETA_v11.xsd: 39, 41),
so one model serializes correctly into both schemas (RznSoc vs RznSocEmisor, no Acteco in
boletas...). A field that has a value but no place in the document's schema is an input
error (FIELD_NOT_ALLOWED), reported with the others, never silently dropped.

Plans (tag -> field, nested or leaf) are computed once per (class, kind, path): building
a 3-line factura costs tens of microseconds.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from lxml import etree

from sync.dte.tag_order import ORDER
from sync.errors import DteSyncError, DteSyncErrors
from sync.model import Documento, is_group, sii_fields
from sync.timbre import latin1_text
from sync.rut import Rut

SII_NS = "http://www.sii.cl/SiiDte"
_Q = "{" + SII_NS + "}"


def schema_kind(tipo_dte: int) -> str:
    return "boleta" if tipo_dte in (39, 41) else "dte"


def format_value(value: Any) -> str:
    """SII text form: integers plain, decimals with '.' and no exponent or trailing zeros."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        text = format(value, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text or "0"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Rut):
        return str(value)
    return str(value)


# Elements the engine fills after the input is accepted (the folio is taken last).
SUPPLIED_BY_ENGINE = frozenset({"Documento/Encabezado/IdDoc/Folio"})


@lru_cache(maxsize=None)
def _plan(cls: type, kind: str, path: str) -> tuple[tuple[str, str | None, bool], ...]:
    """(tag, field name or None, required) for every child the schema defines, in XSD order."""
    by_tag = {f.metadata["boleta" if kind == "boleta" else "sii"]: f.name for f in sii_fields(cls)}
    return tuple(
        (tag, by_tag.get(tag), bool(min_occurs) and f"{path}/{tag}" not in SUPPLIED_BY_ENGINE)
        for tag, min_occurs, _mx in ORDER[kind][path]
    )


@lru_cache(maxsize=None)
def _allowed(cls: type, kind: str, path: str) -> frozenset[str]:
    return frozenset(name for _tag, name, _req in _plan(cls, kind, path) if name)


def build_documento(doc: Documento, doc_id: str | None = None, parent: etree._Element | None = None) -> etree._Element:
    """`<Documento>` with Encabezado..Comisiones (no TED, no TmstFirma yet), in one walk that
    also reports every input problem the schema would: a required element missing
    (FIELD_REQUIRED with its path), a value with no place in this type's schema
    (FIELD_NOT_ALLOWED), text outside ISO-8859-1 (transliterated where safe, written back to
    the model so the body, the TED and the printout agree; TEXT_NOT_LATIN1 otherwise).
    Elements in SUPPLIED_BY_ENGINE are emitted empty when the model has no value yet.
    """
    kind = schema_kind(doc.tipo_dte)
    if parent is None:
        documento = etree.Element(_Q + "Documento", nsmap={None: SII_NS})
    else:
        documento = etree.SubElement(parent, _Q + "Documento")
    if doc_id:
        documento.set("ID", doc_id)
    errors: list[DteSyncError] = []
    _emit(documento, doc, kind, "Documento", "Documento", errors)
    if errors:
        raise DteSyncErrors(errors)
    return documento


def _emit(element: etree._Element, obj: Any, kind: str, path: str, shown: str, errors: list[DteSyncError]) -> None:
    cls = type(obj)
    _check_not_allowed(obj, cls, kind, path, errors)
    for tag, name, required in _plan(cls, kind, path):
        value = getattr(obj, name) if name else None
        if value is None or value == "" or (isinstance(value, list) and not value):
            if required:
                errors.append(DteSyncError("FIELD_REQUIRED", field=tag, path=f"{shown}/{tag}"))
            elif f"{path}/{tag}" in SUPPLIED_BY_ENGINE:
                etree.SubElement(element, _Q + tag)
            continue
        repeated = isinstance(value, list)
        for i, item in enumerate(value if repeated else (value,)):
            child = etree.SubElement(element, _Q + tag)
            if is_group(item):
                _emit(child, item, kind, f"{path}/{tag}", f"{shown}/{tag}" + (f"[{i + 1}]" if repeated else ""), errors)
            elif isinstance(item, str):
                text = _latin1(item, tag, errors)
                if text is not item:
                    if repeated:
                        value[i] = text
                    else:
                        setattr(obj, name, text)
                child.text = text
            else:
                child.text = format_value(item)


def _latin1(text: str, tag: str, errors: list[DteSyncError]) -> str:
    try:
        return latin1_text(text, tag)
    except DteSyncError as exc:
        errors.append(exc)
        return text


@lru_cache(maxsize=None)
def _fields_of(cls: type) -> tuple:
    return tuple(sii_fields(cls))


def _check_not_allowed(obj: Any, cls: type, kind: str, path: str, errors: list[DteSyncError]) -> None:
    allowed = _allowed(cls, kind, path)
    for f in _fields_of(cls):
        if f.name in allowed:
            continue
        value = getattr(obj, f.name)
        if value is None or (isinstance(value, list) and not value):
            continue
        tag = f.metadata["boleta" if kind == "boleta" else "sii"]
        errors.append(
            DteSyncError(
                "FIELD_NOT_ALLOWED",
                field=tag,
                path=f"{path}/{tag}",
                found=format_value(value) if not isinstance(value, list) else None,
                params={"tipo_dte": "39/41 (boleta)" if kind == "boleta" else "33-61"},
            )
        )
