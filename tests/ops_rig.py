"""A whole installation for the operations tests: the real engine on a sandbox, printing to a
TCP test printer, the uplink to fake-sii, the monitor, the panel on a free loopback port.

Timings are shortened (the printer retried every 0.2 s, the uplink drained every 0.1 s, the
watcher every 0.2 s); everything else is what `dtesync run` assembles (sync.app.build_app).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from printing_fixtures import EXAMPLES, FakePrinter
from sync.app import App, build_app
from sync.config import Config, Folders, PrintingConfig, PrintStation
from sync.fakesii import FakeSii
from sync.fakesii.server import Faults
from sync.runtime import open_engine, trusted_caf_keys
from sync.secrets import SecretRef
from sync.uplink.settings import UplinkConfig
from sync.web.settings import WebConfig

PASSWORD = "clave de prueba del panel"
PASSWORD_ENV = "DTESYNC_TEST_PANEL_PASSWORD"


@dataclass
class Rig:
    root: Path
    config: Config
    app: App
    printer: FakePrinter
    fake: FakeSii

    @property
    def url(self) -> str:
        web = self.app.stage("web")
        assert web is not None and web.wait_ready(30), "the panel did not come up"  # type: ignore[attr-defined]
        return web.url  # type: ignore[attr-defined]

    def stage(self, name: str) -> Any:
        return self.app.stage(name)

    def drop(self, name: str, example: str = "33_factura.txt", folder: str = "caja1", data: bytes | None = None) -> Path:
        path = self.root / "inbox" / folder / name if folder else self.root / "inbox" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_bytes(data if data is not None else (EXAMPLES / example).read_bytes())
        tmp.replace(path)
        return path

    def status(self, stem: str, folder: str = "caja1") -> dict:
        path = self.root / "outbox" / folder / f"{stem}.status.json"
        try:
            return json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}

    def wait(self, pred, timeout: float = 30.0, what: str = "condition") -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = pred()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_state(self, stem: str, states: set[str], folder: str = "caja1", timeout: float = 30.0) -> dict:
        return self.wait(lambda: (s := self.status(stem, folder)).get("state") in states and s, timeout,
                         f"{stem} in {states}")

    def printer_down(self) -> None:
        """The printer stops answering: its listening socket shut down (close() alone would leave
        the emulator's accept() thread holding it open, still taking connections)."""
        sock = self.printer._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.printer.stop_listening()

    def printer_up(self) -> None:
        self.printer.listen(self.printer.port)

    def sii_down(self) -> None:
        """Every request to fake-sii fails with HTTP 500 (stopping its listener would not cut the
        uplink's keep-alive connections)."""
        self.fake.faults = Faults(error500=1.0)

    def sii_up(self) -> None:
        self.fake.faults = Faults()

    def stop(self) -> None:
        try:
            self.app.stop()
        finally:
            self.fake.stop()
            self.printer.close()


def make_rig(root: Path, base: Config, *, lang: str = "es", password: bool = True, alerts: dict | None = None,
             web: dict | None = None, notifiers: list | None = None, start: bool = True, **daemon: Any) -> Rig:
    root.mkdir(parents=True, exist_ok=True)
    printer = FakePrinter()
    fake = FakeSii(caf_keys=trusted_caf_keys(base), processing_polls=1).start()
    os.environ[PASSWORD_ENV] = PASSWORD
    folders = Folders(inbox=root / "inbox", outbox=root / "outbox", archive=root / "archive",
                      rejected=root / "rejected", state=root / "state", caf=base.folders.caf)
    config = replace(
        base, folders=folders, language=lang,
        printing=PrintingConfig(stations=[PrintStation("caja1", printer.connector())], retry_base=0.2, retry_max=0.5),
        uplink=UplinkConfig(kind="sii", url=fake.url, batch_max=50, batch_wait=0.1, backoff_base=0.3, backoff_cap=1.0,
                            poll_first=0.2, poll_base=0.2, poll_cap=1.0, uncertain_wait=0.5, drain_interval=0.1,
                            poll_interval=0.1, connect_timeout=1.0, read_timeout=5.0),
        alerts=replace(base.alerts, watch_every=0.2, **(alerts or {})),
        web=WebConfig(**{"listen": "127.0.0.1:0", "password": SecretRef(env=PASSWORD_ENV) if password else None,
                         **(web or {})}),
    )
    engine = open_engine(config)
    settings: dict[str, Any] = {"watch": "poll", "poll_interval": 0.05, "stable_window": 0.05, "workers": 2}
    settings.update(daemon)
    app = build_app(config, engine=engine, **settings)
    if notifiers is not None:
        app.alerts.notifiers[:] = notifiers
    rig = Rig(root, config, app, printer, fake)
    if start:
        app.start()
    return rig
