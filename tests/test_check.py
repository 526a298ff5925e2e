"""`dtesync check` names every problem of a broken installation, with its fix (one breakage per test)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
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
    config.write_text(config.read_text(encoding="utf-8") + "\n[alerts]\ncaf_stock_min = 500\n", encoding="utf-8")
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


def test_a_virtual_station_has_no_printer_to_check(site):
    config = site / "dtesync.toml"
    config.write_text(config.read_text(encoding="utf-8") + '\n[[printing.stations]]\nname = "web"\nvirtual = true\n',
                      encoding="utf-8")
    code, out = check(site)
    assert code == 0, out
    assert lines_with(out, OK, "impresora web: estación virtual")


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


# --- who may read what: the rules `dtesync run` applies too (sync.exposure) ------------------------
@pytest.mark.parametrize("rel, loose, fix", [
    ("cert/empresa-demo.pfx", 0o644, "chmod 600"),
    ("caf", 0o755, "chmod 700"),
    ("caf/CAF_T33_1-200.xml", 0o640, "chmod 600"),
    ("state", 0o750, "chmod 700"),
])
def test_key_holder_others_may_read_is_a_warning_with_its_chmod(site, rel, loose, fix):
    path = site / rel
    path.chmod(loose)
    code, out = check(site)
    [hit] = lines_with(out, WARN, f"permisos {path}")
    assert code == 0 and f"modo {loose:o}" in hit and f"solución: {fix} {path} && chown dtesync {path}" in hit
    assert not lines_with(out, OK, "permisos:")


def test_state_database_others_may_read_is_a_warning(site):
    from sync.folios.store import FolioStore

    db = site / "state" / "folios.sqlite"
    FolioStore(db).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600  # created private ...
    db.chmod(0o644)  # ... loosened by hand
    _, out = check(site)
    [hit] = lines_with(out, WARN, f"permisos {db}:")
    assert "la base de folios guarda los CAF" in hit and f"solución: chmod 600 {db}" in hit


def test_outbox_open_to_every_user_is_a_warning_group_access_is_not(site):
    (site / "outbox").chmod(0o770)
    assert not lines_with(check(site)[1], WARN, "permisos")
    (site / "outbox").chmod(0o755)
    [hit] = lines_with(check(site)[1], WARN, f"permisos {site / 'outbox'}")
    assert "otros usuarios del equipo pueden leerlo" in hit and f"solución: chmod 750 {site / 'outbox'} (" in hit


def test_private_sandbox_reports_permissions_ok(site):
    assert "OK   permisos: certificado, CAF y estado solo para su dueño" in check(site)[1]


def _uplink(site: Path, body: str) -> Path:
    config = site / "dtesync.toml"
    config.write_text(config.read_text(encoding="utf-8") + "\n" + body, encoding="utf-8")
    return config


def _offline(host, port, **kw):
    raise OSError(-2, "Name or service not known")


def test_provider_token_others_may_read_fails_check_as_it_stops_run(site):
    from sync.config import load_config
    from sync.errors import DteSyncError
    from sync.uplink.build import build_uplink

    token = site / "cert" / "token.txt"
    token.write_text("secreto\n")
    token.chmod(0o640)
    path = _uplink(site, '[uplink]\nkind = "http"\n[uplink.http]\nurl = "https://proveedor.invalid/api"\n'
                         'token = { file = "cert/token.txt" }\n')
    [hit] = [f for f in run_checks(path, probes=Probes(resolve=_offline)) if f.subject == "uplink.http.token"]
    assert hit.level == FAIL and "0o640" in hit.message and hit.fix == f"chmod 600 {token} && chown dtesync {token}"
    with pytest.raises(DteSyncError) as refused:
        build_uplink(load_config(path), certificate=None)  # what `dtesync run` builds
    assert refused.value.code == "SECRET_FILE_INSECURE" and refused.value.found == str(token)
    token.chmod(0o600)
    [ok] = [f for f in run_checks(path, probes=Probes(resolve=_offline)) if f.subject == "uplink.http.token"]
    assert ok.level == OK and "secreto" not in ok.message


def test_http_provider_url_fails_check_with_the_code_run_refuses_it_with(site):
    token = site / "cert" / "token.txt"
    token.write_text("secreto\n")
    token.chmod(0o600)
    path = _uplink(site, '[uplink]\nkind = "http"\n[uplink.http]\nurl = "http://usuario:clave@proveedor.invalid/api?k=1"\n'
                         'token = { file = "cert/token.txt" }\n')
    [hit] = [f for f in run_checks(path, probes=Probes(resolve=_offline)) if f.subject == "uplink.http.url"]
    assert hit.level == FAIL and hit.message.startswith("URL_INSECURE: 'uplink.http.url' usa http://")
    assert "http://proveedor.invalid/api" in hit.message and "clave" not in hit.message and "k=1" not in hit.message
    assert "use https://" in hit.fix


def test_http_sii_url_of_a_sii_uplink_fails_check(site):
    path = _uplink(site, '[uplink]\nkind = "sii"\nurl = "http://10.0.0.5:8080"\n')
    [hit] = [f for f in run_checks(path, probes=Probes(resolve=_offline)) if f.subject == "uplink.url"]
    assert hit.level == FAIL and "URL_INSECURE" in hit.message


def test_http_to_this_machine_is_accepted_as_fake_sii_needs(site):
    path = _uplink(site, '[uplink]\nkind = "sii"\nurl = "http://127.0.0.1:8080"\n')
    findings = run_checks(path, probes=Probes(resolve=_offline))
    assert not [f for f in findings if f.subject.startswith("uplink.url")]


def test_other_http_urls_in_the_configuration_are_warnings(site):
    path = _uplink(site, '[alerts.webhook]\nurl = "http://hooks.invalid/dtesync"\n'
                         '[uplink]\nkind = "none"\nsii_url = "http://maullin.invalid"\n')
    findings = {f.subject: f for f in run_checks(path, probes=Probes(resolve=_offline))}
    assert findings["alerts.webhook.url"].level == WARN and "viaja sin cifrar" in findings["alerts.webhook.url"].message
    assert findings["uplink.sii_url"].level == WARN  # the uplink is off: `run` does not use it
