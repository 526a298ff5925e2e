"""The receptors' exchange addresses: the SII's public list of authorised electronic issuers,
imported with `dtesync receptors import FILE`, and `[delivery.receptors]` overriding it by RUT.

The list (downloaded from the SII's site by a person with the company's certificate) is
plain text in ISO-8859-1, one issuer per line, fields separated by ';' without quotes:

    RUT;RAZON SOCIAL;NUMERO RESOLUCION;FECHA RESOLUCION;MAIL INTERCAMBIO;URL

An import replaces the previous list as a whole. Lines whose RUT is not a RUT (the header, a
blank line) are skipped; a line with a RUT but an unusable address is kept without address
and counted, so `dtesync receptors show` can say why a receptor gets `no_address`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sync.delivery.settings import valid_address
from sync.delivery.store import DeliveryStore, Receptor
from sync.errors import DteSyncError
from sync.rut import Rut, RutError

COLUMNS = ("RUT", "RAZON SOCIAL", "NUMERO RESOLUCION", "FECHA RESOLUCION", "MAIL INTERCAMBIO", "URL")
MAX_LIST_BYTES = 512 * 1024 * 1024  # the real list is tens of MB


@dataclass
class ImportResult:
    imported: int = 0
    without_address: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, why)


Row = tuple[str, str | None, str | None, str | None, str | None, str | None]


def parse_list(lines: Iterator[str], result: ImportResult) -> Iterator[Row]:
    """(rut, razón social, resolución, fecha, address or None, url) per usable line."""
    seen: set[str] = set()
    for n, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(";")]
        if n == 1 and cells[0].upper().lstrip("\ufeff") == "RUT":
            continue  # the header
        try:
            rut = str(Rut.parse(cells[0]))
        except RutError as exc:
            result.skipped.append((n, f"RUT inválido {cells[0][:20]!r}: {exc.reason}"))
            continue
        cells += [""] * (len(COLUMNS) - len(cells))
        mail: str | None = cells[4]
        if not valid_address(mail):
            result.without_address += 1
            mail = None
        if rut in seen:
            result.skipped.append((n, f"RUT {rut} repetido (vale la última línea)"))
        seen.add(rut)
        result.imported = len(seen)
        yield rut, cells[1] or None, cells[2] or None, cells[3] or None, mail, cells[5] or None


def import_list(store: DeliveryStore, path: Path) -> ImportResult:
    """Replace the stored list with the file's; the file is read as ISO-8859-1 (every byte is a
    character there, so no line is ever lost to a decoding error)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DteSyncError("RECEPTORS_LIST_INVALID", found=str(path), params={"detail": exc.strerror or str(exc)}) from None
    if size > MAX_LIST_BYTES:
        raise DteSyncError("RECEPTORS_LIST_INVALID", found=str(path), params={"detail": f"{size} bytes"})
    result = ImportResult()
    with open(path, encoding="latin-1", newline="") as fh:
        store.replace_receptors(parse_list(iter(fh), result))
    if result.imported == 0:
        raise DteSyncError("RECEPTORS_LIST_INVALID", found=str(path),
                           params={"detail": "ninguna línea con RUT; se esperaba " + ";".join(COLUMNS)})
    return result


@dataclass(frozen=True)
class Resolved:
    """Where a receptor's DTEs go, and why."""

    rut: str
    address: str | None
    source: str  # config | sii_list | none
    listed: Receptor | None = None


class Directory:
    """Address lookup: `[delivery.receptors]` first, then the imported SII list."""

    def __init__(self, store: DeliveryStore, overrides: Mapping[str, str]) -> None:
        self.store, self.overrides = store, dict(overrides)

    def resolve(self, rut: str) -> Resolved:
        try:
            rut = str(Rut.parse(rut))
        except RutError:
            return Resolved(rut, None, "none")
        listed = self.store.receptor(rut)
        if rut in self.overrides:
            return Resolved(rut, self.overrides[rut], "config", listed)
        if listed is not None and listed.mail:
            return Resolved(rut, listed.mail, "sii_list", listed)
        return Resolved(rut, None, "none", listed)
