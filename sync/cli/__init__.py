"""`dtesync` command line. Exit codes: 0 ok, 1 failure, 2 usage or configuration error.

Every command takes `--config PATH` (default: DTESYNC_CONFIG, then the platform's standard
location). Commands are thin: they load the config, call the stage modules, print. Each module
of this package registers the commands of one area.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sync import __version__
from sync.cli import admin, daemon, delivery, documents, printing, uplink
from sync.cli.common import EXIT_FAIL, EXIT_USAGE, Registry, UsageError
from sync.config import default_config_path

AREAS = (documents, daemon, admin, printing, uplink, delivery)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    _setup_console_logging(args.verbose)
    try:
        code: int = args.func(args)
        return code
    except UsageError as exc:
        print(f"dtesync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAIL


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help=f"configuration file (default: $DTESYNC_CONFIG or {default_config_path()})")
    common.add_argument("-v", "--verbose", action="store_true", help="log more detail to stderr")

    parser = argparse.ArgumentParser(prog="dtesync", description="ERP files -> SII DTE, signed and verified.")
    parser.add_argument("--version", action="version", version=f"dtesync {__version__}")
    parser.set_defaults(verbose=False)
    registry = Registry(parser.add_subparsers(title="commands", metavar="COMMAND"), common)
    for area in AREAS:
        area.register(registry)
    return parser


def _setup_console_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
