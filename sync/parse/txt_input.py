"""TXT input: a flat, line-oriented form of the SII document for old ERPs (docs/formats/txt.md).

    #charset=ISO-8859-1          optional, first line only
    # a comment                  also ';' comments; blank lines are ignored
    [Encabezado.IdDoc]           a section: the path of a group below Documento
    TipoDTE=33                   Tag=value, Tag named as in the SII XML (any case)
    [Detalle]                    a repeated group: every header starts a new one
    NmbItem=Tornillo 6 mm
    [Detalle.CdgItem]            a sub-group of the *last* Detalle

A section of a single (non-repeated) group may be opened once; its parents are created
when first needed (`[Encabezado.Receptor]` needs no `[Encabezado]`), but a repeated parent
must already exist, so a `[Detalle.CdgItem]` before any `[Detalle]` fails loudly instead of
inventing a line. Encoding: UTF-8 BOM, else a `#charset=` first line, else UTF-8 when the
bytes are valid UTF-8, else ISO-8859-1 with 0x80-0x9F read as Windows-1252.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sync import model
from sync.errors import DteSyncError, DteSyncErrors
from sync.parse.mapping import (
    MAX_ERRORS,
    SIGNED_TAGS,
    XML_PATHS,
    FieldSpec,
    Leaf,
    Node,
    class_spec,
    is_utf8,
    to_documento,
)

BOM = b"\xef\xbb\xbf"
_CHARSET_RE = re.compile(rb"[ \t]*#[ \t]*charset[ \t]*[=:][ \t]*([^\s]*)[ \t]*(?:\r\n|\r|\n|$)", re.I)
_CHARSETS = {
    "UTF-8": "utf-8", "UTF8": "utf-8",
    "ISO-8859-1": "latin-1", "ISO8859-1": "latin-1", "LATIN1": "latin-1", "LATIN-1": "latin-1",
    "WINDOWS-1252": "latin-1", "CP1252": "latin-1", "ANSI": "latin-1",
}
_TAG_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*")
# Tag=value; the value's trailing blanks are cut with rstrip (a lazy `(.*?)[ \t]*$` costs a
# backtracking step per character: 4 µs on a long line instead of 0.5).
_FIELD_RE = re.compile(r"[ \t]*([A-Za-z][A-Za-z0-9]*)[ \t]*=[ \t]*(.*)")
_TXT_WS = " \t"


def decode_txt(data: bytes, source: str | None = None) -> str:
    """The text of a TXT input by the documented rule; INPUT_ENCODING when it contradicts itself.

    Single-byte text is decoded as ISO-8859-1 (every byte is a character); the 0x80-0x9F
    range is then read as Windows-1252 by the mapper, which knows the field it is in."""
    bom = data.startswith(BOM)
    if bom:
        data = data[3:]
    declared = None
    written = ""  # the charset as the first line names it
    m = _CHARSET_RE.match(data)
    if m:
        written = m.group(1).decode("latin-1")
        name = written.upper()
        declared = _CHARSETS.get(name)
        if declared is None:
            raise _fail(source, "INPUT_ENCODING", line=1, found=name,
                        detail=f"charset '{name}' no soportado (use UTF-8 o ISO-8859-1)")
        if bom and declared != "utf-8":
            raise _fail(source, "INPUT_ENCODING", line=1, found=name,
                        detail=f"el archivo trae BOM UTF-8 pero declara {name}")
    if bom or declared == "utf-8":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise _fail(source, "INPUT_ENCODING", line=line, found=f"0x{data[exc.start]:02X}",
                        detail=f"byte 0x{data[exc.start]:02X} no es UTF-8 válido en la línea {line}; "
                               f"si el archivo es ISO-8859-1, declárelo con #charset=ISO-8859-1") from None
    if declared == "latin-1":
        if not data.isascii() and is_utf8(data):
            raise _fail(source, "INPUT_ENCODING", line=1, found=written,
                        detail="el archivo declara ISO-8859-1 pero su contenido está en UTF-8 (se vería 'Ã±' en vez "
                               "de 'ñ'); corrija la declaración a #charset=UTF-8")
        return data.decode("latin-1")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _fail(source: str | None, code: str, *, line: int | None = None, found: str | None = None,
          detail: str = "") -> DteSyncErrors:
    return DteSyncErrors([DteSyncError(code, source=source, line=line, found=found, params={"detail": detail})])


class _Reader:
    """Builds the neutral tree section by section, collecting syntax errors."""

    def __init__(self, source: str | None):
        self.source = source
        self.root = Node([], 1)
        self.current: Node | None = None
        self.opened: set[int] = set()  # id() of single-group nodes that had their own header
        self.errors: list[DteSyncError] = []

    def error(self, code: str, line: int, text: str, **kw: Any) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(DteSyncError(code, line=line, source=self.source, found=kw.pop("found", text.strip(_TXT_WS)),
                                            params={"line_text": text, **kw.pop("params", {})}, **kw))

    def line(self, number: int, text: str) -> None:
        m = _FIELD_RE.match(text)
        if m is not None and self.current is not None:
            self.current.entries.append((m.group(1), Leaf(m.group(2).rstrip(_TXT_WS), number)))
            return
        stripped = text.strip(_TXT_WS)
        if not stripped:
            return
        first = stripped[0]
        if first in "#;":
            if number > 1 and _CHARSET_RE.match(stripped.encode("latin-1", "replace")):
                self.error("TXT_SYNTAX", number, text, params={"detail": "#charset solo puede ir en la primera línea"})
            return
        if first == "[":
            self.section(number, text, stripped)
            return
        key, eq, value = stripped.partition("=")
        key = key.rstrip(_TXT_WS)
        if not eq or not _TAG_RE.fullmatch(key):
            self.error("TXT_SYNTAX", number, text, params={
                "detail": "se esperaba Campo=valor, [Seccion] o un comentario que empiece con #"})
        elif self.current is None:
            self.error("TXT_SYNTAX", number, text, params={"detail": f"el campo {key} está antes de la primera [Seccion]"})
        else:
            self.current.entries.append((key, Leaf(value.lstrip(_TXT_WS), number)))

    def section(self, number: int, text: str, stripped: str) -> None:
        self.current = Node([], number)  # detached: the fields of a section in error are not reported again
        if not stripped.endswith("]"):
            self.error("TXT_SYNTAX", number, text, params={"detail": "falta el ']' que cierra la sección"})
            return
        names = _section_names(stripped)
        resolved = _resolve_section(names)
        if isinstance(resolved, _SectionError):
            self.error(resolved.code, number, text, **resolved.kw)
            return
        node = self.root
        for depth, spec in enumerate(resolved):
            last = depth == len(resolved) - 1
            existing = None
            for t, v in reversed(node.entries):
                if t == spec.tag and isinstance(v, Node):  # a `Tag=value` line of that name stays a value
                    existing = v
                    break
            if last and (spec.many or existing is None or id(existing) in self.opened):
                child = Node([], number)  # a single group opened twice is reported as FIELD_REPEATED
                node.entries.append((spec.tag, child))
            elif existing is not None:
                child = existing
            elif spec.many:
                self.error("TXT_SYNTAX", number, text, path="Documento/" + "/".join(names[: depth + 1]), params={
                    "detail": f"[{'.'.join(names)}] va después de un [{'.'.join(names[: depth + 1])}]"})
                return
            else:
                child = Node([], number)
                node.entries.append((spec.tag, child))
            if last and not spec.many:
                self.opened.add(id(child))
            node = child
        self.current = node


@lru_cache(maxsize=512)
def _section_names(header: str) -> tuple[str, ...]:
    """`[Encabezado . Receptor]` -> ('Encabezado', 'Receptor'); the same few headers repeat."""
    return tuple(n.strip(_TXT_WS) for n in header[1:-1].split("."))


@dataclass(frozen=True)
class _SectionError:
    """Why a section header names no group: an error code and its DteSyncError fields."""

    code: str
    kw: dict[str, Any]


@lru_cache(maxsize=512)
def _resolve_section(names: tuple[str, ...]) -> tuple[FieldSpec, ...] | _SectionError:
    """The FieldSpecs of a section path, or the error when it names no group."""
    if not all(_TAG_RE.fullmatch(n) for n in names):
        return _SectionError("TXT_SYNTAX", {"params": {
            "detail": "una sección es una ruta de grupos separados por punto, p. ej. [Encabezado.Receptor]"}})
    cls: type = model.Documento
    specs: list[FieldSpec] = []
    for depth, name in enumerate(names):
        spec = class_spec(cls).lookup(name, fold_case=True)
        path = "Documento/" + "/".join(names[: depth + 1])
        if spec is None:
            code = "INPUT_SIGNED" if name.lower() in {t.lower() for t in SIGNED_TAGS} else "FIELD_UNKNOWN"
            return _SectionError(code, {"field": name, "path": path, "found": None, "expected": _suggest(names[-1])})
        if spec.kind != "group" or spec.cls is None:
            return _SectionError("TXT_SYNTAX", {"path": path, "field": name, "params": {
                "detail": f"{spec.tag} es un campo, no una sección: escríbalo como {spec.tag}=valor"}})
        specs.append(spec)
        cls = spec.cls
    return tuple(specs)


def _suggest(name: str) -> str | None:
    """The full section for a bare group name (`Receptor` -> `[Encabezado.Receptor]`)."""
    return _SECTIONS.get(name.lower())


def _all_sections() -> dict[str, str]:
    found: dict[str, list[str]] = {}

    def walk(cls: type, prefix: str) -> None:
        for f in class_spec(cls).fields:
            if f.kind == "group" and f.cls is not None:
                path = f"{prefix}.{f.tag}" if prefix else f.tag
                found.setdefault(f.tag.lower(), []).append(f"[{path}]")
                walk(f.cls, path)

    walk(model.Documento, "")
    return {k: " o ".join(v) for k, v in found.items()}


_SECTIONS = _all_sections()


def parse_txt(data: bytes, source: str | None = None) -> model.Documento:
    text = decode_txt(data, source)
    reader = _Reader(source)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    match = _FIELD_RE.match
    for number, line in enumerate(lines, 1):
        m = match(line)  # the common line (Tag=value inside a section) inline; the rest in reader.line
        if m is not None and reader.current is not None:
            tag, value = m.groups()
            reader.current.entries.append((tag, Leaf(value.rstrip(_TXT_WS), number)))
        else:
            reader.line(number, line)
    try:
        return to_documento(reader.root, style=XML_PATHS, source=source, fold_case=True, errors=reader.errors)
    except DteSyncErrors as exc:
        for e in exc.errors:  # show the offending line with every error, not only syntax ones
            if e.line is not None and 0 < e.line <= len(lines):
                e.params.setdefault("line_text", lines[e.line - 1])
        raise
