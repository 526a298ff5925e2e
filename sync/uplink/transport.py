"""HTTP for every uplink: one requests.Session (TLS verification on), timeouts, and the one
place where network failures are classified.

The classification decides whether a retry can duplicate a document:
- `transient`: nothing reached the server (refused, DNS, connect timeout) or the server said
  it failed (5xx, SII "system blocked"): retrying is safe.
- `ambiguous`: the request may have been processed (read timeout, reset after sending): the
  upload must be *resolved* (ask the SII about each document) before it is sent again.
- `permanent`: the server refused it for good (schema, signature, not authorised).
- `auth`: the token was refused or expired: get a new one and retry.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

USER_AGENT = "Mozilla/4.0 (compatible; PROG 1.0; Windows NT 5.0; YComp 5.0.2.4)"  # PROG 1.0: XML answers


class UplinkError(Exception):
    """A failed exchange; `kind` is transient | ambiguous | permanent | auth (module docstring)."""

    def __init__(self, kind: str, code: str, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.kind, self.code, self.detail, self.retry_after = kind, code, detail, retry_after


@dataclass
class Timeouts:
    connect: float = 10.0
    read: float = 60.0


def new_session(verify: bool | str = True) -> requests.Session:
    s = requests.Session()
    s.verify = verify  # never False in production: the config has no switch for it
    s.trust_env = False  # a proxy from the environment must be configured deliberately
    return s


def _nothing_sent(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen, cur = 0, exc
    while cur is not None and seen < 8:
        if isinstance(cur, (NewConnectionError, NameResolutionError, ConnectionRefusedError)):
            return True
        reason = getattr(cur, "reason", None)
        nxt = reason if isinstance(reason, BaseException) else None
        if nxt is None and cur.args and isinstance(cur.args[0], BaseException):
            nxt = cur.args[0]
        cur, seen = nxt or cur.__cause__ or cur.__context__, seen + 1
    return False


def retry_after(resp: requests.Response) -> float | None:
    """Retry-After in seconds (delta-seconds or HTTP-date), None if absent or unreadable."""
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def send(session: requests.Session, method: str, url: str, timeouts: Timeouts, *, idempotent: bool,
         **kw) -> requests.Response:
    """Perform one request; failures become UplinkError. `idempotent` requests (queries, seed)
    turn ambiguous failures into transient ones: repeating them cannot duplicate anything."""
    try:
        resp = session.request(method, url, timeout=(timeouts.connect, timeouts.read), **kw)
    except requests.RequestException as exc:
        if _nothing_sent(exc) or idempotent:
            raise UplinkError("transient", "UPLINK_NETWORK", f"{type(exc).__name__}: {exc}") from None
        raise UplinkError("ambiguous", "UPLINK_NETWORK", f"{type(exc).__name__}: {exc}") from None
    if resp.status_code in (429, 503) or resp.status_code >= 500:
        raise UplinkError("transient", "UPLINK_HTTP", f"HTTP {resp.status_code}", retry_after=retry_after(resp))
    if resp.status_code in (401, 403):
        raise UplinkError("auth", "UPLINK_AUTH", f"HTTP {resp.status_code}")
    return resp
