"""Three sites, one company, one CAF per type, a real PostgreSQL: the daemons are SIGKILLed
mid-run, the database is stopped (like a crash: `pg_ctl stop -m immediate`) for a while with
documents arriving, then started again. Afterwards:

- no folio was issued twice, within a site or across sites;
- every document's record is in the cluster, as the site's own journal has it;
- every site signed its documents while the database was down (its leases lasted);
- every leased folio is used by a signed document, handed back, or listed for annulment
  (two sites hand back their unused blocks, the third is declared lost).

Each site is its own process (tests/cluster_daemon_runner.py: real engine, folio store in
cluster mode, the cluster stage), with its own inbox, outbox and state folder. Scaled by
environment: DTESYNC_CLUSTER_DOCS (documents per site, default 500) and DTESYNC_CLUSTER_DOWN
(seconds the database stays down, default 30); about 1.5 minutes on 2 cores with the defaults.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from cluster_fixtures import PgServer, cluster_section, run_cli, site_config, wait_until
from daemon_real import FINAL, drop, dte_folio, read_status, varied_inputs, wait_final, xmlsec1_failures
from sync.cluster.db import ClusterDb
from sync.cluster.settings import parse_cluster
from sync.sandbox.build import create_sandbox

pytestmark = pytest.mark.slow

RUNNER = Path(__file__).with_name("cluster_daemon_runner.py")
SITES = ("tienda-a", "tienda-b", "tienda-c")
DOCS = int(os.environ.get("DTESYNC_CLUSTER_DOCS", "500"))
DOWN = float(os.environ.get("DTESYNC_CLUSTER_DOWN", "30"))
# Per TipoDTE a site holds between LOW and LEASE + LOW folios: enough for the outage's documents
# as a rule; a type that runs out anyway is handled as in production (see _signed_while_down).
LEASE = max(40, DOCS // 5)
LOW = LEASE // 2


def start(config: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.strip() == "READY", f"runner did not start (got {line!r}, rc={proc.poll()})"
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def sqlite_rows(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return list(db.execute(sql))
    except sqlite3.OperationalError:  # a table not created yet
        return []
    finally:
        db.close()


def unshipped(root: Path) -> int:
    rows = sqlite_rows(root / "state" / "journal.sqlite3", "SELECT COUNT(*) FROM record_outbox")
    return rows[0][0] if rows else 0


def leased_types(root: Path) -> set[int]:
    return {r[0] for r in sqlite_rows(root / "state" / "folios.sqlite", "SELECT DISTINCT tipo_dte FROM lease")}


def test_three_sites_through_kills_and_a_database_outage_issue_every_folio_once(tmp_path: Path) -> None:
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    rnd = random.Random(1607)
    pg = PgServer().init()
    try:
        _scenario(tmp_path, pg, rnd)
    finally:
        pg.destroy()


def _scenario(tmp_path: Path, pg: PgServer, rnd: random.Random) -> None:
    company = create_sandbox(tmp_path / "hq", folios_per_type=3000)
    dsn = pg.new_database("company")
    cluster = {s: cluster_section(dsn, s, lease_size=LEASE, low_water=LOW, refill_interval=1.0, ship_interval=0.3,
                                  retry_cap=1.0) for s in (*SITES, "oficina")}
    hq = site_config(company.config_path, tmp_path / "oficina", "oficina", cluster["oficina"])
    assert run_cli(hq, "cluster", "init").returncode == 0
    run = run_cli(hq, "cluster", "import-caf", *map(str, sorted((company.root / "caf").glob("CAF_T*.xml"))))
    assert run.returncode == 0, run.stdout + run.stderr
    roots = {s: tmp_path / s for s in SITES}
    configs = {s: site_config(company.config_path, roots[s], s, cluster[s]) for s in SITES}
    waves = 4  # before, two with kills, one while the database is down
    inputs = {s: varied_inputs(DOCS, seed=30 + i, prefix=f"{s[-1].upper()}", folders=("", "caja1"))
              for i, s in enumerate(SITES)}
    chunks = {s: [inputs[s][k::waves] for k in range(waves)] for s in SITES}
    procs = {s: start(configs[s]) for s in SITES}
    try:
        wait_until(lambda: all(len(leased_types(r)) == 8 for r in roots.values()), 60, what="every site's leases")
        # waves 0 and 1: documents arrive while daemons get killed and restarted
        for k in (0, 1):
            for s in SITES:
                drop(roots[s] / "inbox", chunks[s][k], seed=k)
            for _ in range(3):
                time.sleep(rnd.uniform(0.3, 1.5))
                victim = rnd.choice(SITES)
                kill(procs[victim])
                procs[victim] = start(configs[victim])
        for s in SITES:
            wait_final(roots[s] / "outbox", chunks[s][0] + chunks[s][1], 300)

        # wave 2: the database goes down; every site keeps signing from its leases
        pg.stop("immediate")
        down_since = time.monotonic()
        for s in SITES:
            drop(roots[s] / "inbox", chunks[s][2], seed=2)
        victim = rnd.choice(SITES)
        time.sleep(rnd.uniform(0.2, 1.0))
        kill(procs[victim])  # and a site restarts with no database at all
        procs[victim] = start(configs[victim])
        during = {s: wait_final(roots[s] / "outbox", chunks[s][2], DOWN + 120) for s in SITES}
        assert not pg.running(), "the database came back on its own"
        resend = {s: _signed_while_down(roots[s], chunks[s][2], during[s]) for s in SITES}
        assert all(unshipped(r) > 0 for r in roots.values()), "records waiting in each site's outbox"
        time.sleep(max(0.0, DOWN - (time.monotonic() - down_since)))
        pg.start()

        # wave 3: back online, one more kill; the ERP sends again what found no folio
        for s in SITES:
            drop(roots[s] / "inbox", chunks[s][3] + resend[s], seed=3)
        time.sleep(rnd.uniform(0.3, 1.0))
        victim = rnd.choice(SITES)
        kill(procs[victim])
        procs[victim] = start(configs[victim])
        statuses = {s: wait_final(roots[s] / "outbox", inputs[s], 300) for s in SITES}
        for s in SITES:  # the resent ones: their new document's status, not the first one's
            for item in resend[s]:
                first = during[s][item.rel]["document_id"]
                statuses[s][item.rel] = wait_until(lambda: _newer(roots[s] / "outbox", item, first), 120,
                                                   what=f"{item.rel} sent again")
        wait_until(lambda: all(unshipped(r) == 0 for r in roots.values()), 120, what="every record shipped")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    kill(p)

    # the sites close the day: two hand back their unused blocks, the third is declared lost
    for s in SITES[:2]:
        run = run_cli(configs[s], "sites", "hand-back")
        assert run.returncode == 0 and "registró" in run.stdout, run.stdout + run.stderr
    run = run_cli(hq, "sites", "lose", SITES[2], "--json")
    assert run.returncode == 0, run.stderr
    to_annul = json.loads(run.stdout.splitlines()[-1])

    signed_by_site = _check_sites(roots, inputs, statuses)
    with ClusterDb.from_config(parse_cluster({"cluster": {"dsn": dsn, "site": "oficina",
                                                          "password": {"env": "DTESYNC_TEST_PG_PASSWORD"}}},
                                             tmp_path)) as db:
        _check_shared_record(db, roots, statuses)
        _check_every_leased_folio_accounted_for(db, roots, signed_by_site, to_annul)
        assert db.duplicate_folios() == []


def _signed_while_down(root: Path, wave: list, statuses: dict[str, dict]) -> list:
    """Every document of the outage was signed, except ones of a TipoDTE whose leased folios
    ran out (FOLIOS_NOT_LEASED, with none of that type left): those the ERP sends again later.
    Returns them."""
    from sync.folios.store import FolioStore

    out = []
    for item in wave:
        st = statuses[item.rel]
        if item.want != "signed" or st["state"] == "signed":
            assert st["state"] == item.want, (item.rel, st["state"], st["errors"])
            continue
        codes = [e["code"] for e in st["errors"]]
        assert codes == ["FOLIOS_NOT_LEASED"], f"{root.name} stopped signing while the database was down: {codes}"
        out.append(item)
    signed = sum(statuses[i.rel]["state"] == "signed" for i in wave)
    assert signed > len(out), f"{root.name} signed {signed} documents while the database was down"
    if out:
        store = FolioStore(root / "state" / "folios.sqlite", readonly=True, leased=True)
        try:
            free = store.leased_free(date.today())
        finally:
            store.close()
        for item in out:
            tipo = int(re.search(r"TipoDTE (\d+)", statuses[item.rel]["errors"][0]["message"]).group(1))
            assert free.get(tipo, 0) == 0, f"{root.name}: FOLIOS_NOT_LEASED with {free[tipo]} folios of {tipo} leased"
    return out


def _newer(outbox: Path, item, first: int) -> dict | None:
    st = read_status(outbox / f"{item.stem}.status.json")
    return st if st and st["document_id"] != first and st["state"] in FINAL else None


def _check_sites(roots: dict[str, Path], inputs: dict, statuses: dict) -> dict[str, set[tuple[int, int]]]:
    """Each input one final status of the kind it deserves; the signed XMLs verify (xmlsec1) and
    carry their folio; no folio twice across all sites; each folio store agrees."""
    everywhere: dict[tuple[int, int], str] = {}
    by_site: dict[str, set[tuple[int, int]]] = {}
    xmls: list[Path] = []
    for s, root in roots.items():
        by_site[s] = set()
        for item in inputs[s]:
            st = statuses[s][item.rel]
            assert st["state"] == item.want, (s, item.rel, st["state"], st["errors"])
            if item.want != "signed":
                continue
            key = (st["tipo_dte"], st["folio"])
            assert key not in everywhere, f"folio {key} issued twice: {s} {item.rel} and {everywhere[key]}"
            everywhere[key] = f"{s} {item.rel}"
            by_site[s].add(key)
            folder = item.rel.rpartition("/")[0]
            xml = root / "outbox" / folder / st["xml"]
            assert dte_folio(xml) == key
            xmls.append(xml)
        table = sqlite_rows(root / "state" / "folios.sqlite", "SELECT tipo_dte, folio, state FROM folio")
        assert {(t, f) for t, f, state in table if state == "used"} == by_site[s], f"{s}: folio store disagrees"
        assert not [r for r in table if r[2] == "allocated"], f"{s}: a folio still allocated"
    assert xmlsec1_failures(xmls) == []
    return by_site


def _check_shared_record(db: ClusterDb, roots: dict[str, Path], statuses: dict) -> None:
    """Every document the site filed is in the cluster, in the state and with the folio the
    site's journal has."""
    for s, root in roots.items():
        journal = {r[0]: r[1:] for r in sqlite_rows(
            root / "state" / "journal.sqlite3", "SELECT id, state, tipo_dte, folio FROM documents WHERE step='filed'")}
        shared = {r["doc_id"]: (r["state"], r["tipo_dte"], r["folio"]) for r in db.documents(s)}
        assert shared == journal, f"{s}: the shared record differs from the journal"
        final = {st["document_id"] for st in statuses[s].values() if st["state"] in FINAL}
        assert final <= set(shared)


def _check_every_leased_folio_accounted_for(db: ClusterDb, roots: dict[str, Path],
                                            signed: dict[str, set[tuple[int, int]]], to_annul: list[dict]) -> None:
    """Leased = used (a signed document) + handed back + to annul (the lost site's unused, and
    any folio a site released for annulment), each folio in exactly one."""
    with db.tx() as cur:
        cur.execute("SELECT site, tipo_dte, desde, hasta FROM lease")
        leased = {(site, t, f) for site, t, d, h in cur.fetchall() for f in range(d, h + 1)}
    returned = {(site, t, f) for site, t, d, h in db.returned() for f in range(d, h + 1)}
    annul = {(SITES[2], r["tipo_dte"], f) for r in to_annul for f in range(r["desde"], r["hasta"] + 1)}
    released = {(s, t, f) for s, root in roots.items() for t, f in sqlite_rows(
        root / "state" / "folios.sqlite", "SELECT tipo_dte, folio FROM folio WHERE state='pending_annulment'")}
    used = {(s, t, f) for s, keys in signed.items() for t, f in keys}
    assert used <= leased, "a signed folio outside its site's leases"
    assert not used & (returned | annul), sorted(used & (returned | annul))[:5]
    assert not returned & annul
    missing = leased - used - returned - annul - released
    assert not missing, f"{len(missing)} leased folios unaccounted for, e.g. {sorted(missing)[:5]}"
    assert returned and annul, "the scenario exercised both hand-back and loss"
