"""The engine in its own process (sync.engine_process): the daemon's second core.

Documents signed through the worker process are the same documents (xmlsec1 and the official
XSD); NAME.pdf is rendered there; a worker killed mid-run is replaced and no folio is used
twice; PDFs a stop left unwritten are written at the next start; a backlog larger than what the
daemon keeps in flight waits in the inbox and is all processed."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import xmlsec1_verifies
from sync.app import build_app
from sync.config import load_config
from sync.engine import Request
from sync.engine_pipe import Launched
from sync.engine_process import EngineProcess, EngineProcessDied
from sync.errors import DteSyncErrors
from sync.folios.store import FolioStore
from sync.printing.queue import FILE_NAME as PRINT_QUEUE
from sync.printing.queue import PrintQueue
from sync.sandbox.build import create_sandbox, examples_dir
from sync.schema import schema_errors
from sync.signed import SignedDte
from sync.watch.inbox import InboxWatcher


@pytest.fixture
def config(tmp_path: Path):
    sb = create_sandbox(tmp_path / "sb", folios_per_type=200)
    return load_config(sb.config_path)


def statuses(outbox: Path) -> dict[str, dict]:
    out = {}
    for p in outbox.glob("*.status.json"):
        try:
            out[p.name[: -len(".status.json")]] = json.loads(p.read_text("utf-8"))
        except ValueError:
            pass
    return out


def wait_until(pred, timeout: float = 120.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def drop(inbox: Path, name: str, body: bytes) -> None:
    tmp = inbox / f".{name}.tmp"
    tmp.write_bytes(body)
    tmp.replace(inbox / name)


def factura(n: int) -> bytes:
    text = (examples_dir() / "33_factura.txt").read_text("utf-8")
    return text.replace("RznSocRecep=", f"RznSocRecep=Cliente {n} ", 1).encode("utf-8")


def test_the_worker_process_signs_what_the_engine_signs(config, tmp_path: Path) -> None:
    engine = EngineProcess.open(config)
    engine.start()
    try:
        good = (examples_dir() / "39_boleta.txt").read_bytes()
        bad = b"[Encabezado.IdDoc]\nTipoDTE=33\n"
        signed, refused = engine.issue_many([Request(good, "B.txt", "k:1"), Request(bad, "X.txt", "k:2")])
    finally:
        engine.stop()
    assert isinstance(signed, SignedDte) and signed.tipo_dte == 39
    assert SignedDte.from_xml(signed.dte_xml).ted == signed.ted  # what crossed the pipe is the document
    assert isinstance(refused, DteSyncErrors) and {e.code for e in refused.errors} >= {"FIELD_REQUIRED"}
    path = tmp_path / "B.xml"
    path.write_bytes(signed.dte_xml)
    assert xmlsec1_verifies(path) and schema_errors(signed.tree) == []


def test_batches_sent_at_once_each_get_their_own_answers_in_order(config) -> None:
    """Batches that queue up in the worker are signed in one engine call (one folio
    transaction); each batch still gets the answers to its own requests, in its order."""
    engine = EngineProcess.open(config)
    engine.start()
    bad = b"[Encabezado.IdDoc]\nTipoDTE=33\n"
    batches = [[Request(factura(10 * b + i) if i != 2 else bad, f"B{b}-{i}.txt", f"k:{b}:{i}") for i in range(5)]
               for b in range(6)]
    try:
        with ThreadPoolExecutor(len(batches)) as pool:
            answers = list(pool.map(engine.issue_many, batches))
    finally:
        engine.stop()
    folios = []
    for b, outcomes in enumerate(answers):
        assert len(outcomes) == 5
        for i, outcome in enumerate(outcomes):
            if i == 2:
                assert isinstance(outcome, DteSyncErrors)
                continue
            assert isinstance(outcome, SignedDte)
            assert f"Cliente {10 * b + i} ".encode() in outcome.dte_xml
            folios.append(outcome.folio)
    assert len(set(folios)) == 6 * 4


def test_the_daemon_signs_in_the_worker_and_the_worker_writes_the_pdf(config) -> None:
    app = build_app(config, stages=None)
    assert isinstance(app.engine, EngineProcess)
    app.start()
    try:
        for i in range(5):
            drop(config.folders.inbox, f"F{i}.txt", factura(i))
        wait_until(lambda: all((config.folders.outbox / f"F{i}.pdf").exists() for i in range(5)), what="PDFs")
        st = statuses(config.folders.outbox)
    finally:
        app.stop()
    assert {st[f"F{i}"]["state"] for i in range(5)} == {"signed"}
    assert all((config.folders.outbox / f"F{i}.pdf").read_bytes().startswith(b"%PDF") for i in range(5))
    assert os.getpid() not in (app.engine.pids() or [os.getpid() + 1])


def test_a_killed_worker_is_replaced_and_no_folio_is_used_twice(config) -> None:
    app = build_app(config, stages=[])
    app.start()
    engine = app.engine
    assert isinstance(engine, EngineProcess)
    try:
        for i in range(40):
            drop(config.folders.inbox, f"K{i}.txt", factura(i))
            if i == 10:
                os.kill(engine.pids()[0], signal.SIGKILL)
        done = wait_until(lambda: (s := statuses(config.folders.outbox)) and len(s) == 40 and
                          all(v["state"] == "signed" for v in s.values()) and s, what="40 signed")
        assert len(engine.pids()) == 1
    finally:
        app.stop()
    folios = [v["folio"] for v in done.values()]
    assert len(set(folios)) == 40


def test_an_answer_this_side_cannot_read_fails_its_batch_and_the_worker_is_replaced(config, monkeypatch) -> None:
    import sync.engine_process as engine_process

    engine = EngineProcess.open(config)
    engine.start()
    try:
        first_pid = engine.pids()[0]

        def unreadable(packed):  # noqa: ANN001, ANN202
            raise ValueError("answer from another version")

        monkeypatch.setattr(engine_process, "_unpack_outcome", unreadable)
        with pytest.raises(RuntimeError, match="unreadable answer"):  # an error, not a wait for ever
            engine.submit_many([Request(factura(1), "U1.txt", "u:1")]).result(timeout=60)
        monkeypatch.undo()
        wait_until(lambda: engine.pids() and engine.pids()[0] != first_pid, 60, "a new worker process")
        (signed,) = engine.issue_many([Request(factura(1), "U1.txt", "u:1")])
        assert isinstance(signed, SignedDte)  # the same doc_key gets its folio back from the new worker
    finally:
        engine.stop()


def test_a_garbled_pipe_from_a_live_worker_ends_that_worker_and_a_new_one_signs(config, monkeypatch) -> None:
    """Seen under a profiler: the stream from a worker lost its framing while the worker lived
    on. The worker must not be left running beside its replacement (two engines' memory, and a
    process holding the folio store that nobody talks to)."""
    import pickle
    import types

    import sync.engine_pipe as engine_pipe

    engine = EngineProcess.open(config)
    engine.start()
    try:
        first_pid = engine.pids()[0]
        garbled = {"once": True}

        def loads(data):  # noqa: ANN001, ANN202
            if garbled.pop("once", False):
                raise pickle.UnpicklingError("invalid load key, 'w'.")
            return pickle.loads(data)

        monkeypatch.setattr(engine_pipe, "pickle", types.SimpleNamespace(
            loads=loads, dumps=pickle.dumps, HIGHEST_PROTOCOL=pickle.HIGHEST_PROTOCOL,
            UnpicklingError=pickle.UnpicklingError))
        with pytest.raises(EngineProcessDied):
            engine.submit_many([Request(factura(1), "G1.txt", "g:1")]).result(timeout=60)
        wait_until(lambda: engine.pids() and engine.pids()[0] != first_pid, 60, "a new worker process")
        with pytest.raises(ProcessLookupError):
            os.kill(first_pid, 0)  # ended and reaped, not left beside the new one
        (signed,) = engine.issue_many([Request(factura(1), "G1.txt", "g:1")])
        assert isinstance(signed, SignedDte)
    finally:
        engine.stop()


def test_a_worker_launched_early_becomes_the_engines_first_worker(config) -> None:
    """`dtesync run` starts the worker before its own imports; the engine then talks to that
    same process instead of starting a second one."""
    launched = Launched(config)
    engine = EngineProcess.open(config, launched=launched)
    engine.start()
    try:
        assert engine.pids() == [launched.process.pid]
        (signed,) = engine.issue_many([Request(factura(1), "E1.txt", "e:1")])
        assert isinstance(signed, SignedDte)
    finally:
        engine.stop()
    assert launched.process.poll() == 0  # it finished gracefully, not killed by a discard


def test_a_worker_launched_for_a_daemon_that_never_starts_is_ended(config) -> None:
    """The daemon failed after the launch (another daemon holds the lock, a stage refused its
    settings): stopping the engine ends the worker nobody took."""
    launched = Launched(config)
    engine = EngineProcess.open(config, launched=launched)
    engine.stop()
    assert launched.process.poll() is not None


def test_a_worker_that_cannot_open_the_certificate_says_why(config) -> None:
    (config.folders.state.parent / "cert" / "password.txt").write_text("not-the-password", "utf-8")
    broken = load_config(config.folders.state.parent / "dtesync.toml")
    launched = Launched(broken)
    engine = EngineProcess(broken, None, None, launched=launched)  # type: ignore[arg-type]
    with pytest.raises(EngineProcessDied, match="did not start: DteSyncError: CERT_PASSWORD"):
        engine.start()
    launched.process.wait(30)  # ended (TimeoutExpired if it were left waiting)


class WindowWatchingEngine(EngineProcess):
    """Records how many PDF jobs its worker processes hold whenever one more is handed over."""

    held: list[int]

    def render_pdf(self, job, done) -> None:  # noqa: ANN001
        super().render_pdf(job, done)
        with self._lock:
            self.__dict__.setdefault("held", []).append(sum(len(w.pdf_jobs) for w in self._workers))


def test_pdfs_of_a_backlog_reach_the_worker_a_window_at_a_time_and_all_get_written(config, monkeypatch) -> None:
    """A backlog's PDFs wait in the print queue's table, not in memory on both sides of the
    pipe: the worker holds at most PDF_WINDOW of them, and every NAME.pdf is still written."""
    monkeypatch.setattr("sync.printing.service.PDF_WINDOW", 4)
    for i in range(30):
        drop(config.folders.inbox, f"N{i}.txt", factura(i))
    engine = WindowWatchingEngine.open(config)
    app = build_app(config, engine=engine)
    app.start()
    try:
        wait_until(lambda: all((config.folders.outbox / f"N{i}.pdf").exists() for i in range(30)), what="30 PDFs")
    finally:
        app.stop()
    assert len(engine.held) >= 30 and max(engine.held) <= 4
    with PrintQueue(config.folders.state / PRINT_QUEUE) as q:
        assert q.pdf_jobs() == []


class ForgetfulEngine(EngineProcess):
    """A worker that dies before rendering any PDF it was handed (signing still works)."""

    def render_pdf(self, job, done) -> None:  # noqa: ANN001
        pass


def test_pdfs_left_unwritten_by_a_stop_are_written_at_the_next_start(config) -> None:
    app = build_app(config, engine=ForgetfulEngine.open(config))
    app.start()
    try:
        for i in range(8):
            drop(config.folders.inbox, f"P{i}.txt", factura(i))
        wait_until(lambda: len([s for s in statuses(config.folders.outbox).values() if s["state"] == "signed"]) == 8,
                   what="8 signed")
    finally:
        app.stop()
    assert not any(config.folders.outbox.glob("P*.pdf"))
    with PrintQueue(config.folders.state / PRINT_QUEUE) as q:
        assert len(q.pdf_jobs()) == 8  # every unwritten PDF is recorded
    again = build_app(config)
    again.start()
    try:
        wait_until(lambda: all((config.folders.outbox / f"P{i}.pdf").exists() for i in range(8)), what="all PDFs")
    finally:
        again.stop()
    with PrintQueue(config.folders.state / PRINT_QUEUE) as q:
        assert q.pdf_jobs() == []


def test_a_backlog_larger_than_what_is_kept_in_flight_waits_in_the_inbox_and_is_all_processed(config) -> None:
    for i in range(150):
        drop(config.folders.inbox, f"L{i}.txt", factura(i))
    app = build_app(config, stages=[], workers=1, batch_size=4)
    app.daemon.in_flight_cap = 16
    seen_in_flight = []
    app.start()
    try:
        def all_signed():
            seen_in_flight.append(app.daemon._dispatcher.pending())
            s = statuses(config.folders.outbox)
            return len(s) == 150 and all(v["state"] == "signed" for v in s.values())

        wait_until(all_signed, what="150 signed")
    finally:
        app.stop()
    assert max(seen_in_flight) <= 16 + 4  # the cap, plus at most one claim batch being resolved


def test_workers_wake_the_ingest_loop_as_soon_as_there_is_room_for_parked_files(config, monkeypatch) -> None:
    """Parked files come back when the workers have drained half the cap, not at the ingest
    loop's next timeout (up to a second per refill: the workers starved behind a full inbox)."""
    for i in range(60):
        drop(config.folders.inbox, f"W{i}.txt", factura(i))
    wakes_with_parked: list[int] = []
    real_wake = InboxWatcher.wake

    def wake(watcher: InboxWatcher) -> None:
        wakes_with_parked.append(watcher.parked)
        real_wake(watcher)

    monkeypatch.setattr(InboxWatcher, "wake", wake)
    app = build_app(config, stages=[], workers=1, batch_size=4)
    app.daemon.in_flight_cap = 16
    app.start()
    try:
        wait_until(lambda: (s := statuses(config.folders.outbox)) and len(s) == 60
                   and all(v["state"] == "signed" for v in s.values()), what="60 signed")
    finally:
        app.stop()
    assert any(n > 0 for n in wakes_with_parked)


class CountingEngine(EngineProcess):
    """Records which worker process each batch to sign went to."""

    signers: set[int]

    def _pick(self):  # noqa: ANN202
        w = super()._pick()
        self.__dict__.setdefault("signers", set()).add(w.pid)
        return w


def test_two_engine_workers_racing_for_one_caf_use_every_folio_once_and_no_more(tmp_path: Path) -> None:
    """Issue #17's concurrency: two worker processes take folios of the same CAF at once. Every
    folio of the CAF is used exactly once, and the documents beyond it wait for a CAF with
    FOLIOS_EXHAUSTED instead of getting a folio twice."""
    sb = create_sandbox(tmp_path / "sb", folios_per_type=30)
    config = load_config(sb.config_path)
    config = dataclasses.replace(config, daemon=dataclasses.replace(config.daemon, engine_processes=2, batch_size=4))
    engine = CountingEngine.open(config)
    app = build_app(config, stages=[], engine=engine)
    app.start()
    try:
        assert len(engine.pids()) == 2
        for i in range(40):
            drop(config.folders.inbox, f"R{i}.txt", factura(i))
        done = wait_until(lambda: (s := statuses(config.folders.outbox)) and len(s) == 40 and
                          all(v["state"] in ("signed", "error") for v in s.values()) and s, what="40 final")
    finally:
        app.stop()
    assert len(engine.signers) == 2  # both processes took folios
    signed = [v for v in done.values() if v["state"] == "signed"]
    waiting = [v for v in done.values() if v["state"] == "error"]
    folios = sorted(v["folio"] for v in signed)
    assert folios == list(range(1, 31))  # the whole CAF, each folio once
    assert len(waiting) == 10
    assert {e["code"] for v in waiting for e in v["errors"]} == {"FOLIOS_EXHAUSTED"}
    with FolioStore(config.folders.state / "folios.sqlite", readonly=True) as store:
        assert [store.state_of(33, f) for f in range(1, 31)] == ["used"] * 30


def test_pdfs_wait_for_a_longer_quiet_after_a_backlogs_full_batch_than_after_a_trickle() -> None:
    from sync.engine_process import BACKLOG_BATCH, PDF_AFTER_BACKLOG_QUIET, PDF_AFTER_QUIET, pdf_quiet

    assert pdf_quiet(1) == pdf_quiet(BACKLOG_BATCH - 1) == PDF_AFTER_QUIET
    assert pdf_quiet(BACKLOG_BATCH) == pdf_quiet(16) == PDF_AFTER_BACKLOG_QUIET > PDF_AFTER_QUIET


def test_the_documents_of_the_last_second_are_counted_over_a_sliding_window() -> None:
    from sync.engine_process import RecentDocuments

    recent = RecentDocuments(window=1.0)
    assert recent.add(10.0, 30) == 30
    assert recent.add(10.5, 30) == 60
    assert recent.add(11.0, 5) == 65  # 10.0 is exactly one second old: still inside
    assert recent.add(11.6, 10) == 15  # 10.0 and 10.5 have left the window
    assert recent.add(20.0, 2) == 2


def test_pdfs_wait_for_the_longer_quiet_when_a_backlog_arrives_in_small_batches() -> None:
    from sync.engine_process import BACKLOG_RATE, PDF_AFTER_BACKLOG_QUIET, PDF_AFTER_QUIET, pdf_quiet

    assert pdf_quiet(2, documents_last_second=BACKLOG_RATE) == PDF_AFTER_BACKLOG_QUIET
    assert pdf_quiet(1, documents_last_second=20) == PDF_AFTER_QUIET  # a busy shop's 20 files/s
