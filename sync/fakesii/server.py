"""fake-sii: a faithful SII-compatible endpoint on loopback, for the demo, the tests and
integrators without certification access.

It speaks the SII's formats (sync.uplink.soap for the SOAP dialect, the WSDL at `?WSDL`, the
DTEUpload multipart and RECEPCIONDTE, the boleta REST JSON) and checks what the SII checks:
the signed seed (seed.py), the TOKEN cookie, the RUTs of the multipart against the token and
the Carátula, the envelope against the official XSD, every signature and every TED, repeated
folios ("DTE Repetido"), and the data of a per-document query (DNK). It behaves like the real
SII at its worst, each habit a switch (behaviour.Behaviour): processing delays during which
envíos and documents are invisible, sessions that die with an HTML page, the `PROG 1.0`
User-Agent rule, the body-first RESPUESTA, boleta rate limits. Forced answers
(`fake.forced.force(service, code)`) reach every documented code. It also implements the
provider API of docs/uplink-http.md (provider.py).

It remembers what it received (in memory, optionally also as files in a folder), so tests can
assert that each folio was uploaded once unless fake-sii said it did not hold it, and it
injects network faults on demand: stalls past the client's timeout (some after filing the
upload: the dangerous case), connections reset mid-upload, HTTP 500.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from lxml import etree

from sync import safexml, schema
from sync.fakesii import multipart
from sync.fakesii.behaviour import Behaviour, Faults, Forced, RateLimit, delay_of
from sync.fakesii.seed import SeedRefused, checked_seed
from sync.rut import Rut, RutError
from sync.signing.xmldsig import SignatureResult, verify_signatures
from sync.timbre import verify_ted

log = logging.getLogger("dtesync.fakesii")
UPLOAD_GLOSA = {"1": "El Sender no tiene permiso para enviar", "2": "Error en tamaño del archivo",
                "3": "Archivo cortado", "5": "No está autenticado", "6": "Empresa no autorizada a enviar archivos",
                "7": "Esquema Invalido", "8": "Firma del Documento", "9": "Sistema Bloqueado", "99": "Error Interno"}
DocKey = tuple[str, int, int]  # (rut emisor, tipo, folio)


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
    received_at: float  # time.monotonic()
    ready_at: float  # processing done: the result shows from here on
    estado_final: str  # EPR | RCT | RSC | RFR
    glosa: str
    docs: list[DocOutcome]
    polls: int = 0
    polls_ready: int = 0


@dataclass
class Filed:
    """A document the SII holds (accepted, or with objections), and what a query must match."""

    monto: int
    fch_emis: str  # YYYY-MM-DD
    receptor: str
    visible_at: float


class FakeSii:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
                 caf_keys: Mapping[int, Any] | None = None, processing_polls: int = 1, seed_ttl: float = 120.0,
                 token_ttl: float = 3600.0, provider_token: str | None = None, folder: Path | None = None,
                 max_upload: int = 50 * 1024 * 1024, provider_latency: float = 0.0,
                 behaviour: Behaviour | None = None) -> None:
        self.host, self.port = host, port
        self.faults = faults or Faults()
        self.behaviour = behaviour or Behaviour(processing_polls=processing_polls, token_ttl=token_ttl)
        self.caf_keys = dict(caf_keys or {})
        self.seed_ttl = seed_ttl
        self.provider_token = provider_token
        self.folder = Path(folder) if folder else None
        self.max_upload = max_upload
        self.provider_latency = provider_latency  # seconds between creating a provider document and answering
        self.forced = Forced()
        self.rate = RateLimit(self.behaviour.rate_limit)
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.RLock()
        self._schema_lock = threading.Lock()
        self.seeds: dict[str, float] = {}
        self.tokens: dict[str, tuple[str, float, str]] = {}
        self.envios: dict[str, EnvioRecord] = {}
        self.filed: dict[DocKey, Filed] = {}
        self.accepted: dict[DocKey, int] = {}  # times accepted (more than 1 would be a duplicate)
        self.accepted_monto: dict[DocKey, int] = {}
        self.uploads_by_doc: Counter[DocKey] = Counter()  # times a DTE arrived in a filed envío
        self.events: dict[DocKey, list[tuple[str, float]]] = {}  # ("upload" | "not_received", when)
        self.duplicates = 0  # "DTE Repetido" answers
        self.unseen_answers = 0  # "not received" answered for a document still being processed
        self.upload_count = 0
        self.html_pages = 0
        self.wsdl_served: Counter[str] = Counter()
        self.tokens_issued = 0
        self.token_refusals: Counter[str] = Counter()
        self.fault_count: dict[str, int] = {}
        self.provider_docs: dict[str, dict[str, Any]] = {}
        self.provider_by_key: dict[str, str] = {}
        self.provider_created = 0
        self.provider_submits: Counter[str] = Counter()  # POSTs per Idempotency-Key (retries included)
        self.provider_created_by_key: Counter[str] = Counter()  # documents created per key
        self.provider_created_by_doc: Counter[DocKey] = Counter()  # ... per (rut, tipo, folio)
        self.scripted: dict[str, list[str]] = {}  # group -> network faults for its next requests, in order
        self._track = 1_000_000_000 + self._rng.randrange(10**6)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def processing_polls(self) -> int:
        return self.behaviour.processing_polls

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        from sync.fakesii.handler import Handler

        handler = type("BoundHandler", (Handler,), {"fake": self})
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

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests assert on ---------------------------------------------------------------------
    def accepted_folios(self) -> dict[DocKey, int]:
        with self._lock:
            return dict(self.accepted)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"uploads": self.upload_count, "envios": len(self.envios), "accepted": len(self.accepted),
                    "duplicates": self.duplicates, "faults": dict(self.fault_count),
                    "provider_created": self.provider_created, "html_pages": self.html_pages,
                    "tokens_issued": self.tokens_issued, "token_refusals": dict(self.token_refusals),
                    "unseen_answers": self.unseen_answers, "rate_limited": self.rate.refused,
                    "forced": {f"{s}:{c}": n for (s, c), n in self.forced.used.items()},
                    "max_uploads_per_doc": max(self.uploads_by_doc.values(), default=0),
                    "dte_uploads": sum(self.uploads_by_doc.values()), "documents": len(self.uploads_by_doc)}

    def resent_without_cause(self) -> list[DocKey]:
        """Folios uploaded again without a "not received" answer since their previous upload."""
        bad = []
        with self._lock:
            for key, events in self.events.items():
                told = False
                uploads = 0
                for what, _ in events:
                    if what == "not_received":
                        told = True
                    elif uploads and not told:
                        bad.append(key)
                        break
                    else:
                        uploads += 1
                        told = False
        return bad

    # --- faults ----------------------------------------------------------------------------------
    def _roll(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def script(self, group: str, *faults: str) -> None:
        """The next requests of `group` get these network faults (timeout, timeout_after, reset,
        error500), then the random ones resume: deterministic scenarios for tests."""
        with self._lock:
            self.scripted.setdefault(group, []).extend(faults)

    def network_fault(self, group: str) -> str | None:
        """The fault for this request of `group`: a scripted one first, else a random one. A
        random upload timeout happens after filing (`timeout_after`) `faults.lost_answer` of the time."""
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
                    self.fault_count[name] = self.fault_count.get(name, 0) + 1
                    if name == "timeout" and group in ("upload", "provider") and self._rng.random() < f.lost_answer:
                        self.fault_count["lost_answer"] = self.fault_count.get("lost_answer", 0) + 1
                        return "timeout_after"
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
        forced = self.forced.take("token")
        if forced is not None:
            from sync.uplink.answers import token_answer

            self.token_refusals[forced] += 1
            return forced, token_answer(forced).meaning, None
        try:
            seed, rut = checked_seed(xml, self.behaviour.seed_check)
        except SeedRefused as exc:
            self.token_refusals[exc.estado] += 1
            return exc.estado, exc.glosa, None
        with self._lock:
            born = self.seeds.pop(seed, None)
            if born is None:
                return "08", "NO Existe SEED", None
            if time.monotonic() - born > self.seed_ttl:
                return "08", "TIME-OUT DEL SEED", None
            token = hashlib.sha1(f"{seed}{self._rng.random()}".encode()).hexdigest()[:13].upper()
            self.tokens[token] = (str(rut), time.monotonic(), kind)
            self.tokens_issued += 1
        return "00", "Token Creado", token

    def token_rut(self, token: str | None, kind: str) -> tuple[str | None, str]:
        """(rut, "") for a live token, (None, TOKEN code 001/002/003) otherwise."""
        if not token:
            return None, "001"
        with self._lock:
            entry = self.tokens.get(token)
        if entry is None or entry[2] != kind:
            return None, "003"
        if time.monotonic() - entry[1] > self.behaviour.token_ttl:
            return None, "002"
        return entry[0], ""

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    # --- envelopes ------------------------------------------------------------------------------
    def receive(self, parts: dict[str, multipart.Part], token: str | None, kind: str) -> tuple[str, str | None, list[str]]:
        """Check an upload as the SII does; returns (STATUS, TRACKID, DETAIL errors). Boleta
        envíos are filed whatever their content: their diagnosis comes by track id (instructivo)."""
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
        estado, glosa, detail, root, by_ref = self._check_envelope(archivo.data, kind)
        if estado in ("RSC", "RFR") and kind == "dte":
            return ("7" if estado == "RSC" else "8"), None, detail
        docs: list[DocOutcome] = []
        if estado == "EPR" and root is not None:
            car = root.find("{*}SetDTE/{*}Caratula")
            if car is None or car.findtext("{*}RutEmisor") != str(company) or car.findtext("{*}RutEnvia") != str(sender):
                estado, glosa = "RCT", "Rechazado por Error en Carátula"
        now = time.monotonic()
        ready = now + delay_of(self.behaviour, self._rng)
        if estado == "EPR" and root is not None:
            docs = [self._check_dte(dte, by_ref, str(company), ready) for dte in root.iter("{*}DTE")]
        with self._lock:
            self._track += 1
            track = str(self._track) if kind == "dte" else str(10**14 + self._track)  # 15 digits (instructivo)
            self.envios[track] = EnvioRecord(track, kind, str(company), str(sender), now, ready, estado, glosa, docs)
            self.upload_count += 1
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / f"{kind}-{track}.xml").write_bytes(archivo.data)
        return "0", track, []

    def _check_envelope(self, data: bytes, kind: str) -> tuple[str, str, list[str], etree._Element | None, dict[str, SignatureResult]]:
        """(estado, glosa, errors, root, signatures by reference) of an uploaded envelope."""
        try:
            root = safexml.fromstring(data)
        except etree.XMLSyntaxError as exc:
            return "RSC", "Rechazado por Error en Schema", [str(exc)], None, {}
        expected = "EnvioBOLETA" if kind == "boleta" else "EnvioDTE"
        if etree.QName(root).localname != expected:
            found = etree.QName(root).localname
            return "RSC", "Rechazado por Error en Schema", [f"se esperaba {expected}, llegó {found}"], None, {}
        with self._schema_lock:
            errors = schema.schema_errors(root)
        if errors:
            return "RSC", "Rechazado por Error en Schema", errors[:10], None, {}
        set_dte = root.find("{*}SetDTE")
        sigs = {r.reference: r for r in verify_signatures(root)}
        set_sig = sigs.get("#" + ((set_dte.get("ID") if set_dte is not None else None) or ""))
        if set_sig is None or not set_sig.ok:
            return "RFR", "Rechazado por Error en Firma", ["firma del SetDTE inválida"], None, {}
        return "EPR", "Envio Procesado", [], root, sigs

    def _check_dte(self, dte: etree._Element, by_ref: dict[str, SignatureResult], company: str, ready: float) -> DocOutcome:
        doc = dte.find("{*}Documento")
        assert doc is not None
        enc = "{*}Encabezado/"
        tipo = int(doc.findtext(enc + "{*}IdDoc/{*}TipoDTE") or 0)
        folio = int(doc.findtext(enc + "{*}IdDoc/{*}Folio") or 0)
        monto = int(doc.findtext(enc + "{*}Totales/{*}MntTotal") or 0)
        fch = (doc.findtext(enc + "{*}IdDoc/{*}FchEmis") or "").strip()
        receptor = (doc.findtext(enc + "{*}Receptor/{*}RUTRecep") or "66666666-6").strip()
        out = DocOutcome(tipo, folio, monto, "DOK")
        sig = by_ref.get("#" + (doc.get("ID") or ""))
        ted = doc.find("{*}TED")
        problems = verify_ted(ted, extra_keys=self.caf_keys) if ted is not None else ["sin TED"]
        key = (company, tipo, folio)
        if sig is None or not sig.ok:
            out.estado, out.reason = "RCH", "DTE-3-101 Firma del DTE inválida"
        elif problems:
            out.estado, out.reason = "RCH", f"TED-2-510 Timbre inválido: {problems[0]}"
        elif doc.findtext(enc + "{*}Emisor/{*}RUTEmisor") != company:
            out.estado, out.reason = "RCH", "DTE-3-100 RUT emisor distinto al de la carátula"
        elif self._roll(self.faults.reject):
            out.estado, out.reason = "RCH", "DTE-3-505 Rechazo simulado por fake-sii"
        with self._lock:
            self.uploads_by_doc[key] += 1
            self.events.setdefault(key, []).append(("upload", time.monotonic()))
            if out.estado == "DOK" and key in self.filed:
                self.duplicates += 1
                out.estado, out.reason = "RCH", "DTE-3-102 DTE Repetido (ya recibido)"
            elif out.estado == "DOK":
                if self._roll(self.faults.objection):
                    out.estado, out.reason = "RPR", "REF-3-750 Reparo simulado por fake-sii"
                self.filed[key] = Filed(monto, fch, receptor, ready)
                self.accepted[key] = self.accepted.get(key, 0) + 1
                self.accepted_monto[key] = monto
        return out

    def envio_estado(self, track: str, company: str) -> EnvioRecord | None:
        with self._lock:
            rec = self.envios.get(track)
            if rec is None or rec.company != company:
                return None
            rec.polls += 1
            if time.monotonic() >= rec.ready_at:
                rec.polls_ready += 1
            return rec

    def doc_known(self, company: str, tipo: int, folio: int, monto: int | None, fecha: date | None = None,
                  receptor: str | None = None) -> str:
        """DOK, DNK (held, but date/receptor/amount differ) or FAU (not held, or not yet visible)."""
        key = (company, tipo, folio)
        with self._lock:
            held = self.filed.get(key)
            if held is None or time.monotonic() < held.visible_at:
                self.events.setdefault(key, []).append(("not_received", time.monotonic()))
                if held is not None:
                    self.unseen_answers += 1
                return "FAU"
            if self.behaviour.query_data and (
                    (monto is not None and held.monto != monto)
                    or (fecha is not None and held.fch_emis != fecha.isoformat())
                    or (receptor is not None and Rut.parse(held.receptor) != Rut.parse(receptor))):
                return "DNK"
            return "DOK"
