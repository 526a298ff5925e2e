"""The delivery stage: every DTE to its receptor (the SII exchange), every virtual boleta to its
customer, and the receptors' answers back onto the documents.

- `on_signed` records a delivery durably (one row per document and kind, idempotent): a DTE
  that is not a boleta waits for the SII's acceptance (`after = "accepted"`) or is due at
  once (`after = "signed"`); a boleta is due at once when it was routed to a virtual station
  or its input carries the customer's e-mail (Res. Ex. 53/2025).
- `on_state` releases a waiting DTE when the SII accepted it (with or without objections)
  and cancels it when the SII rejected it.
- One sender thread sends what is due over one SMTP connection at a time, with the
  durable marks of sync.delivery.store around the final dot, retries with full-jitter
  backoff (sync.backoff) and backs off as a whole while the server is down.
- One reader thread looks at the exchange mailbox every `[delivery.imap] poll_interval`
  and files each verified answer on its document (status `receptor`, NAME.receptor.json).

The status file gets `delivery` (and `receptor` once answered); the SII `state` is never
touched: delivery is the receptor's business, not the SII's.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync.backoff import Backoff
from sync.delivery.answers import (
    Answer,
    AnswerError,
    AnswerItem,
    parse_answer,
    receptor_summary,
)
from sync.delivery.envelope import build_receptor_envelope
from sync.delivery.imap import (
    Fetched,
    ImapError,
    Mailbox,
    header,
    parse_mail,
    xml_parts,
)
from sync.delivery.mail import (
    Attachment,
    Mail,
    MailError,
    SmtpSender,
    SmtpSettings,
    document_title,
    message_id,
)
from sync.delivery.receptors import Directory
from sync.delivery.settings import DeliveryConfig, valid_address
from sync.delivery.store import FILE_NAME, UNFINISHED, Delivery, DeliveryStore
from sync.errors import DteSyncError
from sync.outbox import iso
from sync.rut import Rut, RutError
from sync.secrets import read_secret
from sync.signed import SignedDte
from sync.stage import Check, QueueStats, Stage
from sync.states import DocState

if TYPE_CHECKING:
    from sync.config import Config
    from sync.journal import Doc
    from sync.signing import Certificate

log = logging.getLogger("dtesync.delivery")

ACCEPTED = (DocState.ACCEPTED, DocState.ACCEPTED_WITH_OBJECTIONS)
IDLE_WAIT = 5.0  # s between looks at the queue when nothing is due (and at a re-imported list)


class DeliveryStage(Stage):
    name = "delivery"

    def __init__(self, config: Config, certificate: Certificate, *, store: DeliveryStore | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        super().__init__()
        if config.delivery is None:
            raise ValueError("DeliveryStage needs a [delivery] configuration")
        self.config = config
        self.dc: DeliveryConfig = config.delivery
        self.certificate = certificate
        self.store = store or DeliveryStore(Path(config.folders.state) / FILE_NAME)
        self.directory = Directory(self.store, self.dc.receptors)
        self.clock = clock
        rng = rng or random.Random()
        self.backoff = Backoff(self.dc.backoff_base, self.dc.backoff_cap, "full", rng)
        # While the server is down nothing is tried more often than this, whatever is due.
        self.server_backoff = Backoff(min(self.dc.backoff_base, 30.0), self.dc.backoff_cap, "equal", rng)
        self.stats: Counter[str] = Counter()
        self._stations: Any = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server_failures = 0
        self._server_down_until = 0.0
        self._smtp_error: str | None = None
        self._imap_error: str | None = None
        self._generation = self.store.receptors_generation()
        self._company_rut = str(config.company.rut)
        self._dirty: set[int] = set()  # documents whose status file lacks their new delivery entry
        self._dirty_lock = threading.Lock()

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        lost, uncertain = self.store.recover(self.clock())
        if lost or uncertain:
            log.warning("delivery: mails cut short by a stop are sent again",
                        extra={"before_final_dot": lost, "after_final_dot": uncertain})
        self.stats["recovered_uncertain"] += uncertain
        self._resync_waiting()
        if self.dc.after == "accepted" and getattr(self.config.uplink, "kind", "none") == "none":
            log.warning("delivery: after = \"accepted\" without an uplink: DTEs wait for an acceptance that never comes")
        self._spawn("dtesync-delivery", self._send_loop)
        if self.dc.imap is not None:
            self._spawn("dtesync-delivery-imap", self._imap_loop)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self._threads.clear()
        self.store.close()

    def wake(self) -> None:
        self._wake.set()

    def _resync_waiting(self) -> None:
        """A stop between the SII's verdict and `on_state` leaves a row waiting: ask the journal."""
        for d in self.store.in_state("waiting"):
            doc = self.filing.get(d.doc_id)
            if doc is not None:
                self._follow_state(doc)

    # --- documents --------------------------------------------------------------------------------
    def on_signed(self, doc: Doc, dte: SignedDte) -> None:
        label = f"{doc.rel}: {document_title(dte.tipo_dte)} folio {dte.folio}"
        common: dict[str, Any] = {"doc_id": doc.id, "rut_receptor": dte.rut_receptor, "rut_emisor": dte.rut_emisor,
                                  "tipo_dte": dte.tipo_dte, "folio": dte.folio, "label": label, "now": self.clock()}
        if dte.is_boleta:
            address = customer_address(dte)
            if address is None and not self._virtual(doc, dte):
                return  # a printed boleta with no e-mail: nothing to deliver
            created = self.store.enqueue(kind="boleta", state="pending", address=address, **common)
        else:
            if dte.rut_receptor == dte.rut_emisor:
                return  # a guía for an internal transfer: the issuer is its own receptor
            state = "pending" if self.dc.after == "signed" else "waiting"
            created = self.store.enqueue(kind="intercambio", state=state, **common)
            if state == "waiting" and doc.state in ACCEPTED:  # on_signed again after a crash, already accepted
                self.store.release(doc.id, self.clock())
        if created:  # the status file was written before this hook: say `pending` soon, from the
            self._mark_dirty(doc.id)  # sender thread, off the signing path
        self.wake()

    def _virtual(self, doc: Doc, dte: SignedDte) -> bool:
        if not any(s.virtual for s in self.config.printing.stations):
            return False
        if self._stations is None:
            from sync.printing.stations import Stations

            self._stations = Stations(self.config.printing)
        station = self._stations.route(folder=doc.folder, xml=dte.tree)
        return station is not None and station.config.virtual

    def on_state(self, doc: Doc) -> None:
        final = doc.state in ACCEPTED or doc.state == DocState.REJECTED_SII
        if final and any(d.state == "waiting" for d in self.store.for_doc(doc.id)):
            self._follow_state(doc)

    def _follow_state(self, doc: Doc) -> None:
        """The status file was just written with the row still waiting: rewrite it soon."""
        changed = False
        if doc.state in ACCEPTED:
            changed = self.store.release(doc.id, self.clock())
        elif doc.state == DocState.REJECTED_SII:
            changed = self.store.cancel(doc.id, "rechazado por el SII: no se entrega al receptor")
        if changed:
            self._mark_dirty(doc.id)
            self.wake()

    def _mark_dirty(self, doc_id: int) -> None:
        with self._dirty_lock:
            self._dirty.add(doc_id)

    def status_entry(self, doc: Doc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        rows = [d for d in self.store.for_doc(doc.id) if d.public_state is not None]
        if rows:
            out["delivery"] = self._delivery_entry(rows[-1])
        summary = self._receptor(doc.id)
        if summary is not None:
            out["receptor"] = summary
        return out

    def _delivery_entry(self, d: Delivery) -> dict[str, Any]:
        tz = self.filing.tz
        entry: dict[str, Any] = {
            "to": "receptor" if d.kind == "intercambio" else "customer",
            "address": d.address,
            "state": d.public_state,
            "attempts": d.attempts,
            "message_id": d.message_id,
            "sent_at": iso(d.sent_at, tz) if d.sent_at else None,
            "updated_at": iso(d.updated_at, tz),
        }
        if d.state == "waiting":
            entry["waiting_for"] = "accepted"
        if d.last_error and d.state != "sent":
            entry["error"] = d.last_error
        return entry

    def _receptor(self, doc_id: int) -> dict[str, Any] | None:
        return receptor_summary([a.as_dict() for a in self.store.answers_for(doc_id)])

    def _refresh(self, doc_id: int) -> None:
        try:
            self.filing.refresh(doc_id)
        except Exception:
            log.exception("delivery: could not rewrite the status file", extra={"doc": doc_id})

    def _refresh_dirty(self) -> None:
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        for doc_id in sorted(dirty):
            self._refresh(doc_id)

    # --- sending -----------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._refresh_dirty()
                self._readdress()
                wait = self.send_due()
            except Exception:
                log.exception("delivery: sender error; continuing")
                wait = 1.0
            if wait > 0:
                self._wake.wait(wait)
            self._wake.clear()

    def send_due(self, limit: int = 50) -> float:
        """Send what is due now (one connection); returns how long to wait before looking again."""
        now = self.clock()
        if now < self._server_down_until:
            return min(self._server_down_until - now, IDLE_WAIT)
        due = self.store.due(now, limit)
        if not due:
            nxt = self.store.next_due_at()
            return IDLE_WAIT if nxt is None else min(max(nxt - now, 0.01), IDLE_WAIT)
        sender = SmtpSender(self._smtp_settings())
        try:
            for d in due:
                if self._stopping.is_set():
                    return 0.0
                ready = self._prepare(d)
                if ready is not None and not self._attempt(sender, ready):
                    return min(max(self._server_down_until - self.clock(), 0.0), IDLE_WAIT)
        finally:
            sender.close()
        return 0.0 if len(due) == limit else 0.01

    def _smtp_settings(self) -> SmtpSettings:
        dc = self.dc
        password = dc.smtp_password
        return SmtpSettings(dc.smtp_host, dc.smtp_port, dc.smtp_tls, dc.smtp_user,
                            (lambda: read_secret(password, name="delivery.smtp_password")) if password else None,
                            dc.ca_bundle, dc.smtp_timeout)

    def _prepare(self, d: Delivery) -> Delivery | None:
        """The delivery with its message fixed (built once), or None when it cannot be sent
        (no address: `no_address`; no signed XML: `failed`)."""
        if d.message is not None and d.address:
            return d
        address = d.address if d.kind == "boleta" else self.directory.resolve(d.rut_receptor).address
        if not address:
            self._no_address(d)
            return None
        doc = self.filing.get(d.doc_id)
        dte = self.filing.signed_dte(doc) if doc is not None else None
        if doc is None or dte is None:
            self._give_up(d, address, "no se encontró el XML firmado del documento (NAME.xml)")
            return None
        try:
            mail, envio_name, envio_digest = self._build(d, doc, dte, address)
        except DteSyncError as exc:
            self._give_up(d, address, exc.message(self.config.language))
            return None
        self.store.prepared(d.id, address=address, message_id=mail.message_id, message=mail.to_bytes(),
                            envio_name=envio_name, envio_digest=envio_digest)
        return self.store.get(d.id)

    def _build(self, d: Delivery, doc: Doc, dte: SignedDte, address: str) -> tuple[Mail, str | None, str | None]:
        company = self.config.company
        title = document_title(dte.tipo_dte)
        mid = message_id(d.kind, dte.rut_emisor, dte.tipo_dte, dte.folio, d.doc_id, self.dc.from_)
        attachments: list[Attachment] = []
        envio_name = envio_digest = None
        base = f"{dte.rut_emisor}_T{dte.tipo_dte}F{dte.folio}"
        if d.kind == "intercambio":
            env = build_receptor_envelope(dte, self.certificate, fch_resol=company.fch_resol,
                                          nro_resol=company.nro_resol, now=datetime.now())
            attachments.append(Attachment(env.name, env.xml, "application", "xml"))
            envio_name, envio_digest = env.name, env.digest
            body = (f"Estimado receptor:\n\nAdjuntamos {title} N° {dte.folio} emitida por {company.razon_social} "
                    f"(RUT {dte.rut_emisor}) a {dte.rzn_soc_recep or dte.rut_receptor} (RUT {dte.rut_receptor}), "
                    f"por un total de ${dte.monto_total:,}.".replace(",", ".") +
                    f"\n\nEl archivo {env.name} es el envío de intercambio (EnvioDTE firmado). "
                    "Responda a esta dirección con su acuse de recibo (RespuestaDTE / EnvioRecibos).\n")
        else:
            body = (f"Gracias por su compra.\n\nAdjuntamos su {title.lower()} N° {dte.folio} de {company.razon_social} "
                    f"(RUT {dte.rut_emisor}), por un total de ${dte.monto_total:,}.".replace(",", ".") +
                    "\nEl timbre electrónico va en el PDF y en el archivo XML adjunto; "
                    f"puede verificar la boleta en {self.config.printing.boleta_url}.\n")
        if self.dc.attach_pdf or d.kind == "boleta":
            attachments.append(Attachment(f"{base}.pdf", self._pdf(doc, dte), "application", "pdf"))
        if d.kind == "boleta":
            ted = b'<?xml version="1.0" encoding="ISO-8859-1"?>\n' + dte.ted
            attachments.append(Attachment(f"{base}_timbre.xml", ted, "application", "xml"))
        subject = f"{title} N° {dte.folio} de {company.razon_social}"
        return Mail(self.dc.from_, address, subject, body, mid, attachments), envio_name, envio_digest

    def _pdf(self, doc: Doc, dte: SignedDte) -> bytes:
        """NAME.pdf as the printing stage wrote it; rendered by the same code when it is not there."""
        data = self.filing.read_result(doc, ".pdf")
        if data and data.startswith(b"%PDF"):
            return data
        from sync.printing.service import pdf_bytes, source_of

        return pdf_bytes(source_of(dte), self.config)

    def _attempt(self, sender: SmtpSender, d: Delivery) -> bool:
        """One attempt at one mail; False when the server is the problem (stop this run)."""
        assert d.message is not None and d.address
        self.store.sending(d.id)
        try:
            if not sender.connected:
                sender.connect()
            reply = sender.send(self.dc.from_, d.address, d.message, lambda: self.store.committing(d.id))
        except MailError as exc:
            return self._failed_attempt(d, exc)
        self.store.sent(d.id, reply, self.clock())
        self.stats["sent"] += 1
        self._server_ok()
        self.alerts.resolve(f"delivery:failed:{d.doc_id}")
        log.info("delivery: sent", extra={"doc": d.doc_id, "to": d.address, "message_id": d.message_id})
        self._refresh(d.doc_id)
        return True

    def _failed_attempt(self, d: Delivery, exc: MailError) -> bool:
        now = self.clock()
        current = self.store.get(d.id) or d
        if exc.after_dot:
            self.stats["uncertain"] += 1
            log.warning("delivery: connection lost after the final dot; the mail is sent again (same Message-ID)",
                        extra={"doc": d.doc_id, "message_id": d.message_id, "error": exc.detail})
        if exc.permanent and not exc.server:
            self._give_up(current, d.address or "", exc.detail)
        elif now - self._first_attempt(current) >= self.dc.give_up_after:
            self._give_up(current, d.address or "", f"{exc.detail} (se abandonó tras {current.attempts} intentos)")
        else:
            self.store.retry(d.id, exc.detail, now + self.backoff.delay(current.attempts - 1), uncertain=exc.after_dot)
            self.stats["retries"] += 1
            log.warning("delivery: attempt failed; retrying", extra={"doc": d.doc_id, "error": exc.detail,
                                                                    "attempts": current.attempts})
            self._refresh(d.doc_id)
        if exc.server:
            self._server_failed(exc.detail)
            return False
        return True

    def _first_attempt(self, d: Delivery) -> float:
        started = [a["at"] for a in self.store.attempts_of(d.id) if a["phase"] == "sending"]
        return min(started) if started else self.clock()

    def _server_failed(self, detail: str) -> None:
        self.stats["server_failures"] += 1
        self._server_down_until = self.clock() + self.server_backoff.delay(self._server_failures)
        self._server_failures += 1
        self._smtp_error = detail
        self.alerts.raise_("delivery:smtp", "DELIVERY_SMTP_DOWN", "ERROR", host=self.dc.smtp_host, detail=detail)

    def _server_ok(self) -> None:
        if self._server_failures or self._smtp_error:
            self._server_failures, self._smtp_error, self._server_down_until = 0, None, 0.0
            self.alerts.resolve("delivery:smtp")

    def _give_up(self, d: Delivery, address: str, detail: str) -> None:
        self.store.failed(d.id, detail)
        self.stats["failed"] += 1
        log.error("delivery: gave up", extra={"doc": d.doc_id, "to": address, "error": detail})
        self.alerts.raise_(f"delivery:failed:{d.doc_id}", "DELIVERY_FAILED", "ERROR", label=d.label, address=address,
                           detail=detail)
        self._refresh(d.doc_id)

    def _no_address(self, d: Delivery) -> None:
        if d.kind == "boleta":
            reason = "la boleta no trae el correo del cliente"
            self.alerts.raise_(f"delivery:no_address:doc{d.doc_id}", "DELIVERY_NO_CUSTOMER_ADDRESS", "WARNING",
                               label=d.label)
        else:
            reason = f"el receptor {d.rut_receptor} no tiene dirección de intercambio conocida"
            self.alerts.raise_(f"delivery:no_address:{d.rut_receptor}", "DELIVERY_NO_ADDRESS", "WARNING",
                               rut=d.rut_receptor, label=d.label)
        self.store.no_address(d.id, reason)
        self.stats["no_address"] += 1
        self._refresh(d.doc_id)

    def _readdress(self) -> None:
        """A newly imported list may hold addresses that were missing: try those again."""
        generation = self.store.receptors_generation()
        if generation == self._generation:
            return
        self._generation = generation
        for d in self.store.in_state("no_address"):
            if d.kind == "intercambio" and self.directory.resolve(d.rut_receptor).address:
                self.store.retry_now(d.id)
                self.alerts.resolve(f"delivery:no_address:{d.rut_receptor}")
                self._refresh(d.doc_id)

    # --- answers ---------------------------------------------------------------------------------
    def _imap_loop(self) -> None:
        assert self.dc.imap is not None
        while not self._stopping.is_set():
            try:
                self.read_answers_once()
            except Exception:
                log.exception("delivery: mailbox reader error; continuing")
            self._stopping.wait(self.dc.imap.poll_interval)

    def read_answers_once(self) -> int:
        """Look at the exchange mailbox once; returns the mails looked at."""
        cfg = self.dc.imap
        if cfg is None:
            return 0
        seen = 0
        try:
            with Mailbox(cfg, lambda: read_secret(cfg.password, name="delivery.imap.password")) as box:
                pos = self.store.imap_position(cfg.folder)
                after = pos[1] if pos is not None and pos[0] == box.uidvalidity else 0
                for fetched in box.new_messages(after):
                    self._handle_mail(fetched)
                    self.store.set_imap_position(cfg.folder, fetched.uidvalidity, fetched.uid)
                    seen += 1
                    if self._stopping.is_set():
                        break
        except ImapError as exc:
            self._imap_error = str(exc)
            self.alerts.raise_("delivery:imap", "DELIVERY_IMAP_DOWN", "WARNING", host=cfg.host, detail=str(exc))
            return seen
        self._imap_error = None
        self.alerts.resolve("delivery:imap")
        return seen

    def _handle_mail(self, fetched: Fetched) -> None:
        where = {"uid": fetched.uid}
        if fetched.data is None:
            log.warning("delivery: mail too large to be an answer; left alone", extra={**where, "bytes": fetched.size})
            return
        msg = parse_mail(fetched.data)
        mail_id = header(msg, "Message-ID")
        for part in xml_parts(msg):
            extra = {**where, "message_id": mail_id, "file": part.name}
            try:
                answer = parse_answer(part.data)
            except AnswerError as exc:
                self.stats["answers_malformed"] += 1
                log.warning("delivery: unreadable answer in the exchange mailbox", extra={**extra, "error": str(exc)})
                continue
            if answer is None:
                continue  # XML of another kind (a supplier's EnvioDTE): not ours to read
            self.apply_answer(answer, mail_id, extra)

    def apply_answer(self, answer: Answer, mail_id: str | None, where: dict[str, Any] | None = None) -> set[int]:
        """File a parsed answer on its documents; returns the document ids it changed."""
        where = where or {}
        if answer.schema_errors:
            log.info("delivery: answer off the official schema (kept)", extra={**where, "errors": answer.schema_errors})
        if not answer.signature_ok:
            self.stats["answers_bad_signature"] += 1
            log.warning("delivery: answer whose signature does not verify; ignored",
                        extra={**where, "problems": answer.problems})
            for i, item in enumerate(answer.items):
                self._record(answer, i, item, None, mail_id)
            return set()
        if _canonical(answer.rut_recibe) not in (None, self._company_rut):
            self.stats["answers_not_ours"] += 1
            log.warning("delivery: answer addressed to another company; ignored",
                        extra={**where, "rut_recibe": answer.rut_recibe})
            return set()
        touched: set[int] = set()
        for i, item in enumerate(answer.items):
            doc_id = self._match(item, where)
            if self._record(answer, i, item, doc_id, mail_id) and doc_id is not None:
                touched.add(doc_id)
                self.stats["answers_filed"] += 1
        for doc_id in touched:
            self._write_receptor(doc_id)
        return touched

    def _match(self, item: AnswerItem, where: dict[str, Any]) -> int | None:
        info = {**where, "kind": item.kind, "tipo_dte": item.tipo_dte, "folio": item.folio}
        if item.kind == "envio":
            d = self.store.by_envio(item.envio_name, item.envio_digest)
            if d is None or _canonical(item.rut_emisor) not in (None, self._company_rut):
                log.info("delivery: answer about an envelope we do not know", extra={**info, "envio": item.envio_name})
                return None
            return d.doc_id
        if _canonical(item.rut_emisor) != self._company_rut or item.tipo_dte is None or item.folio is None:
            self.stats["answers_unknown"] += 1
            log.warning("delivery: answer about a document of another issuer; ignored",
                        extra={**info, "rut_emisor": item.rut_emisor})
            return None
        d = self.store.by_document(self._company_rut, item.tipo_dte, item.folio)
        if d is None:
            self.stats["answers_unknown"] += 1
            log.warning("delivery: answer about a document we did not deliver; ignored", extra=info)
            return None
        if _canonical(item.rut_receptor) not in (None, _canonical(d.rut_receptor)):
            self.stats["answers_unknown"] += 1
            log.warning("delivery: answer from a RUT that is not the document's receptor; ignored",
                        extra={**info, "rut_recep": item.rut_receptor, "expected": d.rut_receptor})
            return None
        return d.doc_id

    def _record(self, answer: Answer, i: int, item: AnswerItem, doc_id: int | None, mail_id: str | None) -> bool:
        detail = {k: v for k, v in item.detail.items() if v is not None}
        if item.mnt_total is not None:
            detail["mnt_total"] = item.mnt_total
        if not answer.signature_ok:
            detail["problems"] = answer.problems
        return self.store.add_answer(
            sha256=answer.sha256, item=i, doc_id=doc_id, kind=item.kind, state=item.state, code=item.code,
            reason=item.reason, tipo_dte=item.tipo_dte, folio=item.folio, rut_emisor=item.rut_emisor,
            rut_receptor=item.rut_receptor, signed_at=item.signed_at, signature_ok=answer.signature_ok,
            detail=detail, mail_id=mail_id, now=self.clock())

    def _write_receptor(self, doc_id: int) -> None:
        doc = self.filing.get(doc_id)
        summary = self._receptor(doc_id)
        if doc is None or summary is None:
            return
        record = {"document_id": doc.id, "source": doc.rel, "tipo_dte": doc.tipo_dte, "folio": doc.folio,
                  "rut_emisor": doc.rut_emisor, "rut_receptor": doc.rut_receptor, **summary}
        try:
            self.filing.write_result(doc, ".receptor.json",
                                     json.dumps(record, ensure_ascii=False, indent=1).encode("utf-8"))
        except Exception:
            log.exception("delivery: could not write NAME.receptor.json", extra={"doc": doc_id})
        self._refresh(doc_id)

    # --- observation -------------------------------------------------------------------------------
    def checks(self) -> list[Check]:
        out = [Check("delivery.smtp", "degraded" if self._smtp_error else "ok",
                     self._smtp_error or f"{self.dc.smtp_host}:{self.dc.smtp_port}")]
        if self.dc.imap is not None:
            out.append(Check("delivery.imap", "degraded" if self._imap_error else "ok",
                             self._imap_error or f"{self.dc.imap.host}:{self.dc.imap.port}"))
        return out

    def queues(self) -> list[QueueStats]:
        waiting = [d for d in self.store.in_state(*UNFINISHED) if d.state != "waiting"]
        now = self.clock()
        return [QueueStats("delivery", len(waiting), min((now - d.created_at for d in waiting), default=None),
                           sum(1 for d in waiting if d.last_error))]


def customer_address(dte: SignedDte) -> str | None:
    """The customer's e-mail a boleta's input carried: CorreoRecep, else an e-mail in Contacto."""
    receptor = dte.documento.encabezado.receptor if dte.documento.encabezado else None
    if receptor is None:
        return None
    for value in (receptor.correo_recep, receptor.contacto):
        if value and valid_address(value.strip()):
            return value.strip()
    return None


def _canonical(rut: str | None) -> str | None:
    if rut is None:
        return None
    try:
        return str(Rut.parse(rut))
    except RutError:
        return rut


def build_delivery(config: Config, certificate: Certificate) -> DeliveryStage | None:
    """None when the configuration has no [delivery] table."""
    if config.delivery is None:
        return None
    return DeliveryStage(config, certificate)
