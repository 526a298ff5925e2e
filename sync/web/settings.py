"""[web]: where the panel listens and who may act on it (docs/panel.md).

Checked when the configuration is read, so a panel that would be open to the network without
TLS, or without a password, never starts: listening on anything but loopback needs `tls_cert`
and `tls_key`, or an explicit `allow_remote = true` (TLS done by a proxy in front), and always
a `password`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync.errors import DteSyncError
from sync.secrets import SecretRef

DEFAULT_LISTEN = "127.0.0.1:8765"


@dataclass(frozen=True)
class WebConfig:
    listen: str = DEFAULT_LISTEN  # "" turns the panel off
    password: SecretRef | None = None  # actions (reprint, retry, pause) need it; reading is open on loopback
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow_remote: bool = False
    metrics_file: Path | None = None  # the /metrics text, also written here (Windows exporters' textfile)
    metrics_every: float = 15.0  # s between writes of metrics_file
    session_hours: float = 8.0  # a login lasts this long
    threads: int = 4

    @property
    def enabled(self) -> bool:
        return bool(self.listen)

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None


def _invalid(key: str, detail: str) -> DteSyncError:
    return DteSyncError("CONFIG_INVALID", field=f"web.{key}", params={"detail": detail})


def split_listen(listen: str) -> tuple[str, int]:
    """"127.0.0.1:8765", "[::1]:8765", "localhost:8765" -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise _invalid("listen", f"se esperaba HOST:PUERTO (p. ej. {DEFAULT_LISTEN!r}), se encontró {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def parse_web(data: dict[str, Any], base: Path) -> WebConfig:
    section = data.get("web", {}) or {}
    if not isinstance(section, dict):
        raise _invalid("", "se esperaba una tabla [web]")
    known = {f for f in WebConfig.__dataclass_fields__}
    unknown = set(section) - known
    if unknown:
        raise _invalid(min(unknown), "clave desconocida")
    d = WebConfig()
    listen = section.get("listen", d.listen)
    if not isinstance(listen, str):
        raise _invalid("listen", f"se esperaba texto, se encontró {listen!r}")
    listen = listen.strip()
    password = _secret(section.get("password"), base)
    paths = {k: _path(section.get(k), base, k) for k in ("tls_cert", "tls_key", "metrics_file")}
    allow_remote = section.get("allow_remote", False)
    if not isinstance(allow_remote, bool):
        raise _invalid("allow_remote", f"se esperaba true o false, se encontró {allow_remote!r}")
    numbers = {}
    for key in ("metrics_every", "session_hours", "threads"):
        value = section.get(key, getattr(d, key))
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise _invalid(key, f"se esperaba un número > 0, se encontró {value!r}")
        numbers[key] = value
    cfg = WebConfig(listen=listen, password=password, tls_cert=paths["tls_cert"], tls_key=paths["tls_key"],
                    allow_remote=allow_remote, metrics_file=paths["metrics_file"],
                    metrics_every=float(numbers["metrics_every"]), session_hours=float(numbers["session_hours"]),
                    threads=int(numbers["threads"]))
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise _invalid("tls_key" if cfg.tls_key is None else "tls_cert", "tls_cert y tls_key van juntos")
    if cfg.enabled:
        split_listen(cfg.listen)
        if not cfg.loopback:
            if not (cfg.tls or cfg.allow_remote):
                raise _invalid("listen", f"{cfg.listen} no es local (loopback): configure tls_cert y tls_key, o "
                                         "allow_remote = true si un proxy con TLS está delante")
            if cfg.password is None:
                raise _invalid("password", f"{cfg.listen} no es local (loopback): el panel necesita una contraseña")
    return cfg


def _secret(value: Any, base: Path) -> SecretRef | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise _invalid("password", 'los secretos no van en claro: use { env = "VAR" } o { file = "ruta" }')
    if not isinstance(value, dict) or not (("env" in value) ^ ("file" in value)) or set(value) - {"env", "file"}:
        raise _invalid("password", 'use { env = "VAR" } o { file = "ruta" }')
    if "env" in value:
        return SecretRef(env=str(value["env"]))
    p = Path(str(value["file"]))
    return SecretRef(file=p if p.is_absolute() else base / p)


def _path(value: Any, base: Path, key: str) -> Path | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _invalid(key, f"se esperaba una ruta, se encontró {value!r}")
    p = Path(value)
    return p if p.is_absolute() else base / p
