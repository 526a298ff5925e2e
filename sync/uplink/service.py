"""The uplink stage: drains the queue in batches, polls envíos, raises alerts, and reports
every state change back to the ERP through a sink (the Filing's `update_state` once bound).

Periodic ticks run on an APScheduler 3.x BackgroundScheduler (memory job store: the durable
state is the queue table, never pickled jobs). Each tick is also callable directly
(`drain_once`, `poll_once`, `alerts_once`), which is what tests and the benchmark use.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Protocol

from sync.alerts import Alerts
from sync.errors import DteSyncError
from sync.filing import Filing
from sync.journal import Doc
from sync.signed import SignedDte
from sync.sii import is_boleta
from sync.stage import QueueStats, Stage
from sync.uplink.channels import Channel
from sync.uplink.docref import DocRef
from sync.uplink.queue import QueuedDoc, UplinkQueue, full_jitter
from sync.uplink.transport import UplinkError

log = logging.getLogger("dtesync.uplink")


class StateSink(Protocol):
    def __call__(self, doc_id: int, state: str, note: str | None = None, **values: Any) -> Any: ...


@dataclass
class UplinkSettings:
    batch_max: int = 50  # documents per EnvioDTE/EnvioBOLETA (capped by the XSD: 2000 / 500)
    batch_wait: float = 2.0  # seconds the oldest document may wait for a fuller batch
    backoff_base: float = 15.0
    backoff_cap: float = 3600.0
    poll_first: float = 5.0  # first QueryEstUp after an upload
    poll_base: float = 5.0
    poll_cap: float = 600.0
    uncertain_wait: float = 60.0  # before asking the SII about an upload whose answer was lost
    drain_interval: float = 1.0
    poll_interval: float = 1.0
    alert_after: float = 4 * 3600.0  # a document waiting longer than this raises an alert
    alert_interval: float = 60.0


class Uplink(Stage):
    name = "uplink"

    def __init__(self, queue: UplinkQueue, channels: dict[str, Channel], *, sink: StateSink | None = None,
                 settings: UplinkSettings | None = None, route: Callable[[int], str] | None = None,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.time,
                 on_alert: Callable[[str, dict], None] | None = None) -> None:
        super().__init__()
        self.queue, self.channels = queue, channels
        self.sink = sink
        self.s = settings or UplinkSettings()
        self.route = route or (lambda tipo: "boleta" if is_boleta(tipo) and "boleta" in channels else
                               next(iter(channels)) if "http" in channels else "dte")
        self.rng = rng or random.Random()
        self.clock = clock
        self.on_alert = on_alert
        self.raised: list[tuple[str, dict]] = []  # every alert of this run (tests, `status`)
        self._drain_lock, self._poll_lock = threading.Lock(), threading.Lock()
        self._scheduler: Any = None
        self.stats = {"envios": 0, "uploaded_docs": 0, "failures": 0, "ambiguous": 0, "resolved_received": 0}
        self.errors: collections.Counter[str] = collections.Counter()  # failed envíos by UplinkError.kind (/metrics)
        self.pause_reason: str | None = None  # set by an admin (the panel): the drain sends nothing

    # --- pause (an admin's switch; a flag the drain checks, nothing else changes) ----------------------
    @property
    def paused(self) -> bool:
        return self.pause_reason is not None

    def pause(self, reason: str = "admin") -> None:
        """Stop sending: documents stay queued (and keep arriving); polling of envíos already sent
        goes on. In memory: a restart resumes."""
        self.pause_reason = reason
        log.warning("uplink: paused", extra={"reason": reason})

    def resume(self) -> None:
        if self.pause_reason is not None:
            self.pause_reason = None
            log.info("uplink: resumed")
            self.wake()

    # --- the stage ------------------------------------------------------------------------------------
    def bind(self, filing: Filing, alerts: Alerts) -> None:
        super().bind(filing, alerts)
        if self.sink is None:
            self.sink = filing.update_state

    def on_signed(self, doc: Doc, dte: SignedDte) -> None:
        """Queue a signed document (idempotent per document id) and report it `queued`."""
        ref = DocRef(dte.tipo_dte, dte.folio, dte.rut_emisor, dte.rut_receptor, dte.fch_emis.isoformat(),
                     dte.monto_total)
        if self.queue.enqueue(doc.id, self.route(ref.tipo_dte), ref, dte.dte_xml) or doc.state == "signed":
            self._report(doc.id, "queued", None)
        self.wake()

    def queues(self) -> list[QueueStats]:
        waiting = self.queue.unfinished()
        now = self.clock()
        return [QueueStats("uplink", len(waiting), min((now - d.enqueued_at for d in waiting), default=None),
                           sum(1 for d in waiting if d.last_error))]

    def _report(self, doc_id: int, state: str, note: str | None, **values: Any) -> None:
        if self.sink is None:
            return
        try:
            self.sink(doc_id, state, note, **values)
        except Exception:
            log.exception("uplink: could not report state", extra={"doc": doc_id, "state": state})

    # --- drain -------------------------------------------------------------------------------------
    def drain_once(self, max_envios: int = 1000) -> int:
        """Resolve uncertain documents, then send every due batch; returns envíos attempted."""
        if self.paused or not self._drain_lock.acquire(blocking=False):
            return 0
        try:
            sent = 0
            for name, ch in self.channels.items():
                self._resolve_uncertain(name, ch)
                limit = max(1, min(self.s.batch_max, ch.max_batch))
                while sent < max_envios:
                    batch = self.queue.take_batch(name, limit, self.s.batch_wait)
                    if batch is None:
                        break
                    sent += 1
                    if not self._send(ch, *batch):
                        break  # the destination is failing: leave the rest for the next tick
            return sent
        finally:
            self._drain_lock.release()

    def _delays(self, docs: list[QueuedDoc], retry_after: float | None = None) -> list[float]:
        out = []
        for d in docs:
            delay = full_jitter(d.attempts, self.s.backoff_base, self.s.backoff_cap, self.rng)
            out.append(max(delay, retry_after or 0.0))
        return out

    def _send(self, ch: Channel, envio_id: int, docs: list[QueuedDoc]) -> bool:
        ids = [d.doc_id for d in docs]
        stamp = datetime.fromtimestamp(docs[0].enqueued_at if ch.name == "http" else self.clock()).replace(microsecond=0)
        try:
            track = ch.send([str(i) for i in ids], [d.ref for d in docs], [d.dte_xml for d in docs], stamp)
        except UplinkError as exc:
            self.stats["failures"] += 1
            self.errors[exc.kind] += 1
            log.warning("uplink: envío failed", extra={"envio": envio_id, "kind": exc.kind, "error": exc.detail, "docs": len(ids)})
            if exc.kind == "permanent" and len(docs) > 1:
                self.queue.failed(envio_id, ids, exc.detail, [0.0] * len(ids), solo=True)  # find the culprit alone
                return True
            if exc.kind == "permanent":
                self._final(docs[0], "rejected_sii", exc.detail, code=exc.code)
                self.queue.envio_done(envio_id)
                return True
            ambiguous = exc.kind == "ambiguous"
            self.stats["ambiguous"] += int(ambiguous)
            delays = [self.s.uncertain_wait] * len(docs) if ambiguous else self._delays(docs, exc.retry_after)
            self.queue.failed(envio_id, ids, f"{exc.code}: {exc.detail}", delays, uncertain=ambiguous)
            return False
        except Exception as exc:  # a bug must not lose documents: they stay queued
            self.errors["internal"] += 1
            log.exception("uplink: unexpected error sending", extra={"envio": envio_id})
            self.queue.failed(envio_id, ids, f"INTERNAL: {exc}", self._delays(docs), uncertain=True)
            return False
        self.queue.sent(envio_id, track, self.s.poll_first)
        self.stats["envios"] += 1
        self.stats["uploaded_docs"] += len(docs)
        for d in docs:
            self._report(d.doc_id, "sent", f"{ch.name} trackid {track}", track_id=track if ch.name != "http" else None)
        return True

    def _resolve_uncertain(self, name: str, ch: Channel) -> None:
        for d in self.queue.uncertain_due(name):
            try:
                received = ch.received(d.ref)
            except UplinkError as exc:
                self.queue.failed(None, [d.doc_id], f"{exc.code}: {exc.detail}", self._delays([d]), uncertain=True)
                continue
            if received:
                self.stats["resolved_received"] += 1
                self._final(d, "accepted", "recibido por el SII (confirmado por consulta tras un envío sin respuesta)")
            else:
                self.queue.requeue(d.doc_id)

    # --- poll --------------------------------------------------------------------------------------
    def poll_once(self, limit: int = 200) -> int:
        if not self._poll_lock.acquire(blocking=False):
            return 0
        try:
            done = 0
            for envio in self.queue.envios_due(limit):
                ch = self.channels.get(envio.channel)
                docs = self.queue.docs_of(envio.id)
                if ch is None or not docs:
                    self.queue.envio_done(envio.id)
                    continue
                try:
                    state = ch.poll(envio.track_id or "", [d.ref for d in docs])
                except UplinkError as exc:
                    self.queue.poll_later(envio.id, self._poll_delay(envio.polls), f"{exc.code}: {exc.detail}")
                    continue
                if not state.final:
                    self.queue.poll_later(envio.id, self._poll_delay(envio.polls))
                    continue
                for d in docs:
                    r = state.results.get(d.ref.key)
                    if r is None:
                        continue
                    extra = {"track_id": state.track_id} if state.track_id else {}
                    self._final(d, r.state, r.reason, errors=r.errors, **extra)
                self.queue.envio_done(envio.id)
                done += 1
            return done
        finally:
            self._poll_lock.release()

    def _poll_delay(self, polls: int) -> float:
        return min(self.s.poll_cap, self.s.poll_base * 2 ** min(polls, 20)) * self.rng.uniform(0.5, 1.0)

    def _final(self, d: QueuedDoc, state: str, reason: str, *, code: str = "SII_REJECTED",
               errors: list[str] | None = None, **values: Any) -> None:
        reason = reason + (f" ({'; '.join(errors)})" if errors else "")  # the SII's own messages, verbatim
        errs = None
        if state == "rejected_sii":
            errs = [DteSyncError(code if code.startswith(("SII_", "UPLINK_")) else "SII_REJECTED",
                                 params={"detail": reason})]
        # Report first, then close the row: a stop in between repeats the report at the next
        # start (the envío is polled again) instead of leaving the ERP's status file at `sent`.
        self._report(d.doc_id, state, reason[:1000] or None, **({"errors": errs} if errs else {}), **values)
        self.queue.finish(d.doc_id, state, None if state != "rejected_sii" else reason)

    # --- alerts ------------------------------------------------------------------------------------
    def alert(self, kind: str, info: dict) -> None:
        self.raised.append((kind, info))
        log.warning("alert: %s", kind, extra=info)
        if self.on_alert:
            self.on_alert(kind, info)

    def alerts_once(self) -> int:
        late = self.queue.waiting_longer_than(self.s.alert_after)
        for d in late:
            waited = self.clock() - d.enqueued_at
            self.alert("UPLINK_WAITING", {"doc": d.doc_id, "tipo_dte": d.ref.tipo_dte, "folio": d.ref.folio,
                                          "waited_s": round(waited), "last_error": d.last_error})
            self._report(d.doc_id, "queued" if d.state != "sent" else "sent",
                         f"alerta: esperando al SII desde hace {waited / 60:.0f} min ({d.last_error or 'sin error'})")
        if late:
            self.queue.mark_alerted([d.doc_id for d in late])
        return len(late)

    # --- scheduling --------------------------------------------------------------------------------
    def start(self, extra_jobs: list[tuple[Callable, dict]] = ()) -> None:
        """Recover in-flight uploads, then run the periodic ticks in the background."""
        from apscheduler.schedulers.background import BackgroundScheduler

        logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)  # "skipped: already running" is normal
        recovered = self.queue.recover()
        if recovered:
            log.info("uplink: uploads interrupted by a stop; resolving them first", extra={"count": recovered})
        sched = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
                                    timezone="UTC")
        sched.add_job(self._tick(self.drain_once), "interval", seconds=self.s.drain_interval, id="drain",
                      next_run_time=datetime.now().astimezone())
        sched.add_job(self._tick(self.poll_once), "interval", seconds=self.s.poll_interval, id="poll")
        sched.add_job(self._tick(self.alerts_once), "interval", seconds=self.s.alert_interval, id="alerts")
        for func, trigger in extra_jobs:
            sched.add_job(self._tick(func), **trigger)
        sched.start()
        self._scheduler = sched

    def _tick(self, func: Callable) -> Callable:
        def run() -> None:
            try:
                func()
            except Exception:
                log.exception("uplink: periodic job failed", extra={"job": getattr(func, "__name__", "?")})
        run.__name__ = getattr(func, "__name__", "job")
        return run

    def wake(self) -> None:
        """Run the drain soon (a new document may complete a batch)."""
        if self._scheduler is not None:
            try:
                self._scheduler.modify_job("drain", next_run_time=datetime.now().astimezone())
            except Exception:
                pass

    def stop(self, timeout: float = 10.0) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self.queue.close()
