"""Cluster mode against a real PostgreSQL (tests/cluster_fixtures.py): the schema, folio leases
(one lease per folio, ever, even when two sites race), the site's leased folio store, the shared
record (applied once, newest wins), the cluster stage inside a real daemon, and the commands."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.request
from datetime import date
from pathlib import Path

import psycopg
import pytest

from cluster_fixtures import PASSWORD_ENV, PgServer, cluster_section, run_cli, site_config, wait_until
from sync.alerts import Alerts
from sync.cluster.db import ClusterDb, Event, SiteLost
from sync.cluster.settings import ClusterConfig, parse_cluster
from sync.cluster.stage import ClusterStage
from sync.config import load_config
from sync.errors import DteSyncError
from sync.folios.caf import load_caf
from sync.folios.store import FolioStore
from sync.sandbox.build import DEMO_NAME, DEMO_RUT, DEMO_TYPES, create_sandbox
from sync.sandbox.caf_factory import default_fake_sii
from sync.secrets import SecretRef

TODAY = date.today()


@pytest.fixture(scope="module")
def pg():
    server = PgServer().init()
    yield server
    server.destroy()


@pytest.fixture
def dsn(pg, request):
    return pg.new_database("t_" + request.node.name[:40].lower().replace("[", "_").replace("]", ""))


def cfg(dsn: str, site: str, **kw) -> ClusterConfig:
    return ClusterConfig(dsn=dsn, site=site, password=SecretRef(env=PASSWORD_ENV), **kw)


@pytest.fixture
def db(dsn):
    with ClusterDb.from_config(cfg(dsn, "hq")) as d:
        d.migrate()
        yield d


def caf_bytes(tipo: int = 33, desde: int = 1, hasta: int = 200) -> bytes:
    return default_fake_sii().make_caf(DEMO_RUT, DEMO_NAME, tipo, desde, hasta, TODAY)


def put_caf(db: ClusterDb, tipo: int = 33, desde: int = 1, hasta: int = 200) -> bytes:
    data = caf_bytes(tipo, desde, hasta)
    assert db.import_caf(load_caf(data), data, "hq")
    return data


# --- configuration -------------------------------------------------------------------------------
def test_a_password_written_into_the_dsn_is_refused(tmp_path: Path) -> None:
    for dsn in ("postgresql://u:secret@db/x", "postgresql://u@db/x?password=secret", "host=db user=u password=secret"):
        with pytest.raises(DteSyncError) as err:
            parse_cluster({"cluster": {"dsn": dsn, "site": "s1"}}, tmp_path)
        assert err.value.code == "CONFIG_INVALID" and err.value.field == "cluster.dsn"


def test_a_remote_database_needs_verified_tls(tmp_path: Path) -> None:
    for dsn in ("postgresql://u@db.empresa.cl/x", "postgresql://u@db.empresa.cl/x?sslmode=require",
                "host=10.0.0.5 dbname=x"):
        with pytest.raises(DteSyncError) as err:
            parse_cluster({"cluster": {"dsn": dsn, "site": "s1"}}, tmp_path)
        assert "sslmode=verify-full" in err.value.message("es")
    for dsn in ("postgresql://u@db.empresa.cl/x?sslmode=verify-full", "postgresql://u@127.0.0.1:5433/x",
                "host=/var/run/postgresql dbname=x", "postgresql://u@/x?host=/tmp/pg"):
        assert parse_cluster({"cluster": {"dsn": dsn, "site": "s1"}}, tmp_path) is not None


def test_cluster_settings_are_read_with_the_password_as_a_reference(tmp_path: Path) -> None:
    c = parse_cluster({"cluster": {"dsn": "postgresql://u@localhost/x", "site": "tienda-07", "lease_size": 300,
                                   "password": {"file": "pg.pw"}}}, tmp_path)
    assert c is not None and c.site == "tienda-07" and c.lease_size == 300 and c.refill_at == 150
    assert c.password == SecretRef(file=tmp_path / "pg.pw")
    assert parse_cluster({}, tmp_path) is None
    with pytest.raises(DteSyncError):
        parse_cluster({"cluster": {"dsn": "postgresql://u@localhost/x", "site": "a b"}}, tmp_path)
    with pytest.raises(DteSyncError):
        parse_cluster({"cluster": {"dsn": "postgresql://u@localhost/x", "site": "a", "password": "clear"}}, tmp_path)


def test_a_single_pc_never_imports_psycopg(sandbox) -> None:
    code = textwrap.dedent(f"""
        import sys
        from sync.app import build_app
        from sync.config import load_config
        app = build_app(load_config({str(sandbox.config_path)!r}))
        assert "cluster" not in [s.name for s in app.stages]
        assert "psycopg" not in sys.modules, "psycopg imported on a single PC"
        assert not app.engine.folios.leased
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "ok", run.stderr[-2000:]


# --- schema ---------------------------------------------------------------------------------------
def test_migrations_are_versioned_and_idempotent(dsn) -> None:
    with ClusterDb.from_config(cfg(dsn, "hq")) as d:
        assert d.version() == 0
        assert d.migrate() == [1, 2]
        assert d.migrate() == []
        assert d.version() == 2


def test_the_database_refuses_two_leases_sharing_a_folio(db) -> None:
    """The exclusion constraint holds even for a writer that bypasses the lease cursor."""
    put_caf(db)
    db.touch("a")
    db.touch("b")
    with db.tx() as cur:
        cur.execute("INSERT INTO lease (caf_id, tipo_dte, desde, hasta, site) SELECT id, 33, 1, 10, 'a' FROM caf")
    with pytest.raises(psycopg.errors.ExclusionViolation), db.tx() as cur:
        cur.execute("INSERT INTO lease (caf_id, tipo_dte, desde, hasta, site) SELECT id, 33, 10, 20, 'b' FROM caf")
    with db.tx() as cur:  # another type may use the same numbers
        cur.execute("INSERT INTO lease (caf_id, tipo_dte, desde, hasta, site) SELECT id, 39, 1, 10, 'b' FROM caf")


def test_a_caf_overlapping_another_of_its_type_is_refused(db) -> None:
    put_caf(db, 33, 1, 200)
    other = caf_bytes(33, 150, 300)
    with pytest.raises(DteSyncError) as err:
        db.import_caf(load_caf(other), other, "hq")
    assert err.value.code == "CAF_OVERLAP"
    same = caf_bytes(33, 1, 200)
    assert db.import_caf(load_caf(same), same, "hq") is False  # the same CAF again: a no-op


# --- leases -----------------------------------------------------------------------------------------
def test_leases_are_consecutive_blocks_the_last_one_short_then_none(db) -> None:
    put_caf(db, 33, 1, 25)
    blocks = [db.lease("a", 33, 10, TODAY) for _ in range(4)]
    assert [(b.desde, b.hasta) for b in blocks[:3] if b] == [(1, 10), (11, 20), (21, 25)]
    assert blocks[3] is None
    assert db.lease("a", 39, 10, TODAY) is None


def test_two_sites_racing_for_the_last_folios_each_get_different_ones(db, dsn) -> None:
    """Two processes lease small blocks as fast as they can until the CAF is empty: every folio
    of the CAF went to exactly one of them."""
    put_caf(db, 33, 1, 211)
    code = textwrap.dedent("""
        import json, sys
        from datetime import date
        from sync.cluster.db import ClusterDb
        from sync.cluster.settings import ClusterConfig
        from sync.secrets import SecretRef
        dsn, site = sys.argv[1], sys.argv[2]
        got = []
        with ClusterDb.from_config(ClusterConfig(dsn=dsn, site=site, password=SecretRef(env=sys.argv[3]))) as db:
            sys.stdin.readline()  # both start together
            while (g := db.lease(site, 33, 3, date.today())) is not None:
                got.append([g.desde, g.hasta])
        print(json.dumps(got))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, dsn, site, PASSWORD_ENV], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for site in ("a", "b")]
    time.sleep(1.0)
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=120) for p in procs]
    got = {site: json.loads(out) for site, (out, _) in zip(("a", "b"), outs)}
    folios = {site: [f for d, h in blocks for f in range(d, h + 1)] for site, blocks in got.items()}
    assert folios["a"] and folios["b"], "both sites got some blocks"
    assert not set(folios["a"]) & set(folios["b"]), "a folio went to both sites"
    assert sorted(folios["a"] + folios["b"]) == list(range(1, 212))
    with db.tx() as cur:
        cur.execute("SELECT count(*), sum(hasta - desde + 1) FROM lease")
        assert cur.fetchone() == (len(got["a"]) + len(got["b"]), 211)


def test_a_lost_site_gets_no_more_folios(db) -> None:
    put_caf(db)
    db.lease("gone", 33, 10, TODAY)
    assert db.lose("gone")
    with pytest.raises(SiteLost):
        db.lease("gone", 33, 10, TODAY)
    assert db.unused_leased("gone") == [(33, 1, 10)]


# --- the site's folio store in cluster mode -----------------------------------------------------------
def test_a_leased_store_allocates_only_inside_its_leases(tmp_path: Path) -> None:
    store = FolioStore(tmp_path / "folios.sqlite", leased=True)
    data = caf_bytes(33, 1, 100)
    store.import_caf(data, DEMO_RUT, TODAY, trusted_keys=_keys())  # holding a CAF is not holding folios
    with pytest.raises(DteSyncError) as err:
        store.allocate(33, TODAY, "d0")
    assert err.value.code == "FOLIOS_NOT_LEASED"
    store.record_lease(7, 33, 41, 43, data, DEMO_RUT, TODAY, trusted_keys=_keys())
    assert not store.record_lease(7, 33, 41, 43, data, DEMO_RUT, TODAY, trusted_keys=_keys())  # idempotent
    assert [store.allocate(33, TODAY, f"d{i}")[0] for i in range(3)] == [41, 42, 43]
    assert store.allocate(33, TODAY, "d1")[0] == 42  # same document, same folio
    with pytest.raises(DteSyncError) as err:
        store.allocate(33, TODAY, "d9")
    assert err.value.code == "FOLIOS_NOT_LEASED"
    with pytest.raises(DteSyncError) as err:
        store.claim(33, 50, "named")
    assert err.value.code == "FOLIO_NOT_LEASED"
    store.close()


def test_handing_back_stops_allocation_after_the_last_folio_taken(tmp_path: Path) -> None:
    store = FolioStore(tmp_path / "folios.sqlite", leased=True)
    data = caf_bytes(33, 1, 100)
    store.record_lease(1, 33, 1, 10, data, DEMO_RUT, TODAY, trusted_keys=_keys())
    store.allocate(33, TODAY, "a")
    store.claim(33, 5, "named")  # a folio the input named, above the cursor
    assert store.hand_back() == [(1, 6, 10)]
    assert store.pending_returns() == [(1, 6)]
    assert store.leased_free(TODAY) == {33: 3}  # 2, 3, 4 are still this site's
    for i in range(3):
        store.allocate(33, TODAY, f"x{i}")
    with pytest.raises(DteSyncError):
        store.allocate(33, TODAY, "x9")
    store.return_recorded(1)
    assert store.pending_returns() == []
    store.close()


def _keys():
    return {666: default_fake_sii().public_key}


# --- the shared record --------------------------------------------------------------------------------
def _event(eid: str, seq: int, state: str, folio: int | None = 7) -> Event:
    now = time.time()
    return Event(eid, seq, 1, state, None, now, {"source": "a.txt", "state": state, "tipo_dte": 33, "folio": folio,
                                                   "created_at": now, "updated_at": now})


def test_events_are_applied_once_and_the_newest_record_wins(db) -> None:
    db.ship("s1", [_event("e1", 1, "signed"), _event("e2", 2, "accepted")])
    db.ship("s1", [_event("e1", 1, "signed"), _event("e2", 2, "accepted")])  # a resend after a crash
    db.ship("s1", [_event("e0", 0, "received")])  # an older one, late
    with db.tx() as cur:
        cur.execute("SELECT count(*) FROM event")
        assert cur.fetchone() == (3,)
    (doc,) = db.documents("s1")
    assert (doc["state"], doc["seq"], doc["folio"]) == ("accepted", 2, 7)


# --- the stage inside a real daemon ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def company(tmp_path_factory):
    return create_sandbox(tmp_path_factory.mktemp("hq") / "hq", folios_per_type=400)


def _site(company, tmp_path: Path, dsn: str, name: str, **kw) -> Path:
    return site_config(company.config_path, tmp_path / name, name, cluster_section(dsn, name, **kw))


def test_cluster_init_and_import_caf_from_the_command_line(company, tmp_path, dsn) -> None:
    conf = _site(company, tmp_path, dsn, "hq")
    run = run_cli(conf, "cluster", "init")
    assert run.returncode == 0 and "migraciones aplicadas 1, 2" in run.stdout, run.stderr
    assert "al día" in run_cli(conf, "cluster", "init").stdout
    cafs = sorted((company.root / "caf").glob("CAF_T*.xml"))
    run = run_cli(conf, "caf", "import", *map(str, cafs))  # `caf import` in cluster mode: into the cluster
    assert run.returncode == 0 and run.stdout.count("en el cluster") == len(cafs), run.stdout + run.stderr
    run = run_cli(conf, "cluster", "import-caf", str(cafs[0]))
    assert run.returncode == 0 and "ya estaba en el cluster" in run.stdout
    with ClusterDb.from_config(cfg(dsn, "hq")) as d:
        assert d.caf_stock(TODAY) == {load_caf(p.read_bytes()).tipo_dte: 400 for p in cafs}
    check = run_cli(conf, "check")
    assert "OK   cluster hq: base central al día" in check.stdout, check.stdout
    assert "OK   CAF TipoDTE 33 (cluster): 400 folios por arrendar" in check.stdout
    assert "WARN folios arrendados TipoDTE 33: 0 en este sitio" in check.stdout
    status = run_cli(conf, "status")
    assert status.returncode == 0 and "Cambios por enviar al cluster" not in status.stdout  # no journal yet


def test_check_names_an_unreachable_cluster_and_an_old_schema(company, tmp_path, pg) -> None:
    conf = _site(company, tmp_path, f"postgresql://dtesync@127.0.0.1:{pg.port}/nothing_here", "s1")
    check = run_cli(conf, "check")
    assert check.returncode == 1 and "FAIL cluster s1: no se alcanza la base central" in check.stdout, check.stdout
    conf = _site(company, tmp_path, pg.new_database("never_initialized"), "s2")
    check = run_cli(conf, "check")
    assert "FAIL cluster s2: el esquema dtesync está en la versión 0 de 2" in check.stdout, check.stdout
    assert "dtesync cluster init" in check.stdout


def test_a_site_daemon_signs_from_its_leases_and_ships_every_record(company, tmp_path, dsn) -> None:
    from daemon_real import check_real_invariants, drop, varied_inputs, wait_final
    from sync.app import build_app
    from sync.cluster.stage import build_cluster
    from sync.runtime import open_engine
    from sync.web.settings import WebConfig
    from sync.web.stage import PanelStage

    hq = _site(company, tmp_path, dsn, "hq")
    assert run_cli(hq, "cluster", "init").returncode == 0
    assert run_cli(hq, "cluster", "import-caf", *map(str, (company.root / "caf").glob("CAF_T*.xml"))).returncode == 0
    conf = load_config(_site(company, tmp_path, dsn, "tienda-01", lease_size=15, low_water=8))
    engine = open_engine(conf)
    stage = build_cluster(conf, engine)
    panel = PanelStage(WebConfig(listen=f"127.0.0.1:{_free_port()}"))
    app = build_app(conf, engine=engine, stages=[stage, panel], watch="poll", workers=2, poll_interval=0.1)
    inputs = varied_inputs(40, seed=5, prefix="C", folders=("",))
    app.start()
    try:
        wait_until(lambda: len(engine.folios.leased_free(TODAY)) == len(DEMO_TYPES), 30, what="a lease of every type")
        drop(conf.folders.inbox, inputs, seed=1)
        statuses = wait_final(conf.folders.outbox, inputs, 120)
        wait_until(lambda: app.filing.journal.outbox_stats()[0] == 0, 30, what="the record shipped")
        health = {c.name: c.status for c in stage.checks()}
        assert health["cluster:db"] == "ok"
        assert panel.wait_ready(30) and panel.url
        page = urllib.request.urlopen(panel.url + "/sites", timeout=30).read().decode()
        assert "tienda-01" in page and "TipoDTE 33:" in page and "firmado:" in page, page[-2000:]
    finally:
        app.stop()
    status = run_cli(conf.path, "status")
    assert "Cambios por enviar al cluster: 0" in status.stdout, status.stdout + status.stderr
    counts = check_real_invariants(tmp_path / "tienda-01", inputs, statuses)
    assert counts["signed"] > 20
    with ClusterDb.from_config(cfg(dsn, "hq")) as d:
        shared = {r["source"]: r for r in d.documents("tienda-01")}
        leases = [x for s in d.sites() if s.name == "tienda-01" for x in s.leases]
    for item in inputs:
        st = statuses[item.rel]
        assert shared[item.rel]["state"] == st["state"] and shared[item.rel]["folio"] == st["folio"]
    for st in statuses.values():  # every signed folio lies in one of the site's leases
        if st["folio"]:
            assert any(x.tipo_dte == st["tipo_dte"] and x.desde <= st["folio"] <= x.hasta for x in leases)


def test_a_lease_granted_just_before_a_crash_is_adopted_on_restart(company, tmp_path, dsn) -> None:
    with ClusterDb.from_config(cfg(dsn, "hq")) as d:
        d.migrate()
        data = (company.root / "caf" / "CAF_T33_1-400.xml").read_bytes()
        d.import_caf(load_caf(data), data, "hq")
        orphan = d.lease("s1", 33, 10, TODAY)  # committed in the cluster, never recorded by the site
    assert orphan is not None
    store = FolioStore(tmp_path / "folios.sqlite", leased=True)
    stage = ClusterStage(cfg(dsn, "s1", lease_size=10, low_water=5, types=[33]), store, DEMO_RUT, trusted_keys=_keys())
    stage.bind(_FilingStub(), Alerts())
    stage.refill_once()
    assert [(x.id, x.desde, x.hasta) for x in store.leases()] == [(orphan.id, 1, 10)]
    assert store.allocate(33, TODAY, "k")[0] == 1
    stage.stop()
    store.close()


def test_a_site_declared_lost_stops_signing_from_its_leases(company, tmp_path, dsn) -> None:
    with ClusterDb.from_config(cfg(dsn, "hq")) as d:
        d.migrate()
        data = (company.root / "caf" / "CAF_T33_1-400.xml").read_bytes()
        d.import_caf(load_caf(data), data, "hq")
    store = FolioStore(tmp_path / "folios.sqlite", leased=True)
    stage = ClusterStage(cfg(dsn, "s1", lease_size=10, low_water=5, types=[33], refill_interval=0.01), store,
                         DEMO_RUT, trusted_keys=_keys())
    alerts = Alerts()
    stage.bind(_FilingStub(), alerts)
    stage.refill_once()
    assert store.allocate(33, TODAY, "k")[0] == 1
    with ClusterDb.from_config(cfg(dsn, "hq")) as d:
        d.lose("s1")
    time.sleep(0.05)  # the next pass through the cluster (every refill_interval) sees it
    stage.refill_once()
    with pytest.raises(DteSyncError):
        store.allocate(33, TODAY, "k2")
    assert stage.lost and "CLUSTER_SITE_LOST" in [a.code for a in alerts.active()]
    assert {c.name: c.status for c in stage.checks()}["cluster:site"] == "down"
    stage.stop()
    store.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _FilingStub:
    """The stage's refiller never touches the Filing; bind() only sets the outbox flag."""

    ship_events = False
    stages: list = []


def test_sites_lists_leases_and_a_lost_sites_folios_to_annul(company, tmp_path, dsn) -> None:
    hq = _site(company, tmp_path, dsn, "hq")
    assert run_cli(hq, "cluster", "init").returncode == 0
    assert run_cli(hq, "cluster", "import-caf", str(company.root / "caf" / "CAF_T33_1-400.xml")).returncode == 0
    with ClusterDb.from_config(cfg(dsn, "hq")) as d:
        d.lease("tienda-01", 33, 10, TODAY)
        d.lease("tienda-02", 33, 10, TODAY)
        d.ship("tienda-02", [_event("x1", 1, "signed", folio=11)])
    run = run_cli(hq, "sites")
    assert run.returncode == 0 and "tienda-01" in run.stdout and "tienda-02" in run.stdout, run.stderr
    run = run_cli(hq, "sites", "lose", "tienda-02")
    assert run.returncode == 0 and "TipoDTE 33: 12-20" in run.stdout, run.stdout
    view = json.loads(run_cli(hq, "status", "--cluster", "--json").stdout)
    lost = next(s for s in view["sites"] if s["site"] == "tienda-02")
    assert lost["state"] == "lost" and lost["to_annul"] == [{"tipo_dte": 33, "desde": 12, "hasta": 20}]
    assert view["duplicate_folios"] == []
    assert run_cli(hq, "sites", "lose", "nadie").returncode == 1


def test_hand_back_from_the_command_line_reaches_the_cluster_and_is_never_leased_again(company, tmp_path, dsn) -> None:
    conf = _site(company, tmp_path, dsn, "tienda-01", lease_size=10, low_water=5)
    assert run_cli(conf, "cluster", "init").returncode == 0
    assert run_cli(conf, "cluster", "import-caf", str(company.root / "caf" / "CAF_T33_1-400.xml")).returncode == 0
    with ClusterDb.from_config(cfg(dsn, "tienda-01")) as d:
        grant = d.lease("tienda-01", 33, 10, TODAY)
    assert grant is not None
    store = FolioStore(tmp_path / "tienda-01" / "state" / "folios.sqlite", leased=True)
    store.record_lease(grant.id, 33, grant.desde, grant.hasta, grant.caf_data, DEMO_RUT, TODAY, trusted_keys=_keys())
    for i in range(4):
        store.allocate(33, TODAY, f"d{i}")
    store.close()
    run = run_cli(conf, "sites", "hand-back")
    assert run.returncode == 0 and "folios 5-10" in run.stdout and "registró" in run.stdout, run.stdout + run.stderr
    with ClusterDb.from_config(cfg(dsn, "hq")) as d:
        assert d.returned() == [("tienda-01", 33, 5, 10)]
        nxt = d.lease("tienda-02", 33, 10, TODAY)
    assert nxt is not None and nxt.desde == 11


def test_the_cluster_stage_is_wired_only_when_configured(company, tmp_path, dsn) -> None:
    from sync.app import product_stages
    from sync.runtime import open_engine

    conf = load_config(_site(company, tmp_path, dsn, "tienda-09"))
    engine = open_engine(conf)
    assert engine.folios.leased
    assert "cluster" in [s.name for s in product_stages(conf, engine)]
    engine.folios.close()


# --- the journal's record outbox (no database needed) ---------------------------------------------
def _claimed(j, name: str):
    from sync.journal import ClaimIntent

    [doc_id] = j.begin_claims([ClaimIntent("", name, name.rsplit(".", 1)[0], ".txt", None, 10, 0o100644)])
    [doc] = j.mark_claimed([(doc_id, "sha-" + name)])
    return doc


def test_each_change_of_a_record_goes_to_the_outbox_in_its_own_transaction(tmp_path: Path) -> None:
    from sync.journal import Journal

    j = Journal(tmp_path / "journal.sqlite3", events=True)
    doc = _claimed(j, "a.txt")
    j.decide(doc.id, "signed", final_path="x", tipo_dte=33, folio=7)
    j.set_state(doc.id, "accepted", "track 123", track_id="123")
    with pytest.raises(ValueError):
        j.set_state(doc.id, "no-such-state")  # a change refused leaves no event
    events = j.pending_events(10)
    assert [(e[3], e[4]) for e in events] == [("signed", None), ("accepted", "track 123")]
    assert events[-1][6].track_id == "123" and len({e[1] for e in events}) == 2
    j.events_shipped(events[-1][0])
    assert j.pending_events(10) == [] and j.outbox_stats() == (0, None)
    j.set_state(doc.id, "accepted", "again")
    (later,) = j.pending_events(10)
    assert later[0] > events[-1][0], "a sequence number is never reused after a delete"
    j.close()


def test_a_single_pc_journal_keeps_no_outbox(tmp_path: Path) -> None:
    from sync.journal import Journal

    j = Journal(tmp_path / "journal.sqlite3")
    doc = _claimed(j, "a.txt")
    j.decide(doc.id, "signed", final_path="x", tipo_dte=33, folio=7)
    j.record_changed(doc.id, "refresh")
    assert j.pending_events(10) == []
    j.close()


def test_a_lease_number_given_again_for_other_folios_is_refused(tmp_path: Path) -> None:
    store = FolioStore(tmp_path / "folios.sqlite", leased=True)
    data = caf_bytes(33, 1, 100)
    store.record_lease(3, 33, 1, 10, data, DEMO_RUT, TODAY, trusted_keys=_keys())
    with pytest.raises(DteSyncError) as err:
        store.record_lease(3, 33, 11, 20, data, DEMO_RUT, TODAY, trusted_keys=_keys())
    assert "respaldo" in err.value.message("es")
    store.close()


def test_signing_needs_no_database_until_the_stock_runs_low(company, tmp_path, dsn, pg) -> None:
    from sync.cluster.db import ClusterUnavailable

    with ClusterDb.from_config(cfg(dsn, "hq")) as d:
        d.migrate()
        data = (company.root / "caf" / "CAF_T33_1-400.xml").read_bytes()
        d.import_caf(load_caf(data), data, "hq")
    store = FolioStore(tmp_path / "folios.sqlite", leased=True)
    stage = ClusterStage(cfg(dsn, "s1", lease_size=10, low_water=5, types=[33]), store, DEMO_RUT, trusted_keys=_keys())
    stage.bind(_FilingStub(), Alerts())
    stage.refill_once()
    assert store.leased_free(TODAY) == {33: 10}
    stage._refill_db = ClusterDb(cfg(f"postgresql://dtesync@127.0.0.1:{pg.port}/nothing_here", "s1",
                                     connect_timeout=1), "wrong")  # the cluster is gone from here on
    for i in range(5):
        store.allocate(33, TODAY, f"d{i}")
        stage.refill_once()  # above the low-water mark: a look at the local store only
    store.allocate(33, TODAY, "d5")
    with pytest.raises(ClusterUnavailable):
        stage.refill_once()  # below it: the refill needs the cluster
    store.close()


def test_a_connection_left_over_from_before_a_server_restart_is_replaced_not_failed_on(db, pg) -> None:
    from sync.cluster.db import IDLE_PROBE

    put_caf(db)
    assert db.lease("s1", 33, 5, TODAY) is not None
    pg.stop("immediate")
    pg.start()
    time.sleep(IDLE_PROBE + 0.2)
    grant = db.lease("s1", 33, 5, TODAY)  # the first lease after the restart: no ClusterUnavailable
    assert grant is not None and grant.desde == 6


def _restore_to_empty(db: ClusterDb) -> None:
    """What restoring last night's dump does to today's leases: gone, the cursors and the id
    sequence back where they were."""
    with db.tx() as cur:
        cur.execute("DELETE FROM lease")
        cur.execute("UPDATE caf SET next_folio = desde")
        cur.execute("SELECT setval(pg_get_serial_sequence('lease', 'id'), 1, false)")


def _fresh_stage(dsn: str, site: str, store: FolioStore, alerts: Alerts) -> ClusterStage:
    stage = ClusterStage(cfg(dsn, site, lease_size=10, low_water=5, types=[33]), store, DEMO_RUT, trusted_keys=_keys())
    stage.bind(_FilingStub(), alerts)
    return stage


def test_a_lease_the_restored_cluster_lost_is_put_back_and_never_leased_again(db, dsn, tmp_path) -> None:
    put_caf(db)
    store = FolioStore(tmp_path / "s1.sqlite", leased=True)
    _fresh_stage(dsn, "s1", store, Alerts()).refill_once()
    assert [(x.desde, x.hasta) for x in store.leases()] == [(1, 10)]
    store.allocate(33, TODAY, "k")
    _restore_to_empty(db)
    alerts = Alerts()
    _fresh_stage(dsn, "s1", store, alerts).refill_once()  # the site starts again: its first contact
    assert "CLUSTER_LEASE_RESTORED" in [a.code for a in alerts.active()]
    assert [(s.name, [(x.desde, x.hasta) for x in s.leases]) for s in db.sites()] == [("s1", [(1, 10)])]
    other = db.lease("s2", 33, 10, TODAY)
    assert other is not None and other.desde == 11 and other.id > store.leases()[0].id


def test_folios_another_site_leased_from_the_restored_cluster_are_reported_and_no_longer_used(db, dsn, tmp_path) -> None:
    put_caf(db)
    store = FolioStore(tmp_path / "s1.sqlite", leased=True)
    _fresh_stage(dsn, "s1", store, Alerts()).refill_once()
    store.allocate(33, TODAY, "k")
    _restore_to_empty(db)
    assert db.lease("s2", 33, 10, TODAY) is not None  # s2 got folios 1-10 again before s1 came back
    alerts = Alerts()
    stage = _fresh_stage(dsn, "s1", store, alerts)
    stage.refill_once()
    assert "CLUSTER_LEASE_CONFLICT" in [a.code for a in alerts.active()]
    assert [x.revoked for x in store.leases() if x.desde == 1] == [True]
    assert store.allocate(33, TODAY, "k2")[0] > 10  # from a new lease, never from the conflicting block


def test_leasing_held_after_a_restore_grants_nothing_until_released(company, tmp_path, dsn) -> None:
    conf = _site(company, tmp_path, dsn, "oficina")
    assert run_cli(conf, "cluster", "init").returncode == 0
    assert run_cli(conf, "cluster", "import-caf", str(company.root / "caf" / "CAF_T33_1-400.xml")).returncode == 0
    run = run_cli(conf, "cluster", "hold")
    assert run.returncode == 0 and "Arriendos detenidos" in run.stdout, run.stderr
    store = FolioStore(tmp_path / "s1.sqlite", leased=True)
    alerts = Alerts()
    stage = _fresh_stage(dsn, "s1", store, alerts)
    stage.refill_once()
    assert store.leases() == [] and "CLUSTER_LEASING_HELD" in [a.code for a in alerts.active()]
    assert "CLUSTER_CAF_EXHAUSTED" not in [a.code for a in alerts.active()]
    assert "DETENIDOS" in run_cli(conf, "sites").stdout
    assert run_cli(conf, "cluster", "release").returncode == 0
    stage._last_pass = 0.0  # the next pass through the cluster
    stage._exhausted.clear()
    stage.refill_once()
    assert [(x.desde, x.hasta) for x in store.leases()] == [(1, 10)]
    assert "CLUSTER_LEASING_HELD" not in [a.code for a in alerts.active()]


def test_cluster_init_upgrades_a_database_of_an_earlier_version(dsn) -> None:
    from sync.cluster.schema import MIGRATIONS

    with ClusterDb.from_config(cfg(dsn, "hq")) as d:
        with d.tx() as cur:  # a database `cluster init` of version 1 made
            cur.execute("CREATE SCHEMA IF NOT EXISTS dtesync")
            cur.execute("CREATE TABLE schema_version (version integer PRIMARY KEY,"
                        " applied_at timestamptz NOT NULL DEFAULT now())")
            cur.execute(MIGRATIONS[0])
            cur.execute("INSERT INTO schema_version (version) VALUES (1)")
        assert d.version() == 1
        assert d.migrate() == [2]
        assert d.version() == len(MIGRATIONS) == 2
        assert d.leasing_held_since() is None
