"""The seam every later stage plugs into: printing, uplink, delivery, reports, the panel.

A stage is a small object with hooks, in the spirit of dramatiq's middleware: it subclasses
`Stage` and overrides what it needs. The composition root (sync.app) binds each stage to the
`Filing` (the one record of every document) and to the `Alerts` hub, then starts it.

The contract:
- `on_signed(doc, dte)` runs on a daemon worker right after the document's `signed` status is
  durable, at least once per document (again after a crash): be idempotent on `doc.id`, be
  quick (queue the work durably, wake your own thread), never raise for one document's sake.
  The daemon calls `on_signed_many` with every document of a filed batch; its default calls
  `on_signed` for each (override it to queue a batch in one transaction).
- `on_state(doc)` runs after a later stage moved a document to another public state (queued,
  sent, accepted, ...), e.g. delivery waits for `accepted`.
- A stage reports back only through the Filing: `filing.update_state(...)` to change the public
  state, `filing.refresh(doc_id)` when its own `status_entry` changed.
- `status_entry(doc)` is merged into NAME.status.json (e.g. `{"print": {...}}`); a batch's
  final statuses ask `status_entries(docs)`, which defaults to `status_entry` for each.
- `checks()` and `queues()` feed /health, /metrics, `dtesync status` and alerts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sync.alerts import Alerts
    from sync.filing import Filing
    from sync.journal import Doc
    from sync.signed import SignedDte

log = logging.getLogger("dtesync.stage")

Health = Literal["ok", "degraded", "down"]


@dataclass(frozen=True)
class Check:
    """One line of /health: what was checked, how it stands, and why in plain words."""

    name: str
    status: Health
    message: str = ""


@dataclass(frozen=True)
class QueueStats:
    """A durable queue's depth and the age of its oldest waiting item (seconds)."""

    name: str
    depth: int
    oldest_age: float | None = None
    failing: int = 0  # items whose last attempt failed


class Stage:
    """Base class: every hook is a no-op, so a stage overrides only what it uses."""

    name = "stage"

    def __init__(self) -> None:
        self._filing: Filing | None = None
        self._alerts: Alerts | None = None

    # --- wiring (sync.app) ----------------------------------------------------------------------
    def bind(self, filing: Filing, alerts: Alerts) -> None:
        self._filing, self._alerts = filing, alerts

    @property
    def filing(self) -> Filing:
        if self._filing is None:
            raise RuntimeError(f"stage {self.name} is not bound to a Filing")
        return self._filing

    @property
    def alerts(self) -> Alerts:
        if self._alerts is None:
            raise RuntimeError(f"stage {self.name} is not bound to the alerts hub")
        return self._alerts

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the stage's own threads; resume its durable queue."""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop its threads (what is queued stays queued), close its stores."""

    # --- documents --------------------------------------------------------------------------------
    def on_signed(self, doc: Doc, dte: SignedDte) -> None:
        """A document was signed (see the module docstring for the contract)."""

    def on_signed_many(self, signed: Sequence[tuple[Doc, SignedDte]]) -> None:
        """A batch filed together was signed: `on_signed` for each unless the stage does better
        (one transaction for all). A failure is logged per document and stops nothing."""
        for doc, dte in signed:
            try:
                self.on_signed(doc, dte)
            except Exception:
                log.exception("stage: failed on a signed document", extra={"stage": self.name, "doc": doc.id})

    def on_state(self, doc: Doc) -> None:
        """A document moved to another public state (`doc.state`)."""

    def status_entry(self, doc: Doc) -> dict[str, Any]:
        """Entries this stage adds to the document's status file."""
        return {}

    def status_entries(self, docs: Sequence[Doc]) -> dict[int, dict[str, Any]]:
        """`status_entry` of a batch, by document id (a stage may read them in one query). A
        failure is logged per document: that status file goes without this stage's entry."""
        out: dict[int, dict[str, Any]] = {}
        for doc in docs:
            try:
                out[doc.id] = self.status_entry(doc)
            except Exception:
                log.exception("stage: status entry failed", extra={"stage": self.name, "doc": doc.id})
        return out

    # --- observation --------------------------------------------------------------------------------
    def checks(self) -> list[Check]:
        return []

    def queues(self) -> list[QueueStats]:
        return []
