"""TXT input: the flat format for old ERPs (docs/formats/txt.md), and the shared mapping rules."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from sync.errors import DteSyncErrors
from sync.parse import parse_document, parse_file
from sync.rut import Rut

EXAMPLES = Path(__file__).resolve().parent.parent / "sync" / "data" / "examples"

FACTURA = """\
[Encabezado.IdDoc]
TipoDTE=33
FchEmis=2025-03-14
[Encabezado.Receptor]
RUTRecep=77123456-9
RznSocRecep=Constructora Peñalolén Ltda.
[Detalle]
NmbItem=Cemento Polpaico 25 kg
QtyItem=40
PrcItem=4290
"""


def errors(data: bytes | str, source: str = "doc.txt") -> list:
    if isinstance(data, str):
        data = data.encode("utf-8")
    with pytest.raises(DteSyncErrors) as info:
        parse_document(data, source)
    return info.value.errors


def only(data: bytes | str, source: str = "doc.txt"):
    found = errors(data, source)
    assert len(found) == 1, [str(e) for e in found]
    return found[0]


# --- examples ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.txt")), ids=lambda p: p.name)
def test_every_txt_example_parses(path):
    doc = parse_file(path)
    assert doc.tipo_dte == int(path.name[:2])
    assert doc.detalle


def test_there_is_a_txt_example_for_every_supported_type():
    from sync.sii import ISSUED_TYPES

    assert {int(p.name[:2]) for p in EXAMPLES.glob("*.txt")} == set(ISSUED_TYPES)


@pytest.mark.parametrize("name", ["33_factura", "39_boleta", "61_nota_credito"])
def test_same_document_in_txt_json_and_xml_parses_equal(name):
    txt, js, xml = (parse_file(EXAMPLES / f"{name}.{ext}") for ext in ("txt", "json", "xml"))
    assert txt == js == xml


def test_factura_example_carries_exempt_line_discount_and_global_discount():
    doc = parse_file(EXAMPLES / "33_factura.txt")
    assert doc.detalle[2].ind_exe == 1
    assert doc.detalle[1].descuento_pct == Decimal("5")
    assert doc.dsc_rcg_global[0].tpo_valor == "%"
    assert doc.encabezado.emisor.acteco == [466301, 475201]
    assert doc.encabezado.emisor.cmna_origen == "Ñuñoa"


def test_guia_example_has_transporte_and_ind_traslado():
    doc = parse_file(EXAMPLES / "52_guia_despacho.txt")
    assert doc.encabezado.id_doc.ind_traslado == 1
    assert doc.encabezado.transporte.chofer.rut_chofer == Rut.parse("15678432-K")


def test_notes_reference_a_factura():
    for name in ("56_nota_debito.txt", "61_nota_credito.txt"):
        ref = parse_file(EXAMPLES / name).referencia[0]
        assert (ref.tpo_doc_ref, ref.folio_ref, ref.fch_ref) == ("33", "1523", date(2025, 3, 14))


# --- syntax and layout -----------------------------------------------------------------------


def test_crlf_lf_and_cr_line_ends_parse_equal():
    lf = parse_document(FACTURA.encode(), "a.txt")
    assert parse_document(FACTURA.replace("\n", "\r\n").encode(), "a.txt") == lf
    assert parse_document(FACTURA.replace("\n", "\r").encode(), "a.txt") == lf


def test_comments_blank_lines_indentation_and_trailing_spaces_are_ignored():
    noisy = "# cabecera\n; otro comentario\n\n" + "\n".join(
        f"   {line}    \t" for line in FACTURA.splitlines()) + "\n\n"
    assert parse_document(noisy.encode(), "a.txt") == parse_document(FACTURA.encode(), "a.txt")


def test_tags_and_sections_are_case_insensitive():
    shouted = FACTURA.replace("[Encabezado.IdDoc]", "[ENCABEZADO.IDDOC]").replace("TipoDTE=", "TIPODTE=")
    assert parse_document(shouted.encode(), "a.txt") == parse_document(FACTURA.encode(), "a.txt")


def test_spaces_around_equals_sign_and_equals_in_value():
    doc = parse_document(FACTURA.replace("NmbItem=Cemento Polpaico 25 kg", "NmbItem = a=b ").encode(), "a.txt")
    assert doc.detalle[0].nmb_item == "a=b"


def test_empty_value_means_absent():
    doc = parse_document((FACTURA + "DscItem=\nUnmdItem=   \n").encode(), "a.txt")
    assert doc.detalle[0].dsc_item is None and doc.detalle[0].unmd_item is None


def test_repeated_detalle_sections_start_new_lines_and_subsections_attach_to_last():
    text = FACTURA + "[Detalle]\nNmbItem=Arena\n[Detalle.CdgItem]\nTpoCodigo=INT1\nVlrCodigo=AR-1\n"
    doc = parse_document(text.encode(), "a.txt")
    assert [d.nmb_item for d in doc.detalle] == ["Cemento Polpaico 25 kg", "Arena"]
    assert doc.detalle[0].cdg_item == [] and doc.detalle[1].cdg_item[0].vlr_codigo == "AR-1"


def test_line_numbers_are_filled_with_the_position():
    doc = parse_document((FACTURA + "[Detalle]\nNmbItem=Arena\n").encode(), "a.txt")
    assert [d.nro_lin_det for d in doc.detalle] == [1, 2]


def test_repeated_tag_fills_a_repeated_field():
    text = FACTURA + "CodImpAdic=271\nCodImpAdic=17\n"
    assert parse_document(text.encode(), "a.txt").detalle[0].cod_imp_adic == ["271", "17"]


def test_boleta_spelling_is_accepted_in_a_factura_and_vice_versa():
    factura = FACTURA + "[Encabezado.Emisor]\nRznSocEmisor=Ferretería Los Aromos SpA\n"
    assert parse_document(factura.encode(), "a.txt").encabezado.emisor.rzn_soc == "Ferretería Los Aromos SpA"
    boleta = "[Encabezado.IdDoc]\nTipoDTE=39\n[Encabezado.Emisor]\nRznSoc=Minimarket Doña Inés\n[Detalle]\nNmbItem=Pan\n"
    assert parse_document(boleta.encode(), "b.txt").encabezado.emisor.rzn_soc == "Minimarket Doña Inés"


def test_values_are_typed():
    doc = parse_document(FACTURA.replace("QtyItem=40", "QtyItem=0040.500").encode(), "a.txt")
    assert doc.encabezado.id_doc.fch_emis == date(2025, 3, 14)
    assert doc.encabezado.receptor.rut_recep == Rut(77123456, "9")
    assert doc.detalle[0].qty_item == Decimal("40.5")


def test_whole_integer_written_with_zero_decimals_is_accepted():
    doc = parse_document((FACTURA + "DescuentoMonto=1500.00\n").encode(), "a.txt")
    assert doc.detalle[0].descuento_monto == 1500


def test_rut_with_dots_and_lowercase_k_is_accepted():
    doc = parse_document(FACTURA.replace("RUTRecep=77123456-9", "RUTRecep=15.678.432-k").encode(), "a.txt")
    assert str(doc.encabezado.receptor.rut_recep) == "15678432-K"


# --- encodings -------------------------------------------------------------------------------


def test_utf8_latin1_declared_bom_and_undeclared_latin1_parse_equal():
    utf8 = parse_document(FACTURA.encode("utf-8"), "a.txt")
    assert parse_document(b"\xef\xbb\xbf" + FACTURA.encode("utf-8"), "a.txt") == utf8
    assert parse_document(("#charset=ISO-8859-1\n" + FACTURA).encode("latin-1"), "a.txt") == utf8
    assert parse_document(("#charset=UTF-8\n" + FACTURA).encode("utf-8"), "a.txt") == utf8
    assert parse_document(FACTURA.encode("latin-1"), "a.txt") == utf8  # not valid UTF-8 -> ISO-8859-1


def test_iso_8859_1_example_file_is_latin1_on_disk():
    raw = (EXAMPLES / "41_boleta_exenta.txt").read_bytes()
    assert raw.startswith(b"#charset=ISO-8859-1") and b"\xd1" in raw  # Ñ in one byte
    assert parse_file(EXAMPLES / "41_boleta_exenta.txt").encabezado.receptor.rzn_soc_recep == "Martín Ñancupil Rojas"


def test_declared_utf8_with_latin1_bytes_is_an_encoding_error_at_its_line():
    e = only(("#charset=UTF-8\n" + FACTURA).encode("latin-1"))
    assert e.code == "INPUT_ENCODING" and e.line == 7  # the Peñalolén line


def test_declared_latin1_with_utf8_content_is_an_encoding_error():
    e = only(("#charset=ISO-8859-1\n" + FACTURA).encode("utf-8"))
    assert e.code == "INPUT_ENCODING" and "UTF-8" in e.message()


def test_bom_with_a_latin1_declaration_contradicts_itself():
    assert only(b"\xef\xbb\xbf#charset=ISO-8859-1\n" + FACTURA.encode()).code == "INPUT_ENCODING"


def test_unknown_charset_declaration_is_refused():
    e = only(("#charset=EBCDIC\n" + FACTURA).encode())
    assert (e.code, e.line, e.found) == ("INPUT_ENCODING", 1, "EBCDIC")


def test_charset_declaration_after_the_first_line_is_a_syntax_error():
    e = only(("# hola\n#charset=UTF-8\n" + FACTURA).encode())
    assert (e.code, e.line) == ("TXT_SYNTAX", 2)


def test_windows_1252_typographic_characters_are_folded_to_latin1():
    text = FACTURA.replace("NmbItem=Cemento Polpaico 25 kg", "NmbItem=\x93Cemento\x94 \x96 25 kg \x80")
    doc = parse_document(text.encode("latin-1"), "a.txt")
    assert doc.detalle[0].nmb_item == '"Cemento" - 25 kg EUR'


def test_utf8_curly_quotes_are_folded_like_their_windows_1252_bytes():
    doc = parse_document(FACTURA.replace("Cemento", "“Cemento”").encode("utf-8"), "a.txt")
    assert doc.detalle[0].nmb_item == '"Cemento" Polpaico 25 kg'


def test_byte_undefined_in_windows_1252_is_an_invalid_value():
    e = only(FACTURA.replace("Cemento", "Ce\x81mento").encode("latin-1"))
    assert (e.code, e.field, e.line) == ("FIELD_INVALID", "NmbItem", 8)


def test_characters_outside_latin1_are_refused():
    e = only(FACTURA.replace("Cemento", "Cemento 🧱").encode("utf-8"))
    assert (e.code, e.field) == ("FIELD_INVALID", "NmbItem") and "ISO-8859-1" in e.expected


# --- errors ----------------------------------------------------------------------------------


def test_unknown_field_names_line_path_and_field():
    e = only(FACTURA + "PrecioUnitario=5\n")
    assert (e.code, e.line, e.path, e.field) == ("FIELD_UNKNOWN", 11, "Documento/Detalle[1]/PrecioUnitario", "PrecioUnitario")
    assert e.params["line_text"] == "PrecioUnitario=5"


def test_unknown_section_suggests_the_full_path():
    e = only(FACTURA + "[Transporte]\nPatente=KXJT45\n")
    assert (e.code, e.line, e.field, e.expected) == ("FIELD_UNKNOWN", 11, "Transporte", "[Encabezado.Transporte]")


def test_wrong_rut_check_digit_says_which_digit_it_should_be():
    e = only(FACTURA.replace("77123456-9", "77123456-1"))
    assert (e.code, e.line, e.field, e.path) == ("RUT_INVALID", 5, "RUTRecep", "Documento/Encabezado/Receptor/RUTRecep")
    assert "debería ser 9" in e.message()


def test_missing_required_field_in_a_line():
    e = only(FACTURA.replace("NmbItem=Cemento Polpaico 25 kg\n", ""))
    assert (e.code, e.line, e.path, e.field) == ("FIELD_REQUIRED", 7, "Documento/Detalle[1]/NmbItem", "NmbItem")


def test_missing_tipo_dte_is_required():
    e = only(FACTURA.replace("TipoDTE=33\n", ""))
    assert (e.code, e.field) == ("FIELD_REQUIRED", "TipoDTE")


def test_document_without_detalle_is_refused():
    e = only(FACTURA.split("[Detalle]")[0])
    assert (e.code, e.field) == ("FIELD_REQUIRED", "Detalle")


def test_receptor_is_required_in_a_factura_but_not_in_a_boleta():
    no_receptor = FACTURA.replace("RUTRecep=77123456-9\nRznSocRecep=Constructora Peñalolén Ltda.\n", "")
    no_receptor = no_receptor.replace("[Encabezado.Receptor]\n", "")
    assert only(no_receptor).field == "Receptor"
    assert parse_document(no_receptor.replace("TipoDTE=33", "TipoDTE=39").encode(), "b.txt").encabezado.receptor is None


def test_folio_totals_montoitem_and_emisor_are_optional():
    doc = parse_document(FACTURA.encode(), "a.txt")
    assert doc.folio is None and doc.encabezado.totales is None and doc.encabezado.emisor is None
    assert doc.detalle[0].monto_item is None


def test_unsupported_tipo_dte():
    e = only(FACTURA.replace("TipoDTE=33", "TipoDTE=99"))
    assert (e.code, e.line, e.found) == ("TIPO_DTE_UNSUPPORTED", 2, 99)
    assert "33" in e.expected and "61" in e.expected


def test_sixty_one_lines_in_a_factura_are_too_many():
    text = FACTURA + "".join(f"[Detalle]\nNmbItem=Item {i}\nQtyItem=1\nPrcItem=10\n" for i in range(60))
    e = only(text)
    assert (e.code, e.field, e.found, e.expected) == ("TOO_MANY", "Detalle", 61, 60)
    assert e.path == "Documento/Detalle[61]" and e.line == 11 + 59 * 4


def test_a_boleta_may_have_hundreds_of_lines():
    text = FACTURA.replace("TipoDTE=33", "TipoDTE=39") + "[Detalle]\nNmbItem=Pan\n" * 300
    assert len(parse_document(text.encode(), "b.txt").detalle) == 301


def test_invalid_values_say_the_expected_form():
    text = FACTURA.replace("FchEmis=2025-03-14", "FchEmis=14/03/2025").replace("QtyItem=40", "QtyItem=1,5")
    text = text.replace("TipoDTE=33", "TipoDTE=33\nFmaPago=contado")
    found = {e.field: e for e in errors(text)}
    assert found["FchEmis"].expected == "fecha AAAA-MM-DD" and found["FchEmis"].found == "14/03/2025"
    assert found["QtyItem"].expected.startswith("decimal con punto")
    assert found["FmaPago"].expected.startswith("entero")


def test_impossible_date_is_invalid():
    assert only(FACTURA.replace("2025-03-14", "2025-02-30")).code == "FIELD_INVALID"


def test_repeated_single_field():
    e = only(FACTURA.replace("TipoDTE=33", "TipoDTE=33\nTipoDTE=34"))
    assert (e.code, e.line, e.field) == ("FIELD_REPEATED", 3, "TipoDTE")


def test_single_section_opened_twice_is_repeated():
    e = only(FACTURA + "[Encabezado.Receptor]\nContacto=Sofía\n")
    assert (e.code, e.line, e.field) == ("FIELD_REPEATED", 11, "Receptor")


def test_string_longer_than_the_schema_allows():
    e = only(FACTURA.replace("Cemento Polpaico 25 kg", "x" * 81))
    assert (e.code, e.field, e.expected, e.found) == ("FIELD_TOO_LONG", "NmbItem", 80, 81)


def test_group_of_another_document_kind_is_not_allowed():
    boleta = "[Encabezado.IdDoc]\nTipoDTE=39\n[Encabezado.Transporte]\nPatente=KXJT45\n[Detalle]\nNmbItem=Pan\n"
    e = only(boleta)
    assert (e.code, e.field, e.line) == ("FIELD_NOT_ALLOWED", "Transporte", 3)
    assert "39" in e.message()


def test_a_group_written_as_a_field_and_then_as_a_section_is_reported_not_a_crash():
    txt = FACTURA.replace("[Encabezado.Receptor]\n", "[Encabezado]\nReceptor=Constructora\n[Encabezado.Receptor]\n")
    found = [(e.code, e.line, e.field) for e in errors(txt)]
    assert found == [("FIELD_INVALID", 5, "Receptor"), ("FIELD_REPEATED", 6, "Receptor")]


def test_ted_section_means_an_already_stamped_input():
    e = only(FACTURA + "[TED]\n")
    assert (e.code, e.field) == ("INPUT_SIGNED", "TED")


def test_field_before_any_section_is_a_syntax_error():
    e = only("TipoDTE=33\n" + FACTURA)
    assert (e.code, e.line) == ("TXT_SYNTAX", 1)


def test_subsection_before_its_repeated_parent_fails_loudly():
    e = errors(FACTURA.replace("[Detalle]\n", "[Detalle.CdgItem]\nTpoCodigo=INT1\nVlrCodigo=X\n[Detalle]\n"))[0]
    assert (e.code, e.line) == ("TXT_SYNTAX", 7)


def test_field_written_as_a_section_is_a_syntax_error():
    e = only(FACTURA + "[Detalle.NmbItem]\n")
    assert e.code == "TXT_SYNTAX" and "NmbItem=valor" in e.message()


def test_line_without_equals_sign_shows_the_line():
    e = only(FACTURA + "Cemento 40 sacos\n")
    assert (e.code, e.line, e.found) == ("TXT_SYNTAX", 11, "Cemento 40 sacos")


def test_every_problem_is_reported_at_once_in_line_order():
    text = FACTURA.replace("77123456-9", "77123456-1").replace("QtyItem=40", "QtyItem=cuarenta") + "Foo=1\n"
    assert [(e.code, e.line) for e in errors(text)] == [
        ("RUT_INVALID", 5), ("FIELD_INVALID", 9), ("FIELD_UNKNOWN", 11)]


def test_errors_carry_the_source_name():
    assert only(FACTURA + "Foo=1\n", source="F123.txt").source == "F123.txt"


def test_error_list_is_capped():
    assert len(errors(FACTURA + "Foo=1\n" * 5000)) == 100


def test_txt_documentation_tables_and_examples_are_up_to_date():
    """docs/formats/txt.md embeds tables generated from the model and the example files."""
    import subprocess
    import sys

    tool = Path(__file__).resolve().parent.parent / "tools" / "gen_txt_doc.py"
    assert subprocess.run([sys.executable, str(tool), "--check"]).returncode == 0, "run tools/gen_txt_doc.py"
