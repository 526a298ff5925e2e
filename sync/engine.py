"""The DTE engine: one ERP input file -> a stamped, signed, schema-valid DTE.

    parse -> company defaults -> rules -> totals -> build Documento   (no folio yet)
    -> folio (durable before use) -> TED -> TmstFirma -> sign -> XSD -> folio marked used

Everything that can reject an input runs before a folio is taken, so a bad file never burns a
folio; a failure after allocation (which would be a bug or a broken certificate) releases the
folio for annulment instead of reusing it. `doc_key` identifies the document durably (the
daemon passes its journal id): after a crash the same document gets the same folio back.

The engine holds the loaded certificate and the folio store; it is safe to share between
threads (lxml trees are per call, the folio store serializes its writes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from lxml import etree

from sync import schema
from sync.config import Branch, Company, Config
from sync.dte.build import build_documento
from sync.envio import NSMAP, Caratula, build_envio, envelope_part, new_dte_root, sign_dte_canonical, to_bytes
from sync.errors import DteSyncError, DteSyncErrors
from sync.folios.caf import Caf
from sync.folios.store import FolioStore
from sync.model import Documento, Emisor, Receptor, Referencia, required
from sync.parse import parse_document
from sync.rut import Rut
from sync.signed import SignedDte
from sync.signing import Certificate
from sync.sii import SII_NS, SII_Q
from sync.timbre import stamp_with_bytes
from sync.totals import complete_totals

log = logging.getLogger("dtesync.engine")

# Boletas to an unidentified buyer carry this RUT (Formato Boletas: "66666666-6").
ANONYMOUS_RUT = Rut(66666666, "6")
ANONYMOUS_NAME = "CONSUMIDOR FINAL"
_FOLIO_PATH = f"{SII_Q}Encabezado/{SII_Q}IdDoc/{SII_Q}Folio"


@dataclass(frozen=True)
class Request:
    """One input for `Engine.issue_many`; `doc_key` names the document durably (its folio)."""

    data: bytes
    source: str
    doc_key: str
    station: str | None = None


Outcome = SignedDte | Exception  # per request: the signed document, or why there is none
Prepared = tuple[Documento, etree._Element]  # the completed model and its unsigned Documento
Taken = tuple[int, Caf]  # a folio and the CAF that authorizes it


class Engine:
    def __init__(
        self,
        company: Company,
        folios: FolioStore,
        certificate: Certificate,
        *,
        timezone: str = "America/Santiago",
        clock: Callable[[], datetime] | None = None,
    ):
        self.company = company
        self.folios = folios
        self.certificate = certificate
        self.tz = ZoneInfo(timezone)
        self._clock = clock or (lambda: datetime.now(self.tz))

    @classmethod
    def from_config(
        cls, config: Config, folios: FolioStore, certificate: Certificate, *,
        clock: Callable[[], datetime] | None = None,
    ) -> Engine:
        return cls(config.company, folios, certificate, timezone=config.timezone, clock=clock)

    def now(self) -> datetime:
        """Local wall-clock time, naive, as the SII writes TSTED/TmstFirma."""
        return self._clock().astimezone(self.tz).replace(tzinfo=None, microsecond=0)

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
        now = self.now()
        prepared: list[tuple[str, Prepared | Exception]] = []
        for req in requests:
            try:
                doc = parse_document(req.data, req.source)
                prepared.append((req.doc_key, _prepared(self, doc, req.station, now)))
            except Exception as exc:
                prepared.append((req.doc_key, exc))
        outcomes = self._issue_prepared(prepared, now)
        for req, outcome in zip(requests, outcomes, strict=True):
            if isinstance(outcome, (DteSyncError, DteSyncErrors)):
                for e in outcome.errors if isinstance(outcome, DteSyncErrors) else (outcome,):
                    e.source = e.source or req.source
        return outcomes

    def _issue_prepared(self, prepared: list[tuple[str, Prepared | Exception]], now: datetime) -> list[Outcome]:
        """Folios for every prepared document, then TED + signature + XSD each, then mark used."""
        outcomes: list[Outcome] = []
        used: list[tuple[int, int]] = []
        for work in self._take_folios(prepared, now):
            if isinstance(work, Exception):
                outcomes.append(work)
                continue
            (doc, documento), (folio, caf) = work
            try:
                outcomes.append(self._stamp_and_sign(doc, documento, folio, caf, now))
                used.append((doc.tipo_dte, folio))
            except BaseException as exc:
                # The folio was taken and is now in an unknown state: never reuse it.
                self.folios.release_for_annulment(
                    doc.tipo_dte, folio, f"{type(exc).__name__}: {exc}"[:500], now=now.date()
                )
                if not isinstance(exc, Exception):
                    raise
                outcomes.append(exc)
        problems = iter(self.folios.mark_used_many(used) if used else ())
        return [
            (next(problems) or outcome) if isinstance(outcome, SignedDte) else outcome for outcome in outcomes
        ]

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

    def _stamp_and_sign(self, doc: Documento, documento: etree._Element, folio: int, caf: Caf,
                        now: datetime) -> SignedDte:
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
        canonical = sign_dte_canonical(root, self.certificate, documento)
        schema.validate(root)
        return SignedDte(
            tipo_dte=tipo,
            folio=folio,
            rut_emisor=str(required(doc.emisor.rut_emisor, "RUTEmisor", "Documento/Encabezado/Emisor/RUTEmisor")),
            rut_receptor=str(rut_recep),
            fch_emis=fch_emis,
            monto_total=mnt_total,
            dte_xml=to_bytes(root),
            ted=ted_bytes,
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
def _prepared(engine: Engine, doc: Documento, station: str | None, now: datetime) -> Prepared:
    """Defaults, rules, totals and the unsigned Documento (Folio still a placeholder): every
    input error is raised here, before a folio is taken. The Documento is the root of its own
    document declaring the DTE's namespaces, so it is signed without a copy (sign_dte_canonical)."""
    prepare(doc, engine.company, engine.company.branches.get(station or ""), today=now.date())
    return doc, build_documento(doc, nsmap=NSMAP)


def prepare(doc: Documento, company: Company, branch: Branch | None, *, today: date) -> None:
    """Defaults, business rules and totals. Required fields, Latin-1 text and schema placement
    are checked by build_documento in the same walk that builds the XML, also before a folio."""
    errors: list[DteSyncError] = []
    apply_company_defaults(doc, company, branch, errors)
    apply_document_defaults(doc, today)
    check_rules(doc, errors)
    if errors:
        raise DteSyncErrors(errors)
    complete_totals(doc)


def apply_company_defaults(doc: Documento, company: Company, branch: Branch | None,
                           errors: list[DteSyncError]) -> None:
    """The ERP may omit everything the config knows about the issuer."""
    enc = doc.enc
    emisor = enc.emisor = enc.emisor or Emisor()
    if emisor.rut_emisor is None:
        emisor.rut_emisor = company.rut
    elif emisor.rut_emisor != company.rut:
        errors.append(
            DteSyncError("EMISOR_MISMATCH", field="RUTEmisor", found=str(emisor.rut_emisor), expected=str(company.rut))
        )
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
    for i, det in enumerate(doc.detalle, 1):
        det.nro_lin_det = det.nro_lin_det or i
    for i, ref in enumerate(doc.referencia, 1):
        ref.nro_lin_ref = ref.nro_lin_ref or i
    for i, dr in enumerate(doc.dsc_rcg_global, 1):
        dr.nro_lin_dr = dr.nro_lin_dr or i


def check_rules(doc: Documento, errors: list[DteSyncError]) -> None:
    if doc.tipo.is_note and not doc.referencia:
        errors.append(DteSyncError("REFERENCIA_REQUIRED", field="Referencia", params={"tipo_dte": doc.tipo_dte}))
    if not doc.is_boleta:
        for i, ref in enumerate(doc.referencia, 1):
            check_cod_ref(ref, i, errors)


def check_cod_ref(ref: Referencia, line: int, errors: list[DteSyncError]) -> None:
    """DTE_v10.xsd: CodRef is 1 (anula), 2 (corrige texto) or 3 (corrige montos); in boletas it
    is free text (the SII's certification sets use `SET`). Checked here, before a folio."""
    code = ref.cod_ref
    if code is None:
        return
    if code.isdigit() and int(code) in (1, 2, 3):
        ref.cod_ref = str(int(code))
        return
    errors.append(DteSyncError(
        "FIELD_INVALID", field="CodRef", path=f"Documento/Referencia[{line}]/CodRef", expected="1, 2 o 3", found=code
    ))
