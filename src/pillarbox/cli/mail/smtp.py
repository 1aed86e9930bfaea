"""Submitting a message (RFC 6409) with the standard library's smtplib.

TLS first, then AUTH: implicit TLS (RFC 8314 §3) or STARTTLS (RFC 3207), which is mandatory
when the account says so — a server that does not offer it is a failure, never a silent
downgrade to cleartext. AUTH prefers SCRAM-SHA-256 (RFC 7677) when the server offers it, so the
password itself never crosses the wire; otherwise smtplib's PLAIN/LOGIN, inside TLS.
With ``require_tls`` the message is given with REQUIRETLS (RFC 8689 §4.3: negotiate STARTTLS
and REQUIRETLS, then the MAIL parameter); a server that does not offer it after TLS is a
failure, before the password is sent.
"""

from __future__ import annotations

import smtplib
import ssl

from pillarbox.auth.sasl import SaslClientError, ScramClient
from pillarbox.cli.mail.compose import Outgoing
from pillarbox.mailclient.transport import (
    ConnectionFailed,
    Endpoint,
    ServerRefused,
    TlsMode,
    translated_errors,
)

SCRAM = "SCRAM-SHA-256"


def submit(
    endpoint: Endpoint,
    username: str,
    password: str,
    outgoing: Outgoing,
    *,
    context: ssl.SSLContext,
    timeout: float,
    require_tls: bool = False,
) -> dict[str, tuple[int, bytes]]:
    """Send ``outgoing``; returns the recipients the server refused (empty if none was).

    Raises :class:`ServerRefused` when every recipient, the sender or the message is refused.
    """
    what = f"SMTP server {endpoint}"
    with translated_errors(what):
        client = _connect(endpoint, context, timeout)
        try:
            options = _requiretls(client, endpoint) if require_tls else []
            _authenticate(client, username, password)
            refused = client.sendmail(
                outgoing.sender,
                list(outgoing.recipients),
                outgoing.raw,
                mail_options=options,
            )
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
    return {rcpt: (code, text) for rcpt, (code, text) in refused.items()}


def _connect(endpoint: Endpoint, context: ssl.SSLContext, timeout: float) -> smtplib.SMTP:
    client: smtplib.SMTP
    if endpoint.tls is TlsMode.IMPLICIT:
        client = smtplib.SMTP_SSL(endpoint.host, endpoint.port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(endpoint.host, endpoint.port, timeout=timeout)
    try:
        client.ehlo()
        if endpoint.tls is TlsMode.STARTTLS:
            if not client.has_extn("starttls"):
                raise ConnectionFailed(
                    f"SMTP server {endpoint} does not offer STARTTLS; refusing to send the "
                    "password in clear (use --tls none only if you mean it)"
                )
            client.starttls(context=context)
            client.ehlo()  # RFC 3207 §4.2: forget what was learnt before TLS
    except BaseException:
        client.close()
        raise
    return client


def _requiretls(client: smtplib.SMTP, endpoint: Endpoint) -> list[str]:
    """The MAIL parameter asking RFC 8689 handling, once the session is TLS and offers it."""
    if endpoint.tls is TlsMode.NONE:
        raise ConnectionFailed(
            f"REQUIRETLS needs TLS; the account's SMTP server {endpoint} has none"
        )
    if not client.has_extn("requiretls"):
        raise ConnectionFailed(f"SMTP server {endpoint} does not offer REQUIRETLS (RFC 8689)")
    return ["REQUIRETLS"]


def _authenticate(client: smtplib.SMTP, username: str, password: str) -> None:
    if not client.has_extn("auth"):
        raise ServerRefused("the SMTP server offers no AUTH (is this a submission port?)")
    offered = client.esmtp_features.get("auth", "").upper().split()
    if SCRAM not in offered:
        client.login(username, password)
        return
    scram = ScramClient(username, password)

    def answer(challenge: bytes | None = None) -> str:
        # smtplib calls this with no challenge for the initial response, then with each
        # decoded challenge, and base64-encodes what it returns. RFC 4954 §4: the server's
        # final SCRAM message arrives as one more challenge, answered with an empty line.
        try:
            step = scram.initial_response() if challenge is None else scram.respond(challenge)
        except SaslClientError as exc:
            raise ServerRefused(f"SCRAM: {exc}") from exc
        return step.decode("utf-8")

    client.auth(SCRAM, answer, initial_response_ok=True)
    try:
        scram.finish()
    except SaslClientError as exc:
        raise ConnectionFailed(f"SMTP server failed to prove it knows the password: {exc}") from exc
