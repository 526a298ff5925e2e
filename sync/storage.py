"""The one way dtesync opens its SQLite databases (journal, folios, print and uplink queues).

WAL so readers (`dtesync status`) never block the daemon; synchronous=FULL so a committed
transaction survives a power cut (callers that may lose one relax it per transaction);
autocommit mode (isolation_level=None) so every store states its transactions explicitly
with BEGIN IMMEDIATE; a busy timeout because several processes may share a file.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Iterator


class StorageError(RuntimeError):
    """The database cannot give the guarantees dtesync relies on."""


def connect_wal(path: Path | str, *, timeout: float = 30.0) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=timeout)
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        db.close()
        raise StorageError(f"SQLite refused WAL mode on {path} (got {mode})")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return db


@contextmanager
def immediate(db: sqlite3.Connection, lock: AbstractContextManager | None = None) -> Iterator[sqlite3.Connection]:
    """One write transaction: BEGIN IMMEDIATE (the write lock taken up front, so no deadlock
    upgrading a reader), COMMIT when the block ends, ROLLBACK on any exception. `lock` guards a
    connection shared between threads."""
    with lock if lock is not None else nullcontext():
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
