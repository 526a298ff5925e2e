"""Alerts that reach a person: e-mail and webhook notifiers for the alerts hub (sync.alerts).

The hub decides *when* (once per condition, once more when it ends); a notifier only delivers.
Delivery runs on the notifier's own thread: the caller (a printer sender, the uplink, a worker)
never waits on a mail server. A failed delivery is retried with backoff for a while, then
logged and dropped; it never stops the other notifiers.

- `EmailNotifier`: the delivery stage's SMTP server and sender ([delivery] smtp_host,
  smtp_port, smtp_tls, smtp_user, smtp_password, from; sync.delivery.mail.SmtpSender), to
  `[alerts] email_to`. Certificates are verified.
- `WebhookNotifier`: a JSON POST to `[alerts] webhook` (requests; TLS verified, no proxy from
  the environment, like the uplink).
"""

from __future__ import annotations

import email.policy
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any

from sync.alerts import Alert, LogNotifier, Notifier
from sync.backoff import Backoff
from sync.delivery.mail import SmtpSender, SmtpSettings
from sync.errors import DteSyncError
from sync.secrets import read_secret

if TYPE_CHECKING:
    from sync.config import Config

log = logging.getLogger("dtesync.notifiers")

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


def smtp_of(delivery: Any) -> SmtpSettings:
    """The delivery stage's SMTP settings ([delivery], sync.delivery.settings.DeliveryConfig)."""
    password = delivery.smtp_password
    return SmtpSettings(delivery.smtp_host, delivery.smtp_port, delivery.smtp_tls, delivery.smtp_user,
                        (lambda: read_secret(password, name="delivery.smtp_password")) if password else None,
                        delivery.ca_bundle, delivery.smtp_timeout)


class EmailNotifier(QueuedNotifier):
    """Alerts by e-mail through the delivery stage's SMTP server and sender (sync.delivery.mail:
    TLS verified, the password read only when logging in)."""

    name = "email"

    def __init__(self, smtp: SmtpSettings, sender: str, to: list[str], *, lang: str = "es",
                 installation: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.smtp, self.sender, self.to, self.lang = smtp, sender, to, lang
        self.installation = installation or {}

    def message(self, d: Delivery) -> EmailMessage:
        a, es = d.alert, self.lang != "en"
        who = self.installation.get("razon_social") or "dtesync"
        tag = ("RESUELTO" if es else "RESOLVED") if d.resolved else (
            ("ERROR" if a.level == "ERROR" else "AVISO") if es else a.level)
        text = a.message(self.lang)
        msg = EmailMessage()
        msg["Subject"] = f"[dtesync {who}] {tag}: {text[:140]}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(d.at, localtime=True)
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
        data = self.message(d).as_bytes(policy=email.policy.SMTP)
        with SmtpSender(self.smtp) as smtp:
            for rcpt in self.to:
                smtp.send(self.sender, rcpt, data, lambda: None)


def build_notifiers(config: Config) -> list[Notifier]:
    """The log always; e-mail and the webhook where [alerts] asks for them."""
    lang = config.language
    installation = {"rut": str(config.company.rut), "razon_social": config.company.razon_social}
    out: list[Notifier] = [LogNotifier(lang)]
    a = config.alerts
    if a.email_to:
        delivery = getattr(config, "delivery", None)
        if delivery is None:
            raise DteSyncError("CONFIG_INVALID", field="alerts.email_to",
                               params={"detail": "falta [delivery] (smtp_host, from) para enviar correos"})
        out.append(EmailNotifier(smtp_of(delivery), delivery.from_, a.email_to, lang=lang, installation=installation))
    if a.webhook:
        out.append(WebhookNotifier(a.webhook, lang=lang, installation=installation))
    return out


def close_notifiers(notifiers: list[Notifier], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for n in notifiers:
        if isinstance(n, QueuedNotifier):
            n.close(max(0.1, deadline - time.monotonic()))
