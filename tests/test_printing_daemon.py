"""Printing inside the daemon: tickets at a TCP test printer, NAME.pdf, the durable queue."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from escpos_decode import decode
from printing_fixtures import EXAMPLES, FakePrinter, free_port, read_pdf417
from sync.alerts import Alerts
from sync.app import build_app, folders_of
from sync.config import Folders, PrintingConfig, PrintStation, load_config
from sync.filing import Filing
from sync.journal import ClaimIntent
from sync.printing.layout import source_from_dte_xml
from sync.printing.profiles import load_profile
from sync.printing.queue import FILE_NAME, PrintQueue
from sync.printing.service import PrintService, build_printing
from sync.sandbox.build import create_sandbox


@pytest.fixture(scope="module")
def base_config(tmp_path_factory):
    sb = create_sandbox(tmp_path_factory.mktemp("printing") / "sb", folios_per_type=60)
    return load_config(sb.config_path)


def _config(base, root: Path, stations: list[PrintStation], **printing):
    folders = Folders(inbox=root / "inbox", outbox=root / "outbox", archive=root / "archive",
                      rejected=root / "rejected", state=root / "state", caf=base.folders.caf)
    p = PrintingConfig(stations=stations, retry_base=0.2, retry_max=0.5, **printing)
    return replace(base, folders=folders, printing=p)


def _start(config):
    svc = build_printing(config)
    daemon = build_app(config, stages=[svc] if svc else [], watch="poll", poll_interval=0.05, stable_window=0.05).daemon
    daemon.start()
    return daemon, svc


def _drop(inbox: Path, rel: str, example: str) -> None:
    path = inbox / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_bytes((EXAMPLES / example).read_bytes())
    tmp.replace(path)


def _status(outbox: Path, stem: str) -> dict:
    try:
        return json.loads((outbox / f"{stem}.status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _wait(cond, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _ted_from_ticket(data: bytes) -> bytes:
    p = load_profile("generic-80mm")
    d = decode(data, {p.code_page_number: p.code_page})
    if d.pdf417:
        return d.pdf417[0].data
    return read_pdf417(d.rasters[0])[0].bytes


def test_signed_documents_print_at_their_station_and_get_a_pdf(base_config, tmp_path):
    p1, p2 = FakePrinter(), FakePrinter()
    cfg = _config(base_config, tmp_path, [PrintStation("caja1", p1.connector()), PrintStation("caja2", p2.connector())],
                  default_station="caja1")
    daemon, _ = _start(cfg)
    try:
        _drop(cfg.folders.inbox, "caja1/B1.txt", "39_boleta.txt")
        _drop(cfg.folders.inbox, "caja2/B2.txt", "39_boleta.txt")
        _drop(cfg.folders.inbox, "F3.txt", "33_factura.txt")  # root: the default station
        out = cfg.folders.outbox
        assert _wait(lambda: all(_status(out, s).get("print", {}).get("state") == "printed"
                                 for s in ("caja1/B1", "caja2/B2", "F3")))
        jobs1, jobs2 = p1.wait_jobs(2), p2.wait_jobs(1)
        assert len(jobs1) == 2 and len(jobs2) == 1
        teds = {source_from_dte_xml((out / f"{s}.xml").read_bytes()).ted for s in ("caja1/B1", "F3")}
        assert {_ted_from_ticket(j) for j in jobs1} == teds
        assert _ted_from_ticket(jobs2[0]) == source_from_dte_xml((out / "caja2/B2.xml").read_bytes()).ted
        assert _wait(lambda: all((out / f"{s}.pdf").exists() for s in ("caja1/B1", "caja2/B2", "F3")))
        for s in ("caja1/B1", "caja2/B2", "F3"):
            assert (out / f"{s}.pdf").read_bytes().startswith(b"%PDF")
            st = _status(out, s)
            assert st["state"] == "signed" and st["print"]["station"] == ("caja2" if "caja2" in s else "caja1")
    finally:
        daemon.stop()


def test_printer_down_is_retried_other_station_keeps_printing_nothing_lost(base_config, tmp_path):
    down_port = free_port()
    up = FakePrinter()
    cfg = _config(base_config, tmp_path, [
        PrintStation("caja1", {"type": "tcp", "host": "127.0.0.1", "port": down_port, "timeout": 1}),
        PrintStation("caja2", up.connector()),
    ])
    daemon, svc = _start(cfg)
    out = cfg.folders.outbox
    try:
        for i in range(3):
            _drop(cfg.folders.inbox, f"caja1/A{i}.txt", "39_boleta.txt")
            _drop(cfg.folders.inbox, f"caja2/B{i}.txt", "41_boleta_exenta.txt")
        assert len(up.wait_jobs(3)) == 3  # the healthy station prints everything meanwhile
        assert _wait(lambda: _status(out, "caja1/A0").get("print", {}).get("state") == "retrying")
        st = _status(out, "caja1/A0")
        assert st["state"] == "signed" and st["print"]["attempts"] >= 1 and "error" in st["print"]
        assert _wait(lambda: all(_status(out, f"caja1/A{i}").get("state") == "signed" for i in range(3)))  # signing goes on
        late = FakePrinter(port=down_port)  # the printer comes back
        jobs = late.wait_jobs(3, timeout=30)
        assert len(jobs) == 3
        # in order: A0, A1, A2 (folios ascending within the station)
        folios = [int(source_from_dte_xml((out / f"caja1/A{i}.xml").read_bytes()).documento.folio) for i in range(3)]
        teds = [source_from_dte_xml((out / f"caja1/A{i}.xml").read_bytes()).ted for i in range(3)]
        assert [_ted_from_ticket(j) for j in jobs] == teds and folios == sorted(folios)
        assert _wait(lambda: all(_status(out, f"caja1/A{i}").get("print", {}).get("state") == "printed" for i in range(3)))
        assert {j.state for j in svc.queue.jobs()} == {"printed"} and len(svc.queue.jobs()) == 6
    finally:
        daemon.stop()


def test_a_stuck_printer_never_holds_up_signing(base_config, tmp_path):
    slow = FakePrinter()
    slow.set(stall=True)  # accepts connections, reads nothing
    cfg = _config(base_config, tmp_path, [PrintStation("caja1", slow.connector())])
    daemon, _ = _start(cfg)
    out = cfg.folders.outbox
    try:
        for i in range(3):
            _drop(cfg.folders.inbox, f"caja1/S{i}.txt", "39_boleta.txt")
        assert _wait(lambda: all(_status(out, f"caja1/S{i}").get("state") == "signed" and
                                 (out / f"caja1/S{i}.pdf").exists() for i in range(3)))
        assert slow.paper == b""  # nothing printed yet, and every document is signed with its PDF
        assert _wait(lambda: _status(out, "caja1/S0").get("print", {}).get("printer") == "stalled")
        slow.set(stall=False)
        assert _wait(lambda: all(_status(out, f"caja1/S{i}").get("print", {}).get("state") == "printed"
                                 for i in range(3)))
        assert len(slow.wait_jobs(3)) >= 3
    finally:
        slow.set(stall=False)
        daemon.stop()
        slow.close()


def test_paper_out_shows_in_the_status_file_and_the_ticket_prints_once_refilled(base_config, tmp_path):
    printer = FakePrinter()
    printer.set(paper_out=True)
    cfg = _config(base_config, tmp_path, [PrintStation("caja1", printer.connector())])
    daemon, svc = _start(cfg)
    out = cfg.folders.outbox
    try:
        _drop(cfg.folders.inbox, "caja1/P.txt", "39_boleta.txt")
        assert _wait(lambda: _status(out, "caja1/P").get("print", {}).get("printer") == "paper_out")
        entry = _status(out, "caja1/P")["print"]
        assert entry["state"] == "waiting" and entry["code"] == "PRINTER_PAPER_OUT" and "sin papel" in entry["error"]
        assert [c.status for c in svc.checks()] == ["down"]
        printer.set(paper_out=False)
        assert _wait(lambda: _status(out, "caja1/P").get("print", {}).get("state") == "printed")
        ted = source_from_dte_xml((out / "caja1/P.xml").read_bytes()).ted
        assert _wait(printer.idle)
        d = printer.printed(load_profile("generic-80mm"))
        assert [b.bytes for img in d.rasters for b in read_pdf417(img)] == [ted]
        assert "error" not in _status(out, "caja1/P")["print"]
    finally:
        daemon.stop()
        printer.close()


def test_on_signed_is_idempotent_and_rebuilds_from_the_outbox_xml(base_config, tmp_path, engine):
    printer = FakePrinter()
    cfg = _config(base_config, tmp_path, [PrintStation("caja1", printer.connector())])
    dte = engine.issue((EXAMPLES / "39_boleta.txt").read_bytes(), "B.txt", doc_key="printing-hook:1")
    filing = Filing(folders_of(cfg))
    filing.open()
    [doc_id] = filing.journal.begin_claims([ClaimIntent("", "B.txt", "B", ".txt", None, 1, 0o100644)])
    [doc] = filing.journal.mark_claimed([(doc_id, "ab")])
    out = cfg.folders.outbox
    (out / "B.xml").write_bytes(dte.dte_xml)
    svc = PrintService(cfg)
    svc.bind(filing, Alerts())
    svc.on_signed(doc, dte)
    again = filing.signed_dte(doc)  # after a "crash": nothing in memory, read back from B.xml
    assert again is not None and again.ted == dte.ted
    svc.on_signed(doc, again)
    (out / "B.pdf").unlink()
    svc.on_signed(doc, again)
    assert (out / "B.pdf").exists()
    assert len(svc.queue.jobs()) == 1
    svc.start()
    assert len(printer.wait_jobs(1)) == 1
    time.sleep(0.3)
    assert len(printer.jobs) == 1 and svc.queue.jobs()[0].state == "printed"
    svc.stop()
    filing.close()
    q = PrintQueue(cfg.folders.state / FILE_NAME)  # durable: the row is on disk
    assert [j.state for j in q.jobs()] == ["printed"]
    q.close()
