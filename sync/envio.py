"""The SII envelopes, EnvioDTE and EnvioBOLETA: a Caratula and signed DTEs, signed as a set.

The namespace convention (why every standalone DTE starts with `new_dte_root()`):
inclusive C14N puts every namespace in scope into a digest, so a DTE's own signature survives
being pasted into an envelope only if its Documento (and its SignedInfo) has exactly the same
namespaces in scope in both places. The envelope root declares `xmlns="http://www.sii.cl/SiiDte"`
and `xmlns:xsi=…XMLSchema-instance` (it needs xsi for `xsi:schemaLocation`), so the standalone DTE
declares those same two:

    <DTE xmlns="http://www.sii.cl/SiiDte" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.0">

and its signature then verifies with any standard verifier (xmlsec1) both in the DTE file the ERP
gets and inside the envelope the SII gets. (Signing a DTE with only `xmlns` — what most
libraries do — gives a DTE whose signature fails in context; the SII tolerates it, xmlsec1 and
receivers do not.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from copy import deepcopy
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

from lxml import etree

from sync import safexml
from sync.errors import DteSyncError
from sync.rut import SII_RUT, Rut
from sync.signing.certificate import Certificate
from sync.signing.xmldsig import NsMap, SigningInto, sign_after, sign_canonical, sign_into
from sync.sii import SII_NS, SII_Q, XSI_NS, is_boleta

XML_HEADER = b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
NSMAP: NsMap = {None: SII_NS, "xsi": XSI_NS}
MAX_DTE = 2000  # EnvioDTE_v10.xsd: DTE maxOccurs
MAX_BOLETA = 500  # EnvioBOLETA_v11.xsd: DTE maxOccurs
_S = SII_Q


def new_dte_root() -> etree._Element:
    """`<DTE xmlns=SiiDte xmlns:xsi=… version="1.0">`: the root every standalone DTE must use."""
    root = etree.Element(_S + "DTE", nsmap=NSMAP)
    root.set("version", "1.0")
    return root


def sign_dte(dte_root: etree._Element, cert: Certificate, documento: etree._Element | None = None) -> etree._Element:
    """Sign the DTE's Documento and append the Signature right after it; returns the Signature.

    `documento`, when given, is not yet in the DTE: it is the root of its own document declaring
    NSMAP (`build_documento(..., nsmap=NSMAP)`), signed there without a copy and then appended
    with its Signature to the empty `dte_root` (the engine's hot path, see `sign_into`).
    """
    if dict(dte_root.nsmap) != NSMAP:
        raise ValueError(f"the DTE must declare exactly {NSMAP} (see new_dte_root), found {dte_root.nsmap}")
    if documento is not None:
        if len(dte_root):
            raise ValueError("the DTE must be empty to receive its Documento")
        return sign_into(dte_root, documento, cert)
    documento = dte_root.find(_S + "Documento")
    if documento is None:
        raise ValueError("the DTE has no Documento to sign")
    return sign_after(documento, cert)


@dataclass(frozen=True, slots=True)
class DteSigning:
    """`sign_dte(dte_root, cert, documento)` in two halves around the private key
    (`SigningInto`), so the engine can sign `to_sign` on another thread while it prepares the
    next document. `finish` returns the C14N of the signed standalone DTE, composed from what
    signing canonicalized anyway (no second C14N pass): the envelope needs it (`envelope_part`;
    tests/test_engine.py compares it with lxml's C14N of the DTE)."""

    into: SigningInto

    @classmethod
    def prepare(cls, dte_root: etree._Element, documento: etree._Element) -> DteSigning:
        if (dict(dte_root.nsmap) != NSMAP or dict(dte_root.attrib) != {"version": "1.0"} or len(dte_root)
                or dte_root.text):
            raise ValueError("DteSigning: the DTE must be an empty new_dte_root()")
        return cls(SigningInto.prepare(dte_root, documento))

    @property
    def to_sign(self) -> bytes:
        return self.into.signature.to_sign

    def finish(self, cert: Certificate, value: bytes) -> bytes:
        """The signed DTE's C14N, once `value` (cert.sign_sha1 of `to_sign`) is known."""
        _, documento_c14n, signature_c14n = self.into.finish(cert, value)
        if not documento_c14n.startswith(_DOCUMENTO_OPEN):
            raise ValueError("DteSigning: Documento must declare exactly the DTE's namespaces")
        # Inside the DTE, Documento's namespaces are already rendered by the DTE start tag.
        return _DTE_OPEN + b"<Documento" + documento_c14n[len(_DOCUMENTO_OPEN):] + signature_c14n + _DTE_CLOSE


def to_bytes(root: etree._Element) -> bytes:
    """ISO-8859-1 bytes with the SII's double-quoted XML declaration (never re-indent after signing)."""
    return XML_HEADER + etree.tostring(root, encoding="ISO-8859-1", xml_declaration=False)


@dataclass(frozen=True, kw_only=True)
class Caratula:
    """The envelope's cover. `rut_envia` is the certificate holder's RUT (None: take it from cert)."""

    rut_emisor: Rut
    rut_envia: Rut | None = None
    rut_receptor: Rut = SII_RUT
    fch_resol: date
    nro_resol: int
    tmst_firma_env: datetime


_TIPO_PATH = (_S + "Documento", _S + "Encabezado", _S + "IdDoc", _S + "TipoDTE")


def _tipo_dte(dte: etree._Element) -> int:
    el = dte
    for tag in _TIPO_PATH:  # each the first child as the schema orders them: no path search
        if not len(el) or el[0].tag != tag:
            break
        el = el[0]
    else:
        return int(el.text or "")
    text = dte.findtext(f"{_S}Documento/{_S}Encabezado/{_S}IdDoc/{_S}TipoDTE")
    if text is None:
        raise ValueError("a DTE without Documento/Encabezado/IdDoc/TipoDTE in the SiiDte namespace")
    return int(text)


def _as_element(dte: bytes | etree._Element) -> etree._Element:
    if isinstance(dte, (bytes, bytearray)):
        return safexml.fromstring(bytes(dte))
    return deepcopy(dte)  # never move the caller's element


def _rut_envia(caratula: Caratula, cert: Certificate) -> Rut:
    if caratula.rut_envia is None:
        if cert.rut is None:
            raise DteSyncError("CERT_UNREADABLE", found=cert.subject, params={"detail": "el certificado no trae RUT"})
        return cert.rut
    if cert.rut is not None and caratula.rut_envia != cert.rut:
        raise DteSyncError(
            "ENVIO_RUT_ENVIA_MISMATCH", field="RutEnvia", found=str(caratula.rut_envia), expected=str(cert.rut)
        )
    return caratula.rut_envia


def _sub(parent: etree._Element, tag: str, text: str) -> None:
    etree.SubElement(parent, _S + tag).text = text


def build_envio(
    signed_dtes: Iterable[bytes | etree._Element | EnvelopePart], caratula: Caratula, cert: Certificate, *,
    boleta: bool,
) -> bytes:
    """A signed EnvioDTE (or EnvioBOLETA) holding the DTEs unchanged, as ISO-8859-1 bytes.

    Each DTE keeps its own signature byte for byte; only the SetDTE is signed here. DTEs in the
    standalone form dtesync writes (bytes from `to_bytes` of a `new_dte_root()` DTE, or an
    `envelope_part`) are assembled as bytes: the same envelope, byte for byte, as the one built
    as a tree (tests pin it), without copying and re-serializing every DTE. Anything else
    (elements, foreign DTEs) goes through the tree.
    """
    dtes = list(signed_dtes)
    _check_count(len(dtes), boleta)
    parts = [d if isinstance(d, EnvelopePart) else envelope_part(d) if isinstance(d, (bytes, bytearray)) else None
             for d in dtes]
    ready = [p for p in parts if p is not None]
    if len(ready) == len(parts):
        return _assemble(ready, caratula, cert, boleta=boleta)
    return _build_envio_tree([d.standalone if isinstance(d, EnvelopePart) else d for d in dtes], caratula, cert, boleta=boleta)


def _check_count(count: int, boleta: bool) -> None:
    limit, name = (MAX_BOLETA, "EnvioBOLETA") if boleta else (MAX_DTE, "EnvioDTE")
    if not count:
        raise DteSyncError("FIELD_REQUIRED", field=f"{name}/SetDTE/DTE")
    if count > limit:
        raise DteSyncError("TOO_MANY", field=f"{name}/SetDTE/DTE", found=count, expected=limit)


def _check_types(counts: Counter[int], boleta: bool) -> None:
    wrong = sorted(t for t in counts if is_boleta(t) != boleta)
    if wrong:
        expected = "39, 41" if boleta else "tipos distintos de 39 y 41 (boletas van en EnvioBOLETA)"
        raise DteSyncError("TIPO_DTE_UNSUPPORTED", field="TipoDTE", found=wrong[0], expected=expected)


# --- the envelope as bytes -------------------------------------------------------------------------
_DTE_OPEN = f'<DTE xmlns="{SII_NS}" xmlns:xsi="{XSI_NS}" version="1.0">'.encode()
_DTE_IN_SET = b'<DTE version="1.0">'  # the same start tag inside the envelope (namespaces inherited)
_DTE_CLOSE = b"</DTE>"
_DOCUMENTO_OPEN = f'<Documento xmlns="{SII_NS}" xmlns:xsi="{XSI_NS}"'.encode()


class EnvelopePart(NamedTuple):
    """A DTE as it reads inside SetDTE: serialized (ISO-8859-1), canonical (C14N, UTF-8), and
    the standalone bytes it came from."""

    xml: bytes
    c14n: bytes
    tipo_dte: int
    standalone: bytes


def envelope_part(
    dte_xml: bytes, dte: etree._Element | None = None, *, canonical: bytes | None = None
) -> EnvelopePart | None:
    """The envelope form of a standalone DTE (`dte`: its parsed tree, if the caller has it;
    `canonical`: its C14N, if known, e.g. from `DteSigning.finish`).

    Inside the envelope a standalone DTE loses only its two namespace declarations, which the
    envelope root makes; the same holds for its inclusive C14N (a namespace already rendered by
    an output ancestor is not rendered again). None: not in that form (use the tree)."""
    data = bytes(dte_xml)
    prefix = XML_HEADER + _DTE_OPEN
    body = data[len(prefix):].rstrip(b" \t\r\n")
    if not data.startswith(prefix) or not body.endswith(_DTE_CLOSE):
        return None
    root = dte if dte is not None and _alone(dte) else safexml.fromstring(data)
    if not _alone(root):
        return None  # a comment or PI beside the root: not what dtesync writes
    if canonical is None:
        canonical = etree.tostring(root, method="c14n", exclusive=False, with_comments=False)
    if not canonical.startswith(_DTE_OPEN):
        return None
    return EnvelopePart(_DTE_IN_SET + body, _DTE_IN_SET + canonical[len(_DTE_OPEN):], _tipo_dte(root), data)


def _alone(root: etree._Element) -> bool:
    return root.getparent() is None and root.getprevious() is None and root.getnext() is None


def _assemble(forms: list[EnvelopePart], caratula: Caratula, cert: Certificate, *, boleta: bool) -> bytes:
    """The envelope from the DTEs' own bytes; the SetDTE digest from their canonical forms."""
    counts = Counter(f.tipo_dte for f in forms)
    _check_types(counts, boleta)
    head = _set_dte_head(caratula, _rut_envia(caratula, cert), counts)
    # SetDTE as its own root declares the envelope's namespaces, as sign_into signs it.
    canonical_head = etree.tostring(head, method="c14n", exclusive=False, with_comments=False)
    serialized_head = etree.tostring(head, encoding="ISO-8859-1", xml_declaration=False)
    close = b"</SetDTE>"
    canonical = canonical_head[: -len(close)] + b"".join(f.c14n + b"\n" for f in forms) + close
    signature = sign_canonical(cert, "SetDoc", canonical, NSMAP)
    set_open_end = serialized_head.index(b">") + 1
    name = "EnvioBOLETA" if boleta else "EnvioDTE"
    return b"".join((
        XML_HEADER,
        f'<{name} xmlns="{SII_NS}" xmlns:xsi="{XSI_NS}" xsi:schemaLocation="{SII_NS} {_XSD[boleta]}" '
        'version="1.0"><SetDTE ID="SetDoc">'.encode(),
        serialized_head[set_open_end : -len(close)],
        b"".join(f.xml + b"\n" for f in forms),
        close,
        etree.tostring(signature, encoding="ISO-8859-1", xml_declaration=False),
        f"</{name}>".encode(),
    ))


_XSD = {True: "EnvioBOLETA_v11.xsd", False: "EnvioDTE_v10.xsd"}


def _set_dte_head(caratula: Caratula, rut_envia: Rut, counts: Counter[int]) -> etree._Element:
    """`<SetDTE ID="SetDoc">` (a root declaring NSMAP) holding the Caratula, no DTE yet."""
    set_dte = etree.Element(_S + "SetDTE", ID="SetDoc", nsmap=NSMAP)
    set_dte.text = "\n"
    cover = etree.SubElement(set_dte, _S + "Caratula", version="1.0")
    cover.tail = "\n"
    _sub(cover, "RutEmisor", str(caratula.rut_emisor))
    _sub(cover, "RutEnvia", str(rut_envia))
    _sub(cover, "RutReceptor", str(caratula.rut_receptor))
    _sub(cover, "FchResol", caratula.fch_resol.isoformat())
    _sub(cover, "NroResol", str(caratula.nro_resol))
    _sub(cover, "TmstFirmaEnv", caratula.tmst_firma_env.replace(microsecond=0, tzinfo=None).isoformat())
    for tipo in sorted(counts):
        sub = etree.SubElement(cover, _S + "SubTotDTE")
        _sub(sub, "TpoDTE", str(tipo))
        _sub(sub, "NroDTE", str(counts[tipo]))
    return set_dte


# --- the envelope as a tree (any DTE) ----------------------------------------------------------------
def _build_envio_tree(
    signed_dtes: list[bytes | etree._Element], caratula: Caratula, cert: Certificate, *, boleta: bool
) -> bytes:
    dtes = [_as_element(d) for d in signed_dtes]
    counts = Counter(_tipo_dte(d) for d in dtes)
    _check_types(counts, boleta)
    rut_envia = _rut_envia(caratula, cert)
    name = "EnvioBOLETA" if boleta else "EnvioDTE"
    root = etree.Element(_S + name, nsmap=NSMAP)
    root.set(f"{{{XSI_NS}}}schemaLocation", f"{SII_NS} {_XSD[boleta]}")
    root.set("version", "1.0")
    # SetDTE is built as a root declaring the envelope's namespaces: signed there, then moved in.
    set_dte = _set_dte_head(caratula, rut_envia, counts)
    for dte in dtes:
        set_dte.append(dte)
        dte.tail = "\n"
    sign_into(root, set_dte, cert)
    return to_bytes(root)
