"""A printer that can fail like a real one (sync.printing.emulator, on loopback TCP or a serial
pseudo-terminal): paper out, cover open, offline, accept-and-stall, the line closing mid-job,
paper running out mid-ticket, no GS ( k. Every case ends with the right status, the ticket on
paper exactly once when the fault clears, and the REIMPRESIÓN mark where part of an earlier
attempt may be on paper."""

from __future__ import annotations

import sqlite3
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from printing_fixtures import EXAMPLES, FakePrinter, decode_ticket, read_pdf417
from sync.config import PrintingConfig, PrintStation
from sync.printing.emulator import EmulatedPrinter
from sync.printing.profiles import BUILTIN, load_profile
from sync.printing.queue import FILE_NAME, PrintQueue
from sync.printing.service import PrintService, source_of

FAST = {"status_timeout": 0.4, "status_poll": 0.2, "io_timeout": 0.8, "print_timeout": 5.0, "connect_timeout": 1.0}


@pytest.fixture(scope="module")
def documents(engine, tmp_path_factory):
    """A boleta and a factura, with their signed XML on disk (what a re-render reads)."""
    out = tmp_path_factory.mktemp("signed")
    docs = {}
    for name in ("39_boleta.txt", "33_factura.txt"):
        issued = engine.issue((EXAMPLES / name).read_bytes(), name, doc_key=f"printing-status:{name}")
        (out / f"{name}.xml").write_bytes(issued.dte_xml)
        docs[name] = (issued, out / f"{name}.xml")
    return docs


def _profiles(folder: Path) -> Path:
    """The built-in profiles with short timeouts, so a test waits fractions of a second."""
    folder.mkdir(exist_ok=True)
    for base in ("generic-80mm", "epson-tm-t88"):
        text = (BUILTIN / f"{base}.toml").read_text(encoding="utf-8")
        data = tomllib.loads(text)
        lines = [line for line in text.splitlines() if line.split("=")[0].strip() not in {*FAST, "name"}]
        lines += [f'name = "fast-{base}"'] + [f"{k} = {v}" for k, v in FAST.items()]
        assert data["name"] == base
        (folder / f"fast-{base}.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _service(sandbox_config, tmp_path: Path, connector: dict, profile: str = "fast-generic-80mm", **station) -> PrintService:
    p = PrintingConfig(pdf=False, stations=[PrintStation("caja1", connector, profile=profile, **station)],
                       profiles=_profiles(tmp_path / "profiles"), retry_base=0.1, retry_max=0.3)
    cfg = replace(sandbox_config, printing=p, folders=replace(sandbox_config.folders, state=tmp_path / "state"))
    return PrintService(cfg)


def _enqueue(svc: PrintService, documents, name: str = "39_boleta.txt", doc_id: int = 1):
    issued, xml = documents[name]
    return svc.enqueue(source_of(issued), svc.stations.get("caja1"), doc_key=f"doc:{doc_id}", doc_id=doc_id,
                       label=name, source=str(xml))


def _status(svc: PrintService, doc_id: int = 1) -> dict:
    job = svc.queue.for_doc(doc_id)
    return job.status() if job else {}


def _wait(cond, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def _has_ink(img) -> bool:
    """A copy with anything on it (a status probe's ESC @ prints nothing)."""
    lowest = img.convert("L").getextrema()[0]
    return isinstance(lowest, int) and lowest < 128


def _paper(printer: EmulatedPrinter, profile_name: str = "generic-80mm"):
    """(TEDs read on paper, how many copies carry the REIMPRESIÓN mark, copies on paper)."""
    d = decode_ticket(bytes(printer.paper), load_profile(profile_name))
    teds = [b.bytes for img in d.copies for b in read_pdf417(img)]
    marked = sum(1 for lines in d.lines if any("REIMPRESIÓN" in text for _, _, text, _ in lines))
    inked = sum(1 for img in d.copies if _has_ink(img))
    return teds, marked, inked


@pytest.mark.parametrize("fault, condition, code", [("paper_out", "paper_out", "PRINTER_PAPER_OUT"),
                                                    ("cover_open", "cover_open", "PRINTER_COVER_OPEN"),
                                                    ("offline", "offline", "PRINTER_OFFLINE")])
def test_a_printer_reporting_a_fault_gets_nothing_and_prints_once_when_it_clears(
        fault, condition, code, sandbox_config, tmp_path, documents):
    printer = FakePrinter()
    printer.set(**{fault: True})
    svc = _service(sandbox_config, tmp_path, printer.connector())
    svc.start()
    try:
        _enqueue(svc, documents)
        assert _wait(lambda: _status(svc).get("printer") == condition)
        st = _status(svc)
        assert st["state"] == "waiting" and st["code"] == code and "reprint" not in st
        assert printer.paper == b"" and not printer.jobs  # the job was never sent
        [check] = svc.checks()
        assert check.status == "down" and check.name == "printer:caja1"
        [q] = svc.queues()
        assert (q.depth, q.failing) == (1, 1) and q.oldest_age is not None
        printer.set(**{fault: False})
        assert _wait(lambda: _status(svc).get("state") == "printed")
        assert _wait(printer.idle)
        teds, marked, copies = _paper(printer)
        assert teds == [documents["39_boleta.txt"][0].ted] and marked == 0 and copies == 1
        assert svc.checks()[0].status == "ok" and svc.queues()[0].depth == 0
        assert _status(svc)["printer"] == "ready" and "error" not in _status(svc)
    finally:
        svc.stop()
        printer.close()


def test_a_printer_fault_is_one_alert_and_one_recovery(sandbox_config, tmp_path, documents):
    from sync.alerts import Alerts

    class Recorder:
        def __init__(self):
            self.seen: list[tuple[str, str, bool]] = []

        def notify(self, alert, *, resolved):
            self.seen.append((alert.key, alert.message("es"), resolved))

    class NoFiling:  # status files are not the point here
        def refresh(self, doc_id):
            pass

    recorder = Recorder()
    printer = FakePrinter()
    printer.set(paper_out=True)
    svc = _service(sandbox_config, tmp_path, printer.connector())
    svc.bind(NoFiling(), Alerts([recorder]))  # type: ignore[arg-type]
    svc.start()
    try:
        _enqueue(svc, documents)
        assert _wait(lambda: _status(svc).get("attempts", 0) >= 3)  # polled several times while out of paper
        printer.set(paper_out=False)
        assert _wait(lambda: _status(svc).get("state") == "printed")
        assert _wait(lambda: len(recorder.seen) == 2)
        (key, message, resolved), (key2, _, resolved2) = recorder.seen
        assert key == key2 == "printer:caja1" and (resolved, resolved2) == (False, True)
        assert "caja1" in message and "sin papel" in message
    finally:
        svc.stop()
        printer.close()


def test_a_printer_that_accepts_and_stalls_is_stalled_and_prints_once_after(sandbox_config, tmp_path, documents):
    printer = FakePrinter()
    printer.set(stall=True)
    svc = _service(sandbox_config, tmp_path, printer.connector())
    svc.start()
    try:
        _enqueue(svc, documents)
        assert _wait(lambda: _status(svc).get("printer") == "stalled")
        assert _status(svc)["state"] == "waiting" and _status(svc)["code"] == "PRINTER_STALLED"
        assert svc.checks()[0].status == "down"
        time.sleep(0.5)
        assert printer.paper == b""
        printer.set(stall=False)
        assert _wait(lambda: _status(svc).get("state") == "printed")
        assert _wait(printer.idle)
        teds, marked, _ = _paper(printer)
        assert teds == [documents["39_boleta.txt"][0].ted] and marked == 0  # nothing had been read: no mark
    finally:
        svc.stop()
        printer.close()


def test_a_line_closed_mid_job_is_reprinted_with_the_mark(sandbox_config, tmp_path, documents):
    printer = FakePrinter()
    printer.set(close_after=1500)  # the printer takes 1500 bytes (the ticket's head) and drops the line
    svc = _service(sandbox_config, tmp_path, printer.connector())
    svc.start()
    try:
        _enqueue(svc, documents)
        assert _wait(lambda: _status(svc).get("state") == "printed")
        assert _wait(printer.idle)
        st = _status(svc)
        assert st["reprint"] is True and st["attempts"] >= 2
        teds, marked, copies = _paper(printer)
        assert teds == [documents["39_boleta.txt"][0].ted]  # the timbre came out once, whole
        assert copies == 2 and marked == 1  # the cut-off head, then the full ticket marked
    finally:
        svc.stop()
        printer.close()


def test_paper_running_out_mid_ticket_is_cleared_and_reprinted_with_the_mark(sandbox_config, tmp_path, documents):
    """A printer that can clear its buffer (DLE DC4 fn 8) drops the rest of the cut-off ticket
    while it is stopped: after the refill only the marked reprint comes out."""
    printer = FakePrinter(clear_buffer=True)
    printer.set(paper_out_after=1200)
    svc = _service(sandbox_config, tmp_path, printer.connector(), profile="fast-epson-tm-t88")
    svc.start()
    try:
        _enqueue(svc, documents, "33_factura.txt")
        assert _wait(lambda: _status(svc).get("printer") == "paper_out")
        st = _status(svc)
        assert st["state"] == "waiting" and st["reprint"] is True
        assert _wait(lambda: printer.cleared >= 1)
        printer.set(paper_out=False)
        assert _wait(lambda: _status(svc).get("state") == "printed")
        assert _wait(printer.idle)
        teds, marked, copies = _paper(printer)
        assert teds == [documents["33_factura.txt"][0].ted] and copies == 2 and marked == 1
    finally:
        svc.stop()
        printer.close()


def test_paper_running_out_mid_ticket_on_a_printer_that_cannot_clear(sandbox_config, tmp_path, documents):
    """Without a buffer clear the printer finishes the cut-off ticket once refilled; the second
    one is marked, so there is never an unmarked duplicate."""
    printer = FakePrinter()
    printer.set(paper_out_after=1200)
    svc = _service(sandbox_config, tmp_path, printer.connector())
    svc.start()
    try:
        _enqueue(svc, documents)
        assert _wait(lambda: _status(svc).get("printer") == "paper_out")
        printer.set(paper_out=False)
        assert _wait(lambda: _status(svc).get("state") == "printed")
        assert _wait(printer.idle)
        teds, marked, copies = _paper(printer)
        assert copies == 2 and marked == 1 and teds == [documents["39_boleta.txt"][0].ted] * 2
        assert _status(svc)["reprint"] is True
    finally:
        svc.stop()
        printer.close()


def test_a_printer_without_gs_k_gets_the_timbre_as_an_image(sandbox_config, tmp_path, documents):
    printer = FakePrinter(gs_k=False)
    svc = _service(sandbox_config, tmp_path, printer.connector(), profile="fast-epson-tm-t88")  # says native
    job = _enqueue(svc, documents)
    assert job.mode == "native"
    svc.start()
    try:
        assert _wait(lambda: _status(svc).get("state") == "printed")
        assert _wait(printer.idle)
        st = _status(svc)
        assert st["mode"] == "raster" and st["printer"] == "ready"
        teds, marked, copies = _paper(printer, "epson-tm-t88")
        assert teds == [documents["39_boleta.txt"][0].ted] and marked == 0 and copies == 1
        assert svc.checks()[0].status == "degraded"
        probes = sum(b"\x1d(k\x03\x000R" in s.received for s in printer.sessions)
        assert _enqueue(svc, documents, doc_id=2).mode == "raster"  # known now: rendered as an image at once
        assert _wait(lambda: _status(svc, 2).get("state") == "printed")
        assert sum(b"\x1d(k\x03\x000R" in s.received for s in printer.sessions) == probes == 1
    finally:
        svc.stop()
        printer.close()


def test_a_printer_with_gs_k_confirms_it_and_prints_natively(sandbox_config, tmp_path, documents):
    printer = FakePrinter()
    svc = _service(sandbox_config, tmp_path, printer.connector(), profile="fast-epson-tm-t88")
    svc.start()
    try:
        _enqueue(svc, documents)
        assert _wait(lambda: _status(svc).get("state") == "printed")
        assert _status(svc)["mode"] == "native" and svc.senders["caja1"].native_ok is True
        d = decode_ticket(bytes(printer.paper), load_profile("epson-tm-t88"))
        assert [s.data for s in d.pdf417] == [documents["39_boleta.txt"][0].ted]
    finally:
        svc.stop()
        printer.close()


def test_a_serial_printer_is_asked_its_status_over_the_line(sandbox_config, tmp_path, documents):
    printer = EmulatedPrinter()
    device = printer.serial_pty()
    printer.set(cover_open=True)
    svc = _service(sandbox_config, tmp_path, {"type": "serial", "device": device, "baudrate": 115200})
    svc.start()
    try:
        _enqueue(svc, documents)
        assert _wait(lambda: _status(svc).get("printer") == "cover_open")
        assert printer.paper == b""
        printer.set(cover_open=False)
        assert _wait(lambda: _status(svc).get("state") == "printed")
        assert _wait(printer.idle)
        teds, marked, _ = _paper(printer)
        assert teds == [documents["39_boleta.txt"][0].ted] and marked == 0
    finally:
        svc.stop()
        printer.close()


def test_a_waiting_job_survives_a_restart_and_prints_once(sandbox_config, tmp_path, documents):
    printer = FakePrinter()
    printer.set(paper_out=True)
    svc = _service(sandbox_config, tmp_path, printer.connector())
    svc.start()
    _enqueue(svc, documents)
    assert _wait(lambda: _status(svc).get("printer") == "paper_out")
    svc.stop()
    svc = _service(sandbox_config, tmp_path, printer.connector())
    _enqueue(svc, documents)  # the hook runs again after the restart: still one job
    assert len(svc.queue.jobs()) == 1
    printer.set(paper_out=False)
    svc.start()
    try:
        assert _wait(lambda: _status(svc).get("state") == "printed")
        assert _wait(printer.idle)
        teds, _, copies = _paper(printer)
        assert teds == [documents["39_boleta.txt"][0].ted] and copies == 1
    finally:
        svc.stop()
        printer.close()


def test_a_58mm_station_never_prints_a_factura_and_says_why(sandbox_config, tmp_path, documents):
    printer = FakePrinter()
    svc = _service(sandbox_config, tmp_path, printer.connector(), profile="generic-58mm")
    svc.start()
    try:
        _enqueue(svc, documents, "33_factura.txt")
        st = _status(svc)
        assert st["state"] == "refused" and st["code"] == "PRINT_PAPER_TOO_NARROW"
        assert "7,5 cm" in st["error"] and "caja1" in st["error"]
        time.sleep(0.3)
        assert not printer.sessions  # never sent
        _enqueue(svc, documents, "39_boleta.txt", doc_id=2)
        assert _wait(lambda: _status(svc, 2).get("state") == "printed")
    finally:
        svc.stop()
        printer.close()


def test_a_station_limited_to_some_types_refuses_the_others(sandbox_config, tmp_path, documents):
    printer = FakePrinter()
    svc = _service(sandbox_config, tmp_path, printer.connector(), types=[39, 41])
    _enqueue(svc, documents, "33_factura.txt")
    st = _status(svc)
    assert st["state"] == "refused" and st["code"] == "PRINT_TYPE_NOT_FOR_STATION"
    svc.stop()
    printer.close()


def test_a_write_only_connector_counts_the_bytes_taken_as_printed(sandbox_config, tmp_path, documents):
    target = tmp_path / "lp0"
    svc = _service(sandbox_config, tmp_path, {"type": "file", "path": str(target)})
    svc.start()
    try:
        _enqueue(svc, documents)
        assert _wait(lambda: _status(svc).get("state") == "printed")
        assert _status(svc)["printer"] == "unknown"
        assert target.read_bytes().startswith(b"\x1b@\x1c.")
    finally:
        svc.stop()


def test_an_older_queue_file_gains_the_new_columns(tmp_path):
    path = tmp_path / FILE_NAME
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE print_jobs (id INTEGER PRIMARY KEY, doc_key TEXT NOT NULL, doc_id INTEGER,
        station TEXT NOT NULL, label TEXT NOT NULL, data BLOB NOT NULL, state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL, last_error TEXT, created_at REAL NOT NULL,
        updated_at REAL NOT NULL, UNIQUE (doc_key, station));
        INSERT INTO print_jobs(doc_key, doc_id, station, label, data, state, next_at, created_at, updated_at)
        VALUES ('doc:1', 1, 'caja1', 'B.txt', x'1b40', 'pending', 0, 0, 0);""")
    db.commit()
    db.close()
    q = PrintQueue(path)
    [job] = q.jobs()
    assert (job.partial, job.mode, job.copy_offsets) == (0, None, [])
    q.retry(job.id, "sin papel", 1.0, condition="paper_out", code="PRINTER_PAPER_OUT", partial=True)
    assert q.get(job.id).status()["reprint"] is True
    q.close()


def test_print_status_of_a_batch_reads_as_each_document_alone(tmp_path):
    with PrintQueue(tmp_path / FILE_NAME) as q:
        q.enqueue("doc:1", "caja1", b"x", label="first", doc_id=1)
        q.enqueue("reprint:1", "caja1", b"y", label="again", doc_id=1)
        q.pdf_failed(2, "PDF_WRITE_FAILED", "disco lleno")
        got = q.status_of_docs([1, 2, 3])
        assert got == {1: (q.for_doc(1), None), 2: (None, q.pdf_result(2)), 3: (None, None)}
        assert got[1][0] is not None and got[1][0].label == "again"  # the newest job, as for_doc
