"""The durable print queue: one SQLite file in the state folder (print_queue.sqlite3).

A job holds the ticket bytes already rendered, so a retry after an hour or after a restart
sends exactly what was due, with no need for the document in memory. Jobs of one station are
printed in order (the head job blocks its station while it is retried: tickets never come out
shuffled); stations are independent. A job is idempotent per (doc_key, station): the daemon's
`on_signed` hook may run twice for a document after a crash and still prints it once,
except when the crash falls between the printer taking the bytes and the row saying so
(at-least-once, as with any printer).

States: pending (due at `next_at`; attempts > 0 means retrying) -> printed | failed (gave up
after `give_up_after` s; `dtesync print` reprints).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

from sync.storage import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS print_jobs (
    id         INTEGER PRIMARY KEY,
    doc_key    TEXT NOT NULL,          -- 'doc:<journal id>' for the daemon, 'reprint:<n>' otherwise
    doc_id     INTEGER,                -- journal id (status file), NULL for reprints and tests
    station    TEXT NOT NULL,
    label      TEXT NOT NULL,          -- for people: 'F12.txt: TipoDTE 39 folio 2'
    data       BLOB NOT NULL,          -- ESC/POS bytes, every copy
    state      TEXT NOT NULL,          -- pending | printed | failed
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (doc_key, station)
);
CREATE INDEX IF NOT EXISTS print_jobs_due ON print_jobs(station, state, id);
CREATE INDEX IF NOT EXISTS print_jobs_doc ON print_jobs(doc_id);
CREATE INDEX IF NOT EXISTS print_jobs_pending ON print_jobs(id) WHERE state = 'pending';
"""
FILE_NAME = "print_queue.sqlite3"


@dataclass
class Job:
    id: int
    doc_key: str
    doc_id: int | None
    station: str
    label: str
    data: bytes
    state: str
    attempts: int
    next_at: float
    last_error: str | None
    created_at: float
    updated_at: float

    def status(self) -> dict[str, Any]:
        """The `print` entry of the document's status file."""
        state = self.state if self.state != "pending" else ("retrying" if self.attempts else "pending")
        out: dict[str, Any] = {"state": state, "station": self.station, "attempts": self.attempts}
        if self.last_error and self.state != "printed":
            out["error"] = self.last_error
        return out


_COLS = ", ".join(f.name for f in fields(Job))


class PrintQueue(Store):
    """The print jobs; a Store (WAL, synchronous=FULL, one write lock, a connection per thread)."""

    SCHEMA = SCHEMA
    TABLE = "print_jobs"

    def _one(self, sql: str, args: tuple) -> Job | None:
        row = self.conn().execute(f"SELECT {_COLS} FROM print_jobs {sql}", args).fetchone()
        return Job(*row) if row else None

    def enqueue(self, doc_key: str, station: str, data: bytes, *, label: str, doc_id: int | None = None,
                now: float | None = None) -> tuple[Job, bool]:
        """Add a job unless (doc_key, station) exists; returns (job, created)."""
        now = time.time() if now is None else now
        with self.tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO print_jobs(doc_key, doc_id, station, label, data, state, next_at, created_at,"
                " updated_at) VALUES (?,?,?,?,?,'pending',?,?,?)",
                (doc_key, doc_id, station, label, data, now, now, now),
            )
        job = self._one("WHERE doc_key=? AND station=?", (doc_key, station))
        assert job is not None
        return job, cur.rowcount == 1

    def head(self, station: str) -> Job | None:
        """The oldest pending job of a station (due or not: it blocks the ones behind it)."""
        return self._one("WHERE station=? AND state='pending' ORDER BY id LIMIT 1", (station,))

    def printed(self, job_id: int, now: float | None = None) -> None:
        self._set(job_id, "state='printed', attempts=attempts+1, last_error=NULL", (), now)

    def retry(self, job_id: int, error: str, next_at: float, now: float | None = None) -> None:
        self._set(job_id, "attempts=attempts+1, last_error=?, next_at=?", (error, next_at), now)

    def failed(self, job_id: int, error: str, now: float | None = None) -> None:
        self._set(job_id, "state='failed', attempts=attempts+1, last_error=?", (error,), now)

    def _set(self, job_id: int, assignments: str, args: tuple, now: float | None) -> None:
        now = time.time() if now is None else now
        with self.tx() as db:
            db.execute(f"UPDATE print_jobs SET {assignments}, updated_at=? WHERE id=?", (*args, now, job_id))

    def get(self, job_id: int) -> Job | None:
        return self._one("WHERE id=?", (job_id,))

    def for_doc(self, doc_id: int) -> Job | None:
        return self._one("WHERE doc_id=? ORDER BY id DESC LIMIT 1", (doc_id,))

    def jobs(self, state: str | None = None) -> list[Job]:
        if state == "pending":  # a literal, so the partial index print_jobs_pending applies
            sql = f"SELECT {_COLS} FROM print_jobs WHERE state='pending' ORDER BY id"
            return [Job(*r) for r in self.conn().execute(sql).fetchall()]
        sql = f"SELECT {_COLS} FROM print_jobs" + (" WHERE state=?" if state else "") + " ORDER BY id"
        return [Job(*r) for r in self.conn().execute(sql, (state,) if state else ()).fetchall()]

    def stations_with_pending(self) -> set[str]:
        return {r[0] for r in self.conn().execute("SELECT DISTINCT station FROM print_jobs WHERE state='pending'")}
