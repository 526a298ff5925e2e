"""What an inbox entry is, and when a file is complete: pure decisions, no I/O.

The ERP contract (docs/daemon.md, "The inbox"): one document per `.txt`/`.json`/`.xml` file; names
starting with `.`/`~` or ending in `.tmp`/`.part` are someone's work in progress and are
ignored until renamed; `NAME.done` markers are signals, not inputs; sub-folders are
printing stations when configured, anything else is left alone with a warning.

Completeness, in order of confidence: the file was renamed into place or its writer closed
it (inotify IN_CLOSE_WRITE) -> complete now; a `NAME.done` marker exists -> complete now;
otherwise its size and mtime must stay the same for `stable_window` seconds. An empty
file is never complete: it waits for content and is rejected after `empty_timeout`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

INPUT_EXTENSIONS = (".txt", ".json", ".xml")
MARKER_SUFFIX = ".done"
TEMP_SUFFIXES = (".tmp", ".part")
# OS droppings that are never documents (Windows Explorer, macOS Finder, Office locks).
OS_DROPPINGS = frozenset({"thumbs.db", "desktop.ini"})


class Kind(enum.Enum):
    IGNORE = "ignore"  # temp/hidden/OS file: not ours (yet)
    MARKER = "marker"  # NAME.done
    INPUT = "input"  # .txt/.json/.xml
    FOREIGN = "foreign"  # any other extension: claimed, then rejected (INPUT_UNKNOWN_FORMAT)


def classify_name(name: str) -> Kind:
    """Classify a file name (not a path) by the inbox contract."""
    low = name.lower()
    if not name or name[0] in ".~" or low.endswith(TEMP_SUFFIXES) or low in OS_DROPPINGS:
        return Kind.IGNORE
    if low.endswith(MARKER_SUFFIX):
        return Kind.MARKER
    if low.endswith(INPUT_EXTENSIONS):
        return Kind.INPUT
    return Kind.FOREIGN


def split_name(name: str) -> tuple[str, str]:
    """NAME and .ext of an input: `F1.txt` -> (`F1`, `.txt`); the outbox is keyed on NAME."""
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


def marker_names(name: str) -> tuple[str, str]:
    """The two accepted marker spellings for an input: `F1.done` and `F1.txt.done`."""
    return split_name(name)[0] + MARKER_SUFFIX, name + MARKER_SUFFIX


def station_of(folder: str, stations: frozenset[str] | None) -> tuple[bool, str | None]:
    """(accepted, station) for an inbox-relative folder ('' is the inbox root).

    `stations=None` accepts any first-level sub-folder as a station; a set accepts only
    those names. Deeper folders are never inputs.
    """
    if folder == "":
        return True, None
    if "/" in folder or "\\" in folder:
        return False, None
    if stations is None or folder in stations:
        return True, folder
    return False, None


class Hint(enum.Enum):
    SCAN = "scan"  # seen in a listing: no evidence about the writer
    CREATED = "created"  # created: a writer is probably still at work
    MODIFIED = "modified"
    CLOSED = "closed"  # writer closed it (inotify IN_CLOSE_WRITE)
    MOVED = "moved"  # renamed into place: the rename contract says complete


@dataclass(frozen=True)
class Observation:
    size: int
    mtime_ns: int
    is_symlink: bool = False
    has_marker: bool = False
    settled: bool = False  # its mtime says nobody has written it for longer than the window


class Verdict(enum.Enum):
    WAIT = "wait"
    READY = "ready"  # claim it and process
    EMPTY = "empty"  # claim it and reject as INPUT_EMPTY


@dataclass(slots=True)
class Candidate:
    """What we know about one inbox file between first sight and its claim."""

    first_seen: float
    size: int
    mtime_ns: int
    stable_since: float
    complete_hint: bool = False
    next_check: float = 0.0


@dataclass
class Readiness:
    """Tracks candidates and decides when each is complete (pure: the caller passes `now`)."""

    stable_window: float = 0.2
    empty_timeout: float = 30.0
    require_marker: bool = False
    candidates: dict[str, Candidate] = field(default_factory=dict)

    def observe(self, key: str, obs: Observation, hint: Hint, now: float) -> Verdict:
        """Record a fresh stat of `key` and say whether it can be claimed now."""
        if obs.is_symlink:
            self.candidates.pop(key, None)
            return Verdict.READY  # the link itself is claimed and rejected, never followed
        c = self.candidates.get(key)
        if c is None:
            c = Candidate(now, obs.size, obs.mtime_ns, now)
            self.candidates[key] = c
        elif (c.size, c.mtime_ns) != (obs.size, obs.mtime_ns):
            c.size, c.mtime_ns, c.stable_since = obs.size, obs.mtime_ns, now
            c.complete_hint = False
        if hint in (Hint.CLOSED, Hint.MOVED):
            c.complete_hint = True
        verdict = self._decide(c, obs, now)
        if verdict is Verdict.WAIT:
            c.next_check = self._next_check(c, obs, now)
        else:
            del self.candidates[key]
        return verdict

    def defer(self, key: str, size: int, mtime_ns: int, now: float, delay: float = 0.05) -> None:
        """Keep a complete file waiting (for ordering, or parked while the daemon is full); it
        is ready again at its next check, `delay` s from now, if unchanged."""
        self.candidates[key] = Candidate(now, size, mtime_ns, now - self.stable_window, True, now + delay)

    def forget(self, key: str) -> None:
        self.candidates.pop(key, None)

    def due(self, now: float) -> list[str]:
        """Keys whose stability or empty timer has run out: stat them again."""
        return [k for k, c in self.candidates.items() if c.next_check <= now]

    def next_deadline(self) -> float | None:
        return min((c.next_check for c in self.candidates.values()), default=None)

    def _decide(self, c: Candidate, obs: Observation, now: float) -> Verdict:
        if obs.size == 0:
            if obs.has_marker or now - c.first_seen >= self.empty_timeout:
                return Verdict.EMPTY
            return Verdict.WAIT
        if obs.has_marker:
            return Verdict.READY
        if self.require_marker:
            return Verdict.WAIT
        if c.complete_hint or obs.settled or now - c.stable_since >= self.stable_window:
            return Verdict.READY
        return Verdict.WAIT

    def _next_check(self, c: Candidate, obs: Observation, now: float) -> float:
        if obs.size == 0:
            return c.first_seen + self.empty_timeout
        if self.require_marker:
            return now + max(self.stable_window, 1.0)  # the marker's own event or a scan wakes us
        return c.stable_since + self.stable_window
