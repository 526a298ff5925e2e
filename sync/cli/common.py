"""What every command shares: exit codes, the usage error, loading the config, printing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sync.config import Config, load_config
from sync.errors import DteSyncError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or configuration: exit code 2."""


Command = Callable[[argparse.Namespace], int]


class Registry:
    """Where each area of the CLI adds its commands (and groups of sub-actions, like `caf`)."""

    def __init__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser,
                 dest: str = "") -> None:
        self._sub, self._common, self._dest = sub, common, dest

    def command(self, name: str, func: Command, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = self._sub.add_parser(name, parents=[self._common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    def hidden(self, name: str, func: Command) -> argparse.ArgumentParser:
        """A command other processes of dtesync run, left out of the help."""
        p: argparse.ArgumentParser = self._sub.add_parser(name, parents=[self._common])
        p.set_defaults(func=func)
        self._sub._choices_actions = [a for a in self._sub._choices_actions if a.dest != name]
        return p

    def group(self, name: str, help: str, dest: str = "action") -> Registry:
        p = self._sub.add_parser(name, help=help, description=help)
        return Registry(p.add_subparsers(title="actions", metavar="ACTION", dest=dest, required=True), self._common, dest)


def load(args: argparse.Namespace) -> Config:
    """The configuration named by --config (or the default); a problem is a UsageError."""
    try:
        return load_config(args.config)
    except DteSyncError as exc:
        raise UsageError(exc.message("es")) from None


def load_optional(args: argparse.Namespace) -> Config | None:
    """Like `load`, but None when no --config was given and the default file does not exist."""
    try:
        return load_config(args.config)
    except DteSyncError as exc:
        if args.config is None and exc.code == "CONFIG_MISSING":
            return None
        raise UsageError(exc.message("es")) from None


def print_errors(errors: list[DteSyncError], lang: str) -> None:
    for e in errors:
        where = ":".join(str(x) for x in (e.source, e.line) if x is not None)
        loc = f" [{e.path}]" if e.path else ""
        print(f"  {e.code}{loc} {where + ': ' if where else ''}{e.message(lang)}", file=sys.stderr)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
