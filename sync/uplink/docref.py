"""What the uplink needs to know about one signed DTE, read once from its XML."""

from __future__ import annotations

from dataclasses import dataclass

from sync import safexml
from sync.sii import BOLETA_TYPES


@dataclass(frozen=True)
class DocRef:
    """Identity of a DTE for the SII's per-document queries (QueryEstDte, boleta estado)."""

    tipo_dte: int
    folio: int
    rut_emisor: str
    rut_receptor: str
    fch_emis: str  # YYYY-MM-DD
    monto_total: int

    @property
    def boleta(self) -> bool:
        return self.tipo_dte in BOLETA_TYPES

    @property
    def key(self) -> tuple[int, int]:
        return (self.tipo_dte, self.folio)


def doc_ref(dte_xml: bytes) -> DocRef:
    root = safexml.fromstring(dte_xml)

    def text(path: str) -> str:
        el = root.find(".//{*}Documento/{*}Encabezado/" + "/".join("{*}" + p for p in path.split("/")))
        return (el.text or "").strip() if el is not None else ""

    return DocRef(
        tipo_dte=int(text("IdDoc/TipoDTE")),
        folio=int(text("IdDoc/Folio")),
        rut_emisor=text("Emisor/RUTEmisor"),
        rut_receptor=text("Receptor/RUTRecep") or "66666666-6",
        fch_emis=text("IdDoc/FchEmis"),
        monto_total=int(text("Totales/MntTotal") or 0),
    )
