"""The receptors' answers, read from a real IMAP mailbox (a throwaway Dovecot): well-formed
ones end on the right documents (status `receptor`, NAME.receptor.json); a tampered
signature, an unknown document and garbage end in the log; other mails are left alone."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import pytest
from lxml import etree

from delivery_fixtures import (
    Dovecot,
    DteRef,
    SmtpSink,
    answer_mail,
    drop_all,
    envio_recibos,
    receptor_certificate,
    receptor_inputs,
    receptor_ruts,
    respuesta_dte,
    tls_files,
)
from sync.delivery.answers import parse_answer, schema_errors
from sync.signed import SignedDte
from test_delivery import (
    delivered,
    delivery_stage,
    make_world,
    start_app,
    statuses,
    wait_for,
)

PASSWORD_ENV = "DTESYNC_TEST_IMAP_PASSWORD"


def imap_section(box: Dovecot, *, tls: str = "none", port: int | None = None, ca: Path | None = None) -> str:
    return (f'\n[delivery.imap]\nhost = "127.0.0.1"\nport = {port or box.port}\ntls = "{tls}"\nuser = "{box.user}"\n'
            f'password = {{ env = "{PASSWORD_ENV}" }}\npoll_interval = 0.3\n' + (f'ca_bundle = "{ca}"\n' if ca else ""))


def xmlsec1_verifies_answer(data: bytes, tmp: Path, nth: int = 1) -> bool:
    path = tmp / "answer.xml"
    path.write_bytes(data)
    cmd = ["xmlsec1", "--verify", "--id-attr:ID", "Resultado", "--id-attr:ID", "SetRecibos", "--id-attr:ID",
           "DocumentoRecibo", "--node-xpath", f"(//*[local-name()='Signature'])[{nth}]", str(path)]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def refs(config, outbox: Path) -> dict[str, tuple[DteRef, dict]]:
    out = {}
    for stem, st in statuses(outbox).items():
        dte = SignedDte.from_xml((outbox / st["xml"]).read_bytes())
        out[stem] = (DteRef(dte.tipo_dte, dte.folio, dte.fch_emis.isoformat(), dte.rut_emisor, dte.rut_receptor,
                            dte.monto_total), st)
    return out


@pytest.fixture
def delivered_world(tmp_path, monkeypatch):
    """Three documents to one receptor, delivered; a Dovecot for the issuer's exchange mailbox."""
    monkeypatch.setenv(PASSWORD_ENV, "secreto")
    rut = receptor_ruts(1, seed=21)[0]
    inputs = receptor_inputs(3, [rut], seed=22)
    with SmtpSink() as smtp, Dovecot(password="secreto") as box:
        sb, config = make_world(tmp_path, smtp_port=smtp.port, after="signed", receptors={rut: "dte@receptor.cl"},
                                extra="")
        sb.config_path.write_text(sb.config_path.read_text() + imap_section(box))
        from sync.config import load_config

        config = load_config(sb.config_path)
        app = start_app(config)
        try:
            drop_all(sb.inbox, inputs)
            assert wait_for(lambda: delivered(config.folders.outbox, len(inputs)), 60)
            yield app, config, box, smtp, rut, tmp_path
        finally:
            app.stop()


def test_answers_end_on_their_documents_and_the_rest_in_the_log(delivered_world, caplog):
    app, config, box, smtp, rut, tmp = delivered_world
    caplog.set_level(logging.INFO, logger="dtesync.delivery")
    company = str(config.company.rut)
    cert = receptor_certificate(tmp, rut)
    docs = refs(config, config.folders.outbox)
    (a, sa), (b, sb_), (c, sc) = sorted(docs.values(), key=lambda x: x[1]["folio"] + 100 * x[0].tipo_dte)
    envio_of = {m.message_id: next(n for n in m.attachments() if n.startswith("ENVIO_DTE_")) for m in smtp.messages()}

    recepcion = respuesta_dte(cert, rut, company, envio=(envio_of[sa["delivery"]["message_id"]], 0),
                              recepcion=[(a, 0)], id_respuesta=1)
    resultado = respuesta_dte(cert, rut, company, resultado=[(a, 0, "Aceptado"), (b, 2, "Precio no corresponde")],
                              id_respuesta=2)
    recibos = envio_recibos(cert, rut, company, [a], recinto="Bodega central")
    tampered = respuesta_dte(cert, rut, company, resultado=[(c, 0, "Aceptado")], id_respuesta=3).replace(
        b"<EstadoDTE>0</EstadoDTE>", b"<EstadoDTE>2</EstadoDTE>")
    unknown = respuesta_dte(cert, rut, company, resultado=[(DteRef(33, 99999, a.fch_emis, company, rut, 1000), 0, "OK")],
                            id_respuesta=4)
    # The fixtures are what a receptor's software sends: valid and verifiable by others than us.
    for good in (recepcion, resultado, recibos):
        answer = parse_answer(good)
        assert answer is not None and schema_errors(etree.fromstring(good)) == []
        assert xmlsec1_verifies_answer(good, tmp)
    assert not xmlsec1_verifies_answer(tampered, tmp)

    mails = [answer_mail(x, sender="dte@receptor.cl", to="dte@empresademo.cl", name=n)
             for x, n in ((recepcion, "recepcion.xml"), (resultado, "resultado.xml"), (recibos, "recibos.xml"),
                          (tampered, "resultado2.xml"), (unknown, "resultado3.xml"),
                          (b"<RespuestaDTE><Resultado>rota", "basura.xml"))]
    mails.append(b"From: alguien@ejemplo.cl\r\nSubject: consulta\r\n\r\nHola, una consulta.\r\n")  # not an answer
    for m in mails:
        box.append(m)
    stage = delivery_stage(app)
    out = config.folders.outbox
    assert wait_for(lambda: stage.store.imap_position("INBOX") is not None
                    and stage.store.imap_position("INBOX")[1] >= len(mails), 30)

    st = statuses(out)
    ra, rb = st[_stem(st, sa)]["receptor"], st[_stem(st, sb_)]["receptor"]
    assert ra["state"] == "accepted" and ra["goods_received"] is True
    assert [x["kind"] for x in ra["answers"]] == ["envio", "recepcion", "resultado", "recibo"]
    assert rb["state"] == "rejected" and "Precio no corresponde" in rb["reason"]
    assert "receptor" not in st[_stem(st, sc)]  # the tampered answer changed nothing
    assert st[_stem(st, sa)]["state"] == "signed"  # the SII state is not the receptor's
    written = json.loads((out / f"{_stem(st, sa)}.receptor.json").read_text())
    assert written["folio"] == a.folio and written["state"] == "accepted"
    assert written["answers"][-1]["recinto"] == "Bodega central"
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "signature does not verify" in log
    assert "document we did not deliver" in log
    assert "unreadable answer" in log
    assert stage.stats["answers_filed"] == 5
    assert all(b"\\Seen" not in f for f in box.flags())  # the mailbox is left as it was


def _stem(st: dict, status: dict) -> str:
    return next(k for k, v in st.items() if v["document_id"] == status["document_id"])


def test_answers_are_filed_once_even_when_the_mailbox_is_read_again(delivered_world):
    app, config, box, _smtp, rut, tmp = delivered_world
    cert = receptor_certificate(tmp, rut)
    (a, sa), *_ = refs(config, config.folders.outbox).values()
    answer = respuesta_dte(cert, rut, str(config.company.rut), resultado=[(a, 1, "Faltan 2 unidades")])
    box.append(answer_mail(answer, sender="dte@receptor.cl", to="dte@empresademo.cl"))
    box.append(answer_mail(answer, sender="dte@receptor.cl", to="dte@empresademo.cl"))  # sent twice
    stage = delivery_stage(app)
    assert wait_for(lambda: (stage.store.imap_position("INBOX") or (0, 0))[1] >= 2, 30)
    stage.store.set_imap_position("INBOX", 0, 0)  # as after a rebuilt folder (new UIDVALIDITY)
    stage.read_answers_once()
    st = statuses(config.folders.outbox)
    r = st[_stem(st, sa)]["receptor"]
    assert r["state"] == "accepted_with_objections" and len(r["answers"]) == 1


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
def test_mailbox_over_tls_is_read_when_its_certificate_verifies(tmp_path, monkeypatch, tls):
    monkeypatch.setenv(PASSWORD_ENV, "secreto")
    paths = tls_files(tmp_path / "tls")
    rut = receptor_ruts(1, seed=23)[0]
    with SmtpSink() as smtp, Dovecot(password="secreto", tls=paths) as box:
        sb, config = make_world(tmp_path, smtp_port=smtp.port, after="signed", receptors={rut: "dte@receptor.cl"})
        port = box.imaps_port if tls == "ssl" else box.port
        sb.config_path.write_text(sb.config_path.read_text() + imap_section(box, tls=tls, port=port, ca=paths.ca))
        from sync.config import load_config

        config = load_config(sb.config_path)
        inputs = receptor_inputs(1, [rut], seed=24)
        app = start_app(config)
        try:
            drop_all(sb.inbox, inputs)
            assert wait_for(lambda: delivered(config.folders.outbox, 1), 60)
            cert = receptor_certificate(tmp_path, rut)
            ((a, _),) = refs(config, config.folders.outbox).values()
            box.append(answer_mail(respuesta_dte(cert, rut, str(config.company.rut), resultado=[(a, 0, "OK")]),
                                   sender="dte@receptor.cl", to="dte@empresademo.cl"))
            assert wait_for(lambda: "receptor" in next(iter(statuses(config.folders.outbox).values())), 30)
        finally:
            app.stop()


def test_mailbox_with_an_unverifiable_certificate_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "secreto")
    paths = tls_files(tmp_path / "tls")
    with SmtpSink() as smtp, Dovecot(password="secreto", tls=paths) as box:
        sb, config = make_world(tmp_path, smtp_port=smtp.port, after="signed")
        sb.config_path.write_text(sb.config_path.read_text() + imap_section(box, tls="ssl", port=box.imaps_port))
        from sync.config import load_config

        config = load_config(sb.config_path)
        app = start_app(config)
        try:
            assert wait_for(lambda: any(a.code == "DELIVERY_IMAP_DOWN" for a in app.alerts.active()), 30)
            alert = next(a for a in app.alerts.active() if a.code == "DELIVERY_IMAP_DOWN")
        finally:
            app.stop()
    assert "certificado TLS no verificado" in alert.params["detail"]
    time.sleep(0)  # nothing was logged in: the password never went to an unverified server
