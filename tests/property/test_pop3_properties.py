"""Hypothesis properties of the POP3 core: arbitrary input never escapes as an exception, the
way input is cut never changes the output, and RETR/TOP dot-stuffing round-trips (RFC 1939 §3)."""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from pillarbox.pop3 import (
    NEED_DATA,
    PAUSED,
    Apop,
    Disconnect,
    Event,
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
from pillarbox.pop3.transfer import MessageEncoder

SETTINGS = Pop3Settings(hostname="h", apop=True, limits=Pop3Limits(max_errors=50))
COMMANDS = [
    b"USER mrose\r\n",
    b"PASS secret\r\n",
    b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH PLAIN AG1yb3NlAHNlY3JldA==\r\n",
    b"AUTH SCRAM-SHA-256\r\n",
    b"AUTH\r\n",
    b"dGVzdA==\r\n",
    b"*\r\n",
    b"STLS\r\n",
    b"CAPA\r\n",
    b"STAT\r\n",
    b"LIST\r\n",
    b"LIST 1\r\n",
    b"UIDL\r\n",
    b"UIDL 2\r\n",
    b"RETR 1\r\n",
    b"RETR 3\r\n",
    b"TOP 2 1\r\n",
    b"DELE 1\r\n",
    b"DELE 2\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"\r\n",
    b"\n",
]
MESSAGES = {1: b"A: 1\r\n\r\n.x\r\n", 2: b"B: 2\nC: 3\n\n..\nbody\n.\n"}
LISTING = [MaildropMessage(uid, wire_size(raw)) for uid, raw in MESSAGES.items()]

command_streams = st.lists(
    st.one_of(st.sampled_from(COMMANDS), st.binary(max_size=20)), max_size=20
).map(b"".join)


def _cuts(data: bytes, sizes: list[int]) -> list[bytes]:
    pieces, start = [], 0
    for size in sizes:
        pieces.append(data[start : start + size])
        start += size
    pieces.append(data[start:])
    return [piece for piece in pieces if piece]


def _deterministic_answer(server: Pop3Server, event: object) -> None:
    """A fixed application: ``mrose``/``secret`` logs in, everything else is refused."""
    match event:
        case (
            UserPass("mrose", "secret")
            | SaslStart("PLAIN", b"\0mrose\0secret")
            | SaslResponse(b"\0mrose\0secret")
        ):
            server.accept_login(9, LISTING)
        case SaslStart("PLAIN", None):
            server.sasl_challenge(b"")
        case UserPass() | Apop() | SaslStart() | SaslResponse():
            server.reject_login(responses.AUTH_FAILED)
        case StartTls():
            server.tls_started()
        case Retrieve(_, uid, _):
            raw = MESSAGES[uid]
            for start in range(0, len(raw), 3):
                if not server.message_chunk(raw[start : start + 3]):
                    break
            server.end_message()
        case Update():
            server.complete_update()
        case _:
            raise AssertionError(event)


def _settle(server: Pop3Server, clock: float, answer: Callable[[Event], None]) -> float:
    """Hands every event to ``answer`` until the core needs data or disconnects, letting each
    pause's deadline pass; returns the clock as it then stands."""
    for _ in range(10_000):
        event = server.next_event()
        if event is NEED_DATA or isinstance(event, Disconnect):
            return clock
        if event is PAUSED:
            deadline = server.deadline()
            assert deadline is not None
            clock = deadline
            server.handle_timeout(clock)
        elif not isinstance(event, Signal):
            answer(event)
    raise AssertionError("the core did not settle")


def _run(pieces: list[bytes], insecure: bool) -> bytes:
    # No STLS here: what arrives behind STLS is discarded by design, so it depends on the cut.
    clock = 0.0
    server = Pop3Server(
        SETTINGS, now=clock, insecure_auth_allowed=insecure, apop_timestamp="<1.2@h>"
    )
    output = bytearray(server.data_to_send(clock))
    for piece in [*pieces, b""]:
        server.receive_data(piece, clock)
        clock = _settle(server, clock, lambda event: _deterministic_answer(server, event))
        output += server.data_to_send(clock)
    return bytes(output)


@settings(max_examples=100)
@given(
    stream=command_streams, sizes=st.lists(st.integers(1, 12), max_size=40), insecure=st.booleans()
)
def test_cutting_input_never_changes_output(
    stream: bytes, sizes: list[int], insecure: bool
) -> None:
    whole = _run([stream], insecure)
    assert _run(_cuts(stream, sizes), insecure) == whole
    assert _run([stream[i : i + 1] for i in range(len(stream))], insecure) == whole


@settings(max_examples=100)
@given(data=st.data(), stream=command_streams, sizes=st.lists(st.integers(1, 50), max_size=20))
def test_arbitrary_input_and_answers_never_raise(
    data: st.DataObject, stream: bytes, sizes: list[int]
) -> None:
    """Whatever the client sends and whichever valid answer the application picks, the core
    answers on the wire and never raises."""
    clock = 0.0
    server = Pop3Server(
        SETTINGS,
        now=clock,
        tls_active=data.draw(st.booleans()),
        starttls_available=data.draw(st.booleans()),
        insecure_auth_allowed=data.draw(st.booleans()),
        apop_timestamp="<1.2@h>",
    )

    def answer(event: Event) -> None:
        match event:
            case UserPass() | Apop() | SaslStart() | SaslResponse():
                choice = data.draw(st.sampled_from(["accept", "auth", "in-use", "sasl"]))
                if choice == "accept":
                    server.accept_login(9, LISTING)
                elif choice == "sasl" and isinstance(event, SaslStart | SaslResponse):
                    server.sasl_challenge(data.draw(st.binary(max_size=20)))
                else:
                    server.reject_login(
                        responses.AUTH_FAILED if choice == "auth" else responses.IN_USE
                    )
            case StartTls():
                server.tls_started()
            case Retrieve():
                for chunk in data.draw(st.lists(st.binary(max_size=20), max_size=4)):
                    server.message_chunk(chunk)
                if data.draw(st.booleans()):
                    server.end_message()
                else:
                    server.fail_message(responses.MESSAGE_GONE)
            case Update():
                if data.draw(st.booleans()):
                    server.complete_update()
                else:
                    server.fail_update()

    for piece in [*_cuts(stream, sizes), b""]:
        clock += data.draw(st.sampled_from([0.0, 1.0, 700.0]))
        server.receive_data(piece, clock)
        server.handle_timeout(clock)
        clock = _settle(server, clock, answer)
        server.data_to_send(clock)
        if server.closed:
            break


# -- RETR/TOP encoding round trip --------------------------------------------------------------
messages = st.lists(st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n", b": "]), max_size=60).map(
    b"".join
)


def _wire_lines(raw: bytes) -> list[bytes]:
    """The lines of the wire form, by an independent reading: CRLF or a bare LF ends a line,
    and a final CR or unterminated line is completed."""
    *lines, last = re.split(rb"\r?\n", raw)
    if last.endswith(b"\r"):
        lines.append(last[:-1])
    elif last:
        lines.append(last)
    return lines


def _unstuff(wire: bytes) -> list[bytes]:
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    body = wire[: -len(b".\r\n")]
    lines = body.split(b"\r\n")[:-1] if body else []
    for line in lines:
        assert line != b".", "an unstuffed terminator inside the body"
    return [line[1:] if line.startswith(b".") else line for line in lines]


def _encode(raw: bytes, sizes: list[int], top: int | None) -> bytes:
    encoder = MessageEncoder(top)
    return b"".join(encoder.encode(piece) for piece in _cuts(raw, sizes)) + encoder.finish()


@settings(max_examples=200)
@given(raw=messages, sizes=st.lists(st.integers(1, 7), max_size=20))
def test_retr_round_trips(raw: bytes, sizes: list[int]) -> None:
    wire = _encode(raw, sizes, None)
    lines = _unstuff(wire)
    assert lines == _wire_lines(raw)
    assert sum(len(line) + 2 for line in lines) == wire_size(raw)


@settings(max_examples=200)
@given(raw=messages, sizes=st.lists(st.integers(1, 7), max_size=20), top=st.integers(0, 5))
def test_top_is_header_blank_line_and_n_body_lines(raw: bytes, sizes: list[int], top: int) -> None:
    lines = _wire_lines(raw)
    blank = lines.index(b"") if b"" in lines else len(lines)
    assert _unstuff(_encode(raw, sizes, top)) == lines[: blank + 1 + top]
