"""Outbox files: atomic writes, the status.json/.txt contract, collision-free filing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sync.errors import DteSyncError
from sync.fileio import atomic_write
from sync.journal import ClaimIntent, Journal
from sync.outbox import Outbox, status_txt

CONTRACT_KEYS = {
    "source", "sha256", "state", "tipo_dte", "folio", "rut_emisor", "monto_total", "track_id", "errors",
    "updated_at", "history",
}


@pytest.fixture
def env(tmp_path: Path):
    j = Journal(tmp_path / "state" / "j.sqlite3")
    out = Outbox(tmp_path / "outbox", tmp_path / "archive", tmp_path / "rejected", lang="en", status_txt=True)
    yield j, out, tmp_path
    j.close()


def claimed(j: Journal, name: str, folder: str = "", sha: str = "ab"):
    stem, _, ext = name.rpartition(".")
    [i] = j.begin_claims([ClaimIntent(folder, name, stem, "." + ext, folder or None, 3, 0o100644)])
    return j.mark_claimed([(i, sha)])[0]


def test_atomic_write_leaves_no_temp_file_and_replaces(tmp_path: Path) -> None:
    p = tmp_path / "o" / "F1.status.json"
    atomic_write(p, b"one")
    atomic_write(p, b"two")
    assert p.read_bytes() == b"two" and os.listdir(p.parent) == ["F1.status.json"]


def test_status_json_holds_the_contract_fields(env) -> None:
    j, out, root = env
    doc = claimed(j, "F1.txt", folder="caja1")
    doc = j.decide(doc.id, "signed", final_path=str(root / "archive/x/F1.txt"), tipo_dte=33, folio=5,
                   rut_emisor="76192083-9", monto_total=1190)
    path = out.write_status(doc, j.history(doc.id), xml=b"<DTE/>")
    assert path == root / "outbox" / "caja1" / "F1.status.json"
    st = json.loads(path.read_text("utf-8"))
    assert CONTRACT_KEYS <= set(st)
    assert (st["source"], st["state"], st["folio"], st["tipo_dte"]) == ("caja1/F1.txt", "signed", 5, 33)
    assert [h["state"] for h in st["history"]] == ["received", "signed"]
    assert (root / "outbox" / "caja1" / "F1.xml").read_bytes() == b"<DTE/>"
    txt = (root / "outbox" / "caja1" / "F1.status.txt").read_text("utf-8")
    assert "state=signed\n" in txt and "folio=5\n" in txt


def test_errors_are_rendered_from_catalog_in_configured_language(env) -> None:
    j, out, root = env
    doc = claimed(j, "B.txt")
    doc = j.decide(doc.id, "rejected_input", final_path=str(root / "rejected/B.txt"),
                   errors=[DteSyncError("FIELD_REQUIRED", field="TipoDTE", line=3)])
    st = json.loads(out.write_status(doc, j.history(doc.id)).read_text("utf-8"))
    assert st["errors"] == [{"code": "FIELD_REQUIRED", "message": "The required field 'TipoDTE' is missing.",
                             "field": "TipoDTE", "line": 3}]


def test_status_txt_is_one_key_value_per_line() -> None:
    st = {k: None for k in CONTRACT_KEYS}
    st.update(state="rejected_input", errors=[{"code": "X", "message": "a\nb", "field": "f", "line": 2}])
    lines = status_txt(st).decode().splitlines()
    assert "errors=1" in lines and "error1.message=a b" in lines and "error1.code=X" in lines


def test_final_paths_never_collide(env) -> None:
    j, out, root = env
    a, b = claimed(j, "F1.txt", sha="1"), claimed(j, "F1.txt", sha="1")
    pa = out.choose_final_path(a, rejected=False, now=0)
    pb = out.choose_final_path(b, rejected=False, now=0)
    assert pa != pb and pa.name == "F1.txt" and pb.name == "F1~2.txt"
    assert pa.parent.name == "1970-01-01"
    pa.parent.mkdir(parents=True, exist_ok=True)
    pa.write_text("x")
    out.release(str(pa))
    out.release(str(pb))
    assert out.choose_final_path(a, rejected=True, now=0) == root / "rejected" / "F1.txt"
    assert out.choose_final_path(a, rejected=False, now=0).name == "F1~2.txt"  # F1 taken on disk


def test_a_batch_of_inputs_is_filed_each_on_its_own_and_again_without_harm(env) -> None:
    from sync.fileio import Folder

    _, out, root = env
    work = Folder.open(root / "work")
    for name in ("1.txt", "2.json"):
        (root / "work" / name).write_text(name)
    day, rejected = root / "archive" / "2026-12-04", root / "rejected"
    moves = [(1, "1.txt", str(day / "A.txt")), (2, "2.json", str(rejected / "B.json")), (3, "3.xml", str(day / "C.xml"))]
    dirs: set[str] = set()
    failed = out.file_inputs(work, moves, dirs)
    assert list(failed) == [3] and isinstance(failed[3], FileNotFoundError)  # its input is gone: only it fails
    assert (day / "A.txt").read_text() == "1.txt" and (rejected / "B.json").read_text() == "2.json"
    assert dirs == {str(day), str(rejected)}
    assert out.file_inputs(work, moves[:2], dirs) == {}  # after a crash: already moved, nothing to do
    work.close()


def test_superseded_results_move_beside_archived_input(env) -> None:
    j, out, root = env
    doc = claimed(j, "F1.txt")
    final = out.choose_final_path(doc, rejected=False, now=0)
    doc = j.decide(doc.id, "signed", final_path=str(final), folio=1)
    out.write_status(doc, j.history(doc.id), xml=b"<DTE/>")
    final.parent.mkdir(parents=True, exist_ok=True)
    final.write_text("input")
    out.archive_results(doc)
    assert not (root / "outbox" / "F1.status.json").exists()
    assert (final.parent / "F1.status.json").exists() and (final.parent / "F1.xml").exists()
