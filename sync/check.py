"""`dtesync check`: everything that is wrong with an installation, each problem with its fix.

An admin runs one command after installing, after editing the config, or when documents stop
flowing. Each check yields `Finding`s (OK / WARN / FAIL, what, and for problems the fix); the
command prints one line per finding and exits 1 when anything FAILs. Checks only read, except
a probe file created, renamed and deleted in each folder (the daemon needs exactly that).

Areas: configuration (TOML syntax with the line, invalid values with the key), certificate
(readable, password, RUT, expiry), CAFs per TipoDTE (FRMA, company, expiry, stock), folders
(exist, writable, rename, state not on a share), printers (when [printing] has stations) and
the uplink (when [uplink] exists: DNS, TLS, authentication). Printing and uplink settings are
read defensively from `config.raw`, so this module works whatever those sections grow into.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import ssl
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from sync.config import Config, default_config_path, parse_config
from sync.errors import DteSyncError
from sync.sii import is_boleta

OK, WARN, FAIL = "OK", "WARN", "FAIL"
CERT_WARN_DAYS = 30
CAF_WARN_DAYS = 30
MIN_FREE_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    level: str  # OK | WARN | FAIL
    subject: str  # what was checked: "certificado", "CAF TipoDTE 33", "folders.outbox"
    message: str
    fix: str = ""


class _Say:
    """Spanish by default, English by configuration (like the error catalog)."""

    def __init__(self, lang: str = "es") -> None:
        self.lang = lang

    def __call__(self, es: str, en: str) -> str:
        return en if self.lang == "en" else es


@dataclass
class Probes:
    """The network edges, injectable for tests (loopback only there)."""

    resolve: Callable[..., Any] = socket.getaddrinfo
    connect: Callable[..., socket.socket] = socket.create_connection
    timeout: float = 5.0


def run_checks(
    config_path: Path | str | None = None,
    *,
    now: datetime | None = None,
    environ: Mapping[str, str] | None = None,
    probes: Probes | None = None,
) -> list[Finding]:
    """Every check, in the order an admin fixes things: config first (nothing else runs
    without it), then certificate and secrets, CAFs, folders and who may read them, URLs,
    printers, uplink."""
    now = now or datetime.now(timezone.utc)
    probes = probes or Probes()
    config, findings = check_config(config_path)
    if config is None:
        return findings
    say = _Say(config.language)
    checks: tuple[Callable[[], list[Finding]], ...] = (
        lambda: check_certificate(config, now, environ, say),
        lambda: check_secrets(config, environ, say),
        lambda: check_cafs(config, now.date(), say),
        lambda: check_folders(config, say),
        lambda: check_permissions(config, say),
        lambda: check_urls(config, say),
        lambda: check_printers(config, probes, say),
        lambda: check_uplink(config, probes, say, now, environ),
    )
    for check in checks:
        try:
            findings += check()
        except Exception as exc:  # a check that crashes must not hide the others
            findings.append(Finding(FAIL, "check", f"{type(exc).__name__}: {exc}",
                                    say("informe este error a quien mantiene dtesync", "report this to the dtesync maintainers")))
    return findings


def exit_code(findings: Iterable[Finding]) -> int:
    return 1 if any(f.level == FAIL for f in findings) else 0


def render(findings: Iterable[Finding], lang: str = "es") -> str:
    """One line per check (`LEVEL subject: message`), the fix indented under each problem."""
    say = _Say(lang)
    lines = []
    for f in findings:
        lines.append(f"{f.level:<4} {f.subject}: {f.message}")
        if f.fix and f.level != OK:
            lines.append(f"     {say('solución', 'fix')}: {f.fix}")
    return "\n".join(lines)


# --- configuration --------------------------------------------------------------------------------
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def check_config(path: Path | str | None) -> tuple[Config | None, list[Finding]]:
    path = Path(path) if path else default_config_path()
    subject = f"configuración {path}"
    example = "config/dtesync.example.toml"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None, [Finding(FAIL, subject, "no existe el archivo de configuración",
                              f"cree {path} a partir de {example}, o indique otro con --config / DTESYNC_CONFIG")]
    except PermissionError:
        return None, [Finding(FAIL, subject, "no se puede leer (permiso denegado)",
                              f"dé lectura al usuario del servicio: chgrp dtesync {path} && chmod 640 {path}")]
    except UnicodeDecodeError as exc:
        return None, [Finding(FAIL, subject, f"no está en UTF-8 (byte {exc.start})",
                              "guarde el archivo como UTF-8 (sin BOM)")]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_POS.search(str(exc))
        if not m:
            return None, [Finding(FAIL, subject, f"TOML inválido: {exc}", "corrija la sintaxis TOML")]
        line_no = int(m.group(1))
        lines = text.splitlines()
        shown = lines[line_no - 1].strip() if 0 < line_no <= len(lines) else ""
        detail = _TOML_POS.sub("", str(exc)).strip()
        return None, [Finding(FAIL, f"{path}:{line_no}", f"TOML inválido en la línea {line_no}, columna {m.group(2)}: "
                              f"{detail} -> {shown!r}",
                              f"corrija la línea {line_no} de {path} (texto entre comillas, tablas [seccion], clave = valor)")]
    try:
        config = parse_config(data, base=path.parent, path=path)
    except DteSyncError as exc:
        key = exc.field or "?"
        line = _key_line(text, key)
        where = f"{path}:{line}" if line else str(path)
        return None, [Finding(FAIL, where, f"clave '{key}': {exc.params.get('detail') or exc.message('es')}",
                              f"corrija '{key}' en {path}" + (f" (línea {line})" if line else "") +
                              f"; cada opción está explicada en {example}")]
    return config, [Finding(OK, subject, f"empresa {config.company.rut} ({config.company.razon_social}), "
                                         f"ambiente {config.environment}")]


def _key_line(text: str, dotted: str) -> int | None:
    """The line that sets `dotted` (a.b.c -> `c = ` under `[a.b]`), for messages; best effort."""
    parts = re.sub(r"\[\d+\]", "", dotted).split(".")
    table, leaf = ".".join(parts[:-1]), parts[-1]
    current = ""
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", s)
        if header:
            current = header.group(1)
            continue
        if current == table and re.match(rf"^{re.escape(leaf)}\s*=", s):
            return i
        if not table and not current and re.match(rf"^{re.escape(leaf)}\s*=", s):
            return i
    return None


# --- certificate ----------------------------------------------------------------------------------
def check_certificate(config: Config, now: datetime, environ: Mapping[str, str] | None, say: _Say) -> list[Finding]:
    from sync.secrets import read_secret
    from sync.signing.certificate import Certificate, load_pkcs12

    path, ref = config.certificate.path, config.certificate.password
    subject = say("certificado", "certificate")
    try:
        password = read_secret(ref, name="certificate.password", environ=environ)
    except DteSyncError as exc:
        if exc.code == "SECRET_FILE_INSECURE":
            fix = f"chmod 600 {ref.file} && chown dtesync {ref.file}"
        elif ref.env:
            fix = say(f"defina la variable {ref.env} para el servicio (systemd: 'systemctl edit dtesync' -> "
                      f"Environment={ref.env}=...; mejor: password = {{ file = \"/etc/dtesync/cert/password\" }})",
                      f"set {ref.env} for the service, or use password = {{ file = \"...\" }}")
        else:
            fix = say(f"escriba la contraseña en {ref.file} (una línea, chmod 600, dueño el usuario del servicio)",
                      f"write the password to {ref.file} (one line, chmod 600, owned by the service user)")
        return [Finding(FAIL, f"{subject} (certificate.password)", exc.message(say.lang), fix)]
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [Finding(FAIL, subject, f"{path}: {exc.strerror}",
                        say(f"copie el .pfx de la empresa en {path} (o corrija certificate.path), legible solo por el usuario "
                            f"del servicio: chown dtesync {path} && chmod 600 {path}",
                            f"copy the company's .pfx to {path} (or fix certificate.path) readable by the service user"))]
    try:
        cert = load_pkcs12(data, password, now=now, source=str(path))
        expired = None
    except DteSyncError as exc:
        if exc.code == "CERT_PASSWORD":
            where = f"la variable {ref.env}" if ref.env else str(ref.file)
            return [Finding(FAIL, subject, exc.message(say.lang) + f" ({path})",
                            say(f"la contraseña en {where} no abre {path}: escriba la contraseña con que se exportó el "
                                "certificado (sin espacios ni líneas extra)",
                                f"the password in {where} does not open {path}: use the export password"))]
        if exc.code not in ("CERT_EXPIRED", "CERT_NOT_YET_VALID"):
            return [Finding(FAIL, subject, exc.message(say.lang),
                            say("reexporte el certificado como .pfx con su clave privada", "re-export the .pfx with its key"))]
        from cryptography.hazmat.primitives.serialization import pkcs12

        key, x509cert, _ = pkcs12.load_key_and_certificates(data, password.encode("utf-8"))
        if key is None or x509cert is None:  # opened (the error was its dates), so both are there
            return [Finding(FAIL, subject, exc.message(say.lang), say("reexporte el certificado", "re-export it"))]
        cert, expired = Certificate.from_key_and_cert(key, x509cert), exc
    rut = str(cert.rut) if cert.rut else None
    cn = next((str(a.value) for a in cert.x509.subject if a.oid.dotted_string == "2.5.4.3"), cert.subject)
    days = (cert.not_after - now).days
    facts = f"{cn}, RUT {rut or '?'}, " + say(f"vence {cert.not_after.date()} ({days} días)",
                                                 f"expires {cert.not_after.date()} ({days} days)")
    out: list[Finding] = []
    if expired is not None:
        return [Finding(FAIL, subject, f"{facts}: {expired.message(say.lang)}",
                        say(f"renueve el certificado con su proveedor (E-Cert, Acepta, ...), reemplace {path} y su "
                            "contraseña, ejecute 'dtesync check' y reinicie el servicio (docs/operations.md)",
                            f"renew the certificate, replace {path} and its password, restart the service"))]
    if rut is None:
        out.append(Finding(WARN, subject, facts + say(": el certificado no trae RUT", ": no RUT in the certificate"),
                           say("el SII exige un certificado con el RUT del firmante: use uno acreditado",
                               "the SII requires a certificate carrying the signer's RUT")))
    elif days < CERT_WARN_DAYS:
        out.append(Finding(WARN, subject, facts, say(f"renueve el certificado antes del {cert.not_after.date()}",
                                                     f"renew the certificate before {cert.not_after.date()}")))
    else:
        note = "" if cert.rut == config.company.rut else say(
            f"; firmante distinto de la empresa {config.company.rut}: debe estar autorizado en el SII para firmar por ella",
            f"; the signer is not the company {config.company.rut}: it must be authorized at the SII")
        out.append(Finding(OK, subject, facts + note))
    return out


# --- secrets, permissions, URLs: the rules `dtesync run` applies (sync.exposure) ------------------
def check_secrets(config: Config, environ: Mapping[str, str] | None, say: _Say) -> list[Finding]:
    """The secrets besides the certificate password (read with the certificate), read exactly
    as `run` reads them: a missing or group/world-readable one fails here as it stops `run`."""
    from sync.secrets import read_secret

    uplink = config.uplink
    if getattr(uplink, "kind", "none") != "http" or uplink.http_token is None:
        return []
    ref, subject = uplink.http_token, "uplink.http.token"
    try:
        read_secret(ref, name=subject, environ=environ)
    except DteSyncError as exc:
        if exc.code == "SECRET_FILE_INSECURE":
            fix = f"chmod 600 {ref.file} && chown dtesync {ref.file}"
        elif ref.env:
            fix = say(f"defina la variable {ref.env} para el servicio, o use token = {{ file = \"...\" }} (chmod 600)",
                      f"set {ref.env} for the service, or use token = {{ file = \"...\" }} (chmod 600)")
        else:
            fix = say(f"escriba el token en {ref.file} (una línea, chmod 600, dueño el usuario del servicio)",
                      f"write the token to {ref.file} (one line, chmod 600, owned by the service user)")
        return [Finding(FAIL, subject, exc.message(say.lang), fix)]
    where = f"variable {ref.env}" if ref.env else str(ref.file)
    return [Finding(OK, subject, say(f"disponible ({where})", f"available ({where})"))]


def check_permissions(config: Config, say: _Say) -> list[Finding]:
    """What holds a key readable by others, and ERP folders open to every user (WARN: `run`
    logs the same list at start, sync.exposure.audit)."""
    from sync.exposure import audit

    what = {
        "certificate": say("el certificado (trae la clave privada de la firma)", "the certificate (holds the signing key)"),
        "caf": say("CAF (cada uno trae la clave privada de sus folios)", "CAF (each holds its folios' private key)"),
        "state": say("estado (la base de folios guarda los CAF y sus claves)", "state (the folio database keeps the CAFs' keys)"),
        "erp": say("carpeta compartida con el ERP", "folder shared with the ERP"),
    }
    out = []
    for item in audit(config):
        who = say("otros usuarios del equipo", "other users of this machine") if item.role == "erp" else say(
            "el grupo u otros usuarios", "its group or other users")
        owner = "" if item.role == "erp" else f" && chown dtesync {item.path}"
        out.append(Finding(WARN, f"{say('permisos', 'permissions')} {item.path}",
                           say(f"{what[item.role]}: modo {item.mode:o}, {who} pueden leerlo",
                               f"{what[item.role]}: mode {item.mode:o}, {who} can read it"),
                           say(f"chmod {item.wanted:o} {item.path}{owner} (solo el usuario del servicio; docs/operations.md, "
                               "'Permissions')", f"chmod {item.wanted:o} {item.path}{owner} (the service user only; "
                               "docs/operations.md, 'Permissions')")))
    if not out and os.name == "posix":
        out.append(Finding(OK, say("permisos", "permissions"), say(
            "certificado, CAF y estado solo para su dueño; carpetas del ERP cerradas a otros usuarios",
            "certificate, CAFs and state private to their owner; ERP folders closed to other users")))
    return out


def check_urls(config: Config, say: _Say) -> list[Finding]:
    """http:// URLs: FAIL where `run` refuses them (the uplink's token would travel in clear),
    WARN for any other in the configuration (a webhook, a URL the uplink does not use now)."""
    from sync.exposure import cleartext, config_urls, shown, token_urls

    refused = {key for key, url in token_urls(config.uplink) if cleartext(url)}
    out = []
    for key, url in config_urls(config.raw):
        if not cleartext(url):
            continue
        fix = say(f"use https:// en '{key}' ({config.path})", f"use https:// in '{key}' ({config.path})")
        if key in refused:
            err = DteSyncError("URL_INSECURE", field=key, found=shown(url))
            out.append(Finding(FAIL, key, f"URL_INSECURE: {err.message(say.lang)}", fix))
        else:
            out.append(Finding(WARN, key, say(f"{shown(url)} usa http://: lo que se envíe ahí viaja sin cifrar",
                                              f"{shown(url)} uses http://: whatever is sent there travels unencrypted"), fix))
    return out


# --- CAFs -----------------------------------------------------------------------------------------
def check_cafs(config: Config, today: date, say: _Say) -> list[Finding]:
    from sync.folios.caf import load_caf, verify_frma
    from sync.folios.store import FILE_NAME as FOLIO_DB
    from sync.runtime import trusted_caf_keys

    out: list[Finding] = []
    folder = config.folders.caf
    try:
        keys = trusted_caf_keys(config)
    except DteSyncError as exc:
        out.append(Finding(FAIL, "caf.trusted_keys", exc.message(say.lang), say("corrija la ruta de la clave", "fix the key path")))
        keys = {}
    request = say(f"solicite un CAF nuevo en sii.cl (Factura electrónica -> Timbraje electrónico) y cópielo en {folder} "
                  "o impórtelo con 'dtesync caf import ARCHIVO'",
                  f"request a new CAF at sii.cl and copy it to {folder} or run 'dtesync caf import FILE'")
    # What the folio database already holds (imported CAFs, used folios).
    store = None
    db_path = config.folders.state / FOLIO_DB
    stock: dict[int, Any] = {}
    known: set[str] = set()
    db_types: set[int] = set()
    if db_path.exists():
        from sync.folios.store import FolioStore

        store = FolioStore.open_readonly(db_path)
        stock = {row.tipo_dte: row for row in store.stock(today)}
        for caf in store.list_cafs():
            known.add(caf.fingerprint)
            db_types.add(caf.tipo_dte)
    # What the CAF folder holds (imported at the next start).
    extra: dict[int, int] = {}
    extra_expiry: dict[int, date | None] = {}
    expired_files: dict[int, list[str]] = {}
    files = sorted(folder.glob("*.xml")) if folder.is_dir() else []
    for path in files:
        name = f"CAF {path.name}"
        try:
            caf = load_caf(path.read_bytes())
        except DteSyncError as exc:
            out.append(Finding(FAIL, name, exc.message(say.lang),
                               say("descargue el CAF otra vez desde sii.cl, sin abrirlo ni editarlo",
                                   "download the CAF again from sii.cl, unedited")))
            continue
        except OSError as exc:
            out.append(Finding(FAIL, name, exc.strerror or str(exc), say("dé lectura al usuario del servicio", "make it readable")))
            continue
        frma = verify_frma(caf, keys)
        if frma is False:
            out.append(Finding(FAIL, name, say(f"la firma del SII (FRMA, IDK {caf.idk}) no verifica: el archivo fue alterado "
                                               "o no es del SII", f"the SII signature (FRMA, IDK {caf.idk}) does not verify"),
                               say(f"borre {path} y descargue el CAF otra vez desde sii.cl", f"delete {path}; download it again")))
            continue
        if caf.rut_emisor != config.company.rut:
            out.append(Finding(FAIL, name, say(
                f"el CAF es de la empresa {caf.rut_emisor} ({caf.razon_social}), no de {config.company.rut}",
                f"the CAF belongs to {caf.rut_emisor} ({caf.razon_social}), not {config.company.rut}"),
                say(f"saque {path.name} de {folder}; si la empresa es {caf.rut_emisor}, corrija company.rut",
                    f"remove {path.name} from {folder}; or fix company.rut")))
            continue
        if frma is None:
            out.append(Finding(WARN, name, say(f"IDK {caf.idk} desconocido: no se puede verificar la firma del SII",
                                               f"unknown IDK {caf.idk}: cannot verify the SII signature"),
                               say("solo en un sandbox: agregue su clave en [caf.trusted_keys]", "sandbox only: add [caf.trusted_keys]")))
        if caf.is_expired(today):
            expired_files.setdefault(caf.tipo_dte, []).append(f"{path.name} ({caf.expires_on})")
            continue
        if caf.fingerprint not in known:
            extra[caf.tipo_dte] = extra.get(caf.tipo_dte, 0) + caf.size
            prev = extra_expiry.get(caf.tipo_dte)
            extra_expiry[caf.tipo_dte] = caf.expires_on if prev is None else min(prev, caf.expires_on or prev)
    # Which types matter: any with a CAF, any the journal has signed, any listed in [check] tipos_dte.
    wanted = set(db_types) | set(extra) | set(expired_files) | _journal_types(config) | _configured_types(config)
    low = config.alerts.caf_stock_min  # the same threshold as the daemon's alerts
    if not wanted:
        out.append(Finding(FAIL, "CAF", say(f"no hay ningún CAF (carpeta {folder})", f"no CAF at all (folder {folder})"), request))
    for tipo in sorted(wanted):
        subject = f"CAF TipoDTE {tipo}"
        row = stock.get(tipo)
        available = (row.available if row else 0) + extra.get(tipo, 0)
        expiries = [d for d in ((row.expires_on if row else None), extra_expiry.get(tipo)) if d]
        expires = min(expiries) if expiries else None
        if available == 0:
            if expired_files.get(tipo):
                why = say(f"sin folios utilizables: CAF vencido {', '.join(expired_files[tipo])}",
                          f"no usable folios: expired CAF {', '.join(expired_files[tipo])}")
            elif tipo in db_types:
                why = say("sin folios: los CAF cargados están agotados o vencidos", "no folios left: CAFs used up or expired")
            else:
                why = say("no hay CAF para este tipo de documento", "no CAF for this document type")
            out.append(Finding(FAIL, subject, why, request))
            continue
        facts = say(f"{available} folios disponibles", f"{available} folios available") + (
            say(f", vence {expires}", f", expires {expires}") if expires else "")
        if available < low:
            out.append(Finding(WARN, subject, facts + say(f" (menos de {low})", f" (fewer than {low})"), request))
        elif expires and (expires - today).days < CAF_WARN_DAYS:
            out.append(Finding(WARN, subject, facts, say(f"los folios no usados se pierden el {expires}: {request}",
                                                         f"unused folios are lost on {expires}: {request}")))
        else:
            out.append(Finding(OK, subject, facts))
        if expired_files.get(tipo):
            out.append(Finding(WARN, subject, say(f"CAF vencido en la carpeta: {', '.join(expired_files[tipo])}",
                                                  f"expired CAF in the folder: {', '.join(expired_files[tipo])}"),
                               say(f"sáquelo de {folder} (no sirve; los folios no usados deben anularse en el SII)",
                                   f"remove it from {folder}")))
    if store is not None:
        pending = store.pending_annulment()
        if pending:
            out.append(Finding(WARN, "folios", say(f"{len(pending)} folios pendientes de anulación", f"{len(pending)} folios to annul"),
                               say("anúlelos en sii.cl (Timbraje electrónico -> Anulación de folios); 'dtesync caf stock' los lista",
                                   "annul them at sii.cl; 'dtesync caf stock' lists them")))
        store.close()
    return out


def _raw(config: Config, section: str, key: str, default: Any) -> Any:
    value = (config.raw.get(section) or {}).get(key, default) if isinstance(config.raw.get(section), dict) else default
    return value


def _configured_types(config: Config) -> set[int]:
    value = _raw(config, "check", "tipos_dte", [])
    return {int(t) for t in value if isinstance(t, int) or str(t).isdigit()} if isinstance(value, list) else set()


def _journal_types(config: Config) -> set[int]:
    """TipoDTE the daemon has issued (read-only; a running daemon is not disturbed)."""
    from sync.journal import FILE_NAME, Journal
    from sync.storage import StorageError

    path = config.folders.state / FILE_NAME
    if not path.exists():
        return set()
    try:
        with Journal.open_readonly(path) as journal:
            rows = journal.conn().execute("SELECT DISTINCT tipo_dte FROM documents WHERE tipo_dte IS NOT NULL")
            return {r[0] for r in rows}
    except (sqlite3.Error, StorageError):
        return set()


# --- folders --------------------------------------------------------------------------------------
def check_folders(config: Config, say: _Say) -> list[Finding]:
    from sync.watch.fs import network_fs

    f = config.folders
    out: list[Finding] = []
    owner = say("el usuario del servicio (Linux: chown -R dtesync:dtesync {p}; Windows: icacls \"{p}\" /grant "
                "\"<cuenta del servicio>\":(OI)(CI)M)",
                "the service user (Linux: chown -R dtesync:dtesync {p}; Windows: icacls \"{p}\" /grant \"<service account>\":(OI)(CI)M)")
    for key, path, write in (("inbox", f.inbox, True), ("outbox", f.outbox, True), ("archive", f.archive, True),
                             ("rejected", f.rejected, True), ("state", f.state, True), ("caf", f.caf, False)):
        subject = f"folders.{key}"
        if not path.exists():
            hint = say(" (si es una carpeta de red, ¿está montada? En Windows use la ruta UNC \\\\servidor\\recurso, "
                       "no una letra de unidad)", " (if it is a network share: is it mounted? On Windows use a UNC path)")
            out.append(Finding(FAIL, subject, say(f"{path} no existe", f"{path} does not exist") + hint,
                               say(f"créela (mkdir -p {path}) y désela a ", f"create it (mkdir -p {path}) for ") + owner.format(p=path)))
            continue
        if not path.is_dir():
            out.append(Finding(FAIL, subject, say(f"{path} no es una carpeta", f"{path} is not a folder"),
                               say(f"corrija folders.{key} en {config.path}", f"fix folders.{key} in {config.path}")))
            continue
        problem = _probe_rename(path) if write else (None if os.access(path, os.R_OK | os.X_OK) else "no se puede leer")
        if problem:
            out.append(Finding(FAIL, subject, say(f"{path}: no se puede escribir ni renombrar ({problem})",
                                                  f"{path}: cannot write and rename ({problem})"),
                               say("dé permiso de escritura a ", "grant write access to ") + owner.format(p=path)))
            continue
        share = network_fs(path)
        if key == "state" and share:
            out.append(Finding(FAIL, subject, say(f"{path} está en una carpeta de red ({share}): el diario y la base de folios "
                                                  "(SQLite WAL) se corrompen en red", f"{path} is on a network share ({share}): "
                                                  "SQLite WAL corrupts there"),
                               say("use un disco local para folders.state (Linux: /var/lib/dtesync; Windows: "
                                   "%PROGRAMDATA%\\dtesync\\state)", "put folders.state on a local disk")))
            continue
        if key == "inbox" and share and config.daemon.watch == "events":
            out.append(Finding(WARN, subject, say(f"{path} está en red ({share}) y daemon.watch = 'events': no llegan eventos "
                                                  "de otros equipos", f"{path} is on a share ({share}) with watch = 'events'"),
                               say("use daemon.watch = 'auto' o 'poll'", "use daemon.watch = 'auto' or 'poll'")))
            continue
        note = say(f" (red: {share})", f" (network: {share})") if share else ""
        if key == "state":
            try:
                free = _free_bytes(path)
            except OSError:
                free = None
            if free is not None and free < MIN_FREE_BYTES:
                out.append(Finding(WARN, subject, say(f"quedan {free // 2**20} MB libres en {path}", f"{free // 2**20} MB free"),
                                   say("libere espacio: el diario necesita escribir", "free some disk space")))
                continue
        out.append(Finding(OK, subject, f"{path}{note}"))
    return out


def _free_bytes(path: Path) -> int:
    import shutil

    return shutil.disk_usage(path).free


def _probe_rename(folder: Path) -> str | None:
    """Create, rename and delete a hidden file: what the daemon does in every folder."""
    probe = folder / f".dtesync-check-{os.getpid()}.tmp"
    moved = folder / f".dtesync-check-{os.getpid()}"
    try:
        with open(probe, "xb") as fh:
            fh.write(b"dtesync check\n")
        os.replace(probe, moved)
        os.unlink(moved)
        return None
    except OSError as exc:
        for p in (probe, moved):
            try:
                p.unlink()
            except OSError:
                pass
        return exc.strerror or str(exc)


# --- printers -------------------------------------------------------------------------------------
def check_printers(config: Config, probes: Probes, say: _Say) -> list[Finding]:
    """Only when [printing] lists stations: each connector reachable (TCP connect, device
    present and writable, queue name known), and each station's paper and printer able to
    carry the SII's rules for the documents it may get (sync.printing.rules): facturas, notas
    and guías only on paper >= 7.5 cm with room for a 4 x 9 cm timbre, boletas only above
    200 dpi. Read from config.raw: the printing section's shape is owned by sync.printing."""
    printing = config.raw.get("printing")
    if not isinstance(printing, dict):
        return []
    stations = printing.get("stations") or []
    out: list[Finding] = []
    for i, st in enumerate(stations if isinstance(stations, list) else []):
        if not isinstance(st, dict):
            continue
        name = str(st.get("name", i))
        conn: dict[str, Any] = st["connector"] if isinstance(st.get("connector"), dict) else st
        kind = str(conn.get("type", "")).lower()
        subject = say(f"impresora {name}", f"printer {name}")
        if st.get("virtual") is True:  # no printer: its boletas are e-mailed (sync.delivery)
            out.append(Finding(OK, subject, say("estación virtual: sin impresora", "virtual station: no printer")))
            continue
        out += _printer_rules(config, st, subject, say)
        if kind in ("tcp", "network"):
            host, port = str(conn.get("host", "")), int(conn.get("port", 9100))
            problem = _tcp_probe(host, port, probes)
            if problem:
                out.append(Finding(FAIL, subject, f"{host}:{port}: {problem}",
                                   say(f"encienda la impresora y revise cable/red; confirme su IP ({host}) y que acepte "
                                       f"RAW en el puerto {port}", f"power it on, check the network, its IP and RAW port {port}")))
            else:
                out.append(Finding(OK, subject, f"tcp {host}:{port}"))
        elif kind in ("file", "serial"):
            dev = Path(str(conn.get("device") or conn.get("path") or conn.get("port") or ""))
            if not dev.exists():
                out.append(Finding(FAIL, subject, say(f"{dev} no existe", f"{dev} does not exist"),
                                   say("conecte la impresora; revise el nombre del dispositivo (ls /dev/usb/ /dev/tty*)",
                                       "plug the printer in; check the device name")))
            elif not os.access(dev, os.W_OK):
                out.append(Finding(FAIL, subject, say(f"{dev}: sin permiso de escritura", f"{dev}: not writable"),
                                   say("el servicio ya está en los grupos lp y dialout; revise el grupo del dispositivo "
                                       f"(ls -l {dev}) o una regla udev", "check the device group (lp/dialout) or a udev rule")))
            else:
                out.append(Finding(OK, subject, f"{kind} {dev}"))
        elif kind in ("usb", "win32", "cups"):
            problem = _connector_support(conn, say)
            if problem:
                out.append(Finding(FAIL, subject, problem, say("instale lo que se indica, o use otro conector",
                                                                "install what it names, or use another connector")))
                continue
            out.append(Finding(WARN, subject, say(f"conector {kind}: no se puede probar sin imprimir",
                                                  f"{kind} connector: cannot be probed without printing"),
                               say("pruebe con 'dtesync print' una boleta de ejemplo", "test with 'dtesync print'")))
        else:
            out.append(Finding(FAIL, subject, say(f"conector desconocido {kind!r}", f"unknown connector {kind!r}"),
                               say("use type = tcp | usb | serial | win32 | cups | file", "use a known connector type")))
    return out


def _printer_rules(config: Config, st: dict[str, Any], subject: str, say: _Say) -> list[Finding]:
    """What the SII's rules say about this station's paper and printer (FAIL: refuse now, not
    at the first factura)."""
    try:
        from sync.printing.profiles import load_profile
        from sync.printing.rules import BOLETA_MIN_DPI, DESIGN_TED_BYTES, capacity_ok
    except ImportError:
        return []
    try:
        profile = load_profile(str(st.get("profile", "generic-80mm")), config.printing.profiles)
    except DteSyncError as exc:
        return [Finding(FAIL, subject, exc.message(say.lang),
                        say("use un perfil incluido (dtesync printers list) o corrija el archivo del perfil",
                            "use a built-in profile or fix the profile file"))]
    types = st.get("types")
    types = [t for t in types if isinstance(t, int)] if isinstance(types, list) else None
    boletas = types is None or any(is_boleta(t) for t in types)
    others = types is None or any(not is_boleta(t) for t in types)
    x_mm = profile.module_dots * profile.dot_mm
    paper, printable = profile.paper_mm, profile.printable_mm
    out = []
    if others:
        why = capacity_ok(33, paper_mm=paper, printable_mm=printable, x_mm=x_mm)
        if why:
            out.append(Finding(FAIL, subject, say(
                f"perfil {profile.name}: no puede imprimir facturas, notas ni guías ({why})",
                f"profile {profile.name} cannot print facturas, notas or guías ({why})"), say(
                "declare types = [39, 41] en la estación (solo boletas) o use una impresora de 80 mm a 203 dpi; "
                "el SII pide papel de 7,5 cm o más y un timbre de hasta 4 × 9 cm",
                "set types = [39, 41] on the station (boletas only) or use an 80 mm printer at 203 dpi")))
    if boletas:
        if profile.dpi <= BOLETA_MIN_DPI:
            out.append(Finding(FAIL, subject, say(
                f"perfil {profile.name}: {profile.dpi} dpi; el SII pide más de {BOLETA_MIN_DPI} dpi para el timbre "
                "de las boletas (Res. Ex. 74/2020)",
                f"profile {profile.name}: {profile.dpi} dpi; the SII asks more than {BOLETA_MIN_DPI} dpi for boletas"),
                say("use una impresora de 203 dpi o más (p. ej. el perfil epson-tm-t88 de la generación actual)",
                    "use a printer of 203 dpi or more")))
        else:
            why = capacity_ok(39, paper_mm=paper, printable_mm=printable, x_mm=x_mm)
            if why:
                out.append(Finding(FAIL, subject, say(f"perfil {profile.name}: no puede imprimir boletas ({why})",
                                                      f"profile {profile.name} cannot print boletas ({why})"),
                                   say("use papel de 5,7 cm o más", "use paper of 5.7 cm or more")))
    if not out:
        what = say("boletas" if not others else "boletas, facturas, notas y guías" if boletas else "facturas, notas y guías",
                   "boletas" if not others else "every document type" if boletas else "facturas, notas and guías")
        out.append(Finding(OK, subject, say(f"perfil {profile.name} ({profile.paper_mm:g} mm, {profile.dpi} dpi): {what}; "
                                            f"timbre de hasta {DESIGN_TED_BYTES} bytes según las reglas del SII",
                                            f"profile {profile.name} ({profile.paper_mm:g} mm, {profile.dpi} dpi): {what}")))
    return out


def _connector_support(conn: dict[str, Any], say: _Say) -> str | None:
    """sync.printing's own verdict on whether this machine can drive the connector (libusb,
    pywin32, pycups present); None when fine or when the printing package is not there."""
    try:
        from sync.printing.connectors import check as connector_check
    except Exception:
        return None
    try:
        connector_check(conn)
    except DteSyncError as exc:
        return exc.message(say.lang)
    return None


def _tcp_probe(host: str, port: int, probes: Probes) -> str | None:
    try:
        sock = probes.connect((host, port), timeout=probes.timeout)
        sock.close()
        return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


# --- uplink ---------------------------------------------------------------------------------------
def check_uplink(config: Config, probes: Probes, say: _Say, now: datetime,
                 environ: Mapping[str, str] | None) -> list[Finding]:
    """Only when [uplink] exists. If sync.uplink offers `check_uplink(config)` (yielding
    (level, subject, message, fix) tuples) it decides; else DNS + TLS to every host it uses."""
    section = config.raw.get("uplink")
    if not isinstance(section, dict) or section.get("enabled", True) is False:
        return []
    try:
        import sync.uplink as uplink_pkg

        hook = getattr(uplink_pkg, "check_uplink", None)
    except Exception:
        hook = None
    if callable(hook):
        return [Finding(*item) for item in hook(config)]
    out: list[Finding] = []
    for url in _uplink_urls(config, section):
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        subject = f"uplink {host}"
        try:
            probes.resolve(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            out.append(Finding(FAIL, subject, f"DNS: {exc}", say("revise la conexión a internet y el DNS del equipo "
                                                                 "(sin red los documentos se firman igual y quedan en cola)",
                                                                 "check the internet connection and DNS (documents queue meanwhile)")))
            continue
        problem = _tcp_probe(host, port, probes)
        if problem:
            out.append(Finding(FAIL, subject, f"TCP {port}: {problem}", say("revise firewall/proxy de salida hacia " + host,
                                                                          "check the outbound firewall/proxy to " + host)))
            continue
        if parts.scheme == "https":
            problem = _tls_probe(host, port, probes)
            if problem:
                out.append(Finding(FAIL, subject, f"TLS: {problem}",
                                   say("revise la fecha y hora del equipo y los certificados raíz; un proxy que intercepta "
                                       "TLS debe excluir este host", "check the clock, root certificates, TLS-intercepting proxies")))
                continue
        out.append(Finding(OK, subject, f"DNS, TCP{' y TLS' if parts.scheme == 'https' else ''} {say('correctos', 'fine')}"))
    return out


def _uplink_urls(config: Config, section: dict[str, Any]) -> list[str]:
    urls = sorted({v for v in _strings(section) if v.startswith(("https://", "http://"))})
    if urls:
        return urls
    try:
        from sync.uplink.endpoints import ENVIRONMENTS

        return list(ENVIRONMENTS[config.environment])
    except Exception:
        return ["https://maullin.sii.cl" if config.environment == "certificacion" else "https://palena.sii.cl"]


def _strings(node: Any) -> Iterable[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _tls_probe(host: str, port: int, probes: Probes) -> str | None:
    ctx = ssl.create_default_context()
    try:
        with probes.connect((host, port), timeout=probes.timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host):
                return None
    except (OSError, ssl.SSLError) as exc:
        return str(exc)
