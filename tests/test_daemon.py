"""The daemon end to end on real folders, with the fake engine; events and polling modes."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from watchdog.events import FileSystemEventHandler
from watchdog.observers.inotify import InotifyObserver

from daemon_runner import BatchingFakeEngine, make_daemon
from sync.errors import DteSyncError
from sync.stage import Stage

FINAL = {"signed", "rejected_input", "error"}


def wait_for(pred, timeout: float = 30.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def read_status(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def final_status(root: Path, stem: str, folder: str = "", timeout: float = 30.0) -> dict:
    p = root / "outbox" / folder / f"{stem}.status.json"

    def done():
        st = read_status(p)
        return st if st and st["state"] in FINAL else None

    return wait_for(done, timeout, f"final status of {folder}/{stem}")


@pytest.fixture(params=["events", "poll"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def run(tmp_path: Path, mode: str):
    started = []

    def start(**kw):
        kw.setdefault("stations", {"caja1", "caja2"})
        d, eng = make_daemon(tmp_path, mode, **kw)
        d.start()
        started.append(d)
        return d, eng

    yield start
    for d in started:
        d.stop()


def test_signed_input_gets_status_xml_and_is_archived(run, tmp_path: Path) -> None:
    d, eng = run()
    (tmp_path / "inbox" / "F1.txt").write_bytes(b"factura uno")
    st = final_status(tmp_path, "F1")
    assert (st["state"], st["tipo_dte"], st["folio"], st["source"]) == ("signed", 33, 1, "F1.txt")
    assert b"<Folio>1</Folio>" in (tmp_path / "outbox" / "F1.xml").read_bytes()
    archived = wait_for(lambda: list((tmp_path / "archive").rglob("F1.txt")), 10, "F1.txt archived")
    assert len(archived) == 1 and archived[0].parent.parent == tmp_path / "archive"
    assert archived[0].read_bytes() == b"factura uno"
    assert [h["state"] for h in st["history"]] == ["received", "signed"]


def test_bad_input_is_rejected_with_catalog_error_and_kept(run, tmp_path: Path) -> None:
    run()
    (tmp_path / "inbox" / "B.json").write_bytes(b'{"BAD": 1}')
    st = final_status(tmp_path, "B")
    assert st["state"] == "rejected_input"
    assert st["errors"] == [{"code": "FIELD_REQUIRED", "message": "Falta el campo obligatorio 'TipoDTE'.",
                             "field": "TipoDTE", "line": 1}]
    wait_for((tmp_path / "rejected" / "B.json").exists, 10, "B.json filed")  # filing follows the final status
    assert (tmp_path / "rejected" / "B.json").read_bytes() == b'{"BAD": 1}'


def test_environment_error_is_state_error_and_retried_when_dropped_again(run, tmp_path: Path) -> None:
    run()
    (tmp_path / "inbox" / "N.txt").write_bytes(b"NOCAF")
    st = final_status(tmp_path, "N")
    assert st["state"] == "error" and st["errors"][0]["code"] == "CAF_MISSING"
    first_id = st["document_id"]
    (tmp_path / "inbox" / "N.txt").write_bytes(b"NOCAF")
    wait_for(lambda: (read_status(tmp_path / "outbox" / "N.status.json") or {}).get("document_id") != first_id)


def test_same_bytes_dropped_again_get_the_existing_result_not_a_second_folio(run, tmp_path: Path) -> None:
    d, eng = run()
    (tmp_path / "inbox" / "F1.txt").write_bytes(b"factura")
    first = final_status(tmp_path, "F1")
    (tmp_path / "outbox" / "F1.status.json").unlink()  # the ERP consumed it
    (tmp_path / "inbox" / "F1.txt").write_bytes(b"factura")
    again = final_status(tmp_path, "F1")
    assert (again["folio"], again["document_id"]) == (first["folio"], first["document_id"])
    assert len(eng.allocated()) == 1
    wait_for(lambda: len(list((tmp_path / "archive").rglob("F1*.txt"))) == 2, 10, "both inputs kept")


def test_new_content_under_final_name_is_new_document_and_old_results_archived(run, tmp_path: Path) -> None:
    d, eng = run()
    (tmp_path / "inbox" / "F1.txt").write_bytes(b"primera")
    first = final_status(tmp_path, "F1")
    (tmp_path / "inbox" / "F1.txt").write_bytes(b"segunda")
    second = wait_for(lambda: (s := read_status(tmp_path / "outbox" / "F1.status.json")) and s["document_id"] != first["document_id"] and s["state"] in FINAL and s)
    assert (first["folio"], second["folio"]) == (1, 2)
    day = next((tmp_path / "archive").iterdir())
    old = json.loads((day / "F1.status.json").read_text("utf-8"))
    assert old["folio"] == 1 and (day / "F1.xml").exists() and (day / "F1.txt").read_bytes() == b"primera"
    wait_for((day / "F1~2.txt").exists, 10, "F1~2.txt archived")  # filing follows the final status
    assert (day / "F1~2.txt").read_bytes() == b"segunda"


def test_same_name_while_unfinished_is_rejected_name_in_progress(run, tmp_path: Path) -> None:
    run(write_received=True)  # its 'received' status shows when F1 is in the engine
    (tmp_path / "inbox" / "F1.txt").write_bytes(b"SLOW factura")
    wait_for(lambda: read_status(tmp_path / "outbox" / "F1.status.json"))
    (tmp_path / "inbox" / "F1.xml").write_bytes(b"<otra/>")
    st = final_status(tmp_path, "F1.xml")
    assert st["state"] == "rejected_input" and st["errors"][0]["code"] == "NAME_IN_PROGRESS"
    assert final_status(tmp_path, "F1")["state"] == "signed"
    wait_for((tmp_path / "rejected" / "F1.xml").exists, 10, "F1.xml filed")


def test_unknown_extension_is_rejected_with_clear_code(run, tmp_path: Path) -> None:
    run()
    (tmp_path / "inbox" / "F1.pdf").write_bytes(b"%PDF")
    st = final_status(tmp_path, "F1")
    assert st["errors"][0]["code"] == "INPUT_UNKNOWN_FORMAT"
    wait_for((tmp_path / "rejected" / "F1.pdf").exists, 10, "F1.pdf filed")


def test_temp_names_are_ignored_until_renamed(run, tmp_path: Path) -> None:
    run()
    inbox = tmp_path / "inbox"
    (inbox / "T1.txt.tmp").write_bytes(b"x")
    (inbox / "~T2.txt").write_bytes(b"x")
    (inbox / "T3.part").write_bytes(b"x")
    (inbox / "T0.txt").write_bytes(b"x0")
    final_status(tmp_path, "T0")
    time.sleep(1.2)  # longer than a scan interval
    assert {p.name for p in inbox.iterdir()} >= {"T1.txt.tmp", "~T2.txt", "T3.part"}
    os.rename(inbox / "T1.txt.tmp", inbox / "T1.txt")
    assert final_status(tmp_path, "T1")["state"] == "signed"


def test_empty_file_is_rejected_after_timeout(run, tmp_path: Path) -> None:
    run()
    (tmp_path / "inbox" / "E.txt").write_bytes(b"")
    st = final_status(tmp_path, "E")
    assert st["errors"][0]["code"] == "INPUT_EMPTY"
    wait_for(lambda: (tmp_path / "rejected" / "E.txt").exists(), 10, "E.txt filed in rejected/")


def test_symlink_is_rejected_as_a_link_never_followed(run, tmp_path: Path) -> None:
    run()
    secret = tmp_path / "outside.txt"
    secret.write_bytes(b"do not read me")
    os.symlink(secret, tmp_path / "inbox" / "L.txt")
    st = final_status(tmp_path, "L")
    assert st["errors"][0]["code"] == "INPUT_SYMLINK"
    moved = tmp_path / "rejected" / "L.txt"
    wait_for(moved.is_symlink, 10, "the link filed in rejected/")  # filing follows the final status
    assert moved.is_symlink() and os.readlink(moved) == str(secret)
    assert secret.read_bytes() == b"do not read me"


def test_hostile_inbox_each_gets_a_clear_status_and_daemon_keeps_running(run, tmp_path: Path) -> None:
    d, eng = run()
    inbox = tmp_path / "inbox"
    (inbox / "garbage.txt").write_bytes(bytes(range(256)) * 4)
    (inbox / "not-a-station").mkdir()
    (inbox / "not-a-station" / "X.txt").write_bytes(b"x")
    (inbox / "caja1").mkdir()
    (inbox / "caja1" / "dir.txt").mkdir()  # a directory with an input's name, inside a station
    spaced, accented, long = "factura con espacios", "Ñandú Peñalolén", "L" * 196
    for stem in (spaced, accented, long):
        (inbox / f"{stem}.txt").write_bytes(f"doc {stem}".encode())
    gone = inbox / "gone.txt"
    gone.write_bytes(b"deleted while being read")
    gone.unlink()
    assert final_status(tmp_path, "garbage")["errors"][0]["code"] == "INPUT_BINARY"
    for stem in (spaced, accented, long):
        assert final_status(tmp_path, stem)["state"] == "signed"
    (inbox / "after.txt").write_bytes(b"still alive")
    assert final_status(tmp_path, "after")["state"] == "signed"
    assert (inbox / "not-a-station" / "X.txt").exists() and (inbox / "caja1" / "dir.txt").is_dir()
    assert not (tmp_path / "outbox" / "gone.status.json").exists()


def test_station_outbox_mirrors_inbox_and_keeps_order(run, tmp_path: Path) -> None:
    run()
    st_dir = tmp_path / "inbox" / "caja1"
    st_dir.mkdir()
    for i in range(15):
        (st_dir / f"V{i:02d}.txt").write_bytes(b"venta %d" % i)
    folios = [final_status(tmp_path, f"V{i:02d}", folder="caja1")["folio"] for i in range(15)]
    assert folios == sorted(folios)
    assert (tmp_path / "outbox" / "caja1" / "V00.xml").exists()


def test_done_marker_required_mode(run, tmp_path: Path) -> None:
    run(require_done_marker=True)
    (tmp_path / "inbox" / "M.txt").write_bytes(b"marked")
    time.sleep(0.8)
    assert read_status(tmp_path / "outbox" / "M.status.json") is None
    (tmp_path / "inbox" / "M.done").write_bytes(b"")
    assert final_status(tmp_path, "M")["state"] == "signed"
    assert not (tmp_path / "inbox" / "M.done").exists()


def test_transient_engine_failure_is_retried(run, tmp_path: Path) -> None:
    run()
    (tmp_path / "inbox" / "R.txt").write_bytes(b"FLAKY")
    assert final_status(tmp_path, "R")["state"] == "signed"


def test_a_document_waiting_for_a_retry_shows_received_meanwhile(run, tmp_path: Path) -> None:
    run(retry_base=3.0)
    (tmp_path / "inbox" / "H.txt").write_bytes(b"FLAKY held")
    status = tmp_path / "outbox" / "H.status.json"
    waiting = wait_for(lambda: (st := read_status(status)) and st["state"] == "received" and st, what="received")
    assert waiting["folio"] is None and waiting["errors"] == []
    assert final_status(tmp_path, "H")["state"] == "signed"


class StatusRenames(FileSystemEventHandler):
    """Every NAME.status.json renamed into the outbox (each is one complete status written)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def on_moved(self, event) -> None:  # noqa: ANN001
        if str(event.dest_path).endswith(".status.json"):
            self.names.append(os.path.basename(event.dest_path))


@pytest.mark.parametrize("write_received", [False, True])
def test_a_document_signed_at_once_gets_one_status_file_unless_received_is_asked_for(
        run, tmp_path: Path, write_received: bool) -> None:
    run(write_received=write_received)
    seen = StatusRenames()
    observer = InotifyObserver()
    outbox = tmp_path / "outbox"
    observer.schedule(seen, str(outbox))
    observer.start()
    try:
        # the observer adds its watch on its own thread: a probe's rename says it is in place
        end = time.monotonic() + 10
        while "probe.status.json" not in seen.names and time.monotonic() < end:
            (outbox / ".probe.tmp").write_text("{}")
            os.replace(outbox / ".probe.tmp", outbox / "probe.status.json")
            time.sleep(0.1)
        (tmp_path / "inbox" / "N.txt").write_bytes(b"factura now")
        st = final_status(tmp_path, "N")
        want = 2 if write_received else 1
        wait_for(lambda: seen.names.count("N.status.json") >= want, 10, "the status renames")
        time.sleep(0.3)  # and no more than that
    finally:
        observer.stop()
        observer.join()
    assert st["state"] == "signed" and [h["state"] for h in st["history"]] == ["received", "signed"]
    assert seen.names.count("N.status.json") == want


def drain_backlog(tmp_path: Path, mode: str, files: dict[str, bytes], batch_size: int,
                  **engine_kw) -> tuple[dict, BatchingFakeEngine]:
    """Files present at start-up, drained by a daemon whose engine records its batches."""
    (tmp_path / "inbox").mkdir(parents=True)
    for name, body in files.items():
        (tmp_path / "inbox" / name).write_bytes(body)
    engine = BatchingFakeEngine(tmp_path / "fake-folios.sqlite3", **engine_kw)
    d, _ = make_daemon(tmp_path, mode, engine=engine, batch_size=batch_size)
    d.start()
    try:
        states = {name: final_status(tmp_path, name.rsplit(".", 1)[0])["state"] for name in files}
    finally:
        d.stop()
    return states, engine


def test_a_backlog_goes_to_the_engine_in_batches_each_document_answered(tmp_path: Path, mode: str) -> None:
    files = {f"L{i:02d}.txt": b"BAD %d" % i if i == 7 else b"factura %d" % i for i in range(40)}
    states, engine = drain_backlog(tmp_path, mode, files, batch_size=8)
    assert states.pop("L07.txt") == "rejected_input"  # a bad input in a batch is answered on its own
    assert set(states.values()) == {"signed"}
    assert 1 < max(len(b) for b in engine.batches) <= 8
    assert sorted(s for b in engine.batches for s in b) == sorted(files)
    assert sorted(f for _, _, f, _ in engine.allocated()) == list(range(1, 40))


def test_a_transient_failure_in_a_batch_retries_only_that_document(tmp_path: Path, mode: str) -> None:
    files = {f"T{i:02d}.txt": b"FLAKY %d" % i if i == 3 else b"factura %d" % i for i in range(12)}
    states, engine = drain_backlog(tmp_path, mode, files, batch_size=12)
    assert set(states.values()) == {"signed"}
    issued = Counter(s for b in engine.batches for s in b)
    assert issued["T03.txt"] == 2 and all(n == 1 for name, n in issued.items() if name != "T03.txt")


def test_an_engine_failure_of_a_whole_batch_is_retried_not_the_answer_for_its_documents(tmp_path: Path, mode: str) -> None:
    files = {f"W{i:02d}.txt": b"factura %d" % i for i in range(10)}
    states, engine = drain_backlog(tmp_path, mode, files, batch_size=10, fail_first_batch=True)
    assert set(states.values()) == {"signed"}
    assert len(engine.batches) >= 2


def test_status_txt_written_when_configured(run, tmp_path: Path) -> None:
    run(status_txt=True)
    (tmp_path / "inbox" / "K.txt").write_bytes(b"x")
    final_status(tmp_path, "K")
    assert "state=signed" in (tmp_path / "outbox" / "K.status.txt").read_text("utf-8")


def test_second_daemon_on_same_state_folder_is_refused(run, tmp_path: Path, mode: str) -> None:
    run()
    other, _ = make_daemon(tmp_path, mode)
    with pytest.raises(DteSyncError) as exc:
        other.start()
    assert exc.value.code == "DAEMON_ALREADY_RUNNING"


class Recorder(Stage):
    """A stage that records what it is handed."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.signed: list[tuple[int, int]] = []
        self.states: list[tuple[int, str]] = []

    def on_signed(self, doc, dte) -> None:
        self.signed.append((doc.id, dte.folio))

    def on_state(self, doc) -> None:
        self.states.append((doc.id, doc.state))

    def status_entry(self, doc) -> dict:
        return {"recorder": {"seen": any(i == doc.id for i, _ in self.signed)}}


def test_stage_gets_signed_documents_and_state_changes_and_adds_to_the_status(run, tmp_path: Path) -> None:
    rec = Recorder()
    d, _ = run(stages=[rec])
    (tmp_path / "inbox" / "U.txt").write_bytes(b"x")
    st = final_status(tmp_path, "U")
    wait_for(lambda: rec.signed, 10, "on_signed")  # it runs right after the signed status is written
    assert rec.signed == [(st["document_id"], st["folio"])]
    d.filing.update_state(st["document_id"], "sent", track_id="4711")
    assert rec.states == [(st["document_id"], "sent")]
    st2 = read_status(tmp_path / "outbox" / "U.status.json")
    assert (st2["state"], st2["track_id"]) == ("sent", "4711")
    assert [h["state"] for h in st2["history"]] == ["received", "signed", "sent"]
    assert st2["recorder"] == {"seen": True}


class Picky(Recorder):
    """Fails on the document named B, in both hooks."""

    name = "picky"

    def on_signed(self, doc, dte) -> None:
        if doc.name.startswith("B"):
            raise RuntimeError("picky")
        super().on_signed(doc, dte)

    def status_entry(self, doc) -> dict:
        if doc.name.startswith("B"):
            raise RuntimeError("picky")
        return super().status_entry(doc)


def test_a_stage_failing_on_one_document_fails_no_other_document_of_its_batch(run, tmp_path: Path) -> None:
    rec = Picky()
    run(stages=[rec])
    for name in "ABC":
        (tmp_path / "inbox" / f"{name}.txt").write_bytes(b"x")
    st = {name: final_status(tmp_path, name) for name in "ABC"}
    assert {s["state"] for s in st.values()} == {"signed"}
    wait_for(lambda: len(rec.signed) == 2, 10, "on_signed")
    assert sorted(i for i, _ in rec.signed) == sorted(st[name]["document_id"] for name in "AC")
    assert "recorder" in st["A"] and "recorder" in st["C"] and "recorder" not in st["B"]


def test_snapshot_and_queue(run, tmp_path: Path) -> None:
    d, _ = run()
    (tmp_path / "inbox" / "A.txt").write_bytes(b"x")
    (tmp_path / "inbox" / "B.txt").write_bytes(b"BAD")
    final_status(tmp_path, "A"), final_status(tmp_path, "B")
    wait_for(d.idle)
    snap = d.snapshot()
    assert snap["counts"] == {"signed": 1, "rejected_input": 1}
    assert snap["last_errors"][0]["errors"][0]["code"] == "FIELD_REQUIRED"
    assert d.queue() == []


def test_graceful_stop_then_restart_processes_what_arrived_meanwhile(tmp_path: Path, mode: str) -> None:
    d, eng = make_daemon(tmp_path, mode)
    d.start()
    (tmp_path / "inbox" / "A.txt").write_bytes(b"a")
    final_status(tmp_path, "A")
    d.stop()
    (tmp_path / "inbox" / "B.txt").write_bytes(b"b")
    d2, _ = make_daemon(tmp_path, mode, engine=eng)
    d2.start()
    try:
        assert final_status(tmp_path, "B")["folio"] == 2
    finally:
        d2.stop()


class SlowStartEngine:
    """A managed engine (an engine process's lifecycle) whose start takes a while, or fails:
    it records what the journal held when its start was called."""

    def __init__(self, inner, journal_path: Path, fail: bool = False) -> None:
        self.inner, self.journal_path, self.fail = inner, journal_path, fail
        self.claimed_when_started: int | None = None

    def start(self) -> None:
        import sqlite3

        time.sleep(0.5)  # the engine process importing its modules: the scan runs meanwhile
        with sqlite3.connect(self.journal_path) as db:
            self.claimed_when_started = db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        if self.fail:
            raise RuntimeError("the engine process did not start")

    def stop(self, timeout: float = 30.0) -> None:
        pass

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_a_backlog_found_at_start_is_claimed_only_once_the_engine_is_up(tmp_path: Path, mode: str) -> None:
    (tmp_path / "inbox").mkdir(parents=True)
    for i in range(5):
        (tmp_path / "inbox" / f"A{i}.txt").write_bytes(b"a%d" % i)
        os.utime(tmp_path / "inbox" / f"A{i}.txt", (time.time() - 3600,) * 2)  # ready at the scan's first sight
    _, fake = make_daemon(tmp_path, mode)
    eng = SlowStartEngine(fake, tmp_path / "state" / "journal.sqlite3")
    d, _ = make_daemon(tmp_path, mode, engine=eng)
    d.start()
    try:
        assert eng.claimed_when_started == 0
        assert {final_status(tmp_path, f"A{i}")["state"] for i in range(5)} == {"signed"}
    finally:
        d.stop()


def test_a_start_that_fails_leaves_the_inbox_as_it_was(tmp_path: Path, mode: str) -> None:
    (tmp_path / "inbox").mkdir(parents=True)
    (tmp_path / "inbox" / "A.txt").write_bytes(b"a")
    _, fake = make_daemon(tmp_path, mode)
    d, _ = make_daemon(tmp_path, mode, engine=SlowStartEngine(fake, tmp_path / "state" / "journal.sqlite3", fail=True))
    with pytest.raises(RuntimeError, match="did not start"):
        d.start()
    assert [n for n in os.listdir(tmp_path / "inbox") if not n.startswith(".")] == ["A.txt"]  # .dtesync.lock aside
    assert not any((tmp_path / "outbox").glob("*"))
    d2, _ = make_daemon(tmp_path, mode, engine=fake)  # the locks were released: the next start works
    d2.start()
    try:
        assert final_status(tmp_path, "A")["state"] == "signed"
    finally:
        d2.stop()


def write_burst(inbox: Path, n: int, seed: int = 7, prefix: str = "D") -> dict[str, bytes]:
    """n files of mixed kinds: direct, slow chunked, renamed into place, dropped twice, bad."""
    rnd = random.Random(seed)
    expected: dict[str, bytes] = {}
    for s in ("caja1", "caja2"):
        (inbox / s).mkdir(exist_ok=True)
    slow: list[tuple[Path, bytes]] = []
    for i in range(n):
        folder = rnd.choice(["", "", "caja1", "caja2"])
        ext = rnd.choice([".txt", ".json", ".xml"])
        rel = f"{folder}/{prefix}{i:04d}{ext}" if folder else f"{prefix}{i:04d}{ext}"
        kind = rnd.random()
        body = (b"BAD " if kind < 0.05 else b"") + (b"boleta " if i % 3 == 0 else b"factura ") + b"%d " % i * 40
        expected[rel] = body
        path = inbox / rel
        if kind < 0.15:
            slow.append((path, body))
        elif kind < 0.40:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(body)
            os.rename(tmp, path)
        else:
            path.write_bytes(body)
            if kind > 0.90:
                path.write_bytes(body)  # dropped twice, maybe after the first claim

    def slow_writer(items: list[tuple[Path, bytes]]) -> None:
        for path, body in items:
            with open(path, "wb") as f:
                for k in range(0, len(body), len(body) // 4 + 1):
                    f.write(body[k : k + len(body) // 4 + 1])
                    f.flush()
                    time.sleep(0.01)

    threads = [threading.Thread(target=slow_writer, args=(slow[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return expected


def check_invariants(root: Path, expected: dict[str, bytes], eng_alloc: list) -> None:
    """Each input has exactly one final status; no folio twice; no unexplained gap."""
    signed: list[tuple[int, int]] = []
    for rel, body in expected.items():
        folder, _, name = rel.rpartition("/")
        st = read_status(root / "outbox" / folder / (name.rsplit(".", 1)[0] + ".status.json"))
        assert st is not None, f"no status for {rel}"
        assert st["source"] == rel
        want = "rejected_input" if body.startswith(b"BAD") else "signed"
        assert st["state"] == want, (rel, st)
        if want == "signed":
            signed.append((st["tipo_dte"], st["folio"]))
            xml = (root / "outbox" / folder / (name.rsplit(".", 1)[0] + ".xml")).read_bytes()
            assert f"<Folio>{st['folio']}</Folio>".encode() in xml
    assert len(signed) == len(set(signed)), "a folio was used twice"
    allocated = sorted((tipo, folio) for _, tipo, folio, _ in eng_alloc)
    assert sorted(signed) == allocated, "engine allocated folios that no status explains"
    for tipo in {t for t, _ in allocated}:
        fs = sorted(f for t, f in allocated if t == tipo)
        assert fs == list(range(1, len(fs) + 1)), "gap in the folio sequence"
    leftovers = [p for p in (root / "inbox").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert leftovers == []
    assert not any((root / "state" / "work").iterdir())
    n_inputs = sum(1 for p in (root / "archive").rglob("*") if p.is_file() and p.suffix in (".txt", ".json", ".xml")
                   and not p.name.endswith(".status.json"))
    n_rejected = sum(1 for p in (root / "rejected").rglob("*") if p.is_file())
    assert n_inputs + n_rejected >= len(expected)


def test_burst_of_500_mixed_files_each_gets_exactly_one_final_status(run, tmp_path: Path) -> None:
    d, eng = run()
    expected = write_burst(tmp_path / "inbox", 500)
    for rel in expected:
        folder, _, name = rel.rpartition("/")
        final_status(tmp_path, name.rsplit(".", 1)[0], folder, timeout=60)
    wait_for(d.idle, 30, "daemon idle")
    check_invariants(tmp_path, expected, eng.allocated())
    counts = Counter(doc.state for doc in d.filing.journal.all_docs())
    assert counts["signed"] == sum(1 for b in expected.values() if not b.startswith(b"BAD"))


class SlowStage(Stage):
    """Holds the worker between the final status and the input's filing, as a busy machine does."""

    name = "slow"

    def on_signed(self, doc, dte) -> None:
        time.sleep(1.0)


def test_a_name_sent_again_right_after_its_final_status_is_a_new_document_not_a_conflict(run, tmp_path: Path) -> None:
    run(stages=[SlowStage()])
    (tmp_path / "inbox" / "R.txt").write_bytes(b"primera")
    first = final_status(tmp_path, "R")  # written before the stage runs and the input is filed
    (tmp_path / "inbox" / "R.txt").write_bytes(b"segunda")
    second = wait_for(lambda: (s := read_status(tmp_path / "outbox" / "R.status.json")) and
                      s["document_id"] != first["document_id"] and s["state"] in FINAL and s, 30, "the second R")
    assert second["state"] == "signed"
    assert not (tmp_path / "outbox" / "R.txt.status.json").exists()  # no NAME_IN_PROGRESS answer
