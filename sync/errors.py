"""Typed errors with a stable code and a human message from one catalog.

Every failure a user can act on is a `DteSyncError` carrying a `code` (stable: ERPs key on
it), the place (`source`, `line` for TXT, `path` for XML/JSON, `field`), and what was
`expected` vs `found`. The message text is never stored on the exception: it is rendered
from `CATALOG` in the configured language (Spanish by default) by `render()`, which is the
one place where errors become status-file entries.

Several errors from one input are raised together as `DteSyncErrors` so that the ERP
programmer sees every problem of a file at once, not one per attempt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# code -> (spanish, english). Templates use str.format with the error's params plus
# field/expected/found/line/path. SII terms (folio, timbre, CAF, boleta, RUT) stay in Spanish.
CATALOG: dict[str, tuple[str, str]] = {
    # --- input: encoding, syntax, hostile content -------------------------------------
    "INPUT_EMPTY": ("El archivo está vacío.", "The file is empty."),
    "INPUT_TOO_LARGE": (
        "El archivo pesa {found} bytes; el máximo es {expected} bytes.",
        "The file is {found} bytes; the maximum is {expected} bytes.",
    ),
    "INPUT_UNKNOWN_FORMAT": (
        "No se reconoce el formato del archivo (se esperaba {expected}; se encontró {found}).",
        "Unrecognised file format (expected {expected}; found {found}).",
    ),
    "INPUT_ENCODING": (
        "Codificación inválida: {detail}. Use UTF-8 o ISO-8859-1 y declárela.",
        "Invalid text encoding: {detail}. Use UTF-8 or ISO-8859-1 and declare it.",
    ),
    "INPUT_BINARY": (
        "El archivo contiene datos binarios (byte 0x00), no texto.",
        "The file contains binary data (a 0x00 byte), not text.",
    ),
    "INPUT_SYMLINK": (
        "El archivo es un enlace simbólico (apunta a {found}); no se siguen enlaces: deje el archivo real en la bandeja.",
        "The file is a symbolic link (to {found}); links are never followed: drop the real file in the inbox.",
    ),
    "INPUT_HARDLINK": (
        "El archivo es un enlace duro a otro archivo ({found} nombres); deje en la bandeja una copia, no un enlace.",
        "The file is a hard link to another file ({found} names); drop a copy in the inbox, not a link.",
    ),
    "INPUT_SPECIAL_FILE": (
        "No es un archivo normal ({found}); deje en la bandeja un archivo de texto.",
        "Not a regular file ({found}); drop a plain file in the inbox.",
    ),
    "INPUT_NAME_INVALID": (
        "El nombre del archivo no sirve ({detail}); se guardó como '{found}'. Use nombres UTF-8 de hasta {expected} bytes.",
        "The file name cannot be used ({detail}); it was kept as '{found}'. Use UTF-8 names of at most {expected} bytes.",
    ),
    "NAME_IN_PROGRESS": (
        "Ya hay un documento llamado '{field}' en proceso en esta carpeta ({found}); espere su resultado antes de enviar otro con el mismo nombre.",
        "A document named '{field}' is still being processed in this folder ({found}); wait for its result before sending another with the same name.",
    ),
    "XML_MALFORMED": ("XML mal formado: {detail}.", "Malformed XML: {detail}."),
    "XML_DOCTYPE_FORBIDDEN": (
        "El XML trae DOCTYPE o declaraciones de entidades; no se aceptan por seguridad.",
        "The XML has a DOCTYPE or entity declarations; they are refused for security.",
    ),
    "JSON_MALFORMED": ("JSON mal formado: {detail}.", "Malformed JSON: {detail}."),
    "TXT_SYNTAX": (
        "Línea mal formada: {detail}.",
        "Malformed line: {detail}.",
    ),
    # --- input: structure and values ------------------------------------------------
    "FIELD_UNKNOWN": (
        "Campo desconocido '{field}' en {path}.",
        "Unknown field '{field}' in {path}.",
    ),
    "FIELD_REQUIRED": (
        "Falta el campo obligatorio '{field}'.",
        "The required field '{field}' is missing.",
    ),
    "FIELD_INVALID": (
        "Valor inválido en '{field}': se esperaba {expected}, se encontró '{found}'.",
        "Invalid value in '{field}': expected {expected}, found '{found}'.",
    ),
    "FIELD_REPEATED": (
        "El campo '{field}' aparece más de una vez y admite solo una.",
        "The field '{field}' appears more than once but allows only one.",
    ),
    "FIELD_TOO_LONG": (
        "'{field}' tiene {found} caracteres; el máximo es {expected}.",
        "'{field}' has {found} characters; the maximum is {expected}.",
    ),
    "FIELD_TOO_SHORT": (
        "'{field}' tiene {found} caracteres; el mínimo es {expected}.",
        "'{field}' has {found} characters; the minimum is {expected}.",
    ),
    "FIELD_NOT_IN_LIST": (
        "Valor '{found}' no admitido en '{field}'; valores válidos: {expected}.",
        "Value '{found}' is not allowed in '{field}'; valid values: {expected}.",
    ),
    "FIELD_OUT_OF_RANGE": (
        "'{field}' fuera de rango: se esperaba {expected}, se encontró {found}.",
        "'{field}' is out of range: expected {expected}, found {found}.",
    ),
    "FIELD_TOO_MANY_DIGITS": (
        "'{field}' = {found} tiene {digits} dígitos; el máximo es {expected}.",
        "'{field}' = {found} has {digits} digits; the maximum is {expected}.",
    ),
    "FIELD_TOO_MANY_DECIMALS": (
        "'{field}' = {found} tiene {digits} decimales; el máximo es {expected}.",
        "'{field}' = {found} has {digits} decimals; the maximum is {expected}.",
    ),
    "FIELD_REQUIRED_FOR_TYPE": (
        "Falta '{field}', obligatorio en TipoDTE {tipo_dte} ({rule}).",
        "'{field}' is missing; TipoDTE {tipo_dte} requires it ({rule}).",
    ),
    "FIELD_NOT_ALLOWED": (
        "El campo '{field}' no corresponde a TipoDTE {tipo_dte}.",
        "The field '{field}' does not apply to TipoDTE {tipo_dte}.",
    ),
    "INPUT_SIGNED": (
        "El archivo trae '{field}', que dtesync agrega al timbrar y firmar; envíe el documento sin timbre ni firma.",
        "The file carries '{field}', which dtesync adds when stamping and signing; send the document without timbre or signature.",
    ),
    "TOO_MANY": (
        "Demasiados '{field}': {found}; el máximo es {expected}.",
        "Too many '{field}': {found}; the maximum is {expected}.",
    ),
    "RUT_INVALID": (
        "RUT inválido en '{field}': '{found}' ({detail}).",
        "Invalid RUT in '{field}': '{found}' ({detail}).",
    ),
    "TIPO_DTE_UNSUPPORTED": (
        "TipoDTE {found} no soportado; se acepta {expected}.",
        "TipoDTE {found} is not supported; accepted: {expected}.",
    ),
    "REFERENCIA_REQUIRED": (
        "TipoDTE {tipo_dte} (nota de crédito/débito) requiere al menos una Referencia al documento que modifica.",
        "TipoDTE {tipo_dte} (credit/debit note) requires at least one Referencia to the document it modifies.",
    ),
    "CODREF_REQUIRED": (
        "TipoDTE {tipo_dte} (nota de crédito/débito): la Referencia al documento que modifica debe indicar "
        "CodRef (1 anula el documento, 2 corrige texto, 3 corrige montos).",
        "TipoDTE {tipo_dte} (credit/debit note): the Referencia to the document it modifies must give "
        "CodRef (1 voids the document, 2 corrects text, 3 corrects amounts).",
    ),
    "CODREF_SINGLE_DOCUMENT": (
        "Una nota con CodRef {cod_ref} (anula o corrige texto) referencia un único documento; esta referencia {found}.",
        "A note with CodRef {cod_ref} (voids or corrects text) references one single document; this one references {found}.",
    ),
    "CODREF_TEXT_WITH_AMOUNTS": (
        "Una nota con CodRef 2 (corrige texto) no lleva montos: quite '{field}' ({found}) o use CodRef 3 (corrige montos).",
        "A note with CodRef 2 (corrects text) carries no amounts: remove '{field}' ({found}) or use CodRef 3 (corrects amounts).",
    ),
    "GUIA_TRANSPORTE_REQUIRED": (
        "La guía de despacho debe informar {detail} ('{field}', Res. Ex. SII 154/2025); si no cuenta con los datos "
        "del transporte, declárelo en el documento con Patente=SIN INFO.",
        "The guía de despacho must give {detail} ('{field}', Res. Ex. SII 154/2025); without the transport data, "
        "say so in the document with Patente=SIN INFO.",
    ),
    "FMA_PAGO_GRATUITA": (
        "Una factura de total 0 es una entrega gratuita y lleva FmaPago=3 (sin costo); el archivo dice FmaPago={found}.",
        "An invoice whose total is 0 is a free delivery and carries FmaPago=3 (no cost); the file says FmaPago={found}.",
    ),
    "BOLETA_BUYER_REQUIRED": (
        "Boleta de {total} pesos ({uf_total} UF, UF a {uf}): desde {threshold} UF la Ley 21.713 exige identificar al "
        "comprador y el medio de pago; falta '{field}' (el RUT genérico 66666666-6 no sirve).",
        "Boleta of {total} pesos ({uf_total} UF at {uf} per UF): from {threshold} UF on, Ley 21.713 requires the "
        "buyer's identity and the payment method; '{field}' is missing (the generic RUT 66666666-6 does not count).",
    ),
    "EMISOR_MISMATCH": (
        "RUTEmisor '{found}' no es el de la empresa configurada ({expected}).",
        "RUTEmisor '{found}' is not the configured company's ({expected}).",
    ),
    "TEXT_NOT_LATIN1": (
        "El campo '{field}' contiene el carácter '{found}' ({codepoint}), que no existe en ISO-8859-1; reemplácelo.",
        "The field '{field}' contains the character '{found}' ({codepoint}), which ISO-8859-1 cannot encode; replace it.",
    ),
    # --- totals ------------------------------------------------------------------------
    "TOTALS_INCONSISTENT": (
        "Totales inconsistentes en '{field}': se calculó {expected}, el archivo dice {found}.",
        "Inconsistent totals in '{field}': computed {expected}, the file says {found}.",
    ),
    "LINE_AMOUNT_INCONSISTENT": (
        "MontoItem de la línea {line_no} inconsistente: se calculó {expected}, el archivo dice {found}.",
        "MontoItem of line {line_no} is inconsistent: computed {expected}, the file says {found}.",
    ),
    "AMOUNT_NEGATIVE": (
        "Monto negativo en '{field}': {found}.",
        "Negative amount in '{field}': {found}.",
    ),
    "LINE_VALUE_INCONSISTENT": (
        "'{field}' de la línea {line_no} inconsistente: se calculó {expected}, el archivo dice {found}.",
        "'{field}' of line {line_no} is inconsistent: computed {expected}, the file says {found}.",
    ),
    "TAX_CODE_UNSUPPORTED": (
        "No se puede calcular el impuesto o retención código {found}: {detail}.",
        "Cannot compute the tax or retention with code {found}: {detail}.",
    ),
    "GROSS_WITH_ADDITIONAL_TAX": (
        "Con montos brutos (MntBruto=1) no se admiten impuestos adicionales ni retenciones "
        "(CodImpAdic {found} en la línea {line_no}); informe los montos netos.",
        "Gross amounts (MntBruto=1) do not allow additional taxes or retentions "
        "(CodImpAdic {found} on line {line_no}); send net amounts instead.",
    ),
    # --- CAF and folios --------------------------------------------------------------------
    "CAF_MALFORMED": ("Archivo CAF inválido: {detail}.", "Invalid CAF file: {detail}."),
    "CAF_SIGNATURE_INVALID": (
        "La firma FRMA del CAF no verifica con el certificado del SII (IDK {idk}).",
        "The CAF's FRMA signature does not verify with the SII certificate (IDK {idk}).",
    ),
    "CAF_OTHER_COMPANY": (
        "El CAF es de la empresa {found}, no de {expected}.",
        "The CAF belongs to company {found}, not {expected}.",
    ),
    "CAF_MISSING": (
        "No hay CAF cargado para TipoDTE {tipo_dte}. Importe uno con 'dtesync caf import'.",
        "No CAF is loaded for TipoDTE {tipo_dte}. Import one with 'dtesync caf import'.",
    ),
    "CAF_EXPIRED": (
        "El CAF de TipoDTE {tipo_dte} (folios {desde}-{hasta}) venció el {expired_on}.",
        "The CAF for TipoDTE {tipo_dte} (folios {desde}-{hasta}) expired on {expired_on}.",
    ),
    "CAF_OVERLAP": (
        "El CAF de TipoDTE {tipo_dte} (folios {desde}-{hasta}) se superpone con uno ya cargado.",
        "The CAF for TipoDTE {tipo_dte} (folios {desde}-{hasta}) overlaps one already loaded.",
    ),
    "FOLIOS_EXHAUSTED": (
        "No quedan folios para TipoDTE {tipo_dte}. Solicite un CAF nuevo al SII e impórtelo.",
        "No folios left for TipoDTE {tipo_dte}. Request a new CAF from the SII and import it.",
    ),
    "FOLIO_NOT_IN_CAF": (
        "El folio {folio} de TipoDTE {tipo_dte} no está en ningún CAF cargado.",
        "Folio {folio} of TipoDTE {tipo_dte} is not in any loaded CAF.",
    ),
    "FOLIO_PENDING_ANNULMENT": (
        "Error interno después de tomar el folio {folio} de TipoDTE {tipo_dte}: {detail}. El folio quedó en la lista "
        "de anulación ('dtesync caf stock'; anúlelo en sii.cl) y nunca se reutiliza; el archivo se conserva y un "
        "reintento toma un folio nuevo. Informe este error.",
        "Internal error after folio {folio} of TipoDTE {tipo_dte} was taken: {detail}. The folio is on the annulment "
        "list ('dtesync caf stock'; annul it at sii.cl) and is never reused; the file is kept and a retry takes a new "
        "folio. Please report this error.",
    ),
    "FOLIO_USED": (
        "El folio {folio} de TipoDTE {tipo_dte} ya fue usado.",
        "Folio {folio} of TipoDTE {tipo_dte} has already been used.",
    ),
    # --- certificate and signature --------------------------------------------------------
    "CERT_UNREADABLE": (
        "No se pudo leer el certificado {found}: {detail}.",
        "Could not read the certificate {found}: {detail}.",
    ),
    "CERT_PASSWORD": (
        "La contraseña del certificado es incorrecta.",
        "The certificate password is wrong.",
    ),
    "CERT_EXPIRED": (
        "El certificado venció el {expired_on}; renuévelo.",
        "The certificate expired on {expired_on}; renew it.",
    ),
    "CERT_NOT_YET_VALID": (
        "El certificado es válido recién desde {valid_from}.",
        "The certificate is only valid from {valid_from}.",
    ),
    "CERT_EXPIRING": (
        "El certificado vence el {expires_on} (en {days} días); renuévelo antes.",
        "The certificate expires on {expires_on} (in {days} days); renew it before then.",
    ),
    "CAF_STOCK_LOW": (
        "Quedan {available} folios de TipoDTE {tipo_dte} (mínimo configurado: {minimum}); solicite un CAF nuevo al SII.",
        "{available} folios left for TipoDTE {tipo_dte} (configured minimum: {minimum}); request a new CAF from the SII.",
    ),
    "CAF_EXPIRING": (
        "El CAF en uso de TipoDTE {tipo_dte} vence el {expires_on} (en {days} días).",
        "The CAF in use for TipoDTE {tipo_dte} expires on {expires_on} (in {days} days).",
    ),
    "CAF_EXPIRED_UNUSED": (
        "El CAF de TipoDTE {tipo_dte} (folios {desde}-{hasta}) venció el {expired_on} (6 meses desde su autorización, "
        "Res. Ex. SII 58/2017) con {unused} folios sin usar: ya no se pueden emitir; anúlelos en sii.cl.",
        "The CAF for TipoDTE {tipo_dte} (folios {desde}-{hasta}) lapsed on {expired_on} (6 months after its "
        "authorization, Res. Ex. SII 58/2017) with {unused} folios unused: they can no longer be issued; annul them at sii.cl.",
    ),
    "SECRET_MISSING": (
        "No se encontró el secreto '{field}': {detail}.",
        "The secret '{field}' was not found: {detail}.",
    ),
    "SECRET_FILE_INSECURE": (
        "El archivo de secreto {found} tiene permisos {mode}: otros usuarios pueden leerlo. Ejecute 'chmod 600 {found}'.",
        "The secret file {found} has mode {mode}: other users can read it. Run 'chmod 600 {found}'.",
    ),
    "URL_INSECURE": (
        "'{field}' usa http:// ({found}): el token viajaría sin cifrar. Use https:// (http:// solo hacia este equipo: localhost, 127.0.0.1).",
        "'{field}' uses http:// ({found}): the token would travel unencrypted. Use https:// (http:// only to this machine: localhost, 127.0.0.1).",
    ),
    "CERT_LEGACY_PBE": (
        "El certificado {found} usa cifrado antiguo (RC2-40) y esta instalación no lo soporta; reexpórtelo con 'openssl pkcs12 -legacy -in {found} -nodes | openssl pkcs12 -export -out nuevo.pfx'.",
        "The certificate {found} uses legacy encryption (RC2-40), unsupported by this installation; re-export it with 'openssl pkcs12 -legacy -in {found} -nodes | openssl pkcs12 -export -out new.pfx'.",
    ),
    "ENVIO_RUT_ENVIA_MISMATCH": (
        "RutEnvia {found} no es el RUT del certificado que firma el envío ({expected}).",
        "RutEnvia {found} is not the RUT of the certificate signing the envelope ({expected}).",
    ),
    "SCHEMA_INVALID": (
        "El documento no cumple el esquema oficial del SII: {detail}.",
        "The document does not conform to the official SII schema: {detail}.",
    ),
    # --- configuration ------------------------------------------------------------------------
    "CONFIG_INVALID": (
        "Configuración inválida en '{field}': {detail}.",
        "Invalid configuration in '{field}': {detail}.",
    ),
    "CONFIG_UF_MISSING": (
        "La boleta de {found} pesos puede alcanzar {threshold} UF (Ley 21.713: desde ahí identifica al comprador) y la "
        "configuración no tiene el valor de la UF: agregue [boletas] uf = <valor en pesos> y reenvíe el archivo.",
        "The boleta of {found} pesos may reach {threshold} UF (Ley 21.713: then it must identify the buyer) and the "
        "configuration has no UF value: add [boletas] uf = <value in pesos> and send the file again.",
    ),
    "CONFIG_MISSING": (
        "No se encontró el archivo de configuración {found}.",
        "The configuration file {found} was not found.",
    ),
    # --- daemon ----------------------------------------------------------------------------------
    "STATE_DIR_NETWORK": (
        "La carpeta de estado {found} está en una unidad de red ({detail}); el diario SQLite necesita un disco local.",
        "The state folder {found} is on a network share ({detail}); the SQLite journal needs a local disk.",
    ),
    "INBOX_LOCK_UNSAFE": (
        "{found} no es un archivo normal ({detail}); alguien con acceso a la bandeja lo reemplazó. Bórrelo y revise los permisos de la carpeta.",
        "{found} is not a plain file ({detail}); someone with access to the inbox replaced it. Delete it and check the folder's permissions.",
    ),
    "DAEMON_ALREADY_RUNNING": (
        "Otro dtesync ya usa {found} (bloqueo {detail}); detenga ese proceso o use otra configuración.",
        "Another dtesync is already using {found} (lock {detail}); stop that process or use another configuration.",
    ),
    # --- printing (sync.printing) ---------------------------------------------------------------
    "PRINTER_PROFILE_UNKNOWN": (
        "No existe el perfil de impresora {found}; perfiles incluidos: {known}.",
        "Unknown printer profile {found}; built-in profiles: {known}.",
    ),
    "PRINTER_PROFILE_INVALID": (
        "El perfil de impresora {found} no es válido: {detail}.",
        "Printer profile {found} is invalid: {detail}.",
    ),
    "PRINTER_UNAVAILABLE": (
        "La impresora de la estación {found} no responde ({detail}); se reintentará.",
        "The printer of station {found} is not responding ({detail}); will retry.",
    ),
    "PRINTER_CONNECTOR_UNSUPPORTED": (
        "El conector {found} no se puede usar en este equipo: {detail}.",
        "Connector {found} cannot be used on this machine: {detail}.",
    ),
    "PRINT_STATION_UNKNOWN": (
        "No hay una estación de impresión llamada {found} (configuradas: {detail}).",
        "There is no printing station named {found} (configured: {detail}).",
    ),
    "PRINT_SOURCE_MISSING": (
        "No se encuentra el DTE firmado para imprimir: {found}.",
        "The signed DTE to print was not found: {found}.",
    ),
    "TIMBRE_TOO_LARGE": (
        "El timbre ({found} bytes) no cabe en un PDF417 de {detail}.",
        "The timbre ({found} bytes) does not fit a PDF417 of {detail}.",
    ),
    "PRINTER_PAPER_OUT": (
        "La impresora de la estación {station} está sin papel ({detail}); el ticket se imprime al reponerlo.",
        "The printer of station {station} is out of paper ({detail}); the ticket prints once it is refilled.",
    ),
    "PRINTER_COVER_OPEN": (
        "La impresora de la estación {station} tiene la tapa abierta ({detail}); el ticket se imprime al cerrarla.",
        "The printer of station {station} has its cover open ({detail}); the ticket prints once it is closed.",
    ),
    "PRINTER_OFFLINE": (
        "La impresora de la estación {station} está fuera de línea ({detail}); el ticket se imprime cuando vuelva.",
        "The printer of station {station} is offline ({detail}); the ticket prints when it is back.",
    ),
    "PRINTER_ERROR": (
        "La impresora de la estación {station} está en error ({detail}); revise el cortador y el cabezal.",
        "The printer of station {station} reports an error ({detail}); check the cutter and the head.",
    ),
    "PRINTER_UNREACHABLE": (
        "No se llega a la impresora de la estación {station} ({detail}); se reintentará.",
        "The printer of station {station} cannot be reached ({detail}); will retry.",
    ),
    "PRINTER_STALLED": (
        "La impresora de la estación {station} acepta la conexión pero no recibe ni responde ({detail}); se reintentará.",
        "The printer of station {station} accepts the connection but neither reads nor answers ({detail}); will retry.",
    ),
    "PRINTER_NO_PDF417": (
        "La impresora de la estación {station} no dibuja PDF417 (GS ( k) ({detail}); el timbre se imprime como imagen: ponga native_pdf417 = false en su perfil.",
        "The printer of station {station} does not draw PDF417 (GS ( k) ({detail}); the timbre prints as an image: set native_pdf417 = false in its profile.",
    ),
    "PRINT_PAPER_TOO_NARROW": (
        "La estación {found} no imprime TipoDTE {tipo_dte}: {detail}. El documento quedó firmado y con su PDF; imprímalo en otra estación.",
        "Station {found} does not print TipoDTE {tipo_dte}: {detail}. The document is signed and has its PDF; print it at another station.",
    ),
    "PRINT_TYPE_NOT_FOR_STATION": (
        "La estación {found} solo imprime los tipos {detail}; TipoDTE {tipo_dte} no se imprimió en ella.",
        "Station {found} prints only types {detail}; TipoDTE {tipo_dte} was not printed there.",
    ),
    "PDF_NOT_WRITTEN": (
        "No se pudo escribir el PDF {found}: {detail}.",
        "The PDF {found} could not be written: {detail}.",
    ),
    # --- uplink (SII, provider cloud) -------------------------------------------------------
    "SII_REJECTED": (
        "El SII rechazó el documento: {detail}.",
        "The SII rejected the document: {detail}.",
    ),
    "SII_UPLOAD_REJECTED": (
        "El SII rechazó el envío: {detail}.",
        "The SII refused the upload: {detail}.",
    ),
    "SII_AUTH_FAILED": (
        "No se pudo autenticar ante el SII con el certificado: {detail}.",
        "Could not authenticate with the SII using the certificate: {detail}.",
    ),
    "UPLINK_AUTH": (
        "El proveedor rechazó la credencial (token): {detail}. Revise uplink.http.token.",
        "The provider refused the credential (token): {detail}. Check uplink.http.token.",
    ),
    "SII_INSTALLATION": (
        "{who} no acepta esta instalación ({service} respondió {answer}: {meaning}). No es culpa de los documentos: "
        "quedan en cola y se enviarán solos cuando vuelva a aceptarla. Qué hacer: {fix}",
        "{who_en} refuses this installation ({service} answered {answer}: {meaning}). The documents are not at fault: "
        "they stay queued and are sent by themselves once it accepts it again. What to do: {fix}",
    ),
    "SII_ANSWER_UNKNOWN": (
        "Respuesta no documentada del SII ({service}: {answer} {meaning}). Los documentos afectados quedan retenidos: "
        "no se dan por aceptados ni se reenvían a ciegas. Revise su estado en el sitio del SII; si persiste, informe "
        "esta respuesta.",
        "Undocumented SII answer ({service}: {answer} {meaning}). The documents concerned are held: neither taken as "
        "accepted nor blindly sent again. Check their state on the SII's site; if it persists, report this answer.",
    ),
    "SII_DATA_MISMATCH": (
        "El SII tiene el documento tipo {tipo_dte} folio {folio} con otros datos (fecha, receptor o monto) que el "
        "firmado aquí ({detail}). No se reenvía: revise en el sitio del SII qué documento quedó con ese folio.",
        "The SII holds document type {tipo_dte} folio {folio} with other data (date, receptor or amount) than the "
        "one signed here ({detail}). It is not sent again: check on the SII's site which document holds that folio.",
    ),
    "UPLINK_WAITING": (
        "El documento {doc} (tipo {tipo_dte}, folio {folio}) espera al SII desde hace {minutes} min ({last_error}).",
        "Document {doc} (type {tipo_dte}, folio {folio}) has been waiting for the SII for {minutes} min ({last_error}).",
    ),
    "UPLINK_PROVIDER_REJECTED": (
        "El proveedor rechazó el documento: {detail}.",
        "The provider rejected the document: {detail}.",
    ),
    # --- delivery to receptors and customers (sync.delivery) ------------------------------------
    "DELIVERY_NO_ADDRESS": (
        "El receptor {rut} no tiene dirección de intercambio conocida ({label}): importe el listado del SII "
        "(dtesync receptors import) o agréguela en [delivery.receptors].",
        "Receptor {rut} has no known exchange address ({label}): import the SII's list "
        "(dtesync receptors import) or add it under [delivery.receptors].",
    ),
    "DELIVERY_NO_CUSTOMER_ADDRESS": (
        "La boleta {label} va a una estación virtual pero no trae el correo del cliente (CorreoRecep o Contacto).",
        "Boleta {label} goes to a virtual station but carries no customer e-mail (CorreoRecep or Contacto).",
    ),
    "DELIVERY_SMTP_DOWN": (
        "No se pudo enviar correo por {host}: {detail}. Los documentos esperan en la cola y se reintentan.",
        "Could not send mail through {host}: {detail}. Documents wait in the queue and are retried.",
    ),
    "DELIVERY_FAILED": (
        "No se pudo entregar {label} a {address}: {detail}.",
        "Could not deliver {label} to {address}: {detail}.",
    ),
    "DELIVERY_IMAP_DOWN": (
        "No se pudo leer el buzón de intercambio {host}: {detail}.",
        "Could not read the exchange mailbox {host}: {detail}.",
    ),
    "RECEPTORS_LIST_INVALID": (
        "El listado de receptores {found} no sirve: {detail}.",
        "The receptors list {found} cannot be used: {detail}.",
    ),
    # --- cluster mode: several PCs on one PostgreSQL (sync.cluster) -----------------------------
    "FOLIOS_NOT_LEASED": (
        "Este sitio no tiene folios arrendados de TipoDTE {tipo_dte}: la base central no entregó un bloque "
        "(¿sin conexión, o sin CAF con folios en el cluster?). Reintente cuando haya conexión (dtesync sites).",
        "This site holds no leased folios of TipoDTE {tipo_dte}: the central database granted no block "
        "(offline, or no CAF with folios left in the cluster?). Retry once it is reachable (dtesync sites).",
    ),
    "FOLIO_NOT_LEASED": (
        "El folio {folio} de TipoDTE {tipo_dte} no está en un bloque arrendado a este sitio.",
        "Folio {folio} of TipoDTE {tipo_dte} is not in a block leased to this site.",
    ),
    "CLUSTER_DOWN": (
        "No se alcanza la base central ({detail}); el sitio sigue firmando con sus folios arrendados "
        "({stock}) y envía el registro al volver la conexión.",
        "The central database cannot be reached ({detail}); the site keeps signing from its leased folios "
        "({stock}) and ships its record once it is back.",
    ),
    "CLUSTER_CAF_EXHAUSTED": (
        "El cluster no tiene más folios de TipoDTE {tipo_dte} para arrendar: importe un CAF nuevo con "
        "'dtesync caf import' (en modo cluster queda disponible para todos los sitios).",
        "The cluster has no more folios of TipoDTE {tipo_dte} to lease: import a new CAF with "
        "'dtesync caf import' (in cluster mode every site can then lease from it).",
    ),
    "CLUSTER_SITE_LOST": (
        "Este sitio ({site}) fue declarado perdido en el cluster: no firma más con sus folios arrendados. "
        "Use otro nombre de sitio para volver a operar.",
        "This site ({site}) was declared lost in the cluster: it signs nothing more from its leased folios. "
        "Use another site name to operate again.",
    ),
    "CLUSTER_LEASE_RESTORED": (
        "La base central no conocía el arriendo {lease} de este sitio (TipoDTE {tipo_dte}, folios {desde}-{hasta}): "
        "¿se restauró desde un respaldo? El sitio lo volvió a registrar; revise que los demás sitios hagan lo mismo "
        "antes de arrendar (docs/sites.md, Respaldos).",
        "The central database did not know lease {lease} of this site (TipoDTE {tipo_dte}, folios {desde}-{hasta}): "
        "restored from a backup? The site put it back; make sure every other site does the same before leasing "
        "(docs/sites.md, Backups).",
    ),
    "CLUSTER_LEASE_CONFLICT": (
        "Los folios {desde}-{hasta} de TipoDTE {tipo_dte} (arriendo {lease} de este sitio) están arrendados a otro "
        "sitio en la base central ({detail}): este sitio dejó de usarlos, pero los ya usados pueden repetirse. "
        "Revise 'dtesync sites' y haga que el otro sitio devuelva ese bloque (dtesync sites hand-back).",
        "Folios {desde}-{hasta} of TipoDTE {tipo_dte} (lease {lease} of this site) are leased to another site in "
        "the central database ({detail}): this site stopped using them, but the ones already used may be issued "
        "twice. Check 'dtesync sites' and have the other site hand that block back (dtesync sites hand-back).",
    ),
    "CLUSTER_LEASING_HELD": (
        "Los arriendos de folios están detenidos en el cluster desde {since} ('dtesync cluster hold'): el sitio "
        "sigue firmando con los folios que tiene. Se reanudan con 'dtesync cluster release'.",
        "Folio leasing is held in the cluster since {since} ('dtesync cluster hold'): the site keeps signing from "
        "the folios it holds. 'dtesync cluster release' resumes it.",
    ),
    "CLUSTER_SCHEMA_OLD": (
        "La base central tiene el esquema versión {found} y esta versión de dtesync necesita la {expected}: "
        "ejecute 'dtesync cluster init'.",
        "The central database has schema version {found} and this dtesync needs {expected}: "
        "run 'dtesync cluster init'.",
    ),
    # --- operations: alerts of the daemon's watcher and the panel (sync.monitor, sync.web) ----------
    "QUEUE_STUCK": (
        "La cola {queue} no avanza: su elemento más antiguo espera hace {minutes} min ({depth} en cola).",
        "The {queue} queue is stuck: its oldest item has waited {minutes} min ({depth} queued).",
    ),
    "UPLINK_PAUSED": (
        "El envío al SII está en pausa ({detail}); los documentos esperan en la cola. Reanúdelo en el panel.",
        "Sending to the SII is paused ({detail}); documents wait in the queue. Resume it in the panel.",
    ),
    "QUEUE_FAILING": (
        "{failing} de {depth} elementos de la cola {queue} fallaron en su último intento: {detail}",
        "{failing} of {depth} items of the {queue} queue failed their last attempt: {detail}",
    ),
    "INBOX_UNREACHABLE": (
        "No se puede usar la bandeja de entrada {path}: {detail}. Revise que la carpeta (o la unidad de red) esté disponible.",
        "The inbox {path} cannot be used: {detail}. Check that the folder (or the network share) is available.",
    ),
    "PRINTER_DOWN": (
        "La impresora de la estación {station} no responde ({detail}); los tickets esperan en la cola y se reintentan. Revise que esté encendida, con papel y conectada.",
        "The printer of station {station} is not responding ({detail}); tickets wait in the queue and are retried. Check that it is on, has paper and is connected.",
    ),
    "CHECK_FAILED": (
        "{name}: {detail}",
        "{name}: {detail}",
    ),
    "DOC_REJECTED_SII": (
        "El SII rechazó {source} (TipoDTE {tipo_dte} folio {folio}): {detail}. Corrija y emita un documento nuevo; el folio quedó usado.",
        "The SII rejected {source} (TipoDTE {tipo_dte} folio {folio}): {detail}. Fix it and issue a new document; the folio is used.",
    ),
    "DAEMON_UNHEALTHY": (
        "El servicio dtesync no está sano: {detail}. Revise el registro (dtesync.log) y reinicie el servicio.",
        "The dtesync service is not healthy: {detail}. Check the log (dtesync.log) and restart the service.",
    ),
    "WEB_LISTEN_FAILED": (
        "El panel no pudo escuchar en {listen}: {detail}. Cambie [web] listen o libere ese puerto.",
        "The panel could not listen on {listen}: {detail}. Change [web] listen or free that port.",
    ),
    # --- catch-all ------------------------------------------------------------------------------
    "INTERNAL": (
        "Error interno: {detail}. El archivo se conserva; informe este error.",
        "Internal error: {detail}. The file is kept; please report this error.",
    ),
}

LANGUAGES = ("es", "en")


class _Defaulting(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


@dataclass(eq=False)
class DteSyncError(Exception):
    """One problem a person can act on; see module docstring."""

    code: str
    field: str | None = None
    expected: Any = None
    found: Any = None
    line: int | None = None
    path: str | None = None
    source: str | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CATALOG:
            raise KeyError(f"error code {self.code!r} is not in the catalog")
        super().__init__(self.code)

    def message(self, lang: str = "es") -> str:
        template = CATALOG[self.code][1 if lang == "en" else 0]
        values = _Defaulting({k: _shorten(v, PARAM_LIMIT) if isinstance(v, str) else v for k, v in self.params.items()})
        values.update(
            field=self.field or "?",
            expected=self.expected if self.expected is not None else "?",
            found=_shorten(self.found),
            line=self.line if self.line is not None else "?",
            path=self.path or "?",
        )
        return template.format_map(values)

    def render(self, lang: str = "es") -> dict[str, Any]:
        """The status-file form: {code, message, field, line, ...}."""
        out: dict[str, Any] = {
            "code": self.code,
            "message": self.message(lang),
            "field": self.field,
            "line": self.line,
        }
        if self.path:
            out["path"] = self.path
        if self.expected is not None:
            out["expected"] = str(self.expected)
        if self.found is not None:
            out["found"] = _shorten(self.found)
        return out

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.path:
            where.append(self.path)
        prefix = (":".join(str(w) for w in where) + ": ") if where else ""
        return f"{prefix}{self.code}: {self.message('en')}"


class DteSyncErrors(Exception):
    """Several problems found in one input, reported together."""

    def __init__(self, errors: Iterable[DteSyncError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    @property
    def code(self) -> str:
        return self.errors[0].code if self.errors else "INTERNAL"


def as_error_list(exc: BaseException, source: str | None = None) -> list[DteSyncError]:
    """Turn any exception into the list of typed errors to report (one place for this)."""
    if isinstance(exc, DteSyncErrors):
        errors = exc.errors
    elif isinstance(exc, DteSyncError):
        errors = [exc]
    else:
        errors = [DteSyncError("INTERNAL", params={"detail": f"{type(exc).__name__}: {exc}"})]
    for e in errors:
        if source and not e.source:
            e.source = source
    return errors


FOUND_LIMIT = 80  # characters of a found value echoed back: enough to recognise it, never a whole line
PARAM_LIMIT = 300
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def _shorten(value: Any, limit: int = FOUND_LIMIT) -> str:
    """What an error echoes of an input value: control characters made visible (a status file
    or a log line cannot be forged with a newline), cut to `limit` characters."""
    if value is None:
        return "?"
    text = str(value).translate(_CONTROLS)
    return text if len(text) <= limit else text[: limit - 1] + "…"
