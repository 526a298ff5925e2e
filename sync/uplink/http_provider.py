"""uplink.kind = "http": a provider cloud that forwards documents to the SII for us.

The contract (docs/uplink-http.md, implemented by fake-sii for the tests):
- POST {url}/documents with the signed envelope (one DTE; application/xml, ISO-8859-1),
  `Authorization: Bearer <token>`, `Idempotency-Key: <document id>`: 201 created or 200 when
  that key was seen before (same answer, nothing created twice); 409 when the key was used
  with a different body; {"id", "status"} in JSON.
- GET {url}/documents/{id}: {"id", "status": received|processing|accepted|
  accepted_with_objections|rejected, "track_id", "messages": [..]}.
- 401/403 bad token: a problem of the installation (the channel pauses, documents stay
  queued, an alert names uplink.http.token); 429/503 with Retry-After; 5xx retry (the key
  makes a repeated POST harmless).
"""

from __future__ import annotations

import json
from typing import Any

from sync.uplink.answers import Answer, EnvioKind, Kind
from sync.uplink.docref import DocRef
from sync.uplink.status import DocResult, EnvioState
from sync.uplink.transport import Timeouts, UplinkError, send

FIX_TOKEN = "Revise `uplink.http.token` (la credencial que entregó el proveedor, en {url})."
BAD_TOKEN = Answer("401", "el proveedor rechazó la credencial", Kind.INSTALLATION, FIX_TOKEN)

FINAL = {"accepted": "accepted", "accepted_with_objections": "accepted_with_objections", "rejected": "rejected_sii"}


class HttpProvider:
    def __init__(self, session: Any, url: str, token: str, timeouts: Timeouts) -> None:
        self.session, self.url, self.token, self.timeouts = session, url.rstrip("/"), token, timeouts

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json", **extra}

    def _json(self, resp: Any) -> dict[str, Any]:
        try:
            data = json.loads(resp.content.decode("utf-8"))
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise UplinkError(Kind.TRANSIENT, "UPLINK_HTTP", f"respuesta no es JSON: {resp.text[:200]}")
        return data

    def _send(self, method: str, path: str, *, idempotent: bool, **kw: Any) -> Any:
        try:
            return send(self.session, method, f"{self.url}{path}", self.timeouts, idempotent=idempotent, **kw)
        except UplinkError as exc:
            if exc.kind is Kind.SESSION:  # a static token: retrying will not help until it is fixed
                raise UplinkError(Kind.INSTALLATION, "UPLINK_AUTH", exc.detail, answer=BAD_TOKEN,
                                  service="proveedor") from None
            raise

    def submit(self, key: str, envelope: bytes) -> str:
        """POST once per document; safe to repeat with the same key (no second document)."""
        resp = self._send("POST", "/documents", idempotent=True, data=envelope,
                          headers=self._headers(**{"Content-Type": "application/xml; charset=ISO-8859-1",
                                                   "Idempotency-Key": key}))
        if resp.status_code == 409:
            raise UplinkError(Kind.VERDICT, "UPLINK_PROVIDER_REJECTED", f"Idempotency-Key {key} ya usada con otro contenido")
        if resp.status_code >= 400:
            raise UplinkError(Kind.VERDICT, "UPLINK_PROVIDER_REJECTED", f"HTTP {resp.status_code}: {resp.text[:300]}")
        data = self._json(resp)
        if not data.get("id"):
            raise UplinkError(Kind.TRANSIENT, "UPLINK_HTTP", "respuesta sin id")
        return str(data["id"])

    def status(self, provider_id: str, refs: list[DocRef]) -> EnvioState:
        """The provider's answer for one document (one per request), with the SII's track id."""
        resp = self._send("GET", f"/documents/{provider_id}", idempotent=True, headers=self._headers())
        if resp.status_code >= 400:
            return EnvioState(EnvioKind.TRANSIENT, str(resp.status_code), f"HTTP {resp.status_code}")
        data = self._json(resp)
        status = str(data.get("status") or "")
        state = EnvioState(EnvioKind.PROCESSING, status, "",
                           track_id=str(data["track_id"]) if data.get("track_id") else None)
        if status in FINAL:
            messages = [str(m) for m in data.get("messages") or []]
            state.kind = EnvioKind.PROCESSED
            state.results = {r.key: DocResult(FINAL[status], "; ".join(messages) or status, messages) for r in refs}
        return state

    def probe(self) -> None:
        """Does the provider accept our token again? (any answer but 401/403 says yes)"""
        self._send("GET", "/documents/probe", idempotent=True, headers=self._headers())
