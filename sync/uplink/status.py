"""Where an envío stands: QueryEstUp per track id, QueryEstDte per document, and the mapping
to the ERP's states (accepted / accepted_with_objections / rejected_sii).

Envío states (QueryEstUp v1.10 §3.3 plus the newer summary codes seen in SII answers):
in process REC SOK CRT FOK PDR PRD; rejected as a whole RSC RFR RCT RCH RPT RCO VOF;
processed EPR (counts per type: INFORMADOS ACEPTADOS RECHAZADOS REPAROS), RPR/RLV (processed
with objections). When a processed envío mixes outcomes, each document is resolved with
QueryEstDte (DOK/DNK = received; FAU/FNA/... = not received, i.e. rejected).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from sync.rut import Rut
from sync.uplink import soap
from sync.uplink.docref import DocRef
from sync.uplink.transport import Timeouts, UplinkError, send

QUERY_EST_UP_NS = "https://maullin.sii.cl/DTEWS/QueryEstUp.jws"
QUERY_EST_DTE_NS = "https://maullin.sii.cl/DTEWS/QueryEstDte.jws"
IN_PROCESS = frozenset({"REC", "SOK", "CRT", "FOK", "PDR", "PRD"})
REJECTED_WHOLE = {
    "RSC": "Rechazado por Error en Schema",
    "RFR": "Rechazado por Error en Firma",
    "RCT": "Rechazado por Error en Carátula",
    "RCH": "Rechazado",
    "RPT": "Rechazado por envío repetido",
    "RCO": "Rechazado por consistencia",
    "VOF": "No se encontró el archivo",
}
PROCESSED = frozenset({"EPR", "RPR", "RLV"})
TOKEN_ERRORS = frozenset({"001", "002", "003"})
DTE_RECEIVED = frozenset({"DOK", "DNK", "TMD", "TMC", "MMD", "MMC", "AND", "ANC"})


@dataclass
class DocResult:
    state: str  # accepted | accepted_with_objections | rejected_sii
    reason: str = ""
    errors: list[str] = field(default_factory=list)


@dataclass
class EnvioState:
    estado: str
    glosa: str
    final: bool
    results: dict[tuple[int, int], DocResult] = field(default_factory=dict)
    track_id: str | None = None  # the SII's, when a provider reports it


def _soap(session: requests.Session, url: str, op: str, ns: str, params: list[tuple[str, str]], timeouts: Timeouts,
          token: str) -> soap.Respuesta:
    resp = send(session, "POST", url, timeouts, idempotent=True,
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "", "Cookie": f"TOKEN={token}"},
                data=soap.request(op, ns, params))
    try:
        r = soap.parse_respuesta(soap.return_value(resp.content))
    except ValueError as exc:
        raise UplinkError("transient", "SII_STATUS_FAILED", f"{op}: {exc}") from None
    if r.estado in TOKEN_ERRORS:
        raise UplinkError("auth", "UPLINK_AUTH", f"{op}: TOKEN {r.estado} {r.glosa}")
    if r.estado.startswith("-") or not r.estado:
        raise UplinkError("transient", "SII_STATUS_FAILED",
                          f"{op}: ESTADO {r.estado or '?'} ERR_CODE {r.hdr.get('ERR_CODE', '')} {r.glosa}".strip())
    return r


def query_est_up(session, url: str, token: str, company: Rut, track_id: str, timeouts: Timeouts) -> soap.Respuesta:
    return _soap(session, url, "getEstUp", QUERY_EST_UP_NS,
                 [("RutCompania", str(company.number)), ("DvCompania", company.dv), ("TrackId", track_id), ("Token", token)],
                 timeouts, token)


def query_est_dte(session, url: str, token: str, consultante: Rut, doc: DocRef, timeouts: Timeouts) -> soap.Respuesta:
    emisor, receptor = Rut.parse(doc.rut_emisor), Rut.parse(doc.rut_receptor)
    y, m, d = doc.fch_emis.split("-")
    return _soap(session, url, "getEstDte", QUERY_EST_DTE_NS, [
        ("RutConsultante", str(consultante.number)), ("DvConsultante", consultante.dv),
        ("RutCompania", str(emisor.number)), ("DvCompania", emisor.dv),
        ("RutReceptor", str(receptor.number)), ("DvReceptor", receptor.dv),
        ("TipoDte", str(doc.tipo_dte)), ("FolioDte", str(doc.folio)),
        ("FechaEmisionDte", f"{d}{m}{y}"), ("MontoDte", str(doc.monto_total)), ("Token", token),
    ], timeouts, token)


def dte_received(r: soap.Respuesta) -> bool:
    """QueryEstDte: did the SII receive (and keep) this document?"""
    return r.estado in DTE_RECEIVED


def classify_envio(r: soap.Respuesta, docs: list[DocRef]) -> tuple[EnvioState, list[DocRef]]:
    """The envío's state, with every document it decides; returns the documents that need a
    per-document query (a processed envío with mixed outcomes)."""
    estado, glosa = r.estado, r.glosa
    state = EnvioState(estado, glosa, final=estado not in IN_PROCESS)
    if estado in IN_PROCESS:
        return state, []
    if estado in REJECTED_WHOLE or estado not in PROCESSED:
        reason = f"{estado}: {glosa or REJECTED_WHOLE.get(estado, 'estado desconocido')}"
        state.results = {d.key: DocResult("rejected_sii", reason) for d in docs}
        return state, []
    groups = r.groups or [r.body]
    total = lambda k: sum(int(g.get(k) or 0) for g in groups)  # noqa: E731
    informados, rechazados, reparos = total("INFORMADOS"), total("RECHAZADOS"), total("REPAROS")
    summary = f"{estado}: {glosa}".strip(": ") + f" (informados {informados}, rechazados {rechazados}, reparos {reparos})"
    if rechazados == 0 and (reparos == 0 and estado == "EPR"):
        state.results = {d.key: DocResult("accepted", summary) for d in docs}
        return state, []
    if rechazados == 0 and (reparos >= len(docs) or estado in ("RPR", "RLV") and reparos in (0, len(docs))):
        state.results = {d.key: DocResult("accepted_with_objections", summary) for d in docs}
        return state, []
    if rechazados >= len(docs):
        state.results = {d.key: DocResult("rejected_sii", summary) for d in docs}
        return state, []
    return state, list(docs)


def resolve_mixed(state: EnvioState, doc: DocRef, r: soap.Respuesta) -> DocResult:
    """One document of a mixed envío, from its QueryEstDte answer."""
    glosa = " ".join((r.hdr.get("GLOSA_ERR") or r.glosa or "").split())
    if dte_received(r):
        objections = state.estado in ("RPR", "RLV")
        return DocResult("accepted_with_objections" if objections else "accepted", f"{r.estado}: {glosa}".strip(": "))
    return DocResult("rejected_sii", f"{r.estado}: {glosa} (envío {state.estado} {state.glosa})".strip())
