"""Render one ticket (80 mm roll) and one letter page per document type to docs/img/*.png.

    python tools/render_samples.py [OUT_DIR]

The documents are the sandbox examples (sync/data/examples) issued by a throw-away sandbox
(test company, fake CAFs), so the pictures show exactly what dtesync prints. Needs pdftoppm
(poppler-utils).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sync.config import load_config  # noqa: E402
from sync.printing.layout import build_layout, cedible_label  # noqa: E402
from sync.printing.pdf import render_pdf  # noqa: E402
from sync.printing.service import source_of  # noqa: E402
from sync.runtime import open_engine  # noqa: E402
from sync.sandbox.build import create_sandbox  # noqa: E402

EXAMPLES = ["33_factura.txt", "34_factura_exenta.txt", "39_boleta.txt", "41_boleta_exenta.txt",
            "46_factura_compra.txt", "52_guia_despacho.txt", "56_nota_debito.txt", "61_nota_credito.txt"]


def to_png(pdf: bytes, out: Path, dpi: int, page: int = 1) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "x.pdf"
        src.write_bytes(pdf)
        subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-png", "-singlefile", "-f", str(page), "-l", str(page),
                        str(src), str(out.with_suffix(""))], check=True)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sb = create_sandbox(Path(tmp) / "sb", folios_per_type=20)
        config = load_config(sb.config_path)
        engine = open_engine(config)
        for name in EXAMPLES:
            issued = engine.issue((ROOT / "sync" / "data" / "examples" / name).read_bytes(), name, doc_key=f"sample:{name}")
            src = source_of(issued)
            stem = name.rsplit(".", 1)[0]
            layout = build_layout(src, config.company, config.printing)
            to_png(render_pdf([layout], fmt="80mm"), out / f"{stem}-ticket-80mm.png", 120)
            sheet = [layout]
            if cedible_label(src.documento):  # show the cedible copy, the page with the most on it
                sheet = [build_layout(src, config.company, config.printing, cedible=True)]
            to_png(render_pdf(sheet, fmt="letter"), out / f"{stem}-letter.png", 80)
            print(f"{out / stem}-ticket-80mm.png, -letter.png")
        boleta = engine.issue((ROOT / "sync" / "data" / "examples" / "39_boleta.txt").read_bytes(), "b58",
                              doc_key="sample:58")
        to_png(render_pdf([build_layout(source_of(boleta), config.company, config.printing)], fmt="58mm"),
               out / "39_boleta-ticket-58mm.png", 120)


if __name__ == "__main__":
    main()
