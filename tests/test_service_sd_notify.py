"""systemd notification protocol: the datagrams a Type=notify unit expects, from a real daemon."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sync.sandbox.build import create_sandbox
from sync.service.sd_notify import Notifier

ROOT = Path(__file__).resolve().parents[1]


def _listen(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(30)
    return s


def test_notifier_sends_ready_to_a_path_socket(tmp_path):
    listener = _listen(tmp_path / "notify.sock")
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    assert n.ready("watching")
    fields = listener.recv(4096).decode().split("\n")
    assert fields[0] == "READY=1" and "STATUS=watching" in fields and f"MAINPID={os.getpid()}" in fields


def test_notifier_reaches_an_abstract_socket():
    name = f"dtesync-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(5)
    n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "3000000"})
    assert n.watchdog()
    assert s.recv(100) == b"WATCHDOG=1"


def test_notifier_without_socket_is_a_silent_no_op():
    n = Notifier.from_env({})
    assert not n.enabled and not n.ready() and not n.watchdog()


def test_watchdog_is_off_when_watchdog_pid_names_another_process(tmp_path):
    _listen(tmp_path / "n.sock")
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "n.sock"), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert not n.watchdog_enabled and not n.watchdog()


def test_watchdog_interval_is_a_third_of_the_timeout():
    n = Notifier.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "600000"})
    assert n.watchdog_interval(1.0) == pytest.approx(0.2)


def test_dtesync_run_sends_ready_after_the_first_scan_then_watchdog_pings(tmp_path):
    sb = create_sandbox(tmp_path / "sb", folios_per_type=20)
    listener = _listen(tmp_path / "notify.sock")
    env = {k: v for k, v in os.environ.items() if k not in ("LOGS_DIRECTORY",)}
    env.update(NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="900000", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "sync", "run", "--config", str(sb.config_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        messages = []
        while len(messages) < 4:
            messages.append(listener.recv(4096).decode())
        assert messages[0].split("\n")[0] == "READY=1", messages
        assert any("STATUS=watching" in line for line in messages[0].split("\n"))
        assert messages[1:] == ["WATCHDOG=1"] * 3, messages
        # READY comes from the daemon's main loop after the daemon started: the lock is held.
        assert (sb.root / "state" / "daemon.lock").read_text().strip() == str(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert (sb.root / "state" / "logs" / "dtesync.log").stat().st_size > 0
