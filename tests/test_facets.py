"""The XSD facets checked before the folio (sync/dte/checks.py) say exactly what libxml2 says.

The engine validates the signed DTE with libxml2 against the official XSDs; the builder checks
every value against facet tables generated from the same XSDs before a folio is taken. These
tests keep the two in step: the tables are current, every leaf has its facets, and for every
leaf of both schemas, on values at and around each of its bounds, the check's verdict on the
text the engine would write equals libxml2's verdict on a complete DTE carrying that text.
"""

from __future__ import annotations

import copy
import runpy
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from sync import schema
from sync.dte.build import format_value
from sync.dte.checks import check_for
from sync.dte.facets import FACETS, Facets
from sync.dte.tag_order import ORDER
from sync.model import Documento
from sync.parse.mapping import _Invalid, class_spec
from sync.rut import RutError
from sync.sandbox.build import examples_dir
from sync.sii import SII_Q

ROOT = Path(__file__).resolve().parents[1]


def test_facet_tables_are_current():
    gen = runpy.run_path(str(ROOT / "tools" / "gen_facets.py"))
    assert gen["render"]() == (ROOT / "sync" / "dte" / "facets.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", ["dte", "boleta"])
def test_every_leaf_under_documento_has_its_facets(kind):
    leaves = {f"{path}/{tag}" for path, row in ORDER[kind].items() for tag, _mn, _mx in row
              if f"{path}/{tag}" not in ORDER[kind]}
    assert leaves == set(FACETS[kind])
    assert all(check_for(kind, leaf) is not None for leaf in leaves)


# --- a complete DTE carrying every element, and values around every bound -------------------------

def valid_text(f: Facets) -> str:
    if f.enumeration:
        return f.enumeration[0]
    if f.patterns:
        return "12345678-5"  # the only pattern in the SII XSDs is the RUT's
    if f.base == "string":
        return "X" * (f.length or f.min_length or 1)
    if f.base in ("integer", "decimal"):
        return f.min_inclusive or "1"
    return f.min_inclusive or {"date": "2025-03-14", "dateTime": "2025-03-14T10:00:00", "time": "08:30:00"}[f.base]


def _step(text: str, delta: int) -> str:
    """A number's text moved by one unit in its last decimal place."""
    d = Decimal(text)
    return str(d + Decimal(delta).scaleb(d.as_tuple().exponent))


def candidates(f: Facets) -> list[str]:
    """Values at and just past each bound of `f`, plus some of the wrong type."""
    out: list[str] = []
    if f.base == "string":
        for n in (f.length, f.min_length, f.max_length):
            if n:
                out += ["X" * n, "X" * (n + 1), "X" * max(n - 1, 1)]
        out += list(f.enumeration or ()) + ["ZZ", "Z", "12345678-5", "123456789-K", "1-9", "12345678-k"]
    elif f.base in ("integer", "decimal"):
        out += ["0", "-1", "1", "0.5", "1.5", "abc", "10", "99", "100"]
        out += [str(int(v) + d) for v in f.enumeration or () for d in (-1, 0, 1)]
        for bound in (f.min_inclusive, f.max_inclusive):
            if bound is not None:
                out += [bound, _step(bound, -1), _step(bound, 1)]
        if f.total_digits:
            out += ["9" * f.total_digits, "9" * (f.total_digits + 1), "1" + "0" * f.total_digits]
            if f.fraction_digits:
                whole = f.total_digits - f.fraction_digits
                out += ["9" * whole + "." + "9" * f.fraction_digits, "9" * (whole + 1) + "." + "9" * f.fraction_digits]
        if f.fraction_digits is not None:
            out += ["1." + "1" * f.fraction_digits, "1." + "1" * (f.fraction_digits + 1), "0." + "0" * f.fraction_digits + "1"]
    elif f.base == "date":
        out += ["2025-02-29", "2024-02-29", "14-03-2025", "2000-01-01", "1999-12-31", "2050-12-31", "2051-01-01"]
        for bound in (f.min_inclusive, f.max_inclusive):
            if bound is not None:
                day = date.fromisoformat(bound)
                out += [(day + timedelta(days=d)).isoformat() for d in (-1, 0, 1)]
    elif f.base == "dateTime":
        out += ["2025-03-14T10:00:00", "2025-03-14 10:00", "2010-03-09T23:59:59", "2051-01-01T00:00:00"]
        for bound in (f.min_inclusive, f.max_inclusive):
            if bound is not None:
                moment = datetime.fromisoformat(bound)
                out += [(moment + timedelta(seconds=d)).isoformat() for d in (-1, 0, 1)]
    else:
        out += ["00:00:00", "23:59:59", "08:30", "8:30", "24:00:00", "23:60:00", "08:30:00Z", "12:00:00.5"]
    return list(dict.fromkeys(out))


def field_spec(kind: str, path: str):
    """The model FieldSpec of a leaf path (boleta spellings included)."""
    cls: type = Documento
    spec = None
    for tag in path.split("/")[1:]:
        spec = class_spec(cls).lookup(tag)
        assert spec is not None, f"{kind}: {path} has no model field"
        cls = spec.cls or cls
    return spec


def fill(parent: etree._Element, kind: str, path: str, leaves: dict[str, etree._Element]) -> None:
    for tag, _mn, _mx in ORDER[kind][path]:
        el = etree.SubElement(parent, SII_Q + tag)
        child = f"{path}/{tag}"
        if child in ORDER[kind]:
            fill(el, kind, child, leaves)
        else:
            el.text = valid_text(FACETS[kind][child])
            leaves[child] = el


@pytest.fixture(scope="module")
def complete_dtes(engine):
    """Per schema kind: a signed DTE whose Documento carries every element of the schema once
    (TED, TmstFirma and Signature kept from a real issue: the XSD checks their shape only)."""
    out = {}
    for kind, example in (("dte", "33_factura.txt"), ("boleta", "39_boleta.txt")):
        issued = engine.issue((examples_dir() / example).read_bytes(), example, doc_key=f"facets:{kind}")
        root = copy.deepcopy(issued.dte)
        documento = root[0]
        ted = documento.find(SII_Q + "TED")
        for child in list(documento):
            if child.tag not in (SII_Q + "TED", SII_Q + "TmstFirma"):
                documento.remove(child)
        holder = etree.Element(SII_Q + "Documento")
        leaves: dict[str, etree._Element] = {}
        fill(holder, kind, "Documento", leaves)
        for i, child in enumerate(list(holder)):
            documento.insert(i, child)
        assert documento[-2] is ted
        assert schema.schema_errors(root) == [], f"the complete {kind} DTE must be valid to start with"
        out[kind] = (root, leaves)
    return out


@pytest.mark.parametrize("kind", ["dte", "boleta"])
def test_the_facet_checks_agree_with_libxml2_on_every_leaf(complete_dtes, kind):
    root, leaves = complete_dtes[kind]
    disagreements = []
    compared = quick = 0
    for path, el in leaves.items():
        spec = field_spec(kind, path)
        check = check_for(kind, path)
        original = el.text
        for text in candidates(FACETS[kind][path]):
            try:
                value = spec.convert(text)  # what the readers make of it (or refuse, before any folio)
            except (_Invalid, RutError):
                continue
            written = value if isinstance(value, str) else format_value(value)
            el.text = written
            libxml2 = schema.schema_errors(root) == []
            ours = check(value, written) is None
            compared += 1
            if libxml2 != ours:
                disagreements.append((path, text, written, libxml2, ours))
            if check.quick(value) and not libxml2:  # the shortcut may only ever accept what is valid
                disagreements.append((path, text, written, "quick accepted"))
            quick += check.quick(value)
        el.text = original
    assert disagreements == []
    assert compared > 5 * len(leaves)  # every leaf was really exercised, not skipped by the readers
    assert quick > compared / 4  # and the shortcut was taken often enough to be tested
