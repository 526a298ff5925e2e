"""packaging/linux/install.sh, run for real into a scratch root (DTESYNC_INSTALL_ROOT) with
stand-ins for the commands that change the machine's accounts and services (useradd, usermod,
gpasswd, systemctl, chown): the modes of what it creates are stat'ed, the account and
ownership changes are read from the stand-ins' log. Who may read what: the ERP's group writes
the inbox and reads the results; the certificate, its password and the CAFs are the service
account's alone; nobody is ever added to the group dtesync."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from sync.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "packaging" / "linux" / "install.sh"
LOGGED = ("useradd", "groupadd", "usermod", "gpasswd", "chown", "chgrp", "systemctl")


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


def _stubs(folder: Path, log: Path, groups: Path) -> None:
    folder.mkdir()
    for name in LOGGED:
        _stub(folder, name, f'echo "{name} $*" >> "{log}"\n' + ('[ "$1" = is-active ] && exit 3\n' if name == "systemctl" else "")
              + "exit 0\n")
    _stub(folder, "id", 'echo 0\n')
    # getent passwd: the service user exists when the group database lists it; getent group: that database.
    _stub(folder, "getent", f'grep -q "^$2:" "{groups}" || exit 2\n[ "$1" = group ] && grep "^$2:" "{groups}"\nexit 0\n')
    real_install = shutil.which("install")
    # install: the modes for real, the owner and group only logged (the accounts do not exist here).
    _stub(folder, "install", f'''echo "install $*" >> "{log}"
args=()
while [ $# -gt 0 ]; do
  case "$1" in -o|-g) shift 2;; *) args+=("$1"); shift;; esac
done
exec "{real_install}" "${{args[@]}}"
''')


def _run(tmp_path: Path, groups: str = "", env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, Path, list[str]]:
    root, log, db = tmp_path / "root", tmp_path / "calls.log", tmp_path / "group"
    root.mkdir(exist_ok=True)
    db.write_text(groups)
    log.touch()
    stubs = tmp_path / "bin"
    if not stubs.exists():
        _stubs(stubs, log, db)
    built = tmp_path / "built"
    built.mkdir(exist_ok=True)
    _stub(built, "dtesync", 'echo "dtesync 0.0-test"\n')
    environ = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "DTESYNC_INSTALL_ROOT": str(root), **(env or {})}
    result = subprocess.run(["bash", str(SCRIPT), str(built)], capture_output=True, text=True, env=environ, timeout=120,
                            check=False)
    return result, root, log.read_text().splitlines()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fresh_install_gives_the_erp_group_its_folders_and_the_service_account_alone_the_keys(tmp_path):
    result, root, calls = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    etc, srv = root / "etc" / "dtesync", root / "srv" / "dtesync"
    assert mode(etc) == 0o750 and mode(etc / "dtesync.toml") == 0o640
    assert mode(etc / "cert") == 0o700 and mode(etc / "caf") == 0o700
    assert mode(srv) == 0o750 and mode(srv / "inbox") == 0o2770
    assert all(mode(srv / d) == 0o2750 for d in ("outbox", "archive", "rejected"))
    assert not (srv / "caf").exists()  # the CAFs hold private keys: never in the folder shared with the ERP
    assert f"install -d -m 0700 -o dtesync -g dtesync {etc}/cert {etc}/caf" in calls
    assert f"install -d -m 0750 -o dtesync -g dtesync-erp {srv}" in calls
    assert f"install -d -m 2770 -o dtesync -g dtesync-erp {srv}/inbox" in calls
    assert f"install -d -m 2750 -o dtesync -g dtesync-erp {srv}/outbox" in calls
    assert "groupadd --system dtesync-erp" in calls and "usermod -a -G dtesync-erp dtesync" in calls


def test_nobody_is_ever_added_to_the_group_that_reads_the_configuration(tmp_path):
    _, _, calls = _run(tmp_path, "dtesync:x:990:dtesync,caja1\ndtesync-erp:x:991:dtesync\n")
    for call in calls:
        words = call.split()
        assert not (words[0] == "usermod" and "-G" in words and words[words.index("-G") + 1] == "dtesync"), call
        assert not (words[0] == "gpasswd" and "-a" in words), call


def test_template_configuration_keeps_certificate_and_cafs_in_the_private_folders(tmp_path):
    _, root, _ = _run(tmp_path)
    config = load_config(root / "etc" / "dtesync" / "dtesync.toml")
    assert config.certificate.path == Path("/etc/dtesync/cert/empresa.pfx")
    assert config.certificate.password.file == Path("/etc/dtesync/cert/password")
    assert config.folders.caf == Path("/etc/dtesync/caf") and config.folders.state == Path("/var/lib/dtesync")


def test_upgrade_moves_erp_users_out_of_the_service_group_and_makes_old_keys_private(tmp_path):
    root = tmp_path / "root"
    etc, srv = root / "etc" / "dtesync", root / "srv" / "dtesync"
    for d in ("inbox", "outbox", "archive", "rejected", "caf"):  # what an older install.sh made
        (srv / d).mkdir(parents=True)
        (srv / d).chmod(0o2770)
    etc.mkdir(parents=True)
    for name, m in (("empresa.pfx", 0o640), ("cert.password", 0o600)):
        (etc / name).write_bytes(b"x")
        (etc / name).chmod(m)
    (srv / "caf" / "CAF_T33.xml").write_bytes(b"<AUTORIZACION/>")
    (srv / "caf" / "CAF_T33.xml").chmod(0o644)
    result, _, calls = _run(tmp_path, "dtesync:x:990:dtesync,caja1,contab\ndtesync-erp:x:991:\n")
    assert result.returncode == 0, result.stderr
    for user in ("caja1", "contab"):
        assert f"usermod -a -G dtesync-erp {user}" in calls and f"gpasswd -d {user} dtesync" in calls
        assert f"{user} moved from group dtesync" in result.stdout
    assert "gpasswd -d dtesync dtesync" not in calls
    assert mode(etc / "empresa.pfx") == 0o600 and f"chown dtesync:dtesync {etc}/empresa.pfx" in calls
    assert mode(srv / "caf") == 0o700 and mode(srv / "caf" / "CAF_T33.xml") == 0o600
    assert mode(srv / "outbox") == 0o2750 and f"chgrp -R dtesync-erp {srv}/outbox" in calls


def test_erp_group_is_configurable_but_never_the_service_group(tmp_path):
    result, root, calls = _run(tmp_path, env={"DTESYNC_ERP_GROUP": "ventas"})
    assert result.returncode == 0 and f"install -d -m 2770 -o dtesync -g ventas {root}/srv/dtesync/inbox" in calls
    result, _, _ = _run(tmp_path, env={"DTESYNC_ERP_GROUP": "dtesync"})
    assert result.returncode == 2 and "must not be dtesync" in result.stderr


@pytest.mark.parametrize("command", ["systemctl daemon-reload", "systemctl enable dtesync.service"])
def test_the_unit_is_installed_and_enabled(tmp_path, command):
    _, root, calls = _run(tmp_path)
    assert command in calls and (root / "etc" / "systemd" / "system" / "dtesync.service").is_file()
