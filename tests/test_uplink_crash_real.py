"""The daemon SIGKILLed with uploads in flight to the provider uplink, and restarted: nothing
lost, nothing sent twice (the Idempotency-Key), track ids kept.

The real daemon runs as a subprocess (tests/uplink_daemon_runner.py: real engine, uplink built
from `[uplink] kind = "http"`), pointed at a fake-sii started here whose provider API answers
slowly after creating each document, so kills land between "created at the provider" and "we
know it". fake-sii outlives the daemon and counts what it created per key and per folio.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from daemon_real import drop, read_status, varied_inputs
from sync.config import load_config
from sync.fakesii import FakeSii
from sync.runtime import trusted_caf_keys
from sync.sandbox.build import create_sandbox

RUNNER = Path(__file__).with_name("uplink_daemon_runner.py")
KILLS = 12
N_DOCS = 36
TOKEN_ENV = "DTESYNC_TEST_PROVIDER_TOKEN"
TOKEN = "crash-test-token"

UPLINK = """
[uplink]
kind = "http"
batch_wait = 0
backoff_base = 0.05
backoff_cap = 0.5
poll_first = 0.05
poll_base = 0.05
poll_cap = 0.3
uncertain_wait = 0
drain_interval = 0.1
poll_interval = 0.1
connect_timeout = 2
read_timeout = 10

[uplink.http]
url = "{url}/provider/v1"
token = {{ env = "{env}" }}
"""


def start_runner(config: Path) -> subprocess.Popen:
    env = {**os.environ, TOKEN_ENV: TOKEN}
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.strip() == "READY", f"runner did not start (got {line!r}, rc={proc.poll()})"
    return proc


def queue_states(state_dir: Path) -> Counter:
    """Uplink queue rows by state (read while no daemon runs)."""
    db = state_dir / "uplink.sqlite3"
    if not db.exists():
        return Counter()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return Counter(dict(con.execute("SELECT state, COUNT(*) FROM uplink_queue GROUP BY state").fetchall()))
    except sqlite3.OperationalError:  # the table is created at the uplink's first start
        return Counter()
    finally:
        con.close()


def provider_ids(status: dict) -> set[str]:
    """The provider ids named by the `sent` entries of a status file's history."""
    return {h["note"].rsplit(" ", 1)[1] for h in status.get("history", []) if h["state"] == "sent" and h.get("note")}


def snapshot(outbox: Path, stems: list[str]) -> dict[str, dict]:
    return {s: st for s in stems if (st := read_status(outbox / f"{s}.status.json"))}


def test_daemon_sigkilled_with_uploads_in_flight_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    rnd = random.Random(4242)
    sandbox = create_sandbox(tmp_path, folios_per_type=200)
    config = load_config(sandbox.config_path)
    inputs = varied_inputs(N_DOCS, seed=11, prefix="U", bad_share=0.0, folders=("",))
    stems = [i.stem for i in inputs]
    seen_track: dict[str, str] = {}  # stem -> SII track id, first seen
    seen_provider: dict[str, set[str]] = {}
    in_flight_kills = 0

    def record(statuses: dict[str, dict]) -> None:
        for stem, st in statuses.items():
            if st.get("track_id"):
                assert seen_track.setdefault(stem, st["track_id"]) == st["track_id"], (stem, "track id changed")
            seen_provider.setdefault(stem, set()).update(provider_ids(st))

    with FakeSii(caf_keys=trusted_caf_keys(config), provider_token=TOKEN, provider_latency=0.25) as fake:
        with open(sandbox.config_path, "a", encoding="utf-8") as f:
            f.write(UPLINK.format(url=fake.url, env=TOKEN_ENV))
        drop(sandbox.inbox, inputs, seed=3, writers=2)
        for _ in range(KILLS):
            proc = start_runner(sandbox.config_path)
            time.sleep(rnd.uniform(0.4, 1.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            states = queue_states(tmp_path / "state")
            in_flight_kills += bool(states["sending"] or states["uncertain"])
            record(snapshot(config.folders.outbox, stems))
        proc = start_runner(sandbox.config_path)
        try:
            deadline = time.monotonic() + 90
            while True:
                final = snapshot(config.folders.outbox, stems)
                record(final)
                if len(final) == N_DOCS and all(st["state"] == "accepted" for st in final.values()):
                    break
                assert time.monotonic() < deadline, Counter(st["state"] for st in final.values())
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        by_key, by_doc = Counter(fake.provider_created_by_key), Counter(fake.provider_created_by_doc)
        submits, stats, accepted = Counter(fake.provider_submits), fake.stats(), fake.accepted_folios()
    assert in_flight_kills >= 3, "the kills should land while uploads are in flight"
    assert sum(submits.values()) > N_DOCS  # some documents were sent again after a kill ...
    assert set(by_key.values()) == {1} and len(by_key) == N_DOCS  # ... and none was created twice
    assert set(by_doc.values()) == {1} and len(by_doc) == N_DOCS
    assert stats["duplicates"] == 0 and set(accepted.values()) == {1} and len(accepted) == N_DOCS
    assert queue_states(tmp_path / "state") == Counter({"final": N_DOCS})
    rut = str(config.company.rut)
    assert {(rut, st["tipo_dte"], st["folio"]) for st in final.values()} == set(by_doc)  # each status names its folio
    assert {s: st["track_id"] for s, st in final.items()} == seen_track  # the track id never changed
    sii_tracks = {rec.track_id for rec in fake.envios.values()}
    assert set(seen_track.values()) <= sii_tracks and len(set(seen_track.values())) == N_DOCS
    odd = {s: ids for s, ids in seen_provider.items() if len(ids) != 1}
    assert not odd, f"a document never reported sent, or a resend got another provider id: {odd}"
