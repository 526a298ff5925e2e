"""The crash test: the daemon as a subprocess, SIGKILLed at random moments during a burst.

At least 20 kills per mode, restarted each time; then one clean run to drain. Every input
must end with exactly one final status, no folio used twice, and the engine's allocated
folios must be exactly the ones the status files report (no unexplained gap).
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

from daemon_runner import FakeEngine, count_statuses, unfinished_steps, wait_for_progress
from test_daemon import check_invariants, final_status, write_burst

RUNNER = Path(__file__).with_name("daemon_runner.py")
KILLS = 20


def start_runner(root: Path, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), str(root), mode],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.strip() == "READY", f"runner did not start (got {line!r}, rc={proc.poll()})"
    return proc


@pytest.mark.parametrize("mode", ["events", "poll"])
def test_sigkill_at_random_moments_loses_nothing_and_never_reuses_a_folio(tmp_path: Path, mode: str) -> None:
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    rnd = random.Random(20240 + len(mode))
    (tmp_path / "inbox").mkdir(parents=True)
    expected: dict[str, bytes] = {}
    outbox = tmp_path / "outbox"
    kills = interrupted = 0
    while kills < KILLS:
        proc = start_runner(tmp_path, mode)
        # The burst keeps coming while the daemon runs: each life gets a wave written as it works,
        # and is killed at a random moment once it has visibly started on it (a fixed sleep lands
        # on an idle daemon when a wave takes less time than the sleep).
        before = count_statuses(outbox)
        wave = {}
        writer = threading.Thread(
            target=lambda: wave.update(write_burst(tmp_path / "inbox", 18, seed=kills, prefix=f"W{kills}-"))
        )
        writer.start()
        wait_for_progress(outbox, statuses_before=before)
        time.sleep(rnd.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        writer.join()
        expected.update(wave)
        kills += 1
        interrupted += bool(unfinished_steps(tmp_path))
    assert interrupted >= 3, "the kills should land while documents are in flight"
    proc = start_runner(tmp_path, mode)
    try:
        for rel in list(expected):
            folder, _, name = rel.rpartition("/")
            final_status(tmp_path, name.rsplit(".", 1)[0], folder, timeout=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    engine = FakeEngine(tmp_path / "state" / "fake-folios.sqlite3")
    check_invariants(tmp_path, expected, engine.allocated())
    assert unfinished_steps(tmp_path) == {}


