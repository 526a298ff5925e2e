"""Config -> a running uplink, and the daemon wiring (after_signed, on_start, on_stop)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sync.secrets import read_secret
from sync.signing import Certificate
from sync.uplink import auth
from sync.uplink.channels import HttpChannel, SiiBoletaChannel, SiiDteChannel
from sync.uplink.endpoints import SiiEndpoints
from sync.uplink.http_provider import HttpProvider
from sync.uplink.queue import UplinkQueue
from sync.uplink.service import Uplink, UplinkSettings
from sync.uplink.settings import UplinkConfig
from sync.uplink.transport import Timeouts, new_session

log = logging.getLogger("dtesync.uplink")
JOURNAL_FILE = "journal.sqlite3"  # the queue lives in the daemon's journal database


def endpoints(uc: UplinkConfig, environment: str) -> SiiEndpoints:
    if uc.url:
        return SiiEndpoints.single(uc.url)
    ep = SiiEndpoints.for_environment(environment)
    return SiiEndpoints(uc.sii_url or ep.soap, uc.api_url or ep.api, uc.api_envio_url or ep.api_envio)


def settings_of(uc: UplinkConfig) -> UplinkSettings:
    names = UplinkSettings.__dataclass_fields__
    return UplinkSettings(**{k: getattr(uc, k) for k in names})


def build_uplink(config: Any, certificate: Certificate, *, sink=None) -> Uplink | None:
    """None when `[uplink] kind = "none"` (documents stay `signed`)."""
    uc: UplinkConfig = config.uplink or UplinkConfig()
    if uc.kind == "none":
        return None
    session = new_session(str(uc.ca_bundle) if uc.ca_bundle else True)
    timeouts = Timeouts(uc.connect_timeout, uc.read_timeout)
    c = config.company
    ep = endpoints(uc, config.environment)
    queue = UplinkQueue(Path(config.folders.state) / JOURNAL_FILE)
    if uc.kind == "http":
        assert uc.http_url is not None  # parse_uplink requires it for kind = "http"
        provider = HttpProvider(session, uc.http_url, read_secret(uc.http_token, name="uplink.http.token"), timeouts)
        helper = SiiDteChannel(session, ep, certificate, c.rut, c.fch_resol, c.nro_resol, timeouts,
                               auth.TokenCache(lambda: "", 0))
        channels: dict[str, Any] = {"http": HttpChannel(provider, helper.envelope)}
    else:
        channels = sii_channels(session, ep, certificate, c, timeouts, uc.token_ttl, environment=config.environment)
    route = (lambda tipo: "http") if uc.kind == "http" else sii_route
    return Uplink(queue, channels, sink=sink, settings=settings_of(uc), route=route)


def sii_channels(session: Any, ep: SiiEndpoints, certificate: Certificate, company: Any, timeouts: Timeouts,
                 token_ttl: float = auth.DEFAULT_TOKEN_TTL, *, environment: str = "certificacion") -> dict[str, Any]:
    """The SII's two channels: DTEUpload + QueryEstUp (SOAP token) and the boleta REST API (its own token).
    `environment` only names the SII's pages in alerts (enrolment, company data)."""
    c = company
    soap_tokens = auth.TokenCache(lambda: auth.soap_token(session, ep, certificate, timeouts), token_ttl)
    rest_tokens = auth.TokenCache(lambda: auth.rest_token(session, ep, certificate, timeouts), token_ttl)
    return {
        "dte": SiiDteChannel(session, ep, certificate, c.rut, c.fch_resol, c.nro_resol, timeouts, soap_tokens,
                             environment=environment),
        "boleta": SiiBoletaChannel(session, ep, certificate, c.rut, c.fch_resol, c.nro_resol, timeouts, rest_tokens,
                                   environment=environment),
    }


def sii_route(tipo_dte: int) -> str:
    """Boletas (39, 41) go through the boleta REST API, everything else through DTEUpload."""
    return "boleta" if tipo_dte in (39, 41) else "dte"


def attach(daemon: Any, config: Any, engine: Any) -> Uplink | None:
    """Queue every signed document for upload and report its progress in its status file."""
    uplink = build_uplink(config, engine.certificate, sink=daemon.update_state)
    if uplink is None:
        return None

    def read_xml(doc: Any) -> bytes:
        base = daemon.out.results_base(doc)
        return base.with_name(base.name + ".xml").read_bytes()

    uplink.xml_reader = read_xml
    daemon.after_signed.append(uplink.after_signed)
    daemon.on_start.append(uplink.start)
    daemon.on_stop.append(uplink.stop)
    daemon.uplink = uplink
    return uplink
