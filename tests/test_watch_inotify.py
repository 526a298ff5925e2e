"""InotifyHints: raw inotify events as inbox hints (Linux), without watchdog's observer stack.

Each test drives a real inotify instance on a temporary inbox and reads the hints it sends.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from sync.watch.observer import InotifyHints, ObserverSupervisor
from sync.watch.rules import Hint

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


class Hints:
    """A sink that remembers every hint, and waits for one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Hint, bool]] = []
        self._cond = threading.Condition()

    def __call__(self, path: str, hint: Hint, is_dir: bool) -> None:
        with self._cond:
            self.seen.append((path, hint, is_dir))
            self._cond.notify_all()

    def wait_for(self, path: Path, hint: Hint | None = None, timeout: float = 5.0) -> None:
        def found() -> bool:
            return any(p == str(path) and (hint is None or h is hint) for p, h, _ in self.seen)

        with self._cond:
            assert self._cond.wait_for(found, timeout), f"no hint for {path}: {self.seen}"

    def paths(self) -> set[str]:
        with self._cond:
            return {p for p, _, _ in self.seen}


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    p = tmp_path / "inbox"
    p.mkdir()
    return p


def _start(inbox: Path, ignore: frozenset[str] = frozenset()) -> tuple[InotifyHints, Hints]:
    hints = Hints()
    source = InotifyHints(str(inbox), hints, ignore)
    source.start()
    return source, hints


def test_a_file_renamed_into_the_inbox_is_hinted_as_moved_and_its_temp_name_is_not(inbox: Path) -> None:
    source, hints = _start(inbox)
    try:
        (inbox / ".F1.txt.tmp").write_text("x")
        os.rename(inbox / ".F1.txt.tmp", inbox / "F1.txt")
        hints.wait_for(inbox / "F1.txt", Hint.MOVED)
        assert str(inbox / ".F1.txt.tmp") not in hints.paths()
    finally:
        source.stop()


def test_a_file_written_in_place_is_hinted_created_then_closed(inbox: Path) -> None:
    source, hints = _start(inbox)
    try:
        (inbox / "F1.json").write_text("{}")
        hints.wait_for(inbox / "F1.json", Hint.CLOSED)
        assert [h for p, h, _ in hints.seen if p == str(inbox / "F1.json")][0] is Hint.CREATED
    finally:
        source.stop()


def test_a_station_folder_made_after_start_is_watched(inbox: Path) -> None:
    source, hints = _start(inbox)
    try:
        (inbox / "caja1").mkdir()
        hints.wait_for(inbox / "caja1", Hint.SCAN)
        (inbox / "caja1" / "F1.txt").write_text("x")
        hints.wait_for(inbox / "caja1" / "F1.txt", Hint.CLOSED)
    finally:
        source.stop()


def test_a_renamed_station_folder_is_followed_under_its_new_name(inbox: Path) -> None:
    (inbox / "caja1").mkdir()
    source, hints = _start(inbox)
    try:
        os.rename(inbox / "caja1", inbox / "caja2")
        hints.wait_for(inbox / "caja2", Hint.SCAN)
        (inbox / "caja2" / "F1.txt").write_text("x")
        hints.wait_for(inbox / "caja2" / "F1.txt", Hint.CLOSED)
        assert not any(p.startswith(str(inbox / "caja1")) for p in hints.paths())
    finally:
        source.stop()


def test_a_station_folder_moved_out_of_the_inbox_is_no_longer_watched(inbox: Path, tmp_path: Path) -> None:
    (inbox / "caja1").mkdir()
    source, hints = _start(inbox)
    try:
        os.rename(inbox / "caja1", tmp_path / "elsewhere")
        (inbox / "probe.txt").write_text("x")  # events are read in order: once this is seen, the move was too
        hints.wait_for(inbox / "probe.txt", Hint.CLOSED)
        (tmp_path / "elsewhere" / "F1.txt").write_text("x")
        (inbox / "probe2.txt").write_text("x")
        hints.wait_for(inbox / "probe2.txt", Hint.CLOSED)
        assert not any("F1.txt" in p for p in hints.paths())
    finally:
        source.stop()


def test_ignored_and_dot_folders_are_not_watched(inbox: Path) -> None:
    (inbox / "work").mkdir()
    (inbox / ".hidden").mkdir()
    source, hints = _start(inbox, ignore=frozenset({str(inbox / "work")}))
    try:
        (inbox / "work" / "1.txt").write_text("x")
        (inbox / ".hidden" / "F1.txt").write_text("x")
        (inbox / "probe.txt").write_text("x")
        hints.wait_for(inbox / "probe.txt", Hint.CLOSED)
        assert hints.paths() == {str(inbox / "probe.txt")}
    finally:
        source.stop()


def test_the_source_is_dead_once_the_inbox_folder_is_removed(inbox: Path) -> None:
    source, _ = _start(inbox)
    try:
        assert source.alive()
        shutil.rmtree(inbox)
        end = time.monotonic() + 5
        while source.alive() and time.monotonic() < end:
            time.sleep(0.02)
        assert not source.alive()
    finally:
        source.stop()


def test_the_supervisor_starts_over_when_the_inbox_comes_back(inbox: Path) -> None:
    hints = Hints()
    sup = ObserverSupervisor(inbox, "events", hints)
    assert sup.start()
    try:
        shutil.rmtree(inbox)
        end = time.monotonic() + 5
        while sup.healthy() and time.monotonic() < end:
            time.sleep(0.02)
        inbox.mkdir()
        assert sup.check() and sup.healthy()
        (inbox / "F1.txt").write_text("x")
        hints.wait_for(inbox / "F1.txt", Hint.CLOSED)
    finally:
        sup.stop()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_starting_and_stopping_again_and_again_leaks_no_descriptor(inbox: Path) -> None:
    for _ in range(3):  # warm-up: imports and logging may open their own
        source, _ = _start(inbox)
        source.stop()
    before = _open_fds()
    for _ in range(20):
        source, _ = _start(inbox)
        source.stop()
    assert _open_fds() == before


def test_a_source_that_cannot_start_says_so_and_leaks_no_descriptor(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "inbox"
    not_a_folder.write_text("x")
    for _ in range(3):
        with pytest.raises(OSError):
            InotifyHints(str(not_a_folder), Hints()).start()
    before = _open_fds()
    for _ in range(20):
        with pytest.raises(OSError):
            InotifyHints(str(not_a_folder), Hints()).start()
    assert _open_fds() == before


def test_an_inbox_configured_as_a_link_to_its_folder_is_watched(tmp_path: Path) -> None:
    real = tmp_path / "data" / "inbox"
    real.mkdir(parents=True)
    link = tmp_path / "inbox"
    link.symlink_to(real, target_is_directory=True)
    source, hints = _start(link)
    try:
        (real / "F1.txt").write_text("x")
        hints.wait_for(link / "F1.txt", Hint.CLOSED)
    finally:
        source.stop()


def test_a_source_that_failed_to_start_is_retried_later_not_at_every_check(
        inbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sync.watch import observer

    now = [100.0]
    sup = ObserverSupervisor(inbox, "events", Hints(), clock=lambda: now[0])
    real = observer.make_source

    def refused(*args, **kwargs):
        raise OSError(24, "inotify instance limit reached")

    monkeypatch.setattr(observer, "make_source", refused)
    assert not sup.start()
    assert not sup.check()  # at once: no
    now[0] += 1.1
    assert sup.check() and sup.restarts == 1  # after a second: tried (and refused again)
    now[0] += 1.1
    assert not sup.check()  # the second wait is two seconds
    monkeypatch.setattr(observer, "make_source", real)
    now[0] += 1.0
    try:
        assert sup.check() and sup.healthy()
    finally:
        sup.stop()


def test_a_stop_during_a_restart_leaves_no_source_running(inbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """check() (the inbox loop) and stop() (the daemon) come from different threads."""
    from sync.watch import observer

    sup = ObserverSupervisor(inbox, "events", Hints())
    started: list[InotifyHints] = []
    in_start, release = threading.Event(), threading.Event()
    real = observer.make_source

    def slow_source(*args, **kwargs):
        in_start.set()
        release.wait(5)  # a polling source's first snapshot of a share takes this long
        src = real(*args, **kwargs)
        started.append(src)
        return src

    monkeypatch.setattr(observer, "make_source", slow_source)
    restarting = threading.Thread(target=sup.check)  # no source yet: it restarts
    restarting.start()
    assert in_start.wait(5)
    stopping = threading.Thread(target=sup.stop)
    stopping.start()
    release.set()
    restarting.join(5)
    stopping.join(5)
    assert sup.source is None and started and not started[0].alive()


def test_a_folder_gone_between_listing_and_stat_does_not_stop_the_others_being_watched(
        inbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (inbox / "gone").mkdir()
    (inbox / "caja1").mkdir()
    real_scandir = os.scandir

    def listing_then_gone(path):  # the listing still names `gone`, which is removed before its stat
        entries = list(real_scandir(path))
        if os.path.isdir(inbox / "gone"):
            os.rmdir(inbox / "gone")
        return iter(entries)

    monkeypatch.setattr(os, "scandir", listing_then_gone)
    source, hints = _start(inbox)
    monkeypatch.setattr(os, "scandir", real_scandir)
    try:
        (inbox / "caja1" / "F1.txt").write_text("x")
        hints.wait_for(inbox / "caja1" / "F1.txt", Hint.CLOSED)
    finally:
        source.stop()
