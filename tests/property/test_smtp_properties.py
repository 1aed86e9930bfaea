"""Hypothesis properties of the SMTP core: stuffing round trips, chunking independence, and
no exception escaping the server whatever bytes arrive in whatever pieces."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from pillarbox.errors import InvalidName
from pillarbox.mail import address
from pillarbox.mail.address import parse_address
from pillarbox.mail.dotstuff import Stuffer, Unstuffer, stuff
from pillarbox.smtp import grammar
from pillarbox.smtp import replies as R
from pillarbox.smtp.extensions import LIMIT_MAX, Capabilities, Extension, Limits
from pillarbox.smtp.grammar import (
    Body,
    MailFrom,
    MailParams,
    Notify,
    OriginalRecipient,
    Path,
    RcptParams,
    RcptTo,
    Ret,
    format_command,
    parse_command,
)
from pillarbox.smtp.sentinels import PAUSED, Sentinel
from pillarbox.smtp.server import ServerConnection, SmtpServerSettings, State

LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
BODY = st.lists(LINE, max_size=12).map(lambda lines: b"".join(x + b"\r\n" for x in lines))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=200)
@given(BODY, st.lists(st.integers(min_value=0), max_size=8))
def test_unstuff_reverses_stuff(body: bytes, cuts: list[int]) -> None:
    u = Unstuffer()
    out = b"".join(u.feed(piece) for piece in split(stuff(body) + b".\r\n", cuts))
    assert out == body
    assert u.finished
    assert u.unused == b""


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=20), max_size=6))
def test_incremental_stuffer_matches_stuff(pieces: list[bytes]) -> None:
    s = Stuffer()
    whole = b"".join(pieces)
    wire = b"".join(s.feed(p) for p in pieces) + s.end()
    expected = stuff(whole) + (b"" if whole.endswith(b"\r\n") or not whole else b"\r\n")
    assert wire == expected + b".\r\n"


@settings(max_examples=200)
@given(st.binary(max_size=80), st.lists(st.integers(min_value=0), max_size=8))
def test_unstuffer_is_chunking_independent(wire: bytes, cuts: list[int]) -> None:
    whole = Unstuffer()
    expected = whole.feed(wire)
    pieces = Unstuffer()
    got = b"".join(pieces.feed(piece) for piece in split(wire, cuts))
    assert got == expected
    assert (pieces.finished, pieces.unused, pieces.saw_bare_linebreak) == (
        whole.finished,
        whole.unused,
        whole.saw_bare_linebreak,
    )


#: Wire bytes made of the pieces the unstuffer decides on: CRs, LFs and dots in every order.
LINE_BREAKY = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"a", b"bc"]), max_size=60
).map(b"".join)


@settings(max_examples=300)
@given(LINE_BREAKY, st.booleans())
def test_block_fast_path_agrees_with_byte_by_byte(wire: bytes, normalise: bool) -> None:
    """Fed whole, lines go out in blocks (bare CR/LF found by counting); fed one byte at a
    time, every line is decided alone. Output, terminator, bare-break flag and longest line
    must not depend on which path ran."""
    whole = Unstuffer(normalise_bare_linebreaks=normalise)
    expected = whole.feed(wire + b"\r\n.\r\n")
    single = Unstuffer(normalise_bare_linebreaks=normalise)
    data = wire + b"\r\n.\r\n"
    got = b"".join(single.feed(data[i : i + 1]) for i in range(len(data)))
    assert got == expected
    assert (single.finished, single.unused, single.saw_bare_linebreak, single.longest_line) == (
        whole.finished,
        whole.unused,
        whole.saw_bare_linebreak,
        whole.longest_line,
    )


COMMANDS = st.sampled_from(
    [
        b"EHLO c\r\n",
        b"HELO c\r\n",
        b"MAIL FROM:<a@b.example> SIZE=10\r\n",
        b"RCPT TO:<x@mx.test>\r\n",
        b"RCPT TO:<nobody@mx.test>\r\n",
        b"DATA\r\n",
        b"BDAT 5\r\n",
        b"BDAT 0 LAST\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"STARTTLS\r\n",
        b"AUTH PLAIN\r\n",
        b"AUTH PLAIN AGEAYg==\r\n",
        b"*\r\n",
        b".\r\n",
        b"\r\n.\r\n",
        b"\n.\n",
        b"\r",
        b"QUIT\r\n",
        b"x" * 700,
    ]
)
STREAM = st.lists(st.one_of(COMMANDS, st.binary(max_size=30)), max_size=25).map(b"".join)


def play(data: bytes, cuts: list[int]) -> tuple[list[object], bytes]:
    """Run the server on ``data`` in the given pieces with a deterministic application."""
    conn = ServerConnection(
        SmtpServerSettings(
            hostname="mx.test",
            starttls=True,
            auth_mechanisms=("PLAIN",),
            auth_without_tls=True,
            max_errors=8,
            max_message_size=64,
            max_text_line=40,
        )
    )
    conn.greet(R.service_ready("mx.test"))
    events: list[object] = []
    out = bytearray(conn.data_to_send(0.0))
    rounds = 0
    for piece in split(data, cuts):
        conn.receive_data(piece, 1.0)
        while True:
            event = conn.next_event()
            rounds += 1
            assert rounds < 10_000
            if event is PAUSED and conn.state is State.TLS:
                break
            if event is PAUSED:
                pending = conn.pending
                if (
                    isinstance(pending, RcptTo)
                    and pending.path.mailbox is not None
                    and (pending.path.mailbox.local == "nobody")
                ):
                    conn.reject(R.MAILBOX_UNKNOWN)
                elif type(pending).__name__ in ("Auth", "AuthResponse") and len(events) % 2:
                    conn.challenge(b"again")
                else:
                    conn.accept()
                continue
            if isinstance(event, Sentinel):
                break
            events.append(event)
        if conn.state is State.TLS:
            conn.tls_established()
        out += conn.data_to_send(1.0)
    conn.handle_timeout(10_000.0)
    out += conn.data_to_send(10_000.0)
    return events, bytes(out)


@settings(max_examples=100)
@given(STREAM, st.lists(st.integers(min_value=0), max_size=10))
def test_server_never_raises_and_always_replies_or_closes(data: bytes, cuts: list[int]) -> None:
    _, out = play(data, cuts)
    assert out.endswith(b"\r\n")
    assert out.split(b"\r\n")[-2][:3] in (b"421", b"221")  # timed out or quit


@settings(max_examples=60)
@given(STREAM)
def test_server_is_chunking_independent(data: bytes) -> None:
    whole = play(data, [])
    # byte by byte, except that STARTTLS handshakes happen per piece: compare without them
    if b"STARTTLS" not in data.upper():
        assert play(data, list(range(1, len(data)))) == whole


ADDRESSES = st.sampled_from(
    ["a@b.example", '"x y"@c.example', "jörg@bücher.example", "u@[192.0.2.1]", "p%q@r.example"]
)


@settings(max_examples=100)
@given(
    ADDRESSES,
    st.none() | st.integers(min_value=0, max_value=10**12),
    st.none() | st.sampled_from(list(Body)[:2]),
    st.none() | st.sampled_from(list(Ret)),
    st.none() | st.text(min_size=1, max_size=20).filter(lambda t: t.isprintable()),
)
def test_mail_from_round_trips(
    address: str, size: int | None, body: Body | None, ret: Ret | None, envid: str | None
) -> None:
    mailbox = parse_address(address)
    command = MailFrom(
        Path(mailbox),
        MailParams(size, body, mailbox.needs_smtputf8, ret, envid),
    )
    offered = frozenset(e.value for e in Extension)
    parsed = parse_command(format_command(command)[:-2], offered=offered)
    assert isinstance(parsed, MailFrom)
    assert parsed.params == command.params
    assert parsed.path.mailbox is not None
    assert parsed.path.mailbox.normalised == mailbox.normalised


@settings(max_examples=100)
@given(
    ADDRESSES,
    st.none()
    | st.sampled_from([frozenset({Notify.NEVER}), frozenset(set(Notify) - {Notify.NEVER})]),
    st.none() | st.text(min_size=1, max_size=30).filter(lambda t: t.isprintable()),
)
def test_rcpt_to_round_trips(
    address: str, notify: frozenset[Notify] | None, orcpt: str | None
) -> None:
    mailbox = parse_address(address)
    params = RcptParams(notify, OriginalRecipient("rfc822", orcpt) if orcpt else None)
    command = RcptTo(Path(mailbox), params)
    offered = frozenset(e.value for e in Extension)
    parsed = parse_command(format_command(command)[:-2], offered=offered, smtputf8=True)
    assert isinstance(parsed, RcptTo)
    assert parsed.params == params


# -- fast paths: each must agree with the general path it short-cuts, on any input -------------
#: Text near the fast paths' edges: atext, dots, hyphens, quotes, brackets, "xn--", non-ASCII.
GRAMMAR_TEXT = st.lists(
    st.sampled_from(
        [
            *("a", "Z", "0", "-", ".", "!", "~", "@", " ", '"', "\\", ">", "<"),
            *("xn--", "Xn--", "ß", "é", "\u3002", "\x00", "a" * 62, "b" * 64),
        ]
    )
    | st.characters(),
    max_size=12,
).map("".join)


def outcome(function: Callable[[str], str]) -> Callable[[str], str | type[Exception]]:
    def call(text: str) -> str | type[Exception]:
        try:
            return function(text)
        except InvalidName:
            return InvalidName

    return call


@settings(max_examples=500)
@given(GRAMMAR_TEXT, st.booleans())
def test_ascii_dot_string_fast_path_agrees(local: str, utf8: bool) -> None:
    assert address._is_dot_string(local, utf8=utf8) == address._is_dot_string_by_code_point(
        local, utf8
    )


@settings(max_examples=500)
@given(GRAMMAR_TEXT | st.lists(st.sampled_from(["a" * 63, "b", "."]), max_size=12).map("".join))
def test_ascii_domain_fast_path_agrees(domain: str) -> None:
    assert outcome(address.domain_to_ascii)(domain) == outcome(address._domain_to_ascii_by_label)(
        domain
    )


@settings(max_examples=500)
@given(GRAMMAR_TEXT)
def test_path_end_fast_path_agrees(text: str) -> None:
    assert grammar._path_end(text) == grammar._path_end_by_char(text)


_LIMIT_VALUES = st.none() | st.integers(1, LIMIT_MAX)


@given(_LIMIT_VALUES, _LIMIT_VALUES, _LIMIT_VALUES)
def test_limits_round_trip_through_their_parameter(
    mail_max: int | None, rcpt_max: int | None, rcpt_domain_max: int | None
) -> None:
    """RFC 9422: the LIMITS parameter a server renders reads back to the same limits."""
    limits = Limits(mail_max, rcpt_max, rcpt_domain_max)
    assert Limits.from_parameter(limits.parameter().split()) == limits


@given(st.text(st.characters(codec="utf-8"), max_size=80))
def test_any_limits_parameter_reads_as_limits_in_range(text: str) -> None:
    """Whatever a server sends after LIMITS, the client gets limits within §4's syntax (or
    none), never an exception."""
    limits = Capabilities.from_ehlo_lines([f"LIMITS {text}"]).limits
    for value in (limits.mail_max, limits.rcpt_max, limits.rcpt_domain_max):
        assert value is None or 1 <= value <= LIMIT_MAX
