"""The XML parser every module uses for XML dtesync did not just parse as an input, one per thread.

Policy: no entity expansion, no DTD loading, no network (XXE, billion laughs), no huge trees.

Per thread because libxml2's name dictionary is not thread-safe, and lxml gives a thread
that has no dictionary yet the one it first meets: a parser shared between threads still
carries the dictionary of the thread that used it last, so a worker whose first lxml call is a
parse with that parser adopts another thread's dictionary, and two threads then intern names
into one dictionary at once. Seen here as a `TmstFirma` element coming out `TmstFirm` under two
daemon workers (SCHEMA_INVALID). A parser created and used by one thread only never shares.
"""

from __future__ import annotations

import threading

from lxml import etree

_local = threading.local()


def parser() -> etree.XMLParser:
    """This thread's parser with the safe policy (created on first use)."""
    p = getattr(_local, "parser", None)
    if p is None:
        p = _local.parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    return p


def fromstring(data: bytes | str) -> etree._Element:
    return etree.fromstring(data, parser())
