"""The alerts hub: a condition is raised once, stays active while it lasts, and is resolved once.

Stages and scheduled checks call `raise_(key, code, ...)` every time they see a condition
(a printer down, a low folio stock): the hub notifies only on the first sighting and again when
`resolve(key)` ends it, so a person gets one alert and one recovery notice per condition, not
one a minute. Messages come from the error catalog (sync.errors) in the configured language.

Notifiers (the log always; e-mail and webhooks where configured) implement `Notifier`; a
notifier that fails is logged and never stops the others or the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sync.errors import DteSyncError

log = logging.getLogger("dtesync.alerts")

Level = Literal["WARNING", "ERROR"]


@dataclass(frozen=True)
class Alert:
    key: str  # the condition: "printer:caja1", "caf_stock:39"
    code: str  # from the error catalog (sync.errors.CATALOG)
    level: Level
    params: dict[str, Any] = field(default_factory=dict)
    since: float = 0.0

    def message(self, lang: str = "es") -> str:
        return DteSyncError(self.code, params=self.params).message(lang)


class Notifier(Protocol):
    def notify(self, alert: Alert, *, resolved: bool) -> None: ...


class LogNotifier:
    def __init__(self, lang: str = "es") -> None:
        self.lang = lang

    def notify(self, alert: Alert, *, resolved: bool) -> None:
        extra = {"alert": alert.key, "code": alert.code, **{f"alert_{k}": v for k, v in alert.params.items()}}
        if resolved:
            log.info("alert resolved: %s", alert.message(self.lang), extra=extra)
        elif alert.level == "ERROR":
            log.error("alert: %s", alert.message(self.lang), extra=extra)
        else:
            log.warning("alert: %s", alert.message(self.lang), extra=extra)


class Alerts:
    def __init__(self, notifiers: list[Notifier] | None = None, *, lang: str = "es") -> None:
        self.notifiers: list[Notifier] = notifiers if notifiers is not None else [LogNotifier(lang)]
        self.lang = lang
        self._active: dict[str, Alert] = {}
        self._lock = threading.Lock()

    def raise_(self, key: str, code: str, level: Level = "WARNING", **params: Any) -> bool:
        """Report a condition; True when it is new (and was notified)."""
        with self._lock:
            if key in self._active:
                return False
            alert = self._active[key] = Alert(key, code, level, dict(params), time.time())
        self._notify(alert, resolved=False)
        return True

    def resolve(self, key: str) -> bool:
        """The condition ended; True when it was active (and the recovery was notified)."""
        with self._lock:
            alert = self._active.pop(key, None)
        if alert is None:
            return False
        self._notify(alert, resolved=True)
        return True

    def resolve_prefix(self, prefix: str, keep: frozenset[str] | set[str] = frozenset()) -> None:
        """Resolve every active condition under `prefix` not in `keep` (a periodic check that
        recomputes all its conditions at once)."""
        with self._lock:
            gone = [k for k in self._active if k.startswith(prefix) and k not in keep]
        for key in gone:
            self.resolve(key)

    def active(self) -> list[Alert]:
        with self._lock:
            return sorted(self._active.values(), key=lambda a: a.since)

    def _notify(self, alert: Alert, *, resolved: bool) -> None:
        for n in self.notifiers:
            try:
                n.notify(alert, resolved=resolved)
            except Exception:
                log.exception("alerts: a notifier failed", extra={"notifier": type(n).__name__, "alert": alert.key})
