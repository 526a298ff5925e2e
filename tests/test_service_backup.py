"""`dtesync backup`: a consistent copy of the journal and folio database, taken while open."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime

from sync.cli import main
from sync.cli.admin import backup_databases
from sync.folios.store import FolioStore
from sync.journal import Journal
from sync.printing.queue import PrintQueue
from sync.sandbox.build import DEMO_RUT
from sync.sandbox.caf_factory import default_fake_sii
from sync.uplink.queue import UplinkQueue


def test_backup_copies_every_store_while_they_are_open_and_written(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    journal = Journal(state / "journal.sqlite3")  # the daemon keeps these open (WAL)
    store = FolioStore(state / "folios.sqlite")
    prints = PrintQueue(state / "print_queue.sqlite3")
    prints.enqueue("doc:1", "caja1", b"ticket", label="F1")
    uplink = UplinkQueue(state / "uplink.sqlite3")
    sii = default_fake_sii()
    store.import_caf(sii.make_caf(DEMO_RUT, "X", 33, 1, 50, date.today()), DEMO_RUT, date.today(), trusted_keys=sii.trusted_keys)
    folio, _ = store.allocate(33, date.today(), "doc-1")
    copies = backup_databases(state, tmp_path / "bak", now=datetime(2026, 3, 1, 12, 0, 0))
    assert [c.name for c in copies] == ["journal.sqlite3", "folios.sqlite", "print_queue.sqlite3", "uplink.sqlite3"]
    assert copies[0].parent.name == "dtesync-20260301-120000"
    assert all(c.stat().st_mode & 0o077 == 0 for c in copies)  # the CAF keys are in folios.sqlite
    assert sqlite3.connect(copies[2]).execute("SELECT label FROM print_jobs").fetchall() == [("F1",)]
    restored = FolioStore(copies[1])
    assert restored.folio_of(33, "doc-1") == folio  # the allocation made before the backup is in it
    assert sqlite3.connect(copies[0]).execute("SELECT count(*) FROM documents").fetchone() == (0,)
    for s in (journal, store, prints, uplink):
        s.close()


def test_backup_command_exits_1_when_there_is_nothing_to_back_up(sandbox, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(sandbox.config_path.read_text(encoding="utf-8").replace('state = "state"', f'state = "{tmp_path / "empty"}"'),
                   encoding="utf-8")
    (tmp_path / "empty").mkdir()
    text = cfg.read_text(encoding="utf-8")
    for rel in ("cert/", "caf/"):
        text = text.replace(f'"{rel}', f'"{sandbox.root / rel}')
    cfg.write_text(text, encoding="utf-8")
    assert main(["backup", "--config", str(cfg), str(tmp_path / "bak")]) == 1
    assert "no hay bases de datos" in capsys.readouterr().err
