"""Uplink benchmark: a 10 000-document backlog drained to a fake-sii that takes as long as the
real SII may, and how many uploads each document cost (goal: 1.00).

    python bench/uplink.py                          # realistic: 10 000 backlog, 0-120 s processing, 2 % lost answers
    python bench/uplink.py --backlog 2000 --delay 0-30  # quicker
    python bench/uplink.py --instant                # also: docs/s batched and unbatched, instant SII

Documents are signed once (the sandbox's real engine, half facturas 33, half boletas 39) and
each run uses its own slice, so fake-sii sees every folio once. fake-sii runs as a separate
process (`dtesync fake-sii`), so its checks (XSD, every signature and TED) do not share our
GIL; it does share the machine's 2 cores.

The realistic run: the SII is unreachable while the backlog builds up; then it comes back,
taking 0-120 s (uniform) to process each envío — envíos and documents are invisible meanwhile
and lookups say "not received" — and losing the answer to 2 % of the uploads it filed (the
connection stalls past the read timeout). The uplink runs with the product's default settings
(batches of 50, first poll after 5 s, backoff to 10 min, first lookup 60 s after a lost answer,
30-minute processing window), driven the way the daemon's scheduler drives it (drain and poll
ticks), without the scheduler's 1 s period. Measured: from the network coming back to the last
document `accepted`, and the DTE uploads fake-sii filed per document.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sync.config import load_config
from sync.runtime import open_engine
from sync.sandbox.build import create_sandbox, examples_dir
from sync.uplink.build import sii_channels, sii_route
from sync.uplink.docref import doc_ref
from sync.uplink.endpoints import SiiEndpoints
from sync.uplink.queue import UplinkQueue
from sync.uplink.service import Uplink, UplinkSettings
from sync.uplink.transport import Timeouts, new_session

SENT: list[float] = []  # when documents were reported `sent` (the last upload of a run)
INSTANT = UplinkSettings(batch_wait=0.0, backoff_base=0.2, backoff_cap=2.0, poll_first=0.0, poll_base=0.05,
                         poll_cap=0.5, uncertain_wait=0.5, processing_window_minutes=0.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fake(config_path: Path, port: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "sync", "fake-sii", "--config", str(config_path), "--port", str(port),
                             "--processing-polls", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert "escuchando" in line, f"fake-sii did not start: {line!r}"
    return proc


def fake_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/fake/stats", timeout=10) as r:
        return json.loads(r.read())


def stop_fake(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def make_uplink(config: Any, engine: Any, url: str, qpath: Path, settings: UplinkSettings,
                read_timeout: float = 60.0) -> tuple[Uplink, list[float]]:
    """The uplink and the times documents were reported accepted (`sent` times in SENT)."""
    session, to = new_session(), Timeouts(5.0, read_timeout)
    channels = sii_channels(session, SiiEndpoints.single(url), engine.certificate, config.company, to)
    finals: list[float] = []
    SENT.clear()

    def sink(doc_id: int, state: str, note: str | None = None, **kw: Any) -> None:
        if state == "accepted":
            finals.append(time.monotonic())
        elif state == "sent":
            SENT.append(time.monotonic())

    return Uplink(UplinkQueue(qpath), channels, sink=sink, settings=settings, route=sii_route), finals


def enqueue(up: Uplink, docs: list[bytes]) -> None:
    for i, xml in enumerate(docs, 1):
        ref = doc_ref(xml)
        up.queue.enqueue(i, sii_route(ref.tipo_dte), ref, xml)


def drive(up: Uplink, n: int, limit_s: float) -> None:
    """Drain and poll on two threads (like the scheduler's two jobs) until n are final."""
    done = threading.Event()

    def loop(tick: Any) -> None:
        while not done.is_set():
            if not tick():
                time.sleep(0.005)

    threads = [threading.Thread(target=loop, args=(up.drain_once,)), threading.Thread(target=loop, args=(up.poll_once,))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + limit_s
    while up.queue.pending_count() and time.monotonic() < deadline:
        time.sleep(0.1)
    done.set()
    for t in threads:
        t.join()
    left = up.queue.pending_count()
    assert left == 0, f"{left} of {n} documents not final after {limit_s} s"


def throughput(config: Any, engine: Any, config_path: Path, docs: list[bytes], batch_max: int, work: Path) -> dict:
    port = free_port()
    fake = start_fake(config_path, port)
    try:
        settings = UplinkSettings(**{**INSTANT.__dict__, "batch_max": batch_max})
        up, finals = make_uplink(config, engine, f"http://127.0.0.1:{port}", work / f"q-{batch_max}.sqlite", settings)
        enqueue(up, docs)
        t0 = time.monotonic()
        drive(up, len(docs), 600)
        elapsed = max(finals) - t0
    finally:
        stop_fake(fake)
    return {"docs": len(docs), "batch_max": batch_max, "envios": up.stats["envios"], "seconds": elapsed,
            "docs_per_s": len(docs) / elapsed}


def backlog(config: Any, engine: Any, config_path: Path, docs: list[bytes], work: Path, delay: str,
            lost: float) -> dict:
    """The realistic run (module docstring): product settings, a slow SII that loses answers."""
    port = free_port()
    up, finals = make_uplink(config, engine, f"http://127.0.0.1:{port}", work / "q-backlog.sqlite",
                             UplinkSettings(batch_wait=0.0), read_timeout=10.0)
    enqueue(up, docs)  # signed while the SII was unreachable
    for _ in range(3):
        up.drain_once()  # connection refused: every channel backs off
    assert up.queue.counts().get("pending") == len(docs) and up.stats["failures"] >= 2
    fake = start_fake(config_path, port, "--processing-delay", delay, "--lost-uploads", str(lost), "--stall", "12",
                      "--seed", "7")
    try:
        t0 = time.monotonic()
        up.queue.retry_now()  # what the next tick after the backoff does; here at once
        drive(up, len(docs), 3600)
        elapsed = max(finals) - t0
        stats = fake_stats(port)
    finally:
        stop_fake(fake)
    return {"docs": len(docs), "envios": up.stats["envios"], "seconds": elapsed, "docs_per_s": len(docs) / elapsed,
            "uploaded_after": max(SENT) - t0, "uploads_per_doc": stats["dte_uploads"] / stats["documents"], "documents": stats["documents"],
            "max_uploads": stats["max_uploads_per_doc"], "repetido": stats["duplicates"],
            "lost": stats["faults"].get("timeout", 0), "unseen": stats["unseen_answers"],
            "lookups": up.stats["lookups"], "resends": up.stats["resends"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backlog", type=int, default=10_000, help="documents queued during the outage")
    ap.add_argument("--delay", default="0-120", help="seconds the SII takes to process an envío (uniform range)")
    ap.add_argument("--lost", type=float, default=0.02, help="share of filed uploads whose answer is lost")
    ap.add_argument("--instant", action="store_true", help="also measure docs/s with an instant SII (batched, unbatched)")
    ap.add_argument("--docs", type=int, default=2000, help="--instant: documents for the batched run (batch_max 50)")
    ap.add_argument("--single", type=int, default=400, help="--instant: documents for the unbatched run (batch_max 1)")
    args = ap.parse_args()
    import logging

    logging.getLogger("dtesync.uplink").setLevel(logging.ERROR)  # the outage's "envío failed" warnings are expected
    total = args.backlog + (args.docs + args.single if args.instant else 0)
    with tempfile.TemporaryDirectory(prefix="bench-uplink-") as tmp:
        work = Path(tmp)
        sb = create_sandbox(work / "sb", folios_per_type=total // 2 + 10)
        config = load_config(sb.config_path)
        engine = open_engine(config)
        factura = (examples_dir() / "33_factura.txt").read_bytes()
        boleta = (examples_dir() / "39_boleta.txt").read_bytes()
        t0 = time.monotonic()
        docs = [engine.issue(factura if i % 2 else boleta, f"b{i}", doc_key=f"bench-uplink-{i}").dte_xml for i in range(total)]
        print(f"signed {total} documents once in {time.monotonic() - t0:.1f} s (cpu count {os.cpu_count()})", flush=True)
        bl = backlog(config, engine, sb.config_path, docs[: args.backlog], work, args.delay, args.lost)
        print(f"backlog after an outage, SII processing {args.delay} s, {args.lost:.0%} answers lost: "
              f"{bl['docs']} docs drained in {bl['seconds']:.0f} s ({bl['envios']} envíos, the last uploaded after "
              f"{bl['uploaded_after']:.0f} s); "
              f"uploads per document {bl['uploads_per_doc']:.3f} (max {bl['max_uploads']}), "
              f"DTE Repetido {bl['repetido']}, lost answers {bl['lost']}, lookups {bl['lookups']}, "
              f"'not received' while processing {bl['unseen']}, re-sent {bl['resends']}", flush=True)
        if args.instant:
            a, b = args.backlog + args.docs, args.backlog + args.docs + args.single
            on = throughput(config, engine, sb.config_path, docs[args.backlog:a], 50, work)
            print(f"instant SII, batching on  (50/envío): {on['docs']} docs in {on['seconds']:.1f} s = "
                  f"{on['docs_per_s']:.0f} docs/s ({on['envios']} envíos)", flush=True)
            off = throughput(config, engine, sb.config_path, docs[a:b], 1, work)
            print(f"instant SII, batching off (1/envío):  {off['docs']} docs in {off['seconds']:.1f} s = "
                  f"{off['docs_per_s']:.0f} docs/s ({off['envios']} envíos)", flush=True)


if __name__ == "__main__":
    main()
