"""Freed memory handed back to the operating system once a run of work drains.

CPython frees a drained backlog's objects into the C allocator, and glibc keeps the freed pages
in each thread's arena: a daemon that signed 10 000 documents kept about their high-water mark
resident while it idled, and while its PDFs were rendered. `malloc_trim(0)` returns every whole
free page of every arena (madvise) in a few milliseconds. Other C libraries (Windows, macOS,
musl) have no such call and give memory back on their own terms: there `Trimmer` does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

TRIM_AFTER = 1000  # documents: a run shorter than this leaves too little behind to bother


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        fn = ctypes.CDLL(None).malloc_trim  # glibc only; CDLL(None) is refused on Windows
    except (AttributeError, OSError, TypeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


class Trimmer:
    """Counts the documents of a run; `drained()` trims once the run was long enough. Used by
    one thread each (the daemon's ingest loop, the engine worker's main loop)."""

    def __init__(self, after: int = TRIM_AFTER, trim: Callable[[int], int] | None = None) -> None:
        self.after = after
        self.documents = 0
        self._trim = trim if trim is not None else _malloc_trim()

    @property
    def available(self) -> bool:
        return self._trim is not None

    def worked(self, documents: int) -> None:
        self.documents += documents

    def drained(self) -> bool:
        """The run is over (nothing left to do): trim if it was long enough. True if trimmed."""
        if self._trim is None or self.documents < self.after:
            return False
        self.documents = 0
        self._trim(0)
        return True
