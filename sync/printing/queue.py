"""The durable print queue: one SQLite file in the state folder (print_queue.sqlite3).

A job holds the ticket bytes already rendered, so a retry after an hour or after a restart
sends exactly what was due, with no need for the document in memory. Jobs of one station are
printed in order (the head job blocks its station while it is retried: tickets never come out
shuffled); stations are independent. A job is idempotent per (doc_key, station): the daemon's
`on_signed` hook may run twice for a document after a crash and still prints it once,
except when the crash falls between the printer taking the bytes and the row saying so
(at-least-once, as with any printer).

States: pending (due at `next_at`; attempts > 0 means retrying or waiting for the printer)
-> printed | failed (gave up after `give_up_after` s; `dtesync print` reprints); refused (the
SII's rules keep this document off this station's paper: never sent). `partial` records that
an attempt may have left part of the ticket on paper: every later attempt carries the
REIMPRESIÓN mark, and `reprint` says the printed ticket did.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, cast

from sync.storage import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS print_jobs (
    id         INTEGER PRIMARY KEY,
    doc_key    TEXT NOT NULL,          -- 'doc:<journal id>' for the daemon, 'reprint:<n>' otherwise
    doc_id     INTEGER,                -- journal id (status file), NULL for reprints and tests
    station    TEXT NOT NULL,
    label      TEXT NOT NULL,          -- for people: 'F12.txt: TipoDTE 39 folio 2'
    data       BLOB NOT NULL,          -- ESC/POS bytes, every copy
    state      TEXT NOT NULL,          -- pending | printed | failed | refused
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    condition  TEXT,                   -- the printer's condition at the last attempt (sync.printing.status)
    code       TEXT,                   -- error code of a job that waits, failed or was refused
    partial    INTEGER NOT NULL DEFAULT 0,  -- an attempt may have left part of it on paper
    reprint    INTEGER NOT NULL DEFAULT 0,  -- printed with the REIMPRESIÓN mark
    source     TEXT,                   -- the signed XML it was rendered from (a reprint's file)
    mode       TEXT,                   -- timbre: native | raster
    offsets    TEXT,                   -- JSON: byte offsets where each copy's pinned start sequence ends
    UNIQUE (doc_key, station)
);
CREATE INDEX IF NOT EXISTS print_jobs_due ON print_jobs(station, state, id);
CREATE INDEX IF NOT EXISTS print_jobs_doc ON print_jobs(doc_id);
CREATE INDEX IF NOT EXISTS print_jobs_pending ON print_jobs(id) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS pdf_jobs (
    doc_id     INTEGER PRIMARY KEY,    -- journal id: NAME.pdf handed to another process, not yet written
    xml_path   TEXT NOT NULL,
    pdf_path   TEXT NOT NULL,
    label      TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pdf_results (
    doc_id     INTEGER PRIMARY KEY,    -- journal id; a row only when NAME.pdf could not be written
    code       TEXT NOT NULL,
    message    TEXT NOT NULL,
    at         REAL NOT NULL
);
"""
# Version 0 (the first release) had no printer status: its jobs gain these columns.
MIGRATIONS = ("""
ALTER TABLE print_jobs ADD COLUMN condition TEXT;
ALTER TABLE print_jobs ADD COLUMN code TEXT;
ALTER TABLE print_jobs ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;
ALTER TABLE print_jobs ADD COLUMN reprint INTEGER NOT NULL DEFAULT 0;
ALTER TABLE print_jobs ADD COLUMN source TEXT;
ALTER TABLE print_jobs ADD COLUMN mode TEXT;
ALTER TABLE print_jobs ADD COLUMN offsets TEXT;
""",)
FILE_NAME = "print_queue.sqlite3"
WAITING = {"paper_out", "cover_open", "offline", "error", "stalled"}  # the printer says why


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
    condition: str | None = None
    code: str | None = None
    partial: int = 0
    reprint: int = 0
    source: str | None = None
    mode: str | None = None
    offsets: str | None = None

    @property
    def copy_offsets(self) -> list[int]:
        return json.loads(self.offsets) if self.offsets else []

    def status(self) -> dict[str, Any]:
        """The `print` entry of the document's status file."""
        state = self.state
        if state == "pending" and self.attempts:
            state = "waiting" if self.condition in WAITING else "retrying"
        out: dict[str, Any] = {"state": state, "station": self.station, "attempts": self.attempts}
        if self.condition:
            out["printer"] = self.condition
        if self.state != "printed":
            if self.code:
                out["code"] = self.code
            if self.last_error:
                out["error"] = self.last_error
        if self.mode:
            out["mode"] = self.mode
        if self.reprint or self.partial:
            out["reprint"] = True
        return out


_COLS = ", ".join(f.name for f in fields(Job))


class PrintQueue(Store):
    """The print jobs and the PDFs that could not be written; a Store (WAL, synchronous=FULL,
    one write lock, a connection per thread)."""

    SCHEMA = SCHEMA
    MIGRATIONS = MIGRATIONS
    TABLE = "print_jobs"

    def _one(self, sql: str, args: tuple[object, ...]) -> Job | None:
        row = self.conn().execute(f"SELECT {_COLS} FROM print_jobs {sql}", args).fetchone()
        return Job(*row) if row else None

    def enqueue(self, doc_key: str, station: str, data: bytes, *, label: str, doc_id: int | None = None,
                now: float | None = None, source: str | None = None, mode: str | None = None,
                offsets: list[int] | None = None, state: str = "pending", code: str | None = None,
                error: str | None = None) -> tuple[Job, bool]:
        """Add a job unless (doc_key, station) exists; returns (job, created). A job born
        `refused` or `failed` carries its `code` and `error` and is never sent."""
        now = time.time() if now is None else now
        with self.tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO print_jobs(doc_key, doc_id, station, label, data, state, next_at, created_at,"
                " updated_at, source, mode, offsets, code, last_error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (doc_key, doc_id, station, label, data, state, now, now, now, source, mode,
                 json.dumps(offsets) if offsets is not None else None, code, error),
            )
        job = self._one("WHERE doc_key=? AND station=?", (doc_key, station))
        assert job is not None
        return job, cur.rowcount == 1

    def head(self, station: str) -> Job | None:
        """The oldest pending job of a station (due or not: it blocks the ones behind it)."""
        return self._one("WHERE station=? AND state='pending' ORDER BY id LIMIT 1", (station,))

    def printed(self, job_id: int, now: float | None = None, *, condition: str | None = None,
                reprint: bool = False) -> None:
        self._set(job_id, "state='printed', attempts=attempts+1, last_error=NULL, code=NULL, condition=?, reprint=?",
                  (condition, int(reprint)), now)

    def retry(self, job_id: int, error: str, next_at: float, now: float | None = None, *,
              condition: str | None = None, code: str | None = None, partial: bool = False) -> None:
        """The attempt did not print the job. `partial`: it may have left part of it on paper,
        so from now on it goes with the REIMPRESIÓN mark."""
        self._set(job_id, "attempts=attempts+1, last_error=?, next_at=?, condition=?, code=?, partial=MAX(partial, ?)",
                  (error, next_at, condition, code, int(partial)), now)

    def failed(self, job_id: int, error: str, now: float | None = None, *, code: str | None = None) -> None:
        self._set(job_id, "state='failed', attempts=attempts+1, last_error=?, code=COALESCE(?, code)", (error, code), now)

    def replace_data(self, job_id: int, data: bytes, *, mode: str, offsets: list[int], now: float | None = None) -> None:
        """The job rendered again (e.g. as a raster for a printer without GS ( k)."""
        self._set(job_id, "data=?, mode=?, offsets=?", (data, mode, json.dumps(offsets)), now)

    def _set(self, job_id: int, assignments: str, args: tuple[object, ...], now: float | None) -> None:
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

    def backlog(self, station: str) -> tuple[int, float | None, int]:
        """(pending jobs, creation time of the oldest, pending jobs whose last attempt failed)."""
        row = self.conn().execute(
            "SELECT COUNT(*), MIN(created_at), SUM(attempts > 0) FROM print_jobs WHERE station=? AND state='pending'",
            (station,)).fetchone()
        return int(row[0]), row[1], int(row[2] or 0)

    def pdf_queued_many(self, jobs: Sequence[tuple[int, str, str, str]]) -> None:
        """NAME.pdf of a filed batch, (doc_id, xml_path, pdf_path, label) each, handed to a
        renderer in another process: kept until it answers, so a stop or a crash before then
        renders it again at the next start. One transaction, not fsynced: after a power cut
        the PDF can always be made again from NAME.xml (`dtesync print`)."""
        now = time.time()
        with self.tx(durable=False) as db:
            db.executemany("INSERT OR REPLACE INTO pdf_jobs(doc_id, xml_path, pdf_path, label, created_at)"
                           " VALUES (?,?,?,?,?)", [(*job, now) for job in jobs])

    def pdf_answered(self, doc_id: int, failure: tuple[str, str] | None) -> bool:
        """The renderer's answer: the job is done, its failure (code, message) recorded or a former
        one cleared. True when the status file's `pdf` entry changes."""
        with self.tx(durable=False) as db:
            db.execute("DELETE FROM pdf_jobs WHERE doc_id=?", (doc_id,))
            if failure is not None:
                db.execute("INSERT OR REPLACE INTO pdf_results(doc_id, code, message, at) VALUES (?,?,?,?)",
                           (doc_id, failure[0], failure[1], time.time()))
                return True
            return db.execute("DELETE FROM pdf_results WHERE doc_id=?", (doc_id,)).rowcount > 0

    def pdf_jobs(self, limit: int = -1) -> list[tuple[int, str, str, str]]:
        """(doc_id, xml_path, pdf_path, label) of the PDFs still to be written, oldest first
        (all of them, or the `limit` oldest)."""
        rows = self.conn().execute("SELECT doc_id, xml_path, pdf_path, label FROM pdf_jobs ORDER BY doc_id LIMIT ?",
                                   (limit,))
        return [(int(r[0]), r[1], r[2], r[3]) for r in rows]

    def pdf_failed(self, doc_id: int, code: str, message: str, now: float | None = None) -> None:
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO pdf_results(doc_id, code, message, at) VALUES (?,?,?,?)",
                       (doc_id, code, message, time.time() if now is None else now))

    def pdf_written(self, doc_id: int) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM pdf_results WHERE doc_id=?", (doc_id,))

    def pdf_result(self, doc_id: int) -> tuple[str, str] | None:
        """(code, message) when the document's PDF could not be written."""
        row = self.conn().execute("SELECT code, message FROM pdf_results WHERE doc_id=?", (doc_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def status_of_docs(self, doc_ids: Sequence[int]) -> dict[int, tuple[Job | None, tuple[str, str] | None]]:
        """(`for_doc`, `pdf_result`) of a batch of documents, in two queries per 500 ids."""
        out: dict[int, tuple[Job | None, tuple[str, str] | None]] = {}
        ids = list(dict.fromkeys(doc_ids))
        jobs: dict[int, Job] = {}
        failed: dict[int, tuple[str, str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.conn().execute(f"SELECT {_COLS} FROM print_jobs WHERE doc_id IN ({marks}) ORDER BY id", chunk):
                job = Job(*row)
                jobs[cast(int, job.doc_id)] = job  # the newest wins, as in for_doc
            for doc_id, code, message in self.conn().execute(
                    f"SELECT doc_id, code, message FROM pdf_results WHERE doc_id IN ({marks})", chunk):
                failed[doc_id] = (code, message)
        for doc_id in ids:
            out[doc_id] = (jobs.get(doc_id), failed.get(doc_id))
        return out

    def stations_with_pending(self) -> set[str]:
        return {r[0] for r in self.conn().execute("SELECT DISTINCT station FROM print_jobs WHERE state='pending'")}
