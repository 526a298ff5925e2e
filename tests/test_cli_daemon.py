"""`dtesync run`, `status` and `queue` on a real sandbox: what an admin sees and the exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_real import read_status, varied_inputs, wait_final
from sync.app import build_app
from sync.cli import main
from sync.config import load_config
from sync.journal import ClaimIntent, Journal
from sync.sandbox.build import create_sandbox

REPO = Path(__file__).resolve().parents[1]
BAD_RUT = ("[Encabezado.IdDoc]\nTipoDTE=33\n[Encabezado.Receptor]\nRUTRecep=77123456-0\nRznSocRecep=X\n"
           "GiroRecep=Comercio\nDirRecep=Calle 1\nCmnaRecep=Santiago\n[Detalle]\nNmbItem=P\nQtyItem=1\nPrcItem=1000\n")


def factura(n: int) -> bytes:
    item = next(i for i in varied_inputs(40, seed=n, bad_share=0.0, folders=("",)) if "33_factura.txt" in i.rel)
    return item.body


def processed_sandbox(root: Path) -> Path:
    """A sandbox whose daemon signed two facturas and rejected one bad file, then stopped."""
    sandbox = create_sandbox(root, folios_per_type=50)
    config = load_config(sandbox.config_path)
    daemon = build_app(config, stages=[], watch="events", scan_interval=1.0).daemon
    daemon.start()
    try:
        (sandbox.inbox / "F1.txt").write_bytes(factura(1))
        (sandbox.inbox / "F2.txt").write_bytes(factura(2))
        (sandbox.inbox / "MALO.txt").write_text(BAD_RUT, encoding="utf-8")
        for stem in ("F1", "F2", "MALO"):
            wait_until(lambda: (read_status(root / "outbox" / f"{stem}.status.json") or {}).get("state")
                       in ("signed", "rejected_input"))
        wait_until(daemon.idle)
    finally:
        daemon.stop()
    return sandbox.config_path


def wait_until(pred, timeout: float = 30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_status_prints_counts_folio_stock_and_last_errors(tmp_path: Path, capsys) -> None:
    config = processed_sandbox(tmp_path)
    capsys.readouterr()
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    assert ["signed", "2"] in lines and ["rejected_input", "1"] in lines
    assert any(line[:3] == ["TipoDTE", "33", "48"] for line in lines)  # 50 folios, 2 used
    assert any(line[:3] == ["TipoDTE", "39", "50"] for line in lines)
    assert "Folios pendientes de anulación: 0" in out
    assert "Últimos errores:" in out and "MALO.txt: RUT_INVALID" in out


def test_status_json_is_machine_readable(tmp_path: Path, capsys) -> None:
    config = processed_sandbox(tmp_path)
    capsys.readouterr()
    assert main(["status", "--config", str(config), "--json"]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert snap["counts"] == {"signed": 2, "rejected_input": 1}
    assert snap["steps"] == {"filed": 3}
    stock = {f["tipo_dte"]: f for f in snap["folios"]}
    assert (stock[33]["available"], stock[33]["next_folio"]) == (48, 3)
    assert snap["pending_annulment"] == 0
    assert snap["last_errors"][0]["source"] == "MALO.txt"
    assert snap["last_errors"][0]["errors"][0]["code"] == "RUT_INVALID"


def test_queue_lists_unfinished_documents_oldest_first(tmp_path: Path, capsys) -> None:
    sandbox = create_sandbox(tmp_path, folios_per_type=10)
    journal = Journal(tmp_path / "state" / "journal.sqlite3")  # what a killed daemon leaves behind
    ids = journal.begin_claims([ClaimIntent("", "A.txt", "A", ".txt", None, 10, 0o100644),
                                ClaimIntent("caja1", "B.json", "B", ".json", "caja1", 10, 0o100644)])
    journal.mark_claimed([(ids[0], "0" * 64)])
    journal.close()
    assert main(["queue", "--config", str(sandbox.config_path)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0][:4] == ["id", "archivo", "estación", "etapa"]
    assert rows[2][:5] == [str(ids[0]), "A.txt", "claimed", "received", "0"]
    assert rows[3][:5] == [str(ids[1]), "caja1/B.json", "caja1", "claiming", "received"]


def test_queue_of_a_fresh_install_says_it_is_empty(tmp_path: Path, capsys) -> None:
    sandbox = create_sandbox(tmp_path, folios_per_type=10)
    assert main(["queue", "--config", str(sandbox.config_path)]) == 0
    assert "Cola vacía" in capsys.readouterr().out


# --- `dtesync run` as a process -------------------------------------------------------------------
def start_run(config: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "sync", "run", "--config", str(config)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def signed_status(root: Path, name: str, body: bytes) -> dict:
    (root / "inbox" / f"{name}.tmp").write_bytes(body)
    os.rename(root / "inbox" / f"{name}.tmp", root / "inbox" / name)
    from daemon_real import Input

    return wait_final(root / "outbox", [Input(name, body, "signed")], timeout=60)[name]


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
def test_run_processes_a_dropped_file_and_stops_on_sigterm_with_exit_0(tmp_path: Path) -> None:
    sandbox = create_sandbox(tmp_path, folios_per_type=10)
    proc = start_run(sandbox.config_path)
    try:
        st = signed_status(tmp_path, "F1.txt", factura(1))
        assert (st["state"], st["tipo_dte"], st["folio"]) == ("signed", 33, 1)
        assert (tmp_path / "outbox" / "F1.xml").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not [p for p in (tmp_path / "state").rglob("work/*")]  # nothing left half-done
    logs = list((tmp_path / "state" / "logs").glob("*.log*"))
    assert logs and "signed" in "".join(p.read_text("utf-8", "replace") for p in logs)


def test_second_run_on_the_same_config_is_refused_with_daemon_already_running(tmp_path: Path) -> None:
    sandbox = create_sandbox(tmp_path, folios_per_type=10)
    first = start_run(sandbox.config_path)
    try:
        signed_status(tmp_path, "F1.txt", factura(1))  # the first one is up and holds the lock
        env = dict(os.environ, PYTHONPATH=str(REPO))
        second = subprocess.run([sys.executable, "-m", "sync", "run", "--config", str(sandbox.config_path)],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "DAEMON_ALREADY_RUNNING" in second.stderr and "Otro dtesync ya usa" in second.stderr
        assert first.poll() is None  # the first daemon is unaffected
        assert signed_status(tmp_path, "F2.txt", factura(2))["folio"] == 2
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 0


def test_a_daemon_without_an_uplink_never_loads_requests(tmp_path: Path) -> None:
    """About 13 MB of the daemon's memory budget (requests, urllib3 and charset_normalizer,
    which imports every codec): loaded only when [uplink] sends documents somewhere."""
    config = create_sandbox(tmp_path / "sb", folios_per_type=5).config_path
    code = ("import sys; from sync.app import product_stages; from sync.config import load_config; "
            "from sync.runtime import open_engine; c = load_config(sys.argv[1]); "
            "names = [type(s).__name__ for s in product_stages(c, open_engine(c))]; "
            "print('requests' in sys.modules, 'Uplink' in names)")
    out = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
    text = config.read_text("utf-8")
    config.write_text(text + '\n[uplink]\nkind = "sii"\nurl = "https://127.0.0.1:9/"\n', "utf-8")
    out = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]
