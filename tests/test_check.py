"""`dtesync check` names every problem of a broken installation, with its fix (one breakage per test)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from sync.check import FAIL, OK, WARN, Probes, run_checks
from sync.cli import main
from sync.rut import Rut
from sync.sandbox.build import DEMO_NAME, DEMO_RUT, create_sandbox
from sync.sandbox.caf_factory import make_caf
from sync.sandbox.cert_factory import make_test_certificate


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return create_sandbox(tmp_path_factory.mktemp("check") / "sb", folios_per_type=200).root


@pytest.fixture
def site(base, tmp_path) -> Path:
    """A private copy of the sandbox, to break."""
    root = tmp_path / "site"
    shutil.copytree(base, root)
    return root


def check(root: Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["check", "--config", str(root / "dtesync.toml")])
    return code, out.getvalue()


def lines_with(output: str, level: str, text: str) -> list[str]:
    """The finding lines of `level` mentioning `text`, each with its fix line (if any) appended."""
    lines = output.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.startswith(level) and text in line:
            fix = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("     ") else ""
            found.append(line + "\n" + fix)
    return found


def test_intact_sandbox_passes_every_check(site):
    code, out = check(site)
    assert code == 0, out
    assert not lines_with(out, FAIL, "") and "OK   certificado: EMPRESA DEMO DTESYNC, RUT 76543210-3" in out


def test_wrong_certificate_password_is_named_with_its_fix(site):
    (site / "cert" / "password.txt").write_text("not-the-password\n")
    code, out = check(site)
    [hit] = lines_with(out, FAIL, "certificado")
    assert code == 1 and "contraseña del certificado es incorrecta" in hit
    assert "solución: la contraseña en" in hit and "password.txt no abre" in hit


def test_expired_certificate_reports_rut_expiry_and_renewal(site):
    password = (site / "cert" / "password.txt").read_text().strip()
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    (site / "cert" / "empresa-demo.pfx").write_bytes(make_test_certificate(
        DEMO_RUT, "EMPRESA VENCIDA", not_before=start, not_after=start + timedelta(days=365), password=password))
    code, out = check(site)
    [hit] = lines_with(out, FAIL, "certificado")
    assert code == 1 and "EMPRESA VENCIDA, RUT 76543210-3, vence 2020-12-31" in hit and "venció" in hit
    assert "solución: renueve el certificado" in hit


def test_caf_of_another_company_is_named_with_its_fix(site):
    other = Rut.parse("11111111-1")
    (site / "caf" / "CAF_otra.xml").write_bytes(make_caf(other, "Otra Empresa Ltda", 33, 5000, 5099, date.today()))
    code, out = check(site)
    [hit] = lines_with(out, FAIL, "CAF CAF_otra.xml")
    assert code == 1 and "es de la empresa 11111111-1 (Otra Empresa Ltda), no de 76543210-3" in hit
    assert "solución: saque CAF_otra.xml" in hit


def test_expired_caf_leaving_a_type_without_folios_fails_that_type(site):
    for f in (site / "caf").glob("CAF_T33_*.xml"):
        f.unlink()
    fa = date.today() - timedelta(days=250)  # TipoDTE 33 CAFs expire after 6 months
    (site / "caf" / "CAF_T33_viejo.xml").write_bytes(make_caf(DEMO_RUT, DEMO_NAME, 33, 1, 100, fa))
    code, out = check(site)
    [hit] = lines_with(out, FAIL, "CAF TipoDTE 33")
    assert code == 1 and "CAF vencido CAF_T33_viejo.xml" in hit and "solución: solicite un CAF nuevo" in hit
    assert lines_with(out, OK, "CAF TipoDTE 39")  # the other types are unaffected


def test_type_without_any_caf_is_named_when_listed_in_check_tipos_dte(site):
    for f in (site / "caf").glob("CAF_T61_*.xml"):
        f.unlink()
    config = site / "dtesync.toml"
    config.write_text(config.read_text(encoding="utf-8") + "\n[check]\ntipos_dte = [33, 39, 61]\n", encoding="utf-8")
    code, out = check(site)
    [hit] = lines_with(out, FAIL, "CAF TipoDTE 61")
    assert code == 1 and "no hay CAF para este tipo de documento" in hit and "dtesync caf import" in hit


def test_low_folio_stock_is_a_warning_not_a_failure(site):
    config = site / "dtesync.toml"
    config.write_text(config.read_text(encoding="utf-8") + "\n[check]\nmin_folios = 500\n", encoding="utf-8")
    code, out = check(site)
    assert code == 0 and lines_with(out, WARN, "CAF TipoDTE 33")[0].count("(menos de 500)") == 1


def test_missing_inbox_is_named_with_its_fix(site):
    (site / "inbox").rmdir()
    code, out = check(site)
    [hit] = lines_with(out, FAIL, "folders.inbox")
    assert code == 1 and f"{site / 'inbox'} no existe" in hit and f"solución: créela (mkdir -p {site / 'inbox'})" in hit


def _run_unprivileged(root: Path) -> tuple[int, str]:
    """`dtesync check` as an ordinary user: as root, in a forked child that dropped to nobody
    (root writes anywhere, so only a real unprivileged process can find an unwritable folder)."""
    if os.geteuid() != 0:
        return check(root)
    check(root)  # warm every import: the child cannot read root's site-packages
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 99
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code, out = check(root)
            os.write(w, out.encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        out = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_unwritable_outbox_is_named_with_its_fix(base):
    root = Path(tempfile.mkdtemp(prefix="dtesync-check-")) / "site"
    try:
        shutil.copytree(base, root)
        if os.geteuid() == 0:
            for p in [root.parent, *root.rglob("*"), root]:
                os.chown(p, 65534, 65534, follow_symlinks=False)
            os.chown(root / "outbox", 0, 0)  # owned by someone else ...
        (root / "outbox").chmod(0o555)  # ... and read-only
        code, out = _run_unprivileged(root)
        [hit] = lines_with(out, FAIL, "folders.outbox")
        assert code == 1 and "no se puede escribir ni renombrar (Permission denied)" in hit
        assert "solución: dé permiso de escritura" in hit and "chown -R dtesync:dtesync" in hit
        assert lines_with(out, OK, "folders.inbox")
    finally:
        (root / "outbox").chmod(0o755)
        shutil.rmtree(root.parent, ignore_errors=True)


def test_invalid_toml_is_reported_with_its_line(site):
    config = site / "dtesync.toml"
    lines = config.read_text(encoding="utf-8").splitlines()
    n = next(i for i, line in enumerate(lines, 1) if line.startswith("giro ="))
    lines[n - 1] = 'giro = "Venta al por mayor'  # unterminated string
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out = check(site)
    [hit] = lines_with(out, FAIL, f"{config}:{n}")
    assert code == 1 and f"TOML inválido en la línea {n}" in hit and "'giro = \"Venta al por mayor'" in hit
    assert f"solución: corrija la línea {n} de {config}" in hit


def test_invalid_value_names_the_key_and_its_line(site):
    config = site / "dtesync.toml"
    text = config.read_text(encoding="utf-8").replace('rut = "76543210-3"', 'rut = "76543210-4"')
    config.write_text(text, encoding="utf-8")
    n = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("rut ="))
    code, out = check(site)
    [hit] = lines_with(out, FAIL, "clave 'company.rut'")
    assert code == 1 and hit.startswith(f"FAIL {config}:{n}: clave 'company.rut': RUT inválido")
    assert f"solución: corrija 'company.rut' en {config} (línea {n})" in hit


def test_unreachable_network_printer_is_named_with_its_fix(site):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    config = site / "dtesync.toml"
    config.write_text(config.read_text(encoding="utf-8") + f'\n[[printing.stations]]\nname = "caja1"\n'
                      f'connector = {{ type = "tcp", host = "127.0.0.1", port = {port} }}\n', encoding="utf-8")
    code, out = check(site)
    [hit] = lines_with(out, FAIL, "impresora caja1")
    assert code == 1 and f"127.0.0.1:{port}" in hit and "solución: encienda la impresora" in hit


@pytest.fixture
def printer_port():
    """A local port that accepts connections: a printer that is there."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    yield listener.getsockname()[1]
    listener.close()


def _station(site: Path, port: int, profile: str, extra: str = "") -> None:
    config = site / "dtesync.toml"
    config.write_text(config.read_text(encoding="utf-8") + f'\n[[printing.stations]]\nname = "caja1"\n'
                      f'profile = "{profile}"\n{extra}'
                      f'connector = {{ type = "tcp", host = "127.0.0.1", port = {port} }}\n', encoding="utf-8")


def test_a_58mm_station_that_could_get_facturas_is_refused_with_its_fix(site, printer_port):
    _station(site, printer_port, "generic-58mm")
    code, out = check(site)
    [hit] = lines_with(out, FAIL, "impresora caja1")
    assert code == 1 and "7,5 cm" in hit and "facturas" in hit and "types = [39, 41]" in hit


def test_a_58mm_station_for_boletas_only_passes(site, printer_port):
    _station(site, printer_port, "generic-58mm", "types = [39, 41]\n")
    code, out = check(site)
    assert code == 0, out
    assert lines_with(out, OK, "impresora caja1: perfil generic-58mm (58 mm, 203 dpi): boletas")


def test_a_180_dpi_printer_is_refused_for_boletas_and_facturas(site, printer_port):
    _station(site, printer_port, "epson-tm-t88v")
    code, out = check(site)
    hits = lines_with(out, FAIL, "impresora caja1")
    assert code == 1 and len(hits) == 2
    assert any("180 dpi" in h and "200 dpi" in h and "74/2020" in h for h in hits)
    assert any("4 × 9 cm" in h for h in hits)


def test_an_80mm_203_dpi_station_may_print_every_type(site, printer_port):
    _station(site, printer_port, "generic-80mm")
    code, out = check(site)
    assert code == 0, out
    assert lines_with(out, OK, "boletas, facturas, notas y guías")


def test_uplink_dns_failure_is_named_with_its_fix(sandbox_config, tmp_path):
    def no_dns(host, port, **kw):
        raise OSError(-2, "Name or service not known")

    config_text = sandbox_config.path.read_text(encoding="utf-8") + '\n[uplink]\nurl = "https://sii.invalid"\n'
    path = sandbox_config.path.parent / "check-uplink.toml"
    path.write_text(config_text, encoding="utf-8")
    try:
        findings = run_checks(path, probes=Probes(resolve=no_dns))
    finally:
        path.unlink()
    [hit] = [f for f in findings if f.subject == "uplink sii.invalid"]
    assert hit.level == FAIL and "DNS" in hit.message and "revise la conexión a internet" in hit.fix
