"""JSON input: the same element names as the SII XML, without the ordering rules.

Groups are objects, repeated elements arrays (a single object or value where an array is
expected counts as an array of one), numeric values numbers or strings (numbers are taken
from their exact text, so 0.1 stays 0.1), null the same as absent. The root is
`{"DTE": {"Documento": {...}}}`, `{"Documento": {...}}` or the Documento content itself.
Text must be UTF-8 (RFC 8259), with or without a BOM. A key written twice in one object is
reported (FIELD_REPEATED), not silently collapsed as most JSON libraries do.
"""

from __future__ import annotations

import json
from typing import Any

from sync.errors import DteSyncError, DteSyncErrors
from sync.model import Documento
from sync.parse.mapping import JSON_PATHS, Leaf, Node, to_documento

_MAX_DEPTH = 16  # the model nests 6 deep; deeper input is nonsense, not worth recursing into
_IGNORED = {"DTE": {"version", "@version", "@xmlns"}, "Documento": {"ID", "@ID", "@xmlns"}}


class _Obj(list[tuple[str, object]]):
    """A JSON object as its (key, value) pairs, so duplicate keys survive parsing."""


class _Constant(ValueError):
    pass


def _no_constant(name: str) -> None:
    raise _Constant(name)


def parse_json(data: bytes, source: str | None = None) -> Documento:
    def fail(code: str, **kw: Any) -> DteSyncErrors:
        return DteSyncErrors([DteSyncError(code, source=source, **kw)])

    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise fail("INPUT_ENCODING", line=line, found=data[exc.start: exc.start + 1].hex(),
                   params={"detail": f"el JSON debe ser UTF-8; byte inválido 0x{data[exc.start]:02X} en la línea {line}"}) from None
    try:
        value = json.loads(text, object_pairs_hook=_Obj, parse_int=str, parse_float=str, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise fail("JSON_MALFORMED", line=exc.lineno, params={"detail": f"{exc.msg}, línea {exc.lineno} columna {exc.colno}"}) from None
    except _Constant as exc:
        raise fail("JSON_MALFORMED", found=str(exc), params={"detail": f"{exc} no es un número JSON"}) from None
    except RecursionError:
        raise fail("JSON_MALFORMED", params={"detail": "anidamiento excesivo"}) from None
    if type(value) is not _Obj:
        raise fail("INPUT_UNKNOWN_FORMAT", expected='un objeto JSON {"Documento": {...}}', found=_kind(value))
    problems: list[DteSyncError] = []
    pairs = _documento_pairs(value, problems, source)
    return to_documento(_node(pairs, 1, "Documento"), style=JSON_PATHS, source=source, errors=problems)


def _documento_pairs(root: _Obj, problems: list[DteSyncError], source: str | None) -> _Obj:
    """Unwrap {"DTE": {"Documento": X}} or {"Documento": X}; anything else is X itself."""
    keys = [k for k, _ in root]
    for wrapper in ("DTE", "Documento"):
        if wrapper not in keys:
            continue
        inner = None
        for key, value in root:
            if key == wrapper and inner is None:
                inner = value
            elif key == wrapper:
                problems.append(DteSyncError("FIELD_REPEATED", field=key, path=key, source=source))
            elif key not in _IGNORED.get(wrapper, ()) and key not in _IGNORED["DTE"]:
                code = "INPUT_SIGNED" if key in ("Signature", "TED", "TmstFirma") else "FIELD_UNKNOWN"
                problems.append(DteSyncError(code, field=key, path=key, source=source))
        if type(inner) is not _Obj:
            raise DteSyncErrors(problems + [DteSyncError(
                "FIELD_INVALID", field=wrapper, path=wrapper, source=source, expected="objeto {...}", found=_kind(inner))])
        return _documento_pairs(inner, problems, source) if wrapper == "DTE" else _without_ignored(inner)
    return _without_ignored(root)


def _without_ignored(pairs: _Obj) -> _Obj:
    return _Obj((k, v) for k, v in pairs if k not in _IGNORED["Documento"])


def _node(pairs: _Obj, depth: int, name: str) -> Node:
    entries: list[tuple[str, Node | Leaf]] = []
    for key, value in pairs:
        if type(value) is list:
            for item in value:
                if item is not None:
                    entries.append((key, _value(item, depth)))
        elif value is not None:
            entries.append((key, _value(value, depth)))
    return Node(entries)


def _value(value: object, depth: int) -> Node | Leaf:
    if type(value) is str:
        return Leaf(value)
    if type(value) is _Obj:
        if depth >= _MAX_DEPTH:
            return Leaf(None, found="objeto demasiado anidado")
        return _node(value, depth + 1, "")
    return Leaf(None, found=_kind(value))


def _kind(value: object) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is list:
        return "lista [...]"
    if type(value) is _Obj:
        return "objeto {...}"
    return "null" if value is None else str(value)
