"""FolioStore: the imported CAFs and every folio ever handed out, in one SQLite file.

A folio is a legal number: once allocated it is either used by a signed DTE or reported for
annulment, never reused. So each allocation is its own `BEGIN IMMEDIATE` transaction
committed with WAL + synchronous=FULL before the folio is returned; the (tipo_dte, folio)
primary key makes a duplicate impossible across threads and processes, and `doc_key` makes
a crashed-and-restarted document get its own folio back instead of burning another.

In cluster mode (`leased=True`, docs/sites.md) the store is the site's half of the folio
leases: allocation only takes folios inside blocks the cluster leased to this site and that
were recorded here (table `lease`) before use; the single-PC path is unchanged.
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
-- Cluster mode: blocks of folios leased to this site (docs/sites.md). Unused in single-PC mode.
CREATE TABLE IF NOT EXISTS lease (
    id             INTEGER PRIMARY KEY,   -- the cluster's lease id
    tipo_dte       INTEGER NOT NULL,
    caf_id         INTEGER NOT NULL REFERENCES caf(id),
    desde          INTEGER NOT NULL,
    hasta          INTEGER NOT NULL,
    next_folio     INTEGER NOT NULL,      -- every folio below it in this lease is taken
    leased_on      TEXT NOT NULL,
    returned_from  INTEGER,               -- handed back from this folio on: never allocated here
    return_shipped INTEGER NOT NULL DEFAULT 0,  -- the cluster has recorded the hand-back
    revoked        INTEGER NOT NULL DEFAULT 0   -- the site was declared lost: nothing more from it
);
CREATE INDEX IF NOT EXISTS folio_pending ON folio (tipo_dte, folio) WHERE state = 'pending_annulment';
"""


class StockRow(NamedTuple):
    tipo_dte: int
    available: int  # free folios in non-expired CAFs
    next_folio: int | None  # what `allocate` would return now
    expires_on: date | None  # expiry of the CAF `next_folio` comes from


class ExpiredCaf(NamedTuple):
    """A CAF past the SII's age limit that still holds folios never taken."""

    tipo_dte: int
    desde: int
    hasta: int
    expires_on: date  # the first day it could no longer stamp
    unused: int  # folios never taken: they can no longer be issued and are to be annulled at the SII


class PendingAnnulment(NamedTuple):
    tipo_dte: int
    folio: int
    doc_key: str | None
    reason: str | None
    released_on: date | None


class LocalLease(NamedTuple):
    id: int
    tipo_dte: int
    desde: int
    hasta: int
    next_folio: int
    returned_from: int | None
    return_shipped: bool
    revoked: bool
    free: int  # folios of the lease still to allocate (0 once handed back or revoked)


class FolioStore(Store):
    """CAFs and folio allocation for one company; safe across threads and processes (every
    write a BEGIN IMMEDIATE transaction on the Store discipline; other processes wait in
    SQLite's busy handler)."""

    SCHEMA = _SCHEMA
    TABLE = "caf"

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 60.0, readonly: bool = False,
                 leased: bool = False):
        self.leased = leased  # cluster mode: allocate only inside recorded leases
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

    def warm_up(self, now: date) -> None:
        """Parse every CAF that still has folios to give today (a first allocation would; each
        CAF's key takes about 2 ms to load)."""
        rows = self.conn().execute(
            "SELECT id FROM caf WHERE next_folio <= hasta AND (expires_on IS NULL OR expires_on > ?)", (now.isoformat(),)
        ).fetchall()
        for (caf_id,) in rows:
            self._caf(int(caf_id))

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
            # tipo -> live sources as [id, last folio, next_folio, caf id]: CAFs, or leases in cluster mode
            cursors: dict[int, list[list[int]]] = {}
            moved: dict[int, int] = {}  # source id -> its new next_folio, written once at the end
            for tipo_dte, doc_key in wanted:
                held = self._held(db, tipo_dte, doc_key)
                if held:
                    out.append((held[0], self._caf(held[1])))
                    continue
                try:
                    live = cursors.get(tipo_dte)
                    if live is None:
                        live = cursors[tipo_dte] = (self._live_leases if self.leased else self._live_cafs)(
                            db, tipo_dte, now)
                    out.append(self._take_next(db, tipo_dte, doc_key, live, moved, now))
                except DteSyncError as exc:
                    out.append(exc)
            table = "lease" if self.leased else "caf"
            db.executemany(f"UPDATE {table} SET next_folio = ? WHERE id = ?", [(n, i) for i, n in moved.items()])
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
        live = [[c[0], c[2], c[3], c[0]] for c in cafs if not _expired(c[4], now)]
        if not live:
            last = max(cafs, key=lambda c: c[4])
            raise _caf_error("CAF_EXPIRED", tipo_dte, last[1], last[2], date.fromisoformat(last[4]))
        return live

    @staticmethod
    def _live_leases(db: sqlite3.Connection, tipo_dte: int, now: date) -> list[list[int]]:
        """This site's usable leases of the type, lowest folios first; FOLIOS_NOT_LEASED if none."""
        rows = db.execute(
            "SELECT l.id, COALESCE(l.returned_from - 1, l.hasta), l.next_folio, l.caf_id, c.expires_on FROM lease l"
            " JOIN caf c ON c.id = l.caf_id WHERE l.tipo_dte = ? AND l.revoked = 0"
            " AND l.next_folio <= COALESCE(l.returned_from - 1, l.hasta) ORDER BY l.desde",
            (tipo_dte,),
        ).fetchall()
        live = [[r[0], r[1], r[2], r[3]] for r in rows if not _expired(r[4], now)]
        if not live:
            raise DteSyncError("FOLIOS_NOT_LEASED", params={"tipo_dte": tipo_dte})
        return live

    def _take_next(
        self, db: sqlite3.Connection, tipo_dte: int, doc_key: str, live: list[list[int]], moved: dict[int, int], now: date
    ) -> tuple[int, Caf]:
        """Insert the next free folio of the first source (CAF or lease) that has one; advances
        `live` and `moved`."""
        for cursor in live:
            source, hasta, next_folio, caf_id = cursor
            folio = _first_free(db, tipo_dte, next_folio, hasta) if next_folio <= hasta else None
            if folio is None:
                cursor[2] = moved[source] = hasta + 1
                continue
            caf = self._caf(caf_id)  # before the INSERT: an error here must not leave the folio taken
            db.execute(
                "INSERT INTO folio (tipo_dte, folio, caf_id, state, doc_key, taken_on) VALUES (?,?,?,?,?,?)",
                (tipo_dte, folio, caf_id, ALLOCATED, doc_key, now.isoformat()),
            )
            cursor[2] = moved[source] = folio + 1
            return folio, caf
        raise DteSyncError("FOLIOS_NOT_LEASED" if self.leased else "FOLIOS_EXHAUSTED", params={"tipo_dte": tipo_dte})

    def claim(self, tipo_dte: int, folio: int, doc_key: str, *, now: date | None = None) -> Caf:
        """Take a folio the input names. FOLIO_NOT_IN_CAF / FOLIO_USED / CAF_EXPIRED (with `now`).

        Claiming again with the same doc_key returns the same CAF (restart after a crash).
        """
        with self.tx() as db:
            caf_id = self._caf_id_for(db, tipo_dte, folio)
            if self.leased and not self._in_lease(db, tipo_dte, folio):
                raise DteSyncError("FOLIO_NOT_LEASED", field="Folio", params={"folio": folio, "tipo_dte": tipo_dte})
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

    def expired_unused(self, now: date) -> list[ExpiredCaf]:
        """CAFs older than the SII's age limit (6 months, Res. Ex. SII 58/2017) with folios never
        taken: `stock` no longer counts them, and they belong in the annulment report beside the
        pending folios (the SII asks that unused folios of a lapsed CAF be annulled)."""
        rows = self.conn().execute(
            "SELECT c.tipo_dte, c.desde, c.hasta, c.expires_on,"
            " c.hasta - c.desde + 1 - (SELECT COUNT(*) FROM folio f WHERE f.caf_id = c.id)"
            " FROM caf c WHERE c.expires_on IS NOT NULL AND c.expires_on <= ? ORDER BY c.tipo_dte, c.desde",
            (now.isoformat(),),
        ).fetchall()
        return [ExpiredCaf(t, d, h, date.fromisoformat(e), n) for t, d, h, e, n in rows if n > 0]

    def stock(self, now: date) -> list[StockRow]:
        """Per TipoDTE with a CAF: free folios in non-expired CAFs (in cluster mode: in this
        site's leases) and what comes next."""
        db = self.conn()
        if self.leased:
            return self._leased_stock(db, now)
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


    # --- cluster mode: leases ------------------------------------------------------------------
    @staticmethod
    def _in_lease(db: sqlite3.Connection, tipo_dte: int, folio: int) -> bool:
        return db.execute(
            "SELECT 1 FROM lease WHERE tipo_dte = ? AND revoked = 0 AND desde <= ?"
            " AND COALESCE(returned_from - 1, hasta) >= ?", (tipo_dte, folio, folio)).fetchone() is not None

    def record_lease(self, lease_id: int, tipo_dte: int, desde: int, hasta: int, caf_data: bytes, company_rut: Rut,
                     today: date, *, returned_from: int | None = None,
                     trusted_keys: Mapping[int, rsa.RSAPublicKey] | None = None) -> bool:
        """Write down a block the cluster leased to this site (durable before any folio of it
        is used), importing its CAF if this site does not have it yet. Recording a lease again
        is a no-op; returns whether it was new."""
        caf = load_caf(caf_data)
        if not (caf.tipo_dte == tipo_dte and caf.desde <= desde <= hasta <= caf.hasta):
            raise DteSyncError("INTERNAL", params={"detail": f"arriendo {lease_id}: {desde}-{hasta} fuera del CAF"})
        if self.conn().execute("SELECT 1 FROM caf WHERE fingerprint = ?", (caf.fingerprint,)).fetchone() is None:
            self.import_caf(caf_data, company_rut, today, trusted_keys)
        with self.tx() as db:
            (caf_id,) = db.execute("SELECT id FROM caf WHERE fingerprint = ?", (caf.fingerprint,)).fetchone()
            known = db.execute("SELECT tipo_dte, desde, hasta FROM lease WHERE id = ?", (lease_id,)).fetchone()
            if known is not None:
                if tuple(known) != (tipo_dte, desde, hasta):  # the cluster's ids went back: restored from a backup?
                    raise DteSyncError("INTERNAL", params={"detail": f"el cluster entregó el arriendo {lease_id} "
                                       f"({desde}-{hasta}) pero este sitio ya tiene otro con ese número "
                                       f"({known[1]}-{known[2]}): ¿se restauró la base central desde un respaldo?"})
                return False
            db.execute(
                "INSERT INTO lease (id, tipo_dte, caf_id, desde, hasta, next_folio, leased_on, returned_from,"
                " return_shipped) VALUES (?,?,?,?,?,?,?,?,?)",
                (lease_id, tipo_dte, caf_id, desde, hasta, desde, today.isoformat(), returned_from,
                 int(returned_from is not None)),
            )
            return True

    def leases(self) -> list[LocalLease]:
        db = self.conn()
        rows = db.execute(
            "SELECT id, tipo_dte, desde, hasta, next_folio, returned_from, return_shipped, revoked FROM lease"
            " ORDER BY tipo_dte, desde").fetchall()
        out = []
        for i, t, d, h, n, r, shipped, revoked in rows:
            last = (r - 1) if r is not None else h
            free = 0 if revoked or n > last else max(0, last - d + 1 - _taken_between(db, t, d, last))
            out.append(LocalLease(i, t, d, h, n, r, bool(shipped), bool(revoked), free))
        return out

    def leased_free(self, now: date) -> dict[int, int]:
        """Folios still to allocate per TipoDTE in this site's usable leases (live CAFs). One
        query, cheap enough to run after every signature: every folio of a lease below its
        cursor is taken, so only the ones taken at or above it are counted (a primary-key range,
        usually empty)."""
        rows = self.conn().execute(
            "SELECT l.tipo_dte, c.expires_on, COALESCE(l.returned_from - 1, l.hasta) - l.next_folio + 1"
            " - (SELECT COUNT(*) FROM folio f WHERE f.tipo_dte = l.tipo_dte"
            "    AND f.folio BETWEEN l.next_folio AND COALESCE(l.returned_from - 1, l.hasta))"
            " FROM lease l JOIN caf c ON c.id = l.caf_id"
            " WHERE l.revoked = 0 AND l.next_folio <= COALESCE(l.returned_from - 1, l.hasta)").fetchall()
        out: dict[int, int] = {}
        for tipo, expires, free in rows:
            if not _expired(expires, now) and free > 0:
                out[tipo] = out.get(tipo, 0) + int(free)
        return out

    def _leased_stock(self, db: sqlite3.Connection, now: date) -> list[StockRow]:
        rows = db.execute(
            "SELECT l.tipo_dte, l.desde, COALESCE(l.returned_from - 1, l.hasta), l.next_folio, c.expires_on FROM lease l"
            " JOIN caf c ON c.id = l.caf_id WHERE l.revoked = 0 AND l.next_folio <= COALESCE(l.returned_from - 1, l.hasta)"
            " ORDER BY l.tipo_dte, l.desde").fetchall()  # a lease whose cursor passed its end is used up
        out: dict[int, StockRow] = {}
        for tipo, desde, last, next_folio, expires in rows:
            row = out.setdefault(tipo, StockRow(tipo, 0, None, None))
            free = last - desde + 1 - _taken_between(db, tipo, desde, last)
            if _expired(expires, now) or free <= 0:
                continue
            if row.next_folio is None:
                row = row._replace(next_folio=_first_free(db, tipo, max(next_folio, desde), last),
                                   expires_on=_date(expires))
            out[tipo] = row._replace(available=row.available + free)
        return list(out.values())

    def hand_back(self, tipo_dte: int | None = None) -> list[tuple[int, int, int]]:
        """Stop allocating from this site's leases (of one type, or all) and mark their unused
        tails to be handed back: (lease id, from folio, hasta) per lease that had any. Durable
        here first; the cluster stage (or `dtesync sites hand-back`) then tells the cluster."""
        out = []
        with self.tx() as db:
            rows = db.execute(
                "SELECT id, tipo_dte, desde, hasta, next_folio FROM lease WHERE returned_from IS NULL AND revoked = 0"
                " AND (? IS NULL OR tipo_dte = ?)", (tipo_dte, tipo_dte)).fetchall()
            for lease_id, tipo, desde, hasta, next_folio in rows:
                (top,) = db.execute("SELECT MAX(folio) FROM folio WHERE tipo_dte = ? AND folio BETWEEN ? AND ?",
                                    (tipo, desde, hasta)).fetchone()
                start = max(next_folio, (top or desde - 1) + 1, desde)
                if start > hasta:
                    continue  # fully used: nothing to give back
                db.execute("UPDATE lease SET returned_from = ?, return_shipped = 0 WHERE id = ?", (start, lease_id))
                out.append((lease_id, start, hasta))
        return out

    def pending_returns(self) -> list[tuple[int, int]]:
        """(lease id, from folio) of hand-backs the cluster has not recorded yet."""
        return [(r[0], r[1]) for r in self.conn().execute(
            "SELECT id, returned_from FROM lease WHERE returned_from IS NOT NULL AND return_shipped = 0").fetchall()]

    def return_recorded(self, lease_id: int) -> None:
        with self.tx() as db:
            db.execute("UPDATE lease SET return_shipped = 1 WHERE id = ?", (lease_id,))

    def lease_caf_data(self, lease_id: int) -> bytes:
        """The CAF file of a lease, as imported."""
        row = self.conn().execute("SELECT c.data FROM lease l JOIN caf c ON c.id = l.caf_id WHERE l.id = ?",
                                  (lease_id,)).fetchone()
        if row is None:
            raise DteSyncError("INTERNAL", params={"detail": f"no hay un arriendo {lease_id}"})
        return bytes(row[0])

    def revoke_lease(self, lease_id: int) -> None:
        """Allocate nothing more from this lease (its folios are another site's now)."""
        with self.tx() as db:
            db.execute("UPDATE lease SET revoked = 1 WHERE id = ?", (lease_id,))

    def revoke_leases(self) -> int:
        """The site was declared lost: allocate nothing more from its leases. Returns how many."""
        with self.tx() as db:
            return db.execute("UPDATE lease SET revoked = 1 WHERE revoked = 0").rowcount


def _taken_between(db: sqlite3.Connection, tipo_dte: int, desde: int, hasta: int) -> int:
    (n,) = db.execute("SELECT COUNT(*) FROM folio WHERE tipo_dte = ? AND folio BETWEEN ? AND ?",
                      (tipo_dte, desde, hasta)).fetchone()
    return int(n)


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
