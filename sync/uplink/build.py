"""Config -> the uplink stage (sync.app binds and starts it)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sync.exposure import require_tls, token_urls
from sync.secrets import read_secret
from sync.signing import Certificate
from sync.sii import is_boleta
from sync.uplink import auth
from sync.uplink.channels import HttpChannel, SiiBoletaChannel, SiiDteChannel
from sync.uplink.endpoints import SiiEndpoints
from sync.uplink.http_provider import HttpProvider
from sync.uplink.queue import FILE_NAME, UplinkQueue
from sync.uplink.service import StateSink, Uplink, UplinkSettings
from sync.uplink.settings import UplinkConfig
from sync.uplink.transport import Timeouts, new_session

log = logging.getLogger("dtesync.uplink")
OLD_QUEUE_FILE = "journal.sqlite3"  # where dtesync 0.1 kept the queue: moved to FILE_NAME once


def endpoints(uc: UplinkConfig, environment: str) -> SiiEndpoints:
    if uc.url:
        return SiiEndpoints.single(uc.url)
    ep = SiiEndpoints.for_environment(environment)
    return SiiEndpoints(uc.sii_url or ep.soap, uc.api_url or ep.api, uc.api_envio_url or ep.api_envio)


def settings_of(uc: UplinkConfig) -> UplinkSettings:
    names = UplinkSettings.__dataclass_fields__
    return UplinkSettings(**{k: getattr(uc, k) for k in names})


def build_uplink(config: Any, certificate: Certificate, *, sink: StateSink | None = None) -> Uplink | None:
    """None when `[uplink] kind = "none"` (documents stay `signed`). Refuses (URL_INSECURE) a
    URL the token would reach over plain http:// (except on this machine: fake-sii)."""
    uc: UplinkConfig = config.uplink or UplinkConfig()
    if not uc.sends:
        return None
    for key, url in token_urls(uc):  # a token never travels in clear (`dtesync check` says the same)
        require_tls(key, url)
    session = new_session(str(uc.ca_bundle) if uc.ca_bundle else True)
    timeouts = Timeouts(uc.connect_timeout, uc.read_timeout)
    c = config.company
    ep = endpoints(uc, config.environment)
    queue = open_queue(Path(config.folders.state))
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
    """Boletas go through the boleta REST API, everything else through DTEUpload."""
    return "boleta" if is_boleta(tipo_dte) else "dte"


def open_queue(state_dir: Path) -> UplinkQueue:
    """The uplink's own store, with the queue of an older version moved in from the journal."""
    queue = UplinkQueue(state_dir / FILE_NAME)
    moved = queue.migrate_from_journal(state_dir / OLD_QUEUE_FILE)
    if moved:
        log.info("uplink: queue moved out of the journal database", extra={"rows": moved})
    return queue
