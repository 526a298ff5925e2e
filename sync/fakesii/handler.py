"""fake-sii's HTTP side: routing, network faults, and each SII service's answer in the SII's
own shape (SOAP services and their WSDL, DTEUpload, the boleta REST API); the provider API
lives in provider.py."""

from __future__ import annotations

import re
import time
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from sync.fakesii import multipart
from sync.fakesii.provider import ProviderApi
from sync.fakesii.wsdl import SERVICES, wsdl
from sync.uplink import soap
from sync.uplink.answers import EST_DTE, EST_UP, seed_answer, upload_answer

IN_PROCESS_SEQ = ("SOK", "CRT", "FOK", "PDR")
DTE_GLOSA = {"DOK": "Documento Recibido por el SII. Datos Coinciden con los Registrados.",
             "DNK": "Documento Recibido por el SII pero Datos NO Coinciden con los registrados.",
             "FAU": "Documento No Recibido por el SII."}
ERR_CODE = {"DOK": "0", "DNK": "1", "FAU": "3", "FNA": "4", "FAN": "5", "EMP": "6", "TMD": "10", "TMC": "11",
            "MMD": "12", "MMC": "13", "AND": "14", "ANC": "15"}
# What a browser (or a session the SII no longer knows) gets from the upload CGI.
HTML_PAGE = ("<html><head><title>SII - Servicio de Impuestos Internos</title></head><body>"
             "<h3>Su sesi&oacute;n ha expirado o no est&aacute; autenticado.</h3>"
             "<p>Para continuar ingrese nuevamente con su certificado digital.</p></body></html>").encode("iso-8859-1")


def _rest_error(reason: str) -> dict[str, Any]:
    """"DTE-3-101 Firma ..." -> the REST error object {seccion, linea, nivel, codigo, descripcion, detalle}."""
    code, _, text = reason.partition(" ")
    seccion, nivel, codigo = (code.split("-") + ["0", "0"])[:3]
    return {"seccion": seccion, "linea": 0, "nivel": int(nivel or 0) if nivel.isdigit() else 0,
            "codigo": int(codigo or 0) if codigo.isdigit() else 0, "descripcion": text, "detalle": None}


def _date(text: str) -> date | None:
    """FechaEmisionDte as the manual says (DDMMAAAA) or as clients send it (DD-MM-AAAA)."""
    digits = re.sub(r"\D", "", text or "")
    try:
        return date(int(digits[4:8]), int(digits[2:4]), int(digits[0:2])) if len(digits) == 8 else None
    except ValueError:
        return None


class Handler(ProviderApi):
    def _fault(self, group: str, *, upload: bool = False) -> tuple[str | None, bytes | None]:
        """Apply a network fault; returns (fault, body read) when the handler must go on."""
        fault = self.fake.network_fault(group)
        if fault is None:
            return None, None
        if fault == "error500":
            self._body()
            self._send(500, b"<html><body>500 Internal Server Error</body></html>", "text/html")
            return "handled", None
        if fault == "reset":
            n = int(self.headers.get("Content-Length") or 0)
            if upload and n > 1:
                self.rfile.read(n // 2)
            self._abort()
            return "handled", None
        body = self._body()  # a timeout: file it first (timeout_after) or not, then hold the line
        return ("timeout_after" if upload and fault == "timeout_after" else "timeout"), body

    def _stall(self) -> None:
        time.sleep(self.fake.faults.stall)
        self._abort()

    def _rate_limited(self) -> bool:
        if self.fake.rate.allow():
            return False
        b = self.fake.behaviour
        self._body()
        self._json(b.rate_limit_status, {"error": "demasiadas solicitudes"},
                   {"Retry-After": f"{b.retry_after:g}", "X-Retry-After": f"{b.retry_after:g}"})
        return True

    # --- routing ---------------------------------------------------------------------------------
    def do_GET(self) -> None:
        try:
            self._get()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:
        try:
            self._post()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _get(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        if path == "/fake/stats":
            return self._json(200, self.fake.stats())
        m = re.fullmatch(r"/DTEWS/(\w+)\.jws", path)
        if m and m.group(1) in SERVICES and url.query.upper() == "WSDL":
            self.fake.wsdl_served[m.group(1)] += 1
            location = f"http://{self.headers.get('Host') or f'{self.fake.host}:{self.fake.port}'}{path}"
            return self._send(200, wsdl(m.group(1), location))
        group = "provider" if path.startswith("/provider/") else "auth" if path.endswith("semilla") else "query"
        fault, _ = self._fault(group)
        if fault == "handled":
            return None
        if fault:
            return self._stall()
        if path == "/recursos/v1/boleta.electronica.semilla":
            return self._seed_rest()
        if path.startswith("/recursos/v1/") and self._rate_limited():
            return None
        m = re.fullmatch(r"/recursos/v1/boleta\.electronica\.envio/(\d+)-([\dkK])-(\d+)", path)
        if m:
            return self._boleta_estado(f"{m.group(1)}-{m.group(2).upper()}", m.group(3))
        m = re.fullmatch(r"/recursos/v1/boleta\.electronica/(\d+)-([\dkK])-(\d+)-(\d+)/estado", path)
        if m:
            return self._boleta_documento(f"{m.group(1)}-{m.group(2).upper()}", int(m.group(3)), int(m.group(4)))
        m = re.fullmatch(r"/provider/v1/documents/([\w-]+)", path)
        if m:
            return self._provider_status(m.group(1))
        self._send(404, b"not found", "text/plain")

    def _post(self) -> None:
        path = urlsplit(self.path).path
        routes = {
            "/DTEWS/CrSeed.jws": ("auth", self._soap),
            "/DTEWS/GetTokenFromSeed.jws": ("auth", self._soap),
            "/DTEWS/QueryEstUp.jws": ("query", self._soap),
            "/DTEWS/QueryEstDte.jws": ("query", self._soap),
            "/cgi_dte/UPL/DTEUpload": ("upload", self._upload),
            "/recursos/v1/boleta.electronica.token": ("auth", self._boleta_token),
            "/recursos/v1/boleta.electronica.envio": ("upload", self._upload),
            "/provider/v1/documents": ("provider", self._provider_submit),
        }
        if path not in routes:
            self._body()
            return self._send(404, b"not found", "text/plain")
        group, handler = routes[path]
        upload = group in ("upload", "provider")
        fault, body = self._fault(group, upload=upload)
        if fault == "handled":
            return None
        if fault == "timeout":
            return self._stall()
        if fault == "timeout_after":  # filed, but the answer never arrives
            handler(path, body or b"", respond=False)
            return self._stall()
        if path == "/recursos/v1/boleta.electronica.envio" and self._rate_limited():
            return None
        handler(path, self._body(), respond=True)

    # --- SOAP ------------------------------------------------------------------------------------
    def _soap(self, path: str, body: bytes, respond: bool = True) -> None:
        try:
            op, params = soap.parse_request(body)
        except (ValueError, etree.XMLSyntaxError) as exc:
            return self._send(500, soap.fault(f"bad SOAP request: {exc}"))
        ns = f"https://{self.headers.get('Host', 'localhost')}{path}"
        f = self.fake
        first = f.behaviour.body_first
        if op == "getSeed":
            forced = f.forced.take("seed")
            if forced is not None:
                inner = soap.respuesta([("ESTADO", forced), ("GLOSA", seed_answer(forced).meaning)])
            else:
                inner = soap.respuesta([("ESTADO", "00")], [("SEMILLA", f.new_seed())], body_first=first)
        elif op == "getToken":
            estado, glosa, token = f.token_from_signed_seed(params.get("pszXml", "").encode("utf-8"), "soap")
            inner = soap.respuesta([("ESTADO", estado), ("GLOSA", glosa)], [("TOKEN", token)] if token else None,
                                   body_first=first)
        elif op == "getEstUp":
            inner = self._est_up(params)
        elif op == "getEstDte":
            inner = self._est_dte(params)
        elif op.startswith("getVersion"):
            inner = "1"
        else:
            return self._send(500, soap.fault(f"no such operation {op}"))
        if respond:
            self._send(200, soap.response(op, ns, inner))

    def _num(self) -> str:
        return f"{self.fake._track % 1000} ({datetime.now():%Y/%m/%d %H:%M:%S})"

    def _est_up(self, p: dict[str, str]) -> str:
        f, num = self.fake, self._num()
        rut, code = f.token_rut(p.get("Token") or self._cookie_token(), "soap")
        if rut is None:
            return soap.respuesta([("ESTADO", code), ("GLOSA", EST_UP[code][0])])
        forced = f.forced.take("est_up")
        if forced is not None:
            extra = [("ERR_CODE", "2"), ("SQL_CODE", ""), ("SRV_CODE", "")] if forced == "-11" else []
            return soap.respuesta([("ESTADO", forced), ("GLOSA", EST_UP.get(forced, ("Estado forzado",))[0]), *extra,
                                   ("NUM_ATENCION", num)])
        track = p.get("TrackId", "")
        rec = f.envio_estado(track, f"{p.get('RutCompania')}-{p.get('DvCompania', '').upper()}")
        if rec is None:  # ERR_CODE 1: "El envío no es de la Empresa, faltan parámetros de entrada"
            return soap.respuesta([("ESTADO", "-11"), ("ERR_CODE", "1"), ("SQL_CODE", ""), ("SRV_CODE", "")],
                                  extra=f"<NUM_ATENCION>{num}</NUM_ATENCION>")
        now = time.monotonic()
        if now < rec.received_at + (rec.ready_at - rec.received_at) / 2:  # not filed yet: "Error de Proceso"
            return soap.respuesta([("ESTADO", "-11"), ("ERR_CODE", "2"), ("SQL_CODE", ""), ("SRV_CODE", "")],
                                  extra=f"<NUM_ATENCION>{num}</NUM_ATENCION>")
        if now < rec.ready_at or rec.polls_ready <= f.processing_polls:
            st = IN_PROCESS_SEQ[min(rec.polls - 1, len(IN_PROCESS_SEQ) - 1)]
            return soap.respuesta([("TRACKID", track), ("ESTADO", st), ("GLOSA", EST_UP[st][0]), ("NUM_ATENCION", num)])
        if rec.estado_final != "EPR":
            return soap.respuesta([("TRACKID", track), ("ESTADO", rec.estado_final), ("GLOSA", rec.glosa),
                                   ("NUM_ATENCION", num)])
        body: list[tuple[str, str]] = []
        for tipo in sorted({d.tipo for d in rec.docs}):
            ds = [d for d in rec.docs if d.tipo == tipo]
            body += [("TIPO_DOCTO", str(tipo)), ("INFORMADOS", str(len(ds))),
                     ("ACEPTADOS", str(sum(d.estado in ("DOK", "RPR") for d in ds))),
                     ("RECHAZADOS", str(sum(d.estado == "RCH" for d in ds))),
                     ("REPAROS", str(sum(d.estado == "RPR" for d in ds)))]
        return soap.respuesta([("TRACKID", track), ("ESTADO", "EPR"), ("GLOSA", "Envio Procesado")],
                              body + [("NUM_ATENCION", num)])

    def _est_dte(self, p: dict[str, str]) -> str:
        f = self.fake
        rut, code = f.token_rut(p.get("Token") or self._cookie_token(), "soap")
        if rut is None:
            return soap.respuesta([("ESTADO", code), ("GLOSA", EST_DTE[code][0])])
        st = f.forced.take("est_dte")
        if st is None:
            try:
                company = f"{int(p['RutCompania'])}-{p['DvCompania'].upper()}"
                receptor = f"{int(p['RutReceptor'])}-{p['DvReceptor'].upper()}"
                st = f.doc_known(company, int(p["TipoDte"]), int(p["FolioDte"]), int(p["MontoDte"]),
                                 _date(p.get("FechaEmisionDte", "")), receptor)
            except (KeyError, ValueError):
                return soap.respuesta([("ESTADO", "-3"), ("GLOSA", "ERROR RETORNO")])
        meaning = EST_DTE.get(st, ("Estado forzado",))[0]
        received = st not in ("FAU", "FNA", "FAN", "EMP")
        return soap.respuesta([("ESTADO", st), ("GLOSA", "DTE Recibido" if received else "DTE No Recibido"),
                               ("ERR_CODE", ERR_CODE.get(st, "")), ("GLOSA_ERR", meaning),
                               ("NUM_ATENCION", self._num())])

    # --- uploads -----------------------------------------------------------------------------------
    def _upload(self, path: str, body: bytes, respond: bool = True) -> None:
        f = self.fake
        boleta = "boleta" in path
        kind = "boleta" if boleta else "dte"
        token = self._cookie_token()
        if not boleta:
            if f.behaviour.require_prog_ua and "PROG 1.0" not in self.headers.get("User-Agent", ""):
                return self._html() if respond else None  # the browser's answer: no RECEPCIONDTE
            forced = f.forced.take("upload") if respond else None  # a lost answer answers nothing
            if forced == "html" or (f.behaviour.dead_session == "html" and f.token_rut(token, "soap")[0] is None):
                return self._html() if respond else None
        else:
            forced = f.forced.take("boleta_upload")
            if forced is not None:
                return self._json(int(forced), {"error": "respuesta forzada"}) if respond else None
        declared = int(self.headers.get("Content-Length") or 0)
        try:
            if len(body) != declared:
                raise multipart.MultipartError("3", "tamaño distinto al declarado")
            parts = multipart.parse(body, self.headers.get("Content-Type", ""))
            if not boleta and forced is None:
                forced = next((code for code, rate in f.faults.status.items() if f._roll(rate)), None)
            status, track, detail = (forced, None, ["STATUS forzado por fake-sii"]) if forced else \
                f.receive(parts, token, kind)
        except multipart.MultipartError as exc:
            status, track, detail = exc.status, None, [str(exc)]
        if not respond:
            return None
        if boleta:
            return self._boleta_upload_answer(status, track, detail, parts if status == "0" else None)
        x = etree.Element("RECEPCIONDTE")
        try:
            etree.SubElement(x, "RUTSENDER").text = f"{parts['rutSender'].data.decode()}-{parts['dvSender'].data.decode()}"
            etree.SubElement(x, "RUTCOMPANY").text = f"{parts['rutCompany'].data.decode()}-{parts['dvCompany'].data.decode()}"
            etree.SubElement(x, "FILE").text = parts["archivo"].filename or ""
        except (KeyError, UnboundLocalError, UnicodeDecodeError):
            pass
        etree.SubElement(x, "TIMESTAMP").text = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        etree.SubElement(x, "STATUS").text = status
        if track:
            etree.SubElement(x, "TRACKID").text = track
        if status != "0" and detail:
            det = etree.SubElement(x, "DETAIL")
            for d in detail:
                etree.SubElement(det, "ERROR").text = d
        self._send(200, b'<?xml version="1.0" ?>\n' + etree.tostring(x, encoding="UTF-8"), "text/html")

    def _html(self) -> None:
        with self.fake._lock:
            self.fake.html_pages += 1
        self._send(200, HTML_PAGE, "text/html; charset=ISO-8859-1")

    def _boleta_upload_answer(self, status: str, track: str | None, detail: list[str], parts: Any) -> None:
        if status == "5":
            return self._json(401, {"error": "No está autenticado"})
        if status != "0" or track is None:
            return self._json(400, {"error": upload_answer(status).meaning, "detalle": detail})
        rec = self.fake.envios[track]
        self._json(200, {"rut_emisor": rec.company, "rut_envia": rec.sender, "trackid": int(track),
                         "fecha_recepcion": datetime.now().strftime("%Y-%m-%d %H:%M:%S"), "estado": "REC",
                         "file": parts["archivo"].filename})

    # --- boleta REST -------------------------------------------------------------------------------
    def _seed_rest(self) -> None:
        f = self.fake
        forced = f.forced.take("seed")
        if forced is not None:
            return self._send(200, soap.respuesta([("ESTADO", forced), ("GLOSA", seed_answer(forced).meaning)]).encode())
        self._send(200, soap.respuesta([("ESTADO", "00")], [("SEMILLA", f.new_seed())],
                                       body_first=f.behaviour.body_first).encode())

    def _boleta_token(self, path: str, body: bytes, respond: bool = True) -> None:
        estado, glosa, token = self.fake.token_from_signed_seed(body, "rest")
        if respond:
            self._send(200, soap.respuesta([("ESTADO", estado), ("GLOSA", glosa)], [("TOKEN", token)] if token else None,
                                           body_first=self.fake.behaviour.body_first).encode())

    def _forced_http(self, service: str) -> str | None:
        forced = self.fake.forced.take(service)
        if forced is not None and forced.startswith("http:"):
            self._json(int(forced[5:]), {"error": "respuesta forzada"},
                       {"Retry-After": f"{self.fake.behaviour.retry_after:g}"})
            return "handled"
        return forced

    def _boleta_estado(self, company: str, track: str) -> None:
        f = self.fake
        if f.token_rut(self._cookie_token(), "rest")[0] is None:
            return self._json(401, {"error": "No está autenticado"})
        forced = self._forced_http("boleta_estado")
        if forced == "handled":
            return None
        rec = f.envio_estado(track, company)
        if rec is None or rec.kind != "boleta":
            return self._json(404, {"error": "trackid no encontrado"})
        base = {"rut_emisor": rec.company, "rut_envia": rec.sender, "trackid": int(track),
                "fecha_recepcion": datetime.now().strftime("%d/%m/%Y %H:%M:%S")}
        if forced is not None:
            return self._json(200, {**base, "estado": forced})
        if time.monotonic() < rec.ready_at or rec.polls_ready <= f.processing_polls:
            return self._json(200, {**base, "estado": "REC"})
        if rec.estado_final != "EPR":
            return self._json(200, {**base, "estado": rec.estado_final, "estadistica": [], "detalle_rep_rech": []})
        stats = [{"tipo": t, "informados": sum(d.tipo == t for d in rec.docs),
                  "aceptados": sum(d.tipo == t and d.estado in ("DOK", "RPR") for d in rec.docs),
                  "rechazados": sum(d.tipo == t and d.estado == "RCH" for d in rec.docs),
                  "reparos": sum(d.tipo == t and d.estado == "RPR" for d in rec.docs)} for t in sorted({d.tipo for d in rec.docs})]
        detail = [{"tipo": d.tipo, "folio": d.folio, "estado": d.estado,
                   "descripcion": "Dte Rechazado" if d.estado == "RCH" else "Dte con Reparos",
                   "error": [_rest_error(d.reason)]}
                  for d in rec.docs if d.estado != "DOK"]
        self._json(200, {**base, "estado": "EPR", "estadistica": stats, "detalle_rep_rech": detail})

    def _boleta_documento(self, company: str, tipo: int, folio: int) -> None:
        f = self.fake
        if f.token_rut(self._cookie_token(), "rest")[0] is None:
            return self._json(401, {"error": "No está autenticado"})
        forced = self._forced_http("boleta_doc")
        if forced == "handled":
            return None
        q = parse_qs(urlsplit(self.path).query)

        def one(k: str) -> str | None:
            return q[k][0] if k in q else None

        receptor = f"{one('rut_receptor')}-{(one('dv_receptor') or '').upper()}" if one("rut_receptor") else None
        st = forced or f.doc_known(company, tipo, folio, int(one("monto") or 0) if one("monto") else None,
                                   _date(one("fechaEmision") or ""), receptor)
        meaning = EST_DTE.get(st, ("Estado forzado",))[0]
        self._json(404 if st == "FAU" else 200, {"codigo": st, "descripcion": meaning})
