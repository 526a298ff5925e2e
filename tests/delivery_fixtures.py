"""Real servers and real documents for the delivery tests.

- `SmtpSink`: aiosmtpd on loopback, a real SMTP server (ESMTP, STARTTLS or implicit TLS,
  AUTH), keeping every message it accepted; it can be stopped and started again on the same
  port (an outage) and can answer slowly (a relay at its worst).
- `Dovecot`: a throwaway Dovecot IMAP server (Debian's dovecot-imapd) with its own
  configuration in a temporary folder, on loopback, one mailbox user.
- `tls_files`: a private CA and a server certificate for 127.0.0.1, made here.
- `receptor_inputs`: facturas, notas and guías for several receptors, from the shipped examples.
- `respuesta_dte`, `envio_recibos`: answers as a receptor's software writes them, signed
  with the receptor's own certificate in the SII's XMLDSig profile.
"""

from __future__ import annotations

import email
import grp
import os
import pwd
import random
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from sync.envio import NSMAP
from sync.rut import Rut
from sync.sandbox.build import examples_dir
from sync.sandbox.cert_factory import make_test_certificate
from sync.signing import Certificate, load_pkcs12, sign_after

S = "{http://www.sii.cl/SiiDte}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- TLS ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def tls_files(folder: Path) -> TlsFiles:
    """A CA of our own and a certificate it signed for 127.0.0.1 and localhost."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dtesync test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
          .not_valid_after(now + timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption()))
    os.chmod(paths.key, 0o644)  # the mail server's own user reads it
    return paths


# --- SMTP ---------------------------------------------------------------------------------------------
@dataclass
class Received:
    sender: str
    rcpt: list[str]
    data: bytes

    @property
    def message(self) -> Message:
        return email.message_from_bytes(self.data, policy=default_policy)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def attachments(self) -> dict[str, bytes]:
        out = {}
        for part in self.message.walk():
            name = part.get_filename()
            if name:
                out[name] = part.get_payload(decode=True)
        return out


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        import asyncio

        if self.sink.rcpt_delay:
            await asyncio.sleep(self.sink.rcpt_delay)
        if address in self.sink.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.sink.lock:
            self.sink.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
            n = len(self.sink.received)
        return f"250 2.0.0 Ok: queued as Q{n}"


@dataclass
class SmtpSink:
    """aiosmtpd on 127.0.0.1; `tls` = none | starttls | ssl."""

    tls: str = "none"
    tls_paths: TlsFiles | None = None
    port: int = 0
    users: dict[str, str] = field(default_factory=dict)  # AUTH PLAIN/LOGIN accepts these
    rcpt_delay: float = 0.0
    refuse: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: object = None

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.port = self.port or free_port()
        kwargs: dict = {"hostname": "127.0.0.1", "port": self.port, "server_hostname": "127.0.0.1"}
        if self.tls == "starttls":
            assert self.tls_paths is not None
            kwargs.update(tls_context=self.tls_paths.server_context(), require_starttls=True)
        elif self.tls == "ssl":
            assert self.tls_paths is not None
            kwargs.update(ssl_context=self.tls_paths.server_context())
        if self.users:
            def authenticator(server, session, envelope, mechanism, auth_data):
                ok = getattr(auth_data, "login", b"").decode() in self.users and \
                    self.users[auth_data.login.decode()] == auth_data.password.decode()
                return AuthResult(success=ok)

            # Under implicit TLS ("ssl") the whole session is encrypted, but aiosmtpd only counts
            # STARTTLS as TLS for its auth_require_tls check.
            kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=self.tls == "starttls")
        controller = Controller(_Handler(self), **kwargs)
        if self.tls == "ssl":  # the readiness probe of aiosmtpd 1.4 must trust our CA
            controller._trigger_server = lambda: _probe_tls(self.port, self.tls_paths)  # type: ignore[method-assign]
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()  # type: ignore[attr-defined]
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)


def _probe_tls(port: int, paths: TlsFiles | None) -> None:
    ctx = ssl.create_default_context(cafile=str(paths.ca)) if paths else ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.recv(1024)


# --- IMAP ---------------------------------------------------------------------------------------------
DOVECOT_CONF = """
base_dir = {root}/run
state_dir = {root}/run/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = {ssl}
{ssl_files}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {uid}
mail_location = maildir:{root}/home/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
"""


class Dovecot:
    """A throwaway Dovecot on loopback: plain IMAP on `port` (STARTTLS offered when TLS files
    are given) and IMAPS on `imaps_port`. Run as root (CI), its processes use the package's
    unprivileged users; run as anyone else, they all run as that user."""

    def __init__(self, user: str = "dte", password: str = "secreto", tls: TlsFiles | None = None) -> None:
        self.binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        assert os.path.exists(self.binary), "Dovecot is required (Debian package dovecot-imapd; .ci/run installs it)"
        self.user, self.password, self.tls = user, password, tls
        self.port, self.imaps_port = free_port(), free_port()
        self.root = Path(tempfile.mkdtemp(prefix="dtesync-dovecot-"))
        self._proc: subprocess.Popen | None = None

    def start(self) -> Dovecot:
        root = self.root
        os.chmod(root, 0o755)  # the mail user (not us, under root) walks into it
        if os.getuid() == 0:
            mail = pwd.getpwnam("dovecot")
            uid, gid = mail.pw_uid, mail.pw_gid
            internal_user, internal_group, login_user = "dovecot", "dovecot", "dovenull"
        else:
            me = pwd.getpwuid(os.getuid())
            uid, gid = me.pw_uid, me.pw_gid
            internal_user = login_user = me.pw_name
            internal_group = grp.getgrgid(gid).gr_name
        (root / "home").mkdir()
        os.chown(root / "home", uid, gid)
        (root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        os.chmod(root / "passwd", 0o644)
        ssl_files = ""
        if self.tls is not None:
            tls_copy = tls_files_copy(self.tls, root / "tls")
            ssl_files = f"ssl_cert = <{tls_copy.cert}\nssl_key = <{tls_copy.key}"
        conf = DOVECOT_CONF.format(root=root, ssl="yes" if self.tls else "no", ssl_files=ssl_files, uid=uid, gid=gid,
                                   internal_user=internal_user, internal_group=internal_group, login_user=login_user,
                                   port=self.port, imaps_port=self.imaps_port if self.tls else 0)
        (root / "dovecot.conf").write_text(conf)
        self._proc = subprocess.Popen([self.binary, "-F", "-c", str(root / "dovecot.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self._proc.stderr.read().decode() if self._proc.stderr else ''}"
                                   f" {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not start: {self.log()}")

    def log(self) -> str:
        p = self.root / "dovecot.log"
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """Put a mail in the mailbox, as the receptor's mail server would."""
        import imaplib

        m = imaplib.IMAP4("127.0.0.1", self.port)
        try:
            m.login(self.user, self.password)
            typ, data = m.append(folder, None, None, raw)
            assert typ == "OK", data
        finally:
            m.logout()

    def flags(self, folder: str = "INBOX") -> list[bytes]:
        import imaplib

        m = imaplib.IMAP4("127.0.0.1", self.port)
        try:
            m.login(self.user, self.password)
            m.select(folder, readonly=True)
            _, data = m.uid("FETCH", "1:*", "(FLAGS)")
            return [d for d in data if isinstance(d, bytes)]
        finally:
            m.logout()


def tls_files_copy(tls: TlsFiles, folder: Path) -> TlsFiles:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    out = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    for src, dst in zip((tls.ca, tls.cert, tls.key), (out.ca, out.cert, out.key), strict=True):
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o644)
    return out


# --- documents ----------------------------------------------------------------------------------------
def receptor_ruts(n: int, seed: int = 5) -> list[str]:
    rnd = random.Random(seed)
    return [str(Rut.of(rnd.randrange(76_000_000, 79_000_000))) for _ in range(n)]


EXAMPLES = ("33_factura.txt", "34_factura_exenta.txt", "52_guia_despacho.txt", "56_nota_debito.txt",
            "61_nota_credito.txt")


def receptor_inputs(n: int, ruts: list[str], seed: int = 9) -> list[tuple[str, bytes, str]]:
    """n (name, bytes, rut receptor): facturas, notas and guías spread over `ruts`."""
    rnd = random.Random(seed)
    bodies = {name: (examples_dir() / name).read_bytes() for name in EXAMPLES}
    out = []
    for i in range(n):
        name = EXAMPLES[i % len(EXAMPLES)]
        rut = ruts[rnd.randrange(len(ruts))]
        body = re.sub(rb"(?m)^RUTRecep=.*$", b"RUTRecep=" + rut.encode(), bodies[name])
        body = body.replace(b"QtyItem=", f"QtyItem={rnd.randint(1, 9)}".encode(), 1)  # different bytes per input
        out.append((f"R{i:04d}-{name}", body, rut))
    return out


def drop_all(inbox: Path, inputs: list[tuple[str, bytes, str]]) -> None:
    for name, body, _ in inputs:
        tmp = inbox / (name + ".tmp")
        tmp.write_bytes(body)
        os.replace(tmp, inbox / name)


# --- answers a receptor sends ----------------------------------------------------------------------
def receptor_certificate(folder: Path, rut: str, name: str = "RECEPTOR DE PRUEBA") -> Certificate:
    now = datetime.now(UTC)
    pfx = make_test_certificate(Rut.parse(rut), name, not_before=now - timedelta(days=1),
                                not_after=now + timedelta(days=30), password="x")
    (folder / f"receptor-{rut}.pfx").write_bytes(pfx)
    return load_pkcs12(pfx, "x", now=now)


def _el(parent: etree._Element, tag: str, text: object) -> etree._Element:
    e = etree.SubElement(parent, S + tag)
    e.text = str(text)
    return e


def _signed(root: etree._Element, signed: etree._Element, cert: Certificate) -> bytes:
    sign_after(signed, cert)
    return b'<?xml version="1.0" encoding="ISO-8859-1"?>\n' + etree.tostring(root, encoding="ISO-8859-1", xml_declaration=False)


@dataclass(frozen=True)
class DteRef:
    tipo_dte: int
    folio: int
    fch_emis: str
    rut_emisor: str
    rut_receptor: str
    mnt_total: int


def respuesta_dte(cert: Certificate, rut_responde: str, rut_recibe: str, *, recepcion: list[tuple[DteRef, int]] = (),
                  resultado: list[tuple[DteRef, int, str]] = (), envio: tuple[str, int] | None = None,
                  id_respuesta: int = 1) -> bytes:
    """RespuestaDTE: RecepcionEnvio (envio = (NmbEnvio, EstadoRecepEnv), with a RecepcionDTE per
    (ref, EstadoRecepDTE)) or ResultadoDTE per (ref, EstadoDTE, glosa)."""
    root = etree.Element(S + "RespuestaDTE", nsmap=NSMAP, version="1.0")
    res = etree.SubElement(root, S + "Resultado", ID="RESP1")
    car = etree.SubElement(res, S + "Caratula", version="1.0")
    _el(car, "RutResponde", rut_responde)
    _el(car, "RutRecibe", rut_recibe)
    _el(car, "IdRespuesta", id_respuesta)
    _el(car, "NroDetalles", max(1, len(recepcion) or len(resultado)))
    _el(car, "TmstFirmaResp", datetime.now().replace(microsecond=0).isoformat())
    if envio is not None:
        env = etree.SubElement(res, S + "RecepcionEnvio")
        _el(env, "NmbEnvio", envio[0])
        _el(env, "FchRecep", datetime.now().replace(microsecond=0).isoformat())
        _el(env, "CodEnvio", 1)
        _el(env, "EnvioDTEID", "SetDoc")
        _el(env, "EstadoRecepEnv", envio[1])
        _el(env, "RecepEnvGlosa", "Envio Recibido Conforme" if envio[1] == 0 else "Envio Rechazado")
        if recepcion:
            _el(env, "NroDTE", len(recepcion))
        for ref, estado in recepcion:
            r = etree.SubElement(env, S + "RecepcionDTE")
            _ref_fields(r, ref, "TipoDTE")
            _el(r, "EstadoRecepDTE", estado)
            _el(r, "RecepDTEGlosa", "DTE Recibido OK" if estado == 0 else "DTE No Recibido")
    for ref, estado, glosa in resultado:
        r = etree.SubElement(res, S + "ResultadoDTE")
        _ref_fields(r, ref, "TipoDTE", cod_envio=True)
        _el(r, "EstadoDTE", estado)
        _el(r, "EstadoDTEGlosa", glosa)
        if estado == 2:
            _el(r, "CodRchDsc", -1)
    return _signed(root, res, cert)


def _ref_fields(parent: etree._Element, ref: DteRef, tipo_tag: str, cod_envio: bool = False) -> None:
    _el(parent, tipo_tag, ref.tipo_dte)
    _el(parent, "Folio", ref.folio)
    _el(parent, "FchEmis", ref.fch_emis)
    _el(parent, "RUTEmisor", ref.rut_emisor)
    _el(parent, "RUTRecep", ref.rut_receptor)
    _el(parent, "MntTotal", ref.mnt_total)
    if cod_envio:
        _el(parent, "CodEnvio", 1)


DECLARACION = ("El acuse de recibo que se declara en este acto, de acuerdo a lo dispuesto en la letra b) del Art. 4, "
               "y la letra c) del Art. 5 de la Ley 19.983, acredita que la entrega de mercaderias o servicio(s) "
               "prestado(s) ha(n) sido recibido(s).")


def envio_recibos(cert: Certificate, rut_responde: str, rut_recibe: str, refs: list[DteRef], recinto: str = "Bodega") -> bytes:
    """EnvioRecibos (Ley 19.983): each Recibo signed, then the SetRecibos."""
    root = etree.Element(S + "EnvioRecibos", nsmap=NSMAP, version="1.0")
    root.set("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation", "http://www.sii.cl/SiiDte EnvioRecibos_v10.xsd")
    set_ = etree.SubElement(root, S + "SetRecibos", ID="SETRECIBOS")
    car = etree.SubElement(set_, S + "Caratula", version="1.0")
    _el(car, "RutResponde", rut_responde)
    _el(car, "RutRecibe", rut_recibe)
    _el(car, "TmstFirmaEnv", datetime.now().replace(microsecond=0).isoformat())
    for i, ref in enumerate(refs, 1):
        recibo = etree.SubElement(set_, S + "Recibo", version="1.0")
        doc = etree.SubElement(recibo, S + "DocumentoRecibo", ID=f"R{i}")
        _ref_fields(doc, ref, "TipoDoc")
        _el(doc, "Recinto", recinto)
        _el(doc, "RutFirma", rut_responde)
        _el(doc, "Declaracion", DECLARACION)
        _el(doc, "TmstFirmaRecibo", datetime.now().replace(microsecond=0).isoformat())
        sign_after(doc, cert)
    return _signed(root, set_, cert)


def answer_mail(xml: bytes, *, sender: str, to: str, name: str = "respuesta.xml", subject: str = "Respuesta") -> bytes:
    """The mail a receptor's software sends with its answer attached."""
    from email.message import EmailMessage
    from email.utils import make_msgid

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = make_msgid(domain="receptor.example")
    msg.set_content("Adjuntamos respuesta de intercambio.")
    msg.add_attachment(xml, maintype="application", subtype="xml", filename=name)
    return msg.as_bytes()
