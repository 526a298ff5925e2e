"""Where the SII and a provider live: one URL builder per environment.

The code that talks to the real SII is the same code the tests drive against fake-sii; only
these base URLs differ. Hosts (docs/uplink-sii.md says which document each rests on):
- SOAP services and DTEUpload: maullin.sii.cl (certificación), palena.sii.cl (producción).
- Boleta REST: semilla, token and estado on apicert.sii.cl / api.sii.cl, the envío itself on
  pangal.sii.cl / rahue.sii.cl, all under /recursos/v1/.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync.rut import Rut

ENVIRONMENTS = {
    "certificacion": ("https://maullin.sii.cl", "https://apicert.sii.cl", "https://pangal.sii.cl"),
    "produccion": ("https://palena.sii.cl", "https://api.sii.cl", "https://rahue.sii.cl"),
}


@dataclass(frozen=True)
class SiiEndpoints:
    """Base URLs: `soap` (DTEWS + cgi_dte), `api` (boleta REST) and `api_envio` (boleta upload)."""

    soap: str
    api: str
    api_envio: str

    @classmethod
    def for_environment(cls, environment: str) -> SiiEndpoints:
        try:
            soap, api, envio = ENVIRONMENTS[environment]
        except KeyError:
            raise ValueError(f"unknown SII environment {environment!r} (certificacion | produccion)") from None
        return cls(soap, api, envio)

    @classmethod
    def single(cls, base: str) -> SiiEndpoints:
        """Every service under one base URL (fake-sii serves them all on one port)."""
        base = base.rstrip("/")
        return cls(base, base, base)

    # --- factura (SOAP + CGI) -----------------------------------------------------------------
    @property
    def crseed(self) -> str:
        return f"{self.soap.rstrip('/')}/DTEWS/CrSeed.jws"

    @property
    def get_token(self) -> str:
        return f"{self.soap.rstrip('/')}/DTEWS/GetTokenFromSeed.jws"

    @property
    def upload(self) -> str:
        return f"{self.soap.rstrip('/')}/cgi_dte/UPL/DTEUpload"

    @property
    def query_est_up(self) -> str:
        return f"{self.soap.rstrip('/')}/DTEWS/QueryEstUp.jws"

    @property
    def query_est_dte(self) -> str:
        return f"{self.soap.rstrip('/')}/DTEWS/QueryEstDte.jws"

    # --- boleta (REST) ------------------------------------------------------------------------
    @property
    def boleta_semilla(self) -> str:
        return f"{self.api.rstrip('/')}/recursos/v1/boleta.electronica.semilla"

    @property
    def boleta_token(self) -> str:
        return f"{self.api.rstrip('/')}/recursos/v1/boleta.electronica.token"

    @property
    def boleta_envio(self) -> str:
        return f"{self.api_envio.rstrip('/')}/recursos/v1/boleta.electronica.envio"

    def boleta_estado(self, rut: Rut, track_id: str) -> str:
        return f"{self.api.rstrip('/')}/recursos/v1/boleta.electronica.envio/{rut.number}-{rut.dv}-{track_id}"

    def boleta_documento(self, rut: Rut, tipo: int, folio: int) -> str:
        return f"{self.api.rstrip('/')}/recursos/v1/boleta.electronica/{rut.number}-{rut.dv}-{tipo}-{folio}/estado"
