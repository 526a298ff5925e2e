"""Freed memory back to the system after a run of documents (sync.memory)."""

from __future__ import annotations

import platform

from sync.memory import Trimmer


class Calls:
    def __init__(self) -> None:
        self.pads: list[int] = []

    def __call__(self, pad: int) -> int:
        self.pads.append(pad)
        return 1


def test_a_drained_run_long_enough_is_trimmed_once() -> None:
    calls = Calls()
    t = Trimmer(after=100, trim=calls)
    t.worked(60)
    t.worked(40)
    assert t.drained() and calls.pads == [0]
    assert not t.drained() and calls.pads == [0]  # nothing new since: no second trim


def test_a_short_run_is_not_worth_a_trim() -> None:
    calls = Calls()
    t = Trimmer(after=100, trim=calls)
    t.worked(99)
    assert not t.drained() and calls.pads == []
    t.worked(1)  # the count carries over to the next drain
    assert t.drained() and calls.pads == [0]


def test_glibc_trim_is_found_and_runs_where_glibc_is_the_c_library() -> None:
    t = Trimmer(after=1)
    assert t.available == (platform.libc_ver()[0] == "glibc")
    t.worked(1)
    assert t.drained() == t.available
