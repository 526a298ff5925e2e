"""fake-sii: a faithful SII-compatible endpoint on loopback (see server.py)."""

from sync.fakesii.server import FakeSii, Faults

__all__ = ["FakeSii", "Faults"]
