"""Cluster mode (docs/sites.md): what a site pays for sharing a company's CAFs on PostgreSQL.

    python bench/sites.py              # everything, about 1 min on 2 cores
    python bench/sites.py --quick      # smaller N
    python bench/sites.py --json

A throwaway PostgreSQL server (Debian's, as in the tests) on loopback, TCP with a password.
- refill:  the cost of one lease refill as the stage does it: the PostgreSQL transaction
           (lock the CAF row, move its cursor, insert the lease) and the site's durable record
           of it in its folio store (CAF already known); K refills, p50/p95/max ms.
- signing: Engine.issue latency per document (parse, folio, TED, signature, XSD) on one
           thread, three ways, interleaved in rounds: a single PC; a site with the database
           up and its lease refiller running with small leases (a refill every 100 documents,
           woken after each signature as in the daemon); a site with the database stopped
           (`pg_ctl stop -m immediate`) and its refiller failing and retrying meanwhile.
           Signing only reads the local folio store, so the three should match.
- sites:   daemons as separate processes each given N files at once; documents per second
           per daemon from the first drop to its last final status: three cluster sites at
           once, three single-PC daemons at once (the same CPU share, no cluster), then one of
           each alone. On one machine the daemons share its cores; at a real chain each site
           has its own PC. Also each daemon process's CPU time per document (from the
           first drop to 2 s after the last status, start-up excluded), which the machine's
           load does not skew.

Prints figures; it is not a test and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from cluster_fixtures import PASSWORD_ENV, PgServer, cluster_section, run_cli, site_config  # noqa: E402
from daemon_real import drop, varied_inputs, wait_final  # noqa: E402
from sync.alerts import Alerts  # noqa: E402
from sync.cluster.db import ClusterDb  # noqa: E402
from sync.cluster.settings import ClusterConfig  # noqa: E402
from sync.cluster.stage import ClusterStage  # noqa: E402
from sync.config import load_config  # noqa: E402
from sync.engine import Engine  # noqa: E402
from sync.folios.caf import load_caf  # noqa: E402
from sync.folios.store import FolioStore  # noqa: E402
from sync.runtime import load_certificate, trusted_caf_keys  # noqa: E402
from sync.sandbox.build import create_sandbox, examples_dir  # noqa: E402
from sync.secrets import SecretRef  # noqa: E402

TODAY = date.today()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def ms(values: list[float]) -> dict[str, float]:
    return {"p50": round(pct(values, 0.5) * 1000, 2), "p95": round(pct(values, 0.95) * 1000, 2),
            "max": round(max(values) * 1000, 2), "n": len(values)}


def cfg(dsn: str, site: str, **kw: object) -> ClusterConfig:
    return ClusterConfig(dsn=dsn, site=site, password=SecretRef(env=PASSWORD_ENV), **kw)  # type: ignore[arg-type]


# --- refill ---------------------------------------------------------------------------------------
def bench_refill(pg: PgServer, company, k: int, tmp: Path) -> dict:
    dsn = pg.new_database("bench_refill")
    data = (company.root / "caf" / "CAF_T33_1-200000.xml").read_bytes()
    keys = trusted_caf_keys(load_config(company.config_path))
    with ClusterDb.from_config(cfg(dsn, "s1")) as db:
        db.migrate()
        db.import_caf(load_caf(data), data, "hq")
        store = FolioStore(tmp / "refill-folios.sqlite", leased=True)
        store.import_caf(data, company_rut(company), TODAY, keys)
        pg_t, local_t, total_t = [], [], []
        for _ in range(k):
            t0 = time.perf_counter()
            grant = db.lease("s1", 33, 100, TODAY)
            t1 = time.perf_counter()
            assert grant is not None
            store.record_lease(grant.id, 33, grant.desde, grant.hasta, grant.caf_data, company_rut(company), TODAY,
                               trusted_keys=keys)
            t2 = time.perf_counter()
            pg_t.append(t1 - t0)
            local_t.append(t2 - t1)
            total_t.append(t2 - t0)
        store.close()
    return {"postgres_lease": ms(pg_t), "local_record": ms(local_t), "refill": ms(total_t)}


def company_rut(company):
    return load_config(company.config_path).company.rut


# --- signing latency --------------------------------------------------------------------------------
def _inputs(n: int) -> list[bytes]:
    body = (examples_dir() / "33_factura.txt").read_bytes()
    return [body.replace(b"RznSocRecep=", b"RznSocRecep=N%d " % i, 1) for i in range(n)]


def _issue_all(engine: Engine, bodies: list[bytes], prefix: str, after=None) -> list[float]:
    out = []
    for i, body in enumerate(bodies):
        t0 = time.perf_counter()
        engine.issue(body, "bench.txt", doc_key=f"{prefix}{i}")
        out.append(time.perf_counter() - t0)
        if after is not None:
            after()
    return out


def _site_engine(config, dsn: str, name: str, path: Path, cert, keys, **kw: object) -> tuple[Engine, ClusterStage]:
    """A site's engine over a leased folio store, with its lease refiller thread running as in
    the daemon (woken after each signature)."""
    store = FolioStore(path, leased=True)
    stage = ClusterStage(cfg(dsn, name, types=[33], **kw), store, config.company.rut, trusted_keys=keys)
    stage.bind(_Filing(), Alerts())
    stage.refill_once()
    threading.Thread(target=stage._loop, args=(stage.refill_once, stage._refill_wake, stage.config.refill_interval),
                     daemon=True).start()
    return Engine.from_config(config, store, cert), stage


def _wait_stock(stage: ClusterStage, n: int, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while stage.folios.leased_free(TODAY).get(33, 0) < n and time.monotonic() < end:
        stage._refill_wake.set()
        time.sleep(0.2)


def bench_signing(pg: PgServer, company, n: int, tmp: Path, rounds: int = 5) -> dict:
    """The three ways interleaved, `rounds` rounds of n / rounds documents each, so a change
    of the machine's load during the run falls on all three alike."""
    config = load_config(company.config_path)
    cert = load_certificate(config)
    keys = trusted_caf_keys(config)
    data = (company.root / "caf" / "CAF_T33_1-200000.xml").read_bytes()
    per = max(1, n // rounds)
    bodies = _inputs(per)

    single = FolioStore(tmp / "single.sqlite")
    single.import_caf(data, config.company.rut, TODAY, keys)
    plain = Engine.from_config(config, single, cert)
    dsn = pg.new_database("bench_signing")
    with ClusterDb.from_config(cfg(dsn, "hq")) as db:
        db.migrate()
        db.import_caf(load_caf(data), data, "hq")
    # up: small leases (a refill every 100 documents), a round never outruns them. down: leases that last the whole run, and a
    # low-water mark above them, so its refiller keeps trying (and failing) while the server is down
    up, up_stage = _site_engine(config, dsn, "s-up", tmp / "up.sqlite", cert, keys, lease_size=100, low_water=100,
                                refill_interval=5.0)
    down, down_stage = _site_engine(config, dsn, "s-down", tmp / "down.sqlite", cert, keys,
                                    lease_size=n + 100, low_water=n + 200, refill_interval=1.0, retry_cap=1.0)
    for engine in (plain, up, down):
        _issue_all(engine, bodies[:10], f"warm{id(engine)}")
    lat: dict[str, list[float]] = {"single PC": [], "site, database up, refilling": [], "site, database down": []}
    before = up_stage.refills
    for r in range(rounds):
        lat["single PC"] += _issue_all(plain, bodies, f"s{r}-")
        lat["site, database up, refilling"] += _issue_all(up, bodies, f"u{r}-", after=up_stage._refill_wake.set)
        pg.stop("immediate")
        try:
            lat["site, database down"] += _issue_all(down, bodies, f"d{r}-", after=down_stage._refill_wake.set)
        finally:
            pg.start()
        _wait_stock(up_stage, 100)  # the up site's refiller reconnects (at most RETRY_MIN after a signature)
    refills = up_stage.refills - before
    for stage in (up_stage, down_stage):
        stage.stop()
        stage.folios.close()
    single.close()
    out = {k: ms(v) for k, v in lat.items()}
    out["site, database up, refilling"]["refills"] = refills
    return out


class _Filing:
    ship_events = False
    stages: list = []


# --- three site daemons -----------------------------------------------------------------------------
def _burst(configs: dict[str, Path], n: int) -> dict[str, float]:
    """Start a daemon per config (a cluster site, or a single PC without [cluster]), drop n files
    into each at once; docs/s per daemon from the first drop to its last final status."""
    procs = {}
    for site, conf in configs.items():
        cluster = "[cluster]" in conf.read_text(encoding="utf-8")
        cmd = [sys.executable, str(REPO / "tests" / ("cluster_daemon_runner.py" if cluster else "daemon_real.py")),
               str(conf), *([] if cluster else ["poll"])]
        procs[site] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for p in procs.values():
            assert (p.stdout.readline() if p.stdout else "").strip() == "READY"
        time.sleep(3.0)  # the first leases
        inputs = {s: varied_inputs(n, seed=i, prefix=s[-1].upper(), bad_share=0.0, folders=("",))
                  for i, s in enumerate(configs)}
        cpu0 = {s: _cpu_seconds(procs[s].pid) for s in configs}
        start = time.monotonic()
        threads = [threading.Thread(target=drop, args=(configs[s].parent / "inbox", inputs[s], 1)) for s in configs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done: dict[str, float] = {}

        def wait(site: str) -> None:
            wait_final(configs[site].parent / "outbox", inputs[site], 600)
            done[site] = time.monotonic()

        waiters = [threading.Thread(target=wait, args=(s,)) for s in configs]
        for t in waiters:
            t.start()
        for t in waiters:
            t.join()
        time.sleep(2.0)  # the cluster stage's last shipment of the burst's records
        cpu = {s: _cpu_seconds(procs[s].pid) - cpu0[s] for s in configs}
        return {s: {"docs_s": round(n / (done[s] - start), 1), "cpu_ms_per_doc": round(cpu[s] / n * 1000, 1)}
                for s in configs}
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
            p.wait(60)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): robust to the machine's load,
    unlike wall-clock rates."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_sites(pg: PgServer, company, n: int, tmp: Path) -> dict:
    dsn = pg.new_database("bench_sites")
    hq = site_config(company.config_path, tmp / "oficina", "oficina", cluster_section(dsn, "oficina"))
    assert run_cli(hq, "cluster", "init").returncode == 0
    assert run_cli(hq, "cluster", "import-caf", *map(str, (company.root / "caf").glob("CAF_T*.xml"))).returncode == 0

    def site(name: str) -> Path:
        return site_config(company.config_path, tmp / name, name, cluster_section(
            dsn, name, lease_size=200, low_water=100, refill_interval=5, ship_interval=1))

    def single(name: str) -> Path:
        conf = site_config(company.config_path, tmp / name, name, "")
        (tmp / name / "caf").rmdir()
        os.symlink(company.root / "caf", tmp / name / "caf")
        return conf

    out = {}
    out["three cluster sites at once"] = _burst({s: site(s) for s in ("tienda-a", "tienda-b", "tienda-c")}, n)
    out["three single PCs at once"] = _burst({s: single(s) for s in ("pc-a", "pc-b", "pc-c")}, n)
    out["one cluster site alone"] = _burst({"tienda-d": site("tienda-d")}, n)
    out["one single PC alone"] = _burst({"pc-d": single("pc-d")}, n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    k, n, burst = (50, 100, 100) if args.quick else (300, 400, 400)
    tmp = Path(tempfile.mkdtemp(prefix="dtesync-bench-sites-"))
    company = create_sandbox(tmp / "hq", folios_per_type=200_000)
    pg = PgServer().init()
    out: dict = {"cores": os.cpu_count()}
    try:
        out["refill"] = bench_refill(pg, company, k, tmp)
        out["signing"] = bench_signing(pg, company, n, tmp)
        out["sites"] = bench_sites(pg, company, burst, tmp)
    finally:
        pg.destroy()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    r = out["refill"]
    print(f"lease refill ({r['refill']['n']} of 100 folios, loopback TCP, scram):")
    for key in ("postgres_lease", "local_record", "refill"):
        v = r[key]
        print(f"  {key:<16} p50 {v['p50']:>7} ms   p95 {v['p95']:>7} ms   max {v['max']:>7} ms")
    print("Engine.issue latency, one thread (33 factura):")
    for key, v in out["signing"].items():
        extra = f"   ({v['refills']} refills during the run)" if "refills" in v else ""
        print(f"  {key:<30} p50 {v['p50']:>6} ms   p95 {v['p95']:>6} ms   max {v['max']:>7} ms{extra}")
    print(f"burst of {burst} files per daemon; docs/s and CPU ms per document of each daemon process "
          "(daemons and PostgreSQL share the machine's cores):")
    for key, rates in out["sites"].items():
        print(f"  {key:<28} " + ", ".join(f"{k} {v['docs_s']} docs/s {v['cpu_ms_per_doc']} ms" for k, v in rates.items()))

if __name__ == "__main__":
    main()
