"""An ESC/POS receipt printer in software, for tests and benchmarks: raw TCP on 127.0.0.1, or
a serial line (a pseudo-terminal), behaving like a real one, faults included.

What it models, after Epson's ESC/POS reference:
- A receive buffer of `buffer_size` bytes, filled from the line and emptied by the print
  engine. When it is full the printer stops reading (TCP window / flow control), so the
  sender's writes stall, and real-time commands queued behind go unanswered.
- Real-time commands are answered as soon as they are received, before the data ahead of
  them is printed, even while offline: `DLE EOT n` (status) and `DLE DC4` fn 8 (clear
  buffers, answered 37h 25h 00h, when `clear_buffer`).
- The engine processes commands in order while online: printing appends them to `paper`;
  `GS r 1` is answered when reached (after everything before it was printed); `GS ( k`
  PDF417 is drawn, and fn 82 answered with the symbol's size, only when `gs_k`; without it
  the printer skips those commands (no timbre on paper).
- Faults, settable at any time: `paper_out`, `cover_open`, `offline`, `error` (the engine
  stops; status says so), `paper_low`; `stall` (new connections are accepted and never
  read); `close_after` (the next connection is closed after that many bytes); and
  `paper_out_after` (the paper runs out after that many more bytes are printed: mid-ticket).
- When the fault clears, the engine resumes with what is still in its buffer: the rest of an
  interrupted ticket comes out, unless the host cleared the buffer meanwhile.

It never guesses what a host meant: bytes it cannot parse are printed as they are.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

DLE, ESC, GS, FS = 0x10, 0x1B, 0x1D, 0x1C
_ESC_ARGS = {b"@": 0, b"t": 1, b"p": 3, b"!": 1, b"E": 1, b"a": 1, b"-": 1, b"M": 1, b"d": 1, b"G": 1, b"{": 1,
             b"J": 1, b"2": 0, b"3": 1, b"r": 1, b"c": 2}
_GS_ARGS = {b"!": 1, b"B": 1, b"b": 1, b"L": 2, b"W": 2, b"H": 1, b"f": 1, b"h": 1, b"w": 1, b"r": 1}


def _command_length(buf: bytes | bytearray, i: int) -> int | None:
    """Length of the command starting at buf[i], or None if it is not complete yet."""
    b = buf[i]
    n = len(buf) - i
    if b == DLE:
        if n < 3:
            return None
        if buf[i + 1] == 0x04:
            return 3
        if buf[i + 1] == 0x14:
            return 10 if buf[i + 2] == 8 else 5
        return 1
    if b == ESC:
        if n < 2:
            return None
        k = bytes(buf[i + 1 : i + 2])
        need = 2 + _ESC_ARGS.get(k, 0)
        return need if n >= need else None
    if b == FS:
        return 2 if n >= 2 else None
    if b == GS:
        if n < 2:
            return None
        k = bytes(buf[i + 1 : i + 2])
        if k == b"v":  # GS v 0 m xL xH yL yH data
            if n < 8:
                return None
            need = 8 + (buf[i + 4] + 256 * buf[i + 5]) * (buf[i + 6] + 256 * buf[i + 7])
            return need if n >= need else None
        if k == b"(":  # GS ( x pL pH ...
            if n < 5:
                return None
            need = 5 + buf[i + 3] + 256 * buf[i + 4]
            return need if n >= need else None
        if k == b"V":
            if n < 3:
                return None
            need = 4 if buf[i + 2] in (65, 66) else 3
            return need if n >= need else None
        need = 2 + _GS_ARGS.get(k, 0)
        return need if n >= need else None
    # a run of text
    j = i
    while j < len(buf) and buf[j] not in (DLE, ESC, GS, FS):
        j += 1
    return j - i


@dataclass
class _Session:
    """One host connection: how to answer it, and whether it is still open."""

    send: Callable[[bytes], None]
    open: bool = True
    received: bytearray = field(default_factory=bytearray)
    started_at: float | None = None  # first byte of a job (ESC @), for latency figures


class EmulatedPrinter:
    """See the module docstring. `listen()` on TCP (the default) or `serial_pty()`."""

    def __init__(self, *, gs_k: bool = True, status: bool = True, gs_r: bool = True, clear_buffer: bool = False,
                 buffer_size: int = 256 * 1024, port: int = 0, dots: int = 576) -> None:
        self.gs_k, self.status, self.gs_r, self.clear_buffer = gs_k, status, gs_r, clear_buffer
        self.buffer_size, self.dots = buffer_size, dots
        self.paper_out = self.cover_open = self.offline = self.error = self.paper_low = False
        self.stall = False
        self.close_after: int | None = None
        self.paper_out_after: int | None = None
        self.paper = bytearray()
        self.sessions: list[_Session] = []
        self.cleared = 0  # DLE DC4 fn 8 honoured
        self._units: deque[tuple[bytes, _Session]] = deque()
        self._buffered = 0
        self._busy = False  # the engine is processing a command it took from the buffer
        self._pdf417: bytes | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._sock: socket.socket | None = None
        self.port = port
        threading.Thread(target=self._engine, name="emulated-printer-engine", daemon=True).start()

    # --- faults ------------------------------------------------------------------------------------
    @property
    def online(self) -> bool:
        return not (self.paper_out or self.cover_open or self.offline or self.error)

    def set(self, **faults: object) -> None:
        """Change faults (paper_out=False, stall=True, ...) and let the engine react."""
        with self._cond:
            for k, v in faults.items():
                if not hasattr(self, k):
                    raise AttributeError(k)
                setattr(self, k, v)
            self._cond.notify_all()

    def status_byte(self, n: int) -> int:
        if n == 1:
            return 0x12 | (0 if self.online else 0x08)
        if n == 2:
            return 0x12 | (0x04 if self.cover_open else 0) | (0x20 if self.paper_out else 0) | (0x40 if self.error else 0)
        if n == 4:
            return 0x12 | (0x0C if self.paper_low else 0) | (0x60 if self.paper_out else 0)
        return 0x12

    # --- transports ----------------------------------------------------------------------------------
    def listen(self, port: int | None = None) -> EmulatedPrinter:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port if port is None else port))
        s.listen(16)
        self._sock, self.port = s, s.getsockname()[1]
        threading.Thread(target=self._accept, args=(s,), name="emulated-printer-accept", daemon=True).start()
        return self

    def connector(self, **extra: object) -> dict[str, object]:
        return {"type": "tcp", "host": "127.0.0.1", "port": self.port, **extra}

    def stop_listening(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        self.stop_listening()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def serial_pty(self) -> str:
        """A pseudo-terminal whose other end is this printer; returns the device path."""
        master, slave = os.openpty()
        path = os.ttyname(slave)
        threading.Thread(target=self._serve_fd, args=(master, slave), name="emulated-printer-serial", daemon=True).start()
        return path

    def _accept(self, s: socket.socket) -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            self._serve_socket(conn)  # one session at a time, like a JetDirect port

    def _serve_socket(self, conn: socket.socket) -> None:
        def send(data: bytes) -> None:
            try:
                conn.sendall(data)
            except OSError:
                session.open = False

        session = _Session(send)
        self.sessions.append(session)
        limit = self.close_after
        self.close_after = None
        try:
            if self.stall:  # accepts, never reads: until the host gives up or the stall clears
                while self.stall and not self._closed:
                    r, _, _ = select.select([conn], [], [], 0.05)
                    if r and not conn.recv(1, socket.MSG_PEEK):
                        return
                if self._closed:
                    return
            self._read_loop(lambda n: conn.recv(n), session, limit)
        except OSError:
            pass
        finally:
            session.open = False
            conn.close()

    def _serve_fd(self, master: int, slave: int) -> None:
        def send(data: bytes) -> None:
            try:
                os.write(master, data)
            except OSError:
                session.open = False

        session = _Session(send)
        self.sessions.append(session)

        def recv(n: int) -> bytes:
            while not self._closed:
                r, _, _ = select.select([master], [], [], 0.1)
                if r:
                    try:
                        return os.read(master, n)
                    except OSError:
                        return b""
            return b""

        try:
            self._read_loop(recv, session, None)
        finally:
            os.close(master)
            os.close(slave)

    # --- reception -------------------------------------------------------------------------------------
    def _read_loop(self, recv: Callable[[int], bytes], session: _Session, limit: int | None) -> None:
        pending = bytearray()
        while not self._closed:
            with self._cond:  # a full receive buffer stops reception: the host's writes stall
                while self._buffered >= self.buffer_size and not self._closed:
                    self._cond.wait(0.1)
            want = self.buffer_size - self._buffered
            if limit is not None:
                want = min(want, limit - len(session.received))
                if want <= 0:
                    return  # the line drops mid-job
            chunk = recv(max(1, min(want, 65536)))
            if not chunk:
                return
            if session.started_at is None and b"\x1b@" in chunk:
                session.started_at = time.time()
            session.received += chunk
            pending += chunk
            i = 0
            while i < len(pending):
                n = _command_length(pending, i)
                if n is None:
                    break
                self._receive(bytes(pending[i : i + n]), session)
                i += n
            del pending[:i]

    def _receive(self, cmd: bytes, session: _Session) -> None:
        """Real-time commands now; the rest into the receive buffer for the engine."""
        if cmd[0] == DLE and cmd[1] == 0x04:
            if self.status:
                session.send(bytes((self.status_byte(cmd[2]),)))
            return
        if cmd[0] == DLE and cmd[1] == 0x14 and cmd[2] == 8:
            if self.clear_buffer:
                with self._cond:
                    self._units.clear()
                    self._buffered = 0
                    self.cleared += 1
                    self._cond.notify_all()
                session.send(b"\x37\x25\x00")
            return
        with self._cond:
            self._units.append((cmd, session))
            self._buffered += len(cmd)
            self._cond.notify_all()

    # --- the print engine --------------------------------------------------------------------------------
    def _engine(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._units or not self.online):
                    self._cond.wait(0.1)
                if self._closed:
                    return
                if self.paper_out_after is not None and self.paper_out_after <= 0:
                    self.paper_out_after = None
                    self.paper_out = True
                    self._cond.notify_all()
                    continue
                cmd, session = self._units.popleft()
                self._buffered -= len(cmd)
                self._busy = True
                self._cond.notify_all()
            try:
                self._process(cmd, session)
            finally:
                with self._cond:
                    self._busy = False

    def _process(self, cmd: bytes, session: _Session) -> None:
        if cmd[:2] == b"\x1dr":
            if self.gs_r and session.open:
                session.send(bytes((0x0C if self.paper_low else 0x00,)))
            return
        if cmd[:3] == b"\x1d(k":
            if not self.gs_k:
                return  # a printer without GS ( k skips it: no symbol on paper
            fn = cmd[6]
            if fn == 80:
                self._pdf417 = cmd[8:]
            elif fn == 82:
                if session.open and self._pdf417 is not None:
                    session.send(b"\x37\x2f" + b"%d\x1f%d\x1f1\x1f0\x00" % (200, 100))
                return
        with self._cond:
            self.paper += cmd
            if self.paper_out_after is not None:
                self.paper_out_after -= len(cmd)

    # --- observation -----------------------------------------------------------------------------------
    def wait(self, predicate: Callable[[EmulatedPrinter], object], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return bool(predicate(self))

    def idle(self) -> bool:
        """Nothing received is left to print."""
        with self._cond:
            return not self._units and not self._busy
