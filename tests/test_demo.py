"""`dtesync demo` on a fresh folder: the real engine behind the real daemon, end to end,
checked by xmlsec1 and the official XSDs rather than by our own code."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from conftest import xmlsec1_verifies
from sync import schema


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """One `dtesync demo` run, under the usual umask (022: what the code does not restrict
    explicitly comes out readable by everyone)."""
    target = tmp_path_factory.mktemp("demo") / "demo"
    result = subprocess.run([sys.executable, "-m", "sync", "demo", str(target)], capture_output=True, text=True,
                            timeout=300, preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def test_demo_processes_every_sample_and_exits_0(demo):
    target = demo
    outbox = target / "outbox"
    statuses = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in outbox.glob("*.status.json")}
    signed = [s for s in statuses.values() if s["state"] == "accepted"]  # sent to the demo's fake-sii
    assert len(signed) == 14
    assert all(s["track_id"] and [h["state"] for h in s["history"]][-3:] == ["queued", "sent", "accepted"] for s in signed)
    assert statuses["99_rut_invalido.status.json"]["state"] == "rejected_input"
    assert (target / "rejected" / "99_rut_invalido.txt").exists()
    folios = {(s["tipo_dte"], s["folio"]) for s in signed}
    assert len(folios) == len(signed)  # no folio twice
    for status in signed:
        xml = outbox / (Path(status["source"]).stem + ".xml")
        assert xmlsec1_verifies(xml), xml
        assert schema.schema_errors(etree.parse(str(xml)).getroot()) == []


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_demo_keeps_keys_and_state_for_its_owner_and_results_for_the_group(demo):
    for folder in ("cert", "caf", "state"):  # the certificate, the CAFs' folio keys, the folio database
        assert mode(demo / folder) == 0o700, folder
    key_files = [*(demo / "cert").iterdir(), *(demo / "caf").iterdir(), *(demo / "state").glob("*.sqlite*")]
    assert len(key_files) >= 2 + 8 + 4
    assert {p.name: mode(p) for p in key_files} == {p.name: 0o600 for p in key_files}
    for folder in ("inbox", "outbox", "archive", "rejected"):  # the ERP's group: yes; everyone: no
        assert mode(demo / folder) == 0o750, folder
    results = [p for p in (demo / "outbox").rglob("*") if p.is_file()]
    assert len(results) >= 15 * 2 and {mode(p) for p in results} == {0o640}
    dirs = [p for p in demo.rglob("*") if p.is_dir()]
    assert not [p for p in dirs if mode(p) & 0o007], "a folder open to every user of the machine"


def test_demo_twice_in_the_same_folder_reuses_the_sandbox(tmp_path):
    target = tmp_path / "demo"
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "sync", "demo", str(target)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
