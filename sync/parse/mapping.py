"""Neutral tree -> model dataclasses, shared by the XML, JSON and TXT readers.

Each reader only turns its syntax into a tree of `Node` (a group: ordered `(tag, value)`
entries) and `Leaf` (a text value), remembering the line where it knows one. Everything
about *meaning* happens here, once, driven by the model's `sii()` metadata, its type
annotations and the XSD facts in sync/dte/tag_order.py: which tags exist (and their boleta
spellings), which repeat and how often, which are required, the maximum lengths, and how
each value is written (entero, decimal con punto, fecha AAAA-MM-DD, RUT). So the three
formats accept exactly the same documents and report the same problems with the same codes.

All problems are collected (up to MAX_ERRORS) and raised together as `DteSyncErrors`.
The input is *not* a finished DTE: Folio, FchEmis, totals, MontoItem, the Emisor (from the
configuration) and a boleta's Receptor may be missing; the engine fills them in later.
Line numbers that the input leaves out (NroLinDet, NroLinRef, NroLinDR, NroSTI) are
filled here with the position, since they are pure bookkeeping.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

from sync import model
from sync.dte.tag_order import MAX_LENGTH, ORDER
from sync.errors import DteSyncError, DteSyncErrors
from sync.rut import Rut, RutError
from sync.sii import ISSUED_TYPES, TipoDte
from sync.sii_bytes import PLAIN_LATIN1

T = TypeVar("T")

MAX_ERRORS = 100
WS = " \t\r\n"  # XML's whitespace; str.strip() would also eat U+0085 and U+00A0, which are text here

# --- the neutral tree -------------------------------------------------------------------


@dataclass(slots=True)
class Leaf:
    """A simple value. `text` None means a value that is not text (JSON true, a nested list):
    `found` then says what it was, for the error message."""

    text: str | None
    line: int | None = None
    found: str | None = None


@dataclass(slots=True)
class Node:
    """A group of fields, in input order; a tag repeats as several entries."""

    entries: list[tuple[str, Node | Leaf]]
    line: int | None = None
    stray_text: str | None = None  # non-blank text mixed between child elements (XML)


@dataclass(frozen=True, slots=True)
class PathStyle:
    """How a reader names places: `Documento/Detalle[2]/PrcItem` (XML, TXT: 1-based) or
    `Documento.Detalle[1].PrcItem` (JSON: 0-based, as JavaScript programmers count)."""

    sep: str
    base: int


XML_PATHS = PathStyle("/", 1)
JSON_PATHS = PathStyle(".", 0)

# --- what the model says about each class --------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class FieldSpec:
    name: str  # python attribute
    tag: str  # SII tag (DTE schema)
    boleta_tag: str  # SII tag in the boleta schema
    many: bool
    kind: str  # 'str' 'int' 'dec' 'date' 'datetime' 'rut' 'group'
    cls: type | None  # the nested dataclass for kind 'group'
    convert: Any = None  # text -> value, raising _Invalid or RutError (scalars only)

    def tag_for(self, schema: str) -> str:
        return self.boleta_tag if schema == "boleta" else self.tag


@dataclass(frozen=True, slots=True)
class ClassSpec:
    cls: type
    fields: tuple[FieldSpec, ...]
    by_tag: dict[str, FieldSpec]  # both spellings
    by_folded: dict[str, FieldSpec]  # lower-cased spellings (TXT is case-insensitive)

    def lookup(self, tag: str, fold_case: bool = False) -> FieldSpec | None:
        spec = self.by_tag.get(tag)
        if spec is None and fold_case:
            spec = self.by_folded.get(tag.lower())
        return spec


_SCALARS = {str: "str", int: "int", Decimal: "dec", date: "date", datetime: "datetime", Rut: "rut"}


def _field_kind(hint: Any) -> tuple[str, type | None]:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is list or (len(args) == 1 and typing.get_origin(args[0]) is list):
        hint = typing.get_args(hint if typing.get_origin(hint) is list else args[0])[0]
    elif args:
        hint = args[0]
    if hint in _SCALARS:  # before the dataclass test: Rut is a dataclass too
        return _SCALARS[hint], None
    return "group", hint


@cache
def class_spec(cls: type) -> ClassSpec:
    """The tags of one model class, resolved once (annotations are strings in the model)."""
    hints = typing.get_type_hints(cls, vars(model))
    specs = []
    for f in model.sii_fields(cls):
        kind, sub = _field_kind(hints[f.name])
        specs.append(FieldSpec(f.name, f.metadata["sii"], f.metadata["boleta"], f.metadata["many"], kind, sub,
                               _CONVERTERS.get(kind)))
    by_tag = {}
    for s in specs:
        by_tag[s.tag] = s
        by_tag[s.boleta_tag] = s
    return ClassSpec(cls, tuple(specs), by_tag, {t.lower(): s for t, s in by_tag.items()})


# --- what the XSDs say about each group ----------------------------------------------------

# Not required in an *input*: the engine or the configuration fills them (see module doc).
_NOT_REQUIRED = frozenset(
    {
        "Documento/Encabezado",  # reported as the missing TipoDTE instead
        "Documento/Detalle",  # checked once, for both schemas
        "Documento/Encabezado/IdDoc",
        "Documento/Encabezado/IdDoc/TipoDTE",
        "Documento/Encabezado/IdDoc/Folio",
        "Documento/Encabezado/IdDoc/FchEmis",
        "Documento/Encabezado/IdDoc/IndServicio",
        "Documento/Encabezado/Emisor",
        "Documento/Encabezado/Totales",
        "Documento/Detalle/NroLinDet",
        "Documento/Detalle/MontoItem",
        "Documento/Referencia/NroLinRef",
        "Documento/DscRcgGlobal/NroLinDR",
        "Documento/SubTotInfo/NroSTI",
    }
)
_NOT_REQUIRED_UNDER = ("Documento/Encabezado/Emisor/", "Documento/Encabezado/Totales/")
_NOT_REQUIRED_BOLETA = frozenset({"Documento/Encabezado/Receptor"})
_NOT_REQUIRED_UNDER_BOLETA = ("Documento/Encabezado/Receptor/",)

# Tags the engine adds itself: an input carrying them was stamped or signed elsewhere.
SIGNED_TAGS = frozenset({"TED", "TmstFirma", "Signature"})


def _is_required(schema: str, path: str) -> bool:
    if path in _NOT_REQUIRED or path.startswith(_NOT_REQUIRED_UNDER):
        return False
    return not (schema == "boleta" and (path in _NOT_REQUIRED_BOLETA or path.startswith(_NOT_REQUIRED_UNDER_BOLETA)))


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """What the schema of a document kind says about one group, keyed by FieldSpec."""

    spec: ClassSpec
    allowed: frozenset[FieldSpec]
    max_occurs: dict[FieldSpec, int]
    required: tuple[FieldSpec, ...]
    max_length: dict[FieldSpec, int]
    child_mpath: dict[FieldSpec, str]


@cache
def group_plan(schema: str, cls: type, mpath: str) -> GroupPlan:
    spec = class_spec(cls)
    order = ORDER[schema].get(mpath, ())
    prefix = mpath + "/"
    occurs = {t: (mn, mx) for t, mn, mx in order}
    fields = spec.fields
    return GroupPlan(
        spec,
        frozenset(f for f in fields if f.tag_for(schema) in occurs),
        {f: occurs[f.tag_for(schema)][1] for f in fields if f.tag_for(schema) in occurs},
        tuple(f for f in fields if occurs.get(f.tag_for(schema), (0,))[0] >= 1
              and _is_required(schema, prefix + f.tag_for(schema))),
        {f: MAX_LENGTH[schema][prefix + f.tag_for(schema)] for f in fields
         if f.kind == "str" and prefix + f.tag_for(schema) in MAX_LENGTH[schema]},
        {f: prefix + f.tag for f in fields if f.cls is not None},
    )


# --- values -----------------------------------------------------------------------------

_INT_RE = re.compile(r"[+-]?\d{1,18}(?:\.0*)?")
_DEC_RE = re.compile(r"[+-]?(?:\d{1,18}(?:\.\d{0,10})?|\.\d{1,10})")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")

EXPECTED = {
    "str": "texto",
    "int": "entero (sin separador de miles)",
    "dec": "decimal con punto (sin separador de miles)",
    "date": "fecha AAAA-MM-DD",
    "datetime": "fecha y hora AAAA-MM-DDTHH:MM:SS",
    "rut": "RUT 12345678-9",
    "group": "grupo de campos",
}

# Windows-1252 printable characters outside ISO-8859-1, written the way the SII's
# ISO-8859-1 documents can carry them (ERPs on Windows produce these constantly: Word's
# curly quotes, the euro sign, dashes). Anything else outside ISO-8859-1 is refused.
_CP1252_FOLD = {
    "€": "EUR", "‚": ",", "ƒ": "f", "„": '"', "…": "...", "†": "+", "‡": "+", "ˆ": "^",
    "‰": "o/oo", "Š": "S", "‹": "<", "Œ": "OE", "Ž": "Z", "‘": "'", "’": "'", "“": '"',
    "”": '"', "•": "-", "–": "-", "—": "-", "˜": "~", "™": "TM", "š": "s", "›": ">",
    "œ": "oe", "ž": "z", "Ÿ": "Y",
}


class _Invalid(Exception):
    def __init__(self, expected: str):
        self.expected = expected


def is_utf8(data: bytes) -> bool:
    """Whether the bytes decode as UTF-8 (a Latin-1 declaration over UTF-8 bytes is a mistake)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def clean_text(text: str) -> str:
    """Trimmed text fit for an ISO-8859-1 DTE (see _CP1252_FOLD); raises _Invalid."""
    text = text.strip(WS)
    if PLAIN_LATIN1.fullmatch(text):
        return text
    out = []
    for ch in text:
        o = ord(ch)
        if 0x80 <= o <= 0x9F:  # a Windows-1252 byte read as ISO-8859-1: take it as 1252
            try:
                ch = bytes([o]).decode("cp1252")
            except UnicodeDecodeError:
                raise _Invalid("texto sin caracteres de control") from None
        if ch in _CP1252_FOLD:
            out.append(_CP1252_FOLD[ch])
        elif o < 0x20 and ch not in "\t\n\r" or o == 0x7F:
            raise _Invalid("texto sin caracteres de control")
        elif ord(ch) > 0xFF:
            raise _Invalid("texto representable en ISO-8859-1 (Latin-1)")
        else:
            out.append(ch)
    return "".join(out)


def _to_int(text: str) -> int:
    text = text.strip(WS)
    if _INT_RE.fullmatch(text):
        return int(text.split(".", 1)[0])
    raise _Invalid(EXPECTED["int"])


def _to_decimal(text: str) -> Decimal:
    text = text.strip(WS)
    if _DEC_RE.fullmatch(text):
        return Decimal(text)
    raise _Invalid(EXPECTED["dec"])


def _to_date(text: str) -> date:
    text = text.strip(WS)
    if _DATE_RE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise _Invalid(EXPECTED["date"])


def _to_datetime(text: str) -> datetime:
    text = text.strip(WS)
    if _DATETIME_RE.fullmatch(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise _Invalid(EXPECTED["datetime"])


_CONVERTERS = {"str": clean_text, "int": _to_int, "dec": _to_decimal, "date": _to_date,
               "datetime": _to_datetime, "rut": Rut.parse}


# --- the mapper -----------------------------------------------------------------------------


class _Mapper:
    def __init__(self, schema: str, style: PathStyle, source: str | None, fold_case: bool, tipo_dte: Any):
        self.schema = schema
        self.style = style
        self.source = source
        self.fold_case = fold_case
        self.tipo_dte = tipo_dte
        self.errors: list[DteSyncError] = []

    def error(self, code: str, *, line: int | None, path: str, **kw: Any) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(DteSyncError(code, line=line, path=path, source=self.source, **kw))

    def group(self, node: Node, cls: type[T], path: str, mpath: str) -> T:
        group_cls: type = cls  # lru_cache's Hashable check trips over type[T] (mypy)
        plan = group_plan(self.schema, group_cls, mpath)
        by_tag, by_folded, fold, allowed = plan.spec.by_tag, plan.spec.by_folded, self.fold_case, plan.allowed
        max_length = plan.max_length
        if node.stray_text:
            self.error("FIELD_INVALID", line=node.line, path=path, field=mpath.rsplit("/", 1)[-1],
                       expected=EXPECTED["group"], found=node.stray_text.strip(WS))
        kwargs: dict[str, Any] = {}
        flagged: set[str] | None = None  # fields already reported as repeated / too many
        for tag, value in node.entries:
            f = by_tag.get(tag)
            if f is None and fold:
                f = by_folded.get(tag.lower())
            if f is None:
                self._unknown(tag, value, plan.spec, path)
                continue
            if f not in allowed:
                self.error("FIELD_NOT_ALLOWED", line=value.line, path=path + self.style.sep + tag, field=tag,
                           params={"tipo_dte": self.tipo_dte})
                continue
            name = f.name
            if type(value) is Leaf:
                text = value.text
                if text is not None:
                    if not text.strip(WS):
                        continue  # empty means absent (fixed-layout writers leave fields blank)
                    if not f.many and f.cls is None and name not in kwargs:
                        # The common case (one scalar field, first time), without value()'s checks.
                        try:
                            result = f.convert(text)
                        except (_Invalid, RutError):
                            kwargs[name] = self.value(f, tag, value, path, 0, plan)  # reports it
                            continue
                        maxlen = max_length.get(f)
                        if maxlen is not None and len(result) > maxlen:
                            self.error("FIELD_TOO_LONG", line=value.line, path=path + self.style.sep + tag,
                                       field=tag, expected=maxlen, found=len(result))
                        kwargs[name] = result
                        continue
            if f.many:
                items = kwargs.get(name)
                if items is None:
                    items = kwargs[name] = []
                limit = plan.max_occurs.get(f)
                if limit is not None and len(items) >= limit:
                    if flagged is None or name not in flagged:
                        flagged = (flagged or set()) | {name}
                        self.error("TOO_MANY", line=value.line, path=self._item_path(path, tag, f, limit), field=tag,
                                   expected=limit, found=self._count(node, f, plan.spec))
                    continue
                items.append(self.value(f, tag, value, path, len(items), plan))
            elif name in kwargs:  # the first one is still checked; report the repetition once
                if flagged is None or name not in flagged:
                    flagged = (flagged or set()) | {name}
                    self.error("FIELD_REPEATED", line=value.line, path=path + self.style.sep + tag, field=tag)
            else:
                kwargs[name] = self.value(f, tag, value, path, 0, plan)
        for f in plan.required:
            if f.name not in kwargs:
                tag = f.tag_for(self.schema)
                self.error("FIELD_REQUIRED", line=node.line, path=path + self.style.sep + tag, field=tag)
        return cls(**kwargs)

    def _count(self, node: Node, f: FieldSpec, spec: ClassSpec) -> int:
        return sum(1 for t, v in node.entries if spec.lookup(t, self.fold_case) is f
                   and not (type(v) is Leaf and v.text is not None and not v.text.strip(WS)))

    def value(self, f: FieldSpec, tag: str, value: Node | Leaf, parent: str, i: int, plan: GroupPlan) -> Any:
        if f.cls is not None:
            if isinstance(value, Leaf):
                if value.text is None or value.text.strip(WS):
                    self.error("FIELD_INVALID", line=value.line, path=self._item_path(parent, tag, f, i), field=tag,
                               expected=EXPECTED["group"], found=value.found or value.text)
                    return None
                value = Node([], value.line)
            return self.group(value, f.cls, self._item_path(parent, tag, f, i), plan.child_mpath[f])
        if isinstance(value, Node) or value.text is None:
            self.error("FIELD_INVALID", line=value.line, path=self._item_path(parent, tag, f, i), field=tag,
                       expected=EXPECTED[f.kind], found=value.found if isinstance(value, Leaf) else "grupo de campos")
            return None
        try:
            result = f.convert(value.text)
        except _Invalid as exc:
            self.error("FIELD_INVALID", line=value.line, path=self._item_path(parent, tag, f, i), field=tag,
                       expected=exc.expected, found=value.text.strip(WS))
            return None
        except RutError as exc:
            self.error("RUT_INVALID", line=value.line, path=self._item_path(parent, tag, f, i), field=tag,
                       found=value.text.strip(WS), params={"detail": exc.reason})
            return None
        maxlen = plan.max_length.get(f)
        if maxlen is not None and len(result) > maxlen:
            self.error("FIELD_TOO_LONG", line=value.line, path=self._item_path(parent, tag, f, i), field=tag,
                       expected=maxlen, found=len(result))
        return result

    def _item_path(self, path: str, tag: str, f: FieldSpec, i: int) -> str:
        base = path + self.style.sep + tag
        return f"{base}[{i + self.style.base}]" if f.many else base

    def _unknown(self, tag: str, value: Node | Leaf, spec: ClassSpec, path: str) -> None:
        where = path + self.style.sep + tag
        if tag in SIGNED_TAGS or tag.lower() in ("ted", "tmstfirma", "signature"):
            self.error("INPUT_SIGNED", line=value.line, path=where, field=tag)
            return
        hint = spec.by_folded.get(tag.lower())
        self.error("FIELD_UNKNOWN", line=value.line, path=where, field=tag,
                   expected=hint.tag_for(self.schema) if hint else None)


def _number(doc: model.Documento) -> None:
    for items, attr in ((doc.detalle, "nro_lin_det"), (doc.referencia, "nro_lin_ref"),
                        (doc.dsc_rcg_global, "nro_lin_dr"), (doc.sub_tot_info, "nro_sti")):
        for i, item in enumerate(items, 1):
            if item is not None and getattr(item, attr) is None:
                setattr(item, attr, i)


def _find_tipo_dte(root: Node, fold_case: bool) -> Node | Leaf | None:
    node: Node | Leaf | None = root
    for tag in ("Encabezado", "IdDoc", "TipoDTE"):
        if type(node) is not Node:
            return None
        node = next((v for t, v in node.entries if t == tag or (fold_case and t.lower() == tag.lower())), None)
    return node


def _peek_tipo_dte(root: Node, fold_case: bool) -> Any:
    """The TipoDTE as written (before mapping), to pick the schema the rest is checked by."""
    leaf = _find_tipo_dte(root, fold_case)
    if type(leaf) is Leaf and leaf.text is not None:
        text = leaf.text.strip(WS)
        return int(text.split(".", 1)[0]) if _INT_RE.fullmatch(text) else text
    return None


def to_documento(root: Node, *, style: PathStyle = XML_PATHS, source: str | None = None,
                 fold_case: bool = False, errors: list[DteSyncError] | None = None) -> model.Documento:
    """Map a reader's tree (rooted at Documento) to the model, or raise every problem found.

    `errors` are problems the reader already found (e.g. TXT syntax); they are reported
    together with the mapping problems, in that order."""
    tipo = _peek_tipo_dte(root, fold_case)
    known = TipoDte.of(tipo) if tipo is not None else None
    schema = known.schema if known is not None else "dte"
    m = _Mapper(schema, style, source, fold_case, tipo)
    if errors:
        m.errors.extend(errors[:MAX_ERRORS])
    doc = m.group(root, model.Documento, "Documento", "Documento")
    _final_checks(m, doc, root)
    if m.errors:
        raise DteSyncErrors(sorted(m.errors, key=lambda e: e.line if e.line is not None else 1 << 62))
    _number(doc)
    return doc


def _final_checks(m: _Mapper, doc: model.Documento, root: Node) -> None:
    tipo_path = m.style.sep.join(("Documento", "Encabezado", "IdDoc", "TipoDTE"))
    id_doc = doc.encabezado.id_doc if doc.encabezado else None
    tipo = id_doc.tipo_dte if id_doc else None
    if tipo is None:
        if not any(e.field == "TipoDTE" or e.field == "IdDoc" or e.field == "Encabezado" for e in m.errors):
            m.error("FIELD_REQUIRED", line=root.line, path=tipo_path, field="TipoDTE")
    elif tipo not in ISSUED_TYPES:
        m.error("TIPO_DTE_UNSUPPORTED", line=getattr(_find_tipo_dte(root, m.fold_case), "line", None), path=tipo_path,
                field="TipoDTE", found=tipo, expected=", ".join(str(int(t)) for t in sorted(ISSUED_TYPES)))
    if not doc.detalle and not any(e.field == "Detalle" for e in m.errors):
        m.error("FIELD_REQUIRED", line=root.line, path="Documento" + m.style.sep + "Detalle", field="Detalle")


MANY_TAGS = frozenset(
    f.tag for c in vars(model).values() if isinstance(c, type) and is_dataclass(c) for f in class_spec(c).fields if f.many
)
