"""The XSD facets of every leaf, as checks the builder runs on the text it is about to write.

sync/dte/facets.py (generated from the shipped XSDs by tools/gen_facets.py) says what the
official schema allows in each element; `check_for(kind, path)` compiles that into one small
function per element, called by `build_documento` for every value in the same walk that
writes it. So everything the XSD would refuse after signing (a 10-digit CdgSIISucur,
IndTraslado 10, QtyItem 0, a 46-character GlosaDR, HraSalida 24:00:00) is refused before a
folio is taken, with a stable code, the field and what was expected:

    FIELD_TOO_LONG / FIELD_TOO_SHORT     maxLength, minLength, length (characters)
    FIELD_NOT_IN_LIST                    enumeration
    FIELD_OUT_OF_RANGE                   min/max inclusive/exclusive
    FIELD_TOO_MANY_DIGITS / _DECIMALS    totalDigits / fractionDigits (as libxml2 counts them:
                                         integer digits without leading zeros plus fraction
                                         digits without trailing zeros; 0.05 has two)
    FIELD_INVALID                        pattern, or text that is not of the base type

The checks are exact for what the engine writes (canonical numbers, ISO dates, HH:MM:SS
times); text of another form (a time with a zone) is refused, a strict subset of the XSD.
tests/test_facets.py compares every verdict with libxml2 on boundary values of every leaf.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from sync.dte.facets import FACETS, Facets
from sync.rut import Rut

# (code, expected, found, params): what a violated facet reports; the builder adds field and path.
Problem = tuple[str, Any, Any, dict[str, Any]]
CheckFn = Callable[[Any, str], "Problem | None"]


class Check:
    """The compiled facets of one element. `quick(value)` accepts the common case with a
    comparison or two (a string within its length, an integer within its range or list, a
    decimal within range and decimals, a date within its bounds); only when it says no does
    `full(value, text)` decide, and say what is wrong."""

    __slots__ = ("full", "quick")

    def __init__(self, full: CheckFn, quick: Callable[[Any], bool]) -> None:
        self.full = full
        self.quick = quick

    def __call__(self, value: Any, text: str) -> Problem | None:
        return self.full(value, text)


_INT_RE = re.compile(r"[+-]?\d+")
_DEC_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_TIME_RE = re.compile(r"(\d{2}):(\d{2}):(\d{2})")
# What a pattern means, for the message (the regular expression itself is no help to an ERP).
_RUT_PATTERN = "^(?:[0-9]+-(?:[0-9]|K))$(?!\\n\\Z)"  # RUTType, as xmlschema translates it
_PATTERN_NAMES = {_RUT_PATTERN: "RUT sin puntos, con guion y dígito verificador (12345678-K)"}

# Optional amounts where 0 means "none" and the XSD forbids a 0 (positiveInteger, or a
# decimal with minInclusive 0.01): a free item (PrcItem 0), a discount that rounds to 0 pesos,
# a tax without rate. The builder leaves them out of the document rather than refusing them
# or writing a 0; the readers do not check a 0 there.
ZERO_MEANS_ABSENT = frozenset({
    "PrcItem", "PrcRef", "DescuentoPct", "DescuentoMonto", "RecargoPct", "RecargoMonto", "TasaImp",
    "IVANoRet", "DctoOtrMnda", "RecargoOtrMnda", "MntFlete", "MntSeguro",
})

_CACHE: dict[tuple[str, str], Check | None] = {}


def check_for(kind: str, path: str) -> Check | None:
    """The compiled check of the leaf at `path` ('Documento/Detalle/QtyItem') in schema `kind`."""
    key = (kind, path)
    if key not in _CACHE:
        facets = FACETS[kind].get(path)
        _CACHE[key] = compile_facets(facets) if facets is not None else None
    return _CACHE[key]


def compile_facets(f: Facets) -> Check:
    if f.base == "string":
        return Check(_string_check(f), _string_quick(f))
    if f.base in ("integer", "decimal"):
        return Check(_number_check(f), _integer_quick(f) if f.base == "integer" else _decimal_quick(f))
    return Check(_temporal_check(f), _temporal_quick(f))


def _never(value: Any) -> bool:
    return False


def _string_quick(f: Facets) -> Callable[[Any], bool]:
    max_len = f.length if f.length is not None else f.max_length
    if f.enumeration is not None:
        listed = frozenset(f.enumeration)
        return listed.__contains__  # the SII's listed values all fit their lengths
    if f.patterns == ((_RUT_PATTERN,),) and (f.min_length or 0) <= 3 and (max_len or 10) >= 10:
        # a Rut is written as digits, '-', check digit: the pattern always holds, and it fits 10
        # characters while its number is under 100 million
        return lambda v: v.__class__ is Rut and v.number < 100_000_000
    if f.patterns or f.length is not None or f.min_length is not None or max_len is None:
        return _never
    return lambda v: v.__class__ is str and len(v) <= max_len


def _integer_quick(f: Facets) -> Callable[[Any], bool]:
    if f.enumeration is not None:
        listed = frozenset(int(v) for v in f.enumeration)
        return lambda v: v.__class__ is int and v in listed
    if f.min_exclusive is not None or f.max_exclusive is not None:
        return _never
    lo = int(f.min_inclusive) if f.min_inclusive is not None else -(10 ** 18)
    hi = int(f.max_inclusive) if f.max_inclusive is not None else 10 ** 18
    if f.total_digits is not None:  # n digits <=> |v| < 10**n
        lo, hi = max(lo, 1 - 10 ** f.total_digits), min(hi, 10 ** f.total_digits - 1)
    return lambda v: v.__class__ is int and lo <= v <= hi


def _decimal_quick(f: Facets) -> Callable[[Any], bool]:
    if (f.enumeration is not None or f.min_exclusive is not None or f.max_exclusive is not None
            or f.total_digits is None or f.fraction_digits is None):
        return _never
    lo = Decimal(f.min_inclusive) if f.min_inclusive is not None else Decimal(-(10 ** 18))
    hi = Decimal(f.max_inclusive) if f.max_inclusive is not None else Decimal(10 ** 18)
    whole = Decimal(10) ** (f.total_digits - f.fraction_digits)
    lo, hi = max(lo, -whole), min(hi, whole)
    places = -f.fraction_digits
    # strictly within range (a bound itself goes to `full`), under 10**(totalDigits -
    # fractionDigits), with few enough decimals (the exponent counts trailing zeros too: such a
    # value goes to `full`, which does not count them)
    return lambda v: (v.__class__ is Decimal and lo < v < hi
                      and v.as_tuple().exponent >= places)  # type: ignore[operator]  # finite: an int


def _temporal_quick(f: Facets) -> Callable[[Any], bool]:
    model_type, parse, _kind = _TEMPORAL[f.base]
    lo = parse(f.min_inclusive) if f.min_inclusive is not None else None
    hi = parse(f.max_inclusive) if f.max_inclusive is not None else None
    return lambda v: v.__class__ is model_type and (lo is None or lo <= v) and (hi is None or v <= hi)


# --- strings ------------------------------------------------------------------------------------

def _string_check(f: Facets) -> CheckFn:
    max_len = f.length if f.length is not None else f.max_length
    min_len = f.length if f.length is not None else f.min_length
    enum = frozenset(f.enumeration) if f.enumeration is not None else None
    listed = ", ".join(f.enumeration or ())
    groups = tuple(tuple(re.compile(p) for p in group) for group in f.patterns)
    described = tuple(" o ".join(_PATTERN_NAMES.get(p, f"el patrón {p}") for p in group) for group in f.patterns)

    def check(value: Any, text: str) -> Problem | None:
        n = len(text)
        if max_len is not None and n > max_len:
            return "FIELD_TOO_LONG", max_len, n, {}
        if min_len is not None and n < min_len:
            return "FIELD_TOO_SHORT", min_len, n, {}
        if enum is not None and text not in enum:
            return "FIELD_NOT_IN_LIST", listed, text, {}
        for group, name in zip(groups, described, strict=True):
            if not any(p.match(text) for p in group):
                return "FIELD_INVALID", name, text, {}
        return None

    return check


# --- numbers ------------------------------------------------------------------------------------

def _digits(text: str) -> tuple[int, int]:
    """(total, fraction) digits of a decimal's text, as XSD totalDigits/fractionDigits count
    (any lexical form: sign, leading and trailing zeros are not digits that count)."""
    whole, _, frac = text.lstrip("+-").partition(".")
    frac = frac.rstrip("0")
    return len(whole.lstrip("0")) + len(frac), len(frac)


def _number_check(f: Facets) -> CheckFn:
    integer = f.base == "integer"
    lexical = _INT_RE if integer else _DEC_RE
    parse: Callable[[str], int | Decimal] = int if integer else Decimal
    lo = parse(f.min_inclusive) if f.min_inclusive is not None else None
    hi = parse(f.max_inclusive) if f.max_inclusive is not None else None
    lo_x = parse(f.min_exclusive) if f.min_exclusive is not None else None
    hi_x = parse(f.max_exclusive) if f.max_exclusive is not None else None
    enum = frozenset(parse(v) for v in f.enumeration) if f.enumeration is not None else None
    listed = ", ".join(f.enumeration or ())
    total_max, frac_max = f.total_digits, f.fraction_digits
    # |v| < 10**(totalDigits - fractionDigits) with fractionDigits respected has few enough digits
    whole_max = 10 ** (total_max - (frac_max or 0)) if total_max is not None else 0
    expected = _range_text(f)
    kind = "entero" if integer else "número con punto decimal"
    native: type = int if integer else Decimal

    def check(value: Any, text: str) -> Problem | None:
        number: int | Decimal
        if value.__class__ is native:  # the model's own type: no need to read the text again
            number = value  # type: ignore[assignment]  # narrowed by the class test
        elif lexical.fullmatch(text):
            try:
                number = parse(text)
            except InvalidOperation:  # pragma: no cover - the regex admits only decimal text
                return "FIELD_INVALID", kind, text, {}
        elif enum is not None:
            return "FIELD_NOT_IN_LIST", listed, text, {}
        else:
            return "FIELD_INVALID", kind, text, {}
        if enum is not None and number not in enum:
            return "FIELD_NOT_IN_LIST", listed, text, {}
        if (lo is not None and number < lo) or (hi is not None and number > hi) or (
                lo_x is not None and number <= lo_x) or (hi_x is not None and number >= hi_x):
            return "FIELD_OUT_OF_RANGE", expected, text, {}
        if (total_max is not None or frac_max is not None) and (
                "." in text or (total_max is not None and not -whole_max < number < whole_max)):
            # A whole number under 10**(totalDigits - fractionDigits) has few enough digits; only
            # numbers with a fraction or near the limit have theirs counted.
            total, frac = _digits(text)
            if frac_max is not None and frac > frac_max:
                return "FIELD_TOO_MANY_DECIMALS", frac_max, text, {"digits": frac}
            if total_max is not None and total > total_max:
                return "FIELD_TOO_MANY_DIGITS", total_max, text, {"digits": total}
        return None

    return check


def _range_text(f: Facets) -> str | None:
    lo = f.min_inclusive if f.min_inclusive is not None else f.min_exclusive
    hi = f.max_inclusive if f.max_inclusive is not None else f.max_exclusive
    lo_op = ">=" if f.min_inclusive is not None else ">"
    hi_op = "<=" if f.max_inclusive is not None else "<"
    if lo is not None and hi is not None and lo_op == ">=" and hi_op == "<=":
        return f"{lo}..{hi}"
    if lo is not None and hi is not None:
        return f"{lo_op} {lo} y {hi_op} {hi}"
    if lo is not None:
        return f"{lo_op} {lo}"
    return f"{hi_op} {hi}" if hi is not None else None


# --- dates and times ------------------------------------------------------------------------------

def _parse_time(text: str) -> time | None:
    m = _TIME_RE.fullmatch(text)
    if m is None:
        return None
    try:
        return time(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def _parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def _parse_datetime(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if len(text) == 19 and text[10] == "T" else None
    except ValueError:
        return None


_TEMPORAL: dict[str, tuple[type, Callable[[str], Any], str]] = {
    "date": (date, _parse_date, "fecha AAAA-MM-DD"),
    "dateTime": (datetime, _parse_datetime, "fecha y hora AAAA-MM-DDTHH:MM:SS"),
    "time": (time, _parse_time, "hora HH:MM:SS"),
}


def _temporal_check(f: Facets) -> CheckFn:
    model_type, parse, kind = _TEMPORAL[f.base]
    lo = parse(f.min_inclusive) if f.min_inclusive is not None else None
    hi = parse(f.max_inclusive) if f.max_inclusive is not None else None
    if f.min_exclusive is not None or f.max_exclusive is not None or f.enumeration is not None:
        raise ValueError(f"facets of a {f.base} not supported here: {f}")  # none in the SII XSDs
    expected = _range_text(f)

    def check(value: Any, text: str) -> Problem | None:
        # a date is also a datetime's base class: take the value as it is only when its type is exact
        parsed = value if type(value) is model_type else parse(text)
        if parsed is None:
            return "FIELD_INVALID", kind, text, {}
        if (lo is not None and parsed < lo) or (hi is not None and parsed > hi):
            return "FIELD_OUT_OF_RANGE", expected, text, {}
        return None

    return check
