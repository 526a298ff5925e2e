"""Test support for the daemon with the REAL engine: varied inputs, a runner, the invariants.

The sibling of daemon_runner.py (which drives a fake engine): here every document goes through
the sandbox's real engine (parse, totals, folio from the CAF, TED, XMLDSig, XSD), and the
checks are independent of our own code where possible: xmlsec1 for the signatures, the
official XSDs for the schema, the folio store's own tables for the folio sequence.

Run as a script it is the daemon process of the real-engine crash test:
    python tests/daemon_real.py CONFIG MODE
(a sandbox config from sync.sandbox.build.create_sandbox); it prints READY once started.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lxml import etree  # noqa: E402

from sync.sandbox.build import examples_dir  # noqa: E402

FINAL = {"signed", "rejected_input", "error"}

# Inputs the engine must reject, each for a reason an ERP programmer can act on.
BAD_INPUTS: dict[str, tuple[str, bytes]] = {
    "rut": (".txt", "[Encabezado.IdDoc]\nTipoDTE=33\n[Encabezado.Receptor]\nRUTRecep=77123456-0\n"
                    "RznSocRecep=Cliente {i}\nGiroRecep=Comercio\nDirRecep=Calle 1\nCmnaRecep=Santiago\n"
                    "[Detalle]\nNmbItem=Producto\nQtyItem={q}\nPrcItem=1000\n".encode()),
    "nodetalle": (".json", b'{"Documento": {"Encabezado": {"IdDoc": {"TipoDTE": 39}}, "Detalle": [], "X": "{i}"}}'),
    "garbage": (".txt", bytes(range(256)) * 3 + b"{i}"),
    "doctype": (".xml", b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "{i}">]><Documento>&e;</Documento>'),
    "syntax": (".json", b'{"Documento": {"Encabezado": {i}'),
}


@dataclass(frozen=True)
class Input:
    rel: str  # inbox-relative name, as dropped
    body: bytes
    want: str  # the final state it must reach: signed | rejected_input

    @property
    def stem(self) -> str:
        return self.rel.rsplit(".", 1)[0]


def vary(body: bytes, rnd: random.Random, i: int) -> bytes:
    """Another document from an example: new quantities, a receiver name carrying `i`.

    Works on the bytes of all three formats (TXT key=value, JSON, XML), so encodings and
    layouts stay exactly as the examples ship them.
    """

    def qty(m: re.Match[bytes]) -> bytes:
        return m.group(1) + str(rnd.randint(1, 60)).encode() + m.group(2)

    if b"MntTotal" not in body:  # an input that states its totals keeps its quantities
        body = re.sub(rb"(QtyItem=)[^\r\n]*()", qty, body)
        body = re.sub(rb'("QtyItem":\s*)[0-9.]+()', qty, body)
        body = re.sub(rb"(<QtyItem>)[^<]*(</QtyItem>)", qty, body)
        # a stated discount amount follows from the quantity: let the engine compute it from the %
        body = re.sub(rb"DescuentoMonto=[^\r\n]*\r?\n", b"", body)
        body = re.sub(rb',\s*"DescuentoMonto":\s*[0-9.]+', b"", body)
        body = re.sub(rb"\s*<DescuentoMonto>[^<]*</DescuentoMonto>", b"", body)
    tag = f" N{i}".encode()
    body = re.sub(rb"(RznSocRecep=[^\r\n]*)", lambda m: m.group(1)[:80] + tag, body)
    body = re.sub(rb'("RznSocRecep":\s*"[^"]*)', lambda m: m.group(1)[:80] + tag, body)
    body = re.sub(rb"(<RznSocRecep>[^<]*)", lambda m: m.group(1)[:80] + tag, body)
    if b"RznSocRecep" not in body:  # boletas to an anonymous buyer: vary an item name instead
        body = re.sub(rb"(NmbItem=[^\r\n]*)", lambda m: m.group(1)[:60] + tag, body, count=1)
        body = re.sub(rb'("NmbItem":\s*"[^"]*)', lambda m: m.group(1)[:60] + tag, body, count=1)
        body = re.sub(rb"(<NmbItem>[^<]*)", lambda m: m.group(1)[:60] + tag, body, count=1)
    return body


def varied_inputs(n: int, seed: int, prefix: str = "D", bad_share: float = 0.08,
                  folders: tuple[str, ...] = ("", "", "caja1", "caja2")) -> list[Input]:
    """n inputs of every shipped type and format, all different, some bad."""
    rnd = random.Random(seed)
    examples = sorted(p for p in examples_dir().iterdir() if p.suffix in (".txt", ".json", ".xml"))
    bodies = {p: p.read_bytes() for p in examples}
    out = []
    for i in range(n):
        folder = rnd.choice(folders)
        if rnd.random() < bad_share:
            kind = rnd.choice(sorted(BAD_INPUTS))
            ext, template = BAD_INPUTS[kind]
            body = template.replace(b"{i}", str(i).encode()).replace(b"{q}", str(rnd.randint(1, 9)).encode())
            name, want = f"{prefix}{i:04d}-bad-{kind}{ext}", "rejected_input"
        else:
            src = rnd.choice(examples)
            body = vary(bodies[src], rnd, i)
            name, want = f"{prefix}{i:04d}-{src.stem}{src.suffix}", "signed"
        out.append(Input(f"{folder}/{name}" if folder else name, body, want))
    return out


def drop(inbox: Path, inputs: list[Input], seed: int, writers: int = 4) -> dict[str, str]:
    """Write inputs the ways ERPs do: renamed into place, written slowly in chunks, written
    directly, some dropped twice. Returns {rel: how}."""
    rnd = random.Random(seed)
    for folder in {i.rel.rpartition("/")[0] for i in inputs} - {""}:
        (inbox / folder).mkdir(parents=True, exist_ok=True)
    how: dict[str, str] = {}
    slow: list[Input] = []
    for item in inputs:
        path = inbox / item.rel
        r = rnd.random()
        if r < 0.12:
            slow.append(item)
            how[item.rel] = "slow"
        elif r < 0.55:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(item.body)
            os.rename(tmp, path)
            how[item.rel] = "renamed"
        else:
            path.write_bytes(item.body)
            how[item.rel] = "direct"
            if r > 0.9:
                path.write_bytes(item.body)  # dropped twice, maybe after the first claim
                how[item.rel] = "twice"

    def slow_writer(items: list[Input]) -> None:
        for item in items:
            step = len(item.body) // 4 + 1
            with open(inbox / item.rel, "wb") as f:
                for k in range(0, len(item.body), step):
                    f.write(item.body[k : k + step])
                    f.flush()
                    time.sleep(0.02)

    threads = [threading.Thread(target=slow_writer, args=(slow[k::writers],)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return how


# --- waiting and reading ------------------------------------------------------------------------
def read_status(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_final(outbox: Path, inputs: list[Input], timeout: float) -> dict[str, dict]:
    """Every input's final status (fails naming the first input still without one)."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict] = {}
    while True:
        for item in inputs:
            if item.rel not in found:
                st = read_status(outbox / f"{item.stem}.status.json")
                if st and st["state"] in FINAL and st["source"] == item.rel:
                    found[item.rel] = st
        missing = [i.rel for i in inputs if i.rel not in found]
        if not missing:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(missing)} inputs without a final status, e.g. {missing[:5]}")
        time.sleep(0.1)


# --- independent checks ---------------------------------------------------------------------------
def xmlsec1_failures(paths: list[Path], batch: int = 100) -> list[Path]:
    """The files whose (first) XMLDSig xmlsec1 does not verify; one xmlsec1 run per batch."""
    assert shutil.which("xmlsec1"), "xmlsec1 is required (Debian package xmlsec1; .ci/run installs it)"
    bad: list[Path] = []
    for k in range(0, len(paths), batch):
        chunk = [str(p) for p in paths[k : k + batch]]
        cmd = ["xmlsec1", "--verify", "--id-attr:ID", "Documento", "--node-xpath", "(//*[local-name()='Signature'])[1]"]
        run = subprocess.run(cmd + chunk, capture_output=True, text=True)
        if run.returncode == 0 and run.stderr.count("OK") >= len(chunk):
            continue
        for p in chunk:  # find the culprit(s)
            one = subprocess.run(cmd + [p], capture_output=True)
            if one.returncode != 0:
                bad.append(Path(p))
        assert bad, f"xmlsec1 batch failed but no single file does: {run.stderr[-500:]}"
    return bad


def schema_failures(paths: list[Path]) -> dict[Path, list[str]]:
    from sync.schema import schema_errors

    out = {}
    for p in paths:
        errs = schema_errors(etree.parse(str(p)).getroot())
        if errs:
            out[p] = errs
    return out


def dte_folio(path: Path) -> tuple[int, int]:
    root = etree.parse(str(path)).getroot()
    return int(root.findtext(".//{*}IdDoc/{*}TipoDTE")), int(root.findtext(".//{*}IdDoc/{*}Folio"))


def folio_table(state_dir: Path) -> list[tuple[int, int, str, str | None, str | None]]:
    """(tipo_dte, folio, state, doc_key, released_doc_key) of every folio ever taken."""
    import sqlite3

    db = sqlite3.connect(f"file:{state_dir / 'folios.sqlite'}?mode=ro", uri=True)
    try:
        return list(db.execute("SELECT tipo_dte, folio, state, doc_key, released_doc_key FROM folio ORDER BY 1, 2"))
    finally:
        db.close()


def check_real_invariants(root: Path, inputs: list[Input], statuses: dict[str, dict]) -> dict[str, int]:
    """Each input one final status of the expected kind; every signed XML verifies (xmlsec1)
    and is schema-valid; no folio twice; the folio store agrees with the status files; no gap
    in any type's folio sequence that its pending-annulment list does not explain."""
    outbox, state = root / "outbox", root / "state"
    signed: dict[tuple[int, int], dict] = {}
    xmls: list[Path] = []
    for item in inputs:
        st = statuses[item.rel]
        assert st["state"] == item.want, (item.rel, st["state"], st["errors"])
        if item.want == "rejected_input":
            assert st["errors"] and all(e["code"] and e["message"] for e in st["errors"]), st
            assert st["folio"] is None
            continue
        key = (st["tipo_dte"], st["folio"])
        assert key not in signed, f"folio {key} used twice: {item.rel} and {signed[key]['source']}"
        signed[key] = st
        xml = outbox / st["xml"] if "/" not in item.rel else outbox / item.rel.rpartition("/")[0] / st["xml"]
        assert dte_folio(xml) == key, (item.rel, key)
        xmls.append(xml)
    assert xmlsec1_failures(xmls) == []
    assert schema_failures(xmls) == {}
    taken = folio_table(state)
    explained = {(t, f) for t, f, s, _, _ in taken if s == "pending_annulment"}
    assert {(t, f) for t, f, s, _, _ in taken if s == "used"} == set(signed), "folio store and status files disagree"
    assert not [r for r in taken if r[2] == "allocated"], "a folio still allocated after every input is final"
    for (t, f), st in signed.items():  # same document -> same folio, whatever restarts happened
        row = next(r for r in taken if (r[0], r[1]) == (t, f))
        assert row[3] == f"{st['document_id']}:{st['sha256']}", (row, st["source"])
    by_type: dict[int, list[int]] = defaultdict(list)
    for t, f, _, _, _ in taken:
        by_type[t].append(f)
    for t, fs in by_type.items():
        assert sorted(fs) == list(range(1, max(fs) + 1)), f"gap in the folio sequence of TipoDTE {t}"
        holes = set(range(1, max(fs) + 1)) - {f for tt, f in signed if tt == t}
        assert holes <= {f for tt, f in explained if tt == t}, f"unexplained folio gap in TipoDTE {t}: {holes}"
    leftovers = [p for p in (root / "inbox").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert leftovers == [], leftovers[:5]
    return {"signed": len(signed), "rejected": len(inputs) - len(signed), "pending_annulment": len(explained)}


# --- the daemon process of the crash test ---------------------------------------------------------
def main() -> None:
    from sync.app import build_app
    from sync.config import load_config

    config_path, mode = Path(sys.argv[1]), sys.argv[2]
    config = load_config(config_path)
    daemon = build_app(
        config, stages=[], watch=mode, workers=2, empty_timeout=2.0, scan_interval=1.0, poll_interval=0.1,
        stations=frozenset({"caja1", "caja2"}),
    ).daemon
    from daemon_runner import serve_until_signalled

    serve_until_signalled(daemon)


if __name__ == "__main__":
    main()
