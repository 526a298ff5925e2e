"""A year of operation: does anything slow down? (docs/performance.md, "Operations")

    python bench/ops.py                  # 2 000 000 documents (builds ~3-4 min, measures ~1 min)
    python bench/ops.py --docs 200000    # a smaller year, a smoke run
    python bench/ops.py --keep DIR       # build into DIR (reused when it is already there)
    python bench/ops.py --json
    python bench/ops.py --keep DIR --schema-compare   # + the write path with the previous schema

Builds a sandbox whose state folder holds what a shop issuing ~5 500 documents a day has after
a year, written fast with executemany: the journal (documents + ~4 history rows each, the last
30 days still in the outbox, the rest retained), the folio store (every folio used, in the
sandbox's own CAFs), the print queue (a printed job per boleta and factura) and the uplink
queue (every document final). Then measures, on the real code:
- start-up: `build_app(config)` + `Daemon.start()` until the first inbox scan is done, with the
  product's stages (printing, uplink, reports, retention, monitor, panel);
- `dtesync status` as a person runs it (a new process), and its work alone (in process);
- the panel's pages over HTTP (documents, searches by name, folio, RUT and date, a document, operations,
  /health, /metrics);
- the per-document cost of the journal's writes (claim, decide, file, three later states) on
  the year-old journal vs an empty one;
- one retention pass with nothing due.
Blobs are small (tickets and DTE XML of 512 bytes): row counts drive the queries, not blob sizes.
Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sync.sandbox.build import create_sandbox  # noqa: E402

DAY = 86400.0
TYPES = [(39, 0.70), (33, 0.24), (61, 0.04), (56, 0.01), (52, 0.01)]
STATIONS = ["caja1", "caja2", "caja3", "caja4"]
BLOB = b"x" * 512


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- building a year ----------------------------------------------------------------------------------
def config_text(extra_port: int) -> str:
    return f"""
[uplink]
kind = "sii"
url = "http://127.0.0.1:{extra_port}"

[[printing.stations]]
name = "caja1"
connector = {{ type = "tcp", host = "127.0.0.1", port = {extra_port}, timeout = 1 }}

[retention]
outbox_days = 30
"""


def build(root: Path, n: int, seed: int = 1) -> Path:
    """The sandbox with a year of state; returns its config path."""
    per_type = int(n * 0.72) + 10
    sb = create_sandbox(root / "sb", folios_per_type=per_type)
    cfg = sb.config_path
    if "[retention]" not in cfg.read_text("utf-8"):
        cfg.write_text(cfg.read_text("utf-8") + config_text(9), encoding="utf-8")
    state = sb.root / "state"
    if (state / "journal.sqlite3").exists():
        return cfg
    from sync.config import load_config
    from sync.runtime import open_engine

    config = load_config(cfg)
    open_engine(config).folios.close()  # imports the sandbox CAFs
    rng = random.Random(seed)
    now = time.time()
    t0 = time.monotonic()
    docs, folios = _journal(state / "journal.sqlite3", n, now, rng, sb.root)
    log(f"journal: {n} documents in {time.monotonic() - t0:.0f} s")
    t0 = time.monotonic()
    _folios(state / "folios.sqlite", folios)
    log(f"folios: {len(folios)} in {time.monotonic() - t0:.0f} s")
    t0 = time.monotonic()
    _queues(state, docs)
    log(f"print and uplink queues in {time.monotonic() - t0:.0f} s")
    return cfg


def _raw(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-400000")
    return db


def _journal(path: Path, n: int, now: float, rng: random.Random, top: Path) -> tuple[list[tuple], list[tuple]]:
    from sync.journal import MIGRATIONS, SCHEMA, Journal

    table = SCHEMA.split(";")[0] + ";"
    db = _raw(path)
    db.execute(table)
    db.execute("CREATE TABLE history (doc_id INTEGER NOT NULL, at REAL NOT NULL, state TEXT NOT NULL, note TEXT)")
    db.execute(f"PRAGMA user_version={len(MIGRATIONS)}")
    start = now - 365 * DAY
    next_folio = {t: 1 for t, _ in TYPES}
    ruts = [f"{rng.randrange(5_000_000, 30_000_000)}-{rng.choice('0123456789K')}" for _ in range(5000)]
    err = json.dumps([{"code": "RUT_INVALID", "field": "RUTRecep", "expected": None, "found": "1-2", "line": 4,
                       "path": None, "source": None, "params": {"detail": "dígito verificador"}}])
    rej = json.dumps([{"code": "SII_REJECTED", "field": None, "expected": None, "found": None, "line": None,
                       "path": None, "source": None, "params": {"detail": "RCT: Rechazado"}}])
    docs, folios, hist = [], [], []
    weights = [w for _, w in TYPES]
    kinds = [t for t, _ in TYPES]
    db.execute("BEGIN")
    for i in range(1, n + 1):
        created = start + (i / n) * 365 * DAY
        station = STATIONS[i % 4]
        name = f"{'B' if i % 10 < 7 else 'F'}{i:07d}.txt"
        roll = rng.random()
        retained = 2 if created < now - 30 * DAY else 0
        fp = f"{top}/archive/{datetime.fromtimestamp(created).strftime('%Y-%m-%d')}/{station}/{name}"
        if roll < 0.01:
            row = (i, station, name, name[:-4], ".txt", station, "filed", "rejected_input", None, 300, 0o644, None, None,
                   None, None, None, None, None, None, None, None, None, 0, err, None, 0,
                   f"{top}/rejected/{station}/{name}", created, created + 0.2, retained)
            hist += [(i, created, "received", None), (i, created + 0.2, "rejected_input", None)]
        else:
            tipo = rng.choices(kinds, weights)[0]
            folio = next_folio[tipo]
            next_folio[tipo] += 1
            state = "rejected_sii" if roll > 0.998 else "accepted"
            total = rng.randrange(1000, 500000)
            rut = ruts[rng.randrange(len(ruts))] if tipo != 39 else "66666666-6"
            row = (i, station, name, name[:-4], ".txt", station, "filed", state, f"{i:064x}", 800, 0o644, tipo, folio,
                   "76543210-3", total, str(5_000_000 + i // 50), rut,
                   datetime.fromtimestamp(created).strftime("%Y-%m-%d"), int(total / 1.19), 0, total - int(total / 1.19),
                   "Cliente de prueba" if tipo != 39 else None, 0, rej if state == "rejected_sii" else None, None, 0,
                   fp, created, created + 30, retained)
            folios.append((tipo, folio, f"{i}:{i:064x}", date.fromtimestamp(created).isoformat()))
            docs.append((i, tipo, folio, created, station, state))
            hist += [(i, created, "received", None), (i, created + 0.1, "signed", None), (i, created + 0.2, "queued", None),
                     (i, created + 2, "sent", "dte trackid 1"), (i, created + 30, state, None)]
        if len(hist) > 200_000 or i == n:
            db.executemany(f"INSERT INTO documents VALUES ({','.join('?' * 30)})", _pending_rows)
            db.executemany("INSERT INTO history VALUES (?,?,?,?)", hist)
            _pending_rows.clear()
            hist = []
        _pending_rows.append(row)
    if _pending_rows:
        db.executemany(f"INSERT INTO documents VALUES ({','.join('?' * 30)})", _pending_rows)
        _pending_rows.clear()
    db.execute("COMMIT")
    db.close()
    Journal(path).close()  # the indexes, the counts table and its triggers, as the daemon creates them
    db = _raw(path)
    db.execute("INSERT INTO doc_counts SELECT COALESCE(tipo_dte, 0), state, step, COUNT(*) FROM documents GROUP BY 1, 2, 3")
    db.close()
    return docs, folios


_pending_rows: list[tuple] = []


def _folios(path: Path, folios: list[tuple]) -> None:
    db = _raw(path)
    cafs = {t: cid for cid, t in db.execute("SELECT id, tipo_dte FROM caf")}
    used = {}
    db.execute("BEGIN")
    db.executemany("INSERT INTO folio(tipo_dte, folio, caf_id, state, doc_key, taken_on) VALUES (?,?,?,'used',?,?)",
                   ((t, f, cafs[t], k, d) for t, f, k, d in folios))
    for t, f, _, _ in folios:
        used[t] = max(used.get(t, 0), f)
    db.executemany("UPDATE caf SET next_folio=? WHERE tipo_dte=?", [(f + 1, t) for t, f in used.items()])
    db.execute("COMMIT")
    db.close()


def _queues(state: Path, docs: list[tuple]) -> None:
    from sync.printing.queue import FILE_NAME as PRINT_FILE
    from sync.printing.queue import PrintQueue
    from sync.uplink.queue import FILE_NAME as UPLINK_FILE
    from sync.uplink.queue import UplinkQueue

    PrintQueue(state / PRINT_FILE).close()
    UplinkQueue(state / UPLINK_FILE).close()
    p = _raw(state / PRINT_FILE)
    p.execute("BEGIN")
    p.executemany("INSERT INTO print_jobs(doc_key, doc_id, station, label, data, state, attempts, next_at, created_at,"
                  " updated_at) VALUES (?,?,?,?,?,'printed',1,?,?,?)",
                  ((f"doc:{i}", i, "caja1", f"{i}", BLOB, c, c, c + 1) for i, t, f, c, s, _ in docs if t in (33, 39)))
    p.execute("COMMIT")
    p.close()
    u = _raw(state / UPLINK_FILE)
    u.execute("BEGIN")
    u.executemany("INSERT INTO uplink_queue(doc_id, channel, tipo_dte, folio, rut_emisor, rut_receptor, fch_emis,"
                  " monto_total, dte_xml, state, attempts, next_at, track_id, result, enqueued_at, updated_at)"
                  " VALUES (?,?,?,?,'76543210-3','66666666-6','2026-01-01',1000,?,?,1,?,'1',?,?,?)",
                  ((i, "boleta" if t == 39 else "dte", t, f, BLOB, "final" if st != "queued" else "pending", c,
                    st if st != "queued" else None, c, c) for i, t, f, c, s, st in docs))
    u.execute("COMMIT")
    u.close()


# --- measuring ------------------------------------------------------------------------------------------
def timed(func, repeat: int = 5) -> tuple[float, float]:
    """(best, median) seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def measure(cfg: Path, n: int) -> dict:
    from sync.app import build_app
    from sync.config import load_config
    from sync.journal import Journal

    config = load_config(cfg)
    state = config.folders.state
    out: dict = {"documents": n}
    out["journal_open_s"] = timed(lambda: Journal(state / "journal.sqlite3").close(), 3)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    starts = [json.loads(subprocess.run([sys.executable, __file__, "--startup", str(cfg)], check=True, env=env,
                                        capture_output=True, text=True).stdout) for _ in range(3)]
    out["startup_process_s"] = min(x["process"] for x in starts)
    out["startup_daemon_s"] = min(x["daemon"] for x in starts)
    out["startup_panel_s"] = min(x["panel"] for x in starts)
    app = build_app(config)
    app.start()
    app.daemon.first_scan.wait(60)
    try:
        web: Any = app.stage("web")
        assert web is not None and web.wait_ready(30) and web.url, "the panel did not start"
        j = app.filing.journal
        some = j.get(n // 2) or j.get(n)
        receptor = next(d.rut_receptor for d in map(j.get, range(n // 2, n)) if d is not None and d.rut_receptor
                        and d.rut_receptor != "66666666-6")
        day = (date.today() - timedelta(days=200)).isoformat()
        pages = {
            "documents (today + recent)": "/",
            "older page": f"/?before={n // 3}",
            "search: name prefix": "/?q=F00012",
            "search: folio": f"/?q={some.folio}",
            "search: RUT receptor": f"/?q={receptor}",
            "search: date": f"/?day={day}",
            "a document": f"/doc/{some.id}",
            "operations": "/ops",
            "/health": "/health",
            "/metrics": "/metrics",
        }
        out["pages_s"] = {k: timed(lambda u=u: get(web.url + u)) for k, u in pages.items()}
        retention = app.stage("retention")
        out["retention_pass_s"] = timed(retention.run_once, 3)
    finally:
        app.stop()
    out["status_inprocess_s"] = timed(lambda: _status(cfg), 3)
    out["status_process_s"] = timed(lambda: subprocess.run([sys.executable, "-m", "sync", "status", "--config", str(cfg)],
                                                           check=True, capture_output=True, env=env), 3)
    out["python_start_s"] = timed(lambda: subprocess.run([sys.executable, "-c", "import sync.cli"], check=True,
                                                         env=env), 3)
    out["journal_write_us_per_doc"] = {"year-old journal": _writes(state / "journal.sqlite3"),
                                       "empty journal": _writes(Path(tempfile.mkdtemp()) / "journal.sqlite3")}
    return out


def startup(cfg: str) -> None:
    """In a new process: the service's start, from the interpreter's start (imports included) and
    from the daemon's own start (build_app + start + first inbox scan); JSON on stdout."""
    t_proc = time.perf_counter()  # the imports above (this module's) are a few ms
    from sync.app import build_app
    from sync.config import load_config

    config = load_config(cfg)
    app = build_app(config)
    # the printing stage warms python-escpos (its capabilities database) in start(): count it
    t_daemon = time.perf_counter()
    app.start()
    app.daemon.first_scan.wait(60)
    end = time.perf_counter()
    web: Any = app.stage("web")
    web.wait_ready(60)
    panel = time.perf_counter()
    app.stop()
    print(json.dumps({"process": end - t_proc, "daemon": end - t_daemon, "build_app": t_daemon - t_proc,
                      "panel": panel - t_proc}))


def _status(cfg: Path) -> None:
    import contextlib
    import io

    from sync.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        main(["status", "--config", str(cfg)])


def _writes(path: Path, docs: int = 2000, batch: int = 16) -> float:
    """µs per document of the journal's write path: claim, resolve, decide (batched), file,
    queued, sent, accepted, each durable."""
    from sync.journal import ClaimIntent, Decision, Journal

    j = Journal(path)
    try:
        t0 = time.perf_counter()
        for b in range(0, docs, batch):
            ids = j.begin_claims(ClaimIntent("caja9", f"W{b + k}.txt", f"W{b + k}", ".txt", "caja9", 10, 0o644)
                                 for k in range(batch))
            j.mark_claimed([(i, f"{i:064x}") for i in ids])
            j.decide_many([Decision(i, "signed", f"archive/x/W{i}.txt", tipo_dte=39, folio=10**8 + i,
                                    rut_emisor="76543210-3", monto_total=1000, rut_receptor="66666666-6",
                                    fch_emis="2026-01-01") for i in ids])
            for i in ids:
                j.filed(i, defer=True)
            j.flush()
            for i in ids:
                for st in ("queued", "sent", "accepted"):
                    j.set_state(i, st)
        return (time.perf_counter() - t0) / docs * 1e6
    finally:
        j.close()


def schema_compare(journal: Path, rounds: int = 3, docs: int = 1500) -> dict[str, tuple[float, float]]:
    """The write path on two copies of the year-old journal: this version's schema, and the one
    before it (no doc_counts triggers, no documents_outbox/errors/name_nocase, documents_state
    back): what the panel and retention add to a document's cost. (best, median) µs."""
    import shutil

    from sync import journal as J

    copies = {name: Path(tempfile.mkdtemp()) / "journal.sqlite3" for name in ("before", "now")}
    for path in copies.values():
        shutil.copyfile(journal, path)
    db = sqlite3.connect(copies["before"])
    for stmt in ("DROP TRIGGER documents_count_insert", "DROP TRIGGER documents_count_update",
                 "DROP TRIGGER documents_count_delete", "DROP INDEX documents_outbox", "DROP INDEX documents_errors",
                 "DROP INDEX documents_name_nocase", "CREATE INDEX documents_state ON documents(state)"):
        db.execute(stmt)
    db.commit()
    db.close()
    before = J.SCHEMA.split("-- Documents by")[0]
    for line in ("documents_outbox", "documents_errors", "documents_name_nocase"):
        before = "\n".join(x for x in before.splitlines() if line not in x)
    before += "\nCREATE INDEX IF NOT EXISTS documents_state ON documents(state);"
    schemas = {"before": before, "now": J.SCHEMA}
    out: dict[str, list[float]] = {"before": [], "now": []}
    try:
        for _ in range(rounds):
            for name in ("before", "now"):  # alternated: the machine's noise hits both
                J.Journal.SCHEMA = schemas[name]
                out[name].append(_writes(copies[name], docs))
    finally:
        J.Journal.SCHEMA = J.SCHEMA
        for path in copies.values():
            shutil.rmtree(path.parent, ignore_errors=True)
    return {k: (min(v), statistics.median(v)) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=2_000_000)
    ap.add_argument("--keep", type=Path)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--startup", help=argparse.SUPPRESS)
    ap.add_argument("--schema-compare", action="store_true",
                    help="also time the journal's writes with the previous schema on a copy of the year")
    args = ap.parse_args()
    if args.startup:
        startup(args.startup)
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="dtesync-ops-"))
    t0 = time.monotonic()
    cfg = build(root, args.docs)
    log(f"built in {time.monotonic() - t0:.0f} s: {root}")
    res = measure(cfg, args.docs)
    if args.schema_compare:
        res["journal_write_us_schema"] = schema_compare(cfg.parent / "state" / "journal.sqlite3")
    res["machine"] = f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, " \
                     f"SQLite {sqlite3.sqlite_version}"
    sizes = {p.name: p.stat().st_size for p in (root / "sb" / "state").glob("*.sqlite*")}
    res["state_bytes"] = sizes
    if args.json:
        print(json.dumps(res, indent=1))
        return
    print(f"A year of operation: {args.docs:,} documents ({res['machine']})")
    print("state files: " + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in sorted(sizes.items())))
    print(f"journal open                         {res['journal_open_s'][0] * 1000:8.1f} ms")
    print(f"start-up, new process (imports, build_app, start, first scan) {res['startup_process_s'] * 1000:8.1f} ms")
    print(f"start-up, Daemon.start() to the first scan                    {res['startup_daemon_s'] * 1000:8.1f} ms")
    print(f"start-up, new process until the panel answers                 {res['startup_panel_s'] * 1000:8.1f} ms")
    print(f"dtesync status, new process          {res['status_process_s'][0] * 1000:8.1f} ms "
          f"(python + imports alone {res['python_start_s'][0] * 1000:.0f} ms)")
    print(f"dtesync status, its work             {res['status_inprocess_s'][0] * 1000:8.1f} ms")
    print("panel pages (best / median of 5):")
    for k, (best, med) in res["pages_s"].items():
        print(f"  {k:<32} {best * 1000:8.1f} ms {med * 1000:8.1f} ms")
    print(f"retention pass, nothing due          {res['retention_pass_s'][0] * 1000:8.1f} ms")
    print("journal writes per document (claim, decide, file, 3 states):")
    for k, v in res["journal_write_us_per_doc"].items():
        print(f"  {k:<32} {v:8.0f} µs")
    if "journal_write_us_schema" in res:
        print("journal writes per document on the year-old journal, best / median of 3 alternated rounds:")
        for k, (best, med) in res["journal_write_us_schema"].items():
            label = "previous schema" if k == "before" else "this schema (counts, retention)"
            print(f"  {label:<32} {best:8.0f} µs {med:8.0f} µs")


if __name__ == "__main__":
    main()
