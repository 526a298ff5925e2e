"""fake-sii: a faithful SII-compatible endpoint on loopback, for the demo, the tests and
integrators without certification access.

It speaks the SII's formats (sync.uplink.soap for the SOAP dialect, the DTEUpload multipart
and RECEPCIONDTE, the boleta REST JSON) and checks what the SII checks: the signed seed
(XMLDSig with our independent verifier, Reference URI="" + enveloped transform, KeyValue =
certificate key), the TOKEN cookie, the RUTs of the multipart against the token and the
Carátula, the envelope against the official XSD, every signature and every TED. It also
implements the provider API of docs/uplink-http.md.

It remembers what it accepted (in memory, optionally also as files in a folder), so tests can
assert that each folio was accepted exactly once, and it injects faults on demand: stalls
past the client's timeout (half of them after processing the upload: the dangerous case),
connections reset mid-upload, HTTP 500, chosen DTEUpload STATUS codes, rejections and
objections of single documents.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from sync import safexml, schema
from sync.fakesii import multipart
from sync.rut import Rut, RutError
from sync.signing.certificate import rut_of
from sync.signing.xmldsig import ALG_ENVELOPED, verify_signatures
from sync.sii import DSIG_NS
from sync.timbre import verify_ted
from sync.uplink import soap

log = logging.getLogger("dtesync.fakesii")
_D = "{%s}" % DSIG_NS
UPLOAD_GLOSA = {"1": "El Sender no tiene permiso para enviar", "2": "Error en tamaño del archivo",
                "3": "Archivo cortado", "5": "No está autenticado", "6": "Empresa no autorizada a enviar archivos",
                "7": "Esquema Invalido", "8": "Firma del Documento", "9": "Sistema Bloqueado", "99": "Error Interno"}


@dataclass
class Faults:
    """Injected faults: rates are probabilities per request (per document for reject/objection)."""

    timeout: float = 0.0
    reset: float = 0.0
    error500: float = 0.0
    status: dict[str, float] = field(default_factory=dict)  # DTEUpload STATUS -> rate
    reject: float = 0.0
    objection: float = 0.0
    stall: float = 2.0  # seconds a "timeout" holds the connection
    groups: tuple[str, ...] = ("auth", "upload", "query", "provider")
    seed: int | None = None

    @classmethod
    def mixed(cls, rate: float, seed: int | None = None, **kw: Any) -> "Faults":
        """`rate` of requests fail: a third each timeouts, resets and 500s."""
        return cls(timeout=rate / 3, reset=rate / 3, error500=rate / 3, seed=seed, **kw)


@dataclass
class DocOutcome:
    tipo: int
    folio: int
    monto: int
    estado: str  # DOK (accepted) | RPR (objections) | RCH (rejected)
    reason: str = ""


@dataclass
class EnvioRecord:
    track_id: str
    kind: str  # dte | boleta
    company: str
    sender: str
    received_at: float
    estado_final: str  # EPR | RCT | RFR ...
    glosa: str
    docs: list[DocOutcome]
    polls: int = 0


class FakeSii:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
                 caf_keys: Mapping[int, Any] | None = None, processing_polls: int = 1, seed_ttl: float = 120.0,
                 token_ttl: float = 3600.0, provider_token: str | None = None, folder: Path | None = None,
                 max_upload: int = 50 * 1024 * 1024, provider_latency: float = 0.0) -> None:
        self.host, self.port = host, port
        self.faults = faults or Faults()
        self.caf_keys = dict(caf_keys or {})
        self.processing_polls, self.seed_ttl, self.token_ttl = processing_polls, seed_ttl, token_ttl
        self.provider_token = provider_token
        self.folder = Path(folder) if folder else None
        self.max_upload = max_upload
        self.provider_latency = provider_latency  # seconds between creating a provider document and answering
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.RLock()
        self._schema_lock = threading.Lock()
        self.seeds: dict[str, float] = {}
        self.tokens: dict[str, tuple[str, float, str]] = {}
        self.envios: dict[str, EnvioRecord] = {}
        self.accepted: dict[tuple[str, int, int], int] = {}  # (rut emisor, tipo, folio) -> times accepted
        self.accepted_monto: dict[tuple[str, int, int], int] = {}
        self.duplicates = 0
        self.upload_count = 0
        self.fault_count: dict[str, int] = {}
        self.provider_docs: dict[str, dict[str, Any]] = {}
        self.provider_by_key: dict[str, str] = {}
        self.provider_created = 0
        self.provider_submits: Counter[str] = Counter()  # POSTs per Idempotency-Key (retries included)
        self.provider_created_by_key: Counter[str] = Counter()  # documents created per key
        self.provider_created_by_doc: Counter[tuple[str, int, int]] = Counter()  # ... per (rut, tipo, folio)
        self.scripted: dict[str, list[str]] = {}  # group -> faults for its next requests, in order
        self._track = 1_000_000_000 + self._rng.randrange(10**6)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "FakeSii":
        handler = type("Handler", (_Handler,), {"fake": self})
        ThreadingHTTPServer.allow_reuse_address = True
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-sii", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket (clients then get 'connection refused'): the SII is down."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeSii":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- what tests assert on ---------------------------------------------------------------------
    def accepted_folios(self) -> dict[tuple[str, int, int], int]:
        with self._lock:
            return dict(self.accepted)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"uploads": self.upload_count, "envios": len(self.envios), "accepted": len(self.accepted),
                    "duplicates": self.duplicates, "faults": dict(self.fault_count),
                    "provider_created": self.provider_created}

    # --- faults ----------------------------------------------------------------------------------
    def _roll(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def script(self, group: str, *faults: str) -> None:
        """The next requests of `group` get these faults (timeout, timeout_after, reset, error500),
        then the random ones resume: deterministic scenarios for tests."""
        with self._lock:
            self.scripted.setdefault(group, []).extend(faults)

    def network_fault(self, group: str) -> str | None:
        f = self.faults
        with self._lock:
            if self.scripted.get(group):
                name = self.scripted[group].pop(0)
                self.fault_count[name] = self.fault_count.get(name, 0) + 1
                return name
        if group not in f.groups:
            return None
        with self._lock:
            x = self._rng.random()
        for name, rate in (("timeout", f.timeout), ("reset", f.reset), ("error500", f.error500)):
            if x < rate:
                with self._lock:
                    self.fault_count[name] = self.fault_count.get(name, 0) + 1
                return name
            x -= rate
        return None

    # --- auth ------------------------------------------------------------------------------------
    def new_seed(self) -> str:
        with self._lock:
            seed = f"{self._rng.randrange(10**11, 10**12):012d}"
            self.seeds[seed] = time.monotonic()
            return seed

    def token_from_signed_seed(self, xml: bytes, kind: str) -> tuple[str, str, str | None]:
        """(ESTADO, GLOSA, TOKEN) as GetTokenFromSeed answers (manual v1.9 §5.2.2)."""
        try:
            root = safexml.fromstring(xml.strip())
        except etree.XMLSyntaxError:
            return "02", "XML Invalido (SAXException), funcion valSignedXml", None
        sig = root.find(f"{_D}Signature")
        if sig is None:
            return "04", "XML Invalido, elemento “Signature” no existe, función valSignedXml", None
        seed = root.findtext("item/Semilla") or root.findtext(".//Semilla")
        if not seed:
            return "06", "XML Invalido, elemento “Semilla” no existe, función getSeed", None
        ref = sig.find(f"{_D}SignedInfo/{_D}Reference")
        transforms = [t.get("Algorithm") for t in sig.iterfind(f"{_D}SignedInfo/{_D}Reference/{_D}Transforms/{_D}Transform")]
        if ref is None or ref.get("URI", "") != "" or ALG_ENVELOPED not in transforms:
            return "05", "XML Invalido, firma invalida, funcion valSignedXml", None
        cert_text = sig.findtext(f"{_D}KeyInfo/{_D}X509Data/{_D}X509Certificate")
        if not cert_text:
            return "11", "XML Invalido, elemento “Certificate” no existe, función getCertificado", None
        results = verify_signatures(root)
        if not results or not results[0].ok:
            return "05", "XML Invalido, firma invalida, funcion valSignedXml", None
        if results[0].key_consistent is False:
            return "21", "Firma invalida (La llave pública no coincide con la del certificado)", None
        rut = self._cert_rut(cert_text)
        if rut is None:
            return "-07", "Error (12) parse ERROR en Validación del RUT", None
        with self._lock:
            born = self.seeds.pop(seed.strip(), None)
            if born is None:
                return "08", "NO Existe SEED", None
            if time.monotonic() - born > self.seed_ttl:
                return "08", "TIME-OUT DEL SEED", None
            token = hashlib.sha1(f"{seed}{self._rng.random()}".encode()).hexdigest()[:13].upper()
            self.tokens[token] = (str(rut), time.monotonic(), kind)
        return "00", "Token Creado", token

    @staticmethod
    def _cert_rut(b64: str) -> Rut | None:
        import base64

        from cryptography import x509

        try:
            return rut_of(x509.load_der_x509_certificate(base64.b64decode("".join(b64.split()))))
        except ValueError:
            return None

    def token_rut(self, token: str | None, kind: str) -> tuple[str | None, str]:
        """(rut, "") for a live token, (None, TOKEN code 001/002/003) otherwise."""
        if not token:
            return None, "001"
        with self._lock:
            entry = self.tokens.get(token)
        if entry is None or entry[2] != kind:
            return None, "003"
        if time.monotonic() - entry[1] > self.token_ttl:
            return None, "002"
        return entry[0], ""

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    # --- envelopes ------------------------------------------------------------------------------
    def receive(self, parts: dict[str, multipart.Part], token: str | None, kind: str) -> tuple[str, str | None, list[str]]:
        """Check an upload as the SII does; returns (STATUS, TRACKID, DETAIL errors)."""
        sender_rut, _ = self.token_rut(token, "soap" if kind == "dte" else "rest")
        if sender_rut is None:
            return "5", None, []
        try:
            sender = Rut.parse(f"{parts['rutSender'].data.decode()}-{parts['dvSender'].data.decode()}")
            company = Rut.parse(f"{parts['rutCompany'].data.decode()}-{parts['dvCompany'].data.decode()}")
            archivo = parts["archivo"]
        except (KeyError, UnicodeDecodeError, RutError) as exc:
            return "2", None, [f"parámetros del upload: {exc}"]
        if str(sender) != sender_rut:
            return "1", None, [f"rutSender {sender} no es el del certificado autenticado {sender_rut}"]
        if not archivo.data or len(archivo.data) > self.max_upload:
            return "2", None, []
        try:
            root = safexml.fromstring(archivo.data)
        except etree.XMLSyntaxError as exc:
            return "7", None, [str(exc)]
        expected = "EnvioBOLETA" if kind == "boleta" else "EnvioDTE"
        if etree.QName(root).localname != expected:
            return "7", None, [f"se esperaba {expected}, llegó {etree.QName(root).localname}"]
        with self._schema_lock:
            errors = schema.schema_errors(root)
        if errors:
            return "7", None, errors[:10]
        sigs = verify_signatures(root)
        by_ref = {r.reference: r for r in sigs}
        set_sig = by_ref.get("#" + (root.find("{*}SetDTE").get("ID") or ""))
        if set_sig is None or not set_sig.ok:
            return "8", None, ["firma del SetDTE inválida"]
        car = root.find("{*}SetDTE/{*}Caratula")
        estado, glosa = "EPR", "Envio Procesado"
        if car.findtext("{*}RutEmisor") != str(company) or car.findtext("{*}RutEnvia") != str(sender):
            estado, glosa = "RCT", "Rechazado por Error en Carátula"
        docs = [] if estado != "EPR" else [self._check_dte(dte, by_ref, str(company)) for dte in root.iter("{*}DTE")]
        with self._lock:
            self._track += 1
            track = str(self._track) if kind == "dte" else str(10**14 + self._track)  # 15 digits (instructivo)
            self.envios[track] = EnvioRecord(track, kind, str(company), str(sender), time.time(), estado, glosa, docs)
            self.upload_count += 1
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / f"{kind}-{track}.xml").write_bytes(archivo.data)
        return "0", track, []

    def _check_dte(self, dte: etree._Element, by_ref: dict, company: str) -> DocOutcome:
        doc = dte.find("{*}Documento")
        tipo = int(doc.findtext("{*}Encabezado/{*}IdDoc/{*}TipoDTE") or 0)
        folio = int(doc.findtext("{*}Encabezado/{*}IdDoc/{*}Folio") or 0)
        monto = int(doc.findtext("{*}Encabezado/{*}Totales/{*}MntTotal") or 0)
        out = DocOutcome(tipo, folio, monto, "DOK")
        sig = by_ref.get("#" + (doc.get("ID") or ""))
        ted = doc.find("{*}TED")
        problems = verify_ted(ted, extra_keys=self.caf_keys) if ted is not None else ["sin TED"]
        key = (company, tipo, folio)
        if sig is None or not sig.ok:
            out.estado, out.reason = "RCH", "DTE-3-101 Firma del DTE inválida"
        elif problems:
            out.estado, out.reason = "RCH", f"TED-2-510 Timbre inválido: {problems[0]}"
        elif doc.findtext("{*}Encabezado/{*}Emisor/{*}RUTEmisor") != company:
            out.estado, out.reason = "RCH", "DTE-3-100 RUT emisor distinto al de la carátula"
        elif self._roll(self.faults.reject):
            out.estado, out.reason = "RCH", "DTE-3-505 Rechazo simulado por fake-sii"
        with self._lock:
            if out.estado == "DOK" and self.accepted.get(key):
                self.duplicates += 1
                out.estado, out.reason = "RCH", "DTE-3-102 DTE Repetido (ya recibido)"
            elif out.estado == "DOK":
                if self._roll(self.faults.objection):
                    out.estado, out.reason = "RPR", "REF-3-750 Reparo simulado por fake-sii"
                self.accepted[key] = self.accepted.get(key, 0) + 1
                self.accepted_monto[key] = monto
        return out

    def envio_estado(self, track: str, company: str) -> EnvioRecord | None:
        with self._lock:
            rec = self.envios.get(track)
            if rec is None or rec.company != company:
                return None
            rec.polls += 1
            return rec

    def doc_known(self, company: str, tipo: int, folio: int, monto: int | None) -> str:
        with self._lock:
            if (company, tipo, folio) not in self.accepted:
                return "FAU"
            if monto is not None and self.accepted_monto.get((company, tipo, folio)) != monto:
                return "DNK"
            return "DOK"


IN_PROCESS_SEQ = ("SOK", "CRT", "FOK", "PDR")


def _rest_error(reason: str) -> dict[str, Any]:
    """"DTE-3-101 Firma ..." -> the REST error object {seccion, linea, nivel, codigo, descripcion, detalle}."""
    code, _, text = reason.partition(" ")
    seccion, nivel, codigo = (code.split("-") + ["0", "0"])[:3]
    return {"seccion": seccion, "linea": 0, "nivel": int(nivel or 0), "codigo": int(codigo or 0),
            "descripcion": text, "detalle": None}
DTE_GLOSA = {"DOK": "Documento Recibido por el SII. Datos Coinciden con los Registrados.",
             "DNK": "Documento Recibido por el SII pero Datos NO Coinciden con los registrados.",
             "FAU": "Documento No Recibido por el SII."}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSii
    protocol_version = "HTTP/1.1"
    server_version = "fake-sii/1.0"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet; use logging at debug level
        log.debug("fake-sii %s", fmt % args)

    # --- plumbing ------------------------------------------------------------------------------
    def _send(self, code: int, body: bytes, ctype: str = "text/xml; charset=UTF-8", headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: Any) -> None:
        self._send(code, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json; charset=UTF-8")

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _cookie_token(self) -> str | None:
        m = re.search(r"TOKEN=([^;\s]+)", self.headers.get("Cookie", ""))
        return m.group(1) if m else None

    def _abort(self) -> None:
        """Drop the connection with a TCP reset, no answer."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

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
        body = self._body()  # timeout: maybe process, then hold the line past the client's patience
        if fault == "timeout_after":  # scripted
            return ("timeout_after" if upload else "timeout"), body
        return ("timeout_after" if upload and self.fake._roll(0.5) else "timeout"), body

    def _stall(self) -> None:
        time.sleep(self.fake.faults.stall)
        self._abort()

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
        path = urlsplit(self.path).path
        if path == "/fake/stats":
            return self._json(200, self.fake.stats())
        group = "provider" if path.startswith("/provider/") else "auth" if path.endswith("semilla") else "query"
        fault, _ = self._fault(group)
        if fault == "handled":
            return None
        if fault:
            return self._stall()
        if path == "/recursos/v1/boleta.electronica.semilla":
            seed = self.fake.new_seed()
            return self._send(200, soap.respuesta([("ESTADO", "00")], [("SEMILLA", seed)]).encode())
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
        if fault == "timeout_after":  # processed, but the answer never arrives
            handler(path, body, respond=False)
            return self._stall()
        handler(path, self._body(), respond=True)

    # --- SOAP ------------------------------------------------------------------------------------
    def _soap(self, path: str, body: bytes, respond: bool = True) -> None:
        try:
            op, params = soap.parse_request(body)
        except (ValueError, etree.XMLSyntaxError) as exc:
            return self._send(500, soap.fault(f"bad SOAP request: {exc}"))
        ns = f"https://{self.headers.get('Host', 'localhost')}{path}"
        f = self.fake
        if op == "getSeed":
            inner = soap.respuesta([("ESTADO", "00")], [("SEMILLA", f.new_seed())])
        elif op == "getToken":
            estado, glosa, token = f.token_from_signed_seed(params.get("pszXml", "").encode("utf-8"), "soap")
            inner = soap.respuesta([("ESTADO", estado), ("GLOSA", glosa)], [("TOKEN", token)] if token else None)
        elif op == "getEstUp":
            inner = self._est_up(params)
        elif op == "getEstDte":
            inner = self._est_dte(params)
        else:
            return self._send(500, soap.fault(f"no such operation {op}"))
        if respond:
            self._send(200, soap.response(op, ns, inner))

    def _est_up(self, p: dict[str, str]) -> str:
        rut, code = self.fake.token_rut(p.get("Token") or self._cookie_token(), "soap")
        if rut is None:
            return soap.respuesta([("ESTADO", code), ("GLOSA", {"001": "Cookie Inactivo", "002": "Token Inactivo",
                                                                "003": "Token No Existe"}[code])])
        track = p.get("TrackId", "")
        rec = self.fake.envio_estado(track, f"{p.get('RutCompania')}-{p.get('DvCompania', '').upper()}")
        num = f"{self.fake._track % 1000} ({datetime.now():%Y/%m/%d %H:%M:%S})"
        if rec is None:
            return soap.respuesta([("ESTADO", "-11"), ("ERR_CODE", "1"), ("SQL_CODE", ""), ("SRV_CODE", "")],
                                  extra=f"<NUM_ATENCION>{num}</NUM_ATENCION>")
        if rec.polls <= self.fake.processing_polls:
            st = IN_PROCESS_SEQ[min(rec.polls - 1, len(IN_PROCESS_SEQ) - 1)]
            return soap.respuesta([("TRACKID", track), ("ESTADO", st), ("GLOSA", "Envio en Proceso"), ("NUM_ATENCION", num)])
        if rec.estado_final != "EPR":
            return soap.respuesta([("TRACKID", track), ("ESTADO", rec.estado_final), ("GLOSA", rec.glosa),
                                   ("NUM_ATENCION", num)])
        body: list[tuple[str, str]] = []
        rech = sum(d.estado == "RCH" for d in rec.docs)
        rep = sum(d.estado == "RPR" for d in rec.docs)
        for tipo in sorted({d.tipo for d in rec.docs}):
            ds = [d for d in rec.docs if d.tipo == tipo]
            body += [("TIPO_DOCTO", str(tipo)), ("INFORMADOS", str(len(ds))),
                     ("ACEPTADOS", str(sum(d.estado == "DOK" for d in ds))),
                     ("RECHAZADOS", str(sum(d.estado == "RCH" for d in ds))),
                     ("REPAROS", str(sum(d.estado == "RPR" for d in ds)))]
        estado = "RCH" if rech == len(rec.docs) else "RPR" if rep and not rech else "EPR"
        glosa = {"RCH": "Rechazado", "RPR": "Aceptado con Reparos", "EPR": "Envio Procesado"}[estado]
        return soap.respuesta([("TRACKID", track), ("ESTADO", estado), ("GLOSA", glosa)],
                              body + [("NUM_ATENCION", num)])

    def _est_dte(self, p: dict[str, str]) -> str:
        rut, code = self.fake.token_rut(p.get("Token") or self._cookie_token(), "soap")
        if rut is None:
            return soap.respuesta([("ESTADO", code), ("GLOSA", "Token Inactivo")])
        try:
            company = f"{int(p['RutCompania'])}-{p['DvCompania'].upper()}"
            st = self.fake.doc_known(company, int(p["TipoDte"]), int(p["FolioDte"]), int(p["MontoDte"]))
        except (KeyError, ValueError):
            return soap.respuesta([("ESTADO", "-3"), ("GLOSA", "ERROR: parámetros")])
        return soap.respuesta([("ESTADO", st), ("GLOSA", "DTE Recibido" if st != "FAU" else "DTE No Recibido"),
                               ("ERR_CODE", {"DOK": "0", "DNK": "1", "FAU": "3"}[st]), ("GLOSA_ERR", DTE_GLOSA[st])])

    # --- uploads -----------------------------------------------------------------------------------
    def _upload(self, path: str, body: bytes, respond: bool = True) -> None:
        kind = "boleta" if "boleta" in path else "dte"
        token = self._cookie_token()
        declared = int(self.headers.get("Content-Length") or 0)
        try:
            if len(body) != declared:
                raise multipart.MultipartError("3", "tamaño distinto al declarado")
            parts = multipart.parse(body, self.headers.get("Content-Type", ""))
            forced = next((code for code, rate in self.fake.faults.status.items() if self.fake._roll(rate)), None)
            status, track, detail = (forced, None, ["STATUS forzado por fake-sii"]) if forced else \
                self.fake.receive(parts, token, kind)
        except multipart.MultipartError as exc:
            status, track, detail = exc.status, None, [str(exc)]
        if not respond:
            return None
        if kind == "boleta":
            if status == "5":
                return self._json(401, {"error": "No está autenticado"})
            if status != "0":
                return self._json(400, {"estado": "RCH", "codigo": status, "glosa": UPLOAD_GLOSA.get(status, "Error"),
                                        "detalle": detail})
            rec = self.fake.envios[track]
            return self._json(200, {"rut_emisor": rec.company, "rut_envia": rec.sender, "trackid": int(track),
                                    "fecha_recepcion": datetime.now().strftime("%Y-%m-%d %H:%M:%S"), "estado": "REC",
                                    "file": parts["archivo"].filename})
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

    # --- boleta REST -------------------------------------------------------------------------------
    def _boleta_token(self, path: str, body: bytes, respond: bool = True) -> None:
        estado, glosa, token = self.fake.token_from_signed_seed(body, "rest")
        if respond:
            self._send(200, soap.respuesta([("ESTADO", estado), ("GLOSA", glosa)],
                                           [("TOKEN", token)] if token else None).encode())

    def _boleta_estado(self, company: str, track: str) -> None:
        if self.fake.token_rut(self._cookie_token(), "rest")[0] is None:
            return self._json(401, {"error": "No está autenticado"})
        rec = self.fake.envio_estado(track, company)
        if rec is None or rec.kind != "boleta":
            return self._json(404, {"error": "trackid no encontrado"})
        base = {"rut_emisor": rec.company, "rut_envia": rec.sender, "trackid": int(track),
                "fecha_recepcion": datetime.fromtimestamp(rec.received_at).strftime("%d/%m/%Y %H:%M:%S")}
        if rec.polls <= self.fake.processing_polls:
            return self._json(200, {**base, "estado": "REC"})
        if rec.estado_final != "EPR":
            return self._json(200, {**base, "estado": rec.estado_final, "estadistica": [], "detalle_rep_rech": []})
        stats = [{"tipo": t, "informados": sum(d.tipo == t for d in rec.docs),
                  "aceptados": sum(d.tipo == t and d.estado == "DOK" for d in rec.docs),
                  "rechazados": sum(d.tipo == t and d.estado == "RCH" for d in rec.docs),
                  "reparos": sum(d.tipo == t and d.estado == "RPR" for d in rec.docs)} for t in sorted({d.tipo for d in rec.docs})]
        detail = [{"tipo": d.tipo, "folio": d.folio, "estado": d.estado,
                   "descripcion": "Dte Rechazado" if d.estado == "RCH" else "Dte con Reparos",
                   "error": [_rest_error(d.reason)]}
                  for d in rec.docs if d.estado != "DOK"]
        self._json(200, {**base, "estado": "EPR", "estadistica": stats, "detalle_rep_rech": detail})

    def _boleta_documento(self, company: str, tipo: int, folio: int) -> None:
        if self.fake.token_rut(self._cookie_token(), "rest")[0] is None:
            return self._json(401, {"error": "No está autenticado"})
        q = parse_qs(urlsplit(self.path).query)
        monto = int(q["monto"][0]) if "monto" in q else None
        st = self.fake.doc_known(company, tipo, folio, monto)
        if st == "FAU":
            return self._json(404, {"codigo": "FAU", "descripcion": DTE_GLOSA["FAU"]})
        self._json(200, {"codigo": st, "descripcion": DTE_GLOSA[st]})

    # --- provider API (docs/uplink-http.md) ---------------------------------------------------------
    def _provider_auth(self) -> bool:
        want = self.fake.provider_token
        return want is not None and self.headers.get("Authorization", "") == f"Bearer {want}"

    def _provider_submit(self, path: str, body: bytes, respond: bool = True) -> None:
        f = self.fake
        if not self._provider_auth():
            return self._json(401, {"error": "bad token"}) if respond else None
        key = self.headers.get("Idempotency-Key")
        if not key:
            return self._json(400, {"error": "Idempotency-Key required"}) if respond else None
        digest = hashlib.sha256(body).hexdigest()
        with f._lock:
            f.provider_submits[key] += 1
            known = f.provider_by_key.get(key)
            if known is not None:
                doc = f.provider_docs[known]
                if respond:
                    if doc["sha256"] != digest:
                        return self._json(409, {"error": "Idempotency-Key reused with another body"})
                    return self._json(200, {"id": known, "status": doc["status"]})
                return None
            pid = f"p{len(f.provider_docs) + 1:08d}"
            f.provider_by_key[key] = pid
            f.provider_docs[pid] = {"sha256": digest, "status": "processing", "polls": 0, "key": key}
            f.provider_created += 1
            f.provider_created_by_key[key] += 1
        try:
            root = safexml.fromstring(body)
            company = root.findtext("{*}SetDTE/{*}Caratula/{*}RutEmisor") or ""
            sender = root.findtext("{*}SetDTE/{*}Caratula/{*}RutEnvia") or ""
            kind = "boleta" if etree.QName(root).localname == "EnvioBOLETA" else "dte"
            parts = {
                "rutSender": multipart.Part("rutSender", None, {}, sender.split("-")[0].encode()),
                "dvSender": multipart.Part("dvSender", None, {}, sender.split("-")[-1].encode()),
                "rutCompany": multipart.Part("rutCompany", None, {}, company.split("-")[0].encode()),
                "dvCompany": multipart.Part("dvCompany", None, {}, company.split("-")[-1].encode()),
                "archivo": multipart.Part("archivo", f"{key}.xml", {}, body),
            }
            dte = root.find("{*}SetDTE/{*}DTE/{*}Documento/{*}Encabezado/{*}IdDoc")
            if dte is not None:
                with f._lock:
                    f.provider_created_by_doc[(company, int(dte.findtext("{*}TipoDTE") or 0),
                                               int(dte.findtext("{*}Folio") or 0))] += 1
            token = self._provider_session_token(sender, "soap" if kind == "dte" else "rest")
            status, track, detail = f.receive(parts, token, kind)
        except (etree.XMLSyntaxError, ValueError) as exc:
            status, track, detail = "7", None, [str(exc)]
        with f._lock:
            doc = f.provider_docs[pid]
            if status != "0":
                doc.update(status="rejected", messages=[f"STATUS {status}: {UPLOAD_GLOSA.get(status, '')}", *detail])
            else:
                doc["track_id"] = track
        if respond and f.provider_latency:
            time.sleep(f.provider_latency)  # a slow provider: clients may give up (or die) after creation
        if respond:
            self._json(201, {"id": pid, "status": f.provider_docs[pid]["status"]})

    def _provider_session_token(self, sender: str, kind: str) -> str:
        """The provider authenticates to the SII as the sender (its own business)."""
        f = self.fake
        with f._lock:
            token = f"PROV{kind.upper()}{hashlib.sha1(sender.encode()).hexdigest()[:9].upper()}"
            f.tokens[token] = (sender, time.monotonic(), kind)
        return token

    def _provider_status(self, pid: str) -> None:
        f = self.fake
        if not self._provider_auth():
            return self._json(401, {"error": "bad token"})
        with f._lock:
            doc = f.provider_docs.get(pid)
            if doc is None:
                return self._json(404, {"error": "unknown id"})
            doc["polls"] += 1
            out = {"id": pid, "status": doc["status"], "track_id": doc.get("track_id"), "messages": doc.get("messages", [])}
            if doc["status"] == "processing" and doc["polls"] > f.processing_polls:
                rec = f.envios.get(doc.get("track_id") or "")
                d = rec.docs[0] if rec and rec.docs else None
                if rec is None or rec.estado_final != "EPR" or d is None or d.estado == "RCH":
                    reason = d.reason if d else (rec.glosa if rec else "sin envío")
                    doc.update(status="rejected", messages=[reason])
                else:
                    doc.update(status="accepted" if d.estado == "DOK" else "accepted_with_objections",
                               messages=[d.reason] if d.reason else [])
                out.update(status=doc["status"], messages=doc.get("messages", []))
        self._json(200, out)
