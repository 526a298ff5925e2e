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


@lru_cache(maxsize=None)
def _plan(cls: type, kind: str, path: str) -> tuple[tuple[str, str], ...]:
    """(tag, field name) in XSD order for the fields of `cls` that the schema allows."""
    by_tag: dict[str, str] = {}
    for f in sii_fields(cls):
        by_tag[f.metadata["boleta" if kind == "boleta" else "sii"]] = f.name
    return tuple((tag, by_tag[tag]) for tag, _mn, _mx in ORDER[kind][path] if tag in by_tag)


@lru_cache(maxsize=None)
def _allowed(cls: type, kind: str, path: str) -> frozenset[str]:
    return frozenset(name for _tag, name in _plan(cls, kind, path))


def build_documento(doc: Documento, doc_id: str, parent: etree._Element | None = None) -> etree._Element:
    """`<Documento ID=doc_id>` with Encabezado..Comisiones (no TED, no TmstFirma yet)."""
    kind = schema_kind(doc.tipo_dte)
    if parent is None:
        documento = etree.Element(_Q + "Documento", nsmap={None: SII_NS})
    else:
        documento = etree.SubElement(parent, _Q + "Documento")
    documento.set("ID", doc_id)
    errors: list[DteSyncError] = []
    _emit(documento, doc, kind, "Documento", errors)
    if errors:
        raise DteSyncErrors(errors)
    return documento


def _emit(element: etree._Element, obj: Any, kind: str, path: str, errors: list[DteSyncError]) -> None:
    cls = type(obj)
    _check_not_allowed(obj, cls, kind, path, errors)
    for tag, name in _plan(cls, kind, path):
        value = getattr(obj, name)
        if value is None or (isinstance(value, list) and not value):
            continue
        for item in value if isinstance(value, list) else (value,):
            child = etree.SubElement(element, _Q + tag)
            if is_group(item):
                _emit(child, item, kind, f"{path}/{tag}", errors)
            else:
                child.text = format_value(item)


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
