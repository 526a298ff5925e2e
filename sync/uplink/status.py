"""Where an envío stands (QueryEstUp per track id), what the SII holds under one folio
(QueryEstDte), and how both become the ERP's states (accepted / accepted_with_objections /
rejected_sii) — or no state at all while the SII has not decided.

A processed EnvioDTE (EPR) only gives counts per type: when they say some documents were
rejected, each document is looked up (QueryEstDte, with its real date, receptor and amount)
and `decide_by_counts` matches the lookups against the counts. A document the SII holds is
accepted even when the envío counted it as rejected: that is the "DTE Repetido" of a copy we
sent again, and the SII's earlier copy is the one that counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from sync.rut import Rut
from sync.uplink import soap
from sync.uplink.answers import (
    REPEATED,
    Answer,
    DteKind,
    EnvioKind,
    Kind,
    est_dte_answer,
    est_up_answer,
)
from sync.uplink.docref import DocRef
from sync.uplink.transport import Timeouts, UplinkError, send

QUERY_EST_UP_NS = "https://maullin.sii.cl/DTEWS/QueryEstUp.jws"
QUERY_EST_DTE_NS = "https://maullin.sii.cl/DTEWS/QueryEstDte.jws"


@dataclass
class DocResult:
    state: str  # accepted | accepted_with_objections | rejected_sii
    reason: str = ""
    errors: list[str] = field(default_factory=list)


@dataclass
class TypeCounts:
    informados: int = 0
    aceptados: int = 0
    rechazados: int = 0
    reparos: int = 0


@dataclass
class EnvioState:
    """One answer about an envío. `results` holds the documents it decides; `lookup` the
    documents whose fate needs a per-document query; `counts` the per-type summary (EPR)."""

    kind: EnvioKind
    estado: str
    glosa: str
    results: dict[tuple[int, int], DocResult] = field(default_factory=dict)
    lookup: list[DocRef] = field(default_factory=list)
    counts: dict[int, TypeCounts] = field(default_factory=dict)
    rejected_reasons: dict[tuple[int, int], DocResult] = field(default_factory=dict)  # boleta detail
    track_id: str | None = None  # the SII's, when a provider reports it
    fix: str = ""  # what to fix, for an installation problem
    retry_after: float | None = None

    @property
    def final(self) -> bool:
        return self.kind in (EnvioKind.PROCESSED, EnvioKind.REJECTED, EnvioKind.INSTALLATION)

    @property
    def summary(self) -> str:
        if not self.counts:
            return f"{self.estado}: {self.glosa}".strip(": ")
        c = TypeCounts(*(sum(getattr(t, f) for t in self.counts.values())
                         for f in ("informados", "aceptados", "rechazados", "reparos")))
        return (f"{self.estado}: {self.glosa}".strip(": ")
                + f" (informados {c.informados}, rechazados {c.rechazados}, reparos {c.reparos})")


@dataclass(frozen=True)
class Lookup:
    """QueryEstDte (or the boleta documento query) for one document."""

    kind: DteKind
    estado: str
    glosa: str
    fix: str = ""  # what to fix, for an installation problem (EMP)

    @property
    def text(self) -> str:
        return f"{self.estado}: {self.glosa}".strip(": ")


def _soap(session: requests.Session, url: str, op: str, ns: str, params: list[tuple[str, str]], timeouts: Timeouts,
          token: str) -> soap.Respuesta:
    resp = send(session, "POST", url, timeouts, idempotent=True,
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "", "Cookie": f"TOKEN={token}"},
                data=soap.request(op, ns, params))
    try:
        return soap.parse_respuesta(soap.return_value(resp.content))
    except ValueError as exc:
        raise UplinkError(Kind.TRANSIENT, "SII_STATUS_FAILED", f"{op}: {exc}", service=op) from None


def query_est_up(session: requests.Session, url: str, token: str, company: Rut, track_id: str,
                 timeouts: Timeouts) -> soap.Respuesta:
    return _soap(session, url, "getEstUp", QUERY_EST_UP_NS,
                 [("RutCompania", str(company.number)), ("DvCompania", company.dv), ("TrackId", track_id),
                  ("Token", token)], timeouts, token)


def query_est_dte(session: requests.Session, url: str, token: str, consultante: Rut, doc: DocRef,
                  timeouts: Timeouts) -> soap.Respuesta:
    emisor, receptor = Rut.parse(doc.rut_emisor), Rut.parse(doc.rut_receptor)
    y, m, d = doc.fch_emis.split("-")
    return _soap(session, url, "getEstDte", QUERY_EST_DTE_NS, [
        ("RutConsultante", str(consultante.number)), ("DvConsultante", consultante.dv),
        ("RutCompania", str(emisor.number)), ("DvCompania", emisor.dv),
        ("RutReceptor", str(receptor.number)), ("DvReceptor", receptor.dv),
        ("TipoDte", str(doc.tipo_dte)), ("FolioDte", str(doc.folio)),
        ("FechaEmisionDte", f"{d}{m}{y}"), ("MontoDte", str(doc.monto_total)), ("Token", token),
    ], timeouts, token)


def session_error(service: str, estado: str, glosa: str) -> UplinkError:
    return UplinkError(Kind.SESSION, "UPLINK_AUTH", f"{service}: TOKEN {estado} {glosa}".strip(), service=service)


def classify_envio(r: soap.Respuesta, docs: list[DocRef]) -> EnvioState:
    """A QueryEstUp answer (answers.EST_UP). Raises for a dead token (renew and ask again)."""
    estado, glosa = r.estado, r.glosa
    meaning, kind, fix = est_up_answer(estado)
    if kind is EnvioKind.SESSION:
        raise session_error("QueryEstUp", estado, glosa)
    if kind is EnvioKind.INSTALLATION and estado.startswith("-"):  # the query itself refused (user, permissions)
        raise UplinkError(Kind.INSTALLATION, "SII_STATUS_FAILED", f"QueryEstUp ESTADO {estado}: {glosa or meaning}",
                          answer=Answer(estado, meaning, Kind.INSTALLATION, fix), service="QueryEstUp")
    if kind is EnvioKind.NOT_VISIBLE:
        glosa = f"ERR_CODE {r.hdr.get('ERR_CODE', '')} {glosa}".strip()
    state = EnvioState(kind, estado, glosa or meaning, fix=fix)
    if kind is EnvioKind.REJECTED:
        state.results = {d.key: DocResult("rejected_sii", f"{estado}: {glosa or meaning}") for d in docs}
    if kind is not EnvioKind.PROCESSED:
        return state
    for g in r.groups or [r.body]:
        t = state.counts.setdefault(int(g.get("TIPO_DOCTO") or 0), TypeCounts())
        for f in ("informados", "aceptados", "rechazados", "reparos"):
            setattr(t, f, getattr(t, f) + int(g.get(f.upper()) or 0))
    total = TypeCounts(*(sum(getattr(t, f) for t in state.counts.values())
                         for f in ("informados", "aceptados", "rechazados", "reparos")))
    if total.rechazados == 0 and total.reparos == 0:
        state.results = {d.key: DocResult("accepted", state.summary) for d in docs}
    elif total.rechazados == 0 and total.reparos >= len(docs):
        state.results = {d.key: DocResult("accepted_with_objections", state.summary) for d in docs}
    else:
        state.lookup = list(docs)  # which ones were rejected is only in the SII's e-mail: ask each
    return state


def lookup_of(r: soap.Respuesta) -> Lookup:
    """A QueryEstDte answer (answers.EST_DTE)."""
    meaning, kind, fix = est_dte_answer(r.estado)
    glosa = " ".join((r.hdr.get("GLOSA_ERR") or r.glosa or meaning).split())
    if kind is DteKind.SESSION:
        raise session_error("QueryEstDte", r.estado, glosa)
    return Lookup(kind, r.estado, glosa, fix)


def decide_by_counts(state: EnvioState, lookups: dict[tuple[int, int], Lookup]) -> dict[tuple[int, int], DocResult]:
    """Documents of a processed EnvioDTE whose fate the counts alone do not tell.

    Held documents it leaves undecided: a MISMATCH (another document holds the folio), a
    lookup that failed, or more "not received" documents of a type than the envío rejected
    (some are not visible yet). The SII's earlier copy wins over a rejection of a re-sent one."""
    out: dict[tuple[int, int], DocResult] = {}
    missing: dict[int, list[tuple[int, int]]] = {}
    for key, lk in lookups.items():
        counts = state.counts.get(key[0], TypeCounts())
        if lk.kind is DteKind.RECEIVED:
            every_one_objected = counts.reparos and counts.reparos >= counts.informados
            out[key] = DocResult("accepted_with_objections" if every_one_objected else "accepted",
                                 f"{lk.text} ({state.summary})")
        elif lk.kind is DteKind.NOT_RECEIVED:
            missing.setdefault(key[0], []).append(key)
    for tipo, keys in missing.items():
        if len(keys) <= state.counts.get(tipo, TypeCounts()).rechazados:
            for key in keys:
                out[key] = DocResult("rejected_sii", f"{lookups[key].text} ({state.summary}; el detalle del rechazo "
                                                     f"está en el correo del SII)")
    return out


def decide_by_detail(state: EnvioState, lookups: dict[tuple[int, int], Lookup]) -> dict[tuple[int, int], DocResult]:
    """Boletas the envío's detail rejected (boleta REST): rejected only when the SII does not
    hold the folio either. A rejection that says "repetido" while the SII shows no earlier
    copy is held (the earlier copy is not visible yet), never turned into a rejection."""
    out: dict[tuple[int, int], DocResult] = {}
    for key, lk in lookups.items():
        verdict = state.rejected_reasons.get(key)
        if lk.kind is DteKind.RECEIVED:
            out[key] = DocResult("accepted", f"{lk.text}: el SII tiene este folio de un envío anterior"
                                             + (f" (este reenvío: {verdict.reason})" if verdict else ""))
        elif (lk.kind is DteKind.NOT_RECEIVED and verdict is not None and verdict.state == "rejected_sii"
              and not REPEATED.search(verdict.reason + " " + " ".join(verdict.errors))):
            out[key] = verdict
    return out


def decide(state: EnvioState, lookups: dict[tuple[int, int], Lookup]) -> dict[tuple[int, int], DocResult]:
    return decide_by_detail(state, lookups) if state.rejected_reasons else decide_by_counts(state, lookups)
