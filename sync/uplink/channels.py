"""One channel per destination, all with the verbs the service drives:
`send` (one envelope -> track id), `poll` (track id -> EnvioState), `lookup` (what does the
destination hold under this document's folio? used to resolve a lost answer and mixed
envíos; None = resending is harmless), `probe` (does the installation work again? raises if
not) and `context` (the values an alert's "what to fix" text names)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Protocol, TypeVar

import requests

from sync.envio import MAX_BOLETA, MAX_DTE, Caratula, build_envio
from sync.rut import Rut
from sync.signing import Certificate
from sync.uplink import auth, boleta, status, upload
from sync.uplink.answers import Kind
from sync.uplink.docref import DocRef
from sync.uplink.endpoints import ENVIRONMENTS, SiiEndpoints
from sync.uplink.http_provider import HttpProvider
from sync.uplink.status import EnvioState, Lookup
from sync.uplink.transport import Timeouts, UplinkError

T = TypeVar("T")


class Channel(Protocol):
    name: str
    max_batch: int

    def send(self, keys: list[str], refs: list[DocRef], dtes: list[bytes], stamp: datetime) -> str: ...
    def poll(self, track_id: str, refs: list[DocRef]) -> EnvioState: ...
    def lookup(self, ref: DocRef) -> Lookup | None: ...
    def probe(self) -> None: ...
    def context(self) -> dict[str, str]: ...


class _SiiBase:
    """Certificate, company and token shared by the factura and boleta channels."""

    name = "sii"

    def __init__(self, session: requests.Session, endpoints: SiiEndpoints, cert: Certificate, company: Rut,
                 fch_resol: date, nro_resol: int, timeouts: Timeouts, tokens: auth.TokenCache, *,
                 environment: str = "certificacion") -> None:
        if cert.rut is None:
            raise UplinkError(Kind.INSTALLATION, "SII_AUTH_FAILED", "el certificado no trae el RUT del firmante")
        self.session, self.ep, self.cert, self.company = session, endpoints, cert, company
        self.fch_resol, self.nro_resol, self.timeouts, self.tokens = fch_resol, nro_resol, timeouts, tokens
        self.environment = environment
        self.sender: Rut = cert.rut

    def _authed(self, call: Callable[[str], T]) -> T:
        """Run with the cached token; once more with a fresh one if the SII says the session is
        dead (TOKEN 001-003, STATUS 5, the dead-session HTML page, HTTP 401)."""
        token = self.tokens.get()
        try:
            return call(token)
        except UplinkError as exc:
            if exc.kind is not Kind.SESSION:
                raise
            self.tokens.invalidate(token)
        try:
            return call(self.tokens.get())
        except UplinkError as exc:
            if exc.kind is Kind.SESSION:  # a brand-new token refused too: try again later
                raise UplinkError(Kind.TRANSIENT, exc.code, f"{exc.detail} (también con un token nuevo)",
                                  service=exc.service) from None
            raise

    def probe(self) -> None:
        """A token from the SII right now (raises with the SII's answer if it refuses)."""
        self.tokens.renew()

    def context(self) -> dict[str, str]:
        host = ENVIRONMENTS.get(self.environment, ENVIRONMENTS["certificacion"])[0].removeprefix("https://")
        return {"signer": str(self.sender), "company": str(self.company), "host": host,
                "environment": self.environment}

    def envelope(self, dtes: list[bytes], stamp: datetime, boleta_: bool) -> bytes:
        car = Caratula(rut_emisor=self.company, fch_resol=self.fch_resol, nro_resol=self.nro_resol,
                       tmst_firma_env=stamp)
        return build_envio(dtes, car, self.cert, boleta=boleta_)


class SiiDteChannel(_SiiBase):
    name = "dte"
    max_batch = MAX_DTE

    def send(self, keys: list[str], refs: list[DocRef], dtes: list[bytes], stamp: datetime) -> str:
        env = self.envelope(dtes, stamp, False)
        name = f"EnvioDTE_{self.company.number}_{keys[0]}.xml"
        return self._authed(lambda t: upload.upload(self.session, self.ep.upload, t, self.sender, self.company, env,
                                                    name, self.timeouts))

    def poll(self, track_id: str, refs: list[DocRef]) -> EnvioState:
        return self._authed(lambda t: status.classify_envio(
            status.query_est_up(self.session, self.ep.query_est_up, t, self.company, track_id, self.timeouts), refs))

    def lookup(self, ref: DocRef) -> Lookup:
        return self._authed(lambda t: status.lookup_of(
            status.query_est_dte(self.session, self.ep.query_est_dte, t, self.sender, ref, self.timeouts)))


class SiiBoletaChannel(_SiiBase):
    name = "boleta"
    max_batch = MAX_BOLETA

    def send(self, keys: list[str], refs: list[DocRef], dtes: list[bytes], stamp: datetime) -> str:
        env = self.envelope(dtes, stamp, True)
        name = f"EnvioBOLETA_{self.company.number}_{keys[0]}.xml"
        return self._authed(lambda t: boleta.upload(self.session, self.ep, t, self.sender, self.company, env, name,
                                                    self.timeouts))

    def poll(self, track_id: str, refs: list[DocRef]) -> EnvioState:
        return self._authed(lambda t: boleta.estado_envio(self.session, self.ep, t, self.company, track_id, refs,
                                                          self.timeouts))

    def lookup(self, ref: DocRef) -> Lookup:
        return self._authed(lambda t: boleta.documento(self.session, self.ep, t, ref, self.timeouts))


class HttpChannel:
    """The provider cloud: one document per request, made idempotent by its key."""

    name = "http"
    max_batch = 1

    def __init__(self, provider: HttpProvider, envelope: Callable[[list[bytes], datetime, bool], bytes]) -> None:
        self.provider, self._envelope = provider, envelope

    def send(self, keys: list[str], refs: list[DocRef], dtes: list[bytes], stamp: datetime) -> str:
        env = self._envelope(dtes, stamp, refs[0].boleta)
        return self.provider.submit(keys[0], env)

    def poll(self, track_id: str, refs: list[DocRef]) -> EnvioState:
        return self.provider.status(track_id, refs)

    def lookup(self, ref: DocRef) -> Lookup | None:
        return None  # resending with the same Idempotency-Key never creates a second document

    def probe(self) -> None:
        self.provider.probe()

    def context(self) -> dict[str, Any]:
        return {"url": self.provider.url}
