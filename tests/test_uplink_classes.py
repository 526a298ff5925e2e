"""What the uplink does with each class of SII answer, end to end: fake-sii is made to answer
each documented code (forced answers), and the uplink's outcome is checked.

- a verdict on the document: final state (rejected only for a verdict);
- transient: tried again, nothing final, no alert;
- session: a new token, tried again at once;
- installation: the channel pauses, documents stay `queued`, an alert says what to fix and
  where, and the channel resumes by itself once the SII accepts it;
- unknown: held with an alert, never accepted on that answer, never re-sent blindly;
- lost: looked up, and re-sent only when the SII says it does not hold the document.
"""

from __future__ import annotations

import pytest

from sync.fakesii import Behaviour, FakeSii, Faults
from sync.runtime import trusted_caf_keys
from sync.uplink.answers import DteKind, EnvioKind, Kind
from test_uplink_answers import EST_DTE_CLASS, EST_UP_CLASS, TOKEN_CLASS, UPLOAD_CLASS
from uplink_helpers import Run, make_run, signed_documents


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    return signed_documents(tmp_path_factory.mktemp("classes") / "sb", 3, 3)


@pytest.fixture
def fake(docs):
    config = docs[0]
    with FakeSii(caf_keys=trusted_caf_keys(config), processing_polls=0) as f:
        yield f


def run_for(docs, fake, tmp_path, **settings) -> Run:
    config, engine, _, _ = docs
    return make_run(config, engine, fake, tmp_path / "q.sqlite", **settings)


def channel_docs(docs, channel: str, n: int = 1) -> list[bytes]:
    return (docs[2] if channel == "dte" else docs[3])[:n]


def assert_paused_then_resumed(run: Run, channel: str, fix_words: tuple[str, ...]) -> None:
    q = run.up.queue
    assert q.paused(channel), "an installation problem pauses the channel"
    assert q.counts() == {"pending": 1} and run.last(1) == "queued"  # kept queued, never rejected
    note = run.note(1)
    assert "No es culpa de los documentos" in note and all(w in note for w in fix_words), note
    assert [k for k in run.codes() if k in ("SII_INSTALLATION", "SII_ANSWER_UNKNOWN")], run.alerts
    run.run()  # the channel probes the SII by itself (installation_retry) and resumes
    assert run.finals() == {1: "accepted"} and not q.paused(channel)
    assert "RESOLVED" in run.codes(), "the alert is resolved once the SII accepts the installation"


# --- token (GetTokenFromSeed and the boleta REST token) ---------------------------------------------
@pytest.mark.parametrize("channel", ["dte", "boleta"])
@pytest.mark.parametrize("code", sorted(c for c in TOKEN_CLASS if c != "00"))
def test_token_refusal(code, channel, docs, fake, tmp_path):
    run = run_for(docs, fake, tmp_path)
    fake.forced.force("token", code)
    run.enqueue(channel_docs(docs, channel))
    run.tick()
    assert fake.upload_count == 0 and run.last(1) != "rejected_sii"
    if TOKEN_CLASS[code] in (Kind.INSTALLATION, Kind.UNKNOWN):
        fix = {"-07": ("eu_enrola_usuarios", "certificado digital"), "05": ("[certificate]",),
               "11": ("[certificate]",), "21": ("[certificate]",), "-3": ("[certificate]",)}.get(code, ())
        if TOKEN_CLASS[code] is Kind.INSTALLATION:
            assert_paused_then_resumed(run, channel, fix)
        else:
            assert run.up.queue.paused(channel) and "SII_ANSWER_UNKNOWN" in run.codes()
            run.run()
    else:
        assert not run.up.queue.paused(channel) and not run.alerts  # transient: quietly again later
        assert run.up.queue.get(1).attempts == 1
        run.run()
    assert run.finals() == {1: "accepted"}


@pytest.mark.parametrize("code", ["-1", "-2"])
def test_crseed_error_is_transient(code, docs, fake, tmp_path):
    run = run_for(docs, fake, tmp_path)
    fake.forced.force("seed", code)
    run.enqueue(channel_docs(docs, "dte"))
    run.tick()
    assert not run.up.queue.paused("dte") and not run.alerts and run.up.queue.get(1).attempts == 1
    run.run()
    assert run.finals() == {1: "accepted"}


def test_enrolment_refused_for_a_while_pauses_and_resumes_by_itself(docs, fake, tmp_path):
    run = run_for(docs, fake, tmp_path, installation_retry=0.3)
    fake.forced.force("token", "-07", seconds=1.0)
    run.enqueue(channel_docs(docs, "dte", 3) + channel_docs(docs, "boleta", 3))
    run.run(limit_s=20)
    assert set(run.finals().values()) == {"accepted"}
    assert all("queued" in [s for s, _ in h] for h in run.states.values())
    assert sum(1 for k in run.codes() if k == "SII_INSTALLATION") == 2  # once per channel, not once per attempt
    assert fake.token_refusals["-07"] >= 2 and run.up.stats["paused"] == 2


# --- DTEUpload STATUS ----------------------------------------------------------------------------------
@pytest.mark.parametrize("status", sorted(s for s in UPLOAD_CLASS if s not in ("0", "Otro")) + ["4", "99", "html"])
def test_upload_status(status, docs, fake, tmp_path):
    run = run_for(docs, fake, tmp_path)
    fake.forced.force("upload", status)
    run.enqueue(channel_docs(docs, "dte"))
    run.tick()
    kind = UPLOAD_CLASS.get(status, Kind.SESSION if status == "html" else Kind.UNKNOWN)
    if kind is Kind.VERDICT:
        assert run.finals() == {1: "rejected_sii"} and f"STATUS {status}" in run.note(1)
        return
    if kind is Kind.INSTALLATION:
        fix = {"1": ("eu_enrola_usuarios", "permiso de envío"), "6": ("`environment`", "postulacion.htm")}[status]
        assert_paused_then_resumed(run, "dte", fix)
        return
    if kind is Kind.SESSION:  # a new token and the same upload again, in the same tick
        assert run.last(1) in ("sent", "accepted") and run.up.channels["dte"].tokens.refused == 1
        assert fake.html_pages == (1 if status == "html" else 0)
    elif kind is Kind.UNKNOWN:  # maybe filed: looked up before it is ever sent again, and alerted
        assert run.up.queue.get(1).state == "uncertain" and "SII_ANSWER_UNKNOWN" in run.codes()
    else:
        assert run.up.queue.get(1).state == "pending" and not run.alerts
    run.run()
    assert run.finals() == {1: "accepted"} and fake.duplicates == 0


def test_a_batch_refused_for_its_content_is_split_before_anything_is_rejected(docs, fake, tmp_path):
    run = run_for(docs, fake, tmp_path)
    fake.forced.force("upload", "7")
    run.enqueue(channel_docs(docs, "dte", 3))
    run.run()
    assert run.finals() == {1: "accepted", 2: "accepted", 3: "accepted"}  # each sent alone, none guilty
    assert fake.upload_count == 3


# --- QueryEstUp -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("estado", sorted(c for c in EST_UP_CLASS if c != "EPR"))
def test_queryestup_estado(estado, docs, fake, tmp_path):
    run = run_for(docs, fake, tmp_path)
    run.enqueue(channel_docs(docs, "dte"))
    run.up.drain_once()  # uploaded
    fake.forced.force("est_up", estado)
    run.up.poll_once()
    kind = EST_UP_CLASS[estado]
    if kind is EnvioKind.REJECTED:  # RSC/RFR of a lone document: the SII's verdict on it
        assert run.finals() == {1: "rejected_sii"} and estado in run.note(1)
        return
    if kind is EnvioKind.INSTALLATION:
        assert run.up.queue.paused("dte") and "SII_INSTALLATION" in run.codes()
        assert run.last(1) in ("sent", "queued") and run.last(1) != "rejected_sii"
    elif kind is EnvioKind.SESSION:
        assert run.up.channels["dte"].tokens.refused == 1
    else:
        assert run.last(1) == "sent" and not run.up.queue.paused("dte")
    run.run()
    assert run.finals() == {1: "accepted"}
    assert not run.up.queue.paused("dte")


# --- QueryEstDte, resolving an upload whose answer was lost ---------------------------------------------
@pytest.mark.parametrize("estado", sorted(EST_DTE_CLASS))
def test_queryestdte_estado_after_a_lost_answer(estado, docs, tmp_path):
    config = docs[0]
    with FakeSii(caf_keys=trusted_caf_keys(config), processing_polls=0, faults=Faults(stall=0.6)) as fake:
        run = run_for(docs, fake, tmp_path, read_timeout=0.3)
        fake.script("upload", "timeout_after")  # filed, and the answer never arrives
        run.enqueue(channel_docs(docs, "dte"))
        run.tick()
        assert run.up.queue.get(1).state == "uncertain" and fake.upload_count == 1
        fake.forced.force("est_dte", estado)
        run.up.drain_once()  # the lookup
        kind = EST_DTE_CLASS[estado]
        if kind is DteKind.RECEIVED:
            assert run.finals() == {1: "accepted"} and estado in run.note(1)
        elif kind is DteKind.NOT_RECEIVED:  # the SII says so after the (zero) window: sent again
            assert fake.upload_count == 2
        elif kind is DteKind.MISMATCH:  # another document holds the folio: never re-sent, alerted
            assert "SII_DATA_MISMATCH" in run.codes() and run.up.queue.get(1).hold
            assert run.last(1) == "queued" and "otros datos" in run.note(1)
        elif kind is DteKind.INSTALLATION:
            assert run.up.queue.paused("dte") and "SII_INSTALLATION" in run.codes()
        run.run()
        uploads = fake.upload_count
    assert run.finals() == {1: "accepted"}
    assert uploads == (2 if kind is DteKind.NOT_RECEIVED else 1)


# --- boleta REST --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("http", [400, 401, 403, 404, 405, 408, 429, 500, 502, 503, 504])
def test_boleta_envio_http_status(http, docs, fake, tmp_path):
    run = run_for(docs, fake, tmp_path)
    fake.forced.force("boleta_upload", str(http))
    run.enqueue(channel_docs(docs, "boleta"))
    run.tick()
    assert run.last(1) != "rejected_sii", "no HTTP status of a boleta envío is a verdict"
    run.run()
    assert run.finals() == {1: "accepted"} and fake.duplicates == 0
    if http in (400, 404):
        assert "SII_ANSWER_UNKNOWN" in run.codes()


@pytest.mark.parametrize("estado,outcome", [("REC", "accepted"), ("PDR", "accepted"), ("http:405", "accepted"),
                                            ("http:429", "accepted"), ("http:503", "accepted"),
                                            ("http:404", "accepted"), ("RSC", "rejected_sii"),
                                            ("RFR", "rejected_sii"), ("RCT", "accepted"), ("XYZ", "accepted")])
def test_boleta_envio_estado(estado, outcome, docs, fake, tmp_path):
    run = run_for(docs, fake, tmp_path)
    run.enqueue(channel_docs(docs, "boleta"))
    run.up.drain_once()
    fake.forced.force("boleta_estado", estado)
    run.up.poll_once()
    if estado == "XYZ":  # undocumented: held with an alert, not taken as accepted
        assert run.last(1) == "sent" and "SII_ANSWER_UNKNOWN" in run.codes()
    if estado == "RCT":
        assert run.up.queue.paused("boleta")
    run.run()
    assert run.finals() == {1: outcome}


@pytest.mark.parametrize("codigo", ["DOK", "DNK", "FAU", "FNA", "EMP", "http:404", "http:429"])
def test_boleta_documento_after_a_lost_answer(codigo, docs, tmp_path):
    config = docs[0]
    with FakeSii(caf_keys=trusted_caf_keys(config), processing_polls=0, faults=Faults(stall=0.6)) as fake:
        run = run_for(docs, fake, tmp_path, read_timeout=0.3)
        fake.script("upload", "timeout_after")
        run.enqueue(channel_docs(docs, "boleta"))
        run.tick()
        assert run.up.queue.get(1).state == "uncertain"
        fake.forced.force("boleta_doc", codigo)
        run.up.drain_once()
        if codigo == "DNK":
            assert "SII_DATA_MISMATCH" in run.codes()
        if codigo == "http:404":  # a 404 without a code is no evidence that the SII lacks it
            assert fake.upload_count == 1 and "SII_ANSWER_UNKNOWN" in run.codes()
        run.run()
        uploads = fake.upload_count
    assert run.finals() == {1: "accepted"}
    assert uploads == (2 if codigo in ("FAU", "FNA") else 1)


def test_rate_limited_boleta_api_is_waited_out(docs, tmp_path):
    config = docs[0]
    for status in (405, 429):
        behaviour = Behaviour(processing_polls=0, rate_limit=(2, 0.5), rate_limit_status=status, retry_after=0.2)
        with FakeSii(caf_keys=trusted_caf_keys(config), behaviour=behaviour) as fake:
            run = run_for(docs, fake, tmp_path / str(status), batch_max=1)
            run.enqueue(channel_docs(docs, "boleta", 3))
            run.run(limit_s=20)
            assert run.finals() == {1: "accepted", 2: "accepted", 3: "accepted"}
            assert fake.rate.refused > 0 and fake.duplicates == 0 and not run.alerts
