"""The daemon: inbox -> journal -> engine -> outbox, exactly once per input, crash-safe.

Threads:
- ingest (one): waits on the inbox watcher, claims complete files by renaming them into
  the work folder, records them in the journal in claim order (name rules resolved here,
  serially), and hands document ids to the dispatcher.
- workers (pool, two per core by default: a document waits on fsync about as long as it
  computes, so two threads per core keep the core busy): take a document, run it through the stages
  the journal says are left (see sync.journal), each stage durable before the next.
  Documents of one printing station are handed out one at a time, in claim order; inputs
  in the inbox root have no order among themselves and run in parallel.

Crash safety: the journal step is written before the effect it announces can be lost;
effects (outbox writes, moves) are idempotent, and the engine is idempotent per doc_key,
so after SIGKILL every unfinished row is simply run again from its step.

Extension point for later stages (print, uplink): `after_signed` callbacks run after a
document's signed status is written (at least once per document: make them idempotent on
`doc.id`), and `update_state()` moves a document to a later public state and rewrites its
status file wherever it now lives.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import logging
import os
import signal
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

from sync.engine import Request
from sync.errors import DteSyncError, DteSyncErrors, as_error_list
from sync.journal import ClaimIntent, Decision, Doc, Journal
from sync.outbox import Outbox, render_errors
from sync.watch.fs import fsync_dir
from sync.watch.inbox import InboxWatcher, Ready
from sync.watch.rules import INPUT_EXTENSIONS, split_name

log = logging.getLogger("dtesync.daemon")

# Codes that say "this installation cannot sign right now", not "this input is wrong".
_ENVIRONMENT_PREFIXES = ("CAF_", "FOLIO", "CERT_", "SECRET_", "CONFIG_", "SCHEMA_", "INTERNAL", "STATE_")


class IssuedLike(Protocol):
    tipo_dte: int
    folio: int
    rut_emisor: str
    monto_total: int
    dte_xml: bytes


class EngineLike(Protocol):
    """sync.engine.Engine, or a test double. An engine that also has `issue_many(requests)`
    (one outcome per request: the IssuedLike or the exception) gets the ready documents in batches."""

    def issue(self, data: bytes, source: str, *, doc_key: str, station: str | None = None) -> IssuedLike: ...


AfterSigned = Callable[[Doc, "IssuedLike | None"], None]


class _Retry(Exception):
    """A transient failure: run this document again later."""


class _BatchFailed(RuntimeError):
    """The engine failed for a whole batch: retried per document like any engine failure."""


# --- the lock --------------------------------------------------------------------------------------
class DaemonLock:
    """An exclusive OS lock on a file: two daemons never share a state folder or an inbox.

    The OS releases it when the process dies, even by SIGKILL, so there is no stale lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            holder = ""
            try:
                holder = self.path.read_text().strip()
            except OSError:
                pass
            raise DteSyncError(
                "DAEMON_ALREADY_RUNNING", found=str(self.path.parent), params={"detail": f"{self.path.name} pid {holder or '?'}"}
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops flock/msvcrt locks
            self._fd = None


# --- ordering ------------------------------------------------------------------------------------------
class Dispatcher:
    """Hands documents to workers: FIFO per station, one at a time per station."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
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
            q = self._queues.setdefault(key, collections.deque())
            q.appendleft(doc_id) if front else q.append(doc_id)
            self._queued += 1
            if len(q) == 1 and key not in self._busy:
                self._ready.append(key)
            self._cond.notify()

    def later(self, key: object, doc_id: int, delay: float) -> None:
        """Retry `doc_id` after `delay` s; its station stays blocked to keep the order."""
        with self._cond:
            self._seq += 1
            heapq.heappush(self._timers, (time.monotonic() + delay, self._seq, key, doc_id))
            self._cond.notify_all()

    def get(self) -> tuple[object, int] | None:
        batch = self.get_batch(1)
        return batch[0] if batch else None

    def get_batch(self, limit: int, share: int = 1) -> list[tuple[object, int]] | None:
        """Up to `limit` documents ready now, each of another key (a station's documents go one
        at a time, so its order holds), and no more than a `share`-th of what is ready, so the
        other workers get theirs; waits for the first. None once closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                self._fire_timers()
                if self._ready:
                    batch = []
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
                timeout = self._timers[0][0] - time.monotonic() if self._timers else None
                self._cond.wait(timeout=None if timeout is None else max(timeout, 0.0))

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


# --- the daemon -----------------------------------------------------------------------------------
def choose_work_dir(inbox: Path, state_dir: Path) -> Path:
    """`<state_dir>/work` when a rename from the inbox can reach it (same file system),
    else `<inbox>/.dtesync-work` (claims must be atomic renames; the dot hides it)."""
    cand = state_dir / "work"
    cand.mkdir(parents=True, exist_ok=True)
    probe = inbox / f".dtesync-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        target = cand / probe.name
        os.rename(probe, target)
        os.unlink(target)
        return cand
    except OSError:
        if probe.exists():
            probe.unlink()
        fallback = inbox / ".dtesync-work"
        fallback.mkdir(exist_ok=True)
        return fallback


@dataclass
class DaemonStats:
    claimed: int = 0
    decided: int = 0
    retries: int = 0


class Daemon:
    """See module docstring. `start()`/`stop()` for embedding, `run(stop_event)` for the CLI."""

    def __init__(
        self,
        *,
        inbox: Path | str,
        outbox: Path | str,
        archive: Path | str,
        rejected: Path | str,
        state_dir: Path | str,
        engine: EngineLike,
        watch: str = "auto",
        workers: int = 0,
        lang: str = "es",
        status_txt: bool = False,
        stations: Iterable[str] | None = (),
        stable_window: float = 0.2,
        empty_timeout: float = 30.0,
        scan_interval: float = 5.0,
        poll_interval: float = 0.5,
        require_done_marker: bool = False,
        tz: Any = None,
        after_signed: Sequence[AfterSigned] = (),
        max_attempts: int = 3,
        write_received: bool = True,
        batch_size: int = 16,
        allow_network_state: bool = False,
    ) -> None:
        self.inbox, self.outbox_dir = Path(os.path.abspath(inbox)), Path(os.path.abspath(outbox))
        self.archive, self.rejected = Path(os.path.abspath(archive)), Path(os.path.abspath(rejected))
        self.state_dir = Path(os.path.abspath(state_dir))
        self.engine = engine
        self.watch_mode = watch
        self.workers = workers or 2 * (os.cpu_count() or 1)
        self.lang, self.status_txt, self.tz = lang, status_txt, tz
        self.stations = None if stations is None else frozenset(stations)
        self.stable_window, self.empty_timeout = stable_window, empty_timeout
        self.scan_interval, self.poll_interval = scan_interval, poll_interval
        self.require_done_marker = require_done_marker
        self.after_signed = list(after_signed)
        self.max_attempts = max_attempts
        self.batch_size = max(1, batch_size)
        self.write_received = write_received
        self.allow_network_state = allow_network_state
        self.stats = DaemonStats()
        self.journal: Journal | None = None
        self.out: Outbox | None = None
        self.watcher: InboxWatcher | None = None
        self.work_dir: Path | None = None
        self._dispatcher = Dispatcher()
        self._lock = DaemonLock(self.state_dir / "daemon.lock")
        self._inbox_lock: DaemonLock | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._started = False
        self._retries: dict[int, int] = {}
        self._pending_xml: dict[int, IssuedLike] = {}
        # Later stages (sync.printing.service.attach): extra status-file entries, lifecycle hooks.
        self.status_extras: list[Callable[[Doc], dict[str, Any]]] = []
        self.on_start: list[Callable[[], None]] = []
        self.on_stop: list[Callable[[], None]] = []
        self._status_lock = threading.Lock()
        # Service supervision (sync.service.sd_notify): set after the first reconciliation scan;
        # the ingest loop's last beat (monotonic) tells a watchdog it is not stuck.
        self.first_scan = threading.Event()
        self.ingest_beat = 0.0

    @classmethod
    def from_config(cls, config: Any, engine: EngineLike, **overrides: Any) -> "Daemon":
        """Build from sync.config.Config (folders, language, daemon, company.branches)."""
        f, d = config.folders, config.daemon
        tz = None
        try:
            from zoneinfo import ZoneInfo

            tz = ZoneInfo(config.timezone)
        except Exception:  # no tz database (Windows without tzdata): local time
            tz = None
        kw: dict[str, Any] = dict(
            inbox=f.inbox,
            outbox=f.outbox,
            archive=f.archive,
            rejected=f.rejected,
            state_dir=f.state,
            engine=engine,
            watch=d.watch,
            workers=d.workers,
            lang=config.language,
            status_txt=d.status_txt,
            stations=frozenset(getattr(config.company, "branches", {}) or ())
            | frozenset(s.name for s in getattr(getattr(config, "printing", None), "stations", ())),
            stable_window=d.stable_window,
            empty_timeout=d.empty_timeout,
            scan_interval=d.scan_interval,
            tz=tz,
        )
        for name in ("poll_interval", "require_done_marker", "max_attempts", "write_received", "batch_size"):
            if hasattr(d, name):
                kw[name] = getattr(d, name)
        kw.update(overrides)
        return cls(**kw)

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Lock, open the journal, resume unfinished documents, start watching and workers."""
        for p in (self.inbox, self.outbox_dir, self.archive, self.rejected, self.state_dir):
            p.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            self._inbox_lock = DaemonLock(self.inbox / ".dtesync.lock")
            try:
                self._inbox_lock.acquire()
            except DteSyncError:
                raise
            except OSError as exc:  # some shares refuse locks: the state lock still holds
                log.warning("daemon: cannot lock the inbox; relying on the state folder lock", extra={"error": str(exc)})
                self._inbox_lock = None
            self.journal = Journal(self.state_dir / "journal.sqlite3", allow_network=self.allow_network_state)
            self.work_dir = choose_work_dir(self.inbox, self.state_dir)
            self.out = Outbox(
                self.outbox_dir, self.archive, self.rejected, lang=self.lang, status_txt=self.status_txt, tz=self.tz,
                reserved=self.journal.reserved_paths(),
            )
            self.out.extras = self.status_extras
            self.watcher = InboxWatcher(
                self.inbox,
                mode=self.watch_mode,
                stations=self.stations,
                stable_window=self.stable_window,
                empty_timeout=self.empty_timeout,
                scan_interval=self.scan_interval,
                poll_interval=self.poll_interval,
                require_marker=self.require_done_marker,
                ignore_dirs=frozenset({str(self.work_dir)}),
            )
            self._recover()
        except BaseException:
            self._release()
            raise
        self.watcher.start()
        log.info(
            "daemon: started",
            extra={"inbox": str(self.inbox), "watch": self.watcher.mode, "workers": self.workers, "work": str(self.work_dir)},
        )
        t = threading.Thread(target=self._ingest_loop, name="dtesync-ingest", daemon=True)
        self._threads = [t] + [
            threading.Thread(target=self._worker_loop, name=f"dtesync-worker-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for hook in self.on_start:
            hook()
        for t in self._threads:
            t.start()
        self._started = True

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful: stop claiming, let workers finish the document in hand, release locks.
        Documents not started yet stay in the journal and resume at the next start."""
        if not self._started:
            return
        self._stopping.set()
        if self.watcher:
            self.watcher.stop()
        self._dispatcher.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        for hook in self.on_stop:
            try:
                hook()
            except Exception:
                log.exception("daemon: on_stop hook failed")
        self._release()
        self._started = False
        log.info("daemon: stopped")

    def run(
        self, stop_event: threading.Event | None = None, *, on_tick: Callable[["Daemon"], None] | None = None,
        tick: float = 1.0,
    ) -> None:
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

    def _release(self) -> None:
        if self.journal:
            self.journal.close()
            self.journal = None
        if self._inbox_lock:
            self._inbox_lock.release()
        self._lock.release()

    # --- recovery -----------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Resume every unfinished row where it stopped (see sync.journal for the steps)."""
        assert self.journal and self.work_dir
        docs = self.journal.unfinished()
        to_claim, to_drop = [], []
        for doc in docs:
            if doc.step != "claiming":
                continue
            work = self.work_dir / doc.work_name
            if os.path.lexists(work):
                to_claim.append((doc.id, _sha256_of(work)))
            elif os.path.lexists(self.inbox / doc.rel):
                to_drop.append(doc.id)  # the rename never happened: the scan will claim it again
            else:
                self.journal.gone(doc.id, "vanished before the claim completed")
        self.journal.drop_claims(to_drop)
        self.journal.mark_claimed(to_claim)
        resumed = 0
        for doc in self.journal.unfinished():
            if doc.step in ("claimed", "decided"):
                self._dispatcher.put(Dispatcher.key_for(doc), doc.id)
                resumed += 1
        if resumed:
            log.info("daemon: resuming unfinished documents", extra={"count": resumed})

    # --- ingest ---------------------------------------------------------------------------------------
    def _ingest_loop(self) -> None:
        assert self.watcher and self.journal
        while not self._stopping.is_set():
            try:
                self.ingest_beat = time.monotonic()
                batch = self.watcher.next_batch(1.0)
                self.journal.flush()  # deferred 'filed' marks (group commit)
                if batch and not self._stopping.is_set():
                    self._claim(batch)
                self.first_scan.set()  # the first next_batch() ran the start-up scan
            except Exception:
                log.exception("daemon: ingest loop error; continuing")
                self._stopping.wait(0.5)

    def _claim(self, batch: list[Ready]) -> None:
        """Claim complete files: intent in the journal, rename into work/, hash, resolve names."""
        assert self.journal and self.work_dir
        intents = [
            ClaimIntent(r.folder, r.name, split_name(r.name)[0], split_name(r.name)[1], r.station, r.size, r.mode)
            for r in batch
        ]
        ids = self.journal.begin_claims(intents)
        dropped, claimed = [], []
        for doc_id, r, it in zip(ids, batch, intents):
            work = self.work_dir / f"{doc_id}{it.ext.lower()}"
            try:
                os.rename(r.path, work)  # a symlink is moved as a link, never followed
            except FileNotFoundError:
                dropped.append(doc_id)  # deleted meanwhile: nothing to answer
                continue
            except OSError as exc:  # Windows: still open by its writer; retried on a later scan
                log.info("daemon: claim failed, will retry", extra={"file": r.rel, "error": str(exc)})
                dropped.append(doc_id)
                continue
            for m in r.markers:
                try:
                    os.unlink(m)  # a marker is a signal, not a document
                except OSError:
                    pass
            claimed.append((doc_id, _sha256_of(work)))
        if claimed:
            fsync_dir(self.work_dir)
        self.journal.drop_claims(dropped)
        docs = self.journal.mark_claimed(claimed)
        self.stats.claimed += len(docs)
        for doc in docs:
            log.info("daemon: claimed", extra={"doc": doc.id, "source": doc.rel, "sha256": doc.sha256, "state": doc.state})
            self._dispatcher.put(Dispatcher.key_for(doc), doc.id)

    # --- workers ----------------------------------------------------------------------------------------
    def _worker_loop(self) -> None:
        while True:
            batch = self._dispatcher.get_batch(self.batch_size, share=self.workers)
            if batch is None:
                return
            try:
                self._process_batch(batch)
            except Exception:  # a bug: _process_batch already released every key; keep the worker
                log.exception("daemon: unexpected failure in a worker", extra={"docs": [d for _, d in batch]})

    def _process_batch(self, batch: list[tuple[object, int]]) -> None:
        """Run documents (of distinct keys) through the steps they have left. Those that need the
        engine are issued together (`issue_many`: one durable folio transaction for all); each
        document then fails, retries and is filed on its own. Every key is released exactly once,
        whatever happens (a key left busy would stall its station)."""
        assert self.journal
        open_keys = dict(batch)

        def release(key: object) -> None:
            del open_keys[key]
            self._dispatcher.done(key)

        def fail(key: object, doc_id: int, exc: Exception) -> None:
            del open_keys[key]
            self._failed(key, doc_id, exc)

        try:
            to_issue: list[tuple[object, Doc, bytes]] = []
            to_file: list[tuple[object, Doc]] = []
            for key, doc_id in batch:
                try:
                    doc = self.journal.get(doc_id)
                    if doc is None or not doc.unfinished:
                        release(key)
                    elif doc.step == "claimed":
                        decided, data = self._prepare(doc)
                        if data is not None:
                            to_issue.append((key, decided, data))
                        elif decided is not None:
                            to_file.append((key, decided))
                        else:
                            release(key)  # input vanished
                    else:
                        to_file.append((key, doc))
                except Exception as exc:
                    fail(key, doc_id, exc)
            outcomes = self._issue_many([(doc, data) for _, doc, data in to_issue])
            decided: list[tuple[object, Decision, IssuedLike | None]] = []
            for (key, doc, _), outcome in zip(to_issue, outcomes):
                try:
                    decided.append((key, *self._decision(doc, outcome)))
                except Exception as exc:
                    fail(key, doc.id, exc)
            if decided:
                try:
                    docs = self.journal.decide_many([decision for _, decision, _ in decided])  # one commit
                except Exception as exc:
                    for key, decision, _ in decided:
                        fail(key, decision.doc_id, exc)
                else:
                    for (key, _, issued), doc in zip(decided, docs):
                        to_file.append((key, doc))
                        self._recorded(doc, issued)
            for key, doc in to_file:
                try:
                    self._file(doc)
                except Exception as exc:
                    fail(key, doc.id, exc)
                else:
                    release(key)
        finally:
            for key, doc_id in list(open_keys.items()):
                fail(key, doc_id, RuntimeError("the batch stopped before this document was done"))

    def _failed(self, key: object, doc_id: int, exc: Exception) -> None:
        """A transient failure (or a bug) on one document: run it again later, the others go on."""
        if isinstance(exc, _Retry):
            log.warning("daemon: transient failure; retrying", extra={"doc": doc_id, "error": str(exc)})
        else:
            log.error("daemon: unexpected failure; retrying", exc_info=exc, extra={"doc": doc_id})
        self._dispatcher.later(key, doc_id, self._backoff(doc_id))
        self._dispatcher.done(key, retry_pending=True)

    def _backoff(self, doc_id: int) -> float:
        n = self._retries[doc_id] = self._retries.get(doc_id, 0) + 1
        self.stats.retries += 1
        return min(0.25 * 2**n, 30.0)

    def _prepare(self, doc: Doc) -> tuple[Doc | None, bytes | None]:
        """A claimed input up to the engine: (doc, data) to issue; (decided doc, None) when it is
        decided without the engine (duplicate, NAME_IN_PROGRESS, unreadable); (None, None) if gone."""
        assert self.journal and self.out
        if doc.state == "duplicate":
            final = self.out.choose_final_path(doc, rejected=False, now=time.time())
            return self.journal.decide(doc.id, "duplicate", final_path=str(final)), None
        if doc.state == "rejected_input":  # a NAME_IN_PROGRESS conflict, decided at claim time
            final = self.out.choose_final_path(doc, rejected=True, now=time.time())
            return self.journal.decide(doc.id, "rejected_input", final_path=str(final)), None
        for old in self.journal.superseding(doc.folder, doc.out_stem):
            self.out.archive_results(old)
            self.journal.supersede_done(old.id)
        if self.write_received:
            self._write_status(doc)
        data, errors = self._read_input(doc)
        if data is not None:
            return doc, data
        if errors is None:
            return None, None
        return self._record(doc, DteSyncErrors(errors), state="rejected_input"), None

    def _read_input(self, doc: Doc) -> tuple[bytes | None, list[DteSyncError] | None]:
        """The claimed file's bytes, or why it cannot be an input; (None, None) if it vanished."""
        assert self.journal and self.work_dir
        work = self.work_dir / doc.work_name
        mode = doc.mode or 0
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(work)
            except OSError:
                target = "?"
            return None, [DteSyncError("INPUT_SYMLINK", found=target, source=doc.rel)]
        if not stat.S_ISREG(mode):
            return None, [DteSyncError("INPUT_UNKNOWN_FORMAT", expected="un archivo regular", found="archivo especial", source=doc.rel)]
        if doc.ext.lower() not in INPUT_EXTENSIONS:
            return None, [
                DteSyncError("INPUT_UNKNOWN_FORMAT", expected=", ".join(INPUT_EXTENSIONS), found=doc.ext or doc.name, source=doc.rel)
            ]
        try:
            data = work.read_bytes()
        except FileNotFoundError:
            log.error("daemon: claimed input disappeared from the work folder", extra={"doc": doc.id, "source": doc.rel})
            self.journal.gone(doc.id, "claimed input disappeared")
            return None, None
        if not data:
            return None, [DteSyncError("INPUT_EMPTY", source=doc.rel)]
        return data, None

    def _issue_many(self, items: list[tuple[Doc, bytes]]) -> list[Any]:
        """The engine's outcome per (doc, data): an IssuedLike or the exception. The doc_key is
        durable (journal id + content hash): after a crash the same document gets its folio back."""
        if not items:
            return []
        keys = [(d.rel, f"{d.id}:{d.sha256}", d.station) for d, _ in items]
        issue_many = getattr(self.engine, "issue_many", None)
        if issue_many is not None:
            try:
                outcomes = issue_many([Request(data, rel, key, station) for (_, data), (rel, key, station) in zip(items, keys)])
            except Exception as exc:  # the batch itself failed (the folio store, a bug): not any input's fault
                log.error("daemon: engine batch failed; each document retries", exc_info=exc)
                return [_BatchFailed(f"{type(exc).__name__}: {exc}") for _ in items]
            if len(outcomes) != len(items):
                return [_BatchFailed(f"engine returned {len(outcomes)} outcomes for {len(items)} inputs") for _ in items]
            return outcomes
        outcomes: list[Any] = []
        for (_, data), (rel, key, station) in zip(items, keys):
            try:
                outcomes.append(self.engine.issue(data, rel, doc_key=key, station=station))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _record(self, doc: Doc, outcome: Any, state: str | None = None) -> Doc:
        """Journal one document's outcome (see `_decision`)."""
        assert self.journal
        decision, issued = self._decision(doc, outcome, state)
        (doc,) = self.journal.decide_many([decision])
        self._recorded(doc, issued)
        return doc

    def _decision(self, doc: Doc, outcome: Any, state: str | None = None) -> tuple[Decision, IssuedLike | None]:
        """The engine's outcome as the document's decision (signed or rejected) and destination.
        A failure that is not the input's fault raises _Retry, up to max_attempts."""
        assert self.journal and self.out
        if not isinstance(outcome, BaseException):
            final = self.out.choose_final_path(doc, rejected=False, now=time.time())
            return Decision(
                doc.id, "signed", str(final), tipo_dte=outcome.tipo_dte, folio=outcome.folio,
                rut_emisor=outcome.rut_emisor, monto_total=outcome.monto_total,
            ), outcome
        if isinstance(outcome, (DteSyncError, DteSyncErrors)):
            errors = as_error_list(outcome, doc.rel)
            env = any(e.code.startswith(_ENVIRONMENT_PREFIXES) for e in errors)
            state = state or ("error" if env else "rejected_input")
        else:
            attempts = self.journal.bump_attempts(doc.id)
            if attempts < self.max_attempts:
                raise _Retry(f"engine: {type(outcome).__name__}: {outcome}") from outcome
            log.error("daemon: engine keeps failing; giving up", exc_info=outcome, extra={"doc": doc.id, "source": doc.rel})
            errors, state = as_error_list(outcome, doc.rel), "error"
        final = self.out.choose_final_path(doc, rejected=True, now=time.time())
        return Decision(doc.id, state, str(final), errors=errors), None

    def _recorded(self, doc: Doc, issued: IssuedLike | None) -> None:
        self.stats.decided += 1
        if issued is None:
            log.info("daemon: rejected", extra={
                "doc": doc.id, "source": doc.rel, "state": doc.state, "codes": [e["code"] for e in doc.error_list]})
            return
        log.info("daemon: signed", extra={"doc": doc.id, "source": doc.rel, "tipo_dte": doc.tipo_dte, "folio": doc.folio})
        self._pending_xml[doc.id] = issued

    def _issue(self, doc: Doc) -> IssuedLike | None:
        """Issue one already-decided document again (after a crash its XML was never written):
        the engine is idempotent per doc_key, so it gets the same folio."""
        assert self.journal
        data, _ = self._read_input(doc)
        if data is None:
            return None
        (outcome,) = self._issue_many([(doc, data)])
        if not isinstance(outcome, BaseException):
            return outcome
        if self.journal.bump_attempts(doc.id) < self.max_attempts:
            raise _Retry(f"engine on resume: {type(outcome).__name__}: {outcome}") from outcome
        log.error("daemon: cannot rewrite the signed XML after a crash; filing without it", exc_info=outcome,
                  extra={"doc": doc.id, "source": doc.rel})
        return None

    def _call_after_signed(self, doc: Doc, issued: IssuedLike | None) -> None:
        for cb in self.after_signed:
            try:
                cb(doc, issued)
            except Exception:
                log.exception("daemon: after_signed callback failed", extra={"doc": doc.id})

    def _file(self, doc: Doc) -> None:
        """Write the final status, move the input to archive/ or rejected/, mark filed."""
        assert self.journal and self.out and self.work_dir and doc.final_path
        issued = self._pending_xml.pop(doc.id, None)
        if doc.state == "signed" and issued is None and not self.out.has_xml(doc):
            issued = self._issue(doc)  # after a crash: the engine is idempotent per doc_key
        if doc.state != "duplicate":
            self.out.write_status(doc, self.journal.history(doc.id), issued.dte_xml if issued else None)
        if doc.state == "signed":
            self._call_after_signed(doc, issued)
        work = self.work_dir / doc.work_name
        try:
            self.out.file_input(work, Path(doc.final_path))
        except FileNotFoundError:
            log.error("daemon: input missing when filing", extra={"doc": doc.id, "source": doc.rel})
        self.journal.filed(doc.id, defer=self._dispatcher.pending() > 1)  # group commit under load only
        self.out.release(doc.final_path)
        if doc.state == "duplicate" and doc.dup_of is not None:
            orig = self.journal.get(doc.dup_of)
            if orig is not None and orig.step == "filed":
                self._write_status(orig)  # answer again with the existing result

    def _write_status(self, doc: Doc) -> None:
        assert self.journal and self.out
        self.out.write_status(doc, self.journal.history(doc.id))

    # --- API for later stages and for `dtesync status` / `queue` ---------------------------------------
    def update_state(self, doc_id: int, state: str, note: str | None = None, **values: Any) -> Doc:
        """Move a document to a later public state (queued, sent, accepted...) and rewrite its
        status file (in the outbox, or beside its archived input if superseded)."""
        assert self.journal and self.out
        with self._status_lock:
            doc = self.journal.set_state(doc_id, state, note, **values)
            self._write_status(doc)
        return doc

    def refresh_status(self, doc_id: int) -> None:
        """Rewrite a filed document's status file from the journal (a later stage's entry,
        e.g. `print`, changed). Serialized with update_state so the newest state wins."""
        assert self.journal and self.out
        with self._status_lock:
            doc = self.journal.get(doc_id)
            if doc is not None and doc.state not in ("received", "duplicate"):
                self._write_status(doc)

    def snapshot(self) -> dict[str, Any]:
        assert self.journal
        snap = journal_snapshot(self.journal, self.lang)
        snap.update(
            watch_mode=self.watcher.mode if self.watcher else None,
            observer_restarts=self.watcher.observer_restarts if self.watcher else 0,
            in_memory_queue=self._dispatcher.pending(),
        )
        return snap

    def queue(self) -> list[dict[str, Any]]:
        assert self.journal
        return journal_queue(self.journal)

    def idle(self) -> bool:
        """Nothing claimed is left to do (the inbox itself may still hold files)."""
        return self._dispatcher.pending() == 0 and (self.journal is None or not self.journal.unfinished())


def journal_snapshot(journal: Journal, lang: str = "es", last: int = 10) -> dict[str, Any]:
    """Counts by state and the last errors, from the journal alone (usable without a daemon)."""
    return {
        "counts": journal.counts(),
        "steps": journal.step_counts(),
        "last_errors": [
            {"id": d.id, "source": d.rel, "state": d.state, "updated_at": d.updated_at, "errors": render_errors(d, lang)}
            for d in journal.last_errors(last)
        ],
    }


def journal_queue(journal: Journal, now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    return [
        {
            "id": d.id, "source": d.rel, "station": d.station, "step": d.step, "state": d.state,
            "attempts": d.attempts, "age_s": round(now - d.created_at, 3),
        }
        for d in journal.unfinished()
    ]


def install_signal_handlers(stop_event: threading.Event) -> None:
    """SIGTERM/SIGINT (and SIGBREAK on Windows) set `stop_event`: a graceful stop."""

    def handler(signum: int, frame: object) -> None:
        log.info("daemon: signal received; stopping", extra={"signal": signum})
        stop_event.set()

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, handler)


def _sha256_of(path: Path) -> str:
    """sha256 of a claimed input; a link hashes its target text, a FIFO/device nothing
    (opening a FIFO would block the ingest thread forever)."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return hashlib.sha256(os.readlink(path).encode("utf-8", "surrogateescape")).hexdigest()
        if not stat.S_ISREG(st.st_mode):
            return hashlib.sha256(b"").hexdigest()
        h = hashlib.sha256()
        with open(path, "rb", buffering=0) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return hashlib.sha256(b"").hexdigest()
