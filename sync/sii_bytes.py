"""The SII byte form and the Latin-1 policy: what text becomes before the SII signs it.

Two things every signed part of a DTE depends on, kept here so the CAF (FRMA over DA), the
timbre (FRMT over DD, the PDF417 payload) and the XML builder share one definition:

- **The byte form** (`flatten`; SII Instructivo Técnico de Emisión v15.10.09, Anexo 2 A.2.4):
  the bytes the SII signs for DD and DA are the element with no namespace declarations, no
  whitespace-only text between tags, attributes sorted as in C14N, ISO-8859-1, and `"`/`'`
  written as `&quot;`/`&apos;` in text. It applies to any lxml element, also one taken from
  inside a namespaced DTE.
- **The Latin-1 policy** (`latin1_text`): DTEs are ISO-8859-1. Typographic characters ERPs
  send (curly quotes, dashes, €, NBSP) get their usual Latin-1 reading, letters with accents
  Latin-1 lacks lose the accent, and anything else is refused with TEXT_NOT_LATIN1 rather than
  replaced by a `?` that would change the signed text.
"""

from __future__ import annotations

import re
import unicodedata

from lxml import etree

from sync.errors import DteSyncError

XML_WS = " \t\r\n"  # XML's whitespace; str.strip() would also eat NBSP, which is text here

# --- escaping ---------------------------------------------------------------------------------

SII_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "\r": "&#xD;"})
C14N_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#xD;"})
C14N_ATTR = str.maketrans({"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"})
_NEEDS_ESCAPE = re.compile("[&<>\"'\r]")  # str.translate walks every character in Python; most texts need nothing

EscapeTable = dict[int, str]


def sii_text(text: str) -> str:
    """`text` escaped as the SII's byte form writes element text (quotes as entities)."""
    return text.translate(SII_TEXT) if _NEEDS_ESCAPE.search(text) else text


def local_name(tag: object) -> str:
    """An element's tag without its `{namespace}`; "" for comments and processing instructions
    (whose `tag` is a function in lxml)."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


# --- the byte form ----------------------------------------------------------------------------


def flatten(element: etree._Element, *, sii_quotes: bool = True) -> bytes:
    """The exact bytes the SII signs for DD (FRMT) and DA (FRMA), and prints in the PDF417.

    Namespaces are dropped (local names only), whitespace-only text and tails are removed,
    comments and processing instructions are skipped, attributes are sorted as in C14N.
    `sii_quotes=False` gives the plain C14N escaping, only used to read third-party TEDs.
    """
    parts: list[str] = []
    _flatten_into(element, parts, SII_TEXT if sii_quotes else C14N_TEXT)
    return "".join(parts).encode("iso-8859-1", "xmlcharrefreplace")


def _flatten_into(el: etree._Element, out: list[str], table: EscapeTable) -> None:
    tag = local_name(el.tag)
    out.append("<" + tag)
    if el.attrib:
        for name, value in sorted((local_name(k), str(v)) for k, v in el.attrib.items()):
            out.append(f' {name}="{value.translate(C14N_ATTR)}"')
    out.append(">")
    text = el.text
    if text and text.strip(XML_WS):
        out.append(text.translate(table))
    for child in el:
        if isinstance(child.tag, str):
            _flatten_into(child, out, table)
        tail = child.tail
        if tail and tail.strip(XML_WS):
            out.append(tail.translate(table))
    out.append(f"</{tag}>")


def has_quotes(element: etree._Element) -> bool:
    """True when some text holds `"` or `'`, i.e. when the two escaping readings differ."""
    return any(t and ('"' in t or "'" in t) for t in element.itertext())


# --- the Latin-1 policy -----------------------------------------------------------------------

# Typographic characters an ERP commonly sends (Word, Windows-1252) and their Latin-1 reading.
_LATIN1_FALLBACK = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...", "\u2022": "*", "\u20ac": "EUR", "\u2122": "TM", "\u02c6": "^", "\u02dc": "~",
    "\u0152": "OE", "\u0153": "oe", "\u2039": "<", "\u203a": ">", "\u2044": "/",
    "\u00a0": " ", "\u2007": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ",
    "\u200b": "", "\u200c": "", "\u200d": "", "\ufeff": "",
})

# Every character Latin-1 can carry and XML allows: tab, CR, LF, printable ASCII, 0xA0-0xFF.
PLAIN_LATIN1 = re.compile("[\t\n\r\x20-\x7e\xa0-\xff]*")


def latin1_text(value: str, field: str) -> str:
    """`value` made ISO-8859-1-encodable, or DteSyncError TEXT_NOT_LATIN1 naming `field`.

    Known typographic characters are transliterated (curly quotes, dashes, €, Œ, NBSP...),
    letters with accents Latin-1 lacks lose them (ą -> a, š -> s); anything else (emoji, CJK,
    control characters XML forbids) is refused, because a silent '?' would change the signed text.
    """
    if PLAIN_LATIN1.fullmatch(value):  # the common case, without a per-character loop
        return value
    out = []
    for ch in value.translate(_LATIN1_FALLBACK):
        out.append(ch if _latin1_ok(ch) else _transliterate(ch, field))
    return "".join(out)


def _latin1_ok(ch: str) -> bool:
    o = ord(ch)
    return o <= 0xFF and (o >= 0x20 or ch in "\t\n\r") and not 0x7F <= o <= 0x9F


def _transliterate(ch: str, field: str) -> str:
    for form in ("NFKC", "NFKD"):
        decomposed = unicodedata.normalize(form, ch)
        kept = "".join(c for c in decomposed if not unicodedata.combining(c))
        if kept and all(_latin1_ok(c) for c in kept):
            return kept
    raise DteSyncError(
        "TEXT_NOT_LATIN1", field=field, found=ch, params={"codepoint": f"U+{ord(ch):04X}"}
    )


def cut(value: str, limit: int) -> str:
    """The first `limit` characters, not trimmed: a trailing space is signed too (RSR, IT1)."""
    return value[:limit]
