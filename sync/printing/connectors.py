"""Where ticket bytes go: raw TCP 9100, USB, serial, the Windows spooler, CUPS, a device or file.

A connector opens a `Link`: `write` (whole job, watching progress), `read` (the printer's
answers, when the transport can carry them) and `close`. TCP and serial links read, so the
printer's status is asked before and after every job (sync.printing.delivery); USB reads
through its bulk IN endpoint; a device file reads when the connector says `bidirectional =
true` (Linux usblp); the Windows spooler and CUPS never read (the spooler owns the printer).
A connector whose optional dependency is missing (pyusb, pywin32, pycups) fails with
PRINTER_CONNECTOR_UNSUPPORTED, which names what to install.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import time
from typing import Any, Protocol

from sync.errors import DteSyncError
from sync.printing.profiles import Profile

log = logging.getLogger("dtesync.printing")

CHUNK = 4096
_NEEDS = {"usb": "pyusb (y libusb)", "serial": "pyserial (en Windows)", "win32": "pywin32 (solo Windows)",
          "cups": "pycups"}


class PrinterUnavailable(Exception):
    """The printer could not take the bytes now (off, unreachable, busy): retry later."""


class SendInterrupted(PrinterUnavailable):
    """The job stopped part-way: `sent` bytes left for the printer; `stalled` when it stopped
    reading (as opposed to the link breaking)."""

    def __init__(self, message: str, sent: int, *, stalled: bool) -> None:
        super().__init__(message)
        self.sent, self.stalled = sent, stalled


class Link(Protocol):
    readable: bool
    name: str

    def write(self, data: bytes, progress_timeout: float, deadline: float) -> None: ...

    def read(self, n: int, timeout: float) -> bytes: ...

    def close(self, *, abort: bool = False) -> None: ...


def describe(conn: dict[str, Any]) -> str:
    kind = conn.get("type")
    if kind == "tcp":
        return f"tcp://{conn.get('host')}:{conn.get('port', 9100)}"
    where = conn.get("device") or conn.get("path") or conn.get("printer") or conn.get("vendor_id")
    return f"{kind}:{where}"


def _int(v: Any) -> int:
    return int(v, 0) if isinstance(v, str) else int(v)


def _transport(conn: dict[str, Any], timeout: float) -> Any:
    """The python-escpos printer object for a connector table (not opened)."""
    import escpos.printer as ep

    kind = conn["type"]
    if kind == "file":
        return ep.File(devfile=str(conn.get("path") or conn["device"]), auto_flush=True)
    if kind == "usb":
        return ep.Usb(idVendor=_int(conn["vendor_id"]), idProduct=_int(conn["product_id"]),
                      timeout=int(timeout * 1000), in_ep=_int(conn.get("in_ep", 0x82)), out_ep=_int(conn.get("out_ep", 0x01)))
    if kind == "win32":
        return ep.Win32Raw(printer_name=str(conn["printer"]))
    if kind == "cups":
        return ep.CupsPrinter(printer_name=str(conn["printer"]), host=str(conn.get("host", "localhost")),
                              port=int(conn.get("port", 631)))
    raise DteSyncError("PRINTER_CONNECTOR_UNSUPPORTED", found=str(kind), params={"detail": "tipo desconocido"})


def check(conn: dict[str, Any]) -> None:
    """Raise PRINTER_CONNECTOR_UNSUPPORTED when this machine lacks what the connector needs."""
    kind = conn.get("type")
    try:
        if kind == "tcp":
            str(conn["host"])
            return
        if kind == "serial":
            str(conn["device"])
            if os.name == "nt" and not _has_pyserial():
                raise DteSyncError("PRINTER_CONNECTOR_UNSUPPORTED", found=describe(conn),
                                   params={"detail": f"instale {_NEEDS['serial']}"})
            return
        t = _transport(conn, 5.0)
    except KeyError as exc:
        raise DteSyncError("PRINTER_CONNECTOR_UNSUPPORTED", found=describe(conn),
                           params={"detail": f"falta {exc.args[0]!r} en connector"}) from None
    usable = getattr(t, "is_usable", lambda: True)()
    if not usable:
        raise DteSyncError("PRINTER_CONNECTOR_UNSUPPORTED", found=describe(conn),
                           params={"detail": f"instale {_NEEDS.get(str(kind), 'la dependencia')}"})


def _has_pyserial() -> bool:
    try:
        import serial  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def open_link(conn: dict[str, Any], profile: Profile) -> Link:
    """Open the connector; PrinterUnavailable when the printer cannot be reached now. The
    connector's own `timeout` (s), when given, overrides the profile's connect timeout."""
    kind = conn["type"]
    connect_timeout = float(conn.get("timeout", profile.connect_timeout))
    if kind == "tcp":
        return TcpLink(str(conn["host"]), int(conn.get("port", 9100)), connect_timeout)
    if kind == "serial":
        args = (str(conn["device"]), int(conn.get("baudrate", 9600)), str(conn.get("flow", "none")))
        return PySerialLink(*args) if os.name == "nt" else SerialLink(*args)
    if kind == "file" and conn.get("bidirectional"):
        return DeviceLink(str(conn.get("path") or conn["device"]))
    check(conn)
    if kind == "usb":
        return UsbLink(conn, profile.io_timeout)
    return SpoolerLink(conn, profile.io_timeout)


class TcpLink:
    """Raw TCP (JetDirect/AppSocket, port 9100)."""

    readable = True

    def __init__(self, host: str, port: int, connect_timeout: float) -> None:
        self.name = f"tcp://{host}:{port}"
        try:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise PrinterUnavailable(f"{self.name}: {exc}") from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)

    def write(self, data: bytes, progress_timeout: float, deadline: float) -> None:
        view, sent = memoryview(data), 0
        while sent < len(data):
            wait = min(progress_timeout, deadline - time.monotonic())
            _, ready, _ = select.select([], [self.sock], [], max(0.0, wait))
            if not ready:
                raise SendInterrupted(f"{self.name}: la impresora dejó de recibir ({sent} de {len(data)} bytes)",
                                      sent, stalled=True)
            try:
                sent += self.sock.send(view[sent : sent + CHUNK])
            except BlockingIOError:
                continue
            except OSError as exc:
                raise SendInterrupted(f"{self.name}: {exc} ({sent} de {len(data)} bytes)", sent, stalled=False) from exc

    def read(self, n: int, timeout: float) -> bytes:
        got = bytearray()
        end = time.monotonic() + timeout
        while len(got) < n:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                break
            try:
                chunk = self.sock.recv(n - len(got))
            except BlockingIOError:
                continue
            except OSError:
                break
            if not chunk:
                break
            got += chunk
        return bytes(got)

    def close(self, *, abort: bool = False) -> None:
        try:
            if abort:  # RST: what we have not handed over yet is dropped, not delivered later
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.sock.setblocking(True)
                self.sock.settimeout(1.0)
                self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            self.sock.close()


class _FdLink:
    """A POSIX file descriptor (serial port, bidirectional usblp device) in non-blocking mode."""

    readable = True
    name = ""
    fd = -1

    def write(self, data: bytes, progress_timeout: float, deadline: float) -> None:
        sent = 0
        while sent < len(data):
            wait = min(progress_timeout, deadline - time.monotonic())
            _, ready, _ = select.select([], [self.fd], [], max(0.0, wait))
            if not ready:
                raise SendInterrupted(f"{self.name}: la impresora dejó de recibir ({sent} de {len(data)} bytes)",
                                      sent, stalled=True)
            try:
                sent += os.write(self.fd, data[sent : sent + CHUNK])
            except BlockingIOError:
                continue
            except OSError as exc:
                raise SendInterrupted(f"{self.name}: {exc} ({sent} de {len(data)} bytes)", sent, stalled=False) from exc

    def read(self, n: int, timeout: float) -> bytes:
        got = bytearray()
        end = time.monotonic() + timeout
        while len(got) < n:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                break
            try:
                chunk = os.read(self.fd, n - len(got))
            except BlockingIOError:
                continue
            except OSError:
                break
            if not chunk:
                break
            got += chunk
        return bytes(got)

    def close(self, *, abort: bool = False) -> None:
        if abort:
            try:
                import termios

                termios.tcflush(self.fd, termios.TCOFLUSH)  # drop what the port has not sent yet
            except (ImportError, OSError, termios.error):
                pass
        os.close(self.fd)


class SerialLink(_FdLink):
    """A serial port on POSIX: raw termios, no extra dependency."""

    def __init__(self, device: str, baudrate: int, flow: str) -> None:
        self.name = f"serial:{device}"
        import termios
        import tty

        try:
            self.fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            raise PrinterUnavailable(f"{self.name}: {exc}") from exc
        try:
            tty.setraw(self.fd)
            attrs = termios.tcgetattr(self.fd)
            speed = getattr(termios, f"B{baudrate}", None)
            if speed is not None:
                attrs[4] = attrs[5] = speed
            attrs[2] |= termios.CLOCAL | termios.CREAD
            if flow == "rtscts" and hasattr(termios, "CRTSCTS"):
                attrs[2] |= termios.CRTSCTS
            if flow == "xonxoff":
                attrs[0] |= termios.IXON
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        except termios.error:
            pass  # a pseudo-terminal or a USB-serial adapter that ignores line settings


class DeviceLink(_FdLink):
    """A printer device opened read-write (Linux usblp `/dev/usb/lp0` of a bidirectional printer)."""

    def __init__(self, path: str) -> None:
        self.name = f"file:{path}"
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        except OSError as exc:
            raise PrinterUnavailable(f"{self.name}: {exc}") from exc


class PySerialLink:  # pragma: no cover - Windows only (COM ports)
    """A serial port through pyserial."""

    readable = True

    def __init__(self, device: str, baudrate: int, flow: str) -> None:
        self.name = f"serial:{device}"
        try:
            import serial
        except ImportError:
            raise DteSyncError("PRINTER_CONNECTOR_UNSUPPORTED", found=self.name,
                               params={"detail": f"instale {_NEEDS['serial']}"}) from None
        try:
            self.port = serial.Serial(device, baudrate, rtscts=flow == "rtscts", xonxoff=flow == "xonxoff")
        except Exception as exc:
            raise PrinterUnavailable(f"{self.name}: {exc}") from exc

    def write(self, data: bytes, progress_timeout: float, deadline: float) -> None:
        import serial

        self.port.write_timeout = progress_timeout
        sent = 0
        while sent < len(data):
            try:
                sent += self.port.write(data[sent : sent + CHUNK]) or 0
            except serial.SerialTimeoutException as exc:
                raise SendInterrupted(f"{self.name}: la impresora dejó de recibir ({sent} de {len(data)} bytes)",
                                      sent, stalled=True) from exc
            except serial.SerialException as exc:
                raise SendInterrupted(f"{self.name}: {exc} ({sent} de {len(data)} bytes)", sent, stalled=False) from exc

    def read(self, n: int, timeout: float) -> bytes:
        self.port.timeout = timeout
        return bytes(self.port.read(n))

    def close(self, *, abort: bool = False) -> None:
        if abort:
            self.port.reset_output_buffer()
        self.port.close()


class UsbLink:  # pragma: no cover - needs a USB printer
    """python-escpos `Usb` (pyusb): bulk OUT for the job, bulk IN for the printer's answers."""

    readable = True

    def __init__(self, conn: dict[str, Any], timeout: float) -> None:
        self.name = describe(conn)
        self.t = _transport(conn, timeout)
        try:
            self.t.open(raise_not_found=True)
        except Exception as exc:
            raise PrinterUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def write(self, data: bytes, progress_timeout: float, deadline: float) -> None:
        sent = 0
        dev = self.t.device
        while sent < len(data):
            try:
                sent += dev.write(self.t.out_ep, data[sent : sent + CHUNK], int(progress_timeout * 1000))
            except Exception as exc:  # usb.core.USBTimeoutError / USBError
                stalled = "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower()
                raise SendInterrupted(f"{self.name}: {exc} ({sent} de {len(data)} bytes)", sent, stalled=stalled) from exc

    def read(self, n: int, timeout: float) -> bytes:
        got = bytearray()
        end = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < end:
            try:
                got += bytes(self.t.device.read(self.t.in_ep, 64, max(1, int((end - time.monotonic()) * 1000))))
            except Exception:  # noqa: BLE001 - pyusb's timeout and errors alike mean "no answer"
                break
        return bytes(got[:n])

    def close(self, *, abort: bool = False) -> None:
        try:
            self.t.close()
        except Exception as exc:  # noqa: BLE001 - closing a backend that already failed
            log.debug("printing: close failed: %s", exc)


class SpoolerLink:
    """Write-only: the Windows spooler (one RAW job per ticket), CUPS, or a plain device/file.
    The spooler takes a job whole or not at all; nothing can be read back."""

    readable = False

    def __init__(self, conn: dict[str, Any], timeout: float) -> None:
        self.name = describe(conn)
        self.spooler = conn["type"] in ("win32", "cups")
        self.t = _transport(conn, timeout)
        try:
            self.t.open(raise_not_found=True) if conn["type"] != "file" else self.t.open()
        except Exception as exc:
            raise PrinterUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def write(self, data: bytes, progress_timeout: float, deadline: float) -> None:
        try:
            self.t._raw(data)
        except Exception as exc:  # each backend raises its own family (OSError, win32 errors...)
            raise SendInterrupted(f"{self.name}: {type(exc).__name__}: {exc}", 0 if self.spooler else len(data),
                                  stalled=False) from exc

    def read(self, n: int, timeout: float) -> bytes:
        return b""

    def close(self, *, abort: bool = False) -> None:
        try:
            self.t.close()
        except Exception as exc:  # noqa: BLE001 - closing a backend that already failed
            log.debug("printing: close failed: %s", exc)


