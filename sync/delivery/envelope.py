"""The EnvioDTE a receptor gets: the same signed DTE the SII got, in an envelope of its own whose
Caratula names the receptor (`RutReceptor`), signed with the company's certificate.

The receptor's software checks that RutReceptor is its own RUT (RespuestaDTE
EstadoRecepEnv 3, "RUT Receptor No Corresponde", otherwise), so the envelope the SII got
(RutReceptor 60803000-K) is never reused. The envelope is built once per delivery and stored
with the message: every attempt sends the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from lxml import etree

from sync import safexml, schema
from sync.envio import Caratula, build_envio
from sync.rut import Rut
from sync.signed import SignedDte
from sync.signing import Certificate
from sync.sii import DSIG_NS

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class ReceptorEnvelope:
    xml: bytes  # ISO-8859-1, valid against EnvioDTE_v10.xsd
    name: str  # the attachment's file name, which RecepcionEnvio/NmbEnvio echoes (max 80)
    digest: str  # the SetDTE signature's DigestValue, which RecepcionEnvio/Digest may echo


def envelope_name(dte: SignedDte) -> str:
    """`ENVIO_DTE_<rut emisor>_T<tipo>F<folio>.xml`: unique per document, under 80 characters."""
    return _NAME_UNSAFE.sub("_", f"ENVIO_DTE_{dte.rut_emisor}_T{dte.tipo_dte}F{dte.folio}.xml")[:80]


def build_receptor_envelope(dte: SignedDte, certificate: Certificate, *, fch_resol: date, nro_resol: int,
                            now: datetime | None = None) -> ReceptorEnvelope:
    caratula = Caratula(
        rut_emisor=Rut.parse(dte.rut_emisor),
        rut_receptor=Rut.parse(dte.rut_receptor),
        fch_resol=fch_resol,
        nro_resol=nro_resol,
        tmst_firma_env=now or datetime.now(),
    )
    xml = build_envio([dte.dte_xml], caratula, certificate, boleta=False)
    root = safexml.fromstring(xml)
    schema.validate(root)  # raises SCHEMA_INVALID: an envelope the receptor would refuse never leaves
    digest = root.findtext(f"{{{DSIG_NS}}}Signature/{{{DSIG_NS}}}SignedInfo/{{{DSIG_NS}}}Reference/"
                           f"{{{DSIG_NS}}}DigestValue") or ""
    return ReceptorEnvelope(xml, envelope_name(dte), digest.strip())


def caratula_receptor(envelope: bytes) -> str | None:
    """The RutReceptor of an EnvioDTE's Caratula (for checks and tests)."""
    root = safexml.fromstring(envelope)
    found = root.find(".//{*}Caratula/{*}RutReceptor")
    return (found.text or "").strip() if isinstance(found, etree._Element) else None
