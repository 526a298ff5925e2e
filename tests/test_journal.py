"""The journal's name rules, steps and durability settings (no daemon, no watcher)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import sync.journal as journal_mod
from sync.errors import DteSyncError
from sync.journal import ClaimIntent, Journal


def intent(name: str, folder: str = "") -> ClaimIntent:
    stem, _, ext = name.rpartition(".")
    return ClaimIntent(folder, name, stem, "." + ext, folder or None, 10, 0o100644)


@pytest.fixture
def j(tmp_path: Path) -> Journal:
    jr = Journal(tmp_path / "journal.sqlite3")
    yield jr
    jr.close()


def claim(j: Journal, name: str, sha: str, folder: str = ""):
    [doc_id] = j.begin_claims([intent(name, folder)])
    [doc] = j.mark_claimed([(doc_id, sha)])
    return doc


def finish(j: Journal, doc, state: str = "signed", folio: int | None = 1):
    j.decide(doc.id, state, final_path=f"/a/{doc.name}", folio=folio)
    j.filed(doc.id)
    return j.get(doc.id)


def test_journal_uses_wal_with_full_sync(j: Journal) -> None:
    assert j.conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j.conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_journal_refuses_network_share(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(journal_mod, "network_fs", lambda p: "cifs")
    with pytest.raises(DteSyncError) as exc:
        Journal(tmp_path / "j.sqlite3")
    assert exc.value.code == "STATE_DIR_NETWORK" and "cifs" in exc.value.message("en")


def test_new_input_is_received_and_recorded_in_history(j: Journal) -> None:
    doc = claim(j, "F1.txt", "aa")
    assert (doc.step, doc.state, doc.sha256) == ("claimed", "received", "aa")
    assert [h["state"] for h in j.history(doc.id)] == ["received"]


def test_same_bytes_same_name_while_in_progress_is_duplicate(j: Journal) -> None:
    first = claim(j, "F1.txt", "aa")
    again = claim(j, "F1.txt", "aa")
    assert (again.state, again.dup_of) == ("duplicate", first.id)


def test_same_bytes_same_name_after_signed_is_duplicate_never_second_document(j: Journal) -> None:
    first = finish(j, claim(j, "F1.txt", "aa"))
    again = claim(j, "F1.txt", "aa")
    assert again.dup_of == first.id


def test_different_bytes_same_name_while_unfinished_is_name_in_progress(j: Journal) -> None:
    claim(j, "F1.txt", "aa")
    other = claim(j, "F1.xml", "bb")
    assert other.state == "rejected_input" and other.out_stem == "F1.xml"
    assert [e["code"] for e in other.error_list] == ["NAME_IN_PROGRESS"]


def test_new_content_under_final_name_is_new_document_superseding_old(j: Journal) -> None:
    old = finish(j, claim(j, "F1.txt", "aa"))
    new = claim(j, "F1.txt", "bb")
    assert new.state == "received" and new.dup_of is None
    assert [d.id for d in j.superseding("", "F1")] == [old.id]
    j.supersede_done(old.id)
    assert j.superseding("", "F1") == [] and j.get(old.id).superseded == 2


def test_same_bytes_after_rejection_are_tried_again(j: Journal) -> None:
    finish(j, claim(j, "F1.txt", "aa"), state="error", folio=None)
    again = claim(j, "F1.txt", "aa")
    assert again.state == "received" and again.dup_of is None


def test_names_are_per_folder(j: Journal) -> None:
    claim(j, "F1.txt", "aa", folder="caja1")
    other = claim(j, "F1.txt", "bb", folder="caja2")
    assert other.state == "received"


def test_unfinished_lists_rows_to_resume_in_claim_order(j: Journal) -> None:
    a = claim(j, "A.txt", "1")
    b = claim(j, "B.txt", "2")
    finish(j, a)
    [pending] = j.begin_claims([intent("C.txt")])
    assert [(d.id, d.step) for d in j.unfinished()] == [(b.id, "claimed"), (pending, "claiming")]


def test_deferred_filed_mark_rides_on_next_transaction(j: Journal) -> None:
    doc = claim(j, "A.txt", "1")
    j.decide(doc.id, "signed", final_path="/a/A.txt", folio=7)
    j.filed(doc.id, defer=True)
    other = claim(j, "A.txt", "2")  # sees A as final: a new document, not NAME_IN_PROGRESS
    assert other.state == "received" and j.get(doc.id).step == "filed"


def test_decided_outcome_survives_reopening(tmp_path: Path) -> None:
    j1 = Journal(tmp_path / "j.sqlite3")
    doc = claim(j1, "F1.txt", "aa")
    j1.decide(doc.id, "signed", final_path="/a/F1.txt", tipo_dte=33, folio=9, rut_emisor="1-9", monto_total=100)
    j1.close()
    j2 = Journal(tmp_path / "j.sqlite3")
    d = j2.get(doc.id)
    assert (d.step, d.state, d.folio, d.tipo_dte) == ("decided", "signed", 9, 33)
    assert [h["state"] for h in j2.history(doc.id)] == ["received", "signed"]
    j2.close()


def test_set_state_for_later_stages_validates_state(j: Journal) -> None:
    doc = finish(j, claim(j, "F1.txt", "aa"))
    d = j.set_state(doc.id, "sent", track_id="123")
    assert (d.state, d.track_id) == ("sent", "123")
    with pytest.raises(ValueError):
        j.set_state(doc.id, "teleported")


def test_counts_and_last_errors(j: Journal) -> None:
    finish(j, claim(j, "A.txt", "1"))
    b = claim(j, "B.txt", "2")
    j.decide(b.id, "rejected_input", final_path="/r/B.txt", errors=[DteSyncError("INPUT_EMPTY")])
    assert j.counts() == {"signed": 1, "rejected_input": 1}
    assert [d.name for d in j.last_errors()] == ["B.txt"]


# The documents table as dtesync 0.1 created it (schema version 0).
JOURNAL_V0 = """
CREATE TABLE documents (
    id INTEGER PRIMARY KEY, folder TEXT NOT NULL, name TEXT NOT NULL, out_stem TEXT NOT NULL, ext TEXT NOT NULL,
    station TEXT, step TEXT NOT NULL, state TEXT NOT NULL, sha256 TEXT, size INTEGER, mode INTEGER, tipo_dte INTEGER,
    folio INTEGER, rut_emisor TEXT, monto_total INTEGER, track_id TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    errors TEXT, dup_of INTEGER, superseded INTEGER NOT NULL DEFAULT 0, final_path TEXT, created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE history (doc_id INTEGER NOT NULL, at REAL NOT NULL, state TEXT NOT NULL, note TEXT);
INSERT INTO documents(folder, name, out_stem, ext, step, state, created_at, updated_at)
    VALUES ('', 'A.txt', 'A', '.txt', 'filed', 'signed', 1, 1);
"""


def test_journal_of_the_previous_version_gains_the_new_columns(tmp_path: Path) -> None:
    """A journal written before the receptor and amounts were recorded opens, keeps its rows,
    and has the new columns at the latest schema version."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(JOURNAL_V0)
    db.close()
    with Journal(path) as j:
        assert j.conn().execute("PRAGMA user_version").fetchone()[0] == len(journal_mod.MIGRATIONS)
        [doc] = j.all_docs()
        assert (doc.name, doc.state, doc.fch_emis, doc.mnt_neto) == ("A.txt", "signed", None, None)


def test_histories_of_a_batch_are_each_documents_history(j: Journal) -> None:
    a, b = claim(j, "A.txt", "aa"), claim(j, "B.txt", "bb")
    finish(j, a)
    got = j.histories([a.id, b.id, 999])
    assert got == {a.id: j.history(a.id), b.id: j.history(b.id), 999: []}
    assert [h["state"] for h in got[a.id]] == ["received", "signed"]
