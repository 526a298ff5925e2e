"""What /health says, what the panel shows and what the watcher alerts on: one computation.

`Health.findings()` looks at the running daemon and its stages: threads alive and the ingest
loop moving (Daemon.checks), the inbox reachable, every stage's own checks (printers, the
uplink ...), the uplink not paused, no queue stuck (its oldest item older than
`[alerts] queue_stuck_after`) or failing, folio stock and certificate/CAF expiry (the same
thresholds as `dtesync check` and the reports stage: sync.reports.stock_alerts).

Each finding carries a catalog code, so its message exists in Spanish and English and the
watcher (sync.monitor) raises exactly the alert that the finding describes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync.config import AlertsConfig
from sync.errors import DteSyncError
from sync.stage import Check, Health, QueueStats, Stage

log = logging.getLogger("dtesync.health")

if TYPE_CHECKING:
    from sync.app import App
    from sync.config import Config
    from sync.folios.store import StockRow

RANK: dict[str, int] = {"ok": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True)
class Finding:
    """One line of /health with its catalog code; `alert` False for what is worth showing but
    not worth waking someone for (a queue whose last attempt failed, before it is stuck)."""

    name: str
    status: Health
    code: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    message_text: str = ""
    alert: bool = True
    core: bool = True  # False for a stage's own line: its `down` (one printer) leaves the service degraded

    def message(self, lang: str) -> str:
        if self.code is None:
            return self.message_text
        return DteSyncError(self.code, params=self.params).message(lang)

    def check(self, lang: str) -> Check:
        return Check(self.name, self.status, "" if self.status == "ok" else self.message(lang))


def overall(statuses: list[str]) -> Health:
    worst = max((RANK[s] for s in statuses), default=0)
    return "down" if worst == 2 else "degraded" if worst == 1 else "ok"


def status_of(findings: list[Finding]) -> Health:
    return overall([f.status if f.core or f.status != "down" else "degraded" for f in findings])


class Installation:
    """Folio stock and certificate expiry, read at most every `ttl` seconds (a read-only folio
    store: the panel and /metrics never write it)."""

    def __init__(self, config: Config | None, certificate: Any = None, *, ttl: float = 10.0) -> None:
        self.config, self.certificate, self.ttl = config, certificate, ttl
        self._at = -1e18
        self._stock: list[StockRow] = []
        self._lock = threading.Lock()

    def stock(self) -> list[StockRow]:
        if self.config is None:
            return []
        with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._stock = self._read_stock()
                self._at = time.monotonic()
            return list(self._stock)

    def _read_stock(self) -> list[StockRow]:
        from sync.folios.store import FILE_NAME, FolioStore

        assert self.config is not None
        path = self.config.folders.state / FILE_NAME
        if not path.exists():
            return []
        with FolioStore(path, readonly=True) as store:
            return store.stock(date.today())

    def cert_not_after(self) -> datetime | None:
        return getattr(self.certificate, "not_after", None)

    def alerts(self) -> list[Any]:
        """sync.reports.Alert for stock and expiry (the thresholds of `dtesync check`)."""
        if self.config is None:
            return []
        from sync.reports import stock_alerts

        return stock_alerts(self.stock(), self.cert_not_after(), date.today(), self.config.alerts)


class HealthView:
    """Health of one running App (the daemon and its stages)."""

    def __init__(self, app: App, *, settings: AlertsConfig | None = None, installation: Installation | None = None,
                 lang: str = "es") -> None:
        self.app = app
        self.settings = settings or (app.config.alerts if app.config is not None else AlertsConfig())
        self.installation = installation or Installation(app.config, getattr(app.engine, "certificate", None))
        self.lang = lang

    # --- the findings ------------------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        out = self._daemon() + [self._inbox()]
        for stage in self.app.stages:
            out += self._stage(stage)
        out += self._queues()
        out += self._installation()
        return out

    def report(self) -> dict[str, Any]:
        """The /health document: `down` (HTTP 503) only when the service itself cannot work
        (its threads, the inbox, no certificate or no folios); a stage's line that is down (one
        printer) makes it `degraded`."""
        findings = self.findings()
        checks = [f.check(self.lang) for f in findings]
        return {"status": status_of(findings),
                "checks": [{"name": c.name, "status": c.status, "message": c.message} for c in checks]}

    def _daemon(self) -> list[Finding]:
        out = []
        for c in self.app.daemon.checks():
            if c.status == "ok":
                out.append(Finding(f"daemon:{c.name}", "ok"))
            else:
                out.append(Finding(f"daemon:{c.name}", c.status, "DAEMON_UNHEALTHY", {"detail": c.message}))
        return out

    def _inbox(self) -> Finding:
        inbox = Path(self.app.filing.folders.inbox)
        try:
            if not inbox.is_dir():
                raise OSError("no es una carpeta" if inbox.exists() else "no existe")
            with os.scandir(inbox) as entries:  # can be listed (one entry read, not a backlog)
                next(entries, None)
            if not os.access(inbox, os.W_OK | os.X_OK):
                raise OSError("sin permiso de escritura")
        except OSError as exc:
            detail = exc.strerror or str(exc)
            return Finding("inbox", "down", "INBOX_UNREACHABLE", {"path": str(inbox), "detail": detail})
        return Finding("inbox", "ok")

    def _stage(self, stage: Stage) -> list[Finding]:
        out = []
        try:
            checks = stage.checks()
        except Exception as exc:  # a stage's bug is a degraded line, not a broken /health
            checks = [Check("checks", "degraded", f"{type(exc).__name__}: {exc}")]
        for c in checks:
            name = c.name if ":" in c.name or c.name.startswith(stage.name) else f"{stage.name}:{c.name}"
            if c.status == "ok":
                out.append(Finding(name, "ok", core=False))
            else:
                out.append(Finding(name, c.status, "CHECK_FAILED", {"name": name, "detail": c.message or c.status},
                                   core=False))
        if stage.name == "printing" and type(stage).checks is Stage.checks:
            out += self._printers(stage)
        if getattr(stage, "paused", False):
            reason = getattr(stage, "pause_reason", None) or "admin"
            out.append(Finding(f"{stage.name}:paused", "degraded", "UPLINK_PAUSED", {"detail": reason}))
        elif stage.name == "uplink":
            out.append(Finding(f"{stage.name}:paused", "ok"))
        return out

    def _printers(self, stage: Any) -> list[Finding]:
        """Until the printing stage reports its printers itself: a station whose oldest job is
        being retried has a printer that does not answer."""
        out = []
        for st in stage.stations:
            head = stage.queue.head(st.name)
            if head is not None and head.attempts and head.last_error:
                out.append(Finding(f"printer:{st.name}", "degraded", "PRINTER_DOWN",
                                   {"station": st.name, "detail": head.last_error}))
            else:
                out.append(Finding(f"printer:{st.name}", "ok"))
        return out

    def queue_stats(self) -> list[tuple[Stage, QueueStats]]:
        out = []
        for stage in self.app.stages:
            try:
                out += [(stage, q) for q in stage.queues()]
            except Exception:
                log.exception("health: a stage's queues() failed", extra={"stage": stage.name})
        return out

    def _queues(self) -> list[Finding]:
        out = []
        stuck_after = self.settings.queue_stuck_after
        for _, q in self.queue_stats():
            name = f"queue:{q.name}"
            if q.oldest_age is not None and q.oldest_age > stuck_after:
                out.append(Finding(name, "degraded", "QUEUE_STUCK",
                                   {"queue": q.name, "minutes": round(q.oldest_age / 60), "depth": q.depth}))
            elif q.failing:
                out.append(Finding(name, "degraded", "QUEUE_FAILING",
                                   {"queue": q.name, "failing": q.failing, "depth": q.depth,
                                    "detail": self._last_error(q.name)}, alert=False))
            else:
                out.append(Finding(name, "ok"))
        return out

    def _last_error(self, queue: str) -> str:
        stage = self.app.stage(queue)
        if queue == "uplink" and stage is not None:
            waiting = [d for d in stage.queue.unfinished() if d.last_error]  # type: ignore[attr-defined]
            return waiting[-1].last_error if waiting else ""
        printing: Any = self.app.stage("printing")
        if queue.startswith("print:") and printing is not None:  # print:<station>
            head = printing.queue.head(queue.split(":", 1)[1])
            return (head.last_error or "") if head is not None else ""
        return ""

    def _installation(self) -> list[Finding]:
        try:
            alerts = self.installation.alerts()
        except Exception as exc:
            return [Finding("folios", "degraded", "CHECK_FAILED", {"name": "folios", "detail": str(exc)})]
        out = [Finding(a.key, "down" if a.level == "ERROR" else "degraded", a.code, a.params) for a in alerts]
        named = {f.name for f in out}
        for row in self.installation.stock():
            for key in (f"caf_stock:{row.tipo_dte}", f"caf_expiry:{row.tipo_dte}"):
                if key not in named:
                    out.append(Finding(key, "ok"))
        if self.installation.config is not None and "certificate" not in named:
            out.append(Finding("certificate", "ok"))
        return out
