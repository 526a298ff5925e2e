"""Scheduled jobs that are not about one document: the daily sales report (informe de ventas)
and the stock/expiry alerts (CAF running out or expiring, certificate expiring).

Pure core (`summarize`, `stock_alerts`) over data read at the edges (`collect` reads the day's
rows of the journal, never the XML files; `write_report` writes CSV and PDF atomically into
`outbox/reports/`). `ReportsStage` runs both on an APScheduler 3.x BackgroundScheduler inside
the daemon and raises the alerts through the alerts hub (once per condition, with recovery).

Configuration (both optional): [alerts] (sync.config.AlertsConfig: the same thresholds as
`dtesync check` and `dtesync status`) and [reports] daily_at = "23:55" (local time; the report
covers that day).
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterable

from sync.alerts import Level
from sync.config import AlertsConfig, Config
from sync.errors import DteSyncError
from sync.fileio import atomic_write
from sync.journal import FILE_NAME as JOURNAL_FILE
from sync.journal import Journal
from sync.sii import TipoDte
from sync.stage import Stage
from sync.states import DocState

log = logging.getLogger("dtesync.reports")


def daily_at(config: Config) -> str:
    """[reports] daily_at, checked (HH:MM)."""
    at = (config.raw.get("reports", {}) or {}).get("daily_at", "23:55")
    try:
        datetime.strptime(str(at), "%H:%M")
    except ValueError:
        raise DteSyncError("CONFIG_INVALID", field="reports.daily_at",
                           params={"detail": f"se esperaba HH:MM, se encontró {at!r}"}) from None
    return str(at)


# --- alerts ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Alert:
    code: str  # from sync.errors.CATALOG
    level: Level
    params: dict[str, Any]
    key: str = ""  # the condition, for the alerts hub: "caf_stock:39"

    def message(self, lang: str = "es") -> str:
        return DteSyncError(self.code, params=self.params).message(lang)


def stock_alerts(stock: Iterable[Any], cert_not_after: datetime | None, today: date, s: AlertsConfig) -> list[Alert]:
    """CAF stock below the threshold (ERROR when none is left), the CAF in use expiring within
    `caf_expiry_days`, the certificate expiring within `cert_expiry_days` (ERROR once expired)."""
    out: list[Alert] = []
    for row in stock:
        if row.available < s.caf_stock_min:
            out.append(Alert("CAF_STOCK_LOW", "ERROR" if row.available == 0 else "WARNING",
                             {"tipo_dte": row.tipo_dte, "available": row.available, "minimum": s.caf_stock_min},
                             f"caf_stock:{row.tipo_dte}"))
        if row.expires_on is not None and row.available and (row.expires_on - today).days <= s.caf_expiry_days:
            out.append(Alert("CAF_EXPIRING", "WARNING", {"tipo_dte": row.tipo_dte, "expires_on": row.expires_on.isoformat(),
                                                          "days": (row.expires_on - today).days},
                             f"caf_expiry:{row.tipo_dte}"))
    if cert_not_after is not None:
        days = (cert_not_after.date() - today).days
        if days < 0:
            out.append(Alert("CERT_EXPIRED", "ERROR", {"expired_on": cert_not_after.date().isoformat()}, "certificate"))
        elif days <= s.cert_expiry_days:
            out.append(Alert("CERT_EXPIRING", "WARNING", {"expires_on": cert_not_after.date().isoformat(), "days": days},
                             "certificate"))
    return out


def current_alerts(config: Config, today: date, certificate: Any = None) -> list[Alert]:
    """The alerts for an installation (the scheduled job, `dtesync status`)."""
    from sync.runtime import load_certificate, open_folio_store

    with open_folio_store(config) as store:
        stock = store.stock(today)
    try:
        not_after = (certificate or load_certificate(config, now=datetime.now().astimezone())).not_after
    except DteSyncError as exc:  # an expired or unreadable certificate is itself the alert
        return stock_alerts(stock, None, today, config.alerts) + [
            Alert(exc.code, "ERROR", dict(exc.params or {}), "certificate")]
    return stock_alerts(stock, not_after, today, config.alerts)


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


def amounts_of_row(d: Any) -> DocAmounts:
    """A journal row's amounts (recorded when it was signed; absent amounts are 0)."""
    return DocAmounts(int(d.tipo_dte), int(d.folio), date.fromisoformat(d.fch_emis), d.mnt_neto or 0, d.iva or 0,
                      d.mnt_exe or 0, d.monto_total or 0, d.state == DocState.REJECTED_SII)


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
        tipo = TipoDte.of(self.tipo_dte)
        return tipo.title if tipo is not None else f"TipoDTE {self.tipo_dte}"


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
                tipo = TipoDte.of(r.tipo_dte)
                t[k] += (tipo.sales_sign if tipo is not None else 1) * getattr(r, k)
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


def collect(config: Config, day: date) -> list[DocAmounts]:
    """The day's documents with a folio, from the journal (read-only: the daemon may be writing)."""
    path = config.folders.state / JOURNAL_FILE
    if not path.exists():
        return []
    with Journal.open_readonly(path) as journal:
        rows = journal.issued_on(day.isoformat())
    return [amounts_of_row(d) for d in rows if DocState(d.state).holds_folio]


def build_report(config: Any, day: date, now: datetime | None = None) -> SalesReport:
    from sync.runtime import open_folio_store

    with open_folio_store(config) as store:
        pending = [(p.tipo_dte, p.folio, p.reason or "") for p in store.pending_annulment()]
    c = config.company
    return summarize(day, collect(config, day), pending, rut_emisor=str(c.rut), razon_social=c.razon_social,
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
    data: list[list[str | Paragraph]] = [["Tipo", "Documento", "Cant.", "Neto", "IVA", "Exento", "Total", "Folios"]]
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
    folder = Path(outbox) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"informe-ventas-{r.day.isoformat()}"
    csv_path, pdf_path = stem.with_suffix(".csv"), stem.with_suffix(".pdf")
    atomic_write(csv_path, report_csv(r))
    atomic_write(pdf_path, report_pdf(r))
    return csv_path, pdf_path


# --- the daemon's scheduled jobs --------------------------------------------------------------------
class ReportsStage(Stage):
    """Stock/expiry alerts every `[alerts] check_every` seconds (and soon after start), through the
    alerts hub, and the informe de ventas at `[reports] daily_at` each day."""

    name = "reports"

    def __init__(self, config: Config, certificate: Any = None) -> None:
        super().__init__()
        self.config, self.certificate = config, certificate
        self.daily_at = daily_at(config)
        self._scheduler: Any = None

    def check_alerts(self) -> list[Alert]:
        """Raise what holds now, resolve what no longer does (one notice per condition)."""
        found = current_alerts(self.config, date.today(), self.certificate)
        for a in found:
            self.alerts.raise_(a.key, a.code, a.level, **a.params)
        self.alerts.resolve_prefix("caf_", keep={a.key for a in found})
        if not any(a.key == "certificate" for a in found):
            self.alerts.resolve("certificate")
        return found

    def write_daily_report(self) -> tuple[Path, Path]:
        paths = write_report(build_report(self.config, date.today()), self.config.folders.outbox)
        log.info("report: informe de ventas written", extra={"path": str(paths[0])})
        return paths

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        hour, minute = (int(x) for x in self.daily_at.split(":"))
        sched = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
        sched.add_job(self._guarded(self.check_alerts, "alerts: check failed"), "interval",
                      seconds=self.config.alerts.check_every, id="alerts",
                      next_run_time=datetime.now().astimezone() + timedelta(seconds=2))
        sched.add_job(self._guarded(self.write_daily_report, "report: informe de ventas failed"), "cron",
                      hour=hour, minute=minute, id="informe_ventas")
        sched.start()
        self._scheduler = sched

    def stop(self, timeout: float = 10.0) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None

    @staticmethod
    def _guarded(func: Any, what: str) -> Any:
        def run() -> None:
            try:
                func()
            except Exception:
                log.exception(what)
        return run
