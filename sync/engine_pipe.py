"""The pipe to the engine worker process, and its launch: light enough to import first.

`dtesync run` launches the worker (`Launched`) right after reading the configuration,
before it imports the rest of the daemon: the worker's own imports and its opening of the
certificate and the schemas (about 0.35 s) then overlap the daemon's (about 0.4 s) instead of
following them. `sync.engine_process.EngineProcess` takes the launched worker over when it
starts; whoever gives up on it first (a failed check, a second daemon) calls `discard`.
This module imports nothing of the engine, so the launch costs the daemon almost nothing.
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
import threading
from typing import IO, Any


class Channel:
    """Messages over a pair of pipes (a child's stdin and stdout): 4-byte length, then a pickle.
    Both ends are this program; nothing else writes to these pipes."""

    def __init__(self, reader: IO[bytes], writer: IO[bytes]) -> None:
        self._reader, self._writer = reader, writer
        self._send_lock = threading.Lock()

    def send(self, msg: tuple[Any, ...]) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self._writer.write(struct.pack(">I", len(data)) + data)
            self._writer.flush()

    def recv(self) -> tuple[Any, ...]:
        head = self._read_exactly(4)
        msg: tuple[Any, ...] = pickle.loads(self._read_exactly(struct.unpack(">I", head)[0]))
        return msg

    def _read_exactly(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            chunk = self._reader.read(n - got)
            if not chunk:
                raise EOFError("the other end closed the pipe")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)


def worker_command() -> list[str]:
    """How to start a worker: this same program with the hidden `_engine-worker` command (the
    frozen program is its own interpreter)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "_engine-worker"]
    return [sys.executable, "-m", "sync", "_engine-worker"]


class Launched:
    """A worker process started and handed its configuration, not yet known to be ready.
    Exactly one of `take` (by the engine that will talk to it) or `discard` has an effect."""

    def __init__(self, config: Any) -> None:
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # a service has no console to show
        self.process = subprocess.Popen(worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        creationflags=flags)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.channel = Channel(self.process.stdout, self.process.stdin)
        self._taken = False
        self._lock = threading.Lock()
        # From a thread: the pickled configuration (about 4 KB) can fill a pipe's buffer (4 KB
        # on Windows), and the worker reads it only after its imports; the daemon goes on with
        # its own meanwhile. The worker's "ready" answer comes after it, so whoever waits for
        # that answer never overtakes this send.
        threading.Thread(target=self._send_config, args=(config,), name="dtesync-engine-launch",
                         daemon=True).start()

    def _send_config(self, config: Any) -> None:
        try:
            self.channel.send(("config", config))
        except (OSError, ValueError):  # it died at once, or was discarded (its pipe closed)
            pass

    def take(self) -> bool:
        """Claim the worker; False if it was already taken or discarded."""
        with self._lock:
            if self._taken:
                return False
            self._taken = True
            return True

    def discard(self) -> None:
        """End the worker if nobody took it (the daemon did not start)."""
        if self.take():
            self.end(0)

    def end(self, timeout: float) -> None:
        """Let the worker exit within `timeout` seconds, kill it past that, close its pipes."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
