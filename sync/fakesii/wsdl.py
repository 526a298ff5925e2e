"""The WSDL documents fake-sii serves at `<service>.jws?WSDL`, as the SII's Axis services do
(autenticación v1.9 §3.1, QueryEstUp v1.10 §2.1.1, QueryEstDte v1.10 §2.1.1): rpc/encoded,
every part an xsd:string, soapAction "". The target namespace is the SII's own; the
service's address is fake-sii's, so a SOAP client that reads it (zeep, Axis) calls fake-sii.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

# service -> [(operation, [input parts], return part)], in the manuals' order
SERVICES: dict[str, list[tuple[str, list[str], str]]] = {
    "CrSeed": [("getSeed", [], "getSeedReturn")],
    "GetTokenFromSeed": [("getVersion", [], "getVersionReturn"), ("getToken", ["pszXml"], "getTokenReturn")],
    "QueryEstUp": [("getVersionMayor", [], "getVersionMayorReturn"), ("getVersionMenor", [], "getVersionMenorReturn"),
                   ("getVersionPatch", [], "getVersionPatchReturn"),
                   ("getEstUp", ["RutCompania", "DvCompania", "TrackId", "Token"], "getEstUpReturn")],
    "QueryEstDte": [("getEstDte", ["RutConsultante", "DvConsultante", "RutCompania", "DvCompania", "RutReceptor",
                                   "DvReceptor", "TipoDte", "FolioDte", "FechaEmisionDte", "MontoDte", "Token"],
                     "getEstDteReturn")],
}
NAMESPACE = {"CrSeed": "https://palena.sii.cl/DTEWS/CrSeed.jws",
             "GetTokenFromSeed": "https://palena.sii.cl/DTEWS/GetTokenFromSeed.jws",
             "QueryEstUp": "https://maullin.sii.cl/DTEWS/QueryEstUp.jws",
             "QueryEstDte": "https://maullin.sii.cl/DTEWS/QueryEstDte.jws"}
ENC = "http://schemas.xmlsoap.org/soap/encoding/"


def wsdl(service: str, location: str) -> bytes:
    """The WSDL of `service` (a key of SERVICES) with its soap:address at `location`."""
    ns = NAMESPACE[service]
    messages, ports, bindings = [], [], []
    for op, parts, ret in SERVICES[service]:
        args = "".join(f'<wsdl:part name="{p}" type="xsd:string"/>' for p in parts)
        messages.append(f'<wsdl:message name="{op}Request">{args}</wsdl:message>'
                        f'<wsdl:message name="{op}Response"><wsdl:part name="{ret}" type="xsd:string"/></wsdl:message>')
        order = f' parameterOrder="{" ".join(parts)}"' if parts else ""
        ports.append(f'<wsdl:operation name="{op}"{order}><wsdl:input message="impl:{op}Request" name="{op}Request"/>'
                     f'<wsdl:output message="impl:{op}Response" name="{op}Response"/></wsdl:operation>')
        body = f'<wsdlsoap:body encodingStyle="{ENC}" namespace="{ns}" use="encoded"/>'
        bindings.append(f'<wsdl:operation name="{op}"><wsdlsoap:operation soapAction=""/>'
                        f'<wsdl:input name="{op}Request">{body}</wsdl:input>'
                        f'<wsdl:output name="{op}Response">{body}</wsdl:output></wsdl:operation>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<wsdl:definitions targetNamespace="{ns}" xmlns="http://schemas.xmlsoap.org/wsdl/"'
        ' xmlns:apachesoap="http://xml.apache.org/xml-soap"'
        f' xmlns:impl="{ns}" xmlns:intf="{ns}" xmlns:soapenc="{ENC}"'
        ' xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:wsdlsoap="http://schemas.xmlsoap.org/wsdl/soap/"'
        ' xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        '<wsdl:types/>' + "".join(messages)
        + f'<wsdl:portType name="{service}">' + "".join(ports) + "</wsdl:portType>"
        + f'<wsdl:binding name="{service}SoapBinding" type="impl:{service}">'
        '<wsdlsoap:binding style="rpc" transport="http://schemas.xmlsoap.org/soap/http"/>' + "".join(bindings)
        + "</wsdl:binding>"
        f'<wsdl:service name="{service}Service"><wsdl:port binding="impl:{service}SoapBinding" name="{service}">'
        f"<wsdlsoap:address location={quoteattr(location)}/></wsdl:port></wsdl:service>"
        "</wsdl:definitions>"
    ).encode("utf-8")
