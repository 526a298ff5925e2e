"""The systemd notification protocol, in a few lines of socket code (no libsystemd).

A `Type=notify` unit gets NOTIFY_SOCKET in its environment: an AF_UNIX datagram socket
(a path, or an abstract name written with a leading '@'). The service sends text datagrams:
READY=1 once it really serves (for dtesync: after the first reconciliation scan of the
inbox), WATCHDOG=1 at least every WATCHDOG_USEC/2 from its main loop (systemd kills and
restarts a service that stops pinging), STOPPING=1 and STATUS=... for `systemctl status`.
Outside systemd NOTIFY_SOCKET is unset and every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from sync.daemon import Daemon

log = logging.getLogger("dtesync.service")


class Notifier:
    """Sends sd_notify datagrams to NOTIFY_SOCKET; silent when there is none."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None, watchdog_pid: int | None = None):
        self.address = address or None
        self.watchdog_usec = watchdog_usec
        self.watchdog_pid = watchdog_pid
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Notifier":
        env = os.environ if environ is None else environ
        usec = _int(env.get("WATCHDOG_USEC"))
        pid = _int(env.get("WATCHDOG_PID"))
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec=usec if usec and usec > 0 else None, watchdog_pid=pid)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_enabled(self) -> bool:
        """WatchdogSec= is set for us (WATCHDOG_PID, when given, must be this process)."""
        if not self.enabled or self.watchdog_usec is None:
            return False
        return self.watchdog_pid is None or self.watchdog_pid == os.getpid()

    def watchdog_interval(self, default: float = 1.0) -> float:
        """Seconds between WATCHDOG=1 pings: a third of the timeout, at most `default`."""
        if not self.watchdog_enabled:
            return default
        return min(default, self.watchdog_usec / 3e6)  # type: ignore[operator]

    def notify(self, *fields: str) -> bool:
        """Send one datagram with the given KEY=VALUE lines; False if not delivered."""
        if not self.enabled or self._failed:
            return False
        payload = "\n".join(fields).encode("utf-8")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, _sockaddr(self.address))  # type: ignore[arg-type]
            return True
        except OSError as exc:
            # systemd gone or the socket misconfigured: say it once, never break the daemon.
            self._failed = True
            log.warning("sd_notify: cannot notify systemd", extra={"socket": self.address, "error": str(exc)})
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []), f"MAINPID={os.getpid()}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1") if self.watchdog_enabled else False

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _sockaddr(address: str) -> str | bytes:
    """'@name' is a Linux abstract socket: a leading NUL byte on the wire."""
    if address.startswith("@"):
        return b"\0" + address[1:].encode("utf-8")
    return address


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


class SystemdSupervision:
    """The daemon's `on_tick`: READY=1 once the first inbox scan is done, then WATCHDOG=1 on
    every tick while the daemon is healthy (a stuck ingest loop stops the pings, and systemd
    restarts the service after WatchdogSec)."""

    def __init__(self, notifier: Notifier):
        self.notifier = notifier
        self.ready_sent = False

    @property
    def tick(self) -> float:
        return self.notifier.watchdog_interval(1.0)

    def __call__(self, daemon: Daemon) -> None:
        if not self.ready_sent and daemon.first_scan.is_set():
            self.ready_sent = True
            self.notifier.ready(f"watching {daemon.filing.folders.inbox}")
        if self.ready_sent and daemon.healthy():
            self.notifier.watchdog()
