"""Scheduled jobs that are not about one document: the daily sales report (informe de ventas)
and the stock/expiry alerts (CAF running out or expiring, certificate expiring).

Pure core (`summarize`, `stock_alerts`) over data read at the edges (`collect` reads the
journal and the signed XMLs in the outbox; `write_report` writes CSV and PDF atomically into
`outbox/reports/`). `attach` runs both on an APScheduler 3.x BackgroundScheduler in the daemon.

Configuration (both optional):
    [alerts]   caf_stock_min = 100, caf_expiry_days = 30, cert_expiry_days = 30, check_every = 3600
    [reports]  daily_at = "23:55"   (local time; the report covers that day)
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterable

from sync import safexml
from sync.errors import DteSyncError

log = logging.getLogger("dtesync.reports")

TIPO_NOMBRE = {
    33: "Factura electrónica", 34: "Factura exenta electrónica", 39: "Boleta electrónica",
    41: "Boleta exenta electrónica", 43: "Liquidación factura electrónica", 46: "Factura de compra electrónica",
    52: "Guía de despacho electrónica", 56: "Nota de débito electrónica", 61: "Nota de crédito electrónica",
    110: "Factura de exportación electrónica", 111: "Nota de débito de exportación", 112: "Nota de crédito de exportación",
}
# How each type counts in the day's sales: credit notes subtract; dispatch guides and purchase
# invoices (issued by the buyer) are listed but are not sales.
SIGN = {61: -1, 112: -1, 52: 0, 46: 0}
SIGNED_STATES = ("signed", "queued", "sent", "accepted", "accepted_with_objections", "rejected_sii")


# --- configuration --------------------------------------------------------------------------------
@dataclass
class AlertSettings:
    caf_stock_min: int = 100
    caf_expiry_days: int = 30
    cert_expiry_days: int = 30
    check_every: float = 3600.0
    daily_at: str = "23:55"


def settings_of(raw: dict[str, Any]) -> AlertSettings:
    """[alerts] and [reports] of the TOML (config.raw); wrong values are CONFIG_INVALID."""
    s = AlertSettings()
    section = raw.get("alerts", {}) or {}
    for key in ("caf_stock_min", "caf_expiry_days", "cert_expiry_days"):
        value = section.get(key, getattr(s, key))
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DteSyncError("CONFIG_INVALID", field=f"alerts.{key}", params={"detail": f"se esperaba un entero >= 0, se encontró {value!r}"})
        setattr(s, key, value)
    every = section.get("check_every", s.check_every)
    if not isinstance(every, (int, float)) or isinstance(every, bool) or every <= 0:
        raise DteSyncError("CONFIG_INVALID", field="alerts.check_every", params={"detail": f"se esperaban segundos > 0, se encontró {every!r}"})
    s.check_every = float(every)
    at = (raw.get("reports", {}) or {}).get("daily_at", s.daily_at)
    try:
        datetime.strptime(str(at), "%H:%M")
    except ValueError:
        raise DteSyncError("CONFIG_INVALID", field="reports.daily_at", params={"detail": f"se esperaba HH:MM, se encontró {at!r}"}) from None
    s.daily_at = str(at)
    return s


# --- alerts ---------------------------------------------------------------------------------------
@dataclass
class Alert:
    code: str  # from sync.errors.CATALOG
    level: str  # WARNING | ERROR
    params: dict[str, Any]

    def message(self, lang: str = "es") -> str:
        return DteSyncError(self.code, params=self.params).message(lang)


def stock_alerts(stock: Iterable[Any], cert_not_after: datetime | None, today: date, s: AlertSettings) -> list[Alert]:
    """CAF stock below the threshold (ERROR when none is left), the CAF in use expiring within
    `caf_expiry_days`, the certificate expiring within `cert_expiry_days` (ERROR once expired)."""
    out: list[Alert] = []
    for row in stock:
        if row.available < s.caf_stock_min:
            out.append(Alert("CAF_STOCK_LOW", "ERROR" if row.available == 0 else "WARNING",
                             {"tipo_dte": row.tipo_dte, "available": row.available, "minimum": s.caf_stock_min}))
        if row.expires_on is not None and row.available and (row.expires_on - today).days <= s.caf_expiry_days:
            out.append(Alert("CAF_EXPIRING", "WARNING", {"tipo_dte": row.tipo_dte, "expires_on": row.expires_on.isoformat(),
                                                          "days": (row.expires_on - today).days}))
    if cert_not_after is not None:
        days = (cert_not_after.date() - today).days
        if days < 0:
            out.append(Alert("CERT_EXPIRED", "ERROR", {"expired_on": cert_not_after.date().isoformat()}))
        elif days <= s.cert_expiry_days:
            out.append(Alert("CERT_EXPIRING", "WARNING", {"expires_on": cert_not_after.date().isoformat(), "days": days}))
    return out


def current_alerts(config: Any, today: date, certificate: Any = None) -> list[Alert]:
    """The alerts for an installation (used by the scheduled job and by `dtesync status`)."""
    from sync.runtime import load_certificate, open_folio_store

    s = settings_of(config.raw)
    store = open_folio_store(config)
    try:
        stock = store.stock(today)
    finally:
        store.close()
    not_after = None
    try:
        not_after = (certificate or load_certificate(config, now=datetime.now().astimezone())).not_after
    except DteSyncError as exc:  # an expired or unreadable certificate is itself the alert
        return stock_alerts(stock, None, today, s) + [Alert(exc.code, "ERROR", dict(exc.params or {}))]
    return stock_alerts(stock, not_after, today, s)


def log_alerts(alerts: list[Alert], lang: str = "es") -> None:
    for a in alerts:
        log.log(logging.ERROR if a.level == "ERROR" else logging.WARNING, "%s: %s", a.code, a.message(lang),
                extra={"code": a.code, **{f"alert_{k}": v for k, v in a.params.items()}})


# --- the informe de ventas ------------------------------------------------------------------------
@dataclass(frozen=True)
class DocAmounts:
    tipo_dte: int
    folio: int
    fch_emis: date
    neto: int
    iva: int
    exento: int
    total: int
    rejected: bool = False  # rejected by the SII: its folio was used, it is not a sale


def amounts_of(xml: bytes, rejected: bool = False) -> DocAmounts:
    """The Totales of a signed DTE (absent amounts are 0)."""
    root = safexml.fromstring(xml)
    doc = root.find(".//{*}Documento")
    idd, tot = doc.find("{*}Encabezado/{*}IdDoc"), doc.find("{*}Encabezado/{*}Totales")

    def amount(tag: str) -> int:
        text = tot.findtext("{*}" + tag) if tot is not None else None
        return int(round(float(text))) if text else 0

    return DocAmounts(int(idd.findtext("{*}TipoDTE")), int(idd.findtext("{*}Folio")),
                      date.fromisoformat(idd.findtext("{*}FchEmis")), amount("MntNeto"), amount("IVA"),
                      amount("MntExe"), amount("MntTotal"), rejected)


@dataclass
class TypeRow:
    tipo_dte: int
    documentos: int = 0
    rechazados_sii: int = 0
    neto: int = 0
    iva: int = 0
    exento: int = 0
    total: int = 0
    folios: list[tuple[int, int]] = field(default_factory=list)

    @property
    def nombre(self) -> str:
        return TIPO_NOMBRE.get(self.tipo_dte, f"TipoDTE {self.tipo_dte}")


@dataclass
class SalesReport:
    day: date
    rut_emisor: str
    razon_social: str
    rows: list[TypeRow]
    pending_annulment: list[tuple[int, int, str]]  # (tipo_dte, folio, reason)
    generated_at: datetime

    def totals(self) -> dict[str, int]:
        """The day's sales: every type with its sign (credit notes subtract; guides and purchase invoices do not count)."""
        t = {"neto": 0, "iva": 0, "exento": 0, "total": 0}
        for r in self.rows:
            for k in t:
                t[k] += SIGN.get(r.tipo_dte, 1) * getattr(r, k)
        return t


def folio_ranges(folios: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for f in sorted(set(folios)):
        if out and f == out[-1][1] + 1:
            out[-1] = (out[-1][0], f)
        else:
            out.append((f, f))
    return out


def summarize(day: date, docs: Iterable[DocAmounts], pending: Iterable[tuple[int, int, str]], *, rut_emisor: str,
              razon_social: str, generated_at: datetime) -> SalesReport:
    rows: dict[int, TypeRow] = {}
    folios: dict[int, list[int]] = {}
    for d in docs:
        if d.fch_emis != day:
            continue
        row = rows.setdefault(d.tipo_dte, TypeRow(d.tipo_dte))
        folios.setdefault(d.tipo_dte, []).append(d.folio)
        if d.rejected:
            row.rechazados_sii += 1
            continue
        row.documentos += 1
        row.neto, row.iva, row.exento, row.total = row.neto + d.neto, row.iva + d.iva, row.exento + d.exento, row.total + d.total
    for tipo, fs in folios.items():
        rows[tipo].folios = folio_ranges(fs)
    return SalesReport(day, rut_emisor, razon_social, [rows[k] for k in sorted(rows)], sorted(pending), generated_at)


def collect(config: Any) -> list[DocAmounts]:
    """Every signed document in the journal, its amounts read from its signed XML."""
    from sync.journal import Journal
    from sync.outbox import Outbox

    path = config.folders.state / "journal.sqlite3"
    if not path.exists():
        return []
    journal = Journal(path)
    try:
        docs = [d for d in journal.all_docs() if d.folio is not None and d.state in SIGNED_STATES]
    finally:
        journal.close()
    out = Outbox(config.folders.outbox, config.folders.archive, config.folders.rejected)
    found = []
    for d in docs:
        base = out.results_base(d)
        try:
            found.append(amounts_of(base.with_name(base.name + ".xml").read_bytes(), d.state == "rejected_sii"))
        except OSError:
            log.warning("report: signed XML missing", extra={"doc": d.id, "source": d.rel})
    return found


def build_report(config: Any, day: date, now: datetime | None = None) -> SalesReport:
    from sync.runtime import open_folio_store

    store = open_folio_store(config)
    try:
        pending = [(p.tipo_dte, p.folio, p.reason or "") for p in store.pending_annulment()]
    finally:
        store.close()
    c = config.company
    return summarize(day, collect(config), pending, rut_emisor=str(c.rut), razon_social=c.razon_social,
                     generated_at=now or datetime.now().astimezone())


def _ranges_text(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)


def report_csv(r: SalesReport) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\r\n")
    w.writerow(["informe_ventas", r.day.isoformat(), r.rut_emisor, r.razon_social])
    w.writerow(["tipo_dte", "nombre", "documentos", "neto", "iva", "exento", "total", "folios", "rechazados_sii"])
    for row in r.rows:
        w.writerow([row.tipo_dte, row.nombre, row.documentos, row.neto, row.iva, row.exento, row.total,
                    _ranges_text(row.folios), row.rechazados_sii])
    t = r.totals()
    w.writerow(["total", "ventas del día (notas de crédito restan)", sum(x.documentos for x in r.rows),
                t["neto"], t["iva"], t["exento"], t["total"], "", ""])
    w.writerow([])
    w.writerow(["pendientes_anulacion", "tipo_dte", "folio", "motivo"])
    for tipo, folio, reason in r.pending_annulment:
        w.writerow(["", tipo, folio, reason])
    return buf.getvalue().encode("utf-8-sig")  # BOM: spreadsheets read the accents right


def _money(n: int) -> str:
    return f"${n:,}".replace(",", ".")


def report_pdf(r: SalesReport) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=landscape(A4), title=f"Informe de ventas {r.day.isoformat()}",
                            author="dtesync", invariant=1)
    st = getSampleStyleSheet()
    t = r.totals()
    data = [["Tipo", "Documento", "Cant.", "Neto", "IVA", "Exento", "Total", "Folios"]]
    for row in r.rows:
        data.append([str(row.tipo_dte), row.nombre, str(row.documentos), _money(row.neto), _money(row.iva),
                     _money(row.exento), _money(row.total), Paragraph(_ranges_text(row.folios), st["BodyText"])])
    data.append(["", "Ventas del día", str(sum(x.documentos for x in r.rows)), _money(t["neto"]), _money(t["iva"]),
                 _money(t["exento"]), _money(t["total"]), ""])
    table = Table(data, colWidths=[35, 190, 40, 80, 70, 70, 80, 230], repeatRows=1)
    table.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"), ("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold"),
                               ("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("ALIGN", (2, 1), (6, -1), "RIGHT"),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    story = [Paragraph(f"Informe de ventas del {r.day.strftime('%d-%m-%Y')}", st["Title"]),
             Paragraph(f"{r.razon_social} — RUT {r.rut_emisor}", st["Normal"]), Spacer(1, 10), table, Spacer(1, 14)]
    rejected = [row for row in r.rows if row.rechazados_sii]
    if rejected:
        story.append(Paragraph("Rechazados por el SII (folio usado, no es venta): " +
                               "; ".join(f"TipoDTE {x.tipo_dte}: {x.rechazados_sii}" for x in rejected), st["Normal"]))
    story.append(Paragraph("Folios pendientes de anulación: " + (
        "; ".join(f"TipoDTE {tipo} folio {folio}" for tipo, folio, _ in r.pending_annulment) or "ninguno"), st["Normal"]))
    story.append(Paragraph(f"Generado el {r.generated_at.strftime('%d-%m-%Y %H:%M')} por dtesync. Las notas de crédito "
                           "restan; las guías de despacho y las facturas de compra no son ventas.", st["Italic"]))
    doc.build(story)
    return buf.getvalue()


def write_report(r: SalesReport, outbox: Path) -> tuple[Path, Path]:
    """outbox/reports/informe-ventas-YYYY-MM-DD.{csv,pdf}, each written atomically."""
    from sync.outbox import atomic_write

    folder = Path(outbox) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"informe-ventas-{r.day.isoformat()}"
    csv_path, pdf_path = stem.with_suffix(".csv"), stem.with_suffix(".pdf")
    atomic_write(csv_path, report_csv(r))
    atomic_write(pdf_path, report_pdf(r))
    return csv_path, pdf_path


# --- the daemon's scheduled jobs --------------------------------------------------------------------
def attach(daemon: Any, config: Any, certificate: Any = None) -> Any:
    """Alerts every `check_every` seconds (and at start) and the report at `daily_at` each day."""
    from apscheduler.schedulers.background import BackgroundScheduler

    s = settings_of(config.raw)
    hour, minute = (int(x) for x in s.daily_at.split(":"))
    sched = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})

    def alerts_job() -> None:
        try:
            log_alerts(current_alerts(config, date.today(), certificate), config.language)
        except Exception:
            log.exception("alerts: check failed")

    def report_job() -> None:
        try:
            csv_path, _ = write_report(build_report(config, date.today()), config.folders.outbox)
            log.info("report: informe de ventas written", extra={"path": str(csv_path)})
        except Exception:
            log.exception("report: informe de ventas failed")

    sched.add_job(alerts_job, "interval", seconds=s.check_every, id="alerts",
                  next_run_time=datetime.now().astimezone() + timedelta(seconds=2))
    sched.add_job(report_job, "cron", hour=hour, minute=minute, id="informe_ventas")
    daemon.on_start.append(sched.start)
    daemon.on_stop.append(lambda: sched.shutdown(wait=False) if sched.running else None)
    return sched
