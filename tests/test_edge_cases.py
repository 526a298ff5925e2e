"""The legitimate inputs a shop really sends, issued as the XSD and the SII want them; and the
illegitimate look-alikes, refused clearly before a folio (issue #11).

Each legitimate case is signed, verified by xmlsec1 and validated against the official XSD:
a free item, a 0.5 % discount that rounds to 0 pesos, HraSalida=08:30, dates written
day-first, a credit note for a boleta (gross amounts), a global discount in an exempt
factura, a guía that states it has no transport data, an export guía, a boleta of 135 UF or
more that names its buyer, a factura that is a free delivery, a boleta of 103 pesos (no exact
net). The refused ones (quantity 0, IndTraslado 10, a 10-digit CdgSIISucur, MntBruto=2) say
what is wrong in Spanish, at which line, and leave the folio store untouched.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from lxml import etree

from conftest import xmlsec1_verifies
from sync import schema
from sync.config import BoletasConfig
from sync.engine import Engine
from sync.errors import DteSyncErrors
from sync.sandbox.build import examples_dir
from sync.signed import SignedDte

FACTURA = (examples_dir() / "33_factura.txt").read_text(encoding="utf-8")
EXENTA = (examples_dir() / "34_factura_exenta.txt").read_text(encoding="utf-8")
GUIA = (examples_dir() / "52_guia_despacho.txt").read_text(encoding="utf-8")
NOTA = (examples_dir() / "61_nota_credito.txt").read_text(encoding="utf-8")
COMPRA = (examples_dir() / "46_factura_compra.txt").read_text(encoding="utf-8")
UF = Decimal("39485.65")


def issued_and_valid(engine: Engine, text: str, key: str, tmp_path) -> SignedDte:
    """Issue `text`; the DTE must verify with xmlsec1 and validate against the official XSD."""
    issued = engine.issue(text.encode("utf-8"), f"{key}.txt", doc_key=f"edge:{key}")
    path = tmp_path / f"{key}.xml"
    path.write_bytes(issued.dte_xml)
    assert xmlsec1_verifies(path)
    assert schema.schema_errors(etree.fromstring(issued.dte_xml)) == []
    return issued


def xml(issued: SignedDte) -> str:
    return issued.dte_xml.decode("iso-8859-1")


@pytest.fixture(scope="module")
def uf_engine(engine):
    """The sandbox engine with [boletas] uf configured (Ley 21.713)."""
    return Engine(engine.company, engine.folios, engine.certificate, boletas=BoletasConfig(uf=UF))


def test_a_free_item_at_price_0_is_issued_without_a_price(engine, tmp_path):
    """Dec12_6Type forbids PrcItem 0: the free line carries MontoItem 0 and no PrcItem."""
    issued = issued_and_valid(engine, FACTURA + "\n[Detalle]\nNmbItem=Regalo: llavero\nQtyItem=1\nPrcItem=0\n", "free", tmp_path)
    free = issued.documento.detalle[-1]
    assert (free.prc_item, free.monto_item) == (None, 0)
    assert "<NmbItem>Regalo: llavero</NmbItem><QtyItem>1</QtyItem><MontoItem>0</MontoItem>" in xml(issued)


def test_a_discount_that_rounds_to_0_pesos_is_no_discount(engine, tmp_path):
    """0.5 % of 50 pesos is 0.25 -> 0: DescuentoMonto (positiveInteger) cannot be 0, and a
    DescuentoPct without its monto would break FMT B.30; the line shows no discount."""
    issued = issued_and_valid(engine, FACTURA + "\n[Detalle]\nNmbItem=Clavo\nQtyItem=1\nPrcItem=50\nDescuentoPct=0.5\n",
                              "half-pct", tmp_path)
    line = issued.documento.detalle[-1]
    assert (line.descuento_pct, line.descuento_monto, line.monto_item) == (None, None, 50)


def test_hora_de_salida_written_08_30_is_issued_as_08_30_00(engine, tmp_path):
    text = GUIA.replace("CiudadDest=Rancagua", "CiudadDest=Rancagua\nFchSalida=20-03-2025\nHraSalida=08:30")
    issued = issued_and_valid(engine, text, "hra", tmp_path)
    assert "<FchSalida>2025-03-20</FchSalida><HraSalida>08:30:00</HraSalida>" in xml(issued)


def test_dates_written_day_first_are_issued_in_the_sii_form(engine, tmp_path):
    text = FACTURA.replace("FchEmis=2025-03-14", "FchEmis=14-03-2025").replace("FchVenc=2025-04-13", "FchVenc=13/04/2025")
    issued = issued_and_valid(engine, text, "dates", tmp_path)
    assert "<FchEmis>2025-03-14</FchEmis>" in xml(issued) and "<FchVenc>2025-04-13</FchVenc>" in xml(issued)


def test_a_credit_note_for_a_boleta_states_gross_amounts(engine, tmp_path):
    """FMT A.10 and E.2: the boleta charged 4290 x 5 with IVA included; the note credits exactly
    that (MntBruto=1), never 19 % more."""
    text = NOTA.replace("TpoDocRef=33", "TpoDocRef=39")
    issued = issued_and_valid(engine, text, "nc-boleta", tmp_path)
    assert "<MntBruto>1</MntBruto>" in xml(issued)
    assert issued.monto_total == 5 * 4290 and issued.mnt_neto + issued.iva == 5 * 4290


def test_a_global_discount_in_an_exempt_factura_carries_ind_exe_dr(engine, tmp_path):
    """FMT D.7: the discount of a factura exenta applies to exempt items: IndExeDR 1."""
    text = EXENTA + "\n[DscRcgGlobal]\nTpoMov=D\nGlosaDR=Pronto pago\nTpoValor=%\nValorDR=5\n"
    issued = issued_and_valid(engine, text, "exe-dr", tmp_path)
    assert "<ValorDR>5</ValorDR><IndExeDR>1</IndExeDR>" in xml(issued)
    assert issued.mnt_exe == round((12 * 185000 + 12 * 42000) * 0.95)


def test_a_retention_at_0_percent_leaves_out_the_rate(engine, tmp_path):
    """Code 49 (FMT §4: factura de compra without IVA retention) has rate 0; TasaImp (min 0.01)
    is left out and MontoImp is 0."""
    without_totals = COMPRA.split("[Encabezado.Totales]")[0] + "[Detalle]" + COMPRA.split("[Detalle]")[1]
    text = without_totals.replace("CodImpAdic=15", "CodImpAdic=49")
    issued = issued_and_valid(engine, text, "ret-0", tmp_path)
    assert "<TipoImp>49</TipoImp><MontoImp>0</MontoImp>" in xml(issued)


def test_a_specific_tax_keeps_its_informative_rate_and_given_amount(engine, tmp_path):
    """FMT A.116-117: a specific tax (28, diesel) has no rate over the line amounts; the
    MontoImp given stands and TasaImp is informative."""
    text = (COMPRA.replace("CodImpAdic=15", "CodImpAdic=28").replace("TipoImp=15\nTasaImp=19\nMontoImp=144400",
                                                                    "TipoImp=28\nTasaImp=6\nMontoImp=52000")
            .replace("MntTotal=760000", "MntTotal=956400"))
    issued = issued_and_valid(engine, text, "specific", tmp_path)
    assert "<TipoImp>28</TipoImp><TasaImp>6</TasaImp><MontoImp>52000</MontoImp>" in xml(issued)
    assert issued.monto_total == 760000 + 144400 + 52000


def test_a_guia_that_states_it_has_no_transport_data_is_issued(engine, tmp_path):
    """Res. Ex. 154/2025: without the vehicle and driver data, the document says so expressly
    (Patente=SIN INFO; the XSD's Chofer needs a RUT, so it is left out)."""
    text = GUIA.replace("Patente=KXJT45\nRUTTrans=78901234-2\n", "Patente=SIN INFO\n").replace(
        "[Encabezado.Transporte.Chofer]\nRUTChofer=15678432-K\nNombreChofer=Luis Aravena Núñez\n", "")
    issued = issued_and_valid(engine, text, "sin-info", tmp_path)
    assert "<Patente>SIN INFO</Patente><DirDest>" in xml(issued) and "Chofer" not in xml(issued)


def test_an_export_guia_with_its_customs_data_is_issued(engine, tmp_path):
    """IndTraslado 9 (venta para exportación): FMT A.38 and A.84-95."""
    text = GUIA.replace("IndTraslado=1", "IndTraslado=9") + (
        "\n[Encabezado.Emisor.GuiaExport]\nCdgTraslado=3\n"
        "[Encabezado.Transporte.Aduana]\nCodPtoEmbarque=906\nIdAdicPtoEmb=San Antonio\nCodPtoDesemb=111\n"
        "PesoBruto=14500.5\nCodUnidPesoBruto=6\nTotBultos=150\n")
    issued = issued_and_valid(engine, text, "export-guia", tmp_path)
    assert "<CdgTraslado>3</CdgTraslado>" in xml(issued) and "<PesoBruto>14500.5</PesoBruto>" in xml(issued)


BOLETA_GRANDE = "[Encabezado.IdDoc]\nTipoDTE=39\n{extra}\n[Detalle]\nNmbItem=Refrigerador\nQtyItem=1\nPrcItem={price}\n"


def test_a_boleta_of_135_uf_or_more_that_names_its_buyer_is_issued(uf_engine, tmp_path):
    """Ley 21.713 ("135 UF o más") and FBE A.10, A.18, A.20: RUT, name and MedioPago."""
    price = int(135 * UF) + 1
    extra = "MedioPago=2\n[Encabezado.Receptor]\nRUTRecep=12345678-5\nRznSocRecep=Ana Pérez Soto"
    issued = issued_and_valid(uf_engine, BOLETA_GRANDE.format(extra=extra, price=price), "135uf", tmp_path)
    assert issued.monto_total == price and issued.rut_receptor == "12345678-5"


def test_a_boleta_just_under_135_uf_stays_anonymous(uf_engine, tmp_path):
    price = int(135 * UF) - 1
    issued = issued_and_valid(uf_engine, BOLETA_GRANDE.format(extra="", price=price), "under-135uf", tmp_path)
    assert issued.rut_receptor == "66666666-6"


def test_the_threshold_is_the_laws_135_uf_or_more(uf_engine):
    """Exactly 135 UF already needs the buyer ("o más"); the threshold comes from the config."""
    price = int((135 * UF).to_integral_value(rounding="ROUND_CEILING"))
    with pytest.raises(DteSyncErrors) as exc:
        uf_engine.issue(BOLETA_GRANDE.format(extra="", price=price).encode(), "b.txt", doc_key="edge:135uf-exact")
    assert {e.field for e in exc.value.errors} == {"RUTRecep", "RznSocRecep", "MedioPago"}
    lower = Engine(uf_engine.company, uf_engine.folios, uf_engine.certificate,
                   boletas=BoletasConfig(uf=UF, threshold_uf=Decimal(200)))
    assert lower.issue(BOLETA_GRANDE.format(extra="", price=price).encode(), "b.txt", doc_key="edge:200uf").folio


def test_a_free_delivery_factura_gets_fma_pago_3(engine, tmp_path):
    """FMT A.13: "En el caso de una Factura por Entrega Gratuita, se debe indicar el 3"."""
    text = EXENTA.replace("FmaPago=2\n", "").replace("PrcItem=185000", "PrcItem=0").replace("PrcItem=42000", "PrcItem=0")
    issued = issued_and_valid(engine, text, "gratuita", tmp_path)
    assert "<FmaPago>3</FmaPago>" in xml(issued) and issued.monto_total == 0


def test_a_gross_total_without_an_exact_net_keeps_what_the_customer_paid(engine, tmp_path):
    """103 pesos gross: no integer neto has neto + round(neto x 0.19) = 103. MntTotal stays 103,
    MntNeto = round(103 / 1.19) = 87, IVA = 103 - 87 = 16, one peso under round(87 x 0.19) = 17
    (docs/formats/rules.md, "Totales brutos")."""
    text = "[Encabezado.IdDoc]\nTipoDTE=39\n[Detalle]\nNmbItem=Chicle\nQtyItem=1\nPrcItem=103\n"
    issued = issued_and_valid(engine, text, "gross-103", tmp_path)
    assert (issued.monto_total, issued.mnt_neto, issued.iva) == (103, 87, 16)


# --- the illegitimate look-alikes ---------------------------------------------------------------

@pytest.mark.parametrize("name, old, new, field, code, message", [
    ("cantidad 0", "QtyItem=500", "QtyItem=0", "QtyItem", "FIELD_OUT_OF_RANGE",
     "'QtyItem' fuera de rango: se esperaba 0.000001..999999999999.999999, se encontró 0."),
    ("IndTraslado 10", "FmaPago=2", "FmaPago=2\nIndTraslado=10", "IndTraslado", "FIELD_NOT_IN_LIST",
     "Valor '10' no admitido en 'IndTraslado'; valores válidos: 1, 2, 3, 4, 5, 6, 7, 8, 9."),
    ("CdgSIISucur de 10 dígitos", "CiudadOrigen=Santiago", "CiudadOrigen=Santiago\nCdgSIISucur=1234567890",
     "CdgSIISucur", "FIELD_TOO_MANY_DIGITS", "'CdgSIISucur' = 1234567890 tiene 10 dígitos; el máximo es 9."),
    ("MntBruto 2", "FmaPago=2", "FmaPago=2\nMntBruto=2", "MntBruto", "FIELD_NOT_IN_LIST",
     "Valor '2' no admitido en 'MntBruto'; valores válidos: 1."),
])
def test_the_look_alikes_the_xsd_refuses_are_refused_clearly_before_the_folio(engine, name, old, new, field, code,
                                                                              message):
    text = FACTURA.replace(old, new)
    stock = engine.folios.stock(date.today())
    with pytest.raises(DteSyncErrors) as exc:
        engine.issue(text.encode(), "f.txt", doc_key=f"edge:bad:{name}")
    (error,) = exc.value.errors
    line = next(i for i, t in enumerate(text.split("\n"), 1) if t.startswith(f"{field}="))
    assert (error.code, error.field, error.line) == (code, field, line)
    assert error.render()["message"] == message  # Spanish, ours: never libxml2's text
    assert engine.folios.stock(date.today()) == stock


def test_without_the_uf_a_boleta_that_may_reach_135_uf_is_refused_with_a_config_code(engine):
    """No [boletas] uf: a boleta under 135 x 35 000 pesos cannot reach the threshold whatever
    the UF and is issued; above that the engine does not guess (CONFIG_UF_MISSING)."""
    assert replace(engine.boletas).uf is None
    with pytest.raises(DteSyncErrors) as exc:
        engine.issue(BOLETA_GRANDE.format(extra="", price=6_000_000).encode(), "b.txt", doc_key="edge:no-uf")
    (error,) = exc.value.errors
    assert (error.code, error.field) == ("CONFIG_UF_MISSING", "MntTotal")
    assert "[boletas] uf" in error.message()
