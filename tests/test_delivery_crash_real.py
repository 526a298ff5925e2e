"""The daemon SIGKILLed again and again while it mails documents, and restarted: nothing lost,
nothing sent twice as two different mails.

The daemon runs as a subprocess (tests/delivery_daemon_runner.py: real engine, delivery built
from `[delivery]`), mailing an aiosmtpd relay started here that answers slowly (RCPT takes
0.15 s), so kills land between attempts and in the middle of SMTP transactions. The relay
outlives the daemon and keeps every message it accepted.

What SMTP allows (docs/delivery.md, "Exactly once"): a transaction cut before the final "."
of DATA is discarded by the server, so sending it again is exactly once; only a kill between
the server's acceptance of the dot and our durable record of its 250 leaves the outcome
unknown, and dtesync then sends the same message again under the same Message-ID
(at-least-once, counted in the store as `uncertain`). So the test asserts: every document
arrived; no document arrived as two different messages; any repeated copy is that same
message and is accounted for by a recorded uncertain resend.
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

from delivery_fixtures import SmtpSink, drop_all, receptor_inputs, receptor_ruts
from sync.sandbox.build import create_sandbox
from test_delivery import DELIVERY, delivered, statuses, wait_for

RUNNER = Path(__file__).with_name("delivery_daemon_runner.py")
KILLS = 10
N_DOCS = 40


def start_runner(config: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=dict(os.environ))
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.strip() == "READY", f"runner did not start (got {line!r}, rc={proc.poll()})"
    return proc


def store_rows(state: Path) -> list[tuple[str, int]]:
    db = state / "delivery.sqlite3"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(con.execute("SELECT state, uncertain FROM deliveries"))
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


@pytest.mark.slow
def test_daemon_sigkilled_while_mailing_loses_nothing_and_sends_no_document_twice(tmp_path):
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    rnd = random.Random(1414)
    ruts = receptor_ruts(4, seed=31)
    addresses = {r: f"dte{i}@receptor.cl" for i, r in enumerate(ruts)}
    inputs = receptor_inputs(N_DOCS, ruts, seed=32)
    in_flight_kills = 0
    with SmtpSink(rcpt_delay=0.15) as smtp:
        sb = create_sandbox(tmp_path / "sb", folios_per_type=60)
        text = sb.config_path.read_text() + DELIVERY.format(
            port=smtp.port, tls="none", after="signed", backoff=0.05, cap=0.3, extra="",
            receptors="\n".join(f'"{k}" = "{v}"' for k, v in addresses.items()))
        sb.config_path.write_text(text)
        drop_all(sb.inbox, inputs)
        for _ in range(KILLS):
            proc = start_runner(sb.config_path)
            time.sleep(rnd.uniform(0.5, 2.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            in_flight_kills += any(state in ("sending", "committing") for state, _ in store_rows(sb.root / "state"))
        proc = start_runner(sb.config_path)
        try:
            assert wait_for(lambda: delivered(sb.root / "outbox", N_DOCS), 120), \
                Counter(s.get("delivery", {}).get("state") for s in statuses(sb.root / "outbox").values())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        mails = smtp.messages()
    st = statuses(sb.root / "outbox")
    assert len(st) == N_DOCS and all(s["state"] == "signed" for s in st.values())
    copies = Counter(m.message_id for m in mails)
    by_doc = {s["document_id"]: s["delivery"]["message_id"] for s in st.values()}
    assert set(copies) == set(by_doc.values())  # every document arrived, under its recorded Message-ID
    assert len(by_doc) == N_DOCS  # ... and no document as two different messages
    for mid in copies:
        bodies = {m.data for m in mails if m.message_id == mid}
        assert len(bodies) == 1, mid  # a repeat is the very same message, never a second envelope
    repeats = sum(n - 1 for n in copies.values())
    uncertain = sum(u for _, u in store_rows(sb.root / "state"))
    assert repeats <= uncertain, (repeats, uncertain)  # every repeat is an at-least-once resend we recorded
    assert in_flight_kills >= 1  # the dangerous case happened: kills landed inside SMTP transactions
    print(f"kills={KILLS} in_flight={in_flight_kills} mails={len(mails)} repeats={repeats} uncertain={uncertain}")
