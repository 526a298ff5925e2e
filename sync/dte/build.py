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

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from lxml import etree

from sync.dte.tag_order import ORDER
from sync.errors import DteSyncError, DteSyncErrors
from sync.model import Documento, is_group, sii_fields
from sync.timbre import PLAIN_LATIN1, latin1_text
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


# format_value for the exact types the model holds, without its isinstance chain (hot path).
_FORMAT_BY_TYPE = {int: str, date: date.isoformat, Rut: str, Decimal: format_value, datetime: format_value}

# Elements the engine fills after the input is accepted (the folio is taken last).
SUPPLIED_BY_ENGINE = frozenset({"Documento/Encabezado/IdDoc/Folio"})


@dataclass(frozen=True, slots=True)
class _Slot:
    """One child the schema defines for a group, resolved once: what to read and what to emit."""

    qtag: str  # "{SiiDte}Tag"
    tag: str
    name: str | None  # the model field, None if the model has none for this tag
    required: bool
    supplied: bool  # in SUPPLIED_BY_ENGINE: emitted empty while the model has no value


@dataclass(frozen=True, slots=True)
class _GroupPlan:
    slots: tuple[_Slot, ...]  # in XSD order, only those that can emit or report something
    not_allowed: tuple[tuple[str, str], ...]  # (field name, tag) with no place in this schema


@lru_cache(maxsize=None)
def _plan(cls: type, kind: str, path: str) -> _GroupPlan:
    meta = "boleta" if kind == "boleta" else "sii"
    fields = sii_fields(cls)
    by_tag = {f.metadata[meta]: f.name for f in fields}
    slots = []
    for tag, min_occurs, _mx in ORDER[kind][path]:
        supplied = f"{path}/{tag}" in SUPPLIED_BY_ENGINE
        slot = _Slot(_Q + tag, tag, by_tag.get(tag), bool(min_occurs) and not supplied, supplied)
        if slot.name or slot.required or slot.supplied:
            slots.append(slot)
    allowed = {slot.name for slot in slots if slot.name}
    return _GroupPlan(tuple(slots), tuple((f.name, f.metadata[meta]) for f in fields if f.name not in allowed))


def build_documento(doc: Documento, doc_id: str | None = None, parent: etree._Element | None = None,
                    nsmap: dict[str | None, str] | None = None) -> etree._Element:
    """`<Documento>` with Encabezado..Comisiones (no TED, no TmstFirma yet), in one walk that
    also reports every input problem the schema would: a required element missing
    (FIELD_REQUIRED with its path), a value with no place in this type's schema
    (FIELD_NOT_ALLOWED), text outside ISO-8859-1 (transliterated where safe, written back to
    the model so the body, the TED and the printout agree; TEXT_NOT_LATIN1 otherwise).
    Elements in SUPPLIED_BY_ENGINE are emitted empty when the model has no value yet.
    Without `parent`, Documento is a root declaring `nsmap` (default: only the SII namespace).
    """
    kind = schema_kind(doc.tipo_dte)
    if parent is None:
        documento = etree.Element(_Q + "Documento", nsmap=nsmap or {None: SII_NS})
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
    plan = _plan(type(obj), kind, path)
    if plan.not_allowed:
        _check_not_allowed(obj, plan, kind, path, errors)
    sub_element = etree.SubElement
    for slot in plan.slots:
        value = getattr(obj, slot.name) if slot.name else None
        if value is None or value == "" or (isinstance(value, list) and not value):
            if slot.required:
                errors.append(DteSyncError("FIELD_REQUIRED", field=slot.tag, path=f"{shown}/{slot.tag}"))
            elif slot.supplied:
                sub_element(element, slot.qtag)
            continue
        repeated = isinstance(value, list)
        for i, item in enumerate(value if repeated else (value,)):
            child = sub_element(element, slot.qtag)
            if isinstance(item, str):
                text = item if PLAIN_LATIN1.fullmatch(item) else _latin1(item, slot.tag, errors)
                if text is not item:
                    if repeated:
                        value[i] = text
                    else:
                        setattr(obj, slot.name, text)
                child.text = text
            elif is_group(item):
                tag = slot.tag
                _emit(child, item, kind, f"{path}/{tag}", f"{shown}/{tag}" + (f"[{i + 1}]" if repeated else ""), errors)
            else:
                fmt = _FORMAT_BY_TYPE.get(type(item))
                child.text = fmt(item) if fmt else format_value(item)


def _latin1(text: str, tag: str, errors: list[DteSyncError]) -> str:
    try:
        return latin1_text(text, tag)
    except DteSyncError as exc:
        errors.append(exc)
        return text


def _check_not_allowed(obj: Any, plan: _GroupPlan, kind: str, path: str, errors: list[DteSyncError]) -> None:
    for name, tag in plan.not_allowed:
        value = getattr(obj, name)
        if value is None or (isinstance(value, list) and not value):
            continue
        errors.append(
            DteSyncError(
                "FIELD_NOT_ALLOWED",
                field=tag,
                path=f"{path}/{tag}",
                found=format_value(value) if not isinstance(value, list) else None,
                params={"tipo_dte": "39/41 (boleta)" if kind == "boleta" else "33-61"},
            )
        )
