"""The daemon with the REAL engine (sandbox company, certificate and CAFs), events and polling.

500 files of every type and format, varied from the shipped examples (quantities, names), some
bad, some written slowly in chunks, some renamed into place, some dropped twice: each gets
exactly one final status; every signed XML verifies with xmlsec1 and against the official XSD;
no folio is used twice and every hole in a type's folio sequence is a folio reported for
annulment (daemon_real.check_real_invariants).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from daemon_real import Input, check_real_invariants, drop, varied_inputs, wait_final
from sync.app import build_app
from sync.config import load_config
from sync.daemon import Daemon
from sync.sandbox.build import create_sandbox


@pytest.fixture(params=["events", "poll"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def start_daemon(root: Path, mode: str) -> Daemon:
    sandbox = create_sandbox(root, folios_per_type=1000)
    config = load_config(sandbox.config_path)
    daemon = build_app(
        config, stages=[], watch=mode, workers=2, scan_interval=1.0, poll_interval=0.1,
        empty_timeout=2.0, stations=frozenset({"caja1", "caja2"}),
    ).daemon
    daemon.start()
    return daemon


def settle(daemon: Daemon, root: Path, timeout: float = 60.0) -> None:
    """Wait until the inbox is empty and nothing claimed is left (second drops included)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        inbox_files = [p for p in (root / "inbox").rglob("*") if p.is_file() and not p.name.startswith(".")]
        if not inbox_files and daemon.idle():
            return
        time.sleep(0.1)
    raise AssertionError("daemon did not settle")


def test_500_mixed_real_documents_each_get_one_verified_final_status(tmp_path: Path, mode: str) -> None:
    daemon = start_daemon(tmp_path, mode)
    try:
        inputs = varied_inputs(500, seed=3 if mode == "events" else 4)
        how = drop(tmp_path / "inbox", inputs, seed=5)
        statuses = wait_final(tmp_path / "outbox", inputs, timeout=150)
        settle(daemon, tmp_path)
        statuses = wait_final(tmp_path / "outbox", inputs, timeout=5)  # re-read after second drops
        summary = check_real_invariants(tmp_path, inputs, statuses)
        journal = Counter(d.state for d in daemon.filing.journal.all_docs())
    finally:
        daemon.stop()
    assert set(how.values()) == {"slow", "renamed", "direct", "twice"}
    assert summary["signed"] == sum(i.want == "signed" for i in inputs) > 400
    assert journal["signed"] == summary["signed"]  # a second drop is a duplicate, never a new document
    assert journal["rejected_input"] >= summary["rejected"]
    assert {s["tipo_dte"] for s in statuses.values() if s["state"] == "signed"} == {33, 34, 39, 41, 46, 52, 56, 61}


def test_same_real_document_dropped_again_is_answered_with_its_first_folio(tmp_path: Path, mode: str) -> None:
    daemon = start_daemon(tmp_path, mode)
    try:
        item = varied_inputs(1, seed=11, bad_share=0.0, folders=("",))[0]
        (tmp_path / "inbox" / item.rel).write_bytes(item.body)
        first = wait_final(tmp_path / "outbox", [item], timeout=30)[item.rel]
        (tmp_path / "outbox" / f"{item.stem}.status.json").unlink()  # the ERP consumed it
        (tmp_path / "inbox" / item.rel).write_bytes(item.body)
        again = wait_final(tmp_path / "outbox", [item], timeout=30)[item.rel]
        settle(daemon, tmp_path)
        summary = check_real_invariants(tmp_path, [item], {item.rel: again})
    finally:
        daemon.stop()
    assert (again["folio"], again["document_id"]) == (first["folio"], first["document_id"])
    assert summary == {"signed": 1, "rejected": 0, "pending_annulment": 0}


def test_inputs_helper_varies_every_example_into_distinct_documents() -> None:
    inputs = varied_inputs(200, seed=1)
    assert len({i.body for i in inputs}) == 200
    assert {i.rel.rsplit(".", 1)[1] for i in inputs} == {"txt", "json", "xml"}
    assert isinstance(inputs[0], Input) and {i.want for i in inputs} == {"signed", "rejected_input"}


def test_a_station_folder_applies_its_branch_defaults(tmp_path: Path) -> None:
    from sync.sandbox.build import examples_dir

    daemon = start_daemon(tmp_path, "events")
    try:
        station = tmp_path / "inbox" / "caja1"
        station.mkdir(parents=True, exist_ok=True)
        tmp = station / "B1.txt.tmp"
        tmp.write_bytes((examples_dir() / "39_boleta.txt").read_bytes())
        tmp.rename(station / "B1.txt")
        deadline = time.monotonic() + 30
        xml = tmp_path / "outbox" / "caja1" / "B1.xml"
        while not xml.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b"<CdgSIISucur>81234567</CdgSIISucur>" in xml.read_bytes()
    finally:
        daemon.stop()
