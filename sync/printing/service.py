"""Printing inside the daemon: a Stage (sync.stage) that writes NAME.pdf and feeds one sender per
station.

As soon as a document is signed (before any upload: contingency documents print too)
`on_signed` routes it to a station, renders the ticket and queues it durably, wakes that
station's sender, and hands NAME.pdf to a background writer. Senders deliver in order per station and retry with
backoff (1 s, 2 s, 4 s ... up to `retry_max`) while a printer is off, out of paper or
unreachable; they never touch signing or the other stations. Each change of a job's state
rewrites the document's status file, whose `print` entry shows it.
"""

from __future__ import annotations

import logging
import queue as queue_mod
import threading
import time
from pathlib import Path
from typing import Any, Callable

from sync.config import Config
from sync.errors import DteSyncError
from sync.journal import Doc
from sync.printing.connectors import PrinterUnavailable, send
from sync.printing.escpos import render_ticket
from sync.printing.layout import PrintSource, build_layout, cedible_label
from sync.printing.pdf import render_pdf
from sync.printing.queue import FILE_NAME, Job, PrintQueue
from sync.printing.stations import Station, Stations
from sync.signed import SignedDte
from sync.sii import is_boleta
from sync.stage import QueueStats, Stage

log = logging.getLogger("dtesync.printing")


def source_of(dte: SignedDte) -> PrintSource:
    return PrintSource(dte.documento, dte.ted, dte.tree)


def ticket_bytes(src: PrintSource, station: Station, config: Config) -> bytes:
    """Every copy the station prints for this document, as one job: `copies` originals (the
    cash drawer kicks with the first), then the CEDIBLE copy where it applies and is asked for."""
    sc = station.config
    layouts = [build_layout(src, config.company, config.printing)] * sc.copies
    if sc.cedible and cedible_label(src.documento):
        layouts.append(build_layout(src, config.company, config.printing, cedible=True))
    return b"".join(
        render_ticket(L, station.profile, cut=sc.cut, drawer=sc.cash_drawer and i == 0) for i, L in enumerate(layouts)
    )


def pdf_bytes(src: PrintSource, config: Config) -> bytes:
    """Boletas on the configured roll, the rest on sheets; the CEDIBLE copy as a second page."""
    p = config.printing
    tipo = src.documento.tipo_dte
    fmt = p.roll if is_boleta(tipo) else p.sheet
    copies = [build_layout(src, config.company, p)]
    if cedible_label(src.documento):
        copies.append(build_layout(src, config.company, p, cedible=True))
    return render_pdf(copies, fmt=fmt)


class StationSender(threading.Thread):
    """Sends a station's jobs in order; retries the head job with exponential backoff."""

    def __init__(self, station: Station, queue: PrintQueue, config: Config, on_change: Callable[[Job], None]):
        super().__init__(name=f"dtesync-print-{station.name}", daemon=True)
        self.station, self.queue, self.config, self.on_change = station, queue, config, on_change
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.queue.head(self.station.name)
                if job is None:
                    self.wake.wait(5.0)
                    self.wake.clear()
                    continue
                delay = job.next_at - time.time()
                if delay > 0:
                    self.wake.wait(delay)
                    self.wake.clear()
                    continue
                self._attempt(job)
            except Exception:
                log.exception("printing: sender error; continuing", extra={"station": self.station.name})
                self.stopping.wait(1.0)

    def _attempt(self, job: Job) -> None:
        p = self.config.printing
        try:
            send(self.station.config.connector, job.data)
        except PrinterUnavailable as exc:
            now = time.time()
            if now - job.created_at >= p.give_up_after:
                self.queue.failed(job.id, str(exc), now)
                log.error("printing: gave up", extra={"station": self.station.name, "job": job.label, "error": str(exc)})
            else:
                delay = min(p.retry_base * 2 ** job.attempts, p.retry_max)
                self.queue.retry(job.id, str(exc), now + delay, now)
                log.warning("printing: printer unavailable; retrying",
                            extra={"station": self.station.name, "job": job.label, "error": str(exc), "in_s": delay})
        else:
            self.queue.printed(job.id)
            log.info("printing: printed", extra={"station": self.station.name, "job": job.label})
        updated = self.queue.get(job.id)
        if updated is not None:
            self.on_change(updated)


class PdfWriter(threading.Thread):
    """Renders NAME.pdf in the background, so a worker is free for the next document as soon as
    its ticket is queued. The signed XML is the document; if the process dies before a PDF is
    written, `dtesync print NAME` renders it again from NAME.xml."""

    def __init__(self, config: Config, write: Callable[[Doc, bytes], None]):
        super().__init__(name="dtesync-pdf", daemon=True)
        self.config = config
        self._write = write
        self.jobs: queue_mod.Queue[tuple[PrintSource, Doc] | None] = queue_mod.Queue()

    def submit(self, src: PrintSource, doc: Doc) -> None:
        self.jobs.put((src, doc))

    def write(self, src: PrintSource, doc: Doc) -> None:
        self._write(doc, pdf_bytes(src, self.config))

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                self.write(*job)
            except Exception:
                log.exception("printing: could not write the PDF", extra={"doc": job[1].id})

    def drain_and_stop(self, timeout: float) -> None:
        """Write what is queued (a graceful stop leaves no PDF behind), then stop."""
        self.jobs.put(None)
        self.join(timeout)


class PrintService(Stage):
    """Owns the print queue, the senders and the PDF writer."""

    name = "printing"

    def __init__(self, config: Config, *, state_dir: Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.stations = Stations(config.printing)
        self.queue = PrintQueue(Path(state_dir or config.folders.state) / FILE_NAME)
        self.senders = {s.name: StationSender(s, self.queue, config, self._changed) for s in self.stations}
        self.pdf_writer = PdfWriter(config, lambda doc, data: self.filing.write_result(doc, ".pdf", data))
        self.listeners: list[Callable[[Job], None]] = []  # every change of a job (metrics: printed, errors)
        self._started = False

    def start(self) -> None:
        if not self._started:
            from sync.printing.escpos import warm_up

            for st in self.stations:
                warm_up(st.profile)
            for s in self.senders.values():
                s.start()
            self.pdf_writer.start()
            self._started = True

    def stop(self, timeout: float = 10.0) -> None:
        if self._started:
            self.pdf_writer.drain_and_stop(timeout)
        for s in self.senders.values():
            s.stopping.set()
            s.wake.set()
        if self._started:
            deadline = time.monotonic() + timeout
            for s in self.senders.values():
                s.join(max(0.1, deadline - time.monotonic()))
        self.queue.close()

    def _changed(self, job: Job) -> None:
        for listener in self.listeners:
            try:
                listener(job)
            except Exception:
                log.exception("printing: a job listener failed", extra={"job": job.id})
        if job.doc_id is not None and self._filing is not None:
            try:
                self.filing.refresh(job.doc_id)
            except Exception:
                log.exception("printing: could not rewrite the status file", extra={"doc": job.doc_id})

    def status_entry(self, doc: Doc) -> dict[str, Any]:
        """`print` entry for NAME.status.json (absent when the document has no ticket)."""
        job = self.queue.for_doc(doc.id)
        return {"print": job.status()} if job is not None else {}

    def queues(self) -> list[QueueStats]:
        pending = self.queue.jobs("pending")
        now = time.time()
        return [QueueStats("printing", len(pending), min((now - j.created_at for j in pending), default=None),
                           sum(1 for j in pending if j.attempts))]

    # --- the stage hook ------------------------------------------------------------------------
    def on_signed(self, doc: Doc, dte: SignedDte) -> None:
        """Idempotent per `doc.id`: the ticket is queued once; NAME.pdf is rewritten identically."""
        src = source_of(dte)
        station = self.stations.route(folder=doc.folder, xml=src.xml)
        if station is not None and not station.config.virtual:  # a virtual station e-mails (sync.delivery)
            self.enqueue(src, station, doc_key=f"doc:{doc.id}", doc_id=doc.id,
                         label=f"{doc.rel}: TipoDTE {dte.tipo_dte} folio {dte.folio}")
        if self.config.printing.pdf:
            if self._started:
                self.pdf_writer.submit(src, doc)  # off the signing path: ~30-70 ms of rendering
            else:
                self.pdf_writer.write(src, doc)

    def reprint(self, doc_id: int) -> Job:
        """A new ticket for a signed document, for its station (as routed when it was signed),
        behind whatever that station has queued (the panel's "reimprimir")."""
        doc = self.filing.get(doc_id)
        dte = self.filing.signed_dte(doc) if doc is not None else None
        if doc is None or dte is None:
            raise DteSyncError("PRINT_SOURCE_MISSING", found=f"#{doc_id}")
        src = source_of(dte)
        station = self.stations.route(folder=doc.folder, xml=src.xml)
        if station is None:
            raise DteSyncError("PRINT_STATION_UNKNOWN", found=doc.folder or "-",
                               params={"detail": ", ".join(s.name for s in self.stations) or "-"})
        return self.enqueue(src, station, doc_key=f"reprint:{doc_id}:{time.time_ns()}", doc_id=doc_id,
                            label=f"{doc.rel}: TipoDTE {dte.tipo_dte} folio {dte.folio} (reimpresión)")

    def enqueue(self, src: PrintSource, station: Station, *, doc_key: str, label: str,
                doc_id: int | None = None) -> Job:
        existing = self.queue.for_doc(doc_id) if doc_id is not None else None
        if existing is not None and existing.doc_key == doc_key:
            return existing  # already queued or printed: no second render
        job, created = self.queue.enqueue(doc_key, station.name, ticket_bytes(src, station, self.config),
                                          label=label, doc_id=doc_id)
        if created:
            self.senders[station.name].wake.set()
            self._changed(job)
        return job


def build_printing(config: Config) -> PrintService | None:
    """The printing stage, or None when there is neither a PDF to write nor a station."""
    p = config.printing
    if not p.pdf and not p.stations:
        return None
    return PrintService(config)
