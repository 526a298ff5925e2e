"""Authentication with the certificate: seed -> seed signed (enveloped, Reference URI="") ->
token; cached for its lifetime and renewed when the SII says it expired.

The same signed `<getToken><item><Semilla>` document serves both the SOAP services
(CrSeed/GetTokenFromSeed, autenticación automática v1.9) and the boleta REST API
(boleta.electronica.semilla/token), whose tokens are separate (instructivo boleta 2021).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import requests
from lxml import etree

from sync.signing import Certificate, sign_enveloped
from sync.uplink import soap
from sync.uplink.endpoints import SiiEndpoints
from sync.uplink.transport import Timeouts, UplinkError, send

CRSEED_NS = "https://palena.sii.cl/DTEWS/CrSeed.jws"
TOKEN_NS = "https://palena.sii.cl/DTEWS/GetTokenFromSeed.jws"
# Assumed lifetime: the manuals give none; tokens are renewed earlier when the SII refuses one.
DEFAULT_TOKEN_TTL = 1800.0


def signed_seed(seed: str, cert: Certificate) -> bytes:
    """The `getToken` document of the manual (§4.1.5), signed as a whole (URI="")."""
    root = etree.Element("getToken")
    item = etree.SubElement(root, "item")
    etree.SubElement(item, "Semilla").text = seed
    sign_enveloped(root, cert)
    return b'<?xml version="1.0"?>\n' + etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def _checked(r: soap.Respuesta, what: str) -> soap.Respuesta:
    if r.estado not in ("00", "0"):
        # 08 TIME-OUT DEL SEED, -2/-1 errors on their side: a new seed fixes them; the rest
        # (bad signature, unknown certificate, -3/-07 not registered) are configuration errors.
        kind = "transient" if r.estado in ("08", "-1", "-2", "07", "09", "10", "12") else "permanent"
        raise UplinkError(kind, "SII_AUTH_FAILED", f"{what} ESTADO {r.estado}: {r.glosa}")
    return r


def soap_token(session: requests.Session, ep: SiiEndpoints, cert: Certificate, timeouts: Timeouts) -> str:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ""}
    resp = send(session, "POST", ep.crseed, timeouts, idempotent=True, headers=headers,
                data=soap.request("getSeed", CRSEED_NS, []))
    try:
        seed_r = _checked(soap.parse_respuesta(soap.return_value(resp.content)), "CrSeed")
        seed = seed_r.body.get("SEMILLA") or seed_r.body.get("SEED") or ""
        if not seed:
            raise UplinkError("transient", "SII_AUTH_FAILED", "CrSeed: respuesta sin SEMILLA")
        body = soap.request("getToken", TOKEN_NS, [("pszXml", signed_seed(seed, cert).decode("utf-8"))])
        resp = send(session, "POST", ep.get_token, timeouts, idempotent=True, headers=headers, data=body)
        tok = _checked(soap.parse_respuesta(soap.return_value(resp.content)), "GetTokenFromSeed")
    except (ValueError, etree.XMLSyntaxError) as exc:
        raise UplinkError("transient", "SII_AUTH_FAILED", f"respuesta ilegible: {exc}") from None
    token = tok.body.get("TOKEN", "")
    if not token:
        raise UplinkError("transient", "SII_AUTH_FAILED", "GetTokenFromSeed: respuesta sin TOKEN")
    return token


def rest_token(session: requests.Session, ep: SiiEndpoints, cert: Certificate, timeouts: Timeouts) -> str:
    """Boleta REST: GET semilla (XML), POST the signed seed (application/xml) -> TOKEN."""
    resp = send(session, "GET", ep.boleta_semilla, timeouts, idempotent=True, headers={"Accept": "application/xml"})
    try:
        seed_r = _checked(soap.parse_respuesta(resp.content), "semilla")
        seed = seed_r.body.get("SEMILLA", "")
        resp = send(session, "POST", ep.boleta_token, timeouts, idempotent=True, data=signed_seed(seed, cert),
                    headers={"Accept": "application/xml", "Content-Type": "application/xml"})
        tok = _checked(soap.parse_respuesta(resp.content), "token")
    except (ValueError, etree.XMLSyntaxError) as exc:
        raise UplinkError("transient", "SII_AUTH_FAILED", f"respuesta ilegible: {exc}") from None
    token = tok.body.get("TOKEN", "")
    if not token:
        raise UplinkError("transient", "SII_AUTH_FAILED", "token: respuesta sin TOKEN")
    return token


class TokenCache:
    """One token at a time, fetched on demand, reused until `ttl` or until invalidated."""

    def __init__(self, fetch: Callable[[], str], ttl: float = DEFAULT_TOKEN_TTL, clock: Callable[[], float] = time.monotonic):
        self._fetch, self._ttl, self._clock = fetch, ttl, clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self.fetched = 0

    def get(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires:
                self._token = self._fetch()
                self._expires = self._clock() + self._ttl
                self.fetched += 1
            return self._token

    def invalidate(self, token: str) -> None:
        """The SII refused `token`: forget it (unless another thread already renewed it)."""
        with self._lock:
            if self._token == token:
                self._token = None
