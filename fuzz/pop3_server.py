"""Fuzz the POP3 server core (pillarbox.pop3.server) with arbitrary client bytes.

Input: byte 0 picks the connection (implicit TLS, STLS offered, plaintext login allowed) and
whether the scripted application accepts logins; byte 1 how the rest is cut into reads (0: one
read); the rest is what the client sends, then end of file. Asserted, beyond "no exception"
(a Pop3UsageError would be a bug in this script and is reported all the same):

* the core settles after every read (needs data, or disconnects) within a bounded number of
  events, letting held replies' deadlines pass;
* only QUIT removes mail: an ``Update`` event needs a QUIT line on the wire (RFC 1939 §6);
* a ``Disconnect`` comes by the end of file at the latest.
"""

from __future__ import annotations

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.pop3 import (
        NEED_DATA,
        PAUSED,
        Apop,
        Disconnect,
        MaildropMessage,
        Pop3Limits,
        Pop3Server,
        Pop3Settings,
        Retrieve,
        SaslResponse,
        SaslStart,
        Signal,
        StartTls,
        Update,
        UserPass,
        responses,
        wire_size,
    )

SETTINGS = Pop3Settings(
    hostname="h", apop=True, sasl_mechanisms=("PLAIN",), limits=Pop3Limits(max_errors=30)
)
MESSAGES = {1: b"A: 1\r\n\r\n.x\r\n", 2: b"B: 2\nC: 3\n\n..\nbody\n.\n", 3: b""}
LISTING = [MaildropMessage(uid, wire_size(raw)) for uid, raw in MESSAGES.items()]


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    flags, cut = data[0], data[1]
    accept = bool(flags & 8)
    clock = 0.0
    server = Pop3Server(
        SETTINGS,
        now=clock,
        tls_active=bool(flags & 1),
        starttls_available=bool(flags & 2),
        insecure_auth_allowed=bool(flags & 4),
        apop_timestamp="<1.2@h>",
    )
    updates = 0
    disconnected = False

    def answer(event: object) -> None:
        nonlocal updates
        match event:
            case SaslStart(_, None) if accept:
                server.sasl_challenge(b"")
            case UserPass() | Apop() | SaslStart() | SaslResponse():
                if accept:
                    server.accept_login(9, LISTING)
                else:
                    server.reject_login(responses.AUTH_FAILED)
            case StartTls():
                server.tls_started()
            case Retrieve(_, uid, _):
                raw = MESSAGES[uid]
                for start in range(0, len(raw), 5):
                    if not server.message_chunk(raw[start : start + 5]):
                        break
                server.end_message()
            case Update():
                updates += 1
                server.complete_update()

    stream = data[2:]
    step = cut or len(stream) or 1
    pieces = [stream[i : i + step] for i in range(0, len(stream), step)]
    for piece in [*pieces, b""]:
        server.receive_data(piece, clock)
        for _ in range(100_000):
            event = server.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, Disconnect):
                disconnected = True
                break
            if event is PAUSED:
                deadline = server.deadline()
                assert deadline is not None
                clock = max(clock, deadline)
                server.handle_timeout(clock)
            elif not isinstance(event, Signal):
                answer(event)
        else:
            raise AssertionError("the core did not settle")
        server.data_to_send(clock)
        if disconnected:
            break
    assert disconnected or server.closed
    if updates:
        assert b"QUIT" in stream.upper()


def seeds() -> list[bytes]:
    found = [bytes([i & 15, 0]) + t for i, t in enumerate(harness.transcript_lines("pop3", "C: "))]
    found += [
        b"\x0c\x00USER a\r\nPASS b\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 2\r\nTOP 1 0\r\nDELE 1\r\n"
        b"QUIT\r\n",
        b"\x0d\x03AUTH PLAIN\r\nAGEAYg==\r\nRETR 3\r\nRSET\r\nQUIT\r\n",
        b"\x02\x00CAPA\r\nSTLS\r\nCAPA\r\n",
        b"\x08\x00APOP a c4c9334bac560ecc979e58001b3e22fb\r\nLIST 9\r\nQUIT\r\n",
    ]
    return found


if __name__ == "__main__":
    harness.main("pop3_server", check, seeds())
