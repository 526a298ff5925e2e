"""`dtesync` command line. Exit codes: 0 ok, 1 failure, 2 usage or configuration error.

Every command takes `--config PATH` (default: DTESYNC_CONFIG, then the platform's standard
location). Commands are thin: they load the config, call the stage modules, print.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Callable

from sync import __version__
from sync.config import Config, default_config_path, load_config
from sync.errors import DteSyncError, DteSyncErrors, as_error_list

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

# Each of these modules has `register(command)` adding its sub-commands (one module per area).
COMMAND_MODULES = ("sync.cli_daemon", "sync.cli_service", "sync.cli_print", "sync.cli_uplink")

log = logging.getLogger("dtesync.cli")


class UsageError(Exception):
    """Bad arguments or configuration: exit code 2."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    _setup_console_logging(args.verbose)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"dtesync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAIL


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="configuration file (default: $DTESYNC_CONFIG or %s)" % default_config_path())
    common.add_argument("-v", "--verbose", action="store_true", help="log more detail to stderr")

    parser = argparse.ArgumentParser(prog="dtesync", description="ERP files -> SII DTE, signed and verified.")
    parser.add_argument("--version", action="version", version=f"dtesync {__version__}")
    parser.set_defaults(verbose=False)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = command("convert", cmd_convert, "one input file -> signed DTE and envelope (takes a real folio)")
    p.add_argument("file", type=Path)
    p.add_argument("-o", "--out", type=Path, default=Path("."), help="output folder (default: current)")

    p = command("verify", cmd_verify, "check signatures, timbre, CAF, totals and schema of DTE/EnvioDTE/EnvioBOLETA files")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("-q", "--quiet", action="store_true", help="only the verdict per file")

    caf = sub.add_parser("caf", help="CAF files (folio authorizations): import, list, stock")
    caf_sub = caf.add_subparsers(title="actions", metavar="ACTION", dest="action", required=True)
    p = caf_sub.add_parser("import", parents=[common], help="import CAF files from the SII")
    p.add_argument("files", type=Path, nargs="+")
    p.set_defaults(func=cmd_caf)
    for action, text in (("list", "the loaded CAFs"), ("stock", "folios available per TipoDTE, pending annulments")):
        caf_sub.add_parser(action, parents=[common], help=text).set_defaults(func=cmd_caf, files=[])

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(command)
    return parser


# ---- helpers ------------------------------------------------------------------------------
def _setup_console_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def load(args: argparse.Namespace, *, required: bool = True) -> Config | None:
    path = args.config
    try:
        return load_config(path)
    except DteSyncError as exc:
        if not required and path is None and exc.code == "CONFIG_MISSING":
            return None
        raise UsageError(exc.message("es")) from None


def print_errors(errors: list[DteSyncError], lang: str) -> None:
    for e in errors:
        where = ":".join(str(x) for x in (e.source, e.line) if x is not None)
        loc = f" [{e.path}]" if e.path else ""
        print(f"  {e.code}{loc} {where + ': ' if where else ''}{e.message(lang)}", file=sys.stderr)


# ---- commands ----------------------------------------------------------------------------------
def cmd_convert(args: argparse.Namespace) -> int:
    from sync.runtime import open_engine

    config = load(args)
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise UsageError(f"{args.file}: {exc.strerror}") from None
    try:
        engine = open_engine(config)
        doc_key = "convert:" + hashlib.sha256(data).hexdigest()
        issued = engine.issue(data, args.file.name, doc_key=doc_key)
        envelope = engine.envelope([issued])
    except (DteSyncError, DteSyncErrors) as exc:
        print(f"{args.file}: rechazado", file=sys.stderr)
        print_errors(as_error_list(exc, args.file.name), config.language)
        return EXIT_FAIL
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.file.stem
    dte_path, envio_path = args.out / f"{stem}.xml", args.out / f"{stem}.envio.xml"
    from sync.outbox import atomic_write

    atomic_write(dte_path, issued.dte_xml)
    atomic_write(envio_path, envelope)
    print(
        f"{args.file}: TipoDTE {issued.tipo_dte} folio {issued.folio} total {issued.monto_total} -> "
        f"{dte_path} (DTE firmado), {envio_path} ({'EnvioBOLETA' if issued.is_boleta else 'EnvioDTE'})"
    )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from sync.runtime import trusted_caf_keys
    from sync.verify import verify_bytes

    config = load(args, required=False)
    keys = trusted_caf_keys(config) if config else {}
    all_ok = True
    for path in args.files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"FAIL {path}: {exc.strerror}")
            all_ok = False
            continue
        report = verify_bytes(data, str(path), caf_keys=keys)
        all_ok &= report.ok
        print(f"{'OK  ' if report.ok else 'FAIL'} {path}")
        if not args.quiet:
            for check in report.checks:
                print(f"     {check}")
    return EXIT_OK if all_ok else EXIT_FAIL


def cmd_caf(args: argparse.Namespace) -> int:
    from sync.runtime import import_caf_file, open_folio_store

    config = load(args)
    store = open_folio_store(config)
    today = date.today()
    if args.action == "import":
        failed = False
        for path in args.files:
            result = import_caf_file(store, config, path, today)
            if result.error:
                failed = True
                print(f"FAIL {path}: {result.error.code} {result.error.message(config.language)}")
            else:
                c = result.caf
                print(f"OK   {path}: TipoDTE {c.tipo_dte} folios {c.desde}-{c.hasta} IDK {c.idk}")
        return EXIT_FAIL if failed else EXIT_OK
    if args.action == "list":
        print(f"{'TipoDTE':>7} {'desde':>9} {'hasta':>9} {'autorizado':>10} {'vence':>10} IDK")
        for c in store.list_cafs():
            print(f"{c.tipo_dte:>7} {c.desde:>9} {c.hasta:>9} {c.fecha_autorizacion.isoformat():>10} "
                  f"{c.expires_on.isoformat() if c.expires_on else '-':>10} {c.idk}")
        return EXIT_OK
    print(f"{'TipoDTE':>7} {'disponibles':>11} {'próximo':>8} {'vence':>10}")
    for row in store.stock(today):
        print(f"{row.tipo_dte:>7} {row.available:>11} {row.next_folio or '-':>8} "
              f"{row.expires_on.isoformat() if row.expires_on else '-':>10}")
    pending = store.pending_annulment()
    if pending:
        print(f"\nFolios pendientes de anulación: {len(pending)}")
        for p in pending:
            print(f"  TipoDTE {p.tipo_dte} folio {p.folio}: {p.reason}")
    return EXIT_OK
