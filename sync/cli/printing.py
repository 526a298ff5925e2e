"""`dtesync print NAME|FILE [--station S]` (reprint) and `dtesync printers list|test`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sync.cli.common import EXIT_FAIL, EXIT_OK, Registry, UsageError, load
from sync.errors import DteSyncError


def register(r: Registry) -> None:
    p = r.command("print", cmd_print, "reprint a signed document's ticket (NAME in the outbox, or a DTE file)")
    p.add_argument("name", help="NAME (outbox/NAME.xml, e.g. caja1/F12) or the path of a signed DTE XML")
    p.add_argument("--station", help="printing station (default: routed like the daemon does)")
    p = r.command("printers", cmd_printers, "printing stations: list them, or print a test ticket")
    p.add_argument("action", choices=("list", "test"))
    p.add_argument("--station", help="only this station (default: every station)")


def _resolve(config, name: str) -> tuple[Path, str]:
    """(signed XML path, outbox-relative folder) for NAME or FILE."""
    path = Path(name)
    if path.suffix.lower() == ".xml" and path.is_file():
        try:
            folder = str(path.resolve().parent.relative_to(config.folders.outbox.resolve()))
        except ValueError:
            folder = ""
        return path, "" if folder == "." else folder
    stem = name[:-4] if name.lower().endswith(".xml") else name
    for suffix in (".txt", ".json"):
        stem = stem[: -len(suffix)] if stem.lower().endswith(suffix) else stem
    candidate = config.folders.outbox / f"{stem}.xml"
    if candidate.is_file():
        return candidate, str(Path(stem).parent) if "/" in stem.replace("\\", "/") else ""
    raise DteSyncError("PRINT_SOURCE_MISSING", found=str(candidate))


def cmd_print(args: argparse.Namespace) -> int:
    from sync.printing.connectors import PrinterUnavailable, send
    from sync.printing.layout import source_from_dte_xml
    from sync.printing.queue import FILE_NAME, PrintQueue
    from sync.printing.service import ticket_bytes
    from sync.printing.stations import Stations

    config = load(args)
    lang = config.language
    try:
        xml_path, folder = _resolve(config, args.name)
        src = source_from_dte_xml(xml_path.read_bytes(), xml_path.name)
        stations = Stations(config.printing)
        station = stations.get(args.station) if args.station else stations.route(folder=folder, xml=src.xml)
    except DteSyncError as exc:
        raise UsageError(exc.message(lang)) from None
    if station is None:
        raise UsageError("no hay estación de impresión para este documento: use --station")
    data = ticket_bytes(src, station, config)
    label = f"{xml_path.name}: TipoDTE {src.documento.tipo_dte} folio {src.documento.folio}"
    try:
        send(station.config.connector, data)
    except PrinterUnavailable as exc:
        queue = PrintQueue(config.folders.state / FILE_NAME)
        queue.enqueue(f"reprint:{time.time_ns()}", station.name, data, label=label)
        queue.close()
        print(f"{label}: la impresora de {station.name} no responde ({exc}); quedó en la cola de impresión "
              "(el servicio dtesync la reintenta)")
        return EXIT_FAIL
    print(f"{label}: impreso en {station.name}")
    return EXIT_OK


def cmd_printers(args: argparse.Namespace) -> int:
    from sync.printing.connectors import PrinterUnavailable, check, describe, send
    from sync.printing.escpos import sample_ticket
    from sync.printing.stations import Stations

    config = load(args)
    try:
        stations = Stations(config.printing)
        chosen = [stations.get(args.station)] if args.station else list(stations)
    except DteSyncError as exc:
        raise UsageError(exc.message(config.language)) from None
    if not chosen:
        print("No hay estaciones de impresión configuradas ([[printing.stations]]).")
        return EXIT_OK if args.action == "list" else EXIT_FAIL
    ok = True
    for st in chosen:
        where = describe(st.config.connector)
        if args.action == "list":
            default = " (por defecto)" if stations.default() is st else ""
            print(f"{st.name}{default}: {where}, perfil {st.profile.name}, copias {st.config.copies}, "
                  f"cajón {'sí' if st.config.cash_drawer else 'no'}, corte {'sí' if st.config.cut else 'no'}")
            continue
        try:
            check(st.config.connector)
            send(st.config.connector, sample_ticket(st.profile, st.name, cut=st.config.cut))
            print(f"OK   {st.name}: página de prueba enviada a {where}")
        except (PrinterUnavailable, DteSyncError) as exc:
            ok = False
            msg = exc.message(config.language) if isinstance(exc, DteSyncError) else str(exc)
            print(f"FAIL {st.name}: {msg}")
    return EXIT_OK if ok else EXIT_FAIL
