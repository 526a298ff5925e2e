"""The one way dtesync opens its SQLite databases (journal, folios, print and uplink queues).

WAL so readers (`dtesync status`) never block the daemon; synchronous=FULL so a committed
transaction survives a power cut (callers that may lose one relax it per transaction);
autocommit mode (isolation_level=None) so every store states its transactions explicitly
with BEGIN IMMEDIATE; a busy timeout because several processes may share a file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


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
