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

from daemon_runner import FakeEngine, unfinished_steps
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

    def wave_writer() -> None:  # the burst keeps coming while the daemon is being killed
        for wave in range(6):
            expected.update(write_burst(tmp_path / "inbox", 60, seed=wave, prefix=f"W{wave}-"))
            time.sleep(1.5)

    t = threading.Thread(target=wave_writer)
    t.start()
    kills = interrupted = 0
    while kills < KILLS:
        proc = start_runner(tmp_path, mode)
        time.sleep(rnd.uniform(0.02, 0.35))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        interrupted += bool(unfinished_steps(tmp_path))
    t.join()
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


