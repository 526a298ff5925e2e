"""Who may read what (sync.exposure): each rule once, and `dtesync run` and `dtesync check`
applying the same one. A private thing has no permission bit for group or others; a token never
travels over plain http:// except to this machine."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sync.check import WARN, Probes, run_checks
from sync.config import load_config
from sync.errors import DteSyncError
from sync.exposure import audit, cleartext, loose, require_tls, shown
from sync.runtime import warn_loose_permissions
from sync.storage import Store
from sync.uplink.build import build_uplink
from sync.uplink.settings import UplinkConfig


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def site(sandbox, tmp_path) -> Path:
    """A private copy of the shared sandbox (modes kept), to loosen."""
    root = tmp_path / "site"
    shutil.copytree(sandbox.root, root)
    return root


# --- the rules ----------------------------------------------------------------------------------
@pytest.mark.parametrize("url, clear", [
    ("http://proveedor.example/api", True),
    ("HTTP://10.0.0.5:8080/", True),
    ("http://127.0.0.1:8080", False),
    ("http://127.10.0.1", False),
    ("http://[::1]:9000/x", False),
    ("http://localhost:8080", False),
    ("http://localhost.example.com", True),  # only the name itself (and *.localhost) is this machine
    ("https://proveedor.example/api", False),
])
def test_cleartext_is_http_to_anything_but_this_machine(url, clear):
    assert cleartext(url) is clear


def test_refused_url_is_shown_without_credentials_or_query():
    with pytest.raises(DteSyncError) as refused:
        require_tls("uplink.http.url", "http://user:s3cret@proveedor.example:8080/api?token=abc")
    err = refused.value
    assert err.code == "URL_INSECURE" and err.field == "uplink.http.url" and err.found == "http://proveedor.example:8080/api"
    assert "s3cret" not in err.message("es") + err.message("en") and "abc" not in err.message("en")
    assert shown("http://[::1]:80/x") == "http://[::1]:80/x"


def test_private_means_no_bit_for_group_or_others(tmp_path):
    f = tmp_path / "clave"
    f.write_bytes(b"k")
    for m, found in ((0o600, None), (0o400, None), (0o640, 0o640), (0o604, 0o604), (0o610, 0o610)):
        f.chmod(m)
        item = loose(f, "secret")
        assert (item.mode if item else None) == found
    f.chmod(0o644)
    assert loose(f, "certificate").wanted == 0o600
    tmp_path.chmod(0o755)
    assert loose(tmp_path, "state").wanted == 0o700
    assert loose(tmp_path / "missing", "state") is None  # other checks name a missing file


# --- the state databases are created private ------------------------------------------------------
class _Notes(Store):
    SCHEMA = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT);"
    TABLE = "notes"


def test_store_creates_its_folder_0700_and_database_wal_and_shm_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)  # the loosest umask: nothing but the code's own modes protects the files
    try:
        store = _Notes(tmp_path / "state" / "notes.sqlite3")
        with store.tx() as db:
            db.execute("INSERT INTO notes (body) VALUES ('x')")
        db_path = tmp_path / "state" / "notes.sqlite3"
        files = [db_path, db_path.with_name("notes.sqlite3-wal"), db_path.with_name("notes.sqlite3-shm")]
        assert all(p.exists() for p in files)  # open store: WAL and shared memory in use
        assert [mode(p) for p in files] == [0o600] * 3 and mode(tmp_path / "state") == 0o700
        store.close()
    finally:
        os.umask(old)


def test_store_keeps_the_mode_of_an_existing_database(tmp_path):
    path = tmp_path / "old.sqlite3"
    sqlite3.connect(path).close()
    path.chmod(0o640)
    _Notes(path).close()
    assert mode(path) == 0o640  # `dtesync check` names it; nothing is changed behind the admin's back


# --- run and check apply the same rules --------------------------------------------------------------
def test_run_and_check_name_the_same_loose_paths(site):
    for rel in ("cert/empresa-demo.pfx", "caf/CAF_T39_1-300.xml", "state"):
        (site / rel).chmod(0o755 if rel == "state" else 0o644)
    (site / "outbox").chmod(0o755)
    config = load_config(site / "dtesync.toml")
    logged = warn_loose_permissions(config)
    warned = [f.subject.split(" ", 1)[1] for f in run_checks(site / "dtesync.toml") if f.level == WARN
              and f.subject.startswith("permisos ")]
    expected = [str(site / r) for r in ("cert/empresa-demo.pfx", "caf/CAF_T39_1-300.xml", "state", "outbox")]
    assert sorted(logged) == sorted(warned) == sorted(expected)
    assert [item.role for item in audit(config)] == ["certificate", "caf", "state", "erp"]


def test_run_logs_each_loose_key_holder_at_start(site, caplog):
    (site / "cert" / "empresa-demo.pfx").chmod(0o640)
    with caplog.at_level("WARNING", logger="dtesync.runtime"):
        warn_loose_permissions(load_config(site / "dtesync.toml"))
    [record] = caplog.records
    assert "loose_permissions" in record.getMessage() and "empresa-demo.pfx" in record.getMessage()
    assert "mode=640 expected=600" in record.getMessage()


def test_run_refuses_a_provider_url_in_clear_with_its_code(site):
    token = site / "cert" / "token.txt"
    token.write_text("secreto\n")
    token.chmod(0o600)
    config = site / "dtesync.toml"
    config.write_text(config.read_text(encoding="utf-8") + '\n[uplink]\nkind = "http"\n[uplink.http]\n'
                      'url = "http://proveedor.example/api/v1"\ntoken = { file = "cert/token.txt" }\n', encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "sync", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "URL_INSECURE: 'uplink.http.url' usa http:// (http://proveedor.example/api/v1)" in result.stderr
    assert "secreto" not in result.stdout + result.stderr
    # ... and `check` fails the same URL with the same code
    [hit] = [f for f in run_checks(config, probes=Probes(resolve=_offline)) if f.subject == "uplink.http.url"]
    assert hit.level == "FAIL" and "URL_INSECURE" in hit.message


def _offline(host, port, **kw):
    raise OSError(-2, "Name or service not known")


def test_uplink_to_fake_sii_on_loopback_is_built(site, engine):
    config = load_config(site / "dtesync.toml")
    config.uplink = UplinkConfig(kind="sii", url="http://127.0.0.1:9")
    uplink = build_uplink(config, engine.certificate)
    assert uplink is not None
    uplink.queue.close()


def test_uplink_to_the_sii_over_http_is_refused(site):
    config = load_config(site / "dtesync.toml")
    config.uplink = UplinkConfig(kind="sii", sii_url="http://maullin.sii.cl")
    with pytest.raises(DteSyncError) as refused:
        build_uplink(config, certificate=None)
    assert refused.value.code == "URL_INSECURE" and refused.value.field == "uplink.sii_url"
