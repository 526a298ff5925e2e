"""The DTE engine: one ERP input file -> a stamped, signed, schema-valid DTE.

    parse -> company defaults -> SII rules -> totals -> rules on totals
    -> build Documento + every XSD facet of every value          (no folio yet)
    -> folio (durable before use) -> TED -> TmstFirma -> sign -> XSD -> folio marked used

Everything that can reject an input runs before a folio is taken, so a bad file never burns a
folio: the builder checks each value against the facets of the shipped XSDs (sync/dte/checks.py)
and the SII's business rules run on the model (sync/dte/rules.py). Every refusal names its
field, and its line (TXT, XML) or JSON path in the input (SourceMap). A failure after allocation
can only be an internal fault (a bug, a broken certificate): the folio then goes to the
annulment list and the document gets FOLIO_PENDING_ANNULMENT saying so, never a reused folio.
`doc_key` identifies the document durably (the daemon passes its journal id): after a crash
the same document gets the same folio back.

The engine holds the loaded certificate and the folio store; it is safe to share between
threads (lxml trees are per call, the folio store serializes its writes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from lxml import etree

from sync import schema
from sync.config import BoletasConfig, Branch, Company, Config
from sync.dte import rules
from sync.dte.build import build_documento
from sync.envio import NSMAP, Caratula, DteSigning, build_envio, envelope_part, new_dte_root, to_bytes
from sync.errors import DteSyncError, DteSyncErrors
from sync.folios.caf import Caf
from sync.folios.store import FolioStore
from sync.model import Documento, Emisor, Receptor, required
from sync.parse import SourceMap, parse_located
from sync.signed import SignedDte
from sync.signing import Certificate
from sync.sii import SII_NS, SII_Q
from sync.timbre import stamp_with_bytes
from sync.totals import complete_totals

log = logging.getLogger("dtesync.engine")

# Boletas to an unidentified buyer carry this RUT (Formato Boletas: "66666666-6").
ANONYMOUS_RUT = rules.ANONYMOUS_RUT
ANONYMOUS_NAME = "CONSUMIDOR FINAL"
_FOLIO_PATH = f"{SII_Q}Encabezado/{SII_Q}IdDoc/{SII_Q}Folio"


@dataclass(frozen=True)
class Request:
    """One input for `Engine.issue_many`; `doc_key` names the document durably (its folio)."""

    data: bytes
    source: str
    doc_key: str
    station: str | None = None


@dataclass(frozen=True, slots=True)
class _Stamped:
    """A document with its folio and TED, waiting for the private key's signature."""

    doc: Documento
    folio: int
    root: etree._Element  # the DTE the signed Documento goes into
    ted: bytes
    signing: DteSigning


Outcome = SignedDte | Exception  # per request: the signed document, or why there is none
Prepared = tuple[Documento, etree._Element]  # the completed model and its unsigned Documento
Taken = tuple[int, Caf]  # a folio and the CAF that authorizes it


@dataclass(frozen=True, slots=True)
class Issuing:
    """A batch between `Engine.begin_many` and `Engine.finish_many`: per request, the outcome
    already known (a refused input) or the stamped document with its pending signature."""

    requests: tuple[Request, ...]
    stamped: list[Outcome | tuple[_Stamped, Future[bytes]]]
    now: datetime


class Engine:
    def __init__(
        self,
        company: Company,
        folios: FolioStore,
        certificate: Certificate,
        *,
        timezone: str = "America/Santiago",
        clock: Callable[[], datetime] | None = None,
        boletas: BoletasConfig | None = None,
        signer: Executor | None = None,
    ):
        self.company = company
        self.folios = folios
        self.certificate = certificate
        self.boletas = boletas or BoletasConfig()
        # Where the private key signs (None: inline). The engine process passes one thread: RSA
        # runs without the interpreter lock, so a batch's signatures overlap its other work.
        self.signer = signer
        self.tz = ZoneInfo(timezone)
        self._clock = clock or (lambda: datetime.now(self.tz))

    @classmethod
    def from_config(
        cls, config: Config, folios: FolioStore, certificate: Certificate, *,
        clock: Callable[[], datetime] | None = None, signer: Executor | None = None,
    ) -> Engine:
        return cls(config.company, folios, certificate, timezone=config.timezone, clock=clock, boletas=config.boletas,
                   signer=signer)

    def now(self) -> datetime:
        """Local wall-clock time, naive, as the SII writes TSTED/TmstFirma."""
        return self._clock().astimezone(self.tz).replace(tzinfo=None, microsecond=0)

    def warm_up(self) -> None:
        """Load now what the first batch would load on its way: the usable CAFs' keys and the
        DTE schemas (about 40 ms). An engine process calls it right after saying it is ready,
        while the daemon is still starting, so the first ticket after a start does not wait."""
        self.folios.warm_up(self.now().date())
        schema.warm_up()

    # ---- the whole flow -------------------------------------------------------------------
    def issue(self, data: bytes, source: str, *, doc_key: str, station: str | None = None) -> SignedDte:
        """One input -> one SignedDte, or the input's typed error raised."""
        (outcome,) = self.issue_many([Request(data, source, doc_key, station)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def issue_many(self, requests: Sequence[Request]) -> list[Outcome]:
        """Several inputs at once, one outcome per request in order: SignedDte or the exception.

        The same flow as `issue`, with the durable folio allocation of the whole batch in one
        transaction and the folios marked used in another: a backlog pays one fsync per batch,
        not per document. Every input is parsed, completed and built before any folio is taken,
        so a bad input in the batch never burns a folio; the others go on.
        """
        return self.finish_many(self.begin_many(requests))

    def begin_many(self, requests: Sequence[Request]) -> Issuing:
        """The first half of `issue_many`: every input parsed and built, the batch's folios taken
        (durably), each document stamped and its signature handed to the signer. With a signer
        thread, the caller can begin the next batch before finishing this one: the private key
        then signs this batch while the next is parsed (the engine process does so)."""
        now = self.now()
        prepared: list[tuple[str, Prepared | Exception]] = []
        for req in requests:
            try:
                doc, where = parse_located(req.data, req.source)
                prepared.append((req.doc_key, _prepared(self, doc, where, req.station, now)))
            except Exception as exc:
                prepared.append((req.doc_key, exc))
        stamped: list[Outcome | tuple[_Stamped, Future[bytes]]] = []
        for work in self._take_folios(prepared, now):
            if isinstance(work, Exception):
                stamped.append(work)
                continue
            (doc, documento), (folio, caf) = work
            try:
                st = self._stamp(doc, documento, folio, caf, now)
                stamped.append((st, self._sign(st.signing.to_sign)))
            except BaseException as exc:
                stamped.append(self._annul(doc, folio, exc, now))
        return Issuing(tuple(requests), stamped, now)

    def finish_many(self, issuing: Issuing) -> list[Outcome]:
        """The second half: each signature in place and checked against the XSD, in order, then
        the batch's folios marked used (one transaction)."""
        outcomes: list[Outcome] = []
        used: list[tuple[int, int]] = []
        for item in issuing.stamped:
            if not isinstance(item, tuple):
                outcomes.append(item)
                continue
            st, value = item
            try:
                outcomes.append(self._finish(st, value.result()))
                used.append((st.doc.tipo_dte, st.folio))
            except BaseException as exc:
                outcomes.append(self._annul(st.doc, st.folio, exc, issuing.now))
        problems = iter(self.folios.mark_used_many(used) if used else ())
        outcomes = [(next(problems) or outcome) if isinstance(outcome, SignedDte) else outcome for outcome in outcomes]
        for req, outcome in zip(issuing.requests, outcomes, strict=True):
            if isinstance(outcome, (DteSyncError, DteSyncErrors)):
                for e in outcome.errors if isinstance(outcome, DteSyncErrors) else (outcome,):
                    e.source = e.source or req.source
        return outcomes

    def _annul(self, doc: Documento, folio: int, exc: BaseException, now: datetime) -> DteSyncError:
        """The folio was taken and is now in an unknown state: never reuse it. Every input error
        was refused before the folio, so this is an internal fault: say so."""
        detail = _fault_detail(exc)
        self.folios.release_for_annulment(doc.tipo_dte, folio, detail[:500], now=now.date())
        log.error("folio %s of TipoDTE %s released for annulment: %s", folio, doc.tipo_dte, detail)
        if not isinstance(exc, Exception):
            raise exc
        return DteSyncError("FOLIO_PENDING_ANNULMENT", field="Folio",
                            params={"folio": folio, "tipo_dte": doc.tipo_dte, "detail": detail})

    def _sign(self, data: bytes) -> Future[bytes]:
        """The private key's signature of `data`: on the signer thread, or now."""
        if self.signer is not None:
            return self.signer.submit(self.certificate.sign_sha1, data)
        done: Future[bytes] = Future()
        try:
            done.set_result(self.certificate.sign_sha1(data))
        except Exception as exc:
            done.set_exception(exc)
        return done

    def _take_folios(
        self, prepared: list[tuple[str, Prepared | Exception]], now: datetime
    ) -> list[tuple[Prepared, Taken] | Exception]:
        """Per prepared document, the document with its (folio, caf), or the exception. Folios
        the inputs name are claimed first, so an automatic pick in the same batch never takes one
        of them; the automatic ones are then allocated in one transaction."""
        taken: dict[int, Taken | Exception] = {}
        wanted: list[tuple[int, int, str]] = []  # (position, TipoDTE, doc_key) to allocate
        for i, (doc_key, item) in enumerate(prepared):
            if isinstance(item, Exception):
                continue
            doc = item[0]
            if doc.folio is None:
                wanted.append((i, doc.tipo_dte, doc_key))
                continue
            try:
                taken[i] = (doc.folio, self.folios.claim(doc.tipo_dte, doc.folio, doc_key, now=now.date()))
            except Exception as exc:
                taken[i] = exc
        if wanted:
            allocated = self.folios.allocate_many([(tipo, key) for _, tipo, key in wanted], now.date())
            taken.update((i, result) for (i, _, _), result in zip(wanted, allocated, strict=True))
        work: list[tuple[Prepared, Taken] | Exception] = []
        for i, (_, item) in enumerate(prepared):
            if isinstance(item, Exception):
                work.append(item)
                continue
            folio = taken[i]
            work.append(folio if isinstance(folio, Exception) else (item, folio))
        return work

    def _stamp(self, doc: Documento, documento: etree._Element, folio: int, caf: Caf, now: datetime) -> _Stamped:
        """The folio, TED and TmstFirma in the Documento, and its signature prepared."""
        tipo = doc.tipo_dte
        doc.id_doc.folio = folio
        folio_el = documento.find(_FOLIO_PATH)
        if folio_el is None:  # build_documento always writes it (SUPPLIED_BY_ENGINE)
            raise DteSyncError("FIELD_REQUIRED", field="Folio", path="Documento/Encabezado/IdDoc/Folio")
        folio_el.text = str(folio)
        documento.set("ID", f"F{folio}T{tipo}")
        receptor, totales = doc.receptor, doc.totales
        rut_recep = required(receptor.rut_recep, "RUTRecep", "Documento/Encabezado/Receptor/RUTRecep")
        fch_emis = required(doc.id_doc.fch_emis, "FchEmis", "Documento/Encabezado/IdDoc/FchEmis")
        mnt_total = required(totales.mnt_total, "MntTotal", "Documento/Encabezado/Totales/MntTotal")
        ted, ted_bytes = stamp_with_bytes(
            caf,
            namespace=SII_NS,
            tipo_dte=tipo,
            folio=folio,
            fch_emis=fch_emis,
            rut_recep=rut_recep,
            rzn_soc_recep=receptor.rzn_soc_recep or ANONYMOUS_NAME,
            mnt_total=mnt_total,
            it1=doc.detalle[0].nmb_item or "",
            tsted=now,
        )
        documento.append(ted)
        etree.SubElement(documento, SII_Q + "TmstFirma").text = now.strftime("%Y-%m-%dT%H:%M:%S")
        root = new_dte_root()
        return _Stamped(doc, folio, root, ted_bytes, DteSigning.prepare(root, documento))

    def _finish(self, st: _Stamped, value: bytes) -> SignedDte:
        """The signature in place, the DTE checked against the XSD, and its bytes."""
        doc, root = st.doc, st.root
        canonical = st.signing.finish(self.certificate, value)
        schema.validate(root)
        receptor, totales = doc.receptor, doc.totales
        return SignedDte(
            tipo_dte=doc.tipo_dte,
            folio=st.folio,
            rut_emisor=str(required(doc.emisor.rut_emisor, "RUTEmisor", "Documento/Encabezado/Emisor/RUTEmisor")),
            rut_receptor=str(receptor.rut_recep),
            fch_emis=required(doc.id_doc.fch_emis, "FchEmis", "Documento/Encabezado/IdDoc/FchEmis"),
            monto_total=required(totales.mnt_total, "MntTotal", "Documento/Encabezado/Totales/MntTotal"),
            dte_xml=to_bytes(root),
            ted=st.ted,
            mnt_neto=totales.mnt_neto or 0,
            mnt_exe=totales.mnt_exe or 0,
            iva=totales.iva or 0,
            rzn_soc_recep=receptor.rzn_soc_recep or "",
            dte=root,
            dte_c14n=canonical,
            _documento=doc,
        )

    # ---- envelopes ---------------------------------------------------------------------
    def envelope(self, issued: Sequence[SignedDte]) -> bytes:
        """A signed EnvioDTE (or EnvioBOLETA) with these DTEs, Caratula from the config."""
        boleta = bool(issued) and issued[0].is_boleta
        caratula = Caratula(
            rut_emisor=self.company.rut,
            fch_resol=self.company.fch_resol,
            nro_resol=self.company.nro_resol,
            tmst_firma_env=self.now(),
        )
        parts = [envelope_part(i.dte_xml, i.dte, canonical=i.dte_c14n) or i.dte_xml for i in issued]
        return build_envio(parts, caratula, self.certificate, boleta=boleta)


# ---- pure preparation steps (no I/O, no clock) ----------------------------------------
def _prepared(engine: Engine, doc: Documento, where: SourceMap, station: str | None, now: datetime) -> Prepared:
    """Defaults, rules, totals and the unsigned Documento (Folio still a placeholder), every
    value checked against its XSD facets: every input error is raised here, before a folio
    is taken, placed in the input by `where`. The Documento is the root of its own document
    declaring the DTE's namespaces, so it is signed without a copy (DteSigning)."""
    try:
        prepare(doc, engine.company, engine.company.branches.get(station or ""), today=now.date(),
                boletas=engine.boletas)
        return doc, build_documento(doc, nsmap=NSMAP)
    except DteSyncErrors as exc:
        where.locate(exc.errors)
        raise
    except DteSyncError as exc:
        where.locate([exc])
        raise


def prepare(doc: Documento, company: Company, branch: Branch | None, *, today: date,
            boletas: BoletasConfig | None = None) -> None:
    """Defaults, business rules and totals. Required fields, Latin-1 text, schema placement and
    the XSD facets of every value are checked by build_documento in the same walk that builds
    the XML, also before a folio."""
    errors: list[DteSyncError] = []
    apply_company_defaults(doc, company, branch, errors)
    apply_document_defaults(doc, today)
    check_rules(doc, errors)
    if errors:
        raise DteSyncErrors(errors)
    complete_totals(doc)
    check_rules_on_totals(doc, boletas or BoletasConfig(), errors)
    if errors:
        raise DteSyncErrors(errors)


def apply_company_defaults(doc: Documento, company: Company, branch: Branch | None,
                           errors: list[DteSyncError]) -> None:
    """The ERP may omit everything the config knows about the issuer."""
    enc = doc.enc
    emisor = enc.emisor = enc.emisor or Emisor()
    if emisor.rut_emisor is None:
        emisor.rut_emisor = company.rut
    elif emisor.rut_emisor != company.rut:
        errors.append(DteSyncError("EMISOR_MISMATCH", field="RUTEmisor", path="Documento/Encabezado/Emisor/RUTEmisor",
                                   found=str(emisor.rut_emisor), expected=str(company.rut)))
    emisor.rzn_soc = emisor.rzn_soc or company.razon_social
    emisor.giro_emis = emisor.giro_emis or company.giro
    if not doc.is_boleta:
        emisor.acteco = emisor.acteco or list(company.acteco)
        if company.telefono and not emisor.telefono:
            emisor.telefono = [company.telefono]
        emisor.correo_emisor = emisor.correo_emisor or company.correo
    if branch is not None:
        if not doc.is_boleta:
            emisor.sucursal = emisor.sucursal or branch.sucursal
        emisor.cdg_sii_sucur = emisor.cdg_sii_sucur or branch.cdg_sii_sucur
        emisor.dir_origen = emisor.dir_origen or branch.direccion
        emisor.cmna_origen = emisor.cmna_origen or branch.comuna
        emisor.ciudad_origen = emisor.ciudad_origen or branch.ciudad
    emisor.dir_origen = emisor.dir_origen or company.direccion
    emisor.cmna_origen = emisor.cmna_origen or company.comuna
    emisor.ciudad_origen = emisor.ciudad_origen or company.ciudad


def apply_document_defaults(doc: Documento, today: date) -> None:
    enc = doc.enc
    id_doc = doc.id_doc
    id_doc.fch_emis = id_doc.fch_emis or today
    if doc.is_boleta:
        # 3 = boletas de venta y servicios: the usual retail case (Formato Boletas, IndServicio).
        id_doc.ind_servicio = id_doc.ind_servicio or 3
        receptor = enc.receptor = enc.receptor or Receptor()
        receptor.rut_recep = receptor.rut_recep or ANONYMOUS_RUT
    for i, det in enumerate(doc.detalle, 1):  # a 0 given stays, and the XSD check refuses it
        if det.nro_lin_det is None:
            det.nro_lin_det = i
    for i, ref in enumerate(doc.referencia, 1):
        if ref.nro_lin_ref is None:
            ref.nro_lin_ref = i
    for i, dr in enumerate(doc.dsc_rcg_global, 1):
        if dr.nro_lin_dr is None:
            dr.nro_lin_dr = i


def check_rules(doc: Documento, errors: list[DteSyncError]) -> None:
    """The SII's rules that complete or refuse the input before its totals (sync/dte/rules.py)."""
    rules.before_totals(doc, errors)


def check_rules_on_totals(doc: Documento, boletas: BoletasConfig, errors: list[DteSyncError]) -> None:
    """The SII's rules that need the completed totals: FmaPago, Ley 21.713 (sync/dte/rules.py)."""
    rules.after_totals(doc, boletas, errors)


def _fault_detail(exc: BaseException) -> str:
    """What went wrong after the folio, in one line for the annulment list and the report."""
    if isinstance(exc, DteSyncErrors):
        return "; ".join(f"{e.code}: {e.message()}" for e in exc.errors)
    if isinstance(exc, DteSyncError):
        return f"{exc.code}: {exc.message()}"
    return f"{type(exc).__name__}: {exc}"
