"""A small ESC/POS decoder for the subset dtesync emits (tests only, no hardware).

It walks the byte stream command by command and knows each command's length, so a wrong
parameter count or a stray byte shows up as an error instead of silently as text. It
collects: text (decoded with the code page selected by ESC t n, through a table given by
the test), GS v 0 raster images (fragments stacked into one image), GS ( k PDF417 settings and
stored data, cuts, cash-drawer pulses and the real-time/status commands.

It also lays the ticket out on paper, the way a printer would (`Decoded.copies`): every
non-blank character cell as a black block (more ink than the glyph: a conservative picture
for clearance checks), raster images dot for dot, a native PDF417 as the black rectangle
ISO 15438 gives its size, and blank feeds. Each copy (from ESC @ to the next) becomes one
image as wide as the paper, so distances can be measured in mm from the paper's edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

# ESC commands and their parameter byte counts.
_ESC = {b"@": 0, b"t": 1, b"p": 3, b"!": 1, b"E": 1, b"a": 1, b"-": 1, b"M": 1, b"d": 1, b"G": 1, b"{": 1,
        b"J": 1, b"2": 0, b"3": 1, b"V": 1, b"r": 1, b"c": 2}
_GS = {b"!": 1, b"B": 1, b"b": 1, b"L": 2, b"W": 2, b"H": 1, b"f": 1, b"h": 1, b"w": 1, b"r": 1}
_FS = {b".": 0, b"&": 0}


class DecodeError(ValueError):
    pass


@dataclass
class Pdf417Native:
    columns: int | None = None
    rows: int | None = None
    module: int | None = None
    row_height: int | None = None
    ecl: int | None = None
    truncated: int | None = None
    data: bytes | None = None
    printed: bool = False

    def size_dots(self) -> tuple[int, int]:
        """(width, height) the printer draws: ISO 15438, byte compaction of `data`."""
        assert self.columns and self.module and self.row_height and self.ecl is not None and self.data is not None
        n = len(self.data)
        words = 1 + 1 + (n // 6) * 5 + n % 6 + 2 ** (self.ecl + 1)
        rows = max(3, math.ceil(words / self.columns))
        return (17 * self.columns + 69) * self.module, rows * self.row_height * self.module


@dataclass
class _Line:
    text: str = ""
    align: int = 0
    double_h: bool = False
    double_w: bool = False
    bold: bool = False


@dataclass
class Decoded:
    text: str = ""
    code_pages: list[int] = field(default_factory=list)
    rasters: list[Image.Image] = field(default_factory=list)
    pdf417: list[Pdf417Native] = field(default_factory=list)
    cuts: list[bytes] = field(default_factory=list)
    drawer: list[int] = field(default_factory=list)
    starts: list[bytes] = field(default_factory=list)  # what each copy pinned after ESC @
    status_queries: list[int] = field(default_factory=list)  # DLE EOT n
    acks: int = 0  # GS r 1
    copies: list[Image.Image] = field(default_factory=list)  # the paper, one image per copy
    lines: list[list[tuple[int, int, str, bool]]] = field(default_factory=list)  # per copy: (y, height, text, bold)
    symbols: list[list[tuple[int, int, int, int]]] = field(default_factory=list)  # per copy: native PDF417 boxes
    edge: int = 0  # blank dots on each side of the print area in `copies`


class _Paper:
    """Lays out one copy: a list of drawing operations at vertical positions, in dots."""

    def __init__(self, width: int, dpi: int, char: tuple[int, int]) -> None:
        self.width, self.dpi, self.char = width, dpi, char
        self.y = 0
        self.spacing = round(dpi / 6)  # ESC 2: 1/6 inch
        self.ops: list[tuple[str, int, object]] = []
        self.lines: list[tuple[int, int, str, bool]] = []
        self.symbols: list[tuple[int, int, int, int]] = []

    def text_line(self, line: _Line) -> None:
        cw, ch = self.char[0] * (2 if line.double_w else 1), self.char[1] * (2 if line.double_h else 1)
        width = len(line.text) * cw
        x0 = {0: 0, 1: (self.width - width) // 2, 2: self.width - width}[line.align]
        cells = [(x0 + i * cw, cw, ch) for i, c in enumerate(line.text) if not c.isspace()]
        self.ops.append(("cells", self.y, cells))
        self.lines.append((self.y, ch, line.text, line.bold))
        self.y += max(self.spacing, ch)

    def image(self, img: Image.Image) -> None:
        self.ops.append(("image", self.y, img))
        self.y += img.height

    def block(self, w: int, h: int, align: int) -> None:
        x0 = {0: 0, 1: (self.width - w) // 2, 2: self.width - w}[align]
        self.ops.append(("block", self.y, (x0, w, h)))
        self.symbols.append((x0, self.y, w, h))
        self.y += h

    def feed(self, dots: int) -> None:
        self.y += dots

    def render(self, edge: int) -> Image.Image:
        img = Image.new("1", (self.width + 2 * edge, max(1, self.y)), 1)
        draw = ImageDraw.Draw(img)
        for kind, y, what in self.ops:
            if kind == "cells":
                for x, w, h in what:  # type: ignore[attr-defined]
                    draw.rectangle((edge + x, y, edge + x + w - 1, y + h - 1), fill=0)
            elif kind == "image":
                img.paste(what, (edge, y))  # type: ignore[arg-type]
            else:
                x, w, h = what  # type: ignore[misc]
                draw.rectangle((edge + x, y, edge + x + w - 1, y + h - 1), fill=0)
        return img


def decode(data: bytes, code_pages: dict[int, str], *, width: int = 576, dpi: int = 203, edge: int = 0,
           char: tuple[int, int] = (12, 24)) -> Decoded:
    """`width` dots of print area at `dpi`, `edge` dots of blank paper on each side."""
    out = Decoded(edge=edge)
    i, n = 0, len(data)
    codec = "ascii"
    text = bytearray()
    fragments: list[Image.Image] = []
    current = Pdf417Native()
    linebuf = bytearray()
    paper: _Paper | None = None
    align = 0
    dh = dw = bold = False

    def flush_text() -> None:
        nonlocal text
        if text:
            out.text += text.decode(codec)
            text = bytearray()

    def flush_raster() -> None:
        if fragments:
            w = max(f.width for f in fragments)
            img = Image.new("1", (w, sum(f.height for f in fragments)), 1)
            y = 0
            for f in fragments:
                img.paste(f, (0, y))
                y += f.height
            out.rasters.append(img)
            if paper is not None:
                paper.image(img)
            fragments.clear()

    def end_copy() -> None:
        if paper is not None:
            out.copies.append(paper.render(edge))
            out.lines.append(paper.lines)
            out.symbols.append([(x + edge, y, w, h) for x, y, w, h in paper.symbols])

    while i < n:
        b = data[i : i + 1]
        if b == b"\x1b":
            cmd = data[i + 1 : i + 2]
            if cmd not in _ESC:
                raise DecodeError(f"unknown ESC {cmd!r} at {i}")
            params = data[i + 2 : i + 2 + _ESC[cmd]]
            flush_raster()
            if cmd == b"@":
                flush_text()
                end_copy()
                paper = _Paper(width, dpi, char)
                align, dh, dw, bold = 0, False, False, False
                out.starts.append(data[i + 2 : i + 9])
            elif cmd == b"t":
                flush_text()
                if params[0] not in code_pages:
                    raise DecodeError(f"code page {params[0]} not in the table")
                codec = code_pages[params[0]]
                out.code_pages.append(params[0])
            elif cmd == b"p":
                out.drawer.append(params[0])
            elif cmd == b"a":
                align = params[0] % 48
            elif cmd == b"!":
                dh, dw, bold = bool(params[0] & 0x10), bool(params[0] & 0x20), bool(params[0] & 0x08)
            elif cmd == b"E":
                bold = bool(params[0] & 1)
            elif cmd == b"2" and paper is not None:
                paper.spacing = round(dpi / 6)
            elif cmd == b"3" and paper is not None:
                paper.spacing = params[0]
            elif cmd == b"J" and paper is not None:
                paper.feed(params[0])
            elif cmd == b"d" and paper is not None:
                paper.feed(params[0] * paper.spacing)
            i += 2 + _ESC[cmd]
        elif b == b"\x1c":
            cmd = data[i + 1 : i + 2]
            if cmd not in _FS:
                raise DecodeError(f"unknown FS {cmd!r} at {i}")
            i += 2 + _FS[cmd]
        elif b == b"\x10":
            kind = data[i + 1]
            if kind == 0x04:  # DLE EOT n
                out.status_queries.append(data[i + 2])
                i += 3
            elif kind == 0x14 and data[i + 2] == 8:  # DLE DC4 fn=8 (clear buffers)
                i += 10
            else:
                raise DecodeError(f"unknown DLE {kind!r} at {i}")
        elif b == b"\x1d":
            cmd = data[i + 1 : i + 2]
            if cmd == b"v" and data[i + 2 : i + 3] == b"0":
                flush_text()
                xl, xh, yl, yh = data[i + 4 : i + 8]
                wb, h = xl + 256 * xh, yl + 256 * yh
                bits = data[i + 8 : i + 8 + wb * h]
                if len(bits) != wb * h:
                    raise DecodeError("truncated GS v 0 raster")
                # GS v 0: a set bit prints black; PIL mode '1' stores 1 as white, so invert.
                fragments.append(Image.frombytes("1", (wb * 8, h), bytes(255 - x for x in bits)))
                i += 8 + wb * h
            elif cmd == b"(" and data[i + 2 : i + 3] == b"k":
                flush_text()
                flush_raster()
                pl, ph, cn, fn = data[i + 3 : i + 7]
                body = data[i + 7 : i + 5 + pl + 256 * ph]
                if cn != 48:
                    raise DecodeError(f"GS ( k cn={cn} is not PDF417")
                if fn == 65:
                    current.columns = body[0]
                elif fn == 66:
                    current.rows = body[0]
                elif fn == 67:
                    current.module = body[0]
                elif fn == 68:
                    current.row_height = body[0]
                elif fn == 69:
                    current.ecl = body[1] - 48 if body[0] == 48 else None
                elif fn == 70:
                    current.truncated = body[0]
                elif fn == 80:
                    current.data = body[1:]
                elif fn == 81:
                    current.printed = True
                    out.pdf417.append(current)
                    if paper is not None:
                        paper.block(*current.size_dots(), align)
                    current = Pdf417Native(current.columns, current.rows, current.module, current.row_height,
                                           current.ecl, current.truncated)
                elif fn == 82:
                    pass  # size query: answered by the printer, prints nothing
                else:
                    raise DecodeError(f"GS ( k fn={fn}")
                i += 5 + pl + 256 * ph
            elif cmd == b"V":
                flush_text()
                m = data[i + 2]
                size = 4 if m in (65, 66) else 3
                out.cuts.append(data[i : i + size])
                i += size
            elif cmd == b"r":
                out.acks += 1
                i += 3
            elif cmd in _GS:
                i += 2 + _GS[cmd]
            else:
                raise DecodeError(f"unknown GS {cmd!r} at {i}")
        elif b == b"\n":
            flush_raster()
            text += b
            if paper is not None:
                paper.text_line(_Line(linebuf.decode(codec), align, dh, dw, bold))
            linebuf.clear()
            i += 1
        elif data[i] >= 0x20:
            flush_raster()
            text += b
            linebuf += b
            i += 1
        else:
            raise DecodeError(f"unexpected control byte {b!r} at {i}")
    flush_text()
    flush_raster()
    end_copy()
    return out

