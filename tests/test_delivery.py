"""Delivery to receptors and customers, end to end: the real engine signs, the uplink gets the
SII's acceptance from fake-sii, and the delivery stage mails a real SMTP server (aiosmtpd on
loopback). What the receptor gets is checked the way the receptor checks it: the EnvioDTE's
signatures with xmlsec1, the envelope with the official XSD, the Caratula's RutReceptor."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from lxml import etree

from conftest import xmlsec1_verifies
from delivery_fixtures import (
    SmtpSink,
    drop_all,
    receptor_inputs,
    receptor_ruts,
    tls_files,
)
from sync import schema
from sync.app import App, build_app
from sync.config import load_config
from sync.delivery.envelope import caratula_receptor
from sync.delivery.stage import DeliveryStage
from sync.fakesii import FakeSii
from sync.runtime import open_engine, trusted_caf_keys
from sync.sandbox.build import create_sandbox

UPLINK = """
[uplink]
kind = "sii"
url = "{url}"
batch_max = 50
batch_wait = 0.2
backoff_base = 0.05
backoff_cap = 0.5
poll_first = 0.05
poll_base = 0.05
poll_cap = 0.2
drain_interval = 0.1
poll_interval = 0.1
"""

DELIVERY = """
[delivery]
smtp_host = "127.0.0.1"
smtp_port = {port}
smtp_tls = "{tls}"
from = "dte@empresademo.cl"
after = "{after}"
backoff_base = {backoff}
backoff_cap = {cap}
smtp_timeout = 5
{extra}
[delivery.receptors]
{receptors}
"""


def make_world(tmp_path: Path, *, smtp_port: int, uplink_url: str | None = None, after: str = "accepted",
               tls: str = "none", receptors: dict[str, str] | None = None, extra: str = "", backoff: float = 0.05,
               cap: float = 0.5, folios: int = 60, printing: str = ""):
    sb = create_sandbox(tmp_path / "sb", folios_per_type=folios)
    text = sb.config_path.read_text()
    if uplink_url:
        text += UPLINK.format(url=uplink_url)
    text += printing
    text += DELIVERY.format(port=smtp_port, tls=tls, after=after, backoff=backoff, cap=cap, extra=extra,
                            receptors="\n".join(f'"{k}" = "{v}"' for k, v in (receptors or {}).items()))
    sb.config_path.write_text(text)
    config = load_config(sb.config_path)
    return sb, config


def start_app(config, engine=None) -> App:
    app = build_app(config, engine=engine or open_engine(config), watch="poll", workers=2, stable_window=0.05,
                    scan_interval=0.3, poll_interval=0.05, empty_timeout=2.0)
    app.start()
    return app


def statuses(outbox: Path) -> dict[str, dict]:
    out = {}
    for p in outbox.glob("*.status.json"):
        try:
            out[p.name[: -len(".status.json")]] = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
    return out


def wait_for(cond, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def delivered(outbox: Path, n: int, states=("sent",)) -> bool:
    st = statuses(outbox)
    return len(st) >= n and all(s.get("delivery", {}).get("state") in states for s in st.values())


def delivery_stage(app: App) -> DeliveryStage:
    stage = app.stage("delivery")
    assert isinstance(stage, DeliveryStage)
    return stage


# --- the main promise ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_hundred_accepted_documents_each_reach_their_receptor_once_verifiable(tmp_path):
    ruts = receptor_ruts(7)
    addresses = {rut: f"dte.{rut.split('-')[0]}@receptor{i}.cl" for i, rut in enumerate(ruts)}
    inputs = receptor_inputs(200, ruts)
    with SmtpSink() as smtp, FakeSii() as fake:
        sb, config = make_world(tmp_path, smtp_port=smtp.port, uplink_url=fake.url, receptors=addresses, folios=60)
        fake.caf_keys.update(trusted_caf_keys(config))
        app = start_app(config)
        try:
            drop_all(sb.inbox, inputs)
            assert wait_for(lambda: delivered(config.folders.outbox, len(inputs)), 240), \
                Counter(s.get("delivery", {}).get("state") for s in statuses(config.folders.outbox).values())
        finally:
            app.stop()
        mails = smtp.messages()
        accepted = fake.accepted_folios()
    st = statuses(config.folders.outbox)
    assert {s["state"] for s in st.values()} <= {"accepted", "accepted_with_objections"}  # the SII state is untouched
    assert len(accepted) == len(inputs)
    by_rcpt: dict[str, list] = defaultdict(list)
    for m in mails:
        assert m.rcpt and len(m.rcpt) == 1
        by_rcpt[m.rcpt[0]].append(m)
    expected = Counter(addresses[rut] for _, _, rut in inputs)
    assert Counter({k: len(v) for k, v in by_rcpt.items()}) == expected  # one mail per document, to the right address
    assert len({m.message_id for m in mails}) == len(mails)
    rut_of_address = {a: r for r, a in addresses.items()}
    checked = 0
    seen_docs = set()
    for m in mails:
        files = m.attachments()
        envio_name = next(n for n in files if n.startswith("ENVIO_DTE_"))
        pdf = next(n for n in files if n.endswith(".pdf"))
        assert files[pdf].startswith(b"%PDF-")
        envio = files[envio_name]
        root = etree.fromstring(envio)
        assert schema.schema_errors(root) == [], envio_name  # the official EnvioDTE_v10.xsd
        assert caratula_receptor(envio) == rut_of_address[m.rcpt[0]]
        dte_rut = root.findtext(".//{*}Receptor/{*}RUTRecep")
        assert dte_rut == rut_of_address[m.rcpt[0]]
        key = (root.findtext(".//{*}IdDoc/{*}TipoDTE"), root.findtext(".//{*}IdDoc/{*}Folio"))
        assert key not in seen_docs
        seen_docs.add(key)
        if checked < 40 or len(seen_docs) == len(mails):  # xmlsec1 on a fifth of them (two signatures each)
            path = tmp_path / envio_name
            path.write_bytes(envio)
            assert xmlsec1_verifies(path, 1) and xmlsec1_verifies(path, 2), envio_name
            checked += 1
    for s in st.values():
        d = s["delivery"]
        assert d["to"] == "receptor" and d["attempts"] == 1 and d["message_id"] and d["sent_at"]
        assert d["address"] == addresses[s_rut(config, s)]


def s_rut(config, status: dict) -> str:
    xml = (config.folders.outbox / status["xml"]).read_bytes()
    return etree.fromstring(xml).findtext(".//{*}Receptor/{*}RUTRecep")


def test_a_few_documents_wait_for_the_sii_then_are_delivered(tmp_path):
    ruts = receptor_ruts(2, seed=1)
    inputs = receptor_inputs(6, ruts, seed=2)
    addresses = {r: f"x{i}@cliente.cl" for i, r in enumerate(ruts)}
    with SmtpSink() as smtp, FakeSii() as fake:
        sb, config = make_world(tmp_path, smtp_port=smtp.port, uplink_url=fake.url, receptors=addresses)
        fake.caf_keys.update(trusted_caf_keys(config))
        app = start_app(config)
        try:
            drop_all(sb.inbox, inputs)
            assert wait_for(lambda: delivered(config.folders.outbox, len(inputs)), 60)
        finally:
            app.stop()
    st = statuses(config.folders.outbox)
    for s in st.values():
        states = [h["state"] for h in s["history"]]
        assert "accepted" in states
        sent = s["delivery"]["sent_at"]
        accepted_at = next(h["at"] for h in s["history"] if h["state"] == "accepted")
        assert sent >= accepted_at  # delivered after the SII accepted it, not before
    assert len(smtp.messages()) == len(inputs)


# --- outages, refusals, missing addresses ----------------------------------------------------------
def test_smtp_down_for_a_while_then_up_nothing_lost_nothing_twice(tmp_path):
    """The relay is down when the documents are due (the outage is scaled down to ~4 s through
    the backoff settings); once it is back every document arrives exactly once."""
    ruts = receptor_ruts(3, seed=3)
    inputs = receptor_inputs(12, ruts, seed=4)
    addresses = {r: f"r{i}@cliente.cl" for i, r in enumerate(ruts)}
    smtp = SmtpSink()
    smtp.port = smtp.port or __import__("delivery_fixtures").free_port()
    sb, config = make_world(tmp_path, smtp_port=smtp.port, after="signed", receptors=addresses, backoff=0.2, cap=1.0)
    app = start_app(config)
    try:
        drop_all(sb.inbox, inputs)
        stage = delivery_stage(app)
        assert wait_for(lambda: stage.stats["retries"] >= 5, 30)  # the relay is down: attempts keep failing
        down = statuses(config.folders.outbox)
        assert all(s.get("delivery", {}).get("state") == "pending" for s in down.values())
        assert any("error" in s["delivery"] for s in down.values())
        assert any(a.code == "DELIVERY_SMTP_DOWN" for a in app.alerts.active())
        time.sleep(3.0)
        smtp.start()  # back, on the same port
        assert wait_for(lambda: delivered(config.folders.outbox, len(inputs)), 60)
        assert not any(a.code == "DELIVERY_SMTP_DOWN" for a in app.alerts.active())  # the recovery was notified
    finally:
        app.stop()
        smtp.stop()
    mails = smtp.messages()
    assert Counter(m.rcpt[0] for m in mails) == Counter(addresses[r] for _, _, r in inputs)
    assert len({m.message_id for m in mails}) == len(inputs)
    attempts = [s["delivery"]["attempts"] for s in statuses(config.folders.outbox).values()]
    assert max(attempts) > 1


def test_receptor_without_address_gets_no_address_and_one_alert_nothing_else(tmp_path, caplog):
    ruts = receptor_ruts(2, seed=7)
    known, unknown = ruts
    inputs = receptor_inputs(6, [known, unknown], seed=8)
    with SmtpSink() as smtp:
        sb, config = make_world(tmp_path, smtp_port=smtp.port, after="signed", receptors={known: "ok@cliente.cl"})
        app = start_app(config)
        try:
            drop_all(sb.inbox, inputs)
            assert wait_for(lambda: delivered(config.folders.outbox, len(inputs), ("sent", "no_address")), 60)
            alerts = [a for a in app.alerts.active() if a.code == "DELIVERY_NO_ADDRESS"]
        finally:
            app.stop()
        mails = smtp.messages()
    st = statuses(config.folders.outbox)
    by_rut = defaultdict(list)
    for s in st.values():
        by_rut[s_rut(config, s)].append(s)
    assert {s["delivery"]["state"] for s in by_rut[unknown]} == {"no_address"}
    assert all(s["delivery"]["address"] is None and s["state"] == "signed" for s in by_rut[unknown])
    assert {s["delivery"]["state"] for s in by_rut[known]} == {"sent"}
    assert len(mails) == len(by_rut[known]) and all(m.rcpt == ["ok@cliente.cl"] for m in mails)
    assert len(alerts) == 1 and alerts[0].params["rut"] == unknown  # one alert per receptor, not per document


def test_address_refused_for_good_is_failed_with_an_alert_and_not_retried(tmp_path):
    ruts = receptor_ruts(1, seed=11)
    inputs = receptor_inputs(2, ruts, seed=12)
    with SmtpSink(refuse={"nadie@cliente.cl"}) as smtp:
        sb, config = make_world(tmp_path, smtp_port=smtp.port, after="signed", receptors={ruts[0]: "nadie@cliente.cl"})
        app = start_app(config)
        try:
            drop_all(sb.inbox, inputs)
            assert wait_for(lambda: delivered(config.folders.outbox, len(inputs), ("failed",)), 60)
            time.sleep(0.5)
            alerts = [a for a in app.alerts.active() if a.code == "DELIVERY_FAILED"]
        finally:
            app.stop()
    for s in statuses(config.folders.outbox).values():
        assert s["delivery"]["attempts"] == 1 and "550" in s["delivery"]["error"]
    assert len(alerts) == len(inputs)
    assert smtp.messages() == []


# --- TLS and login -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_tls_relay_with_login_works_when_its_certificate_verifies(tmp_path, mode, monkeypatch):
    tls = tls_files(tmp_path / "tls")
    ruts = receptor_ruts(1, seed=13)
    inputs = receptor_inputs(2, ruts, seed=14)
    monkeypatch.setenv("DTESYNC_TEST_SMTP_PASSWORD", "clave-smtp")
    extra = (f'ca_bundle = "{tls.ca}"\nsmtp_user = "emisor"\n'
             'smtp_password = { env = "DTESYNC_TEST_SMTP_PASSWORD" }\n')
    with SmtpSink(tls=mode, tls_paths=tls, users={"emisor": "clave-smtp"}) as smtp:
        sb, config = make_world(tmp_path, smtp_port=smtp.port, tls=mode, after="signed",
                                receptors={ruts[0]: "tls@cliente.cl"}, extra=extra)
        app = start_app(config)
        try:
            drop_all(sb.inbox, inputs)
            assert wait_for(lambda: delivered(config.folders.outbox, len(inputs)), 60)
        finally:
            app.stop()
    assert len(smtp.messages()) == len(inputs)


def test_relay_whose_certificate_does_not_verify_gets_nothing(tmp_path, caplog):
    """Certificate verification is on: a relay with a certificate from an unknown CA (no
    ca_bundle) is never sent a document; the documents wait, the admin gets an alert."""
    tls = tls_files(tmp_path / "tls")
    ruts = receptor_ruts(1, seed=15)
    inputs = receptor_inputs(1, ruts, seed=16)
    with SmtpSink(tls="starttls", tls_paths=tls) as smtp:
        sb, config = make_world(tmp_path, smtp_port=smtp.port, tls="starttls", after="signed",
                                receptors={ruts[0]: "tls@cliente.cl"})
        app = start_app(config)
        try:
            drop_all(sb.inbox, inputs)
            assert wait_for(lambda: any(a.code == "DELIVERY_SMTP_DOWN" for a in app.alerts.active()), 60)
            alert = next(a for a in app.alerts.active() if a.code == "DELIVERY_SMTP_DOWN")
        finally:
            app.stop()
    assert "certificado TLS no verificado" in alert.params["detail"]
    assert smtp.messages() == []
    assert {s["delivery"]["state"] for s in statuses(config.folders.outbox).values()} == {"pending"}


# --- the virtual boleta (Res. Ex. 53/2025) ---------------------------------------------------------------
VIRTUAL_STATION = """
[printing]
default_station = "caja1"

[[printing.stations]]
name = "web"
virtual = true

[[printing.stations]]
name = "caja1"
connector = {{ type = "file", path = "{ticket}" }}
"""


def boleta(correo: str | None, contacto: str | None = None) -> bytes:
    from sync.sandbox.build import examples_dir

    text = (examples_dir() / "39_boleta.txt").read_text(encoding="utf-8")
    lines = []
    if correo or contacto:
        lines.append("[Encabezado.Receptor]")
        lines.append("RUTRecep=66666666-6")
        if contacto:
            lines.append(f"Contacto={contacto}")
        if correo:
            lines.append(f"CorreoRecep={correo}")
    return (text.replace("[Detalle]", "\n".join(lines) + "\n\n[Detalle]", 1) if lines else text).encode()


def test_virtual_boleta_reaches_the_customer_with_its_pdf_and_timbre(tmp_path):
    with SmtpSink() as smtp:
        sb, config = make_world(tmp_path, smtp_port=smtp.port, after="accepted",
                                printing=VIRTUAL_STATION.format(ticket=tmp_path / "caja1.bin"))
        (sb.inbox / "web").mkdir()
        app = start_app(config)
        try:
            for name, body in (("web/V1.txt", boleta("cliente@correo.cl")),  # virtual station, e-mail
                               ("web/V2.txt", boleta(None)),                  # virtual station, no e-mail
                               ("V3.txt", boleta(None, contacto="otra@correo.cl")),  # e-mail in Contacto
                               ("V4.txt", boleta(None))):                     # printed: nothing to mail
                (sb.inbox / name).write_bytes(body)
            out = config.folders.outbox
            assert wait_for(lambda: all((out / p).exists() for p in ("web/V1.status.json", "web/V2.status.json",
                                                                     "V3.status.json", "V4.status.json"))
                            and json.loads((out / "web/V1.status.json").read_text()).get("delivery", {}).get("state") == "sent"
                            and json.loads((out / "V3.status.json").read_text()).get("delivery", {}).get("state") == "sent"
                            and json.loads((out / "web/V2.status.json").read_text()).get("delivery", {}).get("state")
                            == "no_address", 60)
            alerts = [a.code for a in app.alerts.active()]
        finally:
            app.stop()
    st = {p: json.loads((out / f"{p}.status.json").read_text()) for p in ("web/V1", "web/V2", "V3", "V4")}
    assert st["web/V1"]["delivery"]["to"] == "customer" and st["web/V1"]["delivery"]["address"] == "cliente@correo.cl"
    assert "delivery" not in st["V4"]
    assert "DELIVERY_NO_CUSTOMER_ADDRESS" in alerts
    mails = {m.rcpt[0]: m for m in smtp.messages()}
    assert set(mails) == {"cliente@correo.cl", "otra@correo.cl"}
    files = mails["cliente@correo.cl"].attachments()
    pdf = next(v for k, v in files.items() if k.endswith(".pdf"))
    assert pdf == (out / "web/V1.pdf").read_bytes()  # the printing stage's PDF, not a second rendering
    ted = next(v for k, v in files.items() if k.endswith("_timbre.xml"))
    ted_root = etree.fromstring(ted)
    assert etree.QName(ted_root).localname == "TED"
    assert ted_root.findtext(".//{*}F") == str(st["web/V1"]["folio"])
    from sync.printing.queue import FILE_NAME

    q = config.folders.state / FILE_NAME
    if q.exists():
        from sync.printing.queue import PrintQueue

        with PrintQueue(q) as pq:
            assert {j.station for j in pq.jobs()} == {"caja1"}  # a virtual station prints nothing


def test_documents_the_sii_rejects_are_not_delivered(tmp_path):
    from sync.fakesii import Faults

    ruts = receptor_ruts(1, seed=41)
    inputs = receptor_inputs(3, ruts, seed=42)
    with SmtpSink() as smtp, FakeSii(faults=Faults(reject=1.0, seed=1)) as fake:
        sb, config = make_world(tmp_path, smtp_port=smtp.port, uplink_url=fake.url, receptors={ruts[0]: "a@cliente.cl"})
        fake.caf_keys.update(trusted_caf_keys(config))
        app = start_app(config)
        try:
            drop_all(sb.inbox, inputs)
            out = config.folders.outbox
            assert wait_for(lambda: len(statuses(out)) == len(inputs)
                            and all(s["state"] == "rejected_sii" for s in statuses(out).values()), 60)
            time.sleep(0.5)
            store = delivery_stage(app).store
            assert {d.state for doc in statuses(out).values() for d in store.for_doc(doc["document_id"])} == {"cancelled"}
        finally:
            app.stop()
    assert smtp.messages() == []
    assert all("delivery" not in s for s in statuses(out).values())
