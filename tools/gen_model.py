"""One-off generator: print the skeleton of sync/model.py from the SII XSDs.

Kept so the next engineer can regenerate after an XSD update and diff. Usage:
    python tools/gen_model.py sync/schemas/sii > /tmp/model.py
"""
import re
import sys
from pathlib import Path

import xmlschema

INT_TYPES = {"integer", "nonNegativeInteger", "positiveInteger", "long", "int", "short", "unsignedLong", "unsignedInt", "unsignedShort", "unsignedByte", "byte", "nonPositiveInteger", "negativeInteger"}
RUT_TAGS = re.compile(r"^(RUT|Rut)")


def snake(tag: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", tag)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def py_type(el) -> str:
    t = el.type
    if RUT_TAGS.match(el.local_name) and el.local_name not in ("RutEnvia",):
        return "Rut"
    if not t.is_simple():
        if t.has_simple_content():
            t = t.content
        else:
            return el.local_name
    prim = t.primitive_type.local_name
    if prim == "date":
        return "date"
    if prim == "dateTime":
        return "datetime"
    if prim == "decimal":
        b = t
        while b is not None:
            n = (b.local_name or "")
            if n in INT_TYPES:
                return "int"
            fd = getattr(b, "facets", {}).get("{http://www.w3.org/2001/XMLSchema}fractionDigits")
            if fd is not None and fd.value == 0:
                return "int"
            b = getattr(b, "base_type", None)
        return "Decimal"
    if False:
        fd = None
        for _facet in getattr(t, "facets", {}).values() if hasattr(t, "facets") else []:
            pass
        try:
            fd = t.get_facet("{http://www.w3.org/2001/XMLSchema}fractionDigits")
        except Exception:
            fd = None
        if "integer" in str(t.base_type) or "Int" in str(t.name or "") or (fd is not None and fd.value == 0):
            return "int"
        return "Decimal"
    return "str"


def children(el):
    t = el.type
    if t.is_simple() or t.has_simple_content() or t.content is None:
        return []
    return [c for c in t.content.iter_elements()]


classes: dict[str, list] = {}


def collect(el, cls_name, schema_tag):
    fields = classes.setdefault(cls_name, [])
    known = {f[0] for f in fields}
    for c in children(el):
        if c.local_name in ("TED", "TmstFirma"):
            continue
        key = c.local_name
        many = c.max_occurs is None or c.max_occurs > 1
        sub = children(c)
        typ = (cls_name + key if key in ("Comisiones",) and cls_name == "Totales" else key) if sub else py_type(c)
        if key not in known:
            fields.append((key, typ, many, c.max_occurs, schema_tag))
            known.add(key)
        if sub:
            collect(c, typ, schema_tag)


def find(el, name):
    for c in children(el):
        if c.local_name == name:
            return c


root = Path(sys.argv[1])
dte = xmlschema.XMLSchema(str(root / "DTE_v10.xsd"))
bol = xmlschema.XMLSchema(str(root / "EnvioBOLETA_v11.xsd"))
collect(find(dte.elements["DTE"], "Documento"), "Documento", "dte")
bdte = find(find(bol.elements["EnvioBOLETA"], "SetDTE"), "DTE")
collect(find(bdte, "Documento"), "Documento", "boleta")
for cls, fields in reversed(list(classes.items())):
    print(f"@dataclass\nclass {cls}:")
    for tag, typ, many, maxo, src in fields:
        t = f"list[{typ}]" if many else f"{typ} | None"
        default = "field(default_factory=list)" if many else "None"
        print(f"    {snake(tag)}: {t} = sii({tag!r}{', many=True' if many else ''})  # {src} max={maxo}")
    print()
