"""One layout model of the printed representation, shared by the PDF and the ticket renderers.

Built from the signed document (`Issued.documento` + `Issued.ted`, or the outbox NAME.xml after a
crash or for a reprint: `source_from_dte_xml`) and the configuration. What goes where and in
which order follows the SII's Manual de Muestras Impresas v3.0 (§1.1.7): emisor, the document
box (RUT, name, folio) with "S.I.I. - <unidad>" under it, date, receptor, references, detail,
totals, the acuse de recibo on cedible copies, the timbre with its legends, and the destination
legend ("CEDIBLE", "CEDIBLE CON SU FACTURA") on cedible copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

from lxml import etree

from sync.config import Company, PrintingConfig
from sync.model import Detalle, Documento, Receptor, Referencia
from sync.rut import Rut
from sync.sii import TipoDte, is_boleta
from sync.totals import global_dr_amounts

SII_NS = "http://www.sii.cl/SiiDte"
ANONYMOUS_RUT = "66666666-6"
MONTHS = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
          "octubre", "noviembre", "diciembre")
# Formato DTE: IndTraslado (guías de despacho).
TRASLADOS = {
    1: "Operación constituye venta", 2: "Ventas por efectuar", 3: "Consignaciones", 4: "Entrega gratuita",
    5: "Traslados internos", 6: "Otros traslados no venta", 7: "Guía de devolución",
    8: "Traslado para exportación (no venta)", 9: "Venta para exportación",
}
# Formato DTE, TipoImp: the retentions a factura de compra shows as "Menos: ...".
TAX_NAMES = {"15": "Menos: IVA retenido total", "16": "Menos: IVA retenido parcial", "17": "IVA anticipado faenamiento carne",
             "18": "IVA anticipado carne", "19": "IVA anticipado harina", "14": "IVA margen de comercialización"}
FORMAS_PAGO = {1: "Contado", 2: "Crédito", 3: "Sin costo (entrega gratuita)"}
# Referenced document types that are not DTEs (Formato DTE, TpoDocRef).
OTHER_REFS = {"801": "Orden de compra", "802": "Nota de pedido", "803": "Contrato", "804": "Resolución",
              "HES": "Hoja de entrada de servicio", "SET": "Set de pruebas"}
CODREF = {1: "Anula documento", 2: "Corrige texto", 3: "Corrige montos"}
# Manual de Muestras Impresas §1.4: cedible copies for these; guías only when the traslado is a sale.
CEDIBLE_TYPES = {33: "CEDIBLE", 34: "CEDIBLE", 43: "CEDIBLE", 46: "CEDIBLE", 52: "CEDIBLE CON SU FACTURA"}
GUIA_SALE_TRASLADOS = {1, 2, 9}
ACUSE_TEXT = (
    "El acuse de recibo que se declara en este acto, de acuerdo a lo dispuesto en la letra b) del Art. 4°, "
    "y la letra c) del Art. 5° de la Ley 19.983, acredita que la entrega de mercaderías o servicio(s) "
    "prestado(s) ha(n) sido recibido(s)."
)


@dataclass
class Line:
    """One detail line, already formatted for printing."""

    codigo: str
    nombre: str
    descripcion: str
    cantidad: str
    unidad: str
    precio: str
    descuento: str
    valor: str
    exento: bool


@dataclass
class Reference:
    tipo: str
    folio: str
    fecha: str
    razon: str


@dataclass
class Layout:
    tipo_dte: int
    folio: int
    doc_name: str
    rut_emisor: str  # dotted: 76.543.210-3
    sii_unidad: str
    emisor_name: str
    emisor_lines: list[str]  # giro, casa matriz, sucursal, contact, membrete
    fecha: str  # "Santiago, 21 de marzo de 2025"
    receptor: list[tuple[str, str]]
    extra: list[tuple[str, str]]  # forma de pago, traslado, transporte
    lines: list[Line]
    references: list[Reference]
    totals: list[tuple[str, str]]
    ted: bytes
    legends: list[str]  # under the timbre
    footer: list[str]
    logo: Path | None = None
    copy_label: str | None = None  # "CEDIBLE" / "CEDIBLE CON SU FACTURA" on the cedible copy
    acuse_recibo: bool = False
    acuse_text: str = ACUSE_TEXT
    notes: list[str] = field(default_factory=list)

    @property
    def is_boleta(self) -> bool:
        return is_boleta(self.tipo_dte)


@dataclass
class PrintSource:
    """What a printed representation needs: the document model and its exact TED bytes."""

    documento: Documento
    ted: bytes
    xml: etree._Element | None = None  # the signed <DTE> or <Documento>, for routing by field


# --- formatting ---------------------------------------------------------------------------------
def money(value: int | Decimal | None) -> str:
    """Chilean pesos with '.' thousands: 5461060 -> '5.461.060'."""
    if value is None:
        return ""
    n = int(value)
    return ("-" if n < 0 else "") + f"{abs(n):,}".replace(",", ".")


def number(value: Decimal | int | None) -> str:
    """Quantities and prices: '.' thousands, ',' decimals, no trailing zeros (1.250 -> '1,25')."""
    if value is None:
        return ""
    d = Decimal(value).normalize()
    sign, q = ("-" if d < 0 else ""), abs(d)
    whole, _, frac = f"{q:f}".partition(".")
    whole = f"{int(whole):,}".replace(",", ".")
    return sign + whole + ("," + frac if frac else "")


def long_date(d: date) -> str:
    return f"{d.day} de {MONTHS[d.month - 1]} de {d.year}"


def rut_dotted(value: Rut | str | None) -> str:
    if value is None:
        return ""
    try:
        return (value if isinstance(value, Rut) else Rut.parse(str(value))).dotted()
    except ValueError:
        return str(value)


def _join(*parts: str | None) -> str:
    return ", ".join(p for p in parts if p)


def exento_mark(line: Line) -> str:
    return " (exento)" if line.exento and "exento" not in line.nombre.lower() else ""


def quantity_text(line: Line) -> str:
    """'  2 UN x 1.190  dcto 600' for a ticket's second line of an item."""
    qty = " ".join(x for x in (line.cantidad, line.unidad) if x)
    text = f"  {qty} x {line.precio}" if line.precio else f"  {qty}"
    return text + (f"  dcto {line.descuento}" if line.descuento else "")


# --- copies ------------------------------------------------------------------------------------------
def cedible_label(doc: Documento) -> str | None:
    """The destination legend of the cedible copy, or None when the type has none."""
    tipo = doc.tipo_dte
    if tipo == 52:
        ind = doc.id_doc.ind_traslado
        return CEDIBLE_TYPES[52] if ind in GUIA_SALE_TRASLADOS else None
    return CEDIBLE_TYPES.get(tipo)


# --- building -------------------------------------------------------------------------------------------
def build_layout(src: PrintSource, company: Company, printing: PrintingConfig, *, cedible: bool = False) -> Layout:
    doc = src.documento
    idd, em = doc.id_doc, doc.emisor
    rec = doc.enc.receptor or Receptor()
    tipo = doc.tipo
    boleta = tipo.is_boleta
    copy_label = cedible_label(doc) if cedible else None
    assert idd.folio is not None and idd.fch_emis is not None, "a signed document has its folio and date"
    return Layout(
        tipo_dte=int(tipo),
        folio=int(idd.folio),
        doc_name=tipo.printed_name,
        rut_emisor=rut_dotted(em.rut_emisor),
        sii_unidad=f"S.I.I. - {printing.sii_unidad.upper()}",
        emisor_name=em.rzn_soc or company.razon_social,
        emisor_lines=_emisor_lines(doc, company, printing),
        fecha=f"{company.ciudad + ', ' if company.ciudad else ''}{long_date(idd.fch_emis)}",
        receptor=[] if boleta and str(rec.rut_recep or ANONYMOUS_RUT) == ANONYMOUS_RUT else _receptor(doc),
        extra=_extra(doc),
        lines=[_line(d) for d in doc.detalle],
        references=[_reference(r) for r in doc.referencia if r.tpo_doc_ref or r.folio_ref],
        totals=_totals(doc, tipo),
        ted=src.ted,
        legends=[
            "Timbre Electrónico SII",
            f"Res. {company.nro_resol} de {company.fch_resol.year}",
            f"Verifique documento: {printing.boleta_url if boleta else 'www.sii.cl'}",
        ],
        footer=list(printing.footer),
        logo=printing.logo,
        copy_label=copy_label,
        acuse_recibo=copy_label is not None,
        notes=_notes(doc),
    )


def _emisor_lines(doc: Documento, company: Company, printing: PrintingConfig) -> list[str]:
    em = doc.emisor
    lines = [em.giro_emis or company.giro]
    matriz = _join(company.direccion, company.comuna, company.ciudad)
    if matriz:
        lines.append(f"Casa Matriz: {matriz}")
    origen = _join(em.dir_origen, em.cmna_origen, em.ciudad_origen)
    if origen and origen != matriz:
        lines.append(f"Sucursal{' ' + em.sucursal if em.sucursal else ''}: {origen}")
    contact = _join(*(f"Fono: {t}" for t in (em.telefono or ([company.telefono] if company.telefono else []))),
                    em.correo_emisor or company.correo)
    if contact:
        lines.append(contact)
    return lines + list(printing.membrete)


def _receptor(doc: Documento) -> list[tuple[str, str]]:
    r = doc.receptor
    rows = [("Señor(es)", r.rzn_soc_recep or ""), ("RUT", rut_dotted(r.rut_recep))]
    for label, value in (("Giro", r.giro_recep), ("Dirección", r.dir_recep), ("Comuna", r.cmna_recep),
                         ("Ciudad", r.ciudad_recep), ("Contacto", r.contacto)):
        if value:
            rows.append((label, value))
    return rows


def _extra(doc: Documento) -> list[tuple[str, str]]:
    idd, tr = doc.id_doc, doc.enc.transporte
    rows: list[tuple[str, str]] = []
    if idd.fma_pago in FORMAS_PAGO:
        rows.append(("Forma de pago", FORMAS_PAGO[idd.fma_pago]))
    if idd.fch_venc:
        rows.append(("Vencimiento", idd.fch_venc.strftime("%d-%m-%Y")))
    if idd.ind_traslado:
        rows.append(("Tipo de traslado", f"{idd.ind_traslado}: {TRASLADOS.get(idd.ind_traslado, '')}"))
    if tr is not None:
        if tr.patente:
            rows.append(("Patente", tr.patente))
        if tr.rut_trans:
            rows.append(("RUT transportista", rut_dotted(tr.rut_trans)))
        if tr.chofer is not None and (tr.chofer.nombre_chofer or tr.chofer.rut_chofer):
            rows.append(("Chofer", _join(tr.chofer.nombre_chofer, rut_dotted(tr.chofer.rut_chofer))))
        dest = _join(tr.dir_dest, tr.cmna_dest, tr.ciudad_dest)
        if dest:
            rows.append(("Destino", dest))
    return rows


def _line(d: Detalle) -> Line:
    desc = d.descuento_monto
    return Line(
        codigo=(d.cdg_item[0].vlr_codigo or "") if d.cdg_item else "",
        nombre=d.nmb_item or "",
        descripcion=d.dsc_item or "",
        cantidad=number(d.qty_item),
        unidad=d.unmd_item or "",
        precio=number(d.prc_item),
        descuento=money(desc) if desc else "",
        valor=money(d.monto_item),
        exento=d.ind_exe == 1,
    )


def _reference(r: Referencia) -> Reference:
    code = str(r.tpo_doc_ref or "")
    ref_tipo = TipoDte.of(code) if code.isdigit() else None
    tipo = ref_tipo.title if ref_tipo is not None else OTHER_REFS.get(code, code)
    code = r.cod_ref or ""
    razon = " - ".join(x for x in (CODREF.get(int(code)) if code.isdigit() else code, r.razon_ref) if x)
    return Reference(tipo, str(r.folio_ref or ""), r.fch_ref.strftime("%d-%m-%Y") if r.fch_ref else "", razon)


def _totals(doc: Documento, tipo: TipoDte) -> list[tuple[str, str]]:
    t = doc.totales
    rows: list[tuple[str, str]] = []
    for g, amount in zip(doc.dsc_rcg_global, global_dr_amounts(doc)):
        # Manual de Muestras Impresas: a discount is shown as an amount; a % one also says its rate
        label = g.glosa_dr or f"{'Descuento' if g.tpo_mov == 'D' else 'Recargo'} global"
        if g.tpo_valor == "%" and f"{number(g.valor_dr)}%" not in label:
            label += f" ({number(g.valor_dr)}%)"
        if amount is None and g.tpo_valor == "$" and g.valor_dr is not None:
            amount = int(Decimal(g.valor_dr).to_integral_value())
        rows.append((label, money(amount) if amount is not None else "-"))
    if tipo.is_boleta:
        if t.mnt_exe:
            rows.append(("Monto Exento", money(t.mnt_exe)))
        if t.iva and not tipo.is_exento:
            rows.append((f"IVA incluido ({number(t.tasa_iva or 19)}%)", money(t.iva)))
        rows.append(("TOTAL", money(t.mnt_total)))
        return rows
    if t.mnt_neto is not None and not tipo.is_exento:
        rows.append(("Monto Neto", money(t.mnt_neto)))
    if t.mnt_exe or tipo.is_exento:
        rows.append(("Monto Exento", money(t.mnt_exe or 0)))
    if t.iva is not None and not tipo.is_exento:
        rows.append((f"IVA ({number(t.tasa_iva or 19)}%)", money(t.iva)))
    for imp in t.impto_reten:
        name = TAX_NAMES.get(str(imp.tipo_imp), f"Impuesto {imp.tipo_imp}")
        rows.append((f"{name}{' (' + number(imp.tasa_imp) + '%)' if imp.tasa_imp else ''}", money(imp.monto_imp)))
    if t.iva_no_ret:
        rows.append(("IVA no retenido", money(t.iva_no_ret)))
    rows.append(("Monto Total", money(t.mnt_total)))
    return rows


def _notes(doc: Documento) -> list[str]:
    """Boleta references CodCaja/CodVndor are operational: shown as a small line."""
    out: list[str] = []
    for r in doc.referencia:
        bits = [f"Caja {r.cod_caja}" if r.cod_caja else "", f"Vendedor {r.cod_vndor}" if r.cod_vndor else ""]
        if any(bits):
            out.append("  ".join(b for b in bits if b))
    if doc.tipo.is_note and not doc.referencia:
        out.append("Sin referencias")
    return out


# --- rebuilding from the signed XML -----------------------------------------------------------------
def source_from_dte_xml(data: bytes, source: str = "NAME.xml") -> PrintSource:
    """The signed DTE (outbox NAME.xml) -> document model + exact TED bytes, for reprints."""
    from sync.signed import NotASignedDte, SignedDte

    try:
        dte = SignedDte.from_xml(data)
    except NotASignedDte as exc:
        raise ValueError(f"{source}: not a signed DTE ({exc})") from None
    return PrintSource(dte.documento, dte.ted, dte.tree)
