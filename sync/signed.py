"""`SignedDte`: the one value every stage receives for a signed document.

The engine makes it with the document model and the signed tree already in memory; after a
crash (or for a reprint) it is read back from NAME.xml with `SignedDte.from_xml`, and the stages
cannot tell the difference: the header fields are the same, and the model is parsed from the
XML on first use. Printing, the uplink, delivery, reports and the panel all read the same
fields from it instead of each parsing the XML their own way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

from lxml import etree

from sync import safexml
from sync.model import Documento
from sync.parse.xml_input import parse_xml
from sync.sii import DSIG_NS, SII_Q, TipoDte, is_boleta
from sync.timbre import ted_bytes

ANONYMOUS_RUT = "66666666-6"  # a boleta to an unidentified buyer (Formato Boletas)


class NotASignedDte(ValueError):
    """The bytes are not a signed DTE (no Documento or no TED)."""


@dataclass(frozen=True, eq=False)
class SignedDte:
    tipo_dte: int
    folio: int
    rut_emisor: str
    rut_receptor: str
    fch_emis: date
    monto_total: int
    dte_xml: bytes  # the signed <DTE>, ISO-8859-1 with its declaration: what NAME.xml holds
    ted: bytes  # the flattened <TED>: the PDF417 payload
    mnt_neto: int = 0
    mnt_exe: int = 0
    iva: int = 0
    rzn_soc_recep: str = ""
    # What the engine already has in memory; None when read back from NAME.xml.
    dte: etree._Element | None = field(default=None, repr=False)
    dte_c14n: bytes | None = field(default=None, repr=False)  # for envelopes (sync.envio.envelope_part)
    _documento: Documento | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[int, int]:
        """(TipoDTE, folio): what the SII knows a document by."""
        return (self.tipo_dte, self.folio)

    @property
    def tipo(self) -> TipoDte | None:
        return TipoDte.of(self.tipo_dte)

    @property
    def is_boleta(self) -> bool:
        return is_boleta(self.tipo_dte)

    @cached_property
    def tree(self) -> etree._Element:
        """The signed tree (parsed from dte_xml when not handed over by the engine)."""
        return self.dte if self.dte is not None else safexml.fromstring(self.dte_xml)

    @cached_property
    def documento(self) -> Documento:
        """The document model, for the printed representation."""
        if self._documento is not None:
            return self._documento
        return documento_of(self.tree)

    @classmethod
    def from_xml(cls, dte_xml: bytes) -> SignedDte:
        """Read a signed DTE (NAME.xml, or one the SII serves) back into the value."""
        root = safexml.fromstring(dte_xml)
        doc = _documento_element(root)
        ted = _find(doc, "TED")
        if ted is None:
            raise NotASignedDte("no TED in the Documento")

        def text(path: str) -> str:
            el = doc.find("/".join(SII_Q + p if not p.startswith("{") else p for p in path.split("/")))
            if el is None:  # documents the SII serves may come without the namespace
                el = doc.find("/".join("{*}" + p for p in path.split("/")))
            return (el.text or "").strip() if el is not None else ""

        def amount(tag: str) -> int:
            value = text(f"Encabezado/Totales/{tag}")
            return int(round(float(value))) if value else 0

        return cls(
            tipo_dte=int(text("Encabezado/IdDoc/TipoDTE")),
            folio=int(text("Encabezado/IdDoc/Folio")),
            rut_emisor=text("Encabezado/Emisor/RUTEmisor"),
            rut_receptor=text("Encabezado/Receptor/RUTRecep") or ANONYMOUS_RUT,
            fch_emis=date.fromisoformat(text("Encabezado/IdDoc/FchEmis")),
            monto_total=amount("MntTotal"),
            mnt_neto=amount("MntNeto"),
            mnt_exe=amount("MntExe"),
            iva=amount("IVA"),
            rzn_soc_recep=text("Encabezado/Receptor/RznSocRecep"),
            dte_xml=dte_xml,
            ted=ted_bytes(ted),
            dte=root,
        )


def _find(el: etree._Element, name: str) -> etree._Element | None:
    found = el.find(f".//{SII_Q}{name}")
    return found if found is not None else el.find(f".//{{*}}{name}")


def _documento_element(root: etree._Element) -> etree._Element:
    if etree.QName(root).localname == "Documento":
        return root
    doc = _find(root, "Documento")
    if doc is None:
        raise NotASignedDte("no Documento element")
    return doc


def documento_of(root: etree._Element) -> Documento:
    """The model of a signed DTE: its Documento without TED, TmstFirma and signature, read by
    the same XML input reader the ERP's files go through."""
    bare = copy.deepcopy(_documento_element(root))
    for el in list(bare):
        if etree.QName(el).localname in ("TED", "TmstFirma") or el.tag == f"{{{DSIG_NS}}}Signature":
            bare.remove(el)
    bare.attrib.pop("ID", None)
    return parse_xml(etree.tostring(bare, encoding="ISO-8859-1", xml_declaration=True), "NAME.xml")
