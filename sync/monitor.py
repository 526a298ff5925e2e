"""The daemon watching itself: alerts from its own health, metrics recorded where events
happen, and the metrics text file.

`MonitorStage` is a stage like any other (sync.stage), given the App it watches by the
composition root (sync.app). Every `[alerts] watch_every` seconds it computes the same
findings /health shows (sync.health) and turns each one that is worth a person's attention
into an alert through the hub (a stuck queue, the uplink paused, a printer that does not
answer, the daemon's own threads), resolving it when the finding clears: one notice when a
condition starts and one when it ends. Stock and expiry are the reports stage's alerts
(sync.reports), not raised twice here. A document the SII rejects is an alert of its own
(`on_state`), resolved by an admin in the panel or after REJECTION_HOLD.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from sync.config import AlertsConfig
from sync.fileio import atomic_write
from sync.health import HealthView, Installation
from sync.metrics import Metrics
from sync.stage import Stage
from sync.states import DocState

if TYPE_CHECKING:
    from pathlib import Path

    from sync.alerts import Notifier
    from sync.app import App
    from sync.journal import Doc
    from sync.printing.queue import Job
    from sync.signed import SignedDte

log = logging.getLogger("dtesync.monitor")

REJECTION_HOLD = 86400.0  # s a rejection stays an active alert unless an admin dismisses it
# Conditions another stage raises itself: stock and expiry (the reports stage), printers (the
# printing stage, with its own codes). The watcher shows them in /health but does not raise them twice.
OWNED_ELSEWHERE = ("caf_stock:", "caf_expiry:", "certificate", "printer:")


class MonitorStage(Stage):
    name = "monitor"

    def __init__(self, settings: AlertsConfig | None = None, *, lang: str = "es", metrics_file: Path | None = None,
                 metrics_every: float = 15.0, notifiers: list[Notifier] | None = None) -> None:
        super().__init__()
        self.settings = settings or AlertsConfig()
        self.lang = lang
        self.metrics = Metrics()
        self.metrics_file, self.metrics_every = metrics_file, metrics_every
        self.notifiers = notifiers or []
        self.health: HealthView | None = None
        self._raised: set[str] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch_lock = threading.Lock()

    # --- wiring --------------------------------------------------------------------------------
    def attach(self, app: App) -> None:
        """The App this stage watches (sync.app calls it once the daemon exists)."""
        self.health = HealthView(app, settings=self.settings, lang=self.lang,
                                 installation=Installation(app.config, getattr(app.engine, "certificate", None)))
        self.metrics.attach(app, self.health)
        printing: Any = app.stage("printing")
        if printing is not None and hasattr(printing, "listeners"):
            printing.listeners.append(self._print_job)

    # --- events ---------------------------------------------------------------------------------
    def on_signed(self, doc: Doc, dte: SignedDte) -> None:
        self.metrics.signed(doc.created_at, doc.updated_at)  # updated_at: when `signed` was recorded

    def on_state(self, doc: Doc) -> None:
        if doc.state != DocState.REJECTED_SII:
            return
        errors = doc.error_list
        detail = (errors[0].get("params") or {}).get("detail") if errors else None
        self.alerts.raise_(f"rejected_sii:{doc.id}", "DOC_REJECTED_SII", "ERROR", source=doc.rel,
                           tipo_dte=doc.tipo_dte, folio=doc.folio, detail=detail or "-", doc_id=doc.id)

    def _print_job(self, job: Job) -> None:
        created = None
        if job.state == "printed" and job.doc_id is not None and self._filing is not None:
            doc = self.filing.get(job.doc_id)
            created = doc.created_at if doc is not None else None
        self.metrics.print_job(job, created)

    # --- the watcher ----------------------------------------------------------------------------
    def watch_once(self, now: float | None = None) -> list[str]:
        """Raise what the findings say now, resolve what cleared; returns the active keys raised here."""
        assert self.health is not None, "attach(app) first"
        now = time.time() if now is None else now
        daemon = self.health.app.daemon
        if getattr(daemon, "_stopping", None) is not None and daemon._stopping.is_set():
            return sorted(self._raised)  # its threads are ending on purpose: not a condition to report
        with self._watch_lock:
            active: set[str] = set()
            for f in self.health.findings():
                if f.name.startswith(OWNED_ELSEWHERE) or f.status == "ok" or not f.alert or f.code is None:
                    continue
                active.add(f.name)
                self.alerts.raise_(f.name, f.code, "ERROR" if f.status == "down" else "WARNING", **f.params)
            for key in self._raised - active:
                self.alerts.resolve(key)
            self._raised = active
            for a in self.alerts.active():
                if a.key.startswith("rejected_sii:") and now - a.since > REJECTION_HOLD:
                    self.alerts.resolve(a.key)
            return sorted(active)

    def write_metrics_file(self) -> None:
        if self.metrics_file is not None:
            atomic_write(self.metrics_file, self.metrics.text(), mode=0o644)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="dtesync-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._guarded(self.write_metrics_file, "monitor: could not write the metrics file")
        from sync.notifiers import close_notifiers

        close_notifiers(self.notifiers, timeout)

    def _loop(self) -> None:
        next_watch = time.monotonic() + min(2.0, self.settings.watch_every)  # let the stages start first
        next_file = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_watch:
                self._guarded(self.watch_once, "monitor: watch failed")
                next_watch = now + self.settings.watch_every
            if self.metrics_file is not None and now >= next_file:
                self._guarded(self.write_metrics_file, "monitor: could not write the metrics file")
                next_file = now + self.metrics_every
            wake = min(next_watch, next_file if self.metrics_file is not None else next_watch)
            self._stopping.wait(max(0.05, wake - time.monotonic()))

    @staticmethod
    def _guarded(func: Any, what: str) -> None:
        try:
            func()
        except Exception:
            log.exception(what)
