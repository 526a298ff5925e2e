"""Shared by the uplink tests: a sandbox with a few signed documents, and an uplink built the
way the product builds it (sii_channels, sii_route) pointed at a fake-sii, with every state
change and alert recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync.config import load_config
from sync.fakesii import FakeSii
from sync.runtime import open_engine
from sync.sandbox.build import create_sandbox, examples_dir
from sync.uplink.build import sii_channels, sii_route
from sync.uplink.docref import doc_ref
from sync.uplink.endpoints import SiiEndpoints
from sync.uplink.queue import UplinkQueue
from sync.uplink.service import Uplink, UplinkSettings
from sync.uplink.transport import Timeouts, new_session

# Timers shortened through the settings (never by patching code): tenths of a second.
FAST: dict[str, float] = {"batch_max": 25, "batch_wait": 0.0, "backoff_base": 0.02, "backoff_cap": 0.1,
                          "poll_first": 0.0, "poll_base": 0.01, "poll_cap": 0.05, "uncertain_wait": 0.0,
                          "processing_window_minutes": 0.0, "installation_retry": 0.2}


def signed_documents(root: Path, n_facturas: int, n_boletas: int, *, folios: int = 60) -> tuple[Any, Any, list[bytes],
                                                                                                   list[bytes]]:
    """(config, engine, facturas, boletas): documents signed once by the sandbox's real engine."""
    sb = create_sandbox(root, folios_per_type=folios)
    config = load_config(sb.config_path)
    engine = open_engine(config)
    factura = (examples_dir() / "33_factura.txt").read_bytes()
    boleta = (examples_dir() / "39_boleta.txt").read_bytes()
    facturas = [engine.issue(factura, f"f{i}", doc_key=f"helpers-f{i}").dte_xml for i in range(n_facturas)]
    boletas = [engine.issue(boleta, f"b{i}", doc_key=f"helpers-b{i}").dte_xml for i in range(n_boletas)]
    return config, engine, facturas, boletas


@dataclass
class Run:
    """One uplink against one fake-sii, recording what it reports."""

    up: Uplink
    fake: FakeSii
    states: dict[int, list[tuple[str, str | None]]] = field(default_factory=dict)
    alerts: list[tuple[str, dict]] = field(default_factory=list)

    def enqueue(self, docs: list[bytes], first_id: int = 1) -> list[int]:
        ids = []
        for i, xml in enumerate(docs, first_id):
            ref = doc_ref(xml)
            self.up.queue.enqueue(i, sii_route(ref.tipo_dte), ref, xml)
            ids.append(i)
        return ids

    def tick(self) -> None:
        self.up.drain_once()
        self.up.poll_once()

    def run(self, until: Callable[[], bool] | None = None, limit_s: float = 15.0) -> None:
        done = until or (lambda: self.up.queue.pending_count() == 0)
        deadline = time.monotonic() + limit_s
        while not done():
            assert time.monotonic() < deadline, f"not done after {limit_s} s: {self.up.queue.counts()}"
            self.tick()
            time.sleep(0.005)

    def last(self, doc_id: int) -> str | None:
        return self.states[doc_id][-1][0] if self.states.get(doc_id) else None

    def note(self, doc_id: int) -> str:
        return self.states[doc_id][-1][1] or ""

    def finals(self) -> dict[int, str]:
        return {i: s[-1][0] for i, s in self.states.items()}

    def codes(self) -> list[str]:
        return [k for k, _ in self.alerts]


def make_run(config: Any, engine: Any, fake: FakeSii, qpath: Path, *, read_timeout: float = 1.0,
             environment: str = "certificacion", token_ttl: float = 1800.0, **settings: Any) -> Run:
    session = new_session()
    channels = sii_channels(session, SiiEndpoints.single(fake.url), engine.certificate, config.company,
                            Timeouts(1.0, read_timeout), token_ttl, environment=environment)
    run = Run(up=None, fake=fake)  # type: ignore[arg-type]

    def sink(doc_id: int, state: str, note: str | None = None, **kw: Any) -> None:
        run.states.setdefault(doc_id, []).append((state, note))

    run.up = Uplink(UplinkQueue(qpath), channels, sink=sink, settings=UplinkSettings(**{**FAST, **settings}),
                    route=sii_route, on_alert=lambda kind, info: run.alerts.append((kind, info)))
    return run
