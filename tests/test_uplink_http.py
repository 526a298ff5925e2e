"""The provider-cloud uplink (`uplink.kind = "http"`) against fake-sii's provider API, and the
waiting-too-long alert. The uplink is built from configuration by the same code the daemon
uses (sync.uplink.build.build_uplink); fake-sii checks each envelope as the SII would and
counts the documents it created per Idempotency-Key and per folio."""

from __future__ import annotations

import logging
import time
from collections import Counter

import pytest

from sync.config import load_config
from sync.fakesii import FakeSii
from sync.runtime import open_engine, trusted_caf_keys
from sync.sandbox.build import create_sandbox, examples_dir
from sync.secrets import SecretRef
from sync.uplink.build import build_uplink
from sync.uplink.docref import doc_ref
from sync.uplink.queue import UplinkQueue
from sync.uplink.service import Uplink, UplinkSettings
from sync.uplink.settings import UplinkConfig

TOKEN = "prov-secret-token"
FAST = {"batch_max": 25, "batch_wait": 0.0, "backoff_base": 0.005, "backoff_cap": 0.05, "poll_first": 0.0,
        "poll_base": 0.005, "poll_cap": 0.02, "uncertain_wait": 0.0, "processing_window_minutes": 0.0,
        "connect_timeout": 1.0, "read_timeout": 0.3}


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """A sandbox and 12 signed documents (facturas and boletas), signed once."""
    sb = create_sandbox(tmp_path_factory.mktemp("uplink_http") / "sb", folios_per_type=40)
    config = load_config(sb.config_path)
    engine = open_engine(config)
    factura = (examples_dir() / "33_factura.txt").read_bytes()
    boleta = (examples_dir() / "39_boleta.txt").read_bytes()
    docs = [engine.issue(factura if i % 2 else boleta, f"h{i}", doc_key=f"uplink-http-{i}").dte_xml for i in range(12)]
    return config, engine, docs


def http_uplink(config, engine, fake: FakeSii, sink, monkeypatch) -> Uplink:
    """The uplink exactly as the daemon builds it from `[uplink] kind = "http"`."""
    monkeypatch.setenv("DTESYNC_TEST_PROVIDER_TOKEN", TOKEN)
    config.uplink = UplinkConfig(kind="http", http_url=f"{fake.url}/provider/v1",
                                 http_token=SecretRef(env="DTESYNC_TEST_PROVIDER_TOKEN"), **FAST)
    up = build_uplink(config, engine.certificate, sink=sink)
    assert up is not None and list(up.channels) == ["http"]
    return up


def enqueue(up: Uplink, docs: list[bytes], first_id: int = 1) -> list[int]:
    ids = []
    for i, xml in enumerate(docs, first_id):
        assert up.queue.enqueue(i, "http", doc_ref(xml), xml)
        ids.append(i)
    return ids


def run_until_empty(up: Uplink, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while up.queue.pending_count() and time.monotonic() < deadline:
        up.drain_once()
        up.poll_once()
        time.sleep(0.005)


def folios_of(docs: list[bytes], rut: str) -> Counter:
    return Counter((rut, doc_ref(x).tipo_dte, doc_ref(x).folio) for x in docs)


@pytest.fixture
def fresh_state(signed, tmp_path):
    config, engine, docs = signed
    config.folders.state = tmp_path / "state"  # a fresh queue per test
    return config, engine, docs


def test_provider_documents_reach_accepted_with_the_sii_track_id(fresh_state, monkeypatch):
    config, engine, docs = fresh_state
    states: dict[int, list[tuple[str, dict]]] = {}
    sink = lambda doc_id, state, note=None, **kw: states.setdefault(doc_id, []).append((state, kw))  # noqa: E731
    with FakeSii(caf_keys=trusted_caf_keys(config), provider_token=TOKEN) as fake:
        up = http_uplink(config, engine, fake, sink, monkeypatch)
        ids = enqueue(up, docs[:6])
        run_until_empty(up)
        sii_tracks = {rec.track_id for rec in fake.envios.values()}
        accepted = fake.accepted_folios()
    assert up.queue.pending_count() == 0
    assert {i: [s for s, _ in states[i]] for i in ids} == {i: ["sent", "accepted"] for i in ids}
    final_tracks = [kw.get("track_id") for i in ids for s, kw in states[i] if s == "accepted"]
    assert all(t in sii_tracks for t in final_tracks) and len(set(final_tracks)) == 6  # the SII's, one envío each
    assert accepted == folios_of(docs[:6], str(config.company.rut))  # fake-sii verified and accepted each once


def test_idempotency_key_is_the_document_id(fresh_state, monkeypatch):
    config, engine, docs = fresh_state
    with FakeSii(caf_keys=trusted_caf_keys(config), provider_token=TOKEN) as fake:
        up = http_uplink(config, engine, fake, None, monkeypatch)
        ids = enqueue(up, docs[:3], first_id=41)
        run_until_empty(up)
        by_key = dict(fake.provider_by_key)
        created = Counter(fake.provider_created_by_doc)
    assert set(by_key) == {"41", "42", "43"} == {str(i) for i in ids}
    assert created == folios_of(docs[:3], str(config.company.rut))


def test_retry_after_a_timeout_past_creation_creates_no_second_document(fresh_state, monkeypatch):
    config, engine, docs = fresh_state
    states: dict[int, list[str]] = {}
    sink = lambda doc_id, state, note=None, **kw: states.setdefault(doc_id, []).append(state)  # noqa: E731
    with FakeSii(caf_keys=trusted_caf_keys(config), provider_token=TOKEN) as fake:
        fake.faults.stall = 1.0  # past read_timeout (0.3 s)
        fake.script("provider", "timeout_after", "timeout_after", "reset")  # created, then the answer is lost
        up = http_uplink(config, engine, fake, sink, monkeypatch)
        ids = enqueue(up, docs[6:10])
        run_until_empty(up)
        submits, by_key, by_doc = Counter(fake.provider_submits), Counter(fake.provider_created_by_key), \
            Counter(fake.provider_created_by_doc)
        stats = fake.stats()
    assert up.stats["failures"] >= 3  # the client saw the lost answers (transient: the key makes a resend safe)
    assert submits["1"] >= 3  # oldest first: document 1 was created, its answer lost twice, resent with its key
    assert by_key == {str(i): 1 for i in ids}  # one document per key
    assert by_doc == folios_of(docs[6:10], str(config.company.rut))  # one per folio: no second document
    assert stats["provider_created"] == 4 and stats["duplicates"] == 0
    assert {i: s[-1] for i, s in states.items()} == {i: "accepted" for i in ids}


def test_document_waiting_longer_than_alert_after_raises_the_alert(signed, tmp_path, caplog):
    _, _, docs = signed
    now = [1_000_000.0]
    clock = lambda: now[0]  # noqa: E731
    notes: list[tuple[int, str, str | None]] = []
    sink = lambda doc_id, state, note=None, **kw: notes.append((doc_id, state, note))  # noqa: E731
    alerts: list[tuple[str, dict]] = []
    queue = UplinkQueue(tmp_path / "q.sqlite", clock=clock)
    up = Uplink(queue, {}, sink=sink, settings=UplinkSettings(alert_after=3600.0), clock=clock,
                on_alert=lambda kind, info: alerts.append((kind, info)))
    for i, xml in enumerate(docs[:2], 1):
        queue.enqueue(i, "dte", doc_ref(xml), xml)
        now[0] += 600.0  # document 2 is queued ten minutes after document 1
    queue.failed(None, [1], "UPLINK_NETWORK: conexión rechazada", [60.0])
    now[0] = 1_000_000.0 + 3000.0
    assert up.alerts_once() == 0 and not alerts  # 50 min: below the limit
    now[0] = 1_000_000.0 + 3700.0
    with caplog.at_level(logging.WARNING, logger="dtesync.uplink"):
        assert up.alerts_once() == 1
    assert [(k, i["doc"], i["last_error"]) for k, i in alerts] == [("UPLINK_WAITING", 1, "UPLINK_NETWORK: conexión rechazada")]
    assert any(r.getMessage() == "alert: UPLINK_WAITING" and r.levelno == logging.WARNING and r.doc == 1
               for r in caplog.records)
    assert notes == [(1, "queued", "alerta: esperando al SII desde hace 62 min (UPLINK_NETWORK: conexión rechazada)")]
    assert up.alerts_once() == 0  # alerted once, not at every tick
    now[0] += 600.0
    assert up.alerts_once() == 1 and alerts[-1][1]["doc"] == 2


def test_a_refused_provider_token_pauses_the_channel_and_keeps_documents_queued(fresh_state, monkeypatch):
    """A bad credential is a problem of the installation: nothing is rejected, the alert names
    uplink.http.token, and the channel resumes by itself once the provider accepts it."""
    config, engine, docs = fresh_state
    states: dict[int, list[tuple[str, str | None]]] = {}
    sink = lambda doc_id, state, note=None, **kw: states.setdefault(doc_id, []).append((state, note))  # noqa: E731
    with FakeSii(caf_keys=trusted_caf_keys(config), provider_token="another-token") as fake:
        up = http_uplink(config, engine, fake, sink, monkeypatch)
        up.s.installation_retry = 0.1
        alerts: list[tuple[str, dict]] = []
        up.on_alert = lambda kind, info: alerts.append((kind, info))
        ids = enqueue(up, docs[:2])
        up.drain_once()
        assert up.queue.paused("http") and up.queue.counts() == {"pending": 2}
        assert states[1][-1][0] == "queued" and "uplink.http.token" in (states[1][-1][1] or "")
        assert [k for k, _ in alerts] == ["SII_INSTALLATION"]
        fake.provider_token = TOKEN  # the provider accepts our credential again
        time.sleep(0.15)
        run_until_empty(up)
    assert {i: s[-1][0] for i, s in states.items()} == {i: "accepted" for i in ids}
    assert not up.queue.paused("http") and [k for k, _ in alerts] == ["SII_INSTALLATION", "RESOLVED"]
