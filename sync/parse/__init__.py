"""Input files (TXT, JSON, XML) -> one `Documento`, or every problem found as DteSyncErrors.

The format is decided by the content, not trusted from the name: `<` first (after a BOM and
whitespace) is XML, `{` is JSON, anything else TXT. The extension only breaks the tie where
the content cannot: a `.json` starting with `[` is JSON (an array root, reported as such),
and a `.xml`/`.json` file that starts like neither is reported as malformed XML/JSON rather
than as a TXT full of syntax errors. Nothing here raises anything but DteSyncErrors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sync.errors import DteSyncError, DteSyncErrors
from sync.model import Documento
from sync.parse.json_input import parse_json
from sync.parse.txt_input import parse_txt
from sync.parse.xml_input import parse_xml

__all__ = ["parse_document", "parse_file", "read_input", "detect_format", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 10_000_000
_BOM = b"\xef\xbb\xbf"
_WS = b" \t\r\n"


def detect_format(data: bytes, source: str = "") -> str:
    """'xml', 'json' or 'txt' (see module docstring)."""
    head = data[3:200] if data.startswith(_BOM) else data[:200]
    head = head.lstrip(_WS)
    ext = os.path.splitext(source)[1].lower()
    if head.startswith(b"<"):
        return "xml"
    if head.startswith(b"{") or (ext == ".json" and head.startswith(b"[")):
        return "json"
    if ext in (".xml", ".json"):
        return ext[1:]
    return "txt"


def parse_document(data: bytes, source: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Documento:
    """Parse one input document; raises DteSyncErrors listing every problem found."""
    def fail(code: str, **kw: Any) -> DteSyncErrors:
        return DteSyncErrors([DteSyncError(code, source=source, **kw)])

    if len(data) > max_bytes:
        raise fail("INPUT_TOO_LARGE", found=len(data), expected=max_bytes)
    if not (data[3:] if data.startswith(_BOM) else data).strip(_WS):
        raise fail("INPUT_EMPTY")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise fail("INPUT_ENCODING", params={"detail": "el archivo está en UTF-16; use UTF-8 o ISO-8859-1"})
    nul = data.find(b"\x00")
    if nul >= 0:
        raise fail("INPUT_BINARY", line=data[:nul].count(b"\n") + 1)
    fmt = detect_format(data, source)
    try:
        if fmt == "xml":
            return parse_xml(data, source)
        if fmt == "json":
            return parse_json(data, source)
        return parse_txt(data, source)
    except DteSyncErrors:
        raise
    except (RecursionError, MemoryError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # A bug of ours, not of the file: keep the promise (typed errors only) and say so.
        raise fail("INTERNAL", params={"detail": f"{type(exc).__name__}: {exc}"}) from exc


def read_input(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of an input file, refusing oversized files before reading them."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise DteSyncErrors([DteSyncError("INPUT_TOO_LARGE", source=path.name, found=size, expected=max_bytes)])
            data = fh.read(max_bytes + 1)  # the file may grow between stat and read
    except OSError as exc:
        raise DteSyncErrors([DteSyncError("INTERNAL", source=path.name, params={"detail": f"{type(exc).__name__}: {exc}"})]) from exc
    if len(data) > max_bytes:
        raise DteSyncErrors([DteSyncError("INPUT_TOO_LARGE", source=path.name, found=f"> {max_bytes}", expected=max_bytes)])
    return data


def parse_file(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> Documento:
    """`parse_document(read_input(path))`, with the file name as source."""
    return parse_document(read_input(path, max_bytes=max_bytes), Path(path).name, max_bytes=max_bytes)
