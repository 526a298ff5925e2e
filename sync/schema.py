"""Validation against the SII's official XSDs (shipped in sync/schemas/sii, 2026 set).

lxml (libxml2) compiles each schema once per process and validates an envelope in well
under a millisecond, so it is the validator on the hot path; xmlschema (pure Python) is
only used by tools. Boletas (39, 41) exist only inside EnvioBOLETA_v11.xsd (DTE_v10.xsd's
TipoDTE excludes them), so a standalone boleta is validated wrapped in its envelope.
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path

from lxml import etree

from sync.errors import DteSyncError
from sync.sii import TipoDte, is_boleta

SCHEMA_FILES = {
    "DTE": "sii/DTE_v10.xsd",
    "EnvioDTE": "sii/EnvioDTE_v10.xsd",
    "EnvioBOLETA": "sii/EnvioBOLETA_v11.xsd",
    "BoletaDTE": "dtesync/BoletaDTE.xsd",  # a standalone DTE of type 39/41
}

_lock = threading.Lock()
_cache: dict[str, etree.XMLSchema] = {}


def schema_dir() -> Path:
    return Path(str(resources.files("sync") / "schemas"))


def get_schema(root_name: str) -> etree.XMLSchema:
    """The compiled schema for a root element name (DTE, EnvioDTE, EnvioBOLETA)."""
    with _lock:
        schema = _cache.get(root_name)
        if schema is None:
            parser = etree.XMLParser(no_network=True, resolve_entities=False)
            doc = etree.parse(str(schema_dir() / SCHEMA_FILES[root_name]), parser)
            schema = _cache[root_name] = etree.XMLSchema(doc)
        return schema


def warm_up() -> None:
    """Compile the schemas every document is validated against (DTE, BoletaDTE)."""
    for name in ("DTE", "BoletaDTE"):
        get_schema(name)


def schema_errors(root: etree._Element) -> list[str]:
    """Human-readable violations of the official schema for this root ([] if valid)."""
    name = etree.QName(root).localname
    if name == "DTE" and is_boleta(TipoDte.of(_tipo_dte(root))):
        name = "BoletaDTE"
    if name not in SCHEMA_FILES:
        return [f"raíz <{name}> no es DTE, EnvioDTE ni EnvioBOLETA"]
    schema = get_schema(name)
    if schema.validate(root):
        return []
    return [f"línea {e.line}: {e.message}" for e in schema.error_log]


def validate(root: etree._Element) -> None:
    """Raise SCHEMA_INVALID naming the first violations; the document must not leave."""
    errors = schema_errors(root)
    if errors:
        raise DteSyncError("SCHEMA_INVALID", params={"detail": "; ".join(errors[:5])})


def _tipo_dte(dte: etree._Element) -> str | None:
    for el in dte.iter("{*}TipoDTE"):
        return (el.text or "").strip()
    return None
