"""The engine in its own process: the daemon's second core.

One Python process holds one interpreter lock: the engine (parse, totals, TED, signature, XSD:
about 2 ms of CPU per document) and the daemon's own bookkeeping (claims, journal, status
files) used to take turns on one core. `EngineProcess` runs the engine in a worker process,
so the daemon's process does the bookkeeping while the worker signs, and the worker renders
NAME.pdf in the time signing leaves free.

- The worker is this same program started again (`dtesync _engine-worker`, also when frozen
  by PyInstaller), talking over its stdin/stdout: the same on Linux and Windows, and no copy of
  the daemon's threads and locks. It gets the configuration (secrets are references in it) and
  opens the certificate and the folio store itself: no secret crosses the pipe.
- Signing comes first: a reader thread sorts what arrives, the worker always takes a batch to
  sign before a PDF, and starts a PDF only once signing has been quiet for PDF_AFTER_QUIET
  (PDF_AFTER_BACKLOG_QUIET while a backlog arrives: a full batch, or BACKLOG_RATE documents a
  second), so a burst is signed at full speed (its PDFs follow) and a document meets at most
  one render.
- Batches that queued up while the worker was signing are signed in one engine call (up to
  MERGE_DOCUMENTS: one durable folio transaction for them all), and replies leave from their
  own thread, so the worker signs the next batch while the daemon drains the pipe.
- A batch's outcome per request is a SignedDte (its header, the signed XML and the TED; the
  lxml tree and the model stay behind and are parsed again only where a stage needs them) or
  the typed error, rebuilt on this side.
- If the worker dies, every batch it held fails as a whole (the daemon retries those documents:
  the folio store hands each document its own folio back) and a new worker is started.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

from sync.config import Config
from sync.engine import Issuing, Request
from sync.engine_pipe import Channel, Launched
from sync.errors import DteSyncError, DteSyncErrors
from sync.folios.store import FolioStore
from sync.memory import Trimmer
from sync.outbox import Outbox
from sync.printing.rules import LayoutRefused
from sync.printing.service import PdfJob, pdf_bytes, source_of
from sync.runtime import import_cafs_logged, load_certificate, open_engine, open_folio_store, warn_loose_permissions
from sync.signed import SignedDte

log = logging.getLogger("dtesync.engine")

START_TIMEOUT = 120.0  # s for a worker to load the certificate and the schemas
# A PDF (10-30 ms of rendering) starts only after signing has been quiet this long: during a
# burst the PDFs wait, and at a steady pace a document meets at most one render in progress.
PDF_AFTER_QUIET = 0.05
# While a backlog is drained, the gaps between batches are the daemon filing the last answer,
# and a PDF started there delays the next batch: PDFs then wait for a longer quiet (measured: PDFs
# rendered in those gaps cost a 6 000-file backlog 8-10 % of its throughput). A backlog shows as
# a batch of BACKLOG_BATCH documents or more, or as BACKLOG_RATE documents or more in the last
# second (the daemon feeds an engine that runs low with whatever is ready, so a backlog's batches
# can be small: counted by size alone, 110 PDFs were still rendered inside a 10 000 backlog). A
# steady trickle (a shop's tills: 20 files/s is a busy one) comes in batches of one or two.
BACKLOG_BATCH = 8
BACKLOG_RATE = 50
PDF_AFTER_BACKLOG_QUIET = 0.5


class RecentDocuments:
    """How many documents reached the worker for signing in the last `window` seconds."""

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self._arrivals: collections.deque[tuple[float, int]] = collections.deque()
        self._total = 0

    def add(self, now: float, documents: int) -> int:
        """Count a batch that arrived at `now` (monotonic); the total of the window ending there."""
        self._arrivals.append((now, documents))
        self._total += documents
        while self._arrivals[0][0] < now - self.window:
            self._total -= self._arrivals.popleft()[1]
        return self._total


def pdf_quiet(last_batch_documents: int, documents_last_second: int = 0) -> float:
    """How long signing must have been quiet before a PDF starts, after a batch of this size
    that arrived with this many documents (itself included) in the second before it."""
    if last_batch_documents >= BACKLOG_BATCH or documents_last_second >= BACKLOG_RATE:
        return PDF_AFTER_BACKLOG_QUIET
    return PDF_AFTER_QUIET


# Batches to sign that queued up in the worker are signed in one engine call up to this many
# documents: one durable folio transaction (one fsync) for all of them.
MERGE_DOCUMENTS = 64


# A sign request as it reaches a worker: (request id, [(input, source, doc_key, station)]).
SignBatch = tuple[int, list[tuple[bytes, str, str, str | None]]]


class EngineProcessDied(RuntimeError):
    """The worker process ended with batches in hand: they are retried."""


# --- what crosses the pipe ------------------------------------------------------------------------------
def _pack_outcome(outcome: SignedDte | BaseException) -> tuple[Any, ...]:
    if isinstance(outcome, SignedDte):
        return ("ok", outcome.tipo_dte, outcome.folio, outcome.rut_emisor, outcome.rut_receptor,
                outcome.fch_emis.isoformat(), outcome.monto_total, outcome.dte_xml, outcome.ted, outcome.mnt_neto,
                outcome.mnt_exe, outcome.iva, outcome.rzn_soc_recep)
    if isinstance(outcome, (DteSyncError, DteSyncErrors)):
        from sync.journal import error_to_json

        errors = outcome.errors if isinstance(outcome, DteSyncErrors) else [outcome]
        return ("errors", [error_to_json(e) for e in errors], isinstance(outcome, DteSyncErrors))
    return ("exception", type(outcome).__name__, str(outcome))


def _unpack_outcome(packed: tuple[Any, ...]) -> SignedDte | BaseException:
    kind = packed[0]
    if kind == "ok":
        (_, tipo, folio, rut_emisor, rut_receptor, fch, total, xml, ted, neto, exe, iva, rzn) = packed
        return SignedDte(tipo_dte=tipo, folio=folio, rut_emisor=rut_emisor, rut_receptor=rut_receptor,
                         fch_emis=date.fromisoformat(fch), monto_total=total, dte_xml=xml, ted=ted, mnt_neto=neto,
                         mnt_exe=exe, iva=iva, rzn_soc_recep=rzn)
    if kind == "errors":
        from sync.journal import error_from_json

        errors = [error_from_json(e) for e in packed[1]]
        return DteSyncErrors(errors) if packed[2] else errors[0]
    return RuntimeError(f"{packed[1]}: {packed[2]}")


def serve_stdio() -> int:  # pragma: no cover - runs in the child (`dtesync _engine-worker`)
    """The worker process: the configuration arrives first, then batches to sign and PDFs to
    render. A reader thread sorts what arrives; this thread signs first, renders in the time
    left, and exits when the pipe closes or after a `stop`, once what it was handed is done."""
    channel = Channel(sys.stdin.buffer, sys.stdout.buffer)
    sys.stdout = sys.stderr  # nothing but messages may reach the pipe
    try:
        (_, config) = channel.recv()
    except (EOFError, OSError):  # launched early by a daemon that then did not start (sync.engine_pipe)
        return 0
    # RSA signs without the interpreter lock: on its own thread, a batch's signatures overlap the
    # stamping of its next documents (the second core, used by one process).
    try:
        engine = open_engine(config, import_cafs=False,
                             signer=ThreadPoolExecutor(1, thread_name_prefix="dtesync-rsa"))
    except Exception as exc:  # the daemon says why it did not start; no traceback on its console
        try:
            channel.send(("failed", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass  # the daemon is gone already
        return 1
    channel.send(("ready", os.getpid()))
    try:
        engine.warm_up()  # while the daemon finishes starting: its first batch comes later
    except Exception:
        pass  # what failed here fails again, with its own error, where a document needs it
    signing: collections.deque[SignBatch] = collections.deque()
    pdfs: collections.deque[tuple[int, PdfJob]] = collections.deque()
    state: dict[str, Any] = {"stopping": False, "closed": False, "last_sign": 0.0, "last_size": 0, "last_rate": 0}
    recent = RecentDocuments()
    cond = threading.Condition()

    def read() -> None:
        while True:
            try:
                msg = channel.recv()
            except (EOFError, OSError):
                msg = ("closed",)
            with cond:
                if msg[0] == "sign":
                    signing.append((msg[1], msg[2]))
                    now = time.monotonic()
                    state["last_sign"], state["last_size"] = now, len(msg[2])
                    state["last_rate"] = recent.add(now, len(msg[2]))
                elif msg[0] == "pdf":
                    pdfs.append((msg[1], msg[2]))
                elif msg[0] == "stop":
                    state["stopping"] = True
                else:
                    state["closed"] = True
                cond.notify()
            if msg[0] in ("stop", "closed"):
                return

    threading.Thread(target=read, name="dtesync-engine-pipe", daemon=True).start()
    replies: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()

    def write() -> None:
        """Replies leave from their own thread: a batch's signed XML is larger than a pipe's
        buffer, and signing goes on while the daemon drains it."""
        while (msg := replies.get()) is not None:
            try:
                channel.send(msg)
            except OSError:  # the daemon is gone
                with cond:
                    state["closed"] = True
                    cond.notify()
                return

    writer = threading.Thread(target=write, name="dtesync-engine-reply", daemon=True)
    writer.start()

    def next_task(wait: bool) -> tuple[list[SignBatch], tuple[int, PdfJob] | None] | None:
        """The batches waiting to be signed (merged up to MERGE_DOCUMENTS), else a PDF once
        signing has been quiet; ([], None) when nothing is waiting and `wait` is false; None when
        it is time to exit (PDFs not rendered yet are recorded by printing: the next start
        renders them)."""
        with cond:
            while True:
                if state["closed"] or (state["stopping"] and not signing):
                    return None
                if signing:
                    batches = [signing.popleft()]
                    size = len(batches[0][1])
                    while signing and size + len(signing[0][1]) <= MERGE_DOCUMENTS:
                        size += len(signing[0][1])
                        batches.append(signing.popleft())
                    return batches, None
                if not wait:
                    return [], None
                quiet, wanted = time.monotonic() - state["last_sign"], pdf_quiet(state["last_size"], state["last_rate"])
                if pdfs and quiet >= wanted:
                    return [], pdfs.popleft()
                cond.wait(wanted - quiet if pdfs else None)

    def begin(batches: list[SignBatch]) -> tuple[list[SignBatch], Issuing | str]:
        """One engine call for the batches that queued up: one durable folio transaction for all
        of them instead of one each. Returns the failure's text when the batch itself failed (the
        folio store): each of its documents then retries."""
        requests = [Request(data, source, key, station) for _, items in batches for data, source, key, station in items]
        try:
            return batches, engine.begin_many(requests)
        except Exception as exc:
            return batches, f"{type(exc).__name__}: {exc}"

    def finish(batches: list[SignBatch], issuing: Issuing | str) -> None:
        """Each batch answered on its own, once its signatures are in place."""
        if isinstance(issuing, str):
            for req_id, _ in batches:
                replies.put(("failed", req_id, issuing))
            return
        try:
            outcomes: Sequence[SignedDte | BaseException] = engine.finish_many(issuing)
        except Exception as exc:
            for req_id, _ in batches:
                replies.put(("failed", req_id, f"{type(exc).__name__}: {exc}"))
            return
        start = 0
        for req_id, items in batches:
            replies.put(("signed", req_id, [_pack_outcome(o) for o in outcomes[start:start + len(items)]]))
            start += len(items)

    # Two batches overlap when the daemon keeps several waiting: the next is parsed and stamped
    # while the signer thread signs the one begun before it, which is then finished and answered.
    renderer: _PdfRenderer | None = None
    begun: tuple[list[SignBatch], Issuing | str] | None = None
    trimmer = Trimmer()  # a signing run's freed memory back to the system before the PDFs
    while (task := next_task(wait=begun is None)) is not None:
        batches, pdf = task
        if batches:
            trimmer.worked(sum(len(items) for _, items in batches))
            started = begin(batches)
            if begun is not None:
                finish(*begun)
            begun = started
        elif begun is not None:
            finish(*begun)
            begun = None
        elif pdf is not None:
            trimmer.drained()
            renderer = renderer or _PdfRenderer(config)
            replies.put(("pdf", pdf[0], renderer.render(pdf[1])))
    if begun is not None:
        finish(*begun)
    replies.put(None)  # what was signed reaches the daemon before this process exits
    writer.join()
    return 0


class _PdfRenderer:  # pragma: no cover - runs in the child
    """NAME.pdf from NAME.xml, read and written through the outbox's link-safe folders."""

    def __init__(self, config: Config) -> None:
        self.config = config
        f = config.folders
        self.out = Outbox(f.outbox, f.archive, f.rejected)

    def render(self, job: PdfJob) -> tuple[str, str] | None:
        """None when written; (code, detail) when not."""
        xml_path, pdf_path = Path(job.xml_path), Path(job.pdf_path)
        try:
            with self.out.folder_of(xml_path, create=False) as folder:
                xml = folder.read(xml_path.name, 64 << 20)
            data = pdf_bytes(source_of(SignedDte.from_xml(xml)), self.config)
            with self.out.folder_of(pdf_path) as folder:
                folder.write(pdf_path.name, data, mode=self.out.file_mode)
        except LayoutRefused as exc:
            return (exc.code, exc.detail)
        except Exception as exc:
            return ("PDF_NOT_WRITTEN", f"{type(exc).__name__}: {exc}")
        return None


# --- this side ----------------------------------------------------------------------------------------------
class _Worker:
    def __init__(self, launched: Launched) -> None:
        """Wait for a launched worker to say it is ready (certificate, schemas, folio store open)."""
        self.launched, self.process, self.channel = launched, launched.process, launched.channel
        self.in_flight: dict[int, Future[list[SignedDte | BaseException]]] = {}
        self.pdf_jobs: dict[int, Callable[[tuple[str, str] | None], None]] = {}
        try:
            msg = self.channel.recv()
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            self.close(0)
            raise EngineProcessDied(f"the engine process did not start: {exc}") from None
        if msg[0] != "ready":
            self.close(0)
            reason = msg[1] if msg[0] == "failed" and len(msg) > 1 else repr(msg)
            raise EngineProcessDied(f"the engine process did not start: {reason}")
        self.pid = int(msg[1])

    def send(self, msg: tuple[Any, ...]) -> None:
        self.channel.send(msg)

    def close(self, timeout: float) -> None:
        self.launched.end(timeout)


class EngineProcess:
    """An engine in `processes` worker processes, with the Engine's `issue_many` contract, and
    `submit_many` for a caller that does not wait."""

    def __init__(self, config: Config, certificate: Any, folios: FolioStore, *, processes: int = 1,
                 launched: Launched | None = None) -> None:
        self.config = config  # pickled to the worker: folders, company, secret references (never a secret)
        self.certificate = certificate  # the daemon's side signs envelopes and SII seeds with it
        self.folios = folios  # the same folio store the workers allocate from (cluster leases, stock)
        self.processes = max(1, processes)
        self._workers: list[_Worker] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._readers: list[threading.Thread] = []
        self._stopping = False
        self._launched = launched  # a worker `dtesync run` started early (sync.engine_pipe), taken by start()

    @classmethod
    def open(cls, config: Config, *, launched: Launched | None = None) -> EngineProcess:
        """The engine in `[daemon] engine_processes` workers: the CAF folder imported and the
        certificate checked here first, so a broken installation fails at start, in this process.
        `launched`: a worker already started for this configuration, used as the first one."""
        warn_loose_permissions(config)
        certificate = load_certificate(config)
        store = open_folio_store(config)
        if config.cluster is None:
            import_cafs_logged(store, config)
        return cls(config, certificate, store, processes=config.daemon.engine_processes, launched=launched)

    # --- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = False
        for _ in range(self.processes):
            self._spawn()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: the workers finish what they were handed (PDFs included), then exit."""
        self._stopping = True
        if self._launched is not None:
            self._launched.discard()  # never started (the daemon failed before): nothing to finish
        with self._lock:
            workers, self._workers = self._workers, []
        for w in workers:
            try:
                w.send(("stop",))
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for w in workers:
            w.close(max(0.1, deadline - time.monotonic()))
        for t in self._readers:
            t.join(1.0)

    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._workers]

    def _spawn(self) -> _Worker:
        launched, self._launched = self._launched, None
        if launched is None or not launched.take():  # none launched early, or a stop discarded it
            launched = Launched(self.config)
            launched.take()
        w = _Worker(launched)
        with self._lock:
            self._workers.append(w)
        t = threading.Thread(target=self._read, args=(w,), name=f"dtesync-engine-reader-{w.pid}", daemon=True)
        self._readers.append(t)
        t.start()
        log.info("engine: worker process started", extra={"pid": w.pid})
        return w

    def _pick(self) -> _Worker:
        with self._lock:
            if not self._workers:
                raise EngineProcessDied("no engine process is running")
            return min(self._workers, key=lambda w: len(w.in_flight))

    # --- signing ------------------------------------------------------------------------------------------
    def issue_many(self, requests: Sequence[Request]) -> list[SignedDte | BaseException]:
        return self.submit_many(requests).result()

    def submit_many(self, requests: Sequence[Request]) -> Future[list[SignedDte | BaseException]]:
        """Hand a batch to a worker process and return at once: the Future gets the outcomes
        (on a reader thread), or EngineProcessDied if the process ends first."""
        future: Future[list[SignedDte | BaseException]] = Future()
        if not requests:
            future.set_result([])
            return future
        w = self._pick()
        req_id = next(self._ids)
        with self._lock:
            if w not in self._workers:  # it died since _pick: its in-flight batches were already failed
                raise EngineProcessDied("the engine process ended")
            w.in_flight[req_id] = future
        try:
            w.send(("sign", req_id, [(r.data, r.source, r.doc_key, r.station) for r in requests]))
        except OSError as exc:
            with self._lock:
                w.in_flight.pop(req_id, None)
            raise EngineProcessDied(f"cannot reach the engine process: {exc}") from None
        return future

    # --- PDFs -----------------------------------------------------------------------------------------------
    def render_pdf(self, job: PdfJob, done: Callable[[tuple[str, str] | None], None]) -> None:
        """Render NAME.pdf in a worker's spare time; `done(None)` once written, `done((code,
        detail))` when it cannot be (called on a reader thread)."""
        w = self._pick()
        job_id = next(self._ids)
        with self._lock:
            w.pdf_jobs[job_id] = done
        try:
            w.send(("pdf", job_id, job))
        except OSError as exc:
            with self._lock:
                w.pdf_jobs.pop(job_id, None)
            done(("PDF_NOT_WRITTEN", f"engine process unreachable: {exc}"))

    # --- the reader thread ------------------------------------------------------------------------------
    def _read(self, w: _Worker) -> None:
        """Answers from one worker until its pipe closes; then (or if reading fails in any other
        way) the worker counts as dead: what it held fails and is retried, never left waiting."""
        try:
            self._read_answers(w)
        except Exception:
            log.exception("engine: cannot read the worker process's answers", extra={"pid": w.pid})
            w.process.kill()
            w.process.wait()
        self._died(w)

    def _read_answers(self, w: _Worker) -> None:
        while True:
            try:
                msg = w.channel.recv()
            except (EOFError, OSError, pickle.UnpicklingError) as exc:
                self._end_if_alive(w, exc)
                return
            kind, req_id = msg[0], msg[1]
            if kind == "signed":
                with self._lock:
                    future = w.in_flight.pop(req_id, None)
                if future is not None:
                    try:
                        outcomes = [_unpack_outcome(p) for p in msg[2]]
                    except Exception as exc:  # popped above: fail it here, or nobody would
                        future.set_exception(RuntimeError(f"unreadable answer: {type(exc).__name__}: {exc}"))
                        raise
                    future.set_result(outcomes)
            elif kind == "failed":
                with self._lock:
                    future = w.in_flight.pop(req_id, None)
                if future is not None:
                    future.set_exception(RuntimeError(msg[2]))
            elif kind == "pdf":
                with self._lock:
                    done = w.pdf_jobs.pop(req_id, None)
                if done is not None:
                    try:
                        done(msg[2])
                    except Exception:
                        log.exception("engine: a PDF callback failed")

    def _end_if_alive(self, w: _Worker, exc: BaseException) -> None:
        """A worker whose pipe closed (or lost its framing: seen under a profiler) while it lives
        on is killed, so it is not left running beside its replacement holding the folio store."""
        if self._stopping:
            return  # stop() waits for it and kills it past its deadline
        try:
            w.process.wait(1.0 if isinstance(exc, EOFError) else 0)  # an exiting worker closes its pipe first
        except subprocess.TimeoutExpired:
            log.error("engine: the worker process's answers cannot be read; replacing it",
                      extra={"pid": w.pid, "error": f"{type(exc).__name__}: {exc}"})
            w.process.kill()
            w.process.wait()

    def _died(self, w: _Worker) -> None:
        with self._lock:
            if w in self._workers:
                self._workers.remove(w)
            futures, w.in_flight = list(w.in_flight.values()), {}
            jobs, w.pdf_jobs = list(w.pdf_jobs.values()), {}
        for f in futures:
            f.set_exception(EngineProcessDied("the engine process ended while signing"))
        for done in jobs:
            done(("PDF_NOT_WRITTEN", "the engine process ended before rendering it"))
        if not self._stopping:
            log.error("engine: worker process ended; starting another", extra={"pid": w.pid,
                                                                             "exitcode": w.process.poll()})
            try:
                self._spawn()
            except Exception:
                log.exception("engine: could not start a new worker process")
