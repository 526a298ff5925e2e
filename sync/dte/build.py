"""Document model -> `<Documento>` XML, every tag in the order the SII XSD fixes.

The order comes from sync/dte/tag_order.py (generated from the shipped XSDs), per schema
kind: 'dte' (DTE_v10.xsd: 33, 34, 46, 52, 56, 61) or 'boleta' (EnvioBOLETA_v11.xsd: 39, 41),
so one model serializes correctly into both schemas (RznSoc vs RznSocEmisor, no Acteco in
boletas...). A field that has a value but no place in the document's schema is an input
error (FIELD_NOT_ALLOWED), reported with the others, never silently dropped.

Plans (tag -> field, nested or leaf) are computed once per (class, kind, path): building
a 3-line factura costs about a hundred microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from lxml import etree

from sync import safexml
from sync.dte.tag_order import ORDER
from sync.errors import DteSyncError, DteSyncErrors
from sync.model import Documento, is_group, sii_fields
from sync.rut import Rut
from sync.sii import SII_NS
from sync.sii_bytes import PLAIN_LATIN1, latin1_text


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
_FORMAT_BY_TYPE: dict[type, Callable[[Any], str]] = {
    int: str, date: date.isoformat, Rut: str, Decimal: format_value, datetime: format_value,
}

# Elements the engine fills after the input is accepted (the folio is taken last).
SUPPLIED_BY_ENGINE = frozenset({"Documento/Encabezado/IdDoc/Folio"})


@dataclass(frozen=True, slots=True)
class _GroupPlan:
    """What the schema allows in one group, resolved once per (class, kind, path)."""

    position: dict[str, tuple[int, str]]  # model field -> (XSD position, tag)
    required: tuple[tuple[int, str], ...]  # (position, tag) that must be present
    supplied: tuple[tuple[int, str], ...]  # in SUPPLIED_BY_ENGINE: emitted empty while unset
    not_allowed: dict[str, str]  # model field -> its tag, with no place in this schema


_PLANS: dict[tuple[type, str, str], _GroupPlan] = {}


def _plan(cls: type, kind: str, path: str) -> _GroupPlan:
    plan = _PLANS.get((cls, kind, path))
    if plan is None:
        plan = _PLANS[(cls, kind, path)] = _new_plan(cls, kind, path)
    return plan


def _new_plan(cls: type, kind: str, path: str) -> _GroupPlan:
    meta = "boleta" if kind == "boleta" else "sii"
    fields = sii_fields(cls)
    by_tag = {f.metadata[meta]: f.name for f in fields}
    position: dict[str, tuple[int, str]] = {}
    required: list[tuple[int, str]] = []
    supplied: list[tuple[int, str]] = []
    for index, (tag, min_occurs, _mx) in enumerate(ORDER[kind][path]):
        if f"{path}/{tag}" in SUPPLIED_BY_ENGINE:
            supplied.append((index, tag))
        elif min_occurs:
            required.append((index, tag))
        if tag in by_tag:
            position[by_tag[tag]] = (index, tag)
    not_allowed = {f.name: f.metadata[meta] for f in fields if f.name not in position}
    return _GroupPlan(position, tuple(required), tuple(supplied), not_allowed)


# Text that is Latin-1, allowed by XML and needs no escaping (no & < > or CR): the common case,
# checked with one regex; anything else goes through latin1_text and _escape.
_PLAIN_TEXT = re.compile("[\t\n\x20-\x25\x27-\x3b\x3d\x3f-\x7e\xa0-\xff]*")


def _escape(text: str) -> str:
    # CR as a reference: a literal one would be read back as LF (XML end-of-line handling).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def build_documento(doc: Documento, nsmap: dict[str | None, str] | None = None) -> etree._Element:
    """`<Documento>` with Encabezado..Comisiones (no TED, no TmstFirma yet), in one walk that
    also reports every input problem the schema would: a required element missing
    (FIELD_REQUIRED with its path), a value with no place in this type's schema
    (FIELD_NOT_ALLOWED), text outside ISO-8859-1 (transliterated where safe, written back to
    the model so the body, the TED and the printout agree; TEXT_NOT_LATIN1 otherwise).
    Elements in SUPPLIED_BY_ENGINE are emitted empty when the model has no value yet.
    Documento is a root declaring `nsmap` (default: only the SII namespace).

    The walk writes XML text and libxml2 parses it once: a third of the cost of creating
    each element through lxml's API, and the same tree.
    """
    kind = doc.tipo.schema
    declared = "".join(
        f' xmlns="{uri}"' if prefix is None else f' xmlns:{prefix}="{uri}"'
        for prefix, uri in (nsmap or {None: SII_NS}).items()
    )
    parts = [f"<Documento{declared}>"]  # no ID yet: the engine sets it with the folio
    errors: list[DteSyncError] = []
    _emit(parts, doc, kind, "Documento", "Documento", errors)
    if errors:
        raise DteSyncErrors(errors)
    parts.append("</Documento>")
    return safexml.fromstring("".join(parts))


def _emit(parts: list[str], obj: object, kind: str, path: str, shown: str, errors: list[DteSyncError]) -> None:
    """Append the children of one group, in XSD order, to `parts`."""
    plan = _plan(type(obj), kind, path)
    position = plan.position
    present: list[_Present] = []
    for name, value in obj.__dict__.items():
        if value is None or ((value.__class__ is str or value.__class__ is list) and not value):
            continue
        at = position.get(name)
        if at is None:
            if name in plan.not_allowed:
                _not_allowed(errors, plan.not_allowed[name], value, kind, path)
            continue
        present.append((at[0], at[1], name, value))
    if plan.required or plan.supplied:
        have = {item[0] for item in present}
        for index, tag in plan.required:
            if index not in have:
                errors.append(DteSyncError("FIELD_REQUIRED", field=tag, path=f"{shown}/{tag}"))
        present.extend((index, tag, None, None) for index, tag in plan.supplied if index not in have)
    present.sort(key=_position)
    plain = _PLAIN_TEXT.fullmatch
    for _index, tag, attr, value in present:
        if value is None:
            parts.append(f"<{tag}/>")
            continue
        repeated = type(value) is list
        for i, item in enumerate(value if repeated else (value,)):
            if isinstance(item, str):
                if not plain(item):
                    text = item if PLAIN_LATIN1.fullmatch(item) else _latin1(item, tag, errors)
                    if text is not item:
                        if repeated:
                            value[i] = text
                        elif attr is not None:
                            setattr(obj, attr, text)
                    item = _escape(text)
                parts.append(f"<{tag}>{item}</{tag}>")
            elif is_group(item):
                parts.append(f"<{tag}>")
                _emit(parts, item, kind, f"{path}/{tag}", f"{shown}/{tag}" + (f"[{i + 1}]" if repeated else ""), errors)
                parts.append(f"</{tag}>")
            else:
                fmt = _FORMAT_BY_TYPE.get(type(item))
                parts.append(f"<{tag}>{fmt(item) if fmt else _escape(format_value(item))}</{tag}>")


# (XSD position, tag, model field, value); field and value None for an empty supplied element
_Present = tuple[int, str, str | None, Any]


def _position(item: _Present) -> int:
    return item[0]


def _latin1(text: str, tag: str, errors: list[DteSyncError]) -> str:
    try:
        return latin1_text(text, tag)
    except DteSyncError as exc:
        errors.append(exc)
        return text


def _not_allowed(errors: list[DteSyncError], tag: str, value: Any, kind: str, path: str) -> None:
    errors.append(
        DteSyncError(
            "FIELD_NOT_ALLOWED",
            field=tag,
            path=f"{path}/{tag}",
            found=format_value(value) if not isinstance(value, list) else None,
            params={"tipo_dte": "39/41 (boleta)" if kind == "boleta" else "33-61"},
        )
    )
