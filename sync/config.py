"""The one TOML configuration file, loaded into typed dataclasses.

Relative paths are resolved against the config file's folder, so a sandbox folder can be
moved as a whole. Secrets (certificate password, API tokens) are never values in this file:
they are references, `{ env = "NAME" }` or `{ file = "path" }`, resolved when needed by
`resolve_secret()` (sync.secrets: a file must be private to its owner on POSIX).
"""

from __future__ import annotations

import builtins
import os
import sys
import tomllib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sync.errors import DteSyncError
from sync.rut import Rut, RutError
from sync.secrets import SecretRef, read_secret


@dataclass
class Branch:
    """A sucursal: fills Sucursal/CdgSIISucur/DirOrigen for documents of its station."""

    name: str
    sucursal: str | None = None
    cdg_sii_sucur: int | None = None
    direccion: str | None = None
    comuna: str | None = None
    ciudad: str | None = None


@dataclass
class Company:
    rut: Rut
    razon_social: str
    giro: str
    acteco: list[int]
    direccion: str | None = None
    comuna: str | None = None
    ciudad: str | None = None
    telefono: str | None = None
    correo: str | None = None
    fch_resol: date = date(2014, 8, 22)
    nro_resol: int = 0
    branches: dict[str, Branch] = field(default_factory=dict)


@dataclass
class CertificateConfig:
    path: Path
    password: SecretRef


@dataclass
class Folders:
    inbox: Path
    outbox: Path
    archive: Path
    rejected: Path
    state: Path
    caf: Path


@dataclass
class DaemonConfig:
    """[daemon]: how the inbox is watched and documents are worked (docs/configuration.md)."""

    watch: str = "auto"  # auto | events | poll
    workers: int = 0  # 0 = two per core
    batch_size: int = 32  # documents a worker issues together when several are ready
    stable_window: float = 0.2  # s a file's size and mtime must hold still before it is complete
    empty_timeout: float = 30.0  # s after which a file that stays empty is rejected
    scan_interval: float = 5.0  # s between reconciliation scans of the inbox
    poll_interval: float = 0.5  # s between listings in poll mode (network shares)
    require_done_marker: bool = False  # only NAME.ext with a NAME.ext.done beside it is complete
    status_txt: bool = False  # also write NAME.status.txt (key=value) for ERPs without JSON
    # 'received' is written for a document that waits (a retry); true: also before every engine call
    write_received: bool = False
    max_attempts: int = 3  # engine failures that are nobody's fault, before the document is an error
    retry_base: float = 0.5  # s; backoff of those retries, doubled per attempt
    retry_cap: float = 30.0
    inbox_lock: bool = True  # also lock inbox/.dtesync.lock: two machines never share an inbox
    max_input_bytes: int = 10 * 1024 * 1024
    engine_processes: int = 1  # the engine (and NAME.pdf) in its own process; 0 = in the daemon's process


@dataclass
class AlertsConfig:
    """[alerts]: the thresholds `dtesync check`, `dtesync status` and the daemon's alerts share."""

    caf_stock_min: int = 100  # folios left per type below which an alert is raised
    caf_expiry_days: int = 30
    cert_expiry_days: int = 30
    check_every: float = 3600.0  # s between stock/expiry checks in the daemon
    queue_stuck_after: float = 1800.0  # s the oldest item of a queue may wait before it counts as stuck
    watch_every: float = 30.0  # s between the daemon's looks at its stages (printers, queues, uplink)
    email_to: list[str] = field(default_factory=list)  # alerts by e-mail (the [delivery] SMTP settings)
    webhook: str | None = None  # alerts as a JSON POST to this URL


@dataclass
class BoletasConfig:
    """[boletas]: Ley 21.713 (in force since 2025-09-01): a boleta of `threshold_uf` UF or more
    ("135 UF o más") carries the buyer's real RUT and name, and the MedioPago. `uf` is the UF's
    value in pesos, kept current by the operator (it changes every day; a month-old value moves
    the threshold by well under 1 %). Without it, boletas large enough to possibly reach the
    threshold are refused with CONFIG_UF_MISSING instead of being guessed about."""

    uf: Decimal | None = None
    threshold_uf: Decimal = Decimal(135)


CONNECTOR_TYPES = ("tcp", "usb", "serial", "win32", "cups", "file")


@dataclass
class PrintStation:
    """A printer at a point of sale (sync.printing.stations): where tickets for it go."""

    name: str
    connector: dict[str, Any]  # {type = tcp|usb|serial|win32|cups|file, host, port, device, ...}
    profile: str = "generic-80mm"  # a printers/*.toml profile name, or a path to one
    copies: int = 1
    cash_drawer: bool = False
    cut: bool = True
    cedible: bool = False  # also print the CEDIBLE copy where it applies
    types: list[int] | None = None  # the TipoDTE this station prints (None: every type)
    virtual: bool = False  # no printer: its boletas are e-mailed to the customer (Res. Ex. 53/2025)


@dataclass
class PrintingConfig:
    """[printing]: PDF in the outbox and ESC/POS stations (docs/printing.md)."""

    pdf: bool = True  # write NAME.pdf to the outbox
    sheet: str = "letter"  # letter | a4: facturas, notas, guías
    roll: str = "80mm"  # 80mm | 58mm: the PDF of boletas
    sii_unidad: str = "SANTIAGO CENTRO"  # "S.I.I. - <unidad>" under the document box
    membrete: list[str] = field(default_factory=list)  # extra header lines under the razón social
    logo: Path | None = None
    boleta_url: str = "www.sii.cl"  # where buyers verify boletas (Res. Ex. 74/2020)
    footer: list[str] = field(default_factory=list)
    default_station: str | None = None
    route_field: str | None = None  # e.g. "Referencia/CodCaja": its value names the station
    profiles: Path | None = None  # extra folder of printer profiles
    retry_base: float = 1.0  # s, doubled per failure
    retry_max: float = 60.0
    give_up_after: float = 86400.0  # s; then the job is 'failed' (reprint with `dtesync print`)
    stations: list[PrintStation] = field(default_factory=list)


@dataclass
class Config:
    path: Path | None
    company: Company
    certificate: CertificateConfig
    folders: Folders
    language: str = "es"
    environment: str = "certificacion"  # certificacion | produccion
    timezone: str = "America/Santiago"
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    trusted_caf_keys: dict[int, Path] = field(default_factory=dict)
    printing: PrintingConfig = field(default_factory=PrintingConfig)
    boletas: BoletasConfig = field(default_factory=BoletasConfig)
    uplink: Any = None  # sync.uplink.settings.UplinkConfig ([uplink], parsed there)
    delivery: Any = None  # sync.delivery.settings.DeliveryConfig ([delivery], parsed there), None: off
    cluster: Any = None  # sync.cluster.settings.ClusterConfig ([cluster], parsed there), None: a single PC
    web: Any = None  # sync.web.settings.WebConfig ([web], parsed there)
    retention: Any = None  # sync.retention.RetentionConfig ([retention], parsed there)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def default_config_path() -> Path:
    """DTESYNC_CONFIG, then the platform's standard location."""
    env = os.environ.get("DTESYNC_CONFIG")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData"))
        return base / "dtesync" / "dtesync.toml"
    return Path("/etc/dtesync/dtesync.toml")


def load_config(path: Path | str | None = None) -> Config:
    path = Path(path) if path else default_config_path()
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DteSyncError("CONFIG_MISSING", found=str(path)) from None
    except UnicodeDecodeError as exc:
        raise DteSyncError("CONFIG_INVALID", field=str(path), params={"detail": f"no es UTF-8 ({exc})"}) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DteSyncError("CONFIG_INVALID", field=str(path), params={"detail": str(exc)}) from None
    return parse_config(data, base=path.parent, path=path)


def parse_config(data: dict[str, Any], *, base: Path, path: Path | None = None) -> Config:
    r = _Reader(data, base)
    company = Company(
        rut=r.rut("company.rut"),
        razon_social=r.str("company.razon_social"),
        giro=r.str("company.giro"),
        acteco=[int(a) for a in r.list("company.acteco")],
        direccion=r.str("company.direccion", None),
        comuna=r.str("company.comuna", None),
        ciudad=r.str("company.ciudad", None),
        telefono=r.str("company.telefono", None),
        correo=r.str("company.correo", None),
        fch_resol=r.date("company.fch_resol", date(2014, 8, 22)),
        nro_resol=r.int("company.nro_resol", 0),
    )
    for i, b in enumerate(r.list("company.branches", [])):
        key = f"company.branches[{i}]"
        if not isinstance(b, dict) or "name" not in b:
            raise _invalid(key, "cada sucursal necesita 'name'")
        company.branches[str(b["name"])] = Branch(
            name=str(b["name"]),
            sucursal=b.get("sucursal"),
            cdg_sii_sucur=b.get("cdg_sii_sucur"),
            direccion=b.get("direccion"),
            comuna=b.get("comuna"),
            ciudad=b.get("ciudad"),
        )
    certificate = CertificateConfig(
        path=r.path("certificate.path"), password=r.secret("certificate.password")
    )
    state = r.path("folders.state", base / "state")
    folders = Folders(
        inbox=r.path("folders.inbox", base / "inbox"),
        outbox=r.path("folders.outbox", base / "outbox"),
        archive=r.path("folders.archive", base / "archive"),
        rejected=r.path("folders.rejected", base / "rejected"),
        state=state,
        caf=r.path("folders.caf", base / "caf"),
    )
    language = r.str("language", "es")
    if language not in ("es", "en"):
        raise _invalid("language", "use 'es' o 'en'")
    environment = r.str("environment", "certificacion")
    if environment not in ("certificacion", "produccion"):
        raise _invalid("environment", "use 'certificacion' o 'produccion'")
    watch = r.str("daemon.watch", "auto")
    if watch not in ("auto", "events", "poll"):
        raise _invalid("daemon.watch", "use 'auto', 'events' o 'poll'")
    d = DaemonConfig()
    daemon = DaemonConfig(
        watch=watch,
        workers=r.int("daemon.workers", d.workers),
        batch_size=r.int("daemon.batch_size", d.batch_size),
        stable_window=r.seconds("daemon.stable_window", d.stable_window),
        empty_timeout=r.seconds("daemon.empty_timeout", d.empty_timeout),
        scan_interval=r.seconds("daemon.scan_interval", d.scan_interval, positive=True),
        poll_interval=r.seconds("daemon.poll_interval", d.poll_interval, positive=True),
        require_done_marker=r.bool("daemon.require_done_marker", d.require_done_marker),
        status_txt=r.bool("daemon.status_txt", d.status_txt),
        write_received=r.bool("daemon.write_received", d.write_received),
        max_attempts=r.int("daemon.max_attempts", d.max_attempts),
        retry_base=r.seconds("daemon.retry_base", d.retry_base, positive=True),
        retry_cap=r.seconds("daemon.retry_cap", d.retry_cap, positive=True),
        inbox_lock=r.bool("daemon.inbox_lock", d.inbox_lock),
        max_input_bytes=r.int("daemon.max_input_bytes", d.max_input_bytes),
        engine_processes=r.int("daemon.engine_processes", d.engine_processes),
    )
    if daemon.max_attempts < 1 or daemon.batch_size < 1 or daemon.workers < 0 or daemon.max_input_bytes < 1:
        raise _invalid("daemon", "max_attempts, batch_size y max_input_bytes deben ser >= 1, workers >= 0")
    if not 0 <= daemon.engine_processes <= 16:
        raise _invalid("daemon.engine_processes", "se esperaba un entero entre 0 y 16")
    a = AlertsConfig()
    alerts = AlertsConfig(
        caf_stock_min=r.int("alerts.caf_stock_min", a.caf_stock_min),
        caf_expiry_days=r.int("alerts.caf_expiry_days", a.caf_expiry_days),
        cert_expiry_days=r.int("alerts.cert_expiry_days", a.cert_expiry_days),
        check_every=r.seconds("alerts.check_every", a.check_every, positive=True),
        queue_stuck_after=r.seconds("alerts.queue_stuck_after", a.queue_stuck_after, positive=True),
        watch_every=r.seconds("alerts.watch_every", a.watch_every, positive=True),
        email_to=_addresses(r.get("alerts.email_to", [])),
        webhook=_webhook(r.get("alerts.webhook", None)),
    )
    for key in ("caf_stock_min", "caf_expiry_days", "cert_expiry_days"):
        if getattr(alerts, key) < 0:
            raise _invalid(f"alerts.{key}", f"se esperaba un entero >= 0, se encontró {getattr(alerts, key)!r}")
    trusted = {int(k): base / v for k, v in r.get("caf.trusted_keys", {}).items()}
    return Config(
        path=path,
        company=company,
        certificate=certificate,
        folders=folders,
        language=language,
        environment=environment,
        timezone=r.str("timezone", "America/Santiago"),
        daemon=daemon,
        alerts=alerts,
        trusted_caf_keys=trusted,
        printing=_printing(r),
        boletas=_boletas(r),
        uplink=_uplink(data, base),
        delivery=_delivery(data, base),
        cluster=_cluster(data, base),
        web=_web(data, base),
        retention=_retention(data),
        raw=data,
    )


def _printing(r: "_Reader") -> PrintingConfig:
    """[printing] and [[printing.stations]]; names and connector types checked here."""
    if not r.get("printing", {}):
        return PrintingConfig()
    d = PrintingConfig()
    for key in ("sheet", "roll"):
        value = r.str(f"printing.{key}", getattr(d, key))
        allowed = ("letter", "a4") if key == "sheet" else ("80mm", "58mm")
        if value not in allowed:
            raise _invalid(f"printing.{key}", "use " + " o ".join(repr(a) for a in allowed))
        setattr(d, key, value)
    d.pdf = bool(r.get("printing.pdf", True))
    d.sii_unidad = r.str("printing.sii_unidad", d.sii_unidad)
    d.membrete = [str(x) for x in r.list("printing.membrete", [])]
    d.footer = [str(x) for x in r.list("printing.footer", [])]
    d.logo = r.path("printing.logo") if r.get("printing.logo", None) else None
    d.profiles = r.path("printing.profiles") if r.get("printing.profiles", None) else None
    d.boleta_url = r.str("printing.boleta_url", d.boleta_url)
    d.default_station = r.str("printing.default_station", None)
    d.route_field = r.str("printing.route_field", None)
    for key in ("retry_base", "retry_max", "give_up_after"):
        value = r.get(f"printing.{key}", getattr(d, key))
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise _invalid(f"printing.{key}", f"se esperaba un número de segundos > 0, se encontró {value!r}")
        setattr(d, key, float(value))
    for i, s in enumerate(r.list("printing.stations", [])):
        key = f"printing.stations[{i}]"
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"]:
            raise _invalid(key, "cada estación necesita 'name'")
        virtual = s.get("virtual", False)
        if not isinstance(virtual, bool):
            raise _invalid(f"{key}.virtual", f"se esperaba true o false, se encontró {virtual!r}")
        conn = s.get("connector", {"type": "file", "path": os.devnull} if virtual else None)
        if not isinstance(conn, dict) or conn.get("type") not in CONNECTOR_TYPES:
            raise _invalid(f"{key}.connector", "use { type = " + " | ".join(CONNECTOR_TYPES) + ", ... }")
        if any(x.name == s["name"] for x in d.stations):
            raise _invalid(f"{key}.name", f"estación repetida: {s['name']!r}")
        copies = s.get("copies", 1)
        if not isinstance(copies, int) or isinstance(copies, bool) or not 0 <= copies <= 5:
            raise _invalid(f"{key}.copies", "se esperaba un entero entre 0 y 5")
        types = s.get("types")
        if types is not None and (not isinstance(types, list) or not types
                                  or not all(isinstance(t, int) and not isinstance(t, bool) for t in types)):
            raise _invalid(f"{key}.types", "se esperaba una lista de TipoDTE, p. ej. [39, 41]")
        conn = dict(conn)
        for pk in ("path", "device"):
            if conn["type"] == "file" and isinstance(conn.get(pk), str):
                conn[pk] = str(r.path(f"{key}.connector.{pk}", conn[pk]))
        d.stations.append(PrintStation(
            name=s["name"], connector=conn, profile=str(s.get("profile", "generic-80mm")), copies=copies,
            cash_drawer=bool(s.get("cash_drawer", False)), cut=bool(s.get("cut", True)), cedible=bool(s.get("cedible", False)),
            types=types,
            virtual=virtual,
        ))
    names = {x.name for x in d.stations}
    if d.default_station is not None and d.default_station not in names:
        raise _invalid("printing.default_station", f"no hay una estación llamada {d.default_station!r}")
    return d


def _boletas(r: "_Reader") -> BoletasConfig:
    """[boletas] uf (pesos per UF) and threshold_uf (default 135: "135 UF o más")."""
    d = BoletasConfig()
    values: dict[str, Decimal | None] = {}
    for key, default in (("uf", None), ("threshold_uf", d.threshold_uf)):
        value = r.get(f"boletas.{key}", default)
        if value is None:
            values[key] = None
            continue
        try:
            number = Decimal(str(value)) if not isinstance(value, bool) else None
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite() or number <= 0:
            raise _invalid(f"boletas.{key}", f"se esperaba un número mayor que 0, se encontró {value!r}")
        values[key] = number
    return BoletasConfig(uf=values["uf"], threshold_uf=values["threshold_uf"] or d.threshold_uf)


def _uplink(data: dict[str, Any], base: Path) -> Any:
    from sync.uplink.settings import parse_uplink

    return parse_uplink(data, base)


def _delivery(data: dict[str, Any], base: Path) -> Any:
    from sync.delivery.settings import parse_delivery

    return parse_delivery(data, base)


def _web(data: dict[str, Any], base: Path) -> Any:
    from sync.web.settings import parse_web

    return parse_web(data, base)


def _retention(data: dict[str, Any]) -> Any:
    from sync.retention import parse_retention

    return parse_retention(data)


def _addresses(value: Any) -> list[str]:
    """[alerts] email_to: one address or a list of them."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(x, str) and "@" in x and "\n" not in x for x in items):
        raise _invalid("alerts.email_to", "se esperaba una dirección de correo o una lista de ellas")
    return [x.strip() for x in items]


def _webhook(value: Any) -> str | None:
    """[alerts] webhook = "URL", or the table form [alerts.webhook] url = "URL"."""
    if isinstance(value, dict) and set(value) == {"url"}:
        value = value["url"]
    if value is None or value == "":
        return None
    url = value
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise _invalid("alerts.webhook", f"se esperaba una URL http(s)://, se encontró {url!r}")
    return url


def _cluster(data: dict[str, Any], base: Path) -> Any:
    from sync.cluster.settings import parse_cluster

    return parse_cluster(data, base)


def resolve_secret(ref: SecretRef, name: str) -> str:
    """Read a secret from its env var or protected file (see sync.secrets)."""
    return read_secret(ref, name=name)


_MISSING = object()


def _invalid(key: str, detail: str) -> DteSyncError:
    return DteSyncError("CONFIG_INVALID", field=key, params={"detail": detail})


class _Reader:  # noqa: A003 - str/int/bool/list read a key as that type
    """Dotted-key access with typed conversion and errors that name the key."""

    def __init__(self, data: dict[str, Any], base: Path):
        self.data, self.base = data, base

    def get(self, key: builtins.str, default: Any = _MISSING) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is _MISSING:
                    raise _invalid(key, "falta este valor")
                return default
            node = node[part]
        return node

    def str(self, key: builtins.str, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if value is not None and not isinstance(value, str):
            raise _invalid(key, f"se esperaba texto, se encontró {value!r}")
        return value

    def int(self, key: builtins.str, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise _invalid(key, f"se esperaba un entero, se encontró {value!r}")
        return value

    def bool(self, key: builtins.str, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise _invalid(key, f"se esperaba true o false, se encontró {value!r}")
        return value

    def seconds(self, key: builtins.str, default: Any = _MISSING, *, positive: builtins.bool = False) -> float:
        value = self.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (positive and value == 0):
            raise _invalid(key, f"se esperaba un número de segundos {'> 0' if positive else '>= 0'}, se encontró {value!r}")
        return float(value)

    def list(self, key: builtins.str, default: Any = _MISSING) -> builtins.list[Any]:
        value = self.get(key, default)
        if not isinstance(value, list):
            raise _invalid(key, f"se esperaba una lista, se encontró {value!r}")
        return value

    def date(self, key: builtins.str, default: Any = _MISSING) -> date:
        value = self.get(key, default)
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise _invalid(key, f"se esperaba una fecha AAAA-MM-DD, se encontró {value!r}") from None

    def rut(self, key: builtins.str) -> Rut:
        try:
            return Rut.parse(self.str(key))
        except RutError as exc:
            raise _invalid(key, f"RUT inválido: {exc.reason}") from None

    def path(self, key: builtins.str, default: Any = _MISSING) -> Path:
        value = self.get(key, default)
        p = Path(value)
        return p if p.is_absolute() else (self.base / p)

    def secret(self, key: builtins.str) -> SecretRef:
        value = self.get(key)
        if isinstance(value, str):
            raise _invalid(key, "los secretos no van en claro: use { env = \"VAR\" } o { file = \"ruta\" }")
        if not isinstance(value, dict) or not (("env" in value) ^ ("file" in value)):
            raise _invalid(key, "use { env = \"VAR\" } o { file = \"ruta\" }")
        if "env" in value:
            return SecretRef(env=str(value["env"]))
        return SecretRef(file=self.path(f"{key}.file"))
