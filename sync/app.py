"""The composition root: configuration in, a daemon with its Filing and stages out.

The CLI (`dtesync run`, `demo`), the Windows service, the benchmarks and the tests all build
the daemon here, so they run the same assembly:

    Filing (journal + outbox)  <-  stages bound to it and to the alerts hub
       ^                                printing (NAME.pdf, tickets), uplink (SII or provider),
    Daemon (threads, lifecycle)         delivery (receptors, virtual boletas), reports, ...
       ^
    Engine (parse -> folio -> TED -> sign -> XSD)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Any

from sync.alerts import Alerts
from sync.config import Config, DaemonConfig
from sync.daemon import Daemon, EngineLike
from sync.filing import Filing, Folders
from sync.stage import Stage


@dataclass
class App:
    """A daemon and what it is made of (for tests, the panel and the service)."""

    daemon: Daemon
    filing: Filing
    alerts: Alerts
    engine: EngineLike
    stages: list[Stage] = field(default_factory=list)
    config: Config | None = None

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def start(self) -> None:
        self.daemon.start()

    def stop(self) -> None:
        self.daemon.stop()


def timezone_of(config: Config) -> tzinfo | None:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(config.timezone)
    except Exception:  # no tz database (Windows without tzdata): local time
        return None


def folders_of(config: Config) -> Folders:
    f = config.folders
    return Folders(inbox=f.inbox, outbox=f.outbox, archive=f.archive, rejected=f.rejected, state=f.state)


def stations_of(config: Config) -> frozenset[str]:
    """Sub-folders of the inbox that name a station: branches and printing stations."""
    return frozenset(config.company.branches) | frozenset(s.name for s in config.printing.stations)


def assemble(
    folders: Folders,
    engine: EngineLike,
    settings: DaemonConfig | None = None,
    *,
    stages: Sequence[Stage] = (),
    stations: frozenset[str] | None = frozenset(),
    lang: str = "es",
    tz: tzinfo | None = None,
    alerts: Alerts | None = None,
    config: Config | None = None,
    allow_network_state: bool = False,
) -> App:
    """The daemon over `folders` with these stages bound; not started."""
    s = settings or DaemonConfig()
    alerts = alerts or Alerts(lang=lang)
    filing = Filing(folders, lang=lang, status_txt=s.status_txt, tz=tz, write_received=s.write_received,
                    max_input_bytes=s.max_input_bytes, allow_network_state=allow_network_state)
    for stage in stages:
        stage.bind(filing, alerts)
    daemon = Daemon(filing, engine, s, stations=stations, stages=stages)
    return App(daemon, filing, alerts, engine, list(stages), config)


def product_stages(config: Config, engine: Any) -> list[Stage]:
    """The stages a configuration asks for, in the order they see a signed document: printing
    first (the cashier's ticket), then the uplink, delivery to receptors, then the scheduled
    reports."""
    from sync.delivery.stage import build_delivery
    from sync.printing.service import build_printing
    from sync.reports import ReportsStage
    from sync.uplink.build import build_uplink

    stages: list[Stage] = []
    printing = build_printing(config)
    if printing is not None:
        stages.append(printing)
    uplink = build_uplink(config, engine.certificate)
    if uplink is not None:
        stages.append(uplink)
    delivery = build_delivery(config, engine.certificate)
    if delivery is not None:
        stages.append(delivery)  # after the uplink: it waits for the SII's acceptance
    stages.append(ReportsStage(config, engine.certificate))
    return stages


def build_app(config: Config, *, engine: EngineLike | None = None, stages: Sequence[Stage] | None = None,
              stations: frozenset[str] | None = None, **daemon_overrides: Any) -> App:
    """The product's daemon for a configuration: the real engine (certificate, CAF folder
    imported) unless one is given, the stages the configuration asks for unless given, and the
    [daemon] settings with `daemon_overrides` applied (tests and benchmarks)."""
    if engine is None:
        from sync.runtime import open_engine

        engine = open_engine(config)
    settings = replace(config.daemon, **daemon_overrides) if daemon_overrides else config.daemon
    chosen = list(stages) if stages is not None else product_stages(config, engine)
    stations = stations_of(config) if stations is None else frozenset(stations)
    return assemble(folders_of(config), engine, settings, stages=chosen, stations=stations,
                    lang=config.language, tz=timezone_of(config), config=config)
