"""Document commands: `convert` (one input, no daemon), `verify` (any DTE or envelope) and
`caf import|list|stock`."""

from __future__ import annotations

import argparse
import hashlib
import sys
from datetime import date
from pathlib import Path

from sync.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    Registry,
    UsageError,
    load,
    load_optional,
    print_errors,
)
from sync.errors import DteSyncError, DteSyncErrors, as_error_list
from sync.sii import TipoDte


def register(r: Registry) -> None:
    p = r.command("convert", cmd_convert, "one input file -> signed DTE and envelope (takes a real folio)")
    p.add_argument("file", type=Path)
    p.add_argument("-o", "--out", type=Path, default=Path("."), help="output folder (default: current)")

    p = r.command("verify", cmd_verify, "check signatures, timbre, CAF, totals and schema of DTE/EnvioDTE/EnvioBOLETA files")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("-q", "--quiet", action="store_true", help="only the verdict per file")

    caf = r.group("caf", "CAF files (folio authorizations): import, list, stock")
    p = caf.command("import", cmd_caf, "import CAF files from the SII")
    p.add_argument("files", type=Path, nargs="+")
    for action, text in (("list", "the loaded CAFs"), ("stock", "folios available per TipoDTE, pending annulments")):
        caf.command(action, cmd_caf, text).set_defaults(files=[])


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
    from sync.fileio import atomic_write

    atomic_write(dte_path, issued.dte_xml)
    atomic_write(envio_path, envelope)
    print(
        f"{args.file}: TipoDTE {issued.tipo_dte} folio {issued.folio} total {issued.monto_total} -> "
        f"{dte_path} (DTE firmado), {envio_path} ({TipoDte(issued.tipo_dte).envelope})"
    )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from sync.runtime import trusted_caf_keys
    from sync.verify import verify_bytes

    config = load_optional(args)
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
            elif (c := result.caf) is not None:
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
