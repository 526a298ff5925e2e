"""Drive facturacion-electronica's own SII client (PyPI `facturacion_electronica`) against
fake-sii: seed -> token -> upload -> envío status -> document status, for a factura
(SOAP services and DTEUpload) and a boleta (the boleta REST API).

Runs with the *peer's* virtualenv python (tests/test_uplink_conformance.py creates it and
calls this script); it must not import anything from dtesync. It uses only the package's
public functions (`timbrar_y_enviar`, `consulta_estado_envio`, `consulta_estado_dte`). The
package has no setting for the SII's address: its base URLs are module-level dicts in
`facturacion_electronica.conexion` (`server_url`, `api_url`, `api_url_envio`). This script
replaces their "certificacion" entries with fake-sii's URL and changes nothing else of the
package: its zeep client still reads fake-sii's `?WSDL`, its own code signs the seed, the
DTEs and the envelope, parses the answers and decides what they mean.

    <venv>/bin/python tests/fe_conformance_driver.py CONFIG.json  ->  one JSON object on stdout

CONFIG: url (fake-sii), pfx, password, caf_33, caf_39 (paths), rut_emisor, rut_firmante,
fch_resol, nro_resol, folio_33, folio_39, polls (status queries before giving up), wait (s).
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import sys
import time
from importlib import metadata
from typing import Any


def emisor(cfg: dict) -> dict:
    return {
        "RUTEmisor": cfg["rut_emisor"], "RznSoc": "Ferretería Los Aromos SpA",
        "GiroEmis": "Venta al por mayor de artículos de ferretería y materiales de construcción",
        "Telefono": "+56 2 2345 6789", "CorreoEmisor": "facturacion@ferreterialosaromos.cl",
        "Actecos": [466301], "DirOrigen": "Av. José Pedro Alessandri 1234", "CmnaOrigen": "Ñuñoa",
        "CiudadOrigen": "Santiago", "Modo": "certificacion", "NroResol": cfg["nro_resol"],
        "FchResol": cfg["fch_resol"], "ValorIva": 19, "Website": "https://www.example.cl",
    }


def firma(cfg: dict) -> dict:
    with open(cfg["pfx"], "rb") as fh:
        pfx = fh.read()
    return {"string_firma": base64.b64encode(pfx).decode(),
            "string_password": cfg["password"], "init_signature": True, "rut_firmante": cfg["rut_firmante"]}


def factura(folio: int) -> dict:
    return {
        "NroDTE": 1,
        "Encabezado": {
            "IdDoc": {"TipoDTE": 33, "Folio": folio, "FchEmis": "2025-03-14", "FmaPago": 1},
            "Receptor": {"RUTRecep": "77123456-9", "RznSocRecep": "Constructora Peñalolén Ltda.",
                         "GiroRecep": "Construcción de edificios", "DirRecep": "Camino Las Perdices 2750",
                         "CmnaRecep": "Peñalolén", "CiudadRecep": "Santiago"},
        },
        "Detalle": [{"NmbItem": "Cemento Polpaico especial 25 kg", "QtyItem": 40, "PrcItem": 4290,
                     "Impuesto": [{"CodImp": 14, "price_include": False, "TasaImp": 19}]}],
    }


def boleta(folio: int) -> dict:
    return {
        "NroDTE": 1,
        "Encabezado": {"IdDoc": {"TipoDTE": 39, "Folio": folio, "FchEmis": "2025-03-14", "IndServicio": 3},
                       "Receptor": {"RUTRecep": "66666666-6"}},
        "Detalle": [{"NmbItem": "Martillo carpintero 16 oz", "QtyItem": 2, "PrcItem": 5990,
                     "Impuesto": [{"CodImp": 14, "price_include": True, "TasaImp": 19}]}],
    }


def send(cfg: dict, tipo: int, doc: dict, caf: str) -> dict:
    from facturacion_electronica import facturacion_electronica as fe

    vals = {"test": False, "verify": True, "Emisor": emisor(cfg), "firma_electronica": firma(cfg),
            "RutReceptor": "60803000-K", "ID": f"SetDoc{tipo}",
            "Documento": [{"TipoDTE": tipo, "caf_file": [caf], "documentos": [doc]}]}
    return fe.timbrar_y_enviar(vals)


def envio_status(cfg: dict, track: str, api: bool) -> list[dict]:
    """consulta_estado_envio until the package itself says something other than "sent"."""
    from facturacion_electronica import facturacion_electronica as fe

    seen = []
    for _ in range(cfg["polls"]):
        r = fe.consulta_estado_envio({"Emisor": emisor(cfg), "firma_electronica": firma(cfg), "codigo_envio": track,
                                      "api": api})
        seen.append({k: v for k, v in r.items() if k in ("status", "glosa", "errores", "detalles", "detalle_rep_rech")})
        if r.get("status") not in ("Enviado", "EnProceso", None):
            break
        time.sleep(cfg["wait"])
    return seen


def dte_status(cfg: dict, tipo: int, detalle: dict, receptor: str, api: bool) -> dict:
    from facturacion_electronica import facturacion_electronica as fe

    doc = {"Encabezado": {"IdDoc": {"TipoDTE": tipo, "Folio": detalle["Folio"], "FchEmis": "2025-03-14"},
                          "Receptor": {"RUTRecep": receptor},
                          "Totales": {"MntTotal": detalle["MntTotal"]}}}
    r = fe.consulta_estado_dte({"Emisor": emisor(cfg), "firma_electronica": firma(cfg), "api": api,
                                "Documento": [{"TipoDTE": tipo, "documentos": [doc]}]})
    return {k: {kk: vv for kk, vv in v.items() if kk in ("status", "glosa", "errores")} for k, v in r.items()}


def run(cfg: dict) -> dict[str, Any]:
    logging.disable(logging.WARNING)  # it logs every unknown key; keep stdout/stderr clean
    from facturacion_electronica import conexion

    base = cfg["url"].rstrip("/") + "/"
    conexion.server_url["certificacion"] = base  # the only change: where the SII is
    conexion.api_url["certificacion"] = base + "recursos/v1/"
    conexion.api_url_envio["certificacion"] = base + "recursos/v1/"
    out: dict[str, Any] = {"version": metadata.version("facturacion_electronica")}
    for tipo, doc, caf, receptor, api in ((33, factura(cfg["folio_33"]), cfg["caf_33"], "77123456-9", False),
                                          (39, boleta(cfg["folio_39"]), cfg["caf_39"], "66666666-6", True)):
        with open(caf, "rb") as fh:
            caf_b64 = base64.b64encode(fh.read()).decode()
        sent = send(cfg, tipo, copy.deepcopy(doc), caf_b64)
        track = str(sent.get("sii_send_ident") or "")
        result: dict[str, Any] = {"status": sent.get("status"), "track_id": track, "errores": str(sent.get("errores")),
                                  "detalles": [{k: d[k] for k in ("Folio", "MntTotal")} for d in sent.get("detalles") or []]}
        if track:
            result["envio"] = envio_status(cfg, track, api)
            if result["detalles"]:
                result["documento"] = dte_status(cfg, tipo, result["detalles"][0], receptor, api)
        out[str(tipo)] = result
    return out


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as fh:
        cfg = json.load(fh)
    try:
        result = run(cfg)
    except Exception as exc:  # noqa: BLE001 - report the peer's failure as JSON, whatever it is
        import traceback

        result = {"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"[:4000]}
    json.dump(result, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
