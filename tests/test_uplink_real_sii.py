"""The real SII's habits, one at a time, and what the uplink does about each: a processing
delay during which the SII says it has nothing (no re-send inside the processing window),
"DTE Repetido" after our own earlier upload, the dead-session HTML page, tokens that die
sooner than configured, the PROG 1.0 rule, the WSDL, the body-first RESPUESTA, DNK, the
alerts hub, and `dtesync retry` bringing back documents an earlier version rejected by mistake."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import subprocess
import sys

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

from sync.alerts import Alerts
from sync.fakesii import Behaviour, FakeSii, Faults
from sync.runtime import trusted_caf_keys
from sync.uplink import auth, soap
from sync.uplink.docref import doc_ref
from sync.uplink.queue import FILE_NAME, UplinkQueue
from sync.uplink.upload import multipart_body
from uplink_helpers import make_run, signed_documents


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    return signed_documents(tmp_path_factory.mktemp("realsii") / "sb", 8, 4)


def fake_for(docs, **behaviour) -> FakeSii:
    return FakeSii(caf_keys=trusted_caf_keys(docs[0]), faults=Faults(stall=0.5),
                   behaviour=Behaviour(processing_polls=0, **behaviour))


# --- never re-send while the SII may still be processing --------------------------------------------------
@pytest.mark.parametrize("channel", ["dte", "boleta"])
def test_a_lost_answer_is_not_resent_while_the_sii_is_still_processing(channel, docs, tmp_path):
    """The issue's case, scaled by 1/10 through the settings: the SII makes the document visible
    only after 0.6 s (6 s), the first lookup comes after 0.05 s (0.5 s). The SII answers "not
    received" meanwhile; the processing window (1.2 s) keeps the document from being sent again."""
    config, engine, facturas, boletas = docs
    with fake_for(docs, processing_delay=(0.6, 0.6)) as fake:
        run = make_run(config, engine, fake, tmp_path / "q.sqlite", read_timeout=0.3, uncertain_wait=0.05,
                       processing_window_minutes=0.02)
        fake.script("upload", "timeout_after")
        run.enqueue((facturas if channel == "dte" else boletas)[:1])
        run.run(limit_s=10)
        stats = fake.stats()
    assert run.finals() == {1: "accepted"}
    assert stats["unseen_answers"] >= 1, "the SII said 'not received' while it was still processing"
    assert stats["uploads"] == 1 and stats["duplicates"] == 0 and stats["max_uploads_per_doc"] == 1
    assert not fake.resent_without_cause()


def test_a_document_the_sii_never_got_is_sent_again_after_the_window(docs, tmp_path):
    config, engine, facturas, _ = docs
    with fake_for(docs) as fake:
        run = make_run(config, engine, fake, tmp_path / "q.sqlite", read_timeout=0.3, processing_window_minutes=0.01)
        fake.script("upload", "timeout")  # lost before it was filed
        run.enqueue(facturas[:1])
        run.tick()
        assert run.up.queue.get(1).state == "uncertain"
        run.run(limit_s=10)
        stats = fake.stats()
    assert run.finals() == {1: "accepted"} and stats["uploads"] == 1 and stats["duplicates"] == 0
    assert run.up.stats["resends"] == 1 and run.up.stats["lookups"] >= 1


@pytest.mark.parametrize("channel", ["dte", "boleta"])
def test_dte_repetido_after_our_own_earlier_upload_is_looked_up_not_rejected(channel, docs, tmp_path):
    """A window shorter than the SII's delay makes the uplink re-send a document the SII was
    still filing; the SII refuses the copy as "DTE Repetido". That is no rejection: the earlier
    upload is looked up, and it counts."""
    config, engine, facturas, boletas = docs
    with fake_for(docs, processing_delay=(0.4, 0.4)) as fake:
        run = make_run(config, engine, fake, tmp_path / "q.sqlite", read_timeout=0.3, processing_window_minutes=0.0)
        fake.script("upload", "timeout_after")
        run.enqueue((facturas if channel == "dte" else boletas)[:2])
        run.run(limit_s=10)
        stats = fake.stats()
    assert stats["duplicates"] >= 1, "the scenario must produce a DTE Repetido"
    assert run.finals() == {1: "accepted", 2: "accepted"}
    assert any("anterior" in note or "DOK" in note for note in (run.note(1), run.note(2)))


# --- sessions -----------------------------------------------------------------------------------------------
def test_the_dead_session_page_renews_the_token_and_uploads_again(docs, tmp_path):
    config, engine, facturas, _ = docs
    with fake_for(docs) as fake:
        run = make_run(config, engine, fake, tmp_path / "q.sqlite")
        run.enqueue(facturas[:1])
        run.run()
        fake.expire_tokens()  # the session behind our TOKEN dies: DTEUpload answers HTTP 200 + HTML
        run.enqueue(facturas[1:2], first_id=2)
        run.up.drain_once()
        stats = fake.stats()
        run.run()
    tokens = run.up.channels["dte"].tokens
    assert stats["html_pages"] == 1 and stats["uploads"] == 2  # the page filed nothing; the retry did
    assert tokens.refused == 1 and tokens.fetched == 2
    assert run.finals() == {1: "accepted", 2: "accepted"}


def test_token_lifetime_is_learnt_from_the_sii_refusing_tokens():
    now = [0.0]
    fetched: list[str] = []
    cache = auth.TokenCache(lambda: fetched.append(f"T{len(fetched)}") or fetched[-1], ttl=1800.0,
                            clock=lambda: now[0])
    first = cache.get()
    now[0] = 100.0
    cache.invalidate(first)  # the SII refused it at 100 s: tokens live about that long
    assert cache.ttl == pytest.approx(80.0)
    second = cache.get()
    now[0] = 179.0
    assert cache.get() == second  # 79 s old: still used
    now[0] = 181.0
    assert cache.get() != second and cache.refused == 1  # renewed before the SII would refuse it ...
    assert cache.ttl == pytest.approx(100.0)  # ... and the next one may live a little longer
    now[0] = 181.5
    cache.invalidate(cache.get())  # a refusal right after creation (the SII lost its sessions) ...
    assert cache.ttl == pytest.approx(30.0)  # ... renews early, down to the floor ...
    for _ in range(30):  # ... only for a while: every token that lives out its age raises it again
        now[0] += cache.ttl
        cache.get()
    assert cache.ttl == 1800.0 and cache.refused == 2
    assert auth.TokenCache(lambda: "x", ttl=60.0).ttl == 60.0  # never longer than configured


def test_dteupload_answers_html_to_a_client_without_prog_1_0(docs):
    config, engine, _, _ = docs
    with fake_for(docs) as fake:
        token = auth.soap_token(requests.Session(), _ep(fake), engine.certificate, _timeouts())
        boundary = "----x"
        body = multipart_body(engine.certificate.rut, config.company.rut, "e.xml", b"<EnvioDTE/>", boundary)
        headers = {"Cookie": f"TOKEN={token}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
        browser = requests.post(f"{fake.url}/cgi_dte/UPL/DTEUpload", data=body,
                                headers={**headers, "User-Agent": "Mozilla/5.0"}, timeout=5)
        program = requests.post(f"{fake.url}/cgi_dte/UPL/DTEUpload", data=body,
                                headers={**headers, "User-Agent": "Mozilla/4.0 (compatible; PROG 1.0; Windows NT 5.0)"},
                                timeout=5)
    assert browser.status_code == 200 and b"<html" in browser.content and b"RECEPCIONDTE" not in browser.content
    assert etree.fromstring(program.content).findtext("STATUS") == "7"  # a RECEPCIONDTE (our body is no envelope)


# --- the SOAP services as the SII serves them --------------------------------------------------------------
@pytest.mark.parametrize("service", ["CrSeed", "GetTokenFromSeed", "QueryEstUp", "QueryEstDte"])
def test_each_soap_service_serves_its_wsdl_pointing_at_itself(service, docs):
    with fake_for(docs) as fake:
        r = requests.get(f"{fake.url}/DTEWS/{service}.jws?WSDL", timeout=5)
    root = etree.fromstring(r.content)
    ns = {"w": "http://schemas.xmlsoap.org/wsdl/", "s": "http://schemas.xmlsoap.org/wsdl/soap/"}
    assert r.status_code == 200 and root.get("targetNamespace").endswith(f"sii.cl/DTEWS/{service}.jws")
    assert root.find("w:service/w:port/s:address", ns).get("location") == f"{fake.url}/DTEWS/{service}.jws"
    assert root.find("w:binding/s:binding", ns).get("style") == "rpc"


def test_crseed_and_token_answer_body_first_as_the_sii_does(docs):
    """Clients read the seed as root[0][0] (the first element of RESP_BODY)."""
    _, engine, _, _ = docs
    with fake_for(docs) as fake:
        r = requests.post(f"{fake.url}/DTEWS/CrSeed.jws", data=soap.request("getSeed", auth.CRSEED_NS, []),
                          headers={"Content-Type": "text/xml", "SOAPAction": ""}, timeout=5)
        seed_root = etree.fromstring(soap.return_value(r.content).encode())
        seed = seed_root[0][0].text
        signed = auth.signed_seed(seed, engine.certificate).decode()
        r = requests.post(f"{fake.url}/DTEWS/GetTokenFromSeed.jws",
                          data=soap.request("getToken", auth.TOKEN_NS, [("pszXml", signed)]),
                          headers={"Content-Type": "text/xml", "SOAPAction": ""}, timeout=5)
        token_root = etree.fromstring(soap.return_value(r.content).encode())
    assert etree.QName(seed_root[0]).localname == "RESP_BODY" and seed.isdigit()
    assert etree.QName(token_root[0]).localname == "RESP_BODY" and token_root[0][0].tag == "TOKEN"
    assert soap.parse_respuesta(etree.tostring(token_root)).estado == "00"  # our parser reads either order


def _fe_style_signed_seed(seed: str, cert) -> bytes:
    """A seed signed the way facturacion-electronica does: no <item>, a c14n (not enveloped)
    transform, and an RSA-SHA256 SignatureValue under a SignatureMethod that says rsa-sha1."""
    body = f"<getToken><Semilla>{seed}</Semilla></getToken>"
    digest = base64.b64encode(hashlib.sha1(etree.tostring(etree.fromstring(body), method="c14n")).digest()).decode()
    dsig = "http://www.w3.org/2000/09/xmldsig#"
    signed_info = (f'<SignedInfo xmlns="{dsig}"><CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/'
                   f'REC-xml-c14n-20010315"></CanonicalizationMethod><SignatureMethod Algorithm="{dsig}rsa-sha1">'
                   f'</SignatureMethod><Reference URI=""><Transforms><Transform Algorithm="http://www.w3.org/TR/2001/'
                   f'REC-xml-c14n-20010315"></Transform></Transforms><DigestMethod Algorithm="{dsig}sha1"></DigestMethod>'
                   f"<DigestValue>{digest}</DigestValue></Reference></SignedInfo>")
    value = base64.b64encode(cert.private_key.sign(signed_info.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    sig = (f'<Signature xmlns="{dsig}">{signed_info}<SignatureValue>{value}</SignatureValue><KeyInfo><KeyValue>'
           f"<RSAKeyValue><Modulus>{cert.modulus_b64}</Modulus><Exponent>{cert.exponent_b64}</Exponent></RSAKeyValue>"
           f"</KeyValue><X509Data><X509Certificate>{cert.der_b64}</X509Certificate></X509Data></KeyInfo></Signature>")
    return body.replace("</getToken>", sig + "\n</getToken>").encode()


@pytest.mark.parametrize("mode,ours,theirs", [("sii", "00", "00"), ("strict", "00", "06")])
def test_seed_checks(mode, ours, theirs, docs):
    """The SII gives a token to a seed signed as facturacion-electronica signs it (used in
    production for years); the manual's strict profile would not. Ours passes both."""
    _, engine, _, _ = docs
    with fake_for(docs, seed_check=mode) as fake:
        assert fake.token_from_signed_seed(auth.signed_seed(fake.new_seed(), engine.certificate), "soap")[0] == ours
        assert fake.token_from_signed_seed(_fe_style_signed_seed(fake.new_seed(), engine.certificate), "soap")[0] == theirs
        tampered = _fe_style_signed_seed(fake.new_seed(), engine.certificate).replace(b"<SignatureValue>", b"<SignatureValue>AB")
        assert fake.token_from_signed_seed(tampered, "soap")[0] == ("05" if mode == "sii" else "06")
        ours_tampered = auth.signed_seed(fake.new_seed(), engine.certificate).replace(b"<SignatureValue>", b"<SignatureValue>AB")
        assert fake.token_from_signed_seed(ours_tampered, "soap")[0] == "05"  # a signature that does not verify


# --- QueryEstDte compares the document's data -------------------------------------------------------------
@pytest.mark.parametrize("field,value", [("fch_emis", "2025-03-15"), ("rut_receptor", "60803000-K"),
                                         ("monto_total", 1)])
def test_queryestdte_answers_dnk_when_date_receptor_or_amount_differ(field, value, docs, tmp_path):
    config, engine, facturas, _ = docs
    with fake_for(docs) as fake:
        run = make_run(config, engine, fake, tmp_path / "q.sqlite")
        run.enqueue(facturas[:1])
        run.run()
        ch = run.up.channels["dte"]
        ref = doc_ref(facturas[0])
        right = ch.lookup(ref)
        wrong = ch.lookup(ref.__class__(**{**ref.__dict__, field: value}))
    assert (right.estado, wrong.estado) == ("DOK", "DNK")


# --- alerts through the hub, when one is bound ----------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bool]] = []

    def notify(self, alert, *, resolved: bool) -> None:
        self.seen.append((alert.key, alert.code, resolved))


def test_installation_alert_goes_to_the_hub_once_and_is_resolved(docs, tmp_path):
    config, engine, facturas, _ = docs
    rec = Recorder()
    with fake_for(docs) as fake:
        run = make_run(config, engine, fake, tmp_path / "q.sqlite", installation_retry=0.2)
        run.up.bind_alerts(Alerts([rec]))
        fake.forced.force("upload", "6", times=3)
        run.enqueue(facturas[:2])
        run.run(limit_s=10)
        run.up.alerts_once()
    assert run.finals() == {1: "accepted", 2: "accepted"}
    assert rec.seen == [("uplink:pause:dte", "SII_INSTALLATION", False), ("uplink:pause:dte", "SII_INSTALLATION", True)]
    assert not run.alerts  # the on_alert path is only the fallback


# --- `dtesync retry` -------------------------------------------------------------------------------------------
def test_retry_brings_back_documents_rejected_for_an_installation_cause(docs, tmp_path):
    """Rows an earlier version finalised as rejected_sii for a certificate or permission problem
    come back (looked up first); real verdicts stay; the daemon then sends them and reports."""
    config, engine, facturas, _ = docs
    state = config.folders.state  # the sandbox's own: `dtesync retry --config` finds the queue there
    state.mkdir(parents=True, exist_ok=True)
    q = UplinkQueue(state / FILE_NAME)
    reasons = {1: "STATUS 6: Empresa no autorizada a enviar archivos",
               2: "GetTokenFromSeed ESTADO -07: Error (12) parse ERROR en Validación del RUT",
               3: "RCH: Dte Rechazado (DTE-3-101 Firma del DTE inválida)"}
    for i, xml in enumerate(facturas[:3], 1):
        q.enqueue(i, "dte", doc_ref(xml), xml)
        q.finish(i, "rejected_sii", reasons[i])
    q.close()
    out = subprocess.run([sys.executable, "-m", "sync", "retry", "--config", str(config.path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    con = sqlite3.connect(state / FILE_NAME)
    rows = dict(con.execute("SELECT doc_id, state FROM uplink_queue").fetchall())
    con.close()
    assert rows == {1: "uncertain", 2: "uncertain", 3: "final"} and "1, 2" in out.stdout
    with fake_for(docs) as fake:
        run = make_run(config, engine, fake, state / FILE_NAME)
        run.run()
    assert run.finals() == {1: "accepted", 2: "accepted"}  # re-reported: queued (revived) ... accepted
    first_state, first_note = run.states[1][0]
    assert first_state == "queued" and "reactivado" in (first_note or "")


def _ep(fake):
    from sync.uplink.endpoints import SiiEndpoints

    return SiiEndpoints.single(fake.url)


def _timeouts():
    from sync.uplink.transport import Timeouts

    return Timeouts(2.0, 5.0)


def test_health_names_a_channel_the_sii_refuses_and_what_to_fix(docs, tmp_path):
    config, engine, facturas, _ = docs
    with fake_for(docs) as fake:
        run = make_run(config, engine, fake, tmp_path / "q.sqlite", installation_retry=60)
        fake.forced.force("token", "-07")
        run.enqueue(facturas[:1])
        run.tick()
        checks = run.up.checks()
    assert [(c.name, c.status) for c in checks] == [("uplink:dte", "degraded")]
    assert "eu_enrola_usuarios" in checks[0].message and "-07" in checks[0].message
