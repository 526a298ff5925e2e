"""Every code of the SII's manuals, read from the manuals' own tables (verbatim excerpts in
tests/data/uplink/manual-*.txt), has the manual's meaning in sync.uplink.answers and the class
this specification gives it. One test per documented code."""

from __future__ import annotations

import re
import unicodedata

import pytest

from conftest import DATA
from sync.uplink import answers
from sync.uplink.answers import DteKind, EnvioKind, Kind

MANUALS = DATA / "uplink"
HEADERS = ("Estado", "ESTADO", "TOKEN", "SRV_CODE", "SQL_CODE", "ERR_CODE")
_ROW = re.compile(r"^(?P<code>-?\w+)\s{2,}(?:S ?tring(?: num[eé]rico| Alfanum[eé]rico)?\s+)?(?:\d-\d\s+)?(?P<text>\S.*)?$")


def manual_table(name: str) -> dict[str, str]:
    return manual_rows((MANUALS / name).read_text(encoding="utf-8"))


def manual_rows(text: str, keep: tuple[str, ...] = ("Estado", "ESTADO", "TOKEN")) -> dict[str, str]:
    """code -> meaning, from the excerpt's tables whose header column is in `keep` (rows may
    wrap onto indented continuation lines; bullet sub-items are left out)."""
    rows: dict[str, str] = {}
    header, last = None, None
    for line in text.splitlines():
        first = line.split()[0] if line.strip() else ""
        if first in HEADERS and ("Tipo" in line or "Detalle" in line):
            header, last = first, None
            continue
        if not line.strip() or line.strip().startswith(("Tabla", "Figura", "9 ")) or header not in keep:
            last = None if not line.strip() or line.strip().startswith(("Tabla", "Figura")) else last
            continue
        m = _ROW.match(line)
        if m and not line.startswith(" "):
            last = m.group("code")
            rows[last] = (m.group("text") or "").strip()
        elif last is not None and line.startswith(" " * 20):
            rows[last] = f"{rows[last]} {line.strip()}"
    return rows


def upload_list() -> dict[str, str]:
    text = (MANUALS / "manual-dteupload-status.txt").read_text(encoding="utf-8")
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"\?\?(\w+)\s*=\s*(.+)", text)}


def same(ours: str, manual: str) -> bool:
    def norm(s: str) -> str:
        s = unicodedata.normalize("NFC", " ".join(s.split())).rstrip(" :.").lower()
        return s.replace("( ", "(").replace(" )", ")")
    return norm(ours) == norm(manual)


def seed_table() -> dict[str, str]:
    """Figura 1.6 (CrSeed): the part of the excerpt before GetTokenFromSeed's table."""
    return manual_rows((MANUALS / "manual-auth-estados.txt").read_text(encoding="utf-8").split("GetTokenFromSeed")[0])


def token_table() -> dict[str, str]:
    """Figura 1.7 (GetTokenFromSeed)."""
    return manual_rows((MANUALS / "manual-auth-estados.txt").read_text(encoding="utf-8").split("GetTokenFromSeed", 1)[1])


# The specification: the class each documented code gets (answers.py says why).
SEED_CLASS = {"00": Kind.OK, "-1": Kind.TRANSIENT, "-2": Kind.TRANSIENT}
TOKEN_CLASS = {
    "00": Kind.OK, "01": Kind.TRANSIENT, "02": Kind.UNKNOWN, "03": Kind.TRANSIENT, "04": Kind.UNKNOWN,
    "05": Kind.INSTALLATION, "06": Kind.UNKNOWN, "07": Kind.TRANSIENT, "08": Kind.TRANSIENT, "09": Kind.TRANSIENT,
    "10": Kind.TRANSIENT, "11": Kind.INSTALLATION, "12": Kind.TRANSIENT, "21": Kind.INSTALLATION,
    "-3": Kind.INSTALLATION, "-07": Kind.INSTALLATION,
}
UPLOAD_CLASS = {"0": Kind.OK, "1": Kind.INSTALLATION, "2": Kind.VERDICT, "3": Kind.TRANSIENT, "5": Kind.SESSION,
                "6": Kind.INSTALLATION, "7": Kind.VERDICT, "8": Kind.VERDICT, "9": Kind.TRANSIENT,
                "Otro": Kind.UNKNOWN}
EST_UP_CLASS = {
    "RSC": EnvioKind.REJECTED, "SOK": EnvioKind.PROCESSING, "CRT": EnvioKind.PROCESSING,
    "RFR": EnvioKind.REJECTED, "FOK": EnvioKind.PROCESSING, "PDR": EnvioKind.PROCESSING,
    "RCT": EnvioKind.INSTALLATION, "EPR": EnvioKind.PROCESSED,
    "001": EnvioKind.SESSION, "002": EnvioKind.SESSION, "003": EnvioKind.SESSION,
    "-1": EnvioKind.TRANSIENT, "-2": EnvioKind.TRANSIENT, "-3": EnvioKind.INSTALLATION, "-4": EnvioKind.TRANSIENT,
    "-5": EnvioKind.TRANSIENT, "-6": EnvioKind.INSTALLATION, "-7": EnvioKind.TRANSIENT, "-8": EnvioKind.TRANSIENT,
    "-9": EnvioKind.TRANSIENT, "-10": EnvioKind.INSTALLATION, "-11": EnvioKind.NOT_VISIBLE,
    "-12": EnvioKind.TRANSIENT, "-13": EnvioKind.INSTALLATION, "-14": EnvioKind.TRANSIENT,
}
EST_DTE_CLASS = {
    "DOK": DteKind.RECEIVED, "DNK": DteKind.MISMATCH, "FAU": DteKind.NOT_RECEIVED, "FNA": DteKind.NOT_RECEIVED,
    "FAN": DteKind.NOT_RECEIVED, "EMP": DteKind.INSTALLATION, "TMD": DteKind.RECEIVED, "TMC": DteKind.RECEIVED,
    "MMD": DteKind.RECEIVED, "MMC": DteKind.RECEIVED, "AND": DteKind.RECEIVED, "ANC": DteKind.RECEIVED,
    "001": DteKind.SESSION, "002": DteKind.SESSION, "003": DteKind.SESSION,
    "-1": DteKind.TRANSIENT, "-2": DteKind.TRANSIENT, "-3": DteKind.TRANSIENT, "-4": DteKind.TRANSIENT,
}


def test_the_excerpts_list_every_code_the_specification_classifies():
    assert set(seed_table()) == set(SEED_CLASS)
    assert set(token_table()) == set(TOKEN_CLASS)
    assert set(upload_list()) == set(UPLOAD_CLASS)
    assert set(manual_table("manual-queryestup-estados.txt")) == set(EST_UP_CLASS)
    assert set(manual_table("manual-queryestdte-estados.txt")) - {"Otros"} == set(EST_DTE_CLASS)


@pytest.mark.parametrize("code", sorted(SEED_CLASS))
def test_crseed_estado(code):
    ours = answers.seed_answer(code)
    assert same(ours.meaning, seed_table()[code]) and ours.kind is SEED_CLASS[code]


@pytest.mark.parametrize("code", sorted(TOKEN_CLASS))
def test_gettokenfromseed_estado(code):
    ours = answers.token_answer(code)
    assert same(ours.meaning, token_table()[code]), (ours.meaning, token_table()[code])
    assert ours.kind is TOKEN_CLASS[code]
    assert bool(ours.fix) == (ours.kind is Kind.INSTALLATION)  # an installation problem always says what to fix


@pytest.mark.parametrize("code", sorted(UPLOAD_CLASS))
def test_dteupload_status(code):
    ours = answers.upload_answer(code) if code != "Otro" else answers.UPLOAD_OTHER
    assert same(ours.meaning, upload_list()[code]) and ours.kind is UPLOAD_CLASS[code]
    assert bool(ours.fix) == (ours.kind is Kind.INSTALLATION)


def test_undocumented_upload_status_is_unknown_never_a_verdict():
    for status in ("4", "10", "99", "-1", ""):
        assert answers.upload_answer(status).kind is Kind.UNKNOWN


@pytest.mark.parametrize("code", sorted(EST_UP_CLASS))
def test_queryestup_estado(code):
    meaning, kind, fix = answers.est_up_answer(code)
    assert same(meaning, manual_table("manual-queryestup-estados.txt")[code])
    assert kind is EST_UP_CLASS[code] and bool(fix) == (kind is EnvioKind.INSTALLATION)


@pytest.mark.parametrize("code", sorted(EST_DTE_CLASS))
def test_queryestdte_estado(code):
    meaning, kind, fix = answers.est_dte_answer(code)
    assert same(meaning, manual_table("manual-queryestdte-estados.txt")[code])
    assert kind is EST_DTE_CLASS[code] and bool(fix) == (kind is DteKind.INSTALLATION)


@pytest.mark.parametrize("code", ["RCH", "RPR", "RLV", "RPT", "RCO", "VOF", "XYZ", "-15", "004"])
def test_envio_states_not_in_the_manual_are_unknown(code):
    assert answers.est_up_answer(code)[1] is EnvioKind.UNKNOWN
    assert answers.est_dte_answer(code)[1] is DteKind.UNKNOWN


@pytest.mark.parametrize("status,kind", [(200, Kind.OK), (401, Kind.SESSION), (403, Kind.SESSION),
                                         (405, Kind.TRANSIENT), (408, Kind.TRANSIENT), (429, Kind.TRANSIENT),
                                         (503, Kind.TRANSIENT), (500, Kind.LOST), (502, Kind.LOST), (504, Kind.LOST),
                                         (400, Kind.UNKNOWN), (404, Kind.UNKNOWN), (409, Kind.UNKNOWN)])
def test_boleta_envio_http_status(status, kind):
    """No HTTP status of the boleta envío is a verdict: the diagnosis comes by track id."""
    assert answers.boleta_upload_answer(status)[1] is kind


@pytest.mark.parametrize("reason,kind", [
    ("STATUS 6: Empresa no autorizada a enviar archivos", Kind.INSTALLATION),
    ("STATUS 1: El Sender no tiene permiso para enviar", Kind.INSTALLATION),
    ("GetTokenFromSeed ESTADO -07: Error (12) parse ERROR en Validación del RUT", Kind.INSTALLATION),
    ("GetTokenFromSeed ESTADO 05: XML Invalido, firma invalida", Kind.INSTALLATION),
    ("token ESTADO -3: Error en Autenticación", Kind.INSTALLATION),
    ("HTTP 405: Method Not Allowed", Kind.UNKNOWN),
    ("HTTP 400: {\"error\": \"x\"}", Kind.UNKNOWN),
    ("XYZ: estado desconocido", Kind.UNKNOWN),
    ("STATUS 7: Esquema Invalido (LSX-00213)", Kind.VERDICT),
    ("STATUS 8: Firma del Documento", Kind.VERDICT),
    ("RCH: Dte Rechazado (DTE-3-101 Firma del DTE inválida)", Kind.VERDICT),
    ("FAU: Documento No Recibido por el SII. (EPR: Envio Procesado (informados 1, rechazados 1, reparos 0))",
     Kind.VERDICT),
])
def test_a_stored_rejection_reason_is_read_back_by_class(reason, kind):
    """`dtesync retry` revives only rejections that were no verdict on the document."""
    assert answers.stored_reason_kind(reason) is kind
