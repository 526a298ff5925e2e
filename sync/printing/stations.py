"""Printing stations from the config, and which one a document goes to.

Routing, first match wins: the value of `[printing] route_field` in the signed DTE (e.g.
"Referencia/CodCaja" = "caja2"), then the inbox sub-folder the file came from
(`inbox/caja1/...`), then `[printing] default_station` (or the only station, when there is
just one). No station: the document gets its PDF and no ticket.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from sync.config import PrintingConfig, PrintStation
from sync.errors import DteSyncError
from sync.printing.profiles import Profile, load_profile


@dataclass(frozen=True)
class Station:
    config: PrintStation
    profile: Profile

    @property
    def name(self) -> str:
        return self.config.name


class Stations:
    def __init__(self, printing: PrintingConfig) -> None:
        self.printing = printing
        self.by_name = {s.name: Station(s, load_profile(s.profile, printing.profiles)) for s in printing.stations}
        self._folded = {name.casefold(): st for name, st in self.by_name.items()}

    def __iter__(self) -> Iterator[Station]:
        return iter(self.by_name.values())

    def get(self, name: str) -> Station:
        try:
            return self.by_name[name]
        except KeyError:
            raise DteSyncError("PRINT_STATION_UNKNOWN", found=name,
                               params={"detail": ", ".join(self.by_name) or "ninguna"}) from None

    def default(self) -> Station | None:
        if self.printing.default_station:
            return self.by_name[self.printing.default_station]
        return next(iter(self.by_name.values())) if len(self.by_name) == 1 else None

    def route(self, *, folder: str | None = None, xml: etree._Element | None = None) -> Station | None:
        if self.printing.route_field and xml is not None:
            value = field_value(xml, self.printing.route_field)
            match = value and self._folded.get(value.casefold())
            if match:
                return match
        if folder:
            top = folder.replace("\\", "/").split("/")[0]
            if top in self.by_name:
                return self.by_name[top]
        return self.default()


def field_value(xml: etree._Element, path: str) -> str | None:
    """The text of the first element at `path` (SII tag names separated by '/', namespace-free)."""
    steps = [s for s in path.strip("/").split("/") if s]
    if not steps or not all(s.isidentifier() for s in steps):
        return None
    if steps and steps[0] in ("DTE", "Documento"):
        steps = steps[1:] if steps[0] == "Documento" or len(steps) < 2 or steps[1] != "Documento" else steps[2:]
    expr = ".//*[local-name()='Documento']" + "".join(f"/*[local-name()='{s}']" for s in steps)
    if etree.QName(xml).localname == "Documento":
        expr = "." + "".join(f"/*[local-name()='{s}']" for s in steps)
    found = xml.xpath(expr)
    if not found:
        return None
    text = (found[0].text or "").strip()
    return text or None
