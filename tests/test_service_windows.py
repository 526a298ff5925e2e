"""The Windows service commands, tested without Windows: the plans of Service Control Manager
calls (executed through an injectable runner), the command line the service is registered
with, %PROGRAMDATA% preparation, and what `dtesync service` says on Linux."""

from __future__ import annotations

import contextlib
import io
import shlex
import sys
from pathlib import PureWindowsPath

import pytest

from sync.cli import main
from sync.service import windows as win


def test_windows_module_imports_without_pywin32():
    assert "win32serviceutil" not in sys.modules and win.SERVICE_NAME == "dtesync"


def test_install_registers_the_frozen_program_itself_with_service_run_and_its_config():
    exe = [r"C:\Program Files\dtesync\dtesync.exe"]
    calls = win.plan_install(exe, PureWindowsPath(r"C:\ProgramData\dtesync\dtesync.toml"))
    install = dict(calls[0].kwargs)
    assert calls[0].api == "win32serviceutil.InstallService" and calls[0].args[1] == "dtesync"
    assert install["exeName"] == r"C:\Program Files\dtesync\dtesync.exe"
    assert install["exeArgs"] == r"service run --config C:\ProgramData\dtesync\dtesync.toml"
    assert install["startType"] == 2 and install["delayedstart"] is True


def test_config_path_with_spaces_is_quoted_for_the_scm():
    _, args = win.service_command_line([r"C:\dtesync\dtesync.exe"], r"D:\Datos ERP\dtesync.toml")
    assert args == r'service run --config "D:\Datos ERP\dtesync.toml"'


def test_install_sets_restart_on_failure_actions_and_the_failure_flag():
    calls = win.plan_install(["dtesync.exe"], r"C:\x.toml")
    sc = [c.args for c in calls if c.api == "sc"]
    assert ("failure", "dtesync", "reset=", "86400", "actions=", "restart/5000/restart/30000/restart/60000") in sc
    assert ("failureflag", "dtesync", "1") in sc
    assert str([c for c in calls if c.api == "sc"][0]) == (
        "sc.exe failure dtesync reset= 86400 actions= restart/5000/restart/30000/restart/60000")


def test_install_registers_the_event_log_source_while_elevated():
    calls = win.plan_install(["dtesync.exe"], r"C:\x.toml")
    [evt] = [c for c in calls if c.api.startswith("win32evtlogutil")]
    assert evt.api == "win32evtlogutil.AddSourceToRegistry" and evt.args == ("dtesync",)
    assert dict(evt.kwargs)["eventLogType"] == "Application"


def test_install_with_an_account_passes_it_and_never_prints_the_password():
    calls = win.plan_install(["dtesync.exe"], r"C:\x.toml", user=r"TIENDA\svc-dtesync", password="s3cret")
    assert dict(calls[0].kwargs)["userName"] == r"TIENDA\svc-dtesync" and dict(calls[0].kwargs)["password"] == "s3cret"
    assert "s3cret" not in str(calls[0])


def test_execute_runs_every_call_through_the_runner_in_order():
    seen = []
    win.execute(win.plan_install(["dtesync.exe"], r"C:\x.toml"), seen.append)
    assert [c.api for c in seen] == ["win32serviceutil.InstallService", "sc", "sc", "win32evtlogutil.AddSourceToRegistry",
                                     *["icacls"] * len(win.FOLDER_ACCESS)]


# --- who may read what: the service's own virtual account, ACLs on %PROGRAMDATA%\dtesync ---------------
DATA = PureWindowsPath(r"C:\ProgramData\dtesync")
ADMINS = "*S-1-5-32-544"
SERVICE = "*S-1-5-80-2014158450-2266582876-1052222259-4105291722-3874284619"  # NT SERVICE\dtesync


def acls(calls) -> dict[str, tuple[str, ...]]:
    """folder -> the grants of its icacls call, checking each call removes inherited entries."""
    out = {}
    for call in calls:
        if call.api == "icacls":
            folder, inheritance, grant, *grants = call.args
            assert (inheritance, grant) == ("/inheritance:r", "/grant:r"), call
            out[folder] = tuple(grants)
    return out


def test_service_sid_is_the_one_windows_derives_for_a_virtual_account():
    # `sc showsid TrustedInstaller`: the best-known service SID, documented by Microsoft.
    assert win.service_sid("TrustedInstaller") == "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
    assert f"*{win.service_sid()}" == SERVICE


def test_install_runs_the_service_as_its_own_virtual_account_without_a_password():
    install = dict(win.plan_install(["dtesync.exe"], r"C:\x.toml", data=DATA)[0].kwargs)
    assert install["userName"] == r"NT SERVICE\dtesync" and install["password"] is None


def test_keys_state_and_config_are_for_the_service_account_and_administrators_only():
    planned = acls(win.plan_install(["dtesync.exe"], r"C:\x.toml", data=DATA, erp_group=r"TIENDA\ERP"))
    assert planned[str(DATA)] == (f"{ADMINS}:(OI)(CI)F", f"{SERVICE}:(OI)(CI)RX")
    for sub, right in (("state", "M"), ("logs", "M"), ("cert", "RX"), ("caf", "RX")):
        assert planned[str(DATA / sub)] == (f"{ADMINS}:(OI)(CI)F", f"{SERVICE}:(OI)(CI){right}"), sub


def test_the_erp_group_may_write_the_inbox_and_read_the_results_only():
    planned = acls(win.plan_install(["dtesync.exe"], r"C:\x.toml", data=DATA, erp_group=r"TIENDA\ERP"))
    assert planned[str(DATA / "inbox")][-1] == r"TIENDA\ERP:(OI)(CI)M"
    for sub in ("outbox", "archive", "rejected"):
        assert planned[str(DATA / sub)] == (f"{ADMINS}:(OI)(CI)F", f"{SERVICE}:(OI)(CI)M", r"TIENDA\ERP:(OI)(CI)RX")
    assert [f for f, grants in planned.items() if any("ERP" in g for g in grants)] == [
        str(DATA / s) for s in ("inbox", "outbox", "archive", "rejected")]


def test_without_an_erp_group_nobody_else_is_granted_anything():
    planned = acls(win.plan_install(["dtesync.exe"], r"C:\x.toml", data=DATA))
    assert len(planned) == len(win.FOLDER_ACCESS)
    assert all({g.split(":")[0] for g in grants} == {ADMINS, SERVICE} for grants in planned.values())


def test_an_account_given_with_user_gets_the_grants_instead_of_the_virtual_account():
    calls = win.plan_install(["dtesync.exe"], r"C:\x.toml", user=r"TIENDA\svc-dtesync", password="pw", data=DATA)
    planned = acls(calls)
    assert planned[str(DATA / "state")] == (f"{ADMINS}:(OI)(CI)F", r"TIENDA\svc-dtesync:(OI)(CI)M")
    assert not any(SERVICE in g for grants in planned.values() for g in grants)


def test_acls_come_after_the_service_exists():
    apis = [c.api for c in win.plan_install(["dtesync.exe"], r"C:\x.toml", data=DATA)]
    assert apis.index("win32serviceutil.InstallService") < apis.index("icacls")


def test_remove_tolerates_a_stopped_service_but_not_a_failed_removal():
    calls = []

    def runner(call):
        calls.append(call.api)
        if call.api == "win32serviceutil.StopService":
            raise OSError("service not started")

    win.execute(win.plan_remove(), runner)
    assert calls == ["win32serviceutil.StopService", "win32serviceutil.RemoveService",
                     "win32evtlogutil.RemoveSourceFromRegistry"]

    def failing(call):
        if call.api == "win32serviceutil.RemoveService":
            raise OSError("access denied")

    with pytest.raises(OSError):
        win.execute(win.plan_remove(), failing)


def test_start_and_stop_address_the_dtesync_service():
    assert [(c.api, c.args) for c in win.plan_start()] == [("win32serviceutil.StartService", ("dtesync",))]
    assert [(c.api, c.args) for c in win.plan_stop()] == [("win32serviceutil.StopService", ("dtesync",))]


def test_programdata_is_prepared_with_the_example_config_never_overwritten(tmp_path):
    example = tmp_path / "example.toml"
    example.write_text("language = \"es\"\n")
    root = tmp_path / "ProgramData" / "dtesync"
    made = win.prepare_programdata(root, example)
    assert (root / "dtesync.toml").read_text() == example.read_text() and str(root / "state") in made
    (root / "dtesync.toml").write_text("edited")
    assert win.prepare_programdata(root, example) == [] and (root / "dtesync.toml").read_text() == "edited"
    assert all((root / sub).is_dir() for sub in win.FOLDER_ACCESS)  # every folder the ACL plan names


def test_programdata_follows_the_environment():
    assert win.programdata({"PROGRAMDATA": r"D:\PD"}) == PureWindowsPath(r"D:\PD\dtesync")


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


@pytest.mark.skipif(sys.platform == "win32", reason="Linux behaviour")
def test_service_on_linux_explains_systemd_and_prints_the_install_steps():
    code, out = _cli("service")
    assert code == 0 and "systemd" in out and "packaging/linux/install.sh" in out and "dtesync check" in out
    code, out = _cli("service", "install")
    assert code == 2 and "'dtesync service install' es para Windows" in out


def test_service_install_dry_run_prints_the_scm_calls():
    code, out = _cli("service", "install", "--dry-run")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("win32serviceutil.InstallService(None, 'dtesync'")
    assert "service run --config" in lines[0] and shlex.split(lines[1])[:2] == ["sc.exe", "failure"]
    assert "userName='NT SERVICE\\\\dtesync'" in lines[0]


def test_service_install_dry_run_prints_the_icacls_lines_with_the_erp_group():
    code, out = _cli("service", "install", "--dry-run", "--erp-group", "Usuarios ERP")
    icacls = [line for line in out.splitlines() if line.startswith("icacls.exe ")]
    assert code == 0 and len(icacls) == len(win.FOLDER_ACCESS)
    inbox = next(line for line in icacls if "\\inbox " in line)
    assert inbox.endswith('"Usuarios ERP:(OI)(CI)M"') and "/inheritance:r /grant:r *S-1-5-32-544:(OI)(CI)F" in inbox
