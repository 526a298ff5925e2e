"""The engine end to end: every shipped example becomes a DTE that xmlsec1 and the official
XSDs accept, alone and enveloped; every way to go wrong is a precise typed error."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest
from lxml import etree

from conftest import xmlsec1_verifies
from sync import schema
from sync.engine import Engine, Request
from sync.errors import DteSyncError, DteSyncErrors
from sync.folios.store import FolioStore
from sync.runtime import load_certificate
from sync.rut import Rut
from sync.sandbox.build import DEMO_RUT, examples_dir
from sync.sandbox.caf_factory import default_fake_sii
from sync.sandbox.cert_factory import make_test_certificate
from sync.signed import SignedDte
from sync.signing import load_pkcs12
from sync.timbre import ted_bytes, verify_ted

EXAMPLES = sorted(p for p in examples_dir().iterdir() if p.suffix in (".txt", ".json", ".xml"))
FACTURA = (examples_dir() / "33_factura.txt").read_bytes()
NOTA_CREDITO = (examples_dir() / "61_nota_credito.txt").read_bytes()


def codes(exc_info) -> list[str]:
    exc = exc_info.value
    return [e.code for e in exc.errors] if isinstance(exc, DteSyncErrors) else [exc.code]


def fresh_engine(sandbox_config, tmp_path, *, cafs=(), certificate=None) -> Engine:
    """An engine over an empty folio store holding only `cafs` (bytes)."""
    store = FolioStore(tmp_path / "folios.sqlite")
    for data in cafs:
        store.import_caf(data, DEMO_RUT, date.today(), trusted_keys=default_fake_sii().trusted_keys)
    cert = certificate or load_certificate(sandbox_config)
    return Engine.from_config(sandbox_config, store, cert)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_signs_and_verifies_with_xmlsec1_and_the_xsd(engine, example, tmp_path):
    issued = engine.issue(example.read_bytes(), example.name, doc_key=f"test:{example.name}")
    path = tmp_path / "dte.xml"
    path.write_bytes(issued.dte_xml)
    assert xmlsec1_verifies(path)
    reparsed = etree.fromstring(issued.dte_xml)
    assert schema.schema_errors(reparsed) == []
    assert issued.dte_xml.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.suffix == ".txt"], ids=lambda p: p.name)
def test_each_dte_signature_also_verifies_inside_its_envelope(engine, example, tmp_path):
    issued = engine.issue(example.read_bytes(), example.name, doc_key=f"env:{example.name}")
    envelope = engine.envelope([issued])
    path = tmp_path / "envio.xml"
    path.write_bytes(envelope)
    root = etree.fromstring(envelope)
    assert schema.schema_errors(root) == []
    assert xmlsec1_verifies(path, 1)  # the DTE's own signature, in context
    assert xmlsec1_verifies(path, 2)  # the SetDTE signature


def test_ted_verifies_and_is_the_pdf417_payload(engine):
    issued = engine.issue(FACTURA, "33_factura.txt", doc_key="ted-check")
    ted = issued.dte.find(".//{*}TED")
    assert verify_ted(ted, extra_keys=default_fake_sii().trusted_keys) == []
    assert issued.ted == ted_bytes(ted)
    assert issued.ted.startswith(b'<TED version="1.0"><DD><RE>76543210-3</RE><TD>33</TD>')


HEADER = ("tipo_dte", "folio", "rut_emisor", "rut_receptor", "fch_emis", "monto_total", "mnt_neto", "mnt_exe", "iva",
          "rzn_soc_recep", "dte_xml", "ted")


@pytest.mark.parametrize("example", ["33_factura.txt", "34_factura_exenta.txt", "39_boleta.txt"])
def test_the_engine_returns_the_signed_dte_every_stage_would_read_back_from_its_xml(engine, example):
    issued = engine.issue((examples_dir() / example).read_bytes(), example, doc_key=f"signed:{example}")
    assert isinstance(issued, SignedDte)
    read_back = SignedDte.from_xml(issued.dte_xml)
    assert {f: getattr(issued, f) for f in HEADER} == {f: getattr(read_back, f) for f in HEADER}
    assert issued.documento.encabezado.totales.mnt_total == issued.monto_total  # the model, not re-parsed
    assert issued.tree is issued.dte and etree.tostring(issued.dte, method="c14n") == issued.dte_c14n


def test_the_same_doc_key_gets_the_same_folio_never_a_second_one(engine):
    first = engine.issue(FACTURA, "a.txt", doc_key="same-key")
    again = engine.issue(FACTURA, "a.txt", doc_key="same-key")
    other = engine.issue(FACTURA, "b.txt", doc_key="other-key")
    assert first.folio == again.folio
    assert other.folio != first.folio


def test_company_defaults_fill_the_emisor_the_erp_omitted(engine):
    issued = engine.issue((examples_dir() / "34_factura_exenta.txt").read_bytes(), "34.txt", doc_key="defaults")
    emisor = issued.documento.encabezado.emisor
    assert emisor.rut_emisor == DEMO_RUT
    assert emisor.rzn_soc == "Ferretería Los Aromos SpA"
    assert emisor.acteco == [466301]


def test_station_branch_fills_sucursal(engine):
    issued = engine.issue(FACTURA.replace(b"CiudadOrigen=Santiago\n", b""), "s.txt", doc_key="branch", station="caja1")
    assert issued.documento.encabezado.emisor.cdg_sii_sucur == 81234567


def test_iva_follows_round_half_up_in_the_signed_xml(engine):
    txt = b"[Encabezado.IdDoc]\nTipoDTE=33\nFmaPago=1\n[Encabezado.Receptor]\nRUTRecep=77123456-9\nRznSocRecep=Cliente\n" \
          b"GiroRecep=Comercio\nDirRecep=Calle 1\nCmnaRecep=Santiago\n[Detalle]\nNmbItem=Servicio\nQtyItem=1\nPrcItem=33655\n"
    issued = engine.issue(txt, "iva.txt", doc_key="iva-rule")
    xml = issued.dte_xml.decode("iso-8859-1")
    assert "<MntNeto>33655</MntNeto>" in xml and "<IVA>6394</IVA>" in xml and "<MntTotal>40049</MntTotal>" in xml


def test_nota_de_credito_without_referencia_is_rejected_before_taking_a_folio(engine):
    without = re.sub(rb"\[Referencia\][^\[]*", b"", NOTA_CREDITO)
    before = engine.folios.stock(date.today())
    with pytest.raises(DteSyncErrors) as exc:
        engine.issue(without, "nc.txt", doc_key="nc-no-ref")
    assert codes(exc) == ["REFERENCIA_REQUIRED"]
    assert engine.folios.stock(date.today()) == before


def test_inconsistent_totals_are_rejected_naming_the_field(engine):
    bad = FACTURA + b"\n[Encabezado.Totales]\nMntTotal=1\n"
    with pytest.raises(DteSyncErrors) as exc:
        engine.issue(bad, "tot.txt", doc_key="bad-totals")
    errors = exc.value.errors
    assert [e.code for e in errors] == ["TOTALS_INCONSISTENT"]
    assert errors[0].field == "MntTotal" and str(errors[0].found) == "1"


def test_rut_emisor_of_another_company_is_rejected(engine):
    bad = FACTURA.replace(b"RUTEmisor=76543210-3", b"RUTEmisor=" + str(Rut.of(77777777)).encode())
    with pytest.raises(DteSyncErrors) as exc:
        engine.issue(bad, "emisor.txt", doc_key="other-emisor")
    assert codes(exc) == ["EMISOR_MISMATCH"]


def test_missing_required_receptor_field_is_reported_with_its_path(engine):
    bad = FACTURA.replace(b"RznSocRecep=Constructora Pe\xc3\xb1alol\xc3\xa9n Ltda.\n", b"")
    with pytest.raises(DteSyncErrors) as exc:
        engine.issue(bad, "req.txt", doc_key="missing-rzn")
    err = exc.value.errors[0]
    assert (err.code, err.field, err.path) == ("FIELD_REQUIRED", "RznSocRecep", "Documento/Encabezado/Receptor/RznSocRecep")


def test_no_caf_for_the_type_is_a_clear_error(sandbox_config, tmp_path):
    engine = fresh_engine(sandbox_config, tmp_path)
    with pytest.raises(DteSyncError) as exc:
        engine.issue(FACTURA, "f.txt", doc_key="k")
    assert exc.value.code == "CAF_MISSING" and exc.value.params["tipo_dte"] == 33


def test_exhausted_folios_are_a_clear_error(sandbox_config, tmp_path):
    caf = default_fake_sii().make_caf(DEMO_RUT, "X", 33, 1, 2, date.today())
    engine = fresh_engine(sandbox_config, tmp_path, cafs=[caf])
    engine.issue(FACTURA, "1.txt", doc_key="1")
    engine.issue(FACTURA, "2.txt", doc_key="2")
    with pytest.raises(DteSyncError) as exc:
        engine.issue(FACTURA, "3.txt", doc_key="3")
    assert exc.value.code == "FOLIOS_EXHAUSTED"


def test_expired_caf_is_a_clear_error(sandbox_config, tmp_path):
    old = date.today() - timedelta(days=200)
    store = FolioStore(tmp_path / "f.sqlite")
    caf = default_fake_sii().make_caf(DEMO_RUT, "X", 33, 1, 5, old)
    store.import_caf(caf, DEMO_RUT, old, trusted_keys=default_fake_sii().trusted_keys)
    engine = Engine.from_config(sandbox_config, store, load_certificate(sandbox_config))
    with pytest.raises(DteSyncError) as exc:
        engine.issue(FACTURA, "f.txt", doc_key="k")
    assert exc.value.code == "CAF_EXPIRED"


def test_caf_of_another_company_is_refused_at_import(tmp_path):
    store = FolioStore(tmp_path / "f.sqlite")
    other = default_fake_sii().make_caf(Rut.of(77777777), "Otra SpA", 33, 1, 5, date.today())
    with pytest.raises(DteSyncError) as exc:
        store.import_caf(other, DEMO_RUT, date.today())
    assert exc.value.code == "CAF_OTHER_COMPANY"


def test_input_folio_must_lie_in_a_loaded_caf(engine):
    bad = FACTURA.replace(b"TipoDTE=33\n", b"TipoDTE=33\nFolio=999999\n")
    with pytest.raises(DteSyncError) as exc:
        engine.issue(bad, "f.txt", doc_key="folio-outside")
    assert exc.value.code == "FOLIO_NOT_IN_CAF"


def test_expired_certificate_is_refused_with_its_date():
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    data = make_test_certificate(DEMO_RUT, "VIEJO", not_before=start, not_after=start + timedelta(days=365), password="x")
    with pytest.raises(DteSyncError) as exc:
        load_pkcs12(data, "x", now=datetime.now(timezone.utc))
    assert exc.value.code == "CERT_EXPIRED"


def test_wrong_certificate_password_is_refused(sandbox):
    data = (sandbox.root / "cert" / "empresa-demo.pfx").read_bytes()
    with pytest.raises(DteSyncError) as exc:
        load_pkcs12(data, "not-the-password", now=datetime.now(timezone.utc))
    assert exc.value.code == "CERT_PASSWORD"


def test_boleta_without_receptor_is_issued_to_the_anonymous_rut(engine):
    issued = engine.issue((examples_dir() / "39_boleta.txt").read_bytes(), "b.txt", doc_key="boleta-anon")
    assert b"<RR>66666666-6</RR>" in issued.ted


# --- batches ------------------------------------------------------------------------------------


def test_a_batch_issues_each_input_with_its_own_folio_and_signature(engine, tmp_path):
    inputs = [e for e in EXAMPLES if e.suffix == ".txt"]
    requests = [Request(e.read_bytes(), e.name, f"batch:{e.name}") for e in inputs]
    outcomes = engine.issue_many(requests)
    assert all(isinstance(o, SignedDte) for o in outcomes), outcomes
    for i, issued in enumerate(outcomes):
        path = tmp_path / f"{i}.xml"
        path.write_bytes(issued.dte_xml)
        assert xmlsec1_verifies(path)
        assert engine.folios.state_of(issued.tipo_dte, issued.folio) == "used"
    keys = [(o.tipo_dte, o.folio) for o in outcomes]
    assert len(set(keys)) == len(keys)


def test_a_bad_input_in_a_batch_gets_its_error_and_burns_no_folio(engine):
    bad = FACTURA.replace(b"RUTRecep=", b"RUTRecep=1-1\nX=")
    outcomes = engine.issue_many(
        [Request(FACTURA, "a.txt", "bb:a"), Request(bad, "bad.txt", "bb:bad"), Request(FACTURA, "c.txt", "bb:c")]
    )
    first, error, last = outcomes
    assert isinstance(error, (DteSyncError, DteSyncErrors))
    assert {e.source for e in (error.errors if isinstance(error, DteSyncErrors) else [error])} == {"bad.txt"}
    assert last.folio == first.folio + 1
    assert engine.folios.pending_annulment() == []


def test_a_batch_repeated_after_a_crash_gets_the_same_folios_back(engine):
    requests = [Request(FACTURA, f"{i}.txt", f"again:{i}") for i in range(4)]
    first = [o.folio for o in engine.issue_many(requests)]
    again = [o.folio for o in engine.issue_many(requests)]
    assert first == again and len(set(first)) == 4


def test_issue_raises_what_issue_many_reports(engine):
    nc = re.sub(rb"\[Referencia\][^\[]*", b"", NOTA_CREDITO)
    (outcome,) = engine.issue_many([Request(nc, "nc.txt", "raise:nc")])
    with pytest.raises(type(outcome)):
        engine.issue(nc, "nc.txt", doc_key="raise:nc")


def test_threads_sharing_one_engine_all_get_valid_documents(engine):
    """Fresh threads whose first lxml call is the engine's parse (sync.safexml): with a parser
    shared between threads they adopted one libxml2 name dictionary and a TmstFirma once came
    out TmstFirm under two daemon workers. A race: this fails only sometimes if it regresses."""
    from concurrent.futures import ThreadPoolExecutor

    examples = [e for e in EXAMPLES if e.suffix == ".txt"]

    def issue_all(t: int) -> list:
        reqs = [Request(e.read_bytes(), e.name, f"thr{t}:{i}:{e.name}") for i in range(6) for e in examples]
        return engine.issue_many(reqs)

    with ThreadPoolExecutor(4) as pool:
        outcomes = [o for batch in pool.map(issue_all, range(4)) for o in batch]
    assert [o for o in outcomes if not isinstance(o, SignedDte)] == []
    assert all(schema.schema_errors(etree.fromstring(o.dte_xml)) == [] for o in outcomes)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_composed_canonical_form_is_lxmls_c14n_of_the_signed_dte(engine, example):
    """Envelopes are hashed from SignedDte.dte_c14n, composed while signing: it must be exactly
    what a verifier's C14N of the DTE gives."""
    issued = engine.issue(example.read_bytes(), example.name, doc_key=f"c14n:{example.name}")
    assert issued.dte_c14n == etree.tostring(etree.fromstring(issued.dte_xml), method="c14n")


def test_a_folio_named_by_an_input_is_not_taken_by_an_automatic_pick_in_the_same_batch(engine):
    (row,) = [r for r in engine.folios.stock(date.today()) if r.tipo_dte == 33]
    named = FACTURA.replace(b"TipoDTE=33\n", b"TipoDTE=33\nFolio=%d\n" % row.next_folio)
    auto, given = engine.issue_many([Request(FACTURA, "auto.txt", "pick:auto"), Request(named, "named.txt", "pick:named")])
    assert isinstance(auto, SignedDte) and isinstance(given, SignedDte), (auto, given)
    assert given.folio == row.next_folio and auto.folio != given.folio


def test_a_boleta_may_reference_the_certification_set_by_a_text_codref(engine, tmp_path):
    boleta = (examples_dir() / "39_boleta.txt").read_bytes() + b"\n[Referencia]\nCodRef=SET\nRazonRef=CASO-1\n"
    issued = engine.issue(boleta, "b.txt", doc_key="codref-set")
    assert b"<CodRef>SET</CodRef>" in issued.dte_xml
    (tmp_path / "b.xml").write_bytes(issued.dte_xml)
    assert xmlsec1_verifies(tmp_path / "b.xml")


def test_a_factura_codref_outside_1_2_3_is_rejected_before_taking_a_folio(engine):
    bad = NOTA_CREDITO.replace(b"CodRef=3", b"CodRef=SET")
    before = engine.folios.stock(date.today())
    with pytest.raises(DteSyncErrors) as exc:
        engine.issue(bad, "nc.txt", doc_key="codref-bad")
    (error,) = exc.value.errors
    assert (error.code, error.field, error.found, error.expected) == ("FIELD_NOT_IN_LIST", "CodRef", "SET", "1, 2, 3")
    assert error.line == NOTA_CREDITO.split(b"\n").index(b"CodRef=3") + 1  # the line of CodRef in the file
    assert engine.folios.stock(date.today()) == before


# --- where a refusal points: the input's own line or path ------------------------------------------

def test_a_rule_broken_in_a_json_input_is_reported_at_its_json_path(engine):
    """docs/formats/json.md: JSON paths count from 0, with dots; JSON has no lines."""
    data = (examples_dir() / "33_factura.json").read_text(encoding="utf-8")
    data = data.replace('"GiroRecep": "Construcción de edificios",', "")
    data = data.replace('"QtyItem": 40', '"QtyItem": 0')
    with pytest.raises(DteSyncErrors) as exc:
        engine.issue(data.encode(), "f.json", doc_key="json-paths")
    found = {(e.code, e.path, e.line) for e in exc.value.errors}
    assert ("FIELD_OUT_OF_RANGE", "Documento.Detalle[1].QtyItem", None) in found  # the second Detalle


def test_a_rule_broken_in_a_json_input_after_reading_is_reported_at_its_json_path(engine):
    data = (examples_dir() / "33_factura.json").read_text(encoding="utf-8")
    data = data.replace('"GiroRecep": "Construcción de edificios",', "")
    with pytest.raises(DteSyncErrors) as exc:
        engine.issue(data.encode(), "f.json", doc_key="json-paths-rule")
    (error,) = exc.value.errors
    assert (error.code, error.path, error.line) == ("FIELD_REQUIRED_FOR_TYPE", "Documento.Encabezado.Receptor.GiroRecep",
                                                    None)


def test_a_refusal_of_an_xml_input_names_the_element_line(engine):
    data = (examples_dir() / "33_factura.xml").read_bytes()
    lines = data.split(b"\n")
    receptor = next(i for i, t in enumerate(lines, 1) if b"<Receptor>" in t)
    data = re.sub(rb"<GiroRecep>[^<]*</GiroRecep>", b"", data)
    data = data.replace(b"<FmaPago>2</FmaPago>", b"<FmaPago>2</FmaPago><IndTraslado>10</IndTraslado>")
    with pytest.raises(DteSyncErrors) as exc:
        engine.issue(data, "f.xml", doc_key="xml-lines")
    by_field = {e.field: e for e in exc.value.errors}
    assert by_field["IndTraslado"].line == next(i for i, t in enumerate(lines, 1) if b"<FmaPago>" in t)
    assert exc.value.errors[0].path == "Documento/Encabezado/IdDoc/IndTraslado"
    engine_stage = DteSyncErrors([])
    try:  # GiroRecep is a rule of the engine (after reading): still at the line of its group
        engine.issue(data.replace(b"<IndTraslado>10</IndTraslado>", b""), "f.xml", doc_key="xml-lines-2")
    except DteSyncErrors as exc2:
        engine_stage = exc2
    (error,) = engine_stage.errors
    assert (error.field, error.line) == ("GiroRecep", receptor)


def test_a_txt_refusal_found_after_reading_names_the_line_of_the_value(engine):
    bad = FACTURA.replace(b"DescuentoMonto=8580", b"DescuentoMonto=1")
    with pytest.raises(DteSyncErrors) as exc:
        engine.issue(bad, "f.txt", doc_key="txt-line-totals")
    (error,) = exc.value.errors
    assert error.code == "LINE_VALUE_INCONSISTENT"  # found by the totals, after reading
    assert error.line == bad.split(b"\n").index(b"DescuentoMonto=1") + 1
    assert error.path == "Documento/Detalle[2]/DescuentoMonto"


# --- after the folio: only internal faults, and the folio goes to the annulment list -----------------

def test_a_fault_after_the_folio_reports_it_and_lists_the_folio_for_annulment(sandbox_config, tmp_path, monkeypatch):
    import sync.engine as engine_module

    caf = default_fake_sii().make_caf(DEMO_RUT, "X", 33, 1, 5, date.today())
    engine = fresh_engine(sandbox_config, tmp_path, cafs=[caf])

    def broken(root):
        raise DteSyncError("SCHEMA_INVALID", params={"detail": "línea 1: un defecto del motor"})

    monkeypatch.setattr(engine_module.schema, "validate", broken)
    with pytest.raises(DteSyncError) as exc:
        engine.issue(FACTURA, "f.txt", doc_key="fault")
    error = exc.value
    assert error.code == "FOLIO_PENDING_ANNULMENT"  # an installation error, not the input's
    assert error.params["folio"] == 1 and error.params["tipo_dte"] == 33
    assert "SCHEMA_INVALID" in error.params["detail"] and "anulación" in error.message()
    (pending,) = engine.folios.pending_annulment()
    assert (pending.tipo_dte, pending.folio, pending.doc_key) == (33, 1, "fault")
    assert "un defecto del motor" in pending.reason
    monkeypatch.undo()
    assert engine.issue(FACTURA, "f.txt", doc_key="fault").folio == 2  # a retry takes a new folio


# --- the signer thread (the engine process signs on its own thread) ---------------------------------

def test_a_batch_signed_on_a_signer_thread_is_byte_for_byte_the_batch_signed_inline(sandbox_config, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    caf = default_fake_sii().make_caf(DEMO_RUT, "X", 33, 1, 50, date.today())
    clock = lambda: datetime(2026, 12, 3, 10, 0, 0, tzinfo=timezone.utc)  # noqa: E731
    inline = fresh_engine(sandbox_config, tmp_path / "a", cafs=[caf])
    threaded = fresh_engine(sandbox_config, tmp_path / "b", cafs=[caf])
    inline._clock = threaded._clock = clock
    with ThreadPoolExecutor(1) as signer:
        threaded.signer = signer
        requests = [Request(FACTURA, f"f{i}.txt", f"k{i}") for i in range(8)]
        a, b = inline.issue_many(requests), threaded.issue_many(requests)
    assert [o.dte_xml for o in a] == [o.dte_xml for o in b]  # type: ignore[union-attr]
    path = tmp_path / "dte.xml"
    path.write_bytes(b[-1].dte_xml)  # type: ignore[union-attr]
    assert xmlsec1_verifies(path)


def test_a_signer_that_fails_lists_that_folio_for_annulment_and_the_others_are_signed(sandbox_config, tmp_path):
    from concurrent.futures import Future, ThreadPoolExecutor

    caf = default_fake_sii().make_caf(DEMO_RUT, "X", 33, 1, 10, date.today())
    engine = fresh_engine(sandbox_config, tmp_path, cafs=[caf])
    calls = []

    class FailingSecond(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
            calls.append(1)
            if len(calls) == 2:
                return super().submit(lambda: (_ for _ in ()).throw(OSError("el token se desconectó")))
            return super().submit(fn, *args, **kwargs)

    with FailingSecond(1) as signer:
        engine.signer = signer
        outcomes = engine.issue_many([Request(FACTURA, f"f{i}.txt", f"k{i}") for i in range(3)])
    assert isinstance(outcomes[0], SignedDte) and isinstance(outcomes[2], SignedDte)
    assert isinstance(outcomes[1], DteSyncError) and outcomes[1].code == "FOLIO_PENDING_ANNULMENT"
    (pending,) = engine.folios.pending_annulment()
    assert pending.folio == outcomes[1].params["folio"] and "token" in pending.reason


def test_a_batch_begun_before_the_one_before_it_is_finished_gets_the_next_folios_and_both_verify(
        sandbox_config, tmp_path):
    """The engine process begins batch 2 (parse, folios, TED, signature handed to the signer)
    while batch 1 is still being signed, then finishes 1 and 2 in that order: the documents
    are those issue_many gives, folios in the order the batches began, every one marked used."""
    from concurrent.futures import ThreadPoolExecutor

    caf = default_fake_sii().make_caf(DEMO_RUT, "X", 33, 1, 50, date.today())
    clock = lambda: datetime(2026, 12, 3, 10, 0, 0, tzinfo=timezone.utc)  # noqa: E731
    at_once = fresh_engine(sandbox_config, tmp_path / "a", cafs=[caf])
    overlapped = fresh_engine(sandbox_config, tmp_path / "b", cafs=[caf])
    at_once._clock = overlapped._clock = clock
    first = [Request(FACTURA, f"f{i}.txt", f"k{i}") for i in range(4)]
    bad = Request(b"[Encabezado.IdDoc]\nTipoDTE=33\n", "bad.txt", "bad")
    second = [bad] + [Request(FACTURA, f"f{i}.txt", f"k{i}") for i in range(4, 7)]
    expected = at_once.issue_many(first) + at_once.issue_many(second)
    with ThreadPoolExecutor(1) as signer:
        overlapped.signer = signer
        one = overlapped.begin_many(first)
        two = overlapped.begin_many(second)
        got = overlapped.finish_many(one) + overlapped.finish_many(two)
    assert isinstance(got[4], DteSyncErrors) and got[4].errors[0].source == "bad.txt"
    signed = [o for o in got if isinstance(o, SignedDte)]
    assert [o.folio for o in signed] == [1, 2, 3, 4, 5, 6, 7]
    assert [o.dte_xml for o in signed] == [o.dte_xml for o in expected if isinstance(o, SignedDte)]
    assert {overlapped.folios.state_of(33, folio) for folio in range(1, 8)} == {"used"}
    for o in signed[::3]:
        path = tmp_path / f"{o.folio}.xml"
        path.write_bytes(o.dte_xml)
        assert xmlsec1_verifies(path)
