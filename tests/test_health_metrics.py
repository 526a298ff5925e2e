"""/health and /metrics of a running installation: the real engine, a TCP test printer and
fake-sii, read over HTTP from the panel; /metrics parsed with prometheus_client's own parser."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops_rig import make_rig
from sync.config import load_config
from sync.sandbox.build import create_sandbox


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    sb = create_sandbox(tmp_path_factory.mktemp("health") / "sb", folios_per_type=200)
    return load_config(sb.config_path)


@pytest.fixture
def rig(tmp_path, base):
    r = make_rig(tmp_path / "rig", base)
    yield r
    r.stop()


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def health(rig) -> dict:
    status, body, ctype = get(rig.url + "/health")
    assert ctype.startswith("application/json")
    doc = json.loads(body)
    assert (status == 503) == (doc["status"] == "down")
    return doc


def check(doc: dict, name: str) -> dict:
    return next(c for c in doc["checks"] if c["name"] == name)


def metrics(rig) -> dict[str, list]:
    status, body, ctype = get(rig.url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(body.decode("utf-8"))}


def test_health_is_ok_with_every_check_listed(rig):
    doc = health(rig)
    assert doc["status"] == "ok", doc
    names = {c["name"] for c in doc["checks"]}
    assert {"daemon:threads", "daemon:ingest", "inbox", "uplink:paused", "queue:uplink", "queue:print:caja1",
            "printer:caja1", "certificate", "caf_stock:33"} <= names
    assert all(set(c) == {"name", "status", "message"} for c in doc["checks"])


def test_health_degrades_while_the_printer_is_down_and_recovers(rig):
    rig.printer_down()
    rig.drop("F1.txt")
    doc = rig.wait(lambda: (d := health(rig))["status"] == "degraded" and d, what="degraded")
    # The printing stage says the printer itself is down; one printer leaves the service degraded (HTTP 200).
    assert check(doc, "printer:caja1")["status"] in ("down", "degraded") and check(doc, "printer:caja1")["message"]
    rig.printer_up()
    rig.printer.wait_jobs(1)
    rig.wait(lambda: health(rig)["status"] == "ok", what="ok again")


def test_health_degrades_while_the_uplink_fails_and_recovers(rig):
    rig.sii_down()
    rig.drop("F2.txt")
    doc = rig.wait(lambda: (d := health(rig))["status"] == "degraded" and d, what="degraded")
    assert check(doc, "queue:uplink")["status"] == "degraded"
    rig.sii_up()
    rig.wait_state("F2", {"accepted"})
    rig.wait(lambda: health(rig)["status"] == "ok", what="ok again")


def test_health_shows_a_paused_uplink(rig):
    rig.stage("uplink").pause("test")
    assert check(health(rig), "uplink:paused")["status"] == "degraded"
    rig.stage("uplink").resume()
    assert check(health(rig), "uplink:paused")["status"] == "ok"


def test_health_is_down_with_503_when_a_daemon_thread_died(rig):
    rig.app.daemon._threads[0].join  # noqa: B018 - the ingest thread exists
    rig.app.daemon._started = False  # what a dead daemon looks like to its checks
    try:
        status, body, _ = get(rig.url + "/health")
        assert status == 503 and json.loads(body)["status"] == "down"
    finally:
        rig.app.daemon._started = True


def test_metrics_parse_and_count_what_happened(rig):
    rig.drop("F3.txt")
    rig.drop("B1.txt", example="39_boleta.txt")
    rig.wait_state("F3", {"accepted"})
    rig.wait_state("B1", {"accepted"})
    rig.printer.wait_jobs(2)
    m = rig.wait(lambda: (x := metrics(rig))["dtesync_drop_to_printed_seconds"][-2].value >= 2 and x,
                 what="printed latency recorded")
    docs = {(s.labels["tipo_dte"], s.labels["state"]): s.value for s in m["dtesync_documents"]}
    assert docs[("33", "accepted")] == 1 and docs[("39", "accepted")] == 1
    signed = {s.name: s.value for s in m["dtesync_drop_to_signed_seconds"]}
    assert signed["dtesync_drop_to_signed_seconds_count"] == 2
    assert 0 < signed["dtesync_drop_to_signed_seconds_sum"] < 60
    queues = {s.labels["queue"]: s.value for s in m["dtesync_queue_depth"]}
    assert queues == {"print:caja1": 0, "uplink": 0}
    def folios() -> dict[str, float]:  # the stock is read at most every 10 s: wait for the next read
        return {s.labels["tipo_dte"]: s.value for s in metrics(rig)["dtesync_folios_available"]}

    rig.wait(lambda: folios()["33"] == 199 and folios()["39"] == 199, timeout=20, what="folios left")
    assert all(s.value > 300 for s in m["dtesync_caf_expiry_days"]) or m["dtesync_caf_expiry_days"]
    assert m["dtesync_certificate_expiry_days"][0].value > 0
    assert {s.labels["check"] for s in m["dtesync_check_status"]} >= {"inbox", "printer:caja1"}


def test_metrics_count_uplink_and_printer_errors_by_kind(rig):
    rig.sii_down()
    rig.printer_down()
    rig.drop("F4.txt")
    m = rig.wait(lambda: (x := metrics(rig)).get("dtesync_uplink_errors") and x.get("dtesync_printer_errors") and x,
                 what="errors counted")
    assert {s.labels["kind"] for s in m["dtesync_uplink_errors"] if s.name.endswith("_total")} == {"transient"}
    printer = [s for s in m["dtesync_printer_errors"] if s.name.endswith("_total")]
    assert printer[0].labels == {"station": "caja1", "kind": "unavailable"} and printer[0].value >= 1
    rig.sii_up()
    rig.printer_up()
    rig.wait_state("F4", {"accepted"})


def test_metrics_textfile_is_written_atomically(tmp_path, base):
    target = tmp_path / "textfile" / "dtesync.prom"
    r = make_rig(tmp_path / "rig", base, web={"metrics_file": target, "metrics_every": 0.2})
    try:
        text = r.wait(lambda: target.exists() and target.read_text("utf-8"), what="metrics file")
        names = {f.name for f in text_string_to_metric_families(text)}
        assert {"dtesync_documents", "dtesync_queue_depth", "dtesync_folios_available"} <= names
        assert not [p for p in target.parent.iterdir() if p.name != target.name]  # no temp file left behind
    finally:
        r.stop()


def test_a_taken_port_leaves_the_daemon_running_and_raises_an_alert(tmp_path, base):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    r = make_rig(tmp_path / "rig", base, web={"listen": f"127.0.0.1:{port}"})
    try:
        web = r.stage("web")
        assert web.wait_ready(30) and web.url is None and "Address already in use" in web.error
        (alert,) = [a for a in r.app.alerts.active() if a.key == "web:listen"]
        assert alert.code == "WEB_LISTEN_FAILED" and str(port) in alert.message("es")
        r.drop("F1.txt")
        r.wait_state("F1", {"accepted"})  # documents are signed, printed and sent all the same
        findings = {f.name: f for f in r.stage("monitor").health.findings()}
        assert findings["web:listen"].status == "degraded"
    finally:
        r.stop()
        taken.close()
