"""No input ever burns a folio: a generated corpus of bad inputs, each refused before the folio.

For every document type, every leaf its schema allows and every XSD facet of that leaf (type,
length, enumeration, bounds, digits, pattern), one TXT input breaks exactly that facet; then
the SII's business rules (Formato DTE v2.5, Formato Boletas v4.2, Ley 21.713, Res. Ex. SII
154/2025), each case naming its section. Every input goes through one in-process engine and
must come back refused: a stable code from the catalog, a field and a line for every error,
and the folio store byte for byte as it was (the file and its WAL hashed, the folio and CAF
tables read back) after each one. Where the example of a type already holds the field's group
(its "home"), the refusal must also be the facet's own code, on that field, at the injected line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from sync.config import BoletasConfig
from sync.dte.checks import ZERO_MEANS_ABSENT
from sync.dte.facets import FACETS, Facets
from sync.engine import Engine
from sync.errors import CATALOG, DteSyncError, DteSyncErrors
from sync.folios.store import FolioStore
from sync.model import Documento
from sync.parse.mapping import class_spec, group_plan
from sync.runtime import load_certificate
from sync.rut import Rut
from sync.sandbox.build import DEMO_RUT, examples_dir
from sync.sandbox.caf_factory import default_fake_sii
from sync.sii import TipoDte

TYPES = (33, 34, 39, 41, 46, 52, 56, 61)
EXAMPLE = {33: "33_factura.txt", 34: "34_factura_exenta.txt", 39: "39_boleta.txt", 41: "41_boleta_exenta.txt",
           46: "46_factura_compra.txt", 52: "52_guia_despacho.txt", 56: "56_nota_debito.txt", 61: "61_nota_credito.txt"}
UF = Decimal("39500")  # pesos per UF for the corpus engine's [boletas] (Ley 21.713 cases)

# Fields the totals read: a bad value there may be refused as a money inconsistency first.
MONEY = {"TOTALS_INCONSISTENT", "LINE_AMOUNT_INCONSISTENT", "LINE_VALUE_INCONSISTENT", "AMOUNT_NEGATIVE",
         "TAX_CODE_UNSUPPORTED"}
AMOUNT_TAGS = {"MntNeto", "MntExe", "MntBase", "MntMargenCom", "TasaIVA", "IVA", "IVAProp", "IVATerc", "IVANoRet",
               "CredEC", "GrntDep", "MntTotal", "MontoNF", "MontoPeriodo", "SaldoAnterior", "VlrPagar", "TotalPeriodo",
               "TipoImp", "TasaImp", "MontoImp", "ValComNeto", "ValComExe", "ValComIVA", "MontoItem", "DescuentoMonto",
               "RecargoMonto", "DescuentoPct", "RecargoPct", "PrcItem", "QtyItem", "ValorDR"}


def base_text(tipo: int) -> str:
    data = (examples_dir() / EXAMPLE[tipo]).read_bytes()
    return data.decode("latin-1") if data.startswith(b"#charset=ISO-8859-1") else data.decode("utf-8")


@dataclass(frozen=True)
class Case:
    name: str
    tipo: int
    text: str
    field: str | None = None  # the field the refusal must name (home cases and rules)
    line: int | None = None  # ... at this line
    codes: frozenset[str] = frozenset()  # ... with one of these codes
    encoding: str = "utf-8"
    engine: str = "uf"  # which engine: "uf" ([boletas] uf set) or "no_uf"
    leaf: str | None = None  # facet cases: the leaf broken ('Detalle/QtyItem')


# --- the facets corpus -------------------------------------------------------------------------------

def spec_of(path: str):
    cls: type = Documento
    spec = None
    for tag in path.split("/")[1:]:
        spec = class_spec(cls).lookup(tag)
        cls = spec.cls or cls
    return spec


def _bound_step(text: str, delta: int) -> str:
    d = Decimal(text)
    return str(d + Decimal(delta).scaleb(d.as_tuple().exponent))


def violations(path: str, f: Facets) -> list[tuple[str, str, set[str]]]:
    """(facet, text breaking it, codes that name that break) for one leaf."""
    tag = path.rsplit("/", 1)[-1]
    kind = spec_of(path).kind
    out: list[tuple[str, str, set[str]]] = []
    if tag == "TipoDTE":
        return [("enumeration", "99", {"TIPO_DTE_UNSUPPORTED"}), ("type", "factura", {"FIELD_INVALID"})]
    if kind == "rut":
        out += [("pattern", "12345678-0", {"RUT_INVALID"}), ("maxLength", str(Rut.of(123456789)), {"FIELD_TOO_LONG"})]
    elif f.base == "string":
        width = f.length or f.max_length
        if width:
            out.append(("maxLength", "X" * (width + 1), {"FIELD_TOO_LONG"}))
        least = f.length or f.min_length
        if least and least > 1:
            out.append(("minLength", "X" * (least - 1), {"FIELD_TOO_SHORT"}))
        if f.enumeration is not None:
            bad = next(z for z in ("Z" * (least or 1), "ZZ", "Z") if z not in f.enumeration
                       and (width is None or len(z) <= width) and len(z) >= (least or 1))
            out.append(("enumeration", bad, {"FIELD_NOT_IN_LIST"}))
    elif kind == "str":  # an XSD number the model keeps as text (CodRef, boleta MedioPago)
        out.append(("type", "abc", {"FIELD_NOT_IN_LIST", "FIELD_INVALID"}))
    elif f.base in ("integer", "decimal"):
        integer = f.base == "integer"
        out.append(("type", "abc" if integer else "1,5", {"FIELD_INVALID"}))
        if f.enumeration is not None:
            out.append(("enumeration", str(max(int(v) for v in f.enumeration) + 1), {"FIELD_NOT_IN_LIST"}))
        else:
            if f.min_inclusive is not None:
                low = str(int(f.min_inclusive) - 1) if integer else ("0" if Decimal(f.min_inclusive) > 0 else "-1")
                if tag in ZERO_MEANS_ABSENT and Decimal(low) == 0:
                    low = "-1"  # a 0 there is a legitimate "none", left out of the document
                out.append(("minInclusive", low, {"FIELD_OUT_OF_RANGE"}))
            if f.max_inclusive is not None:
                out.append(("maxInclusive", _bound_step(f.max_inclusive, 1) if integer else str(Decimal(f.max_inclusive) + 1),
                            {"FIELD_OUT_OF_RANGE", "FIELD_TOO_MANY_DIGITS"}))
            if f.total_digits is not None:
                digits = f.total_digits + 1
                out.append(("totalDigits", "9" * digits, {"FIELD_TOO_MANY_DIGITS", "FIELD_OUT_OF_RANGE"}
                            | ({"FIELD_INVALID"} if digits > 18 else set())))
        if f.fraction_digits is not None and f.fraction_digits < 10:
            out.append(("fractionDigits", "1." + "1" * (f.fraction_digits + 1), {"FIELD_TOO_MANY_DECIMALS"}))
    elif f.base == "date":
        out.append(("type", "2025-13-40", {"FIELD_INVALID"}))
        if f.min_inclusive:
            out.append(("minInclusive", (date.fromisoformat(f.min_inclusive) - timedelta(days=1)).isoformat(),
                        {"FIELD_OUT_OF_RANGE"}))
        if f.max_inclusive:
            out.append(("maxInclusive", (date.fromisoformat(f.max_inclusive) + timedelta(days=1)).isoformat(),
                        {"FIELD_OUT_OF_RANGE"}))
    elif f.base == "dateTime":
        out.append(("type", "2025-03-14T25:00:00", {"FIELD_INVALID"}))
        for bound, step in ((f.min_inclusive, -1), (f.max_inclusive, 1)):
            if bound:
                moment = datetime.fromisoformat(bound) + timedelta(seconds=step)
                out.append(("range", moment.isoformat(), {"FIELD_OUT_OF_RANGE"}))
    else:
        out += [("type", "25:00", {"FIELD_INVALID"}), ("maxInclusive", "24:00:00", {"FIELD_INVALID"})]
    for _facet, _text, codes in out:
        if tag in AMOUNT_TAGS:
            codes |= MONEY
        if tag == "RUTEmisor":
            codes.add("EMISOR_MISMATCH")
    return out


def filler(kind: str, path: str) -> str:
    f = FACETS[kind][path]
    if spec_of(path).kind == "rut":
        return "12345678-5"
    if f.enumeration:
        return f.enumeration[0]
    if f.base == "string":
        return "X" * (f.length or f.min_length or 1)
    if f.base in ("integer", "decimal"):
        return f.min_inclusive if f.min_inclusive not in (None, "0") else "1"
    return f.min_inclusive or "2025-03-14"


def section_lines(kind: str, mpath: str, skip: str | None) -> list[str]:
    """A group's header and the fields the readers require in it (valid values), but `skip`."""
    cls = spec_of(mpath).cls
    lines = [f"[{mpath.split('/', 1)[1].replace('/', '.')}]"]
    subgroups = []
    for f in group_plan(kind, cls, mpath).required:
        tag = f.tag_for(kind)
        if tag == skip:
            continue
        if f.cls is not None:
            subgroups.append(f"{mpath}/{tag}")
        else:
            lines.append(f"{tag}={filler(kind, f'{mpath}/{tag}')}")
    return lines, subgroups


def inject(base: str, kind: str, path: str, value: str) -> tuple[str, int]:
    """`base` with `Tag=value` written in the section of `path`: replacing the tag's line or added
    to the existing section, else in new sections (with their required fields) at the end.
    Returns the text and the 1-based line of the injected field."""
    lines = base.split("\n")
    group, tag = path.rsplit("/", 1)
    section = group.split("/", 1)[1].replace("/", ".").lower()
    headers = [i for i, text in enumerate(lines) if text.strip().startswith("[")]
    named = {i: lines[i].strip()[1:-1].replace(" ", "").lower() for i in headers}
    start = next((i for i in headers if named[i] == section), None)
    if start is not None:
        end = next((i for i in headers if i > start), len(lines))
        for j in range(start + 1, end):
            if lines[j].split("=", 1)[0].strip().lower() == tag.lower():
                lines[j] = f"{tag}={value}"
                return "\n".join(lines), j + 1
        lines.insert(start + 1, f"{tag}={value}")
        return "\n".join(lines), start + 2
    present = {".".join(h.split(".")[:n]) for h in named.values() for n in range(1, h.count(".") + 2)}
    parts = group.split("/")
    added: list[str] = [""]
    for n in range(2, len(parts) + 1):
        mpath = "/".join(parts[:n])
        if mpath != group and mpath.split("/", 1)[1].replace("/", ".").lower() in present:
            continue  # an ancestor the base already has (the target itself always gets its header)
        own, subgroups = section_lines(kind, mpath, tag if mpath == group else None)
        added += own
        if mpath == group:
            added.append(f"{tag}={value}")
            line = len(lines) + len(added)
        for sub in subgroups:
            if sub.split("/", 1)[1].replace("/", ".").lower() not in present:
                added += section_lines(kind, sub, None)[0]
    return "\n".join(lines + added), line


# Groups no example holds, tried at home in a type that takes them (Comisiones: FMT zone F).
HOME = {"Documento/Comisiones": 61, "Documento/Encabezado/Totales/Comisiones": 61}


def home_of(kind: str, path: str) -> int:
    """The type whose example already holds the leaf's group (else the first of its kind): there a
    broken facet must be refused by that facet's own code, not by some consequence of it."""
    group = path.rsplit("/", 1)[0]
    if group in HOME:
        return HOME[group]
    section = f"[{group.split('/', 1)[1].replace('/', '.').lower()}]"
    of_kind = [t for t in TYPES if TipoDte(t).schema == kind]
    return next((t for t in of_kind if section in base_text(t).lower()), of_kind[0])


def facet_cases() -> list[Case]:
    cases = []
    for tipo in TYPES:
        kind = TipoDte(tipo).schema
        base = base_text(tipo)
        enc = "latin-1" if tipo == 41 else "utf-8"
        for path, facets in FACETS[kind].items():
            home = tipo == home_of(kind, path)
            for facet, value, codes in violations(path, facets):
                text, line = inject(base, kind, path, value)
                tag = path.rsplit("/", 1)[-1]
                leaf = path.split("/", 1)[1]
                cases.append(Case(f"{tipo} {leaf} {facet}={value[:12]}", tipo, text, tag if home else None,
                                  line if home else None, frozenset(codes), enc, leaf=leaf))
    return cases


# --- the business rules ---------------------------------------------------------------------------

def _replace(tipo: int, old: str, new: str) -> str:
    """The example of `tipo` with `old` replaced where it starts a line (comments mention fields too)."""
    base = base_text(tipo)
    assert "\n" + old in base, (tipo, old)
    return base.replace("\n" + old, "\n" + new, 1)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.split("\n"), 1) if line.startswith(needle))


def rule(name: str, tipo: int, text: str, field: str, codes: set[str], at: str | None = None, **kw) -> Case:
    """A business-rule case; `at` is the start of the line the refusal must name (None: not checked)."""
    enc = "latin-1" if tipo == 41 else "utf-8"
    return Case(name, tipo, text, field, _line_of(text, at) if at else None, frozenset(codes), enc, **kw)


BOLETA_135UF = "[Detalle]\nNmbItem=Refrigerador\nQtyItem=1\nPrcItem=5400000\n"


def rule_cases() -> list[Case]:
    nc, nd, guia = 61, 56, 52
    two_refs = _replace(nc, "CodRef=3", "CodRef=1") + "\n[Referencia]\nTpoDocRef=33\nFolioRef=1524\nFchRef=2025-03-15\n"
    no_chofer = _replace(guia, "[Encabezado.Transporte.Chofer]\nRUTChofer=15678432-K\nNombreChofer=Luis Aravena Núñez\n", "")
    return [
        rule("FMT E.8: nota de crédito sin CodRef", nc, _replace(nc, "CodRef=3\n", ""), "CodRef", {"CODREF_REQUIRED"},
             "[Referencia]"),
        rule("FMT E.8 casos a-c: CodRef 1 con dos documentos referenciados", nc, two_refs, "CodRef",
             {"CODREF_SINGLE_DOCUMENT"}, "CodRef=1"),
        rule("FMT E.8 caso b: CodRef 2 con precios", nc, _replace(nc, "CodRef=3", "CodRef=2"), "PrcItem",
             {"CODREF_TEXT_WITH_AMOUNTS"}, "PrcItem="),
        rule("FMT E.8 caso b: CodRef 2 con MontoItem", nd,
             _replace(nd, "CodRef=3", "CodRef=2").replace("QtyItem=1\nPrcItem=12500", "MontoItem=12500"), "MontoItem",
             {"CODREF_TEXT_WITH_AMOUNTS"}, "MontoItem="),
        rule("FMT E.8 caso b: CodRef 2 con descuento global", nd,
             _replace(nd, "CodRef=3", "CodRef=2").replace("QtyItem=1\nPrcItem=12500\n", "")
             + "\n[DscRcgGlobal]\nTpoMov=D\nTpoValor=$\nValorDR=100\n", "ValorDR", {"CODREF_TEXT_WITH_AMOUNTS"}, "ValorDR="),
        rule("FMT E: nota de débito sin Referencia", nd, base_text(nd).split("[Referencia]")[0], "Referencia",
             {"REFERENCIA_REQUIRED"}),
        rule("FMT A.10: nota a una boleta con impuesto adicional (montos brutos)", nc,
             _replace(nc, "TpoDocRef=33", "TpoDocRef=39").replace("PrcItem=4290", "PrcItem=4290\nCodImpAdic=27"),
             "CodImpAdic", {"GROSS_WITH_ADDITIONAL_TAX"}, "CodImpAdic="),
        *[rule(f"FMT A.{n}: {tipo} sin {tag}", tipo, _replace(tipo, line, ""), tag, {"FIELD_REQUIRED_FOR_TYPE"},
               "[Encabezado.Receptor]")
          for tipo, tag, n, line in ((33, "GiroRecep", 57, "GiroRecep=Construcción de edificios\n"),
                                     (33, "DirRecep", 60, "DirRecep=Camino Las Perdices 2750, bodega 3\n"),
                                     (33, "CmnaRecep", 61, "CmnaRecep=Peñalolén\n"),
                                     (34, "GiroRecep", 57, "GiroRecep=Extracción de minerales de cobre\n"),
                                     (46, "DirRecep", 60, "DirRecep=Parcela 14, camino a Chol Chol km 7\n"),
                                     (52, "CmnaRecep", 61, "CmnaRecep=Peñalolén\n"))],
        rule("FMT A.13: factura sin FmaPago", 33, _replace(33, "FmaPago=2\n", ""), "FmaPago",
             {"FIELD_REQUIRED_FOR_TYPE"}, "[Encabezado.IdDoc]"),
        rule("FMT A.13: factura exenta sin FmaPago", 34, _replace(34, "FmaPago=2\n", ""), "FmaPago",
             {"FIELD_REQUIRED_FOR_TYPE"}, "[Encabezado.IdDoc]"),
        rule("FMT A.13: factura de compra sin FmaPago", 46, _replace(46, "FmaPago=1\n", ""), "FmaPago",
             {"FIELD_REQUIRED_FOR_TYPE"}, "[Encabezado.IdDoc]"),
        rule("FMT A.13: entrega gratuita (total 0) con FmaPago=2", 34,
             _replace(34, "PrcItem=185000", "PrcItem=0").replace("PrcItem=42000", "PrcItem=0"), "FmaPago",
             {"FMA_PAGO_GRATUITA"}, "FmaPago="),
        rule("FMT A.7: guía sin IndTraslado", guia, _replace(guia, "IndTraslado=1\n", ""), "IndTraslado",
             {"FIELD_REQUIRED_FOR_TYPE"}, "[Encabezado.IdDoc]"),
        rule("FMT A.71: guía sin DirDest", guia, _replace(guia, "DirDest=Obra Los Castaños, Av. Libertador Bernardo "
                                                                "O'Higgins 0150\n", ""),
             "DirDest", {"FIELD_REQUIRED_FOR_TYPE"}, "[Encabezado.Transporte]"),
        rule("Res. Ex. 154/2025: guía sin Patente", guia, _replace(guia, "Patente=KXJT45\n", ""), "Patente",
             {"GUIA_TRANSPORTE_REQUIRED"}, "[Encabezado.Transporte]"),
        rule("Res. Ex. 154/2025: guía sin RUTTrans", guia, _replace(guia, "RUTTrans=78901234-2\n", ""), "RUTTrans",
             {"GUIA_TRANSPORTE_REQUIRED"}, "[Encabezado.Transporte]"),
        rule("Res. Ex. 154/2025: guía sin chofer", guia, no_chofer, "RUTChofer", {"GUIA_TRANSPORTE_REQUIRED"},
             "[Encabezado.Transporte]"),
        rule("Res. Ex. 154/2025: chofer sin patente (SIN INFO va en Patente)", guia,
             _replace(guia, "Patente=KXJT45\n", "") .replace("[Encabezado.Transporte.Chofer]\nRUTChofer=15678432-K\n"
                                                              "NombreChofer=Luis Aravena Núñez\n", ""),
             "Patente", {"GUIA_TRANSPORTE_REQUIRED"}, "[Encabezado.Transporte]"),
        rule("Res. Ex. 154/2025: RUTChofer sin nombre", guia, _replace(guia, "NombreChofer=Luis Aravena Núñez\n", ""),
             "NombreChofer", {"GUIA_TRANSPORTE_REQUIRED", "FIELD_REQUIRED"}, "[Encabezado.Transporte.Chofer]"),
        rule("Res. Ex. 154/2025 y XSD: un Chofer sin RUTChofer", guia,
             _replace(guia, "RUTChofer=15678432-K\n", ""), "RUTChofer", {"GUIA_TRANSPORTE_REQUIRED", "FIELD_REQUIRED"},
             "[Encabezado.Transporte.Chofer]"),
        rule("FMT A.38: guía de exportación (IndTraslado 9) sin CdgTraslado", guia,
             _replace(guia, "IndTraslado=1", "IndTraslado=9"), "CdgTraslado", {"FIELD_REQUIRED_FOR_TYPE"}),
        rule("FMT A.84-95: guía de exportación (IndTraslado 8) sin datos de aduana", guia,
             _replace(guia, "IndTraslado=1", "IndTraslado=8") + "\n[Encabezado.Emisor.GuiaExport]\nCdgTraslado=1\n",
             "CodPtoEmbarque", {"FIELD_REQUIRED_FOR_TYPE"}),
        rule("FMT A.39-40: CdgTraslado 4 sin FolioAut ni FchAut", guia,
             _replace(guia, "IndTraslado=1", "IndTraslado=8") + "\n[Encabezado.Emisor.GuiaExport]\nCdgTraslado=4\n",
             "FolioAut", {"FIELD_REQUIRED_FOR_TYPE"}, "[Encabezado.Emisor.GuiaExport]"),
        rule("FMT A.116: impuesto específico (28) con TasaImp y sin MontoImp", 46,
             _replace(46, "CodImpAdic=15", "CodImpAdic=28").replace("TipoImp=15\nTasaImp=19\nMontoImp=144400",
                                                                    "TipoImp=28\nTasaImp=6")
             .replace("IVA=144400\nMntTotal=760000", "IVA=144400\nMntTotal=904400"),
             "MontoImp", {"TAX_CODE_UNSUPPORTED"}, "[Encabezado.Totales.ImptoReten]"),
        rule("Ley 21.713: boleta de 135 UF o más sin identificar al comprador", 39,
             "[Encabezado.IdDoc]\nTipoDTE=39\n\n" + BOLETA_135UF, "RUTRecep", {"BOLETA_BUYER_REQUIRED"}),
        rule("Ley 21.713 y FBE A.10: boleta de 135 UF o más sin MedioPago", 39,
             "[Encabezado.IdDoc]\nTipoDTE=39\n[Encabezado.Receptor]\nRUTRecep=12345678-5\nRznSocRecep=Ana Pérez\n\n"
             + BOLETA_135UF, "MedioPago", {"BOLETA_BUYER_REQUIRED"}, "[Encabezado.IdDoc]"),
        rule("Ley 21.713: boleta exenta de 135 UF o más con RUT y sin nombre", 41,
             "[Encabezado.IdDoc]\nTipoDTE=41\nMedioPago=1\n[Encabezado.Receptor]\nRUTRecep=12345678-5\n\n"
             + BOLETA_135UF.replace("PrcItem", "IndExe=1\nPrcItem"), "RznSocRecep", {"BOLETA_BUYER_REQUIRED"},
             "[Encabezado.Receptor]"),
        rule("Ley 21.713: sin el valor de la UF configurado", 39, "[Encabezado.IdDoc]\nTipoDTE=39\n\n" + BOLETA_135UF,
             "MntTotal", {"CONFIG_UF_MISSING"}, engine="no_uf"),
        rule("FMT A.7 (XSD): IndTraslado 10", guia, _replace(guia, "IndTraslado=1", "IndTraslado=10"), "IndTraslado",
             {"FIELD_NOT_IN_LIST"}, "IndTraslado="),
        rule("FMT A.10 (XSD): MntBruto=2", 33, _replace(33, "FmaPago=2", "FmaPago=2\nMntBruto=2"), "MntBruto",
             {"FIELD_NOT_IN_LIST"}, "MntBruto="),
        rule("FMT A.42 (XSD): CdgSIISucur de 10 dígitos", 33,
             _replace(33, "CiudadOrigen=Santiago", "CiudadOrigen=Santiago\nCdgSIISucur=1234567890"), "CdgSIISucur",
             {"FIELD_TOO_MANY_DIGITS"}, "CdgSIISucur="),
        rule("FMT B.12 (XSD): cantidad 0", 33, _replace(33, "QtyItem=500", "QtyItem=0"), "QtyItem",
             {"FIELD_OUT_OF_RANGE"}, "QtyItem=0"),
    ]


ALL_CASES = facet_cases() + rule_cases()


# --- the run ----------------------------------------------------------------------------------------

def store_state(store: FolioStore) -> tuple[str, list, list]:
    """The folio store as bytes (database file and WAL) and as rows (folios, CAF positions)."""
    digest = hashlib.sha256()
    for suffix in ("", "-wal"):
        part = Path(str(store.path) + suffix)
        digest.update(part.read_bytes() if part.exists() else b"<none>")
    db = store.conn()
    return (digest.hexdigest(), db.execute("SELECT * FROM folio ORDER BY tipo_dte, folio").fetchall(),
            db.execute("SELECT id, next_folio FROM caf ORDER BY id").fetchall())


@pytest.fixture(scope="module")
def engines(sandbox_config, tmp_path_factory):
    store = FolioStore(tmp_path_factory.mktemp("corpus") / "folios.sqlite")
    fake = default_fake_sii()
    for tipo in TYPES:
        store.import_caf(fake.make_caf(DEMO_RUT, "X", tipo, 1, 50, date.today()), DEMO_RUT, date.today(),
                         trusted_keys=fake.trusted_keys)
    cert = load_certificate(sandbox_config)
    make = lambda uf: Engine(sandbox_config.company, store, cert, timezone=sandbox_config.timezone,  # noqa: E731
                             boletas=BoletasConfig(uf=uf))
    return {"uf": make(UF), "no_uf": make(None)}, store


def test_the_corpus_is_large_and_covers_every_type_field_and_rule():
    assert len(ALL_CASES) >= 300
    assert {c.tipo for c in ALL_CASES} == set(TYPES)
    for kind in ("dte", "boleta"):
        covered = {c.leaf for c in ALL_CASES if c.leaf and TipoDte(c.tipo).schema == kind}
        assert covered == {p.split("/", 1)[1] for p in FACETS[kind]}
    assert len(rule_cases()) >= 30


def test_every_bad_input_is_refused_before_the_folio_naming_code_field_and_line(engines):
    engine_for, store = engines
    before = store_state(store)
    problems = []
    for case in ALL_CASES:
        try:
            engine_for[case.engine].issue(case.text.encode(case.encoding), f"{case.tipo}.txt", doc_key=case.name)
        except (DteSyncError, DteSyncErrors) as exc:
            errors = exc.errors if isinstance(exc, DteSyncErrors) else [exc]
        else:
            problems.append((case.name, "ISSUED"))
            continue
        after = store_state(store)
        if after != before:
            problems.append((case.name, "the folio store changed"))
            before = after
        for e in errors:
            if e.code not in CATALOG or e.field is None or e.line is None or e.code.startswith(("FOLIO", "CAF", "INTERNAL")):
                problems.append((case.name, f"{e.code} field={e.field} line={e.line}"))
        if case.field is not None and not any(
                e.field == case.field and e.code in case.codes and (case.line is None or e.line == case.line)
                for e in errors):
            problems.append((case.name, [(e.code, e.field, e.line) for e in errors], "wanted",
                             sorted(case.codes), case.field, case.line))
    assert problems == []


def test_the_same_engine_still_issues_every_example_afterwards(engines):
    """The refusals left the engine and its store usable: a valid input takes its folio."""
    engine_for, store = engines
    for tipo in TYPES:
        issued = engine_for["uf"].issue(base_text(tipo).encode("latin-1" if tipo == 41 else "utf-8"), "ok.txt",
                                        doc_key=f"ok:{tipo}")
        assert issued.folio == 1  # the first folio of its CAF: no refusal took one
    assert len(store_state(store)[1]) == len(TYPES)
