"""dtesync as a Windows service (pywin32): `dtesync service install|start|stop|remove|run`.

The only module that touches pywin32, and only inside functions: it imports (and its plans
are tested) on Linux. The frozen program registers itself: the service's command line is
`"...\\dtesync.exe" service run --config "%PROGRAMDATA%\\dtesync\\dtesync.toml"`, and `service run`
hands the process to the Service Control Manager's dispatcher.

- START_PENDING is reported at once (with a wait hint covering certificate loading, CAF import
  and the first inbox scan); RUNNING once the daemon has scanned the inbox.
- Restart on failure: `sc failure` actions (restart after 5 s, 30 s, 60 s; counter reset daily)
  and `sc failureflag 1`, so an exit with an error status also counts as a failure.
- Logs: a rotating file under %PROGRAMDATA%\\dtesync\\logs; warnings also go to the Application
  Event Log when `service install` (elevated) registered the source: registering it later,
  as the service account, fails with "access denied" (pywin32#1175).
- Configuration and state under %PROGRAMDATA%\\dtesync. A service does not see the mapped
  drive letters of a logged-on user: shared inboxes are configured as UNC paths
  (\\\\server\\share\\inbox), and the service runs as an account that can reach the share.
- The service runs as its own virtual account, NT SERVICE\\dtesync (no password, no rights
  beyond what the folders grant it), not LocalSystem; `--user` names another account (one that
  can reach a share). The folders under %PROGRAMDATA%\\dtesync get ACLs of their own
  (inheritance removed): the service account and Administrators only on the configuration,
  state, logs, certificate and CAFs; the ERP's group (`--erp-group`) also on the inbox (modify)
  and the outbox, archive and rejected folders (read).
"""

from __future__ import annotations

import hashlib
import logging
import logging.handlers
import os
import shutil
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from sync.daemon import Daemon

SERVICE_NAME = "dtesync"
DISPLAY_NAME = "dtesync - sincronizador DTE (SII)"
DESCRIPTION = "Convierte los archivos del ERP en DTE firmados para el SII (bandeja de entrada -> bandeja de salida)."
SERVICE_AUTO_START = 2  # win32service.SERVICE_AUTO_START
START_WAIT_HINT_MS = 180_000
STOP_WAIT_HINT_MS = 90_000
FAILURE_RESET_S = 86_400
FAILURE_ACTIONS = "restart/5000/restart/30000/restart/60000"
EVENT_SOURCE = SERVICE_NAME
EVENT_LOG_KEY = rf"SYSTEM\CurrentControlSet\Services\EventLog\Application\{EVENT_SOURCE}"

VIRTUAL_ACCOUNT = rf"NT SERVICE\{SERVICE_NAME}"
ADMINISTRATORS = "*S-1-5-32-544"  # BUILTIN\Administrators by SID: its name is translated ("Administradores")
# Who gets what under %PROGRAMDATA%\dtesync ("" is the folder itself: dtesync.toml). icacls
# rights: F full, M modify (create, write, rename, delete), RX read. The service only reads its
# certificate and CAFs; the ERP drops files in the inbox and reads what comes back.
FOLDER_ACCESS: dict[str, dict[str, str]] = {
    "": {"service": "RX"},
    "logs": {"service": "M"},
    "state": {"service": "M"},
    "cert": {"service": "RX"},
    "caf": {"service": "RX"},
    "inbox": {"service": "M", "erp": "M"},
    "outbox": {"service": "M", "erp": "RX"},
    "archive": {"service": "M", "erp": "RX"},
    "rejected": {"service": "M", "erp": "RX"},
}

log = logging.getLogger("dtesync.service")


def programdata(environ: dict[str, str] | None = None) -> PureWindowsPath:
    env = os.environ if environ is None else environ
    return PureWindowsPath(env.get("PROGRAMDATA", r"C:\ProgramData")) / "dtesync"


# --- what `service ...` does, as data -------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One operation on the Service Control Manager: `sc.exe ARGS` or a pywin32 function."""

    api: str  # "sc" | "icacls" | "win32serviceutil.X" | "win32evtlogutil.X"
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()  # sorted (name, value) pairs: hashable and printable
    ignore_errors: bool = False

    @classmethod
    def of(cls, api: str, *args: Any, ignore_errors: bool = False, **kwargs: Any) -> "Call":
        return cls(api, tuple(args), tuple(sorted(kwargs.items())), ignore_errors)

    def __str__(self) -> str:
        if self.api in ("sc", "icacls"):
            return f"{self.api}.exe " + subprocess.list2cmdline(list(self.args))
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs if k != "password"]
        return f"{self.api}({', '.join(parts)})"


def service_command_line(exe: Sequence[str], config: PureWindowsPath | str) -> tuple[str, str]:
    """(exeName, exeArgs) for the SCM: the program itself plus `service run --config`."""
    program, *prefix = list(exe)
    args = subprocess.list2cmdline([*prefix, "service", "run", "--config", str(config)])
    return program, args


def this_program() -> list[str]:
    """The frozen dtesync.exe registers itself; a pip install runs `python -m sync`."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "sync"]


def service_sid(name: str = SERVICE_NAME) -> str:
    """The SID of the virtual account NT SERVICE\\<name> (what `sc showsid` prints): S-1-5-80
    and the SHA-1 of the upper-case name in UTF-16LE as five little-endian integers. Granting by
    SID needs no name lookup, in any Windows language, even before the service exists."""
    digest = hashlib.sha1(name.upper().encode("utf-16-le")).digest()
    return "S-1-5-80-" + "-".join(str(n) for n in struct.unpack("<5I", digest))


def plan_permissions(root: PureWindowsPath, account: str, erp_group: str | None = None) -> list[Call]:
    """icacls for every folder under `root`: inherited entries removed (%PROGRAMDATA% lets every
    user read), then exactly FOLDER_ACCESS granted, inherited by what the folder will hold.
    `account` is the service's (`*SID` or DOMAIN\\user); without `erp_group` the ERP folders
    are for the service and Administrators only until one is granted."""
    calls = []
    for sub, rights in FOLDER_ACCESS.items():
        grants = [f"{ADMINISTRATORS}:(OI)(CI)F", f"{account}:(OI)(CI){rights['service']}"]
        if erp_group and "erp" in rights:
            grants.append(f"{erp_group}:(OI)(CI){rights['erp']}")
        calls.append(Call.of("icacls", str(root / sub if sub else root), "/inheritance:r", "/grant:r", *grants))
    return calls


def plan_install(exe: Sequence[str], config: PureWindowsPath | str, *, user: str | None = None,
                 password: str | None = None, data: PureWindowsPath | None = None,
                 erp_group: str | None = None) -> list[Call]:
    """Register the service (as NT SERVICE\\dtesync unless `user` is given), its recovery
    actions and Event Log source, then the ACLs of `data` (%PROGRAMDATA%\\dtesync): after the
    service exists, since that is when its virtual account does."""
    program, args = service_command_line(exe, config)
    account = f"*{service_sid()}" if user is None else user
    return [
        Call.of(
            "win32serviceutil.InstallService",
            None,  # pythonClassString: not used, the program hosts its own dispatcher
            SERVICE_NAME,
            DISPLAY_NAME,
            startType=SERVICE_AUTO_START,
            delayedstart=True,  # after the network and the shares are up
            exeName=program,
            exeArgs=args,
            description=DESCRIPTION,
            userName=user or VIRTUAL_ACCOUNT,
            password=password if user else None,  # a virtual account has none
        ),
        Call.of("sc", "failure", SERVICE_NAME, "reset=", str(FAILURE_RESET_S), "actions=", FAILURE_ACTIONS),
        Call.of("sc", "failureflag", SERVICE_NAME, "1"),
        Call.of("win32evtlogutil.AddSourceToRegistry", EVENT_SOURCE, msgDLL="<servicemanager>", eventLogType="Application"),
        *plan_permissions(data or programdata(), account, erp_group),
    ]


def plan_start() -> list[Call]:
    return [Call.of("win32serviceutil.StartService", SERVICE_NAME)]


def plan_stop() -> list[Call]:
    return [Call.of("win32serviceutil.StopService", SERVICE_NAME)]


def plan_remove() -> list[Call]:
    return [
        Call.of("win32serviceutil.StopService", SERVICE_NAME, ignore_errors=True),
        Call.of("win32serviceutil.RemoveService", SERVICE_NAME),
        Call.of("win32evtlogutil.RemoveSourceFromRegistry", EVENT_SOURCE, ignore_errors=True),
    ]


Runner = Callable[[Call], None]


def pywin32_runner(call: Call) -> None:  # pragma: no cover - Windows only
    """Execute a Call for real (needs Windows, pywin32 and, for install/remove, elevation)."""
    try:
        if call.api in ("sc", "icacls"):
            result = subprocess.run([f"{call.api}.exe", *call.args], capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{call}: {result.stdout.strip() or result.stderr.strip()}")
            return
        module_name, func_name = call.api.split(".")
        module = __import__(module_name)
        kwargs = dict(call.kwargs)
        if kwargs.get("msgDLL") == "<servicemanager>":
            import servicemanager

            kwargs["msgDLL"] = servicemanager.__file__
        getattr(module, func_name)(*call.args, **kwargs)
    except Exception:
        if not call.ignore_errors:
            raise


def execute(calls: Sequence[Call], runner: Runner) -> None:
    for call in calls:
        try:
            runner(call)
        except Exception:
            if not call.ignore_errors:
                raise


def prepare_programdata(root: Path, example_config: Path | None) -> list[str]:
    """Create %PROGRAMDATA%\\dtesync (config, state, logs, folders) and a config from the example
    when there is none (never overwritten). Returns what was created, for the admin. Their
    ACLs are set by the install plan (plan_permissions), once the service account exists."""
    made = []
    for sub in FOLDER_ACCESS:
        d = root / sub
        if not d.exists():
            d.mkdir(parents=True)
            made.append(str(d))
    config = root / "dtesync.toml"
    if not config.exists() and example_config and example_config.is_file():
        shutil.copyfile(example_config, config)
        made.append(str(config))
    return made


# --- the service itself (Windows only) ------------------------------------------------------------
def event_source_registered() -> bool:  # pragma: no cover - Windows only
    try:
        import winreg

        winreg.CloseKey(winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, EVENT_LOG_KEY))  # type: ignore[attr-defined,unused-ignore]
        return True
    except OSError:
        return False


def setup_service_logging(config: Any) -> None:  # pragma: no cover - Windows only
    from sync.logs import setup_logging

    logs = Path(str(programdata())) / "logs"
    setup_logging(logs / "dtesync.log")
    if event_source_registered():
        handler = logging.handlers.NTEventLogHandler(EVENT_SOURCE)
        handler.setLevel(logging.WARNING)
        logging.getLogger("dtesync").addHandler(handler)


def _service_class() -> Any:  # pragma: no cover - Windows only
    import servicemanager
    import win32service
    import win32serviceutil

    class DtesyncService(win32serviceutil.ServiceFramework):
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION
        config_path: str | None = None

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.stop_event = threading.Event()

        def SvcStop(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_HINT_MS)
            self.stop_event.set()

        def SvcRun(self) -> None:
            # Not ServiceFramework.SvcRun, which reports RUNNING before anything has started.
            self.ReportServiceStatus(win32service.SERVICE_START_PENDING, waitHint=START_WAIT_HINT_MS)
            servicemanager.LogInfoMsg(f"{SERVICE_NAME}: starting ({self.config_path})")
            running: list[bool] = []

            def on_tick(daemon: Daemon) -> None:
                if not running and daemon.first_scan.is_set():
                    running.append(True)
                    self.ReportServiceStatus(win32service.SERVICE_RUNNING)

            run_daemon(self.config_path, self.stop_event, on_tick)  # raises -> SCM sees a failure
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_HINT_MS)

    return DtesyncService


def run_daemon(config_path: str | None, stop_event: threading.Event,
               on_tick: Callable[[Daemon], None]) -> None:  # pragma: no cover
    from sync.app import build_app
    from sync.config import load_config

    config = load_config(config_path)
    setup_service_logging(config)
    build_app(config).daemon.run(stop_event, on_tick=on_tick, tick=0.5)


def run_service(config_path: str | None) -> int:  # pragma: no cover - Windows only
    """`dtesync service run`: become the service process the SCM started."""
    import servicemanager

    cls = _service_class()
    cls.config_path = config_path
    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(cls)
    try:
        servicemanager.StartServiceCtrlDispatcher()  # type: ignore[no-untyped-call]
    except Exception as exc:  # error 1063: started from a console, not by the SCM
        print(f"dtesync: 'service run' lo inicia Windows; use 'dtesync service start' ({exc})", file=sys.stderr)
        return 1
    return 0
