"""Who may act on the panel: one password (a secret reference, never in the config file),
a signed session cookie (HttpOnly, SameSite=Strict, Secure under TLS), a CSRF token on every
POST, and a brake on guessing.

The password is hashed once at start (werkzeug's scrypt) and compared with
`check_password_hash` (constant time); the plain text is not kept. The session key is
random per process: a restart logs everyone out, which is the safe default for a back
office."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque

from flask import abort, request, session
from werkzeug.security import check_password_hash, generate_password_hash

CSRF_FIELD = "csrf_token"


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def password_ok(stored_hash: str | None, given: str) -> bool:
    if not stored_hash or not given:
        return False
    return check_password_hash(stored_hash, given)


def csrf_token() -> str:
    """This session's token (created on first use); every form carries it."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf() -> None:
    """Refuse a POST whose token is missing or not this session's (403)."""
    expected = session.get("csrf")
    given = request.form.get(CSRF_FIELD, "")
    if not expected or not given or not hmac.compare_digest(str(expected), given):
        abort(403, description="csrf")


def logged_in() -> bool:
    return bool(session.get("auth"))


def log_in() -> None:
    session.clear()  # a fresh session and a fresh CSRF token: no fixation
    session.permanent = True
    session["auth"] = True
    session["at"] = time.time()
    session["csrf"] = secrets.token_urlsafe(32)


def log_out() -> None:
    session.clear()


class Throttle:
    """At most `limit` failed logins per address within `window` seconds."""

    def __init__(self, limit: int = 5, window: float = 600.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, who: str) -> bool:
        with self._lock:
            q = self._failures.get(who)
            now = time.monotonic()
            while q and now - q[0] > self.window:
                q.popleft()
            return q is not None and len(q) >= self.limit

    def failed(self, who: str) -> None:
        with self._lock:
            self._failures.setdefault(who, deque()).append(time.monotonic())

    def cleared(self, who: str) -> None:
        with self._lock:
            self._failures.pop(who, None)
