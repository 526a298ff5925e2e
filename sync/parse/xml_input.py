"""XML input: the SII DTE structure itself, before folio, timbre and signature.

Accepted roots: `<DTE>` (with or without xmlns="http://www.sii.cl/SiiDte" and `version`)
holding one `<Documento>`, or a bare `<Documento>`. Hostile XML is refused, not merely
defused: any DOCTYPE or entity declaration gives XML_DOCTYPE_FORBIDDEN before parsing, and
the parser itself never resolves entities, loads DTDs or touches the network.
A TED, TmstFirma or Signature means the document was stamped or signed elsewhere: refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lxml import etree

from sync.errors import DteSyncError, DteSyncErrors
from sync.model import Documento
from sync.parse.mapping import MANY_TAGS, WS, XML_PATHS, Leaf, Node, is_utf8, to_documento
from sync.sii import DSIG_NS, SII_NS, XSI_NS

Fail = Callable[..., DteSyncErrors]  # fail(code, **DteSyncError fields): the one error, for raising

_DECL_RE = re.compile(rb"""\A\s*<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._:-]*)["']""")
_SINGLE_BYTE = {"ISO-8859-1", "ISO8859-1", "LATIN1", "LATIN-1", "WINDOWS-1252", "CP1252", "ISO_8859-1"}
_ACCEPTED = _SINGLE_BYTE | {"UTF-8", "UTF8", "US-ASCII", "ASCII"}
# Attributes an unsigned DTE may carry; the engine sets its own ID and version.
_ROOT_ATTRS = {"DTE": {"version"}, "Documento": {"ID"}}


def _parser() -> etree.XMLParser:
    # A fresh parser per document: its error log would otherwise accumulate across files.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=True, remove_pis=True, dtd_validation=False)


def declared_encoding(data: bytes) -> str:
    """The encoding named in the XML declaration, upper-cased; UTF-8 if none (XML 1.0)."""
    m = _DECL_RE.match(data[:200])
    return m.group(1).decode("ascii").upper() if m else "UTF-8"


def parse_xml(data: bytes, source: str | None = None) -> Documento:
    def fail(code: str, **kw: Any) -> DteSyncErrors:
        return DteSyncErrors([DteSyncError(code, source=source, **kw)])

    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise fail("XML_DOCTYPE_FORBIDDEN", line=data[: data.find(b"<!")].count(b"\n") + 1)
    encoding = declared_encoding(data)
    if encoding not in _ACCEPTED:
        raise fail("INPUT_ENCODING", found=encoding, params={"detail": f"codificación declarada '{encoding}' no soportada"})
    if encoding in _SINGLE_BYTE and not data.isascii() and is_utf8(data):
        raise fail("INPUT_ENCODING", found=encoding, params={
            "detail": f"el XML declara {encoding} pero su contenido está en UTF-8; declare encoding=\"UTF-8\""})
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line = exc.position[0] if exc.position else None
        if "encoding" in str(exc).lower():
            raise fail("INPUT_ENCODING", line=line, params={
                "detail": f"bytes inválidos para {encoding} en la línea {line}"}) from None
        raise fail("XML_MALFORMED", line=line, params={"detail": exc.msg or str(exc)}) from None
    if root.getroottree().docinfo.doctype:  # belt and braces: the byte scan above catches these
        raise fail("XML_DOCTYPE_FORBIDDEN")
    tree, problems = _documento_node(root, fail)
    for p in problems:
        p.source = source
    return to_documento(tree, style=XML_PATHS, source=source, errors=problems)


def _local(tag: object) -> tuple[str | None, str]:
    if not isinstance(tag, str):
        return None, ""
    if tag[0] == "{":
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


def _documento_node(root: etree._Element, fail: Fail) -> tuple[Node, list[DteSyncError]]:
    ns, name = _local(root.tag)
    if ns not in (None, SII_NS) or name not in ("DTE", "Documento"):
        raise fail("INPUT_UNKNOWN_FORMAT", line=root.sourceline, expected="<DTE> o <Documento> (un documento por archivo)",
                   found=f"<{name}>")
    problems = _attribute_problems(root)
    if name == "Documento":
        return _node(root), problems
    documentos = []
    for child in root:
        cns, cname = _local(child.tag)
        if cname == "Documento" and cns in (None, SII_NS):
            documentos.append(child)
        elif cname in ("Signature", "TED", "TmstFirma"):
            problems.append(DteSyncError("INPUT_SIGNED", field=cname, path="DTE/" + cname, line=child.sourceline))
        else:
            problems.append(DteSyncError("FIELD_UNKNOWN", field=cname, path="DTE/" + cname, line=child.sourceline))
    if len(documentos) > 1:
        problems.append(DteSyncError("FIELD_REPEATED", field="Documento", path="DTE/Documento",
                                     line=documentos[1].sourceline))
    if not documentos:
        problems.append(DteSyncError("FIELD_REQUIRED", field="Documento", path="DTE/Documento", line=root.sourceline))
    if len(documentos) != 1:
        raise DteSyncErrors(problems)
    return _node(documentos[0]), problems


def _xpath(el: etree._Element) -> str:
    """`Documento/Detalle[2]/PrcItem` for an element (only computed for errors)."""
    parts = []
    node: etree._Element | None = el
    while node is not None and _local(node.tag)[1] != "DTE":
        name = _local(node.tag)[1]
        parent = node.getparent()
        if parent is not None and name in MANY_TAGS:
            same = [c for c in parent if _local(c.tag)[1] == name]
            name += f"[{same.index(node) + 1}]"
        parts.append(name)
        node = parent
    return "/".join(reversed(parts))


def _node(el: etree._Element) -> Node:
    """One element with children -> Node; leaves become Leaf with their text."""
    entries: list[tuple[str, Node | Leaf]] = []
    text = el.text
    stray = text if text and text.strip(WS) else None
    for child in el:
        qname = child.tag
        tag = (_TAGS.get(qname) or _tag(qname)) if isinstance(qname, str) else ""
        if len(child):
            entries.append((tag, _node(child)))
        else:
            entries.append((tag, Leaf(child.text or "", child.sourceline)))
        tail = child.tail
        if tail and tail.strip(WS):
            stray = (stray or "") + tail
    return Node(entries, el.sourceline, stray)


_TAGS: dict[str, str] = {}
_SIGNED = ("TED", "Signature", "TmstFirma")


def _tag(qname: str) -> str:
    """The SII tag of an element name; foreign namespaces keep their {ns} (-> FIELD_UNKNOWN)."""
    ns, local = _local(qname)
    tag = local if ns in (None, SII_NS, DSIG_NS) else qname
    if len(_TAGS) < 2048:
        _TAGS[qname] = tag
    return tag


def _attribute_problems(root: etree._Element) -> list[DteSyncError]:
    """FIELD_UNKNOWN for every attribute the SII elements do not carry (one XPath pass)."""
    problems = []
    for attr in root.xpath("//@*"):
        owner = attr.getparent()
        name = _local(attr.attrname)[1]
        ns = _local(attr.attrname)[0]
        if ns == XSI_NS or name in _ROOT_ATTRS.get(_local(owner.tag)[1], ()) and owner.getparent() in (None, root):
            continue
        if any(_local(el.tag)[1] in _SIGNED for el in owner.iterancestors()) or _local(owner.tag)[1] in _SIGNED:
            continue  # reported once, as INPUT_SIGNED
        problems.append(DteSyncError("FIELD_UNKNOWN", field="@" + name, path=(_xpath(owner) or "DTE") + "/@" + name,
                                     line=owner.sourceline, found=str(attr)))
    return problems
