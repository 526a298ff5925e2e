"""RUT (Rol Único Tributario): parsing, check digit (módulo 11) and canonical formatting.

The canonical form is the SII's: digits without thousands separators, a hyphen, and the
check digit upper-cased (`76192083-9`, `60803000-K`). Inputs may come with dots, spaces or a
lower-case `k`; anything else is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RUT_RE = re.compile(r"^\s*(\d{1,3}(?:\.?\d{3})*)\s*-?\s*([0-9kK])\s*$")


def check_digit(number: int) -> str:
    """Módulo 11 with weights 2..7 cycling from the right; 11 -> '0', 10 -> 'K'."""
    total, weight = 0, 2
    while number:
        total += (number % 10) * weight
        number //= 10
        weight = 2 if weight == 7 else weight + 1
    dv = 11 - total % 11
    return "0" if dv == 11 else "K" if dv == 10 else str(dv)


class RutError(ValueError):
    """A RUT that cannot be parsed or whose check digit is wrong (`reason` says which)."""

    def __init__(self, text: str, reason: str):
        super().__init__(f"{text!r}: {reason}")
        self.text = text
        self.reason = reason


@dataclass(frozen=True, order=True)
class Rut:
    number: int
    dv: str

    @classmethod
    def parse(cls, text: str) -> Rut:
        match = _RUT_RE.match(str(text))
        if not match:
            raise RutError(str(text), "formato esperado 12345678-5")
        number = int(match.group(1).replace(".", ""))
        if number <= 0:
            raise RutError(str(text), "número de RUT en cero")
        dv = match.group(2).upper()
        expected = check_digit(number)
        if dv != expected:
            raise RutError(str(text), f"dígito verificador {dv}, debería ser {expected}")
        return cls(number, dv)

    @classmethod
    def of(cls, number: int) -> Rut:
        return cls(number, check_digit(number))

    def __str__(self) -> str:
        return f"{self.number}-{self.dv}"

    def dotted(self) -> str:
        """Printed form, `76.192.083-9`."""
        return f"{self.number:,}".replace(",", ".") + f"-{self.dv}"


# The SII itself: the receptor of every EnvioDTE.
SII_RUT = Rut(60803000, "K")
