"""WriteGroup: several documents' files made durable together, each still written atomically
(durable before visible, visible in the order staged), a failure failing its own document only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sync import fileio
from sync.fileio import Folder, WriteGroup


@pytest.fixture
def folder(tmp_path: Path):
    with Folder.open(tmp_path / "outbox") as f:
        yield f


def names(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def test_nothing_of_a_group_is_visible_until_it_is_committed(folder: Folder) -> None:
    group = WriteGroup()
    group.write(1, folder, "F1.xml", b"<DTE/>")
    group.write(1, folder, "F1.status.json", b"{}")
    assert not [n for n in names(folder.path) if not n.startswith(".")]
    dirs: set[str] = set()
    assert group.commit(dirs) == {}
    assert names(folder.path) == ["F1.status.json", "F1.xml"]
    assert (folder.path / "F1.xml").read_bytes() == b"<DTE/>"
    assert dirs == {str(folder.path)}


def test_every_file_is_fsynced_before_any_is_renamed_and_renames_keep_the_staged_order(
        folder: Folder, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def rename(src: str, dst: str, **kw: int) -> None:
        events.append(f"rename {dst}")
        real_rename(src, dst, **kw)

    group = WriteGroup()
    for doc in (1, 2):
        group.write(doc, folder, f"F{doc}.xml", b"<DTE/>")
        group.write(doc, folder, f"F{doc}.status.json", b"{}")
    monkeypatch.setattr(fileio.os, "fsync", fsync)
    monkeypatch.setattr(fileio.os, "rename", rename)
    group.commit(set())
    assert events == ["fsync"] * 4 + ["rename F1.xml", "rename F1.status.json", "rename F2.xml",
                                      "rename F2.status.json"]


def test_a_file_that_cannot_be_renamed_fails_its_document_and_not_the_others(folder: Folder) -> None:
    (folder.path / "F1.status.json").mkdir()  # a folder where the status should go: the rename fails
    group = WriteGroup()
    for doc in (1, 2):
        group.write(doc, folder, f"F{doc}.status.json", b"{}")
        group.write(doc, folder, f"F{doc}.status.txt", b"state=signed\n")
    failed = group.commit(set())
    assert set(failed) == {1} and isinstance(failed[1], OSError)
    assert names(folder.path) == ["F1.status.json", "F2.status.json", "F2.status.txt"]  # no temp left behind
    assert (folder.path / "F2.status.txt").read_bytes() == b"state=signed\n"


def test_a_dropped_document_leaves_nothing_behind(folder: Folder) -> None:
    group = WriteGroup()
    group.write(1, folder, "F1.xml", b"<DTE/>")
    group.write(2, folder, "F2.xml", b"<DTE/>")
    group.drop(1)
    assert group.commit(set()) == {}
    assert names(folder.path) == ["F2.xml"]


def test_a_group_write_keeps_the_files_mode(folder: Folder) -> None:
    group = WriteGroup()
    group.write(1, folder, "F1.xml", b"<DTE/>", mode=0o640)
    group.commit(set())
    assert (folder.path / "F1.xml").stat().st_mode & 0o777 == 0o640


def test_a_sub_folder_is_made_once_and_then_only_opened(folder: Folder, monkeypatch) -> None:
    """Every document reaches its folders through `sub`: a folder that exists is opened without
    a mkdir first (a failed mkdir per folder per file was two system calls per document)."""
    made: list[str] = []
    real_mkdir = os.mkdir
    monkeypatch.setattr(fileio.os, "mkdir", lambda p, *a, **k: (made.append(str(p)), real_mkdir(p, *a, **k))[1])
    for _ in range(3):
        with folder.sub("2026-12-04/caja1", create=True) as sub:
            assert sub.path == folder.path / "2026-12-04" / "caja1"
    assert made == ["2026-12-04", "caja1"]
    (folder.path / "2026-12-04" / "link").symlink_to(folder.path / "2026-12-04" / "caja1")
    with pytest.raises(fileio.UnsafeFile):
        folder.sub("2026-12-04/link", create=True)
