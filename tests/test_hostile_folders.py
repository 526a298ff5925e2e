"""The inbox and outbox are shares other people can write: every attack of issue #18 against a
running daemon. Nothing of a file outside the daemon's folders may reach any output, nothing may
be written outside them, the state databases stay intact, memory stays bounded, and every input
gets an answer."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_runner import make_daemon
from sync.app import build_app
from sync.config import load_config
from sync.sandbox.build import create_sandbox

SECRET = b"TOP-SECRET-LINE-42"
FINAL = {"signed", "rejected_input", "error"}
RUNNER = Path(__file__).with_name("daemon_runner.py")


def read_status(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def wait_final(outbox: Path, stem: str, timeout: float = 30.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = read_status(outbox / f"{stem}.status.json")
        if st and st["state"] in FINAL:
            return st
        time.sleep(0.02)
    raise AssertionError(f"no final status for {stem}")


def outputs_mention(root: Path, needle: bytes, skip: Path) -> list[Path]:
    """Every file under `root` holding `needle`: a copy of an outside file's bytes. Links are not
    followed, `skip` (the outside folder) is left out, and so is a hard link planted in the inbox
    that was filed as it was (another name of the outside file itself, not a copy of its bytes)."""
    outside = {(st.st_dev, st.st_ino) for p in skip.iterdir() if (st := p.stat())}
    found = []
    for dirpath, _, files in os.walk(root):
        if Path(dirpath).is_relative_to(skip):
            continue
        for name in files:
            p = Path(dirpath) / name
            if p.is_symlink() or not p.is_file() or (p.stat().st_dev, p.stat().st_ino) in outside:
                continue
            if needle in p.read_bytes():
                found.append(p)
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the daemon's, with a private secret, like a certificate password file."""
    d = tmp_path / "outside"
    d.mkdir()
    secret = d / "secret.txt"
    secret.write_bytes(SECRET + b"\n")
    secret.chmod(0o600)
    return d


def test_file_swapped_for_a_symlink_between_scan_and_claim_never_leaks(tmp_path: Path, outside: Path) -> None:
    """A racer flips each input between a regular file and a link to the secret while the daemon
    claims it. Whatever it catches, it never reads through the link (the real engine echoes a bad
    TXT line into the status file, which is how the secret used to leak)."""
    sb = create_sandbox(tmp_path / "sb", folios_per_type=20)
    config = load_config(sb.config_path)
    daemon = build_app(config, stages=[], watch="poll", poll_interval=0.01, stable_window=0.0, scan_interval=0.2,
                       workers=2).daemon
    daemon.start()
    rnd = random.Random(4)
    names = [f"r{i}" for i in range(40)]
    try:
        for stem in names:
            path = sb.inbox / f"{stem}.txt"
            regular, link = sb.inbox / f".{stem}.reg", sb.inbox / f".{stem}.lnk"
            first = True
            while first or os.path.lexists(path):  # until the daemon has taken it
                first = False
                regular.write_bytes(b"una linea sin signo igual\n")
                os.replace(regular, path)
                time.sleep(rnd.uniform(0, 0.004))
                if not os.path.lexists(path):
                    break
                os.symlink(outside / "secret.txt", link)
                os.replace(link, path)
                time.sleep(rnd.uniform(0, 0.004))
            for leftover in (regular, link):
                if os.path.lexists(leftover):
                    os.unlink(leftover)
        answered = [wait_final(config.folders.outbox, stem) for stem in names]
    finally:
        daemon.stop()
    assert all(st["state"] == "rejected_input" for st in answered)
    codes = [st["errors"][0]["code"] for st in answered]
    print("caught as a link:", codes.count("INPUT_SYMLINK"), "as a file:", codes.count("TXT_SYNTAX"))
    assert set(codes) <= {"INPUT_SYMLINK", "TXT_SYNTAX"}
    assert outputs_mention(tmp_path / "sb", SECRET, skip=outside) == []


def test_hard_link_to_an_outside_file_is_rejected_unread(tmp_path: Path, outside: Path) -> None:
    d, _ = make_daemon(tmp_path, "events")
    d.start()
    try:
        (tmp_path / "inbox").mkdir(exist_ok=True)
        os.link(outside / "secret.txt", tmp_path / "inbox" / "h.txt")
        st = wait_final(tmp_path / "outbox", "h")
    finally:
        d.stop()
    assert st["state"] == "rejected_input" and st["errors"][0]["code"] == "INPUT_HARDLINK"
    assert outputs_mention(tmp_path, SECRET, skip=outside) == []


def test_a_lock_link_planted_in_the_inbox_is_replaced_and_never_followed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    victim = state / "folios.sqlite"
    victim.write_bytes(b"SQLite format 3\x00" + b"\x01" * 36848)
    before = victim.read_bytes()
    (tmp_path / "inbox").mkdir()
    os.symlink("../state/folios.sqlite", tmp_path / "inbox" / ".dtesync.lock")
    d, _ = make_daemon(tmp_path, "events")
    d.start()
    try:
        (tmp_path / "inbox" / "A.txt").write_bytes(b"a")
        assert wait_final(tmp_path / "outbox", "A")["state"] == "signed"
    finally:
        d.stop()
    assert victim.read_bytes() == before
    lock = tmp_path / "inbox" / ".dtesync.lock"
    assert not lock.is_symlink() and lock.read_bytes() == b""  # nothing is written into the inbox lock


def test_planted_links_in_the_outbox_are_replaced_never_written_through(tmp_path: Path, outside: Path) -> None:
    victim = outside / "victim.json"
    victim.write_bytes(b"ORIGINAL")
    out = tmp_path / "outbox"
    out.mkdir()
    os.symlink(victim, out / "EVIL.status.json")
    os.symlink(victim, out / "EVIL.xml")
    for pid in range(os.getpid() - 5, os.getpid() + 5):  # the temp names an attacker used to predict
        for n in range(20):
            os.symlink(victim, out / f".EVIL.status.json.{pid}.{n}.tmp")
    d, _ = make_daemon(tmp_path, "events")
    d.start()
    try:
        (tmp_path / "inbox").mkdir(exist_ok=True)
        (tmp_path / "inbox" / "EVIL.txt").write_bytes(b"evil")
        st = wait_final(out, "EVIL")
    finally:
        d.stop()
    assert st["state"] == "signed"
    assert victim.read_bytes() == b"ORIGINAL"
    assert oct((tmp_path / "state" / "work").stat().st_mode & 0o777) == oct(0o700)
    for name in ("EVIL.status.json", "EVIL.xml"):
        assert not (out / name).is_symlink() and (out / name).is_file()


def test_a_station_folder_swapped_for_a_link_is_never_entered(tmp_path: Path, outside: Path) -> None:
    (outside / "F9.txt").write_bytes(b"outside input")
    (tmp_path / "inbox").mkdir()
    os.symlink(outside, tmp_path / "inbox" / "caja1")
    d, _ = make_daemon(tmp_path, "poll", stations={"caja1"})
    d.start()
    try:
        (tmp_path / "inbox" / "A.txt").write_bytes(b"a")
        wait_final(tmp_path / "outbox", "A")
        time.sleep(1.0)  # a few scans
    finally:
        d.stop()
    assert (outside / "F9.txt").read_bytes() == b"outside input"  # not claimed, not moved
    assert not (tmp_path / "outbox" / "caja1" / "F9.status.json").exists()


def test_odd_names_are_answered_under_a_safe_name_and_never_block_other_files(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    d, _ = make_daemon(tmp_path, "poll")
    d.start()
    try:
        undecodable = os.fsencode(inbox) + b"/bad\xff\xfe.txt"
        with open(undecodable, "wb") as f:
            f.write(b"odd name")
        long_name = "L" * 251 + ".txt"  # 255 bytes: no room for '.status.json'
        (inbox / long_name).write_bytes(b"long name")
        for i in range(12):
            (inbox / f"N{i}.txt").write_bytes(b"n%d" % i)
        normal = [wait_final(tmp_path / "outbox", f"N{i}") for i in range(12)]
        end = time.monotonic() + 30
        odd: list[dict] = []
        while time.monotonic() < end and len(odd) < 2:
            odd = [s for p in (tmp_path / "outbox").glob("*~*.status.json") if (s := read_status(p))
                   and s["state"] in FINAL]
            time.sleep(0.05)
    finally:
        d.stop()
    assert all(s["state"] == "signed" for s in normal)
    assert len(odd) == 2 and {s["errors"][0]["code"] for s in odd} == {"INPUT_NAME_INVALID"}
    rejected = sorted(p.name for p in (tmp_path / "rejected").iterdir())
    assert len(rejected) == 2 and all(len(n.encode()) <= 200 for n in rejected)
    assert not any(p for p in inbox.iterdir() if not p.name.startswith("."))  # nothing left behind


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc")
def test_a_2_gb_sparse_file_is_rejected_with_memory_bounded(tmp_path: Path) -> None:
    for d in ("inbox", "outbox", "archive", "rejected", "state"):
        (tmp_path / d).mkdir()
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(tmp_path), "events"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
        big = tmp_path / "inbox" / ".big.tmp"
        with open(big, "wb") as f:
            f.truncate(2 << 30)
        big.rename(tmp_path / "inbox" / "big.txt")
        (tmp_path / "inbox" / "small.txt").write_bytes(b"small")
        st = wait_final(tmp_path / "outbox", "big", timeout=60)
        assert wait_final(tmp_path / "outbox", "small")["state"] == "signed"
        peak = _peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    assert st["state"] == "rejected_input" and st["errors"][0]["code"] == "INPUT_TOO_LARGE"
    assert peak < 150, f"peak RSS {peak:.0f} MB"


def test_a_fifo_in_the_inbox_never_hangs_the_daemon(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    os.mkfifo(tmp_path / "inbox" / "pipe.txt")
    d, _ = make_daemon(tmp_path, "poll")
    d.start()
    try:
        st = wait_final(tmp_path / "outbox", "pipe")
        (tmp_path / "inbox" / "after.txt").write_bytes(b"after")
        assert wait_final(tmp_path / "outbox", "after")["state"] == "signed"
    finally:
        d.stop()
    assert st["state"] == "rejected_input" and st["errors"][0]["code"] == "INPUT_SPECIAL_FILE"
