"""The uplink stage: drains the queue in batches, polls envíos, resolves lost answers,
pauses a channel the SII refuses for an installation problem, raises alerts, and reports
every state change back to the ERP through a sink (the Filing's `update_state` once bound).

What each SII answer does is decided by its class (sync.uplink.answers):
- a verdict on the document -> final `accepted`, `accepted_with_objections` or `rejected_sii`;
- transient -> the same step again after a backoff;
- installation (certificate, enrolment, permissions, company) -> the channel pauses, the
  documents stay `queued`, an alert says what to fix and where, and the channel probes the
  SII every `installation_retry` seconds and resumes by itself;
- unknown -> the document is held with an alert, never taken as accepted, never re-sent blindly;
- lost (the answer never arrived) -> the document is looked up (QueryEstDte / boleta documento,
  with its real date, receptor and amount) and sent again only when the SII says it does not
  hold it *after* the processing window (`processing_window_minutes`) since the upload.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sync.alerts import Alerts
from sync.errors import DteSyncError
from sync.filing import Filing
from sync.journal import Doc
from sync.signed import SignedDte
from sync.sii import is_boleta
from sync.stage import Check, QueueStats, Stage
from sync.uplink import status
from sync.uplink.answers import DteKind, EnvioKind, Kind
from sync.uplink.channels import Channel
from sync.uplink.docref import DocRef
from sync.uplink.queue import Envio, Pause, QueuedDoc, UplinkQueue, full_jitter
from sync.uplink.status import DocResult, EnvioState, Lookup
from sync.uplink.transport import UplinkError

log = logging.getLogger("dtesync.uplink")
TOKEN_SERVICES = frozenset({"CrSeed", "GetTokenFromSeed", "semilla", "token"})


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
    uncertain_wait: float = 60.0  # before the first lookup of an upload whose answer was lost
    # The SII may still be filing an upload this long after it left: a document it does not
    # show yet is not sent again before. The SII publishes no processing time (docs/uplink-sii.md).
    processing_window_minutes: float = 30.0
    installation_retry: float = 300.0  # seconds between probes of a channel paused by the installation
    drain_interval: float = 1.0
    poll_interval: float = 1.0
    alert_after: float = 4 * 3600.0  # a document waiting longer than this raises an alert
    alert_interval: float = 60.0

    @property
    def processing_window(self) -> float:
        return self.processing_window_minutes * 60.0


class Uplink(Stage):
    name = "uplink"

    def __init__(self, queue: UplinkQueue, channels: dict[str, Channel], *, sink: StateSink | None = None,
                 settings: UplinkSettings | None = None, route: Callable[[int], str] | None = None,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.time,
                 on_alert: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        self.queue, self.channels = queue, channels
        self.sink = sink
        self.s = settings or UplinkSettings()
        self.route = route or (lambda tipo: "boleta" if is_boleta(tipo) and "boleta" in channels else
                               next(iter(channels)) if "http" in channels else "dte")
        self.rng = rng or random.Random()
        self.clock = clock
        self.on_alert = on_alert
        self.raised: list[tuple[str, dict[str, Any]]] = []  # every alert of this run, fallback path (tests, `status`)
        self._raised: dict[str, str] = {}  # key -> code: conditions notified through the fallback path
        self._tentative: dict[str, Pause] = {}  # probed channels whose next step proves the fix
        self._drain_lock, self._poll_lock, self._alert_lock = threading.Lock(), threading.Lock(), threading.Lock()
        self._scheduler: Any = None
        self.stats = {"envios": 0, "uploaded_docs": 0, "failures": 0, "ambiguous": 0, "resolved_received": 0,
                      "lookups": 0, "resends": 0, "paused": 0, "held": 0}
        self.errors: collections.Counter[str] = collections.Counter()  # failed envíos by UplinkError.kind (/metrics)
        self.pause_reason: str | None = None  # set by an admin (the panel): the drain sends nothing

    def bind_alerts(self, alerts: Alerts) -> None:
        """Raise conditions through the alerts hub (until then: the log and `on_alert`)."""
        self._alerts = alerts

    # --- pause (an admin's switch; a flag the drain checks, nothing else changes) ----------------------
    # (The SII refusing the installation pauses one channel instead: `queue.paused(channel)`.)
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

    def checks(self) -> list[Check]:
        """/health: each channel the SII refuses for the installation, with what to fix; each
        condition that holds documents (an answer the manuals do not document, a DNK)."""
        out = [Check(f"uplink:{p.channel}", "degraded", DteSyncError(p.alert["code"], params=p.alert["params"]).message())
               for p in self.queue.paused()]
        held = {d.hold["key"]: d.hold for d in self.queue.held() if d.hold}
        out += [Check(key.replace("uplink:hold:", "uplink:held:"), "degraded",
                      DteSyncError(a["code"], params=a["params"]).message()) for key, a in held.items()]
        return out

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
        """Report revived documents, resolve uncertain ones, then send every due batch of every
        channel that is not paused; returns envíos attempted. Nothing while an admin paused it."""
        if self.paused or not self._drain_lock.acquire(blocking=False):
            return 0
        try:
            for d in self.queue.take_revived():
                self._report(d.doc_id, "queued", "reactivado con `dtesync retry`: el rechazo anterior no era una "
                                                 f"decisión del SII sobre el documento ({d.last_error or ''})")
            sent = 0
            for name, ch in self.channels.items():
                if not self._ready(name, ch):
                    continue
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
            return self._send_failed(ch, envio_id, docs, exc)
        except Exception as exc:  # a bug must not lose documents: they stay queued, looked up first
            self.errors["internal"] += 1
            log.exception("uplink: unexpected error sending", extra={"envio": envio_id})
            self.queue.failed(envio_id, ids, f"INTERNAL: {exc}", self._delays(docs), uncertain=True)
            return False
        # Report first, then record: a stop in between leaves the rows `sending` (looked up at the
        # next start, the track id kept in the status file), never `sent` with no "sent" reported.
        for d in docs:
            self._report(d.doc_id, "sent", f"{ch.name} trackid {track}", track_id=track if ch.name != "http" else None)
        self.queue.sent(envio_id, track, self.s.poll_first)
        self._works_again(ch.name)
        self.stats["envios"] += 1
        self.stats["uploaded_docs"] += len(docs)
        return True

    def _send_failed(self, ch: Channel, envio_id: int, docs: list[QueuedDoc], exc: UplinkError) -> bool:
        ids = [d.doc_id for d in docs]
        self.stats["failures"] += 1
        self.errors[str(exc.kind)] += 1
        log.warning("uplink: envío failed", extra={"envio": envio_id, "kind": str(exc.kind), "error": exc.detail,
                                                   "docs": len(ids)})
        error = f"{exc.code}: {exc.detail}"
        nothing_sent = exc.service in TOKEN_SERVICES
        if exc.kind is Kind.VERDICT and len(docs) > 1:
            self.queue.failed(envio_id, ids, error, [0.0] * len(ids), solo=True)  # find the culprit alone
            return True
        if exc.kind is Kind.VERDICT:
            self._final(docs[0], "rejected_sii", exc.detail,
                        code="SII_UPLOAD_REJECTED" if exc.code == "SII_UPLOAD_REJECTED" else exc.code)
            self.queue.envio_done(envio_id)
            return True
        if exc.kind is Kind.INSTALLATION or (exc.kind is Kind.UNKNOWN and nothing_sent):
            self.queue.failed(envio_id, ids, error, [0.0] * len(ids))
            self._pause(ch, "token" if nothing_sent else "upload", exc, docs)
            return False
        if exc.kind is Kind.UNKNOWN:  # an undocumented answer to an upload: it may have been filed
            self.queue.failed(envio_id, ids, error, [self.s.uncertain_wait] * len(ids), uncertain=True)
            self._hold(ch, docs, exc.service or "DTEUpload", exc)
            return False
        if exc.kind is Kind.LOST:
            self.stats["ambiguous"] += 1
            self.queue.failed(envio_id, ids, error, [self.s.uncertain_wait] * len(ids), uncertain=True)
            return False
        self.queue.failed(envio_id, ids, error, self._delays(docs, exc.retry_after))  # transient
        return False

    # --- lost answers: look the document up before anything is sent again --------------------------
    def _resolve_uncertain(self, name: str, ch: Channel) -> None:
        for d in self.queue.uncertain_due(name):
            if self.queue.paused(name):
                return
            try:
                lk = ch.lookup(d.ref)
            except UplinkError as exc:
                if self._channel_problem(ch, exc, "query"):
                    return
                self.queue.check_later(d.doc_id, self._check_delay(d), f"{exc.code}: {exc.detail}")
                continue
            self.stats["lookups"] += 1
            if lk is not None and lk.kind not in (DteKind.INSTALLATION, DteKind.UNKNOWN):
                self._works_again(name, "token", "query")
            self._apply_lookup(ch, d, lk)

    def _apply_lookup(self, ch: Channel, d: QueuedDoc, lk: Lookup | None) -> None:
        waited = self.clock() - (d.sent_at or d.enqueued_at)
        if lk is None:  # the destination makes a resend harmless (provider: Idempotency-Key)
            self.queue.requeue(d.doc_id)
        elif lk.kind is DteKind.RECEIVED:
            self.stats["resolved_received"] += 1
            self._final(d, "accepted", f"recibido por el SII ({lk.text}; confirmado por consulta tras un envío "
                                       f"sin respuesta)")
        elif lk.kind is DteKind.NOT_RECEIVED and waited >= self.s.processing_window:
            self.stats["resends"] += 1
            self.queue.requeue(d.doc_id)  # the SII says it never got it, and it had all the time to file it
        elif lk.kind is DteKind.NOT_RECEIVED:
            self.queue.check_later(d.doc_id, min(self._check_delay(d), self.s.processing_window - waited + 0.01))
        elif lk.kind is DteKind.MISMATCH:
            self._mismatch(ch, d, lk)
            self.queue.check_later(d.doc_id, max(self.s.processing_window, self.s.poll_cap), lk.text)
        elif lk.kind is DteKind.INSTALLATION:
            self.queue.check_later(d.doc_id, 0.0, lk.text)
            self._pause_answer(ch, "query", "consulta de estado", lk.estado, lk.glosa, fix=lk.fix, docs=[d])
        elif lk.kind is DteKind.UNKNOWN:
            self._hold_answer(ch, [d], "consulta de estado", lk.estado, lk.glosa)
            self.queue.check_later(d.doc_id, self.s.poll_cap, lk.text)
        else:  # transient
            self.queue.check_later(d.doc_id, self._check_delay(d), lk.text)

    def _check_delay(self, d: QueuedDoc) -> float:
        return self._poll_delay(d.checks)

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
                    if not self._channel_problem(ch, exc, "query"):
                        self.queue.poll_later(envio.id, max(self._poll_delay(envio.polls), exc.retry_after or 0),
                                              f"{exc.code}: {exc.detail}")
                    else:
                        self.queue.poll_later(envio.id, self.s.installation_retry, f"{exc.code}: {exc.detail}")
                    continue
                done += self._apply_envio(ch, envio, docs, state)
            return done
        finally:
            self._poll_lock.release()

    def _apply_envio(self, ch: Channel, envio: Envio, docs: list[QueuedDoc], state: EnvioState) -> int:
        """One answer about an envío; returns 1 when the envío is settled."""
        k = state.kind
        later = self._poll_delay(envio.polls)
        if k in (EnvioKind.PROCESSING, EnvioKind.TRANSIENT, EnvioKind.NOT_VISIBLE):
            if k is EnvioKind.NOT_VISIBLE and self.clock() - envio.created_at > self.s.processing_window:
                self._hold_answer(ch, docs, "consulta del envío", state.estado,
                                  f"{state.glosa} (el envío {envio.track_id} no aparece tras la ventana de proceso)")
            self.queue.poll_later(envio.id, max(later, state.retry_after or 0.0), f"{state.estado}: {state.glosa}")
            return 0
        if k is EnvioKind.UNKNOWN:
            self._hold_answer(ch, docs, "consulta del envío", state.estado, state.glosa)
            self.queue.poll_later(envio.id, self.s.poll_cap, f"{state.estado}: {state.glosa}")
            return 0
        ids = [d.doc_id for d in docs]
        if k is EnvioKind.INSTALLATION:  # e.g. RCT: nothing was filed; send again once fixed
            self.queue.unsent(envio.id, ids, f"{state.estado}: {state.glosa}")
            self._pause_answer(ch, "upload", "consulta del envío", state.estado, state.glosa, fix=state.fix, docs=docs)
            return 1
        if k is EnvioKind.REJECTED and len(docs) > 1:  # RSC/RFR: find the culprit, each one alone
            self.queue.unsent(envio.id, ids, f"{state.estado}: {state.glosa}", solo=True)
            return 1
        self._works_again(ch.name, "token", "query")  # a query answered: the token and the query work
        decided = dict(state.results)
        if state.lookup:
            decided.update(self._lookups(ch, envio, docs, state))
        extra = {"track_id": state.track_id} if state.track_id else {}
        outcomes = [self._reported(d, r.state, r.reason, errors=r.errors, **extra)
                    for d in docs if (r := decided.get(d.ref.key)) is not None]
        settled = all(d.ref.key in decided for d in docs)
        self.queue.finish_many(outcomes, envio.id if settled else None)  # one transaction per envío
        if settled:
            return 1
        self.queue.poll_later(envio.id, later, "documentos por resolver")
        return 0

    def _lookups(self, ch: Channel, envio: Envio, docs: list[QueuedDoc],
                 state: EnvioState) -> dict[tuple[int, int], DocResult]:
        """Per-document lookups of a processed envío's undecided documents, then the decision."""
        by_key = {d.ref.key: d for d in docs}
        lookups: dict[tuple[int, int], Lookup] = {}
        for ref in state.lookup:
            d = by_key.get(ref.key)
            if d is None:
                continue
            try:
                lk = ch.lookup(ref)
            except UplinkError as exc:
                self._channel_problem(ch, exc, "query")
                continue
            if lk is None:
                continue
            self.stats["lookups"] += 1
            lookups[ref.key] = lk
            if lk.kind is DteKind.MISMATCH:
                self._mismatch(ch, d, lk)
            elif lk.kind is DteKind.INSTALLATION:
                self._pause_answer(ch, "query", "consulta de estado", lk.estado, lk.glosa, fix=lk.fix)
                break
            elif lk.kind is DteKind.UNKNOWN:
                self._hold_answer(ch, [d], "consulta de estado", lk.estado, lk.glosa)
        decided = status.decide(state, lookups)
        late = [by_key[k] for k in lookups if k not in decided and lookups[k].kind is DteKind.NOT_RECEIVED]
        if late and self.clock() - envio.created_at > self.s.processing_window:
            self._hold_answer(ch, late, "consulta de estado", "FAU",
                              f"el envío {envio.track_id} fue procesado ({state.summary}) pero el SII no muestra estos "
                              f"documentos tras la ventana de proceso")
        return decided

    def _poll_delay(self, polls: int) -> float:
        return float(min(self.s.poll_cap, self.s.poll_base * 2.0 ** min(polls, 20)) * self.rng.uniform(0.5, 1.0))

    def _final(self, d: QueuedDoc, state: str, reason: str, *, code: str = "SII_REJECTED",
               errors: list[str] | None = None, **values: Any) -> None:
        outcome = self._reported(d, state, reason, code=code, errors=errors, **values)
        self.queue.finish_many([outcome])

    def _reported(self, d: QueuedDoc, state: str, reason: str, *, code: str = "SII_REJECTED",
                  errors: list[str] | None = None, **values: Any) -> tuple[int, str, str | None]:
        """Report a final state to the ERP; returns the row's outcome for the queue.

        Report first, then close the row: a stop in between repeats the report at the next
        start (the envío is polled again) instead of leaving the ERP's status file at `sent`."""
        reason = reason + (f" ({'; '.join(errors)})" if errors else "")  # the SII's own messages, verbatim
        errs = None
        if state == "rejected_sii":
            errs = [DteSyncError(code if code.startswith(("SII_", "UPLINK_")) else "SII_REJECTED",
                                 params={"detail": reason})]
        self._report(d.doc_id, state, reason[:1000] or None, **({"errors": errs} if errs else {}), **values)
        return d.doc_id, state, None if state != "rejected_sii" else reason

    # --- installation problems: pause the channel, probe, resume ------------------------------------
    def _ready(self, name: str, ch: Channel) -> bool:
        """False while the channel is paused; at probe time ask the SII for a token again."""
        pauses = self.queue.paused(name)
        if not pauses:
            return True
        pause = pauses[0]
        if self.clock() < pause.probe_at:
            return False
        try:
            ch.probe()
        except UplinkError as exc:
            if exc.kind in (Kind.INSTALLATION, Kind.UNKNOWN):
                self._pause(ch, "token", exc, [])
                self.queue.probe_later(name, self.s.installation_retry)
            else:
                self.queue.probe_later(name, min(self.s.installation_retry, self.s.backoff_base))
            return False
        resumed = self.queue.resume(name)
        if pause.source == "token" and resumed is not None:
            log.info("uplink: channel resumed", extra={"channel": name})
            self._resolve(resumed.alert["key"], resumed.alert["code"])
        elif resumed is not None:  # the token works; the next upload (or query) tells whether the rest does
            self._tentative[name] = resumed
        return True

    def _channel_problem(self, ch: Channel, exc: UplinkError, source: str) -> bool:
        """Pause the channel for an installation problem (or an undocumented token answer) met
        while querying; True when it did."""
        if exc.kind is Kind.INSTALLATION or (exc.kind is Kind.UNKNOWN and exc.service in TOKEN_SERVICES):
            self._pause(ch, "token" if exc.service in TOKEN_SERVICES else source, exc, [])
            return True
        return False

    def _pause(self, ch: Channel, source: str, exc: UplinkError, docs: Iterable[QueuedDoc]) -> None:
        answer = exc.answer
        code = answer.code if answer else exc.code
        meaning = answer.meaning if answer else exc.detail
        fix = answer.fix if answer else ""
        unknown = exc.kind is Kind.UNKNOWN or not fix
        self._pause_answer(ch, source, exc.service or ch.name, code, meaning, fix=fix, docs=docs, unknown=unknown)

    def _pause_answer(self, ch: Channel, source: str, service: str, code: str, meaning: str, *, fix: str = "",
                      docs: Iterable[QueuedDoc] = (), unknown: bool = False) -> None:
        try:
            fix_text = fix.format(**ch.context())
        except (KeyError, IndexError):
            fix_text = fix
        catalog = "SII_ANSWER_UNKNOWN" if unknown else "SII_INSTALLATION"
        params = {"service": service, "answer": code, "meaning": meaning, "fix": fix_text, "channel": ch.name,
                  "who": "El proveedor" if ch.name == "http" else "El SII",
                  "who_en": "The provider" if ch.name == "http" else "The SII"}
        alert = {"key": f"uplink:pause:{ch.name}", "code": catalog, "params": params}
        old = self.queue.paused(ch.name)
        previous = old[0].alert if old else (self._tentative.pop(ch.name).alert if ch.name in self._tentative else None)
        if previous is not None and previous != alert:
            self._resolve(previous["key"], previous["code"])
        if not old or old[0].alert != alert:  # the same condition again keeps its probe time
            self.queue.pause(ch.name, source, alert, self.s.installation_retry)
        if not old:
            self.stats["paused"] += 1
            log.warning("uplink: channel paused", extra={"channel": ch.name, "answer": code, "service": service})
        self._raise(alert)
        note = DteSyncError(catalog, params=params).message()
        for d in docs:
            self._report(d.doc_id, "queued", note)

    def _works_again(self, name: str, *proves: str) -> None:
        """A step worked: end a pause whose cause it proves fixed (every cause when `proves` is
        empty: an upload went through), and resolve its alert."""
        tentative = self._tentative.get(name)
        if tentative is not None and (not proves or tentative.source in proves):
            del self._tentative[name]
            if not self.queue.paused(name):
                log.info("uplink: channel resumed", extra={"channel": name})
                self._resolve(tentative.alert["key"], tentative.alert["code"])
        pauses = self.queue.paused(name)
        if not pauses or (proves and pauses[0].source not in proves):
            return
        pause = self.queue.resume(name)
        if pause is not None:
            log.info("uplink: channel resumed", extra={"channel": name})
            self._resolve(pause.alert["key"], pause.alert["code"])

    # --- held documents ------------------------------------------------------------------------------
    def _hold(self, ch: Channel, docs: list[QueuedDoc], service: str, exc: UplinkError) -> None:
        answer = exc.answer
        self._hold_answer(ch, docs, service, answer.code if answer else exc.code,
                          answer.meaning if answer else exc.detail)

    def _hold_answer(self, ch: Channel, docs: list[QueuedDoc], service: str, code: str, meaning: str) -> None:
        """Hold documents on an answer the manuals do not explain: an alert, a note in their
        status files, and no conclusion drawn from it."""
        params = {"service": service, "answer": code, "meaning": meaning, "channel": ch.name}
        alert = {"key": f"uplink:hold:{ch.name}:{service}:{code}", "code": "SII_ANSWER_UNKNOWN", "params": params}
        self._hold_docs(docs, alert)

    def _mismatch(self, ch: Channel, d: QueuedDoc, lk: Lookup) -> None:
        params = {"tipo_dte": d.ref.tipo_dte, "folio": d.ref.folio, "detail": lk.text, "channel": ch.name}
        self._hold_docs([d], {"key": f"uplink:mismatch:{d.doc_id}", "code": "SII_DATA_MISMATCH", "params": params})

    def _hold_docs(self, docs: list[QueuedDoc], alert: dict[str, Any]) -> None:
        fresh = [d for d in docs if (d.hold or {}).get("key") != alert["key"]]
        if not fresh:
            return
        self.queue.hold([d.doc_id for d in fresh], alert)
        self.stats["held"] += len(fresh)
        self._raise(alert)
        note = DteSyncError(alert["code"], params=alert["params"]).message()
        for d in fresh:
            self._report(d.doc_id, "sent" if d.state == "sent" else "queued", note)

    # --- alerts ------------------------------------------------------------------------------------
    def alert(self, kind: str, info: dict[str, Any]) -> None:
        """The path used while no alerts hub is bound: the log, `on_alert` and `self.raised`."""
        self.raised.append((kind, info))
        log.warning("alert: %s", kind, extra=info)
        if self.on_alert:
            self.on_alert(kind, info)

    def _raise(self, alert: dict[str, Any]) -> None:
        key, code, params = alert["key"], alert["code"], alert["params"]
        if self._alerts is not None:
            self._alerts.raise_(key, code, "ERROR" if code == "SII_INSTALLATION" else "WARNING", **params)
            return
        with self._alert_lock:
            if self._raised.get(key) == code:
                return
            self._raised[key] = code
        self.alert(code, {"key": key, **params, "text": DteSyncError(code, params=params).message()})

    def _resolve(self, key: str, code: str) -> None:
        if self._alerts is not None:
            self._alerts.resolve(key)
            return
        with self._alert_lock:
            if self._raised.pop(key, None) is None:
                return
        self.alert("RESOLVED", {"key": key, "code": code})

    def alerts_once(self) -> int:
        """Documents waiting too long (one alert each), and the conditions of paused channels
        and held documents recomputed from the queue: raised while they last, resolved after."""
        late = self.queue.waiting_longer_than(self.s.alert_after)
        for d in late:
            waited = self.clock() - d.enqueued_at
            info = {"doc": d.doc_id, "tipo_dte": d.ref.tipo_dte, "folio": d.ref.folio, "waited_s": round(waited),
                    "last_error": d.last_error}
            if self._alerts is not None:
                self._alerts.raise_(f"uplink:waiting:{d.doc_id}", "UPLINK_WAITING", "WARNING",
                                    minutes=round(waited / 60), **info)
            else:
                self.alert("UPLINK_WAITING", info)
            self._report(d.doc_id, "queued" if d.state != "sent" else "sent",
                         f"alerta: esperando al SII desde hace {waited / 60:.0f} min ({d.last_error or 'sin error'})")
        if late:
            self.queue.mark_alerted([d.doc_id for d in late])
        active: dict[str, dict[str, Any]] = {}
        for p in self.queue.paused():
            active[p.alert["key"]] = p.alert
        for d in self.queue.held():
            if d.hold:
                active[d.hold["key"]] = d.hold
        for alert in active.values():
            self._raise(alert)
        waiting = {f"uplink:waiting:{i}" for i in self.queue.waiting_alerted()}
        if self._alerts is not None:
            for a in self._alerts.active():
                if a.key.startswith(("uplink:pause:", "uplink:hold:", "uplink:mismatch:")) and a.key not in active or a.key.startswith("uplink:waiting:") and a.key not in waiting:
                    self._alerts.resolve(a.key)
        else:
            for key, code in list(self._raised.items()):
                if key not in active:
                    self._resolve(key, code)
        return len(late)

    # --- scheduling --------------------------------------------------------------------------------
    def start(self, extra_jobs: Iterable[tuple[Callable[[], Any], dict[str, Any]]] = ()) -> None:
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

    def _tick(self, func: Callable[[], Any]) -> Callable[[], None]:
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
            except LookupError:  # the scheduler is shutting down: the job is gone
                log.debug("uplink: wake after stop")

    def stop(self, timeout: float = 10.0) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self.queue.close()
