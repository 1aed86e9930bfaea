"""TLS settings and the one place where socket, TLS and protocol-library errors become ours.

The client talks to servers we did not write, through three libraries (smtplib, poplib,
imapclient) that each raise their own mix of ``OSError``, ``ssl`` errors and protocol
exceptions. :func:`translated_errors` maps all of them once (httpcore's way), into the two
outcomes a script can act on: the server refused (:class:`ServerRefused`, exit 1) or we could
not talk to it safely (:class:`ConnectionFailed`, exit 3, naming the certificate problem).
"""

from __future__ import annotations

import enum
import imaplib
import poplib
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pillarbox.errors import ConfigError, PillarboxError, UserError


class TlsMode(enum.Enum):
    """How a connection is protected (RFC 8314 names: implicit TLS, STARTTLS, cleartext)."""

    STARTTLS = "starttls"
    IMPLICIT = "implicit"
    NONE = "none"


class ServerRefused(UserError):
    """The server answered, and said no (wrong password, unknown folder, rejected recipient)."""


class ConnectionFailed(PillarboxError):
    """No usable connection: refused, timed out, or TLS failed (the reason says which)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsPolicy:
    """What the user asked of certificate checking; verification is on unless ``insecure``."""

    cafile: Path | None = None
    insecure: bool = False

    def context(self) -> ssl.SSLContext:
        """A client context: system CAs (or ``cafile`` alone), host name checked, TLS ≥ 1.2."""
        if self.cafile is not None and not self.cafile.is_file():
            raise ConfigError("--cafile", f"{self.cafile} does not exist")
        context = ssl.create_default_context(
            cafile=str(self.cafile) if self.cafile is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996, RFC 8314 §4.1
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One server of an account: where it is and how TLS is used on it."""

    host: str
    port: int
    tls: TlsMode

    def __str__(self) -> str:
        return f"{self.host}:{self.port} ({self.tls.value})"


#: OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: the chain is
#: trusted, the certificate is for other names (--cafile would not help).
_NAME_MISMATCH = frozenset({62, 64})


def _certificate_problem(exc: ssl.SSLCertVerificationError) -> str:
    reason = exc.verify_message or exc.reason or str(exc)
    if exc.verify_code in _NAME_MISMATCH:
        return f"certificate is for other names: {reason} (connect by a name it carries)"
    return f"certificate not trusted: {reason} (use --cafile to trust a specific CA)"


@contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Run a client conversation with ``what`` (e.g. ``"IMAP server mail.example:993"``),
    translating library errors into :class:`ServerRefused` / :class:`ConnectionFailed`."""
    try:
        yield
    except ssl.SSLCertVerificationError as exc:
        raise ConnectionFailed(f"{what}: {_certificate_problem(exc)}") from exc
    except ssl.SSLError as exc:
        raise ConnectionFailed(f"{what}: TLS failed: {exc.reason or exc}") from exc
    except smtplib.SMTPResponseException as exc:
        text = _text(exc.smtp_error)
        raise ServerRefused(f"{what} said: {exc.smtp_code} {text}") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(
            f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in exc.recipients.items()
        )
        raise ServerRefused(f"{what} refused recipients: {refused}") from exc
    except smtplib.SMTPServerDisconnected as exc:
        raise ConnectionFailed(f"{what}: connection closed: {exc}") from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise ServerRefused(f"{what}: {exc}") from exc
    except smtplib.SMTPException as exc:
        raise ServerRefused(f"{what}: {exc}") from exc
    except poplib.error_proto as exc:
        raise ServerRefused(f"{what} said: {_text(exc.args[0] if exc.args else exc)}") from exc
    except imaplib.IMAP4.abort as exc:
        raise ConnectionFailed(f"{what}: connection lost: {exc}") from exc
    except imaplib.IMAP4.error as exc:  # imapclient's IMAPClientError, LoginError…
        raise ServerRefused(f"{what} said: {exc}") from exc
    except TimeoutError as exc:
        raise ConnectionFailed(f"{what}: timed out") from exc
    except socket.gaierror as exc:
        raise ConnectionFailed(f"{what}: cannot resolve host: {exc.strerror}") from exc
    except OSError as exc:
        raise ConnectionFailed(f"{what}: {exc.strerror or exc}") from exc


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
