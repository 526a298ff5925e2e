"""The mails delivery sends, and the SMTP client that sends them (smtplib).

Messages are built once per delivery (the EnvioDTE is signed with a timestamp, so a rebuild
would be another message): the bytes and the Message-ID are stored before the first attempt
and every retry sends exactly them.

`SmtpSender.send` drives one SMTP transaction itself (MAIL, RCPT, DATA, the body, then the
final "." on its own) so that the stage can record, durably and in between, the one moment
that matters for exactly-once delivery: the final dot (sync.delivery.store). TLS:
`none` (a relay on this machine), `starttls` (required once asked for: never a silent
downgrade) or `ssl`; the server's certificate is always verified (system CAs plus
`ca_bundle`), host name included.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from sync.sii import TipoDte


class MailError(Exception):
    """A failed SMTP attempt. `permanent`: the server refused this message for good (5xx), so
    retrying cannot help. `server`: the server, not the message, is the problem (unreachable,
    TLS, login): every queued mail would fail the same way. `after_dot`: the connection was
    lost after the final '.', so the server may have accepted the message."""

    def __init__(self, detail: str, *, permanent: bool = False, server: bool = False, after_dot: bool = False,
                 code: int | None = None) -> None:
        super().__init__(detail)
        self.detail, self.permanent, self.server, self.after_dot, self.code = detail, permanent, server, after_dot, code


@dataclass(frozen=True)
class Attachment:
    name: str
    data: bytes
    maintype: str
    subtype: str


@dataclass(frozen=True)
class Mail:
    sender: str
    to: str
    subject: str
    body: str
    message_id: str
    attachments: list[Attachment] = field(default_factory=list)
    date: datetime | None = None

    def to_bytes(self) -> bytes:
        msg = EmailMessage(policy=SMTP_POLICY)  # CRLF line ends, as SMTP DATA wants them
        msg["From"] = self.sender
        msg["To"] = self.to
        msg["Subject"] = self.subject
        msg["Date"] = format_datetime((self.date or datetime.now()).astimezone())
        msg["Message-ID"] = self.message_id
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the exchange mailbox
        msg.set_content(self.body, charset="utf-8")
        for a in self.attachments:
            msg.add_attachment(a.data, maintype=a.maintype, subtype=a.subtype, filename=a.name)
        return msg.as_bytes()


def message_id(kind: str, rut_emisor: str, tipo_dte: int, folio: int, doc_id: int, sender: str) -> str:
    """A Message-ID fixed by the document (`<dte.76192083-9.33.7.d12@dominio>`), so the same
    document always travels under the same id and a receiver can tell a repeat."""
    domain = sender.rsplit("@", 1)[-1]
    prefix = "dte" if kind == "intercambio" else "boleta"
    return f"<{prefix}.{rut_emisor}.{tipo_dte}.{folio}.d{doc_id}@{domain}>"


def document_title(tipo_dte: int) -> str:
    tipo = TipoDte.of(tipo_dte)
    return tipo.title if tipo is not None else f"DTE tipo {tipo_dte}"


# --- SMTP ------------------------------------------------------------------------------------------
_LEADING_DOT = re.compile(rb"(?m)^\.")


def dot_stuffed(message: bytes) -> bytes:
    """DATA's body: CRLF line ends, a leading '.' doubled (RFC 5321 §4.5.2), ending in CRLF;
    the terminating '.' is sent separately."""
    body = re.sub(rb"\r?\n|\r", b"\r\n", message)
    body = _LEADING_DOT.sub(b"..", body)
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The system's CAs plus `ca_bundle`; host name and chain always checked."""
    ctx = ssl.create_default_context()
    if ca_bundle is not None:
        ctx.load_verify_locations(cafile=str(ca_bundle))
    return ctx


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    tls: str  # none | starttls | ssl
    user: str | None = None
    password: Callable[[], str] | None = None  # resolved when logging in, never kept in a field
    ca_bundle: Path | None = None
    timeout: float = 60.0


class SmtpSender:
    """One SMTP connection, used for a run of messages; a context manager."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.s = settings
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._smtp is not None

    def connect(self) -> None:
        s = self.s
        try:
            if s.tls == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=tls_context(s.ca_bundle))
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            self._smtp = smtp
            smtp.ehlo()
            if s.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise MailError(f"{s.host}:{s.port} no ofrece STARTTLS (smtp_tls = \"starttls\")", server=True)
                smtp.starttls(context=tls_context(s.ca_bundle))
                smtp.ehlo()
            if s.user and s.password is not None:
                smtp.login(s.user, s.password())
        except MailError:
            self.close()
            raise
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raise MailError(f"el servidor rechazó el usuario o la contraseña ({exc.smtp_code})", server=True,
                            code=exc.smtp_code) from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, timeout, TLS (ssl.SSLError is an OSError)
            self.close()
            raise MailError(f"{s.host}:{s.port}: {_describe(exc)}", server=True) from None

    def send(self, sender: str, recipient: str, message: bytes, before_dot: Callable[[], None]) -> str:
        """One transaction; `before_dot` runs (and must be durable) right before the final dot.
        Returns the server's reply to the dot (its queue id, usually)."""
        smtp = self._smtp
        if smtp is None:
            raise MailError("sin conexión SMTP", server=True)
        dot_sent = False
        try:
            code, reply = smtp.mail(sender)
            if code != 250:
                smtp.rset()
                raise MailError(f"MAIL FROM:<{sender}> rechazado: {code} {_text(reply)}", server=True,
                                permanent=500 <= code < 600, code=code)
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                smtp.rset()
                raise MailError(f"RCPT TO:<{recipient}> rechazado: {code} {_text(reply)}", permanent=500 <= code < 600,
                                code=code)
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                smtp.rset()
                raise MailError(f"DATA rechazado: {code} {_text(reply)}", permanent=500 <= code < 600, code=code)
            smtp.send(dot_stuffed(message))
            before_dot()
            dot_sent = True
            smtp.send(b".\r\n")
            code, reply = smtp.getreply()
            if code != 250:
                raise MailError(f"mensaje rechazado: {code} {_text(reply)}", permanent=500 <= code < 600, code=code)
            return f"{code} {_text(reply)}"
        except MailError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise MailError(_describe(exc), server=True, after_dot=dot_sent) from None

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            try:
                smtp.close()
            except OSError:
                pass


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:300]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificado TLS no verificado: {exc.verify_message or exc}"
    if isinstance(exc, socket.timeout):
        return "tiempo de espera agotado"
    if isinstance(exc, ConnectionRefusedError):
        return "conexión rechazada"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    return f"{type(exc).__name__}: {exc}"
