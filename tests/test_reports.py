"""The informe de ventas and the stock/expiry alerts, on a real sandbox run (`dtesync demo`:
the real engine and daemon, documents accepted by fake-sii). Expected values come from the
ERP's status files, not from the journal rows the report reads; the PDF is read back with
pdftotext (poppler-utils)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from sync.alerts import Alert, Alerts
from sync.app import folders_of
from sync.config import AlertsConfig, load_config
from sync.filing import Filing
from sync.folios.store import StockRow
from sync.reports import ReportsStage, build_report, current_alerts, folio_ranges, stock_alerts, write_report
from sync.runtime import open_folio_store


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A sandbox after `dtesync demo`, plus one folio released for annulment."""
    root = tmp_path_factory.mktemp("reports") / "demo"
    run = subprocess.run([sys.executable, "-m", "sync", "demo", str(root)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    config = load_config(root / "dtesync.toml")
    store = open_folio_store(config)
    folio, _ = store.allocate(33, date(2025, 3, 14), "report-test-annul")
    store.release_for_annulment(33, folio, "documento anulado en prueba", now=date(2025, 3, 14))
    store.close()
    statuses = [json.loads(p.read_text("utf-8")) for p in (root / "outbox").glob("*.status.json")]
    return config, [s for s in statuses if s["state"] == "accepted"], folio


def report_days(config) -> list[date]:
    days = set()
    for xml in config.folders.outbox.glob("*.xml"):
        text = xml.read_text("iso-8859-1")
        days.add(date.fromisoformat(text.split("<FchEmis>", 1)[1][:10]))
    return sorted(days)


def read_csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text("utf-8-sig")), delimiter=";"))


def test_report_rows_add_up_to_the_status_files(demo):
    config, accepted, _ = demo
    per_type_total: dict[int, int] = defaultdict(int)
    per_type_count: dict[int, int] = defaultdict(int)
    per_type_folios: dict[int, set[int]] = defaultdict(set)
    for day in report_days(config):
        r = build_report(config, day)
        for row in r.rows:
            per_type_total[row.tipo_dte] += row.total
            per_type_count[row.tipo_dte] += row.documentos
            per_type_folios[row.tipo_dte] |= {f for a, b in row.folios for f in range(a, b + 1)}
            if row.tipo_dte in (33, 34, 39, 41, 56, 61):  # no other taxes in these samples
                assert row.neto + row.iva + row.exento == row.total, row
    want_total, want_count, want_folios = defaultdict(int), defaultdict(int), defaultdict(set)
    for s in accepted:
        want_total[s["tipo_dte"]] += s["monto_total"]
        want_count[s["tipo_dte"]] += 1
        want_folios[s["tipo_dte"]].add(s["folio"])
    assert dict(per_type_total) == dict(want_total)
    assert dict(per_type_count) == dict(want_count)
    assert dict(per_type_folios) == dict(want_folios)


def test_report_csv_has_types_folio_ranges_totals_and_pending_annulment(demo):
    config, accepted, annulled = demo
    day = date(2025, 3, 14)  # the three facturas 33 of the samples (txt, json, xml)
    csv_path, pdf_path = write_report(build_report(config, day), config.folders.outbox)
    assert csv_path == config.folders.outbox / "reports" / "informe-ventas-2025-03-14.csv" and pdf_path.exists()
    rows = read_csv(csv_path)
    facturas = [s for s in accepted if s["tipo_dte"] == 33]
    folios = sorted(s["folio"] for s in facturas)
    row33 = next(r for r in rows if r[0] == "33")
    assert row33[1] == "Factura electrónica" and int(row33[2]) == len(facturas) == 3
    assert row33[7] == f"{folios[0]}-{folios[-1]}" and folios == list(range(folios[0], folios[0] + 3))
    assert int(row33[6]) == sum(s["monto_total"] for s in facturas)
    total = next(r for r in rows if r[0] == "total")
    assert int(total[6]) == int(row33[6]) and int(total[3]) + int(total[4]) + int(total[5]) == int(total[6])
    assert ["", "33", str(annulled), "documento anulado en prueba"] in rows


def test_report_pdf_text_names_the_day_types_totals_and_annulments(demo):
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) not installed")
    config, accepted, annulled = demo
    day = date(2025, 3, 18)  # the boletas
    _, pdf_path = write_report(build_report(config, day), config.folders.outbox)
    text = subprocess.run(["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True, check=True).stdout
    boletas = [s for s in accepted if s["tipo_dte"] == 39]
    assert "Informe de ventas del 18-03-2025" in text and config.company.razon_social in text
    assert "Boleta electrónica" in text and "Factura electrónica" not in text
    assert "$" + f"{sum(s['monto_total'] for s in boletas):,}".replace(",", ".") in text
    assert f"TipoDTE 33 folio {annulled}" in text


def test_report_command_writes_the_files_for_the_date(demo, tmp_path):
    config, _, _ = demo
    run = subprocess.run([sys.executable, "-m", "sync", "report", "--config", str(config.path), "--date", "2025-03-17"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    rows = read_csv(config.folders.outbox / "reports" / "informe-ventas-2025-03-17.csv")
    types = [r[0] if r else "" for r in rows[2:]]
    assert types[: types.index("total")] == ["34"]  # only the factura exenta was issued that day
    bad = subprocess.run([sys.executable, "-m", "sync", "report", "--config", str(config.path), "--date", "17/03"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2


def test_folio_ranges_compress_consecutive_folios():
    assert folio_ranges([7, 3, 4, 5, 9, 8, 12]) == [(3, 5), (7, 9), (12, 12)]


def test_stock_and_expiry_alerts_follow_the_thresholds():
    s = AlertsConfig(caf_stock_min=100, caf_expiry_days=30, cert_expiry_days=30)
    today = date(2026, 1, 1)
    stock = [StockRow(33, 99, 1, date(2026, 1, 20)), StockRow(39, 100, 1, date(2026, 6, 1)), StockRow(61, 0, None, None)]
    alerts = stock_alerts(stock, datetime(2026, 1, 15, tzinfo=timezone.utc), today, s)
    assert [(a.code, a.level, a.params.get("tipo_dte")) for a in alerts] == [
        ("CAF_STOCK_LOW", "WARNING", 33), ("CAF_EXPIRING", "WARNING", 33), ("CAF_STOCK_LOW", "ERROR", 61),
        ("CERT_EXPIRING", "WARNING", None)]
    assert "Quedan 99 folios de TipoDTE 33" in alerts[0].message("es")
    assert [a.code for a in stock_alerts([], datetime(2025, 12, 31, tzinfo=timezone.utc), today, s)] == ["CERT_EXPIRED"]
    assert stock_alerts(stock[1:2], datetime(2027, 1, 1, tzinfo=timezone.utc), today, s) == []


class Inbox:
    """A notifier that keeps what it was told."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bool]] = []

    def notify(self, alert: Alert, *, resolved: bool) -> None:
        self.got.append((alert.code, resolved))


def test_alerts_are_raised_once_per_condition_resolved_when_it_ends_and_shown_by_status(demo, tmp_path, caplog):
    config, _, _ = demo
    toml = config.path.with_name("alerts.toml")  # beside it: the relative paths still hold
    toml.write_text(config.path.read_text("utf-8") + "\n[alerts]\ncaf_stock_min = 20000\ncert_expiry_days = 5000\n"
                    "\n[reports]\ndaily_at = \"23:30\"\n", "utf-8")
    cfg = load_config(toml)
    codes = {a.code for a in current_alerts(cfg, date.today())}
    assert codes == {"CAF_STOCK_LOW", "CERT_EXPIRING"}
    seen = Inbox()
    stage = ReportsStage(cfg)
    stage.bind(Filing(folders_of(cfg)), Alerts([seen]))
    stage.check_alerts()
    stage.check_alerts()  # the same conditions again: no second notice
    assert sorted(seen.got) == sorted([("CAF_STOCK_LOW", False)] * len({a.key for a in current_alerts(cfg, date.today())
                                                                           if a.code == "CAF_STOCK_LOW"})
                                      + [("CERT_EXPIRING", False)])
    stage.config = config  # the default thresholds: every condition has ended
    stage.check_alerts()
    assert sorted(c for c, resolved in seen.got if resolved) == sorted(c for c, resolved in seen.got if not resolved)
    stage.config = cfg
    stage.start()
    try:
        sched = stage._scheduler
        assert {j.id for j in sched.get_jobs()} == {"alerts", "informe_ventas"}
        assert "hour='23', minute='30'" in str(sched.get_job("informe_ventas").trigger)
        sched.get_job("informe_ventas").func()
    finally:
        stage.stop()
    assert (cfg.folders.outbox / "reports" / f"informe-ventas-{date.today().isoformat()}.pdf").exists()
    run = subprocess.run([sys.executable, "-m", "sync", "status", "--config", str(toml)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0 and "AVISO CAF_STOCK_LOW: Quedan" in run.stdout and "AVISO CERT_EXPIRING" in run.stdout
