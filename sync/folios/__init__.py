"""Folios: CAF files (what the SII authorized) and the durable folio allocator."""

from sync.folios.caf import Caf, load_caf, verify_frma

__all__ = ["Caf", "load_caf", "verify_frma"]
