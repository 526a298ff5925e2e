"""Who may read what dtesync keeps secret: one function per rule, so that `dtesync check`
(which reports) and `dtesync run` (which enforces) can never disagree.

- A secret file (certificate password, API token) is private to its owner: no permission bit
  for group or others, like an ssh key. `run` refuses a looser one (SECRET_FILE_INSECURE,
  raised by sync.secrets.read_secret); `check` fails it.
- What holds a private key is private too: the certificate (.pfx), the CAF folder and its files
  (every CAF carries its folio key, RSASK), the state folder and its databases (the folio
  database keeps a copy of every CAF): files 0600, folders 0700. `run` logs each looser one at
  start; `check` warns.
- The folders shared with the ERP (inbox, outbox, archive, rejected) give nothing to other
  users of the machine (the ERP's group reads the results: sync.outbox writes them 0640).
  `run` logs, `check` warns.
- A URL a token travels to (the uplink's SII or provider URLs) is https://, or http:// to this
  machine only (fake-sii in tests): `run` refuses it (URL_INSECURE); `check` fails it and warns
  on any other http:// URL in the configuration (a webhook, a URL the uplink does not use now).

POSIX modes only: on Windows the mode bits say nothing about the ACLs, which `dtesync service
install` sets (sync.service.windows.plan_permissions).
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sync.errors import DteSyncError

GROUP_OTHERS = stat.S_IRWXG | stat.S_IRWXO
OTHERS = stat.S_IRWXO


@dataclass(frozen=True)
class Loose:
    """A path that more users than it should may read, write or enter."""

    path: Path
    mode: int  # its permission bits
    role: str  # what it holds: certificate | caf | state | secret | erp (a folder the ERP shares)
    forbidden: int  # the bits it must not have

    @property
    def wanted(self) -> int:
        """Its mode without the forbidden bits: 0644 -> 0600, 0755 -> 0700 (0750 for ERP folders)."""
        return self.mode & ~self.forbidden


# --- rules 1 and 2: private files and folders ------------------------------------------------------
def loose(path: Path, role: str, forbidden: int = GROUP_OTHERS) -> Loose | None:
    """The rule for everything private: no bit for group or others (an ERP folder: none for
    others). None when the path is fine, missing (other checks name that) or the platform has
    no POSIX modes."""
    if os.name != "posix":
        return None
    try:
        st = path.stat()  # through a link: what matters is who can read the file it leads to
    except OSError:
        return None
    if not st.st_mode & forbidden:
        return None
    return Loose(path, stat.S_IMODE(st.st_mode), role, forbidden)


def key_holders(config: Any) -> list[tuple[Path, str]]:
    """Every path of an installation that holds a private key, with its role."""
    f = config.folders
    paths: list[tuple[Path, str]] = [(Path(config.certificate.path), "certificate"), (f.caf, "caf")]
    if f.caf.is_dir():
        paths += [(p, "caf") for p in sorted(f.caf.glob("*.xml"))]
    paths.append((f.state, "state"))
    if f.state.is_dir():
        paths += [(p, "state") for p in sorted(f.state.glob("*.sqlite*"))]  # with their -wal and -shm
    return paths


def erp_folders(config: Any) -> list[Path]:
    """The folders shared with the ERP's group (never with every user of the machine); those on
    a network share are left out: their modes are the mount's fiction, not a chmod away."""
    from sync.watch.fs import network_fs

    f = config.folders
    return [p for p in (f.inbox, f.outbox, f.archive, f.rejected) if p.is_dir() and not network_fs(p)]


def audit(config: Any) -> list[Loose]:
    """Everything of `config` more users may read than should (check warns, run logs)."""
    found = [loose(path, role) for path, role in key_holders(config)]
    found += [loose(path, "erp", OTHERS) for path in erp_folders(config)]
    return [item for item in found if item is not None]


# --- rule 3: no token in clear ------------------------------------------------------------------
def cleartext(url: str) -> bool:
    """True for http:// to anything but this machine: what is sent there travels unencrypted."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def shown(url: str) -> str:
    """A URL fit for a message or a log: no user:password@, no query string."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: leave it out
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def require_tls(field: str, url: str) -> None:
    """Refuse a URL a token would travel to in clear (URL_INSECURE)."""
    if cleartext(url):
        raise DteSyncError("URL_INSECURE", field=field, found=shown(url))


def token_urls(uplink: Any) -> list[tuple[str, str]]:
    """(config key, URL) of every URL the configured uplink sends its token to."""
    kind = getattr(uplink, "kind", "none")
    keys: tuple[tuple[str, str], ...]
    if kind == "http":
        keys = (("uplink.http.url", "http_url"),)
    elif kind == "sii":
        keys = (("uplink.url", "url"), ("uplink.sii_url", "sii_url"), ("uplink.api_url", "api_url"),
                ("uplink.api_envio_url", "api_envio_url"))
    else:
        return []
    return [(key, value) for key, attr in keys if isinstance(value := getattr(uplink, attr, None), str)]


def config_urls(raw: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    """(dotted key, value) of every http(s):// string in a parsed TOML document."""
    if isinstance(raw, str):
        if raw.strip().lower().startswith(("http://", "https://")):
            yield prefix, raw
    elif isinstance(raw, dict):
        for key, value in raw.items():
            yield from config_urls(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(raw, list):
        for i, value in enumerate(raw):
            yield from config_urls(value, f"{prefix}[{i}]")
