"""Shared fixtures: a generated sandbox (test company, certificate, CAFs) and its engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sync.config import load_config
from sync.runtime import open_engine
from sync.sandbox.build import create_sandbox

REPO = Path(__file__).resolve().parents[1]
# Subprocesses (`python -m sync ...`, runners) import this checkout, not whatever copy of the
# package the machine has installed.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
DATA = REPO / "tests" / "data"
SAMPLES = DATA / "sii"  # public SII samples vendored for the tests (tests/data/SOURCES.md)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    return create_sandbox(tmp_path_factory.mktemp("sandbox") / "sb", folios_per_type=300)


@pytest.fixture(scope="session")
def sandbox_config(sandbox):
    return load_config(sandbox.config_path)


@pytest.fixture(scope="session")
def engine(sandbox_config):
    return open_engine(sandbox_config)


def xmlsec1_verifies(path: Path, nth: int = 1) -> bool:
    """xmlsec1's verdict (the reference XMLDSig implementation) on the nth Signature of the
    file, using its KeyValue key; xmlsec1 checks one Signature per run."""
    assert shutil.which("xmlsec1"), "xmlsec1 is required (Debian package xmlsec1; .ci/run installs it)"
    cmd = ["xmlsec1", "--verify", "--id-attr:ID", "Documento", "--id-attr:ID", "SetDTE",
           "--node-xpath", f"(//*[local-name()='Signature'])[{nth}]", str(path)]
    return subprocess.run(cmd, capture_output=True).returncode == 0
