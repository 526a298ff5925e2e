"""`dtesync print` and `dtesync printers`, profiles and the [printing] configuration."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from escpos_decode import decode
from printing_fixtures import FakePrinter, free_port, read_pdf417
from sync.cli import main
from sync.cli.printing import sample_payload
from sync.config import parse_config
from sync.errors import DteSyncError
from sync.printing.profiles import builtin_names, load_profile
from sync.printing.queue import FILE_NAME, PrintQueue
from sync.printing.rules import DESIGN_TED_BYTES

ROOT = Path(__file__).resolve().parents[1]


def _config_file(sandbox, tmp_path: Path, port: int, profile: str = "generic-58mm") -> Path:
    text = sandbox.config_path.read_text(encoding="utf-8")
    text = text.replace('state = "state"', f'state = "{tmp_path / "state"}"').replace(
        'outbox = "outbox"', f'outbox = "{tmp_path / "outbox"}"')
    text += (
        "\n[printing]\nsii_unidad = \"ÑUÑOA\"\ndefault_station = \"caja1\"\n"
        f"[[printing.stations]]\nname = \"caja1\"\nprofile = \"{profile}\"\ntypes = [39, 41]\n"
        f"connector = {{ type = \"tcp\", host = \"127.0.0.1\", port = {port}, timeout = 1 }}\n"
    )
    path = sandbox.root / f"print-{tmp_path.name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_printers_test_prints_a_full_size_timbre_and_says_how(sandbox, tmp_path, capsys):
    printer = FakePrinter()
    cfg = _config_file(sandbox, tmp_path, printer.port)
    assert main(["printers", "test", "--config", str(cfg)]) == 0
    p = load_profile("generic-58mm")
    d = decode(printer.wait_jobs(1)[0], {p.code_page_number: p.code_page})
    assert "\n Ñandú Peñalolén ¿áéíóú ü?\n 25° N° $1.990\n" in d.text and d.rasters  # 5 mm off the edge
    assert "\n " + ("1234567890" * 4)[: p.text_columns] + "\n" in d.text
    [ted] = [b.bytes for b in read_pdf417(d.rasters[0])]
    assert ted == sample_payload("caja1", DESIGN_TED_BYTES)  # as big as a real timbre gets
    out = capsys.readouterr().out
    assert "OK   caja1" in out and "imagen (GS v 0)" in out and "impresora: lista" in out


def test_printers_test_finds_out_a_printer_without_gs_k(sandbox, tmp_path, capsys):
    printer = FakePrinter(gs_k=False)
    cfg = _config_file(sandbox, tmp_path, printer.port, profile="epson-tm-t88")
    assert main(["printers", "test", "--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "no respondió a GS ( k" in out and "native_pdf417 = false" in out
    assert printer.wait(lambda p: p.idle() and b"\x1dv0" in p.paper)  # the test page came out, as an image
    p = load_profile("epson-tm-t88")
    d = printer.printed(p)
    assert [b.bytes for img in d.rasters for b in read_pdf417(img)] == [
        sample_payload("caja1", DESIGN_TED_BYTES)]


def test_printers_test_confirms_native_pdf417(sandbox, tmp_path, capsys):
    printer = FakePrinter()
    cfg = _config_file(sandbox, tmp_path, printer.port, profile="epson-tm-t88")
    assert main(["printers", "test", "--config", str(cfg)]) == 0
    assert "PDF417 de la impresora (GS ( k), confirmado" in capsys.readouterr().out


def test_printers_test_reports_paper_out(sandbox, tmp_path, capsys):
    printer = FakePrinter()
    printer.set(paper_out=True)
    cfg = _config_file(sandbox, tmp_path, printer.port)
    assert main(["printers", "test", "--config", str(cfg)]) == 1
    assert "FAIL caja1" in (out := capsys.readouterr().out) and "sin papel" in out
    assert printer.paper == b""


def test_print_name_reprints_from_the_outbox_xml(sandbox, tmp_path, engine):
    printer = FakePrinter()
    cfg = _config_file(sandbox, tmp_path, printer.port)
    issued = engine.issue((ROOT / "sync/data/examples/39_boleta.txt").read_bytes(), "R.txt", doc_key="printing-cli:1")
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / "R.xml").write_bytes(issued.dte_xml)
    assert main(["print", "R", "--config", str(cfg)]) == 0
    assert main(["print", str(tmp_path / "outbox" / "R.xml"), "--config", str(cfg), "--station", "caja1"]) == 0
    jobs = printer.wait_jobs(2)
    p = load_profile("generic-58mm")
    for job in jobs:
        d = decode(job, {p.code_page_number: p.code_page})
        assert "S.I.I. - ÑUÑOA" in d.text and "REIMPRESIÓN" in d.text  # a copy says so
        assert [b.bytes for b in read_pdf417(d.rasters[0])] == [issued.ted]


def test_print_to_a_printer_that_is_down_queues_the_job(sandbox, tmp_path, engine):
    cfg = _config_file(sandbox, tmp_path, free_port())
    issued = engine.issue((ROOT / "sync/data/examples/41_boleta_exenta.txt").read_bytes(), "D.txt", doc_key="printing-cli:2")
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / "D.xml").write_bytes(issued.dte_xml)
    assert main(["print", "D", "--config", str(cfg)]) == 1
    q = PrintQueue(tmp_path / "state" / FILE_NAME)
    jobs = q.jobs("pending")
    q.close()
    assert len(jobs) == 1 and jobs[0].station == "caja1"


def test_unknown_station_is_a_usage_error(sandbox, tmp_path):
    cfg = _config_file(sandbox, tmp_path, free_port())
    assert main(["printers", "test", "--station", "nope", "--config", str(cfg)]) == 2


def test_shipped_profiles_are_a_copy_of_printers_folder():
    src = sorted(p.name for p in (ROOT / "printers").glob("*.toml"))
    assert src == sorted(f"{n}.toml" for n in builtin_names()) and {"generic-58mm.toml", "generic-80mm.toml"} <= set(src)
    _, mismatch, errors = filecmp.cmpfiles(ROOT / "printers", ROOT / "sync/data/printers", src, shallow=False)
    assert not mismatch and not errors, "run tools/sync_printer_profiles.py"
    for name in builtin_names():
        load_profile(name)


def test_profile_widths_match_58_and_80_mm():
    assert (load_profile("generic-58mm").width_dots, load_profile("generic-80mm").width_dots) == (384, 576)


def test_profiles_default_to_raster_and_boletas_get_more_than_200_dpi():
    for name in builtin_names():
        p = load_profile(name)
        assert p.native_pdf417 == name.startswith("epson-"), name  # only models known to draw GS ( k
    current = load_profile("epson-tm-t88")
    assert (current.dpi, current.width_dots) == (203, 576)  # TM-T88 of the current generation
    assert load_profile("epson-tm-t88v").dpi == 180  # the older TM-T88IV/V: check says it is not for boletas
    with pytest.raises(DteSyncError) as e:
        load_profile("no-such-printer")
    assert e.value.code == "PRINTER_PROFILE_UNKNOWN"


@pytest.mark.parametrize("printing, field", [
    ({"stations": [{"name": "a", "connector": {"type": "telnet"}}]}, "printing.stations[0].connector"),
    ({"stations": [{"name": "a", "connector": {"type": "tcp"}}] * 2}, "printing.stations[1].name"),
    ({"default_station": "x"}, "printing.default_station"),
    ({"sheet": "oficio"}, "printing.sheet"),
])
def test_bad_printing_config_names_the_key(printing, field, sandbox):
    import tomllib

    data = tomllib.loads(sandbox.config_path.read_text(encoding="utf-8"))
    data["printing"] = printing
    with pytest.raises(DteSyncError) as e:
        parse_config(data, base=sandbox.root)
    assert e.value.code == "CONFIG_INVALID" and e.value.field == field
