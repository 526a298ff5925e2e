"""Boletas 39/41 through the SII's boleta REST API (separate servers and token from facturas).

The API's own OpenAPI spec is not archived anywhere we could reach: the endpoints and JSON
shapes below rest on the instructivo (2021: REST, 500 per envío, 15-digit track ids,
"el diagnóstico de validación de los envíos ... mediante un servicio Rest que tiene como
entrada el track id") and on public client code; docs/uplink-sii.md says which part rests on
what, and answers.py how each HTTP status and state is classified.
- envío: POST .../boleta.electronica.envio, the DTEUpload multipart, Cookie TOKEN; answers
  JSON {rut_emisor, rut_envia, trackid, fecha_recepcion, estado: "REC", file}.
- estado: GET .../boleta.electronica.envio/{rut}-{dv}-{trackid}; JSON with `estado`,
  `estadistica` [{tipo, informados, aceptados, rechazados, reparos}] and `detalle_rep_rech`
  [{tipo, folio, estado, descripcion, error: [{seccion, linea, nivel, codigo, descripcion, detalle}]}].
- documento: GET .../boleta.electronica/{rut}-{dv}-{tipo}-{folio}/estado?rut_receptor&dv_receptor&monto&fechaEmision
  -> {codigo (the QueryEstDte codes), descripcion}.
HTTP 405 and 429 are how the API rate-limits; they are honoured with Retry-After / X-Retry-After.
"""

from __future__ import annotations

import json
import os
from typing import Any

import requests

from sync.rut import Rut
from sync.uplink.answers import (
    BOLETA_DOC_OBJECTION,
    BOLETA_DOC_REJECTED,
    DteKind,
    EnvioKind,
    Kind,
    boleta_estado_answer,
    boleta_upload_answer,
    est_dte_answer,
)
from sync.uplink.docref import DocRef
from sync.uplink.endpoints import SiiEndpoints
from sync.uplink.status import DocResult, EnvioState, Lookup, TypeCounts, session_error
from sync.uplink.transport import USER_AGENT, Timeouts, UplinkError, retry_after, send
from sync.uplink.upload import multipart_body


def _json(resp: requests.Response) -> dict[str, Any] | None:
    try:
        data = json.loads(resp.content.decode("utf-8", "replace"))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _rate_limited(resp: requests.Response, what: str) -> UplinkError | None:
    if resp.status_code in (405, 429, 503):
        return UplinkError(Kind.TRANSIENT, "UPLINK_HTTP", f"{what}: HTTP {resp.status_code} (límite de solicitudes)",
                           retry_after=retry_after(resp), service=what)
    if resp.status_code in (401, 403):
        return session_error(what, str(resp.status_code), "no autenticado")
    return None


def upload(session: requests.Session, ep: SiiEndpoints, token: str, sender: Rut, company: Rut, envelope: bytes,
           filename: str, timeouts: Timeouts) -> str:
    boundary = "----dtesync" + os.urandom(12).hex()
    resp = send(session, "POST", ep.boleta_envio, timeouts, idempotent=False, raw_status=True,
                data=multipart_body(sender, company, filename, envelope, boundary),
                headers={"Accept": "application/json", "User-Agent": USER_AGENT, "Cookie": f"TOKEN={token}",
                         "Content-Type": f"multipart/form-data; boundary={boundary}"})
    meaning, kind = boleta_upload_answer(resp.status_code)
    if kind is not Kind.OK:
        if kind is Kind.SESSION:
            raise session_error("boleta.envio", str(resp.status_code), meaning)
        raise UplinkError(kind, "SII_UPLOAD_FAILED", f"HTTP {resp.status_code}: {meaning} {resp.text[:300]}".strip(),
                          retry_after=retry_after(resp), service="boleta.envio")
    data = _json(resp) or {}
    track = str(data.get("trackid") or "").strip()
    if not track:  # a 2xx that does not say what it filed: maybe filed, so look it up first
        raise UplinkError(Kind.LOST, "SII_UPLOAD_FAILED", f"envío sin trackid: {resp.text[:300]}",
                          service="boleta.envio")
    return track


def estado_envio(session: requests.Session, ep: SiiEndpoints, token: str, company: Rut, track_id: str,
                 docs: list[DocRef], timeouts: Timeouts) -> EnvioState:
    resp = send(session, "GET", ep.boleta_estado(company, track_id), timeouts, idempotent=True, raw_status=True,
                headers={"Accept": "application/json", "Cookie": f"TOKEN={token}"})
    limited = _rate_limited(resp, "boleta.estado")
    if limited is not None:
        if limited.kind is Kind.SESSION:
            raise limited
        return EnvioState(EnvioKind.TRANSIENT, str(resp.status_code), limited.detail, retry_after=limited.retry_after)
    if resp.status_code == 404:
        return EnvioState(EnvioKind.NOT_VISIBLE, "404", f"trackid {track_id} aún no existe")
    data = _json(resp)
    if resp.status_code >= 500:
        return EnvioState(EnvioKind.TRANSIENT, str(resp.status_code), f"HTTP {resp.status_code}")
    if resp.status_code >= 400 or data is None:
        return EnvioState(EnvioKind.UNKNOWN, f"HTTP {resp.status_code}", f"respuesta no documentada: {resp.text[:200]}")
    estado = str(data.get("estado") or "")
    meaning, kind, fix = boleta_estado_answer(estado)
    stats = data.get("estadistica") or []
    if estado == "REC" and stats:  # public clients read a REC with statistics as processed
        kind = EnvioKind.PROCESSED
    state = EnvioState(kind, estado, str(data.get("glosa") or meaning), fix=fix)
    if kind is EnvioKind.REJECTED:
        state.results = {d.key: DocResult("rejected_sii", f"{estado}: {meaning}") for d in docs}
    if kind is not EnvioKind.PROCESSED:
        return state
    for s in stats:
        state.counts[int(s.get("tipo") or 0)] = TypeCounts(int(s.get("informados") or 0), int(s.get("aceptados") or 0),
                                                           int(s.get("rechazados") or 0), int(s.get("reparos") or 0))
    detail = {(int(r.get("tipo") or 0), int(r.get("folio") or 0)): r for r in data.get("detalle_rep_rech") or []}
    for d in docs:
        r = detail.get(d.key)
        if r is None:
            state.results[d.key] = DocResult("accepted", f"{estado}: aceptado")
            continue
        errors = [
            f"{e.get('seccion', '')}-{e.get('nivel', '')}-{e.get('codigo', '')} {e.get('descripcion', '')} "
            f"{e.get('detalle') or ''}".strip()
            for e in r.get("error") or []
        ]
        doc_estado = str(r.get("estado") or "")
        reason = f"{doc_estado}: {r.get('descripcion', '')}".strip(": ")
        if doc_estado in BOLETA_DOC_OBJECTION:
            state.results[d.key] = DocResult("accepted_with_objections", reason, errors)
        elif doc_estado in BOLETA_DOC_REJECTED:
            # Rejected: first ask whether the SII holds the folio anyway (a re-sent copy
            # refused as repeated); `rejected_reasons` is the verdict if it does not.
            state.rejected_reasons[d.key] = DocResult("rejected_sii", reason, errors)
            state.lookup.append(d)
        else:
            state.rejected_reasons[d.key] = DocResult("unknown", f"estado de documento no documentado: {reason}", errors)
            state.lookup.append(d)
    return state


def documento(session: requests.Session, ep: SiiEndpoints, token: str, doc: DocRef, timeouts: Timeouts) -> Lookup:
    """Per-document lookup with the document's real receptor, amount and date."""
    emisor, receptor = Rut.parse(doc.rut_emisor), Rut.parse(doc.rut_receptor)
    y, m, d = doc.fch_emis.split("-")
    resp = send(session, "GET", ep.boleta_documento(emisor, doc.tipo_dte, doc.folio), timeouts, idempotent=True,
                raw_status=True,
                params={"rut_receptor": receptor.number, "dv_receptor": receptor.dv, "monto": doc.monto_total,
                        "fechaEmision": f"{d}-{m}-{y}"},
                headers={"Accept": "application/json", "Cookie": f"TOKEN={token}"})
    limited = _rate_limited(resp, "boleta.documento")
    if limited is not None:
        raise limited
    data = _json(resp)
    codigo = str((data or {}).get("codigo") or "")
    if resp.status_code >= 500:
        return Lookup(DteKind.TRANSIENT, f"HTTP {resp.status_code}", "error del servidor")
    if not codigo:  # a 404 (or anything) without a code is no evidence either way
        return Lookup(DteKind.UNKNOWN, f"HTTP {resp.status_code}", f"respuesta sin código: {resp.text[:200]}")
    meaning, kind, fix = est_dte_answer(codigo)
    if kind is DteKind.SESSION:
        raise session_error("boleta.documento", codigo, meaning)
    return Lookup(kind, codigo, str((data or {}).get("descripcion") or meaning), fix)
