"""Authentication with the certificate: seed -> seed signed (enveloped, Reference URI="") ->
token; cached for its lifetime and renewed when the SII says it expired.

The same signed `<getToken><item><Semilla>` document serves both the SOAP services
(CrSeed/GetTokenFromSeed, autenticación automática v1.9) and the boleta REST API
(boleta.electronica.semilla/token), whose tokens are separate (instructivo boleta 2021).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests
from lxml import etree

from sync.signing import Certificate, sign_enveloped
from sync.uplink import answers, soap
from sync.uplink.answers import Kind
from sync.uplink.endpoints import SiiEndpoints
from sync.uplink.transport import Timeouts, UplinkError, retry_after, send

CRSEED_NS = "https://palena.sii.cl/DTEWS/CrSeed.jws"
TOKEN_NS = "https://palena.sii.cl/DTEWS/GetTokenFromSeed.jws"
# Upper bound on a token's use: the manuals give no lifetime; TokenCache learns the real one.
DEFAULT_TOKEN_TTL = 1800.0


def signed_seed(seed: str, cert: Certificate) -> bytes:
    """The `getToken` document of the manual (§4.1.5), signed as a whole (URI="")."""
    root = etree.Element("getToken")
    item = etree.SubElement(root, "item")
    etree.SubElement(item, "Semilla").text = seed
    sign_enveloped(root, cert)
    return b'<?xml version="1.0"?>\n' + etree.tostring(root, encoding="UTF-8", xml_declaration=False)


def _checked(r: soap.Respuesta, service: str) -> soap.Respuesta:
    """Raise by the manual's class of a CrSeed / GetTokenFromSeed ESTADO (answers.SEED, TOKEN)."""
    answer = answers.seed_answer(r.estado) if service in ("CrSeed", "semilla") else answers.token_answer(r.estado)
    if answer.kind is Kind.OK:
        return r
    kind = Kind.TRANSIENT if answer.kind is Kind.SESSION else answer.kind
    raise UplinkError(kind, "SII_AUTH_FAILED", f"{service} ESTADO {r.estado}: {r.glosa or answer.meaning}",
                      answer=answer, service=service)


def _respuesta(data: bytes | str, service: str) -> soap.Respuesta:
    try:
        return soap.parse_respuesta(data)
    except (ValueError, etree.XMLSyntaxError) as exc:
        raise UplinkError(Kind.TRANSIENT, "SII_AUTH_FAILED", f"{service}: respuesta ilegible ({exc})",
                          service=service) from None


def _soap_call(session: requests.Session, url: str, body: bytes, timeouts: Timeouts, service: str) -> soap.Respuesta:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ""}
    resp = _token_http(send(session, "POST", url, timeouts, idempotent=True, raw_status=True, headers=headers,
                            data=body), service)
    try:
        inner = soap.return_value(resp.content)
    except (ValueError, etree.XMLSyntaxError) as exc:
        raise UplinkError(Kind.TRANSIENT, "SII_AUTH_FAILED", f"{service}: respuesta ilegible ({exc})",
                          service=service) from None
    return _checked(_respuesta(inner, service), service)


def _token_http(resp: requests.Response, service: str) -> requests.Response:
    """A seed or token request is repeatable: 429/5xx are transient; any other refusal at the
    HTTP level (401, 403, 404...) says nothing documented and is held as unknown."""
    code = resp.status_code
    if code < 400:
        return resp
    if code in (405, 408, 429) or code >= 500:
        raise UplinkError(Kind.TRANSIENT, "SII_AUTH_FAILED", f"{service}: HTTP {code}",
                          retry_after=retry_after(resp), service=service)
    raise UplinkError(Kind.UNKNOWN, "SII_AUTH_FAILED", f"{service}: HTTP {code} {resp.text[:200]}".strip(),
                      service=service, answer=answers.Answer(f"HTTP {code}", "respuesta no documentada", Kind.UNKNOWN))


def soap_token(session: requests.Session, ep: SiiEndpoints, cert: Certificate, timeouts: Timeouts) -> str:
    seed_r = _soap_call(session, ep.crseed, soap.request("getSeed", CRSEED_NS, []), timeouts, "CrSeed")
    seed = seed_r.body.get("SEMILLA") or seed_r.body.get("SEED") or ""
    if not seed:
        raise UplinkError(Kind.TRANSIENT, "SII_AUTH_FAILED", "CrSeed: respuesta sin SEMILLA", service="CrSeed")
    body = soap.request("getToken", TOKEN_NS, [("pszXml", signed_seed(seed, cert).decode("utf-8"))])
    tok = _soap_call(session, ep.get_token, body, timeouts, "GetTokenFromSeed")
    token = tok.body.get("TOKEN", "")
    if not token:
        raise UplinkError(Kind.TRANSIENT, "SII_AUTH_FAILED", "GetTokenFromSeed: respuesta sin TOKEN",
                          service="GetTokenFromSeed")
    return token


def rest_token(session: requests.Session, ep: SiiEndpoints, cert: Certificate, timeouts: Timeouts) -> str:
    """Boleta REST: GET semilla (XML), POST the signed seed (application/xml) -> TOKEN."""
    resp = _token_http(send(session, "GET", ep.boleta_semilla, timeouts, idempotent=True, raw_status=True,
                            headers={"Accept": "application/xml"}), "semilla")
    seed = _checked(_respuesta(resp.content, "semilla"), "semilla").body.get("SEMILLA", "")
    if not seed:
        raise UplinkError(Kind.TRANSIENT, "SII_AUTH_FAILED", "semilla: respuesta sin SEMILLA", service="semilla")
    resp = _token_http(send(session, "POST", ep.boleta_token, timeouts, idempotent=True, raw_status=True,
                            data=signed_seed(seed, cert),
                            headers={"Accept": "application/xml", "Content-Type": "application/xml"}), "token")
    token = _checked(_respuesta(resp.content, "token"), "token").body.get("TOKEN", "")
    if not token:
        raise UplinkError(Kind.TRANSIENT, "SII_AUTH_FAILED", "token: respuesta sin TOKEN", service="token")
    return token


class TokenCache:
    """One token at a time, fetched on demand and reused until it is due for renewal.

    The SII documents no token lifetime, so the renewal age is learnt from what the SII does:
    when it refuses a token (TOKEN 001-003, STATUS 5, the dead-session page, HTTP 401) the
    renewal age drops to a little under that token's age; every token renewed at the renewal
    age without being refused raises it again (x1.25), up to the configured `ttl`. A refusal
    right after a token was made (the SII lost its sessions) therefore costs a few early
    renewals, never a permanent one; `floor` bounds how early a token is ever renewed.
    """

    def __init__(self, fetch: Callable[[], str], ttl: float = DEFAULT_TOKEN_TTL,
                 clock: Callable[[], float] = time.monotonic, *, margin: float = 0.8, floor: float = 30.0) -> None:
        self._fetch, self._ttl, self._clock = fetch, ttl, clock
        self._margin, self._floor = margin, min(floor, ttl)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._born = 0.0
        self._renew_at = ttl
        self.fetched = 0
        self.refused = 0

    @property
    def ttl(self) -> float:
        """The renewal age in use."""
        return self._renew_at

    def get(self) -> str:
        with self._lock:
            if self._token is not None and self._clock() - self._born >= self._renew_at:
                self._renew_at = min(self._ttl, self._renew_at * 1.25)  # it lived that long: try longer
                self._token = None
            if self._token is None:
                token = self._fetch()
                self._token, self._born = token, self._clock()
                self.fetched += 1
            return self._token

    def renew(self) -> str:
        """A fresh token now (probing whether the SII accepts the installation again)."""
        with self._lock:
            self._token = None
        return self.get()

    def invalidate(self, token: str) -> None:
        """The SII refused `token`: forget it (unless another thread already renewed it) and
        renew the next ones before that age."""
        with self._lock:
            if self._token == token:
                age = self._clock() - self._born
                self._renew_at = max(self._floor, min(self._renew_at, self._margin * age))
                self._token = None
                self.refused += 1
