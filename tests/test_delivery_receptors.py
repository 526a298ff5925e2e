"""The receptors' exchange addresses (`dtesync receptors import|show`) and the [delivery]
configuration: the SII's list as it is published (';', ISO-8859-1, no quotes), overrides by
RUT, and settings that would leak a password refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sync.config import load_config
from sync.delivery.receptors import Directory, import_list
from sync.delivery.store import DeliveryStore
from sync.errors import DteSyncError
from sync.sandbox.build import create_sandbox

# The SII's list as downloaded: a header, ISO-8859-1 names, CRLF, no quotes; one line with a
# RUT whose check digit is wrong, one without an address, one repeated.
LIST = (
    "RUT;RAZON SOCIAL;NUMERO RESOLUCION;FECHA RESOLUCION;MAIL INTERCAMBIO;URL\r\n"
    "77123456-9;CONSTRUCTORA PEÑALOLÉN LTDA.;80;22-08-2014;dte@constructorapenalolen.cl;www.penalolen.cl\r\n"
    "96789123-1;COMERCIAL ÑUÑOA S.A.;0;01-02-2019;intercambio@nunoa.cl;\r\n"
    "12345678-0;RUT MALO;0;01-02-2019;malo@malo.cl;\r\n"
    "76192083-9;SIN CORREO SPA;0;01-02-2019;;\r\n"
    "11222333-9;VIEJA DIRECCION;0;01-02-2019;vieja@cliente.cl;\r\n"
    "11222333-9;NUEVA DIRECCION;0;01-02-2019;nueva@cliente.cl;\r\n"
).encode("latin-1")


def dtesync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sync", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def sandbox_with_delivery(tmp_path):
    sb = create_sandbox(tmp_path / "sb", folios_per_type=5)
    sb.config_path.write_text(sb.config_path.read_text() + (
        '\n[delivery]\nsmtp_host = "127.0.0.1"\nsmtp_tls = "none"\nfrom = "dte@empresademo.cl"\n'
        '[delivery.receptors]\n"96.789.123-1" = "otra@nunoa.cl"\n'))
    (tmp_path / "ce_empresas_dwnld.csv").write_bytes(LIST)
    return sb, tmp_path / "ce_empresas_dwnld.csv"


def test_the_sii_list_is_imported_with_its_latin1_names_and_bad_lines_reported(tmp_path):
    path = tmp_path / "list.csv"
    path.write_bytes(LIST)
    with DeliveryStore(tmp_path / "d.sqlite3") as store:
        result = import_list(store, path)
        assert result.imported == 4 and result.without_address == 1
        assert [line for line, _ in result.skipped] == [4, 7]  # the bad RUT; the repeated RUT (last one wins)
        assert store.receptor("77123456-9").razon_social == "CONSTRUCTORA PEÑALOLÉN LTDA."
        assert store.receptor("11222333-9").mail == "nueva@cliente.cl"
        assert store.receptor("76192083-9").mail is None
        directory = Directory(store, {"96789123-1": "otra@nunoa.cl"})
        assert directory.resolve("77.123.456-9").address == "dte@constructorapenalolen.cl"
        assert directory.resolve("96789123-1").address == "otra@nunoa.cl"  # the config overrides the list
        assert directory.resolve("76192083-9").address is None


def test_a_new_list_replaces_the_old_one(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_bytes(LIST)
    second.write_bytes(b"RUT;RAZON SOCIAL;NUMERO RESOLUCION;FECHA RESOLUCION;MAIL INTERCAMBIO;URL\n"
                       b"96789123-1;OTRA;0;01-02-2019;nuevo@nunoa.cl;\n")
    with DeliveryStore(tmp_path / "d.sqlite3") as store:
        import_list(store, first)
        generation = store.receptors_generation()
        import_list(store, second)
        assert store.receptor("77123456-9") is None and store.receptor("96789123-1").mail == "nuevo@nunoa.cl"
        assert store.receptors_generation() == generation + 1  # the daemon notices and readdresses


def test_a_file_that_is_not_the_list_is_refused(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"hola;mundo\n")
    with DeliveryStore(tmp_path / "d.sqlite3") as store, pytest.raises(DteSyncError) as err:
        import_list(store, path)
    assert err.value.code == "RECEPTORS_LIST_INVALID"


def test_cli_import_then_show(sandbox_with_delivery):
    sb, csv = sandbox_with_delivery
    r = dtesync("receptors", "import", str(csv), "--config", str(sb.config_path))
    assert r.returncode == 0, r.stderr
    assert "4 receptor(es) importado(s)" in r.stdout and "línea 4" in r.stdout
    r = dtesync("receptors", "show", "77.123.456-9", "--config", str(sb.config_path))
    assert r.returncode == 0 and "dte@constructorapenalolen.cl (listado del SII)" in r.stdout
    assert "PEÑALOLÉN" in r.stdout
    r = dtesync("receptors", "show", "96789123-1", "--config", str(sb.config_path))
    assert r.returncode == 0 and "otra@nunoa.cl ([delivery.receptors])" in r.stdout
    r = dtesync("receptors", "show", "76192083-9", "--config", str(sb.config_path))
    assert r.returncode == 1 and "no_address" in r.stdout
    r = dtesync("receptors", "show", "76192083-0", "--config", str(sb.config_path))
    assert r.returncode == 2 and "dígito verificador" in r.stderr


def test_backup_copies_the_delivery_store():
    from sync.cli.admin import databases

    assert "delivery.sqlite3" in databases()


# --- configuration ------------------------------------------------------------------------------------
def config_with(tmp_path: Path, delivery: str):
    sb = create_sandbox(tmp_path / "sb", folios_per_type=5)
    sb.config_path.write_text(sb.config_path.read_text() + "\n" + delivery)
    return load_config(sb.config_path)


def test_delivery_defaults(tmp_path):
    c = config_with(tmp_path, '[delivery]\nsmtp_host = "smtp.empresa.cl"\nfrom = "dte@empresa.cl"\n').delivery
    assert (c.smtp_tls, c.smtp_port, c.after, c.attach_pdf, c.imap) == ("starttls", 587, "accepted", True, None)


def test_no_delivery_table_means_no_delivery_stage(tmp_path):
    from sync.delivery.stage import build_delivery

    config = config_with(tmp_path, "")
    assert config.delivery is None and build_delivery(config, None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("text, key", [
    ('smtp_host = "smtp.empresa.cl"\nfrom = "dte@empresa.cl"\nsmtp_user = "u"\nsmtp_password = "clave"', "delivery.smtp_password"),
    (('smtp_host = "smtp.empresa.cl"\nfrom = "dte@empresa.cl"\nsmtp_tls = "none"\nsmtp_user = "u"\n'
      'smtp_password = { env = "X" }'), "delivery.smtp_tls"),
    ('smtp_host = "smtp.empresa.cl"\nfrom = "no es correo"', "delivery.from"),
    ('smtp_host = "smtp.empresa.cl"\nfrom = "dte@empresa.cl"\nafter = "sent"', "delivery.after"),
    ('smtp_host = "smtp.empresa.cl"\nfrom = "dte@empresa.cl"\nsmtp_tls = "tls"', "delivery.smtp_tls"),
    ('from = "dte@empresa.cl"', "delivery.smtp_host"),
    ('smtp_host = "smtp.empresa.cl"\nfrom = "dte@empresa.cl"\n[delivery.receptors]\n"77123456-0" = "a@b.cl"',
     "delivery.receptors.77123456-0"),
    (('smtp_host = "smtp.empresa.cl"\nfrom = "dte@empresa.cl"\n[delivery.imap]\nhost = "imap.empresa.cl"\n'
      'user = "dte"\npassword = "clave"'), "delivery.imap.password"),
])
def test_bad_delivery_settings_name_their_key(tmp_path, text, key):
    with pytest.raises(DteSyncError) as err:
        config_with(tmp_path, "[delivery]\n" + text + "\n")
    assert err.value.code == "CONFIG_INVALID" and err.value.field == key


def test_a_virtual_station_needs_no_printer(tmp_path):
    config = config_with(tmp_path, '[[printing.stations]]\nname = "web"\nvirtual = true\n')
    assert config.printing.stations[0].virtual is True
