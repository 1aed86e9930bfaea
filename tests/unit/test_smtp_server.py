"""The server core as tables of (state, bytes) → events and replies, plus its decision API."""

from __future__ import annotations

import pytest

from pillarbox.mail.address import parse_address
from pillarbox.smtp import replies as R
from pillarbox.smtp.errors import LocalProtocolError
from pillarbox.smtp.grammar import (
    Auth,
    Hello,
    HelloKind,
    MailFrom,
    MailParams,
    Noop,
    Path,
    Quit,
    RcptTo,
    Rset,
    StartTls,
)
from pillarbox.smtp.sentinels import CLOSED, NEED_DATA, PAUSED, Sentinel
from pillarbox.smtp.server import (
    TRANSITIONS,
    AuthAborted,
    AuthResponse,
    DataAborted,
    DataChunk,
    DataEnd,
    DataStart,
    Mode,
    ProtocolError,
    ServerConnection,
    Shutdown,
    SmtpServerSettings,
    State,
)

HELO = b"HELO c.example\r\n"
MAIL = b"MAIL FROM:<a@c.example>\r\n"
RCPT = b"RCPT TO:<b@mx.test>\r\n"


def connect(**settings: object) -> ServerConnection:
    conn = ServerConnection(SmtpServerSettings(hostname="mx.test", **settings))  # type: ignore[arg-type]
    conn.greet(R.service_ready("mx.test"))
    conn.data_to_send(0.0)
    return conn


def drive(conn: ServerConnection, data: bytes, now: float = 0.0) -> list[object]:
    """Feed ``data``, accept every decision; return the events (decisions included)."""
    conn.receive_data(data, now)
    events: list[object] = []
    while True:
        event = conn.next_event()
        if event is PAUSED and conn.pending is not None:
            conn.accept()
        elif isinstance(event, Sentinel):
            return events
        else:
            events.append(event)


def at(state: State, **settings: object) -> ServerConnection:
    conn = connect(**settings)
    setup = {
        State.GREETED: b"",
        State.READY: HELO,
        State.MAIL: HELO + MAIL,
        State.RCPT: HELO + MAIL + RCPT,
        State.DATA: HELO + MAIL + RCPT + b"DATA\r\n",
        State.BDAT: HELO + MAIL + RCPT + b"BDAT 1\r\nx",
    }[state]
    drive(conn, setup)
    conn.data_to_send(0.0)
    assert conn.state is state
    return conn


A = parse_address
TABLE: list[tuple[State, bytes, list[object], State, bytes]] = [
    (State.GREETED, HELO, [Hello(HelloKind.HELO, "c.example")], State.READY, b"250 mx.test\r\n"),
    (State.GREETED, MAIL, [ProtocolError(R.HELLO_FIRST)], State.GREETED, b"503 5.5.1 send EHLO"),
    (State.READY, MAIL, [MailFrom(Path(A("a@c.example")))], State.MAIL, b"250 2.1.0"),
    (State.READY, RCPT, [ProtocolError(R.MAIL_FIRST)], State.READY, b"503 5.5.1 need MAIL"),
    (State.MAIL, RCPT, [RcptTo(Path(A("b@mx.test")))], State.RCPT, b"250 2.1.5"),
    (State.MAIL, b"DATA\r\n", [ProtocolError(R.NO_VALID_RECIPIENTS)], State.MAIL, b"554 5.5.1"),
    (State.MAIL, MAIL, [ProtocolError(R.NESTED_MAIL)], State.MAIL, b"503 5.5.1 sender"),
    (State.RCPT, b"DATA\r\n", [DataStart(chunking=False)], State.DATA, b"354 "),
    (State.RCPT, b"RSET\r\n", [Rset()], State.READY, b"250 2.0.0 OK\r\n"),
    (State.RCPT, HELO, [Hello(HelloKind.HELO, "c.example")], State.READY, b"250 mx.test\r\n"),
    (
        State.DATA,
        b"a\r\n.\r\n",
        [DataChunk(b"a\r\n"), DataEnd(3, (Path(A("b@mx.test")),))],
        State.READY,
        b"250 2.0.0 message accepted\r\n",
    ),
    (State.DATA, b"QUIT\r\n", [DataChunk(b"QUIT\r\n")], State.DATA, b""),
    (State.DATA, b"a\n.\n", [DataAborted(R.BARE_LINEBREAK)], State.DATA, b""),
    (State.BDAT, b"DATA\r\n", [ProtocolError(R.BAD_SEQUENCE)], State.BDAT, b"503 5.5.1 bad"),
    (State.BDAT, b"RCPT TO:<c@mx.test>\r\n", [ProtocolError(R.BAD_SEQUENCE)], State.BDAT, b"503"),
    (State.BDAT, b"BDAT 2\r\nyz", [DataChunk(b"yz")], State.BDAT, b"250 2.0.0 chunk received"),
    (
        State.BDAT,
        b"BDAT 0 LAST\r\n",
        [DataEnd(1, (Path(A("b@mx.test")),))],
        State.READY,
        b"250 2.0.0 message accepted",
    ),
    (State.RCPT, b"BDAT 3\r\nab", [DataStart(chunking=True), DataChunk(b"ab")], State.CHUNK, b""),
    (State.READY, b"BDAT 3\r\nabc", [ProtocolError(R.MAIL_FIRST)], State.READY, b"503 5.5.1"),
    (State.READY, b"NOOP\r\n", [Noop()], State.READY, b"250 2.0.0 OK\r\n"),
    (State.MAIL, b"QUIT\r\n", [Quit()], State.CLOSED, b"221 2.0.0 bye\r\n"),
    (State.READY, b"STARTTLS\r\n", [ProtocolError(R.NOT_IMPLEMENTED)], State.READY, b"502"),
    (State.READY, b"AUTH PLAIN\r\n", [ProtocolError(R.NOT_IMPLEMENTED)], State.READY, b"502"),
    (
        State.READY,
        b"MAIL FROM:<a@c.example> SIZE=1\r\n",
        [ProtocolError(R.PARAMETER_NOT_IMPLEMENTED)],
        State.READY,
        b"555",
    ),
]


@pytest.mark.parametrize(("state", "data", "events", "after", "output"), TABLE)
def test_table(
    state: State, data: bytes, events: list[object], after: State, output: bytes
) -> None:
    conn = at(state)
    assert drive(conn, data) == events
    assert conn.state is after
    assert conn.data_to_send(0.0).startswith(output)


def test_every_transition_is_from_a_command_state() -> None:
    sources = {state for state, _ in TRANSITIONS}
    assert State.DATA not in sources
    assert State.CHUNK not in sources
    assert {verb for _, verb in TRANSITIONS} >= {"MAIL", "RCPT", "DATA", "BDAT", "QUIT"}


def test_pipelined_commands_wait_for_the_decision() -> None:
    conn = connect()
    conn.receive_data(HELO + MAIL + RCPT + b"NOOP\r\n", 0.0)
    assert conn.next_event() == Hello(HelloKind.HELO, "c.example")
    assert conn.next_event() is PAUSED
    assert conn.next_event() is PAUSED  # nothing after the hello is parsed yet
    conn.accept()
    assert isinstance(conn.next_event(), MailFrom)
    conn.reject(R.POLICY_REJECTED)
    # RCPT after a refused MAIL is out of sequence; the replies stay in command order.
    assert conn.next_event() == ProtocolError(R.MAIL_FIRST)
    assert conn.next_event() == Noop()
    assert conn.next_event() is NEED_DATA
    out = conn.data_to_send(0.0).split(b"\r\n")
    assert [line[:3] for line in out if line] == [b"250", b"550", b"503", b"250"]


def test_data_streams_before_the_end() -> None:
    conn = at(State.DATA)
    assert drive(conn, b"Subject: x\r\n\r\npart") == [DataChunk(b"Subject: x\r\n\r\npart")]
    assert drive(conn, b" two\r\n.") == [DataChunk(b" two\r\n")]
    assert drive(conn, b"\r") == []
    events = drive(conn, b"\nNOOP\r\n")
    assert isinstance(events[0], DataEnd)
    assert events[1] == Noop()


def test_size_is_enforced_as_data_arrives() -> None:
    conn = at(State.DATA, max_message_size=10)
    assert drive(conn, b"0123456789\r\n") == [DataAborted(R.MESSAGE_TOO_BIG)]
    assert drive(conn, b"more\r\nMAIL FROM:<x@y>\r\n") == []
    assert drive(conn, b".\r\n") == []
    assert conn.data_to_send(0.0) == R.MESSAGE_TOO_BIG.render()
    assert conn.state is State.READY


def test_reject_and_accept_need_a_pending_decision() -> None:
    conn = at(State.READY)
    with pytest.raises(LocalProtocolError):
        conn.accept()
    with pytest.raises(LocalProtocolError):
        conn.challenge(b"")
    conn.receive_data(MAIL, 0.0)
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.reject(R.SENDER_OK)
    with pytest.raises(LocalProtocolError):
        conn.accept(R.MAILBOX_UNKNOWN)
    with pytest.raises(LocalProtocolError):
        conn.respond_per_recipient([R.OK])
    conn.accept(R.SENDER_OK.with_text("fine"))
    assert conn.data_to_send(0.0) == b"250 2.1.0 fine\r\n"


def test_greeting_choices() -> None:
    refused = ServerConnection(SmtpServerSettings(hostname="mx.test"))
    refused.greet(R.SERVICE_REFUSED)
    assert drive(refused, HELO + b"QUIT\r\n") == [ProtocolError(R.BAD_SEQUENCE), Quit()]
    closing = ServerConnection(SmtpServerSettings(hostname="mx.test"))
    closing.greet(R.SERVICE_UNAVAILABLE)
    assert closing.next_event() is CLOSED
    with pytest.raises(LocalProtocolError):
        closing.greet(R.SERVICE_UNAVAILABLE)
    with pytest.raises(LocalProtocolError):
        ServerConnection(SmtpServerSettings(hostname="x")).greet(R.OK)


def test_input_before_the_greeting_waits() -> None:
    conn = ServerConnection(SmtpServerSettings(hostname="mx.test"))
    conn.receive_data(b"NOOP\r\n", 0.0)
    assert conn.next_event() is PAUSED
    conn.greet(R.service_ready("mx.test"))
    assert conn.next_event() == Noop()


def test_lmtp_answers_each_recipient() -> None:
    conn = connect(mode=Mode.LMTP)
    drive(conn, b"LHLO c\r\n" + MAIL + RCPT + b"RCPT TO:<c@mx.test>\r\nDATA\r\n")
    conn.data_to_send(0.0)
    conn.receive_data(b"x\r\n.\r\n", 0.0)
    while not isinstance(conn.next_event(), DataEnd):
        pass
    with pytest.raises(LocalProtocolError):
        conn.respond_per_recipient([R.MESSAGE_ACCEPTED])
    conn.respond_per_recipient([R.MESSAGE_ACCEPTED, R.MAILBOX_FULL])
    assert conn.data_to_send(0.0) == R.MESSAGE_ACCEPTED.render() + R.MAILBOX_FULL.render()
    assert conn.state is State.READY


@pytest.mark.parametrize(("mode", "closed"), [(Mode.LMTP, False), (Mode.SMTP, True)])
def test_lmtp_delivery_refusals_are_not_client_errors(mode: Mode, closed: bool) -> None:
    """A front MTA relays what its senders wrote: unknown recipients and full mailboxes are
    not its errors, so in LMTP they do not count towards ``max_errors`` (in SMTP they do)."""
    conn = connect(mode=mode, max_errors=3)

    def decide(pending: object) -> None:
        if isinstance(pending, RcptTo) and str(pending.path).startswith("<u"):
            conn.reject(R.MAILBOX_UNKNOWN)
        elif isinstance(pending, DataEnd) and mode is Mode.LMTP:
            conn.respond_per_recipient([R.MAILBOX_FULL] * len(pending.recipients))
        else:
            conn.accept()

    hello = b"LHLO c\r\n" if mode is Mode.LMTP else HELO
    unknown = b"".join(f"RCPT TO:<u{i}@mx.test>\r\n".encode() for i in range(4))
    message = MAIL + unknown + RCPT + b"DATA\r\nx\r\n.\r\n"
    conn.receive_data(hello + message * 3, 0.0)
    while (event := conn.next_event()) is not CLOSED and event is not NEED_DATA:
        if event is PAUSED:
            decide(conn.pending)
    sent = conn.data_to_send(0.0)
    assert (conn.state is State.CLOSED) is closed
    assert (R.TOO_MANY_ERRORS.render() in sent) is closed
    if not closed:
        assert sent.count(R.MAILBOX_UNKNOWN.render()) == 12
        assert sent.count(R.MAILBOX_FULL.render()) == 3


def test_smtp_end_of_data_reply_is_one() -> None:
    conn = at(State.RCPT)
    drive(conn, b"RCPT TO:<c@mx.test>\r\n")
    conn.data_to_send(0.0)
    conn.receive_data(b"DATA\r\nx\r\n.\r\n", 0.0)
    while not isinstance(conn.next_event(), DataEnd):
        pass
    conn.reject(R.LOCAL_ERROR)
    assert conn.data_to_send(0.0).endswith(b"\r\n" + R.LOCAL_ERROR.render())
    with pytest.raises(LocalProtocolError):
        conn.respond_per_recipient([R.OK, R.OK])


def test_recipient_limit() -> None:
    conn = at(State.MAIL, max_recipients=1)
    events = drive(conn, RCPT + b"RCPT TO:<c@mx.test>\r\n")
    assert events[1] == ProtocolError(R.TOO_MANY_RECIPIENTS)


def test_submission_closes_a_client_not_authenticated_by_the_login_deadline() -> None:
    conn = connect(auth_mechanisms=("PLAIN",), auth_without_tls=True, login_timeout=30.0)
    assert conn.deadline() == 30.0  # from the greeting, sent at 0
    drive(conn, b"EHLO c\r\n", 20.0)
    conn.data_to_send(20.0)
    assert conn.deadline() == 30.0  # commands do not move it
    conn.handle_timeout(29.9)
    assert conn.state is State.READY
    conn.handle_timeout(30.0)
    assert conn.data_to_send(30.0) == R.LOGIN_TIMEOUT.render()
    assert R.LOGIN_TIMEOUT.render().startswith(b"421 4.4.2 ")
    assert conn.next_event() == Shutdown(R.LOGIN_TIMEOUT)
    assert conn.next_event() is CLOSED


def test_the_login_deadline_ends_with_authentication() -> None:
    conn = connect(auth_mechanisms=("PLAIN",), auth_without_tls=True, login_timeout=30.0)
    assert drive(conn, b"EHLO c\r\nAUTH PLAIN =\r\n", 10.0)[-1] == Auth("PLAIN", b"")
    assert conn.authenticated
    conn.data_to_send(10.0)
    assert conn.deadline() == 10.0 + 300.0  # the command timeout alone


def test_auth_exchange() -> None:
    conn = connect(auth_mechanisms=("PLAIN",), auth_without_tls=True)
    conn.receive_data(b"EHLO c\r\nAUTH PLAIN\r\n", 0.0)
    assert isinstance(conn.next_event(), Hello)
    conn.accept()
    assert b"250 AUTH PLAIN\r\n" in conn.data_to_send(0.0)
    assert conn.next_event() == Auth("PLAIN")
    conn.challenge(b"")
    assert conn.data_to_send(0.0) == b"334 \r\n"
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"AGEAYg==\r\n", 0.0)
    assert conn.next_event() == AuthResponse(b"\0a\0b")
    conn.challenge(b"more?")
    conn.receive_data(b"*\r\n", 0.0)
    assert conn.next_event() == AuthAborted(R.AUTH_CANCELLED)
    assert not conn.authenticated
    conn.receive_data(b"AUTH PLAIN =\r\n", 0.0)
    assert conn.next_event() == Auth("PLAIN", b"")
    conn.accept()
    assert conn.authenticated
    assert conn.state is State.READY


def test_auth_line_limit() -> None:
    conn = connect(auth_mechanisms=("PLAIN",), auth_without_tls=True, max_auth_line=600)
    drive(conn, b"EHLO c\r\n")
    conn.receive_data(b"AUTH PLAIN\r\n", 0.0)
    conn.next_event()
    conn.challenge(b"")
    conn.data_to_send(0.0)
    assert drive(conn, b"A" * 700 + b"\r\n") == [AuthAborted(R.AUTH_LINE_TOO_LONG)]
    assert drive(conn, b"AUTH PLAIN " + b"A" * 700 + b"\r\n") == [
        ProtocolError(R.AUTH_LINE_TOO_LONG)
    ]


def test_starttls_discards_pipelined_plaintext() -> None:
    conn = connect(starttls=True)
    events = drive(conn, b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\n")
    assert events == [Hello(HelloKind.EHLO, "c"), StartTls()]
    assert conn.state is State.TLS
    assert conn.deadline() is None
    conn.receive_data(b"RCPT TO:<x@y>\r\n", 0.0)  # plaintext during the handshake
    conn.tls_established()
    assert conn.tls
    assert conn.hello is None
    assert "STARTTLS" not in conn.capabilities.ehlo_lines()
    assert drive(conn, b"MAIL FROM:<a@b>\r\n") == [ProtocolError(R.HELLO_FIRST)]
    with pytest.raises(LocalProtocolError):
        conn.tls_established()


def test_deadlines() -> None:
    conn = at(State.READY, command_timeout=10.0, data_timeout=5.0)
    conn.receive_data(b"NO", 100.0)
    assert conn.deadline() == 110.0
    conn.handle_timeout(109.9)
    assert conn.state is State.READY
    conn.receive_data(b"OP\r\n", 105.0)
    drive(conn, b"")
    conn.data_to_send(106.0)
    assert conn.deadline() == 116.0
    drive(conn, MAIL + RCPT + b"DATA\r\n", 107.0)
    conn.data_to_send(107.0)
    assert conn.deadline() == 112.0
    conn.receive_data(MAIL, 107.0)
    conn.handle_timeout(112.0)
    assert drive(conn, b"") == [Shutdown(R.TIMEOUT)]  # unprocessed input is dropped
    assert conn.data_to_send(112.0) == R.TIMEOUT.render()
    assert conn.deadline() is None
    assert conn.next_event() is CLOSED


def test_no_deadline_while_the_application_decides() -> None:
    conn = connect()
    conn.receive_data(HELO, 0.0)
    conn.next_event()
    assert conn.deadline() is None
    conn.accept()
    conn.data_to_send(50.0)
    assert conn.deadline() == 350.0


def test_too_many_errors_count_application_rejections() -> None:
    conn = at(State.MAIL, max_errors=2)
    conn.receive_data(RCPT + RCPT + RCPT, 0.0)
    conn.next_event()
    conn.reject(R.MAILBOX_UNKNOWN)
    conn.next_event()
    conn.reject(R.MAILBOX_UNKNOWN)
    assert conn.next_event() == Shutdown(R.TOO_MANY_ERRORS)
    assert conn.next_event() is CLOSED
    assert conn.data_to_send(0.0).endswith(R.TOO_MANY_ERRORS.render())


def test_ehlo_reply_and_capabilities() -> None:
    conn = connect(
        starttls=True,
        auth_mechanisms=("PLAIN",),
        dsn=False,
        chunking=False,
        max_message_size=5,
        max_recipients=7,
    )
    drive(conn, b"EHLO c\r\n")
    lines = conn.data_to_send(0.0).decode().split("\r\n")
    assert lines[:-1] == [
        "250-mx.test",
        "250-PIPELINING",
        "250-SIZE 5",
        "250-LIMITS RCPTMAX=7",  # RFC 9422 §4.2
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250-ENHANCEDSTATUSCODES",
        "250 STARTTLS",
    ]
    assert drive(conn, b"MAIL FROM:<a@b> RET=FULL\r\n") == [
        ProtocolError(R.PARAMETER_NOT_IMPLEMENTED)
    ]
    assert drive(conn, b"BDAT 1 LAST\r\nx") == [ProtocolError(R.NOT_IMPLEMENTED)]
    assert drive(conn, b"AUTH PLAIN\r\n") == [ProtocolError(R.TLS_REQUIRED)]


def test_limits_announce_only_what_the_rfc_syntax_can_carry() -> None:
    """RFC 9422 §4.2: RCPTMAX has six digits at most; a larger limit goes unannounced rather
    than announced as a smaller one that is not applied (§3.4)."""
    conn = connect(max_recipients=1_000_000)
    drive(conn, b"EHLO c\r\n")
    assert "LIMITS" not in conn.data_to_send(0.0).decode()
    conn = connect(max_recipients=999_999)
    drive(conn, b"EHLO c\r\n")
    assert "250-LIMITS RCPTMAX=999999\r\n" in conn.data_to_send(0.0).decode()


def test_mail_size_parameter_over_limit() -> None:
    conn = at(State.READY, max_message_size=100)
    drive(conn, b"EHLO c\r\n")
    assert drive(conn, b"MAIL FROM:<a@b> SIZE=101\r\n") == [ProtocolError(R.MESSAGE_TOO_BIG)]
    assert drive(conn, b"MAIL FROM:<a@b> SIZE=100\r\n") == [
        MailFrom(Path(A("a@b")), MailParams(size=100))
    ]


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="max_errors"):
        SmtpServerSettings(hostname="x", max_errors=0)
    with pytest.raises(ValueError, match="512"):
        SmtpServerSettings(hostname="x", max_command_line=100)


def test_answer_dispatches_on_the_reply_class() -> None:
    conn = at(State.MAIL)
    conn.receive_data(RCPT + RCPT, 0.0)
    conn.next_event()
    conn.answer(R.RECIPIENT_OK)
    assert conn.state is State.RCPT
    conn.next_event()
    conn.answer(R.MAILBOX_UNKNOWN)
    assert conn.data_to_send(0.0) == R.RECIPIENT_OK.render() + R.MAILBOX_UNKNOWN.render()
    with pytest.raises(LocalProtocolError):
        conn.answer(R.OK)


# -- RFC 2920 §3.1 synchronisation (``enforce_sync``, the MX's ``smtp.enforce_sync``) ------------
# Byte for byte: a client that sends before the reply it had to wait for (after HELO/EHLO or
# DATA, or any command without PIPELINING) is answered 554 5.5.0 and the session ends (RFC 5321
# §7.8); a client that waits, or pipelines only where §3.1 lets it, never trips it. Bursts are
# fed in one piece: nothing after a command is parsed before it is answered, so what the
# buffer holds then was sent before the reply.
EHLO = b"EHLO c.example\r\n"
BODY = b"Subject: hi\r\n\r\nHello.\r\n.\r\n"
SYNC = b"554 5.5.0 synchronization error: sent without waiting for our reply\r\n"


def exchange(conn: ServerConnection, data: bytes) -> tuple[bytes, list[object]]:
    """:func:`drive` in one piece: what the server wrote, and the events."""
    events = drive(conn, data)
    return conn.data_to_send(0.0), events


def ehlo_done(**settings: object) -> ServerConnection:
    conn = connect(enforce_sync=True, **settings)
    written, _ = exchange(conn, EHLO)
    assert written.startswith(b"250-mx.test\r\n")
    assert (b"250-PIPELINING\r\n" in written) == conn.settings.pipelining
    return conn


def test_a_whole_session_fired_at_once_ends_at_the_ehlo() -> None:
    conn = connect(enforce_sync=True)
    written, events = exchange(conn, EHLO + MAIL + RCPT + b"DATA\r\n" + BODY + b"QUIT\r\n")
    assert written == SYNC
    assert events[-2:] == [ProtocolError(R.SYNC_ERROR), Shutdown(R.SYNC_ERROR)]
    assert conn.state is State.CLOSED


def test_pipelining_where_rfc_2920_allows_it_passes() -> None:
    conn = ehlo_done()
    # MAIL, RCPT and DATA in one group, DATA last; then the content, with QUIT after it
    # (§3.1: content may start a group, QUIT ends one; what follows QUIT does not count).
    written, events = exchange(conn, MAIL + RCPT + b"DATA\r\n")
    assert written == (
        b"250 2.1.0 sender OK\r\n250 2.1.5 recipient OK\r\n354 end data with <CR><LF>.<CR><LF>\r\n"
    )
    assert any(isinstance(e, DataStart) for e in events)
    written, events = exchange(conn, BODY + MAIL + RCPT + b"DATA\r\n")
    assert written.startswith(b"250 ") and written.endswith(
        b"354 end data with <CR><LF>.<CR><LF>\r\n"
    )
    assert any(isinstance(e, DataEnd) for e in events)
    written, _ = exchange(conn, BODY + b"QUIT\r\nanything\r\n")
    assert written.endswith(b"221 2.0.0 bye\r\n")
    assert conn.state is State.CLOSED


def test_content_sent_before_the_354_ends_the_session_at_data() -> None:
    conn = ehlo_done()
    written, events = exchange(conn, MAIL + RCPT + b"DATA\r\n" + BODY)
    assert written == b"250 2.1.0 sender OK\r\n250 2.1.5 recipient OK\r\n" + SYNC
    assert not any(isinstance(e, DataStart | DataEnd) for e in events)
    assert conn.state is State.CLOSED


def test_without_pipelining_every_command_waits_for_its_reply() -> None:
    conn = connect(enforce_sync=True)
    written, _ = exchange(conn, HELO)
    assert written == b"250 mx.test\r\n"
    written, _ = exchange(conn, MAIL)  # one at a time: fine
    assert written == b"250 2.1.0 sender OK\r\n"
    written, _ = exchange(conn, RCPT + RCPT)
    assert written == SYNC
    # Nor when the server does not offer PIPELINING, after EHLO.
    conn = ehlo_done(pipelining=False)
    written, _ = exchange(conn, MAIL + RCPT)
    assert written == SYNC


def test_bdat_chunks_may_be_pipelined() -> None:
    conn = ehlo_done()
    written, events = exchange(conn, MAIL + RCPT + b"BDAT 6\r\nHello.BDAT 0 LAST\r\nQUIT\r\n")
    assert written == (
        b"250 2.1.0 sender OK\r\n250 2.1.5 recipient OK\r\n250 2.0.0 chunk received\r\n"
        b"250 2.0.0 message accepted\r\n221 2.0.0 bye\r\n"
    )
    assert any(isinstance(e, DataEnd) for e in events)


def test_sync_is_off_by_default_in_the_core() -> None:
    conn = connect()
    written, _ = exchange(conn, HELO + MAIL + RCPT)
    assert written == b"250 mx.test\r\n250 2.1.0 sender OK\r\n250 2.1.5 recipient OK\r\n"


def test_a_client_that_waits_across_starttls_pipelines_after_its_new_ehlo() -> None:
    """Most mail between MTAs: EHLO, STARTTLS, EHLO again under TLS (the session forgot the
    first, RFC 3207 §4.2), then a pipelined transaction. Nothing of it trips the check."""
    conn = ehlo_done(starttls=True)
    written, _ = exchange(conn, b"STARTTLS\r\n")
    assert written == b"220 2.0.0 ready to start TLS\r\n"
    conn.tls_established()
    written, _ = exchange(conn, EHLO)
    assert written.startswith(b"250-mx.test\r\n") and b"250-PIPELINING\r\n" in written
    written, events = exchange(conn, MAIL + RCPT + b"DATA\r\n")
    assert written.endswith(b"354 end data with <CR><LF>.<CR><LF>\r\n")
    written, events = exchange(conn, BODY + b"QUIT\r\n")
    assert any(isinstance(e, DataEnd) for e in events)
    assert written.endswith(b"221 2.0.0 bye\r\n")
