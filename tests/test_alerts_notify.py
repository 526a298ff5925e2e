"""Alerts reach a person: a local SMTP server (aiosmtpd, in-process) and a local webhook
receiver each get exactly one alert and one recovery notice per condition: a printer down, a
queue stuck, the uplink paused, a document rejected by the SII, folios running low."""

from __future__ import annotations

import email
import email.header
import json
import re
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from ops_rig import make_rig
from printing_fixtures import free_port
from sync.alerts import Alert, Alerts, LogNotifier
from sync.config import load_config
from sync.delivery.mail import SmtpSettings
from sync.errors import DteSyncError
from sync.fakesii.server import Faults
from sync.monitor import REJECTION_HOLD
from sync.notifiers import EmailNotifier, WebhookNotifier, build_notifiers, payload
from sync.sandbox.build import create_sandbox


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


class Receiver:
    """A webhook endpoint on 127.0.0.1: keeps every JSON body it is sent."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(503)
                else:
                    outer.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    sb = create_sandbox(tmp_path_factory.mktemp("alerts") / "sb", folios_per_type=200)
    return load_config(sb.config_path)


@pytest.fixture
def smtp():
    box = Mailbox()
    box.port = free_port()  # type: ignore[attr-defined]
    ctl = Controller(box, hostname="127.0.0.1", port=box.port)
    ctl.start()
    yield box
    ctl.stop()


@pytest.fixture
def hook():
    r = Receiver()
    yield r
    r.close()


def notifiers(smtp_box, receiver, lang="es"):
    inst = {"rut": "76192083-9", "razon_social": "Empresa de prueba"}
    fast = {"attempts": 5}
    return [LogNotifier(lang),
            EmailNotifier(SmtpSettings("127.0.0.1", smtp_box.port, "none"), "dte@example.cl", ["admin@example.cl"],
                          lang=lang, installation=inst, **fast),
            WebhookNotifier(receiver.url, lang=lang, installation=inst, **fast)]


def mail_events(box: Mailbox) -> list[tuple[str, str]]:
    out = []
    for m in box.messages:
        body = m.get_payload(decode=True).decode("utf-8")
        key = re.search(r"Condición: (\S+) \(", body).group(1)
        out.append((key, "resolved" if "RESUELTO" in m["Subject"] else "raised"))
    return out


def hook_events(r: Receiver) -> list[tuple[str, str]]:
    return [(b["key"], b["event"]) for b in r.bodies]


def per_key(events: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, ev in events:
        out.setdefault(key, []).append(ev)
    return out


def test_each_condition_reaches_mail_and_webhook_once_raised_once_resolved(tmp_path, base, smtp, hook):
    rig = make_rig(tmp_path / "rig", base, alerts={"queue_stuck_after": 1.5},
                   notifiers=notifiers(smtp, hook))
    try:
        # A printer down long enough for its queue to be stuck, then back.
        rig.printer_down()
        rig.drop("F1.txt")
        rig.wait(lambda: {"printer:caja1", "queue:print:caja1"} <= {a.key for a in rig.app.alerts.active()},
                 what="printer alerts")
        time.sleep(0.6)  # the watcher sees the same condition again: no second notice
        rig.printer_up()
        rig.printer.wait_jobs(1)
        # The uplink paused by an admin, its queue stuck behind it, then resumed.
        rig.stage("uplink").pause("prueba")
        rig.drop("F2.txt")
        rig.wait(lambda: {"uplink:paused", "queue:uplink"} <= {a.key for a in rig.app.alerts.active()},
                 what="uplink alerts")
        time.sleep(0.6)
        rig.stage("uplink").resume()
        rig.wait_state("F2", {"accepted"})
        # A document the SII rejects: an alert until an admin dismisses it (or it is old enough).
        rig.fake.faults = Faults(reject=1.0)
        rig.drop("F3.txt")
        st = rig.wait_state("F3", {"rejected_sii"})
        key = f"rejected_sii:{st['document_id']}"
        rig.wait(lambda: key in {a.key for a in rig.app.alerts.active()}, what="rejection alert")
        rig.stage("monitor").watch_once(now=time.time() + REJECTION_HOLD + 1)
        # Folios running low (the reports stage's own check, same thresholds as `dtesync check`).
        reports = rig.stage("reports")
        reports.config = replace(reports.config, alerts=replace(reports.config.alerts, caf_stock_min=1000))
        reports.check_alerts()
        reports.check_alerts()
        reports.config = replace(reports.config, alerts=replace(reports.config.alerts, caf_stock_min=1))
        reports.check_alerts()
        rig.wait(lambda: not rig.app.alerts.active(), what="every condition resolved")
    finally:
        rig.stop()  # closes the notifiers: what is queued is delivered first
    expected = {"printer:caja1", "queue:print:caja1", "uplink:paused", "queue:uplink", key, "caf_stock:33", "caf_stock:39"}
    for events in (hook_events(hook), mail_events(smtp)):
        by_key = per_key(events)
        assert expected <= set(by_key), by_key
        assert all(v == ["raised", "resolved"] for v in by_key.values()), by_key
    first = next(b for b in hook.bodies if b["key"] == "printer:caja1")
    assert first["code"].startswith("PRINTER") and "caja1" in first["message"]  # the printing stage's own alert
    assert first["installation"]["rut"] == "76192083-9"


def test_a_failed_webhook_delivery_is_retried_not_lost(hook):
    hook.fail_first = 2
    n = WebhookNotifier(hook.url, attempts=5)
    n.backoff = replace(n.backoff, base=0.05, cap=0.1)
    n.notify(Alert("printer:caja1", "PRINTER_DOWN", "WARNING", {"station": "caja1", "detail": "x"}, time.time()),
             resolved=False)
    n.close(10)
    assert [b["key"] for b in hook.bodies] == ["printer:caja1"] and n.delivered == 1


def test_the_hub_notifies_once_per_condition_whatever_the_sightings():
    seen: list[tuple[str, bool]] = []

    class Record:
        def notify(self, alert, *, resolved):
            seen.append((alert.key, resolved))

    hub = Alerts([Record()])
    for _ in range(3):
        hub.raise_("queue:uplink", "QUEUE_STUCK", queue="uplink", minutes=31, depth=4)
    hub.resolve("queue:uplink")
    hub.resolve("queue:uplink")
    assert seen == [("queue:uplink", False), ("queue:uplink", True)]


def test_webhook_payload_in_english():
    a = Alert("uplink:paused", "UPLINK_PAUSED", "WARNING", {"detail": "panel"}, 1_700_000_000.0)
    p = payload(a, resolved=True, at=1_700_000_060.0, lang="en", installation={"rut": "1-9"})
    assert p["event"] == "resolved" and p["message"].startswith("Sending to the SII is paused")


def test_email_subject_and_body_say_what_and_since(smtp):
    n = EmailNotifier(SmtpSettings("127.0.0.1", smtp.port, "none"), "dte@example.cl", ["a@example.cl", "b@example.cl"],
                      installation={"razon_social": "Ferretería"})
    n.notify(Alert("caf_stock:39", "CAF_STOCK_LOW", "ERROR", {"tipo_dte": 39, "available": 0, "minimum": 100}, 1.0),
             resolved=False)
    n.close(10)
    assert len(smtp.messages) == 2  # one transaction per recipient
    m = smtp.messages[0]
    subject = str(email.header.make_header(email.header.decode_header(m["Subject"]))).replace("\r\n", "")
    assert subject.startswith("[dtesync Ferretería] ERROR: Quedan 0 folios de TipoDTE 39")
    assert m["To"] == "a@example.cl, b@example.cl"


def test_alert_mail_uses_the_delivery_stages_smtp_server(base):
    raw = {**base.raw, "alerts": {"email_to": "ti@example.cl", "webhook": "https://hooks.example.cl/x"},
           "delivery": {"smtp_host": "mail.example.cl", "from": "dte@example.cl", "smtp_user": "u",
                        "smtp_password": {"env": "X"}}}
    from sync.config import parse_config

    config = parse_config(raw, base=base.path.parent)
    log, mail, hook = build_notifiers(config)
    assert isinstance(mail, EmailNotifier) and isinstance(hook, WebhookNotifier)
    assert (mail.smtp.host, mail.smtp.port, mail.smtp.tls, mail.sender) == ("mail.example.cl", 587, "starttls",
                                                                           "dte@example.cl")
    no_delivery = {k: v for k, v in raw.items() if k != "delivery"}
    with pytest.raises(DteSyncError) as exc:
        build_notifiers(parse_config(no_delivery, base=base.path.parent))
    assert exc.value.field == "alerts.email_to"
