"""The PDF417 timbre: the whole TED, byte compaction, error-correction level 5 (SII A.2.5).

pdf417gen's `encode()` picks text/numeric/byte compaction per run of characters and has no
switch to force byte mode, which the SII requires. Its lower layers are sound and public
(byte compaction, the error-correction factors, the row/cluster tables), so we assemble the
high-level code words ourselves, byte mode only, and let pdf417gen do the rest. The
error-correction words are computed here too, ~10x faster than pdf417gen's loop (it is the
costly part of a raster ticket): the code is linear in the data, so each data word adds its
precomputed impulse response, all 64 words packed in one Python integer.

Geometry (ISO 15438): a symbol of `c` data columns is (17·c + 69) modules wide; each row is
one code word high, printed 3 modules tall (the SII's 3:1 row height); 3 <= rows <= 90 and
at most 928 code words. The X dimension must be at least 6.7 mil (0.170 mm): at 203 dpi that
is 2 dots (0.25 mm), at 600 dpi 5 dots (0.212 mm).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

# pdf417gen is imported where it is used: its package imports PIL, and a daemon that prints no
# ticket never needs either (2.6 MB). A station's printer loads them at start (escpos.warm_up).

SECURITY_LEVEL = 5  # SII: "se debe utilizar nivel 5"
EC_WORDS = 1 << (SECURITY_LEVEL + 1)  # 64 error-correction code words at level 5
ROW_RATIO = 3  # row height : X
BYTE_LATCH, BYTE_LATCH_6 = 901, 924  # 924 when the byte count is a multiple of 6
MAX_ROWS, MIN_ROWS, MAX_CODE_WORDS = 90, 3, 928
MIN_X_MM = 6.7 * 0.0254  # 0.170 mm
QUIET_MM = 6.35  # 0.25 in on every side


class Pdf417Error(ValueError):
    """The payload does not fit a legal symbol with the space given."""


def data_code_words(payload: bytes) -> list[int]:
    """Latch + byte compaction of the whole payload: no text or numeric sub-modes."""
    from pdf417gen.compaction.byte import compact_bytes

    latch = BYTE_LATCH_6 if len(payload) % 6 == 0 else BYTE_LATCH
    return [latch, *compact_bytes(payload)]


_FIELD = 32  # bits per packed error-correction word: 928 x 928 x 928 < 2**30 never overflows one


@lru_cache(maxsize=1)
def _impulses() -> tuple[int, ...]:
    """Packed state of the level-5 encoder (ISO 15438 annex, as pdf417gen runs it) after a data
    word of 1 followed by k zeros, for k = 0..927."""
    from pdf417gen.data import ERROR_CORRECTION_FACTORS

    factors = ERROR_CORRECTION_FACTORS[SECURITY_LEVEL]
    n = len(factors)
    state, out, word = [0] * n, [], 1
    for _ in range(MAX_CODE_WORDS):
        temp = (word + state[-1]) % 929
        state = [((state[x - 1] if x else 0) - temp * factors[x]) % 929 for x in range(n)]
        out.append(sum(v << (_FIELD * x) for x, v in enumerate(state)))
        word = 0
    return tuple(out)


def error_correction(words: list[int]) -> list[int]:
    """The 64 level-5 error-correction code words of `words` (length descriptor first)."""
    impulses, last = _impulses(), len(words) - 1
    acc = 0
    for i, word in enumerate(words):
        if word:
            acc += word * impulses[last - i]
    mask = (1 << _FIELD) - 1
    state = [((acc >> (_FIELD * x)) & mask) % 929 for x in range(EC_WORDS)]
    return [(929 - v) % 929 for v in reversed(state)]


def code_word_count(payload: bytes) -> int:
    """Length descriptor + data + error correction, before padding to a full row: byte
    compaction packs 6 bytes in 5 code words, the remainder one word per byte, after a latch."""
    n = len(payload)
    return 1 + 1 + (n // 6) * 5 + n % 6 + EC_WORDS


@dataclass(frozen=True)
class Symbol:
    """An encoded PDF417 symbol: low-level code words per row (start..stop patterns)."""

    columns: int
    rows: list[list[int]]
    high_level: list[int]  # length descriptor, data, padding, error correction

    @property
    def width_modules(self) -> int:
        """17 modules per code word of a row (start, row indicators, data, stop) plus the stop
        pattern's final bar (pdf417gen.rendering.barcode_size, without importing PIL)."""
        return len(self.rows[0]) * 17 + 1

    @property
    def row_count(self) -> int:
        return len(self.rows)


@lru_cache(maxsize=32)
def encode(payload: bytes, columns: int) -> Symbol:
    """Encode `payload` (the flattened TED, ISO-8859-1 bytes) in `columns` data columns.

    Cached: the ticket, the PDF and its CEDIBLE copy of one document share one encoding (the
    level-5 error correction is the costly part, ~20 ms in pure Python). Symbols are read-only.
    """
    from pdf417gen.encoding import PADDING_CODE_WORD, encode_rows
    from pdf417gen.util import chunks

    if not 1 <= columns <= 30:
        raise Pdf417Error(f"columns must be 1..30, got {columns}")
    data = data_code_words(payload)
    ec_count = 2 ** (SECURITY_LEVEL + 1)
    used = 1 + len(data) + ec_count
    rows = max(MIN_ROWS, math.ceil(used / columns))
    if rows > MAX_ROWS or rows * columns > MAX_CODE_WORDS:
        raise Pdf417Error(f"{len(payload)} bytes need {used} code words: too many for {columns} columns")
    padding = [PADDING_CODE_WORD] * (rows * columns - used)
    words = [1 + len(data) + len(padding), *data, *padding]
    words += error_correction(words)
    return Symbol(columns, list(encode_rows(list(chunks(words, columns)), columns, SECURITY_LEVEL)), words)


def columns_for_width(payload: bytes, width_modules: int) -> int | None:
    """The most data columns whose symbol fits `width_modules` (fewest rows); None if none fits."""
    cols = min(30, (width_modules - 69) // 17)
    if cols < 1:
        return None
    rows = max(MIN_ROWS, math.ceil(code_word_count(payload) / cols))
    return cols if rows <= MAX_ROWS and rows * cols <= MAX_CODE_WORDS else None


def columns_for_height(payload: bytes, height_modules: int) -> int | None:
    """For a symbol printed rotated 90°: the fewest columns whose rows (3 modules each) fit
    `height_modules` across the paper; None if none fits."""
    need = code_word_count(payload)
    max_rows = min(MAX_ROWS, height_modules // ROW_RATIO)
    if max_rows < MIN_ROWS:
        return None
    cols = max(1, math.ceil(need / max_rows))
    return cols if cols <= 30 and math.ceil(need / cols) * cols <= MAX_CODE_WORDS else None


def _row_bits(row: Sequence[int], width: int) -> bytes:
    """One row of modules as a 1-bit image row (bar = 0, space = 1, padded to whole bytes):
    each code word's bar/space pattern is its binary form, which always starts with a bar (the
    layout pdf417gen's own renderer reads too, one module at a time; this is one int per row)."""
    bits = "".join(format(value, "b") for value in row)
    if len(bits) != width:
        raise ValueError(f"a PDF417 row of {len(bits)} modules, expected {width}")
    pad = -width % 8
    return ((int(bits, 2) ^ ((1 << width) - 1)) << pad | ((1 << pad) - 1)).to_bytes((width + pad) // 8, "big")


def render(symbol: Symbol, x_px: int, *, quiet_px: int = 0, rotate: bool = False) -> Image.Image:
    """A 1-bit image (black = 0): each module `x_px` wide, each row `3·x_px` tall, with a
    white border of `quiet_px`; rotated 90° counter-clockwise when `rotate`."""
    from PIL import Image

    w, h = symbol.width_modules, symbol.row_count
    img = Image.frombytes("1", (w, h), b"".join(_row_bits(row, w) for row in symbol.rows))
    img = img.resize((w * x_px, h * x_px * ROW_RATIO), Image.Resampling.NEAREST)
    if quiet_px:
        framed = Image.new("1", (img.width + 2 * quiet_px, img.height + 2 * quiet_px), 1)
        framed.paste(img, (quiet_px, quiet_px))
        img = framed
    return img.transpose(Image.Transpose.ROTATE_90) if rotate else img


@dataclass(frozen=True)
class Plan:
    """How a timbre is laid out: its column count and whether its rows run across the paper.
    The symbol is encoded only when someone draws it (a printer with GS ( k never needs it)."""

    payload: bytes
    columns: int
    rotated: bool

    @property
    def rows(self) -> int:
        return max(MIN_ROWS, math.ceil(code_word_count(self.payload) / self.columns))

    @property
    def symbol(self) -> Symbol:
        return encode(self.payload, self.columns)

    def size_modules(self) -> tuple[int, int]:
        """(across, along) the paper, in modules, without quiet zones."""
        w, h = 17 * self.columns + 69, self.rows * ROW_RATIO
        return (h, w) if self.rotated else (w, h)


def plan_in_box(payload: bytes, across: int, *, short_max: int | None = None, long_max: int | None = None,
                upright_first: bool = True) -> Plan:
    """The symbol for a space `across` modules wide (and as long as it needs), optionally
    within `short_max` x `long_max` modules in either orientation (a factura's 4 x 9 cm).
    Upright when it fits (rows run along the paper), else rotated 90°; among the shapes that
    fit, the shortest along the paper."""
    need = code_word_count(payload)
    best: tuple[tuple[int, int], int, bool] | None = None
    for cols in range(1, 31):
        rows = max(MIN_ROWS, math.ceil(need / cols))
        if rows > MAX_ROWS or rows * cols > MAX_CODE_WORDS:
            continue
        w, h = 17 * cols + 69, rows * ROW_RATIO
        for rotated in (False, True):
            a, b = (h, w) if rotated else (w, h)  # (across, along)
            if a > across:
                continue
            if short_max is not None and min(a, b) > short_max:
                continue
            if long_max is not None and max(a, b) > long_max:
                continue
            rank = (int(rotated) if upright_first else 0, b)
            if best is None or rank < best[0]:
                best = (rank, cols, rotated)
    if best is None:
        box = f"{across} modules across" + (f", {short_max} x {long_max}" if short_max else "")
        raise Pdf417Error(f"{len(payload)} bytes ({need} code words) do not fit {box}")
    return Plan(payload, best[1], best[2])


def plan_for_roll(payload: bytes, across_modules: int) -> Plan:
    """A boleta on a roll (ticket or roll PDF): upright with the most columns that fit across;
    rotated 90° when even that would need more than 90 rows (58 mm paper at X = 0.25 mm)."""
    cols = columns_for_width(payload, across_modules)
    if cols is not None:
        return Plan(payload, cols, False)
    cols = columns_for_height(payload, across_modules)
    if cols is not None:
        return Plan(payload, cols, True)
    raise Pdf417Error(f"{len(payload)} bytes do not fit {across_modules} modules across")


def plan_for_sheet(payload: bytes, x_mm: float, *, max_w_mm: float = 90.0, max_h_mm: float = 40.0) -> Plan:
    """A sheet (letter/A4): the fewest columns whose symbol is at most 4 x 9 cm (Manual de
    Muestras Impresas §1.5); the minimum 2 x 5 cm holds for any TED at X >= 0.2 mm."""
    need = code_word_count(payload)
    for cols in range(3, 31):
        rows = max(MIN_ROWS, math.ceil(need / cols))
        if rows > MAX_ROWS or rows * cols > MAX_CODE_WORDS:
            continue
        if (17 * cols + 69) * x_mm > max_w_mm:
            break
        if rows * ROW_RATIO * x_mm <= max_h_mm:
            return Plan(payload, cols, False)
    raise Pdf417Error(f"{len(payload)} bytes do not fit {max_w_mm} x {max_h_mm} mm at X = {x_mm} mm")
