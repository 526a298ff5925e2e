"""Cluster-mode commands (docs/sites.md): `cluster init`, `cluster import-caf`, `sites`.

    dtesync cluster init               apply the schema migrations the database lacks (idempotent)
    dtesync cluster import-caf FILE..  CAFs into the cluster, for every site to lease from
    dtesync cluster hold | release     stop / resume granting leases (after restoring a backup)
    dtesync sites                      sites, their leases and their last contact
    dtesync sites lose SITE            declare a site lost: its unused leased folios, to annul
    dtesync sites hand-back [--tipo T] this site hands back the unused rest of its leases

`dtesync status --cluster` (sync.cli.daemon) prints `cluster_status` below.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync.cli.common import EXIT_FAIL, EXIT_OK, Registry, UsageError, load, print_table
from sync.errors import DteSyncError

if TYPE_CHECKING:
    from sync.cluster.db import ClusterDb
    from sync.config import Config


def register(r: Registry) -> None:
    g = r.group("cluster", "cluster mode (several PCs on one PostgreSQL): init, import-caf")
    g.command("init", cmd_init, "create or upgrade the cluster's tables in PostgreSQL (versioned, idempotent)")
    p = g.command("import-caf", cmd_import_caf, "import CAF files into the cluster, for every site to lease from")
    p.add_argument("files", type=Path, nargs="+")
    g.command("hold", cmd_hold, "stop granting folio leases (after restoring the database from an older copy: "
              "until every site has put back its leases); sites keep signing from theirs")
    g.command("release", cmd_hold, "grant folio leases again after 'cluster hold'")
    p = r.command("sites", cmd_sites, "cluster sites, their folio leases and last contact; "
                  "'lose SITE' declares one lost, 'hand-back' returns this site's unused folios")
    p.add_argument("action", nargs="?", choices=("list", "lose", "hand-back"), default="list")
    p.add_argument("site", nargs="?", help="lose: the site's name")
    p.add_argument("--tipo", type=int, help="hand-back: only this TipoDTE")
    p.add_argument("--json", action="store_true")


def cluster_config(config: Config) -> Any:
    if config.cluster is None:
        raise UsageError("este comando necesita [cluster] en la configuración (docs/sites.md)")
    return config.cluster


def open_db(config: Config) -> ClusterDb:
    from sync.cluster.db import ClusterDb

    try:
        return ClusterDb.from_config(cluster_config(config))
    except DteSyncError as exc:
        raise UsageError(f"{exc.code}: {exc.message(config.language)}") from None


def _unavailable(exc: Exception) -> int:
    print(f"dtesync: CLUSTER_DOWN: no se alcanza la base central: {exc}", file=sys.stderr)
    return EXIT_FAIL


def cmd_init(args: argparse.Namespace) -> int:
    from sync.cluster.db import ClusterUnavailable
    from sync.cluster.schema import MIGRATIONS

    config = load(args)
    try:
        with open_db(config) as db:
            applied = db.migrate()
            version = db.version()
    except ClusterUnavailable as exc:
        return _unavailable(exc)
    schema = config.cluster.schema
    if applied:
        print(f"OK   esquema {schema}: migraciones aplicadas {', '.join(map(str, applied))}; versión {version}")
    else:
        print(f"OK   esquema {schema} al día (versión {version} de {len(MIGRATIONS)})")
    return EXIT_OK


def cmd_hold(args: argparse.Namespace) -> int:
    from sync.cluster.db import ClusterUnavailable

    config = load(args)
    try:
        with open_db(config) as db:
            if args.action == "hold":
                db.hold_leasing(config.cluster.site)
                print("Arriendos detenidos: ningún sitio recibe folios nuevos; siguen firmando con los suyos. "
                      "Cuando 'dtesync sites' muestre a todos los sitios en contacto después de ahora: "
                      "dtesync cluster release")
            else:
                db.release_leasing()
                print("Arriendos reanudados.")
    except ClusterUnavailable as exc:
        return _unavailable(exc)
    return EXIT_OK


def import_into_cluster(config: Config, paths: list[Path]) -> bool:
    """Check each CAF as `caf import` does (SII signature, company, expiry, into this PC's
    folio store) and store it in the cluster. True if every file went in."""
    from sync.cluster.db import ClusterUnavailable
    from sync.folios.caf import load_caf
    from sync.runtime import import_caf_file, open_folio_store

    ok = True
    today = date.today()
    with open_folio_store(config) as store, open_db(config) as db:
        for path in paths:
            result = import_caf_file(store, config, path, today)
            if result.error is not None or result.caf is None:
                ok = False
                err = result.error
                print(f"FAIL {path}: {err.code if err else '?'} {err.message(config.language) if err else ''}")
                continue
            data = path.read_bytes()
            caf = load_caf(data)
            try:
                new = db.import_caf(caf, data, config.cluster.site)
            except ClusterUnavailable as exc:
                print(f"FAIL {path}: CLUSTER_DOWN {exc}")
                ok = False
                continue
            except DteSyncError as exc:
                print(f"FAIL {path}: {exc.code} {exc.message(config.language)}")
                ok = False
                continue
            note = "en el cluster" if new else "ya estaba en el cluster"
            print(f"OK   {path}: TipoDTE {caf.tipo_dte} folios {caf.desde}-{caf.hasta} IDK {caf.idk} ({note})")
    return ok


def cmd_import_caf(args: argparse.Namespace) -> int:
    config = load(args)
    cluster_config(config)
    return EXIT_OK if import_into_cluster(config, args.files) else EXIT_FAIL


def cmd_sites(args: argparse.Namespace) -> int:
    from sync.cluster.db import ClusterUnavailable

    config = load(args)
    cluster_config(config)
    try:
        if args.action == "lose":
            return _lose(config, args)
        if args.action == "hand-back":
            return _hand_back(config, args.tipo)
        with open_db(config) as db:
            view = db.overview()
    except ClusterUnavailable as exc:
        return _unavailable(exc)
    if args.json:
        print(json.dumps(view, ensure_ascii=False, indent=2, default=str))
        return EXIT_OK
    print_sites(view)
    return EXIT_OK


def print_sites(view: dict[str, Any]) -> None:
    rows = []
    for s in view["sites"]:
        by_type: dict[int, list[int]] = {}
        for x in s["leases"]:
            acc = by_type.setdefault(x["tipo_dte"], [0, 0, 0])
            acc[0] += x["hasta"] - x["desde"] + 1
            acc[1] += x["used"]
            acc[2] += x["left"]
        leases = "; ".join(f"{t}: {a} arr., {u} usados, {left} libres" for t, (a, u, left) in sorted(by_type.items()))
        rows.append((s["site"], s["state"], f"hace {_age(s['last_contact_age_s'])}", sum(s["documents"].values()),
                     leases or "-"))
    print_table(["sitio", "estado", "último contacto", "documentos", "folios arrendados"], rows)
    if view.get("leasing_held_since"):
        print(f"Arriendos DETENIDOS desde {view['leasing_held_since']} (dtesync cluster release para reanudar)")
    if view["caf_stock"]:
        print("Folios por arrendar en el cluster: " + ", ".join(f"TipoDTE {t}: {n}" for t, n in view["caf_stock"].items()))
    for s in view["sites"]:
        if s["to_annul"]:
            print(f"\nSitio perdido {s['site']}: folios arrendados sin uso conocido, a anular en el SII:")
            for r in s["to_annul"]:
                print(f"  TipoDTE {r['tipo_dte']}: {r['desde']}-{r['hasta']}")
    if view["returned"]:
        print("\nBloques devueltos (no se vuelven a arrendar; anúlelos en el SII o déjelos vencer con su CAF):")
        for r in view["returned"]:
            print(f"  {r['site']}: TipoDTE {r['tipo_dte']} {r['desde']}-{r['hasta']}")
    for d in view["duplicate_folios"]:
        print(f"ERROR folio {d['folio']} de TipoDTE {d['tipo_dte']} en {d['documents']} documentos")


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _lose(config: Config, args: argparse.Namespace) -> int:
    if not args.site:
        raise UsageError("uso: dtesync sites lose SITIO")
    if args.site == config.cluster.site:
        raise UsageError("un sitio no se declara perdido a sí mismo: hágalo desde otro PC del cluster")
    with open_db(config) as db:
        if not db.lose(args.site):
            print(f"dtesync: no hay un sitio llamado {args.site!r}", file=sys.stderr)
            return EXIT_FAIL
        ranges = db.unused_leased(args.site)
    print(f"Sitio {args.site} declarado perdido: no recibe más folios; si vuelve, deja de firmar con los suyos.")
    if args.json:
        print(json.dumps([{"tipo_dte": t, "desde": d, "hasta": h} for t, d, h in ranges]))
    elif ranges:
        print("Folios arrendados sin uso conocido, a anular en el SII:")
        for t, d, h in ranges:
            print(f"  TipoDTE {t}: {d}-{h}")
    else:
        print("No tenía folios arrendados sin uso.")
    return EXIT_OK


def _hand_back(config: Config, tipo: int | None) -> int:
    """This site stops using the rest of its leases (durably, here first) and tells the
    cluster; if the cluster is unreachable, the daemon's cluster stage tells it later."""
    from sync.cluster.db import ClusterUnavailable
    from sync.runtime import open_folio_store

    with open_folio_store(config) as store:
        returned = store.hand_back(tipo)
        for lease_id, start, hasta in returned:
            print(f"Devuelto el arriendo {lease_id}: folios {start}-{hasta}")
        pending = store.pending_returns()
        if not pending:
            if not returned:
                print("No hay folios arrendados sin usar para devolver.")
            return EXIT_OK
        try:
            with open_db(config) as db:
                for lease_id, start in pending:
                    db.hand_back(config.cluster.site, lease_id, start)
                    store.return_recorded(lease_id)
        except ClusterUnavailable as exc:
            print(f"La base central no responde ({exc}); el daemon informará la devolución al volver la conexión.")
            return EXIT_OK
    print("El cluster registró la devolución.")
    return EXIT_OK


def cluster_status(config: Config) -> dict[str, Any]:
    """`dtesync status --cluster`: every site's documents by state, leases and last contact."""
    with open_db(config) as db:
        return db.overview()


def cmd_status_cluster(config: Config, *, as_json: bool) -> int:
    from sync.cluster.db import ClusterUnavailable

    try:
        view = cluster_status(config)
    except ClusterUnavailable as exc:
        return _unavailable(exc)
    if as_json:
        print(json.dumps(view, ensure_ascii=False, indent=2, default=str))
        return EXIT_OK
    states = sorted({st for s in view["sites"] for st in s["documents"]})
    if states:
        print("Documentos por sitio y estado:")
        print_table(["sitio", *states, "total"],
                    [(s["site"], *(s["documents"].get(st, 0) for st in states), sum(s["documents"].values()))
                     for s in view["sites"]])
        print()
    print_sites(view)
    return EXIT_OK
