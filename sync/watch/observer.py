"""Hint sources (inotify, watchdog observers) and a supervisor that keeps one alive.

Events are hints: each one only makes the inbox loop look at a path (the listing and a
fresh lstat are the truth). So we ask the kernel for as little as possible, and spend as
little as possible on each event:

- On Linux, `InotifyHints`: watchdog's inotify reader (`InotifyFD`) calls us with each raw
  event, and we turn it into a hint on the spot. watchdog's own observer stack hands every
  event through four threads (reader, dispatcher, emitter, observer) and a queue that pairs
  moves; in a 2 000-file burst (three events a file: the writer's temp file created and
  closed, then renamed into place) those threads held the interpreter lock so often that
  claiming the first 18 files took 115 ms while the engine sat idle. Temp names are dropped
  here and never reach the inbox loop. Only IN_CREATE, IN_MOVED_TO and IN_CLOSE_WRITE are
  asked for: a rename *out of* the inbox (each claim) is nobody's business.
- Elsewhere (Windows, macOS) the stock native observer; on network shares the polling one.

The supervisor restarts a source that died (watchdog's polling emitter stops itself on any
OSError, e.g. a share that went away: watchdog #1065).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

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

from sync.watch.rules import Hint, Kind, classify_name

if TYPE_CHECKING:
    from watchdog.observers.inotify_c import CallbackId, InotifyEvent, InotifyFD, Mask, WatchCallback, WatchDescriptor

log = logging.getLogger("dtesync.watch")

# (absolute path, hint, is_directory)
HintSink = Callable[[str, Hint, bool], None]


class HintSource(Protocol):
    """Something that calls a HintSink from its own thread(s) until stopped."""

    def start(self) -> None:
        """Begin watching; OSError when the platform refuses (e.g. inotify limits)."""

    def alive(self) -> bool:
        """False once it stopped delivering (its thread died, or the watched root went away)."""

    def stop(self) -> None:
        """Stop and release it; never raises."""


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


class WatchdogHints:
    """A watchdog observer (polling, or a platform's native one) as a hint source."""

    def __init__(self, observer: BaseObserver, root: str, sink: HintSink) -> None:
        self._observer, self._root, self._sink = observer, root, sink
        self._root_gone = False

    def start(self) -> None:
        self._observer.schedule(_HintHandler(self._sink, self._root, self._mark_root_gone), self._root, recursive=True)
        self._observer.start()

    def alive(self) -> bool:
        obs = self._observer
        if self._root_gone or not obs.is_alive():
            return False
        emitters = list(obs.emitters)
        return bool(emitters) and all(e.is_alive() for e in emitters)

    def stop(self) -> None:
        try:
            self._observer.stop()
            self._observer.join(timeout=5)
        except Exception:  # a dying observer may raise anything; it is being replaced
            log.debug("watch: error while stopping observer", exc_info=True)

    def _mark_root_gone(self) -> None:
        self._root_gone = True


@functools.cache  # one class, however many sources a supervisor starts
def _reader_class() -> type[InotifyFD]:
    """watchdog's InotifyFD, closing its descriptors however it ends. watchdog's own close()
    leaves them open when it comes before the reader thread's first read (a source that
    failed to start, or was stopped at once): a supervisor restarting such a source every
    second would leak an inotify instance each time, and the user's limit is 128."""
    from watchdog.observers.inotify_c import InotifyFD

    class Reader(InotifyFD):
        _released = False

        def _close_resources(self) -> None:  # always under watchdog's lock
            if not self._released:
                self._released = True
                super()._close_resources()

        def _add_callback(self, path: bytes, mask: Mask, callback: WatchCallback, id_: CallbackId) -> WatchDescriptor:
            if self._closed:  # a listing that raced stop(): not a number some other file now has
                raise OSError(errno.EBADF, "the inotify reader is closed")
            return super()._add_callback(path, mask, callback, id_)

        def _remove_callback(self, wd: WatchDescriptor, id_: CallbackId) -> None:
            if not self._closed:
                super()._remove_callback(wd, id_)

        def run(self) -> None:
            try:
                super().run()
            finally:  # stopped, or failed: nothing reads any more (the dispatcher was joined)
                with self._lock:
                    self._closed = True
                    self._close_resources()

    return Reader


class InotifyHints:
    """Linux: raw inotify events as hints (see the module docstring for why not watchdog's
    observer). The inbox is two levels deep, so the watches are the root and each of its
    folders (not dot- or ~-folders, not `ignore`); the folder list is read again whenever a
    folder appears or moves there, or the kernel's queue overflowed."""

    def __init__(self, root: str, sink: HintSink, ignore: frozenset[str] = frozenset()) -> None:
        from watchdog.observers.inotify_c import CallbackId, Mask
        from watchdog.observers.inotify_c import InotifyConstants as C

        self._root, self._sink, self._ignore = root, sink, ignore
        self._C = C
        self._id = CallbackId(1)  # our callback's id on each of watchdog's watches
        events = C.IN_CREATE | C.IN_MOVED_TO | C.IN_CLOSE_WRITE | C.IN_DELETE_SELF | C.IN_MOVE_SELF | C.IN_ONLYDIR
        self._root_mask = Mask(events)  # the configured inbox may be a link to its folder
        self._mask = Mask(events | C.IN_DONT_FOLLOW)  # a link inside it is never followed
        self._fd = _reader_class()()
        self._folders: dict[WatchDescriptor, tuple[str, tuple[int, int]]] = {}  # wd -> (path, (st_dev, st_ino))
        # _folders and the watches: the reader thread and start() both change them. Taken
        # before watchdog's own lock, never inside it (watchdog calls us without holding it).
        self._lock = threading.Lock()
        self._root_id = (0, 0)
        self._root_gone = False

    # --- HintSource --------------------------------------------------------------------------
    def start(self) -> None:
        self._fd.start()
        try:
            with self._lock:
                self._root_id = self._add_watch(self._root, self._root_mask)
            self._rewatch()
        except OSError:
            self.stop()
            raise

    def alive(self) -> bool:
        return not self._root_gone and self._fd.is_alive()

    def stop(self) -> None:
        try:
            self._fd.stop()  # closes the inotify instance and with it every watch
            self._fd.join(timeout=5)
        except Exception:
            log.debug("watch: error while stopping the inotify reader", exc_info=True)

    # --- watchdog's WatchCallback (called on its reader thread) ------------------------------
    def on_event(self, event: InotifyEvent) -> None:
        try:
            self._on_event(event)
        except Exception:  # an exception here would end watchdog's reader: keep it reading
            log.exception("watch: inotify hint failed", extra={"event": repr(event)})

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        with self._lock:
            path, _ = self._folders.pop(wd, (None, 0))
        if path == self._root:
            self._root_gone = True

    def on_queue_overflow(self) -> None:
        log.warning("watch: the kernel dropped inotify events (queue overflow); rescanning the inbox")
        try:  # the root's own DELETE_SELF may have been among the lost events
            st = os.stat(self._root)
            if (st.st_dev, st.st_ino) != self._root_id:
                self._root_gone = True
        except OSError:
            self._root_gone = True
        self._rewatch()

    def on_events_lost(self) -> None:
        self._sink(self._root, Hint.SCAN, True)

    # --- internals -----------------------------------------------------------------------------
    def _on_event(self, event: InotifyEvent) -> None:
        mask, C = event.mask, self._C
        entry = self._folders.get(event.wd)
        if entry is None:
            return
        folder = entry[0]
        if mask & (C.IN_DELETE_SELF | C.IN_MOVE_SELF):
            if folder == self._root:
                self._root_gone = True  # the supervisor starts over when the inbox is back
            else:
                self._rewatch()  # a station folder went away or was renamed
            return
        if not event.name:
            return
        name = os.fsdecode(event.name)
        path = os.path.join(folder, name)
        if mask & C.IN_ISDIR:
            if folder == self._root:
                self._rewatch()
            self._sink(path, Hint.SCAN, True)  # the inbox lists it (and warns about a folder in a station)
            return
        if classify_name(name) is Kind.IGNORE:  # a writer's temp file: most of a burst's events
            return
        if mask & C.IN_MOVED_TO:
            self._sink(path, Hint.MOVED, False)
        elif mask & C.IN_CLOSE_WRITE:
            self._sink(path, Hint.CLOSED, False)
        else:
            self._sink(path, Hint.CREATED, False)

    def _add_watch(self, path: str, mask: Mask) -> tuple[int, int]:
        """Watch `path` (the caller holds _lock); its (st_dev, st_ino). The identity is taken
        before the watch, so a folder replaced in between is seen as new by the next listing."""
        st = os.stat(path, follow_symlinks=path == self._root)
        wd = self._fd.add_callback(os.fsencode(path), mask, self, self._id)
        self._folders[wd] = (path, (st.st_dev, st.st_ino))
        return st.st_dev, st.st_ino

    def _rewatch(self) -> None:
        """Watch the root's folders as they are now: new ones added, gone ones dropped, a
        renamed one followed (inotify keeps its watch; only its path changes). Listing and
        watches change under one lock: an older listing never undoes a newer one."""
        with self._lock:
            listed = {}
            try:
                # is_dir first: the listing's d_type, while a backlog puts 10 000 files beside the folders
                for e in os.scandir(self._root):
                    if e.is_dir(follow_symlinks=False) and e.name[0] not in ".~" and e.path not in self._ignore:
                        try:
                            st = e.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue  # gone since the listing: nothing to watch
                        listed[(st.st_dev, st.st_ino)] = e.path
            except OSError:
                return  # the root itself is gone: its DELETE_SELF says so
            drop = []
            for wd, (path, ident) in list(self._folders.items()):
                if path == self._root:
                    continue
                now = listed.pop(ident, None)
                if now is None:
                    drop.append(wd)
                    del self._folders[wd]
                elif now != path:
                    self._folders[wd] = (now, ident)
            if drop:
                self._fd.remove_callbacks([(wd, self._id) for wd in drop])
            for path in listed.values():
                try:
                    self._add_watch(path, self._mask)
                except FileNotFoundError:
                    continue  # gone again already
                except OSError as exc:
                    log.error("watch: cannot watch station folder; relying on scans",
                              extra={"folder": path, "error": str(exc)})


def make_source(mode: str, root: str, sink: HintSink, *, poll_interval: float,
                ignore: frozenset[str] = frozenset()) -> HintSource:
    """'poll' -> watchdog's PollingObserver; 'events' -> InotifyHints on Linux, else the
    platform's native watchdog observer."""
    if mode == "poll":
        return WatchdogHints(PollingObserver(timeout=poll_interval), root, sink)
    if sys.platform.startswith("linux"):
        try:
            return InotifyHints(root, sink, ignore)
        except (ImportError, AttributeError, TypeError) as exc:  # another watchdog release's internals
            log.warning("watch: using watchdog's stock inotify observer", extra={"error": str(exc)})
    from watchdog.observers import Observer

    return WatchdogHints(Observer(), root, sink)


class ObserverSupervisor:
    """Owns the hint source; `check()` (called from the inbox loop) restarts a dead one. A
    source that fails to start is tried again after 1, 2, 4 ... up to 64 s, not at every check
    (the scans carry the inbox meanwhile). `check()` and `stop()` come from different threads:
    one lock, so a stop never leaves a source that a restart started behind it."""

    def __init__(self, root: Path, mode: str, sink: HintSink, *, poll_interval: float = 0.5,
                 ignore: frozenset[str] = frozenset(), clock: Callable[[], float] = time.monotonic) -> None:
        self.root = os.path.normpath(str(root))
        self.mode, self.sink, self.poll_interval, self.ignore = mode, sink, poll_interval, ignore
        self.source: HintSource | None = None
        self.restarts = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._stopped = False
        self._failures = 0
        self._retry_at = 0.0

    def start(self) -> bool:
        """Start a source; False (logged) when the platform refuses, e.g. inotify limits."""
        with self._lock:
            self._stopped = False
            return self._start()

    def healthy(self) -> bool:
        source = self.source
        return source is not None and source.alive()

    def check(self) -> bool:
        """Restart the source if it died; True when a restart happened (rescan then)."""
        with self._lock:
            if self._stopped or self.healthy() or (self.source is None and self._clock() < self._retry_at):
                return False
            log.warning("watch: observer is not running; restarting it", extra={"mode": self.mode})
            self._drop_source()
            self.restarts += 1
            if os.path.isdir(self.root):
                self._start()
            return True

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._drop_source()

    def _start(self) -> bool:
        try:
            source = make_source(self.mode, self.root, self.sink, poll_interval=self.poll_interval, ignore=self.ignore)
            source.start()
        except OSError as exc:
            self._failures += 1
            self._retry_at = self._clock() + 2.0 ** min(self._failures - 1, 6)
            log.error("watch: observer failed to start; relying on scans", extra={"error": str(exc), "mode": self.mode})
            self.source = None
            return False
        self._failures = 0
        self.source = source
        return True

    def _drop_source(self) -> None:
        source, self.source = self.source, None
        if source is not None:
            source.stop()
