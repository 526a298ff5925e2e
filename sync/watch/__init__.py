"""Inbox watching: completeness rules (rules), hint observers (observer), the loop (inbox)."""

from sync.watch.inbox import InboxWatcher, Ready, resolve_watch_mode
from sync.watch.rules import Hint, Kind, Verdict, classify_name, split_name

__all__ = ["InboxWatcher", "Ready", "resolve_watch_mode", "Hint", "Kind", "Verdict", "classify_name", "split_name"]
