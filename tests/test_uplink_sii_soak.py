"""1 000 documents (facturas and boletas) through the real daemon and the SII uplink to a
fake-sii that behaves like the SII at its worst, with the daemon SIGKILLed along the way.

fake-sii (in this process, so it outlives every daemon) has, scaled down 10× through
configuration only:
- processing delays of 0-12 s (0-120 s): envíos and documents invisible meanwhile, the SII
  answering "not received" to lookups;
- sessions that die after 5 s (the dead-session HTML page on DTEUpload, TOKEN 002 elsewhere);
- 30 % transient faults (connections reset mid-request, HTTP 500) on every service, plus lost
  answers (uploads filed, then the connection stalls past the client's timeout);
- an enrolment refusal (GetTokenFromSeed -07) for the first 12 s (2 minutes).
The uplink's processing window is 0.25 min (2.5 min at full scale), above the longest delay.

The real daemon (tests/uplink_daemon_runner.py: real engine, uplink from `[uplink] kind =
"sii"`) is killed with SIGKILL several times while it signs and uploads, and restarted.

What must hold: every document ends `accepted` and none was ever `rejected_sii`; fake-sii saw
each folio uploaded once, unless it had answered "not received" since the previous upload;
no "DTE Repetido"; the enrolment refusal reached the status files as an instruction to fix.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from daemon_real import read_status, vary
from sync.config import load_config
from sync.fakesii import Behaviour, FakeSii, Faults
from sync.runtime import trusted_caf_keys
from sync.sandbox.build import create_sandbox, examples_dir

pytestmark = pytest.mark.slow

RUNNER = Path(__file__).with_name("uplink_daemon_runner.py")
N_DOCS = 1000
KILLS = 6
UPLINK = """
[uplink]
kind = "sii"
url = "{url}"
batch_max = 50
batch_wait = 0.3
backoff_base = 0.2
backoff_cap = 2
poll_first = 0.5
poll_base = 0.5
poll_cap = 3
uncertain_wait = 1
processing_window_minutes = 0.25
installation_retry = 1
drain_interval = 0.2
poll_interval = 0.2
alert_interval = 2
connect_timeout = 2
read_timeout = 2.5
"""


def start_runner(config: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.strip() == "READY", f"runner did not start (got {line!r}, rc={proc.poll()})"
    return proc


def statuses(outbox: Path, stems: list[str]) -> dict[str, dict]:
    return {s: st for s in stems if (st := read_status(outbox / f"{s}.status.json"))}


def test_thousand_documents_through_an_sii_at_its_worst_with_sigkills(tmp_path: Path) -> None:
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    rnd = random.Random(1212)
    sandbox = create_sandbox(tmp_path, folios_per_type=N_DOCS // 2 + 50)
    config = load_config(sandbox.config_path)
    bodies = [(examples_dir() / "33_factura.txt").read_bytes(), (examples_dir() / "39_boleta.txt").read_bytes()]
    names = [f"S{i:04d}-{'factura' if i % 2 == 0 else 'boleta'}" for i in range(N_DOCS)]
    behaviour = Behaviour(processing_delay=(0.0, 12.0), processing_polls=0, token_ttl=5.0)
    faults = Faults(reset=0.15, error500=0.15, stall=3.0, seed=5)
    ever: dict[str, set[str]] = {}
    notes: list[str] = []
    with FakeSii(caf_keys=trusted_caf_keys(config), behaviour=behaviour, faults=faults) as fake:
        with open(sandbox.config_path, "a", encoding="utf-8") as f:
            f.write(UPLINK.format(url=fake.url))
        fake.forced.force("token", "-07", seconds=12.0)  # the enrolment is refused at the start
        for i, name in enumerate(names):
            (sandbox.inbox / f"{name}.txt").write_bytes(vary(bodies[i % 2], rnd, i))
        started = time.monotonic()
        kills = lost_scheduled = dead_sessions = 0
        proc = start_runner(sandbox.config_path)
        try:
            while True:
                now = statuses(config.folders.outbox, names)
                for stem, st in now.items():
                    ever.setdefault(stem, set()).update(h["state"] for h in st.get("history", []))
                    notes.extend(h.get("note") or "" for h in st.get("history", []) if h["state"] == "queued")
                if len(now) == N_DOCS and all(st["state"] == "accepted" for st in now.values()):
                    break
                assert time.monotonic() - started < 400, Counter(st["state"] for st in now.values())
                if kills < KILLS and time.monotonic() - started > 4 + kills * rnd.uniform(6, 12):
                    proc.send_signal(signal.SIGKILL)  # mid-signing, mid-upload, mid-poll: wherever it is
                    proc.wait()
                    kills += 1
                    proc = start_runner(sandbox.config_path)
                if lost_scheduled < 8 and rnd.random() < 0.05:
                    fake.script("upload", "timeout_after")  # an upload filed whose answer is lost
                    lost_scheduled += 1
                if dead_sessions < 3 and time.monotonic() - started > 14 + 6 * dead_sessions:
                    fake.expire_tokens()  # every session dies at once ...
                    fake.forced.force("upload", "html")  # ... and the next DTEUpload meets the SII's page
                    dead_sessions += 1
                time.sleep(0.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        stats = fake.stats()
        resent_without_cause = fake.resent_without_cause()
        uploads = Counter(fake.uploads_by_doc)
        accepted = fake.accepted_folios()
    elapsed = time.monotonic() - started
    print(f"\nsoak: {N_DOCS} docs in {elapsed:.0f} s, {kills} SIGKILLs, fake-sii {stats}")
    assert kills == KILLS
    assert not [s for s, states in ever.items() if "rejected_sii" in states], "a document was rejected_sii"
    assert len(accepted) == N_DOCS and set(accepted.values()) == {1}
    assert stats["duplicates"] == 0, "no DTE Repetido"
    assert resent_without_cause == [], "a folio was uploaded again without the SII saying it did not hold it"
    assert len(uploads) == N_DOCS and sum(uploads.values()) >= N_DOCS
    # The hard parts happened (otherwise the test proves nothing):
    assert stats["token_refusals"].get("-07", 0) >= 2 and any("eu_enrola_usuarios" in n for n in notes)
    assert stats["html_pages"] >= 1 and stats["unseen_answers"] >= 1
    assert stats["faults"].get("reset", 0) > 20 and stats["faults"].get("error500", 0) > 20
    assert stats["faults"].get("timeout_after", 0) >= 1
