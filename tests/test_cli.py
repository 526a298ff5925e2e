"""The `dtesync` command line contract: commands, outputs and exit codes (0 ok, 1 failure, 2 usage)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import SAMPLES, xmlsec1_verifies
from sync.cli import main
from sync.sandbox.build import examples_dir


def run(*args: str) -> int:
    return main(list(args))


def test_version_is_printed(capsys):
    with pytest.raises(SystemExit) as exc:
        run("--version")
    assert exc.value.code == 0
    assert "dtesync" in capsys.readouterr().out


def test_convert_writes_a_signed_dte_and_its_envelope(sandbox, tmp_path, capsys):
    code = run("convert", "--config", str(sandbox.config_path), str(examples_dir() / "52_guia_despacho.txt"), "-o", str(tmp_path))
    assert code == 0
    assert "TipoDTE 52" in capsys.readouterr().out
    assert xmlsec1_verifies(tmp_path / "52_guia_despacho.xml")
    assert xmlsec1_verifies(tmp_path / "52_guia_despacho.envio.xml", 1)
    assert xmlsec1_verifies(tmp_path / "52_guia_despacho.envio.xml", 2)
    assert run("verify", "--config", str(sandbox.config_path), str(tmp_path / "52_guia_despacho.envio.xml")) == 0


def test_convert_of_a_bad_file_exits_1_naming_the_code_and_line(sandbox, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("[Encabezado.IdDoc]\nTipoDTE=33\n[Encabezado.Receptor]\nRUTRecep=77123456-0\n", encoding="utf-8")
    assert run("convert", "--config", str(sandbox.config_path), str(bad), "-o", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "RUT_INVALID" in err and "bad.txt:4" in err


def test_verify_accepts_the_official_sii_example_and_exits_0(capsys):
    assert run("verify", str(SAMPLES / "sii-official" / "F60T33-ejemplo-oficial-SII.xml")) == 0
    assert capsys.readouterr().out.startswith("OK")


def test_verify_exits_1_on_an_unsigned_file():
    assert run("verify", str(examples_dir() / "33_factura.xml")) == 1


def test_missing_config_is_a_usage_error(tmp_path):
    assert run("caf", "list", "--config", str(tmp_path / "nope.toml")) == 2


def test_caf_stock_lists_every_sandbox_type(sandbox, capsys):
    assert run("caf", "stock", "--config", str(sandbox.config_path)) == 0
    out = capsys.readouterr().out
    for tipo in ("33", "39", "52", "61"):
        assert f"\n{tipo:>7} " in out


def test_caf_import_refuses_a_caf_of_another_company(sandbox, tmp_path, capsys):
    from datetime import date

    from sync.rut import Rut
    from sync.sandbox.caf_factory import default_fake_sii

    other = tmp_path / "otra.xml"
    other.write_bytes(default_fake_sii().make_caf(Rut.of(77777777), "Otra", 33, 1, 5, date.today()))
    assert run("caf", "import", "--config", str(sandbox.config_path), str(other)) == 1
    assert "CAF_OTHER_COMPANY" in capsys.readouterr().out


def test_the_console_script_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "sync", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "dtesync" in result.stdout
