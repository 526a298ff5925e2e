"""[uplink] of the TOML configuration (parsed here, hooked into sync.config.parse_config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync.errors import DteSyncError
from sync.secrets import SecretRef

KINDS = ("sii", "http", "none")
_FLOATS = ("batch_wait", "backoff_base", "backoff_cap", "poll_first", "poll_base", "poll_cap", "uncertain_wait",
           "processing_window_minutes", "installation_retry", "drain_interval", "poll_interval", "alert_after",
           "alert_interval", "connect_timeout", "read_timeout", "token_ttl")


@dataclass
class UplinkConfig:
    kind: str = "none"  # sii | http | none
    sii_url: str | None = None  # DTEWS + DTEUpload base (default: maullin / palena by `environment`)
    api_url: str | None = None  # boleta REST base (default: apicert / api)
    api_envio_url: str | None = None  # boleta envío base (default: pangal / rahue)
    url: str | None = None  # one base for everything (fake-sii)
    http_url: str | None = None  # provider API base (kind = "http")
    http_token: SecretRef | None = None
    ca_bundle: Path | None = None  # extra CA file; TLS verification is never off
    batch_max: int = 50
    batch_wait: float = 2.0
    backoff_base: float = 15.0
    backoff_cap: float = 3600.0
    poll_first: float = 5.0
    poll_base: float = 5.0
    poll_cap: float = 600.0
    uncertain_wait: float = 60.0
    processing_window_minutes: float = 30.0  # minutes: no re-send before the SII had this long to file an upload
    installation_retry: float = 300.0  # seconds between probes while the SII refuses the installation
    drain_interval: float = 1.0
    poll_interval: float = 1.0
    alert_after: float = 4 * 3600.0
    alert_interval: float = 60.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    token_ttl: float = 1800.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sends(self) -> bool:
        """Documents go somewhere (`sii` or `http`); with `none` they stay `signed`."""
        return self.kind != "none"


def _invalid(key: str, detail: str) -> DteSyncError:
    return DteSyncError("CONFIG_INVALID", field=f"uplink.{key}", params={"detail": detail})


def parse_uplink(data: dict[str, Any], base: Path) -> UplinkConfig:
    section = data.get("uplink", {})
    if not isinstance(section, dict):
        raise _invalid("", "se esperaba una tabla [uplink]")
    c = UplinkConfig()
    kind = section.get("kind", "none")
    if kind not in KINDS:
        raise _invalid("kind", "use 'sii', 'http' o 'none'")
    c.kind = kind
    for key in ("sii_url", "api_url", "api_envio_url", "url"):
        value = section.get(key)
        if value is not None and (not isinstance(value, str) or not value.startswith(("https://", "http://"))):
            raise _invalid(key, f"se esperaba una URL https://, se encontró {value!r}")
        setattr(c, key, value)
    for key in _FLOATS:
        value = section.get(key, getattr(c, key))
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            unit = "minutos" if key.endswith("_minutes") else "segundos"
            raise _invalid(key, f"se esperaba un número de {unit} >= 0, se encontró {value!r}")
        setattr(c, key, float(value))
    batch = section.get("batch_max", c.batch_max)
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 2000:
        raise _invalid("batch_max", "se esperaba un entero entre 1 y 2000 (máximo del EnvioDTE; EnvioBOLETA: 500)")
    c.batch_max = batch
    if section.get("ca_bundle"):
        p = Path(section["ca_bundle"])
        c.ca_bundle = p if p.is_absolute() else base / p
    http = section.get("http", {})
    if kind == "http":
        if not isinstance(http, dict) or not isinstance(http.get("url"), str):
            raise _invalid("http.url", "falta la URL del proveedor")
        tok = http.get("token")
        if isinstance(tok, str) or not isinstance(tok, dict) or not (("env" in tok) ^ ("file" in tok)):
            raise _invalid("http.token", 'los secretos no van en claro: use { env = "VAR" } o { file = "ruta" }')
        c.http_url = http["url"]
        f = tok.get("file")
        c.http_token = SecretRef(env=tok.get("env"), file=(Path(f) if Path(f).is_absolute() else base / f) if f else None)
    return c
