"""Alerts that reach a person: e-mail and webhook notifiers for the alerts hub (sync.alerts).

The hub decides *when* (once per condition, once more when it ends); a notifier only delivers.
Delivery runs on the notifier's own thread: the caller (a printer sender, the uplink, a worker)
never waits on a mail server. A failed delivery is retried with backoff for a while, then
logged and dropped; it never stops the other notifiers.

- `EmailNotifier`: SMTP with the [delivery] settings (smtp_host, smtp_port, smtp_security =
  "starttls" | "tls" | "none", smtp_user, smtp_password as a secret reference, smtp_from), to
  `[alerts] email_to`. Certificates are verified (the system's CA store).
- `WebhookNotifier`: a JSON POST to `[alerts] webhook` (requests; TLS verified, no proxy from
  the environment, like the uplink).
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import TYPE_CHECKING, Any

from sync.alerts import Alert, LogNotifier, Notifier
from sync.backoff import Backoff
from sync.errors import DteSyncError
from sync.secrets import SecretRef, read_secret

if TYPE_CHECKING:
    from sync.config import Config

log = logging.getLogger("dtesync.notifiers")

SECURITY = ("starttls", "tls", "none")


@dataclass(frozen=True)
class Delivery:
    """One notice to deliver: the alert, raised or resolved, and when the hub saw it."""

    alert: Alert
    resolved: bool
    at: float


class QueuedNotifier:
    """Delivers on its own thread, in order, retrying each notice up to `attempts` times."""

    name = "notifier"

    def __init__(self, *, attempts: int = 8, backoff: Backoff | None = None) -> None:
        self.attempts = attempts
        self.backoff = backoff or Backoff(2.0, 300.0, "equal")
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def notify(self, alert: Alert, *, resolved: bool) -> None:
        self._queue.put(Delivery(alert, resolved, time.time()))
        with self._lock:
            if self._thread is None and not self._closing.is_set():
                self._thread = threading.Thread(target=self._run, name=f"dtesync-{self.name}", daemon=True)
                self._thread.start()

    def deliver(self, d: Delivery) -> None:
        raise NotImplementedError

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (within `timeout`), then stop."""
        self._queue.put(None)
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._closing.set()

    def _run(self) -> None:
        while True:
            d = self._queue.get()
            if d is None:
                return
            for attempt in range(self.attempts):
                try:
                    self.deliver(d)
                    self.delivered += 1
                    break
                except Exception as exc:
                    last = attempt == self.attempts - 1 or self._closing.is_set()
                    log.warning("alerts: delivery failed%s", "; giving up" if last else "; retrying",
                                extra={"notifier": self.name, "alert": d.alert.key, "error": str(exc)})
                    if last:
                        self.failed += 1
                        break
                    if self._closing.wait(self.backoff.delay(attempt)):
                        pass


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone().isoformat(timespec="seconds")


def payload(alert: Alert, *, resolved: bool, at: float, lang: str, installation: dict[str, str]) -> dict[str, Any]:
    """The JSON a webhook receives (docs/panel.md, "Alerts")."""
    return {
        "source": "dtesync",
        "event": "resolved" if resolved else "raised",
        "key": alert.key,
        "code": alert.code,
        "level": alert.level,
        "message": alert.message(lang),
        "params": {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
                   for k, v in alert.params.items()},
        "since": _iso(alert.since),
        "at": _iso(at),
        "installation": installation,
    }


class WebhookNotifier(QueuedNotifier):
    name = "webhook"

    def __init__(self, url: str, *, lang: str = "es", installation: dict[str, str] | None = None,
                 timeout: tuple[float, float] = (5.0, 15.0), **kw: Any) -> None:
        super().__init__(**kw)
        import requests

        self.url, self.lang, self.timeout = url, lang, timeout
        self.installation = installation or {}
        self.session = requests.Session()
        self.session.verify = True  # never off
        self.session.trust_env = False  # a proxy from the environment must be configured deliberately

    def deliver(self, d: Delivery) -> None:
        body = payload(d.alert, resolved=d.resolved, at=d.at, lang=self.lang, installation=self.installation)
        r = self.session.post(self.url, json=body, timeout=self.timeout, allow_redirects=False,
                              headers={"User-Agent": "dtesync-alerts"})
        if r.status_code >= 300:
            raise RuntimeError(f"HTTP {r.status_code}")


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    security: str = "starttls"
    user: str | None = None
    password: SecretRef | None = None
    sender: str | None = None
    timeout: float = 20.0


def smtp_settings(raw: dict[str, Any]) -> SmtpSettings | None:
    """The SMTP keys of [delivery] (the delivery stage's own), read where alerts need them."""
    d = raw.get("delivery", {}) or {}
    host = d.get("smtp_host")
    if not host:
        return None

    def bad(key: str, detail: str) -> DteSyncError:
        return DteSyncError("CONFIG_INVALID", field=f"delivery.{key}", params={"detail": detail})

    security = d.get("smtp_security", "starttls")
    if security not in SECURITY:
        raise bad("smtp_security", "use " + ", ".join(repr(s) for s in SECURITY))
    port = d.get("smtp_port", {"starttls": 587, "tls": 465, "none": 25}[security])
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise bad("smtp_port", f"se esperaba un puerto, se encontró {port!r}")
    ref = d.get("smtp_password")
    password = None
    if ref is not None:
        if not isinstance(ref, dict):
            raise bad("smtp_password", 'los secretos no van en claro: use { env = "VAR" } o { file = "ruta" }')
        password = SecretRef.of(ref)
    if security == "none" and password is not None and not _loopback(str(host)):
        raise bad("smtp_security", "una contraseña SMTP no viaja sin TLS fuera de este equipo: use starttls o tls")
    return SmtpSettings(host=str(host), port=port, security=security, user=d.get("smtp_user"), password=password,
                        sender=d.get("smtp_from"))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmailNotifier(QueuedNotifier):
    name = "email"

    def __init__(self, smtp: SmtpSettings, to: list[str], *, lang: str = "es",
                 installation: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.smtp, self.to, self.lang = smtp, to, lang
        self.installation = installation or {}

    def message(self, d: Delivery) -> EmailMessage:
        a, es = d.alert, self.lang != "en"
        who = self.installation.get("razon_social") or "dtesync"
        tag = ("RESUELTO" if es else "RESOLVED") if d.resolved else (
            ("ERROR" if a.level == "ERROR" else "AVISO") if es else a.level)
        text = a.message(self.lang)
        msg = EmailMessage()
        msg["Subject"] = f"[dtesync {who}] {tag}: {text[:140]}"
        msg["From"] = self.smtp.sender or f"dtesync@{socket.gethostname()}"
        msg["To"] = ", ".join(self.to)
        msg["Message-ID"] = make_msgid("dtesync")
        lines = [text, "",
                 f"{'Condición' if es else 'Condition'}: {a.key} ({a.code})",
                 f"{'Desde' if es else 'Since'}: {_iso(a.since)}"]
        if d.resolved:
            lines.append(f"{'Resuelta' if es else 'Resolved'}: {_iso(d.at)}")
        if self.installation:
            lines += ["", " ".join(v for v in self.installation.values() if v)]
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def deliver(self, d: Delivery) -> None:
        s = self.smtp
        context = ssl.create_default_context()  # verifies the server's certificate and name
        smtp: smtplib.SMTP
        if s.security == "tls":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        with smtp:
            if s.security == "starttls":
                smtp.starttls(context=context)
            if s.user and s.password is not None:
                smtp.login(s.user, read_secret(s.password, name="delivery.smtp_password"))
            smtp.send_message(self.message(d))


def build_notifiers(config: Config) -> list[Notifier]:
    """The log always; e-mail and the webhook where [alerts] asks for them."""
    lang = config.language
    installation = {"rut": str(config.company.rut), "razon_social": config.company.razon_social}
    out: list[Notifier] = [LogNotifier(lang)]
    a = config.alerts
    if a.email_to:
        smtp = smtp_settings(config.raw)
        if smtp is None:
            raise DteSyncError("CONFIG_INVALID", field="alerts.email_to",
                               params={"detail": "falta [delivery] smtp_host para enviar correos"})
        out.append(EmailNotifier(smtp, a.email_to, lang=lang, installation=installation))
    if a.webhook:
        out.append(WebhookNotifier(a.webhook, lang=lang, installation=installation))
    return out


def close_notifiers(notifiers: list[Notifier], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for n in notifiers:
        if isinstance(n, QueuedNotifier):
            n.close(max(0.1, deadline - time.monotonic()))
