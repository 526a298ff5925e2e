"""The daemon's log file: structured lines, secrets redacted, rotated by size."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from sync.logs import StructuredFormatter, setup_logging


@pytest.fixture
def log_at(tmp_path: Path):
    """setup_logging() reconfigures the process-wide 'dtesync' logger: put it back afterwards,
    or later tests that read records through pytest's root handler see nothing."""
    root = logging.getLogger("dtesync")
    propagate, level = root.propagate, root.level
    made: list[logging.Logger] = []

    def make(max_bytes: int = 10 * 1024 * 1024, backups: int = 3) -> logging.Logger:
        made.append(setup_logging(tmp_path / "logs" / "dtesync.log", max_bytes=max_bytes, backups=backups))
        return logging.getLogger("dtesync.test")

    yield make
    for logger in made:
        for h in list(logger.handlers):
            logger.removeHandler(h)
            h.close()
    root.propagate = propagate
    root.setLevel(level)  # through setLevel: it also clears the loggers' cached levels


def test_each_record_is_one_json_line_with_its_facts_and_secrets_redacted(tmp_path: Path, log_at) -> None:
    log = log_at()
    log.info("daemon: signed", extra={"doc": 12, "folio": 345, "password": "hunter2"})
    (line,) = (tmp_path / "logs" / "dtesync.log").read_text("utf-8").splitlines()
    record = json.loads(line)
    assert (record["event"], record["doc"], record["folio"], record["password"]) == ("daemon: signed", 12, 345, "***")
    assert "hunter2" not in line


def test_the_file_rotates_before_it_passes_its_size_and_keeps_every_line(tmp_path: Path, log_at) -> None:
    log = log_at(max_bytes=4000, backups=20)
    for i in range(200):
        log.info("daemon: signed", extra={"doc": i, "source": "Ñuñoa-ñandú.txt"})  # multi-byte text counts in bytes
    files = sorted((tmp_path / "logs").glob("dtesync.log*"))
    assert len(files) > 5
    assert all(p.stat().st_size < 4000 for p in files)
    docs = sorted(json.loads(line)["doc"] for p in files for line in p.read_text("utf-8").splitlines())
    assert docs == list(range(200))


def test_a_record_is_formatted_once(tmp_path: Path, log_at, monkeypatch) -> None:
    """The stock rotating handler formats each record twice (once to measure it)."""
    calls = []
    original = StructuredFormatter.format

    def counting(self, record):  # noqa: ANN001, ANN202
        calls.append(record.getMessage())
        return original(self, record)

    monkeypatch.setattr(StructuredFormatter, "format", counting)
    log = log_at(max_bytes=100_000)
    log.info("daemon: started")
    assert calls == ["daemon: started"]
