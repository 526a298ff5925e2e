"""A real, throwaway PostgreSQL server for the cluster-mode tests (Debian's postgresql package;
.ci/run installs it). No mocked database: initdb + pg_ctl in a temporary folder, listening on
loopback on a free port and on a Unix socket in that folder, stopped and deleted at the end.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the `postgres`
account (created by the Debian package) through runuser, or as an account made for it.
Logins: the superuser over the socket (trust, for setting up), and the role `dtesync` with a
password over TCP (scram-sha-256), which is how a site connects in production.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

ROLE = "dtesync"
PASSWORD_ENV = "DTESYNC_TEST_PG_PASSWORD"


def _bindir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    assert versions, "PostgreSQL is required (Debian package postgresql; .ci/run installs it)"
    return Path(versions[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_account() -> str | None:
    """None when we are not root (the server runs as us); else an unprivileged account."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "dtesync-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "dtesync-pg"], check=True)
    return "dtesync-pg"


class PgServer:
    def __init__(self) -> None:
        self.bin = _bindir()
        self.account = _server_account()
        self.root = Path(tempfile.mkdtemp(prefix="dtesync-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.password = secrets.token_hex(16)
        if self.account:
            info = pwd.getpwnam(self.account)
            os.chown(self.root, info.pw_uid, info.pw_gid)
        os.environ[PASSWORD_ENV] = self.password

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.account, "--"] if self.account else []
        return subprocess.run(prefix + list(cmd), capture_output=True, text=True, check=check, cwd=self.root)

    def init(self) -> PgServer:
        pwfile = self.root / "superuser.pw"
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--no-sync",
                  "--auth-local=trust", "--auth-host=scram-sha-256")
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.root}'\n"
                    "max_connections = 60\nshared_buffers = 32MB\n")
        pwfile.unlink(missing_ok=True)
        self.start()
        with self.superuser() as db:
            db.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
        return self

    def start(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def running(self) -> bool:
        return self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "status", check=False).returncode == 0

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def superuser(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname=dbname, autocommit=True)

    def new_database(self, name: str) -> str:
        """A fresh database owned by the `dtesync` role; returns its DSN (without the password)."""
        with self.superuser() as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}"')
            db.execute(f'CREATE DATABASE "{name}" OWNER {ROLE}')
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{name}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""


def wait_until(predicate, timeout: float, step: float = 0.1, what: str = "condition"):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


CLUSTER_SECTION = """
[cluster]
dsn = "{dsn}"
password = {{ env = "{env}" }}
site = "{site}"
lease_size = {lease_size}
low_water = {low_water}
refill_interval = {refill_interval}
ship_interval = {ship_interval}
connect_timeout = 2
retry_cap = {retry_cap}
"""


def cluster_section(dsn: str, site: str, *, lease_size: int = 20, low_water: int = 10, refill_interval: float = 1.0,
                    ship_interval: float = 0.5, retry_cap: float = 1.0, types: list[int] | None = None) -> str:
    text = CLUSTER_SECTION.format(dsn=dsn, env=PASSWORD_ENV, site=site, lease_size=lease_size, low_water=low_water,
                                  refill_interval=refill_interval, ship_interval=ship_interval, retry_cap=retry_cap)
    if types:
        text += f"types = {types!r}\n"
    return text


# --- a company (the head office's sandbox: certificate, CAFs) and its sites ------------------------
def site_config(hq_config: Path, root: Path, site: str, cluster_text: str, extra: str = "") -> Path:
    """A site's dtesync.toml in `root`: the head office's company and certificate (absolute
    paths), its own folders, an EMPTY caf folder (a site gets its CAFs from its leases), and
    the [cluster] section."""
    hq = hq_config.parent
    text = hq_config.read_text(encoding="utf-8")
    text = text.replace('path = "cert/empresa-demo.pfx"', f'path = "{hq / "cert" / "empresa-demo.pfx"}"')
    text = text.replace('{ file = "cert/password.txt" }', f'{{ file = "{hq / "cert" / "password.txt"}" }}')
    text = text.replace('= "caf/fake-sii-idk', f'= "{hq / "caf"}/fake-sii-idk')
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("inbox", "outbox", "archive", "rejected", "state", "caf"):
        (root / sub).mkdir(mode=0o700, exist_ok=True)
    path = root / "dtesync.toml"
    path.write_text(text + extra + cluster_text, encoding="utf-8")
    return path


def run_cli(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-m", "sync", *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=timeout)
