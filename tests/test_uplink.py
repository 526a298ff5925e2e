"""Uplink against fake-sii: faults, outages, batching, exactly-once per folio, real hosts."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import DATA
from sync.config import load_config
from sync.fakesii import FakeSii, Faults
from sync.runtime import open_engine, trusted_caf_keys
from sync.sandbox.build import create_sandbox, examples_dir
from sync.uplink import auth
from sync.uplink.build import endpoints, sii_channels, sii_route
from sync.uplink.docref import doc_ref
from sync.uplink.endpoints import SiiEndpoints
from sync.uplink.queue import UplinkQueue
from sync.uplink.service import Uplink, UplinkSettings
from sync.uplink.settings import UplinkConfig
from sync.uplink.transport import Timeouts, new_session

N_DOCS = 1000
FAST = {"batch_max": 25, "batch_wait": 0.0, "backoff_base": 0.005, "backoff_cap": 0.05, "poll_first": 0.0,
        "poll_base": 0.005, "poll_cap": 0.02, "uncertain_wait": 0.0, "processing_window_minutes": 0.0}


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """1000 documents signed once with the sandbox engine (half facturas, half boletas)."""
    sb = create_sandbox(tmp_path_factory.mktemp("uplink") / "sb", folios_per_type=N_DOCS // 2 + 10)
    config = load_config(sb.config_path)
    engine = open_engine(config)
    factura = (examples_dir() / "33_factura.txt").read_bytes()
    boleta = (examples_dir() / "39_boleta.txt").read_bytes()
    docs = [engine.issue(factura if i % 2 else boleta, f"d{i}", doc_key=f"uplink-test-{i}").dte_xml for i in range(N_DOCS)]
    return config, engine, docs


def make_uplink(config, engine, url: str, qpath: Path, sink, read_timeout: float = 0.3, **settings):
    session, to = new_session(), Timeouts(1.0, read_timeout)
    ep, cert, c = SiiEndpoints.single(url), engine.certificate, config.company
    channels = sii_channels(session, ep, cert, c, to)
    return Uplink(UplinkQueue(qpath), channels, sink=sink, settings=UplinkSettings(**{**FAST, **settings}),
                  route=sii_route)


def enqueue_all(up: Uplink, docs: list[bytes]) -> None:
    for i, xml in enumerate(docs, 1):
        ref = doc_ref(xml)
        up.queue.enqueue(i, "boleta" if ref.boleta else "dte", ref, xml)


def run_until_empty(up: Uplink, limit_s: float = 150.0) -> None:
    deadline = time.monotonic() + limit_s
    while up.queue.pending_count() and time.monotonic() < deadline:
        up.drain_once()
        up.poll_once()
        time.sleep(0.002)


def test_thousand_documents_with_30_percent_faults_each_folio_accepted_once(signed, tmp_path):
    config, engine, docs = signed
    states: dict[int, list[str]] = {}
    sink = lambda doc_id, state, note=None, **kw: states.setdefault(doc_id, []).append(state)  # noqa: E731
    with FakeSii(caf_keys=trusted_caf_keys(config), faults=Faults.mixed(0.30, seed=7, stall=0.5)) as fake:
        up = make_uplink(config, engine, fake.url, tmp_path / "q.sqlite", sink)
        enqueue_all(up, docs)
        run_until_empty(up)
        accepted = fake.accepted_folios()
        stats = fake.stats()
    assert up.queue.pending_count() == 0
    assert Counter(s[-1] for s in states.values()) == {"accepted": N_DOCS}
    assert len(accepted) == N_DOCS and set(accepted.values()) == {1}
    assert stats["duplicates"] == 0  # no folio was uploaded again after a lost answer
    assert stats["faults"].get("timeout", 0) > 10 and stats["faults"].get("reset", 0) > 10
    assert up.stats["ambiguous"] > 0  # the dangerous case happened and was resolved


def test_endpoint_down_then_up_queue_drains_oldest_first(signed, tmp_path):
    config, engine, docs = signed
    sent_order: list[int] = []
    finals: dict[int, str] = {}

    def sink(doc_id, state, note=None, **kw):
        if state == "sent":
            sent_order.append(doc_id)
        else:
            finals[doc_id] = state

    fake = FakeSii(caf_keys=trusted_caf_keys(config)).start()
    url = fake.url
    fake.stop()  # the SII is down: connection refused
    up = make_uplink(config, engine, url, tmp_path / "q.sqlite", sink, batch_max=10)
    enqueue_all(up, docs[:60])
    for _ in range(5):
        up.drain_once()
    assert up.queue.counts() == {"pending": 60} and not sent_order
    tried = [d for d in up.queue.unfinished() if d.attempts]
    assert tried and all("UPLINK_NETWORK" in (d.last_error or "") for d in tried)
    fake = FakeSii(caf_keys=trusted_caf_keys(config), port=int(url.rsplit(":", 1)[1])).start()
    try:
        up.queue.retry_now()
        run_until_empty(up, 30)
    finally:
        fake.stop()
    facturas, boletas = [i for i in sent_order if i % 2 == 0], [i for i in sent_order if i % 2]
    assert facturas == sorted(facturas) and boletas == sorted(boletas)  # per channel, oldest first
    assert set(finals.values()) == {"accepted"} and len(finals) == 60


def test_rejected_documents_carry_the_sii_reason(signed, tmp_path):
    config, engine, docs = signed
    results: dict[int, tuple[str, str | None, list]] = {}
    sink = lambda doc_id, state, note=None, **kw: results.__setitem__(doc_id, (state, note, kw.get("errors")))  # noqa: E731
    with FakeSii(caf_keys=trusted_caf_keys(config), faults=Faults(reject=0.3, objection=0.2, seed=3)) as fake:
        up = make_uplink(config, engine, fake.url, tmp_path / "q.sqlite", sink)
        enqueue_all(up, docs[:80])
        run_until_empty(up, 30)
    by_state = Counter(r[0] for r in results.values())
    assert by_state["rejected_sii"] > 0 and by_state["accepted_with_objections"] > 0 and by_state["accepted"] > 0
    rejected = [r for r in results.values() if r[0] == "rejected_sii"]
    assert all(r[2] and r[2][0].code == "SII_REJECTED" for r in rejected)
    assert any("DTE-3-505" in r[1] or "FAU" in r[1] for r in rejected)


def test_tampered_documents_are_rejected_final_not_retried(signed, tmp_path):
    config, engine, docs = signed
    results = {}
    sink = lambda doc_id, state, note=None, **kw: results.__setitem__(doc_id, (state, note))  # noqa: E731
    tamper = lambda xml: xml.replace(b"<MntTotal>", b"<MntTotal>1", 1)  # noqa: E731
    with FakeSii(caf_keys=trusted_caf_keys(config)) as fake:
        up = make_uplink(config, engine, fake.url, tmp_path / "q.sqlite", sink)
        enqueue_all(up, [tamper(docs[0]), tamper(docs[1])])  # a boleta, a factura
        run_until_empty(up, 20)
        uploads = fake.stats()["uploads"]
    assert results[1][0] == "rejected_sii" and "DTE-3-101" in results[1][1]  # boleta REST: per-document reason
    # factura: the envío's counts say one was rejected, and the SII does not hold it (QueryEstDte FAU)
    assert results[2][0] == "rejected_sii" and "rechazados 1" in results[2][1] and "FAU" in results[2][1]
    assert uploads == 2


def test_expired_token_is_renewed(signed, tmp_path):
    config, engine, docs = signed
    states = {}
    with FakeSii(caf_keys=trusted_caf_keys(config)) as fake:
        up = make_uplink(config, engine, fake.url, tmp_path / "q.sqlite",
                         lambda d, s, n=None, **kw: states.__setitem__(d, s))
        enqueue_all(up, docs[:4])
        up.drain_once()
        fake.expire_tokens()  # the SII forgets every token: STATUS 5 / TOKEN 003
        enqueue_all(up, docs[4:8])
        run_until_empty(up, 20)
        assert up.channels["dte"].tokens.fetched == 2
    assert set(states.values()) == {"accepted"}


def test_seed_signed_by_another_key_is_refused(signed):
    _, engine, _ = signed
    import base64

    from lxml import etree

    with FakeSii() as fake:
        seed = fake.new_seed()
        xml = auth.signed_seed(seed, engine.certificate)
        root = etree.fromstring(xml)
        sv = root.find(".//{http://www.w3.org/2000/09/xmldsig#}SignatureValue")
        raw = bytearray(base64.b64decode(sv.text))
        raw[5] ^= 1
        sv.text = base64.b64encode(bytes(raw)).decode()
        assert fake.token_from_signed_seed(etree.tostring(root), "soap")[0] == "05"
        assert fake.token_from_signed_seed(auth.signed_seed("1", engine.certificate), "soap")[:2] == ("08", "NO Existe SEED")
        assert fake.token_from_signed_seed(xml, "soap")[0] == "00"


def test_manual_raw_request_multipart_is_parsed(tmp_path):
    """The SII's own raw DTEUpload example (with its `multipart/form-data:` colon) parses."""
    from sync.fakesii import multipart

    raw = (DATA / "sii-upload" / "SII_ejemplo-upload-automatico-DTEUpload-request.txt").read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    ctype = next(l for l in head.decode().split("\r\n") if l.lower().startswith("content-type")).split(":", 1)[1].strip()
    parts = multipart.parse(body, ctype)
    assert [parts[k].data for k in ("rutSender", "dvSender", "rutCompany", "dvCompany")] == [b"66000000", b"0", b"77777777", b"7"]
    assert parts["archivo"].filename.endswith("ENVFIN_100_sign.xml") and b"<EnvioDTE" in parts["archivo"].data


def test_real_hosts_come_from_the_same_url_builder():
    cert = SiiEndpoints.for_environment("certificacion")
    prod = SiiEndpoints.for_environment("produccion")
    assert cert.upload == "https://maullin.sii.cl/cgi_dte/UPL/DTEUpload"
    assert prod.crseed == "https://palena.sii.cl/DTEWS/CrSeed.jws"
    assert prod.query_est_up == "https://palena.sii.cl/DTEWS/QueryEstUp.jws"
    assert cert.boleta_semilla == "https://apicert.sii.cl/recursos/v1/boleta.electronica.semilla"
    assert prod.boleta_envio == "https://rahue.sii.cl/recursos/v1/boleta.electronica.envio"
    assert cert.boleta_envio == "https://pangal.sii.cl/recursos/v1/boleta.electronica.envio"
    assert endpoints(UplinkConfig(kind="sii"), "produccion") == prod
    assert endpoints(UplinkConfig(kind="sii", url="http://127.0.0.1:9"), "produccion").upload == \
        "http://127.0.0.1:9/cgi_dte/UPL/DTEUpload"
