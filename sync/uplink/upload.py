"""DTEUpload: the signed EnvioDTE as a multipart/form-data POST (RFC 1867) with the TOKEN
cookie, and the `<RECEPCIONDTE>` answer (manual OI2003_UPDTE_MDE_1.5 and its raw example).

The body is built by hand, byte for byte as the manual's Anexo 3: the four RUT parts in
order, then `archivo` with the envelope's ISO-8859-1 bytes untouched (a re-encoding would
break every signature in it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import requests
from lxml import etree

from sync import safexml
from sync.rut import Rut
from sync.uplink.answers import Answer, Kind, upload_answer
from sync.uplink.transport import USER_AGENT, Timeouts, UplinkError, send


@dataclass
class Recepcion:
    status: str
    track_id: str | None
    file: str = ""
    timestamp: str = ""
    errors: list[str] = field(default_factory=list)


def multipart_body(sender: Rut, company: Rut, filename: str, envelope: bytes, boundary: str) -> bytes:
    def part(name: str, value: str) -> bytes:
        return (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode("ascii")

    head = b"".join(part(n, v) for n, v in (
        ("rutSender", str(sender.number)), ("dvSender", sender.dv),
        ("rutCompany", str(company.number)), ("dvCompany", company.dv),
    ))
    file_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="archivo"; filename="{filename}"\r\n'
        "Content-Type: text/xml\r\n\r\n"
    ).encode("ascii")
    return head + file_head + envelope + f"\r\n--{boundary}--\r\n".encode("ascii")


def is_html_page(data: bytes) -> bool:
    """An HTML page where RECEPCIONDTE was expected: what the SII answers (HTTP 200) when the
    session behind the TOKEN cookie is dead, and what a browser gets without `PROG 1.0`."""
    head = data[:2048].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head[:512]


def parse_recepcion(data: bytes) -> Recepcion:
    """RECEPCIONDTE. Anything else came from something other than the upload CGI's normal
    path: the dead-session page is a SESSION failure (renew the token and upload again, the
    page means nothing was filed); any other text is UNKNOWN (possibly filed: resolve first)."""
    if is_html_page(data):
        raise UplinkError(Kind.SESSION, "SII_UPLOAD_FAILED", "el SII respondió una página HTML: sesión (TOKEN) caducada",
                          service="DTEUpload")
    try:
        root = safexml.fromstring(data.strip())
    except etree.XMLSyntaxError as exc:
        raise UplinkError(Kind.UNKNOWN, "SII_UPLOAD_FAILED", f"respuesta no es XML: {exc}", service="DTEUpload",
                          answer=Answer("?", "respuesta que no es RECEPCIONDTE", Kind.UNKNOWN)) from None
    if root.tag != "RECEPCIONDTE":
        raise UplinkError(Kind.UNKNOWN, "SII_UPLOAD_FAILED", f"respuesta inesperada <{root.tag!s}>", service="DTEUpload",
                          answer=Answer(f"<{root.tag!s}>", "respuesta que no es RECEPCIONDTE", Kind.UNKNOWN))
    return Recepcion(
        status=(root.findtext("STATUS") or "").strip(),
        track_id=(root.findtext("TRACKID") or "").strip() or None,
        file=(root.findtext("FILE") or "").strip(),
        timestamp=(root.findtext("TIMESTAMP") or "").strip(),
        errors=[" ".join((e.text or "").split()) for e in root.iterfind("DETAIL/ERROR")],
    )


def upload(session: requests.Session, url: str, token: str, sender: Rut, company: Rut, envelope: bytes,
           filename: str, timeouts: Timeouts, *, referer: str = "https://localhost/dtesync") -> str:
    """POST one envelope; returns the TRACKID. Raises UplinkError by STATUS (answers.UPLOAD)."""
    boundary = "----dtesync" + os.urandom(12).hex()
    body = multipart_body(sender, company, filename, envelope, boundary)
    headers = {
        "Accept": "image/gif, image/x-xbitmap, image/jpeg, image/pjpeg, application/vnd.ms-powerpoint, "
                  "application/ms-excel, application/msword, */*",
        "Referer": referer,
        "Accept-Language": "es-cl",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "User-Agent": USER_AGENT,
        "Cache-Control": "no-cache",
        "Cookie": f"TOKEN={token}",
    }
    resp = send(session, "POST", url, timeouts, idempotent=False, headers=headers, data=body)
    rec = parse_recepcion(resp.content)
    answer = upload_answer(rec.status)
    if answer.kind is Kind.OK:
        if not rec.track_id:
            raise UplinkError(Kind.LOST, "SII_UPLOAD_FAILED", "STATUS 0 sin TRACKID", service="DTEUpload")
        return rec.track_id
    detail = f"STATUS {rec.status}: {answer.meaning}" + (f" ({'; '.join(rec.errors)})" if rec.errors else "")
    code = "SII_UPLOAD_REJECTED" if answer.kind is Kind.VERDICT else "SII_UPLOAD_FAILED"
    raise UplinkError(answer.kind, code, detail, answer=answer, service="DTEUpload")
