"""The daemon: threads and lifecycle around the Filing.

Threads:
- ingest (one): waits on the inbox watcher, hands complete files to `Filing.claim` (rename into
  the work folder, journal, name rules resolved serially, in claim order), and puts the claimed
  documents on the dispatcher.
- workers (a pool, two per core by default: a document waits on fsync about as long as it
  computes): take up to `batch_size` ready documents, run each through the steps the journal
  says are left (Filing.prepare -> the engine -> Filing.decide_many -> Filing.file).
  Documents of one printing station are handed out one at a time, in claim order; inputs in the
  inbox root have no order among themselves and run in parallel.
  An engine in its own process (`submit_many`) is not waited for: the worker hands it the batch
  and takes other work, and whichever worker is free files the batch when its answer arrives
  (answers before new batches, unless the engine is short of work). The engine process then
  has the next batch waiting instead of idling while a worker files the last one.
- every stage's own threads (printing, uplink, delivery, reports), started and stopped here.

Retry policy: an engine failure that is nobody's fault (a bug, a broken store) is retried with
the daemon's Backoff up to `max_attempts`, then filed as `error`; a typed error is a decision.

Crash safety lives in the Filing: after SIGKILL every unfinished row runs again from its step.
"""

from __future__ import annotations

import collections
import errno
import heapq
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sync.backoff import Backoff
from sync.config import DaemonConfig
from sync.engine import Request
from sync.errors import DteSyncError, DteSyncErrors
from sync.fileio import LockHeld, UnsafeFile, lock_file, read_small
from sync.filing import Filing
from sync.journal import Decision, Doc
from sync.memory import Trimmer
from sync.signed import SignedDte
from sync.stage import Check, Stage
from sync.watch.inbox import InboxWatcher

log = logging.getLogger("dtesync.daemon")


class EngineLike(Protocol):
    """sync.engine.Engine, sync.engine_process.EngineProcess, or a test double: one outcome per
    request, in order (the SignedDte or the exception)."""

    def issue_many(self, requests: Sequence[Request]) -> Sequence[SignedDte | BaseException]: ...


@runtime_checkable
class SubmittingEngine(Protocol):
    """An engine that answers later (sync.engine_process.EngineProcess): `submit_many` returns
    at once with a Future of the outcomes, and the daemon's worker goes on with other work."""

    def submit_many(self, requests: Sequence[Request]) -> Future[list[SignedDte | BaseException]]: ...


@runtime_checkable
class ManagedEngine(Protocol):
    """An engine with processes of its own: started before the first document, stopped last."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None: ...


class _Retry(Exception):
    """A transient failure: run this document again later."""


class _BatchFailed(RuntimeError):
    """The engine failed for a whole batch: retried per document like any engine failure."""


# --- locks ---------------------------------------------------------------------------------------
class DaemonLock:
    """An exclusive OS lock: two daemons never share a state folder (nor, with the inbox lock,
    an inbox on a share). The OS releases it when the process dies, even by SIGKILL."""

    def __init__(self, path: Path, *, write_pid: bool = True) -> None:
        self.path = Path(path)
        self.write_pid = write_pid
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self._fd = lock_file(self.path, write_pid=self.write_pid)
        except LockHeld:
            holder = read_small(self.path) if self.write_pid else ""
            raise DteSyncError(
                "DAEMON_ALREADY_RUNNING", found=str(self.path.parent),
                params={"detail": f"{self.path.name} pid {holder or '?'}"},
            ) from None
        except UnsafeFile as exc:
            raise DteSyncError("INBOX_LOCK_UNSAFE", found=str(self.path), params={"detail": exc.why}) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a planted link
                raise DteSyncError("INBOX_LOCK_UNSAFE", found=str(self.path), params={"detail": "enlace simbólico"}) from None
            raise

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops flock/msvcrt locks
            self._fd = None


# --- ordering ------------------------------------------------------------------------------------------
class Dispatcher:
    """Hands documents to workers: FIFO per station, one at a time per station."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._answered: collections.deque[_Issued] = collections.deque()  # engine answers to file
        self._with_engine = 0  # batches handed to the engine and not yet taken back to be filed
        self._engine_documents = 0  # documents handed to the engine and not yet answered
        self.engine_low = 0  # below this many documents in the engine, new batches before answers
        self.engine_high = 1 << 30  # from this many on, no new batch: its documents wait as ids
        self._queues: dict[object, collections.deque[int]] = {}
        self._ready: collections.deque[object] = collections.deque()
        self._busy: set[object] = set()
        self._timers: list[tuple[float, int, object, int]] = []
        self._seq = 0
        self._closed = False
        self._queued = 0  # documents in _queues: pending() is asked once per document, keep it O(1)

    @staticmethod
    def key_for(doc: Doc) -> object:
        return ("station", doc.folder) if doc.station is not None else ("doc", doc.id)

    def put(self, key: object, doc_id: int, *, front: bool = False) -> None:
        with self._cond:
            self._put(key, doc_id, front)
            self._cond.notify()

    def put_many(self, items: Sequence[tuple[object, int]]) -> None:
        """A claimed batch, queued at once: the worker that wakes takes it whole instead of its
        first document (one engine batch, one filing, not one per document)."""
        with self._cond:
            for key, doc_id in items:
                self._put(key, doc_id, False)
            self._cond.notify(len(items))

    def _put(self, key: object, doc_id: int, front: bool) -> None:
        q = self._queues.setdefault(key, collections.deque())
        q.appendleft(doc_id) if front else q.append(doc_id)
        self._queued += 1
        if len(q) == 1 and key not in self._busy:
            self._ready.append(key)

    def later(self, key: object, doc_id: int, delay: float) -> None:
        """Retry `doc_id` after `delay` s; its station stays blocked to keep the order."""
        with self._cond:
            self._seq += 1
            heapq.heappush(self._timers, (time.monotonic() + delay, self._seq, key, doc_id))
            self._cond.notify_all()

    def get_work(self, limit: int, share: int = 1) -> _Issued | list[tuple[object, int]] | None:
        """A batch the engine has answered (to be filed: it frees room), else up to `limit`
        documents ready now, each of another key (a station's documents go one at a time, so its
        order holds), and no more than a `share`-th of what is ready, so the other workers get
        theirs; waits for either. But while the engine holds fewer than `engine_low` documents,
        ready documents go first, so the engine has its next batch before it finishes this one;
        and while it holds `engine_high` or more, none go (their inputs are read only when the
        engine can take them). Once closed, only the answers still owed, then None."""
        with self._cond:
            while True:
                if not self._closed:
                    self._fire_timers()  # a retry that is due queues up now, not once the backlog is gone
                if self._ready and not self._closed and self._engine_documents < self.engine_low:
                    return self._take(limit, share)
                if self._answered:
                    self._with_engine -= 1
                    if self._closed and self._with_engine == 0:
                        self._cond.notify_all()  # the workers waiting for the last answer may go
                    return self._answered.popleft()
                if self._closed:
                    if self._with_engine == 0:
                        return None
                    self._cond.wait()
                    continue
                if self._ready and self._engine_documents < self.engine_high:
                    return self._take(limit, share)
                timeout = self._timers[0][0] - time.monotonic() if self._timers else None
                self._cond.wait(timeout=None if timeout is None else max(timeout, 0.0))

    def _take(self, limit: int, share: int) -> list[tuple[object, int]]:
        batch: list[tuple[object, int]] = []
        limit = min(limit, -(-len(self._ready) // max(1, share)))
        while self._ready and len(batch) < limit:
            key = self._ready.popleft()
            q = self._queues[key]
            batch.append((key, q.popleft()))
            self._queued -= 1
            if not q:
                del self._queues[key]
            self._busy.add(key)
        return batch

    def handed_to_engine(self, documents: int) -> None:
        """A batch went to an engine that answers later: a worker must file it before the end."""
        with self._cond:
            self._with_engine += 1
            self._engine_documents += documents

    def answered(self, issued: _Issued) -> None:
        """The engine answered a batch (called on the engine's reader thread)."""
        with self._cond:
            self._answered.append(issued)
            self._engine_documents -= len(issued.to_issue)
            # One worker for the answer, and one more when ready documents may now go to the
            # engine (room below engine_high): both conditions changed.
            self._cond.notify(2 if self._ready else 1)

    def done(self, key: object, *, retry_pending: bool = False) -> None:
        with self._cond:
            if retry_pending:
                return  # stays busy until its timer re-queues it
            self._busy.discard(key)
            if key in self._queues:
                self._ready.append(key)
                self._cond.notify()

    def _fire_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, key, doc_id = heapq.heappop(self._timers)
            self._busy.discard(key)
            q = self._queues.setdefault(key, collections.deque())
            q.appendleft(doc_id)
            self._queued += 1
            if key not in self._ready:
                self._ready.append(key)

    def pending(self) -> int:
        with self._cond:
            return self._queued + len(self._busy) + len(self._timers)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass
class _Issued:
    """A worker's batch between the engine and filing: the keys it still holds (released
    exactly once, by filing or by failing), what went to the engine, and what waits to be filed
    with it (decided documents that needed no engine)."""

    open_keys: dict[object, int]
    to_issue: list[tuple[object, Doc, bytes]] = field(default_factory=list)
    to_file: list[tuple[object, Doc]] = field(default_factory=list)
    answer: Future[list[SignedDte | BaseException]] | None = None


@dataclass
class DaemonStats:
    claimed: int = 0
    decided: int = 0
    retries: int = 0


class Daemon:
    """See the module docstring. `start()`/`stop()` for embedding, `run(stop_event)` for the CLI."""

    def __init__(
        self,
        filing: Filing,
        engine: EngineLike,
        settings: DaemonConfig | None = None,
        *,
        stations: frozenset[str] | None = frozenset(),
        stages: Sequence[Stage] = (),
    ) -> None:
        self.filing = filing
        self.engine = engine
        self.settings = s = settings or DaemonConfig()
        self.workers = s.workers or 2 * (os.cpu_count() or 1)
        self.batch_size = max(1, s.batch_size)
        self.stations = stations
        self.stages = list(stages)
        self.backoff = Backoff(s.retry_base, s.retry_cap)
        # Documents claimed but not yet filed, at most: a backlog of 10 000 files waits in the
        # inbox (parked by the watcher) instead of in memory, and is claimed as room frees up.
        self.in_flight_cap = max(64, 4 * self.workers * self.batch_size)
        self.stats = DaemonStats()
        self.trimmer = Trimmer()  # a drained backlog's freed memory back to the system
        # An engine in-process signs on the worker's own thread: what is ready is shared out so
        # the workers sign side by side. An engine process is one pipeline that merges what it
        # is handed; splitting a burst's arrivals into tiny batches there only multiplies each
        # batch's filing (its folder fsyncs, its journal commit).
        self._share = 1 if isinstance(engine, SubmittingEngine) else self.workers
        self.watcher: InboxWatcher | None = None
        self._dispatcher = Dispatcher()
        # An engine process that answers later: two batches waiting keep it signing while the
        # workers file what it answered; beyond four, more would only wait in memory (measured:
        # unbounded, the daemon's peak RSS grew 15 MB in a backlog and signed no faster).
        self._dispatcher.engine_low = 2 * self.batch_size
        self._dispatcher.engine_high = 4 * self.batch_size
        self._lock = DaemonLock(filing.folders.state / "daemon.lock")
        self._inbox_lock = DaemonLock(filing.folders.inbox / ".dtesync.lock", write_pid=False) if s.inbox_lock else None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._started = False
        self._retries: dict[int, int] = {}
        self._pending: dict[int, SignedDte] = {}  # signed in memory, NAME.xml not yet written
        # Service supervision (sync.service.sd_notify): set after the first reconciliation scan;
        # the ingest loop's last beat (monotonic) tells a watchdog it is not stuck.
        self.first_scan = threading.Event()
        self._may_claim = threading.Event()
        self.ingest_beat = 0.0

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Lock, open the Filing, resume unfinished documents, start watching, the engine, the
        stages and the workers.

        The ingest thread starts before the engine process is ready: its start-up scan (0.2 s
        for a 10 000-file backlog) overlaps the wait for the engine. It claims nothing before
        the engine and the stages are up, so a start that fails leaves the inbox untouched."""
        s = self.settings
        folders = self.filing.folders
        started: list[Stage] = []
        self._lock.acquire()
        try:
            if self._inbox_lock is not None:
                folders.inbox.mkdir(parents=True, exist_ok=True)
                try:
                    self._inbox_lock.acquire()
                except DteSyncError:
                    raise
                except OSError as exc:  # some shares refuse locks: the state lock still holds
                    log.warning("daemon: cannot lock the inbox; relying on the state folder lock",
                                extra={"error": str(exc)})
                    self._inbox_lock = None
            self.filing.stages = self.stages
            self.filing.open()
            self.watcher = InboxWatcher(
                folders.inbox,
                mode=s.watch,
                stations=self.stations,
                stable_window=s.stable_window,
                empty_timeout=s.empty_timeout,
                scan_interval=s.scan_interval,
                poll_interval=s.poll_interval,
                require_marker=s.require_done_marker,
                ignore_dirs=frozenset({str(self.filing.work_dir)}),
            )
            resumed = self.filing.recover_claims()
            self._dispatcher.put_many([(Dispatcher.key_for(doc), doc.id) for doc in resumed])
            if resumed:
                log.info("daemon: resuming unfinished documents", extra={"count": len(resumed)})
            self._may_claim.clear()
            self.watcher.start()
            ingest = threading.Thread(target=self._ingest_loop, name="dtesync-ingest", daemon=True)
            self._threads = [ingest]
            ingest.start()
            if isinstance(self.engine, ManagedEngine):
                self.engine.start()
            for stage in self.stages:
                stage.start()
                started.append(stage)
        except BaseException:
            self._abort_start(started)
            raise
        self._may_claim.set()
        log.info("daemon: started", extra={"inbox": str(folders.inbox), "watch": self.watcher.mode,
                                           "workers": self.workers, "work": str(self.filing.work_dir),
                                           "stages": [st.name for st in self.stages]})
        workers = [threading.Thread(target=self._worker_loop, name=f"dtesync-worker-{i}", daemon=True)
                   for i in range(self.workers)]
        self._threads += workers
        for t in workers:
            t.start()
        self._started = True

    def _abort_start(self, started: list[Stage]) -> None:
        """Undo a start that failed: the ingest thread ends without a claim, the stages that
        started stop, the engine stops, the locks are released."""
        self._stopping.set()
        self._may_claim.set()
        if self.watcher is not None:
            self.watcher.stop()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []
        for stage in reversed(started):
            try:
                stage.stop(1.0)
            except Exception:
                log.exception("daemon: a stage failed to stop", extra={"stage": stage.name})
        self._stop_engine(time.monotonic() + 10)
        self._release()
        # _stopping stays set, as after stop(): an ingest thread still in a long start-up scan
        # (a share) ends when the scan does, without a claim, and this object is not started again.

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful: stop claiming, let workers finish the document in hand, stop the stages,
        release the locks. Documents not started yet stay in the journal for the next start."""
        if not self._started:
            return
        self._stopping.set()
        if self.watcher:
            self.watcher.stop()
        self._dispatcher.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        for stage in reversed(self.stages):
            try:
                stage.stop(max(1.0, deadline - time.monotonic()))
            except Exception:
                log.exception("daemon: a stage failed to stop", extra={"stage": stage.name})
        self._stop_engine(deadline)
        self._release()
        self._started = False
        log.info("daemon: stopped")

    def run(self, stop_event: threading.Event | None = None, *,
            on_tick: Callable[[Daemon], None] | None = None, tick: float = 1.0) -> None:
        """Foreground: start, wait for `stop_event` (or SIGTERM/SIGINT), stop gracefully.
        `on_tick(daemon)` runs every `tick` s from this main loop (systemd's READY/WATCHDOG)."""
        stop_event = stop_event or threading.Event()
        if threading.current_thread() is threading.main_thread():
            install_signal_handlers(stop_event)
        self.start()
        try:
            while not stop_event.wait(tick):
                if on_tick is not None:
                    on_tick(self)
        finally:
            self.stop()

    def healthy(self, stall: float = 30.0) -> bool:
        """Every thread alive and the ingest loop not stuck for `stall` s (watchdog pings)."""
        if not self._started or not all(t.is_alive() for t in self._threads):
            return False
        return time.monotonic() - self.ingest_beat < stall

    def checks(self, stall: float = 30.0) -> list[Check]:
        """The daemon's own lines of /health."""
        alive = self._started and all(t.is_alive() for t in self._threads)
        out = [Check("threads", "ok" if alive else "down", "" if alive else "un hilo del daemon se detuvo")]
        beat = time.monotonic() - self.ingest_beat
        out.append(Check("ingest", "ok" if beat < stall else "down",
                         "" if beat < stall else f"la lectura de la bandeja no avanza hace {beat:.0f} s"))
        return out

    def _stop_engine(self, deadline: float) -> None:
        if isinstance(self.engine, ManagedEngine):
            try:
                self.engine.stop(max(1.0, deadline - time.monotonic()))
            except Exception:
                log.exception("daemon: the engine failed to stop")

    def _release(self) -> None:
        self.filing.close()
        if self._inbox_lock:
            self._inbox_lock.release()
        self._lock.release()

    # --- ingest ---------------------------------------------------------------------------------------
    def _ingest_loop(self) -> None:
        assert self.watcher
        cap = self.in_flight_cap
        while not self._stopping.is_set():
            try:
                self.ingest_beat = time.monotonic()
                room = cap - self._dispatcher.pending()
                if self._has_room_for_parked(room):
                    self.watcher.unpark(room)  # files left in the inbox while the daemon was full
                batch = self.watcher.next_batch(1.0 if room > 0 else 0.1)
                if self._stopping.is_set():
                    break  # a stop, or a start that failed while this scan ran (the Filing is closed)
                self.filing.flush()  # deferred 'filed' marks (group commit)
                room = cap - self._dispatcher.pending()
                if len(batch) > max(room, 0):  # back-pressure: what does not fit waits in the inbox
                    self.watcher.park(batch[max(room, 0):])
                    batch = batch[:max(room, 0)]
                self._may_claim.wait()  # start(): the engine and the stages are up
                if batch and not self._stopping.is_set():
                    docs, held = self.filing.claim(batch)
                    for r in held:
                        self.watcher.hold(r)
                    self.trimmer.worked(len(docs))
                    for doc in docs:
                        self.stats.claimed += 1
                        log.debug("daemon: claimed", extra={"doc": doc.id, "source": doc.rel, "sha256": doc.sha256,
                                                            "state": doc.state})
                    self._dispatcher.put_many([(Dispatcher.key_for(doc), doc.id) for doc in docs])
                self.first_scan.set()  # the first next_batch() ran the start-up scan
                if self._dispatcher.pending() == 0 and self.trimmer.drained():
                    log.debug("daemon: freed memory returned after a run of documents")
            except Exception:
                log.exception("daemon: ingest loop error; continuing")
                self._stopping.wait(0.5)

    # --- workers ----------------------------------------------------------------------------------------
    def _worker_loop(self) -> None:
        while True:
            work = self._dispatcher.get_work(self.batch_size, share=self._share)
            if work is None:
                return
            try:
                if isinstance(work, _Issued):
                    self._file_issued(work)
                else:
                    self._process_batch(work)
            except Exception:  # a bug: every key was already released; keep the worker
                docs = ([d.id for _, d, _ in work.to_issue] + [d.id for _, d in work.to_file]
                        if isinstance(work, _Issued) else [d for _, d in work])
                log.exception("daemon: unexpected failure in a worker", extra={"docs": docs})
            self._wake_ingest_if_room()

    def _has_room_for_parked(self, room: int) -> bool:
        """Parked files come back in big refills (half the cap at least), not one by one."""
        return room > self.in_flight_cap // 2

    def _wake_ingest_if_room(self) -> None:
        """Files parked in the inbox (the daemon was full) come back as soon as there is room for
        them: otherwise the ingest loop would notice only at its next timeout (up to a second),
        and the workers would starve behind a full inbox (measured: a 4 000-file backlog ran at
        the pace of one refill a second)."""
        w = self.watcher
        if w is not None and w.parked and self._has_room_for_parked(self.in_flight_cap - self._dispatcher.pending()):
            w.wake()

    def _process_batch(self, batch: list[tuple[object, int]]) -> None:
        """Run documents (of distinct keys) through the steps they have left. Those that need the
        engine are issued together (one durable folio transaction for all); each document then
        fails, retries and is filed on its own. An engine that answers later gets the batch and
        this worker returns: the batch is filed by whichever worker takes its answer. Every key
        is released exactly once, whatever happens (a key left busy would stall its station)."""
        issued = _Issued(dict(batch))
        handed_off = False
        try:
            for key, doc_id in batch:
                try:
                    doc = self.filing.get(doc_id)
                    if doc is None or not doc.unfinished:
                        self._release_key(issued, key)
                    elif doc.step == "claimed":
                        prepared = self.filing.prepare(doc)
                        if prepared.data is not None:
                            issued.to_issue.append((key, prepared.doc, prepared.data))
                        elif prepared.decided is not None:
                            issued.to_file.append((key, prepared.decided))
                        else:
                            self._release_key(issued, key)  # input vanished
                    else:
                        issued.to_file.append((key, doc))
                except Exception as exc:
                    self._fail_key(issued, key, doc_id, exc)
            handed_off = self._hand_to_engine(issued)
            if not handed_off:
                self._file_issued(issued)
        finally:
            if not handed_off:
                self._fail_open_keys(issued)

    def _hand_to_engine(self, issued: _Issued) -> bool:
        """Give the batch to an engine that answers later; True when it now owns the batch (the
        worker that takes the answer files it, even when the engine could not take it). False:
        file it now (nothing to issue, or an engine that answered at once)."""
        if not issued.to_issue:
            return False
        requests = self._requests([(doc, data) for _, doc, data in issued.to_issue])
        engine = self.engine
        if not isinstance(engine, SubmittingEngine):
            issued.answer = _answered_now(lambda: list(engine.issue_many(requests)))
            return False
        self._dispatcher.handed_to_engine(len(requests))  # from here on, a worker files it whatever happens
        try:
            issued.answer = engine.submit_many(requests)
        except Exception as exc:  # the engine process unreachable: each document retries
            issued.answer = _answered_now(exc.with_traceback(None))  # its frames hold the batch's inputs
        issued.answer.add_done_callback(lambda _: self._dispatcher.answered(issued))
        return True

    def _file_issued(self, issued: _Issued) -> None:
        """The rest of a batch once the engine answered: decisions in one commit, then filing
        as one group commit."""
        # The Future's done-callback holds `issued` and `issued` holds the Future: drop the link
        # so the batch's signed XML is freed as soon as it is filed, not at the next cyclic GC
        # (measured: that cycle held 15 MB more at the peak of a backlog).
        answer, issued.answer = issued.answer, None
        try:
            outcomes = self._outcomes([doc for _, doc, _ in issued.to_issue], answer)
            decided: list[tuple[object, Decision, SignedDte | None]] = []
            for (key, doc, _), outcome in zip(issued.to_issue, outcomes, strict=True):
                try:
                    decided.append((key, *self._decision(doc, outcome)))
                except Exception as exc:
                    self._fail_key(issued, key, doc.id, exc)
            to_file = list(issued.to_file)
            if decided:
                try:
                    docs = self.filing.decide_many([decision for _, decision, _ in decided])  # one commit
                except Exception as exc:
                    for key, decision, _ in decided:
                        self._fail_key(issued, key, decision.doc_id, exc)
                else:
                    for (key, _, dte), doc in zip(decided, docs, strict=True):
                        to_file.append((key, doc))
                        self._recorded(doc, dte)
            ready: list[tuple[object, Doc, SignedDte | None]] = []
            for key, doc in to_file:
                try:
                    ready.append((key, doc, self._signed_for_filing(doc)))
                except Exception as exc:
                    self._fail_key(issued, key, doc.id, exc)
            if ready:
                filed = self.filing.file_many([(doc, dte) for _, doc, dte in ready],
                                              defer_commit=self._dispatcher.pending() > len(ready))  # group commit
                for (key, doc, _), error in zip(ready, filed, strict=True):
                    if error is None:
                        self._release_key(issued, key)
                    else:
                        self._fail_key(issued, key, doc.id,
                                       error if isinstance(error, Exception) else RuntimeError(str(error)))
        finally:
            self._fail_open_keys(issued)

    def _release_key(self, issued: _Issued, key: object) -> None:
        del issued.open_keys[key]
        self._dispatcher.done(key)

    def _fail_key(self, issued: _Issued, key: object, doc_id: int, exc: Exception) -> None:
        del issued.open_keys[key]
        self._failed(key, doc_id, exc)

    def _fail_open_keys(self, issued: _Issued) -> None:
        for key, doc_id in list(issued.open_keys.items()):
            self._fail_key(issued, key, doc_id, RuntimeError("the batch stopped before this document was done"))

    def _failed(self, key: object, doc_id: int, exc: Exception) -> None:
        """A transient failure (or a bug) on one document: run it again later, the others go on."""
        if isinstance(exc, _Retry):
            log.warning("daemon: transient failure; retrying", extra={"doc": doc_id, "error": str(exc)})
        else:
            log.error("daemon: unexpected failure; retrying", exc_info=exc, extra={"doc": doc_id})
        n = self._retries[doc_id] = self._retries.get(doc_id, 0) + 1
        self.stats.retries += 1
        try:
            self.filing.announce_waiting(doc_id)  # before it is queued again: no worker holds it
        except Exception:
            log.exception("daemon: cannot write the received status of a document waiting for a retry",
                          extra={"doc": doc_id})
        self._dispatcher.later(key, doc_id, self.backoff.delay(n))
        self._dispatcher.done(key, retry_pending=True)

    @staticmethod
    def _requests(items: Sequence[tuple[Doc, bytes]]) -> list[Request]:
        """The engine's requests. The doc_key is durable (journal id + content hash): after a
        crash the same document gets its folio back."""
        return [Request(data, d.rel, f"{d.id}:{d.sha256}", d.station) for d, data in items]

    @staticmethod
    def _outcomes(docs: Sequence[Doc],
                  answer: Future[list[SignedDte | BaseException]] | None) -> list[SignedDte | BaseException]:
        """The engine's outcome per document; when the batch itself failed (the folio store, the
        engine process, a bug: not any input's fault) each document gets a _BatchFailed."""
        if not docs or answer is None:
            return []
        failure = answer.exception()  # not result(): a re-raise would tie the Future to this frame
        if failure is not None:
            log.error("daemon: engine batch failed; each document retries", exc_info=failure)
            return [_BatchFailed(f"{type(failure).__name__}: {failure}") for _ in docs]
        outcomes = answer.result()
        if len(outcomes) != len(docs):
            return [_BatchFailed(f"engine returned {len(outcomes)} outcomes for {len(docs)} inputs") for _ in docs]
        return outcomes

    def _issue_many(self, items: list[tuple[Doc, bytes]]) -> list[SignedDte | BaseException]:
        """The engine's outcome per (doc, data), waited for."""
        if not items:
            return []
        requests = self._requests(items)
        engine = self.engine
        if isinstance(engine, SubmittingEngine):
            answer = _answered_now(lambda: engine.submit_many(requests).result())
        else:
            answer = _answered_now(lambda: list(engine.issue_many(requests)))
        return self._outcomes([d for d, _ in items], answer)

    def _decision(self, doc: Doc, outcome: SignedDte | BaseException) -> tuple[Decision, SignedDte | None]:
        """A typed outcome is the Filing's decision; anything else is retried up to
        max_attempts, then filed as an error."""
        if isinstance(outcome, BaseException) and not isinstance(outcome, (DteSyncError, DteSyncErrors)):
            if self.filing.bump_attempts(doc.id) < self.settings.max_attempts:
                raise _Retry(f"engine: {type(outcome).__name__}: {outcome}") from outcome
            log.error("daemon: engine keeps failing; giving up", exc_info=outcome,
                      extra={"doc": doc.id, "source": doc.rel})
            return self.filing.give_up(doc, outcome), None
        return self.filing.decision(doc, outcome)

    def _recorded(self, doc: Doc, dte: SignedDte | None) -> None:
        self.stats.decided += 1
        if dte is None:
            log.info("daemon: rejected", extra={
                "doc": doc.id, "source": doc.rel, "state": doc.state, "codes": [e["code"] for e in doc.error_list]})
            return
        log.info("daemon: signed", extra={"doc": doc.id, "source": doc.rel, "tipo_dte": doc.tipo_dte, "folio": doc.folio})
        self._pending[doc.id] = dte

    def _reissue(self, doc: Doc) -> SignedDte | None:
        """Issue one already-decided document again (after a crash its XML was never written):
        the engine is idempotent per doc_key, so it gets the same folio."""
        data, _ = self.filing.read_input(doc)
        if data is None:
            return None
        (outcome,) = self._issue_many([(doc, data)])
        if not isinstance(outcome, BaseException):
            return outcome
        if self.filing.bump_attempts(doc.id) < self.settings.max_attempts:
            raise _Retry(f"engine on resume: {type(outcome).__name__}: {outcome}") from outcome
        log.error("daemon: cannot rewrite the signed XML after a crash; filing without it", exc_info=outcome,
                  extra={"doc": doc.id, "source": doc.rel})
        return None

    def _signed_for_filing(self, doc: Doc) -> SignedDte | None:
        dte = self._pending.pop(doc.id, None)
        if dte is None and self.filing.needs_xml(doc):
            dte = self._reissue(doc)  # after a crash: the engine is idempotent per doc_key
        return dte

    # --- views ----------------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        snap = self.filing.snapshot()
        snap.update(
            watch_mode=self.watcher.mode if self.watcher else None,
            observer_restarts=self.watcher.observer_restarts if self.watcher else 0,
            in_memory_queue=self._dispatcher.pending(),
        )
        return snap

    def queue(self) -> list[dict[str, Any]]:
        return self.filing.queue()

    def idle(self) -> bool:
        """Nothing claimed is left to do (the inbox itself may still hold files)."""
        return self._dispatcher.pending() == 0 and (not self._started or not self.filing.unfinished())


def _answered_now(call: Callable[[], list[SignedDte | BaseException]] | BaseException,
                  ) -> Future[list[SignedDte | BaseException]]:
    """A finished Future of `call()`'s result, or of the exception it raised (or was given)."""
    answer: Future[list[SignedDte | BaseException]] = Future()
    if isinstance(call, BaseException):
        answer.set_exception(call)
        return answer
    try:
        answer.set_result(call())
    except Exception as exc:
        answer.set_exception(exc.with_traceback(None))  # the failure's frames would hold the batch
    return answer


def install_signal_handlers(stop_event: threading.Event) -> None:
    """SIGTERM/SIGINT (and SIGBREAK on Windows) set `stop_event`: a graceful stop."""

    def handler(signum: int, frame: object) -> None:
        log.info("daemon: signal received; stopping", extra={"signal": signum})
        stop_event.set()

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, handler)
