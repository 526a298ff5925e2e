"""[delivery] of the TOML configuration (parsed here, hooked into sync.config.parse_config).

    [delivery]                      SMTP: how documents reach receptors and customers
    [delivery.receptors]            "RUT" = "address": overrides of the SII's exchange list
    [delivery.imap]                 the issuer's exchange mailbox, where receptors answer

No [delivery] table: nothing is delivered (documents are only signed, printed, uploaded).
Passwords are secret references (`{ env = "VAR" }` or `{ file = "path" }`), never values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync.errors import DteSyncError
from sync.rut import Rut, RutError
from sync.secrets import SecretRef

TLS_MODES = ("none", "starttls", "ssl")
AFTER = ("accepted", "signed")
SMTP_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
IMAP_PORTS = {"none": 143, "starttls": 143, "ssl": 993}
LOOPBACK = ("127.0.0.1", "::1", "localhost")
# An address as the exchange list and the ERP write them: one @, no spaces or angle brackets.
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z]{2,}$")


def valid_address(text: str | None) -> bool:
    return bool(text) and len(text or "") <= 254 and _ADDRESS.match(text or "") is not None


@dataclass
class ImapConfig:
    host: str
    user: str
    password: SecretRef
    port: int = 993
    tls: str = "ssl"
    folder: str = "INBOX"
    poll_interval: float = 300.0  # s between looks at the mailbox
    timeout: float = 60.0
    ca_bundle: Path | None = None
    max_message_bytes: int = 20 * 1024 * 1024  # larger mails are not answers: skipped, logged


@dataclass
class DeliveryConfig:
    smtp_host: str
    from_: str  # `from`: the issuer's exchange address (the one registered at the SII)
    smtp_port: int = 587
    smtp_tls: str = "starttls"
    smtp_user: str | None = None
    smtp_password: SecretRef | None = None
    ca_bundle: Path | None = None  # extra CA file; certificate verification is never off
    smtp_timeout: float = 60.0
    after: str = "accepted"  # accepted | signed: when a non-boleta DTE is delivered
    attach_pdf: bool = True
    backoff_base: float = 60.0  # s; full-jitter exponential backoff between attempts
    backoff_cap: float = 3600.0
    give_up_after: float = 3 * 86400.0  # s after which an undeliverable mail is `failed`
    receptors: dict[str, str] = field(default_factory=dict)  # canonical RUT -> address
    imap: ImapConfig | None = None


def _invalid(key: str, detail: str) -> DteSyncError:
    return DteSyncError("CONFIG_INVALID", field=f"delivery.{key}" if key else "delivery", params={"detail": detail})


def _seconds(section: dict[str, Any], key: str, default: float, prefix: str = "") -> float:
    value = section.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise _invalid(prefix + key, f"se esperaba un número de segundos >= 0, se encontró {value!r}")
    return float(value)


def _port(section: dict[str, Any], key: str, default: int, prefix: str = "") -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise _invalid(prefix + key, f"se esperaba un puerto entre 1 y 65535, se encontró {value!r}")
    return value


def _tls(section: dict[str, Any], key: str, default: str, prefix: str = "") -> str:
    value = section.get(key, default)
    if value not in TLS_MODES:
        raise _invalid(prefix + key, "use 'none', 'starttls' o 'ssl'")
    return str(value)


def _text(section: dict[str, Any], key: str, prefix: str = "", *, required: bool = False) -> str | None:
    value = section.get(key)
    if value is None:
        if required:
            raise _invalid(prefix + key, "falta este valor")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _invalid(prefix + key, f"se esperaba texto, se encontró {value!r}")
    return value.strip()


def _secret(section: dict[str, Any], key: str, base: Path, prefix: str = "") -> SecretRef | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"env", "file"} or (("env" in value) == ("file" in value)):
        raise _invalid(prefix + key, 'los secretos no van en claro: use { env = "VAR" } o { file = "ruta" }')
    if "env" in value:
        return SecretRef(env=str(value["env"]))
    p = Path(str(value["file"]))
    return SecretRef(file=p if p.is_absolute() else base / p)


def _path(section: dict[str, Any], key: str, base: Path) -> Path | None:
    value = section.get(key)
    if not value:
        return None
    p = Path(str(value))
    return p if p.is_absolute() else base / p


def _no_password_in_clear(host: str, tls: str, password: SecretRef | None, key: str) -> None:
    """A password never crosses a network unencrypted: `tls = "none"` only with a relay on
    this machine, or without a login."""
    if tls == "none" and password is not None and host not in LOOPBACK:
        raise _invalid(key, f"con {key} = \"none\" la contraseña viajaría en claro a {host}: use 'starttls' o 'ssl'")


def parse_delivery(data: dict[str, Any], base: Path) -> DeliveryConfig | None:
    section = data.get("delivery")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise _invalid("", "se esperaba una tabla [delivery]")
    host = _text(section, "smtp_host", required=True)
    sender = _text(section, "from", required=True)
    assert host is not None and sender is not None
    if not valid_address(sender):
        raise _invalid("from", f"se esperaba una dirección de correo, se encontró {sender!r}")
    tls = _tls(section, "smtp_tls", "starttls")
    c = DeliveryConfig(smtp_host=host, from_=sender, smtp_tls=tls, smtp_port=_port(section, "smtp_port", SMTP_PORTS[tls]))
    c.smtp_user = _text(section, "smtp_user")
    c.smtp_password = _secret(section, "smtp_password", base)
    if (c.smtp_user is None) != (c.smtp_password is None):
        raise _invalid("smtp_user", "smtp_user y smtp_password van juntos (o ninguno: un relay sin login)")
    _no_password_in_clear(host, tls, c.smtp_password, "smtp_tls")
    c.ca_bundle = _path(section, "ca_bundle", base)
    after = section.get("after", "accepted")
    if after not in AFTER:
        raise _invalid("after", "use 'accepted' (cuando el SII lo aceptó) o 'signed' (apenas firmado)")
    c.after = after
    attach = section.get("attach_pdf", True)
    if not isinstance(attach, bool):
        raise _invalid("attach_pdf", f"se esperaba true o false, se encontró {attach!r}")
    c.attach_pdf = attach
    for key in ("smtp_timeout", "backoff_base", "backoff_cap", "give_up_after"):
        setattr(c, key, _seconds(section, key, getattr(c, key)))
    if c.smtp_timeout <= 0:
        raise _invalid("smtp_timeout", "se esperaba un número de segundos > 0")
    c.receptors = parse_receptors(section.get("receptors", {}))
    if section.get("imap") is not None:
        c.imap = parse_imap(section["imap"], base)
    return c


def parse_receptors(table: Any) -> dict[str, str]:
    """`[delivery.receptors]`: "RUT" = "address", the RUT in any usual form."""
    if not isinstance(table, dict):
        raise _invalid("receptors", 'se esperaba una tabla de "RUT" = "correo"')
    out: dict[str, str] = {}
    for rut, address in table.items():
        try:
            canonical = str(Rut.parse(rut))
        except RutError as exc:
            raise _invalid(f"receptors.{rut}", f"RUT inválido: {exc.reason}") from None
        if not isinstance(address, str) or not valid_address(address.strip()):
            raise _invalid(f"receptors.{rut}", f"se esperaba una dirección de correo, se encontró {address!r}")
        out[canonical] = address.strip()
    return out


def parse_imap(section: Any, base: Path) -> ImapConfig:
    prefix = "imap."
    if not isinstance(section, dict):
        raise _invalid("imap", "se esperaba una tabla [delivery.imap]")
    host = _text(section, "host", prefix, required=True)
    user = _text(section, "user", prefix, required=True)
    password = _secret(section, "password", base, prefix)
    if password is None:
        raise _invalid("imap.password", 'falta la contraseña: use { env = "VAR" } o { file = "ruta" }')
    assert host is not None and user is not None
    tls = _tls(section, "tls", "ssl", prefix)
    _no_password_in_clear(host, tls, password, "imap.tls")
    c = ImapConfig(host=host, user=user, password=password, tls=tls, port=_port(section, "port", IMAP_PORTS[tls], prefix))
    c.folder = _text(section, "folder", prefix) or "INBOX"
    c.poll_interval = _seconds(section, "poll_interval", c.poll_interval, prefix)
    c.timeout = _seconds(section, "timeout", c.timeout, prefix)
    if c.poll_interval <= 0 or c.timeout <= 0:
        raise _invalid("imap.poll_interval", "poll_interval y timeout deben ser > 0")
    c.ca_bundle = _path(section, "ca_bundle", base)
    return c
