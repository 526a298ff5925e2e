"""Retention: the outbox keeps what the ERP still needs; older results move beside their
filed inputs, in the archive's dated folders.

A shop with 1 000 documents a day would otherwise collect a million files a year in one
folder. After `[retention] outbox_days` a document that is no longer waiting on anything
(not received, queued or sent) has its results (NAME.status.json, .xml, .pdf, ...) moved from
`outbox/<folder>/` to beside its input: `archive/YYYY-MM-DD/<folder>/<stem>.*` (or
`rejected/<folder>/` for a rejected input). The journal keeps every record and knows where the
results are (`Doc.retained`: `Outbox.results_base` follows it, so a later status rewrite or a
reprint finds them).

Crash-safe like every move in dtesync: the intent is durable in the journal first, the files
move (an idempotent, link-safe rename), then the journal says done; a start after SIGKILL
finishes what was moving (`Filing.resume_retention`). Nothing is deleted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sync.errors import DteSyncError
from sync.stage import Check, Stage
from sync.states import DocState

log = logging.getLogger("dtesync.retention")

# States that still expect news the ERP reads in the outbox: never moved.
WAITING = (DocState.RECEIVED, DocState.QUEUED, DocState.SENT)
DAY = 86400.0


@dataclass(frozen=True)
class RetentionConfig:
    outbox_days: int = 0  # 0: results stay in the outbox for ever
    every: float = 3600.0  # s between runs
    batch: int = 200  # documents per journal transaction

    @property
    def enabled(self) -> bool:
        return self.outbox_days > 0


def parse_retention(data: dict[str, Any]) -> RetentionConfig:
    section = data.get("retention", {}) or {}
    if not isinstance(section, dict):
        raise _invalid("", "se esperaba una tabla [retention]")
    unknown = set(section) - set(RetentionConfig.__dataclass_fields__)
    if unknown:
        raise _invalid(min(unknown), "clave desconocida")
    d = RetentionConfig()
    days = section.get("outbox_days", d.outbox_days)
    if not isinstance(days, int) or isinstance(days, bool) or days < 0:
        raise _invalid("outbox_days", f"se esperaba un entero de días >= 0 (0: no mover), se encontró {days!r}")
    every = section.get("every", d.every)
    if not isinstance(every, (int, float)) or isinstance(every, bool) or every <= 0:
        raise _invalid("every", f"se esperaba un número de segundos > 0, se encontró {every!r}")
    batch = section.get("batch", d.batch)
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 10000:
        raise _invalid("batch", f"se esperaba un entero entre 1 y 10000, se encontró {batch!r}")
    return RetentionConfig(outbox_days=days, every=float(every), batch=batch)


def _invalid(key: str, detail: str) -> DteSyncError:
    return DteSyncError("CONFIG_INVALID", field=f"retention.{key}" if key else "retention", params={"detail": detail})


class RetentionStage(Stage):
    """Runs retention in the daemon: at start (finishing a move a stop cut short), then every
    `every` seconds, in batches until nothing is due."""

    name = "retention"

    def __init__(self, settings: RetentionConfig, *, clock: Any = time.time) -> None:
        super().__init__()
        self.settings = settings
        self.clock = clock
        self.moved = 0  # files moved since start
        self.last_run: float | None = None
        self.last_error: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        resumed = self.filing.resume_retention()
        if resumed:
            log.info("retention: finished a move cut short by a stop", extra={"files": resumed})
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="dtesync-retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once()
                self.last_error = None
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("retention: run failed; will try again")
            self._stopping.wait(self.settings.every)

    def run_once(self) -> int:
        """Move every document due now; returns the files moved."""
        cutoff = self.clock() - self.settings.outbox_days * DAY
        journal = self.filing.journal
        moved = self.filing.resume_retention()
        while not self._stopping.is_set():
            due = journal.retention_due(cutoff, WAITING, self.settings.batch)
            if not due:
                break
            moved += self.filing.retain(due)
            self._stopping.wait(0.01)  # leave the disk to the documents being signed
        self.moved += moved
        self.last_run = self.clock()
        if moved:
            log.info("retention: results moved to the archive", extra={"files": moved})
        return moved

    def checks(self) -> list[Check]:
        if self.last_error:
            return [Check("retention", "degraded", f"la retención falló: {self.last_error}")]
        return []
