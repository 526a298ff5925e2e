"""HTTP for every uplink: one requests.Session (TLS verification on), timeouts, and the one
place where network failures are classified.

The classification (sync.uplink.answers.Kind) decides whether a retry can duplicate a document:
- `transient`: nothing reached the server (refused, DNS, connect timeout) or the server said
  it did not take the request (429, 503): retrying is safe.
- `lost`: the request may have been processed (read timeout, reset after sending, a 500/502/504
  to an upload): the upload must be *resolved* (ask the SII about each document) before it is
  sent again. Queries and token requests are repeatable, so for them it is `transient`.
- `session`: the token was refused or expired (401/403): get a new one and retry.
- the SII's own answers (verdict, installation, unknown) are classified by the service modules.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from sync.uplink.answers import Answer, Kind

USER_AGENT = "Mozilla/4.0 (compatible; PROG 1.0; Windows NT 5.0; YComp 5.0.2.4)"  # PROG 1.0: XML answers


class UplinkError(Exception):
    """A failed exchange. `kind` says what to do (sync.uplink.answers.Kind); `answer` is the
    SII's documented code behind it, when there is one (alerts quote its meaning and fix)."""

    def __init__(self, kind: Kind, code: str, detail: str, *, retry_after: float | None = None,
                 answer: Answer | None = None, service: str = "") -> None:
        super().__init__(f"{code}: {detail}")
        self.kind, self.code, self.detail, self.retry_after = kind, code, detail, retry_after
        self.answer, self.service = answer, service


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
    seen = 0
    cur_: BaseException | None = exc
    while cur_ is not None and seen < 8:
        cur = cur_
        if isinstance(cur, (NewConnectionError, NameResolutionError, ConnectionRefusedError)):
            return True
        reason = getattr(cur, "reason", None)
        nxt = reason if isinstance(reason, BaseException) else None
        if nxt is None and cur.args and isinstance(cur.args[0], BaseException):
            nxt = cur.args[0]
        cur_, seen = nxt or cur.__cause__ or cur.__context__, seen + 1
    return False


def retry_after(resp: requests.Response) -> float | None:
    """Retry-After (or the boleta API's X-Retry-After) in seconds (delta-seconds or HTTP-date),
    None if absent or unreadable."""
    value = resp.headers.get("Retry-After") or resp.headers.get("X-Retry-After")
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
         raw_status: bool = False, **kw: Any) -> requests.Response:
    """Perform one request; failures become UplinkError. `idempotent` requests (queries, seed)
    turn lost answers into transient failures: repeating them cannot duplicate anything.
    `raw_status`: hand every HTTP answer back (the caller classifies it, e.g. boleta REST)."""
    try:
        resp = session.request(method, url, timeout=(timeouts.connect, timeouts.read), **kw)
    except requests.RequestException as exc:
        if _nothing_sent(exc) or idempotent:
            raise UplinkError(Kind.TRANSIENT, "UPLINK_NETWORK", f"{type(exc).__name__}: {exc}") from None
        raise UplinkError(Kind.LOST, "UPLINK_NETWORK", f"{type(exc).__name__}: {exc}") from None
    if raw_status:
        return resp
    code = resp.status_code
    if code in (429, 503):
        raise UplinkError(Kind.TRANSIENT, "UPLINK_HTTP", f"HTTP {code}", retry_after=retry_after(resp))
    if code >= 500:
        kind = Kind.TRANSIENT if idempotent or code == 501 else Kind.LOST
        raise UplinkError(kind, "UPLINK_HTTP", f"HTTP {code}", retry_after=retry_after(resp))
    if code in (401, 403):
        raise UplinkError(Kind.SESSION, "UPLINK_AUTH", f"HTTP {code}")
    return resp
