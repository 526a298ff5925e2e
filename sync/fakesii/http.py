"""The plumbing every fake-sii handler shares: answers, bodies, the TOKEN cookie, resets."""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sync.fakesii.server import FakeSii

log = logging.getLogger("dtesync.fakesii")


class BaseHandler(BaseHTTPRequestHandler):
    fake: FakeSii
    protocol_version = "HTTP/1.1"
    server_version = "fake-sii/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet; use logging at debug level
        log.debug("fake-sii %s", format % args)

    def _send(self, code: int, body: bytes, ctype: str = "text/xml; charset=UTF-8", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json; charset=UTF-8",
                   headers)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _cookie_token(self) -> str | None:
        m = re.search(r"TOKEN=([^;\s]+)", self.headers.get("Cookie", ""))
        return m.group(1) if m else None

    def _abort(self) -> None:
        """Drop the connection with a TCP reset, no answer."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass
