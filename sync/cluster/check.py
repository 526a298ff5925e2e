"""`dtesync check` in cluster mode: the cluster database instead of a CAF folder.

A site's folios come from its leases, so the CAF findings of a single PC (files in the CAF
folder, folios left in them) become: the driver is installed, the password reference resolves,
the database answers with the current schema, this site is not declared lost, the cluster has
folios left to lease, and this site holds leased folios of each type.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, NamedTuple, Protocol

from sync.errors import DteSyncError

if TYPE_CHECKING:
    from sync.config import Config

OK, WARN, FAIL = "OK", "WARN", "FAIL"  # sync.check's levels (it wraps these in its Finding)


class Finding(NamedTuple):
    level: str
    subject: str
    message: str
    fix: str = ""


class Say(Protocol):
    lang: str

    def __call__(self, es: str, en: str) -> str: ...


def check_cluster(config: Config, today: date, say: Say) -> list[Finding]:
    from sync.cluster.schema import MIGRATIONS

    c = config.cluster
    subject = f"cluster {c.site}"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return [Finding(FAIL, subject, say("falta el controlador de PostgreSQL (psycopg)", "the PostgreSQL driver "
                                           "(psycopg) is missing"), "pip install 'dtesync[cluster]'")]
    from sync.cluster.db import ClusterDb, ClusterUnavailable

    try:
        db = ClusterDb.from_config(c)
    except DteSyncError as exc:
        return [Finding(FAIL, "cluster.password", exc.message(say.lang), say(
            "defina la variable o cree el archivo (modo 600) que nombra cluster.password",
            "set the variable or create the file (mode 600) cluster.password names"))]
    out: list[Finding] = []
    with db:
        try:
            version = db.version()
            if version < len(MIGRATIONS):
                return [Finding(FAIL, subject, say(f"el esquema {c.schema} está en la versión {version} de "
                                                   f"{len(MIGRATIONS)}", f"schema {c.schema} is at version {version} of "
                                                   f"{len(MIGRATIONS)}"), "dtesync cluster init")]
            sites = {s.name: s for s in db.sites()}
            stock = db.caf_stock(today)
        except ClusterUnavailable as exc:
            return [Finding(FAIL, subject, say(f"no se alcanza la base central: {exc}",
                                               f"cannot reach the central database: {exc}"),
                            say("revise cluster.dsn, la red y pg_hba.conf del servidor (docs/sites.md)",
                                "check cluster.dsn, the network and the server's pg_hba.conf (docs/sites.md)"))]
    me = sites.get(c.site)
    if me is not None and me.state == "lost":
        out.append(Finding(FAIL, subject, say("este sitio fue declarado perdido", "this site was declared lost"),
                           say("use otro nombre de sitio (docs/sites.md)", "use another site name (docs/sites.md)")))
    else:
        out.append(Finding(OK, subject, say(f"base central al día (esquema {version})", f"central database up to date "
                                            f"(schema {version})")))
    low = config.alerts.caf_stock_min
    request = say("solicite un CAF nuevo en sii.cl e impórtelo con 'dtesync caf import ARCHIVO'",
                  "request a new CAF at sii.cl and import it with 'dtesync caf import FILE'")
    types = set(c.types) or set(stock)
    if not types:
        out.append(Finding(FAIL, "CAF", say("el cluster no tiene CAF con folios por arrendar",
                                            "the cluster has no CAF with folios left to lease"), request))
    for tipo in sorted(types):
        n = stock.get(tipo, 0)
        level = FAIL if n == 0 else WARN if n < low else OK
        out.append(Finding(level, f"CAF TipoDTE {tipo} (cluster)", say(f"{n} folios por arrendar",
                                                                      f"{n} folios left to lease"), request))
    return out + _leased_here(config, today, types, say)


def _leased_here(config: Config, today: date, types: set[int], say: Say) -> list[Finding]:
    from sync.folios.store import FILE_NAME, FolioStore

    path = config.folders.state / FILE_NAME
    free: dict[int, int] = {}
    if path.exists():
        store = FolioStore(path, readonly=True, leased=True)
        try:
            free = store.leased_free(today)
        finally:
            store.close()
    out = []
    for tipo in sorted(types | set(free)):
        n = free.get(tipo, 0)
        out.append(Finding(OK if n else WARN, f"folios arrendados TipoDTE {tipo}",
                           say(f"{n} en este sitio", f"{n} at this site"),
                           say("el daemon arrienda al iniciar con la base central alcanzable",
                               "the daemon leases when it starts with the database reachable")))
    return out
