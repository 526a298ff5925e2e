"""uplink.kind = "http": a provider cloud that forwards documents to the SII for us.

The contract (docs/uplink-http.md, implemented by fake-sii for the tests):
- POST {url}/documents with the signed envelope (one DTE; application/xml, ISO-8859-1),
  `Authorization: Bearer <token>`, `Idempotency-Key: <document id>`: 201 created or 200 when
  that key was seen before (same answer, nothing created twice); 409 when the key was used
  with a different body; {"id", "status"} in JSON.
- GET {url}/documents/{id}: {"id", "status": received|processing|accepted|
  accepted_with_objections|rejected, "track_id", "messages": [..]}.
- 401/403 bad token (permanent until the config is fixed); 429/503 with Retry-After; 5xx retry.
"""

from __future__ import annotations

import json
from typing import Any

from sync.uplink.status import DocResult
from sync.uplink.transport import Timeouts, UplinkError, send

FINAL = {"accepted": "accepted", "accepted_with_objections": "accepted_with_objections", "rejected": "rejected_sii"}


class HttpProvider:
    def __init__(self, session, url: str, token: str, timeouts: Timeouts) -> None:
        self.session, self.url, self.token, self.timeouts = session, url.rstrip("/"), token, timeouts

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json", **extra}

    def _json(self, resp) -> dict[str, Any]:
        try:
            data = json.loads(resp.content.decode("utf-8"))
            assert isinstance(data, dict)
            return data
        except (ValueError, AssertionError):
            raise UplinkError("transient", "UPLINK_HTTP", f"respuesta no es JSON: {resp.text[:200]}") from None

    def submit(self, key: str, envelope: bytes) -> str:
        """POST once per document; safe to repeat with the same key (no second document)."""
        try:
            resp = send(self.session, "POST", f"{self.url}/documents", self.timeouts, idempotent=True,
                        data=envelope, headers=self._headers(**{"Content-Type": "application/xml; charset=ISO-8859-1",
                                                                 "Idempotency-Key": key}))
        except UplinkError as exc:
            if exc.kind == "auth":  # a static token: retrying will not help until it is fixed
                raise UplinkError("permanent", "UPLINK_AUTH", exc.detail) from None
            raise
        if resp.status_code == 409:
            raise UplinkError("permanent", "UPLINK_PROVIDER_REJECTED", f"Idempotency-Key {key} ya usada con otro contenido")
        if resp.status_code >= 400:
            raise UplinkError("permanent", "UPLINK_PROVIDER_REJECTED", f"HTTP {resp.status_code}: {resp.text[:300]}")
        data = self._json(resp)
        if not data.get("id"):
            raise UplinkError("transient", "UPLINK_HTTP", "respuesta sin id")
        return str(data["id"])

    def status(self, provider_id: str) -> tuple[DocResult | None, str | None]:
        """(result or None while in process, the SII track id if the provider knows it)."""
        resp = send(self.session, "GET", f"{self.url}/documents/{provider_id}", self.timeouts, idempotent=True,
                    headers=self._headers())
        if resp.status_code >= 400:
            raise UplinkError("transient", "UPLINK_HTTP", f"HTTP {resp.status_code}")
        data = self._json(resp)
        status = str(data.get("status") or "")
        track = str(data["track_id"]) if data.get("track_id") else None
        if status not in FINAL:
            return None, track
        messages = [str(m) for m in data.get("messages") or []]
        return DocResult(FINAL[status], "; ".join(messages) or status, messages), track
