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
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from lxml import etree

from sync import schema
from sync.config import Branch, Company, Config
from sync.dte.build import SII_NS, build_documento
from sync.envio import NSMAP, Caratula, build_envio, new_dte_root, sign_dte, to_bytes
from sync.errors import DteSyncError, DteSyncErrors
from sync.folios.store import FolioStore
from sync.model import (
    BOLETA_TYPES,
    NOTE_TYPES,
    Documento,
    Emisor,
    Receptor,
)
from sync.parse import parse_document
from sync.rut import Rut
from sync.signing import Certificate
from sync.timbre import stamp_with_bytes
from sync.totals import complete_totals

log = logging.getLogger("dtesync.engine")

# Boletas to an unidentified buyer carry this RUT (Formato Boletas: "66666666-6").
ANONYMOUS_RUT = Rut(66666666, "6")
ANONYMOUS_NAME = "CONSUMIDOR FINAL"
_Q = "{" + SII_NS + "}"
_FOLIO_PATH = f"{_Q}Encabezado/{_Q}IdDoc/{_Q}Folio"


@dataclass
class Issued:
    """A signed document, ready for the outbox, the printer and the uplink."""

    documento: Documento
    tipo_dte: int
    folio: int
    rut_emisor: str
    monto_total: int
    dte: etree._Element  # the signed <DTE> tree
    dte_xml: bytes  # the same, serialized (ISO-8859-1, with declaration)
    ted: bytes  # flattened <TED>, the PDF417 payload


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
    def from_config(cls, config: Config, folios: FolioStore, certificate: Certificate, **kw: Any) -> "Engine":
        return cls(config.company, folios, certificate, timezone=config.timezone, **kw)

    def now(self) -> datetime:
        """Local wall-clock time, naive, as the SII writes TSTED/TmstFirma."""
        return self._clock().astimezone(self.tz).replace(tzinfo=None, microsecond=0)

    # ---- the whole flow for one input -------------------------------------------------
    def issue(self, data: bytes, source: str, *, doc_key: str, station: str | None = None) -> Issued:
        doc = parse_document(data, source)
        try:
            return self.issue_document(doc, doc_key=doc_key, station=station)
        except DteSyncErrors as exc:
            for e in exc.errors:
                e.source = e.source or source
            raise
        except DteSyncError as exc:
            exc.source = exc.source or source
            raise

    def issue_document(self, doc: Documento, *, doc_key: str, station: str | None = None) -> Issued:
        now = self.now()
        prepare(doc, self.company, self.company.branches.get(station or ""), today=now.date())
        # Documento starts as the root of its own document declaring the DTE's namespaces, so it is
        # signed without a copy (sign_dte); every input error is raised here, before a folio.
        documento = build_documento(doc, nsmap=NSMAP)
        tipo = doc.tipo_dte
        given = doc.folio
        if given is not None:
            caf = self.folios.claim(tipo, int(given), doc_key, now=now.date())
            folio = int(given)
        else:
            folio, caf = self.folios.allocate(tipo, now.date(), doc_key)
        try:
            doc.encabezado.id_doc.folio = folio
            documento.find(_FOLIO_PATH).text = str(folio)
            documento.set("ID", f"F{folio}T{tipo}")
            root = new_dte_root()
            ted = self._stamp_and_sign(root, documento, doc, caf, now)
        except BaseException as exc:
            # The folio was taken and is now in an unknown state: never reuse it.
            self.folios.release_for_annulment(tipo, folio, f"{type(exc).__name__}: {exc}"[:500], now=now.date())
            raise
        self.folios.mark_used(tipo, folio)
        return Issued(
            documento=doc,
            tipo_dte=tipo,
            folio=folio,
            rut_emisor=str(doc.encabezado.emisor.rut_emisor),
            monto_total=int(doc.encabezado.totales.mnt_total),
            dte=root,
            dte_xml=to_bytes(root),
            ted=ted,
        )

    def _stamp_and_sign(self, root: etree._Element, documento: etree._Element, doc: Documento, caf: Any, now: datetime) -> bytes:
        receptor = doc.encabezado.receptor
        ted, ted_bytes = stamp_with_bytes(
            caf,
            namespace=SII_NS,
            tipo_dte=doc.tipo_dte,
            folio=doc.folio,
            fch_emis=doc.encabezado.id_doc.fch_emis,
            rut_recep=receptor.rut_recep,
            rzn_soc_recep=receptor.rzn_soc_recep or ANONYMOUS_NAME,
            mnt_total=int(doc.encabezado.totales.mnt_total),
            it1=doc.detalle[0].nmb_item,
            tsted=now,
        )
        documento.append(ted)
        etree.SubElement(documento, _Q + "TmstFirma").text = now.strftime("%Y-%m-%dT%H:%M:%S")
        sign_dte(root, self.certificate, documento)
        schema.validate(root)
        return ted_bytes

    # ---- envelopes ---------------------------------------------------------------------
    def envelope(self, issued: list[Issued]) -> bytes:
        """A signed EnvioDTE (or EnvioBOLETA) with these DTEs, Caratula from the config."""
        boleta = bool(issued) and issued[0].tipo_dte in BOLETA_TYPES
        caratula = Caratula(
            rut_emisor=self.company.rut,
            fch_resol=self.company.fch_resol,
            nro_resol=self.company.nro_resol,
            tmst_firma_env=self.now(),
        )
        return build_envio([i.dte for i in issued], caratula, self.certificate, boleta=boleta)


# ---- pure preparation steps (no I/O, no clock) ----------------------------------------
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


def apply_company_defaults(doc: Documento, company: Company, branch: Branch | None, errors: list) -> None:
    """The ERP may omit everything the config knows about the issuer."""
    enc = doc.encabezado
    emisor = enc.emisor = enc.emisor or Emisor()
    if emisor.rut_emisor is None:
        emisor.rut_emisor = company.rut
    elif emisor.rut_emisor != company.rut:
        errors.append(
            DteSyncError("EMISOR_MISMATCH", field="RUTEmisor", found=str(emisor.rut_emisor), expected=str(company.rut))
        )
    emisor.rzn_soc = emisor.rzn_soc or company.razon_social
    emisor.giro_emis = emisor.giro_emis or company.giro
    if doc.tipo_dte not in BOLETA_TYPES:
        emisor.acteco = emisor.acteco or list(company.acteco)
        if company.telefono and not emisor.telefono:
            emisor.telefono = [company.telefono]
        emisor.correo_emisor = emisor.correo_emisor or company.correo
    if branch is not None:
        if doc.tipo_dte not in BOLETA_TYPES:
            emisor.sucursal = emisor.sucursal or branch.sucursal
        emisor.cdg_sii_sucur = emisor.cdg_sii_sucur or branch.cdg_sii_sucur
        emisor.dir_origen = emisor.dir_origen or branch.direccion
        emisor.cmna_origen = emisor.cmna_origen or branch.comuna
        emisor.ciudad_origen = emisor.ciudad_origen or branch.ciudad
    emisor.dir_origen = emisor.dir_origen or company.direccion
    emisor.cmna_origen = emisor.cmna_origen or company.comuna
    emisor.ciudad_origen = emisor.ciudad_origen or company.ciudad


def apply_document_defaults(doc: Documento, today: date) -> None:
    enc = doc.encabezado
    id_doc = enc.id_doc
    id_doc.fch_emis = id_doc.fch_emis or today
    if doc.tipo_dte in BOLETA_TYPES:
        # 3 = boletas de venta y servicios: the usual retail case (Formato Boletas, IndServicio).
        id_doc.ind_servicio = id_doc.ind_servicio or 3
        enc.receptor = enc.receptor or Receptor()
        enc.receptor.rut_recep = enc.receptor.rut_recep or ANONYMOUS_RUT
    for i, det in enumerate(doc.detalle, 1):
        det.nro_lin_det = det.nro_lin_det or i
    for i, ref in enumerate(doc.referencia, 1):
        ref.nro_lin_ref = ref.nro_lin_ref or i
    for i, dr in enumerate(doc.dsc_rcg_global, 1):
        dr.nro_lin_dr = dr.nro_lin_dr or i


def check_rules(doc: Documento, errors: list) -> None:
    if doc.tipo_dte in NOTE_TYPES and not doc.referencia:
        errors.append(DteSyncError("REFERENCIA_REQUIRED", field="Referencia", params={"tipo_dte": doc.tipo_dte}))
