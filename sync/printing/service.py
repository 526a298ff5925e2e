"""Printing inside the daemon: a Stage (sync.stage) that writes NAME.pdf and feeds one sender per
station.

As soon as a document is signed (before any upload: contingency documents print too)
`on_signed` routes it to a station, renders the ticket and queues it durably, wakes that
station's sender, and hands NAME.pdf to a background writer. A document the SII's rules keep off a station's paper
(a factura on 58 mm) is queued as `refused`, with the reason, and never sent.

Each sender delivers its station's jobs in order (sync.printing.delivery): it asks the
printer's status before and after each job, waits while the printer reports paper out, cover
open, offline or an error (asking again every `status_poll` s), backs off (sync.backoff) while
it is unreachable or stalled, and marks REIMPRESIÓN on a job an earlier attempt may have left
half-printed. Every change of a job rewrites the document's status file (`print` entry); a PDF
that could not be written gets a `pdf` entry saying why.
"""

from __future__ import annotations

import logging
import queue as queue_mod
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync.backoff import Backoff
from sync.config import Config
from sync.errors import CATALOG, DteSyncError
from sync.journal import Doc
from sync.printing.delivery import Outcome, deliver
from sync.printing.escpos import job_start, render_ticket, reprint_marker, timbre_mode
from sync.printing.layout import (
    PrintSource,
    build_layout,
    cedible_label,
    source_from_dte_xml,
)
from sync.printing.queue import FILE_NAME, Job, PrintQueue
from sync.printing.rules import LayoutRefused, roll_refusal
from sync.printing.stations import Station, Stations
from sync.printing.status import Condition
from sync.signed import SignedDte
from sync.sii import is_boleta
from sync.stage import Check, QueueStats, Stage

log = logging.getLogger("dtesync.printing")
REPRINT_REASON = {"es": "Un envío anterior pudo quedar incompleto", "en": "An earlier attempt may be incomplete"}
# NAME.pdf jobs handed to the other process at once; the rest wait in the queue's pdf_jobs table
# (a 10 000-file backlog would otherwise hold 10 000 jobs in memory on both sides of the pipe).
PDF_WINDOW = 32
MANUAL_REASON = {"es": "Copia pedida con dtesync print", "en": "Copy asked with dtesync print"}


@dataclass(frozen=True)
class PdfJob:
    """NAME.pdf to render from NAME.xml, for a renderer in another process (paths under the
    outbox, archive or rejected folders, reached there through the outbox's link-safe folders)."""

    xml_path: str
    pdf_path: str


def source_of(dte: SignedDte) -> PrintSource:
    return PrintSource(dte.documento, dte.ted, dte.tree)


@dataclass(frozen=True)
class RenderedJob:
    """A job's bytes, where each copy's pinned start sequence ends, and how its timbre goes."""

    data: bytes
    offsets: list[int]
    mode: str  # native | raster


def render_job(src: PrintSource, station: Station, config: Config, *, native: bool | None = None) -> RenderedJob:
    """Every copy the station prints for this document, as one job: `copies` originals (the
    cash drawer kicks with the first), then the CEDIBLE copy where it applies and is asked for.
    Raises LayoutRefused when the SII's rules keep the document off this paper."""
    sc = station.config
    layouts = [build_layout(src, config.company, config.printing)] * sc.copies
    if sc.cedible and cedible_label(src.documento):
        layouts.append(build_layout(src, config.company, config.printing, cedible=True))
    start = len(job_start(station.profile))
    parts, offsets, at = [], [], 0
    for i, L in enumerate(layouts):
        part = render_ticket(L, station.profile, cut=sc.cut, drawer=sc.cash_drawer and i == 0, native=native)
        parts.append(part)
        offsets.append(at + start)
        at += len(part)
    mode = timbre_mode(src.ted, src.documento.tipo_dte, station.profile, native)
    return RenderedJob(b"".join(parts), offsets, mode)


def ticket_bytes(src: PrintSource, station: Station, config: Config) -> bytes:
    return render_job(src, station, config).data


def with_marker(data: bytes, offsets: list[int], marker: bytes) -> bytes:
    """The job with `marker` printed at the top of every copy (after its pinned start)."""
    out, last = [], 0
    for at in offsets:
        out += [data[last:at], marker]
        last = at
    out.append(data[last:])
    return b"".join(out)


def refusal(station: Station, tipo_dte: int, lang: str = "es") -> DteSyncError | None:
    """Why this station must not print this type (its `types`, or paper the SII does not allow)."""
    sc = station.config
    types = getattr(sc, "types", None)
    if types and tipo_dte not in types:
        return DteSyncError("PRINT_TYPE_NOT_FOR_STATION", found=station.name,
                            params={"tipo_dte": tipo_dte, "detail": ", ".join(map(str, types))})
    why = roll_refusal(tipo_dte, station.profile.paper_mm)
    if why:
        return DteSyncError("PRINT_PAPER_TOO_NARROW", found=station.name, params={"tipo_dte": tipo_dte, "detail": why})
    return None


def pdf_bytes(src: PrintSource, config: Config) -> bytes:
    """Boletas on the configured roll, the rest on sheets; the CEDIBLE copy as a second page."""
    from sync.printing.pdf import render_pdf  # reportlab: loaded only where PDFs are rendered (often another process)

    p = config.printing
    tipo = src.documento.tipo_dte
    fmt = p.roll if is_boleta(tipo) else p.sheet
    copies = [build_layout(src, config.company, p)]
    if cedible_label(src.documento):
        copies.append(build_layout(src, config.company, p, cedible=True))
    return render_pdf(copies, fmt=fmt)


@dataclass
class PrinterState:
    """What a sender last heard from its printer (for /health)."""

    condition: Condition = Condition.UNKNOWN
    detail: str = ""
    at: float | None = None


class StationSender(threading.Thread):
    """Sends a station's jobs in order: status before and after each, waits out faults."""

    def __init__(self, station: Station, queue: PrintQueue, config: Config, on_change: Callable[[Job], None],
                 rerender: Callable[[Job, bool], RenderedJob | None] | None = None,
                 on_printer: Callable[[str, Outcome], None] | None = None):
        super().__init__(name=f"dtesync-print-{station.name}", daemon=True)
        self.station, self.queue, self.config, self.on_change = station, queue, config, on_change
        self.rerender, self.on_printer = rerender, on_printer
        p = config.printing
        self.backoff = Backoff(p.retry_base, p.retry_max)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.printer = PrinterState()
        self.native_ok: bool | None = None  # GS ( k confirmed by this printer in this process

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
                self.attempt(job)
            except Exception:
                log.exception("printing: sender error; continuing", extra={"station": self.station.name})
                self.stopping.wait(1.0)

    def attempt(self, job: Job) -> Outcome:
        """One delivery of the head job, and its consequences in the queue."""
        profile, lang = self.station.profile, self.config.language
        if job.mode == "native" and self.native_ok is False:  # known not to draw GS ( k: no new probe
            out = Outcome(False, Condition.NO_PDF417, f"{self.station.name}: {Condition.NO_PDF417.says(lang)}")
            self._as_raster(job, out, time.time())
            updated = self.queue.get(job.id)
            if updated is not None:
                self.on_change(updated)
            return out
        data = job.data
        if job.partial:
            data = with_marker(data, job.copy_offsets, reprint_marker(profile, REPRINT_REASON.get(lang, REPRINT_REASON["es"])))
        out = deliver(self.station.config.connector, profile, data, lang=lang,
                      probe_native=job.mode == "native" and self.native_ok is not True, clear_leftover=bool(job.partial))
        self._heard(out)
        now = time.time()
        if out.native is not None:
            self.native_ok = out.native
        if out.condition == Condition.NO_PDF417 and not out.printed:
            self._as_raster(job, out, now)
        elif out.printed:
            self.queue.printed(job.id, now, condition=str(out.condition), reprint=bool(job.partial))
            log.info("printing: printed", extra={"station": self.station.name, "job": job.label,
                                                 "reprint": bool(job.partial)})
        elif now - job.created_at >= self.config.printing.give_up_after:
            self.queue.failed(job.id, self._says(out), now, code=out.condition.code)
            log.error("printing: gave up", extra={"station": self.station.name, "job": job.label, "error": out.detail})
        else:
            responding = out.condition in (Condition.PAPER_OUT, Condition.COVER_OPEN, Condition.OFFLINE, Condition.ERROR)
            delay = min(profile.status_poll, self.config.printing.retry_max) if responding else self.backoff.delay(job.attempts)
            self.queue.retry(job.id, self._says(out), now + delay, now, condition=str(out.condition),
                             code=out.condition.code, partial=out.partial)
        updated = self.queue.get(job.id)
        if updated is not None:
            self.on_change(updated)
        return out

    def _says(self, out: Outcome) -> str:
        """The catalog's words for a printer that did not print (code and all), for people."""
        code = out.condition.code
        if code is None:
            return out.detail
        return DteSyncError(code, params={"station": self.station.name, "detail": out.detail}).message(self.config.language)

    def _heard(self, out: Outcome) -> None:
        before = self.printer.condition
        self.printer = PrinterState(out.condition, out.detail, time.time())
        if self.on_printer is not None:
            self.on_printer(self.station.name, out)
        if out.condition != before and not out.condition.prints:
            log.warning("printing: printer not printing", extra={"station": self.station.name, "error": out.detail,
                                                                  "condition": str(out.condition)})
        elif out.condition != before and not before.prints:
            log.info("printing: printer back", extra={"station": self.station.name, "condition": str(out.condition)})

    def _as_raster(self, job: Job, out: Outcome, now: float) -> None:
        """The printer does not draw GS ( k: render the job again with a raster timbre."""
        again = self.rerender(job, False) if self.rerender is not None else None
        if again is None:
            self.queue.failed(job.id, f"{out.detail}; no se pudo volver a generar como imagen (falta el XML firmado)",
                              now, code="PRINTER_NO_PDF417")
            return
        self.queue.replace_data(job.id, again.data, mode=again.mode, offsets=again.offsets, now=now)
        self.queue.retry(job.id, self._says(out), now, now, condition=str(out.condition), code=out.condition.code)
        log.warning("printing: no native PDF417; printing the timbre as an image",
                    extra={"station": self.station.name, "job": job.label})


class PdfWriter(threading.Thread):
    """Renders NAME.pdf in the background, so a worker is free for the next document as soon as
    its ticket is queued. The signed XML is the document; if the process dies before a PDF is
    written, `dtesync print NAME` renders it again from NAME.xml. A PDF that cannot be written
    (a timbre no layout fits, a full disk) is reported with its reason for the status file."""

    def __init__(self, config: Config, write: Callable[[Doc, bytes], object],
                 on_result: Callable[[Doc, DteSyncError | None], None] | None = None):
        super().__init__(name="dtesync-pdf", daemon=True)
        self.config = config
        self._write = write
        self.on_result = on_result
        self.jobs: queue_mod.Queue[tuple[PrintSource, Doc] | None] = queue_mod.Queue()

    def submit(self, src: PrintSource, doc: Doc) -> None:
        self.jobs.put((src, doc))

    def write(self, src: PrintSource, doc: Doc) -> None:
        try:
            self._write(doc, pdf_bytes(src, self.config))
        except LayoutRefused as exc:
            self._result(doc, DteSyncError(exc.code, found=len(src.ted), params={"detail": exc.detail}))
        except OSError as exc:
            self._result(doc, DteSyncError("PDF_NOT_WRITTEN", found=f"{doc.rel}.pdf", params={"detail": str(exc)}))
        except Exception as exc:  # any other failure still leaves a reason, never silence
            log.exception("printing: could not write the PDF", extra={"doc": doc.id})
            self._result(doc, DteSyncError("PDF_NOT_WRITTEN", found=f"{doc.rel}.pdf",
                                           params={"detail": f"{type(exc).__name__}: {exc}"}))
        else:
            self._result(doc, None)

    def _result(self, doc: Doc, error: DteSyncError | None) -> None:
        if error is not None:
            log.error("printing: no PDF", extra={"doc": doc.id, "code": error.code,
                                                 "error": error.message(self.config.language)})
        if self.on_result is not None:
            self.on_result(doc, error)

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            self.write(*job)

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
        self.senders = {s.name: StationSender(s, self.queue, config, self._changed, self._rerender, self._printer)
                        for s in self.stations}
        self.pdf_writer = PdfWriter(config, lambda doc, data: self.filing.write_result(doc, ".pdf", data),
                                    self._pdf_result)
        # Where NAME.pdf is rendered: this process's PdfWriter thread, unless the composition root
        # hands the job to the engine's worker process (sync.engine_process.EngineProcess.render_pdf).
        self.pdf_offload: Callable[[PdfJob, Callable[[tuple[str, str] | None], None]], None] | None = None
        self._raised: dict[str, str] = {}  # station -> the code of its active printer alert
        self._stopping = False
        self.listeners: list[Callable[[Job], None]] = []  # every change of a job (metrics: printed, errors)
        self._started = False
        self._offloading: set[int] = set()  # doc ids whose NAME.pdf the other process holds (PDF_WINDOW at most)
        self._window_lock = threading.Lock()
        self._refilling = threading.local()

    def start(self) -> None:
        if not self._started:
            from sync.printing.escpos import warm_up

            for st in self.stations:
                warm_up(st.profile)
            for s in self.senders.values():
                s.start()
            self.pdf_writer.start()
            self._started = True
            if self.pdf_offload is not None:  # PDFs a stop or a crash left unwritten
                self._refill()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
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
        if job.doc_id is not None:
            self._refresh(job.doc_id)

    def _refresh(self, doc_id: int) -> None:
        if self._filing is not None:
            try:
                self.filing.refresh(doc_id)
            except Exception:
                log.exception("printing: could not rewrite the status file", extra={"doc": doc_id})

    def _printer(self, station: str, out: Outcome) -> None:
        """One alert per station while its printer cannot print (sync.alerts: raised once,
        resolved once), and another while it lacks the PDF417 its profile promised."""
        if self._alerts is None:
            return
        key, code = f"printer:{station}", out.condition.code
        if out.condition.prints:
            self._raised.pop(station, None)
            self.alerts.resolve(key)
        elif code is not None and self._raised.get(station) != code:
            if station in self._raised:
                self.alerts.resolve(key)  # a different fault replaces the one before
            self._raised[station] = code
            self.alerts.raise_(key, code, "ERROR", station=station, detail=out.detail)
        if out.native is False:
            self.alerts.raise_(f"printer:{station}:pdf417", "PRINTER_NO_PDF417", "WARNING", station=station,
                               detail=out.detail)

    def _pdf_result(self, doc: Doc, error: DteSyncError | None) -> None:
        if error is None:
            if self.queue.pdf_result(doc.id) is None:
                return
            self.queue.pdf_written(doc.id)
        else:
            self.queue.pdf_failed(doc.id, error.code, error.message(self.config.language))
        self._refresh(doc.id)

    def _rerender(self, job: Job, native: bool) -> RenderedJob | None:
        """The job rendered again from its signed DTE: through the Filing for a document
        (NAME.xml wherever it is filed now), from its file for a reprint."""
        src: PrintSource | None = None
        if job.doc_id is not None and self._filing is not None:
            doc = self.filing.get(job.doc_id)
            dte = self.filing.signed_dte(doc) if doc is not None else None
            src = source_of(dte) if dte is not None else None
        if src is None and job.source and Path(job.source).is_file():
            src = source_from_dte_xml(Path(job.source).read_bytes(), Path(job.source).name)
        if src is None:
            return None
        return render_job(src, self.stations.get(job.station), self.config, native=native)

    def status_entry(self, doc: Doc) -> dict[str, Any]:
        """`print` entry for NAME.status.json (absent when the document has no ticket), and a
        `pdf` entry when NAME.pdf could not be written (with the reason)."""
        return self.status_entries([doc])[doc.id]

    def status_entries(self, docs: Sequence[Doc]) -> dict[int, dict[str, Any]]:
        """`status_entry` of a batch in two queries."""
        out: dict[int, dict[str, Any]] = {}
        for doc_id, (job, failed) in self.queue.status_of_docs([doc.id for doc in docs]).items():
            entry: dict[str, Any] = {}
            out[doc_id] = entry
            if job is not None:
                entry["print"] = job.status()
            if failed is not None:
                entry["pdf"] = {"state": "failed", "code": failed[0], "error": failed[1]}
        return out

    # --- /health ---------------------------------------------------------------------------------
    def checks(self) -> list[Check]:
        """One line per station: ok while its printer prints, degraded while it prints with a
        caveat (paper low, raster instead of PDF417), down while it cannot print."""
        lang = self.config.language
        out = []
        for name, sender in self.senders.items():
            if sender.station.config.virtual:
                continue  # no printer to report on
            state = sender.printer
            depth = self.queue.backlog(name)[0]
            waiting = f"; {depth} en cola" if depth else ""
            if state.at is None:
                out.append(Check(f"printer:{name}", "ok", ("sin contacto aún" if lang != "en" else "not contacted yet") + waiting))
            elif not state.condition.prints:
                out.append(Check(f"printer:{name}", "down", state.detail + waiting))
            elif state.condition in (Condition.PAPER_LOW, Condition.NO_PDF417) or sender.native_ok is False:
                out.append(Check(f"printer:{name}", "degraded", state.detail + waiting))
            else:
                out.append(Check(f"printer:{name}", "ok", state.condition.says(lang) + waiting))
        return out

    def queues(self) -> list[QueueStats]:
        now = time.time()
        out = []
        for name, sender in self.senders.items():
            if sender.station.config.virtual:
                continue
            depth, oldest, failing = self.queue.backlog(name)
            out.append(QueueStats(f"print:{name}", depth, None if oldest is None else max(0.0, now - oldest), failing))
        return out

    # --- the stage hook ------------------------------------------------------------------------
    def on_signed(self, doc: Doc, dte: SignedDte) -> None:
        self.on_signed_many([(doc, dte)])

    def on_signed_many(self, signed: Sequence[tuple[Doc, SignedDte]]) -> None:
        """Idempotent per `doc.id`: the ticket is queued once; NAME.pdf is rewritten identically.
        The document's model is parsed here only when a ticket or an in-process PDF needs it.
        A batch's PDFs handed to the other process are recorded in one transaction."""
        offloaded: list[tuple[Doc, PdfJob]] = []
        for doc, dte in signed:
            try:
                job = self._on_signed(doc, dte)
            except Exception:
                log.exception("printing: failed on a signed document", extra={"doc": doc.id})
                continue
            if job is not None:
                offloaded.append((doc, job))
        if offloaded:
            self.queue.pdf_queued_many([(doc.id, job.xml_path, job.pdf_path, doc.rel) for doc, job in offloaded])
            for doc, job in offloaded:
                self._offload(doc.id, doc.rel, job)

    def _on_signed(self, doc: Doc, dte: SignedDte) -> PdfJob | None:
        """The ticket queued, NAME.pdf written or submitted; the PdfJob to hand to the other process."""
        station = self.stations.route(folder=doc.folder, xml=dte.tree if self.config.printing.route_field else None)
        if station is not None and not station.config.virtual:  # a virtual station e-mails (sync.delivery)
            source = str(self.filing.result_path(doc, ".xml")) if self._filing is not None else None
            self.enqueue(source_of(dte), station, doc_key=f"doc:{doc.id}", doc_id=doc.id,
                         label=f"{doc.rel}: TipoDTE {dte.tipo_dte} folio {dte.folio}", source=source)
        if not self.config.printing.pdf:
            return None
        if self.pdf_offload is not None and self._filing is not None:
            return PdfJob(str(self.filing.result_path(doc, ".xml")), str(self.filing.result_path(doc, ".pdf")))
        if self._started:
            self.pdf_writer.submit(source_of(dte), doc)  # off the signing path: ~10-30 ms of rendering
        else:
            self.pdf_writer.write(source_of(dte), doc)
        return None

    def _offload(self, doc_id: int, rel: str, job: PdfJob) -> bool:
        """Hand the job over if the window has room; otherwise it waits in pdf_jobs for `_refill`.
        False when the other process cannot take it now (no worker running): it stays recorded."""
        assert self.pdf_offload is not None
        with self._window_lock:
            if doc_id in self._offloading or len(self._offloading) >= PDF_WINDOW:
                return True
            self._offloading.add(doc_id)
        try:
            self.pdf_offload(job, lambda outcome: self._offloaded(doc_id, rel, outcome))
        except Exception as exc:
            with self._window_lock:
                self._offloading.discard(doc_id)
            log.warning("printing: PDF left for later", extra={"doc": doc_id, "error": str(exc)})
            return False
        return True

    def _refill(self) -> None:
        """Fill the window from pdf_jobs, oldest first. A renderer that answers at once (the other
        process is unreachable) answers inside this loop: that answer does not start another."""
        if getattr(self._refilling, "active", False):
            return
        self._refilling.active = True
        try:
            while not self._stopping:
                with self._window_lock:
                    held = set(self._offloading)
                room = PDF_WINDOW - len(held)
                if room <= 0:
                    return
                waiting = [row for row in self.queue.pdf_jobs(limit=len(held) + room) if row[0] not in held][:room]
                if not waiting:
                    return
                for doc_id, xml_path, pdf_path, rel in waiting:
                    if not self._offload(doc_id, rel, PdfJob(xml_path, pdf_path)):
                        return  # the next answer, or the next start, tries again
        finally:
            self._refilling.active = False

    def _offloaded(self, doc_id: int, rel: str, outcome: tuple[str, str] | None) -> None:
        """The other process's answer for NAME.pdf (on its reader thread)."""
        with self._window_lock:
            self._offloading.discard(doc_id)
        if self._stopping:
            return  # the job stays recorded: rendered again at the next start
        failure = None
        if outcome is not None:
            code, detail = outcome
            error = DteSyncError(code if code in CATALOG else "PDF_NOT_WRITTEN", found=f"{rel}.pdf",
                                 params={"detail": detail})
            log.error("printing: no PDF", extra={"doc": doc_id, "code": error.code,
                                                 "error": error.message(self.config.language)})
            failure = (error.code, error.message(self.config.language))
        if self.queue.pdf_answered(doc_id, failure):
            self._refresh(doc_id)
        self._refill()

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
                doc_id: int | None = None, source: str | None = None) -> Job:
        existing = self.queue.for_doc(doc_id) if doc_id is not None else None
        if existing is not None and existing.doc_key == doc_key:
            return existing  # already queued or printed: no second render
        lang = self.config.language
        refused = refusal(station, src.documento.tipo_dte)
        if refused is not None:
            job, created = self.queue.enqueue(doc_key, station.name, b"", label=label, doc_id=doc_id, source=source,
                                              state="refused", code=refused.code, error=refused.message(lang))
            log.warning("printing: not for this station", extra={"station": station.name, "job": label,
                                                                  "code": refused.code})
        else:
            try:
                r = render_job(src, station, self.config)
            except LayoutRefused as exc:
                err = DteSyncError(exc.code, found=len(src.ted), params={"detail": exc.detail})
                job, created = self.queue.enqueue(doc_key, station.name, b"", label=label, doc_id=doc_id, source=source,
                                                  state="refused", code=exc.code, error=err.message(lang))
            else:
                if r.mode == "native" and self.senders[station.name].native_ok is False:
                    r = render_job(src, station, self.config, native=False)  # this printer has no GS ( k
                job, created = self.queue.enqueue(doc_key, station.name, r.data, label=label, doc_id=doc_id,
                                                  source=source, mode=r.mode, offsets=r.offsets)
                if created:
                    self.senders[station.name].wake.set()
        if created:
            self._changed(job)
        return job


def build_printing(config: Config) -> PrintService | None:
    """The printing stage, or None when there is neither a PDF to write nor a station."""
    p = config.printing
    if not p.pdf and not p.stations:
        return None
    return PrintService(config)
