"""The receptor's answers to a delivered DTE, as they arrive in the exchange mailbox:

- RespuestaDTE (RespuestaEnvioDTE_v10.xsd) with `RecepcionEnvio`: the envelope was received
  (EstadoRecepEnv) and each DTE in it received or not (RecepcionDTE/EstadoRecepDTE);
- RespuestaDTE with `ResultadoDTE`: the commercial verdict per DTE (EstadoDTE: accepted,
  accepted with discrepancies, rejected, with a reason);
- EnvioRecibos (EnvioRecibos_v10.xsd, Ley 19.983): the goods or services were received.

An answer is believed only if its XMLDSig signatures verify and cover what is read (the
Resultado / SetRecibos element read is the very one the signature references): anyone can
send a mail. Schema violations are kept as warnings, not grounds to drop an answer a receptor's
software wrote a little off the schema. Anything that is not one of these roots is not an
answer (`parse_answer` returns None); unreadable XML raises `AnswerError`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from lxml import etree

from sync import safexml
from sync.schema import schema_dir
from sync.signing import verify_signatures
from sync.sii import SII_Q

ROOTS = {"RespuestaDTE": "sii/RespuestaEnvioDTE_v10.xsd", "EnvioRecibos": "sii/EnvioRecibos_v10.xsd"}

ENVIO_STATES = {  # RecepcionEnvio/EstadoRecepEnv
    0: "Envío recibido conforme", 1: "Envío rechazado: error de schema", 2: "Envío rechazado: error de firma",
    3: "Envío rechazado: RUT receptor no corresponde", 90: "Envío rechazado: archivo repetido",
    91: "Envío rechazado: archivo ilegible", 99: "Envío rechazado: otros",
}
RECEPCION_STATES = {  # RecepcionDTE/EstadoRecepDTE
    0: "DTE recibido OK", 1: "DTE no recibido: error de firma", 2: "DTE no recibido: error en RUT emisor",
    3: "DTE no recibido: error en RUT receptor", 4: "DTE no recibido: DTE repetido", 99: "DTE no recibido: otros",
}
RESULTADO_STATES = {  # ResultadoDTE/EstadoDTE
    0: ("accepted", "DTE aceptado"), 1: ("accepted_with_objections", "DTE aceptado con discrepancias"),
    2: ("rejected", "DTE rechazado"),
}
MAX_ANSWER_BYTES = 10 * 1024 * 1024


class AnswerError(ValueError):
    """Bytes that claim to be an answer but cannot be read as one."""


@dataclass
class AnswerItem:
    """One statement of an answer about one DTE (or about one envelope, kind `envio`)."""

    kind: str  # envio | recepcion | resultado | recibo
    state: str  # envio_received | envio_rejected | received | not_received | accepted | ... | goods_received
    code: int | None
    reason: str | None
    tipo_dte: int | None = None
    folio: int | None = None
    rut_emisor: str | None = None
    rut_receptor: str | None = None
    mnt_total: int | None = None
    signed_at: str | None = None
    envio_name: str | None = None
    envio_digest: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Answer:
    root: str  # RespuestaDTE | EnvioRecibos
    sha256: str
    rut_responde: str | None
    rut_recibe: str | None
    items: list[AnswerItem]
    signature_ok: bool
    problems: list[str] = field(default_factory=list)  # why the signature is not believed
    schema_errors: list[str] = field(default_factory=list)


def _text(el: etree._Element | None, tag: str) -> str | None:
    if el is None:
        return None
    found = el.find(SII_Q + tag)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _int(el: etree._Element | None, tag: str) -> int | None:
    value = _text(el, tag)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise AnswerError(f"{tag} no es un número: {value[:20]!r}") from None


@cache
def _schema(root: str) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(schema_dir() / ROOTS[root]), parser))


def schema_errors(root: etree._Element) -> list[str]:
    name = etree.QName(root).localname
    schema = _schema(name)
    if schema.validate(root):
        return []
    return [f"línea {e.line}: {e.message}" for e in list(schema.error_log)[:5]]


def _is_answer(root: etree._Element) -> bool:
    q = etree.QName(root)
    return q.localname in ROOTS and q.namespace in (None, SII_Q[1:-1])


def _parse(data: bytes) -> etree._Element:
    if len(data) > MAX_ANSWER_BYTES:
        raise AnswerError(f"{len(data)} bytes: demasiado grande para una respuesta")
    try:
        root = safexml.fromstring(data)
    except etree.XMLSyntaxError as exc:
        raise AnswerError(f"XML mal formado: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise AnswerError("el XML trae DOCTYPE; no se acepta")
    return root


def parse_answer(data: bytes) -> Answer | None:
    root = _parse(data)
    if not _is_answer(root):
        return None
    name = etree.QName(root).localname
    if etree.QName(root).namespace is None:
        raise AnswerError(f"<{name}> sin el espacio de nombres del SII")
    sha = hashlib.sha256(data).hexdigest()
    if name == "RespuestaDTE":
        signed_el = root.find(SII_Q + "Resultado")
        if signed_el is None:
            raise AnswerError("RespuestaDTE sin Resultado")
        caratula = signed_el.find(SII_Q + "Caratula")
        items = _respuesta_items(signed_el, _text(caratula, "TmstFirmaResp"))
        signed_at = _text(caratula, "TmstFirmaResp")
    else:
        signed_el = root.find(SII_Q + "SetRecibos")
        if signed_el is None:
            raise AnswerError("EnvioRecibos sin SetRecibos")
        caratula = signed_el.find(SII_Q + "Caratula")
        signed_at = _text(caratula, "TmstFirmaEnv")
        items = _recibo_items(signed_el)
    if caratula is None:
        raise AnswerError(f"{name} sin Caratula")
    if not items:
        raise AnswerError(f"{name} no informa ningún documento")
    for item in items:
        item.signed_at = item.signed_at or signed_at
    ok, problems = _signatures(root, signed_el)
    return Answer(name, sha, _text(caratula, "RutResponde"), _text(caratula, "RutRecibe"), items, ok, problems,
                  schema_errors(root))


def _signatures(root: etree._Element, signed_el: etree._Element) -> tuple[bool, list[str]]:
    """Every Signature verifies, and one of them covers the element the items are read from."""
    results = verify_signatures(root)
    problems = []
    if not results:
        problems.append("sin firma")
    for r in results:
        if not r.ok:
            problems.append(f"firma {r.reference or '?'} no verifica" + (f" ({'; '.join(r.warnings)})" if r.warnings else ""))
    ref = signed_el.get("ID")
    if not ref or not any(r.ok and r.reference == "#" + ref for r in results):
        problems.append(f"ninguna firma válida cubre <{etree.QName(signed_el).localname}>")
    return not problems, problems


def _dte_fields(el: etree._Element, tipo_tag: str = "TipoDTE") -> dict[str, Any]:
    return {"tipo_dte": _int(el, tipo_tag), "folio": _int(el, "Folio"), "rut_emisor": _text(el, "RUTEmisor"),
            "rut_receptor": _text(el, "RUTRecep"), "mnt_total": _int(el, "MntTotal")}


def _respuesta_items(resultado: etree._Element, signed_at: str | None) -> list[AnswerItem]:
    items: list[AnswerItem] = []
    for env in resultado.iterfind(SII_Q + "RecepcionEnvio"):
        code = _int(env, "EstadoRecepEnv")
        glosa = _text(env, "RecepEnvGlosa")
        items.append(AnswerItem(
            "envio", "envio_received" if code == 0 else "envio_rejected", code,
            _reason(ENVIO_STATES, code, glosa), rut_emisor=_text(env, "RutEmisor"), rut_receptor=_text(env, "RutReceptor"),
            envio_name=_text(env, "NmbEnvio"), envio_digest=_text(env, "Digest"),
            detail={"cod_envio": _int(env, "CodEnvio"), "fch_recep": _text(env, "FchRecep")}))
        for dte in env.iterfind(SII_Q + "RecepcionDTE"):
            code = _int(dte, "EstadoRecepDTE")
            items.append(AnswerItem("recepcion", "received" if code == 0 else "not_received", code,
                                    _reason(RECEPCION_STATES, code, _text(dte, "RecepDTEGlosa")),
                                    detail={"fch_recep": _text(env, "FchRecep")}, **_dte_fields(dte)))
    for res in resultado.iterfind(SII_Q + "ResultadoDTE"):
        code = _int(res, "EstadoDTE")
        state, label = RESULTADO_STATES.get(code if code is not None else -1, ("rejected", f"EstadoDTE {code}"))
        glosa = _text(res, "EstadoDTEGlosa")
        detail = {"cod_envio": _int(res, "CodEnvio")}
        if _int(res, "CodRchDsc") is not None:
            detail["cod_rch_dsc"] = _int(res, "CodRchDsc")
        items.append(AnswerItem("resultado", state, code, f"{label}: {glosa}" if glosa else label,
                                detail=detail, **_dte_fields(res)))
    return items


def _recibo_items(set_recibos: etree._Element) -> list[AnswerItem]:
    items = []
    for recibo in set_recibos.iterfind(SII_Q + "Recibo"):
        doc = recibo.find(SII_Q + "DocumentoRecibo")
        if doc is None:
            raise AnswerError("Recibo sin DocumentoRecibo")
        recinto = _text(doc, "Recinto")
        items.append(AnswerItem(
            "recibo", "goods_received", None,
            "Acuse de recibo de mercaderías o servicios (Ley 19.983)" + (f", recinto {recinto}" if recinto else ""),
            signed_at=_text(doc, "TmstFirmaRecibo"),
            detail={"recinto": recinto, "rut_firma": _text(doc, "RutFirma")},
            **_dte_fields(doc, "TipoDoc")))
    return items


def _reason(table: dict[int, str], code: int | None, glosa: str | None) -> str:
    label = table.get(code if code is not None else -1, f"estado {code}")
    return f"{label}: {glosa}" if glosa and glosa.upper() not in label.upper() else label


# --- what the status file and NAME.receptor.json say ------------------------------------------------
_COMMERCIAL = ("accepted", "accepted_with_objections", "rejected")


def receptor_summary(answers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The `receptor` object: the latest commercial verdict if any, else whether the DTE was
    received; goods received (Ley 19.983) on its own; every answer, oldest first."""
    if not answers:
        return None
    state: str | None = None
    reason: str | None = None
    for kinds in (("resultado",), ("recepcion",), ("envio",)):
        chosen = [a for a in answers if a["kind"] in kinds]
        if chosen:
            last = chosen[-1]
            state = {"envio_received": "received", "envio_rejected": "not_received"}.get(last["state"], last["state"])
            reason = last.get("reason")
            break
    goods = [a for a in answers if a["kind"] == "recibo"]
    return {
        "state": state,
        "reason": reason,
        "goods_received": bool(goods),
        "goods_received_at": goods[-1].get("signed_at") if goods else None,
        "answers": answers,
    }
