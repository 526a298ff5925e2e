"""`dtesync print NAME|FILE [--station S]` (reprint) and `dtesync printers list|test`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sync.cli.common import EXIT_FAIL, EXIT_OK, Registry, UsageError, load
from sync.config import Config
from sync.errors import DteSyncError


def register(r: Registry) -> None:
    p = r.command("print", cmd_print, "reprint a signed document's ticket (NAME in the outbox, or a DTE file)")
    p.add_argument("name", help="NAME (outbox/NAME.xml, e.g. caja1/F12) or the path of a signed DTE XML")
    p.add_argument("--station", help="printing station (default: routed like the daemon does)")
    p = r.command("printers", cmd_printers, "printing stations: list them, or print a test ticket")
    p.add_argument("action", choices=("list", "test"))
    p.add_argument("--station", help="only this station (default: every station)")


def _resolve(config: Config, name: str) -> tuple[Path, str]:
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
    from sync.printing.delivery import deliver
    from sync.printing.escpos import reprint_marker
    from sync.printing.layout import source_from_dte_xml
    from sync.printing.queue import FILE_NAME, PrintQueue
    from sync.printing.rules import LayoutRefused
    from sync.printing.service import MANUAL_REASON, refusal, render_job, with_marker
    from sync.printing.stations import Stations
    from sync.printing.status import Condition

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
    refused = refusal(station, src.documento.tipo_dte)
    if refused is not None:
        print(refused.message(lang))
        return EXIT_FAIL
    label = f"{xml_path.name}: TipoDTE {src.documento.tipo_dte} folio {src.documento.folio}"
    marker = reprint_marker(station.profile, MANUAL_REASON.get(lang, MANUAL_REASON["es"]))
    try:
        job = render_job(src, station, config)
    except LayoutRefused as exc:
        print(f"{label}: {exc.detail}")
        return EXIT_FAIL
    conn = station.config.connector
    out = deliver(conn, station.profile, with_marker(job.data, job.offsets, marker), lang=lang,
                  probe_native=job.mode == "native")
    if out.condition == Condition.NO_PDF417:
        job = render_job(src, station, config, native=False)
        print(f"{station.name}: {out.detail}")
        out = deliver(conn, station.profile, with_marker(job.data, job.offsets, marker), lang=lang)
    if out.printed:
        print(f"{label}: impreso en {station.name} ({out.condition.says(lang)})")
        return EXIT_OK
    queue = PrintQueue(config.folders.state / FILE_NAME)
    queue.enqueue(f"reprint:{time.time_ns()}", station.name, with_marker(job.data, job.offsets, marker), label=label,
                  source=str(xml_path.resolve()), mode=job.mode, offsets=job.offsets)
    queue.close()
    print(f"{label}: la impresora de {station.name} no imprimió ({out.detail}); quedó en la cola de impresión "
          "(el servicio dtesync la reintenta)")
    return EXIT_FAIL


def sample_payload(station: str, size: int) -> bytes:
    """A timbre-sized payload for the test ticket (a real TED is 740-1000 bytes)."""
    line = f"dtesync prueba de timbre {station} Ñandú °;".encode("latin-1")
    return (line * (size // len(line) + 1))[:size]


def cmd_printers(args: argparse.Namespace) -> int:
    from sync.printing.connectors import check, describe
    from sync.printing.delivery import deliver
    from sync.printing.escpos import place_timbre, sample_ticket, timbre_mode
    from sync.printing.rules import DESIGN_TED_BYTES, LayoutRefused
    from sync.printing.stations import Stations
    from sync.printing.status import Condition

    config = load(args)
    lang = config.language
    try:
        stations = Stations(config.printing)
        chosen = [stations.get(args.station)] if args.station else list(stations)
    except DteSyncError as exc:
        raise UsageError(exc.message(lang)) from None
    if not chosen:
        print("No hay estaciones de impresión configuradas ([[printing.stations]]).")
        return EXIT_OK if args.action == "list" else EXIT_FAIL
    ok = True
    for st in chosen:
        where = describe(st.config.connector)
        p = st.profile
        if args.action == "list":
            default = " (por defecto)" if stations.default() is st else ""
            types = ", ".join(map(str, st.config.types)) if st.config.types else "todos"
            print(f"{st.name}{default}: {where}, perfil {p.name} ({p.paper_mm:g} mm, {p.dpi} dpi, "
                  f"timbre {'GS ( k' if p.native_pdf417 else 'imagen'}), tipos {types}, copias {st.config.copies}, "
                  f"cajón {'sí' if st.config.cash_drawer else 'no'}, corte {'sí' if st.config.cut else 'no'}")
            continue
        try:
            check(st.config.connector)
            ted = sample_payload(st.name, DESIGN_TED_BYTES)
            tipo = 39  # the station's own mode is the boleta's: facturas always go as a rotated image
            mode = timbre_mode(ted, tipo, p)
            timbre = place_timbre(ted, tipo, p)
        except (DteSyncError, LayoutRefused) as exc:
            ok = False
            print(f"FAIL {st.name}: {exc.message(lang) if isinstance(exc, DteSyncError) else exc.detail}")
            continue
        size = f"{timbre.across_mm:.0f} × {timbre.along_mm:.0f} mm"
        notes = [f"Timbre de {DESIGN_TED_BYTES} bytes ({size}): {'PDF417 de la impresora (GS ( k)' if mode == 'native' else 'imagen (GS v 0)'}"]
        out = deliver(st.config.connector, p, sample_ticket(p, st.name, ted, cut=st.config.cut, notes=notes), lang=lang,
                      probe_native=mode == "native")
        said = ""
        if out.condition == Condition.NO_PDF417:
            said = " La impresora no respondió a GS ( k: se imprimió como imagen; ponga native_pdf417 = false en su perfil."
            mode = "raster"
            notes = [f"Timbre de {DESIGN_TED_BYTES} bytes ({size}): imagen (GS v 0); GS ( k no respondió"]
            out = deliver(st.config.connector, p, sample_ticket(p, st.name, ted, native=False, cut=st.config.cut,
                                                                notes=notes), lang=lang)
        if not out.printed:
            ok = False
            print(f"FAIL {st.name}: {out.detail}")
            continue
        how = ("PDF417 de la impresora (GS ( k), confirmado por la impresora" if mode == "native"
               else "imagen (GS v 0)")
        state = out.condition.says(lang) if out.condition != Condition.UNKNOWN else "sin lectura de estado en este conector"
        print(f"OK   {st.name}: página de prueba impresa en {where}; timbre de {DESIGN_TED_BYTES} bytes ({size}) "
              f"como {how}; impresora: {state}.{said}")
        if said:
            ok = False
    return EXIT_OK if ok else EXIT_FAIL
