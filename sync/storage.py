"""The one way dtesync opens its SQLite databases: the journal, the folio store and the queues
of printing, uplink and delivery are all a `Store`.

One discipline for all of them:
- WAL, so readers (`dtesync status`, the panel) never block the daemon; synchronous=FULL, so a
  committed transaction survives a power cut (a store may relax it for one transaction whose
  loss is harmless: `tx(durable=False)`); a busy timeout, because several processes may share a
  file (the daemon and `dtesync caf import`).
- A connection per thread, in autocommit mode: every write is an explicit `BEGIN IMMEDIATE`
  transaction (`tx()`), serialized inside the process by one lock, so threads never spin in
  SQLite's busy handler against each other; reads need no lock and see the last commit.
- The schema is versioned (PRAGMA user_version): a new file gets `SCHEMA` at the latest version;
  an older file runs the `MIGRATIONS` it lacks, in one transaction.
- `readonly=True` opens the file with `mode=ro`: no DDL, no writes, nothing created; that is
  how commands that only look (`status`, `queue`, reports) open a store the daemon is writing.
- Every store is closable and a context manager.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, Self

CACHE_KIB = 512


class StorageError(RuntimeError):
    """The database cannot give the guarantees dtesync relies on, or is not there."""


def connect_wal(path: Path | str, *, timeout: float = 30.0, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=timeout)
    else:
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=timeout)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            db.close()
            raise StorageError(f"SQLite refused WAL mode on {path} (got {mode})")
        db.execute("PRAGMA synchronous=FULL")
    db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    # A small page cache per connection: there is one connection per thread and store, and the
    # operating system already caches the file; SQLite's default (2 MB each) adds up to tens of MB.
    db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return db


class Store:
    """Base class of every SQLite store (see the module docstring)."""

    SCHEMA: ClassVar[str] = ""  # the latest schema, for a new file (CREATE ... IF NOT EXISTS)
    MIGRATIONS: ClassVar[tuple[str, ...]] = ()  # MIGRATIONS[i] takes user_version i to i + 1
    TABLE: ClassVar[str] = ""  # a table every version has: tells an old file from a new one

    def __init__(self, path: Path | str, *, readonly: bool = False, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._timeout = timeout
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        if readonly:
            if not self.path.exists():
                raise StorageError(f"{self.path} does not exist")
        else:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _create_private(self.path)
            self._migrate()

    @classmethod
    def open_readonly(cls, path: Path | str) -> Self:
        return cls(path, readonly=True)

    # --- connections ---------------------------------------------------------------------------------
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._open(relaxed=False)
        return db

    def _relaxed(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "relaxed", None)
        if db is None:
            db = self._local.relaxed = self._open(relaxed=True)
        return db

    def _open(self, *, relaxed: bool) -> sqlite3.Connection:
        with self._write_lock:
            if self._closed:  # a straggler thread after stop(): never open a connection that leaks
                raise StorageError(f"{self.path} is closed")
            try:
                db = connect_wal(self.path, timeout=self._timeout, readonly=self.readonly)
            except sqlite3.DatabaseError as exc:
                raise StorageError(f"{self.path}: {exc}") from None
            db.row_factory = sqlite3.Row
            if relaxed:
                db.execute("PRAGMA synchronous=NORMAL")
            self._connections.append(db)
            self.configure(db)
            return db

    def configure(self, db: sqlite3.Connection) -> None:
        """Per-connection settings of a store (e.g. PRAGMA foreign_keys)."""

    @contextmanager
    def tx(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE (the write lock up front, so no deadlock
        upgrading a reader), COMMIT when the block ends, ROLLBACK on any exception.
        `durable=False` commits with synchronous=NORMAL: only for a write whose loss on a power
        cut is harmless (it is redone from other durable state)."""
        if self.readonly:
            raise StorageError(f"{self.path} is open read-only")
        db = self.conn() if durable else self._relaxed()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        with self._write_lock:
            self._closed = True
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema ----------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        db = self.conn()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                existed = bool(self.TABLE) and db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (self.TABLE,)).fetchone() is not None
                if not existed:
                    version = len(self.MIGRATIONS)
                else:
                    for sql in self.MIGRATIONS[version:]:
                        for statement in _statements(sql):
                            db.execute(statement)
                for statement in _statements(self.SCHEMA):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={len(self.MIGRATIONS)}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


def _create_private(path: Path) -> None:
    """Create a new database file 0600 before SQLite opens it: SQLite gives the -wal and -shm
    files the database's own mode, and the folio store holds the CAFs' private keys. An
    existing file keeps its mode (`dtesync check` names a loose one)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _statements(sql: str) -> list[str]:
    """Split a schema script into statements (executescript would commit on its own)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
