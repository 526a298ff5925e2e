"""`dtesync verify`: check any DTE, EnvioDTE or EnvioBOLETA as found in the wild.

One line per check (signature of each signed element, TED and CAF of each DTE, the TED's
agreement with the document, totals, official schema). Documents the SII serves often lack
the SiiDte namespace, declare windows-1252 or wrap the DTE in SII-specific elements
(DocPersonalizado); the verifier reads them as they are and says, as a WARN, what it had
to assume. The verdict is OK when every signature, the TED and the CAF verify in some valid
reading and nothing FAILs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from sync import schema
from sync.errors import DteSyncError, DteSyncErrors
from sync.parse.xml_input import parse_xml
from sync.signing import verify_signatures
from sync.sii import SII_NS, SII_Q
from sync.timbre import dd_values, verify_ted
from sync.totals import totals_errors

OK, WARN, FAIL = "OK", "WARN", "FAIL"
CafKeys = Mapping[int, rsa.RSAPublicKey] | None  # extra CAF signers by IDK (the sandbox's fake SII)


@dataclass
class Check:
    status: str  # OK | WARN | FAIL
    subject: str  # what was checked, e.g. "firma Documento F60T33"
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.status:<4} {self.subject}" + (f": {self.detail}" if self.detail else "")


@dataclass
class Report:
    source: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.status != FAIL for c in self.checks)

    def add(self, status: str, subject: str, detail: str = "") -> None:
        self.checks.append(Check(status, subject, detail))


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def verify_bytes(data: bytes, source: str, *, caf_keys: CafKeys = None) -> Report:
    report = Report(source)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        report.add(FAIL, "XML", "trae DOCTYPE o entidades; no se procesa por seguridad")
        return report
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        report.add(FAIL, "XML", f"mal formado: {exc}")
        return report
    name = _local(root)
    if etree.QName(root).namespace != SII_NS:
        report.add(WARN, f"<{name}> sin xmlns SiiDte", "leído como si lo tuviera (así lo sirve el SII)")
    if name == "TED":
        _check_ted_alone(root, report, caf_keys)
        return report
    _check_signatures(root, report)
    dtes = [el for el in root.iter("{*}DTE")] if name != "DTE" else [root]
    if not dtes:
        report.add(FAIL, f"<{name}>", "no contiene ningún DTE")
    for dte in dtes:
        _check_dte(dte, report, caf_keys)
    _check_schema(root, name, report)
    return report


def _check_ted_alone(ted: etree._Element, report: Report, caf_keys: CafKeys) -> None:
    """A bare TED (e.g. decoded from a printed PDF417): timbre and CAF only."""
    values = dd_values(ted)
    _check_ted(ted, f"TED TipoDTE {values.get('TD')} folio {values.get('F')}", report, caf_keys)


def _check_ted(ted: etree._Element, label: str, report: Report, caf_keys: CafKeys) -> None:
    """FRMT with the CAF key (FAIL if it does not verify); a CAF whose IDK has no known key is a WARN."""
    problems = verify_ted(ted, extra_keys=caf_keys)
    unknown = [p for p in problems if "IDK" in p and "desconocid" in p]
    hard = [p for p in problems if p not in unknown]
    report.add(FAIL if hard else OK, f"timbre {label}", "; ".join(hard) or "FRMT verifica con la clave del CAF")
    for p in unknown:
        report.add(WARN, f"CAF {label}", p)


def _check_signatures(root: etree._Element, report: Report) -> None:
    results = verify_signatures(root)
    if not results:
        report.add(FAIL, "firma", "el documento no trae ninguna firma XMLDSig")
    for r in results:
        subject = f"firma {r.signed_element or 'elemento'} {r.reference}"
        problems = []
        if not r.digest_ok:
            problems.append("el digest no coincide (contenido alterado)")
        if not r.signature_ok:
            problems.append("SignatureValue no verifica")
        if r.key_consistent is False:
            problems.append("RSAKeyValue y X509Certificate son claves distintas")
        signer = f"firmante {r.signer_rut}" if r.signer_rut else ""
        if r.digest_ok and r.signature_ok:
            report.add(OK, subject, signer)
        else:
            report.add(FAIL, subject, "; ".join(problems))
        for w in r.warnings:
            report.add(WARN, subject, w)


def _check_dte(dte: etree._Element, report: Report, caf_keys: CafKeys) -> None:
    documento = next((c for c in dte if _local(c) in ("Documento", "Exportaciones", "Liquidacion")), None)
    if documento is None:
        report.add(FAIL, "DTE", "sin Documento")
        return
    label = f"DTE {documento.get('ID') or '?'}"
    ted = next((c for c in documento if _local(c) == "TED"), None)
    if ted is None:
        report.add(FAIL, f"timbre {label}", "el Documento no trae TED")
        return
    _check_ted(ted, label, report, caf_keys)
    _check_ted_matches_document(ted, documento, label, report)
    _check_totals(documento, label, report)


def _text(documento: etree._Element, path: str) -> str | None:
    el = documento.find(_ns_path(path))
    return el.text.strip() if el is not None and el.text is not None else None


def _ns_path(path: str) -> str:
    return "/".join("{*}" + p for p in path.split("/"))


def _check_ted_matches_document(ted: etree._Element, documento: etree._Element, label: str, report: Report) -> None:
    v = dd_values(ted)
    first_item = _text(documento, "Detalle/NmbItem") or ""
    expected = {
        "RE": _text(documento, "Encabezado/Emisor/RUTEmisor"),
        "TD": _text(documento, "Encabezado/IdDoc/TipoDTE"),
        "F": _text(documento, "Encabezado/IdDoc/Folio"),
        "FE": _text(documento, "Encabezado/IdDoc/FchEmis"),
        "RR": _text(documento, "Encabezado/Receptor/RUTRecep"),
        "MNT": _text(documento, "Encabezado/Totales/MntTotal"),
    }
    wrong = [f"{k}={v.get(k)!r} pero el documento dice {e!r}" for k, e in expected.items() if e is not None and v.get(k) != e]
    it1 = v.get("IT1", "")
    if first_item and not first_item.startswith(it1.rstrip()[:39]) and first_item[:40] != it1:
        wrong.append(f"IT1={it1!r} no es el primer NmbItem {first_item[:40]!r}")
    report.add(FAIL if wrong else OK, f"timbre vs documento {label}", "; ".join(wrong) or "RE TD F FE RR MNT IT1 coinciden")


def _check_totals(documento: etree._Element, label: str, report: Report) -> None:
    unsigned = _unsigned_copy(documento)
    try:
        doc = parse_xml(unsigned, label)
    except DteSyncErrors as exc:
        report.add(WARN, f"totales {label}", "no se pudo leer el detalle: " + "; ".join(str(e) for e in exc.errors[:3]))
        return
    errors: list[DteSyncError] = totals_errors(doc)
    if errors:
        report.add(FAIL, f"totales {label}", "; ".join(e.message("es") for e in errors[:5]))
    else:
        report.add(OK, f"totales {label}", "MontoItem, neto, IVA, exento y total cuadran")


def _unsigned_copy(documento: etree._Element) -> bytes:
    """The Documento without TED/TmstFirma, as an unsigned input the parser accepts."""
    doc = copy.deepcopy(documento)
    for child in list(doc):
        if _local(child) in ("TED", "TmstFirma"):
            doc.remove(child)
    wrapper = etree.Element(SII_Q + "DTE", nsmap={None: SII_NS})
    wrapper.set("version", "1.0")
    doc.attrib.pop("ID", None)
    wrapper.append(doc)
    text = etree.tostring(wrapper, encoding="UTF-8", xml_declaration=True)
    if etree.QName(documento).namespace != SII_NS:
        text = text.replace(b"<Documento", b"<Documento xmlns=\"%s\"" % SII_NS.encode(), 1)
    return text


# Elements the SII adds to the DTEs it serves, outside the published schema.
SII_SERVED_EXTRAS = ("DocPersonalizado",)


def _check_schema(root: etree._Element, name: str, report: Report) -> None:
    target = root
    if etree.QName(root).namespace != SII_NS:
        target = _with_sii_namespace(root)
    extras = [el for el in target.iter() if _local(el) in SII_SERVED_EXTRAS]
    if extras:
        target = copy.deepcopy(target)
        for el in [el for el in target.iter() if _local(el) in SII_SERVED_EXTRAS]:
            parent = el.getparent()
            if parent is not None:
                parent.remove(el)
        report.add(WARN, "esquema", f"se ignoró {', '.join(sorted({_local(e) for e in extras}))} (lo agrega el SII al servir el DTE)")
    errors = schema.schema_errors(target)
    label = {"DTE": "DTE_v10.xsd", "EnvioDTE": "EnvioDTE_v10.xsd", "EnvioBOLETA": "EnvioBOLETA_v11.xsd"}.get(name, name)
    if not errors:
        report.add(OK, f"esquema {label}", "válido contra el XSD oficial del SII")
    elif name not in schema.SCHEMA_FILES:
        report.add(WARN, f"esquema <{name}>", "raíz no oficial; se verificaron los DTE que contiene")
    else:
        report.add(FAIL, f"esquema {label}", "; ".join(errors[:3]))


def _with_sii_namespace(root: etree._Element) -> etree._Element:
    """A copy with every un-namespaced element moved into SiiDte (the SII serves them bare)."""
    clone = copy.deepcopy(root)
    for el in clone.iter():
        if isinstance(el.tag, str) and etree.QName(el).namespace is None:
            el.tag = SII_Q + el.tag
    return etree.fromstring(etree.tostring(clone))
