"""Drive the PyPI package facturacion-electronica through the same work as bench/engine.py.

Runs with the *peer's* virtualenv python (bench/engine.py creates it and calls this script);
it must not import anything from dtesync. It only calls the package's public functions
(`timbrar`, `xml_envio`): nothing of its code is copied here.

    <venv>/bin/python bench/peer_fe_driver.py CONFIG.json  ->  one JSON object on stdout

CONFIG: pfx, password, caf (paths), rut_emisor, rut_firmante, fch_resol, nro_resol,
n (documents), batch (documents per EnvioDTE; 0 = DTE only, no envelope), first_folio,
no_png (stub out the PNG rendering of the PDF417 barcode, which dtesync does not do per DTE).
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import time
from importlib import metadata


def factura(folio: int) -> dict:
    """bench/engine.py's 3-line factura (33_factura.txt), in the peer's dict shape."""
    return {
        "Encabezado": {
            "IdDoc": {"TipoDTE": 33, "Folio": folio, "FchEmis": "2025-03-14", "FmaPago": 2, "FchVenc": "2025-04-13"},
            "Receptor": {
                "RUTRecep": "77123456-9",
                "RznSocRecep": "Constructora Peñalolén Ltda.",
                "GiroRecep": "Construcción de edificios",
                "Contacto": "Sofía Muñoz",
                "CorreoRecep": "compras@constructorapenalolen.cl",
                "DirRecep": "Camino Las Perdices 2750, bodega 3",
                "CmnaRecep": "Peñalolén",
                "CiudadRecep": "Santiago",
            },
        },
        "Detalle": [
            {
                "NmbItem": 'Tornillo autoperforante 8 x 1" cabeza lenteja',
                "QtyItem": 500,
                "UnmdItem": "UN",
                "PrcItem": 35,
                "CdgItem": [{"TpoCodigo": "INT1", "VlrCodigo": "TOR-0801"}],
                "Impuesto": [{"CodImp": 14, "price_include": False, "TasaImp": 19}],
            },
            {
                "NmbItem": "Cemento Polpaico especial 25 kg",
                "DscItem": "Saco de cemento; entrega en obra",
                "QtyItem": 40,
                "UnmdItem": "SACO",
                "PrcItem": 4290,
                "DescuentoPct": 5,
                "CdgItem": [{"TpoCodigo": "EAN13", "VlrCodigo": "7802920000015"}],
                "Impuesto": [{"CodImp": 14, "price_include": False, "TasaImp": 19}],
            },
            {"IndExe": 1, "NmbItem": "Flete a obra (exento)", "QtyItem": 1, "PrcItem": 15000},
        ],
        "DscRcgGlobal": [{"TpoMov": "D", "GlosaDR": "Descuento cliente frecuente", "TpoValor": "%", "ValorDR": 2}],
        "Referencia": [{"TpoDocRef": "801", "FolioRef": "OC-4512", "FchRef": "2025-03-10", "RazonRef": "Orden de compra"}],
    }


def vals_for(cfg: dict, folios: list[int], pfx_b64: str, caf_b64: str) -> dict:
    """A fresh input dict (the package consumes/mutates the dicts it is given)."""
    return {
        "test": True,  # no Conexion object: nothing is sent to the SII
        "verify": True,  # its own XSD validation of each DTE, signature and envelope: on, like ours
        "Emisor": {
            "RUTEmisor": cfg["rut_emisor"],
            "RznSoc": "Ferretería Los Aromos SpA",
            "GiroEmis": "Venta al por mayor de artículos de ferretería y materiales de construcción",
            "Telefono": "+56 2 2345 6789",
            "CorreoEmisor": "facturacion@ferreterialosaromos.cl",
            "Actecos": [466301, 475201],
            "DirOrigen": "Av. José Pedro Alessandri 1234",
            "CmnaOrigen": "Ñuñoa",
            "CiudadOrigen": "Santiago",
            "Modo": "certificacion",
            "NroResol": cfg["nro_resol"],
            "FchResol": cfg["fch_resol"],
            "ValorIva": 19,
        },
        "firma_electronica": {
            "string_firma": pfx_b64,
            "string_password": cfg["password"],
            "init_signature": True,
            "rut_firmante": cfg["rut_firmante"],
        },
        "RutReceptor": "60803000-K",
        "Documento": [
            {"TipoDTE": 33, "caf_file": [caf_b64], "documentos": [dict(factura(f), NroDTE=i) for i, f in enumerate(folios, 1)]}
        ],
    }


def stub_png() -> None:
    """Skip rendering the PDF417 PNG the package makes for every DTE (dtesync only hands the
    TED bytes to the printer), to show how much of its time that is."""
    from facturacion_electronica import dte

    class _NoImage:
        def save(self, fh, fmt):
            fh.write(b"")

    dte.DTE.pdf417bc = lambda self, ted: _NoImage()


def run(cfg: dict) -> dict:
    logging.disable(logging.WARNING)  # it logs every unknown key; keep stdout/stderr clean
    from facturacion_electronica import facturacion_electronica as fe

    if cfg.get("no_png"):
        stub_png()
    pfx_b64 = base64.b64encode(open(cfg["pfx"], "rb").read()).decode()
    caf_b64 = base64.b64encode(open(cfg["caf"], "rb").read()).decode()
    n, batch, folio = cfg["n"], cfg["batch"], cfg["first_folio"]
    # Warm-up outside the timing (imports, first XSD parse), on a folio the timed run never uses.
    fe.timbrar(vals_for(cfg, [folio + n], pfx_b64, caf_b64))
    sizes = []
    t0 = time.perf_counter()
    if batch == 0:  # DTE only: stamp + sign + validate, no envelope
        for i in range(n):
            out = fe.timbrar(vals_for(cfg, [folio + i], pfx_b64, caf_b64))
            if not out or out[0].get("error") or not out[0].get("sii_xml_dte"):
                return {"ok": False, "error": (out[0].get("error") if out else "no output")[:2000]}
            sizes.append(len(out[0]["sii_xml_dte"]))
    else:
        done = 0
        while done < n:
            folios = list(range(folio + done, folio + min(n, done + batch)))
            out = fe.xml_envio(vals_for(cfg, folios, pfx_b64, caf_b64))
            if out.get("errores") or not out.get("sii_xml_request"):
                return {"ok": False, "error": str(out.get("errores"))[:2000]}
            sizes.append(len(out["sii_xml_request"]))
            done += len(folios)
    elapsed = time.perf_counter() - t0
    return {
        "ok": True,
        "n": n,
        "batch": batch,
        "no_png": bool(cfg.get("no_png")),
        "seconds": elapsed,
        "docs_per_s": n / elapsed,
        "output_chars": sizes[:1],
        "version": metadata.version("facturacion_electronica"),
        "sample": out[0]["sii_xml_dte"] if batch == 0 else out["sii_xml_request"],
    }


def main() -> int:
    cfg = json.load(open(sys.argv[1], encoding="utf-8"))
    try:
        result = run(cfg)
    except Exception as exc:  # report, never crash the bench
        import traceback

        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"[:3000]}
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
