"""The one-dir PyInstaller build runs on a machine without Python (slow: one build per session)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sync import __version__

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def frozen(tmp_path_factory) -> Path:
    """packaging/build.sh into a temporary dist folder; returns the program's path."""
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        pytest.fail("PyInstaller is required for this test: pip install -e '.[build]' (.ci/run does it)")
    work = tmp_path_factory.mktemp("pyinstaller")
    result = subprocess.run(["bash", str(ROOT / "packaging" / "build.sh"), str(work / "dist"), str(work / "build")],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work / "dist" / "dtesync" / "dtesync"


def _no_python_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which no Python can be found: PATH is an empty folder, and nothing
    points at a Python installation (PYTHONHOME/PYTHONPATH unset, HOME elsewhere)."""
    bin_dir = tmp_path / "bin-without-python"
    bin_dir.mkdir(exist_ok=True)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    assert shutil.which("python3", path=env["PATH"]) is None and shutil.which("python", path=env["PATH"]) is None
    assert "PYTHONHOME" not in env and "PYTHONPATH" not in env
    return env


def test_frozen_program_prints_its_version(frozen, tmp_path):
    result = subprocess.run([str(frozen), "--version"], env=_no_python_env(tmp_path), capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"dtesync {__version__}"
    assert (frozen.parent / "_internal" / "VERSION").read_text().strip() == __version__


def test_frozen_program_runs_the_demo_end_to_end_without_python(frozen, tmp_path):
    env = _no_python_env(tmp_path)
    result = subprocess.run([str(frozen), "demo", str(tmp_path / "demo")], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads((tmp_path / "demo" / "outbox" / "33_factura-txt.status.json").read_text(encoding="utf-8"))
    assert status["state"] in ("signed", "queued", "sent", "accepted") and status["folio"]
    # The frozen program's own verifier (signature, TED, CAF, official XSD) accepts its output.
    verify = subprocess.run([str(frozen), "verify", "--config", str(tmp_path / "demo" / "dtesync.toml"),
                             str(tmp_path / "demo" / "outbox" / "39_boleta-xml.xml")], env=env, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_frozen_program_carries_schemas_examples_and_escpos_capabilities(frozen):
    internal = frozen.parent / "_internal"
    assert (internal / "sync" / "schemas" / "sii" / "EnvioDTE_v10.xsd").is_file()
    assert (internal / "sync" / "data" / "examples" / "33_factura.txt").is_file()
    assert json.loads((internal / "escpos" / "capabilities.json").read_text())["profiles"]["default"]
    if (ROOT / "printers").is_dir():
        assert (internal / "printers").is_dir()
