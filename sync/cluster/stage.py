"""The cluster stage: a site's two background threads towards the cluster database.

- The lease refiller keeps, per TipoDTE, at least `low_water` leased folios in this site's
  folio store: below it, it leases a block of `lease_size` from the cluster and records it
  locally (durably) before any folio of it can be used. Signing never waits for it: the
  engine allocates from the local store only, so a site keeps signing while the database is
  down, until its blocks run out. On its first contact after a start or an outage it adopts any
  lease the cluster granted that the site never recorded (it crashed in between), puts back any
  lease the cluster lost (restored from an older copy), and ships the hand-backs the site
  recorded while offline.
- The record shipper sends the journal's outbox of changes (sync.journal `record_outbox`,
  written in the same transaction as each change) every `ship_interval`, in batches; the
  cluster applies each event once (its id is the key) and the site deletes what the cluster
  acknowledged. A crash between the two only resends events the cluster then ignores.

Both threads retry with backoff while the database is unreachable and raise one CLUSTER_DOWN
alert for the outage, resolved when it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from sync.backoff import Backoff
from sync.cluster.db import ClusterDb, ClusterUnavailable, Event, LeaseGrant, LeasingHeld, SiteLost
from sync.cluster.schema import MIGRATIONS
from sync.cluster.settings import ClusterConfig
from sync.errors import DteSyncError
from sync.folios.caf import load_caf
from sync.folios.store import FolioStore, LocalLease
from sync.rut import Rut
from sync.stage import Check, Health, QueueStats, Stage

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from sync.alerts import Alerts
    from sync.config import Config
    from sync.filing import Filing
    from sync.journal import Doc
    from sync.signed import SignedDte

log = logging.getLogger("dtesync.cluster")

DOWN_KEY = "cluster:db"
RETRY_MIN = 1.0  # s: the shortest wait before trying an unreachable database again
COALESCE = 0.2  # s: wake-ups within this are one pass (low_water covers far more than this of signing)


class ClusterStage(Stage):
    name = "cluster"

    def __init__(self, config: ClusterConfig, folios: FolioStore, company_rut: Rut, *,
                 trusted_keys: Mapping[int, rsa.RSAPublicKey] | None = None,
                 today: Callable[[], date] = date.today) -> None:
        super().__init__()
        if not folios.leased:
            raise DteSyncError("INTERNAL", params={"detail": "el modo cluster necesita un almacén de folios arrendados"})
        self.config = config
        self.folios = folios
        self.company_rut = company_rut
        self.trusted_keys = trusted_keys
        self.today = today
        refill_db = ClusterDb.from_config(config)  # the password reference is resolved now, not mid-run
        self._refill_db, self._ship_db = refill_db, ClusterDb(config, refill_db._password)
        self._view_db: ClusterDb | None = None  # the panel's reads, on a connection of their own
        self._stop = threading.Event()
        self._refill_wake, self._ship_wake = threading.Event(), threading.Event()
        self._threads: list[threading.Thread] = []
        self._backoff = Backoff(0.5, config.retry_cap, "equal")
        self._adopted = False  # leases compared with the cluster's at the first contact after a start or an outage
        self._types: list[int] = list(config.types)  # the types this site leases (from the last pass)
        self._last_pass = 0.0  # monotonic time of the last pass through the cluster
        self._exhausted: set[int] = set()  # types the cluster had no folios for at the last pass
        self._schema_ok = False
        self.lost = False
        self.reachable: bool | None = None  # None until the first attempt
        self.last_error = ""
        self.last_contact: float | None = None
        self._ship_failures = 0
        self.refills = 0  # leases taken since start (the benchmark reads it)

    # --- wiring -----------------------------------------------------------------------------------
    def bind(self, filing: Filing, alerts: Alerts) -> None:
        super().bind(filing, alerts)
        filing.ship_events = True  # the journal writes the record outbox from its first transaction

    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._loop, args=(self.refill_once, self._refill_wake, self.config.refill_interval),
                             name="dtesync-cluster-leases", daemon=True),
            threading.Thread(target=self._loop, args=(self.ship_once, self._ship_wake, self.config.ship_interval),
                             name="dtesync-cluster-record", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._refill_wake.set()
        self._ship_wake.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self._threads = []
        self._refill_db.close()
        self._ship_db.close()
        if self._view_db is not None:
            self._view_db.close()

    def on_signed(self, doc: Doc, dte: SignedDte) -> None:
        self._refill_wake.set()  # a folio less: a look at the local stock
        # The record needs no wake-up: it is durable in the journal's outbox already, and one
        # shipment every ship_interval carries all the changes meanwhile in one transaction.

    # --- the two threads ------------------------------------------------------------------------------
    def _loop(self, work: Callable[[], bool], wake: threading.Event, interval: float) -> None:
        """Run `work` when woken or every `interval` s; again at once while it has more to do;
        with backoff while the database is unreachable."""
        failures = 0
        while not self._stop.is_set():
            key = f"cluster:error:{work.__name__}"
            try:
                more = work()
                failures = 0
                self.alerts.resolve(key)
            except ClusterUnavailable as exc:
                self._contact_failed(str(exc))
                self._retry_wait(wake, self._backoff.delay(failures))
                failures += 1
                continue
            except Exception as exc:  # e.g. a leased CAF this site refuses: loud, retried, never silent
                log.exception("cluster: unexpected failure")
                self.alerts.raise_(key, "INTERNAL", "ERROR", detail=f"cluster: {type(exc).__name__}: {exc}"[:300])
                self._retry_wait(wake, self._backoff.delay(failures))
                failures += 1
                continue
            if more:
                continue
            wake.wait(interval)
            wake.clear()
            self._stop.wait(COALESCE)  # a burst of signatures: one look at the stock

    def _retry_wait(self, wake: threading.Event, delay: float) -> None:
        """The backoff after a failure, cut short by a wake-up (a signature: the stock is
        dropping) but never sooner than RETRY_MIN s after the failure: a site whose database is
        back gets its refill within a second or two, not at the end of a long backoff."""
        started = time.monotonic()
        wake.clear()
        if wake.wait(delay):
            self._stop.wait(max(0.0, RETRY_MIN - (time.monotonic() - started)))

    def refill_once(self) -> bool:
        """One look at the lease stock: local only while every type is above the low-water mark
        (each signature wakes this), a pass through the cluster when one is below it or every
        `refill_interval` (last contact, adoption, hand-backs, new types). Returns False."""
        db, site, today = self._refill_db, self.config.site, self.today()
        free = self.folios.leased_free(today)
        low = any(free.get(t, 0) < self.config.refill_at for t in self._types if t not in self._exhausted)
        if not low and self._adopted and time.monotonic() - self._last_pass < self.config.refill_interval:
            return False
        self._check_schema(db)
        if db.touch(site) == "lost" or self.lost:
            self._site_lost()
            return False
        if not self._adopted:
            self._adopt(db)
            free = self.folios.leased_free(today)
        for lease_id, start in self.folios.pending_returns():
            db.hand_back(site, lease_id, start)
            self.folios.return_recorded(lease_id)
        self._types = self.config.types or sorted(set(db.live_types(today)) | set(free))
        self._contact_ok()
        self._last_pass = time.monotonic()
        for tipo in self._types:
            while free.get(tipo, 0) < self.config.refill_at:
                grant = self._lease(db, tipo, today)
                if grant is None and (self.lost or self._held()):
                    self._exhausted.add(tipo)  # no new look before refill_interval
                    break
                if grant is None:  # nothing left in the cluster: no new look before refill_interval
                    self._exhausted.add(tipo)
                    self.alerts.raise_(f"cluster:caf:{tipo}", "CLUSTER_CAF_EXHAUSTED", "ERROR", tipo_dte=tipo)
                    break
                free[tipo] = free.get(tipo, 0) + grant
            else:
                self._exhausted.discard(tipo)
                self.alerts.resolve(f"cluster:caf:{tipo}")
        return False

    def _lease(self, db: ClusterDb, tipo: int, today: date) -> int | None:
        """Lease a block and record it here; the number of folios, None if the cluster has none."""
        try:
            grant = db.lease(self.config.site, tipo, self.config.lease_size, today)
        except ClusterUnavailable:
            self._adopted = False  # the grant may have committed: look for it on the next contact
            raise
        except SiteLost:
            self._site_lost()
            return None
        except LeasingHeld as exc:
            self.alerts.raise_("cluster:held", "CLUSTER_LEASING_HELD", "WARNING", since=str(exc))
            return None
        self.alerts.resolve("cluster:held")
        if grant is None:
            return None
        self.folios.record_lease(grant.id, grant.tipo_dte, grant.desde, grant.hasta, grant.caf_data,
                                 self.company_rut, today, trusted_keys=self.trusted_keys)
        self.refills += 1
        log.info("cluster: leased folios", extra={"tipo_dte": tipo, "desde": grant.desde, "hasta": grant.hasta,
                                                  "lease": grant.id})
        return grant.size

    def _held(self) -> bool:
        return any(a.key == "cluster:held" for a in self.alerts.active())

    def _adopt(self, db: ClusterDb) -> None:
        """Make this site's leases and the cluster's agree, once per start: a lease the cluster
        granted and the site never recorded (a crash in between) is recorded here; a lease the
        site holds and the cluster lost (restored from an older backup) is put back there, so
        its folios are never leased again, or, if another site holds them by now, reported."""
        local = {lease.id: lease for lease in self.folios.leases()}
        in_cluster = set(db.lease_ids(self.config.site))
        missing = [i for i in in_cluster if i not in local]
        for grant in db.leases_of(self.config.site, missing) if missing else ():
            self.folios.record_lease(grant.id, grant.tipo_dte, grant.desde, grant.hasta, grant.caf_data,
                                     self.company_rut, self.today(), returned_from=grant.returned_from,
                                     trusted_keys=self.trusted_keys)
            log.warning("cluster: adopted a lease granted before a crash", extra={"lease": grant.id})
        for lease in (x for i, x in sorted(local.items()) if i not in in_cluster):
            self._reassert(db, lease)
        self._adopted = True

    def _reassert(self, db: ClusterDb, lease: LocalLease) -> None:
        data = self.folios.lease_caf_data(lease.id)
        caf = load_caf(data)
        grant = LeaseGrant(lease.id, lease.tipo_dte, lease.desde, lease.hasta, lease.returned_from,
                           caf.fingerprint, data)
        conflict = db.reassert(self.config.site, grant, caf)
        params = {"lease": lease.id, "tipo_dte": lease.tipo_dte, "desde": lease.desde, "hasta": lease.hasta}
        if conflict is None:
            log.error("cluster: the database had lost a lease of this site; put back", extra=params)
            self.alerts.raise_("cluster:restored", "CLUSTER_LEASE_RESTORED", "WARNING", **params)
            return
        self.folios.revoke_lease(lease.id)
        log.error("cluster: a lease of this site is another's in the database now", extra={**params, "error": conflict})
        self.alerts.raise_(f"cluster:conflict:{lease.id}", "CLUSTER_LEASE_CONFLICT", "ERROR", detail=conflict,
                           **params)

    def _check_schema(self, db: ClusterDb) -> None:
        if self._schema_ok:
            return
        found = db.version()
        if found < len(MIGRATIONS):
            self.alerts.raise_("cluster:schema", "CLUSTER_SCHEMA_OLD", "ERROR", found=found, expected=len(MIGRATIONS))
            raise ClusterUnavailable(f"schema version {found} < {len(MIGRATIONS)}")
        self.alerts.resolve("cluster:schema")
        self._schema_ok = True

    def _site_lost(self) -> None:
        if not self.lost:
            revoked = self.folios.revoke_leases()
            log.error("cluster: this site was declared lost; its leases are revoked", extra={"leases": revoked})
        self.lost = True
        self.alerts.raise_("cluster:lost", "CLUSTER_SITE_LOST", "ERROR", site=self.config.site)

    def ship_once(self) -> bool:
        """Ship one batch of the record outbox; True when more is waiting."""
        journal = self.filing.journal
        pending = journal.pending_events(self.config.ship_batch)
        if not pending:
            return False
        self._check_schema(self._ship_db)
        events = [Event(event_id, seq, doc_id, state, note, at, self._record(doc))
                  for seq, event_id, doc_id, state, note, at, doc in pending]
        try:
            self._ship_db.ship(self.config.site, events)
        except ClusterUnavailable:
            self._ship_failures += 1
            raise
        self._ship_failures = 0
        self._contact_ok()
        journal.events_shipped(pending[-1][0])
        return len(pending) == self.config.ship_batch

    def _record(self, doc: Doc | None) -> dict[str, Any]:
        """A document's record as the cluster keeps it, with the other stages' entries."""
        if doc is None:
            return {}
        extra = self.filing.status_entries([doc], skip=self)[doc.id]
        return {
            "source": doc.rel, "state": doc.state, "tipo_dte": doc.tipo_dte, "folio": doc.folio,
            "track_id": doc.track_id, "rut_receptor": doc.rut_receptor, "rzn_soc_recep": doc.rzn_soc_recep,
            "fch_emis": doc.fch_emis, "monto_total": doc.monto_total,
            "errors": [e.get("code") for e in doc.error_list] or None, "extra": extra or None,
            "created_at": doc.created_at, "updated_at": doc.updated_at,
        }

    # --- observation -------------------------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        """The cluster's view of every site (sync.cluster.db.ClusterDb.overview), for the panel;
        ClusterUnavailable when the database cannot be reached."""
        if self._view_db is None:
            self._view_db = ClusterDb(self.config, self._refill_db._password)
        return self._view_db.overview()

    def _contact_ok(self) -> None:
        self.reachable, self.last_error, self.last_contact = True, "", time.time()
        self.alerts.resolve(DOWN_KEY)

    def _contact_failed(self, reason: str) -> None:
        self.reachable, self.last_error = False, reason
        self._adopted = False  # after an outage, compare leases again (a grant may have committed; a restore)
        stock = ", ".join(f"{t}: {n}" for t, n in sorted(self.folios.leased_free(self.today()).items())) or "0"
        if self.alerts.raise_(DOWN_KEY, "CLUSTER_DOWN", "WARNING", detail=reason, stock=stock):
            log.warning("cluster: database unreachable; signing from leased folios", extra={"error": reason})

    def checks(self) -> list[Check]:
        if self.reachable is False:
            db = Check("cluster:db", "degraded", f"base central inalcanzable: {self.last_error}")
        else:
            db = Check("cluster:db", "ok", "" if self.reachable else "sin contacto aún")
        out = [db]
        if self.lost:
            out.append(Check("cluster:site", "down", f"sitio {self.config.site} declarado perdido"))
        free = self.folios.leased_free(self.today())
        for tipo in self.config.types or sorted(free):
            n = free.get(tipo, 0)
            status: Health = "down" if n == 0 else "degraded" if n < self.config.refill_at else "ok"
            out.append(Check(f"cluster:leases:{tipo}", status, f"{n} folios arrendados de TipoDTE {tipo}"))
        return out

    def queues(self) -> list[QueueStats]:
        depth, oldest = self.filing.journal.outbox_stats()
        age = time.time() - oldest if oldest is not None else None
        return [QueueStats("cluster_record", depth, age, failing=depth if self._ship_failures else 0)]


def build_cluster(config: Config, engine: Any) -> ClusterStage | None:
    """The cluster stage when the configuration has [cluster]; None for a single PC."""
    if config.cluster is None:
        return None
    from sync.runtime import trusted_caf_keys

    return ClusterStage(config.cluster, engine.folios, config.company.rut, trusted_keys=trusted_caf_keys(config))
