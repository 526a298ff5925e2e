"""watchdog observers as *hint* sources, and a supervisor that keeps one alive.

Events are hints: each one only makes the inbox loop look at a path (the listing and a
fresh lstat are the truth). So we ask the kernel for as little as possible:

- On Linux the native observer watches IN_CREATE, IN_MOVED_TO and IN_CLOSE_WRITE only.
  Leaving out IN_MOVED_FROM matters for latency: watchdog holds every unmatched
  IN_MOVED_FROM for 0.5 s to pair it with its IN_MOVED_TO, and its queue is FIFO, so each
  claim (a rename *out of* the inbox) would stall every later event by half a second.
- Elsewhere (Windows, macOS) the stock native observer; on network shares the polling one.

The supervisor restarts an observer whose thread or emitter died (watchdog's polling
emitter stops itself on any OSError, e.g. a share that went away: watchdog #1065).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Callable

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from sync.watch.rules import Hint

log = logging.getLogger("dtesync.watch")

# (absolute path, hint, is_directory)
HintSink = Callable[[str, Hint, bool], None]


class _HintHandler(FileSystemEventHandler):
    """Turns watchdog events into (path, hint) calls; never does I/O itself."""

    def __init__(self, sink: HintSink, root: str, on_root_gone: Callable[[], None]) -> None:
        self._sink, self._root, self._on_root_gone = sink, root, on_root_gone

    def dispatch(self, event: FileSystemEvent) -> None:  # noqa: D401 - watchdog API
        try:
            self._dispatch(event)
        except Exception:  # a handler exception would kill watchdog's dispatcher thread
            log.exception("watch: hint handler failed", extra={"event": repr(event)})

    def _dispatch(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        if isinstance(event, FileClosedEvent):
            self._sink(src, Hint.CLOSED, False)
        elif isinstance(event, FileMovedEvent):
            dest = os.fsdecode(event.dest_path)
            if dest:
                self._sink(dest, Hint.MOVED, False)
        elif isinstance(event, FileCreatedEvent):
            self._sink(src, Hint.CREATED, False)
        elif isinstance(event, FileModifiedEvent):
            self._sink(src, Hint.MODIFIED, False)
        elif isinstance(event, DirMovedEvent):
            dest = os.fsdecode(event.dest_path)
            if dest:
                self._sink(dest, Hint.SCAN, True)
        elif isinstance(event, DirCreatedEvent):
            self._sink(src, Hint.SCAN, True)
        elif isinstance(event, DirDeletedEvent) and os.path.normpath(src) == self._root:
            self._on_root_gone()


def _linux_hint_observer() -> BaseObserver | None:
    """An inotify observer without IN_MOVED_FROM (see module docstring), or None if this
    watchdog version's internals differ (then the stock observer is used)."""
    try:
        from watchdog.observers.inotify import InotifyFullEmitter, InotifyObserver, InotifyWatchGroup
        from watchdog.observers.inotify_c import InotifyConstants as C
        from watchdog.observers.inotify_c import InotifyFD
    except ImportError:
        return None

    mask = C.IN_CREATE | C.IN_MOVED_TO | C.IN_CLOSE_WRITE | C.IN_DELETE_SELF

    class HintEmitter(InotifyFullEmitter):
        def on_thread_start(self) -> None:
            self._inotify = InotifyWatchGroup(
                self._inotify_fd,
                os.fsencode(self.watch.path),
                is_recursive=self.watch.is_recursive,
                event_mask=mask,  # type: ignore[arg-type]  # watchdog types it as its Mask flag enum; an int of the same bits
                follow_symlink=False,
            )

    class HintObserver(InotifyObserver):
        def __init__(self) -> None:
            self._inotify_fd = InotifyFD()
            self._inotify_fd.start()
            BaseObserver.__init__(self, HintEmitter, timeout=1.0, inotify_fd=self._inotify_fd)

    try:
        return HintObserver()
    except TypeError:  # different constructor signatures in another watchdog release
        return None


def make_observer(mode: str, poll_interval: float) -> BaseObserver:
    """'events' -> the platform's native observer; 'poll' -> PollingObserver."""
    if mode == "poll":
        return PollingObserver(timeout=poll_interval)
    if sys.platform.startswith("linux"):
        obs = _linux_hint_observer()
        if obs is not None:
            return obs
        log.warning("watch: using the stock inotify observer (moves out of the inbox add 0.5 s latency)")
    from watchdog.observers import Observer

    return Observer()


class ObserverSupervisor:
    """Owns the observer; `check()` (called from the inbox loop) restarts a dead one."""

    def __init__(self, root: Path, mode: str, sink: HintSink, *, poll_interval: float = 0.5) -> None:
        self.root = os.path.normpath(str(root))
        self.mode, self.sink, self.poll_interval = mode, sink, poll_interval
        self.observer: BaseObserver | None = None
        self.restarts = 0
        self._root_gone = False

    def start(self) -> bool:
        """Start an observer; False (logged) when the platform refuses, e.g. inotify limits."""
        self._root_gone = False
        handler = _HintHandler(self.sink, self.root, self._mark_root_gone)
        try:
            obs = make_observer(self.mode, self.poll_interval)
            obs.schedule(handler, self.root, recursive=True)
            obs.start()
        except OSError as exc:
            log.error("watch: observer failed to start; relying on scans", extra={"error": str(exc), "mode": self.mode})
            self.observer = None
            return False
        self.observer = obs
        return True

    def healthy(self) -> bool:
        obs = self.observer
        if obs is None or self._root_gone or not obs.is_alive():
            return False
        emitters = list(getattr(obs, "emitters", ()))
        return bool(emitters) and all(e.is_alive() for e in emitters)

    def check(self) -> bool:
        """Restart the observer if it died; True when a restart happened (rescan then)."""
        if self.healthy():
            return False
        log.warning("watch: observer is not running; restarting it", extra={"mode": self.mode})
        self.stop()
        self.restarts += 1
        if os.path.isdir(self.root):
            self.start()
        return True

    def stop(self) -> None:
        obs, self.observer = self.observer, None
        if obs is None:
            return
        try:
            obs.stop()
            obs.join(timeout=5)
        except Exception:  # a dying observer may raise anything; it is being replaced
            log.debug("watch: error while stopping observer", exc_info=True)

    def _mark_root_gone(self) -> None:
        self._root_gone = True
