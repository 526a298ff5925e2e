"""The generated XSD order tables match the shipped schemas (regenerate with tools/gen_tag_order.py)."""

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tag_order_tables_are_current():
    gen = runpy.run_path(str(ROOT / "tools" / "gen_tag_order.py"))
    assert gen["render"]() == (ROOT / "sync" / "dte" / "tag_order.py").read_text(encoding="utf-8")


def test_every_schema_element_under_documento_has_a_model_field():
    import typing

    from sync.dte.tag_order import ORDER
    from sync.model import Documento, sii_fields

    def classes(cls, path, kind, seen):
        hints = typing.get_type_hints(cls)
        by_tag = {f.metadata["boleta" if kind == "boleta" else "sii"]: f for f in sii_fields(cls)}
        for tag, _mn, _mx in ORDER[kind].get(path, ()):
            assert tag in by_tag, f"{kind}: {path}/{tag} has no field in {cls.__name__}"
            hint = hints[by_tag[tag].name]
            inner = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
            inner = typing.get_args(inner[0]) or inner
            sub = inner[0]
            if isinstance(sub, type) and hasattr(sub, "__dataclass_fields__") and f"{path}/{tag}" in ORDER[kind]:
                classes(sub, f"{path}/{tag}", kind, seen)

    for kind in ("dte", "boleta"):
        classes(Documento, "Documento", kind, set())
