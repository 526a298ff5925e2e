"""A small ESC/POS decoder for the subset dtesync emits (tests only, no hardware).

It walks the byte stream command by command and knows each command's length, so a wrong
parameter count or a stray byte shows up as an error instead of silently as text. It
collects: text (decoded with the code page selected by ESC t n, through a table given by
the test), GS v 0 raster images (fragments stacked into one image), GS ( k PDF417 settings and
stored data, cuts and cash-drawer pulses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

# ESC commands and their parameter byte counts.
_ESC = {b"@": 0, b"t": 1, b"p": 3, b"!": 1, b"E": 1, b"a": 1, b"-": 1, b"M": 1, b"d": 1, b"G": 1, b"{": 1,
        b"J": 1, b"2": 0, b"3": 1, b"V": 1, b"r": 1, b"c": 2}
_GS = {b"!": 1, b"B": 1, b"b": 1, b"L": 2, b"W": 2, b"H": 1, b"f": 1, b"h": 1, b"w": 1}


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


@dataclass
class Decoded:
    text: str = ""
    code_pages: list[int] = field(default_factory=list)
    rasters: list[Image.Image] = field(default_factory=list)
    pdf417: list[Pdf417Native] = field(default_factory=list)
    cuts: list[bytes] = field(default_factory=list)
    drawer: list[int] = field(default_factory=list)


def decode(data: bytes, code_pages: dict[int, str]) -> Decoded:
    out = Decoded()
    i, n = 0, len(data)
    codec = "ascii"
    text = bytearray()
    fragments: list[Image.Image] = []
    current = Pdf417Native()

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
            fragments.clear()

    while i < n:
        b = data[i : i + 1]
        if b == b"\x1b":
            cmd = data[i + 1 : i + 2]
            if cmd not in _ESC:
                raise DecodeError(f"unknown ESC {cmd!r} at {i}")
            params = data[i + 2 : i + 2 + _ESC[cmd]]
            if cmd == b"t":
                flush_text()
                if params[0] not in code_pages:
                    raise DecodeError(f"code page {params[0]} not in the table")
                codec = code_pages[params[0]]
                out.code_pages.append(params[0])
            elif cmd == b"p":
                out.drawer.append(params[0])
            i += 2 + _ESC[cmd]
            flush_raster() if cmd not in (b"a",) else None
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
                    current = Pdf417Native()
                else:
                    raise DecodeError(f"GS ( k fn={fn}")
                i += 5 + pl + 256 * ph
            elif cmd == b"V":
                m = data[i + 2]
                size = 4 if m in (65, 66) else 3
                out.cuts.append(data[i : i + size])
                i += size
            elif cmd in _GS:
                i += 2 + _GS[cmd]
            else:
                raise DecodeError(f"unknown GS {cmd!r} at {i}")
        elif b in (b"\n",) or data[i] >= 0x20:
            flush_raster()
            text += b
            i += 1
        else:
            raise DecodeError(f"unexpected control byte {b!r} at {i}")
    flush_text()
    flush_raster()
    return out
