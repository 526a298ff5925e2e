"""Delivery commands: `receptors import FILE` (the SII's list of authorised electronic issuers
with their exchange addresses) and `receptors show RUT` (where that receptor's DTEs go)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sync.cli.common import EXIT_FAIL, EXIT_OK, Registry, UsageError, load


def register(r: Registry) -> None:
    g = r.group("receptors", "the receptors' exchange addresses (SII list and [delivery.receptors])")
    p = g.command("import", cmd_import, "load the SII's list of authorised electronic issuers "
                  "(semicolon-separated, ISO-8859-1: RUT;RAZON SOCIAL;NUMERO RESOLUCION;FECHA RESOLUCION;"
                  "MAIL INTERCAMBIO;URL); it replaces the previous list")
    p.add_argument("file", type=Path, help="the list as downloaded from the SII")
    p = g.command("show", cmd_show, "show the exchange address a receptor's DTEs go to, and why")
    p.add_argument("rut", help="the receptor's RUT (76192083-9, 76.192.083-9)")


def _store_path(args: argparse.Namespace) -> tuple[object, Path]:
    from sync.delivery.store import FILE_NAME

    config = load(args)
    return config, Path(config.folders.state) / FILE_NAME


def cmd_import(args: argparse.Namespace) -> int:
    from sync.delivery.receptors import import_list
    from sync.delivery.store import DeliveryStore
    from sync.errors import DteSyncError

    config, path = _store_path(args)
    lang = getattr(config, "language", "es")
    if not args.file.is_file():
        raise UsageError(f"no existe el archivo {args.file}")
    with DeliveryStore(path) as store:
        try:
            result = import_list(store, args.file)
        except DteSyncError as exc:
            print(f"dtesync: {exc.code}: {exc.message(lang)}", file=sys.stderr)
            return EXIT_FAIL
    print(f"{result.imported} receptor(es) importado(s) desde {args.file}; "
          f"{result.without_address} sin dirección de intercambio utilizable; {len(result.skipped)} línea(s) omitida(s).")
    for line, why in result.skipped[:20]:
        print(f"  línea {line}: {why}")
    if len(result.skipped) > 20:
        print(f"  ... y {len(result.skipped) - 20} más")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from sync.delivery.receptors import Directory
    from sync.delivery.store import DeliveryStore
    from sync.rut import Rut, RutError
    from sync.storage import StorageError

    config, path = _store_path(args)
    try:
        rut = str(Rut.parse(args.rut))
    except RutError as exc:
        raise UsageError(f"RUT inválido {args.rut!r}: {exc.reason}") from None
    delivery = getattr(config, "delivery", None)
    overrides = delivery.receptors if delivery is not None else {}
    try:
        store = DeliveryStore.open_readonly(path)
    except StorageError:
        store = None
    if store is None:
        address = overrides.get(rut)
        print(f"RUT {rut}\n  listado del SII: no importado (dtesync receptors import ARCHIVO)")
        print(f"  [delivery.receptors]: {address or '-'}\n  se envía a: {address or 'sin dirección (no_address)'}")
        return EXIT_OK if address else EXIT_FAIL
    with store:
        resolved = Directory(store, overrides).resolve(rut)
        listed = resolved.listed
        print(f"RUT {rut}")
        if listed is None:
            print(f"  listado del SII: no está ({store.receptors_count()} receptores importados)")
        else:
            print(f"  razón social: {listed.razon_social or '-'}")
            print(f"  resolución: {listed.nro_resol or '-'} del {listed.fch_resol or '-'}")
            print(f"  listado del SII: {listed.mail or 'sin dirección utilizable'}")
            if listed.url:
                print(f"  url: {listed.url}")
        print(f"  [delivery.receptors]: {overrides.get(rut, '-')}")
        source = {"config": "[delivery.receptors]", "sii_list": "listado del SII"}.get(resolved.source)
        print(f"  se envía a: {resolved.address} ({source})" if resolved.address else
              "  se envía a: sin dirección: sus documentos quedan no_address")
    return EXIT_OK if resolved.address else EXIT_FAIL
