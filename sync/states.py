"""A document's public state: what NAME.status.json says to the ERP (docs/daemon.md).

One home for the states and the groups other code asks about, so "is it signed?" has one
answer everywhere (the status file, reports, the uplink, the panel, `dtesync status`).
"""

from __future__ import annotations

from enum import StrEnum


class DocState(StrEnum):
    RECEIVED = "received"
    REJECTED_INPUT = "rejected_input"
    SIGNED = "signed"
    QUEUED = "queued"
    SENT = "sent"
    ACCEPTED = "accepted"
    ACCEPTED_WITH_OBJECTIONS = "accepted_with_objections"
    REJECTED_SII = "rejected_sii"
    ERROR = "error"
    # Internal: an input answered with an earlier document's result (never in a status file).
    DUPLICATE = "duplicate"

    @property
    def holds_folio(self) -> bool:
        """A signed DTE exists: its folio is used (a document the SII rejected still used it)."""
        return self in HOLDS_FOLIO

    @property
    def final(self) -> bool:
        """Nothing more will happen to it without a person (a retry, a new input)."""
        return self in FINAL

    @property
    def valid_for_sii(self) -> bool:
        """Signed and not refused by the SII: it counts as issued (sales, reprints)."""
        return self in VALID


PUBLIC_STATES = tuple(s for s in DocState if s is not DocState.DUPLICATE)
HOLDS_FOLIO = frozenset({DocState.SIGNED, DocState.QUEUED, DocState.SENT, DocState.ACCEPTED,
                         DocState.ACCEPTED_WITH_OBJECTIONS, DocState.REJECTED_SII})
VALID = HOLDS_FOLIO - {DocState.REJECTED_SII}
FINAL = frozenset({DocState.ACCEPTED, DocState.ACCEPTED_WITH_OBJECTIONS, DocState.REJECTED_SII,
                   DocState.REJECTED_INPUT, DocState.ERROR})
# Outcomes that hold no folio: the same bytes dropped again are tried again, not deduplicated
# (an operator may have fixed the cause, e.g. imported a CAF).
NO_FOLIO = frozenset({DocState.REJECTED_INPUT, DocState.ERROR})
