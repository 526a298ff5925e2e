"""Uplink commands: `fake-sii` (a local SII stand-in), `retry` (send waiting documents now) and
`report` (the daily informe de ventas on demand)."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from sync.cli.common import EXIT_OK, Registry, UsageError, load, load_optional


def register(r: Registry) -> None:
    p = r.command("fake-sii", cmd_fake_sii, "run a local SII-compatible endpoint (seed/token, DTEUpload, "
                "QueryEstUp, boleta REST, provider API) for tests and integrators")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that time out, reset or fail 500")
    p.add_argument("--reject-rate", type=float, default=0.0, help="share of documents rejected (RCH)")
    p.add_argument("--objection-rate", type=float, default=0.0, help="share of documents accepted with objections")
    p.add_argument("--processing-polls", type=int, default=1,
                   help="status queries that still answer 'in process' once processing is over")
    p.add_argument("--processing-delay", default="0", metavar="S[-S]",
                   help="seconds an envío takes to process, e.g. 5-120 (envíos and documents invisible meanwhile)")
    p.add_argument("--token-ttl", type=float, default=3600.0, help="session (token) lifetime in seconds")
    p.add_argument("--dead-session", choices=("html", "status5"), default="html",
                   help="DTEUpload's answer to a dead session: the SII's HTML page (default) or STATUS 5")
    p.add_argument("--seed-check", choices=("sii", "strict"), default="sii",
                   help="signed-seed checks: what the SII accepts (default) or the manual's profile exactly")
    p.add_argument("--rate-limit", metavar="N/S", help="boleta REST: at most N requests per S seconds")
    p.add_argument("--rate-limit-status", type=int, choices=(405, 429), default=429)
    p.add_argument("--lost-answer", type=float, default=0.5,
                   help="share of upload timeouts that happen after the upload was filed (default 0.5)")
    p.add_argument("--lost-uploads", type=float, default=0.0,
                   help="share of uploads filed whose answer is then lost (the connection stalls past --stall)")
    p.add_argument("--stall", type=float, default=2.0, help="seconds a timed-out request holds the connection")
    p.add_argument("--force", action="append", default=[], metavar="SERVICE=CODE[@SECONDS]",
                   help="answer CODE to SERVICE (seed, token, upload, boleta_upload, est_up, est_dte, boleta_estado, "
                        "boleta_doc) once, or for SECONDS; e.g. token=-07@120 (enrolment refused for 2 minutes)")
    p.add_argument("--provider-token", help="bearer token of the provider API (/provider/v1)")
    p.add_argument("--folder", type=Path, help="also keep every accepted envelope here")
    p.add_argument("--seed", type=int, help="random seed for reproducible faults")
    p = r.command("report", cmd_report, "write the daily sales report (informe de ventas) to outbox/reports/ as CSV and PDF")
    p.add_argument("--date", help="the day, YYYY-MM-DD (default: today)")
    p = r.command("retry", cmd_retry, "make every document waiting for the SII due now (the daemon sends them), "
                "probe paused channels, and bring back documents rejected for a reason that was not the SII's "
                "verdict on them (certificate, enrolment, an HTTP error)")
    p.add_argument("ids", nargs="*", type=int, help="document ids (default: all waiting)")


def cmd_fake_sii(args: argparse.Namespace) -> int:
    from sync.daemon import install_signal_handlers
    from sync.fakesii import Behaviour, FakeSii, Faults
    from sync.runtime import trusted_caf_keys

    config = load_optional(args)
    try:
        lo, _, hi = args.processing_delay.partition("-")
        delay = (float(lo), float(hi or lo))
        n, _, per = (args.rate_limit or "").partition("/")
        rate = (int(n), float(per)) if args.rate_limit else None
        forced = [(f.split("=", 1)[0], *f.split("=", 1)[1].partition("@")[::2]) for f in args.force]
    except (ValueError, IndexError):
        raise UsageError("--processing-delay S[-S], --rate-limit N/S, --force SERVICE=CODE[@SECONDS]") from None
    faults = Faults.mixed(args.fault_rate, seed=args.seed, reject=args.reject_rate, objection=args.objection_rate,
                          lost_answer=args.lost_answer, stall=args.stall)
    if args.lost_uploads:
        if args.fault_rate:
            raise UsageError("--lost-uploads and --fault-rate are exclusive")
        faults = Faults(timeout=args.lost_uploads, lost_answer=1.0, groups=("upload",), stall=args.stall,
                        seed=args.seed, reject=args.reject_rate, objection=args.objection_rate)
    behaviour = Behaviour(processing_delay=delay, processing_polls=args.processing_polls, token_ttl=args.token_ttl,
                          dead_session=args.dead_session, seed_check=args.seed_check, rate_limit=rate,
                          rate_limit_status=args.rate_limit_status)
    fake = FakeSii(host=args.host, port=args.port, faults=faults, behaviour=behaviour,
                   caf_keys=trusted_caf_keys(config) if config else {}, provider_token=args.provider_token,
                   folder=args.folder)
    try:
        for service, code, seconds in forced:
            fake.forced.force(service, code, seconds=float(seconds) if seconds else None)
    except ValueError as exc:
        raise UsageError(f"--force: {exc}") from None
    fake.start()
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
    from sync.uplink.answers import Kind, stored_reason_kind
    from sync.uplink.build import open_queue

    config = load(args)
    with open_queue(config.folders.state) as queue:
        revived = queue.revive(args.ids or None, lambda reason: stored_reason_kind(reason) is not Kind.VERDICT)
        n = queue.retry_now(args.ids or None)
        paused = queue.paused()
        if revived:
            print(f"{len(revived)} documento(s) rechazado(s) por un problema que no era del documento vuelven a la "
                  f"cola (se consulta al SII antes de reenviarlos): {', '.join(map(str, revived))}")
        if paused:
            print("Canal(es) en pausa por la instalación, se probarán en el próximo ciclo: "
                  + ", ".join(p.channel for p in paused))
        print(f"{n} documento(s) quedan listos para enviarse ahora; en cola: {queue.counts()}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import date

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
