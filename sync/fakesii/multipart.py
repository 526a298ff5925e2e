"""multipart/form-data as the SII's DTEUpload CGI reads it (RFC 1867).

Tolerant where real clients differ and the SII accepts it: the manual's own header writes
`multipart/form-data: boundary=` (a colon), parts may carry Content-Type and
Content-Transfer-Encoding lines (the raw example does). Strict where it matters: a body
shorter than Content-Length or without the closing boundary is a cut file (STATUS 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOUNDARY = re.compile(r"boundary=\"?([^\";\s]+)\"?", re.IGNORECASE)
_DISPOSITION = re.compile(r'form-data;\s*name="([^"]*)"(?:;\s*filename="([^"]*)")?', re.IGNORECASE)


class MultipartError(ValueError):
    """`status` is the DTEUpload STATUS the SII would answer."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status


@dataclass
class Part:
    name: str
    filename: str | None
    headers: dict[str, str]
    data: bytes


def boundary_of(content_type: str) -> str:
    if not content_type.lower().startswith("multipart/form-data"):
        raise MultipartError("2", f"Content-Type {content_type!r} no es multipart/form-data")
    m = _BOUNDARY.search(content_type)
    if not m:
        raise MultipartError("2", "multipart sin boundary")
    return m.group(1)


def parse(body: bytes, content_type: str) -> dict[str, Part]:
    delim = b"--" + boundary_of(content_type).encode("latin-1")
    if not body.startswith(delim):
        raise MultipartError("3", "el cuerpo no empieza con el boundary")
    if delim + b"--" not in body:
        raise MultipartError("3", "falta el boundary final (archivo cortado)")
    body = body[: body.rindex(delim + b"--")]
    parts: dict[str, Part] = {}
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("3", "parte sin encabezados")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        m = _DISPOSITION.search(headers.get("content-disposition", ""))
        if not m:
            raise MultipartError("2", "parte sin Content-Disposition form-data")
        parts[m.group(1)] = Part(m.group(1), m.group(2), headers, data)
    return parts
