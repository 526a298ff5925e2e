"""The cluster database (PostgreSQL through psycopg 3): CAFs, folio leases, sites, the record.

Every operation is one short transaction on a connection this object opens on first use and
drops on any connection error (the next call reconnects), so the callers (the cluster stage's
threads, the CLI) only see two outcomes: done, or `ClusterUnavailable` (try again later).
Nothing here is on the signing path: a site signs from the leases its own folio store holds.

psycopg is imported here and only here, when a cluster database is opened: a single PC never
loads it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from sync.cluster.schema import MIGRATIONS
from sync.cluster.settings import ClusterConfig
from sync.errors import DteSyncError
from sync.folios.caf import Caf

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("dtesync.cluster")

MIGRATION_LOCK = 0x647465_73796E63  # pg_advisory_xact_lock key of `cluster init` ("dtesync")
IDLE_PROBE = 2.0  # s: a connection idle longer is checked before its next transaction


class ClusterUnavailable(RuntimeError):
    """The cluster database cannot be reached now (down, network, authentication)."""


class SiteLost(RuntimeError):
    """This site was declared lost (`dtesync sites lose`): it gets no more folios."""


class LeasingHeld(RuntimeError):
    """An admin held leasing (`dtesync cluster hold`, after a restore): no lease for now."""


@dataclass(frozen=True)
class LeaseGrant:
    """A block of folios the cluster gave a site, with the CAF that authorizes it."""

    id: int
    tipo_dte: int
    desde: int
    hasta: int
    returned_from: int | None
    caf_fingerprint: str
    caf_data: bytes

    @property
    def size(self) -> int:
        return self.hasta - self.desde + 1


@dataclass(frozen=True)
class Event:
    """One change of a document's record, as a site ships it (sync.journal's outbox row plus
    the document as it stands)."""

    id: str
    seq: int
    doc_id: int
    state: str
    note: str | None
    at: float
    doc: dict[str, Any]


@dataclass(frozen=True)
class LeaseView:
    id: int
    site: str
    tipo_dte: int
    desde: int
    hasta: int
    returned_from: int | None
    leased_at: datetime
    used: int  # folios of the lease that documents in the shared record carry

    @property
    def kept_until(self) -> int:
        """The last folio the site may still use (a handed-back tail excluded)."""
        return (self.returned_from - 1) if self.returned_from is not None else self.hasta


@dataclass(frozen=True)
class SiteView:
    name: str
    state: str
    first_seen: datetime
    last_contact: datetime
    lost_at: datetime | None
    leases: list[LeaseView]
    documents: dict[str, int]  # state -> count in the shared record


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - depends on the installation
        raise DteSyncError("CONFIG_INVALID", field="cluster", params={
            "detail": "el modo cluster necesita psycopg: pip install 'dtesync[cluster]'"}) from None
    return psycopg


class ClusterDb:
    """One connection to the cluster database, safe to share between threads (a lock
    serializes its transactions; the stage gives each of its threads its own ClusterDb)."""

    def __init__(self, config: ClusterConfig, password: str | None = None) -> None:
        self.config = config
        self._password = password
        self._conn: psycopg.Connection[Any] | None = None
        self._used = 0.0  # monotonic time of the last transaction
        self._lock = threading.RLock()

    @classmethod
    def from_config(cls, config: ClusterConfig) -> ClusterDb:
        """Resolves the password reference now (SECRET_MISSING / SECRET_FILE_INSECURE early)."""
        from sync.secrets import read_secret

        password = read_secret(config.password, name="cluster.password") if config.password else None
        return cls(config, password)

    # --- connection -------------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        pg = _psycopg()
        c = self.config
        params: dict[str, Any] = {
            "connect_timeout": max(1, math.ceil(c.connect_timeout)),
            "application_name": f"dtesync {c.site}"[:63],
            "options": f"-c search_path={c.schema}",
            # a dead server or a cut cable is noticed in seconds, not at the kernel's 2 hours
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
            "tcp_user_timeout": int(max(c.connect_timeout, 5) * 3000),
        }
        if self._password is not None:
            params["password"] = self._password
        try:
            conn: psycopg.Connection[Any] = pg.connect(c.dsn, autocommit=True, **params)
            return conn
        except pg.Error as exc:
            raise ClusterUnavailable(_reason(exc)) from None

    @contextmanager
    def tx(self) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction; a lost connection is dropped and reported as ClusterUnavailable."""
        psycopg = _psycopg()
        with self._lock:
            conn = self._live_connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self.close()
                raise ClusterUnavailable(_reason(exc)) from None
            self._used = time.monotonic()

    def _live_connection(self) -> psycopg.Connection[Any]:
        """The open connection, or a new one. One idle for a while is probed first (SELECT 1):
        after a server restart it is dead, and finding that out on the lease itself would cost
        a whole retry interval."""
        psycopg = _psycopg()
        conn = self._conn
        if conn is not None and not conn.closed and time.monotonic() - self._used > IDLE_PROBE:
            try:
                conn.execute("SELECT 1")
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self.close()
                conn = None
        if conn is None or conn.closed:
            conn = self._conn = self._connect()
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:
                    pass
                self._conn = None

    def __enter__(self) -> ClusterDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema -----------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply the migrations this database lacks (`dtesync cluster init`); returns them."""
        psycopg = _psycopg()
        applied: list[int] = []
        with self.tx() as cur:
            cur.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(psycopg.sql.Identifier(self.config.schema)))
        for version, script in enumerate(MIGRATIONS, 1):
            with self.tx() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
                            " applied_at timestamptz NOT NULL DEFAULT now())")
                cur.execute("SELECT 1 FROM schema_version WHERE version = %s", (version,))
                if cur.fetchone():
                    continue
                cur.execute(script)
                cur.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                applied.append(version)
        return applied

    def version(self) -> int:
        """The schema version of the database (0: `dtesync cluster init` never ran)."""
        with self.tx() as cur:
            cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
            row = cur.fetchone()
            if not row or not row[0]:
                return 0
            cur.execute("SELECT COALESCE(max(version), 0) FROM schema_version")
            row = cur.fetchone()
            return int(row[0]) if row else 0

    # --- sites ------------------------------------------------------------------------------------
    def touch(self, site: str) -> str:
        """Register or refresh a site's last contact; returns its state (active | lost)."""
        with self.tx() as cur:
            cur.execute(
                "INSERT INTO site (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET last_contact = now()"
                " RETURNING state", (site,))
            row = cur.fetchone()
            return str(row[0]) if row else "active"

    def hold_leasing(self, by: str) -> None:
        """No site gets a new lease until `release_leasing` (sites go on signing from theirs)."""
        with self.tx() as cur:
            cur.execute("UPDATE cluster_state SET leasing_held_since = COALESCE(leasing_held_since, now()),"
                        " held_by = %s", (by,))

    def release_leasing(self) -> None:
        with self.tx() as cur:
            cur.execute("UPDATE cluster_state SET leasing_held_since = NULL, held_by = NULL")

    def leasing_held_since(self) -> datetime | None:
        with self.tx() as cur:
            cur.execute("SELECT leasing_held_since FROM cluster_state")
            row = cur.fetchone()
            return row[0] if row else None

    def lose(self, site: str) -> bool:
        """Declare a site lost: it gets no more folios; False if there is no such site."""
        with self.tx() as cur:
            cur.execute("UPDATE site SET state = 'lost', lost_at = COALESCE(lost_at, now()) WHERE name = %s", (site,))
            return cur.rowcount == 1

    # --- CAFs and leases ----------------------------------------------------------------------------
    def import_caf(self, caf: Caf, data: bytes, by: str) -> bool:
        """Store a CAF for every site to lease from; False if it was already there.
        CAF_OVERLAP if it shares folios with another CAF of its type."""
        psycopg = _psycopg()
        try:
            with self.tx() as cur:
                cur.execute(
                    "INSERT INTO caf (tipo_dte, desde, hasta, fecha_autorizacion, expires_on, idk, rut_emisor,"
                    " fingerprint, next_folio, data, imported_by) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                    " ON CONFLICT (fingerprint) DO NOTHING",
                    (caf.tipo_dte, caf.desde, caf.hasta, caf.fecha_autorizacion, caf.expires_on, caf.idk,
                     str(caf.rut_emisor), caf.fingerprint, caf.desde, data, by))
                return cur.rowcount == 1
        except psycopg.errors.ExclusionViolation:
            raise DteSyncError("CAF_OVERLAP", params={"tipo_dte": caf.tipo_dte, "desde": caf.desde,
                                                      "hasta": caf.hasta}) from None

    def lease(self, site: str, tipo_dte: int, size: int, today: date) -> LeaseGrant | None:
        """A block of up to `size` unleased folios of the oldest live CAF of the type (fewer if
        that CAF has fewer left), for this site; None when no CAF of the type has any left.
        The CAF row is locked (FOR UPDATE) while its cursor moves, so two sites never get the
        same folio; the exclusion constraint on lease.span would refuse it anyway."""
        for _ in range(5):  # a CAF another site just emptied drops out of the locked read: look again
            with self.tx() as cur:
                cur.execute("SELECT leasing_held_since FROM cluster_state FOR SHARE")
                held = cur.fetchone()
                if held is not None and held[0] is not None:
                    raise LeasingHeld(str(held[0]))
                cur.execute("SELECT state FROM site WHERE name = %s FOR SHARE", (site,))
                row = cur.fetchone()
                if row is None:
                    cur.execute("INSERT INTO site (name) VALUES (%s) ON CONFLICT DO NOTHING", (site,))
                elif row[0] == "lost":
                    raise SiteLost(site)
                cur.execute(
                    "SELECT id, hasta, next_folio, fingerprint, data FROM caf WHERE tipo_dte = %s"
                    " AND next_folio <= hasta AND (expires_on IS NULL OR expires_on > %s)"
                    " ORDER BY fecha_autorizacion, desde LIMIT 1 FOR UPDATE", (tipo_dte, today))
                caf = cur.fetchone()
                if caf is not None:
                    caf_id, hasta, desde, fingerprint, data = caf
                    last = min(hasta, desde + size - 1)
                    cur.execute("UPDATE caf SET next_folio = %s WHERE id = %s", (last + 1, caf_id))
                    cur.execute("INSERT INTO lease (caf_id, tipo_dte, desde, hasta, site) VALUES (%s,%s,%s,%s,%s)"
                                " RETURNING id", (caf_id, tipo_dte, desde, last, site))
                    (lease_id,) = cur.fetchone() or (0,)
                    cur.execute("UPDATE site SET last_contact = now() WHERE name = %s", (site,))
                    return LeaseGrant(int(lease_id), tipo_dte, int(desde), int(last), None, fingerprint, bytes(data))
                cur.execute("SELECT EXISTS (SELECT 1 FROM caf WHERE tipo_dte = %s AND next_folio <= hasta"
                            " AND (expires_on IS NULL OR expires_on > %s))", (tipo_dte, today))
                more = cur.fetchone()
                if not more or not more[0]:
                    return None
        return None

    def lease_ids(self, site: str) -> list[int]:
        """The ids of every lease the cluster holds for this site."""
        with self.tx() as cur:
            cur.execute("SELECT id FROM lease WHERE site = %s ORDER BY id", (site,))
            return [int(r[0]) for r in cur.fetchall()]

    def leases_of(self, site: str, ids: Sequence[int] | None = None) -> list[LeaseGrant]:
        """The site's leases (all, or these ids) with their CAFs: a restarted site adopts the
        ones it never recorded (granted, then the site crashed before writing them down)."""
        with self.tx() as cur:
            cur.execute("SELECT l.id, l.tipo_dte, l.desde, l.hasta, l.returned_from, c.fingerprint, c.data"
                        " FROM lease l JOIN caf c ON c.id = l.caf_id WHERE l.site = %s"
                        " AND (%s::bigint[] IS NULL OR l.id = ANY(%s::bigint[])) ORDER BY l.id",
                        (site, None if ids is None else list(ids), None if ids is None else list(ids)))
            return [LeaseGrant(int(i), int(t), int(d), int(h), None if r is None else int(r), f, bytes(data))
                    for i, t, d, h, r, f, data in cur.fetchall()]

    def hand_back(self, site: str, lease_id: int, from_folio: int) -> None:
        """The site will never use [from_folio, hasta] of this lease (idempotent)."""
        with self.tx() as cur:
            cur.execute(
                "UPDATE lease SET returned_from = %s, returned_at = now() WHERE id = %s AND site = %s"
                " AND (returned_from IS NULL OR returned_from = %s)", (from_folio, lease_id, site, from_folio))
            if cur.rowcount != 1:
                cur.execute("SELECT returned_from FROM lease WHERE id = %s AND site = %s", (lease_id, site))
                row = cur.fetchone()
                raise DteSyncError("INTERNAL", params={"detail": f"arriendo {lease_id} de {site}: devuelto desde "
                                                                  f"{row[0] if row else '?'}, no desde {from_folio}"})

    def reassert(self, site: str, lease: LeaseGrant, caf: Caf) -> str | None:
        """Put back a lease this site holds and the cluster lost (restored from an older backup,
        or a new database): its CAF if missing, the lease, the CAF's cursor past it, the lease
        id sequence past it. None when done; the reason when another lease or CAF holds those
        folios or that id now (a conflict: the folios may be issued twice)."""
        pg = _psycopg()
        returned_from = lease.returned_from
        try:
            with self.tx() as cur:
                cur.execute("INSERT INTO site (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (site,))
                cur.execute(
                    "INSERT INTO caf (tipo_dte, desde, hasta, fecha_autorizacion, expires_on, idk, rut_emisor,"
                    " fingerprint, next_folio, data, imported_by) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                    " ON CONFLICT (fingerprint) DO NOTHING",
                    (caf.tipo_dte, caf.desde, caf.hasta, caf.fecha_autorizacion, caf.expires_on, caf.idk,
                     str(caf.rut_emisor), caf.fingerprint, caf.desde, lease.caf_data, site))
                cur.execute(
                    "INSERT INTO lease (id, caf_id, tipo_dte, desde, hasta, site, returned_from, returned_at)"
                    " SELECT %s, id, %s, %s, %s, %s, %s, CASE WHEN %s::bigint IS NULL THEN NULL ELSE now() END"
                    " FROM caf WHERE fingerprint = %s",
                    (lease.id, lease.tipo_dte, lease.desde, lease.hasta, site, returned_from, returned_from,
                     lease.caf_fingerprint))
                cur.execute("UPDATE caf SET next_folio = GREATEST(next_folio, %s) WHERE fingerprint = %s",
                            (lease.hasta + 1, lease.caf_fingerprint))
                cur.execute("SELECT setval(pg_get_serial_sequence('lease', 'id'), (SELECT max(id) FROM lease))")
        except (pg.errors.ExclusionViolation, pg.errors.UniqueViolation) as exc:
            return _reason(exc)
        return None

    def live_types(self, today: date) -> list[int]:
        """TipoDTE with folios left to lease."""
        with self.tx() as cur:
            cur.execute("SELECT DISTINCT tipo_dte FROM caf WHERE next_folio <= hasta"
                        " AND (expires_on IS NULL OR expires_on > %s) ORDER BY 1", (today,))
            return [int(r[0]) for r in cur.fetchall()]

    def caf_stock(self, today: date) -> dict[int, int]:
        """Folios not yet leased per TipoDTE (live CAFs)."""
        with self.tx() as cur:
            cur.execute("SELECT tipo_dte, sum(hasta - next_folio + 1) FROM caf WHERE next_folio <= hasta"
                        " AND (expires_on IS NULL OR expires_on > %s) GROUP BY 1 ORDER BY 1", (today,))
            return {int(t): int(n) for t, n in cur.fetchall()}

    # --- the shared record ----------------------------------------------------------------------------
    def ship(self, site: str, events: Sequence[Event]) -> None:
        """Apply a site's events in one transaction: each event once (its id is the key), each
        document row set to the newest event's record (an older or repeated one changes nothing)."""
        _psycopg()
        from psycopg.types.json import Jsonb

        with self.tx() as cur:
            cur.execute("INSERT INTO site (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET last_contact = now()",
                        (site,))
            cur.executemany(
                "INSERT INTO event (id, site, seq, doc_id, state, note, at) VALUES (%s,%s,%s,%s,%s,%s,to_timestamp(%s))"
                " ON CONFLICT (id) DO NOTHING",
                [(e.id, site, e.seq, e.doc_id, e.state, e.note, e.at) for e in events])
            rows = []
            for e in events:
                d = e.doc
                if not d:  # the site no longer has the document (journal retention): the event alone
                    continue
                rows.append((site, e.doc_id, e.seq, d["source"], d["state"], d.get("tipo_dte"), d.get("folio"),
                             d.get("track_id"), d.get("rut_receptor"), d.get("rzn_soc_recep"), d.get("fch_emis"),
                             d.get("monto_total"), Jsonb(d.get("errors")) if d.get("errors") else None,
                             Jsonb(d.get("extra")) if d.get("extra") else None, d["created_at"], d["updated_at"]))
            cur.executemany(
                "INSERT INTO document AS d (site, doc_id, seq, source, state, tipo_dte, folio, track_id, rut_receptor,"
                " rzn_soc_recep, fch_emis, monto_total, errors, extra, created_at, updated_at)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,to_timestamp(%s),to_timestamp(%s))"
                " ON CONFLICT (site, doc_id) DO UPDATE SET seq = EXCLUDED.seq, source = EXCLUDED.source,"
                " state = EXCLUDED.state, tipo_dte = EXCLUDED.tipo_dte, folio = EXCLUDED.folio,"
                " track_id = EXCLUDED.track_id, rut_receptor = EXCLUDED.rut_receptor,"
                " rzn_soc_recep = EXCLUDED.rzn_soc_recep, fch_emis = EXCLUDED.fch_emis,"
                " monto_total = EXCLUDED.monto_total, errors = EXCLUDED.errors, extra = EXCLUDED.extra,"
                " updated_at = EXCLUDED.updated_at WHERE d.seq < EXCLUDED.seq",
                rows)

    # --- views for `dtesync sites` and `dtesync status --cluster` ---------------------------------------
    def sites(self) -> list[SiteView]:
        with self.tx() as cur:
            cur.execute("SELECT name, state, first_seen, last_contact, lost_at FROM site ORDER BY name")
            sites = cur.fetchall()
            cur.execute(
                "SELECT l.id, l.site, l.tipo_dte, l.desde, l.hasta, l.returned_from, l.leased_at,"
                " (SELECT count(DISTINCT d.folio) FROM document d WHERE d.site = l.site AND d.tipo_dte = l.tipo_dte"
                "   AND d.folio BETWEEN l.desde AND l.hasta)"
                " FROM lease l ORDER BY l.site, l.tipo_dte, l.desde")
            leases = [LeaseView(int(i), s, int(t), int(d), int(h), None if r is None else int(r), at, int(u))
                      for i, s, t, d, h, r, at, u in cur.fetchall()]
            cur.execute("SELECT site, state, count(*) FROM document GROUP BY 1, 2")
            counts: dict[str, dict[str, int]] = {}
            for s, st, n in cur.fetchall():
                counts.setdefault(s, {})[st] = int(n)
        return [SiteView(n, st, fs, lc, la, [x for x in leases if x.site == n], counts.get(n, {}))
                for n, st, fs, lc, la in sites]

    def overview(self) -> dict[str, Any]:
        """Every site with its documents by state, last contact and leases (leased, used by a
        document in the record, free) and, for a lost site, the folios to annul; the folios
        left to lease per type; the handed-back blocks; folios carried twice (never expected).
        What `dtesync sites`, `dtesync status --cluster` and the panel show."""
        now = datetime.now(timezone.utc)
        out = []
        for s in self.sites():
            leases = [{"id": x.id, "tipo_dte": x.tipo_dte, "desde": x.desde, "hasta": x.hasta, "used": x.used,
                       "returned_from": x.returned_from, "left": max(0, x.kept_until - x.desde + 1 - x.used)}
                      for x in s.leases]
            out.append({
                "site": s.name, "state": s.state, "last_contact": s.last_contact.isoformat(),
                "last_contact_age_s": round((now - s.last_contact).total_seconds()), "documents": s.documents,
                "leases": leases,
                "to_annul": [{"tipo_dte": t, "desde": d, "hasta": h} for t, d, h in self.unused_leased(s.name)]
                if s.state == "lost" else [],
            })
        held = self.leasing_held_since()
        return {"sites": out, "caf_stock": self.caf_stock(date.today()),
                "leasing_held_since": held.isoformat() if held else None,
                "returned": [{"site": s, "tipo_dte": t, "desde": d, "hasta": h} for s, t, d, h in self.returned()],
                "duplicate_folios": [{"tipo_dte": t, "folio": f, "documents": n}
                                     for t, f, n in self.duplicate_folios()]}

    def unused_leased(self, site: str) -> list[tuple[int, int, int]]:
        """(tipo_dte, desde, hasta) ranges of folios leased to the site and kept by it that no
        document in the shared record carries: for a lost site, what to annul at the SII."""
        with self.tx() as cur:
            cur.execute("SELECT tipo_dte, desde, COALESCE(returned_from - 1, hasta) FROM lease WHERE site = %s"
                        " ORDER BY tipo_dte, desde", (site,))
            leases = cur.fetchall()
            cur.execute("SELECT DISTINCT tipo_dte, folio FROM document WHERE site = %s AND folio IS NOT NULL", (site,))
            used = {(int(t), int(f)) for t, f in cur.fetchall()}
        out: list[tuple[int, int, int]] = []
        for tipo, desde, last in leases:
            start = None
            for folio in range(int(desde), int(last) + 2):
                free = folio <= last and (int(tipo), folio) not in used
                if free and start is None:
                    start = folio
                elif not free and start is not None:
                    out.append((int(tipo), start, folio - 1))
                    start = None
        return out

    def returned(self) -> list[tuple[str, int, int, int]]:
        """(site, tipo_dte, desde, hasta) of every handed-back block: never leased again."""
        with self.tx() as cur:
            cur.execute("SELECT site, tipo_dte, returned_from, hasta FROM lease WHERE returned_from IS NOT NULL"
                        " AND returned_from <= hasta ORDER BY tipo_dte, returned_from")
            return [(s, int(t), int(d), int(h)) for s, t, d, h in cur.fetchall()]

    def duplicate_folios(self) -> list[tuple[int, int, int]]:
        """(tipo_dte, folio, documents) carried by more than one document: must never happen."""
        with self.tx() as cur:
            cur.execute("SELECT tipo_dte, folio, count(*) FROM document WHERE folio IS NOT NULL"
                        " GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 1, 2")
            return [(int(t), int(f), int(n)) for t, f, n in cur.fetchall()]

    def documents(self, site: str | None = None) -> list[dict[str, Any]]:
        """The shared record's rows (for the panel and the tests)."""
        with self.tx() as cur:
            cur.execute("SELECT site, doc_id, seq, source, state, tipo_dte, folio, track_id, fch_emis, monto_total,"
                        " extra FROM document WHERE %s::text IS NULL OR site = %s ORDER BY site, doc_id", (site, site))
            cols = [c.name for c in cur.description or ()]
            return [dict(zip(cols, r)) for r in cur.fetchall()]


def _reason(exc: BaseException) -> str:
    """The first line of a driver error, without anything that could carry a secret."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
