"""The daemon with an engine that answers later (the engine process): a worker hands a batch
over and takes other work, whichever worker is free files the answer, and nothing is lost or
filed twice when the engine cannot take a batch, dies holding one, or the daemon stops."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from daemon_runner import SubmittingFakeEngine, make_daemon
from sync.daemon import Dispatcher, _Issued
from test_daemon import final_status, wait_for


@pytest.fixture(params=["events"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def drop_backlog(tmp_path: Path, n: int, prefix: str = "H") -> dict[str, bytes]:
    files = {f"{prefix}{i:02d}.txt": b"factura %d" % i for i in range(n)}
    (tmp_path / "inbox").mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (tmp_path / "inbox" / name).write_bytes(body)
    return files


def stems(files: dict[str, bytes]) -> list[str]:
    return [name.rsplit(".", 1)[0] for name in files]


def test_a_worker_hands_a_batch_over_and_takes_the_next_before_the_engine_answers(tmp_path: Path, mode: str) -> None:
    files = drop_backlog(tmp_path, 40)
    engine = SubmittingFakeEngine(tmp_path / "fake-folios.sqlite3")
    engine.hold.clear()  # the engine answers nothing until told
    d, _ = make_daemon(tmp_path, mode, engine=engine, workers=1, batch_size=8)
    d.start()
    try:
        wait_for(lambda: len(engine.submitted) >= 2, what="a second batch handed to the engine")
        assert engine.answered == 0  # one worker, and several batches out at once
        engine.hold.set()
        states = {s: final_status(tmp_path, s)["state"] for s in stems(files)}
    finally:
        d.stop()
    assert set(states.values()) == {"signed"}
    assert sorted(f for _, _, f, _ in engine.allocated()) == list(range(1, 41))
    assert Counter(s for b in engine.submitted for s in b) == Counter(list(files))  # each document issued once


@pytest.mark.parametrize(("failure", "submissions"), [("refuse_first", 1), ("die_holding_first", 2)],
                         ids=["the engine cannot take it", "the engine dies holding it"])
def test_a_batch_the_engine_fails_is_retried_and_each_document_signed_once(
        tmp_path: Path, mode: str, failure: str, submissions: int) -> None:
    files = drop_backlog(tmp_path, 10)
    engine = SubmittingFakeEngine(tmp_path / "fake-folios.sqlite3", **{failure: True})
    d, _ = make_daemon(tmp_path, mode, engine=engine, batch_size=10, retry_base=0.05)
    d.start()
    try:
        states = {s: final_status(tmp_path, s)["state"] for s in stems(files)}
    finally:
        d.stop()
    assert set(states.values()) == {"signed"}
    assert sorted(f for _, _, f, _ in engine.allocated()) == list(range(1, 11))
    assert d.stats.retries >= 1
    assert len(engine.submitted) >= submissions  # a batch the engine died with went again


def test_a_graceful_stop_waits_for_the_batches_the_engine_still_holds_and_files_them(tmp_path: Path, mode: str) -> None:
    files = drop_backlog(tmp_path, 12)
    engine = SubmittingFakeEngine(tmp_path / "fake-folios.sqlite3")
    engine.hold.clear()
    d, _ = make_daemon(tmp_path, mode, engine=engine, batch_size=4)
    d.start()
    wait_for(lambda: sum(map(len, engine.submitted)) == 12, what="every document handed to the engine")
    stopping = threading.Thread(target=d.stop)
    stopping.start()
    stopping.join(0.3)
    assert stopping.is_alive()  # the answers are still owed
    engine.hold.set()
    stopping.join(30)
    assert not stopping.is_alive()
    assert all(final_status(tmp_path, s, timeout=1)["state"] == "signed" for s in stems(files))
    assert sorted(f for _, _, f, _ in engine.allocated()) == list(range(1, 13))


def test_ready_documents_go_before_answers_while_the_engine_is_short_of_work() -> None:
    dispatcher = Dispatcher()
    dispatcher.engine_low = 8
    dispatcher.handed_to_engine(4)
    answer = _Issued({"a": 1})
    dispatcher.answered(answer)
    dispatcher.put("b", 2)
    assert dispatcher.get_work(16) == [("b", 2)]  # the engine holds 4, fewer than 8: feed it first
    assert dispatcher.get_work(16) is answer


def test_answers_go_before_ready_documents_while_the_engine_has_enough_to_do() -> None:
    dispatcher = Dispatcher()
    dispatcher.engine_low = 8
    dispatcher.handed_to_engine(4)
    dispatcher.handed_to_engine(16)
    answer = _Issued({"a": 1}, to_issue=[("a", None, b"")] * 4)  # type: ignore[list-item]
    dispatcher.answered(answer)
    dispatcher.put("b", 2)
    assert dispatcher.get_work(16) is answer  # 16 documents still in the engine: file first
    assert dispatcher.get_work(16) == [("b", 2)]


def test_no_new_batch_goes_out_while_the_engine_holds_enough() -> None:
    dispatcher = Dispatcher()
    dispatcher.engine_low, dispatcher.engine_high = 8, 16
    dispatcher.handed_to_engine(16)
    dispatcher.put("b", 2)
    taken: list[object] = []
    worker = threading.Thread(target=lambda: taken.append(dispatcher.get_work(16)), daemon=True)
    worker.start()
    worker.join(0.2)
    assert worker.is_alive() and not taken  # the document waits as an id, its input unread
    answer = _Issued({"a": 1}, to_issue=[("a", None, b"")] * 16)  # type: ignore[list-item]
    dispatcher.answered(answer)
    worker.join(5)
    assert taken == [[("b", 2)]]  # the engine is empty again: feed it, then file the answer
    assert dispatcher.get_work(16) is answer


def test_a_retry_that_is_due_is_handed_out_while_new_documents_keep_arriving() -> None:
    dispatcher = Dispatcher()
    dispatcher.engine_low = 8  # the engine is short of work: ready documents go first
    dispatcher.put("s", 1)
    assert dispatcher.get_work(1) == [("s", 1)]
    dispatcher.later("s", 1, 0.0)  # its retry is due at once
    dispatcher.done("s", retry_pending=True)
    handed = []
    for i in range(5):
        dispatcher.put(f"k{i}", 10 + i)  # a steady stream: something is always ready
        handed += dispatcher.get_work(1) or []
    assert ("s", 1) in handed


def test_an_answer_wakes_a_second_worker_when_ready_documents_may_now_go_to_the_engine() -> None:
    dispatcher = Dispatcher()
    dispatcher.engine_low, dispatcher.engine_high = 8, 16
    dispatcher.handed_to_engine(16)  # full: the ready document waits
    dispatcher.put("b", 2)
    taken: list[object] = []
    workers = [threading.Thread(target=lambda: taken.append(dispatcher.get_work(16)), daemon=True) for _ in range(2)]
    for w in workers:
        w.start()
    wait_for(lambda: len(dispatcher._cond._waiters) == 2, what="both workers waiting")  # type: ignore[attr-defined]
    answer = _Issued({"a": 1}, to_issue=[("a", None, b"")] * 4)  # type: ignore[list-item]
    dispatcher.answered(answer)  # 12 documents left with the engine: room for the ready one
    for w in workers:
        w.join(5)
    assert not any(w.is_alive() for w in workers)
    assert answer in taken and [("b", 2)] in taken
