"""The crash test with the REAL engine: the daemon as a subprocess (tests/daemon_real.py),
SIGKILLed at random moments during a burst of varied documents, 20 times, restarted each time.

Then one clean run drains the inbox and stops on SIGTERM (exit 0), and: every input has its
final status file; every signed XML verifies with xmlsec1 and the official XSD; no folio was
used twice; the folio store agrees with the status files, document by document (the same
document got the same folio back across restarts), and any hole in a type's folio sequence is
a folio reported for annulment.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from daemon_real import check_real_invariants, drop, varied_inputs, wait_final
from daemon_runner import count_statuses, unfinished_steps, wait_for_progress
from sync.sandbox.build import create_sandbox

RUNNER = Path(__file__).with_name("daemon_real.py")
KILLS = 20


def start_runner(config: Path, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), str(config), mode], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.strip() == "READY", f"runner did not start (got {line!r}, rc={proc.poll()})"
    return proc



@pytest.mark.parametrize("mode", ["events", "poll"])
def test_real_engine_sigkill_at_random_moments_loses_nothing_and_never_reuses_a_folio(tmp_path: Path, mode: str) -> None:
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    rnd = random.Random(7000 + len(mode))
    sandbox = create_sandbox(tmp_path, folios_per_type=1000)
    inputs = varied_inputs(240, seed=len(mode))
    waves = [inputs[k : k + 12] for k in range(0, len(inputs), 12)]  # one wave per daemon life
    kills = interrupted = 0
    while kills < KILLS:
        proc = start_runner(sandbox.config_path, mode)
        # The burst keeps coming while the daemon runs: each life gets a wave written as it works,
        # so kills land on claimed, half-issued and half-filed documents, not on an idle daemon.
        writer = threading.Thread(target=drop, args=(sandbox.inbox, waves[kills]), kwargs={"seed": kills, "writers": 2})
        writer.start()
        wait_for_progress(tmp_path / "outbox", statuses_before=count_statuses(tmp_path / "outbox"))
        time.sleep(rnd.uniform(0.0, 0.05))  # a random moment inside the wave's work
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        writer.join()
        kills += 1
        interrupted += bool(unfinished_steps(tmp_path))
    assert interrupted >= 3, "the kills should land while documents are in flight"
    proc = start_runner(sandbox.config_path, mode)
    try:
        statuses = wait_final(tmp_path / "outbox", inputs, timeout=120)
        deadline = time.monotonic() + 30
        while any(p.is_file() for p in sandbox.inbox.rglob("*") if not p.name.startswith(".")):
            assert time.monotonic() < deadline, "inbox not drained"
            time.sleep(0.1)
        time.sleep(1.5)  # a last scan: second drops claimed and answered
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert unfinished_steps(tmp_path) == {}
    statuses = wait_final(tmp_path / "outbox", inputs, timeout=5)
    summary = check_real_invariants(tmp_path, inputs, statuses)
    assert summary["signed"] == sum(i.want == "signed" for i in inputs)
