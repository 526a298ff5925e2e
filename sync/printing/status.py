"""What an ESC/POS printer says about itself, and the words dtesync uses for it.

Real-time status (`DLE EOT n`, Epson ESC/POS, answered as soon as the bytes arrive, even
while the printer is offline):

    n = 1  printer status      bit 3: offline
    n = 2  offline cause       bit 2: cover open, bit 5: stopped for paper end, bit 6: error
    n = 4  roll paper sensor   bits 2-3: near end, bits 5-6: paper end

Every answer is one byte of the form 0xx1xx10 (bits 1 and 4 set, 0 and 7 clear), which is how
it is told apart from the `GS r 1` answer (0xx0xx00) that closes a job: `GS r` is processed
in order, after everything before it, so its answer means "the ticket went through".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DLE, EOT, DC4 = 0x10, 0x04, 0x14
STATUS_QUERIES = (1, 2, 4)
QUERY = b"".join(bytes((DLE, EOT, n)) for n in STATUS_QUERIES)
ACK_QUERY = b"\x1dr\x01"  # GS r 1: paper sensor status, answered once the job before it is processed
# DLE DC4 fn=8: clear the receive and print buffers (answer 37h 25h 00h). Sent while a printer
# is stopped in the middle of a ticket, so the rest of that ticket never comes out after the
# fault clears; only for profiles that declare `clear_buffer`.
CLEAR_BUFFERS = bytes((DLE, DC4, 8, 1, 3, 20, 1, 6, 2, 8))
CLEAR_ANSWER = b"\x37\x25\x00"


class Condition(StrEnum):
    """A station's printer as the status file and /health name it."""

    READY = "ready"
    PAPER_LOW = "paper_low"  # near end: still prints
    PAPER_OUT = "paper_out"
    COVER_OPEN = "cover_open"
    OFFLINE = "offline"
    ERROR = "error"  # cutter jam, head overheated...
    STALLED = "stalled"  # accepts the connection but does not read or answer
    UNREACHABLE = "unreachable"  # refused, no route, device missing, closed mid-job
    NO_PDF417 = "no_pdf417"  # does not draw GS ( k PDF417: tickets go as raster images
    UNKNOWN = "unknown"  # the connector cannot read the printer (spooler, plain file)

    @property
    def prints(self) -> bool:
        return self in (Condition.READY, Condition.PAPER_LOW, Condition.UNKNOWN, Condition.NO_PDF417)

    @property
    def code(self) -> str | None:
        """The stable error code (sync.errors) of a condition that stops printing."""
        return _CODES.get(self)

    def says(self, lang: str = "es") -> str:
        es, en = _WORDS[self]
        return en if lang == "en" else es


_CODES = {
    Condition.PAPER_OUT: "PRINTER_PAPER_OUT", Condition.COVER_OPEN: "PRINTER_COVER_OPEN",
    Condition.OFFLINE: "PRINTER_OFFLINE", Condition.ERROR: "PRINTER_ERROR", Condition.STALLED: "PRINTER_STALLED",
    Condition.UNREACHABLE: "PRINTER_UNREACHABLE", Condition.NO_PDF417: "PRINTER_NO_PDF417",
}
_WORDS = {
    Condition.READY: ("lista", "ready"),
    Condition.PAPER_LOW: ("papel por acabarse", "paper running low"),
    Condition.PAPER_OUT: ("sin papel", "out of paper"),
    Condition.COVER_OPEN: ("tapa abierta", "cover open"),
    Condition.OFFLINE: ("fuera de línea", "offline"),
    Condition.ERROR: ("en error (cortador, cabezal)", "in error (cutter, head)"),
    Condition.STALLED: ("no responde (acepta la conexión pero no lee)", "stalled (accepts the connection, does not read)"),
    Condition.UNREACHABLE: ("inalcanzable", "unreachable"),
    Condition.NO_PDF417: ("sin PDF417 nativo (GS ( k): se imprime como imagen", "no native PDF417 (GS ( k): printing as an image"),
    Condition.UNKNOWN: ("sin lectura de estado", "status not readable"),
}


def _is_status(b: int) -> bool:
    return b & 0x93 == 0x12


def _is_ack(b: int) -> bool:
    return b & 0x93 == 0x00


@dataclass(frozen=True)
class PrinterStatus:
    """The three DLE EOT answers (1, 2, 4) of one query."""

    printer: int
    offline_cause: int
    paper: int

    @classmethod
    def parse(cls, answer: bytes) -> PrinterStatus | None:
        """The status from the three answer bytes, or None when they are not DLE EOT answers."""
        if len(answer) != 3 or not all(_is_status(b) for b in answer):
            return None
        return cls(*answer)

    @property
    def condition(self) -> Condition:
        if self.offline_cause & 0x04:
            return Condition.COVER_OPEN
        if self.paper & 0x60 or self.offline_cause & 0x20:
            return Condition.PAPER_OUT
        if self.offline_cause & 0x40:
            return Condition.ERROR
        if self.printer & 0x08:
            return Condition.OFFLINE
        if self.paper & 0x0C:
            return Condition.PAPER_LOW
        return Condition.READY


def ack_condition(b: int) -> Condition | None:
    """The `GS r 1` answer (paper sensor, 0xx0xx00); None when the byte is not one."""
    if not _is_ack(b):
        return None
    if b & 0x60:
        return Condition.PAPER_OUT
    return Condition.PAPER_LOW if b & 0x0C else Condition.READY
