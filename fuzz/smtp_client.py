"""Fuzz the SMTP client core (pillarbox.smtp.client) with hostile server replies.

Input: byte 0 picks the client's settings (pipelining, chunking) and whether it tries
STARTTLS and AUTH when offered; byte 1 how the rest is cut into reads (0: one read); the rest
is everything the server sends. The application is scripted: EHLO (HELO after a refusal),
STARTTLS and AUTH PLAIN when offered and chosen, one transaction of three recipients (fewer
when the last EHLO's LIMITS RCPTMAX says so, RFC 9422 §4.2), QUIT.
Asserted, beyond "no exception" (a LocalProtocolError would be a bug in this script, not in
the core, and is reported all the same):

* every recipient gets exactly one final ``RecipientResult`` (STYLE §7), by the time the
  transaction is done or the connection is closed;
* ``MessageDone`` comes only once all recipients have their final result.
"""

from __future__ import annotations

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.mail.address import parse_address
    from pillarbox.smtp.client import (
        AuthChallenge,
        ClientConnection,
        Closed,
        Greeting,
        MessageDone,
        ReadyForData,
        RecipientResult,
        Response,
        SmtpClientSettings,
    )
    from pillarbox.smtp.extensions import Extension
    from pillarbox.smtp.grammar import Auth, Hello, HelloKind, MailFrom, Path, RcptTo, StartTls
    from pillarbox.smtp.sentinels import IDLE, Sentinel

MAIL = MailFrom(Path(parse_address("a@out.example")))
RECIPIENTS = [RcptTo(Path(parse_address(f"{n}@mx.test"))) for n in ("x", "y", "z")]
BODY = b"Subject: hi\r\n\r\n.line\r\nend\r\n"


class Script:
    """The application: what it does on each event, and what it saw."""

    def __init__(self, client: ClientConnection, *, tls: bool, auth: bool) -> None:
        self.client = client
        self.want_tls = tls
        self.want_auth = auth
        self.sent_mail = False
        self.quitting = False
        self.closed = False
        self.finals: dict[int, int] = {}
        self.recipients = RECIPIENTS

    def on_event(self, event: object) -> None:
        c = self.client
        if self.closed:
            if isinstance(event, RecipientResult) and event.final:
                self.finals[id(event.rcpt)] = self.finals.get(id(event.rcpt), 0) + 1
            return
        match event:
            case Greeting(reply) if reply.code == 220:
                c.ehlo()
            case Response(Hello(HelloKind.EHLO), reply) if reply.code >= 500:
                c.helo()
            case Response(Hello(), reply) if reply.code < 400:
                self.after_hello()
            case Response(StartTls(), reply) if reply.code == 220:
                c.tls_established()
                c.ehlo()
            case Response(Auth(), _) | Response(StartTls(), _):
                self.start_mail()
            case AuthChallenge():
                c.auth_cancel()
            case RecipientResult(rcpt, _, final=True):
                self.finals[id(rcpt)] = self.finals.get(id(rcpt), 0) + 1
            case ReadyForData():
                if c.accepting_body:
                    c.send_body(BODY)
                if c.accepting_body:
                    c.end_body()
            case MessageDone():
                assert all(self.finals.get(id(r)) == 1 for r in self.recipients), self.finals

    def after_hello(self) -> None:
        c = self.client
        if self.want_tls and not c.tls and Extension.STARTTLS in c.capabilities:
            c.starttls()
        elif self.want_auth and "PLAIN" in c.capabilities.auth_mechanisms:
            self.want_auth = False
            c.auth("PLAIN", None)
        else:
            self.start_mail()

    def start_mail(self) -> None:
        if self.sent_mail:
            return  # QUIT follows when the client is idle
        self.sent_mail = True
        self.recipients = RECIPIENTS[: self.client.capabilities.limits.rcpt_max]
        self.client.send_mail(MAIL, self.recipients)

    def quit(self) -> bool:
        """QUIT, the first time the client is idle with nothing else to do."""
        if self.quitting:
            return False
        self.quitting = True
        self.client.quit()
        return True


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    flags, cut = data[0], data[1]
    settings = SmtpClientSettings(
        hostname="out.example", use_pipelining=bool(flags & 1), use_chunking=bool(flags & 2)
    )
    client = ClientConnection(settings, now=0.0)
    script = Script(client, tls=bool(flags & 4), auth=bool(flags & 8))
    replies = data[2:]
    step = cut or len(replies) or 1
    closed = False
    for start in range(0, max(len(replies), 1), step):
        client.receive_data(replies[start : start + step], 1.0)
        for _ in range(100_000):
            batch = []
            while not isinstance(event := client.next_event(), Sentinel):
                batch.append(event)
            if not batch:
                if event is IDLE and script.quit():
                    continue
                break
            # Closed may follow MessageDone in one batch: no command after it (as the adapter).
            closed = closed or any(isinstance(e, Closed) for e in batch)
            script.closed = closed
            for event in batch:
                script.on_event(event)
        else:
            raise AssertionError("the core never settled")
        client.data_to_send(1.0)
        if closed:
            break
    client.connection_lost()
    script.closed = True
    while not isinstance(event := client.next_event(), Sentinel):
        script.on_event(event)
    if script.sent_mail:
        assert all(script.finals.get(id(r)) == 1 for r in script.recipients), script.finals


EHLO = (
    b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-CHUNKING\r\n250-DSN\r\n"
    b"250 AUTH PLAIN LOGIN\r\n"
)


def seeds() -> list[bytes]:
    found = [
        bytes([flags, 0]) + transcript
        for flags, transcript in enumerate(harness.transcript_lines("smtp", "S: "))
    ]
    ok = b"250 2.1.0 ok\r\n"
    for flags in range(16):
        found.append(
            bytes([flags, 0])
            + b"220 mx.test\r\n"
            + EHLO
            + b"220 go\r\n"
            + EHLO
            + b"334 \r\n501 cancelled\r\n"
            + ok
            + b"550 5.1.1 no\r\n"
            + ok * 2
            + b"354 go\r\n"
            + b"250 2.0.0 queued\r\n221 bye\r\n"
        )
    limited = EHLO.replace(b"250-SIZE 1000", b"250-SIZE 1000\r\n250-LIMITS RCPTMAX=2 MAILMAX=1")
    found.append(b"\x01\x00220 mx.test\r\n" + limited + ok * 3 + b"354 go\r\n250 ok\r\n221 bye\r\n")
    found.append(b"\x03\x05220 x\r\n250-a\r\n250 CHUNKING\r\n250 a\r\n250 b\r\n421 c\r\n")
    return found


if __name__ == "__main__":
    harness.main("smtp_client", check, seeds())
