"""A third party's SII client against fake-sii: facturacion-electronica (PyPI), whose client
others use against the real SII, runs seed -> token -> upload -> envío status -> document status
for a factura (SOAP services with zeep reading `?WSDL`, DTEUpload) and a boleta (REST API).

The package runs in its own virtualenv, made once under the cache directory the engine bench
uses (bench/engine.py's `peer_python`). tests/fe_conformance_driver.py drives it through its
public functions and only points its base-URL dicts at fake-sii (the package has no setting for
it); everything else — signing the seed, the DTEs and the envelope, reading the answers — is
the package's own code.

One input had to be shaped like the SII's: the CAF files. The SII's CAFs put each element on its
own line without indentation; facturacion-electronica signs the timbre's DD with the CAF's
whitespace (it removes only newlines), so the sandbox's indented CAFs would give it a TED that no
verifier following the instructivo accepts. The test hands it the sandbox CAFs in the SII's layout.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sync.config import load_config
from sync.fakesii import Behaviour, FakeSii
from sync.runtime import trusted_caf_keys
from sync.sandbox.build import create_sandbox

DRIVER = Path(__file__).with_name("fe_conformance_driver.py")
BENCH = Path(__file__).resolve().parents[1] / "bench"
FOLIO = 7  # inside the sandbox CAFs (1-10)

pytestmark = pytest.mark.slow


def peer_python() -> Path:
    sys.path.insert(0, str(BENCH))
    try:
        from engine import peer_python as make
    finally:
        sys.path.remove(str(BENCH))
    python, how = make()
    if python is None:
        pytest.skip(f"facturacion-electronica's virtualenv could not be made: {how}")
    return python


def sii_layout(caf: Path, out: Path) -> Path:
    """The CAF with one element per line and no indentation, as the SII delivers CAFs."""
    out.write_bytes(re.sub(rb"\n[ \t]+", b"\n", caf.read_bytes()))
    return out


@pytest.fixture(scope="module")
def peer_run(tmp_path_factory):
    python = peer_python()
    root = tmp_path_factory.mktemp("conformance")
    sb = create_sandbox(root / "sb", folios_per_type=10)
    config = load_config(sb.config_path)
    cafs = {t: next((sb.root / "caf").glob(f"CAF_T{t}_*.xml")) for t in (33, 39)}
    behaviour = Behaviour(processing_delay=(0.4, 0.4), processing_polls=0)
    with FakeSii(caf_keys=trusted_caf_keys(config), behaviour=behaviour) as fake:
        cfg = {"url": fake.url, "pfx": str(sb.root / "cert" / "empresa-demo.pfx"),
               "password": (sb.root / "cert" / "password.txt").read_text(encoding="utf-8").strip(),
               "caf_33": str(sii_layout(cafs[33], root / "caf33.xml")),
               "caf_39": str(sii_layout(cafs[39], root / "caf39.xml")),
               "rut_emisor": str(config.company.rut), "rut_firmante": str(config.company.rut),
               "fch_resol": config.company.fch_resol.isoformat(), "nro_resol": config.company.nro_resol,
               "folio_33": FOLIO, "folio_39": FOLIO, "polls": 20, "wait": 0.3}
        path = root / "driver.json"
        path.write_text(json.dumps(cfg), encoding="utf-8")
        proc = subprocess.run([str(python), str(DRIVER), str(path)], capture_output=True, text=True, timeout=300,
                              check=False)
        try:
            out = json.loads(proc.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"driver output unreadable: {proc.stdout[-800:]} {proc.stderr[-1500:]}")
        assert "error" not in out, out.get("error")
        yield out, fake, config


def test_its_zeep_client_reads_every_wsdl(peer_run):
    _, fake, _ = peer_run
    assert {s: n >= 1 for s, n in fake.wsdl_served.items()} == {
        "CrSeed": True, "GetTokenFromSeed": True, "QueryEstUp": True, "QueryEstDte": True}


def test_its_signed_seeds_get_tokens_for_both_apis(peer_run):
    _, fake, _ = peer_run
    kinds = {entry[2] for entry in fake.tokens.values()}
    assert kinds == {"soap", "rest"} and not fake.token_refusals


def test_factura_upload_envio_status_and_document_status(peer_run):
    out, _, _ = peer_run
    f = out["33"]
    assert f["status"] == "Enviado" and re.fullmatch(r"\d{10}", f["track_id"])
    states = [e["status"] for e in f["envio"]]
    assert states[0] == "Enviado" and states[-1] == "Aceptado"  # it waited through the processing delay
    assert f["envio"][-1]["glosa"] == "Envio Procesado"
    assert f["documento"] == {f"T33F{FOLIO}": {"status": "Proceso", "glosa": "DTE Recibido"}}  # its word for DOK


def test_boleta_upload_envio_status_and_document_status(peer_run):
    out, _, _ = peer_run
    b = out["39"]
    assert b["status"] == "Enviado" and re.fullmatch(r"\d{15}", b["track_id"])  # 15 digits (instructivo)
    last = b["envio"][-1]
    assert b["envio"][0]["status"] == "Enviado" and last["status"] == "Aceptado"
    assert last["detalles"] == [{"tipo": 39, "informados": 1, "aceptados": 1, "rechazados": 0, "reparos": 0}]
    doc = b["documento"][f"T39F{FOLIO}"]
    assert doc["status"] == "Proceso" and "Datos Coinciden" in doc["glosa"]


def test_fake_sii_verified_and_accepted_each_document_once(peer_run):
    _, fake, config = peer_run
    rut = str(config.company.rut)
    assert fake.accepted_folios() == {(rut, 33, FOLIO): 1, (rut, 39, FOLIO): 1}
    assert fake.stats()["duplicates"] == 0 and fake.stats()["html_pages"] == 0
