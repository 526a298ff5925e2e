"""Test support for the daemon: a fake engine with the real engine's contract, and a runner.

The fake parses nothing. It allocates folios from a SQLite counter keyed by doc_key
(idempotent: the same doc_key after a crash gets the same folio, like the real engine),
and raises catalog errors for recognisable bad inputs:
  "BAD"   -> FIELD_REQUIRED (TipoDTE)       "\\x00"  -> INPUT_BINARY
  "NOCAF" -> CAF_MISSING                     "SLOW"   -> sleeps 0.4 s first
  "boleta" -> TipoDTE 39, else 33            "FLAKY"  -> RuntimeError on its first call

Run as a script it is the daemon process of the crash test:
    python tests/daemon_runner.py ROOT MODE
with ROOT/{inbox,outbox,archive,rejected,state}; it prints READY once started.
"""

from __future__ import annotations

import hashlib
import queue
import sqlite3
import sys
import threading
import time
from concurrent.futures import Future
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sync.errors import DteSyncError  # noqa: E402
from sync.journal import Journal  # noqa: E402
from sync.signed import SignedDte  # noqa: E402


class FakeEngine:
    def __init__(self, db_path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS folios(doc_key TEXT PRIMARY KEY, tipo INTEGER, folio INTEGER, sha TEXT)"
        )
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS folio_unique ON folios(tipo, folio)")
        self.calls = 0
        self._flaky_seen: set[str] = set()

    def issue(self, data: bytes, source: str, *, doc_key: str, station: str | None = None) -> SignedDte:
        self.calls += 1
        if b"SLOW" in data:
            time.sleep(0.4)
        if b"\x00" in data:
            raise DteSyncError("INPUT_BINARY", source=source)
        if b"BAD" in data:
            raise DteSyncError("FIELD_REQUIRED", field="TipoDTE", source=source, line=1)
        if b"NOCAF" in data:
            raise DteSyncError("CAF_MISSING", params={"tipo_dte": 33})
        if b"FLAKY" in data and doc_key not in self._flaky_seen:
            self._flaky_seen.add(doc_key)
            raise RuntimeError("transient engine failure")
        tipo = 39 if b"boleta" in data else 33
        sha = hashlib.sha256(data).hexdigest()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT folio FROM folios WHERE doc_key=?", (doc_key,)).fetchone()
            if row is None:
                nxt = self._db.execute("SELECT COALESCE(MAX(folio), 0) + 1 FROM folios WHERE tipo=?", (tipo,)).fetchone()[0]
                self._db.execute("INSERT INTO folios VALUES (?,?,?,?)", (doc_key, tipo, nxt, sha))
                folio = nxt
            else:
                folio = row[0]
            self._db.execute("COMMIT")
        xml = f'<?xml version="1.0" encoding="ISO-8859-1"?><DTE><TipoDTE>{tipo}</TipoDTE><Folio>{folio}</Folio><Sha>{sha}</Sha></DTE>'
        return SignedDte(tipo_dte=tipo, folio=folio, rut_emisor="76192083-9", rut_receptor="66666666-6",
                         fch_emis=date(2025, 3, 14), monto_total=len(data), dte_xml=xml.encode("latin-1"), ted=b"TED")

    def issue_many(self, requests):
        outcomes = []
        for r in requests:
            try:
                outcomes.append(self.issue(r.data, r.source, doc_key=r.doc_key, station=r.station))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def allocated(self) -> list[tuple[str, int, int, str]]:
        with self._lock:
            return list(self._db.execute("SELECT doc_key, tipo, folio, sha FROM folios ORDER BY tipo, folio"))


class BatchingFakeEngine(FakeEngine):
    """FakeEngine with `issue_many`, as the real engine has: records every batch it is given."""

    def __init__(self, db_path: Path, *, fail_first_batch: bool = False) -> None:
        super().__init__(db_path)
        self.batches: list[list[str]] = []
        self._fail_next = fail_first_batch

    def issue_many(self, requests):
        self.batches.append([r.source for r in requests])
        if self._fail_next:  # the whole call fails, as a broken folio store would
            self._fail_next = False
            raise DteSyncError("INTERNAL", params={"detail": "folio store unavailable"})
        return super().issue_many(requests)


class SubmittingFakeEngine(FakeEngine):
    """FakeEngine that answers later, as the engine process does (`submit_many` returns a
    Future at once; a thread of its own answers it). `hold` keeps every answer back until it is
    set; `refuse_first` makes the first submission raise (the process unreachable);
    `die_holding_first` fails the first batch's Future (the process died holding it)."""

    def __init__(self, db_path: Path, *, refuse_first: bool = False, die_holding_first: bool = False) -> None:
        super().__init__(db_path)
        self.hold = threading.Event()
        self.hold.set()
        self.submitted: list[list[str]] = []
        self.answered = 0
        self._refuse_next, self._die_next = refuse_first, die_holding_first
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._answer, daemon=True).start()

    def submit_many(self, requests):
        from sync.engine_process import EngineProcessDied

        if self._refuse_next:
            self._refuse_next = False
            raise EngineProcessDied("cannot reach the engine process: [Errno 32] Broken pipe")
        self.submitted.append([r.source for r in requests])
        future: Future = Future()
        die, self._die_next = self._die_next, False
        self._queue.put((future, list(requests), die))
        return future

    def _answer(self) -> None:
        from sync.engine_process import EngineProcessDied

        while True:
            future, requests, die = self._queue.get()
            self.hold.wait()
            if die:
                future.set_exception(EngineProcessDied("the engine process ended while signing"))
            else:
                future.set_result(self.issue_many(requests))
            self.answered += 1


def make_daemon(root: Path, mode: str, *, stations=frozenset(), stages=(), lang: str = "es", **kw):
    """A daemon over ROOT/{inbox,outbox,archive,rejected,state} assembled by the composition root,
    with the fake engine unless `engine=` is given; other keywords are [daemon] settings."""
    from sync.app import assemble
    from sync.config import DaemonConfig
    from sync.filing import Folders

    (root / "state").mkdir(parents=True, exist_ok=True)
    engine = kw.pop("engine", None) or FakeEngine(root / "state" / "fake-folios.sqlite3")
    settings = dict(watch=mode, workers=2, stable_window=0.2, empty_timeout=2.0, scan_interval=1.0, poll_interval=0.1)
    settings.update(kw)
    folders = Folders(inbox=root / "inbox", outbox=root / "outbox", archive=root / "archive",
                      rejected=root / "rejected", state=root / "state")
    app = assemble(folders, engine, DaemonConfig(**settings), stages=stages, stations=frozenset(stations), lang=lang)
    return app.daemon, engine


def main() -> None:
    root, mode = Path(sys.argv[1]), sys.argv[2]
    (root / "state").mkdir(parents=True, exist_ok=True)
    daemon, _ = make_daemon(root, mode, stations={"caja1", "caja2"})
    serve_until_signalled(daemon)


def serve_until_signalled(daemon) -> None:
    """Start `daemon`, print READY for the parent test, stop gracefully on SIGTERM/SIGINT
    (a SIGKILL, which the crash tests send, skips the stop: that is the point)."""
    from sync.daemon import install_signal_handlers

    stop = threading.Event()
    install_signal_handlers(stop)
    daemon.start()
    print("READY", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        daemon.stop()



def unfinished_steps(root: Path) -> dict[str, int]:
    """Step counts of journal rows a restart has to resume (read while no daemon runs)."""
    db = root / "state" / "journal.sqlite3"
    if not db.exists():
        return {}
    j = Journal(db)
    try:
        steps = j.step_counts()
    finally:
        j.close()
    return {k: v for k, v in steps.items() if k in ("claiming", "claimed", "decided")}


if __name__ == "__main__":
    main()


def count_statuses(outbox: Path) -> int:
    return sum(1 for _ in outbox.rglob("*.status.json")) if outbox.exists() else 0


def wait_for_progress(outbox: Path, statuses_before: int, timeout: float = 10.0) -> None:
    """Until the daemon has visibly started on the new wave (a status file more than before):
    a fixed sleep lands on an idle daemon when a wave takes less time than the sleep."""
    end = time.monotonic() + timeout
    while count_statuses(outbox) <= statuses_before and time.monotonic() < end:
        time.sleep(0.005)
