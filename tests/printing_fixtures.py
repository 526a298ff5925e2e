"""Shared helpers for the printing tests: issued sample documents, a fake TCP printer."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

from PIL import Image

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


class FakePrinter:
    """A raw-TCP 'printer' on 127.0.0.1: records every connection's bytes and when the first
    byte arrived; `delay` makes it slow, `stop_listening()` makes it unreachable."""

    def __init__(self, delay: float = 0.0, port: int = 0) -> None:
        self.delay = delay
        self.jobs: list[bytes] = []
        self.first_byte_at: list[float] = []
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)
        self._sock: socket.socket | None = None
        self.port = port
        self.listen()

    def listen(self, port: int = 0) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port or self.port))
        s.listen(16)
        self._sock, self.port = s, s.getsockname()[1]
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def stop_listening(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread; close() alone leaves it listening
            except OSError:
                pass
            self._sock.close()
            self._sock = None

    def _accept(self, s: socket.socket) -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        chunks, first = [], None
        with conn:
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                if first is None:
                    first = time.time()
                    if self.delay:
                        time.sleep(self.delay)
                chunks.append(b)
        with self.changed:
            self.jobs.append(b"".join(chunks))
            self.first_byte_at.append(first or time.time())
            self.changed.notify_all()

    def wait_jobs(self, n: int, timeout: float = 20.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.jobs) < n and time.monotonic() < deadline:
                self.changed.wait(max(0.01, deadline - time.monotonic()))
            return list(self.jobs)

    def connector(self) -> dict:
        return {"type": "tcp", "host": "127.0.0.1", "port": self.port, "timeout": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
