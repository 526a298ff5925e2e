"""Delivery to receptors and customers, end to end: the real engine signs, the uplink gets the
SII's acceptance from fake-sii, and the delivery stage mails a real SMTP server (aiosmtpd on
loopback). What the receptor gets is checked the way the receptor checks it: the EnvioDTE's
signatures with xmlsec1, the envelope with the official XSD, the Caratula's RutReceptor."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from lxml import etree

from conftest import xmlsec1_verifies
from delivery_fixtures import SmtpSink, drop_all, receptor_inputs, receptor_ruts, tls_files
from sync import schema
from sync.app import App, build_app
from sync.config import load_config
from sync.delivery.envelope import caratula_receptor
from sync.delivery.stage import DeliveryStage
from sync.delivery.store import DeliveryStore
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
