"""Shared helpers for the printing tests: issued sample documents, a fake TCP printer, and
measurements of a printed timbre in mm (from a pdftoppm raster or a rebuilt ticket)."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import zxingcpp
from PIL import Image

from escpos_decode import Decoded, decode
from sync.printing.emulator import EmulatedPrinter

EXAMPLES = Path(__file__).resolve().parents[1] / "sync" / "data" / "examples"
# One input per document type (the sandbox's own examples).
ONE_PER_TYPE = ["33_factura.txt", "34_factura_exenta.txt", "39_boleta.txt", "41_boleta_exenta.txt",
                "46_factura_compra.txt", "52_guia_despacho.txt", "56_nota_debito.txt", "61_nota_credito.txt"]


def issue_examples(engine, tag: str) -> dict[str, object]:
    return {name: engine.issue((EXAMPLES / name).read_bytes(), name, doc_key=f"{tag}:{name}") for name in ONE_PER_TYPE}


def rasterise(pdf: Path, out_prefix: Path, dpi: int = 300, page: int = 1) -> Image.Image:
    subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-png", "-f", str(page), "-l", str(page), str(pdf),
                    str(out_prefix)], check=True)
    found = sorted(out_prefix.parent.glob(out_prefix.name + "*.png"))
    return Image.open(found[-1])


def pdf_text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True).stdout.decode("utf-8")


class FakePrinter(EmulatedPrinter):
    """The software ESC/POS printer (sync.printing.emulator) on 127.0.0.1, with the views the
    tests use: `jobs`, the bytes of each finished connection that carried a job (ESC @), and
    `first_byte_at`, when each such job's first byte arrived."""

    def __init__(self, port: int = 0, **kw) -> None:
        super().__init__(port=port, **kw)
        self.listen()

    @property
    def job_sessions(self) -> list:
        return [s for s in list(self.sessions) if not s.open and b"\x1b@" in s.received]

    @property
    def jobs(self) -> list[bytes]:
        return [bytes(s.received) for s in self.job_sessions]

    @property
    def first_byte_at(self) -> list[float]:
        return [s.started_at for s in self.job_sessions]

    def wait_jobs(self, n: int, timeout: float = 20.0) -> list[bytes]:
        self.wait(lambda p: len(p.jobs) >= n and p.idle(), timeout)
        return self.jobs

    def printed(self, profile) -> Decoded:
        """What came out on paper, decoded and laid out."""
        return decode_ticket(bytes(self.paper), profile)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decode_ticket(data: bytes, profile) -> Decoded:
    """The ticket as the profile's printer lays it out: paper as wide as the roll."""
    return decode(data, {profile.code_page_number: profile.code_page}, width=profile.width_dots, dpi=profile.dpi,
                  edge=round(profile.edge_mm / profile.dot_mm), char=(profile.char_dots, 24))


@dataclass
class Timbre:
    """A PDF417 found on a picture of the paper, measured in mm."""

    payload: bytes
    left: float  # from the paper's left edge to the symbol
    right: float  # from the symbol to the paper's right edge
    top: float  # from the top of the picture (page or ticket)
    width: float
    height: float
    quiet: dict[str, float]  # blank paper around the symbol on each side (up to the paper's edge)

    @property
    def short_long(self) -> tuple[float, float]:
        return min(self.width, self.height), max(self.width, self.height)


def _ink(img: Image.Image) -> Image.Image:
    """255 where the paper is dark (ink), 0 where it is blank: getbbox() then finds ink."""
    return img.convert("L").point(lambda v: 255 if v < 128 else 0)


def read_pdf417(img: Image.Image) -> list[zxingcpp.Barcode]:
    """Every PDF417 zxing-cpp reads on the picture, at full resolution only: on its downscaled
    copies zxing-cpp now and then "reads" a short garbage payload over the real symbol (about
    one A4 page in 30 of one nota de débito, 8 % error correction claimed)."""
    return zxingcpp.read_barcodes(img.convert("L"), formats=zxingcpp.BarcodeFormat.PDF417, try_downscale=False)


def find_timbres(img: Image.Image, dpi: float) -> list[Timbre]:
    """Every PDF417 zxing-cpp reads on the picture, with its box (the dark pixels inside the
    area zxing found) and the blank paper around it on each side, in mm."""
    gray = img.convert("L")
    ink = _ink(gray)
    px = 25.4 / dpi
    out: list[Timbre] = []
    boxes: list[tuple[bytes, int, int, int, int]] = []
    for found in read_pdf417(gray):
        p = found.position
        xs = [p.top_left.x, p.top_right.x, p.bottom_left.x, p.bottom_right.x]
        ys = [p.top_left.y, p.top_right.y, p.bottom_left.y, p.bottom_right.y]
        pad = 3
        x0, y0 = max(0, min(xs) - pad), max(0, min(ys) - pad)
        x1, y1 = min(ink.width, max(xs) + pad + 1), min(ink.height, max(ys) + pad + 1)
        found_box = ink.crop((x0, y0, x1, y1)).getbbox()
        assert found_box is not None, "zxing-cpp read a symbol where there is no ink"
        left, t, r, b = x0 + found_box[0], y0 + found_box[1], x0 + found_box[2] - 1, y0 + found_box[3] - 1
        if any(payload == found.bytes and left < r2 and left2 < r and t < b2 and t2 < b
               for payload, left2, t2, r2, b2 in boxes):
            continue  # zxing-cpp reported the same symbol twice (it happens on some images)
        boxes.append((found.bytes, left, t, r, b))
        out.append(Timbre(found.bytes, left * px, (ink.width - 1 - r) * px, t * px, (r - left + 1) * px,
                          (b - t + 1) * px, _quiet(ink, left, t, r, b, px)))
    return out


def box_clearance(img: Image.Image, box: tuple[int, int, int, int], dpi: float) -> dict[str, float]:
    """Blank paper around a box (x, y, w, h in pixels) on each side, in mm."""
    x, y, w, h = box
    return _quiet(_ink(img), x, y, x + w - 1, y + h - 1, 25.4 / dpi)


def ink_margins(img: Image.Image, dpi: float) -> tuple[float, float]:
    """Blank paper from the left and right edges to the nearest ink, in mm."""
    ink = _ink(img)
    bbox = ink.getbbox()
    assert bbox is not None, "a blank page"
    return bbox[0] * 25.4 / dpi, (ink.width - bbox[2]) * 25.4 / dpi


def _quiet(ink: Image.Image, left: int, top: int, right: int, bottom: int, px: float) -> dict[str, float]:
    """Blank paper from each side of the box (inclusive pixel bounds) to the nearest ink, or to
    the paper's edge, looking within a band as wide as the box plus 0.25 in either way."""
    q = round(6.35 / px) + 1
    w, h = ink.size
    y0, y1 = max(0, top - q), min(h, bottom + q + 1)
    x0, x1 = max(0, left - q), min(w, right + q + 1)

    def bbox(area: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
        return ink.crop(area).getbbox() if area[0] < area[2] and area[1] < area[3] else None

    found = bbox((0, y0, left, y1))
    gap_left = left - found[2] if found else left
    found = bbox((right + 1, y0, w, y1))
    gap_right = found[0] if found else w - 1 - right
    found = bbox((x0, 0, x1, top))
    gap_top = top - found[3] if found else top
    found = bbox((x0, bottom + 1, x1, h))
    gap_bottom = found[1] if found else h - 1 - bottom
    return {"left": gap_left * px, "right": gap_right * px, "top": gap_top * px, "bottom": gap_bottom * px}


def _pdf_streams(pdf: bytes) -> list[tuple[bytes, bytes]]:
    """(dictionary, raw body) of every stream with a direct /Length, skipping over each body."""
    import re

    start = re.compile(rb"<<((?:(?!<<|>>).)*?)>>\s*stream\r?\n", re.DOTALL)
    found, pos = [], 0
    while (m := start.search(pdf, pos)) is not None:
        length = re.search(rb"/Length (\d+)(?! \d+ R)", m.group(1))
        if length is None:
            pos = m.end()
            continue
        end = m.end() + int(length.group(1))
        found.append((m.group(1), pdf[m.end():end]))
        pos = end
    return found


def pdf_strings(pdf: bytes) -> list[tuple[str, float, str]]:
    """(base font, size in pt, text) of every string a PDF draws, read from its content streams
    (Flate, optionally inside ASCII85), independently of the code that drew them. A stream's
    body is taken by its /Length: binary data may end in bytes that look like white space."""
    import base64
    import re
    import zlib

    fonts = {m.group(2).decode(): m.group(1).decode()
             for m in re.finditer(rb"/BaseFont /([\w-]+) /Encoding /\w+ /Name /(\w+)", pdf)}
    out = []
    for head, body in _pdf_streams(pdf):
        if b"ASCII85Decode" in head:
            body = body.strip()
            body = base64.a85decode(body[:-2] if body.endswith(b"~>") else body)
        if b"FlateDecode" in head:
            body = zlib.decompress(body)
        if b" Tf" not in body:
            continue
        font, size = "", 0.0
        for op in re.finditer(rb"/(\w+) ([\d.]+) Tf|\(((?:\\.|[^\\)])*)\) Tj", body):
            if op.group(1):
                font, size = fonts.get(op.group(1).decode(), op.group(1).decode()), float(op.group(2))
            else:
                raw = re.sub(rb"\\([0-7]{3})", lambda e: bytes((int(e.group(1), 8),)), op.group(3))
                raw = re.sub(rb"\\(.)", rb"\1", raw)
                out.append((font, size, raw.decode("cp1252")))
    return out
