"""Printing, as a cashier sees it: a boleta dropped into a running `dtesync run` -> first byte at
the printer.

    python bench/print.py                 # 5 tickets/s for 30 s, then PDF render times
    python bench/print.py --rate 5 --seconds 10 --json
    python bench/print.py --profile epson-tm-t88   # the printer draws the PDF417 (GS ( k)

A fresh sandbox (test company, certificate, CAFs) with one printing station whose printer is
the software ESC/POS printer (sync.printing.emulator) on 127.0.0.1, run by this script: it
answers DLE EOT and GS r like a real one, so every job goes through the whole protocol (status
before, the job, GS r, status after). Profile generic-80mm: raster timbre (GS v 0), the safe
default. Each boleta is distinct (its first item carries its number), so each ticket received is
matched to its input by that text. Latency = time the ticket's first byte (its ESC @) reached
the printer - time the file was renamed into the inbox (complete); the status query before it
is included. The daemon is a separate process (`python -m sync run`), as in production; both
share this machine's cores. PDF render time is measured in-process for one document of every
type (layout + reportlab, timbre included).

Prints figures; it is not a test and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sync.printing.emulator import EmulatedPrinter  # noqa: E402
from sync.sandbox.build import create_sandbox  # noqa: E402

EXAMPLES = ROOT / "sync" / "data" / "examples"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def run_latency(root: Path, rate: float, seconds: float, profile: str = "generic-80mm") -> dict:
    sb = create_sandbox(root / "sb", folios_per_type=int(rate * seconds) + 50)
    printer = EmulatedPrinter().listen()
    cfg = sb.config_path
    cfg.write_text(cfg.read_text(encoding="utf-8") + (
        f"\n[printing]\ndefault_station = \"caja1\"\n[[printing.stations]]\nname = \"caja1\"\nprofile = \"{profile}\"\n"
        f"connector = {{ type = \"tcp\", host = \"127.0.0.1\", port = {printer.port} }}\n"), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "sync", "run", "--config", str(cfg)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        template = (EXAMPLES / "39_boleta.txt").read_text(encoding="utf-8")
        # warm-up: the first document pays for imports and caches
        warm = sb.inbox / "warm.txt"
        (sb.inbox / ".warm.tmp").write_text(template.replace("Pan amasado", "Pan amasado W"), encoding="utf-8")
        (sb.inbox / ".warm.tmp").replace(warm)
        deadline = time.time() + 60
        while not tickets(printer) and time.time() < deadline:
            time.sleep(0.05)
        seen = len(printer.sessions)
        n = int(rate * seconds)
        dropped: dict[str, float] = {}
        start = time.monotonic()
        for i in range(n):
            target = start + i / rate
            time.sleep(max(0.0, target - time.monotonic()))
            tmp = sb.inbox / f".b{i}.tmp"
            tmp.write_text(template.replace("Pan amasado", f"Pan amasado {i:05d}"), encoding="utf-8")
            tmp.replace(sb.inbox / f"b{i}.txt")
            dropped[f"{i:05d}"] = time.time()
        deadline = time.time() + 60
        while len(tickets(printer, seen)) < n and time.time() < deadline:
            time.sleep(0.05)
        lat = []
        for at, data in tickets(printer, seen):
            m = re.search(rb"Pan amasado (\d{5})", data)
            if m and m.group(1).decode() in dropped:
                lat.append((at - dropped[m.group(1).decode()]) * 1000)
        return {"profile": profile, "tickets": n, "printed": len(lat), "rate_per_s": rate,
                "p50_ms": round(statistics.median(lat), 1), "p99_ms": round(pct(lat, 99), 1),
                "max_ms": round(max(lat), 1)}
    finally:
        proc.terminate()
        proc.wait(30)
        printer.close()


def tickets(printer: EmulatedPrinter, skip: int = 0) -> list[tuple[float, bytes]]:
    """(arrival of the ticket's first byte, its bytes) for each finished connection that carried one."""
    return [(s.started_at, bytes(s.received)) for s in list(printer.sessions)[skip:]
            if not s.open and s.started_at is not None]


def run_pdf(root: Path, repeat: int = 5) -> dict:
    from sync.config import load_config
    from sync.printing.service import pdf_bytes, source_of
    from sync.runtime import open_engine

    sb = create_sandbox(root / "pdf", folios_per_type=20)
    config = load_config(sb.config_path)
    engine = open_engine(config)
    out = {}
    for path in sorted(EXAMPLES.glob("*.txt")):
        issued = engine.issue(path.read_bytes(), path.name, doc_key=f"bench:{path.name}")
        src = source_of(issued)
        pdf_bytes(src, config)  # warm
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            data = pdf_bytes(src, config)
            times.append((time.perf_counter() - t) * 1000)
        out[path.stem] = {"median_ms": round(statistics.median(times), 1), "bytes": len(data)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", default="generic-80mm",
                    help="printer profile: generic-80mm (raster timbre) or epson-tm-t88 (GS ( k)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {"latency": run_latency(Path(tmp), args.rate, args.seconds, args.profile), "pdf": run_pdf(Path(tmp)),
                  "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    lat = result["latency"]
    print(f"drop -> first byte at printer ({lat['profile']}), {lat['tickets']} boletas at {lat['rate_per_s']}/s: "
          f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms ({lat['printed']} printed)")
    print("PDF render per document (median of 5):")
    for name, r in result["pdf"].items():
        print(f"  {name:<24} {r['median_ms']:>7} ms  {r['bytes']:>7} bytes")


if __name__ == "__main__":
    main()
