"""Inbox rules (pure), network-share detection, and the watcher on real folders."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sync.fileio import Folder
from sync.watch.fs import fs_type_from_mounts
from sync.watch.inbox import InboxWatcher, resolve_watch_mode
from sync.watch.rules import Hint, Kind, Observation, Readiness, Verdict, classify_name, marker_names, station_of

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
//srv/erp /mnt/erp cifs rw,vers=3.0 0 0
srv:/export /mnt/nfs nfs4 rw 0 0
/dev/vdb /mnt/erp/local ext4 rw 0 0
/dev/vdc /mnt/with\\040space ext4 rw 0 0
"""


@pytest.mark.parametrize(
    "name,kind",
    [
        ("F1.txt", Kind.INPUT), ("F1.JSON", Kind.INPUT), ("a b ñandú.xml", Kind.INPUT),
        (".hidden.txt", Kind.IGNORE), ("~lock.txt", Kind.IGNORE), ("F1.txt.tmp", Kind.IGNORE),
        ("F1.part", Kind.IGNORE), ("Thumbs.db", Kind.IGNORE),
        ("F1.done", Kind.MARKER), ("F1.txt.done", Kind.MARKER), ("F1.pdf", Kind.FOREIGN), ("README", Kind.FOREIGN),
    ],
)
def test_classify_name_follows_inbox_contract(name: str, kind: Kind) -> None:
    assert classify_name(name) is kind


def test_marker_names_accept_both_spellings() -> None:
    assert marker_names("F1.txt") == ("F1.done", "F1.txt.done")


def test_station_of_accepts_configured_first_level_folders_only() -> None:
    assert station_of("", frozenset({"caja1"})) == (True, None)
    assert station_of("caja1", frozenset({"caja1"})) == (True, "caja1")
    assert station_of("otra", frozenset({"caja1"})) == (False, None)
    assert station_of("caja1/sub", frozenset({"caja1"})) == (False, None)
    assert station_of("cualquiera", None) == (True, "cualquiera")


def test_readiness_closed_or_moved_file_is_ready_at_once() -> None:
    r = Readiness(stable_window=10)
    assert r.observe("a", Observation(5, 1), Hint.CLOSED, now=0) is Verdict.READY
    assert r.observe("b", Observation(5, 1), Hint.MOVED, now=0) is Verdict.READY


def test_readiness_waits_for_size_and_mtime_to_stay_stable() -> None:
    r = Readiness(stable_window=0.2)
    assert r.observe("a", Observation(5, 1), Hint.CREATED, now=0) is Verdict.WAIT
    assert r.observe("a", Observation(9, 2), Hint.SCAN, now=0.25) is Verdict.WAIT  # grew: window restarts
    assert r.due(0.3) == []
    assert r.due(0.45) == ["a"]
    assert r.observe("a", Observation(9, 2), Hint.SCAN, now=0.45) is Verdict.READY


def test_readiness_empty_file_waits_then_is_rejected_after_timeout() -> None:
    r = Readiness(stable_window=0.2, empty_timeout=30)
    assert r.observe("e", Observation(0, 1), Hint.CLOSED, now=0) is Verdict.WAIT
    assert r.next_deadline() == 30
    assert r.observe("e", Observation(0, 1), Hint.SCAN, now=30) is Verdict.EMPTY


def test_readiness_marker_required_mode_waits_for_marker() -> None:
    r = Readiness(stable_window=0.2, require_marker=True)
    assert r.observe("a", Observation(5, 1), Hint.CLOSED, now=0) is Verdict.WAIT
    assert r.observe("a", Observation(5, 1, has_marker=True), Hint.SCAN, now=5) is Verdict.READY


def test_readiness_settled_file_is_ready_at_first_sight() -> None:
    r = Readiness(stable_window=10)
    assert r.observe("a", Observation(5, 1, settled=True), Hint.SCAN, now=0) is Verdict.READY
    assert r.observe("e", Observation(0, 1, settled=True), Hint.SCAN, now=0) is Verdict.WAIT  # empty: the timeout still counts


def test_readiness_symlink_is_ready_to_be_rejected() -> None:
    assert Readiness().observe("l", Observation(10, 1, is_symlink=True), Hint.SCAN, 0) is Verdict.READY


def test_fs_type_from_mounts_uses_longest_mount_point() -> None:
    assert fs_type_from_mounts("/mnt/erp/inbox", MOUNTS) == "cifs"
    assert fs_type_from_mounts("/mnt/erp/local/x", MOUNTS) == "ext4"
    assert fs_type_from_mounts("/mnt/nfs", MOUNTS) == "nfs4"
    assert fs_type_from_mounts("/mnt/with space/x", MOUNTS) == "ext4"
    assert fs_type_from_mounts("/home/x", MOUNTS) == "ext4"


def test_auto_mode_polls_on_network_share(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sync.watch.inbox as inbox_mod

    monkeypatch.setattr(inbox_mod, "network_fs", lambda p: "cifs")
    assert resolve_watch_mode("auto", tmp_path) == "poll"
    monkeypatch.setattr(inbox_mod, "network_fs", lambda p: None)
    assert resolve_watch_mode("auto", tmp_path) == "events"
    assert resolve_watch_mode("poll", tmp_path) == "poll"


def test_durable_move_is_idempotent_after_a_crash(tmp_path: Path) -> None:
    src, dst = tmp_path / "a.txt", tmp_path / "sub" / "a.txt"
    src.write_text("x")
    with Folder.open(tmp_path) as root, root.sub("sub", create=True) as sub:
        root.move("a.txt", sub, "a.txt")
        root.move("a.txt", sub, "a.txt")  # replay after a crash: nothing to do
    assert dst.read_text() == "x" and not src.exists()


def _collect(w: InboxWatcher, want: int, timeout: float = 10.0) -> list:
    got: dict = {}
    end = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < end:
        for r in w.next_batch(0.2):
            got[r.rel] = r
    return list(got.values())


@pytest.fixture(params=["events", "poll"])
def watcher(request: pytest.FixtureRequest, tmp_path: Path):
    w = InboxWatcher(
        tmp_path / "inbox", mode=request.param, stations=frozenset({"caja1"}),
        stable_window=0.2, empty_timeout=1.0, scan_interval=0.5, poll_interval=0.1,
    )
    w.start()
    w.next_batch(0.05)  # start-up scan
    yield w
    w.stop()


def test_watcher_reports_complete_files_and_ignores_temp_names(watcher: InboxWatcher) -> None:
    inbox = watcher.inbox
    (inbox / "F1.txt").write_text("uno")
    (inbox / "F2.tmp").write_text("dos")
    (inbox / ".F3.txt").write_text("tres")
    got = _collect(watcher, 1)
    assert [r.rel for r in got] == ["F1.txt"]
    os.rename(inbox / "F2.tmp", inbox / "F2.txt")
    assert [r.rel for r in _collect(watcher, 1)] == ["F2.txt"]


def test_watcher_sees_station_files_and_ignores_other_folders(watcher: InboxWatcher, caplog) -> None:
    inbox = watcher.inbox
    (inbox / "caja1").mkdir()
    (inbox / "otra").mkdir()
    (inbox / "caja1" / "sub").mkdir()
    (inbox / "otra" / "X.txt").write_text("x")
    (inbox / "caja1" / "sub" / "Y.txt").write_text("y")
    (inbox / "caja1" / "F 1 ñandú.txt").write_text("z")
    got = _collect(watcher, 1)
    time.sleep(0.6)
    got += watcher.next_batch(0.6)
    assert [(r.rel, r.station) for r in got] == [("caja1/F 1 ñandú.txt", "caja1")]
    assert "not a configured station" in caplog.text


def test_watcher_never_reports_a_file_while_it_is_being_written(watcher: InboxWatcher) -> None:
    p = watcher.inbox / "slow.txt"
    with open(p, "wb") as f:
        for i in range(8):
            f.write(b"chunk %d\n" % i)
            f.flush()
            assert watcher.next_batch(0.05) == []
    got = _collect(watcher, 1)
    assert got and got[0].size == p.stat().st_size


def test_watcher_reports_empty_file_after_timeout(watcher: InboxWatcher) -> None:
    (watcher.inbox / "vacio.txt").write_bytes(b"")
    got = _collect(watcher, 1, timeout=5)
    assert [(r.rel, r.verdict) for r in got] == [("vacio.txt", Verdict.EMPTY)]


def test_watcher_done_marker_makes_file_ready(tmp_path: Path) -> None:
    w = InboxWatcher(tmp_path / "in", mode="poll", stable_window=0.2, require_marker=True, scan_interval=0.3, poll_interval=0.1)
    w.start()
    try:
        (w.inbox / "F1.txt").write_text("x")
        assert _collect(w, 1, timeout=1.0) == []
        (w.inbox / "F1.done").write_text("")
        got = _collect(w, 1)
        assert [r.rel for r in got] == ["F1.txt"] and got[0].markers == (w.inbox / "F1.done",)
    finally:
        w.stop()


def _watcher_at_rest(inbox: Path, files: dict[str, float]) -> InboxWatcher:
    """A watcher (not started: only its scans run) over `files`, each written `age` s ago."""
    inbox.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for name, age in files.items():
        (inbox / name).write_text(name)
        os.utime(inbox / name, (now - age, now - age))
    return InboxWatcher(inbox, mode="events", stable_window=0.2, scan_interval=3600)


def test_start_up_scan_claims_files_untouched_for_longer_than_the_window_at_first_sight(tmp_path: Path) -> None:
    w = _watcher_at_rest(tmp_path / "in", {"old.txt": 60, "fresh.txt": 0})
    assert [r.rel for r in w.next_batch(0)] == ["old.txt"]  # fresh.txt: two stats 0.2 s apart first
    assert [r.rel for r in _collect(w, 1)] == ["fresh.txt"]


def test_mtime_is_no_evidence_on_a_network_share(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sync.watch.inbox as inbox_mod

    monkeypatch.setattr(inbox_mod, "network_fs", lambda p: "cifs")  # another machine's clock
    w = _watcher_at_rest(tmp_path / "in", {"old.txt": 60})
    assert w.next_batch(0) == []
    assert [r.rel for r in _collect(w, 1)] == ["old.txt"]


def test_reconciliation_scan_leaves_parked_files_to_unpark(tmp_path: Path) -> None:
    w = _watcher_at_rest(tmp_path / "in", {"a.txt": 60, "b.txt": 60})
    w.park(w.next_batch(0))
    found: dict = {}
    w.scan(found)
    assert found == {} and w.parked == 2
    w.unpark(1)
    assert [r.rel for r in w.next_batch(0)] == ["a.txt"] and w.parked == 1


def test_scan_finds_done_markers_in_its_listing(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    w = _watcher_at_rest(inbox, {"F1.txt": 0, "F2.txt": 0})
    (inbox / "F1.done").write_text("")
    (inbox / "F2.txt.done").mkdir()  # a folder is no marker
    got = w.next_batch(0)
    assert [(r.rel, r.markers) for r in got] == [("F1.txt", (inbox / "F1.done",))]


def test_supervisor_restarts_a_dead_observer(watcher: InboxWatcher) -> None:
    sup = watcher._supervisor
    assert sup.source is not None
    sup.source.stop()  # behind the supervisor's back: what watchdog's polling emitter does when a share goes away
    end = time.monotonic() + 5
    while watcher.observer_restarts == 0 and time.monotonic() < end:
        watcher.next_batch(0.2)
    assert watcher.observer_restarts >= 1 and sup.healthy()
    (watcher.inbox / "after.txt").write_text("x")
    assert [r.rel for r in _collect(watcher, 1)] == ["after.txt"]
