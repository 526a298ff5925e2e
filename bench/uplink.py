"""Uplink benchmark: documents per second through the uplink to fake-sii, batching on and off,
and the time a backlog takes to drain after an outage.

    python bench/uplink.py                 # default: 2000 docs batched, 400 unbatched, 10 000 backlog (~3 min)
    python bench/uplink.py --docs 500 --single 100 --backlog 1000   # quick

Documents are signed once (the sandbox's real engine, half facturas 33, half boletas 39) and
each run uses its own slice, so fake-sii sees every folio once. fake-sii runs as a separate
process (`dtesync fake-sii`), so its checks (XSD, every signature and TED) do not share our
GIL; it does share the machine's 2 cores. Throughput is measured from the first upload to the
last document `accepted` (upload + QueryEstUp / boleta estado polling), the uplink driven the
way the daemon's scheduler drives it (drain and poll ticks), without the scheduler's 1 s period.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sync.config import load_config  # noqa: E402
from sync.runtime import open_engine  # noqa: E402
from sync.sandbox.build import create_sandbox, examples_dir  # noqa: E402
from sync.uplink.build import sii_channels, sii_route  # noqa: E402
from sync.uplink.docref import doc_ref  # noqa: E402
from sync.uplink.endpoints import SiiEndpoints  # noqa: E402
from sync.uplink.queue import UplinkQueue  # noqa: E402
from sync.uplink.service import Uplink, UplinkSettings  # noqa: E402
from sync.uplink.transport import Timeouts, new_session  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fake(config_path: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "sync", "fake-sii", "--config", str(config_path), "--port", str(port),
                             "--processing-polls", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert "escuchando" in line, f"fake-sii did not start: {line!r}"
    return proc


def stop_fake(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def make_uplink(config, engine, url: str, qpath: Path, batch_max: int) -> tuple[Uplink, list[float]]:
    session, to = new_session(), Timeouts(5.0, 60.0)
    ep, cert, c = SiiEndpoints.single(url), engine.certificate, config.company
    channels = sii_channels(session, ep, cert, c, to)
    finals: list[float] = []
    sink = lambda doc_id, state, note=None, **kw: finals.append(time.monotonic()) if state == "accepted" else None  # noqa: E731
    settings = UplinkSettings(batch_max=batch_max, batch_wait=0.0, backoff_base=0.2, backoff_cap=2.0, poll_first=0.0,
                              poll_base=0.05, poll_cap=0.5, uncertain_wait=0.5)
    return Uplink(UplinkQueue(qpath), channels, sink=sink, settings=settings,
                  route=sii_route), finals


def enqueue(up: Uplink, docs: list[bytes]) -> None:
    for i, xml in enumerate(docs, 1):
        ref = doc_ref(xml)
        up.queue.enqueue(i, "boleta" if ref.boleta else "dte", ref, xml)


def drive(up: Uplink, n: int, limit_s: float) -> None:
    """Drain and poll on two threads (like the scheduler's two jobs) until n are accepted."""
    done = threading.Event()

    def loop(tick) -> None:
        while not done.is_set():
            if not tick():
                time.sleep(0.005)

    threads = [threading.Thread(target=loop, args=(up.drain_once,)), threading.Thread(target=loop, args=(up.poll_once,))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + limit_s
    while up.queue.pending_count() and time.monotonic() < deadline:
        time.sleep(0.02)
    done.set()
    for t in threads:
        t.join()
    left = up.queue.pending_count()
    assert left == 0, f"{left} of {n} documents not final after {limit_s} s"


def throughput(config, engine, config_path: Path, docs: list[bytes], batch_max: int, work: Path) -> dict:
    port = free_port()
    fake = start_fake(config_path, port)
    try:
        up, finals = make_uplink(config, engine, f"http://127.0.0.1:{port}", work / f"q-{batch_max}.sqlite", batch_max)
        enqueue(up, docs)
        t0 = time.monotonic()
        drive(up, len(docs), 600)
        elapsed = max(finals) - t0
    finally:
        stop_fake(fake)
    return {"docs": len(docs), "batch_max": batch_max, "envios": up.stats["envios"], "seconds": elapsed,
            "docs_per_s": len(docs) / elapsed}


def backlog(config, engine, config_path: Path, docs: list[bytes], work: Path) -> dict:
    port = free_port()
    up, finals = make_uplink(config, engine, f"http://127.0.0.1:{port}", work / "q-backlog.sqlite", 50)
    enqueue(up, docs)  # signed while the SII was unreachable
    for _ in range(3):
        up.drain_once()  # connection refused: every channel backs off
    assert up.queue.counts().get("pending") == len(docs) and up.stats["failures"] >= 2
    fake = start_fake(config_path, port)  # the network is back
    try:
        t0 = time.monotonic()
        up.queue.retry_now()  # what the next tick after the backoff does; here at once
        drive(up, len(docs), 1200)
        elapsed = max(finals) - t0
    finally:
        stop_fake(fake)
    return {"docs": len(docs), "envios": up.stats["envios"], "seconds": elapsed, "docs_per_s": len(docs) / elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=2000, help="documents for the batched run (batch_max 50)")
    ap.add_argument("--single", type=int, default=400, help="documents for the unbatched run (batch_max 1)")
    ap.add_argument("--backlog", type=int, default=10_000, help="documents queued during the outage")
    args = ap.parse_args()
    import logging

    logging.getLogger("dtesync.uplink").setLevel(logging.ERROR)  # the outage's "envío failed" warnings are expected
    total = args.docs + args.single + args.backlog
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
        a, b = args.docs, args.docs + args.single
        on = throughput(config, engine, sb.config_path, docs[:a], 50, work)
        print(f"batching on  (50/envío): {on['docs']} docs in {on['seconds']:.1f} s = {on['docs_per_s']:.0f} docs/s"
              f" ({on['envios']} envíos)", flush=True)
        off = throughput(config, engine, sb.config_path, docs[a:b], 1, work)
        print(f"batching off (1/envío):  {off['docs']} docs in {off['seconds']:.1f} s = {off['docs_per_s']:.0f} docs/s"
              f" ({off['envios']} envíos)", flush=True)
        bl = backlog(config, engine, sb.config_path, docs[b:], work)
        print(f"backlog after an outage: {bl['docs']} docs drained in {bl['seconds']:.1f} s = {bl['docs_per_s']:.0f} docs/s"
              f" ({bl['envios']} envíos)", flush=True)


if __name__ == "__main__":
    main()
