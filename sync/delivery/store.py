"""The delivery store (delivery.sqlite3 in the state folder): the durable mail queue, the
journal of send attempts, the receptors' exchange addresses and the receptors' answers.

A delivery row per (document, kind) — kind `intercambio` (a DTE to its receptor) or `boleta`
(a virtual boleta to the customer) — moves through:

    waiting -> pending -> sending -> committing -> sent
       |          ^          |           |
       |          +----------+-----------+   (a failure: back to pending after a backoff)
       +-> cancelled (the SII rejected it)      pending -> failed | no_address

- `waiting`: a DTE waiting for the SII's acceptance (`[delivery] after = "accepted"`).
- `sending`: written durably, with the Message-ID and the exact message bytes, before the
  SMTP transaction starts (MAIL FROM). A row found here after a crash never reached the
  final "." of DATA, so the server discarded it (RFC 5321 §4.1.1.4): it is simply sent again.
- `committing`: written durably right before the final "." is sent. A row found here after
  a crash may or may not have been accepted by the server (the crash fell between the dot
  and our record of the 250 reply): it is sent again, the same bytes under the same
  Message-ID, and counted in `uncertain`. That is the one at-least-once window SMTP leaves;
  everywhere else delivery is exactly once (docs/delivery.md, "Exactly once").

Every step is also appended to `attempts` (the journal of attempts), which is what
`status`/the docs show when a person asks "was it sent?".
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from sync.storage import Store

FILE_NAME = "delivery.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id           INTEGER PRIMARY KEY,
    doc_id       INTEGER NOT NULL,          -- the journal's document id
    kind         TEXT NOT NULL,             -- intercambio | boleta
    state        TEXT NOT NULL,             -- waiting | pending | sending | committing | sent | failed | no_address | cancelled
    address      TEXT,
    rut_receptor TEXT NOT NULL,
    rut_emisor   TEXT NOT NULL,
    tipo_dte     INTEGER NOT NULL,
    folio        INTEGER NOT NULL,
    label        TEXT NOT NULL,             -- for people: 'F12.txt: TipoDTE 33 folio 7'
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,
    message_id   TEXT,                      -- '<...>', fixed before the first attempt
    message      BLOB,                      -- the exact MIME bytes, built once, sent on every attempt
    envio_name   TEXT,                      -- the attached EnvioDTE's file name (RecepcionEnvio/NmbEnvio)
    envio_digest TEXT,                      -- its SetDTE DigestValue (RecepcionEnvio/Digest)
    uncertain    INTEGER NOT NULL DEFAULT 0, -- times sent again after losing the server's last reply
    last_error   TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    sent_at      REAL,
    UNIQUE (doc_id, kind)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_at);
CREATE INDEX IF NOT EXISTS deliveries_doc ON deliveries(tipo_dte, folio, rut_emisor);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    phase       TEXT NOT NULL,              -- sending | committing | sent | retry | failed | lost | resent
    at          REAL NOT NULL,
    detail      TEXT
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts(delivery_id);
CREATE TABLE IF NOT EXISTS receptors (
    rut          TEXT PRIMARY KEY,          -- canonical, 76192083-9
    razon_social TEXT,
    nro_resol    TEXT,
    fch_resol    TEXT,
    mail         TEXT,
    url          TEXT,
    imported_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    id           INTEGER PRIMARY KEY,
    sha256       TEXT NOT NULL,             -- of the answer's XML
    item         INTEGER NOT NULL,          -- its position in that XML
    doc_id       INTEGER,                   -- NULL: no document of ours matches
    kind         TEXT NOT NULL,             -- envio | recepcion | resultado | recibo
    state        TEXT NOT NULL,
    code         INTEGER,
    reason       TEXT,
    tipo_dte     INTEGER,
    folio        INTEGER,
    rut_emisor   TEXT,
    rut_receptor TEXT,
    signed_at    TEXT,                      -- TmstFirmaResp / TmstFirmaRecibo, as written
    signature_ok INTEGER NOT NULL,
    detail       TEXT,                      -- JSON: the rest (Recinto, RutFirma, warnings ...)
    mail_id      TEXT,                      -- the answer mail's Message-ID
    received_at  REAL NOT NULL,
    UNIQUE (sha256, item)
);
CREATE INDEX IF NOT EXISTS answers_doc ON answers(doc_id);
CREATE TABLE IF NOT EXISTS imap_state (
    folder      TEXT PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL
);
"""

# Internal states -> the `delivery.state` an ERP reads (docs/daemon.md).
PUBLIC_STATE = {"waiting": "pending", "pending": "pending", "sending": "pending", "committing": "pending",
                "sent": "sent", "failed": "failed", "no_address": "no_address"}
UNFINISHED = ("waiting", "pending", "sending", "committing")


@dataclass(frozen=True)
class Delivery:
    id: int
    doc_id: int
    kind: str
    state: str
    address: str | None
    rut_receptor: str
    rut_emisor: str
    tipo_dte: int
    folio: int
    label: str
    attempts: int
    next_at: float
    message_id: str | None
    message: bytes | None
    envio_name: str | None
    envio_digest: str | None
    uncertain: int
    last_error: str | None
    created_at: float
    updated_at: float
    sent_at: float | None

    @property
    def public_state(self) -> str | None:
        return PUBLIC_STATE.get(self.state)


@dataclass(frozen=True)
class Receptor:
    rut: str
    razon_social: str | None
    nro_resol: str | None
    fch_resol: str | None
    mail: str | None
    url: str | None
    imported_at: float


@dataclass(frozen=True)
class StoredAnswer:
    id: int
    sha256: str
    item: int
    doc_id: int | None
    kind: str
    state: str
    code: int | None
    reason: str | None
    tipo_dte: int | None
    folio: int | None
    rut_emisor: str | None
    rut_receptor: str | None
    signed_at: str | None
    signature_ok: int
    detail: str | None
    mail_id: str | None
    received_at: float

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "state": self.state, "code": self.code, "reason": self.reason,
                               "signed_at": self.signed_at, "mail_id": self.mail_id}
        out.update(json.loads(self.detail) if self.detail else {})
        return out


_DELIVERY_COLS = ", ".join(f.name for f in fields(Delivery))
_ANSWER_COLS = ", ".join(f.name for f in fields(StoredAnswer))


class DeliveryStore(Store):
    SCHEMA = SCHEMA
    TABLE = "deliveries"

    # --- the queue ------------------------------------------------------------------------------
    def enqueue(self, *, doc_id: int, kind: str, state: str, rut_receptor: str, rut_emisor: str, tipo_dte: int,
                folio: int, label: str, address: str | None = None, now: float | None = None) -> bool:
        """One row per (document, kind); False when it exists (on_signed runs at least once)."""
        now = time.time() if now is None else now
        with self.tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO deliveries(doc_id, kind, state, address, rut_receptor, rut_emisor, tipo_dte,"
                " folio, label, next_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (doc_id, kind, state, address, rut_receptor, rut_emisor, tipo_dte, folio, label, now, now, now))
            return cur.rowcount == 1

    def _one(self, where: str, args: tuple[Any, ...]) -> Delivery | None:
        row = self.conn().execute(f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE {where}", args).fetchone()
        return Delivery(*row) if row else None

    def _many(self, where: str, args: tuple[Any, ...] = ()) -> list[Delivery]:
        rows = self.conn().execute(f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE {where}", args).fetchall()
        return [Delivery(*r) for r in rows]

    def get(self, delivery_id: int) -> Delivery | None:
        return self._one("id=?", (delivery_id,))

    def for_doc(self, doc_id: int) -> list[Delivery]:
        return self._many("doc_id=? ORDER BY id", (doc_id,))

    def by_document(self, rut_emisor: str, tipo_dte: int, folio: int) -> Delivery | None:
        """The intercambio delivery of a DTE of ours, by the key the SII knows it by."""
        return self._one("rut_emisor=? AND tipo_dte=? AND folio=? AND kind='intercambio' ORDER BY id DESC LIMIT 1",
                         (rut_emisor, tipo_dte, folio))

    def by_envio(self, name: str | None, digest: str | None) -> Delivery | None:
        """The delivery whose EnvioDTE a RecepcionEnvio answers (by file name, else digest)."""
        found = self._one("envio_name=? ORDER BY id DESC LIMIT 1", (name,)) if name else None
        if found is None and digest:
            found = self._one("envio_digest=? ORDER BY id DESC LIMIT 1", (digest,))
        return found

    def due(self, now: float, limit: int = 50) -> list[Delivery]:
        return self._many("state='pending' AND next_at<=? ORDER BY next_at, id LIMIT ?", (now, limit))

    def next_due_at(self) -> float | None:
        row = self.conn().execute("SELECT MIN(next_at) FROM deliveries WHERE state='pending'").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def in_state(self, *states: str) -> list[Delivery]:
        marks = ",".join("?" * len(states))
        return self._many(f"state IN ({marks}) ORDER BY id", tuple(states))

    def _set(self, delivery_id: int, assignments: str, args: tuple[Any, ...], *, phase: str | None = None,
             detail: str | None = None, where: str = "", now: float | None = None, durable: bool = True) -> bool:
        now = time.time() if now is None else now
        with self.tx(durable=durable) as db:
            cur = db.execute(f"UPDATE deliveries SET {assignments}, updated_at=? WHERE id=?{where}",
                             (*args, now, delivery_id))
            if phase and cur.rowcount:
                db.execute("INSERT INTO attempts(delivery_id, attempt, phase, at, detail)"
                           " SELECT id, attempts, ?, ?, ? FROM deliveries WHERE id=?", (phase, now, detail, delivery_id))
            return cur.rowcount == 1

    def release(self, doc_id: int, now: float | None = None) -> bool:
        """The SII accepted the document: its waiting delivery becomes due."""
        now = time.time() if now is None else now
        with self.tx() as db:
            return db.execute("UPDATE deliveries SET state='pending', next_at=?, updated_at=? WHERE doc_id=?"
                              " AND state='waiting'", (now, now, doc_id)).rowcount > 0

    def cancel(self, doc_id: int, reason: str) -> bool:
        """The SII rejected the document: it is not delivered."""
        with self.tx() as db:
            return db.execute("UPDATE deliveries SET state='cancelled', last_error=?, updated_at=? WHERE doc_id=?"
                              " AND state='waiting'", (reason, time.time(), doc_id)).rowcount > 0

    def prepared(self, delivery_id: int, *, address: str, message_id: str, message: bytes, envio_name: str | None,
                 envio_digest: str | None) -> None:
        """The message of a delivery, fixed once: every attempt sends these bytes."""
        self._set(delivery_id, "address=?, message_id=?, message=?, envio_name=?, envio_digest=?",
                  (address, message_id, message, envio_name, envio_digest), where=" AND message IS NULL")

    def sending(self, delivery_id: int) -> None:
        """Before MAIL FROM: one more attempt, durably."""
        self._set(delivery_id, "state='sending', attempts=attempts+1", (), phase="sending")

    def committing(self, delivery_id: int) -> None:
        """Before the final '.' of DATA: from here a crash leaves the outcome unknown."""
        self._set(delivery_id, "state='committing'", (), phase="committing")

    def sent(self, delivery_id: int, reply: str, now: float | None = None) -> None:
        """The server took the message. Committed without waiting for the disk (WAL,
        synchronous=NORMAL): it survives a crash of the process at once, which keeps the
        at-least-once window between the server's 250 and this record to a write() call; a
        power cut may undo it, and the mail is then sent again as uncertain."""
        now = time.time() if now is None else now
        self._set(delivery_id, "state='sent', sent_at=?, last_error=NULL", (now,), phase="sent", detail=reply, now=now,
                  durable=False)

    def retry(self, delivery_id: int, error: str, next_at: float, *, uncertain: bool = False) -> None:
        extra = ", uncertain=uncertain+1" if uncertain else ""
        self._set(delivery_id, f"state='pending', next_at=?, last_error=?{extra}", (next_at, error),
                  phase="resent" if uncertain else "retry", detail=error)

    def failed(self, delivery_id: int, error: str) -> None:
        self._set(delivery_id, "state='failed', last_error=?", (error,), phase="failed", detail=error)

    def no_address(self, delivery_id: int, reason: str) -> None:
        self._set(delivery_id, "state='no_address', last_error=?", (reason,), phase="failed", detail=reason)

    def retry_now(self, delivery_id: int) -> None:
        """A no_address or failed delivery tried again (an address appeared, `dtesync` asked)."""
        self._set(delivery_id, "state='pending', next_at=?, last_error=NULL", (time.time(),), phase="retry",
                  detail="again", where=" AND state IN ('no_address','failed')")

    def recover(self, now: float | None = None) -> tuple[int, int]:
        """After a crash: rows cut short in `sending` (never reached the final dot: send again)
        and in `committing` (the outcome is unknown: send again, counted as uncertain)."""
        now = time.time() if now is None else now
        with self.tx() as db:
            for state, phase, detail in (
                ("sending", "lost", "interrumpido antes del punto final de DATA: el servidor lo descartó"),
                ("committing", "resent", "interrumpido tras el punto final de DATA: se envía otra vez (mismo Message-ID)"),
            ):
                db.execute("INSERT INTO attempts(delivery_id, attempt, phase, at, detail)"
                           " SELECT id, attempts, ?, ?, ? FROM deliveries WHERE state=?", (phase, now, detail, state))
            lost = db.execute("UPDATE deliveries SET state='pending', next_at=?, updated_at=? WHERE state='sending'",
                              (now, now)).rowcount
            uncertain = db.execute("UPDATE deliveries SET state='pending', next_at=?, updated_at=?,"
                                   " uncertain=uncertain+1 WHERE state='committing'", (now, now)).rowcount
        return lost, uncertain

    def attempts_of(self, delivery_id: int) -> list[dict[str, Any]]:
        rows = self.conn().execute("SELECT attempt, phase, at, detail FROM attempts WHERE delivery_id=? ORDER BY rowid",
                                   (delivery_id,)).fetchall()
        return [dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self.conn().execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall()
        return {r[0]: r[1] for r in rows}

    # --- receptors ------------------------------------------------------------------------------
    def replace_receptors(self, rows: Iterable[tuple[str, str | None, str | None, str | None, str | None, str | None]],
                          now: float | None = None) -> int:
        """The SII's list replaces the previous one as a whole (one transaction)."""
        now = time.time() if now is None else now
        with self.tx() as db:
            db.execute("DELETE FROM receptors")
            n = 0
            for r in rows:
                db.execute("INSERT OR REPLACE INTO receptors(rut, razon_social, nro_resol, fch_resol, mail, url,"
                           " imported_at) VALUES (?,?,?,?,?,?,?)", (*r, now))
                n += 1
            db.execute("INSERT INTO meta(key, value) VALUES ('receptors_generation', '1') ON CONFLICT(key)"
                       " DO UPDATE SET value=CAST(value AS INTEGER)+1")
        return n

    def receptor(self, rut: str) -> Receptor | None:
        row = self.conn().execute("SELECT rut, razon_social, nro_resol, fch_resol, mail, url, imported_at"
                                  " FROM receptors WHERE rut=?", (rut,)).fetchone()
        return Receptor(*row) if row else None

    def receptors_count(self) -> int:
        return int(self.conn().execute("SELECT COUNT(*) FROM receptors").fetchone()[0])

    def receptors_generation(self) -> int:
        row = self.conn().execute("SELECT value FROM meta WHERE key='receptors_generation'").fetchone()
        return int(row[0]) if row else 0

    # --- answers --------------------------------------------------------------------------------
    def add_answer(self, *, sha256: str, item: int, doc_id: int | None, kind: str, state: str, code: int | None,
                   reason: str | None, tipo_dte: int | None, folio: int | None, rut_emisor: str | None,
                   rut_receptor: str | None, signed_at: str | None, signature_ok: bool, detail: dict[str, Any],
                   mail_id: str | None, now: float | None = None) -> bool:
        """Record one answer item; False when this very answer was recorded before."""
        now = time.time() if now is None else now
        with self.tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO answers(sha256, item, doc_id, kind, state, code, reason, tipo_dte, folio,"
                " rut_emisor, rut_receptor, signed_at, signature_ok, detail, mail_id, received_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (sha256, item, doc_id, kind, state, code, reason, tipo_dte, folio, rut_emisor, rut_receptor, signed_at,
                 int(signature_ok), json.dumps(detail, ensure_ascii=False) if detail else None, mail_id, now))
            return cur.rowcount == 1

    def answers_for(self, doc_id: int) -> list[StoredAnswer]:
        rows = self.conn().execute(f"SELECT {_ANSWER_COLS} FROM answers WHERE doc_id=? AND signature_ok=1"
                                   " ORDER BY received_at, id", (doc_id,)).fetchall()
        return [StoredAnswer(*r) for r in rows]

    def answers(self) -> list[StoredAnswer]:
        rows = self.conn().execute(f"SELECT {_ANSWER_COLS} FROM answers ORDER BY id").fetchall()
        return [StoredAnswer(*r) for r in rows]

    # --- the mailbox's progress -------------------------------------------------------------------
    def imap_position(self, folder: str) -> tuple[int, int] | None:
        row = self.conn().execute("SELECT uidvalidity, last_uid FROM imap_state WHERE folder=?", (folder,)).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def set_imap_position(self, folder: str, uidvalidity: int, last_uid: int) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO imap_state(folder, uidvalidity, last_uid) VALUES (?,?,?) ON CONFLICT(folder)"
                       " DO UPDATE SET uidvalidity=excluded.uidvalidity, last_uid=excluded.last_uid",
                       (folder, uidvalidity, last_uid))
