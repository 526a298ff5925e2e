"""Retention: after [retention] outbox_days a document's results leave the outbox for the
archive's dated folder beside its input; the journal knows where they are, later status
rewrites follow them, nothing is lost or duplicated across a SIGKILL."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from daemon_runner import make_daemon
from sync.alerts import Alerts
from sync.errors import DteSyncError
from sync.filing import Filing, Folders
from sync.journal import Journal
from sync.retention import RetentionConfig, RetentionStage, parse_retention
from sync.stage import Stage

HERE = Path(__file__).resolve().parent
DAY = 86400.0


def process(root: Path, names: dict[str, bytes], stages=()) -> None:
    """Run the daemon (fake engine) over these inputs until each has a final status."""
    daemon, _ = make_daemon(root, "poll", stations={"caja1"}, stages=stages)
    daemon.start()
    try:
        for name, data in names.items():
            path = root / "inbox" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_name("." + path.name + ".tmp").write_bytes(data)
            path.with_name("." + path.name + ".tmp").replace(path)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (daemon.idle() and _statuses(root) >= len(names)):
            time.sleep(0.05)
    finally:
        daemon.stop()


def _statuses(root: Path) -> int:
    return sum(1 for _ in (root / "outbox").rglob("*.status.json"))


def open_filing(root: Path) -> Filing:
    f = Filing(Folders(inbox=root / "inbox", outbox=root / "outbox", archive=root / "archive",
                       rejected=root / "rejected", state=root / "state"))
    f.open()
    return f


def retention(filing: Filing, days_ahead: float = 2) -> RetentionStage:
    stage = RetentionStage(RetentionConfig(outbox_days=1), clock=lambda: time.time() + days_ahead * DAY)
    stage.bind(filing, Alerts([]))
    return stage


def result_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith((".status.json", ".xml", ".pdf")))


def test_results_older_than_outbox_days_move_beside_their_input(tmp_path):
    process(tmp_path, {"F1.txt": b"doc one", "caja1/F2.txt": b"doc two boleta", "BAD.txt": b"BAD input"})
    f = open_filing(tmp_path)
    try:
        assert retention(f, days_ahead=0.5).run_once() == 0  # not old enough yet
        moved = retention(f).run_once()
        assert moved == 5  # F1 and F2: status + xml; BAD: status
        assert not [p for p in (tmp_path / "outbox").rglob("*") if p.is_file()]
        day = next((tmp_path / "archive").iterdir()).name
        arch = tmp_path / "archive" / day
        assert {p.name for p in arch.iterdir() if p.is_file()} == {"F1.txt", "F1.status.json", "F1.xml"}
        assert {p.name for p in (arch / "caja1").iterdir()} == {"F2.txt", "F2.status.json", "F2.xml"}
        assert {p.name for p in (tmp_path / "rejected").iterdir()} == {"BAD.txt", "BAD.status.json"}
        assert json.loads((arch / "F1.status.json").read_text("utf-8"))["state"] == "signed"
        assert all(d.retained == 2 for d in f.journal.all_docs())
    finally:
        f.close()


def test_a_status_rewrite_after_retention_goes_to_the_archive(tmp_path):
    process(tmp_path, {"F1.txt": b"doc one"})
    f = open_filing(tmp_path)
    try:
        retention(f).run_once()
        (doc,) = f.journal.all_docs()
        f.update_state(doc.id, "accepted", "late answer")
        assert not (tmp_path / "outbox" / "F1.status.json").exists()
        status = json.loads(f.result_path(f.get(doc.id), ".status.json").read_text("utf-8"))
        assert status["state"] == "accepted" and "archive" in str(f.result_path(doc, ".xml"))
        xml = f.out.read_result(f.get(doc.id), ".xml")  # NAME.xml found where it went
        assert xml is not None and f"<Folio>{doc.folio}</Folio>".encode() in xml
    finally:
        f.close()


def test_documents_still_waiting_stay_in_the_outbox(tmp_path):
    class Queueing(Stage):
        name = "uplink"

        def on_signed(self, doc, dte):
            self.filing.update_state(doc.id, "queued", "waiting for the SII")

    process(tmp_path, {"F1.txt": b"doc one"}, stages=[Queueing()])
    f = open_filing(tmp_path)
    try:
        assert retention(f).run_once() == 0
        assert (tmp_path / "outbox" / "F1.status.json").exists()
        (doc,) = f.journal.all_docs()
        f.update_state(doc.id, "accepted")
        assert retention(f).run_once() == 2
    finally:
        f.close()


def test_a_name_reused_after_retention_supersedes_cleanly(tmp_path):
    process(tmp_path, {"F1.txt": b"first version"})
    f = open_filing(tmp_path)
    try:
        retention(f).run_once()
    finally:
        f.close()
    process(tmp_path, {"F1.txt": b"second version"})
    outbox = json.loads((tmp_path / "outbox" / "F1.status.json").read_text("utf-8"))
    assert outbox["state"] == "signed" and outbox["document_id"] == 2
    names = Counter(p.name for p in result_files(tmp_path))
    assert names["F1.status.json"] == 2 and names["F1.xml"] == 2  # one in the outbox, one in the archive


def test_retention_survives_sigkill_without_losing_or_duplicating_a_file(tmp_path):
    n = 600
    process(tmp_path, {f"D{i:04d}.txt": f"document {i}".encode() for i in range(n)})
    before = Counter(p.name for p in result_files(tmp_path))
    assert sum(before.values()) == 2 * n
    rng = random.Random(7)
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, str(HERE / "retention_runner.py"), str(tmp_path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(rng.uniform(0.05, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(30)
    done = subprocess.run([sys.executable, str(HERE / "retention_runner.py"), str(tmp_path)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.stdout.split() == ["READY", "DONE"], done.stderr
    assert kills >= 1
    after = Counter(p.name for p in result_files(tmp_path))
    assert after == before  # every file once, none lost, none doubled (no '~2' copies)
    assert not [p for p in (tmp_path / "outbox").rglob("*") if p.is_file()]
    assert not [p for p in tmp_path.rglob(".*.tmp")]
    with Journal.open_readonly(tmp_path / "state" / "journal.sqlite3") as j:
        docs = j.all_docs()
    assert len(docs) == n and all(d.retained == 2 for d in docs)
    f = open_filing(tmp_path)
    try:
        assert all(f.out.has_xml(d) for d in docs)
    finally:
        f.close()


def test_retention_settings_are_checked():
    assert parse_retention({}).enabled is False
    assert parse_retention({"retention": {"outbox_days": 30}}).outbox_days == 30
    for bad in ({"outbox_days": -1}, {"outbox_days": "30"}, {"every": 0}, {"whatever": 1}):
        with pytest.raises(DteSyncError) as exc:
            parse_retention({"retention": bad})
        assert exc.value.code == "CONFIG_INVALID" and exc.value.field.startswith("retention")


def test_an_existing_journal_gains_the_retained_column(tmp_path):
    import sqlite3

    from sync.journal import MIGRATIONS

    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    old_schema = Journal.SCHEMA.split("-- Documents by")[0]  # before the counts table and its triggers
    old_schema = old_schema.replace("updated_at  REAL NOT NULL,", "updated_at  REAL NOT NULL")
    old_schema = "\n".join(line for line in old_schema.splitlines() if "retained" not in line)
    db.executescript(old_schema + "CREATE INDEX documents_state ON documents(state);")
    for i, (tipo, state) in enumerate([(33, "accepted"), (33, "accepted"), (None, "rejected_input")]):
        db.execute("INSERT INTO documents(folder,name,out_stem,ext,step,state,tipo_dte,created_at,updated_at)"
                   " VALUES ('',?,?,'.txt','filed',?,?,1,1)", (f"a{i}.txt", f"a{i}", state, tipo))
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) - 1}")
    db.commit()
    db.close()
    j = Journal(path)
    try:
        assert all(d.retained == 0 for d in j.all_docs())
        assert j.counts() == {"accepted": 2, "rejected_input": 1}  # the counts table starts from the rows there
        assert j.counts_by_type() == {(33, "accepted"): 2, (None, "rejected_input"): 1}
        indexes = {r[0] for r in j.conn().execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "documents_state" not in indexes and "documents_outbox" in indexes
    finally:
        j.close()


def test_the_counts_table_follows_every_write(tmp_path):
    process(tmp_path, {"F1.txt": b"doc one", "F2.txt": b"doc two boleta", "BAD.txt": b"BAD", "N.txt": b"NOCAF"})
    process(tmp_path, {"F1.txt": b"doc one again", "F2.txt": b"doc two boleta"})  # a superseded one, a duplicate
    j = Journal(tmp_path / "state" / "journal.sqlite3")
    try:
        j.set_state(1, "queued")
        scan = dict(j.conn().execute("SELECT state, COUNT(*) FROM documents WHERE step!='gone' GROUP BY state"))
        steps = dict(j.conn().execute("SELECT step, COUNT(*) FROM documents GROUP BY step"))
        assert j.counts() == scan and j.step_counts() == steps
        by_type = {(t, s): n for t, s, n in j.conn().execute(
            "SELECT tipo_dte, state, COUNT(*) FROM documents WHERE step!='gone' GROUP BY 1, 2")}
        assert j.counts_by_type() == by_type
    finally:
        j.close()


def test_sandbox_has_no_retention_by_default(sandbox_config):
    assert sandbox_config.retention.enabled is False
