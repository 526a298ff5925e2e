"""`dtesync demo` on a fresh folder: the real engine behind the real daemon, end to end,
checked by xmlsec1 and the official XSDs rather than by our own code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lxml import etree

from conftest import xmlsec1_verifies
from sync import schema


def test_demo_processes_every_sample_and_exits_0(tmp_path):
    target = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "sync", "demo", str(target)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
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


def test_demo_twice_in_the_same_folder_reuses_the_sandbox(tmp_path):
    target = tmp_path / "demo"
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "sync", "demo", str(target)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
