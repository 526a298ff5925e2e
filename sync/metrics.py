"""/metrics: the daemon in the Prometheus text format (prometheus_client), and the same text
as a file for Windows exporters (windows_exporter's textfile collector reads *.prom files).

Two kinds of metric, so nothing is counted twice:
- recorded where the event happens: latency histograms (claim -> signed, recorded when a
  document is signed; claim -> printed, when the printer took the bytes) and printer errors;
- read at scrape time by `DaemonCollector` from current state: documents by type and state
  (the journal's covering index), queue depths and ages (every stage's `queues()`), folios
  left and days to CAF/certificate expiry, uplink errors by kind, health and active alerts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from sync.app import App
    from sync.health import HealthView
    from sync.printing.queue import Job

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SIGNED_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
PRINTED_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
HEALTH_VALUE = {"ok": 0, "degraded": 1, "down": 2}


class Metrics:
    """The registry of one daemon: event metrics here, current values through the collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.signed_latency = Histogram(
            "dtesync_drop_to_signed_seconds", "From the claim of an input to its signed status being durable.",
            buckets=SIGNED_BUCKETS, registry=self.registry)
        self.printed_latency = Histogram(
            "dtesync_drop_to_printed_seconds", "From the claim of an input to its ticket taken by the printer.",
            buckets=PRINTED_BUCKETS, registry=self.registry)
        self.printer_errors = Counter(
            "dtesync_printer_errors", "Print attempts that failed, by station and kind (unavailable: retried; "
            "gave_up: the job failed).", ["station", "kind"], registry=self.registry)
        self.collector: DaemonCollector | None = None

    def attach(self, app: App, health: HealthView) -> None:
        if self.collector is None:
            self.collector = DaemonCollector(app, health)
            self.registry.register(self.collector)

    def signed(self, created_at: float, signed_at: float) -> None:
        self.signed_latency.observe(max(0.0, signed_at - created_at))

    def print_job(self, job: Job, created_at: float | None) -> None:
        """A print job changed (PrintService listener): printed, retried or given up."""
        if job.state == "printed" and created_at is not None and job.doc_key.startswith("doc:"):
            self.printed_latency.observe(max(0.0, job.updated_at - created_at))
        elif job.state == "failed":
            self.printer_errors.labels(job.station, "gave_up").inc()
        elif job.state == "pending" and job.attempts and job.last_error:
            self.printer_errors.labels(job.station, "unavailable").inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)


class DaemonCollector(Collector):
    """Current values, read when scraped (the journal's counts at most every `ttl` seconds)."""

    def __init__(self, app: App, health: HealthView, *, ttl: float = 5.0) -> None:
        self.app, self.health, self.ttl = app, health, ttl
        self._counts: dict[tuple[int | None, str], int] = {}
        self._counts_at = -1e18
        self._lock = threading.Lock()

    def counts(self) -> dict[tuple[int | None, str], int]:
        with self._lock:
            if time.monotonic() - self._counts_at > self.ttl:
                self._counts = self.app.filing.journal.counts_by_type()
                self._counts_at = time.monotonic()
            return dict(self._counts)

    def collect(self) -> Iterator[Metric]:
        yield from self._documents()
        yield from self._queues()
        yield from self._installation()
        yield from self._uplink()
        yield from self._health()

    def _documents(self) -> Iterator[Metric]:
        g = GaugeMetricFamily("dtesync_documents", "Documents in the journal by TipoDTE and state.",
                              labels=["tipo_dte", "state"])
        for (tipo, state), n in sorted(self.counts().items(), key=lambda kv: (kv[0][0] or 0, kv[0][1])):
            g.add_metric(["" if tipo is None else str(tipo), state], n)
        yield g

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("dtesync_queue_depth", "Items waiting in a durable queue.", labels=["queue"])
        age = GaugeMetricFamily("dtesync_queue_oldest_age_seconds", "Age of the oldest waiting item.", labels=["queue"])
        failing = GaugeMetricFamily("dtesync_queue_failing", "Waiting items whose last attempt failed.",
                                    labels=["queue"])
        for _, q in self.health.queue_stats():
            depth.add_metric([q.name], q.depth)
            age.add_metric([q.name], q.oldest_age or 0.0)
            failing.add_metric([q.name], q.failing)
        yield from (depth, age, failing)

    def _installation(self) -> Iterator[Metric]:
        inst = self.health.installation
        folios = GaugeMetricFamily("dtesync_folios_available", "Free folios in valid CAFs.", labels=["tipo_dte"])
        caf = GaugeMetricFamily("dtesync_caf_expiry_days", "Days until the CAF in use expires.", labels=["tipo_dte"])
        today = date.today()
        try:
            stock = inst.stock()
        except Exception:
            stock = []
        for row in stock:
            folios.add_metric([str(row.tipo_dte)], row.available)
            if row.expires_on is not None:
                caf.add_metric([str(row.tipo_dte)], (row.expires_on - today).days)
        yield from (folios, caf)
        not_after = inst.cert_not_after()
        if not_after is not None:
            yield GaugeMetricFamily("dtesync_certificate_expiry_days", "Days until the signing certificate expires.",
                                    value=(not_after.date() - today).days)

    def _uplink(self) -> Iterator[Metric]:
        uplink: Any = self.app.stage("uplink")
        if uplink is None:
            return
        errors = CounterMetricFamily("dtesync_uplink_errors", "Failed envíos by kind (transient, ambiguous, "
                                     "permanent, auth, internal).", labels=["kind"])
        for kind, n in sorted(getattr(uplink, "errors", {}).items()):
            errors.add_metric([str(kind)], n)
        yield errors
        yield GaugeMetricFamily("dtesync_uplink_paused", "1 while sending is paused.",
                                value=1 if getattr(uplink, "paused", False) else 0)

    def _health(self) -> Iterator[Metric]:
        checks = GaugeMetricFamily("dtesync_check_status", "Each /health check: 0 ok, 1 degraded, 2 down.",
                                   labels=["check"])
        for f in self.health.findings():
            checks.add_metric([f.name], HEALTH_VALUE[f.status])
        yield checks
        active = GaugeMetricFamily("dtesync_alerts_active", "Active alert conditions by code and level.",
                                   labels=["code", "level"])
        by: dict[tuple[str, str], int] = {}
        for a in self.app.alerts.active():
            by[(a.code, a.level)] = by.get((a.code, a.level), 0) + 1
        for (code, level), n in sorted(by.items()):
            active.add_metric([code, level], n)
        yield active
