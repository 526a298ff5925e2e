"""The panel in a real browser: Debian's chromium driven by Playwright (the system browser, no
downloaded build), against a running installation (real engine, TCP test printer, fake-sii).

Lists, search, a document's page with its files, login, reprint and retry, a forged POST
refused (CSRF), Spanish and English. Every run takes screenshots of the main pages (into the
test's temporary folder); `DTESYNC_SCREENSHOTS=docs/img` writes them where the admin's guide,
docs/panel.md, shows them, so a test run never changes tracked files."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ops_rig import PASSWORD, make_rig
from sync.config import load_config
from sync.sandbox.build import create_sandbox

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(tempfile.mkdtemp(prefix="dtesync-panel-shots-"))
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is required (.ci/run installs it)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-extensions", "--no-first-run", "--disable-sync", "--disable-component-update"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    sb = create_sandbox(tmp_path_factory.mktemp("panel") / "sb", folios_per_type=200)
    return load_config(sb.config_path)


@pytest.fixture(scope="module")
def rig(tmp_path_factory, base):
    """One installation with a few documents of every kind: accepted, rejected by the input,
    a boleta, a ticket printed, one waiting for the SII."""
    r = make_rig(tmp_path_factory.mktemp("panel-rig") / "rig", base)
    r.drop("F100.txt")
    r.drop("B200.txt", example="39_boleta.txt")
    r.drop("NC300.txt", example="61_nota_credito.txt")
    r.drop("MAL.txt", data=b"[Encabezado.IdDoc]\nTipoDTE=33\n[Encabezado.Receptor]\nRUTRecep=77123456-0\n")
    for stem in ("F100", "B200", "NC300"):
        r.wait_state(stem, {"accepted"})
    r.wait_state("MAL", {"rejected_input"})
    r.printer.wait_jobs(3)
    yield r
    r.stop()


@pytest.fixture
def page(browser, rig):
    ctx = browser.new_context(viewport={"width": 1360, "height": 900}, locale="es-CL")
    pg = ctx.new_page()
    pg.set_default_timeout(15000)
    yield pg
    ctx.close()


def doc_id(rig, stem: str) -> int:
    return int(rig.status(stem)["document_id"])


def login(page, rig, next_path: str = "/") -> None:
    page.goto(rig.url + "/login?next=" + urllib.parse.quote(next_path))
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#logout")


def shot(page, name: str) -> None:
    folder = Path(os.environ["DTESYNC_SCREENSHOTS"]) if os.environ.get("DTESYNC_SCREENSHOTS") else SHOTS
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)
    assert (folder / name).stat().st_size > 0


def test_the_list_shows_todays_documents_with_state_type_folio_total_and_printing(page, rig):
    page.goto(rig.url + "/")
    assert page.locator("#today h1").inner_text().startswith("Hoy")
    row = page.locator("#docs tr", has_text="caja1/F100.txt")
    text = row.inner_text()
    assert "Factura electrónica" in text and "aceptado" in text and "impreso" in text
    assert row.locator("td.num").first.inner_text() == str(rig.status("F100")["folio"])
    assert "rechazado (entrada)" in page.locator("#docs tr", has_text="MAL.txt").inner_text()
    shot(page, "panel-documents.png")


def test_search_by_name_folio_rut_and_date(page, rig, base):
    page.goto(rig.url + "/")
    page.fill("input[name=q]", "nc3")
    page.click("form.search button")
    assert page.locator("#results tbody tr").count() == 1
    assert "NC300.txt" in page.locator("#results").inner_text()
    folio = rig.status("B200")["folio"]
    page.goto(rig.url + f"/?q={folio}")
    assert "B200.txt" in page.locator("#results").inner_text()
    rut = page.locator("#docs, #results").first.locator(".rut").first
    page.goto(rig.url + "/?q=" + urllib.parse.quote("76.192.083-9"))  # a RUT no document has
    assert page.locator("#results").count() == 0 and "No hay documentos" in page.content()
    page.goto(rig.url + "/")
    receptor = page.locator("#docs tr", has_text="F100.txt").locator(".rut").inner_text()
    page.goto(rig.url + "/?q=" + urllib.parse.quote(receptor))
    assert "F100.txt" in page.locator("#results").inner_text()
    assert rut is not None
    from datetime import datetime

    from sync.app import timezone_of

    today = datetime.now(timezone_of(base)).date()  # the company's day: from 21:00 in Chile, UTC's is tomorrow
    page.goto(rig.url + f"/?day={today.isoformat()}")
    assert page.locator("#results tbody tr").count() == 4
    page.goto(rig.url + "/?day=2001-01-01")
    assert page.locator("#results").count() == 0


def test_a_documents_page_has_history_files_and_errors_with_their_fix(page, rig):
    page.goto(rig.url + f"/doc/{doc_id(rig, 'F100')}")
    history = page.locator("#history").inner_text()
    for state in ("recibido", "firmado", "en cola SII", "enviado", "aceptado"):
        assert state in history
    assert page.locator("#xml-link").count() == 1 and page.locator("#pdf-link").count() == 1
    shot(page, "panel-document.png")
    with page.expect_download() as dl:
        page.click("#xml-link")
    data = Path(dl.value.path()).read_bytes()
    assert b"<Folio>" in data and b"Signature" in data
    resp = page.request.get(rig.url + f"/doc/{doc_id(rig, 'F100')}/pdf")
    assert resp.status == 200 and resp.body().startswith(b"%PDF") and "sandbox" in resp.headers["content-security-policy"]
    page.goto(rig.url + f"/doc/{doc_id(rig, 'MAL')}")
    errors = page.locator("#errors").inner_text()
    assert "RUT" in errors and ("dígito" in errors or "inválido" in errors)
    assert page.locator("#xml-link").count() == 0
    assert page.request.get(rig.url + f"/doc/{doc_id(rig, 'MAL')}/xml").status == 404
    assert page.request.get(rig.url + f"/doc/{doc_id(rig, 'F100')}/..%2f..%2fstate").status == 404
    assert page.request.get(rig.url + "/doc/999999").status == 404


def test_operations_shows_health_queues_stations_folios_and_certificate(page, rig):
    page.goto(rig.url + "/ops")
    assert page.locator("#overall").inner_text() == "bien"
    assert "caja1" in page.locator("#stations").inner_text()
    assert "uplink" in page.locator("#queues").inner_text() and "print:caja1" in page.locator("#queues").inner_text()
    assert "Factura electrónica" in page.locator("#folios").inner_text()
    assert "vence el" in page.locator("#certificate").inner_text()
    shot(page, "panel-operations.png")


def test_actions_need_a_login(page, rig):
    page.goto(rig.url + f"/doc/{doc_id(rig, 'F100')}")
    assert page.locator("#reprint").count() == 0
    page.click("#actions a")
    page.fill("#password", "no es la clave")
    page.click("#login-submit")
    assert "Contraseña incorrecta" in page.locator("#login-error").inner_text()
    shot(page, "panel-login.png")


def test_reprint_queues_a_new_ticket_at_the_station(page, rig):
    before = len(rig.printer.jobs)
    path = f"/doc/{doc_id(rig, 'B200')}"
    login(page, rig, path)
    assert page.url.endswith(path)
    page.click("#reprint")
    assert "Reimpresión en cola para la estación caja1" in page.locator(".flash").inner_text()
    jobs = rig.printer.wait_jobs(before + 1)
    assert len(jobs) == before + 1 and jobs[-1] == rig.printer.jobs[-1]


def test_retry_makes_a_waiting_document_due_now(page, rig):
    uplink = rig.stage("uplink")
    rig.sii_down()
    try:
        rig.drop("F400.txt")
        ident = int(rig.wait_state("F400", {"queued"})["document_id"])
        rig.wait(lambda: (q := uplink.queue.get(ident)) is not None and q.attempts >= 1, what="a failed attempt")
        uplink.s.backoff_base = uplink.s.backoff_cap = 3600.0  # the next attempt would be an hour away
        # a 500 to an upload may come after the SII filed it: the document waits as `uncertain`
        rig.wait(lambda: uplink.queue.get(ident).state in ("pending", "uncertain"), what="back in the queue")
        uplink.queue.failed(None, [ident], "prueba", [3600.0])
    finally:
        rig.sii_up()
    login(page, rig, f"/doc/{doc_id(rig, 'F400')}")
    assert page.locator("#retry").count() == 1
    page.click("#retry")
    assert "se reintentarán ahora" in page.locator(".flash").inner_text()
    rig.wait_state("F400", {"accepted"})


def test_pause_and_resume_the_uplink(page, rig):
    login(page, rig, "/ops")
    page.click("#pause")
    assert page.locator("#uplink-state").inner_text() == "En pausa" and rig.stage("uplink").paused
    page.click("#resume")
    assert page.locator("#uplink-state").inner_text() == "Enviando" and not rig.stage("uplink").paused


def test_a_post_without_this_sessions_csrf_token_is_refused(page, rig):
    login(page, rig)
    before = len(rig.printer.jobs)
    target = rig.url + f"/doc/{doc_id(rig, 'F100')}/reprint"
    resp = page.request.post(target, form={"csrf_token": "forged"}, max_redirects=0)
    assert resp.status == 403 and "Solicitud rechazada" in resp.text()
    resp = page.request.post(target, form={}, max_redirects=0)
    assert resp.status == 403
    # A page on another site posting into the panel with the admin's cookie: no token, refused.
    page.set_content(f'<form method="post" action="{target}"><button id="go">x</button></form>')
    page.click("#go")
    assert "Solicitud rechazada" in page.content()
    assert len(rig.printer.jobs) == before
    # And without a session at all (no cookie, no token): refused before anything runs.
    try:
        urllib.request.urlopen(urllib.request.Request(target, data=b"csrf_token=x", method="POST"), timeout=5)
        raise AssertionError("accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 403


def test_the_session_cookie_is_httponly_and_samesite_strict(page, rig):
    login(page, rig)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "dtesync_panel"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_english_by_configuration(browser, tmp_path, base):
    r = make_rig(tmp_path / "en", base, lang="en")
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    try:
        r.drop("F9.txt")
        r.wait_state("F9", {"accepted"})
        pg = ctx.new_page()
        pg.goto(r.url + "/")
        assert pg.locator("#today h1").inner_text().startswith("Today")
        assert "accepted" in pg.locator("#docs").inner_text() and "printed" in pg.locator("#docs").inner_text()
        assert pg.locator("html").get_attribute("lang") == "en"
        pg.goto(r.url + "/ops")
        assert pg.locator("#overall").inner_text() == "ok" and "Folios left" in pg.content()
        shot(pg, "panel-operations-en.png")
    finally:
        ctx.close()
        r.stop()
