"""The SII's business rules that the XSDs do not express, checked on the model before a folio.

The official schema accepts documents the SII, the receptor or the law reject, or that are
wrong in money; each rule below refuses such an input (or completes it where the SII's own
documents leave one right answer) before the engine takes a folio. Sources: Formato DTE
v2.5 (2026-02, "FMT", zone and field number), Formato Boletas v4.2 (2025-09-08, "FBE"),
Ley 21.713 and Res. Ex. SII 154/2025. docs/formats/rules.md lists them for ERP programmers.

Before the totals (`before_totals`):
- Notes 56/61 (FMT E.8): a Referencia with CodRef 1 (anula), 2 (corrige texto) or 3
  (corrige montos); with CodRef 1 or 2 the note references one single document ("CASOS a) b)
  y c) DEBEN TENER UN ÚNICO DOCUMENTO DE REFERENCIA"); CodRef 2 carries no amounts: a price,
  a line amount, a discount or a global discount is refused, never silently zeroed.
- A note that references a boleta (TpoDocRef 35, 38, 39, 41) states gross amounts, as the
  boleta did: MntBruto=1 is set (FMT A.10), so a credit note never credits 19 % more than
  the boleta charged.
- Facturas 33/34/46 and guías 52: the receptor's GiroRecep, DirRecep, CmnaRecep (FMT A.57,
  A.60, A.61) and the emisor's DirOrigen (33, 34, 46, 52) and CmnaOrigen (33, 34, 52; FMT
  A.44-45), which the configuration usually supplies.
- Guías 52: IndTraslado (FMT A.7); the Transporte area with DirDest and CmnaDest (FMT
  A.71-72); the vehicle, carrier and driver data of Res. Ex. 154/2025 (Patente, RUTTrans,
  Chofer; FMT A.67-70, footnote 4) or the express statement in the document that they are
  not known: Patente=SIN INFO. Export guías (IndTraslado 8, 9): CdgTraslado (FMT A.38),
  FolioAut and FchAut when CdgTraslado is 4 (A.39-40), and the customs data the Formato makes
  obligatory for them (A.84-86, A.90-91, A.95).
- Facturas and boletas exentas (34, 41): a global discount or surcharge carries IndExeDR (FMT
  D.7); without it one of an exempt document is set to 1 (exempt items: there are no others).

After the totals (`after_totals`, which need MntTotal):
- Facturas 33/34/46: FmaPago (FMT A.13: "Es obligatorio informar este campo"); a factura
  whose total is 0 is an entrega gratuita and carries FmaPago 3 (set when absent, a 1 or 2
  refused).
- Boletas 39/41 of `threshold_uf` UF or more (Ley 21.713, "135 UF o más"; FBE A.10, A.18,
  A.20): the buyer's real RUT (not 66666666-6), RznSocRecep and MedioPago.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sync.config import BoletasConfig
from sync.errors import DteSyncError
from sync.model import Documento, Emisor, Receptor, Referencia, Transporte
from sync.rut import Rut
from sync.sii import TipoDte

ANONYMOUS_RUT = Rut(66666666, "6")  # Formato Boletas A.18: the buyer who does not identify
BOLETA_REFS = frozenset({"35", "38", "39", "41"})  # boleta, boleta exenta (paper, electronic)
RECEPTOR_REQUIRED = frozenset({TipoDte.FACTURA, TipoDte.FACTURA_EXENTA, TipoDte.FACTURA_COMPRA,
                               TipoDte.GUIA_DESPACHO})
DIR_ORIGEN_REQUIRED = RECEPTOR_REQUIRED
CMNA_ORIGEN_REQUIRED = frozenset({TipoDte.FACTURA, TipoDte.FACTURA_EXENTA, TipoDte.GUIA_DESPACHO})
FMA_PAGO_REQUIRED = frozenset({TipoDte.FACTURA, TipoDte.FACTURA_EXENTA, TipoDte.FACTURA_COMPRA})
EXPORT_TRASLADO = frozenset({8, 9})
NO_TRANSPORT_DATA = "SIN INFO"  # in Patente: 8 characters, the XSD's maximum
# No UF since 2023 was below this (UF 2025-09-01, when Ley 21.713 took effect: about 39.380 pesos):
# a boleta under threshold × UF_FLOOR cannot reach the threshold, whatever today's UF.
UF_FLOOR = Decimal(35000)

_ENC = "Documento/Encabezado"


def before_totals(doc: Documento, errors: list[DteSyncError]) -> None:
    """The rules that complete or refuse the input before its amounts are computed."""
    tipo = doc.tipo
    if tipo.is_note:
        _note_references(doc, errors)
    if not tipo.is_boleta:
        for i, ref in enumerate(doc.referencia, 1):
            check_cod_ref(ref, i, errors)
    if tipo in RECEPTOR_REQUIRED:
        _party_data(doc, tipo, errors)
    if tipo is TipoDte.GUIA_DESPACHO:
        _guia(doc, errors)
    if tipo.is_exento:
        for dr in doc.dsc_rcg_global:
            dr.ind_exe_dr = dr.ind_exe_dr or 1


def after_totals(doc: Documento, boletas: BoletasConfig, errors: list[DteSyncError]) -> None:
    """The rules that need the completed totals (MntTotal)."""
    tipo = doc.tipo
    total = doc.totales.mnt_total or 0
    if tipo in FMA_PAGO_REQUIRED:
        _fma_pago(doc, tipo, total, errors)
    if tipo.is_boleta:
        _boleta_buyer(doc, boletas, total, errors)


# --- notes ------------------------------------------------------------------------------------

def _note_references(doc: Documento, errors: list[DteSyncError]) -> None:
    refs = doc.referencia
    if not refs:
        errors.append(DteSyncError("REFERENCIA_REQUIRED", field="Referencia", path="Documento/Referencia",
                                   params={"tipo_dte": doc.tipo_dte}))
        return
    coded = [(i, r) for i, r in enumerate(refs, 1) if r.cod_ref is not None]
    if not coded:
        errors.append(DteSyncError("CODREF_REQUIRED", field="CodRef", path="Documento/Referencia[1]/CodRef",
                                   params={"tipo_dte": doc.tipo_dte}))
    documents = sum(1 for r in refs if is_tax_document(r.tpo_doc_ref))
    for i, ref in coded:
        code = (ref.cod_ref or "").lstrip("0")
        if code in ("1", "2") and documents != 1:
            errors.append(DteSyncError("CODREF_SINGLE_DOCUMENT", field="CodRef", path=f"Documento/Referencia[{i}]/CodRef",
                                       found=documents, expected=1, params={"cod_ref": code}))
        if code == "2":
            _no_amounts(doc, i, errors)
    if doc.id_doc.mnt_bruto is None and any((r.tpo_doc_ref or "").strip() in BOLETA_REFS for r in refs):
        doc.id_doc.mnt_bruto = 1  # the boleta's amounts were gross: so are the note's


def is_tax_document(tpo_doc_ref: str | None) -> bool:
    """A TpoDocRef naming a tax document (30-112); 801-823 and free text (HES, SET) are not."""
    text = (tpo_doc_ref or "").strip()
    return text.isdigit() and 0 < int(text) < 800


def _no_amounts(doc: Documento, ref_no: int, errors: list[DteSyncError]) -> None:
    """CodRef 2 corrects text only (FMT E.8 b): every amount it carries is a mistake to refuse."""
    def refuse(field: str, path: str, found: Any) -> None:
        errors.append(DteSyncError("CODREF_TEXT_WITH_AMOUNTS", field=field, path=path, found=found,
                                   params={"ref": ref_no}))

    for n, det in enumerate(doc.detalle, 1):
        for tag, attr in (("PrcItem", "prc_item"), ("MontoItem", "monto_item"), ("DescuentoPct", "descuento_pct"),
                          ("DescuentoMonto", "descuento_monto"), ("RecargoPct", "recargo_pct"),
                          ("RecargoMonto", "recargo_monto")):
            value = getattr(det, attr)
            if value:
                refuse(tag, f"Documento/Detalle[{n}]/{tag}", value)
    for n, dr in enumerate(doc.dsc_rcg_global, 1):
        if dr.valor_dr:
            refuse("ValorDR", f"Documento/DscRcgGlobal[{n}]/ValorDR", dr.valor_dr)
    tot = doc.enc.totales
    if tot is not None:
        for tag, attr in (("MntNeto", "mnt_neto"), ("MntExe", "mnt_exe"), ("IVA", "iva"), ("MntTotal", "mnt_total")):
            value = getattr(tot, attr)
            if value:
                refuse(tag, f"{_ENC}/Totales/{tag}", value)


def check_cod_ref(ref: Referencia, line: int, errors: list[DteSyncError]) -> None:
    """DTE_v10.xsd: CodRef is 1 (anula), 2 (corrige texto) or 3 (corrige montos); in boletas it
    is free text (the SII's certification sets use `SET`). `01` is read as 1."""
    code = ref.cod_ref
    if code is None:
        return
    if code.isdigit() and int(code) in (1, 2, 3):
        ref.cod_ref = str(int(code))
        return
    errors.append(DteSyncError(
        "FIELD_NOT_IN_LIST", field="CodRef", path=f"Documento/Referencia[{line}]/CodRef", expected="1, 2, 3", found=code
    ))


# --- receptor, emisor, guías -----------------------------------------------------------------------

def _required(errors: list[DteSyncError], tipo: TipoDte, path: str, rule: str) -> None:
    errors.append(DteSyncError("FIELD_REQUIRED_FOR_TYPE", field=path.rsplit("/", 1)[-1], path=path,
                               params={"tipo_dte": int(tipo), "rule": rule}))


def _missing(obj: object | None, attrs: Iterable[tuple[str, str]]) -> list[str]:
    """The tags of `attrs` ((attribute, tag)) that `obj` lacks (all of them if obj is None)."""
    return [tag for attr, tag in attrs if obj is None or getattr(obj, attr) in (None, "", [])]


def _party_data(doc: Documento, tipo: TipoDte, errors: list[DteSyncError]) -> None:
    receptor: Receptor | None = doc.enc.receptor
    if receptor is not None:  # a missing Receptor is the XSD's FIELD_REQUIRED, reported by the builder
        for tag in _missing(receptor, (("giro_recep", "GiroRecep"), ("dir_recep", "DirRecep"), ("cmna_recep", "CmnaRecep"))):
            _required(errors, tipo, f"{_ENC}/Receptor/{tag}", "Formato DTE v2.5 A.57-61")
    emisor: Emisor | None = doc.enc.emisor
    wanted = [("dir_origen", "DirOrigen")] + ([("cmna_origen", "CmnaOrigen")] if tipo in CMNA_ORIGEN_REQUIRED else [])
    for tag in _missing(emisor, wanted):
        _required(errors, tipo, f"{_ENC}/Emisor/{tag}", "Formato DTE v2.5 A.44-45 (company.direccion, company.comuna)")


def _guia(doc: Documento, errors: list[DteSyncError]) -> None:
    tipo = TipoDte.GUIA_DESPACHO
    id_doc = doc.id_doc
    if id_doc.ind_traslado is None:
        _required(errors, tipo, f"{_ENC}/IdDoc/IndTraslado", "Formato DTE v2.5 A.7")
    transporte = doc.enc.transporte or Transporte()
    where = f"{_ENC}/Transporte"
    for tag in _missing(transporte, (("dir_dest", "DirDest"), ("cmna_dest", "CmnaDest"))):
        _required(errors, tipo, f"{where}/{tag}", "Formato DTE v2.5 A.71-72")
    _res_154(transporte, where, errors)
    if id_doc.ind_traslado in EXPORT_TRASLADO:
        _export_guia(doc, transporte, errors)


def _res_154(transporte: Transporte, where: str, errors: list[DteSyncError]) -> None:
    """Vehicle, carrier and driver (Res. Ex. 154/2025), or the document's express statement
    that they are not known: Patente=SIN INFO (the XSD's Chofer needs a RUT, so the statement
    goes in the one text field the area has; a RUTTrans or Chofer given is still written)."""
    def refuse(tag: str, detail: str) -> None:
        errors.append(DteSyncError("GUIA_TRANSPORTE_REQUIRED", field=tag.rsplit("/", 1)[-1], path=f"{where}/{tag}",
                                   params={"detail": detail}))

    if not transporte.patente:
        refuse("Patente", "la patente del vehículo")
    elif transporte.patente.strip().upper() == NO_TRANSPORT_DATA:
        return
    if transporte.rut_trans is None:
        refuse("RUTTrans", "el RUT del transportista")
    if transporte.chofer is None:  # a Chofer given has its RUT and name: the XSD requires both
        refuse("Chofer/RUTChofer", "el RUT y el nombre del chofer")


def _export_guia(doc: Documento, transporte: Transporte, errors: list[DteSyncError]) -> None:
    tipo = TipoDte.GUIA_DESPACHO
    emisor = doc.enc.emisor
    export = emisor.guia_export if emisor is not None else None
    rule = "Formato DTE v2.5 A.38-40, A.84-95 (IndTraslado 8 o 9)"
    for tag in _missing(export, (("cdg_traslado", "CdgTraslado"),)):
        _required(errors, tipo, f"{_ENC}/Emisor/GuiaExport/{tag}", rule)
    if export is not None and export.cdg_traslado == 4:
        for tag in _missing(export, (("folio_aut", "FolioAut"), ("fch_aut", "FchAut"))):
            _required(errors, tipo, f"{_ENC}/Emisor/GuiaExport/{tag}", rule)
    aduana = transporte.aduana
    for tag in _missing(aduana, (("cod_pto_embarque", "CodPtoEmbarque"), ("id_adic_pto_emb", "IdAdicPtoEmb"),
                                 ("cod_pto_desemb", "CodPtoDesemb"), ("peso_bruto", "PesoBruto"),
                                 ("cod_unid_peso_bruto", "CodUnidPesoBruto"), ("tot_bultos", "TotBultos"))):
        _required(errors, tipo, f"{_ENC}/Transporte/Aduana/{tag}", rule)


# --- after the totals ---------------------------------------------------------------------------

def _fma_pago(doc: Documento, tipo: TipoDte, total: int, errors: list[DteSyncError]) -> None:
    id_doc = doc.id_doc
    path = f"{_ENC}/IdDoc/FmaPago"
    if total == 0:
        if id_doc.fma_pago is None:
            id_doc.fma_pago = 3  # sin costo (entrega gratuita): the only form a factura of 0 can have
        elif id_doc.fma_pago != 3:
            errors.append(DteSyncError("FMA_PAGO_GRATUITA", field="FmaPago", path=path, found=id_doc.fma_pago,
                                       expected=3))
    elif id_doc.fma_pago is None:
        _required(errors, tipo, path, "Formato DTE v2.5 A.13: 1 contado, 2 crédito, 3 sin costo")


def _boleta_buyer(doc: Documento, boletas: BoletasConfig, total: int, errors: list[DteSyncError]) -> None:
    """Ley 21.713: a boleta of `threshold_uf` UF or more names its buyer (and how it was paid)."""
    threshold = boletas.threshold_uf
    if boletas.uf is None:
        if total >= threshold * UF_FLOOR:
            errors.append(DteSyncError("CONFIG_UF_MISSING", field="MntTotal", path=f"{_ENC}/Totales/MntTotal",
                                       found=total, params={"threshold": threshold}))
        return
    if total < threshold * boletas.uf:
        return
    receptor = doc.enc.receptor or Receptor()
    params = {"threshold": threshold, "uf": boletas.uf, "total": total,
              "uf_total": (Decimal(total) / boletas.uf).quantize(Decimal("0.01"))}
    lacking = []
    if receptor.rut_recep is None or receptor.rut_recep == ANONYMOUS_RUT:
        lacking.append(("Receptor/RUTRecep", str(receptor.rut_recep) if receptor.rut_recep else None))
    if not receptor.rzn_soc_recep:
        lacking.append(("Receptor/RznSocRecep", None))
    if not doc.id_doc.medio_pago:
        lacking.append(("IdDoc/MedioPago", None))
    for tag, found in lacking:
        errors.append(DteSyncError("BOLETA_BUYER_REQUIRED", field=tag.rsplit("/", 1)[-1], path=f"{_ENC}/{tag}",
                                   found=found, params=params))
