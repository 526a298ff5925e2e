"""The SII's vocabulary, in one place: the DTE namespace and the document types with what each
type implies (boleta, exempt, note, gross amounts, CAF expiry, printed name, envelope).

Every module asks a `TipoDte` instead of keeping its own `(39, 41)`; a number the SII does not
define is not a `TipoDte` (`TipoDte.of` answers None), so unknown types are handled where they
are met, not guessed at.
"""

from __future__ import annotations

from enum import IntEnum

SII_NS = "http://www.sii.cl/SiiDte"
SII_Q = "{" + SII_NS + "}"  # Clark notation prefix for lxml tags in the DTE namespace
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"


class TipoDte(IntEnum):
    """TipoDTE codes (Formato DTE §2, Formato Boletas). An IntEnum: it compares equal to the
    plain int found in XML, the journal and the status file."""

    FACTURA = 33
    FACTURA_EXENTA = 34
    BOLETA = 39
    BOLETA_EXENTA = 41
    LIQUIDACION_FACTURA = 43
    FACTURA_COMPRA = 46
    GUIA_DESPACHO = 52
    NOTA_DEBITO = 56
    NOTA_CREDITO = 61
    FACTURA_EXPORTACION = 110
    NOTA_DEBITO_EXPORTACION = 111
    NOTA_CREDITO_EXPORTACION = 112

    @classmethod
    def of(cls, value: object) -> TipoDte | None:
        """The type for an int or digit string, None for anything the SII does not define."""
        try:
            return cls(int(str(value).strip()))
        except (TypeError, ValueError):
            return None

    @property
    def is_boleta(self) -> bool:
        """Boletas (39, 41): gross amounts, their own schema, envelope and REST upload."""
        return self in _BOLETAS

    @property
    def is_exento(self) -> bool:
        """Every amount exempt: no IVA line at all."""
        return self in (TipoDte.FACTURA_EXENTA, TipoDte.BOLETA_EXENTA)

    @property
    def is_note(self) -> bool:
        """Notas de débito/crédito: a Referencia with CodRef is required."""
        return self in (TipoDte.NOTA_DEBITO, TipoDte.NOTA_CREDITO,
                        TipoDte.NOTA_DEBITO_EXPORTACION, TipoDte.NOTA_CREDITO_EXPORTACION)

    @property
    def needs_receptor(self) -> bool:
        """Every type but boletas names a real receptor (a boleta may go to CONSUMIDOR FINAL)."""
        return not self.is_boleta

    @property
    def gross_amounts(self) -> bool:
        """Line prices include IVA (boletas); other types state net amounts unless MntBruto=1."""
        return self.is_boleta

    @property
    def caf_expires(self) -> bool:
        """CAFs of these types lapse 6 months after authorization (Res. Ex. SII 58/2017)."""
        return self in _EXPIRING_CAF

    @property
    def issued_here(self) -> bool:
        """Types this engine issues (export types have model groups but are not issued yet)."""
        return self in _ISSUED

    @property
    def schema(self) -> str:
        """Which official schema validates it: 'boleta' (EnvioBOLETA_v11) or 'dte' (DTE_v10)."""
        return "boleta" if self.is_boleta else "dte"

    @property
    def envelope(self) -> str:
        return "EnvioBOLETA" if self.is_boleta else "EnvioDTE"

    @property
    def sales_sign(self) -> int:
        """How it counts in the day's sales: credit notes subtract; dispatch guides and purchase
        invoices (issued by the buyer) are listed but are not sales."""
        return _SALES_SIGN.get(self, 1)

    @property
    def printed_name(self) -> str:
        """The name in the timbre's box (Manual de Muestras Impresas): upper case."""
        return _NAMES[self]

    @property
    def title(self) -> str:
        """The same name for reports and the panel: 'Factura electrónica'."""
        return _NAMES[self].capitalize()


_BOLETAS = frozenset({TipoDte.BOLETA, TipoDte.BOLETA_EXENTA})
_EXPIRING_CAF = frozenset({TipoDte.FACTURA, TipoDte.LIQUIDACION_FACTURA, TipoDte.FACTURA_COMPRA,
                           TipoDte.NOTA_DEBITO, TipoDte.NOTA_CREDITO})
_ISSUED = frozenset({TipoDte.FACTURA, TipoDte.FACTURA_EXENTA, TipoDte.BOLETA, TipoDte.BOLETA_EXENTA,
                     TipoDte.FACTURA_COMPRA, TipoDte.GUIA_DESPACHO, TipoDte.NOTA_DEBITO, TipoDte.NOTA_CREDITO})
_SALES_SIGN = {TipoDte.NOTA_CREDITO: -1, TipoDte.NOTA_CREDITO_EXPORTACION: -1,
               TipoDte.GUIA_DESPACHO: 0, TipoDte.FACTURA_COMPRA: 0}
_NAMES = {
    TipoDte.FACTURA: "FACTURA ELECTRÓNICA",
    TipoDte.FACTURA_EXENTA: "FACTURA NO AFECTA O EXENTA ELECTRÓNICA",
    TipoDte.BOLETA: "BOLETA ELECTRÓNICA",
    TipoDte.BOLETA_EXENTA: "BOLETA NO AFECTA O EXENTA ELECTRÓNICA",
    TipoDte.LIQUIDACION_FACTURA: "LIQUIDACIÓN FACTURA ELECTRÓNICA",
    TipoDte.FACTURA_COMPRA: "FACTURA DE COMPRA ELECTRÓNICA",
    TipoDte.GUIA_DESPACHO: "GUÍA DE DESPACHO ELECTRÓNICA",
    TipoDte.NOTA_DEBITO: "NOTA DE DÉBITO ELECTRÓNICA",
    TipoDte.NOTA_CREDITO: "NOTA DE CRÉDITO ELECTRÓNICA",
    TipoDte.FACTURA_EXPORTACION: "FACTURA DE EXPORTACIÓN ELECTRÓNICA",
    TipoDte.NOTA_DEBITO_EXPORTACION: "NOTA DE DÉBITO DE EXPORTACIÓN ELECTRÓNICA",
    TipoDte.NOTA_CREDITO_EXPORTACION: "NOTA DE CRÉDITO DE EXPORTACIÓN ELECTRÓNICA",
}

ISSUED_TYPES = _ISSUED
BOLETA_TYPES = _BOLETAS


def is_boleta(tipo_dte: int | None) -> bool:
    """For plain ints from the journal or XML: True for 39 and 41."""
    return tipo_dte in _BOLETAS
