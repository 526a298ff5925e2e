"""One channel per destination, all with the same three verbs the service drives:
`send` (one envelope -> track id), `poll` (track id -> EnvioState) and `received` (is this
document already at the destination? used to resolve an ambiguous upload; None = resending
is harmless)."""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Protocol, TypeVar

from sync.envio import MAX_BOLETA, MAX_DTE, Caratula, build_envio
from sync.rut import Rut
from sync.signing import Certificate
from sync.uplink import auth, boleta, status, upload
from sync.uplink.docref import DocRef
from sync.uplink.endpoints import SiiEndpoints
from sync.uplink.http_provider import HttpProvider
from sync.uplink.status import EnvioState
from sync.uplink.transport import Timeouts, UplinkError

T = TypeVar("T")


class Channel(Protocol):
    name: str
    max_batch: int

    def send(self, keys: list[str], refs: list[DocRef], dtes: list[bytes], stamp: datetime) -> str: ...
    def poll(self, track_id: str, refs: list[DocRef]) -> EnvioState: ...
    def received(self, ref: DocRef) -> bool | None: ...


class _SiiBase:
    """Certificate, company and token shared by the factura and boleta channels."""

    def __init__(self, session, endpoints: SiiEndpoints, cert: Certificate, company: Rut, fch_resol, nro_resol: int,
                 timeouts: Timeouts, tokens: auth.TokenCache) -> None:
        if cert.rut is None:
            raise UplinkError("permanent", "SII_AUTH_FAILED", "el certificado no trae el RUT del firmante")
        self.session, self.ep, self.cert, self.company = session, endpoints, cert, company
        self.fch_resol, self.nro_resol, self.timeouts, self.tokens = fch_resol, nro_resol, timeouts, tokens

    def _authed(self, call: Callable[[str], T]) -> T:
        """Run with the cached token; once more with a fresh one if the SII says it expired."""
        token = self.tokens.get()
        try:
            return call(token)
        except UplinkError as exc:
            if exc.kind != "auth":
                raise
            self.tokens.invalidate(token)
        try:
            return call(self.tokens.get())
        except UplinkError as exc:
            if exc.kind == "auth":
                raise UplinkError("transient", exc.code, exc.detail) from None
            raise

    def envelope(self, dtes: list[bytes], stamp: datetime, boleta_: bool) -> bytes:
        car = Caratula(rut_emisor=self.company, fch_resol=self.fch_resol, nro_resol=self.nro_resol, tmst_firma_env=stamp)
        return build_envio(dtes, car, self.cert, boleta=boleta_)


class SiiDteChannel(_SiiBase):
    name = "dte"
    max_batch = MAX_DTE

    def send(self, keys, refs, dtes, stamp) -> str:
        env = self.envelope(dtes, stamp, False)
        name = f"EnvioDTE_{self.company.number}_{keys[0]}.xml"
        return self._authed(lambda t: upload.upload(self.session, self.ep.upload, t, self.cert.rut, self.company, env,
                                                    name, self.timeouts))

    def poll(self, track_id, refs) -> EnvioState:
        r = self._authed(lambda t: status.query_est_up(self.session, self.ep.query_est_up, t, self.company, track_id,
                                                       self.timeouts))
        state, mixed = status.classify_envio(r, refs)
        for ref in mixed:
            d = self._authed(lambda t: status.query_est_dte(self.session, self.ep.query_est_dte, t, self.cert.rut, ref,
                                                            self.timeouts))
            state.results[ref.key] = status.resolve_mixed(state, ref, d)
        return state

    def received(self, ref) -> bool | None:
        r = self._authed(lambda t: status.query_est_dte(self.session, self.ep.query_est_dte, t, self.cert.rut, ref,
                                                        self.timeouts))
        return status.dte_received(r)


class SiiBoletaChannel(_SiiBase):
    name = "boleta"
    max_batch = MAX_BOLETA

    def send(self, keys, refs, dtes, stamp) -> str:
        env = self.envelope(dtes, stamp, True)
        name = f"EnvioBOLETA_{self.company.number}_{keys[0]}.xml"
        return self._authed(lambda t: boleta.upload(self.session, self.ep, t, self.cert.rut, self.company, env, name,
                                                    self.timeouts))

    def poll(self, track_id, refs) -> EnvioState:
        return self._authed(lambda t: boleta.estado_envio(self.session, self.ep, t, self.company, track_id, refs,
                                                          self.timeouts))

    def received(self, ref) -> bool | None:
        return self._authed(lambda t: boleta.documento_recibido(self.session, self.ep, t, ref, self.timeouts))


class HttpChannel:
    """The provider cloud: one document per request, made idempotent by its key."""

    name = "http"
    max_batch = 1

    def __init__(self, provider: HttpProvider, envelope: Callable[[list[bytes], datetime, bool], bytes]) -> None:
        self.provider, self._envelope = provider, envelope

    def send(self, keys, refs, dtes, stamp) -> str:
        env = self._envelope(dtes, stamp, refs[0].boleta)
        return self.provider.submit(keys[0], env)

    def poll(self, track_id, refs) -> EnvioState:
        result, sii_track = self.provider.status(track_id)
        state = EnvioState("final" if result else "processing", "", final=result is not None, track_id=sii_track)
        if result is not None:
            state.results = {r.key: result for r in refs}
        return state

    def received(self, ref) -> bool | None:
        return None  # resending with the same Idempotency-Key never creates a second document
