"""Sending one email through the mail server of `KWIK_SMTP_URL`, within a deadline.

`smtp://` uses STARTTLS when the server offers it and insists on it on port 587;
`smtps://` is TLS from the first byte. A password is never sent over a connection
that is not encrypted, except to a relay on this machine. Every step of a try
shares one deadline, so a server that answers slowly, or never, holds a try no
longer than that.
"""

from __future__ import annotations

import dataclasses
import email.message
import functools
import ipaddress
import smtplib
import ssl
import time
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
SUBMISSION_PORT = 587  # mail submission: STARTTLS or nothing


class MailError(Exception):
    """A try that did not hand the email over. `unreachable`: the server could not be reached or spoken to at all,
    so other emails would fare no better now."""

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


@dataclasses.dataclass(frozen=True)
class MailServer:
    host: str
    port: int
    implicit_tls: bool  # smtps://
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)

    @property
    def starttls_required(self) -> bool:
        return not self.implicit_tls and self.port == SUBMISSION_PORT

    @property
    def on_this_machine(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        """Where alerts go, without the password: for logs and errors."""
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{self.host}:{self.port}"


def parse_smtp_url(text: str) -> MailServer:
    """`smtp://user:pass@host:587`, `smtps://host`, `smtp://127.0.0.1:25`. ValueError says what is wrong."""
    shape = "like smtp://user:password@mail.example.com:587 or smtps://mail.example.com"
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"must be a URL {shape}") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"must be a URL {shape}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"takes no path or query: a URL {shape}")
    if port == 0:
        raise ValueError(f"needs a port between 1 and 65535: a URL {shape}")
    return MailServer(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[parts.scheme],
        implicit_tls=parts.scheme == "smtps",
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


@functools.cache
def _system_tls() -> ssl.SSLContext:
    """Made once, when first needed: reading the system's authorities holds the GIL for a long moment (0.4 s on a
    loaded machine), which would stall the delivery thread's event loop at every try."""
    return ssl.create_default_context()


class _Deadline:
    """smtplib's client, with each read and write given what is left of the try's time."""

    deadline = 0.0
    sock = None

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the mail server took too long")
        if self.sock is not None:
            self.sock.settimeout(left)

    def send(self, s):
        self._arm()
        return super().send(s)

    def getreply(self):
        self._arm()
        return super().getreply()


class _SMTP(_Deadline, smtplib.SMTP):
    pass


class _SMTPS(_Deadline, smtplib.SMTP_SSL):
    pass


def send(
    server: MailServer,
    message: email.message.EmailMessage,
    *,
    timeout: float,
    local_hostname: str = "localhost",
    tls: ssl.SSLContext | None = None,
) -> list[str]:
    """Hand `message` to the server for its To addresses; return those it refused (if it took some).

    Raises MailError when the server took none. `tls` verifies the server's certificate (the system's
    trusted authorities by default).
    """
    # Given local_hostname, smtplib skips looking up this machine's name, which can take seconds.
    client = (
        _SMTPS(local_hostname=local_hostname, timeout=timeout, context=tls or _system_tls())
        if server.implicit_tls
        else _SMTP(local_hostname=local_hostname, timeout=timeout)
    )
    client.deadline = time.monotonic() + timeout
    client._host = server.host  # for the certificate check (smtplib sets it only when given a host at once)
    try:
        code, reply = client.connect(server.host, server.port)
        if code != 220:
            raise MailError(f"{server} greeted with {code} {_text(reply)}", unreachable=True)
        client.ehlo()
        if not server.implicit_tls:
            if client.has_extn("starttls"):
                client.starttls(context=tls or _system_tls())
                client.ehlo()
            elif server.starttls_required:
                raise MailError(f"{server} does not offer STARTTLS, which port {SUBMISSION_PORT} needs")
            elif server.username and not server.on_this_machine:
                raise MailError(f"{server} does not offer STARTTLS: the password is not sent unencrypted")
        if server.username:
            client.login(server.username, server.password)
        refused = client.send_message(message)
        _quit(client)
        return sorted(refused)
    except MailError:
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailError(f"{server} refused every recipient: {_refusals(exc.recipients)}") from None
    except smtplib.SMTPResponseException as exc:
        raise MailError(f"{server} answered {exc.smtp_code} {_text(exc.smtp_error)}") from None
    except smtplib.SMTPServerDisconnected as exc:
        cause = exc.__context__  # smtplib turns a read's timeout or reset into this
        said = _describe(cause) if isinstance(cause, OSError) else f"hung up ({exc})"
        raise MailError(f"{server}: {said}", unreachable=True) from None
    except smtplib.SMTPException as exc:  # before OSError, which it derives from
        raise MailError(f"{server}: {exc}") from None
    except OSError as exc:  # refused, unreachable, timed out, TLS failed
        raise MailError(f"{server}: {_describe(exc)}", unreachable=True) from None
    finally:
        client.close()


def _quit(client: smtplib.SMTP) -> None:
    """Say goodbye, briefly: the email is already handed over, whatever the answer."""
    client.deadline = time.monotonic() + 1.0
    try:
        client.quit()
    except OSError:  # smtplib's errors too
        pass


def _text(reply: bytes | str) -> str:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


def _refusals(recipients: dict) -> str:
    return ", ".join(f"{address} ({code} {_text(reply)})" for address, (code, reply) in sorted(recipients.items()))


def _describe(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__
