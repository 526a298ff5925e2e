"""The document model: one typed dataclass per SII element group, for every DTE type.

The model mirrors the SII's own structure (Formato DTE v2.5 and the 2026 XSDs): each field is
the snake_case of its SII tag and carries that tag in its metadata (`sii()`), so the three
input formats (XML, JSON, TXT, all named after the SII tags), the XML builder and the printed
representation share one vocabulary with the SII manuals. The union of the DTE schema
(33, 34, 46, 52, 56, 61; Exportaciones 110-112 reuse these groups) and the boleta schema
(39, 41) is covered; where a boleta names a tag differently (RznSocEmisor, GiroEmisor) the
field carries both names. Field order here is informative only: the builder emits tags in
the order the XSD of the document's type fixes (sync/dte/tag_order.py).

TED, TmstFirma and the signature are not part of the model: the engine adds them.
Regenerate the skeleton after an XSD update with tools/gen_model.py and diff.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sync.errors import DteSyncError
from sync.rut import Rut
from sync.sii import TipoDte, is_boleta

T = TypeVar("T")


def sii(tag: str, *, boleta: str | None = None, many: bool = False) -> Any:  # Any: as dataclasses.field
    """A model field named `tag` in the SII format (`boleta` if boletas name it otherwise)."""
    meta = {"sii": tag, "boleta": boleta or tag, "many": many}
    if many:
        return field(default_factory=list, metadata=meta)
    return field(default=None, metadata=meta)


_GROUP_CLASSES: dict[type, bool] = {}
_SII_FIELDS: dict[type, tuple[Field[Any], ...]] = {}


def is_group(value: Any) -> bool:
    """A model element group (a dataclass with SII fields), as opposed to a leaf value (Rut too)."""
    cls = type(value)
    known = _GROUP_CLASSES.get(cls)
    if known is None:
        known = _GROUP_CLASSES[cls] = is_dataclass(cls) and not issubclass(cls, (Rut, type))
    return known


def sii_fields(cls_or_obj: object) -> tuple[Field[Any], ...]:
    """The dataclass fields of a model class that map to SII tags, in declaration order."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    cached = _SII_FIELDS.get(cls)
    if cached is None:
        cached = _SII_FIELDS[cls] = tuple(f for f in fields(cls) if "sii" in f.metadata)
    return cached


@dataclass
class InfoTicket:
    folio_ticket: int | None = sii('FolioTicket')  # boleta only
    fch_genera: datetime | None = sii('FchGenera')  # boleta only
    nmb_evento: str | None = sii('NmbEvento')  # boleta only
    tpo_ticket: str | None = sii('TpoTicket')  # boleta only
    cdg_evento: str | None = sii('CdgEvento')  # boleta only
    fch_evento: datetime | None = sii('FchEvento')  # boleta only
    lugar_evento: str | None = sii('LugarEvento')  # boleta only
    ubic_evento: str | None = sii('UbicEvento')  # boleta only
    fila_ubic_evento: str | None = sii('FilaUbicEvento')  # boleta only
    asnto_ubic_evento: str | None = sii('AsntoUbicEvento')  # boleta only

@dataclass
class Comisiones:
    nro_lin_com: int | None = sii('NroLinCom')
    tipo_movim: str | None = sii('TipoMovim')
    glosa: str | None = sii('Glosa')
    tasa_comision: Decimal | None = sii('TasaComision')
    val_com_neto: int | None = sii('ValComNeto')
    val_com_exe: int | None = sii('ValComExe')
    val_com_iva: int | None = sii('ValComIVA')

@dataclass
class ManejoMadera:
    comuna_rol_origen: int | None = sii('ComunaRolOrigen')
    mnz_rol_origen: int | None = sii('MnzRolOrigen')
    prd_rol_origen: int | None = sii('PrdRolOrigen')
    comuna_rol_destino: int | None = sii('ComunaRolDestino')
    mnz_rol_destino: int | None = sii('MnzRolDestino')
    prd_rol_destino: int | None = sii('PrdRolDestino')
    cod_plan_conaf: str | None = sii('CodPlanConaf')
    aviso_ejecucion_faena: str | None = sii('AvisoEjecucionFaena')
    latitud_origen_madera: str | None = sii('LatitudOrigenMadera')
    longitud_origen_madera: str | None = sii('LongitudOrigenMadera')
    latitud_destino_madera: str | None = sii('LatitudDestinoMadera')
    longitud_destino_madera: str | None = sii('LongitudDestinoMadera')
    sistemareferencia_madera: int | None = sii('SistemareferenciaMadera')

@dataclass
class GeoRefEmision:
    latitud_emision: str | None = sii('LatitudEmision')
    longitud_emision: str | None = sii('LongitudEmision')
    sistema_referencia: int | None = sii('SistemaReferencia')

@dataclass
class Referencia:
    nro_lin_ref: int | None = sii('NroLinRef')
    tpo_doc_ref: str | None = sii('TpoDocRef')
    ind_global: int | None = sii('IndGlobal')
    folio_ref: str | None = sii('FolioRef')
    rut_otr: Rut | None = sii('RUTOtr')
    fch_ref: date | None = sii('FchRef')
    cod_ref: str | None = sii('CodRef')  # DTE: 1, 2 or 3 (checked by the engine); boletas: up to 18 characters, e.g. SET
    razon_ref: str | None = sii('RazonRef')
    cod_vndor: str | None = sii('CodVndor')  # boleta only
    cod_caja: str | None = sii('CodCaja')  # boleta only

@dataclass
class DscRcgGlobal:
    nro_lin_dr: int | None = sii('NroLinDR')
    tpo_mov: str | None = sii('TpoMov')
    glosa_dr: str | None = sii('GlosaDR')
    tpo_valor: str | None = sii('TpoValor')
    valor_dr: Decimal | None = sii('ValorDR')
    valor_dr_otr_mnda: Decimal | None = sii('ValorDROtrMnda')
    ind_exe_dr: int | None = sii('IndExeDR')

@dataclass
class SubTotInfo:
    nro_sti: int | None = sii('NroSTI')
    glosa_sti: str | None = sii('GlosaSTI')
    orden_sti: int | None = sii('OrdenSTI')
    sub_tot_neto_sti: Decimal | None = sii('SubTotNetoSTI')
    sub_tot_ivasti: Decimal | None = sii('SubTotIVASTI')
    sub_tot_adic_sti: Decimal | None = sii('SubTotAdicSTI')
    sub_tot_exe_sti: Decimal | None = sii('SubTotExeSTI')
    val_subtot_sti: Decimal | None = sii('ValSubtotSTI')
    lineas_deta: list[int] = sii('LineasDeta', many=True)  # max 60

@dataclass
class SubRecargo:
    tipo_recargo: str | None = sii('TipoRecargo')
    valor_recargo: Decimal | None = sii('ValorRecargo')

@dataclass
class SubDscto:
    tipo_dscto: str | None = sii('TipoDscto')
    valor_dscto: Decimal | None = sii('ValorDscto')

@dataclass
class OtrMnda:
    prc_otr_mon: Decimal | None = sii('PrcOtrMon')
    moneda: str | None = sii('Moneda')
    fct_conv: Decimal | None = sii('FctConv')
    dcto_otr_mnda: Decimal | None = sii('DctoOtrMnda')
    recargo_otr_mnda: Decimal | None = sii('RecargoOtrMnda')
    monto_item_otr_mnda: Decimal | None = sii('MontoItemOtrMnda')

@dataclass
class Subcantidad:
    sub_qty: Decimal | None = sii('SubQty')
    sub_cod: str | None = sii('SubCod')

@dataclass
class Retenedor:
    ind_agente: str | None = sii('IndAgente')
    mnt_base_faena: int | None = sii('MntBaseFaena')
    mnt_marg_comer: int | None = sii('MntMargComer')
    prc_cons_final: int | None = sii('PrcConsFinal')

@dataclass
class CdgItem:
    tpo_codigo: str | None = sii('TpoCodigo')
    vlr_codigo: str | None = sii('VlrCodigo')

@dataclass
class Detalle:
    nro_lin_det: int | None = sii('NroLinDet')
    cdg_item: list[CdgItem] = sii('CdgItem', many=True)  # max 5
    ind_exe: int | None = sii('IndExe')
    retenedor: Retenedor | None = sii('Retenedor')
    nmb_item: str | None = sii('NmbItem')
    dsc_item: str | None = sii('DscItem')
    qty_ref: Decimal | None = sii('QtyRef')
    unmd_ref: str | None = sii('UnmdRef')
    prc_ref: Decimal | None = sii('PrcRef')
    qty_item: Decimal | None = sii('QtyItem')
    subcantidad: list[Subcantidad] = sii('Subcantidad', many=True)  # max 5
    fch_elabor: date | None = sii('FchElabor')
    fch_vencim: date | None = sii('FchVencim')
    unmd_item: str | None = sii('UnmdItem')
    prc_item: Decimal | None = sii('PrcItem')
    otr_mnda: OtrMnda | None = sii('OtrMnda')
    descuento_pct: Decimal | None = sii('DescuentoPct')
    descuento_monto: int | None = sii('DescuentoMonto')
    sub_dscto: list[SubDscto] = sii('SubDscto', many=True)  # max 5
    recargo_pct: Decimal | None = sii('RecargoPct')
    recargo_monto: int | None = sii('RecargoMonto')
    sub_recargo: list[SubRecargo] = sii('SubRecargo', many=True)  # max 5
    cod_imp_adic: list[str] = sii('CodImpAdic', many=True)  # max 2
    monto_item: int | None = sii('MontoItem')
    item_espectaculo: int | None = sii('ItemEspectaculo')  # boleta only
    rut_mandante: Rut | None = sii('RUTMandante')  # boleta only
    info_ticket: InfoTicket | None = sii('InfoTicket')  # boleta only

@dataclass
class ImpRetOtrMnda:
    tipo_imp_otr_mnda: str | None = sii('TipoImpOtrMnda')
    tasa_imp_otr_mnda: Decimal | None = sii('TasaImpOtrMnda')
    vlr_imp_otr_mnda: Decimal | None = sii('VlrImpOtrMnda')

@dataclass
class OtraMoneda:
    tpo_moneda: str | None = sii('TpoMoneda')
    tpo_cambio: Decimal | None = sii('TpoCambio')
    mnt_neto_otr_mnda: Decimal | None = sii('MntNetoOtrMnda')
    mnt_exe_otr_mnda: Decimal | None = sii('MntExeOtrMnda')
    mnt_fae_carne_otr_mnda: Decimal | None = sii('MntFaeCarneOtrMnda')
    mnt_marg_com_otr_mnda: Decimal | None = sii('MntMargComOtrMnda')
    iva_otr_mnda: Decimal | None = sii('IVAOtrMnda')
    imp_ret_otr_mnda: list[ImpRetOtrMnda] = sii('ImpRetOtrMnda', many=True)  # max 20
    iva_no_ret_otr_mnda: Decimal | None = sii('IVANoRetOtrMnda')
    mnt_tot_otr_mnda: Decimal | None = sii('MntTotOtrMnda')

@dataclass
class TotalesComisiones:
    val_com_neto: int | None = sii('ValComNeto')
    val_com_exe: int | None = sii('ValComExe')
    val_com_iva: int | None = sii('ValComIVA')

@dataclass
class ImptoReten:
    tipo_imp: str | None = sii('TipoImp')
    tasa_imp: Decimal | None = sii('TasaImp')
    monto_imp: int | None = sii('MontoImp')

@dataclass
class Totales:
    mnt_neto: int | None = sii('MntNeto')
    mnt_exe: int | None = sii('MntExe')
    mnt_base: int | None = sii('MntBase')
    mnt_margen_com: int | None = sii('MntMargenCom')
    tasa_iva: Decimal | None = sii('TasaIVA')
    iva: int | None = sii('IVA')
    iva_prop: int | None = sii('IVAProp')
    iva_terc: int | None = sii('IVATerc')
    impto_reten: list[ImptoReten] = sii('ImptoReten', many=True)  # max 20
    iva_no_ret: int | None = sii('IVANoRet')
    cred_ec: int | None = sii('CredEC')
    grnt_dep: int | None = sii('GrntDep')
    comisiones: TotalesComisiones | None = sii('Comisiones')
    mnt_total: int | None = sii('MntTotal')
    monto_nf: int | None = sii('MontoNF')
    monto_periodo: int | None = sii('MontoPeriodo')
    saldo_anterior: int | None = sii('SaldoAnterior')
    vlr_pagar: int | None = sii('VlrPagar')
    total_periodo: int | None = sii('TotalPeriodo')  # boleta only

@dataclass
class TipoBultos:
    cod_tpo_bultos: int | None = sii('CodTpoBultos')
    cant_bultos: int | None = sii('CantBultos')
    marcas: str | None = sii('Marcas')
    id_container: str | None = sii('IdContainer')
    sello: str | None = sii('Sello')
    emisor_sello: str | None = sii('EmisorSello')

@dataclass
class Aduana:
    cod_mod_venta: int | None = sii('CodModVenta')
    cod_clau_venta: int | None = sii('CodClauVenta')
    tot_clau_venta: Decimal | None = sii('TotClauVenta')
    cod_via_transp: int | None = sii('CodViaTransp')
    nombre_transp: str | None = sii('NombreTransp')
    rut_cia_transp: Rut | None = sii('RUTCiaTransp')
    nom_cia_transp: str | None = sii('NomCiaTransp')
    id_adic_transp: str | None = sii('IdAdicTransp')
    booking: str | None = sii('Booking')
    operador: str | None = sii('Operador')
    cod_pto_embarque: int | None = sii('CodPtoEmbarque')
    id_adic_pto_emb: str | None = sii('IdAdicPtoEmb')
    cod_pto_desemb: int | None = sii('CodPtoDesemb')
    id_adic_pto_desemb: str | None = sii('IdAdicPtoDesemb')
    tara: int | None = sii('Tara')
    cod_unid_med_tara: int | None = sii('CodUnidMedTara')
    peso_bruto: Decimal | None = sii('PesoBruto')
    cod_unid_peso_bruto: int | None = sii('CodUnidPesoBruto')
    peso_neto: Decimal | None = sii('PesoNeto')
    cod_unid_peso_neto: int | None = sii('CodUnidPesoNeto')
    tot_items: int | None = sii('TotItems')
    tot_bultos: int | None = sii('TotBultos')
    tipo_bultos: list[TipoBultos] = sii('TipoBultos', many=True)  # max 10
    mnt_flete: Decimal | None = sii('MntFlete')
    mnt_seguro: Decimal | None = sii('MntSeguro')
    cod_pais_recep: int | None = sii('CodPaisRecep')
    cod_pais_destin: int | None = sii('CodPaisDestin')

@dataclass
class Chofer:
    rut_chofer: Rut | None = sii('RUTChofer')
    nombre_chofer: str | None = sii('NombreChofer')

@dataclass
class Transporte:
    patente: str | None = sii('Patente')
    patente_carro: str | None = sii('PatenteCarro')
    rut_trans: Rut | None = sii('RUTTrans')
    chofer: Chofer | None = sii('Chofer')
    dir_dest: str | None = sii('DirDest')
    cmna_dest: str | None = sii('CmnaDest')
    ciudad_dest: str | None = sii('CiudadDest')
    aduana: Aduana | None = sii('Aduana')
    fch_salida: date | None = sii('FchSalida')
    hra_salida: str | None = sii('HraSalida')
    fch_llegada: date | None = sii('FchLlegada')

@dataclass
class Extranjero:
    num_id: str | None = sii('NumId')
    nacionalidad: str | None = sii('Nacionalidad')
    tipo_doc_id: int | None = sii('TipoDocID')

@dataclass
class Receptor:
    rut_recep: Rut | None = sii('RUTRecep')
    cdg_int_recep: str | None = sii('CdgIntRecep')
    rzn_soc_recep: str | None = sii('RznSocRecep')
    extranjero: Extranjero | None = sii('Extranjero')
    giro_recep: str | None = sii('GiroRecep')
    contacto: str | None = sii('Contacto')
    correo_recep: str | None = sii('CorreoRecep')
    dir_recep: str | None = sii('DirRecep')
    cmna_recep: str | None = sii('CmnaRecep')
    ciudad_recep: str | None = sii('CiudadRecep')
    dir_postal: str | None = sii('DirPostal')
    cmna_postal: str | None = sii('CmnaPostal')
    ciudad_postal: str | None = sii('CiudadPostal')
    telefono_recep: str | None = sii('TelefonoRecep')  # boleta only

@dataclass
class GuiaExport:
    cdg_traslado: int | None = sii('CdgTraslado')
    folio_aut: int | None = sii('FolioAut')
    fch_aut: date | None = sii('FchAut')

@dataclass
class Emisor:
    rut_emisor: Rut | None = sii('RUTEmisor')
    rzn_soc: str | None = sii('RznSoc', boleta='RznSocEmisor')
    giro_emis: str | None = sii('GiroEmis', boleta='GiroEmisor')
    telefono: list[str] = sii('Telefono', many=True)  # max 2
    correo_emisor: str | None = sii('CorreoEmisor')
    acteco: list[int] = sii('Acteco', many=True)  # max 4
    guia_export: GuiaExport | None = sii('GuiaExport')
    sucursal: str | None = sii('Sucursal')
    cdg_sii_sucur: int | None = sii('CdgSIISucur')
    dir_origen: str | None = sii('DirOrigen')
    cmna_origen: str | None = sii('CmnaOrigen')
    ciudad_origen: str | None = sii('CiudadOrigen')
    cdg_vendedor: str | None = sii('CdgVendedor')
    id_adic_emisor: str | None = sii('IdAdicEmisor')
    rut_proveedor: Rut | None = sii('RUTProveedor')
    rzn_soc_proveedor: str | None = sii('RznSocProveedor')

@dataclass
class MntPagos:
    fch_pago: date | None = sii('FchPago')
    mnt_pago: int | None = sii('MntPago')
    glosa_pagos: str | None = sii('GlosaPagos')

@dataclass
class IdDoc:
    tipo_dte: int | None = sii('TipoDTE')
    folio: int | None = sii('Folio')
    fch_emis: date | None = sii('FchEmis')
    ind_no_rebaja: int | None = sii('IndNoRebaja')
    tipo_despacho: int | None = sii('TipoDespacho')
    ind_traslado: int | None = sii('IndTraslado')
    tpo_impresion: str | None = sii('TpoImpresion')
    ind_servicio: int | None = sii('IndServicio')
    mnt_bruto: int | None = sii('MntBruto')
    tpo_tran_compra: int | None = sii('TpoTranCompra')
    tpo_tran_venta: int | None = sii('TpoTranVenta')
    fma_pago: int | None = sii('FmaPago')
    fma_pag_exp: int | None = sii('FmaPagExp')
    fch_cancel: date | None = sii('FchCancel')
    mnt_cancel: int | None = sii('MntCancel')
    saldo_insol: int | None = sii('SaldoInsol')
    mnt_pagos: list[MntPagos] = sii('MntPagos', many=True)  # max 30
    periodo_desde: date | None = sii('PeriodoDesde')
    periodo_hasta: date | None = sii('PeriodoHasta')
    medio_pago: str | None = sii('MedioPago')
    tpo_cta_pago: str | None = sii('TpoCtaPago')
    num_cta_pago: str | None = sii('NumCtaPago')
    bco_pago: str | None = sii('BcoPago')
    term_pago_cdg: str | None = sii('TermPagoCdg')
    term_pago_glosa: str | None = sii('TermPagoGlosa')
    term_pago_dias: int | None = sii('TermPagoDias')
    fch_venc: date | None = sii('FchVenc')
    tipo_fact_esp: int | None = sii('TipoFactEsp')
    ind_mnt_neto: int | None = sii('IndMntNeto')  # boleta only

@dataclass
class Encabezado:
    id_doc: IdDoc | None = sii('IdDoc')
    emisor: Emisor | None = sii('Emisor')
    rut_mandante: Rut | None = sii('RUTMandante')
    receptor: Receptor | None = sii('Receptor')
    rut_solicita: Rut | None = sii('RUTSolicita')
    transporte: Transporte | None = sii('Transporte')
    totales: Totales | None = sii('Totales')
    otra_moneda: OtraMoneda | None = sii('OtraMoneda')
    rut_prov_sw: Rut | None = sii('RUTProvSW')  # boleta only

@dataclass
class Documento:
    encabezado: Encabezado | None = sii('Encabezado')
    detalle: list[Detalle] = sii('Detalle', many=True)  # max 60
    sub_tot_info: list[SubTotInfo] = sii('SubTotInfo', many=True)  # max 20
    dsc_rcg_global: list[DscRcgGlobal] = sii('DscRcgGlobal', many=True)  # max 20
    referencia: list[Referencia] = sii('Referencia', many=True)  # max 40
    geo_ref_emision: GeoRefEmision | None = sii('GeoRefEmision')
    manejo_madera: ManejoMadera | None = sii('ManejoMadera')
    comisiones: list[Comisiones] = sii('Comisiones', many=True)  # max 20

    # Typed access to the groups every document has by the time it is used: Encabezado, IdDoc
    # and TipoDTE once read (the readers require them), Emisor, Receptor and Totales once the
    # engine completed it. A document without one gets FIELD_REQUIRED, never an AttributeError.
    @property
    def enc(self) -> Encabezado:
        return required(self.encabezado, "Encabezado", "Documento/Encabezado")

    @property
    def id_doc(self) -> IdDoc:
        return required(self.enc.id_doc, "IdDoc", "Documento/Encabezado/IdDoc")

    @property
    def emisor(self) -> Emisor:
        return required(self.enc.emisor, "Emisor", "Documento/Encabezado/Emisor")

    @property
    def receptor(self) -> Receptor:
        return required(self.enc.receptor, "Receptor", "Documento/Encabezado/Receptor")

    @property
    def totales(self) -> Totales:
        return required(self.enc.totales, "Totales", "Documento/Encabezado/Totales")

    @property
    def tipo_dte(self) -> int:
        enc = self.encabezado  # written out: asked several times per document on the hot path
        id_doc = enc.id_doc if enc is not None else None
        tipo = id_doc.tipo_dte if id_doc is not None else None
        if tipo is None:
            raise DteSyncError("FIELD_REQUIRED", field="TipoDTE", path="Documento/Encabezado/IdDoc/TipoDTE")
        return tipo

    @property
    def tipo(self) -> TipoDte:
        """The document's TipoDte (the readers accept only types the SII defines)."""
        try:
            return TipoDte(self.tipo_dte)
        except ValueError:
            raise DteSyncError("TIPO_DTE_UNSUPPORTED", field="TipoDTE", found=self.tipo_dte) from None

    @property
    def folio(self) -> int | None:
        return self.id_doc.folio

    @property
    def is_boleta(self) -> bool:
        return is_boleta(self.tipo_dte)


def required(value: T | None, field: str, path: str) -> T:
    """`value`, which the SII schema requires at `path`; FIELD_REQUIRED if it is missing."""
    if value is None:
        raise DteSyncError("FIELD_REQUIRED", field=field, path=path)
    return value



