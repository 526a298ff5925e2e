"""FolioStore: the imported CAFs and every folio ever handed out, in one SQLite file.

A folio is a legal number: once allocated it is either used by a signed DTE or reported for
annulment, never reused. So each allocation is its own `BEGIN IMMEDIATE` transaction
committed with WAL + synchronous=FULL before the folio is returned; the (tipo_dte, folio)
primary key makes a duplicate impossible across threads and processes, and `doc_key` makes
a crashed-and-restarted document get its own folio back instead of burning another.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import date
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

from cryptography.hazmat.primitives.asymmetric import rsa

from sync.errors import DteSyncError
from sync.folios.caf import Caf, load_caf, verify_frma
from sync.rut import Rut
from sync.storage import Store

FILE_NAME = "folios.sqlite"  # in the state folder

# Folio states. `pending_annulment` folios were taken by a document that failed afterwards.
ALLOCATED, USED, PENDING_ANNULMENT, ANNULLED = "allocated", "used", "pending_annulment", "annulled"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS caf (
    id                 INTEGER PRIMARY KEY,
    tipo_dte           INTEGER NOT NULL,
    desde              INTEGER NOT NULL,
    hasta              INTEGER NOT NULL,
    fecha_autorizacion TEXT NOT NULL,
    expires_on         TEXT,
    idk                INTEGER NOT NULL,
    rut_emisor         TEXT NOT NULL,
    fingerprint        TEXT NOT NULL UNIQUE,
    next_folio         INTEGER NOT NULL,   -- every folio below it in this CAF is taken
    data               BLOB NOT NULL,      -- the CAF file as imported
    imported_on        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS folio (
    tipo_dte    INTEGER NOT NULL,
    folio       INTEGER NOT NULL,
    caf_id      INTEGER NOT NULL REFERENCES caf(id),
    state       TEXT NOT NULL CHECK (state IN ('allocated', 'used', 'pending_annulment', 'annulled')),
    doc_key     TEXT,
    taken_on    TEXT,
    reason      TEXT,
    released_doc_key TEXT,
    released_on TEXT,
    PRIMARY KEY (tipo_dte, folio)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS folio_doc_key ON folio (tipo_dte, doc_key) WHERE doc_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS folio_pending ON folio (tipo_dte, folio) WHERE state = 'pending_annulment';
"""


class StockRow(NamedTuple):
    tipo_dte: int
    available: int  # free folios in non-expired CAFs
    next_folio: int | None  # what `allocate` would return now
    expires_on: date | None  # expiry of the CAF `next_folio` comes from


class PendingAnnulment(NamedTuple):
    tipo_dte: int
    folio: int
    doc_key: str | None
    reason: str | None
    released_on: date | None


class FolioStore(Store):
    """CAFs and folio allocation for one company; safe across threads and processes (every
    write a BEGIN IMMEDIATE transaction on the Store discipline; other processes wait in
    SQLite's busy handler)."""

    SCHEMA = _SCHEMA
    TABLE = "caf"

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 60.0, readonly: bool = False):
        self._cafs: dict[int, Caf] = {}
        self._lock = threading.Lock()
        super().__init__(path, readonly=readonly, timeout=busy_timeout_s)

    def configure(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA foreign_keys=ON")

    # --- CAFs ----------------------------------------------------------------------------------

    def import_caf(
        self,
        data: bytes,
        company_rut: Rut,
        now: date,
        trusted_keys: Mapping[int, rsa.RSAPublicKey] | None = None,
    ) -> Caf:
        """Check and store a CAF file; importing the same CAF again is a no-op.

        `trusted_keys` adds CAF signers beyond the SII's (the sandbox FakeSii). A CAF whose
        IDK is unknown cannot be checked and is accepted: the SII will judge it.
        """
        caf = load_caf(data)
        if verify_frma(caf, trusted_keys) is False:
            raise DteSyncError("CAF_SIGNATURE_INVALID", params={"idk": caf.idk})
        if caf.rut_emisor != company_rut:
            raise DteSyncError("CAF_OTHER_COMPANY", found=str(caf.rut_emisor), expected=str(company_rut))
        with self.tx() as db:
            row = db.execute("SELECT id FROM caf WHERE fingerprint = ?", (caf.fingerprint,)).fetchone()
            if row:
                return self._caf(row[0])
            if caf.is_expired(now):
                raise _caf_error("CAF_EXPIRED", caf.tipo_dte, caf.desde, caf.hasta, caf.expires_on)
            overlap = db.execute(
                "SELECT 1 FROM caf WHERE tipo_dte = ? AND desde <= ? AND hasta >= ?",
                (caf.tipo_dte, caf.hasta, caf.desde),
            ).fetchone()
            if overlap:
                raise _caf_error("CAF_OVERLAP", caf.tipo_dte, caf.desde, caf.hasta)
            db.execute(
                "INSERT INTO caf (tipo_dte, desde, hasta, fecha_autorizacion, expires_on, idk, rut_emisor,"
                " fingerprint, next_folio, data, imported_on) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    caf.tipo_dte, caf.desde, caf.hasta, caf.fecha_autorizacion.isoformat(),
                    _iso(caf.expires_on), caf.idk, str(caf.rut_emisor), caf.fingerprint,
                    caf.desde, data, now.isoformat(),
                ),
            )
        return caf

    def list_cafs(self) -> list[Caf]:
        rows = self.conn().execute("SELECT id FROM caf ORDER BY tipo_dte, fecha_autorizacion, desde").fetchall()
        return [self._caf(r[0]) for r in rows]

    def caf_for(self, tipo_dte: int, folio: int) -> Caf:
        """The CAF that authorizes this folio (to stamp it); FOLIO_NOT_IN_CAF otherwise."""
        return self._caf(self._caf_id_for(self.conn(), tipo_dte, folio))

    def _caf_id_for(self, db: sqlite3.Connection, tipo_dte: int, folio: int) -> int:
        row = db.execute(
            "SELECT id FROM caf WHERE tipo_dte = ? AND desde <= ? AND hasta >= ?", (tipo_dte, folio, folio)
        ).fetchone()
        if row is None:
            raise DteSyncError("FOLIO_NOT_IN_CAF", field="Folio", params={"folio": folio, "tipo_dte": tipo_dte})
        return int(row[0])

    def _caf(self, caf_id: int) -> Caf:
        """Parsed once per store (the keys inside are what the hot path reuses)."""
        caf = self._cafs.get(caf_id)
        if caf is None:
            (data,) = self.conn().execute("SELECT data FROM caf WHERE id = ?", (caf_id,)).fetchone()
            caf = load_caf(data)
            with self._lock:
                caf = self._cafs.setdefault(caf_id, caf)
        return caf

    # --- folios ----------------------------------------------------------------------------------

    def allocate(self, tipo_dte: int, now: date, doc_key: str) -> tuple[int, Caf]:
        """The lowest free folio of the oldest non-expired CAF, committed before returning.

        Same `doc_key` (per tipo_dte) -> same folio, whatever happened in between.
        """
        (taken,) = self.allocate_many([(tipo_dte, doc_key)], now)
        if isinstance(taken, DteSyncError):
            raise taken
        return taken

    def allocate_many(
        self, wanted: Sequence[tuple[int, str]], now: date
    ) -> list[tuple[int, Caf] | DteSyncError]:
        """`allocate` for several documents in ONE durable transaction (one fsync for a batch).

        Each (tipo_dte, doc_key) gets its folio or its own error (CAF_MISSING, CAF_EXPIRED,
        FOLIOS_EXHAUSTED) without failing the others; all folios are committed before return.
        """
        out: list[tuple[int, Caf] | DteSyncError] = []
        with self.tx() as db:
            cursors: dict[int, list[list[int]]] = {}  # tipo -> live CAFs as [id, hasta, next_folio]
            moved: dict[int, int] = {}  # caf id -> its new next_folio, written once at the end
            for tipo_dte, doc_key in wanted:
                held = self._held(db, tipo_dte, doc_key)
                if held:
                    out.append((held[0], self._caf(held[1])))
                    continue
                try:
                    live = cursors.get(tipo_dte)
                    if live is None:
                        live = cursors[tipo_dte] = self._live_cafs(db, tipo_dte, now)
                    out.append(self._take_next(db, tipo_dte, doc_key, live, moved, now))
                except DteSyncError as exc:
                    out.append(exc)
            db.executemany("UPDATE caf SET next_folio = ? WHERE id = ?", [(n, i) for i, n in moved.items()])
        return out

    @staticmethod
    def _live_cafs(db: sqlite3.Connection, tipo_dte: int, now: date) -> list[list[int]]:
        """Non-expired CAFs of this type, oldest first; CAF_MISSING / CAF_EXPIRED if none."""
        cafs = db.execute(
            "SELECT id, desde, hasta, next_folio, expires_on FROM caf WHERE tipo_dte = ?"
            " ORDER BY fecha_autorizacion, desde",
            (tipo_dte,),
        ).fetchall()
        if not cafs:
            raise DteSyncError("CAF_MISSING", params={"tipo_dte": tipo_dte})
        live = [[c[0], c[2], c[3]] for c in cafs if not _expired(c[4], now)]
        if not live:
            last = max(cafs, key=lambda c: c[4])
            raise _caf_error("CAF_EXPIRED", tipo_dte, last[1], last[2], date.fromisoformat(last[4]))
        return live

    def _take_next(
        self, db: sqlite3.Connection, tipo_dte: int, doc_key: str, live: list[list[int]], moved: dict[int, int], now: date
    ) -> tuple[int, Caf]:
        """Insert the next free folio of the first CAF that has one; advances `live` and `moved`."""
        for cursor in live:
            caf_id, hasta, next_folio = cursor
            folio = _first_free(db, tipo_dte, next_folio, hasta) if next_folio <= hasta else None
            if folio is None:
                cursor[2] = moved[caf_id] = hasta + 1
                continue
            caf = self._caf(caf_id)  # before the INSERT: an error here must not leave the folio taken
            db.execute(
                "INSERT INTO folio (tipo_dte, folio, caf_id, state, doc_key, taken_on) VALUES (?,?,?,?,?,?)",
                (tipo_dte, folio, caf_id, ALLOCATED, doc_key, now.isoformat()),
            )
            cursor[2] = moved[caf_id] = folio + 1
            return folio, caf
        raise DteSyncError("FOLIOS_EXHAUSTED", params={"tipo_dte": tipo_dte})

    def claim(self, tipo_dte: int, folio: int, doc_key: str, *, now: date | None = None) -> Caf:
        """Take a folio the input names. FOLIO_NOT_IN_CAF / FOLIO_USED / CAF_EXPIRED (with `now`).

        Claiming again with the same doc_key returns the same CAF (restart after a crash).
        """
        with self.tx() as db:
            caf_id = self._caf_id_for(db, tipo_dte, folio)
            row = db.execute(
                "SELECT doc_key FROM folio WHERE tipo_dte = ? AND folio = ?", (tipo_dte, folio)
            ).fetchone()
            if row is not None:
                if row[0] == doc_key:
                    return self._caf(caf_id)
                raise DteSyncError("FOLIO_USED", field="Folio", params={"folio": folio, "tipo_dte": tipo_dte})
            held = self._held(db, tipo_dte, doc_key)
            if held:
                raise DteSyncError(
                    "INTERNAL",
                    params={"detail": f"doc_key {doc_key!r} ya tiene el folio {held[0]} de TipoDTE {tipo_dte}"},
                )
            caf = self._caf(caf_id)
            if now is not None and caf.is_expired(now):
                raise _caf_error("CAF_EXPIRED", tipo_dte, caf.desde, caf.hasta, caf.expires_on)
            db.execute(
                "INSERT INTO folio (tipo_dte, folio, caf_id, state, doc_key, taken_on) VALUES (?,?,?,?,?,?)",
                (tipo_dte, folio, caf_id, ALLOCATED, doc_key, _iso(now)),
            )
            return caf

    def folio_of(self, tipo_dte: int, doc_key: str) -> int | None:
        """The folio this document holds, if any (read-only)."""
        held = self._held(self.conn(), tipo_dte, doc_key)
        return held[0] if held else None

    @staticmethod
    def _held(db: sqlite3.Connection, tipo_dte: int, doc_key: str) -> tuple[int, int] | None:
        row = db.execute(
            "SELECT folio, caf_id FROM folio WHERE tipo_dte = ? AND doc_key = ?", (tipo_dte, doc_key)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row is not None else None

    def mark_used(self, tipo_dte: int, folio: int) -> None:
        """The signed DTE carrying this folio has been written (idempotent)."""
        (problem,) = self.mark_used_many([(tipo_dte, folio)])
        if problem is not None:
            raise problem

    def mark_used_many(self, folios: Sequence[tuple[int, int]]) -> list[DteSyncError | None]:
        """Mark these (tipo_dte, folio) used in one transaction; per folio None or the error.

        Not fsynced: if a power cut loses it, the folio stays allocated to the same doc_key and
        the document gets that same folio back when it resumes, so nothing is reused or lost.
        One conditional UPDATE per folio instead of a checked read-then-write: the state is only
        read again to report a folio that was not allocated/used.
        """
        with self.tx(durable=False) as db:
            changed = [
                db.execute(
                    "UPDATE folio SET state = ? WHERE tipo_dte = ? AND folio = ? AND state IN (?, ?)",
                    (USED, tipo_dte, folio, ALLOCATED, USED),
                ).rowcount
                for tipo_dte, folio in folios
            ]
        return [
            None if n == 1 else _bad_transition(t, f, self._state(self.conn(), t, f), USED)
            for (t, f), n in zip(folios, changed)
        ]

    def release_for_annulment(self, tipo_dte: int, folio: int, reason: str, *, now: date | None = None) -> None:
        """The document holding this folio failed: never reuse it, report it for annulment.

        The doc_key lets go of the folio, so a retry of the same document gets a new one.
        """
        with self.tx() as db:
            state = self._state(db, tipo_dte, folio)
            if state == PENDING_ANNULMENT:
                return
            if state not in (ALLOCATED, USED):
                raise _bad_transition(tipo_dte, folio, state, PENDING_ANNULMENT)
            db.execute(
                "UPDATE folio SET state = ?, reason = ?, released_doc_key = doc_key, doc_key = NULL,"
                " released_on = ? WHERE tipo_dte = ? AND folio = ?",
                (PENDING_ANNULMENT, reason, _iso(now), tipo_dte, folio),
            )

    def mark_annulled(self, tipo_dte: int, folio: int) -> None:
        """The annulment was reported to the SII; the folio leaves the pending list."""
        self._transition(tipo_dte, folio, ANNULLED, from_states=(PENDING_ANNULMENT, ANNULLED))

    def _transition(
        self, tipo_dte: int, folio: int, to: str, *, from_states: tuple[str, ...]
    ) -> None:
        with self.tx() as db:
            state = self._state(db, tipo_dte, folio)
            if state not in from_states:
                raise _bad_transition(tipo_dte, folio, state, to)
            db.execute("UPDATE folio SET state = ? WHERE tipo_dte = ? AND folio = ?", (to, tipo_dte, folio))

    @staticmethod
    def _state(db: sqlite3.Connection, tipo_dte: int, folio: int) -> str | None:
        row = db.execute("SELECT state FROM folio WHERE tipo_dte = ? AND folio = ?", (tipo_dte, folio)).fetchone()
        return row[0] if row else None

    def state_of(self, tipo_dte: int, folio: int) -> str | None:
        """allocated / used / pending_annulment / annulled, or None if never taken."""
        return self._state(self.conn(), tipo_dte, folio)

    def pending_annulment(self) -> list[PendingAnnulment]:
        rows = self.conn().execute(
            "SELECT tipo_dte, folio, released_doc_key, reason, released_on FROM folio"
            " WHERE state = 'pending_annulment' ORDER BY tipo_dte, folio",  # a literal: the partial index applies
        ).fetchall()
        return [PendingAnnulment(t, f, k, r, _date(d)) for t, f, k, r, d in rows]

    def stock(self, now: date) -> list[StockRow]:
        """Per TipoDTE with a CAF: free folios in non-expired CAFs and what comes next."""
        db = self.conn()
        rows = db.execute(
            # Every folio below next_folio is taken: count only those taken at or above it, a range
            # of the primary key (a year of folios is not scanned).
            "SELECT c.tipo_dte, c.id, c.hasta, c.next_folio, c.expires_on,"
            " c.hasta - MAX(c.next_folio, c.desde) + 1 - (SELECT COUNT(*) FROM folio f WHERE f.tipo_dte = c.tipo_dte"
            " AND f.folio BETWEEN MAX(c.next_folio, c.desde) AND c.hasta)"
            " FROM caf c ORDER BY c.tipo_dte, c.fecha_autorizacion, c.desde"
        ).fetchall()
        out: dict[int, StockRow] = {}
        for tipo, _id, hasta, next_folio, expires, free in rows:
            row = out.setdefault(tipo, StockRow(tipo, 0, None, None))
            if _expired(expires, now) or free <= 0:
                continue
            if row.next_folio is None:
                row = row._replace(next_folio=_first_free(db, tipo, next_folio, hasta), expires_on=_date(expires))
            out[tipo] = row._replace(available=row.available + free)
        return list(out.values())


def _first_free(db: sqlite3.Connection, tipo_dte: int, start: int, hasta: int) -> int | None:
    """Lowest folio >= start not yet taken (claims by input may sit above next_folio)."""
    folio = start
    taken = db.execute(
        "SELECT folio FROM folio WHERE tipo_dte = ? AND folio >= ? AND folio <= ? ORDER BY folio",
        (tipo_dte, start, hasta),
    )
    for (t,) in taken:
        if t != folio:
            break
        folio += 1
    return folio if folio <= hasta else None


def _expired(expires_on: str | None, now: date) -> bool:
    return expires_on is not None and now.isoformat() >= expires_on


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _caf_error(code: str, tipo_dte: int, desde: int, hasta: int, expired_on: date | None = None) -> DteSyncError:
    params: dict[str, int | str] = {"tipo_dte": tipo_dte, "desde": desde, "hasta": hasta}
    if expired_on:
        params["expired_on"] = expired_on.isoformat()
    return DteSyncError(code, params=params)


def _bad_transition(tipo_dte: int, folio: int, state: str | None, to: str) -> DteSyncError:
    return DteSyncError(
        "INTERNAL", params={"detail": f"folio {folio} de TipoDTE {tipo_dte} está en {state or 'sin asignar'}, no puede pasar a {to}"}
    )
