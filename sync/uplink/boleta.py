"""Boletas 39/41 through the SII's boleta REST API (separate servers and token from facturas).

The API's own OpenAPI spec is not archived anywhere we could reach: the endpoints and JSON
shapes below rest on the instructivo (2021: REST, 500 per envío, 15-digit track ids) and on
public client code; docs/uplink-sii.md says which part rests on what.
- envío: POST .../boleta.electronica.envio, the DTEUpload multipart, Cookie TOKEN; answers
  JSON {rut_emisor, rut_envia, trackid, fecha_recepcion, estado: "REC", file}.
- estado: GET .../boleta.electronica.envio/{rut}-{dv}-{trackid}; JSON with `estado`,
  `estadistica` [{tipo, informados, aceptados, rechazados, reparos}] and `detalle_rep_rech`
  [{tipo, folio, estado, descripcion, error: [{seccion, linea, nivel, codigo, descripcion, detalle}]}].
- documento: GET .../boleta.electronica/{rut}-{dv}-{tipo}-{folio}/estado?rut_receptor&dv_receptor&monto&fechaEmision.
429 and 503 are honoured with Retry-After (transport.send).
"""

from __future__ import annotations

import json
import os
from typing import Any

import requests

from sync.rut import Rut
from sync.uplink.docref import DocRef
from sync.uplink.endpoints import SiiEndpoints
from sync.uplink.status import IN_PROCESS, REJECTED_WHOLE, DocResult, EnvioState
from sync.uplink.transport import USER_AGENT, Timeouts, UplinkError, send
from sync.uplink.upload import multipart_body


def _json(resp: requests.Response, what: str) -> dict[str, Any]:
    try:
        data = json.loads(resp.content.decode("utf-8", "replace"))
    except ValueError as exc:
        raise UplinkError("transient", "SII_STATUS_FAILED", f"{what}: respuesta no es JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UplinkError("transient", "SII_STATUS_FAILED", f"{what}: respuesta inesperada")
    return data


def upload(session, ep: SiiEndpoints, token: str, sender: Rut, company: Rut, envelope: bytes, filename: str,
           timeouts: Timeouts) -> str:
    boundary = "----dtesync" + os.urandom(12).hex()
    resp = send(session, "POST", ep.boleta_envio, timeouts, idempotent=False,
                data=multipart_body(sender, company, filename, envelope, boundary),
                headers={"Accept": "application/json", "User-Agent": USER_AGENT, "Cookie": f"TOKEN={token}",
                         "Content-Type": f"multipart/form-data; boundary={boundary}"})
    if resp.status_code >= 400:
        raise UplinkError("permanent", "SII_UPLOAD_REJECTED", f"HTTP {resp.status_code}: {resp.text[:300]}")
    data = _json(resp, "envío")
    track = str(data.get("trackid") or "").strip()
    if not track:
        raise UplinkError("ambiguous", "SII_UPLOAD_FAILED", f"envío sin trackid: {str(data)[:300]}")
    return track


def estado_envio(session, ep: SiiEndpoints, token: str, company: Rut, track_id: str, docs: list[DocRef],
                 timeouts: Timeouts) -> EnvioState:
    resp = send(session, "GET", ep.boleta_estado(company, track_id), timeouts, idempotent=True,
                headers={"Accept": "application/json", "Cookie": f"TOKEN={token}"})
    if resp.status_code == 404:
        raise UplinkError("transient", "SII_STATUS_FAILED", f"trackid {track_id} aún no existe (404)")
    data = _json(resp, "estado")
    estado = str(data.get("estado") or "")
    state = EnvioState(estado, REJECTED_WHOLE.get(estado, ""), final=estado not in IN_PROCESS)
    if not state.final:
        return state
    if estado in REJECTED_WHOLE:
        state.results = {d.key: DocResult("rejected_sii", f"{estado}: {REJECTED_WHOLE[estado]}") for d in docs}
        return state
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
        reason = f"{r.get('estado')}: {r.get('descripcion', '')}"
        result = "rejected_sii" if r.get("estado") in ("RCH", "RFR", "RSC", "RCT") else "accepted_with_objections"
        state.results[d.key] = DocResult(result, reason, errors)
    return state


def documento_recibido(session, ep: SiiEndpoints, token: str, doc: DocRef, timeouts: Timeouts) -> bool:
    """Per-document lookup (to resolve an ambiguous upload): True if the SII holds it."""
    emisor, receptor = Rut.parse(doc.rut_emisor), Rut.parse(doc.rut_receptor)
    y, m, d = doc.fch_emis.split("-")
    resp = send(session, "GET", ep.boleta_documento(emisor, doc.tipo_dte, doc.folio), timeouts, idempotent=True,
                params={"rut_receptor": receptor.number, "dv_receptor": receptor.dv, "monto": doc.monto_total,
                        "fechaEmision": f"{d}-{m}-{y}"},
                headers={"Accept": "application/json", "Cookie": f"TOKEN={token}"})
    if resp.status_code == 404:
        return False
    data = _json(resp, "documento")
    return str(data.get("codigo") or "") in ("DOK", "DNK")
