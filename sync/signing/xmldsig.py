"""XMLDSig as the SII profiles it: sign a Documento / SetDTE / seed, verify any SII signature.

The profile (SII Instructivo Técnico de Emisión v15.10.09, Anexo 3 A.3.3.1, and the SII's own
signed samples): `<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">`
(default namespace, no `ds:` prefix) as the **next sibling** of the signed element, one
`Reference URI="#ID"`, a single inclusive C14N 1.0 transform (no enveloped-signature transform),
rsa-sha1 over sha1 digests, and a KeyInfo with both `KeyValue/RSAKeyValue` and
`X509Data/X509Certificate` of the same key.

Canonicalization. Inclusive C14N renders, on the signed element, every namespace in scope
there, so the digest depends on where the element sits: it is computed in the element's final
context. lxml's own subtree C14N (`tostring(sub, method="c14n")`) is wrong when the default
namespace comes from an ancestor (spurious `xmlns=""` on grandchildren, lxml 4.9 to 6.1), so `c14n()`
canonicalizes a detached copy whose new apex declares exactly the in-scope namespaces (plus the
inherited `xml:*` attributes C14N 1.0 asks for). On the signing hot path the SignedInfo is not
canonicalized by a serializer at all: it is produced from a template in canonical form (its
in-scope namespaces are known: xmldsig plus the prefixed ones of the parent), and the very same
text is parsed into the tree, so what is signed is what a verifier canonicalizes
(tests/test_signing.py checks the template against `c14n()` and xmlsec1).

Verification (`verify_signatures`) accepts DTEs as found in the wild: when the in-context digest
fails it tries the readings the SII world produces (a DTE signed without namespace and then put
in a `xmlns="…SiiDte"` envelope, a DTE signed with the namespace and served without it, a DTE
signed standalone with only `xmlns` and enveloped under `xmlns:xsi`) and says in a warning which
one it had to assume.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from sync.rut import Rut
from sync.signing.certificate import Certificate, rut_of
from sync.sii import DSIG_NS, SII_NS, SII_Q, XSI_NS

XML_NS = "http://www.w3.org/XML/1998/namespace"
NsMap = dict[str | None, str]  # prefix (None: the default namespace) -> URI, as lxml's nsmap

ALG_C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
ALG_C14N_COMMENTS = ALG_C14N + "#WithComments"
ALG_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ALG_ENVELOPED = DSIG_NS + "enveloped-signature"
ALG_RSA_SHA1 = DSIG_NS + "rsa-sha1"
ALG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ALG_SHA1 = DSIG_NS + "sha1"
ALG_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

_DIGESTS = {ALG_SHA1: hashlib.sha1, ALG_SHA256: hashlib.sha256}
_SIGNATURE_HASHES = {ALG_RSA_SHA1: hashes.SHA1, ALG_RSA_SHA256: hashes.SHA256}
_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_D = f"{{{DSIG_NS}}}"


# --- canonicalization ------------------------------------------------------------------------


def c14n(
    element: etree._Element,
    nsmap: NsMap | None = None,
    *,
    retag: Callable[[str], str] | None = None,
    exclusive: bool = False,
) -> bytes:
    """C14N 1.0 (no comments) of `element` as the apex of a node set, in its document context.

    `nsmap` replaces the in-scope namespaces and `retag` renames every element: both exist only
    to re-read documents signed in another context (verification); signing passes neither.
    """
    if nsmap is None and retag is None and _alone_in_document(element):
        # A document's only node: nothing is inherited, so libxml2's own C14N is exact (the
        # spurious `xmlns=""` of the module docstring needs an ancestor) and the copy below is
        # not needed. The signing hot path lands here.
        return etree.tostring(element, method="c14n", exclusive=exclusive, with_comments=False)
    scope = element.nsmap if nsmap is None else nsmap
    copy = deepcopy(element)  # its own document: detached from the ancestors' declarations
    if retag is not None:
        for node in copy.iter(etree.Element):
            if isinstance(node.tag, str):
                node.tag = retag(node.tag)
    attrib = dict(copy.attrib)
    if nsmap is None:  # C14N 1.0 carries inherited xml:lang/xml:space... onto the apex
        for ancestor in element.iterancestors():
            for name, value in ancestor.attrib.items():
                if name.startswith("{" + XML_NS) and name not in attrib:
                    attrib[name] = value
    apex = etree.Element(copy.tag, attrib, nsmap=scope)
    apex.text = copy.text
    apex[:] = list(copy)
    return etree.tostring(apex, method="c14n", exclusive=exclusive, with_comments=False)


def _alone_in_document(element: etree._Element) -> bool:
    """The root element with nothing beside it: no comment or PI (lxml shows those as siblings)
    and no tail (a root's tail is a text node beside it, and lxml then takes the trap path)."""
    return (element.getparent() is None and element.tail is None
            and element.getprevious() is None and element.getnext() is None)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _wrap64(text: str) -> str:
    return "\n".join(text[i : i + 64] for i in range(0, len(text), 64))


# --- signing --------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _ns_decls(prefixed: tuple[tuple[str, str], ...]) -> str:
    """The namespace attributes of a canonical SignedInfo: xmldsig default first, then by prefix."""
    return f' xmlns="{DSIG_NS}"' + "".join(f' xmlns:{p}="{uri}"' for p, uri in prefixed)


@lru_cache(maxsize=8)
def _key_info(cert: Certificate) -> str:
    return (
        "<KeyInfo><KeyValue><RSAKeyValue>"
        f"<Modulus>{_wrap64(cert.modulus_b64)}</Modulus><Exponent>{cert.exponent_b64}</Exponent>"
        "</RSAKeyValue></KeyValue><X509Data>"
        f"<X509Certificate>{_wrap64(cert.der_b64)}</X509Certificate>"
        "</X509Data></KeyInfo>"
    )


def _signature(cert: Certificate, uri: str, digest: bytes, scope: NsMap, transform: str) -> etree._Element:
    """Build the Signature element; SignedInfo is written directly in canonical form."""
    return etree.fromstring(_signature_text(cert, uri, digest, scope, transform))


def _signature_text(cert: Certificate, uri: str, digest: bytes, scope: NsMap, transform: str) -> str:
    """The Signature as XML text, which is also its C14N in any context whose default
    namespace is not xmldsig's: every tag and attribute is written as C14N writes them, and the
    texts (base64, line-wrapped with LF) need no escaping. tests/test_signing.py checks it."""
    pending = PendingSignature.of(uri, digest, scope, transform)
    return pending.text(cert, cert.sign_sha1(pending.to_sign))


@dataclass(frozen=True, slots=True)
class PendingSignature:
    """A Signature up to the private key's part: `to_sign` (the canonical SignedInfo) goes to
    `Certificate.sign_sha1`, which runs without the interpreter lock, so the engine can sign on
    another thread while it stamps the next document; `text(cert, value)` is then the Signature."""

    inner: str  # the SignedInfo's children, as C14N writes them
    to_sign: bytes

    @classmethod
    def of(cls, uri: str, digest: bytes, scope: NsMap, transform: str) -> PendingSignature:
        inner = (
            f'<CanonicalizationMethod Algorithm="{ALG_C14N}"></CanonicalizationMethod>'
            f'<SignatureMethod Algorithm="{ALG_RSA_SHA1}"></SignatureMethod>'
            f'<Reference URI="{uri}"><Transforms><Transform Algorithm="{transform}"></Transform></Transforms>'
            f'<DigestMethod Algorithm="{ALG_SHA1}"></DigestMethod>'
            f"<DigestValue>{_b64(digest)}</DigestValue></Reference>"
        )
        prefixed = tuple(sorted((p, u) for p, u in scope.items() if p is not None))
        return cls(inner, f"<SignedInfo{_ns_decls(prefixed)}>{inner}</SignedInfo>".encode())

    def text(self, cert: Certificate, value: bytes) -> str:
        return (
            f'<Signature xmlns="{DSIG_NS}"><SignedInfo>{self.inner}</SignedInfo>'
            f"<SignatureValue>{_b64(value)}</SignatureValue>{_key_info(cert)}</Signature>"
        )


def sign_canonical(cert: Certificate, ref: str, canonical: bytes, scope: NsMap) -> etree._Element:
    """The Signature of the element with ID `ref` whose C14N, in the place it will have, the
    caller has composed (`sync.envio` builds envelopes from the DTEs' own canonical bytes)."""
    return _signature(cert, "#" + ref, hashlib.sha1(canonical).digest(), scope, ALG_C14N)


def sign_after(element: etree._Element, cert: Certificate) -> etree._Element:
    """Sign `element` (by its `ID`) and insert the Signature as its next sibling; return it.

    The digest covers the element as it sits now, with every namespace in scope: do not move
    it afterwards into a context that declares other namespaces (see `sync.envio`).
    """
    ref = element.get("ID")
    if not ref or not _NCNAME.match(ref):
        raise ValueError(f"{element.tag!s}: needs an ID attribute that is an XML NCName, got {ref!r}")
    parent = element.getparent()
    if parent is None:
        raise ValueError("sign_after: the signed element needs a parent (the Signature is its sibling)")
    digest = hashlib.sha1(c14n(element)).digest()
    signature = _signature(cert, "#" + ref, digest, parent.nsmap, ALG_C14N)
    element.addnext(signature)
    return signature


def sign_into(parent: etree._Element, element: etree._Element, cert: Certificate) -> etree._Element:
    """Sign `element` while it is still the root of its own document, then append it and its
    Signature to `parent`; return the Signature. Same result as `parent.append(element)` then
    `sign_after(element)`, without copying the element to canonicalize it.

    Exact because `element` declares exactly the namespaces `parent` has in scope (lxml drops
    those declarations as redundant when it moves the element in) and nothing else is inherited:
    its C14N as a root is its C14N in its final place (tests/test_signing.py checks both ways).
    """
    return sign_into_canonical(parent, element, cert)[0]


def sign_into_canonical(
    parent: etree._Element, element: etree._Element, cert: Certificate
) -> tuple[etree._Element, bytes, bytes]:
    """`sign_into`, also returning what it canonicalized on the way: the C14N of `element` as
    a root (the bytes its digest covers) and the Signature's part of the C14N of `parent`.
    Callers compose the canonical form of the signed parent from them (sync.envio)."""
    into = SigningInto.prepare(parent, element)
    return into.finish(cert, cert.sign_sha1(into.signature.to_sign))


@dataclass(frozen=True, slots=True)
class SigningInto:
    """`sign_into_canonical` in its two halves around the private key: `prepare` checks and
    canonicalizes, `finish` takes the signature value and puts the element and its Signature in
    the parent."""

    parent: etree._Element
    element: etree._Element
    canonical: bytes  # C14N of the element as a root: what the digest covers
    signature: PendingSignature

    @classmethod
    def prepare(cls, parent: etree._Element, element: etree._Element) -> SigningInto:
        ref = element.get("ID")
        if not ref or not _NCNAME.match(ref):
            raise ValueError(f"{element.tag!s}: needs an ID attribute that is an XML NCName, got {ref!r}")
        if not _alone_in_document(element) or element.nsmap != parent.nsmap:
            raise ValueError(f"sign_into: {element.tag!s} must be a document root declaring exactly {parent.nsmap}")
        if any(name.startswith("{" + XML_NS) for node in (parent, *parent.iterancestors()) for name in node.attrib):
            raise ValueError("sign_into: the parent's xml:* attributes would be inherited (use sign_after)")
        canonical = c14n(element)
        pending = PendingSignature.of("#" + ref, hashlib.sha1(canonical).digest(), parent.nsmap, ALG_C14N)
        return cls(parent, element, canonical, pending)

    def finish(self, cert: Certificate, value: bytes) -> tuple[etree._Element, bytes, bytes]:
        """The Signature with `value` (cert.sign_sha1 of `signature.to_sign`), the element's
        C14N, and the Signature's C14N."""
        text = self.signature.text(cert, value)
        signature = etree.fromstring(text)
        self.parent.append(self.element)
        self.parent.append(signature)
        return signature, self.canonical, text.encode("utf-8")


def sign_enveloped(root: etree._Element, cert: Certificate) -> etree._Element:
    """Sign the whole document (URI="", enveloped-signature) and append the Signature to root.

    This is the form of the SII seed (`getToken`), not of DTEs.
    """
    digest = hashlib.sha1(c14n(root)).digest()
    signature = _signature(cert, "", digest, root.nsmap, ALG_ENVELOPED)
    root.append(signature)
    return signature


# --- verification ------------------------------------------------------------------------------


@dataclass
class SignatureResult:
    """One Signature of a document, as verified; `warnings` say what had to be assumed."""

    reference: str
    digest_ok: bool
    signature_ok: bool
    key_consistent: bool
    signer_rut: Rut | None = None
    signer_subject: str | None = None
    signed_element: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.digest_ok and self.signature_ok


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


Retag = Callable[[str], str]


def _readings(el: etree._Element) -> Iterator[tuple[str | None, NsMap | None, Retag | None]]:
    """(assumption, nsmap, retag) candidates: the context first, then the SII-world variants."""
    yield None, None, None
    scope = dict(el.nsmap)
    ns = etree.QName(el).namespace
    candidates: list[tuple[str, NsMap, Retag | None]] = []
    if ns == SII_NS:
        candidates.append(("signed standalone with only xmlns SiiDte (other namespaces in scope added later)",
                           {None: SII_NS}, None))
        candidates.append(("signed as a namespace-less DTE, xmlns SiiDte added later (as in the SII example)",
                           {}, _local))
    elif ns is None:
        def add_sii(tag: str) -> str:
            return tag if tag.startswith("{") else SII_Q + tag

        candidates.append(("signed with xmlns SiiDte, which was removed later", {None: SII_NS}, add_sii))
        candidates.append(("signed with xmlns SiiDte and xmlns:xsi, which were removed later",
                           {None: SII_NS, "xsi": XSI_NS}, add_sii))
    elif ns == DSIG_NS:
        candidates.append(("SignedInfo canonicalized standalone (only the xmldsig namespace)", {None: DSIG_NS}, None))
        candidates.append(("SignedInfo canonicalized with xmlns:xsi in scope", {None: DSIG_NS, "xsi": XSI_NS}, None))
    for note, nsmap, retag in candidates:
        if retag is None and nsmap == scope:
            continue
        yield note, nsmap, retag


def _detached(signature: etree._Element) -> Callable[[], None]:
    """Temporarily remove the Signature (keeping the text around it); returns the undo."""
    parent = signature.getparent()
    if parent is None:  # a Signature as the document root: nothing to take it out of
        return lambda: None
    index = parent.index(signature)
    tail = signature.tail
    prev = signature.getprevious()
    parent.remove(signature)  # lxml removes the tail with it: put it back where it was
    if tail:
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail

    def undo() -> None:
        if tail:
            if prev is not None:
                prev.tail = _without_suffix(prev.tail, tail)
            else:
                parent.text = _without_suffix(parent.text, tail)
        parent.insert(index, signature)
        signature.tail = tail

    return undo


def _without_suffix(text: str | None, suffix: str) -> str | None:
    """`text` without the `suffix` `_detached` appended to it (None when nothing is left)."""
    return (text or "")[: len(text or "") - len(suffix)] or None


def _find_by_id(root: etree._Element, ref: str) -> list[etree._Element]:
    for attr in ("ID", "Id", "id"):
        found = root.xpath(f"//*[@{attr}=$v]", v=ref)
        elements = [el for el in found if isinstance(el, etree._Element)] if isinstance(found, list) else []
        if elements:
            return elements
    return []


def _check_reference(reference: etree._Element, signature: etree._Element, root: etree._Element,
                     result: SignatureResult) -> bool:
    uri = reference.get("URI", "")
    transforms = [t.get("Algorithm", "") for t in reference.iterfind(f"{_D}Transforms/{_D}Transform")]
    method = reference.find(f"{_D}DigestMethod")
    expected_text = reference.findtext(f"{_D}DigestValue") or ""
    hasher = _DIGESTS.get(method.get("Algorithm", "") if method is not None else "")
    if hasher is None:
        result.warnings.append(f"{uri}: unsupported DigestMethod")
        return False
    unknown = set(transforms) - {ALG_C14N, ALG_C14N_COMMENTS, ALG_EXC_C14N, ALG_ENVELOPED}
    if unknown:
        result.warnings.append(f"{uri}: unsupported Transform {sorted(unknown)}")
        return False
    if uri == "":
        targets = [root]
    elif uri.startswith("#"):
        targets = _find_by_id(root, uri[1:])
    else:
        result.warnings.append(f"{uri}: external references are not followed")
        return False
    if len(targets) != 1:
        result.warnings.append(f"{uri}: {'no element has' if not targets else 'several elements have'} this ID")
        return False
    target = targets[0]
    result.signed_element = etree.QName(target).localname
    expected = base64.b64decode("".join(expected_text.split()))
    exclusive = ALG_EXC_C14N in transforms
    undo = _detached(signature) if ALG_ENVELOPED in transforms else None
    try:
        for note, nsmap, retag in _readings(target):
            if hasher(c14n(target, nsmap, retag=retag, exclusive=exclusive)).digest() == expected:
                if note:
                    result.warnings.append(f"{result.signed_element} {uri}: digest verifies only if {note}")
                return True
    finally:
        if undo:
            undo()
    return False


def _keys(signature: etree._Element, result: SignatureResult) -> list[rsa.RSAPublicKey]:
    """The candidate keys: RSAKeyValue first, then the certificate's if it is a different key."""
    keys: list[rsa.RSAPublicKey] = []
    kv = signature.find(f"{_D}KeyInfo/{_D}KeyValue/{_D}RSAKeyValue")
    if kv is not None:
        n = int.from_bytes(base64.b64decode("".join((kv.findtext(f"{_D}Modulus") or "").split())), "big")
        e = int.from_bytes(base64.b64decode("".join((kv.findtext(f"{_D}Exponent") or "").split())), "big")
        keys.append(rsa.RSAPublicNumbers(e, n).public_key())
    cert_text = signature.findtext(f"{_D}KeyInfo/{_D}X509Data/{_D}X509Certificate")
    cert_key = None
    if cert_text:
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode("".join(cert_text.split())))
            result.signer_rut, result.signer_subject = rut_of(cert), cert.subject.rfc4514_string()
            cert_key = cert.public_key()
        except ValueError as exc:
            result.warnings.append(f"X509Certificate unreadable: {exc}")
    if kv is None or not cert_text:
        result.warnings.append("KeyInfo lacks " + ("RSAKeyValue" if kv is None else "X509Certificate")
                               + " (the SII requires both)")
    if isinstance(cert_key, rsa.RSAPublicKey):
        if keys and keys[0].public_numbers() == cert_key.public_numbers():
            result.key_consistent = True
        else:
            if keys:
                result.warnings.append("RSAKeyValue and X509Certificate are different keys")
            keys.append(cert_key)
    return keys


def _check_signature(signature: etree._Element, result: SignatureResult) -> bool:
    signed_info = signature.find(f"{_D}SignedInfo")
    if signed_info is None:
        result.warnings.append("Signature without SignedInfo")
        return False
    canon = signed_info.find(f"{_D}CanonicalizationMethod")
    algorithm = signed_info.find(f"{_D}SignatureMethod")
    hash_cls = _SIGNATURE_HASHES.get(algorithm.get("Algorithm", "") if algorithm is not None else "")
    if hash_cls is None or canon is None or canon.get("Algorithm") not in (ALG_C14N, ALG_EXC_C14N):
        result.warnings.append("unsupported SignatureMethod or CanonicalizationMethod")
        return False
    exclusive = canon.get("Algorithm") == ALG_EXC_C14N
    value = base64.b64decode("".join((signature.findtext(f"{_D}SignatureValue") or "").split()))
    keys = _keys(signature, result)
    for note, nsmap, _ in _readings(signed_info):
        data = c14n(signed_info, nsmap, exclusive=exclusive)
        for i, key in enumerate(keys):
            try:
                key.verify(value, data, padding.PKCS1v15(), hash_cls())
            except InvalidSignature:
                continue
            if note:
                result.warnings.append(f"SignatureValue verifies only if {note}")
            if i:
                result.warnings.append("SignatureValue verifies with the X509Certificate key, not RSAKeyValue")
            return True
    return False


def verify_signatures(root: etree._Element | etree._ElementTree) -> list[SignatureResult]:
    """Verify every XMLDSig Signature in the document, each in the most natural reading that works."""
    if isinstance(root, etree._ElementTree):
        root = root.getroot()
    results = []
    for signature in list(root.iter(f"{_D}Signature")):
        references = signature.findall(f"{_D}SignedInfo/{_D}Reference")
        result = SignatureResult(
            reference=references[0].get("URI", "") if references else "",
            digest_ok=False, signature_ok=False, key_consistent=False,
        )
        if signature.find(f"{_D}SignedInfo") is None or not references:
            result.warnings.append("Signature without SignedInfo/Reference")
            results.append(result)
            continue
        if len(references) > 1:
            result.warnings.append(f"{len(references)} References (the SII profile has one)")
        result.digest_ok = all(_check_reference(r, signature, root, result) for r in references)
        result.signature_ok = _check_signature(signature, result)
        results.append(result)
    return results
