"""The daemon end to end, as an ERP sees it: files dropped into a running `dtesync run`.

    python bench/daemon.py                      # full run, events and poll (~6-8 min on 2 cores)
    python bench/daemon.py --quick              # smaller N, a smoke run
    python bench/daemon.py --modes events --json
    python bench/daemon.py --profile burst      # cProfile of an in-process daemon instead
    python bench/daemon.py --cpu 1000           # CPU ms per document, in-process daemon, backlog of 1000

Scenarios (each on a fresh sandbox: test company, certificate, CAFs of 12 000 folios per type):
- burst:   N files (default 2000) renamed into the inbox as fast as possible; throughput is
           N / (last status.json saying `signed` - first drop).
- steady:  files at a steady rate (default 20/s for 30 s); latency per file is the time from its
           rename into the inbox (the moment the file is complete) to the rename of
           its NAME.status.json saying `signed`, seen by inotify on outbox/; p50/p95/p99.
- backlog: B files (default 10 000) already in the inbox when the daemon starts; throughput from
           the process start to the last `signed` status (start-up and scan included).
- idle:    the daemon up with nothing to do for 20 s: CPU % of one core (every process).
Memory is summed over every process of the daemon (the daemon and its engine process): the
peak of the sum of VmRSS sampled every 0.1 s, and the sum of each process's VmHWM.
The configuration is the product's default: NAME.pdf is written for every document
(`--no-pdf` turns it off); the time when the last PDF was written is reported too.

Inputs are the shipped examples of every type and format, each made distinct (a receiver or
item name carrying its number). The daemon runs as `python -m sync run --config ...`, a separate
process, so the bench's own work (writing files, watching the outbox) is not in its RSS; both
share the machine's cores, as an ERP and dtesync do.

On ext4 without a journal, creating files costs several times more in a block group where many
were deleted in the last minutes, and a folder lands in its parent's group: to compare runs,
pass --keep and point TMPDIR at a folder nothing else deletes from (docs/performance.md, ninth
session).

Prints figures; it is not a test and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

from watchdog.events import FileMovedEvent, FileSystemEventHandler  # noqa: E402

from sync.sandbox.build import create_sandbox, examples_dir  # noqa: E402

FOLIOS_PER_TYPE = 12_000


# --- inputs -----------------------------------------------------------------------------------------
def bodies(n: int, offset: int = 0) -> list[tuple[str, bytes]]:
    """n distinct documents cycling through every shipped example (all types, all formats)."""
    examples = sorted(p for p in examples_dir().iterdir() if p.suffix in (".txt", ".json", ".xml"))
    raw = [(p, p.read_bytes()) for p in examples]
    out = []
    for k in range(n):
        i = offset + k
        src, body = raw[i % len(raw)]
        tag = f" N{i}".encode()
        for pat in (rb"(RznSocRecep=[^\r\n]*)", rb'("RznSocRecep":\s*"[^"]*)', rb"(<RznSocRecep>[^<]*)",
                    rb"(NmbItem=[^\r\n]*)", rb'("NmbItem":\s*"[^"]*)', rb"(<NmbItem>[^<]*)"):
            body, hits = re.subn(pat, lambda m: m.group(1)[:60] + tag, body, count=1)
            if hits:
                break
        out.append((f"B{i:06d}-{src.stem}{src.suffix}", body))
    return out


def drop(inbox: Path, name: str, body: bytes) -> float:
    """Write under a temporary name and rename into place; returns when the file was complete."""
    tmp = inbox / f".{name}.tmp"
    tmp.write_bytes(body)
    os.rename(tmp, inbox / name)
    return time.time()


# --- the outbox, seen by inotify ---------------------------------------------------------------------
class SignedWatch(FileSystemEventHandler):
    """Records when each NAME.status.json first says `signed` (or another final state)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.final: dict[str, str] = {}
        self._order: list[str] = []  # stems in the order they became final
        self._seen = 0
        self.cond = threading.Condition()

    def on_moved(self, event: FileMovedEvent) -> None:  # atomic writes land by rename
        self.moved(os.fsdecode(event.dest_path))

    def moved(self, dest: str) -> None:
        now = time.time()
        if not dest.endswith(".status.json"):
            return
        try:
            state = json.loads(Path(dest).read_bytes()).get("state")
        except (OSError, ValueError):
            return
        if state in ("signed", "rejected_input", "error"):
            stem = os.path.basename(dest)[: -len(".status.json")]
            with self.cond:
                if stem not in self.final:
                    self.at[stem], self.final[stem] = now, state
                    self._order.append(stem)
                    self.cond.notify_all()

    def sweep(self, outbox: Path, stems: list[str]) -> None:
        """Read the status files of stems not seen yet, timed by their mtime: inotify drops
        events when its queue overflows (a fast daemon writes ~2 status files per document)."""
        for stem in stems:
            if stem in self.final:
                continue
            path = outbox / f"{stem}.status.json"
            try:
                at, state = path.stat().st_mtime, json.loads(path.read_bytes()).get("state")
            except (OSError, ValueError):
                continue
            if state in ("signed", "rejected_input", "error"):
                self.at[stem], self.final[stem] = at, state
                self._order.append(stem)

    def wait(self, stems: list[str], timeout: float, alive: "DaemonProcess", outbox: Path) -> None:
        end = time.monotonic() + timeout
        with self.cond:
            remaining = set(stems) - self.final.keys()
            self._seen = len(self._order)
            while True:
                remaining.difference_update(self._since(remaining))
                if not remaining:
                    return
                if alive.proc.poll() is not None:
                    raise RuntimeError(f"the daemon exited with {alive.proc.returncode}: {alive.proc.stderr.read()[-2000:]!r}")
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(remaining)} files without a final status, e.g. {sorted(remaining)[:3]}")
                if not self.cond.wait(min(left, 1.0)):  # a quiet second: events may have been lost
                    self.sweep(outbox, sorted(remaining))

    def _since(self, remaining: set[str]) -> list[str]:
        """Stems finalized since the last call (O(new), not O(all): 10 000 files would be 10^8)."""
        new = self._order[self._seen:]
        self._seen = len(self._order)
        return [stem for stem in new if stem in remaining]


def watch_outbox(watch: SignedWatch, outbox: Path) -> Callable[[], None]:
    """Deliver the renames into `outbox` to `watch`; returns the function that stops it.

    On Linux, a bare inotify reader (watchdog's InotifyFD, IN_MOVED_TO only) calling `watch`
    directly. watchdog's stock observer hands every event through four threads, and the
    outbox sees about six events a document (each atomic write creates, closes and renames a
    temp file): measured in a 2 000-file burst, the bench's process used 0.15-0.25 ms of CPU
    a document on the two cores the daemon runs on, and now about 0.05. Elsewhere the stock
    observer, moves only."""
    if sys.platform.startswith("linux"):
        from watchdog.observers.inotify_c import CallbackId, InotifyConstants, InotifyEvent, InotifyFD, Mask

        class Renames:
            def on_event(self, event: InotifyEvent) -> None:
                if event.name:
                    watch.moved(os.path.join(folder, os.fsdecode(event.name)))

            def on_watch_deleted(self, wd: object) -> None: ...
            def on_queue_overflow(self) -> None: ...  # watch.wait() sweeps after a quiet second
            def on_events_lost(self) -> None: ...

        folder = str(outbox)
        fd = InotifyFD()
        fd.start()
        fd.add_callback(os.fsencode(folder), Mask(InotifyConstants.IN_MOVED_TO), Renames(), CallbackId(1))

        def stop_inotify() -> None:
            fd.stop()
            fd.join()

        return stop_inotify
    from watchdog.observers import Observer

    observer = Observer()
    observer.schedule(watch, str(outbox), recursive=False, event_filter=[FileMovedEvent])
    observer.start()

    def stop_observer() -> None:
        observer.stop()
        observer.join()

    return stop_observer


# --- the daemon process --------------------------------------------------------------------------------
class DaemonProcess:
    def __init__(self, config: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.started = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sync", "run", "--config", str(config)], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

        self.peak_sum_kb = 0
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def pids(self) -> list[int]:
        """The daemon and every process it started (its engine process)."""
        pids, frontier = [self.proc.pid], [self.proc.pid]
        while frontier:
            pid = frontier.pop()
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                children = []
            pids += [int(c) for c in children]
            frontier += [int(c) for c in children]
        return pids

    def vm(self, key: str) -> int:
        """VmHWM / VmRSS in kB, summed over the daemon's processes."""
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU of the daemon's processes so far."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        while not self._sampling.wait(0.1):
            self.peak_sum_kb = max(self.peak_sum_kb, self.vm("VmRSS"))

    def stop(self) -> int:
        self._sampling.set()
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=120)
        if self.proc.returncode != 0:
            print(err.decode(errors="replace")[-2000:], file=sys.stderr)
        return self.proc.returncode


def sandbox(root: Path, mode: str, pdf: bool = False) -> Path:
    """A fresh sandbox watching in `mode`; NAME.pdf (sync.printing) only when `pdf`."""
    sb = create_sandbox(root, folios_per_type=FOLIOS_PER_TYPE)
    text = sb.config_path.read_text(encoding="utf-8")
    if re.search(r"(?m)^\[daemon\]", text):
        text = re.sub(r'(?m)^watch\s*=.*$', f'watch = "{mode}"', text, count=1)
    else:
        text += f'\n[daemon]\nwatch = "{mode}"\n'
    if not re.search(r"(?m)^\[printing\]", text):
        text += f"\n[printing]\npdf = {'true' if pdf else 'false'}\n"
    sb.config_path.write_text(text, encoding="utf-8")
    return sb.config_path


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[k]


def run_scenario(kind: str, mode: str, n: int, rate: float, work: Path, pdf: bool = True) -> dict:
    root = work / f"{kind}-{mode}"
    config = sandbox(root, mode, pdf)
    inbox, outbox = root / "inbox", root / "outbox"
    docs = bodies(n)
    if kind == "backlog":
        for name, body in docs:
            drop(inbox, name, body)
    watch = SignedWatch()
    stop_watch = watch_outbox(watch, outbox)
    daemon = DaemonProcess(config)
    try:
        if kind != "backlog":  # warm up: the daemon is up and the first document is through
            name, body = bodies(1, offset=10**6)[0]
            drop(inbox, name, body)
            watch.wait([name.rsplit(".", 1)[0]], 120, daemon, outbox)
        dropped: dict[str, float] = {}
        start = daemon.started if kind == "backlog" else time.time()
        if kind == "burst":
            for name, body in docs:
                dropped[name.rsplit(".", 1)[0]] = drop(inbox, name, body)
        elif kind == "steady":
            t0 = time.monotonic()
            for k, (name, body) in enumerate(docs):
                delay = t0 + k / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                dropped[name.rsplit(".", 1)[0]] = drop(inbox, name, body)
        stems = [name.rsplit(".", 1)[0] for name, _ in docs]
        idle_cpu = 0.0
        if kind == "idle":
            time.sleep(5)  # start-up done
            c0, t0 = daemon.cpu_seconds(), time.monotonic()
            time.sleep(20)
            idle_cpu = (daemon.cpu_seconds() - c0) / (time.monotonic() - t0) * 100
            end = start + 1
        else:
            watch.wait(stems, max(300, n / 5), daemon, outbox)
            end = max(watch.at[s] for s in stems)
        last_pdf = None
        if pdf and kind != "idle":
            want = {f"{s}.pdf" for s in stems}
            deadline = time.time() + max(600, n / 2)
            while time.time() < deadline and not want <= {p.name for p in outbox.glob("*.pdf")}:
                time.sleep(0.5)
            last_pdf = max((outbox / p).stat().st_mtime for p in want if (outbox / p).exists())
        hwm, rss, nproc = daemon.vm("VmHWM"), daemon.vm("VmRSS"), len(daemon.pids())
    finally:
        rc = daemon.stop()
        stop_watch()
    states = {watch.final[s] for s in stems}
    out = {
        "scenario": kind, "mode": mode, "pdf": pdf, "files": n, "exit_code": rc, "states": sorted(states),
        "seconds": round(end - start, 2), "docs_per_s": round(n / (end - start), 1),
        "peak_rss_sum_mb": round(daemon.peak_sum_kb / 1024, 1), "sum_of_hwm_mb": round(hwm / 1024, 1),
        "final_rss_mb": round(rss / 1024, 1), "processes": nproc,
    }
    if kind == "idle":
        out = {"scenario": "idle", "mode": mode, "cpu_percent_of_one_core": round(idle_cpu, 2),
               "peak_rss_sum_mb": out["peak_rss_sum_mb"], "processes": out["processes"]}
    if last_pdf is not None:
        out["last_pdf_after_s"] = round(last_pdf - start, 1)
    if kind in ("burst", "steady"):
        lat = [(watch.at[s] - dropped[s]) * 1000 for s in stems]
        out.update(p50_ms=round(pct(lat, 50), 1), p95_ms=round(pct(lat, 95), 1), p99_ms=round(pct(lat, 99), 1),
                   max_ms=round(max(lat), 1), mean_ms=round(statistics.fmean(lat), 1))
    if kind == "steady":
        out["rate_per_s"] = rate
    # The sandbox stays until the whole run ends (main removes `work`): on ext4 without a journal,
    # new inodes skip those deleted in the last 60-360 s (recently_deleted), so removing 10 000
    # files here made the next scenario's every file creation scan them (measured: the daemon's
    # system time 0.7 -> 2 ms a document, and stalls in the steady scenario's p99).
    return out


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def cpu_per_document(n: int, work: Path) -> dict:
    """A backlog of n files drained by an in-process daemon: wall time and the process's CPU
    time (every thread, user + system) per document, without the bench's own observer."""
    from sync.app import build_app
    from sync.config import load_config

    root = work / "cpu"
    config = load_config(sandbox(root, "events"))
    docs = bodies(n)
    for name, body in docs:
        drop(root / "inbox", name, body)
    daemon = build_app(config).daemon
    stems = [name.rsplit(".", 1)[0] for name, _ in docs]
    cpu0, t0 = time.process_time(), time.perf_counter()
    daemon.start()
    while not all((root / "outbox" / f"{s}.xml").exists() for s in stems[-5:]) or not daemon.idle():
        time.sleep(0.02)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    daemon.stop()
    shutil.rmtree(root, ignore_errors=True)
    return {"scenario": "cpu", "files": n, "seconds": round(wall, 2), "docs_per_s": round(n / wall, 1),
            "cpu_ms_per_doc": round(cpu / n * 1000, 2)}


def profile(kind: str, n: int, work: Path) -> None:
    """cProfile of an in-process daemon processing n files (burst or backlog), every thread:
    the daemon's work happens in its worker and ingest threads, not in the main one."""
    import cProfile
    import pstats
    import threading

    from sync.app import build_app
    from sync.config import load_config

    root = work / "profile"
    config = load_config(sandbox(root, "events"))
    docs = bodies(n)
    if kind == "backlog":
        for name, body in docs:
            drop(root / "inbox", name, body)
    daemon = build_app(config).daemon
    profiles: list[cProfile.Profile] = []

    def profile_this_thread(*_args) -> None:  # the first profiler event of each new thread
        thread_prof = cProfile.Profile()
        profiles.append(thread_prof)
        thread_prof.enable()

    threading.setprofile(profile_this_thread)
    prof = cProfile.Profile()
    profiles.append(prof)
    prof.enable()
    daemon.start()
    if kind != "backlog":
        for name, body in docs:
            drop(root / "inbox", name, body)
    stems = [name.rsplit(".", 1)[0] for name, _ in docs]
    while not all((root / "outbox" / f"{s}.xml").exists() for s in stems[-5:]) or not daemon.idle():
        time.sleep(0.05)
    daemon.stop()
    threading.setprofile(None)
    for thread_prof in profiles:
        thread_prof.disable()
    stats = pstats.Stats(*profiles)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(50)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N=300, 10 s steady, backlog 1000")
    ap.add_argument("--modes", nargs="+", default=["events", "poll"], choices=["events", "poll"])
    ap.add_argument("--scenarios", nargs="+", default=["burst", "steady", "backlog", "idle"],
                    choices=["burst", "steady", "backlog", "idle"])
    ap.add_argument("-n", type=int, default=2000, help="files in the burst (default 2000)")
    ap.add_argument("--rate", type=float, default=20.0, help="files per second in the steady scenario")
    ap.add_argument("--steady-seconds", type=float, default=30.0)
    ap.add_argument("--backlog", type=int, default=10_000)
    ap.add_argument("--no-pdf", dest="pdf", action="store_false", help="no NAME.pdf (the product writes one per document)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--profile", choices=["burst", "backlog"], help="cProfile an in-process daemon instead")
    ap.add_argument("--cpu", type=int, metavar="N", help="instead: CPU ms per document of an in-process daemon draining N files")
    ap.add_argument("--keep", action="store_true",
                    help="leave the sandboxes in place (their folder is printed) instead of removing them; see below")
    args = ap.parse_args()
    if args.quick:
        args.n, args.steady_seconds, args.backlog = 300, 10.0, 1000
    work = Path(tempfile.mkdtemp(prefix="dtesync-bench-daemon-"))
    try:
        if args.cpu:
            print(json.dumps(cpu_per_document(args.cpu, work)))
            return 0
        if args.profile:
            profile(args.profile, args.n if args.profile == "burst" else args.backlog, work)
            return 0
        sizes = {"burst": args.n, "steady": int(args.rate * args.steady_seconds), "backlog": args.backlog, "idle": 0}
        results = []
        for mode in args.modes:
            for kind in args.scenarios:
                r = run_scenario(kind, mode, sizes[kind], args.rate, work, args.pdf)
                results.append(r)
                if not args.json:
                    print(json.dumps(r), flush=True)
        if args.json:
            print(json.dumps({"machine": machine(), "results": results}, indent=1))
        else:
            print(f"machine: {machine()}")
    finally:
        # Removing the sandboxes (some 60 000 files after a full run) slows the next run that
        # starts within about five minutes on ext4 without a journal: every file it creates
        # makes the inode allocator skip the recently deleted ones (perf: recently_deleted and
        # find_inode_bit were 60 % of a dropper's CPU, and a 2 000-file burst went from ~800 to
        # ~450 docs/s). Back-to-back runs to compare two versions want --keep.
        if args.keep:
            print(f"sandboxes kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
