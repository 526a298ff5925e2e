"""The admin's commands: `check`, `service` (Windows service; on Linux, how systemd does it)
and `backup` (journal and folio database, consistent while the daemon runs)."""

from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import sys
from datetime import datetime
from pathlib import Path

from sync.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, Registry, load

SERVICE_ACTIONS = ("install", "start", "stop", "remove", "run")


def register(r: Registry) -> None:
    r.command("check", cmd_check, "everything wrong with this installation (config, certificate, CAF, folders, "
            "printers, uplink), each with its fix; exit 1 if anything fails")
    p = r.command("service", cmd_service, "Windows service: install | start | stop | remove (on Linux: how to use systemd)")
    p.add_argument("action", nargs="?", choices=SERVICE_ACTIONS)
    p.add_argument("--user", help="install: run as this account (DOMAIN\\user) instead of the virtual account "
                   "NT SERVICE\\dtesync, e.g. to reach a share")
    p.add_argument("--erp-group", metavar="GROUP", help="install: the ERP's users or group (DOMAIN\\group): may write "
                   "the inbox and read the outbox, archive and rejected folders, nothing else")
    p.add_argument("--password-env", metavar="VAR", help="install: the account's password is in this environment variable")
    p.add_argument("--dry-run", action="store_true", help="print the Service Control Manager calls instead of making them")
    p = r.command("backup", cmd_backup, "copy every state database (journal, folios, print, uplink and delivery queues; "
                  "SQLite online backup) into DEST/<timestamp>/")
    p.add_argument("dest", type=Path)


def cmd_check(args: argparse.Namespace) -> int:
    from sync.check import exit_code, render, run_checks

    findings = run_checks(args.config)
    lang = "es"
    try:
        from sync.config import load_config

        lang = load_config(args.config).language
    except Exception:
        pass
    print(render(findings, lang))
    failed = sum(f.level == "FAIL" for f in findings)
    warned = sum(f.level == "WARN" for f in findings)
    print(f"\n{failed} FAIL, {warned} WARN, {len(findings) - failed - warned} OK")
    return exit_code(findings)


def cmd_service(args: argparse.Namespace) -> int:

    if sys.platform != "win32" and not args.dry_run:
        from sync.service.linux import explain

        print(explain(args.action))
        return EXIT_OK if args.action is None else EXIT_USAGE
    from sync.service import windows as win

    if args.action is None:
        print("uso: dtesync service install|start|stop|remove  (run: lo usa Windows al iniciar el servicio)")
        return EXIT_USAGE
    if args.action == "run":
        return win.run_service(str(args.config) if args.config else None)
    root = win.programdata()
    config = args.config or (root / "dtesync.toml")
    if args.action == "install":
        password = None
        if args.user:
            password = os.environ.get(args.password_env, "") if args.password_env else (
                "" if args.dry_run else getpass.getpass(f"Contraseña de {args.user}: "))
        calls = win.plan_install(win.this_program(), config, user=args.user, password=password, data=root,
                                 erp_group=args.erp_group)
    else:
        calls = {"start": win.plan_start, "stop": win.plan_stop, "remove": win.plan_remove}[args.action]()
    if args.dry_run:
        for call in calls:
            print(call)
        return EXIT_OK
    if args.action == "install":
        example = Path(sys.executable).parent / "config" / "dtesync.example.toml"
        for made in win.prepare_programdata(Path(str(root)), example):
            print(f"creado: {made}")
    try:
        win.execute(calls, win.pywin32_runner)
    except Exception as exc:
        print(f"dtesync service {args.action}: {exc}", file=sys.stderr)
        if "5" in str(getattr(exc, "winerror", "")) or "Access is denied" in str(exc):
            print("Ejecute la consola como Administrador.", file=sys.stderr)
        return EXIT_FAIL
    print(f"dtesync service {args.action}: listo")
    if args.action == "install":
        print(f"Siguiente: edite {config}, ejecute 'dtesync check --config \"{config}\"' y luego 'dtesync service start'.")
        if not args.erp_group:
            print(f"Sin --erp-group solo Administradores y el servicio acceden a {root}\\inbox y outbox. Para el grupo del "
                  f"ERP: icacls \"{root}\\inbox\" /grant \"GRUPO:(OI)(CI)M\" y icacls \"{root}\\outbox\" /grant "
                  "\"GRUPO:(OI)(CI)RX\" (docs/operations.md).")
    return EXIT_OK


def databases() -> tuple[str, ...]:
    """Every store's file in the state folder (each store module names its own)."""
    from sync.delivery.store import FILE_NAME as DELIVERY
    from sync.folios.store import FILE_NAME as FOLIOS
    from sync.journal import FILE_NAME as JOURNAL
    from sync.printing.queue import FILE_NAME as PRINT_QUEUE
    from sync.uplink.queue import FILE_NAME as UPLINK_QUEUE

    return (JOURNAL, FOLIOS, PRINT_QUEUE, UPLINK_QUEUE, DELIVERY)


def backup_databases(state: Path, dest: Path, now: datetime | None = None) -> list[Path]:
    """SQLite online backup of each database in `state` into dest/dtesync-<timestamp>/: a
    consistent copy even while the daemon writes (WAL), checked with integrity_check. The
    folder is private (0700): the folio store holds the CAFs' private keys."""
    now = now or datetime.now()
    target = dest / f"dtesync-{now:%Y%m%d-%H%M%S}"
    target.mkdir(mode=0o700, parents=True, exist_ok=False)
    copies = []
    for name in databases():
        src_path = state / name
        if not src_path.exists():
            continue
        src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True, timeout=30)
        os.close(os.open(target / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # the copy is as private as the original
        out = sqlite3.connect(target / name)
        try:
            src.backup(out)
            ok = out.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                raise sqlite3.DatabaseError(f"{name}: integrity_check: {ok}")
        finally:
            out.close()
            src.close()
        copies.append(target / name)
    return copies


def cmd_backup(args: argparse.Namespace) -> int:

    config = load(args)
    try:
        copies = backup_databases(config.folders.state, args.dest)
    except (OSError, sqlite3.Error) as exc:
        print(f"dtesync backup: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if not copies:
        print(f"dtesync backup: no hay bases de datos en {config.folders.state}", file=sys.stderr)
        return EXIT_FAIL
    for c in copies:
        print(f"OK   {c}")
    print("Guarde también la configuración, el certificado y los CAF (docs/operations.md).")
    return EXIT_OK
