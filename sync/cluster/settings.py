"""[cluster] of the TOML configuration (parsed here, hooked into sync.config.parse_config).

    [cluster]
    dsn = "postgresql://dtesync@db.example.cl:5432/dtesync"   # no password in it
    password = { env = "DTESYNC_PG_PASSWORD" }                 # or { file = "..." }; optional
    site = "tienda-07"
    lease_size = 500
    low_water = 150

No [cluster] table: a single PC, nothing here is used and psycopg is never imported (this module
does not import it either: it only reads the configuration).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sync.errors import DteSyncError
from sync.secrets import SecretRef

SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass
class ClusterConfig:
    dsn: str  # libpq URI or key=value string, never with a password
    site: str  # this PC's name in the cluster: unique per PC, stable for its life
    password: SecretRef | None = None  # None: peer/trust/certificate auth or ~/.pgpass
    schema: str = "dtesync"  # the PostgreSQL schema holding dtesync's tables
    lease_size: int = 500  # folios per lease (per TipoDTE)
    low_water: int = 0  # refill when fewer leased folios are left; 0 = lease_size // 2
    types: list[int] = field(default_factory=list)  # TipoDTE to lease; [] = every type with a CAF in the cluster
    refill_interval: float = 30.0  # s between looks at the lease stock (also woken by each signature)
    ship_interval: float = 5.0  # s between shipments of the record (every change meanwhile, one transaction)
    ship_batch: int = 500  # events per shipment (one PostgreSQL transaction)
    connect_timeout: float = 5.0  # s
    retry_cap: float = 60.0  # s: the longest wait between attempts while the database is down

    @property
    def refill_at(self) -> int:
        return self.low_water or max(1, self.lease_size // 2)


def _invalid(key: str, detail: str) -> DteSyncError:
    return DteSyncError("CONFIG_INVALID", field=f"cluster.{key}" if key else "cluster", params={"detail": detail})


def dsn_has_password(dsn: str) -> bool:
    """A password written into the DSN itself (URI user:password@ or ?password=, or key=value)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        return parts.password is not None or "password" in parse_qs(parts.query)
    return re.search(r"(^|\s)password\s*=", dsn) is not None


LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")
VERIFYING = ("verify-full", "verify-ca")


def dsn_host_and_sslmode(dsn: str) -> tuple[list[str], str | None]:
    """The hosts a DSN names ('' or a /path: a Unix socket) and its sslmode."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        netloc = parts.netloc.rpartition("@")[2]
        hosts = [h.rsplit(":", 1)[0] if h.count(":") == 1 else h for h in netloc.split(",")] if netloc else []
        hosts += query.get("host", [])
        modes = query.get("sslmode")
        return hosts or [""], modes[0] if modes else None
    pairs: dict[str, str] = dict(re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn))
    hosts = [h.strip("'") for h in pairs.get("host", pairs.get("hostaddr", "")).split(",")]
    mode = pairs.get("sslmode")
    return hosts, mode.strip("'") if mode else None


def _tls_required(dsn: str) -> None:
    """Across a network the password and the records travel only inside verified TLS."""
    hosts, mode = dsn_host_and_sslmode(dsn)
    remote = [h for h in hosts if h and not h.startswith("/") and h not in LOOPBACK]
    if remote and mode not in VERIFYING:
        raise _invalid("dsn", f"{remote[0]} no es este equipo: agregue sslmode=verify-full (y sslrootcert= para una "
                              "CA propia) para que la conexión vaya cifrada y verificada")


def parse_cluster(data: dict[str, Any], base: Path) -> ClusterConfig | None:
    section = data.get("cluster")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise _invalid("", "se esperaba una tabla [cluster]")
    dsn, site = section.get("dsn"), section.get("site")
    if not isinstance(dsn, str) or not dsn.strip():
        raise _invalid("dsn", 'falta: dsn = "postgresql://usuario@servidor:5432/base"')
    if not (dsn.startswith(("postgresql://", "postgres://")) or ("=" in dsn and "://" not in dsn)):
        raise _invalid("dsn", "se esperaba una URI postgresql://... o una cadena clave=valor de libpq")
    if dsn_has_password(dsn):
        raise _invalid("dsn", 'la contraseña no va en claro en el dsn: use password = { env = "VAR" } o { file = "ruta" }')
    _tls_required(dsn)
    if not isinstance(site, str) or not SITE_NAME.match(site):
        raise _invalid("site", "se esperaba un nombre de sitio (letras, dígitos, . _ -; hasta 63), p. ej. \"tienda-07\"")
    c = ClusterConfig(dsn=dsn.strip(), site=site, password=_secret(section.get("password"), base))
    schema = section.get("schema", c.schema)
    if not isinstance(schema, str) or not SCHEMA_NAME.match(schema):
        raise _invalid("schema", "se esperaba un nombre de esquema en minúsculas (letras, dígitos, _)")
    c.schema = schema
    for key in ("lease_size", "low_water", "ship_batch"):
        value = section.get(key, getattr(c, key))
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "low_water" else 1):
            raise _invalid(key, f"se esperaba un entero {'>= 0' if key == 'low_water' else '>= 1'}, se encontró {value!r}")
        setattr(c, key, value)
    if c.low_water >= c.lease_size * 10:
        raise _invalid("low_water", "low_water mucho mayor que lease_size pediría arriendos sin fin")
    for key in ("refill_interval", "ship_interval", "connect_timeout", "retry_cap"):
        value = section.get(key, getattr(c, key))
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise _invalid(key, f"se esperaba un número de segundos > 0, se encontró {value!r}")
        setattr(c, key, float(value))
    types = section.get("types", [])
    if not isinstance(types, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in types):
        raise _invalid("types", "se esperaba una lista de TipoDTE, p. ej. [33, 39]")
    c.types = list(types)
    unknown = set(section) - {f for f in ClusterConfig.__dataclass_fields__} - {"password"}
    if unknown:
        raise _invalid(sorted(unknown)[0], "opción desconocida (docs/sites.md lista las opciones)")
    return c


def _secret(value: Any, base: Path) -> SecretRef | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"env", "file"} or (("env" in value) == ("file" in value)):
        raise _invalid("password", 'los secretos no van en claro: use { env = "VAR" } o { file = "ruta" }')
    if "env" in value:
        return SecretRef(env=str(value["env"]))
    p = Path(str(value["file"]))
    return SecretRef(file=p if p.is_absolute() else base / p)
