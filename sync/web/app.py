"""The panel's Flask application (docs/panel.md).

Reading: today's and recent documents, search (a name prefix, a folio, a receptor's RUT, a
date), a document's page (history, errors with their fix from the catalog, its XML and PDF),
and operations (health, queues, printing stations, folio stock, certificate and CAF expiry,
active alerts). Open on loopback; behind the login when the panel listens elsewhere.

Acting (reprint, retry, pause/resume the uplink, dismiss an alert) needs the login and a
CSRF token. Files are served only as the Filing knows them for a document (NAME.xml,
NAME.pdf wherever retention put them): the request names a document id and a kind, never a
path.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from sync.errors import DteSyncError
from sync.health import HealthView, status_of
from sync.metrics import CONTENT_TYPE, Metrics
from sync.outbox import render_errors
from sync.rut import Rut, RutError
from sync.sii import TipoDte
from sync.web import auth
from sync.web.i18n import translate
from sync.web.settings import WebConfig

if TYPE_CHECKING:
    from sync.app import App
    from sync.journal import Doc, Journal

log = logging.getLogger("dtesync.web")
PAGE = 50
FILES = {"xml": (".xml", "application/xml"), "pdf": (".pdf", "application/pdf")}
FILE_LIMIT = 32 << 20
# Pages: our own stylesheet only, no script at all; files: nothing runs, ever.
PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
FILE_CSP = "default-src 'none'; sandbox"


@dataclass
class Panel:
    """What the panel reads and acts on, given explicitly by the stage (no globals)."""

    app: App
    web: WebConfig
    health: HealthView
    metrics: Metrics
    lang: str = "es"
    tz: tzinfo | None = None
    password_hash: str | None = None

    @property
    def journal(self) -> Journal:
        return self.app.filing.journal

    def stage(self, name: str) -> Any:
        return self.app.stage(name)


def create_app(panel: Panel) -> Flask:
    flask = Flask("sync.web", template_folder="templates", static_folder="static")
    flask.config.update(
        SECRET_KEY=secrets.token_bytes(32),
        SESSION_COOKIE_NAME="dtesync_panel",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=panel.web.tls,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=panel.web.session_hours),
        MAX_CONTENT_LENGTH=64 * 1024,
        TEMPLATES_AUTO_RELOAD=False,
    )
    flask.jinja_env.autoescape = True  # every template, whatever its extension
    throttle = auth.Throttle()
    lang = panel.lang

    def t(key: str, **params: object) -> str:
        return translate(key, lang, **params)

    def when(ts: float | None) -> str:
        if ts is None:
            return ""
        return datetime.fromtimestamp(ts, panel.tz).strftime("%Y-%m-%d %H:%M:%S")

    def money(n: int | None) -> str:
        return "" if n is None else f"${n:,}".replace(",", ".")

    def tipo_name(tipo: int | None) -> str:
        kind = TipoDte.of(tipo) if tipo is not None else None
        return kind.title if kind is not None else ("" if tipo is None else str(tipo))

    def ago(seconds: float | None) -> str:
        if seconds is None:
            return "—"
        s = int(seconds)
        return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else f"{s // 60} min {s % 60} s"

    flask.jinja_env.globals.update(t=t, when=when, money=money, tipo_name=tipo_name, ago=ago, lang=lang,
                                   cluster=panel.stage("cluster") is not None,
                                   csrf_token=auth.csrf_token, csrf_field=auth.CSRF_FIELD, logged_in=auth.logged_in)

    # --- every request ----------------------------------------------------------------------------
    open_paths = ("/health", "/metrics", "/login", "/static/")

    @flask.before_request
    def guard() -> Any:
        g.actions = panel.password_hash is not None
        if request.method == "POST":
            auth.check_csrf()
            if request.path != "/login" and not auth.logged_in():
                abort(401)
        elif not panel.web.loopback and not auth.logged_in() and not request.path.startswith(open_paths):
            return redirect(url_for("login", next=request.path))
        return None

    @flask.after_request
    def headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        if not request.path.startswith("/static/"):
            resp.headers["Cache-Control"] = "no-store"
        if panel.web.tls:
            resp.headers["Strict-Transport-Security"] = "max-age=31536000"
        return resp

    @flask.errorhandler(403)
    def forbidden(exc: Any) -> Any:
        return render_template("message.html", title="403", message=t("csrf.refused")), 403

    @flask.errorhandler(401)
    def unauthorized(exc: Any) -> Any:
        return redirect(url_for("login", next=request.path))

    @flask.errorhandler(404)
    def not_found(exc: Any) -> Any:
        return render_template("message.html", title="404", message=str(exc.description or "")), 404

    # --- documents ---------------------------------------------------------------------------------
    def entries(doc: Doc) -> dict[str, Any]:
        """The stages' status entries of a document (print, delivery ...)."""
        return panel.app.filing.status_entries([doc])[doc.id]

    def rows(docs: list[Doc]) -> list[dict[str, Any]]:
        found = panel.app.filing.status_entries(docs)  # a page's documents: one query per stage
        return [{"doc": d, "entries": found[d.id]} for d in docs]

    def day_bounds(day: date) -> tuple[float, float]:
        start = datetime(day.year, day.month, day.day, tzinfo=panel.tz) if panel.tz else datetime(
            day.year, day.month, day.day)
        return start.timestamp(), (start + timedelta(days=1)).timestamp()

    def today() -> date:
        return datetime.now(panel.tz).date()

    def search(q: str) -> list[Doc]:
        q = q.strip()
        found: dict[int, Doc] = {}
        if q.isdigit():
            for d in panel.journal.find(folio=int(q), tipos=[int(x) for x in TipoDte]):
                found[d.id] = d
        if any(c.isdigit() for c in q) and ("-" in q or "." in q) and len(q) <= 14:
            try:
                rut = Rut.parse(q)
            except (RutError, ValueError):
                rut = None
            if rut is not None:
                for d in panel.journal.find(rut_receptor=str(rut)):
                    found[d.id] = d
        for d in panel.journal.find(name=q):
            found[d.id] = d
        return sorted(found.values(), key=lambda d: d.id, reverse=True)[:200]

    @flask.get("/")
    def documents() -> Any:
        q = request.args.get("q", "").strip()[:100]
        day_text = request.args.get("day", "").strip()
        before = request.args.get("before", type=int)
        results: list[Doc] | None = None
        day: date | None = None
        if day_text:
            try:
                day = date.fromisoformat(day_text)
            except ValueError:
                day = None
        if q:
            results = search(q)
            if day is not None:
                start, end = day_bounds(day)
                results = [d for d in results if start <= d.created_at < end]
        elif day is not None:
            results = panel.journal.created_between(*day_bounds(day), limit=500)
        start, end = day_bounds(today())
        counts = panel.journal.counts_between(start, end)
        recent = [] if results is not None else panel.journal.recent(PAGE, before_id=before)
        older = recent[-1].id if len(recent) == PAGE else None
        return render_template("documents.html", q=q, day=day_text, results=rows(results) if results is not None else None,
                               recent=rows(recent), older=older, today_counts=counts, today_total=sum(counts.values()))

    def get_doc(doc_id: int) -> Doc:
        doc = panel.journal.get(doc_id)
        if doc is None or doc.step == "gone":
            abort(404, description=f"{t('doc.not_found')} #{doc_id}")
        return doc

    @flask.get("/doc/<int:doc_id>")
    def document(doc_id: int) -> Any:
        doc = get_doc(doc_id)
        filing = panel.app.filing
        files = {kind: _has(filing, doc, suffix) for kind, (suffix, _) in FILES.items()}
        uplink = panel.stage("uplink")
        queued = uplink.queue.get(doc.id) if uplink is not None else None
        printing = panel.stage("printing")
        return render_template("document.html", doc=doc, history=panel.journal.history(doc.id),
                               errors=render_errors(doc, lang), entries=entries(doc), files=files,
                               where=str(filing.result_path(doc, ".status.json").parent),
                               queued=queued, can_print=printing is not None and bool(list(printing.stations)),
                               can_retry=queued is not None and queued.state in ("pending", "uncertain"))

    @flask.get("/doc/<int:doc_id>/<kind>")
    def document_file(doc_id: int, kind: str) -> Any:
        if kind not in FILES:
            abort(404)
        doc = get_doc(doc_id)
        suffix, mime = FILES[kind]
        try:
            data = panel.app.filing.out.read_result(doc, suffix, FILE_LIMIT)
        except OSError:
            data = None  # a link or a special file where the result should be: not served
        if data is None:
            abort(404, description=f"{doc.out_stem}{suffix}")
        name = panel.app.filing.result_path(doc, suffix).name
        resp = Response(data, mimetype=mime)
        disposition = "inline" if kind == "pdf" else "attachment"
        safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-~") else "_" for c in name)
        resp.headers["Content-Disposition"] = f'{disposition}; filename="{safe}"'
        resp.headers["Content-Security-Policy"] = FILE_CSP
        return resp

    # --- operations ---------------------------------------------------------------------------------
    @flask.get("/ops")
    def operations() -> Any:
        findings = panel.health.findings()
        checks = [f.check(lang) for f in findings]
        status = status_of(findings)
        queues = [q for _, q in panel.health.queue_stats()]
        printing = panel.stage("printing")
        stations = []
        if printing is not None:
            from sync.printing.connectors import describe

            for st in printing.stations:
                head = printing.queue.head(st.name)
                stations.append({"name": st.name, "printer": describe(st.config.connector), "head": head})
        inst = panel.health.installation
        try:
            stock = inst.stock()
        except Exception:
            stock = []
        not_after = inst.cert_not_after()
        cert = None
        if not_after is not None:
            cert = {"day": not_after.date().isoformat(), "days": (not_after.date() - date.today()).days}
        uplink = panel.stage("uplink")
        retention = panel.stage("retention")
        return render_template("operations.html", overall=status, checks=checks,
                               queues=queues, stations=stations, stock=stock, cert=cert, today=date.today(),
                               alerts=panel.app.alerts.active(), uplink=uplink, retention=retention)

    # --- cluster mode: every site (docs/sites.md) ------------------------------------------------------
    @flask.get("/sites")
    def sites() -> Any:
        cluster = panel.stage("cluster")
        if cluster is None:
            abort(404)
        view, error = None, None
        try:
            view = cluster.overview()
        except Exception as exc:  # the database is down: the page says so, the site keeps signing
            error = str(exc)
        return render_template("sites.html", view=view, error=error, site=cluster.config.site)

    # --- login ------------------------------------------------------------------------------------------
    def safe_next(target: str | None) -> str:
        if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
            return target
        return url_for("documents")

    @flask.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = None
        if request.method == "POST":
            who = request.remote_addr or "?"
            if panel.password_hash is None:
                error = t("login.disabled")
            elif throttle.blocked(who):
                error = t("login.throttled")
            elif auth.password_ok(panel.password_hash, request.form.get("password", "")):
                throttle.cleared(who)
                auth.log_in()
                flash(t("flash.logged_in"))
                return redirect(safe_next(request.form.get("next")))
            else:
                throttle.failed(who)
                error = t("login.wrong")
        auth.csrf_token()
        return render_template("login.html", error=error, next=safe_next(request.args.get("next"))), (
            401 if error else 200)

    @flask.post("/logout")
    def logout() -> Any:
        auth.log_out()
        flash(t("flash.logged_out"))
        return redirect(url_for("documents"))

    # --- actions (behind the login: see guard) ---------------------------------------------------------
    @flask.post("/doc/<int:doc_id>/reprint")
    def reprint(doc_id: int) -> Any:
        get_doc(doc_id)
        printing = panel.stage("printing")
        if printing is None:
            flash(t("flash.no_printing"), "error")
        else:
            try:
                job = printing.reprint(doc_id)
                flash(t("flash.reprinted", station=job.station))
            except DteSyncError as exc:
                flash(exc.message(lang), "error")
        return redirect(url_for("document", doc_id=doc_id))

    @flask.post("/doc/<int:doc_id>/retry")
    def retry(doc_id: int) -> Any:
        get_doc(doc_id)
        return _retry([doc_id], url_for("document", doc_id=doc_id))

    @flask.post("/uplink/retry")
    def retry_all() -> Any:
        return _retry(None, url_for("operations"))

    def _retry(ids: list[int] | None, back: str) -> Any:
        uplink = panel.stage("uplink")
        if uplink is None:
            flash(t("flash.no_uplink"), "error")
            return redirect(back)
        n = uplink.queue.retry_now(ids)
        if n:
            uplink.wake()
            flash(t("flash.retried", n=n))
        else:
            flash(t("flash.nothing_to_retry"), "error")
        return redirect(back)

    @flask.post("/uplink/pause")
    def pause() -> Any:
        uplink = panel.stage("uplink")
        if uplink is None:
            flash(t("flash.no_uplink"), "error")
        else:
            uplink.pause("panel")
            flash(t("flash.paused"))
        return redirect(url_for("operations"))

    @flask.post("/uplink/resume")
    def resume() -> Any:
        uplink = panel.stage("uplink")
        if uplink is None:
            flash(t("flash.no_uplink"), "error")
        else:
            uplink.resume()
            flash(t("flash.resumed"))
        return redirect(url_for("operations"))

    @flask.post("/alerts/dismiss")
    def dismiss() -> Any:
        key = request.form.get("key", "")
        if key.startswith("rejected_sii:") and panel.app.alerts.resolve(key):
            flash(t("flash.dismissed"))
        return redirect(url_for("operations"))

    # --- machines ----------------------------------------------------------------------------------------
    @flask.get("/health")
    def health() -> Any:
        report = panel.health.report()
        return flask.response_class(_json(report), status=503 if report["status"] == "down" else 200,
                                    mimetype="application/json")

    @flask.get("/metrics")
    def metrics() -> Any:
        return Response(panel.metrics.text(), mimetype=None, content_type=CONTENT_TYPE)

    return flask


def _has(filing: Any, doc: Doc, suffix: str) -> bool:
    try:
        return bool(filing.out.has_result(doc, suffix))
    except (OSError, ValueError):  # a link where a result should be; a path outside the folders
        return False


def _json(data: Any) -> str:
    import json

    return json.dumps(data, ensure_ascii=False)
