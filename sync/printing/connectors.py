"""Where ticket bytes go: raw TCP 9100, USB, serial, the Windows spooler, CUPS, a device or file.

Every connector is a python-escpos printer class used only as a transport (`_raw` of bytes we
rendered beforehand): one open, one write of the whole ticket, one close. That keeps a
Windows spooler job (Win32Raw) to one receipt, and makes a failure all-or-nothing per attempt.
A connector whose optional dependency is missing (pyusb, pyserial, pywin32, pycups) fails
with PRINTER_CONNECTOR_UNSUPPORTED, which names what to install.
"""

from __future__ import annotations

import socket
from typing import Any

from sync.errors import DteSyncError

DEFAULT_TIMEOUT = 5.0
_NEEDS = {"usb": "pyusb (y libusb)", "serial": "pyserial", "win32": "pywin32 (solo Windows)", "cups": "pycups"}


class PrinterUnavailable(Exception):
    """The printer could not take the bytes now (off, unreachable, busy): retry later."""


def describe(conn: dict[str, Any]) -> str:
    kind = conn.get("type")
    if kind == "tcp":
        return f"tcp://{conn.get('host')}:{conn.get('port', 9100)}"
    where = conn.get("device") or conn.get("path") or conn.get("printer") or conn.get("vendor_id")
    return f"{kind}:{where}"


def _transport(conn: dict[str, Any]):
    """The python-escpos printer object for a connector table (not opened)."""
    import escpos.printer as ep

    kind = conn["type"]
    timeout = float(conn.get("timeout", DEFAULT_TIMEOUT))
    if kind == "tcp":
        return ep.Network(host=str(conn["host"]), port=int(conn.get("port", 9100)), timeout=timeout)
    if kind == "file":
        return ep.File(devfile=str(conn.get("path") or conn["device"]), auto_flush=True)
    if kind == "serial":
        return ep.Serial(devfile=str(conn["device"]), baudrate=int(conn.get("baudrate", 9600)), timeout=timeout)
    if kind == "usb":
        return ep.Usb(idVendor=_int(conn["vendor_id"]), idProduct=_int(conn["product_id"]),
                      timeout=int(timeout * 1000), in_ep=_int(conn.get("in_ep", 0x82)), out_ep=_int(conn.get("out_ep", 0x01)))
    if kind == "win32":
        return ep.Win32Raw(printer_name=str(conn["printer"]))
    if kind == "cups":
        return ep.CupsPrinter(printer_name=str(conn["printer"]), host=str(conn.get("host", "localhost")),
                              port=int(conn.get("port", 631)))
    raise DteSyncError("PRINTER_CONNECTOR_UNSUPPORTED", found=str(kind), params={"detail": "tipo desconocido"})


def _int(v: Any) -> int:
    return int(v, 0) if isinstance(v, str) else int(v)


def check(conn: dict[str, Any]) -> None:
    """Raise PRINTER_CONNECTOR_UNSUPPORTED when this machine lacks what the connector needs."""
    try:
        t = _transport(conn)
    except KeyError as exc:
        raise DteSyncError("PRINTER_CONNECTOR_UNSUPPORTED", found=describe(conn),
                           params={"detail": f"falta {exc.args[0]!r} en connector"}) from None
    usable = getattr(t, "is_usable", lambda: True)()
    if not usable:
        raise DteSyncError("PRINTER_CONNECTOR_UNSUPPORTED", found=describe(conn),
                           params={"detail": f"instale {_NEEDS.get(conn['type'], 'la dependencia')}"})


def send(conn: dict[str, Any], data: bytes) -> None:
    """Deliver one whole ticket; PrinterUnavailable on any transport failure."""
    if conn["type"] == "tcp":
        _send_tcp(conn, data)  # the common case, without python-escpos's root-logger noise
        return
    check(conn)
    t = _transport(conn)
    try:
        t.open(raise_not_found=True)
        t._raw(data)
    except Exception as exc:  # each backend raises its own family (USBError, SerialException, OSError...)
        raise PrinterUnavailable(f"{describe(conn)}: {type(exc).__name__}: {exc}") from exc
    finally:
        try:
            t.close()
        except Exception:
            pass


def _send_tcp(conn: dict[str, Any], data: bytes) -> None:
    """Raw TCP (JetDirect/AppSocket, port 9100): connect, sendall, orderly shutdown."""
    host, port = str(conn["host"]), int(conn.get("port", 9100))
    timeout = float(conn.get("timeout", DEFAULT_TIMEOUT))
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
    except OSError as exc:
        raise PrinterUnavailable(f"{describe(conn)}: {exc}") from exc
