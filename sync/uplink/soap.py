"""The SII's SOAP dialect (Apache Axis rpc/encoded): requests, responses, and the
`<SII:RESPUESTA>` XML that every DTEWS operation returns *as an escaped string*.

Shared by the client (sync.uplink) and by fake-sii (sync.fakesii), so both speak exactly the
format of the manuals (autenticación v1.9 §4-6, QueryEstUp v1.10 §3-4, QueryEstDte v1.10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from lxml import etree

from sync import safexml

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SII_SCHEMA_NS = "http://www.sii.cl/XMLSchema"


def request(operation: str, namespace: str, params: list[tuple[str, str]]) -> bytes:
    """A SOAP 1.1 rpc/encoded request body, as the manuals' examples."""
    args = "".join(f'<{k} xsi:type="xsd:string">{escape(v)}</{k}>' for k, v in params)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
        ' SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
        f'<SOAP-ENV:Body><m:{operation} xmlns:m="{namespace}">{args}</m:{operation}></SOAP-ENV:Body>'
        "</SOAP-ENV:Envelope>"
    ).encode()


def response(operation: str, namespace: str, inner: str) -> bytes:
    """`<opResponse><opReturn xsi:type="xsd:string">escaped XML</opReturn>` (Axis style)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        f'<ns1:{operation}Response soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/" xmlns:ns1="{namespace}">'
        f'<{operation}Return xsi:type="xsd:string">{escape(inner)}</{operation}Return>'
        f"</ns1:{operation}Response></soapenv:Body></soapenv:Envelope>"
    ).encode()


def fault(message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
        f"<soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>{escape(message)}</faultstring>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    ).encode()


def parse_request(data: bytes) -> tuple[str, dict[str, str]]:
    """(operation, {param: text}) of a SOAP request; parameters by local name."""
    root = safexml.fromstring(data)
    body = root.find(f"{{{SOAP_ENV}}}Body")
    if body is None or len(body) == 0:
        raise ValueError("SOAP request without Body")
    op = body[0]
    return etree.QName(op).localname, {etree.QName(c).localname: (c.text or "") for c in op if isinstance(c.tag, str)}


def return_value(data: bytes) -> str:
    """The escaped string inside `<xResponse><xReturn>`; a SOAP Fault raises ValueError."""
    root = safexml.fromstring(data)
    body = root.find(f"{{{SOAP_ENV}}}Body")
    if body is None or len(body) == 0:
        raise ValueError("SOAP response without Body")
    op = body[0]
    if etree.QName(op).localname == "Fault":
        raise ValueError(f"SOAP Fault: {op.findtext('faultstring')}")
    ret = next((c for c in op if isinstance(c.tag, str)), None)
    if ret is None:
        raise ValueError("SOAP response without a return value")
    return ret.text or ""


@dataclass
class Respuesta:
    """`<SII:RESPUESTA>`: header fields (ESTADO, GLOSA, TRACKID, ERR_CODE...) and body fields;
    repeated body fields (one TIPO_DOCTO group per type) are kept in `groups`."""

    hdr: dict[str, str] = field(default_factory=dict)
    body: dict[str, str] = field(default_factory=dict)
    groups: list[dict[str, str]] = field(default_factory=list)
    other: dict[str, str] = field(default_factory=dict)

    @property
    def estado(self) -> str:
        return (self.hdr.get("ESTADO") or "").strip()

    @property
    def glosa(self) -> str:
        return " ".join((self.hdr.get("GLOSA") or "").split())


def parse_respuesta(text: str | bytes) -> Respuesta:
    data = text.encode("utf-8") if isinstance(text, str) else text
    data = data.strip()
    if data.startswith(b"<?xml"):
        data = data[data.index(b"?>") + 2 :]
    root = safexml.fromstring(data)
    out = Respuesta()
    for part in root:
        if not isinstance(part.tag, str):
            continue
        name = etree.QName(part).localname
        if name == "RESP_HDR":
            out.hdr = {etree.QName(c).localname: (c.text or "").strip() for c in part if isinstance(c.tag, str)}
        elif name == "RESP_BODY":
            current: dict[str, str] = {}
            for c in part:
                if not isinstance(c.tag, str):
                    continue
                key, value = etree.QName(c).localname, (c.text or "").strip()
                out.body.setdefault(key, value)
                if key == "TIPO_DOCTO" and current:
                    out.groups.append(current)
                    current = {}
                current[key] = value
            if current:
                out.groups.append(current)
        else:
            out.other[name] = (part.text or "").strip()
    return out


def respuesta(hdr: list[tuple[str, str]], body: list[tuple[str, str]] | None = None, extra: str = "", *,
              body_first: bool = False) -> str:
    """Render a `<SII:RESPUESTA>` (fake-sii's answers, and test vectors). `body_first`: the
    order CrSeed and GetTokenFromSeed really answer in (auth manual cap. 8: RESP_BODY, then
    RESP_HDR); clients that read the seed as `root[0][0]` depend on it. The query services
    answer header first, as their manuals show."""
    h = "<SII:RESP_HDR>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in hdr) + "</SII:RESP_HDR>"
    b = "" if body is None else "<SII:RESP_BODY>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in body) + "</SII:RESP_BODY>"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<SII:RESPUESTA xmlns:SII="{SII_SCHEMA_NS}">'
        + (b + h if body_first else h + b) + f"{extra}</SII:RESPUESTA>"
    )
