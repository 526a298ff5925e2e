"""The composition root: configuration in, a daemon with its Filing and stages out.

The CLI (`dtesync run`, `demo`), the Windows service, the benchmarks and the tests all build
the daemon here, so they run the same assembly:

    Filing (journal + outbox)  <-  stages bound to it and to the alerts hub
       ^                                printing (NAME.pdf, tickets), uplink (SII or provider),
    Daemon (threads, lifecycle)         delivery (receptors, virtual boletas), reports, retention,
       ^                                monitor (health, metrics, alerts), the web panel ...
    Engine (parse -> folio -> TED -> sign -> XSD)

Stages that watch the whole daemon (the monitor, the panel) are given the App explicitly once
it exists (`attach(app)`), never a global.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Any

from sync.alerts import Alerts
from sync.config import Config, DaemonConfig
from sync.daemon import Daemon, EngineLike
from sync.engine_pipe import Launched
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
    app = App(daemon, filing, alerts, engine, list(stages), config)
    attach_watchers(app)
    return app


def attach_watchers(app: App) -> None:
    """Give the stages that look at the whole daemon the App they look at: the monitor first
    (health, metrics, alerts), then the panel, which serves the monitor's health and metrics."""
    from sync.monitor import MonitorStage
    from sync.web.stage import PanelStage

    monitor = next((s for s in app.stages if isinstance(s, MonitorStage)), None)
    if monitor is not None:
        monitor.attach(app)
    for stage in app.stages:
        if isinstance(stage, PanelStage):
            stage.attach(app, monitor)


def product_stages(config: Config, engine: Any) -> list[Stage]:
    """The stages a configuration asks for, in the order they see a signed document: printing
    first (the cashier's ticket), then the uplink, delivery to receptors, the cluster (folio
    leases and the shared record, only with [cluster]), then the scheduled reports."""
    from sync.delivery.stage import build_delivery
    from sync.engine_process import EngineProcess
    from sync.printing.service import build_printing
    from sync.reports import ReportsStage

    stages: list[Stage] = []
    printing = build_printing(config)
    if printing is not None:
        if isinstance(engine, EngineProcess):
            printing.pdf_offload = engine.render_pdf  # NAME.pdf in the engine process's spare time
        stages.append(printing)
    if config.uplink is not None and config.uplink.sends:
        # requests (with urllib3 and charset_normalizer, which loads every codec) is about
        # 7 MB of the daemon's memory: imported only when documents go out over HTTP.
        from sync.uplink.build import build_uplink

        uplink = build_uplink(config, engine.certificate)
        if uplink is not None:
            stages.append(uplink)
    delivery = build_delivery(config, engine.certificate)
    if delivery is not None:
        stages.append(delivery)  # after the uplink: it waits for the SII's acceptance
    if config.cluster is not None:  # psycopg is imported only in cluster mode
        from sync.cluster.stage import build_cluster

        cluster = build_cluster(config, engine)
        if cluster is not None:
            stages.append(cluster)
    stages.append(ReportsStage(config, engine.certificate))
    stages += operations_stages(config)
    return stages


def operations_stages(config: Config) -> list[Stage]:
    """Retention when [retention] asks for it, the monitor always, the panel when [web] listens.
    The monitor's notifiers are the alerts hub's (build_alerts): it closes them at stop."""
    from sync.monitor import MonitorStage
    from sync.retention import RetentionStage
    from sync.secrets import read_secret
    from sync.web.stage import PanelStage

    stages: list[Stage] = []
    if config.retention is not None and config.retention.enabled:
        stages.append(RetentionStage(config.retention))
    web = config.web
    stages.append(MonitorStage(config.alerts, lang=config.language, metrics_file=web.metrics_file if web else None,
                               metrics_every=web.metrics_every if web else 15.0))
    if web is not None and web.enabled:
        password = read_secret(web.password, name="web.password") if web.password is not None else None
        stages.append(PanelStage(web, lang=config.language, tz=timezone_of(config), password=password))
    return stages


def build_alerts(config: Config) -> Alerts:
    """The alerts hub with the notifiers [alerts] asks for (the log, e-mail, a webhook)."""
    from sync.notifiers import build_notifiers

    return Alerts(build_notifiers(config), lang=config.language)


def build_app(config: Config, *, engine: EngineLike | None = None, stages: Sequence[Stage] | None = None,
              stations: frozenset[str] | None = None, launched: Launched | None = None,
              **daemon_overrides: Any) -> App:
    """The product's daemon for a configuration: the real engine (certificate, CAF folder
    imported) unless one is given, the stages the configuration asks for unless given, and the
    [daemon] settings with `daemon_overrides` applied (tests and benchmarks). `launched`: an
    engine worker already started for this configuration (`dtesync run` starts it first)."""
    if engine is None:
        from sync.engine_process import EngineProcess
        from sync.runtime import open_engine

        if config.daemon.engine_processes:
            engine = EngineProcess.open(config, launched=launched)
        else:
            engine = open_engine(config)
    settings = replace(config.daemon, **daemon_overrides) if daemon_overrides else config.daemon
    chosen = list(stages) if stages is not None else product_stages(config, engine)
    stations = stations_of(config) if stations is None else frozenset(stations)
    alerts = build_alerts(config)
    from sync.monitor import MonitorStage

    for stage in chosen:
        if isinstance(stage, MonitorStage) and not stage.notifiers:
            stage.notifiers = alerts.notifiers
    return assemble(folders_of(config), engine, settings, stages=chosen, stations=stations,
                    lang=config.language, tz=timezone_of(config), alerts=alerts, config=config)
