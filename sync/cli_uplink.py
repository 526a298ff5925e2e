"""Uplink commands: `fake-sii` (a local SII stand-in), `retry` (send waiting documents now) and
`report` (the daily informe de ventas on demand)."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from pathlib import Path


def register(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("fake-sii", cmd_fake_sii, "run a local SII-compatible endpoint (seed/token, DTEUpload, "
                "QueryEstUp, boleta REST, provider API) for tests and integrators")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that time out, reset or fail 500")
    p.add_argument("--reject-rate", type=float, default=0.0, help="share of documents rejected (RCH)")
    p.add_argument("--objection-rate", type=float, default=0.0, help="share of documents accepted with objections")
    p.add_argument("--processing-polls", type=int, default=1, help="status queries that still answer 'in process'")
    p.add_argument("--provider-token", help="bearer token of the provider API (/provider/v1)")
    p.add_argument("--folder", type=Path, help="also keep every accepted envelope here")
    p.add_argument("--seed", type=int, help="random seed for reproducible faults")
    p = command("report", cmd_report, "write the daily sales report (informe de ventas) to outbox/reports/ as CSV and PDF")
    p.add_argument("--date", help="the day, YYYY-MM-DD (default: today)")
    p = command("retry", cmd_retry, "make every document waiting for the SII due now (the daemon sends them)")
    p.add_argument("ids", nargs="*", type=int, help="document ids (default: all waiting)")


def cmd_fake_sii(args: argparse.Namespace) -> int:
    from sync.cli import EXIT_OK, load
    from sync.daemon import install_signal_handlers
    from sync.fakesii import FakeSii, Faults
    from sync.runtime import trusted_caf_keys

    config = load(args, required=False)
    faults = Faults.mixed(args.fault_rate, seed=args.seed, reject=args.reject_rate, objection=args.objection_rate)
    fake = FakeSii(host=args.host, port=args.port, faults=faults, processing_polls=args.processing_polls,
                   caf_keys=trusted_caf_keys(config) if config else {}, provider_token=args.provider_token,
                   folder=args.folder).start()
    print(f"fake-sii escuchando en {fake.url} (uplink.url = \"{fake.url}\"); Ctrl+C para terminar.", flush=True)
    stop = threading.Event()
    install_signal_handlers(stop)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
        print(f"fake-sii: {fake.stats()}")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    from sync.cli import EXIT_OK, load
    from sync.uplink.build import JOURNAL_FILE
    from sync.uplink.queue import UplinkQueue

    config = load(args)
    path = config.folders.state / JOURNAL_FILE
    if not path.exists():
        print("No hay cola de envío.")
        return EXIT_OK
    queue = UplinkQueue(path)
    n = queue.retry_now(args.ids or None)
    print(f"{n} documento(s) quedan listos para enviarse ahora; en cola: {queue.counts()}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import date

    from sync.cli import EXIT_OK, UsageError, load
    from sync.reports import build_report, write_report

    config = load(args)
    try:
        day = date.fromisoformat(args.date) if args.date else date.today()
    except ValueError:
        raise UsageError(f"--date: se esperaba AAAA-MM-DD, se encontró {args.date!r}") from None
    report = build_report(config, day)
    csv_path, pdf_path = write_report(report, config.folders.outbox)
    t = report.totals()
    total = f"{t['total']:,}".replace(",", ".")
    print(f"Informe de ventas {day.isoformat()}: {sum(r.documentos for r in report.rows)} documento(s), total ${total}"
          f"\n  {csv_path}\n  {pdf_path}")
    return EXIT_OK
