"""The retry queue, in its own store uplink.sqlite3 (not APScheduler's pickled job store): one
row per signed document with its attempts, next attempt time and last error, and one row per envío.

Row states:  pending -> sending -> sent -> final
                  ^         |
                  +---------+ (transient failure: back to pending with a backoff)
             sending --(crash, read timeout, reset)--> uncertain -> resolved, then final or pending

`sending` is written (durably, with `sent_at`) before the upload starts, so after a crash a
row still in `sending` may or may not have reached the SII: it becomes `uncertain` and is
resolved by per-document queries before it is ever sent again, and it goes back to `pending`
only when the SII says it does not hold the document *after* the processing window has passed
since `sent_at`. That is what keeps a folio from being uploaded twice.

A row may also be *held* (`hold`: the alert that explains why), and a channel may be *paused*
(`uplink_channels`: the installation is refused; what to fix; when to probe again).
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync.storage import Store
from sync.uplink.docref import DocRef

SCHEMA = """
CREATE TABLE IF NOT EXISTS uplink_queue (
    doc_id       INTEGER PRIMARY KEY,      -- the journal's document id
    channel      TEXT NOT NULL,            -- dte | boleta | http
    tipo_dte     INTEGER NOT NULL,
    folio        INTEGER NOT NULL,
    rut_emisor   TEXT NOT NULL,
    rut_receptor TEXT NOT NULL,
    fch_emis     TEXT NOT NULL,
    monto_total  INTEGER NOT NULL,
    dte_xml      BLOB NOT NULL,
    state        TEXT NOT NULL,            -- pending | sending | uncertain | sent | final
    solo         INTEGER NOT NULL DEFAULT 0, -- send alone (its batch was refused as a whole)
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,
    last_error   TEXT,
    envio_id     INTEGER,
    track_id     TEXT,
    result       TEXT,
    alerted      INTEGER NOT NULL DEFAULT 0,
    enqueued_at  REAL NOT NULL,
    updated_at   REAL NOT NULL,
    sent_at      REAL,                     -- the last upload that may have reached the destination
    checks       INTEGER NOT NULL DEFAULT 0, -- lookups since that upload
    resends      INTEGER NOT NULL DEFAULT 0, -- uploads after the SII said it did not hold it
    hold         TEXT,                     -- JSON {key, code, params}: held with an alert
    revived      INTEGER NOT NULL DEFAULT 0  -- `dtesync retry` brought it back from rejected_sii
);
CREATE INDEX IF NOT EXISTS uplink_queue_due ON uplink_queue(state, next_at);
CREATE TABLE IF NOT EXISTS uplink_envios (
    id           INTEGER PRIMARY KEY,
    channel      TEXT NOT NULL,
    track_id     TEXT,                     -- SII track id (provider id for http)
    state        TEXT NOT NULL,            -- sending | sent | done | failed | lost
    polls        INTEGER NOT NULL DEFAULT 0,
    next_poll_at REAL,
    last_error   TEXT,
    created_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS uplink_envios_poll ON uplink_envios(state, next_poll_at);
CREATE TABLE IF NOT EXISTS uplink_channels (
    name         TEXT PRIMARY KEY,         -- a paused channel: the installation is refused
    source       TEXT NOT NULL,            -- token | upload | query: what was refused
    alert        TEXT NOT NULL,            -- JSON {key, code, params}
    since        REAL NOT NULL,
    probe_at     REAL NOT NULL
);
"""
# MIGRATIONS[i] takes a queue file from user_version i to i + 1 (sync.storage.Store).
MIGRATIONS = (
    # 1: lost answers are looked up within a processing window; documents held with an alert;
    #    `dtesync retry` revives rejections that were no verdict.
    """ALTER TABLE uplink_queue ADD COLUMN sent_at REAL;
    ALTER TABLE uplink_queue ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE uplink_queue ADD COLUMN resends INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE uplink_queue ADD COLUMN hold TEXT;
    ALTER TABLE uplink_queue ADD COLUMN revived INTEGER NOT NULL DEFAULT 0;""",
)


@dataclass
class QueuedDoc:
    doc_id: int
    channel: str
    ref: DocRef
    dte_xml: bytes
    state: str
    attempts: int
    next_at: float
    last_error: str | None
    envio_id: int | None
    track_id: str | None
    result: str | None
    enqueued_at: float
    solo: bool
    sent_at: float | None = None
    checks: int = 0
    resends: int = 0
    hold: dict[str, Any] | None = None


@dataclass(frozen=True)
class Pause:
    """A channel the installation problem `alert` stopped; probed again at `probe_at`."""

    channel: str
    source: str
    alert: dict[str, Any]
    since: float
    probe_at: float


@dataclass
class Envio:
    id: int
    channel: str
    track_id: str | None
    state: str
    polls: int
    created_at: float


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """AWS "full jitter": uniform(0, min(cap, base * 2**attempt)); spreads a thundering herd."""
    return rng.uniform(0.0, min(cap, base * (2 ** min(attempt, 40))))


FILE_NAME = "uplink.sqlite3"
# Every state but 'final', spelled out so the (state, next_at) index finds them among a year of rows.
WAITING = "('pending', 'sending', 'uncertain', 'sent')"


class UplinkQueue(Store):
    """The upload queue in its own Store (uplink.sqlite3). Earlier versions kept these tables in
    the journal's file: `migrate_from_journal` moves them over once."""

    SCHEMA = SCHEMA
    MIGRATIONS = MIGRATIONS
    TABLE = "uplink_queue"

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time, readonly: bool = False) -> None:
        self._clock = clock
        self._lock = threading.RLock()  # reads take it too: a consistent view across two SELECTs
        super().__init__(path, readonly=readonly)

    @property
    def _db(self) -> sqlite3.Connection:
        return self.conn()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return self.tx()

    def migrate_from_journal(self, journal_path: Path) -> int:
        """Copy the queue tables an older dtesync kept in journal.sqlite3 (once: only into an
        empty queue), then drop them there. Returns the rows moved."""
        if not Path(journal_path).exists():
            return 0
        src = sqlite3.connect(str(journal_path), timeout=30)
        try:
            has = src.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='uplink_queue'").fetchone()
            if not has:
                return 0
            docs = src.execute("SELECT * FROM uplink_queue").fetchall()
            cols = [d[0] for d in src.execute("SELECT * FROM uplink_queue LIMIT 0").description]
            envios = src.execute("SELECT * FROM uplink_envios").fetchall()
            ecols = [d[0] for d in src.execute("SELECT * FROM uplink_envios LIMIT 0").description]
            with self.tx() as db:
                if db.execute("SELECT COUNT(*) FROM uplink_queue").fetchone()[0] == 0:
                    db.executemany(f"INSERT INTO uplink_queue({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", docs)
                    db.executemany(f"INSERT INTO uplink_envios({', '.join(ecols)}) VALUES ({', '.join('?' * len(ecols))})",
                                   envios)
            src.execute("DROP TABLE uplink_queue")
            src.execute("DROP TABLE uplink_envios")
            src.commit()
            return len(docs)
        finally:
            src.close()

    @staticmethod
    def _row(r: sqlite3.Row) -> QueuedDoc:
        ref = DocRef(r["tipo_dte"], r["folio"], r["rut_emisor"], r["rut_receptor"], r["fch_emis"], r["monto_total"])
        return QueuedDoc(r["doc_id"], r["channel"], ref, bytes(r["dte_xml"]), r["state"], r["attempts"], r["next_at"],
                         r["last_error"], r["envio_id"], r["track_id"], r["result"], r["enqueued_at"], bool(r["solo"]),
                         r["sent_at"], r["checks"], r["resends"], json.loads(r["hold"]) if r["hold"] else None)

    # --- writes ------------------------------------------------------------------------------------
    def enqueue(self, doc_id: int, channel: str, ref: DocRef, dte_xml: bytes) -> bool:
        """Idempotent per doc_id: False when the document was already queued."""
        now = self._clock()
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO uplink_queue(doc_id, channel, tipo_dte, folio, rut_emisor, rut_receptor, fch_emis,"
                " monto_total, dte_xml, state, next_at, enqueued_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,'pending',?,?,?)",
                (doc_id, channel, ref.tipo_dte, ref.folio, ref.rut_emisor, ref.rut_receptor, ref.fch_emis,
                 ref.monto_total, dte_xml, now, now, now),
            )
            return cur.rowcount == 1

    def recover(self) -> int:
        """After a crash: uploads that were under way may have arrived; mark them uncertain."""
        now = self._clock()
        with self._tx() as db:
            n = db.execute("UPDATE uplink_queue SET state='uncertain', next_at=?, updated_at=? WHERE state='sending'",
                           (now, now)).rowcount
            db.execute("UPDATE uplink_envios SET state='lost' WHERE state='sending'")
        return n

    def take_batch(self, channel: str, limit: int, max_wait: float) -> tuple[int, list[QueuedDoc]] | None:
        """Oldest due pending documents, marked `sending` under a new envío (durably, before the
        upload). None when fewer than `limit` are due and the oldest waited less than `max_wait`."""
        now = self._clock()
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM uplink_queue WHERE channel=? AND state='pending' AND next_at<=?"
                " ORDER BY enqueued_at, doc_id LIMIT ?", (channel, now, limit)).fetchall()
            if not rows:
                return None
            docs = [self._row(r) for r in rows]
            solo = [d for d in docs if d.solo]
            if solo:
                docs = solo[:1]
            elif len(docs) < limit and now - docs[0].enqueued_at < max_wait:
                return None
            envio = int(db.execute("INSERT INTO uplink_envios(channel, state, created_at) VALUES (?, 'sending', ?)",
                                   (channel, now)).lastrowid or 0)
            db.executemany("UPDATE uplink_queue SET state='sending', envio_id=?, updated_at=?, sent_at=?, checks=0"
                           " WHERE doc_id=?", [(envio, now, now, d.doc_id) for d in docs])
        return envio, docs

    def sent(self, envio_id: int, track_id: str, first_poll: float) -> None:
        now = self._clock()
        with self._tx() as db:
            db.execute("UPDATE uplink_envios SET state='sent', track_id=?, next_poll_at=? WHERE id=?",
                       (track_id, now + first_poll, envio_id))
            db.execute("UPDATE uplink_queue SET state='sent', track_id=?, updated_at=? WHERE envio_id=? AND state='sending'",
                       (track_id, now, envio_id))

    def failed(self, envio_id: int | None, doc_ids: list[int], error: str, delays: list[float], *,
               uncertain: bool = False, solo: bool = False) -> None:
        """Back to the queue with one more attempt (uncertain: resolve before sending again)."""
        now = self._clock()
        state = "uncertain" if uncertain else "pending"
        with self._tx() as db:
            if envio_id is not None:
                db.execute("UPDATE uplink_envios SET state='failed', last_error=? WHERE id=?", (error, envio_id))
            db.executemany(
                f"UPDATE uplink_queue SET state=?, attempts=attempts+1, next_at=?, last_error=?, updated_at=?"
                f"{', solo=1' if solo else ''} WHERE doc_id=? AND state!='final'",
                [(state, now + d, error, now, i) for i, d in zip(doc_ids, delays)],
            )

    def requeue(self, doc_id: int, *, delay: float = 0.0) -> None:
        """An uncertain document the SII says it does not hold (after the processing window):
        send it again."""
        now = self._clock()
        with self._tx() as db:
            db.execute("UPDATE uplink_queue SET state='pending', next_at=?, updated_at=?, resends=resends+1, hold=NULL,"
                       " envio_id=NULL WHERE doc_id=? AND state='uncertain'", (now + delay, now, doc_id))

    def check_later(self, doc_id: int, delay: float, error: str | None = None) -> None:
        """An uncertain document not resolved yet: look it up again in `delay` seconds."""
        now = self._clock()
        with self._tx() as db:
            db.execute("UPDATE uplink_queue SET next_at=?, checks=checks+1, last_error=COALESCE(?, last_error),"
                       " updated_at=? WHERE doc_id=? AND state='uncertain'", (now + delay, error, now, doc_id))

    def unsent(self, envio_id: int, doc_ids: list[int], error: str, *, solo: bool = False) -> None:
        """The SII refused a whole envío without filing its documents (schema, signature,
        carátula): they go back to the queue (alone, to find the culprit, when `solo`)."""
        now = self._clock()
        with self._tx() as db:
            db.execute("UPDATE uplink_envios SET state='failed', last_error=? WHERE id=?", (error, envio_id))
            db.executemany(f"UPDATE uplink_queue SET state='pending', next_at=?, last_error=?, updated_at=?, envio_id=NULL,"
                           f" track_id=NULL{', solo=1' if solo else ''} WHERE doc_id=? AND state='sent'",
                           [(now, error, now, i) for i in doc_ids])

    def hold(self, doc_ids: list[int], alert: dict[str, Any] | None) -> None:
        """Mark documents held by the condition `alert` ({key, code, params}); None releases them."""
        value = json.dumps(alert, ensure_ascii=False) if alert else None
        with self._tx() as db:
            db.executemany("UPDATE uplink_queue SET hold=? WHERE doc_id=? AND state!='final'",
                           [(value, i) for i in doc_ids])

    def finish(self, doc_id: int, result: str, error: str | None = None) -> None:
        self.finish_many([(doc_id, result, error)])

    def finish_many(self, outcomes: list[tuple[int, str, str | None]], envio_done: int | None = None) -> None:
        """Close rows (doc_id, result, error) in one transaction; also the envío, when given."""
        if not outcomes and envio_done is None:
            return
        now = self._clock()
        with self._tx() as db:
            db.executemany("UPDATE uplink_queue SET state='final', result=?, last_error=COALESCE(?, last_error),"
                           " updated_at=?, hold=NULL WHERE doc_id=?", [(r, e, now, i) for i, r, e in outcomes])
            if envio_done is not None:
                db.execute("UPDATE uplink_envios SET state='done' WHERE id=?", (envio_done,))

    def envio_done(self, envio_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE uplink_envios SET state='done' WHERE id=?", (envio_id,))

    def poll_later(self, envio_id: int, delay: float, error: str | None = None) -> None:
        now = self._clock()
        with self._tx() as db:
            db.execute("UPDATE uplink_envios SET polls=polls+1, next_poll_at=?, last_error=COALESCE(?, last_error)"
                       " WHERE id=?", (now + delay, error, envio_id))

    def mark_alerted(self, doc_ids: list[int]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE uplink_queue SET alerted=1 WHERE doc_id=?", [(i,) for i in doc_ids])

    def retry_now(self, doc_ids: list[int] | None = None) -> int:
        """`dtesync retry`: every waiting document (or these) becomes due now, and every paused
        channel is probed at the next tick. Uncertain documents are only looked up sooner:
        they are sent again only once the SII says it does not hold them."""
        now = self._clock()
        with self._tx() as db:
            db.execute("UPDATE uplink_channels SET probe_at=?", (now,))
            if doc_ids:
                return sum(db.execute("UPDATE uplink_queue SET next_at=? WHERE doc_id=? AND state IN ('pending','uncertain')",
                                      (now, i)).rowcount for i in doc_ids)
            return db.execute("UPDATE uplink_queue SET next_at=? WHERE state IN ('pending','uncertain')", (now,)).rowcount

    def revive(self, doc_ids: list[int] | None, is_mistake: Callable[[str], bool]) -> list[int]:
        """`dtesync retry`: documents an earlier version finalised as `rejected_sii` for a reason
        that was no verdict on them (`is_mistake(last_error)`: the certificate, the enrolment, an
        HTTP error) come back as `uncertain`: looked up first, sent again only if the SII does
        not hold them. Returns their ids."""
        now = self._clock()
        with self._tx() as db:
            rows = db.execute("SELECT doc_id, last_error FROM uplink_queue WHERE state='final' AND result='rejected_sii'"
                              ).fetchall()
            wanted = set(doc_ids) if doc_ids else None
            ids = [r[0] for r in rows if (wanted is None or r[0] in wanted) and is_mistake(r[1] or "")]
            db.executemany("UPDATE uplink_queue SET state='uncertain', result=NULL, next_at=?, updated_at=?, revived=1,"
                           " checks=0, solo=0, alerted=0, hold=NULL, envio_id=NULL, track_id=NULL,"
                           " sent_at=COALESCE(sent_at, enqueued_at) WHERE doc_id=?", [(now, now, i) for i in ids])
        return ids

    def take_revived(self) -> list[QueuedDoc]:
        """Revived documents not yet reported `queued` again; the mark is cleared. (Read first:
        this runs at every drain tick and must not cost a write transaction when idle.)"""
        with self._lock:
            if self._db.execute("SELECT 1 FROM uplink_queue WHERE revived=1 LIMIT 1").fetchone() is None:
                return []
        with self._tx() as db:
            rows = db.execute("SELECT * FROM uplink_queue WHERE revived=1").fetchall()
            db.execute("UPDATE uplink_queue SET revived=0 WHERE revived=1")
        return [self._row(r) for r in rows]

    # --- paused channels ---------------------------------------------------------------------------
    def pause(self, channel: str, source: str, alert: dict[str, Any], probe_in: float) -> None:
        now = self._clock()
        with self._tx() as db:
            db.execute("INSERT INTO uplink_channels(name, source, alert, since, probe_at) VALUES (?,?,?,?,?)"
                       " ON CONFLICT(name) DO UPDATE SET source=excluded.source, alert=excluded.alert,"
                       " probe_at=excluded.probe_at",
                       (channel, source, json.dumps(alert, ensure_ascii=False), now, now + probe_in))

    def probe_later(self, channel: str, delay: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE uplink_channels SET probe_at=? WHERE name=?", (self._clock() + delay, channel))

    def resume(self, channel: str) -> Pause | None:
        """The channel works again; returns the pause it was under (None if none)."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM uplink_channels WHERE name=?", (channel,)).fetchone()
            db.execute("DELETE FROM uplink_channels WHERE name=?", (channel,))
        return self._pause(row) if row else None

    @staticmethod
    def _pause(r: sqlite3.Row) -> Pause:
        return Pause(r["name"], r["source"], json.loads(r["alert"]), r["since"], r["probe_at"])

    def paused(self, channel: str | None = None) -> list[Pause]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM uplink_channels" + (" WHERE name=?" if channel else ""),
                                    (channel,) if channel else ()).fetchall()
        return [self._pause(r) for r in rows]

    # --- reads -------------------------------------------------------------------------------------
    def _select(self, sql: str, args: tuple[Any, ...] = ()) -> list[QueuedDoc]:
        with self._lock:
            return [self._row(r) for r in self._db.execute(sql, args).fetchall()]

    def uncertain_due(self, channel: str, limit: int = 100) -> list[QueuedDoc]:
        return self._select("SELECT * FROM uplink_queue WHERE channel=? AND state='uncertain' AND next_at<=?"
                            " ORDER BY enqueued_at, doc_id LIMIT ?", (channel, self._clock(), limit))

    def envios_due(self, limit: int = 100) -> list[Envio]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM uplink_envios WHERE state='sent' AND next_poll_at<=? ORDER BY next_poll_at"
                                    " LIMIT ?", (self._clock(), limit)).fetchall()
        return [Envio(r["id"], r["channel"], r["track_id"], r["state"], r["polls"], r["created_at"]) for r in rows]

    def docs_of(self, envio_id: int) -> list[QueuedDoc]:
        return self._select("SELECT * FROM uplink_queue WHERE envio_id=? AND state='sent' ORDER BY doc_id", (envio_id,))

    def get(self, doc_id: int) -> QueuedDoc | None:
        rows = self._select("SELECT * FROM uplink_queue WHERE doc_id=?", (doc_id,))
        return rows[0] if rows else None

    def waiting_longer_than(self, seconds: float) -> list[QueuedDoc]:
        return self._select(f"SELECT * FROM uplink_queue WHERE state IN {WAITING} AND alerted=0 AND enqueued_at<=?"
                            " ORDER BY enqueued_at", (self._clock() - seconds,))

    def unfinished(self) -> list[QueuedDoc]:
        return self._select(f"SELECT * FROM uplink_queue WHERE state IN {WAITING} ORDER BY enqueued_at, doc_id")

    def held(self) -> list[QueuedDoc]:
        return self._select("SELECT * FROM uplink_queue WHERE hold IS NOT NULL AND state!='final' ORDER BY doc_id")

    def waiting_alerted(self) -> list[int]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT doc_id FROM uplink_queue WHERE alerted=1 AND state!='final'")]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM uplink_queue GROUP BY state").fetchall()
        return {r[0]: r[1] for r in rows}

    def pending_count(self) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM uplink_queue WHERE state IN {WAITING}").fetchone()[0])
