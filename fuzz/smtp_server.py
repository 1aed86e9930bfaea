"""Fuzz the SMTP server core (pillarbox.smtp.server) with arbitrary client bytes.

Input: byte 0 picks the state the session is driven to first (greeted, after EHLO, in a
transaction, inside DATA, between BDAT chunks, inside AUTH), SMTP or LMTP mode (with XFORWARD
offered, 0x10), the bare line-break policy (0x20) and whether TLS and AUTH are required before
MAIL (0x40: an LMTP client outside the trusted networks, or submission), whether AUTH is
offered only under TLS (0x80, as on the LMTP listener) and whether RFC 2920 synchronisation is
enforced (0x08, as on the MX); byte 1 how the rest is cut into reads (0: one read); the rest
is what the client sends. Asserted, beyond "no exception":

* every byte written is a well-formed reply line (``NNN`` then space or hyphen, CRLF);
* the session ends in a reply: after the final timeout the last line is 221 or 421, or with
  synchronisation enforced the 554 of a client that sent too early;
* when TLS and AUTH are required, no MAIL reaches the application but over TLS and after an
  AUTH accepted since the TLS handshake (RFC 3207 §4.2: what came before it is forgotten);
* no message is ended (``DataEnd`` after DATA) without a ``CRLF.CRLF`` on the wire: a bare
  CR or LF never ends DATA (SMTP smuggling, CVE-2023-51764).
"""

from __future__ import annotations

import re

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.smtp import replies as R
    from pillarbox.smtp.grammar import Auth, MailFrom, RcptTo
    from pillarbox.smtp.sentinels import PAUSED, Sentinel
    from pillarbox.smtp.server import (
        AuthResponse,
        BareLinebreakPolicy,
        DataEnd,
        DataStart,
        Mode,
        ServerConnection,
        SmtpServerSettings,
        State,
    )

_TXN = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
#: What the client says first, by the selector's low three bits (the hello verb is the mode's).
PREFIXES = (
    b"",
    b"%s c.example\r\n",
    b"%s c.example\r\n" + _TXN,
    b"%s c.example\r\n" + _TXN + b"DATA\r\n",
    b"%s c.example\r\n" + _TXN + b"BDAT 10\r\n0123456789",
    b"%s c.example\r\nAUTH PLAIN\r\n",
)
_REPLY_LINE = re.compile(rb"[2-5][0-9][0-9][ -][^\r\n]*\r\n")
_DATA_END = re.compile(rb"(?=\r\n\.\r\n)")


def _settings(
    lmtp: bool, normalise: bool, require: bool, tls_auth: bool, sync: bool
) -> SmtpServerSettings:
    return SmtpServerSettings(
        hostname="mx.test",
        mode=Mode.LMTP if lmtp else Mode.SMTP,
        starttls=True,
        auth_mechanisms=("PLAIN", "LOGIN"),
        auth_without_tls=not tls_auth,
        xforward=lmtp,
        max_errors=10,
        max_message_size=2048,
        max_recipients=5,
        bare_linebreaks=BareLinebreakPolicy.NORMALISE if normalise else BareLinebreakPolicy.REJECT,
        require_tls=require,
        require_auth=require,
        enforce_sync=sync,
    )


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    selector, cut = data[0], data[1]
    lmtp, normalise = bool(selector & 0x10), bool(selector & 0x20)
    require, tls_auth = bool(selector & 0x40), bool(selector & 0x80)
    sync = bool(selector & 0x08)
    prefix = PREFIXES[(selector & 0x07) % len(PREFIXES)]
    if b"%s" in prefix:
        prefix = prefix.replace(b"%s", b"LHLO" if lmtp else b"EHLO", 1)
    stream = prefix + data[2:]
    conn = ServerConnection(_settings(lmtp, normalise, require, tls_auth, sync))
    conn.greet(R.service_ready("mx.test"))
    out = bytearray(conn.data_to_send(0.0))
    ended_data = 0  # messages ended after DATA (not BDAT)
    chunking = False
    challenged = False
    authenticated = False  # an AUTH accepted since the last TLS handshake
    step = cut or len(stream) or 1
    for start in range(0, max(len(stream), 1), step):
        conn.receive_data(stream[start : start + step], 1.0)
        for _ in range(100_000):
            event = conn.next_event()
            if event is PAUSED and conn.state is State.TLS:
                conn.tls_established()
                authenticated = False
                continue
            if event is PAUSED:
                pending = conn.pending
                if require and isinstance(pending, MailFrom):
                    assert conn.tls and authenticated, stream
                if (
                    isinstance(pending, RcptTo)
                    and pending.path.mailbox is not None
                    and (pending.path.mailbox.local == "nobody")
                ):
                    conn.reject(R.MAILBOX_UNKNOWN)
                elif isinstance(pending, Auth) and not challenged:
                    challenged = True
                    conn.challenge(b"more")
                else:
                    authenticated |= isinstance(pending, Auth | AuthResponse)
                    conn.accept()
                continue
            if isinstance(event, Sentinel):
                break
            if isinstance(event, DataStart):
                chunking = event.chunking
            elif isinstance(event, DataEnd) and not chunking:
                ended_data += 1
        else:
            raise AssertionError("the core never asked for more data")
        out += conn.data_to_send(1.0)
    conn.handle_timeout(10_000.0)
    out += conn.data_to_send(10_000.0)
    wire = bytes(out)
    assert _REPLY_LINE.sub(b"", wire) == b"", wire
    last = wire.split(b"\r\n")[-2] + b"\r\n"
    assert last[:3] in (b"221", b"421") or (sync and last == R.SYNC_ERROR.render()), wire[-200:]
    terminators = len(_DATA_END.findall(stream))
    assert ended_data <= terminators, (ended_data, terminators, stream)


def seeds() -> list[bytes]:
    found = []
    for i, transcript in enumerate(harness.transcript_lines("smtp", "C: ")):
        found.append(bytes([i % len(PREFIXES), 0]) + transcript)
    found += [
        b"\x03\x00Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
        b"\x03\x01a\nb\r\n.\n.\r\n\r\n.\r\nQUIT\r\n",
        b"\x23\x00a\rb\n.\n\r\n.\r\n",
        b"\x04\x00BDAT 3 LAST\r\nabcQUIT\r\n",
        b"\x05\x00AGEAYg==\r\n*\r\n",
        b"\x12\x00DATA\r\nx\r\n.\r\n",
        b"\x11\x00XFORWARD ADDR=192.0.2.1 HELO=a+2Eb\r\nXFORWARD NAME\r\nMAIL FROM:<>\r\n",
        # LMTP outside the trusted networks: MAIL before STARTTLS, then STARTTLS and AUTH.
        b"\x51\x00MAIL FROM:<>\r\nSTARTTLS\r\nLHLO c\r\nAUTH PLAIN AGEAYg==\r\nMAIL FROM:<>\r\n",
        b"\xd1\x01AUTH PLAIN AGEAYg==\r\nSTARTTLS\r\nLHLO c\r\nAUTH PLAIN AGEAYg==\r\nAGEAYg==\r\n"
        b"MAIL FROM:<>\r\nRCPT TO:<x@mx.test>\r\nBDAT 2 LAST\r\nhiQUIT\r\n",
        # The same with a transaction of two recipients, one refused, and the message; then
        # AUTH over plain text first, then STARTTLS (which forgets it), then MAIL.
        b"\x51\x05STARTTLS\r\nLHLO c\r\nAUTH PLAIN AGEAYg==\r\nMAIL FROM:<a@b>\r\n"
        b"RCPT TO:<x@mx.test>\r\nRCPT TO:<nobody@mx.test>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
        b"\x51\x01AUTH PLAIN AGEAYg==\r\nAGEAYg==\r\nSTARTTLS\r\nLHLO c\r\nMAIL FROM:<>\r\n",
        b"\x55\x01AGEAYg==\r\nMAIL FROM:<>\r\nSTARTTLS\r\nLHLO c\r\nBDAT 1 LAST\r\nx",
        b"\x41\x01STARTTLS\r\nEHLO c\r\nAUTH LOGIN\r\nYQ==\r\nYg==\r\nMAIL FROM:<>\r\n",
    ]
    return found


if __name__ == "__main__":
    harness.main("smtp_server", check, seeds())
