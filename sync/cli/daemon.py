"""The daemon-side commands: `run`, `demo`, `status`, `queue`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync.cli.common import EXIT_FAIL, EXIT_OK, Registry, UsageError, load, print_table
from sync.engine_pipe import Launched
from sync.errors import DteSyncError
from sync.states import FINAL, VALID, DocState

if TYPE_CHECKING:
    from sync.config import Config
    from sync.fakesii import FakeSii

DONE_STATES = frozenset(DocState) - {DocState.RECEIVED, DocState.DUPLICATE}
BAD_SAMPLE_NAME = "99_rut_invalido.txt"
BAD_SAMPLE = (
    "# Ejemplo con un error a propósito: el dígito verificador del RUT receptor es incorrecto.\n"
    "[Encabezado.IdDoc]\nTipoDTE=33\n"
    "[Encabezado.Receptor]\nRUTRecep=77123456-0\nRznSocRecep=Cliente con RUT mal escrito\n"
    "GiroRecep=Comercio\nDirRecep=Calle 1\nCmnaRecep=Santiago\n"
    "[Detalle]\nNmbItem=Producto\nQtyItem=1\nPrcItem=1000\n"
)


def register(r: Registry) -> None:
    r.command("run", cmd_run, "run the daemon in the foreground (inbox -> outbox) until SIGTERM/SIGINT")
    p = r.command("demo", cmd_demo, "build a sandbox in DIR and process sample files end to end")
    p.add_argument("dir", nargs="?", type=Path, default=Path("dtesync-demo"))
    p.add_argument("--serve", action="store_true", help="keep the daemon running on the sandbox afterwards")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the samples (default 120)")
    p = r.command("status", cmd_status, "counts by state, folio stock per type and the last errors")
    p.add_argument("--json", action="store_true")
    p.add_argument("--cluster", action="store_true", help="cluster mode: every site's documents, leases and last contact")
    r.command("queue", cmd_queue, "documents not yet final, oldest first")
    r.hidden("_engine-worker", cmd_engine_worker)  # started by the daemon itself (sync.engine_process)


def cmd_run(args: argparse.Namespace) -> int:
    config = load(args)
    # The engine worker starts first: its imports and its opening of the certificate overlap
    # the daemon's own imports below (about 0.35 s off every start; sync.engine_pipe).
    launched = Launched(config) if config.daemon.engine_processes else None
    try:
        return _run(args, config, launched)
    finally:
        if launched is not None:
            launched.discard()  # a no-op once the engine took it


def _run(args: argparse.Namespace, config: Config, launched: Launched | None) -> int:
    from sync.app import build_app
    from sync.daemon import install_signal_handlers
    from sync.logs import setup_logging
    from sync.service.sd_notify import Notifier, SystemdSupervision

    # Under systemd, LogsDirectory= sets LOGS_DIRECTORY (/var/log/dtesync).
    logs_dir = os.environ.get("LOGS_DIRECTORY", "").split(":")[0] or config.folders.state / "logs"
    setup_logging(Path(logs_dir) / "dtesync.log", level="DEBUG" if args.verbose else "INFO")
    try:
        daemon = build_app(config, launched=launched).daemon
    except DteSyncError as exc:  # e.g. SECRET_FILE_INSECURE, URL_INSECURE: the code for scripts, the message for people
        raise UsageError(f"{exc.code}: {exc.message(config.language)}") from None
    stop = threading.Event()
    install_signal_handlers(stop)
    supervision = SystemdSupervision(Notifier.from_env())  # no-op outside a Type=notify unit
    try:
        daemon.run(stop, on_tick=supervision, tick=supervision.tick)
    except DteSyncError as exc:  # e.g. DAEMON_ALREADY_RUNNING: the code for scripts, the message for people
        print(f"dtesync: {exc.code}: {exc.message(config.language)}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from sync.app import build_app
    from sync.config import load_config
    from sync.daemon import install_signal_handlers
    from sync.runtime import trusted_caf_keys
    from sync.sandbox.build import copy_examples, create_sandbox
    from sync.verify import verify_bytes

    started = time.monotonic()
    sandbox = create_sandbox(args.dir)
    config = load_config(sandbox.config_path)
    print(f"Sandbox en {sandbox.root} (configuración: {sandbox.config_path})")
    fake = _demo_fake_sii(config)  # a local SII stand-in: the documents reach `accepted`
    print(f"fake-sii (SII de prueba local) en {fake.url}")
    app = build_app(config)
    daemon = app.daemon
    daemon.start()
    panel: Any = app.stage("web")
    if panel is not None and panel.wait_ready(10) and panel.url:
        print(f"Panel: {panel.url}")
    try:
        dropped = copy_examples(sandbox.inbox)
        bad = sandbox.inbox / BAD_SAMPLE_NAME
        bad.with_suffix(".tmp").write_text(BAD_SAMPLE, encoding="utf-8")
        bad.with_suffix(".tmp").replace(bad)
        dropped.append(bad)
        statuses = _wait_for_statuses(config.folders.outbox, [p.stem for p in dropped], args.timeout, FINAL)
        keys = trusted_caf_keys(config)
        rows = []
        for path in dropped:
            st = statuses.get(path.stem) or {}
            xml = config.folders.outbox / f"{path.stem}.xml"
            verified = "-"
            if st.get("state") in VALID and xml.exists():
                verified = "sí" if verify_bytes(xml.read_bytes(), xml.name, caf_keys=keys).ok else "NO"
            err = (st.get("errors") or [{}])[0].get("code", "")
            rows.append((path.name, st.get("state", "(sin estado)"), st.get("tipo_dte") or "", st.get("folio") or "",
                         st.get("monto_total") or "", verified, err))
        print_table(["archivo", "estado", "tipo", "folio", "total", "verificado", "error"], rows)
        print(
            f"\nResultados en {config.folders.outbox} (NAME.status.json, NAME.xml), entradas archivadas en "
            f"{config.folders.archive}, rechazadas en {config.folders.rejected}.\n"
            f"Verifique un DTE con: dtesync verify --config {sandbox.config_path} {config.folders.outbox}/33_factura-txt.xml\n"
            f"Procesado en {time.monotonic() - started:.1f} s."
        )
        expected_ok = all(r[1] == "accepted" and r[5] == "sí" for r in rows if r[0] != BAD_SAMPLE_NAME)
        expected_bad = any(r[0] == BAD_SAMPLE_NAME and r[1] == "rejected_input" for r in rows)
        if args.serve:
            print("Sirviendo: deje archivos en la bandeja de entrada; Ctrl+C para terminar.")
            stop = threading.Event()
            install_signal_handlers(stop)
            while not stop.wait(0.5):
                pass
        return EXIT_OK if expected_ok and expected_bad else EXIT_FAIL
    finally:
        daemon.stop()
        fake.stop()


def _demo_fake_sii(config: Config) -> FakeSii:
    """Start fake-sii on a free loopback port and point the demo's uplink at it (in memory:
    the sandbox's dtesync.toml keeps `kind = "none"` until an admin points it somewhere)."""
    from sync.fakesii import FakeSii
    from sync.runtime import trusted_caf_keys
    from sync.uplink.settings import UplinkConfig

    fake = FakeSii(caf_keys=trusted_caf_keys(config), processing_polls=1).start()
    config.uplink = UplinkConfig(kind="sii", url=fake.url, batch_max=50, batch_wait=0.3, backoff_base=0.5,
                                 backoff_cap=5, poll_first=0.2, poll_base=0.2, poll_cap=1, uncertain_wait=0.5,
                                 drain_interval=0.2, poll_interval=0.2, connect_timeout=2, read_timeout=10)
    return fake


def _wait_for_statuses(outbox: Path, stems: list[str], timeout: float,
                       done: frozenset[str] = DONE_STATES) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for stem in stems:
            if stem in found:
                continue
            path = outbox / f"{stem}.status.json"
            try:
                status = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if status.get("state") in done:
                found[stem] = status
        if len(found) == len(stems):
            break
        time.sleep(0.05)
    return found


def cmd_status(args: argparse.Namespace) -> int:
    from datetime import date

    from sync.filing import journal_snapshot
    from sync.journal import FILE_NAME as JOURNAL_FILE
    from sync.journal import Journal
    from sync.runtime import open_folio_store

    config = load(args)
    if args.cluster:
        from sync.cli.cluster import cmd_status_cluster

        return cmd_status_cluster(config, as_json=args.json)
    journal_path = config.folders.state / JOURNAL_FILE
    snap: dict[str, Any] = {"counts": {}}
    if journal_path.exists():
        with Journal.open_readonly(journal_path) as journal:
            snap = journal_snapshot(journal, config.language)
            if config.cluster is not None:  # changes not yet shipped to the cluster (docs/sites.md)
                snap["cluster_record"] = _unshipped(journal)
    with open_folio_store(config) as store:
        snap["folios"] = [
            {"tipo_dte": r.tipo_dte, "available": r.available, "next_folio": r.next_folio,
             "expires_on": r.expires_on.isoformat() if r.expires_on else None}
            for r in store.stock(date.today())
        ]
        snap["pending_annulment"] = len(store.pending_annulment())
    from sync.reports import current_alerts

    snap["alerts"] = [{"code": a.code, "level": a.level, "message": a.message(config.language)}
                      for a in current_alerts(config, date.today())]
    if args.json:
        print(json.dumps(snap, ensure_ascii=False, indent=2, default=str))
        return EXIT_OK
    print("Documentos por estado:")
    for state, n in sorted(snap.get("counts", {}).items()):
        print(f"  {state:<26} {n}")
    print("Folios disponibles:")
    for f in snap["folios"]:
        print(f"  TipoDTE {f['tipo_dte']:<4} {f['available']:>8}  vence {f['expires_on'] or '-'}")
    print(f"Folios pendientes de anulación: {snap['pending_annulment']}")
    if "cluster_record" in snap:
        print(f"Cambios por enviar al cluster: {snap['cluster_record']}")
    for a in snap["alerts"]:
        print(f"{'ERROR' if a['level'] == 'ERROR' else 'AVISO'} {a['code']}: {a['message']}")
    errors = snap.get("last_errors") or []
    if errors:
        print("Últimos errores:")
        for e in errors:
            first = (e.get("errors") or [{}])[0]
            print(f"  {e['source']}: {first.get('code')} {first.get('message', '')}")
    return EXIT_OK


def _unshipped(journal: Any) -> int:
    import sqlite3

    try:
        return int(journal.outbox_stats()[0])
    except sqlite3.OperationalError:  # a journal from before cluster mode, not yet opened by the daemon
        return 0


def cmd_queue(args: argparse.Namespace) -> int:
    from sync.filing import journal_queue
    from sync.journal import FILE_NAME as JOURNAL_FILE
    from sync.journal import Journal


    config = load(args)
    journal_path = config.folders.state / JOURNAL_FILE
    rows = []
    if journal_path.exists():
        with Journal.open_readonly(journal_path) as journal:
            rows = journal_queue(journal)
    if not rows:
        print("Cola vacía: no hay documentos pendientes.")
        return EXIT_OK
    print_table(["id", "archivo", "estación", "etapa", "estado", "intentos", "edad (s)"],
                 [(r["id"], r["source"], r["station"] or "", r["step"], r["state"], r["attempts"], r["age_s"]) for r in rows])
    return EXIT_OK


def cmd_engine_worker(args: argparse.Namespace) -> int:
    """The daemon's engine process: it talks to the daemon over stdin/stdout (not for people)."""
    from sync.engine_process import serve_stdio

    return serve_stdio()
