"""Reading the issuer's exchange mailbox (imaplib): the mails that arrived since the last look.

The folder is opened read-only (EXAMINE) and bodies are fetched with BODY.PEEK, so the
mailbox is left exactly as it was: nothing marked seen, moved or deleted (the people who
read it see every mail as before). Progress is the highest UID looked at, per folder and
UIDVALIDITY, kept in the delivery store after each mail; a new UIDVALIDITY (the folder was
rebuilt) means looking at everything again, which is harmless because answers are recorded
once per content (sync.delivery.store `answers`).
"""

from __future__ import annotations

import email
import imaplib
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.errors import MessageError
from email.message import EmailMessage, Message
from email.policy import default as default_policy
from typing import Self

from sync.delivery.mail import tls_context
from sync.delivery.settings import ImapConfig

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
XML_TYPES = ("application/xml", "text/xml")


class ImapError(Exception):
    """The mailbox cannot be read now (unreachable, TLS, login, no such folder)."""


@dataclass(frozen=True)
class Fetched:
    uidvalidity: int
    uid: int
    data: bytes | None  # None: over the size limit, not fetched
    size: int


class Mailbox:
    """One IMAP session on the exchange folder; a context manager."""

    def __init__(self, cfg: ImapConfig, password: Callable[[], str]) -> None:
        self.cfg = cfg
        self._password = password
        self._imap: imaplib.IMAP4 | None = None
        self.uidvalidity = 0

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        c = self.cfg
        try:
            if c.tls == "ssl":
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(c.host, c.port, ssl_context=tls_context(c.ca_bundle),
                                                        timeout=c.timeout)
            else:
                imap = imaplib.IMAP4(c.host, c.port, timeout=c.timeout)
            self._imap = imap
            if c.tls == "starttls":
                imap.starttls(ssl_context=tls_context(c.ca_bundle))
            imap.login(c.user, self._password())
            typ, data = imap.select(_quoted(c.folder), readonly=True)
            if typ != "OK":
                raise ImapError(f"la carpeta {c.folder!r} no existe o no se puede abrir: {_first(data)}")
            self.uidvalidity = self._uidvalidity()
        except ImapError:
            self.close()
            raise
        except imaplib.IMAP4.error as exc:
            self.close()
            raise ImapError(f"{c.host}:{c.port}: {exc}") from None
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise ImapError(f"{c.host}:{c.port}: certificado TLS no verificado: {exc.verify_message or exc}") from None
        except (TimeoutError, OSError) as exc:
            self.close()
            raise ImapError(f"{c.host}:{c.port}: {type(exc).__name__}: {exc}") from None

    def _uidvalidity(self) -> int:
        assert self._imap is not None
        for item in self._imap.response("UIDVALIDITY")[1] or []:
            if item:
                return int(item)
        typ, data = self._imap.status(_quoted(self.cfg.folder), "(UIDVALIDITY)")
        m = _UIDVALIDITY.search(b" ".join(d for d in data if isinstance(d, bytes)))
        if typ != "OK" or m is None:
            raise ImapError("el servidor no informa UIDVALIDITY")
        return int(m.group(1))

    def new_messages(self, after_uid: int) -> Iterator[Fetched]:
        """The mails with a UID above `after_uid`, oldest first, each read without marking it."""
        imap = self._require()
        try:
            typ, data = imap.uid("SEARCH", f"UID {after_uid + 1}:*")
            if typ != "OK":
                raise ImapError(f"UID SEARCH: {_first(data)}")
            uids = sorted(int(u) for u in (data[0] or b"").split() if int(u) > after_uid)
            for uid in uids:
                size = self._size(uid)
                if size > self.cfg.max_message_bytes:
                    yield Fetched(self.uidvalidity, uid, None, size)
                    continue
                typ, parts = imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
                body = next((p[1] for p in parts if isinstance(p, tuple) and len(p) == 2), None)
                if typ != "OK" or body is None:
                    raise ImapError(f"UID FETCH {uid}: {_first(parts)}")
                yield Fetched(self.uidvalidity, uid, bytes(body), size)
        except imaplib.IMAP4.error as exc:
            raise ImapError(str(exc)) from None
        except OSError as exc:
            raise ImapError(f"{type(exc).__name__}: {exc}") from None

    def _size(self, uid: int) -> int:
        imap = self._require()
        typ, data = imap.uid("FETCH", str(uid), "(RFC822.SIZE)")
        flat = b" ".join(d if isinstance(d, bytes) else d[0] for d in data if d)
        m = _SIZE.search(flat)
        return int(m.group(1)) if typ == "OK" and m else 0

    def _require(self) -> imaplib.IMAP4:
        if self._imap is None:
            raise ImapError("sin conexión IMAP")
        return self._imap

    def close(self) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        try:
            if imap.state == "SELECTED":
                imap.close()
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            try:
                imap.shutdown()
            except OSError:
                pass


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _first(data: object) -> str:
    if isinstance(data, list) and data:
        item = data[0]
        return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
    return str(data)


# --- what a mail carries ------------------------------------------------------------------------------
@dataclass(frozen=True)
class XmlPart:
    name: str
    data: bytes


def parse_mail(raw: bytes) -> EmailMessage | Message:
    return email.message_from_bytes(raw, policy=default_policy)


def xml_parts(msg: EmailMessage | Message) -> list[XmlPart]:
    """The XML files a mail carries: attachments named *.xml or typed as XML, or a body that
    is itself XML (some receptors' software sends the answer as the whole mail)."""
    out: list[XmlPart] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        name = part.get_filename() or ""
        ctype = part.get_content_type()
        if not (name.lower().endswith(".xml") or ctype in XML_TYPES):
            continue
        try:
            payload = part.get_payload(decode=True)
        except (MessageError, ValueError, LookupError):  # a broken transfer encoding: unreadable
            payload = None
        if isinstance(payload, bytes) and payload.strip():
            out.append(XmlPart(name or "(cuerpo)", payload))
    return out


def header(msg: EmailMessage | Message, name: str) -> str | None:
    try:
        value = msg.get(name)
    except (MessageError, ValueError, LookupError, IndexError):  # a header so broken the parser gives up
        return None
    return " ".join(str(value).split())[:300] if value is not None else None
