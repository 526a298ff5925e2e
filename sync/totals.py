"""Line amounts and document totals: compute what the input omits, check what it gives.

ERPs send anything from bare lines (NmbItem, QtyItem, PrcItem) to a fully totalled
document; the SII accepts a DTE whose totals do not add up and leaves the correction to a
nota de crédito (Formato DTE v2.5 §2.2: "No se rechazan documentos por errores de
contenido"), so the only place a wrong total can be stopped is here, before a folio is spent.
`complete_totals(doc)` fills every missing amount in place and raises `DteSyncErrors` with
*all* inconsistencies at once; on error the document is left untouched.

Rules (section numbers of the Formato DTE v2.5 2026-02, "FMT"; boletas: Formato Boletas
v4.2, "FBE"):

- Line (FMT B.38, FBE B.26): MontoItem = round(QtyItem × PrcItem) − DescuentoMonto +
  RecargoMonto; QtyItem defaults to 1 when PrcItem is given; a line with only MontoItem is
  taken as is. DescuentoPct/RecargoPct (FMT B.29-34) derive the monto: round(base × pct),
  the discount on round(Qty × Prc), the surcharge on the amount after the discount (as
  LibreDTE does). When both pct and monto are given, the monto stands if it is within one
  peso of pct × base (the Formato fixes neither base nor rounding; the monto is what enters
  MontoItem). MontoItem is 0 for IndExe 4/5 (FMT B.38 rule 1), for a nota "fe de erratas"
  (CodRef 2) and may be omitted (0) in a guía that is not a sale (IndTraslado ≠ 1, 9).
- IndExe (FMT B.5): none → afecto (exento in 34/41, footnote 10); 1 → MntExe; 2 → +MontoNF;
  6 → −MontoNF (FMT A.125); 3 → GrntDep (FMT A.120); 4, 5 → zero. Boletas allow 1, 2, 6.
- DscRcgGlobal (FMT D): applied in order, each on the running amount it targets (IndExeDR
  none → afecto, or exento in 34/41; 1 → exento; 2 → no facturable); % rounds half-up, $
  ValorDR rounds to the peso. With afecto lines of different tax codes a discount must be %
  (FMT D.a); a % discount reduces each additional-tax base by the same percentage.
- Net documents (33, 46, 52, 56, 61; boleta 39 with IndMntNeto=2): MntNeto = afecto after
  global D/R (FMT A.107); TasaIVA = 19 (absent in boletas: EnvioBOLETA_v11.xsd); IVA =
  round(MntNeto × 19/100) (FMT A.112; 33.655 → 6.394).
- Gross documents (boleta 39, or IdDoc/MntBruto = 1; FMT A.10, A.107, FBE A.32): the lines
  are gross; MntNeto = round(afecto / 1.19), IVA = afecto − MntNeto, so MntNeto + IVA is the
  gross amount exactly. For some gross amounts no integer neto satisfies neto + round(neto ×
  0.19) = gross (103, 110, 116, 680, 86710, ...): then IVA differs from round(MntNeto × 0.19)
  by one peso; this is the LibreDTE/SuperFactura convention (`calcularNetoIVA`) and the
  total, which is what the customer paid, stays exact. MntBruto forbids additional taxes.
- ImptoReten (FMT A.115-117, §4): MontoImp = round(TasaImp × Σ MontoItem of the lines with
  that CodImpAdic); TasaImp is the one given, else the §4 rate below; code 17 uses MntBase.
  Codes without a fixed rate (specific taxes: diesel, gasolina, márgenes...) need the
  MontoImp in the input. Additional taxes ("A") add to MntTotal; retentions ("R") subtract,
  and in 46/56/61 IVANoRet = IVA − retained (FMT A.118, only when not 0).
- MntTotal (FMT A.124) = MntNeto + MntExe + IVA + additional − retained + GrntDep − CredEC −
  Comisiones (ValComNeto + ValComIVA + ValComExe); boletas: MntNeto + IVA + MntExe (FBE
  A.35). MontoPeriodo (TotalPeriodo in boletas) = MntTotal + MontoNF when MontoNF ≠ 0.
- Given values are compared exactly (integers, no tolerance: the Formato allows none).
  Downstream sums use the given value of a field already reported, so each error points at
  its cause, not at its consequences. Gross documents derive MntNeto/IVA from the computed
  total. IVAProp + IVATerc must equal IVA; CredEC (given only) must not exceed 65% of IVA.
  A TasaIVA of 19 in a boleta is dropped (the boleta schema has no TasaIVA).

Supported TipoImp codes (FMT §4, rates cross-checked with LibreDTE's table):
additional with rate 17 (5, on MntBase), 18 (5), 19 (12), 23 (15), 24 (31.5), 25 (20.5),
26 (20.5), 27 (10), 271 (18), 44 (15), 45 (50); additional without rate 14, 28, 35, 50, 51,
52; retentions with rate 15, 31, 38, 39, 41, 46, 47 (19), 30, 36, 37 (10), 32, 33 (8),
34 (4), 48 (14), 49 (0), total-retention variants 301, 321, 331, 341, 361, 371, 481 (19);
retentions without rate 16, 40, 53. Note: 17/18/19 are IVA *anticipado* charged to the
customer (FMT §4: "monto de IVA anticipado cobrado al cliente"), so they add to the total.

Amounts are integer pesos (national documents); decimals in QtyItem/PrcItem/pct are exact
Decimals turned into integer ratios, so no float ever rounds a peso.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sync.errors import DteSyncError, DteSyncErrors
from sync.model import (
    Detalle,
    Documento,
    ImptoReten,
    Totales,
    TotalesComisiones,
)
from sync.sii import TipoDte

IVA_RATE = 19  # DL 825 art. 14
CRED_EC_RATE = (65, 100)  # DL 910 art. 21: 65% of IVA

# TipoImp -> (kind, rate): "A" adds to MntTotal, "R" is a retention; rate None = no fixed rate.
TAX_CODES: dict[str, tuple[str, Decimal | None]] = {
    **{c: ("A", Decimal(str(r))) for c, r in {
        "17": 5, "18": 5, "19": 12, "23": 15, "24": "31.5", "25": "20.5", "26": "20.5",
        "27": 10, "271": 18, "44": 15, "45": 50}.items()},
    **{c: ("A", None) for c in ("14", "28", "35", "50", "51", "52")},
    **{c: ("R", Decimal(str(r))) for c, r in {
        "15": 19, "31": 19, "38": 19, "39": 19, "41": 19, "46": 19, "47": 19, "30": 10,
        "36": 10, "37": 10, "32": 8, "33": 8, "34": 4, "48": 14, "49": 0, "301": 19,
        "321": 19, "331": 19, "341": 19, "361": 19, "371": 19, "481": 19}.items()},
    **{c: ("R", None) for c in ("16", "40", "53")},
}
IVANORET_TYPES = frozenset({46, 56, 61})  # FMT A.118
COMISIONES_TYPES = frozenset({46, 56, 61})  # FMT zone E (43 is not issued)
NON_SALE_TRASLADO = frozenset({2, 3, 4, 5, 6, 7, 8})  # FMT A IndTraslado; 1 and 9 are sales

_TOT = "Documento/Encabezado/Totales/"


# --- exact arithmetic ---------------------------------------------------------------------

def round_half_up(num: int, den: int = 1) -> int:
    """num/den rounded half away from zero (SII, PHP round); Python's round() is half-even."""
    if den < 0:
        num, den = -num, -den
    if num >= 0:
        return (2 * num + den) // (2 * den)
    return -((-2 * num + den) // (2 * den))


def _ratio(value: int | Decimal) -> tuple[int, int]:
    """An exact (numerator, denominator) for an int or Decimal model value."""
    if isinstance(value, int):
        return value, 1
    return value.as_integer_ratio()


def _pct_of(amount: int, pct: int | Decimal) -> int:
    n, d = _ratio(pct)
    return round_half_up(amount * n, 100 * d)


def iva_of(neto: int, tasa: int | Decimal = IVA_RATE) -> int:
    """IVA of a net amount: round-half-up(neto × tasa / 100)."""
    return _pct_of(neto, tasa)


def split_gross(gross: int, tasa: int | Decimal = IVA_RATE) -> tuple[int, int]:
    """(neto, iva) of a gross afecto amount: neto = round(gross / (1 + tasa/100)), iva = rest."""
    n, d = _ratio(tasa)
    neto = round_half_up(gross * 100 * d, 100 * d + n)
    return neto, gross - neto


# --- the computation -------------------------------------------------------------------------

@dataclass
class _Buckets:
    afecto: int = 0
    exento: int = 0
    nf: int = 0
    grnt: int = 0
    # per bucket name: TipoImp -> base; and the distinct code sets seen in that bucket
    bases: dict[str, dict[str, int]] = field(default_factory=dict)
    codesets: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)


@dataclass
class _Run:
    """One evaluation: errors found and the assignments to make if there are none."""

    doc: Documento
    errors: list[DteSyncError] = field(default_factory=list)
    sets: list[tuple[Any, str, Any]] = field(default_factory=list)
    dr_amounts: list[int | None] = field(default_factory=list)  # pesos of each DscRcgGlobal

    def err(self, code: str, **kw: Any) -> None:
        self.errors.append(DteSyncError(code, **kw))

    def mismatch(self, tag: str, computed: Any, given: Any) -> None:
        self.err("TOTALS_INCONSISTENT", field=tag, expected=computed, found=given, path=_TOT + tag)


def totals_errors(doc: Documento) -> list[DteSyncError]:
    """Every totals inconsistency of `doc`, without changing it (for `verify` and tests)."""
    return _evaluate(doc).errors


def global_dr_amounts(doc: Documento) -> list[int | None]:
    """The peso amount of each DscRcgGlobal, in order (a % one included), as the totals were
    computed; None for one that is invalid. For the printed representation."""
    return _evaluate(doc).dr_amounts


def complete_totals(doc: Documento) -> None:
    """Fill the missing line amounts and Totales of `doc` in place; check the given ones.

    Raises DteSyncErrors listing every inconsistency; `doc` is then left unchanged.
    """
    run = _evaluate(doc)
    if run.errors:
        raise DteSyncErrors(run.errors)
    for obj, attr, value in run.sets:
        setattr(obj, attr, value)


def _evaluate(doc: Documento) -> _Run:
    run = _Run(doc)
    tipo = doc.tipo
    id_doc = doc.id_doc
    boleta = tipo.is_boleta
    exempt = tipo.is_exento
    gross = not exempt and (
        (tipo is TipoDte.BOLETA and id_doc.ind_mnt_neto != 2) or (not boleta and id_doc.mnt_bruto == 1)
    )
    zero_ok = tipo is TipoDte.GUIA_DESPACHO and id_doc.ind_traslado in NON_SALE_TRASLADO
    erratas = tipo.is_note and any(r.cod_ref == "2" for r in doc.referencia)
    b = _Buckets()
    for idx, det in enumerate(doc.detalle, 1):
        _line(run, b, det, idx, boleta=boleta, exempt=exempt, gross=gross,
              zero_ok=zero_ok, must_be_zero=erratas)
    _global_dr(run, b, exempt)
    totales = doc.enc.totales
    if totales is None:
        totales = Totales()
        run.sets.append((doc.enc, "totales", totales))
    _totals(run, b, totales, tipo=tipo, boleta=boleta, exempt=exempt, gross=gross)
    return run


def _line_no(det: Detalle, idx: int) -> int:
    return det.nro_lin_det or idx


def _line(run: _Run, b: _Buckets, det: Detalle, idx: int, *, boleta: bool, exempt: bool,
          gross: bool, zero_ok: bool, must_be_zero: bool) -> None:
    """MontoItem of one line, and its amount into the bucket its IndExe names."""
    no = _line_no(det, idx)
    ind = det.ind_exe
    if ind is not None and ind not in ((1, 2, 6) if boleta else (1, 2, 3, 4, 5, 6)):
        run.err("FIELD_INVALID", field="IndExe", expected="1, 2 o 6" if boleta else "1 a 6",
                found=ind, path=f"Documento/Detalle[{no}]/IndExe", params={"line_no": no})
        return
    amount = _line_amount(run, det, no, zero=must_be_zero or ind in (4, 5), zero_ok=zero_ok)
    if amount is None:
        return
    if amount < 0:
        run.err("AMOUNT_NEGATIVE", field="MontoItem", found=amount,
                path=f"Documento/Detalle[{no}]/MontoItem", params={"line_no": no})
        return
    if ind in (None, 1):
        bucket = "exento" if (ind == 1 or exempt) else "afecto"
    elif ind == 3:
        bucket = "grnt"
    elif ind in (2, 6):
        b.nf += amount if ind == 2 else -amount
        return
    else:
        return  # 4, 5: zero by rule
    setattr(b, bucket, getattr(b, bucket) + amount)
    codes: tuple[str, ...] = ()
    if det.cod_imp_adic:
        codes = _line_taxes(run, b, det, no, bucket, amount, boleta=boleta, gross=gross)
    b.codesets.setdefault(bucket, set()).add(codes)  # FMT D.a: a $ D/R needs one code set


def _line_taxes(run: _Run, b: _Buckets, det: Detalle, no: int, bucket: str, amount: int, *,
                boleta: bool, gross: bool) -> tuple[str, ...]:
    """Add the line to the base of each of its CodImpAdic; its sorted code set."""
    codes = tuple(sorted(str(c).strip() for c in det.cod_imp_adic))
    if boleta:
        run.err("FIELD_NOT_ALLOWED", field="CodImpAdic", path=f"Documento/Detalle[{no}]/CodImpAdic",
                params={"tipo_dte": run.doc.tipo_dte, "line_no": no})
    elif gross:
        run.err("GROSS_WITH_ADDITIONAL_TAX", field="CodImpAdic", found=",".join(codes),
                path=f"Documento/Detalle[{no}]/CodImpAdic", params={"line_no": no})
    else:
        bases = b.bases.setdefault(bucket, {})
        for code in codes:
            bases[code] = bases.get(code, 0) + amount
    return codes


def _line_amount(run: _Run, det: Detalle, no: int, *, zero: bool, zero_ok: bool) -> int | None:
    """The line's MontoItem (given or computed); None after reporting an error."""
    given = det.monto_item
    path = f"Documento/Detalle[{no}]/"
    if zero:
        if given not in (None, 0):
            run.err("LINE_AMOUNT_INCONSISTENT", field="MontoItem", expected=0, found=given,
                    path=path + "MontoItem", params={"line_no": no})
            return None
        if given is None:
            run.sets.append((det, "monto_item", 0))
        return 0
    if det.prc_item is None:
        if given is None:
            if zero_ok:
                run.sets.append((det, "monto_item", 0))
                return 0
            run.err("FIELD_REQUIRED", field="MontoItem", path=path + "MontoItem",
                    params={"line_no": no})
            return None
        return given
    qty = det.qty_item
    if qty is None:
        qty = Decimal(1)
        run.sets.append((det, "qty_item", qty))
    for tag, v in (("QtyItem", qty), ("PrcItem", det.prc_item)):
        if v < 0:
            run.err("AMOUNT_NEGATIVE", field=tag, found=v, path=path + tag, params={"line_no": no})
            return None
    qn, qd = _ratio(qty)
    pn, pd = _ratio(det.prc_item)
    base = round_half_up(qn * pn, qd * pd)
    dsc = _adjustment(run, det, no, "Descuento", (base,))
    rcg = _adjustment(run, det, no, "Recargo", (base - (dsc or 0), base))
    if dsc is None or rcg is None:
        return None
    computed = base - dsc + rcg
    if given is None:
        run.sets.append((det, "monto_item", computed))
        return computed
    if given != computed:
        run.err("LINE_AMOUNT_INCONSISTENT", field="MontoItem", expected=computed, found=given,
                path=path + "MontoItem", params={"line_no": no})
    return given  # downstream sums follow the file, so totals errors are not echoes of this one


def _adjustment(run: _Run, det: Detalle, no: int, kind: str, bases: tuple[int, ...]) -> int | None:
    """DescuentoMonto / RecargoMonto from the monto or the pct (see module doc)."""
    attr = kind.lower()
    pct: Decimal | None = getattr(det, attr + "_pct")
    monto: int | None = getattr(det, attr + "_monto")
    if monto is not None and monto < 0:
        run.err("AMOUNT_NEGATIVE", field=kind + "Monto", found=monto,
                path=f"Documento/Detalle[{no}]/{kind}Monto", params={"line_no": no})
        return None
    if pct is None or pct == 0:
        return monto or 0
    pn, pd = _ratio(pct)
    if monto is None:
        value = round_half_up(bases[0] * pn, 100 * pd)
        run.sets.append((det, attr + "_monto", value))
        return value
    # accept the given monto if it is within one peso of pct × some admissible base
    if any(abs(monto * 100 * pd - base * pn) < 100 * pd for base in bases):
        return monto
    run.err("LINE_VALUE_INCONSISTENT", field=kind + "Monto",
            expected=round_half_up(bases[0] * pn, 100 * pd), found=monto,
            path=f"Documento/Detalle[{no}]/{kind}Monto", params={"line_no": no})
    return None


def _global_dr(run: _Run, b: _Buckets, exempt: bool) -> None:
    """Apply DscRcgGlobal in order to the amount each one targets (FMT zone D)."""
    for idx, dr in enumerate(run.doc.dsc_rcg_global, 1):
        run.dr_amounts.append(None)
        no = dr.nro_lin_dr or idx
        path = f"Documento/DscRcgGlobal[{no}]/"
        bad = False
        for tag, value, allowed in (("TpoMov", dr.tpo_mov, ("D", "R")),
                                    ("TpoValor", dr.tpo_valor, ("%", "$")),
                                    ("IndExeDR", dr.ind_exe_dr, (None, 1, 2))):
            if value not in allowed:
                run.err("FIELD_INVALID", field=tag, expected=" o ".join(map(str, allowed[-2:])),
                        found=value, path=path + tag)
                bad = True
        if bad or dr.valor_dr is None:
            if not bad:
                run.err("FIELD_REQUIRED", field="ValorDR", path=path + "ValorDR")
            continue
        ind = dr.ind_exe_dr
        bucket = "nf" if ind == 2 else "exento" if (ind == 1 or exempt) else "afecto"
        current = getattr(b, bucket)
        if dr.tpo_valor == "%":
            value = _pct_of(current, dr.valor_dr)
            _scale_bases(b, bucket, dr.valor_dr, dr.tpo_mov)
        else:
            n, d = _ratio(dr.valor_dr)
            value = round_half_up(n, d)
            if len(b.codesets.get(bucket, ())) > 1:
                run.err("FIELD_INVALID", field="TpoValor", expected="%", found="$",
                        path=path + "TpoValor")
                continue
            _shift_bases(b, bucket, value if dr.tpo_mov == "R" else -value)
        run.dr_amounts[-1] = value
        result = current + value if dr.tpo_mov == "R" else current - value
        if result < 0:
            tag = {"afecto": "MntNeto", "exento": "MntExe", "nf": "MontoNF"}[bucket]
            if bucket == "nf":
                setattr(b, bucket, result)  # MontoNF may be negative (FMT A.125)
                continue
            run.err("AMOUNT_NEGATIVE", field=tag, found=result, path=path + "ValorDR")
            continue
        setattr(b, bucket, result)


def _scale_bases(b: _Buckets, bucket: str, pct: Decimal, mov: str | None) -> None:
    bases = b.bases.get(bucket)
    if bases:
        for code, base in bases.items():
            delta = _pct_of(base, pct)
            bases[code] = base + delta if mov == "R" else base - delta


def _shift_bases(b: _Buckets, bucket: str, delta: int) -> None:
    bases = b.bases.get(bucket)
    if bases:
        for code in bases:
            bases[code] += delta


# --- Totales ----------------------------------------------------------------------------------

def _check(run: _Run, tot: Totales | TotalesComisiones, attr: str, tag: str, computed: int, *,
           fill: bool) -> int:
    """Compare a given total with the computed one, or schedule filling it; the value to use."""
    given: int | None = getattr(tot, attr)
    if given is None:
        if fill:
            run.sets.append((tot, attr, computed))
        return computed
    if given != computed:
        run.mismatch(tag, computed, given)
    return given


def _totals(run: _Run, b: _Buckets, tot: Totales, *, tipo: int, boleta: bool, exempt: bool,
            gross: bool) -> None:
    afecto_present = b.afecto != 0
    neto = iva = 0
    if not exempt:
        _tasa_iva(run, tot, boleta=boleta, fill=afecto_present)
        if gross:
            c_neto, c_iva = split_gross(b.afecto)
            _check(run, tot, "mnt_neto", "MntNeto", c_neto, fill=afecto_present)
            _check(run, tot, "iva", "IVA", c_iva, fill=afecto_present)
            neto, iva = c_neto, c_iva
        else:
            neto = _check(run, tot, "mnt_neto", "MntNeto", b.afecto, fill=afecto_present)
            iva = _check(run, tot, "iva", "IVA", iva_of(neto), fill=afecto_present)
    else:
        for attr, tag in (("mnt_neto", "MntNeto"), ("iva", "IVA"), ("tasa_iva", "TasaIVA")):
            if getattr(tot, attr) not in (None, 0):
                run.mismatch(tag, 0, getattr(tot, attr))
    exe = _check(run, tot, "mnt_exe", "MntExe", b.exento, fill=exempt or b.exento != 0)
    total = neto + iva + exe
    if boleta and tot.impto_reten:
        run.err("FIELD_NOT_ALLOWED", field="ImptoReten", path=_TOT + "ImptoReten",
                params={"tipo_dte": tipo})
    if not boleta:
        total += _impto_reten(run, b, tot, tipo, iva)
        total += _check(run, tot, "grnt_dep", "GrntDep", b.grnt, fill=b.grnt != 0)
        total -= _cred_ec(run, tot, iva)
        total -= _comisiones(run, tot, tipo)
        _iva_split(run, tot, iva)
    if total < 0:
        run.err("AMOUNT_NEGATIVE", field="MntTotal", found=total, path=_TOT + "MntTotal")
        return
    total = _check(run, tot, "mnt_total", "MntTotal", total, fill=True)
    nf = _check(run, tot, "monto_nf", "MontoNF", b.nf, fill=b.nf != 0)
    if boleta:
        _check(run, tot, "total_periodo", "TotalPeriodo", total + nf, fill=nf != 0)
    else:
        _check(run, tot, "monto_periodo", "MontoPeriodo", total + nf, fill=nf != 0)


def _tasa_iva(run: _Run, tot: Totales, *, boleta: bool, fill: bool) -> None:
    given = tot.tasa_iva
    if given is not None and given != IVA_RATE:
        run.mismatch("TasaIVA", IVA_RATE, given)
    elif boleta:
        if given is not None:
            run.sets.append((tot, "tasa_iva", None))  # no TasaIVA in the boleta schema
    elif given is None and fill:
        run.sets.append((tot, "tasa_iva", Decimal(IVA_RATE)))


def _impto_reten(run: _Run, b: _Buckets, tot: Totales, tipo: int, iva: int) -> int:
    """Fill/check ImptoReten; the signed amount it adds to MntTotal."""
    line_bases: dict[str, int] = {}
    for bases in b.bases.values():
        for code, base in bases.items():
            line_bases[code] = line_bases.get(code, 0) + base
    given = {str(ir.tipo_imp).strip(): ir for ir in tot.impto_reten}
    new_list = list(tot.impto_reten)
    for code in line_bases:
        if code not in given:
            ir = ImptoReten(tipo_imp=code)
            given[code] = ir
            new_list.append(ir)
    if len(new_list) != len(tot.impto_reten):
        run.sets.append((tot, "impto_reten", new_list))
    signed = retained = 0
    for code, ir in given.items():
        monto = _one_tax(run, ir, code, line_bases.get(code), tot.mnt_base)
        if monto is None:
            continue
        if TAX_CODES[code][0] == "R":
            signed -= monto
            retained += monto
        else:
            signed += monto
    if retained and tipo in IVANORET_TYPES:
        no_ret = iva - retained
        if no_ret < 0:
            run.err("AMOUNT_NEGATIVE", field="IVANoRet", found=no_ret, path=_TOT + "IVANoRet")
        else:
            _check(run, tot, "iva_no_ret", "IVANoRet", no_ret, fill=no_ret != 0)
    return signed


def _one_tax(run: _Run, ir: ImptoReten, code: str, base: int | None,
             mnt_base: int | None) -> int | None:
    tag = f"ImptoReten[TipoImp={code}]/MontoImp"
    if code not in TAX_CODES:
        run.err("TAX_CODE_UNSUPPORTED", field="TipoImp", found=code, path=_TOT + "ImptoReten",
                params={"detail": "código no soportado; vea Formato DTE §4"})
        return None
    rate = ir.tasa_imp if ir.tasa_imp is not None else TAX_CODES[code][1]
    if code == "17":
        base = mnt_base  # IVA anticipado faenamiento: tasa × MntBase (FMT A.117 b)
    if rate is None or base is None:
        if ir.monto_imp is None:
            run.err("TAX_CODE_UNSUPPORTED", field="MontoImp", found=code, path=_TOT + tag,
                    params={"detail": "sin tasa fija ni base; informe TasaImp y MontoImp"})
        return ir.monto_imp
    if ir.tasa_imp is None:
        run.sets.append((ir, "tasa_imp", rate))
    computed = _pct_of(base, rate)
    if ir.monto_imp is None:
        run.sets.append((ir, "monto_imp", computed))
        return computed
    if ir.monto_imp != computed:
        run.err("TOTALS_INCONSISTENT", field=tag, expected=computed, found=ir.monto_imp,
                path=_TOT + tag)
    return ir.monto_imp


def _cred_ec(run: _Run, tot: Totales, iva: int) -> int:
    """CredEC is only checked (given by constructoras): 0 <= CredEC <= 65% of IVA."""
    cred = tot.cred_ec
    if not cred:
        return 0
    cap = round_half_up(iva * CRED_EC_RATE[0], CRED_EC_RATE[1])
    if cred < 0 or cred > cap:
        run.mismatch("CredEC", f"0..{cap}", cred)
    return cred


def _comisiones(run: _Run, tot: Totales, tipo: int) -> int:
    """Totales/Comisiones = Σ zone-E lines; subtracted from MntTotal (FMT A.121-124)."""
    lines = run.doc.comisiones
    given = tot.comisiones
    if not lines and given is None:
        return 0
    if tipo not in COMISIONES_TYPES:
        run.err("FIELD_NOT_ALLOWED", field="Comisiones", path="Documento/Comisiones",
                params={"tipo_dte": tipo})
        return 0
    sums = {a: sum(getattr(c, a) or 0 for c in lines)
            for a in ("val_com_neto", "val_com_exe", "val_com_iva")}
    if given is None:
        given = TotalesComisiones()
        run.sets.append((tot, "comisiones", given))
        for attr, value in sums.items():
            run.sets.append((given, attr, value))
        return sum(sums.values())
    if not lines:
        return sum(getattr(given, a) or 0 for a in sums)
    used = 0
    for attr, tag in (("val_com_neto", "ValComNeto"), ("val_com_exe", "ValComExe"),
                      ("val_com_iva", "ValComIVA")):
        used += _check(run, given, attr, "Comisiones/" + tag, sums[attr], fill=True)
    return used


def _iva_split(run: _Run, tot: Totales, iva: int) -> None:
    """IVAProp + IVATerc, when both are given, must be the whole IVA (FMT A.113-114)."""
    if tot.iva_prop is not None and tot.iva_terc is not None and tot.iva_prop + tot.iva_terc != iva:
        run.mismatch("IVATerc", iva - tot.iva_prop, tot.iva_terc)
