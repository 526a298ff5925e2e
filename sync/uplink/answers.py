"""What every SII answer means for a document: one table per service, each code's meaning
copied from the SII's manual, and the class that decides what the uplink does.

The classes (docs/uplink-sii.md has the full tables):
- VERDICT: the SII decided about *this* document (accepted, objections, rejected). Only a
  verdict ever makes a document `rejected_sii`.
- TRANSIENT: nothing was decided, try again later (system blocked, database errors, rate limit).
- SESSION: the token is dead: renew it and try again at once.
- INSTALLATION: the certificate, the enrolment, the user's permissions or the company's
  authorisation is wrong. No document is at fault: the channel pauses, documents stay
  `queued`, an alert says what to fix and where, and the channel resumes by itself once the
  SII accepts it again.
- UNKNOWN: not in the manual. The document is held with an alert; never read as acceptance,
  never re-sent blindly.
- LOST: the request may have been processed but the answer did not arrive: find the earlier
  upload before anything is sent again.

Envío and document states have their own vocabularies (EnvioKind, DteKind) because "in
process" and "not received" are not failures.

Sources: autenticación automática v1.9 §5.2.2 (CrSeed figure 1.6, GetTokenFromSeed figure
1.7), DTEUpload manual 1.5 §2.1, QueryEstUp v1.10 §3.3 and §3.5, QueryEstDte v1.10 §3.3 and
§3.5. The boleta REST API's own specification is not archived anywhere we could reach: its
HTTP codes and states rest on the instructivo (2021) and on public client code, and say so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    OK = "ok"
    VERDICT = "verdict"
    TRANSIENT = "transient"
    SESSION = "session"
    INSTALLATION = "installation"
    UNKNOWN = "unknown"
    LOST = "lost"


class EnvioKind(StrEnum):
    """QueryEstUp / boleta estado: where an envío stands."""

    PROCESSING = "processing"  # received, not yet decided: ask again later
    NOT_VISIBLE = "not_visible"  # the SII does not show it yet (it may still be filing it)
    PROCESSED = "processed"  # decided: counts per type (and per document for boletas)
    REJECTED = "rejected"  # the whole envío refused for its content (schema, signature)
    INSTALLATION = "installation"
    SESSION = "session"
    TRANSIENT = "transient"
    UNKNOWN = "unknown"


class DteKind(StrEnum):
    """QueryEstDte / boleta documento: what the SII holds under this folio."""

    RECEIVED = "received"  # received with the same data
    NOT_RECEIVED = "not_received"  # the SII says it has no such document
    MISMATCH = "mismatch"  # received, but with another date, receptor or amount
    INSTALLATION = "installation"
    SESSION = "session"
    TRANSIENT = "transient"
    UNKNOWN = "unknown"


# What to fix, and where. {signer}, {company}, {host}, {environment} are filled in by the
# channel (the certificate's RUT, the company's RUT, maullin.sii.cl or palena.sii.cl).
FIX_ENROL = ("Registre al titular del certificado (RUT {signer}) en el SII con autenticación por certificado "
             "digital y enrólelo como usuario de la empresa {company} en https://{host}/cvc_cgi/dte/eu_enrola_usuarios "
             "(Mantención de usuarios).")
FIX_CERTIFICATE = ("Revise el certificado digital de la sección [certificate] de la configuración (archivo .pfx y su "
                   "clave): debe estar vigente, no revocado, traer el certificado X.509 y la llave privada que le "
                   "corresponde, y estar registrado en el SII para autenticarse.")
FIX_SENDER = ("Autorice al titular del certificado (RUT {signer}) a enviar documentos de la empresa {company} en "
              "https://{host}/cvc_cgi/dte/eu_enrola_usuarios (Mantención de usuarios, permiso de envío).")
FIX_COMPANY = ("La empresa {company} no está autorizada para DTE en {host}. Revise `environment` (certificacion: "
               "maullin; produccion: palena) y la postulación en "
               "https://www.sii.cl/factura_electronica/factura_mercado/postulacion.htm.")
FIX_CARATULA = ("Revise en la sección [company] `rut`, `fch_resol` y `nro_resol`: deben ser los de la resolución que "
                "autoriza a la empresa en este ambiente (se ven en https://{host}/cvc_cgi/dte/ad_empresa1).")


@dataclass(frozen=True)
class Answer:
    """One documented code: the manual's words, what it means for the document, and (for
    installation problems) what the person must fix."""

    code: str
    meaning: str
    kind: Kind
    fix: str = ""


def _table(kind_by_code: list[tuple[str, str, Kind, str]]) -> dict[str, Answer]:
    return {c: Answer(c, m, k, f) for c, m, k, f in kind_by_code}


# --- CrSeed.jws (auth v1.9 §5.2.2, figure 1.6) ------------------------------------------------------
SEED = _table([
    ("00", "OK genera Semilla", Kind.OK, ""),
    ("-1", "No se registro línea en el Archivo de Configuración", Kind.TRANSIENT, ""),
    ("-2", "ERROR: RETORNO.", Kind.TRANSIENT, ""),
])

# --- GetTokenFromSeed.jws (auth v1.9 §5.2.2, figure 1.7) -------------------------------------------
# 01-04 and 06: the signed seed we sent could not be read; a new seed is worth a try, and a
# repeated failure alerts through the waiting-too-long alert. 05, 11, 21, -3 and -07 are the
# certificate or the enrolment: nothing a retry can fix.
TOKEN = _table([
    ("00", "Token Creado", Kind.OK, ""),
    ("01", "XML Inválido (IOException), función valSignedXml", Kind.TRANSIENT, ""),
    ("02", "XML Inválido (SAXException), función valSignedXml", Kind.UNKNOWN, ""),
    ("03", "XML Inválido (ParserConfigurationException), función valSignedXml", Kind.TRANSIENT, ""),
    ("04", "XML Inválido, elemento “Signature” no existe, función valSignedXml", Kind.UNKNOWN, ""),
    ("05", "XML Inválido, firma invalida, función valSignedXml", Kind.INSTALLATION, FIX_CERTIFICATE),
    ("06", "XML Inválido, elemento “Semilla” no existe, función getSeed", Kind.UNKNOWN, ""),
    ("07", "ERROR (MessageException).", Kind.TRANSIENT, ""),
    ("08", "ERROR RETORNO", Kind.TRANSIENT, ""),  # seed timed out / unknown: a new seed
    ("09", "ERROR (MessageException).", Kind.TRANSIENT, ""),
    ("10", "ERROR RETORNO", Kind.TRANSIENT, ""),
    ("11", "XML Inválido, elemento “Certificate” no existe, función getCertificado", Kind.INSTALLATION,
     FIX_CERTIFICATE),
    ("12", "ERROR (12) (MessageException)", Kind.TRANSIENT, ""),
    ("21", "Firma invalida( La llave pública no coincide con la del certificado).", Kind.INSTALLATION,
     FIX_CERTIFICATE),
    ("-3", "Error en Autenticación", Kind.INSTALLATION, FIX_CERTIFICATE),
    ("-07", ("Error (12) parse ERROR en Validación del RUT (verificar que el usuario se encuentre registrado en "
             "el SII con la opción de autenticación mediante “Certificado Digital”"), Kind.INSTALLATION, FIX_ENROL),
])

# --- DTEUpload (upload manual 1.5 §2.1) ---------------------------------------------------------------
# 2, 7, 8 are about the envelope's content: a batch is split and each document sent alone
# before any is rejected. "Otro = Error Interno": not documented further, so the upload is
# treated as possibly received (looked up before it is ever sent again) and alerted.
UPLOAD = _table([
    ("0", "Upload OK", Kind.OK, ""),
    ("1", "El Sender no tiene permiso para enviar", Kind.INSTALLATION, FIX_SENDER),
    ("2", "Error en tamaño del archivo (muy grande o muy chico)", Kind.VERDICT, ""),
    ("3", "Archivo cortado (tamaño <> al parámetro size)", Kind.TRANSIENT, ""),
    ("5", "No está autenticado", Kind.SESSION, ""),
    ("6", "Empresa no autorizada a enviar archivos", Kind.INSTALLATION, FIX_COMPANY),
    ("7", "Esquema Invalido", Kind.VERDICT, ""),
    ("8", "Firma del Documento", Kind.VERDICT, ""),
    ("9", "Sistema Bloqueado", Kind.TRANSIENT, ""),
])
UPLOAD_OTHER = Answer("Otro", "Error Interno.", Kind.UNKNOWN)

# --- QueryEstUp (v1.10 §3.3 states, §3.5 errors) ----------------------------------------------------
EST_UP: dict[str, tuple[str, EnvioKind, str]] = {
    "RSC": ("Rechazado por Error en Schema", EnvioKind.REJECTED, ""),
    "SOK": ("Schema Validado", EnvioKind.PROCESSING, ""),
    "CRT": ("Carátula OK", EnvioKind.PROCESSING, ""),
    "RFR": ("Rechazado por Error en Firma", EnvioKind.REJECTED, ""),
    "FOK": ("Firma de Envió Validada", EnvioKind.PROCESSING, ""),
    "PDR": ("Envió en Proceso", EnvioKind.PROCESSING, ""),
    # The carátula carries the company's RUT and its resolution: a configuration error.
    "RCT": ("Rechazado por Error en Carátula", EnvioKind.INSTALLATION, FIX_CARATULA),
    "EPR": ("Envió Procesado", EnvioKind.PROCESSED, ""),
    "PRD": ("Error Retorno Datos", EnvioKind.PROCESSING, ""),  # §4.6 example only: ask again
    # TOKEN errors (§3.5.2)
    "001": ("Cookie Inactivo(o Token Inactivo)", EnvioKind.SESSION, ""),
    "002": ("Token Inactivo", EnvioKind.SESSION, ""),
    "003": ("Token No Existe", EnvioKind.SESSION, ""),
    # Other errors (§3.5.3)
    "-1": ("ERROR: RETORNO CAMPO ESTADO, NO EXISTE", EnvioKind.TRANSIENT, ""),
    "-2": ("ERROR RETORNO", EnvioKind.TRANSIENT, ""),
    "-3": ("ERROR: RUT USUARIO NO EXISTE", EnvioKind.INSTALLATION, FIX_ENROL),
    "-4": ("ERROR OBTENCION DE DATOS", EnvioKind.TRANSIENT, ""),
    "-5": ("ERROR RETORNO DATOS", EnvioKind.TRANSIENT, ""),
    "-6": ("ERROR: USUARIO NO AUTORIZADO", EnvioKind.INSTALLATION, FIX_SENDER),
    "-7": ("ERROR RETORNO DATOS", EnvioKind.TRANSIENT, ""),
    "-8": ("ERROR: RETORNO DATOS", EnvioKind.TRANSIENT, ""),
    "-9": ("ERROR: RETORNO DATOS", EnvioKind.TRANSIENT, ""),
    "-10": ("ERROR: VALIDA RUT USUARIO", EnvioKind.INSTALLATION, FIX_ENROL),
    # ERR_CODE 1 "El envío no es de la Empresa", 2 "Error de Proceso": for a track id the SII
    # itself gave us, both mean it does not show the envío (yet).
    "-11": ("ERR_CODE, SQL_CODE, SRV_CODE", EnvioKind.NOT_VISIBLE, ""),
    "-12": ("ERROR: RETORNO CONSULTA", EnvioKind.TRANSIENT, ""),
    "-13": ("ERROR RUT USUARIO NULO", EnvioKind.INSTALLATION, FIX_ENROL),
    "-14": ("ERROR XML RETORNO DATOS", EnvioKind.TRANSIENT, ""),
}

# --- QueryEstDte (v1.10 §3.3 values, §3.5 errors) ---------------------------------------------------
# FAU, FNA and FAN all come with GLOSA_ESTADO "DTE No Recibido" (§4.3-4.5). TMD..ANC: the
# document is received and later notes refer to it (§4.7 note).
EST_DTE: dict[str, tuple[str, DteKind, str]] = {
    "DOK": ("Documento Recibido por el SII. Datos Coinciden con los Registrados.", DteKind.RECEIVED, ""),
    "DNK": ("Documento Recibido por el SII pero Datos NO Coinciden con los registrados.", DteKind.MISMATCH, ""),
    "FAU": ("Documento No Recibido por el SII.", DteKind.NOT_RECEIVED, ""),
    "FNA": ("Documento No Autorizado.", DteKind.NOT_RECEIVED, ""),
    "FAN": ("Documento Anulado.", DteKind.NOT_RECEIVED, ""),
    "EMP": ("Empresa no autorizada a Emitir Documentos Tributarios Electrónicos", DteKind.INSTALLATION, FIX_COMPANY),
    "TMD": ("Existe Nota de Debito que Modifica Texto Documento.", DteKind.RECEIVED, ""),
    "TMC": ("Existe Nota de Crédito que Modifica Textos Documento.", DteKind.RECEIVED, ""),
    "MMD": ("Existe Nota de Debito que Modifica Montos Documento.", DteKind.RECEIVED, ""),
    "MMC": ("Existe Nota de Crédito que Modifica Montos Documento.", DteKind.RECEIVED, ""),
    "AND": ("Existe Nota de Debito que Anula Documento", DteKind.RECEIVED, ""),
    "ANC": ("Existe Nota de Crédito que Anula Documento", DteKind.RECEIVED, ""),
    "001": ("Cookie Inactivo (o token no existe)", DteKind.SESSION, ""),
    "002": ("Token Inactivo", DteKind.SESSION, ""),
    "003": ("Token No Existe", DteKind.SESSION, ""),
    "-1": ("ERROR: RETORNO CAMPO ESTADO", DteKind.TRANSIENT, ""),
    "-2": ("ERROR RETORNO", DteKind.TRANSIENT, ""),
    "-3": ("ERROR RETORNO", DteKind.TRANSIENT, ""),
    "-4": ("ERROR RETORNO.", DteKind.TRANSIENT, ""),
}

# --- boleta REST (no archived specification: instructivo 2021 + public client code) ------------------
# HTTP status of the envío POST. 405 is how the boleta API rate-limits (public client code
# retries it with Retry-After / X-Retry-After, like 429 and 503). 408: the server gave up
# reading the request, so nothing was filed. 500/502/504 after the body left: maybe filed.
BOLETA_UPLOAD_HTTP: dict[int, tuple[str, Kind]] = {
    200: ("envío recibido", Kind.OK),
    401: ("no autenticado", Kind.SESSION),
    403: ("no autorizado (token)", Kind.SESSION),
    405: ("límite de solicitudes", Kind.TRANSIENT),
    408: ("tiempo de espera del servidor agotado", Kind.TRANSIENT),
    429: ("límite de solicitudes", Kind.TRANSIENT),
    500: ("error interno del servidor", Kind.LOST),
    502: ("puerta de enlace", Kind.LOST),
    503: ("servicio no disponible", Kind.TRANSIENT),
    504: ("tiempo de espera de la puerta de enlace", Kind.LOST),
}
# The envío's `estado`: REC is what the POST itself answers; public clients also read a REC
# that carries `estadistica` as processed. EPR processed; RSC/RFR/RCT as in QueryEstUp.
BOLETA_ESTADO: dict[str, tuple[str, EnvioKind, str]] = {
    "REC": ("Envío recibido", EnvioKind.PROCESSING, ""),
    "SOK": ("Schema Validado", EnvioKind.PROCESSING, ""),
    "CRT": ("Carátula OK", EnvioKind.PROCESSING, ""),
    "FOK": ("Firma de Envío Validada", EnvioKind.PROCESSING, ""),
    "PDR": ("Envío en Proceso", EnvioKind.PROCESSING, ""),
    "PRD": ("Envío en Proceso", EnvioKind.PROCESSING, ""),
    "EPR": ("Envío Procesado", EnvioKind.PROCESSED, ""),
    "RSC": ("Rechazado por Error en Schema", EnvioKind.REJECTED, ""),
    "RFR": ("Rechazado por Error en Firma", EnvioKind.REJECTED, ""),
    "RCT": ("Rechazado por Error en Carátula", EnvioKind.INSTALLATION, FIX_CARATULA),
}
# detalle_rep_rech[].estado of one boleta in a processed envío.
BOLETA_DOC_REJECTED = frozenset({"RCH", "RFR", "RSC", "RCT", "RLV"})
BOLETA_DOC_OBJECTION = frozenset({"RPR", "REP"})

# A rejection whose reason says the folio was already received: after our own earlier upload
# this is "look up the earlier result", never a rejection of the document.
REPEATED = re.compile(r"repetid|duplicad|ya (fue )?recibid", re.IGNORECASE)


def seed_answer(estado: str) -> Answer:
    return SEED.get(estado) or Answer(estado, "estado no documentado de CrSeed", Kind.UNKNOWN)


def token_answer(estado: str) -> Answer:
    return TOKEN.get(estado) or Answer(estado, "estado no documentado de GetTokenFromSeed", Kind.UNKNOWN)


def upload_answer(status: str) -> Answer:
    return UPLOAD.get(status) or Answer(status, UPLOAD_OTHER.meaning, UPLOAD_OTHER.kind)


def est_up_answer(estado: str) -> tuple[str, EnvioKind, str]:
    return EST_UP.get(estado) or ("estado no documentado en QueryEstUp", EnvioKind.UNKNOWN, "")


def est_dte_answer(estado: str) -> tuple[str, DteKind, str]:
    return EST_DTE.get(estado) or ("estado no documentado en QueryEstDte", DteKind.UNKNOWN, "")


def boleta_upload_answer(http_status: int) -> tuple[str, Kind]:
    if http_status in BOLETA_UPLOAD_HTTP:
        return BOLETA_UPLOAD_HTTP[http_status]
    if 200 <= http_status < 300:
        return ("envío recibido", Kind.OK)
    return (f"HTTP {http_status} no documentado", Kind.UNKNOWN)


def boleta_estado_answer(estado: str) -> tuple[str, EnvioKind, str]:
    return BOLETA_ESTADO.get(estado) or ("estado no documentado del envío de boletas", EnvioKind.UNKNOWN, "")


# --- reading a stored reason back (`dtesync retry`) -----------------------------------------------------
_STORED: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Kind]]] = [
    (re.compile(r"\bSTATUS (\S+?):"), lambda m: upload_answer(m.group(1)).kind),
    (re.compile(r"(?:GetTokenFromSeed|token) ESTADO (\S+?):"), lambda m: token_answer(m.group(1)).kind),
    (re.compile(r"(?:CrSeed|semilla) ESTADO (\S+?):"), lambda m: seed_answer(m.group(1)).kind),
    (re.compile(r"^HTTP (\d{3})\b"), lambda m: Kind.UNKNOWN),
    (re.compile(r"estado desconocido|no documentad"), lambda m: Kind.UNKNOWN),
    (re.compile(r"SII_AUTH_FAILED|UPLINK_AUTH|certificado"), lambda m: Kind.INSTALLATION),
]


def stored_reason_kind(reason: str) -> Kind:
    """The class of a `rejected_sii` reason stored by an earlier version: VERDICT when it
    really was the SII's decision about the document, anything else when it was not (a
    certificate, enrolment or permission problem, or an answer that decided nothing)."""
    for pattern, kind in _STORED:
        m = pattern.search(reason or "")
        if m:
            found = kind(m)
            return Kind.VERDICT if found is Kind.OK else found
    return Kind.VERDICT
