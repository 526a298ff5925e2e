"""Generate sync/dte/facets.py from the shipped SII XSDs: every leaf's simple-type facets.

The engine checks every value it is about to write into a Documento against these tables
before a folio is taken (sync/dte/checks.py, called from the builder's walk), so an input
the official XSD would refuse never burns a folio. Compiling the XSDs at run time costs
~0.6 s of xmlschema per process; the facets are flattened here once instead:

- every restriction step from the element's type down to the XSD built-in is read, and the
  tightest bound of each kind kept (min/max inclusive/exclusive, lengths, digits);
- enumerations: the most derived list (XSD requires each step's to lie in its base's);
- patterns: one group per restriction step (any pattern of a group must match, every group
  must), already translated to Python regular expressions by xmlschema.

    python tools/gen_facets.py            # rewrites sync/dte/facets.py

tests/test_facets.py regenerates the text and compares it with the file.
"""
import sys
from pathlib import Path

import xmlschema

ROOT = Path(__file__).resolve().parents[1]
XSD = ROOT / "sync" / "schemas" / "sii"
OUT = ROOT / "sync" / "dte" / "facets.py"
SKIP = {"TED", "TmstFirma"}  # made by the engine, not by the model
XS = "{http://www.w3.org/2001/XMLSchema}"
INTEGER_TYPES = {"integer", "long", "int", "short", "byte", "nonNegativeInteger", "positiveInteger",
                 "nonPositiveInteger", "negativeInteger", "unsignedLong", "unsignedInt", "unsignedShort",
                 "unsignedByte"}
BASES = {"string": "string", "decimal": "decimal", "date": "date", "dateTime": "dateTime", "time": "time"}


def children(el):
    t = el.type
    if t.is_simple() or t.has_simple_content() or t.content is None:
        return []
    return list(t.content.iter_elements())


def find(el, name):
    return next(c for c in children(el) if c.local_name == name)


def steps(t):
    """The restriction chain of a simple type, most derived first, built-ins included."""
    while t is not None:
        yield t
        t = getattr(t, "base_type", None)


def base_of(t) -> str:
    names = [(s.name or "").replace(XS, "") for s in steps(t)]
    if any(n in INTEGER_TYPES for n in names):
        return "integer"
    primitive = t.primitive_type.local_name
    if primitive not in BASES:
        raise SystemExit(f"unsupported XSD primitive {primitive!r}: teach sync/dte/checks.py about it")
    return BASES[primitive]


def flatten(t) -> dict:
    out: dict = {"base": base_of(t)}
    patterns = []
    for step in steps(t):
        for key, facet in (getattr(step, "facets", None) or {}).items():
            if key is None:
                continue  # a built-in's own validator function (its lexical space): the base covers it
            name = key.replace(XS, "")
            if name == "enumeration":
                out.setdefault("enumeration", tuple(str(v) for v in facet.enumeration))
            elif name == "pattern":
                patterns.append(tuple(p.pattern for p in facet.patterns))
            elif name in ("whiteSpace",):
                continue
            elif name in ("minInclusive", "minExclusive"):
                _tighten(out, _snake(name), facet.value, max)
            elif name in ("maxInclusive", "maxExclusive"):
                _tighten(out, _snake(name), facet.value, min)
            elif name in ("length", "minLength", "maxLength", "totalDigits", "fractionDigits"):
                pick = max if name == "minLength" else min
                _tighten(out, _snake(name), facet.value, pick)
            else:
                raise SystemExit(f"unsupported facet {name!r}: teach sync/dte/checks.py about it")
    if patterns:
        out["patterns"] = tuple(patterns)
    for key in ("min_inclusive", "max_inclusive", "min_exclusive", "max_exclusive"):
        if key in out:
            out[key] = str(out[key])
    return out


def _tighten(out: dict, key: str, value, pick) -> None:
    out[key] = value if key not in out else pick(out[key], value)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def walk(el, path, table):
    for c in children(el):
        if c.local_name in SKIP:
            continue
        if children(c):
            walk(c, f"{path}/{c.local_name}", table)
        else:
            t = c.type.content if (not c.type.is_simple() and c.type.has_simple_content()) else c.type
            table[f"{path}/{c.local_name}"] = flatten(t)


def build() -> dict:
    dte = xmlschema.XMLSchema(str(XSD / "DTE_v10.xsd"))
    bol = xmlschema.XMLSchema(str(XSD / "EnvioBOLETA_v11.xsd"))
    out = {}
    for kind, root in (
        ("dte", find(dte.elements["DTE"], "Documento")),
        ("boleta", find(find(find(bol.elements["EnvioBOLETA"], "SetDTE"), "DTE"), "Documento")),
    ):
        table: dict = {}
        walk(root, "Documento", table)
        out[kind] = table
    return out


FIELDS = ("base", "length", "min_length", "max_length", "enumeration", "patterns", "min_inclusive",
          "max_inclusive", "min_exclusive", "max_exclusive", "total_digits", "fraction_digits")


def render_facets(f: dict) -> str:
    args = ", ".join(f"{k}={f[k]!r}" for k in FIELDS if k in f)
    return f"Facets({args})"


def render() -> str:
    tables = build()
    lines = [
        '"""Generated by tools/gen_facets.py from sync/schemas/sii: do not edit.',
        "",
        "FACETS[kind][path] is the flattened simple-type restriction of every leaf element under",
        "Documento (kind 'dte': DTE_v10.xsd; 'boleta': EnvioBOLETA_v11.xsd): the tightest bound of",
        "each facet along the derivation chain, bounds as XSD lexical text, patterns as Python",
        "regular expressions (one tuple per restriction step; every step must match).",
        '"""',
        "",
        "from typing import NamedTuple",
        "",
        "",
        "class Facets(NamedTuple):",
        "    base: str  # string | integer | decimal | date | dateTime | time",
        "    length: int | None = None",
        "    min_length: int | None = None",
        "    max_length: int | None = None",
        "    enumeration: tuple[str, ...] | None = None",
        "    patterns: tuple[tuple[str, ...], ...] = ()",
        "    min_inclusive: str | None = None",
        "    max_inclusive: str | None = None",
        "    min_exclusive: str | None = None",
        "    max_exclusive: str | None = None",
        "    total_digits: int | None = None",
        "    fraction_digits: int | None = None",
        "",
        "",
        "FACETS: dict[str, dict[str, Facets]] = {",
    ]
    for kind, table in tables.items():
        lines.append(f"    {kind!r}: {{")
        for path, f in table.items():
            lines.append(f"        {path!r}: {render_facets(f)},")
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
