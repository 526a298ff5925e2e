"""fake-sii: a faithful SII-compatible endpoint on loopback (see server.py)."""

from sync.fakesii.behaviour import Behaviour, Faults
from sync.fakesii.server import FakeSii

__all__ = ["Behaviour", "FakeSii", "Faults"]
