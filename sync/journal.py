"""The journal: one SQLite row per input document, every stage durable before it counts.

The row's `step` is the daemon's own progress, so a restart after SIGKILL or a power cut
knows exactly what is left to do:

    claiming -> claimed -> decided -> filed        (or -> gone: the file vanished unclaimed)

- claiming: the row exists, the rename into the work folder may or may not have happened.
- claimed:  the input is in `work/<id><ext>`, its sha256 is known and its name resolved
            (new document, duplicate of an existing one, or NAME_IN_PROGRESS conflict).
- decided:  the outcome (signed with its folio, or rejected with its errors) and the input's
            final place (archive/ or rejected/) are recorded; outbox writes are idempotent.
- filed:    status written and input moved. Later stages (print, uplink) only change `state`.

`state` is the public state the ERP sees in NAME.status.json (sync.states.DocState), plus
the internal `duplicate` for an input answered with an earlier document's result.

Name rules (docs/daemon.md, "Name reuse"): the outbox is keyed on (folder, NAME). The same bytes
under the same NAME while a document holds that NAME are a duplicate, never a second folio;
different bytes while it is unfinished are rejected (NAME_IN_PROGRESS); once it is final,
the new input is a new document and supersedes it (its outbox files move to archive/).

WAL with synchronous=FULL, on a local disk only (WAL needs shared memory that network
file systems do not provide). Only sync.filing writes it; everything else reads through a
Filing or a read-only Journal (`Journal.open_readonly`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from sync.errors import DteSyncError
from sync.states import NO_FOLIO, PUBLIC_STATES
from sync.storage import Store
from sync.watch.fs import network_fs

FILE_NAME = "journal.sqlite3"  # in the state folder
STEPS = ("claiming", "claimed", "decided", "filed", "gone")
UNFINISHED_STEPS = ("claiming", "claimed", "decided")

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id          INTEGER PRIMARY KEY,
    folder      TEXT NOT NULL,            -- inbox-relative folder, '' for the root
    name        TEXT NOT NULL,            -- input file name as dropped
    out_stem    TEXT NOT NULL,            -- outbox key NAME (the full name for a conflict)
    ext         TEXT NOT NULL,
    station     TEXT,
    step        TEXT NOT NULL,
    state       TEXT NOT NULL,
    sha256      TEXT,
    size        INTEGER,
    mode        INTEGER,
    tipo_dte    INTEGER,
    folio       INTEGER,
    rut_emisor  TEXT,
    monto_total INTEGER,
    track_id    TEXT,
    rut_receptor TEXT,
    fch_emis    TEXT,                     -- YYYY-MM-DD
    mnt_neto    INTEGER,
    mnt_exe     INTEGER,
    iva         INTEGER,
    rzn_soc_recep TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    errors      TEXT,                     -- JSON list of structured errors (rendered at write time)
    dup_of      INTEGER,
    superseded  INTEGER NOT NULL DEFAULT 0, -- 0 current, 1 outbox files moving, 2 moved
    final_path  TEXT,                     -- where the input was filed (archive/ or rejected/)
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    retained    INTEGER NOT NULL DEFAULT 0 -- retention: 0 results in the outbox, 1 moving, 2 beside the input
);
CREATE INDEX IF NOT EXISTS documents_name ON documents(folder, out_stem);
CREATE INDEX IF NOT EXISTS documents_step ON documents(step);
CREATE INDEX IF NOT EXISTS documents_folio ON documents(tipo_dte, folio);
CREATE INDEX IF NOT EXISTS documents_day ON documents(fch_emis);
CREATE INDEX IF NOT EXISTS documents_receptor ON documents(rut_receptor);
CREATE INDEX IF NOT EXISTS documents_created ON documents(created_at);
CREATE INDEX IF NOT EXISTS documents_outbox ON documents(retained, created_at) WHERE retained < 2;
CREATE INDEX IF NOT EXISTS documents_errors ON documents(updated_at) WHERE errors IS NOT NULL;
CREATE INDEX IF NOT EXISTS documents_name_nocase ON documents(name COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS history (
    doc_id INTEGER NOT NULL,
    at     REAL NOT NULL,
    state  TEXT NOT NULL,
    note   TEXT
);
CREATE INDEX IF NOT EXISTS history_doc ON history(doc_id);
-- Documents by (tipo_dte, state, step), kept by triggers: `status`, /metrics and the panel read
-- counts in O(types x states), not by scanning a year of rows. tipo_dte 0 = not known (yet).
CREATE TABLE IF NOT EXISTS doc_counts (
    tipo_dte INTEGER NOT NULL,
    state    TEXT NOT NULL,
    step     TEXT NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (tipo_dte, state, step)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS documents_count_insert AFTER INSERT ON documents BEGIN
    INSERT INTO doc_counts(tipo_dte, state, step, n) VALUES (COALESCE(NEW.tipo_dte, 0), NEW.state, NEW.step, 1)
        ON CONFLICT(tipo_dte, state, step) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS documents_count_update AFTER UPDATE OF tipo_dte, state, step ON documents
    WHEN OLD.tipo_dte IS NOT NEW.tipo_dte OR OLD.state IS NOT NEW.state OR OLD.step IS NOT NEW.step BEGIN
    UPDATE doc_counts SET n = n - 1 WHERE tipo_dte = COALESCE(OLD.tipo_dte, 0) AND state = OLD.state AND step = OLD.step;
    INSERT INTO doc_counts(tipo_dte, state, step, n) VALUES (COALESCE(NEW.tipo_dte, 0), NEW.state, NEW.step, 1)
        ON CONFLICT(tipo_dte, state, step) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS documents_count_delete AFTER DELETE ON documents BEGIN
    UPDATE doc_counts SET n = n - 1 WHERE tipo_dte = COALESCE(OLD.tipo_dte, 0) AND state = OLD.state AND step = OLD.step;
END;
"""
# Cluster mode (sync.cluster, docs/sites.md): the outbox of the shared record. A row per change
# of a document's record, written in the same transaction as the change, deleted once the
# cluster has it; `seq` never repeats (AUTOINCREMENT), `event_id` is the cluster's unique key.
OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS record_outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    doc_id   INTEGER NOT NULL,
    state    TEXT NOT NULL,
    note     TEXT,
    at       REAL NOT NULL
);
"""
# What each schema version added, for journals written by an earlier dtesync.
MIGRATIONS = (
    """
    ALTER TABLE documents ADD COLUMN rut_receptor TEXT;
    ALTER TABLE documents ADD COLUMN fch_emis TEXT;
    ALTER TABLE documents ADD COLUMN mnt_neto INTEGER;
    ALTER TABLE documents ADD COLUMN mnt_exe INTEGER;
    ALTER TABLE documents ADD COLUMN iva INTEGER;
    ALTER TABLE documents ADD COLUMN rzn_soc_recep TEXT;
    """,
    # Retention (sync.retention) and reads that stay fast with millions of rows (docs/performance.md,
    # "Operations"): counts kept by triggers (doc_counts) instead of scanning documents_state.
    """
    ALTER TABLE documents ADD COLUMN retained INTEGER NOT NULL DEFAULT 0;
    DROP INDEX IF EXISTS documents_state;
    CREATE TABLE doc_counts (tipo_dte INTEGER NOT NULL, state TEXT NOT NULL, step TEXT NOT NULL, n INTEGER NOT NULL,
                             PRIMARY KEY (tipo_dte, state, step)) WITHOUT ROWID;
    INSERT INTO doc_counts SELECT COALESCE(tipo_dte, 0), state, step, COUNT(*) FROM documents GROUP BY 1, 2, 3;
    """,
)


@dataclass(frozen=True)
class Doc:
    """One journal row: a read-only snapshot of a document's record."""

    id: int
    folder: str
    name: str
    out_stem: str
    ext: str
    station: str | None
    step: str
    state: str
    sha256: str | None
    size: int | None
    mode: int | None
    tipo_dte: int | None
    folio: int | None
    rut_emisor: str | None
    monto_total: int | None
    track_id: str | None
    rut_receptor: str | None
    fch_emis: str | None
    mnt_neto: int | None
    mnt_exe: int | None
    iva: int | None
    rzn_soc_recep: str | None
    attempts: int
    errors: str | None
    dup_of: int | None
    superseded: int
    final_path: str | None
    created_at: float
    updated_at: float
    retained: int = 0

    @property
    def rel(self) -> str:
        """The inbox-relative source name, as the ERP wrote it."""
        return f"{self.folder}/{self.name}" if self.folder else self.name

    @property
    def work_name(self) -> str:
        return f"{self.id}{self.ext.lower()}"

    @property
    def error_list(self) -> list[dict[str, Any]]:
        return json.loads(self.errors) if self.errors else []

    @property
    def unfinished(self) -> bool:
        return self.step in UNFINISHED_STEPS

    @property
    def stem(self) -> str:
        """The results' NAME: outbox/<folder>/<NAME>.status.json, .xml, .pdf."""
        return self.out_stem


_COLUMNS = [f.name for f in fields(Doc)]
_SELECT_DOCS = f"SELECT {', '.join(_COLUMNS)} FROM documents"  # in Doc's order: a row is Doc(*row)


@dataclass(frozen=True)
class ClaimIntent:
    folder: str
    name: str
    out_stem: str
    ext: str
    station: str | None
    size: int
    mode: int


class JournalError(RuntimeError):
    """The journal cannot be opened or used (not a database, closed, read-only)."""


def error_to_json(err: DteSyncError) -> dict[str, Any]:
    """The structured (language-free) form stored in the journal; rendered at write time."""

    def plain(v: Any) -> Any:
        return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)

    return {
        "code": err.code,
        "field": err.field,
        "expected": plain(err.expected),
        "found": plain(err.found),
        "line": err.line,
        "path": err.path,
        "source": err.source,
        "params": {k: plain(v) for k, v in (err.params or {}).items()},
    }


def error_from_json(d: dict[str, Any]) -> DteSyncError:
    return DteSyncError(
        d["code"],
        field=d.get("field"),
        expected=d.get("expected"),
        found=d.get("found"),
        line=d.get("line"),
        path=d.get("path"),
        source=d.get("source"),
        params=d.get("params") or {},
    )


@dataclass(frozen=True)
class Decision:
    """A document's outcome as the journal records it (Journal.decide / decide_many)."""

    doc_id: int
    state: str
    final_path: str
    errors: list[DteSyncError] | None = None
    tipo_dte: int | None = None
    folio: int | None = None
    rut_emisor: str | None = None
    monto_total: int | None = None
    rut_receptor: str | None = None
    fch_emis: str | None = None
    mnt_neto: int | None = None
    mnt_exe: int | None = None
    iva: int | None = None
    rzn_soc_recep: str | None = None


class Journal(Store):
    """The document journal. Writes are transactions on the Store's discipline (one process-wide
    write lock, a connection per thread); reads never wait behind a commit's fsync."""

    SCHEMA = SCHEMA + OUTBOX_SCHEMA
    MIGRATIONS = MIGRATIONS
    TABLE = "documents"

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time, allow_network: bool = False,
                 readonly: bool = False, events: bool = False) -> None:
        path = Path(path)
        if not allow_network and not readonly:
            share = network_fs(path.parent)
            if share:
                raise DteSyncError("STATE_DIR_NETWORK", found=str(path.parent), params={"detail": share})
        self._clock = clock
        self.events = events  # cluster mode: every change also goes to record_outbox
        self._filed_pending: list[tuple[float, int]] = []
        self._pending_lock = threading.Lock()
        super().__init__(path, readonly=readonly)

    def close(self) -> None:
        if not self.readonly:
            self.flush()
        super().close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that also carries the deferred 'filed' marks (group commit)."""
        with self.tx() as db:
            self._apply_filed(db)
            yield db

    def _history(self, db: sqlite3.Connection, doc_id: int, state: str, now: float, note: str | None = None) -> None:
        db.execute("INSERT INTO history(doc_id, at, state, note) VALUES (?,?,?,?)", (doc_id, now, state, note))

    def _event(self, db: sqlite3.Connection, doc_id: int, state: str, now: float, note: str | None = None) -> None:
        """Cluster mode: the change goes to the record outbox in the same transaction."""
        if self.events:
            db.execute("INSERT INTO record_outbox(event_id, doc_id, state, note, at) VALUES (?,?,?,?,?)",
                       (uuid.uuid4().hex, doc_id, state, note, now))

    # --- claim ----------------------------------------------------------------------------------
    def begin_claims(self, intents: Iterable[ClaimIntent]) -> list[int]:
        """Record the intent to claim files (one transaction for the batch); returns ids."""
        now = self._clock()
        ids = []
        with self._tx() as db:
            for it in intents:
                cur = db.execute(
                    "INSERT INTO documents(folder, name, out_stem, ext, station, step, state, size, mode,"
                    " created_at, updated_at) VALUES (?,?,?,?,?,'claiming','received',?,?,?,?)",
                    (it.folder, it.name, it.out_stem, it.ext, it.station, it.size, it.mode, now, now),
                )
                assert cur.lastrowid is not None
                ids.append(cur.lastrowid)
        return ids

    def drop_claims(self, doc_ids: Iterable[int]) -> None:
        """The rename did not happen (file vanished or is locked): forget the intent."""
        with self._tx() as db:
            db.executemany("DELETE FROM documents WHERE id=? AND step='claiming'", [(i,) for i in doc_ids])

    def mark_claimed(self, claims: Iterable[tuple[int, str | None]]) -> list[Doc]:
        """Record sha256 of claimed inputs and resolve their names, in claim order."""
        now = self._clock()
        out = []
        with self._tx() as db:
            for doc_id, sha in claims:
                doc = self._get(db, doc_id)
                if doc is None or doc.step != "claiming":
                    continue
                out.append(self._resolve(db, doc, sha, now))
        return out

    def _resolve(self, db: sqlite3.Connection, doc: Doc, sha: str | None, now: float) -> Doc:
        """The claimed document's name resolved (new, duplicate, superseding, or refused while
        its name is in progress); returns its row as written."""
        cur = self._current(db, doc.folder, doc.out_stem, before=doc.id)
        sets: dict[str, Any] = {"sha256": sha, "step": "claimed", "updated_at": now}
        note = None
        if cur is not None and sha is not None and cur.sha256 == sha and cur.state not in NO_FOLIO:
            sets.update(dup_of=cur.id, state="duplicate")
            note = f"duplicate of #{cur.id}"
        elif cur is not None and cur.unfinished:
            err = DteSyncError("NAME_IN_PROGRESS", field=doc.out_stem, found=cur.name, source=doc.rel)
            sets.update(out_stem=doc.name, state="rejected_input", errors=json.dumps([error_to_json(err)]))
        elif cur is not None:
            db.execute("UPDATE documents SET superseded=1, updated_at=? WHERE id=?", (now, cur.id))
            note = f"supersedes #{cur.id}"
        cols = ", ".join(f"{k}=?" for k in sets)
        db.execute(f"UPDATE documents SET {cols} WHERE id=?", (*sets.values(), doc.id))
        self._history(db, doc.id, "received", now, note)
        return replace(doc, **sets)

    def _current(self, db: sqlite3.Connection, folder: str, out_stem: str, before: int) -> Doc | None:
        """The document that holds (folder, NAME) now: not superseded, not a duplicate."""
        row = db.execute(
            f"{_SELECT_DOCS} WHERE folder=? AND out_stem=? AND id<? AND superseded=0"
            " AND dup_of IS NULL AND step!='gone'"
            " ORDER BY id DESC LIMIT 1",
            (folder, out_stem, before),
        ).fetchone()
        return self._doc(row)

    # --- outcome --------------------------------------------------------------------------------
    def decide(self, doc_id: int, state: str, *, final_path: str, **outcome: Any) -> Doc:
        """Record the outcome and the input's destination (before anything is moved).
        `outcome`: errors, tipo_dte, folio, rut_emisor, monto_total."""
        (doc,) = self.decide_many([Decision(doc_id, state, final_path, **outcome)])
        return doc

    def decide_many(self, decisions: Iterable["Decision"]) -> list[Doc]:
        """`decide` for several documents in one transaction (one fsync for a batch)."""
        now = self._clock()
        docs = []
        with self._tx() as db:
            for d in decisions:
                errs = json.dumps([error_to_json(e) for e in d.errors]) if d.errors else None
                db.execute(
                    "UPDATE documents SET step='decided', state=?, final_path=?, errors=COALESCE(?, errors),"
                    " tipo_dte=?, folio=?, rut_emisor=?, monto_total=?, rut_receptor=?, fch_emis=?, mnt_neto=?,"
                    " mnt_exe=?, iva=?, rzn_soc_recep=?, updated_at=? WHERE id=?",
                    (d.state, d.final_path, errs, d.tipo_dte, d.folio, d.rut_emisor, d.monto_total, d.rut_receptor,
                     d.fch_emis, d.mnt_neto, d.mnt_exe, d.iva, d.rzn_soc_recep, now, d.doc_id),
                )
                if d.state != "duplicate":
                    self._history(db, d.doc_id, d.state, now)
                self._event(db, d.doc_id, d.state, now)
                docs.append(self._get(db, d.doc_id))
        assert all(doc is not None for doc in docs)
        return docs  # type: ignore[return-value]

    def filed(self, doc_id: int, *, defer: bool = False) -> None:
        """Mark a document filed. `defer=True` rides on the next transaction (group commit):
        losing it in a crash only means redoing idempotent outbox work for that document."""
        self.filed_many([doc_id], defer=defer)

    def filed_many(self, doc_ids: Iterable[int], *, defer: bool = False) -> None:
        now = self._clock()
        with self._pending_lock:
            self._filed_pending.extend((now, i) for i in doc_ids)
        if not defer:
            self.flush()

    def flush(self) -> None:
        if self._filed_pending:
            with self._tx():
                pass

    def _apply_filed(self, db: sqlite3.Connection) -> None:
        with self._pending_lock:
            pending, self._filed_pending = self._filed_pending, []
        if pending:
            db.executemany("UPDATE documents SET step='filed', updated_at=? WHERE id=? AND step='decided'", pending)

    def gone(self, doc_id: int, note: str) -> None:
        """The claimed file disappeared before we could read it (someone deleted it)."""
        now = self._clock()
        with self._tx() as db:
            db.execute("UPDATE documents SET step='gone', updated_at=? WHERE id=?", (now, doc_id))
            self._history(db, doc_id, "gone", now, note)

    def bump_attempts(self, doc_id: int) -> int:
        with self._tx() as db:
            db.execute("UPDATE documents SET attempts=attempts+1, updated_at=? WHERE id=?", (self._clock(), doc_id))
            return int(db.execute("SELECT attempts FROM documents WHERE id=?", (doc_id,)).fetchone()[0])

    def set_state(self, doc_id: int, state: str, note: str | None = None, **values: Any) -> Doc:
        """Later stages (queued, sent, accepted, ...): change the public state, keep history."""
        allowed = {"track_id", "tipo_dte", "folio", "rut_emisor", "monto_total", "errors"}
        bad = set(values) - allowed
        if bad or state not in PUBLIC_STATES:
            raise ValueError(f"set_state: bad state {state!r} or fields {bad}")
        if "errors" in values:  # DteSyncErrors (e.g. the SII's rejection), stored structured
            values["errors"] = json.dumps([error_to_json(e) for e in values["errors"]]) if values["errors"] else None
        now = self._clock()
        with self._tx() as db:
            cols = "".join(f", {k}=?" for k in values)
            db.execute(f"UPDATE documents SET state=?, updated_at=?{cols} WHERE id=?", (state, now, *values.values(), doc_id))
            self._history(db, doc_id, state, now, note)
            self._event(db, doc_id, state, now, note)
            doc = self._get(db, doc_id)
        assert doc is not None
        return doc

    def record_changed(self, doc_id: int, note: str) -> None:
        """Cluster mode: a stage's own entry of the record changed (delivery, printing)."""
        if self.events:
            with self._tx() as db:
                row = db.execute("SELECT state FROM documents WHERE id=?", (doc_id,)).fetchone()
                if row is not None:
                    self._event(db, doc_id, row[0], self._clock(), note)

    # --- the record outbox (cluster mode) ---------------------------------------------------------
    def pending_events(self, limit: int) -> list[tuple[int, str, int, str, str | None, float, Doc | None]]:
        """The oldest unshipped changes as (seq, event_id, doc_id, state, note, at, the document's
        record as it stands now)."""
        db = self.conn()
        rows = db.execute("SELECT seq, event_id, doc_id, state, note, at FROM record_outbox ORDER BY seq LIMIT ?",
                          (limit,)).fetchall()
        ids = sorted({r[2] for r in rows})
        docs: dict[int, Doc] = {}
        for k in range(0, len(ids), 500):
            chunk = ids[k:k + 500]
            found = db.execute(f"{_SELECT_DOCS} WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            docs.update((d.id, d) for d in map(self._doc, found) if d is not None)
        return [(r[0], r[1], r[2], r[3], r[4], r[5], docs.get(r[2])) for r in rows]

    def events_shipped(self, up_to_seq: int) -> None:
        """The cluster has every change up to this one: drop them from the outbox."""
        with self._tx() as db:
            db.execute("DELETE FROM record_outbox WHERE seq <= ?", (up_to_seq,))

    def outbox_stats(self) -> tuple[int, float | None]:
        """(changes waiting to ship, time of the oldest)."""
        n, oldest = self.conn().execute("SELECT COUNT(*), MIN(at) FROM record_outbox").fetchone()
        return int(n), oldest

    def supersede_done(self, doc_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE documents SET superseded=2 WHERE id=?", (doc_id,))

    # --- reads ----------------------------------------------------------------------------------
    def _doc(self, row: sqlite3.Row | None) -> Doc | None:
        return Doc(*row) if row is not None else None

    def _get(self, db: sqlite3.Connection, doc_id: int) -> Doc | None:
        return self._doc(db.execute(f"{_SELECT_DOCS} WHERE id=?", (doc_id,)).fetchone())

    def get(self, doc_id: int) -> Doc | None:
        return self._get(self.conn(), doc_id)

    def history(self, doc_id: int) -> list[dict[str, Any]]:
        rows = self.conn().execute(
            "SELECT at, state, note FROM history WHERE doc_id=? ORDER BY rowid", (doc_id,)
        ).fetchall()
        return [dict(r) for r in rows]

    def histories(self, doc_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """`history` of a batch in one query per 500 ids (a filed batch's status files)."""
        out: dict[int, list[dict[str, Any]]] = {doc_id: [] for doc_id in doc_ids}
        ids = list(out)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self.conn().execute(
                f"SELECT doc_id, at, state, note FROM history WHERE doc_id IN ({','.join('?' * len(chunk))})"
                " ORDER BY rowid", chunk).fetchall()
            for doc_id, at, state, note in rows:
                out[doc_id].append({"at": at, "state": state, "note": note})
        return out

    def unfinished(self) -> list[Doc]:
        self.flush()
        rows = self.conn().execute(
            f"{_SELECT_DOCS} WHERE step IN ('claiming','claimed','decided') ORDER BY id"
        ).fetchall()
        return [d for d in map(self._doc, rows) if d is not None]

    def superseding(self, folder: str, out_stem: str) -> list[Doc]:
        """Documents of this NAME whose outbox files still have to move to the archive."""
        rows = self.conn().execute(
            f"{_SELECT_DOCS} WHERE folder=? AND out_stem=? AND superseded=1 ORDER BY id",
            (folder, out_stem),
        ).fetchall()
        return [d for d in map(self._doc, rows) if d is not None]

    def reserved_paths(self) -> set[str]:
        """Final paths chosen but not yet filled (for collision-free names after a restart)."""
        rows = self.conn().execute("SELECT final_path FROM documents WHERE step='decided'").fetchall()
        return {r[0] for r in rows if r[0]}

    def counts(self) -> dict[str, int]:
        rows = self.conn().execute(
            "SELECT state, SUM(n) FROM doc_counts WHERE step!='gone' GROUP BY state HAVING SUM(n) > 0").fetchall()
        return {r[0]: r[1] for r in rows}

    def step_counts(self) -> dict[str, int]:
        rows = self.conn().execute("SELECT step, SUM(n) FROM doc_counts GROUP BY step HAVING SUM(n) > 0").fetchall()
        return {r[0]: r[1] for r in rows}

    def last_errors(self, limit: int = 10) -> list[Doc]:
        rows = self.conn().execute(
            f"{_SELECT_DOCS} WHERE errors IS NOT NULL ORDER BY updated_at DESC, id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [d for d in map(self._doc, rows) if d is not None]

    def all_docs(self) -> list[Doc]:
        rows = self.conn().execute(f"{_SELECT_DOCS} ORDER BY id").fetchall()
        return [d for d in map(self._doc, rows) if d is not None]

    def issued_on(self, day: str) -> list[Doc]:
        """Documents with a folio whose FchEmis is `day` (YYYY-MM-DD): the day's informe de ventas
        reads these rows, never the XML files."""
        rows = self.conn().execute(
            f"{_SELECT_DOCS} WHERE fch_emis=? AND folio IS NOT NULL AND step!='gone' ORDER BY tipo_dte, folio",
            (day,),
        ).fetchall()
        return [d for d in map(self._doc, rows) if d is not None]

    # --- operations: the panel, /metrics and retention (each read uses an index; a year of rows
    # must not slow them down: bench/ops.py) ----------------------------------------------------------
    def counts_by_type(self) -> dict[tuple[int | None, str], int]:
        """Documents by (tipo_dte, state) (None: no type known, e.g. a rejected input)."""
        rows = self.conn().execute(
            "SELECT tipo_dte, state, SUM(n) FROM doc_counts WHERE step!='gone' GROUP BY tipo_dte, state"
            " HAVING SUM(n) > 0").fetchall()
        return {(r[0] or None, r[1]): r[2] for r in rows}

    def counts_between(self, start: float, end: float) -> dict[str, int]:
        """Documents claimed in [start, end) by state (today's line in the panel)."""
        rows = self.conn().execute(
            "SELECT state, COUNT(*) FROM documents WHERE created_at>=? AND created_at<? AND step!='gone'"
            " GROUP BY state", (start, end)).fetchall()
        return {r[0]: r[1] for r in rows}

    def recent(self, limit: int = 50, before_id: int | None = None) -> list[Doc]:
        """The newest documents (by id), `limit` of them, older than `before_id` when given."""
        sql = f"{_SELECT_DOCS} WHERE step!='gone'" + (" AND id<?" if before_id else "")
        args: tuple[Any, ...] = (before_id,) if before_id else ()
        rows = self.conn().execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [d for d in map(self._doc, rows) if d is not None]

    def created_between(self, start: float, end: float, limit: int = 200) -> list[Doc]:
        """Documents claimed in [start, end) (a day in the panel), newest first."""
        rows = self.conn().execute(
            f"{_SELECT_DOCS} WHERE created_at>=? AND created_at<? AND step!='gone' ORDER BY created_at DESC,"
            " id DESC LIMIT ?", (start, end, limit)).fetchall()
        return [d for d in map(self._doc, rows) if d is not None]

    def find(self, *, name: str | None = None, folio: int | None = None, tipos: Iterable[int] = (),
             rut_receptor: str | None = None, limit: int = 200) -> list[Doc]:
        """The panel's search: a name prefix (any case), a folio (of any of `tipos`), or a
        receptor's RUT; newest first."""
        args: tuple[Any, ...]
        if name is not None:
            pattern = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where, args = "name LIKE ? ESCAPE '\\'", (pattern,)
        elif folio is not None:
            tipos = tuple(tipos)
            where, args = f"folio=? AND tipo_dte IN ({','.join('?' * len(tipos))})", (folio, *tipos)
        elif rut_receptor is not None:
            where, args = "rut_receptor=?", (rut_receptor,)
        else:
            return []
        rows = self.conn().execute(f"{_SELECT_DOCS} WHERE {where} AND step!='gone' ORDER BY id DESC LIMIT ?",
                                   (*args, limit)).fetchall()
        return [d for d in map(self._doc, rows) if d is not None]

    def retention_due(self, cutoff: float, keep_states: Iterable[str], limit: int = 200) -> list[Doc]:
        """Filed documents claimed before `cutoff` whose results are still in the outbox and whose
        state is not in `keep_states` (still waiting on something: the ERP needs them), oldest first.
        Rows that need no move (gone, duplicates, superseded) come too: retention just marks them."""
        keep = tuple(keep_states)
        rows = self.conn().execute(
            # `+step`, `+state`: walk the small partial index documents_outbox, never documents_step
            f"{_SELECT_DOCS} WHERE retained<2 AND retained=0 AND created_at<? AND +step IN ('filed','gone')"
            f" AND +state NOT IN ({','.join('?' * len(keep))}) ORDER BY created_at LIMIT ?",
            (cutoff, *keep, limit)).fetchall()
        return [d for d in map(self._doc, rows) if d is not None]

    def retaining(self) -> list[Doc]:
        """Documents whose results were moving when the process stopped (retention resumes them)."""
        rows = self.conn().execute(
            f"{_SELECT_DOCS} WHERE retained<2 AND retained=1 ORDER BY created_at").fetchall()
        return [d for d in map(self._doc, rows) if d is not None]

    def mark_retention(self, doc_ids: Iterable[int], value: int) -> None:
        """Retention's durable steps: 1 = the move is under way (results_base already points at
        the archive), 2 = done."""
        with self._tx() as db:
            db.executemany("UPDATE documents SET retained=? WHERE id=?", [(value, i) for i in doc_ids])
