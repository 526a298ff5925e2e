"""One attempt to put one job on paper, and what the printer said about it.

Where the link reads (TCP, serial, USB, a bidirectional device) and the profile says the
printer answers `DLE EOT`:

1. Before: ask the status. Paper out, cover open, offline, an error or no answer at all: the
   job is not sent (nothing of it reaches the printer) and the station waits.
2. Where the job draws the printer's own PDF417 and this printer has not shown it can
   (`GS ( k` fn 82 answers with the symbol's size), ask first; a printer that does not
   answer gets the ticket as a raster image instead.
3. The job, whole, in one write. If the printer stops reading, or the link breaks, part of it
   may be on paper (or print once the fault clears): the next attempt carries the
   REIMPRESIÓN mark, and a printer that can clear its buffers (`DLE DC4` fn 8) is asked to
   drop the rest of the interrupted ticket while it is stopped.
4. After: `GS r 1`, answered only once everything before it went through (status polled
   meanwhile, so a fault mid-ticket is seen at once), then the status again. The job counts
   as printed only when the bytes were taken and that status is clean.

A link that cannot read (Windows spooler, CUPS, a plain file) prints when the bytes were
taken; its condition is `unknown`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sync.printing.connectors import (
    Link,
    PrinterUnavailable,
    SendInterrupted,
    open_link,
)
from sync.printing.escpos import (
    PDF417_SIZE_QUERY,
    job_start,
    parse_size_answer,
    pdf417_setup,
    pdf417_store,
)
from sync.printing.profiles import Profile
from sync.printing.status import (
    ACK_QUERY,
    CLEAR_ANSWER,
    CLEAR_BUFFERS,
    QUERY,
    Condition,
    PrinterStatus,
    ack_condition,
)

PROBE_DATA = b"dtesync GS ( k"


@dataclass(frozen=True)
class Outcome:
    printed: bool
    condition: Condition
    detail: str = ""
    sent: int = 0  # bytes of the job handed to the printer
    partial: bool = False  # part of the job may be on paper, or print once the fault clears
    native: bool | None = None  # GS ( k confirmed (True) or not answered (False); None: not asked
    cleared: bool = False  # the printer confirmed it dropped an interrupted job's leftovers


def query_status(link: Link, timeout: float) -> PrinterStatus | None:
    """DLE EOT 1, 2, 4; None when the printer does not answer all three in time."""
    link.write(QUERY, timeout, time.monotonic() + timeout)
    return PrinterStatus.parse(link.read(3, timeout))


def read_until(link: Link, end: bytes, limit: int, timeout: float) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while not got.endswith(end) and len(got) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        chunk = link.read(1, left)
        if not chunk:
            break
        got += chunk
    return got


def deliver(conn: dict[str, Any], profile: Profile, data: bytes, *, probe_native: bool = False,
            clear_leftover: bool = False, lang: str = "es") -> Outcome:
    """Send `data` (one job, every copy) to the printer and say what happened."""
    try:
        link = open_link(conn, profile)
    except PrinterUnavailable as exc:
        return Outcome(False, Condition.UNREACHABLE, str(exc))
    abort = True
    try:
        outcome = _deliver(link, profile, data, probe_native, clear_leftover, lang)
        abort = not outcome.printed and outcome.sent > 0
        return outcome
    except SendInterrupted as exc:  # a status query or the ack could not be written
        return Outcome(False, Condition.STALLED if exc.stalled else Condition.UNREACHABLE, str(exc))
    finally:
        link.close(abort=abort)


def _fault(link: Link, cond: Condition, lang: str, **kw: Any) -> Outcome:
    return Outcome(False, cond, f"{link.name}: {cond.says(lang)}", **kw)


def _deliver(link: Link, profile: Profile, data: bytes, probe_native: bool, clear_leftover: bool,
             lang: str) -> Outcome:
    asks = profile.status == "dle_eot" and link.readable
    native: bool | None = None
    if asks:
        before = query_status(link, profile.status_timeout)
        if before is None:
            return _fault(link, Condition.STALLED, lang)
        if not before.condition.prints:
            cleared = False
            if clear_leftover and profile.clear_buffer:
                link.write(CLEAR_BUFFERS, profile.status_timeout, time.monotonic() + profile.status_timeout)
                cleared = read_until(link, CLEAR_ANSWER, 16, profile.status_timeout).endswith(CLEAR_ANSWER)
            return _fault(link, before.condition, lang, cleared=cleared)
        if probe_native:
            probe = job_start(profile) + pdf417_setup(1, profile.module_dots) + pdf417_store(PROBE_DATA)
            link.write(probe + PDF417_SIZE_QUERY, profile.io_timeout, time.monotonic() + profile.io_timeout)
            size = parse_size_answer(read_until(link, b"\x00", 24, profile.status_timeout))
            native = size is not None and size[2]
            if not native:
                return Outcome(False, Condition.NO_PDF417, f"{link.name}: {Condition.NO_PDF417.says(lang)}", native=False)
    deadline = time.monotonic() + profile.print_timeout
    try:
        link.write(data, profile.io_timeout, deadline)
    except SendInterrupted as exc:
        cond = Condition.STALLED if exc.stalled else Condition.UNREACHABLE
        return Outcome(False, cond, str(exc), sent=exc.sent, partial=exc.sent > 0, native=native)
    sent = len(data)
    if not asks:
        return Outcome(True, Condition.UNKNOWN, f"{link.name}: {Condition.UNKNOWN.says(lang)}", sent=sent, native=native)
    try:
        return _confirm(link, profile, deadline, sent, native, lang)
    except SendInterrupted as exc:  # the line broke after the job was handed over
        return Outcome(False, Condition.UNREACHABLE, str(exc), sent=sent, partial=True, native=native)


def _confirm(link: Link, profile: Profile, deadline: float, sent: int, native: bool | None, lang: str) -> Outcome:
    """After the job: its acknowledgement and a clean status, or why not (part may be on paper)."""
    if profile.ack == "gs_r":
        cond = _await_ack(link, profile, deadline)
        if cond is None or not cond.prints:
            cond = cond or Condition.STALLED
            return _fault(link, cond, lang, sent=sent, partial=True, native=native)
    after = query_status(link, profile.status_timeout)
    if after is None or not after.condition.prints:
        cond = after.condition if after is not None else Condition.STALLED
        return _fault(link, cond, lang, sent=sent, partial=True, native=native)
    return Outcome(True, after.condition, f"{link.name}: {after.condition.says(lang)}", sent=sent, native=native)


def _await_ack(link: Link, profile: Profile, deadline: float) -> Condition | None:
    """Send GS r 1 and wait for its answer (the job went through); meanwhile ask DLE EOT now
    and then, so a printer that stopped mid-ticket is known at once. None: no answer in time."""
    link.write(ACK_QUERY, profile.io_timeout, deadline)
    status = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        got = link.read(1, min(profile.status_poll, left))
        if not got:
            if status:  # a status answer stopped half-way: the printer is not talking
                return None
            link.write(QUERY, profile.io_timeout, deadline)
            continue
        ack = ack_condition(got[0])
        if ack is not None:
            return ack
        status += got
        if len(status) == 3:
            parsed = PrinterStatus.parse(status)
            status = b""
            if parsed is None:
                return None
            if not parsed.condition.prints:
                return parsed.condition
