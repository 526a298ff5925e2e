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
