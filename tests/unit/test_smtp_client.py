"""The client core: the bytes it writes, how it matches replies, per-recipient results."""

from __future__ import annotations

import pytest

from pillarbox.mail.address import parse_address
from pillarbox.smtp import replies as R
from pillarbox.smtp.client import (
    CLIENT_TIMEOUTS,
    MALFORMED_REPLY,
    SEND_TIMEOUT,
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
from pillarbox.smtp.errors import LocalProtocolError
from pillarbox.smtp.extensions import Capabilities
from pillarbox.smtp.grammar import (
    Auth,
    Hello,
    HelloKind,
    MailFrom,
    MailParams,
    Noop,
    Notify,
    Path,
    Quit,
    RcptParams,
    RcptTo,
    StartTls,
)
from pillarbox.smtp.replies import Reply
from pillarbox.smtp.sentinels import CLOSED, IDLE, NEED_DATA, Sentinel

EHLO_FULL = (
    b"250-mx.test hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
    b"250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-CHUNKING\r\n"
    b"250-DSN\r\n250 AUTH PLAIN LOGIN\r\n"
)
MAIL = MailFrom(Path(parse_address("a@out.example")))
X = RcptTo(Path(parse_address("x@mx.test")))
Y = RcptTo(Path(parse_address("y@mx.test")), RcptParams(notify=frozenset({Notify.NEVER})))
Z = RcptTo(Path(parse_address("z@mx.test")))


def events(client: ClientConnection, data: bytes = b"", now: float = 0.0) -> list[object]:
    client.receive_data(data, now)
    out: list[object] = []
    while not isinstance(event := client.next_event(), Sentinel):
        out.append(event)
    return out


def ready(ehlo: bytes = EHLO_FULL, **settings: object) -> ClientConnection:
    client = ClientConnection(
        SmtpClientSettings(hostname="out.example", **settings),  # type: ignore[arg-type]
        now=0.0,
    )
    assert events(client, b"220 mx.test ESMTP\r\n") == [Greeting(Reply(220, None, "mx.test ESMTP"))]
    client.ehlo()
    assert client.data_to_send(0.0) == b"EHLO out.example\r\n"
    (response,) = events(client, ehlo)
    assert isinstance(response, Response)
    assert response.reply.code == 250
    return client


def test_capabilities_from_ehlo() -> None:
    client = ready()
    assert client.capabilities == Capabilities(
        frozenset(
            {"PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "STARTTLS"}
            | {"CHUNKING", "DSN", "AUTH"}
        ),
        1000,
        ("PLAIN", "LOGIN"),
    )
    assert client.next_event() is IDLE


def test_pipelined_transaction_with_data() -> None:
    client = ready(use_chunking=False)
    client.send_mail(MAIL, [X, Y])
    assert client.data_to_send(0.0) == (
        b"MAIL FROM:<a@out.example>\r\nRCPT TO:<x@mx.test>\r\n"
        b"RCPT TO:<y@mx.test> NOTIFY=NEVER\r\nDATA\r\n"
    )
    got = events(
        client,
        b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 unknown\r\n354 go\r\n",
    )
    assert got == [
        RecipientResult(X, Reply(250, "2.1.5", "ok"), final=False),
        RecipientResult(Y, Reply(550, "5.1.1", "unknown"), final=True),
        ReadyForData(),
    ]
    assert client.accepting_body
    client.send_body(b".hidden\r\nline\r")
    client.send_body(b"\n.x")
    client.end_body()
    assert client.data_to_send(0.0) == b"..hidden\r\nline\r\n..x\r\n.\r\n"
    assert events(client, b"250 2.0.0 queued as X\r\n") == [
        RecipientResult(X, Reply(250, "2.0.0", "queued as X"), final=True),
        MessageDone(Reply(250, "2.0.0", "queued as X")),
    ]
    assert client.next_event() is IDLE


def test_chunking_transaction_and_failed_chunk() -> None:
    client = ready()
    client.send_mail(MAIL, [X])
    assert client.data_to_send(0.0).endswith(b"RCPT TO:<x@mx.test>\r\n")  # no DATA
    assert events(client, b"250 ok\r\n250 ok\r\n")[-1] == ReadyForData()
    client.send_body(b"abc")
    client.send_body(b"")
    client.send_body(b"de")
    assert client.data_to_send(0.0) == b"BDAT 3\r\nabcBDAT 2\r\nde"
    failed = Reply(452, "4.3.1", "disk full")
    got = events(client, b"452 4.3.1 disk full\r\n")
    assert got == [RecipientResult(X, failed, final=True), MessageDone(failed)]
    assert not client.accepting_body
    with pytest.raises(LocalProtocolError):
        client.send_body(b"more")
    assert client.data_to_send(0.0) == b"RSET\r\n"  # RFC 3030 §2
    assert events(client, b"503 5.5.1 bad sequence\r\n250 2.0.0 OK\r\n") == []
    assert client.next_event() is IDLE


def test_chunking_last() -> None:
    client = ready()
    client.send_mail(MAIL, [X])
    events(client, b"250 ok\r\n250 ok\r\n")
    client.send_body(b"abc")
    client.end_body()
    assert client.data_to_send(0.0).endswith(b"BDAT 3\r\nabcBDAT 0 LAST\r\n")
    assert events(client, b"250 ok\r\n250 2.0.0 done\r\n")[-1] == MessageDone(
        Reply(250, "2.0.0", "done")
    )


def test_without_pipelining_one_command_at_a_time() -> None:
    client = ready(ehlo=b"250-mx.test\r\n250 8BITMIME\r\n")
    client.send_mail(MAIL, [X, Z])
    assert client.data_to_send(0.0) == b"MAIL FROM:<a@out.example>\r\n"
    assert events(client, b"250 ok\r\n") == []
    assert client.data_to_send(0.0) == b"RCPT TO:<x@mx.test>\r\n"
    assert events(client, b"550 no\r\n") == [RecipientResult(X, Reply(550, None, "no"), True)]
    assert client.data_to_send(0.0) == b"RCPT TO:<z@mx.test>\r\n"


def test_dsn_params_need_the_offer() -> None:
    client = ready(ehlo=b"250-mx.test\r\n250 8BITMIME\r\n")
    with pytest.raises(LocalProtocolError, match="DSN"):
        client.send_mail(MAIL, [Y])
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        client.send_mail(MailFrom(Path(parse_address("jörg@x.example"))), [X])
    client = ready()
    with pytest.raises(LocalProtocolError, match="smtputf8=True"):
        client.send_mail(MailFrom(Path(parse_address("jörg@x.example"))), [X])
    with pytest.raises(LocalProtocolError):
        client.send_mail(MAIL, [])
    with pytest.raises(LocalProtocolError, match="REQUIRETLS"):
        client.send_mail(MailFrom(MAIL.path, MailParams(requiretls=True)), [X])


def test_without_pipelining_refused_mail_fails_everyone() -> None:
    client = ready(ehlo=b"250 mx.test\r\n")
    client.send_mail(MAIL, [X, Z])
    client.data_to_send(0.0)
    refused = Reply(550, "5.7.1", "go away")
    assert events(client, b"550 5.7.1 go away\r\n") == [
        RecipientResult(X, refused, True),
        RecipientResult(Z, refused, True),
        MessageDone(refused),
    ]
    assert client.data_to_send(0.0) == b""


def test_pipelined_refused_mail_gives_its_reply_to_recipients() -> None:
    client = ready(use_chunking=False)
    client.send_mail(MAIL, [X])
    client.data_to_send(0.0)
    refused = Reply(550, "5.7.1", "sender refused")
    got = events(client, b"550 5.7.1 sender refused\r\n503 5.5.1 no\r\n503 5.5.1 no\r\n")
    assert got == [RecipientResult(X, refused, True), MessageDone(refused)]
    assert client.data_to_send(0.0) == b""  # no transaction open: no RSET


def test_all_recipients_refused_but_data_accepted() -> None:
    client = ready(use_chunking=False)
    client.send_mail(MAIL, [X])
    client.data_to_send(0.0)
    got = events(client, b"250 ok\r\n550 5.1.1 no\r\n354 go ahead\r\n")
    assert got[-1] == MessageDone(Reply(550, "5.1.1", "no"))
    assert client.data_to_send(0.0) == b".\r\n"  # RFC 2920 §3.1
    assert events(client, b"554 5.5.1 no valid recipients\r\n") == []
    assert client.next_event() is IDLE


def test_all_recipients_refused_data_refused_resets() -> None:
    client = ready(use_chunking=False)
    client.send_mail(MAIL, [X])
    client.data_to_send(0.0)
    events(client, b"250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n")
    assert client.data_to_send(0.0) == b"RSET\r\n"


def test_multiline_reply_with_enhanced_codes() -> None:
    client = ready(use_chunking=False)
    client.send_mail(MAIL, [X])
    got = events(client, b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert got[-1] == ReadyForData()
    client.end_body()
    done = events(client, b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n")
    assert done[-1] == MessageDone(Reply(550, "5.7.1", "first\nsecond\nthird"))


@pytest.mark.parametrize(
    "garbage",
    [b"hello\r\n", b"25 x\r\n", b"250-a\r\n251 b\r\n", b"x" * 5000 + b"\r\n", b"600 x\r\n"],
)
def test_malformed_reply_fails_everything(garbage: bytes) -> None:
    client = ready()
    client.send_mail(MAIL, [X, Y])
    got = events(client, b"250 ok\r\n" + garbage)
    assert got == [
        RecipientResult(X, MALFORMED_REPLY, True),
        RecipientResult(Y, MALFORMED_REPLY, True),
        MessageDone(MALFORMED_REPLY),
        Closed(MALFORMED_REPLY),
    ]
    assert client.next_event() is CLOSED


def test_421_mid_transaction() -> None:
    client = ready()
    client.send_mail(MAIL, [X, Y])
    got = events(client, b"250 ok\r\n250 ok\r\n421 4.3.2 shutting down\r\n")
    closing = Reply(421, "4.3.2", "shutting down")
    assert got == [
        RecipientResult(X, Reply(250, None, "ok"), False),
        RecipientResult(X, closing, True),
        RecipientResult(Y, closing, True),
        MessageDone(closing),
        Closed(closing),
    ]


def test_timeouts_follow_rfc_5321() -> None:
    client = ClientConnection(SmtpClientSettings(hostname="o"), now=0.0)
    assert client.deadline() == 300.0
    events(client, b"220 hi\r\n", now=1.0)
    assert client.deadline() is None
    client.ehlo()
    client.data_to_send(2.0)
    assert client.deadline() == 302.0
    events(client, b"250 hi\r\n", now=3.0)
    client.send_mail(MAIL, [X])
    client.data_to_send(10.0)
    assert client.deadline() == 310.0
    events(client, b"250 ok\r\n", now=20.0)
    assert client.deadline() is None  # the RCPT is not written yet (no PIPELINING)
    client.data_to_send(20.0)
    assert client.deadline() == 320.0
    events(client, b"250 ok\r\n", now=21.0)
    client.data_to_send(21.0)
    assert client.deadline() == 21.0 + 120.0  # DATA initiation, §4.5.3.2.4
    events(client, b"354 go\r\n", now=22.0)
    assert client.deadline() is None  # the application is sending
    client.end_body()
    client.data_to_send(30.0)
    assert client.deadline() == 630.0  # DATA termination, §4.5.3.2.6
    client.handle_timeout(629.0)
    assert client.next_event() is NEED_DATA
    client.handle_timeout(630.0)
    timed_out = CLIENT_TIMEOUTS["end of data"]
    assert timed_out.enhanced == "4.4.2" and "end of data" in timed_out.text
    assert events(client) == [
        RecipientResult(X, timed_out, True),
        MessageDone(timed_out),
        Closed(timed_out),
    ]


def test_bytes_that_finish_no_reply_do_not_extend_its_timeout() -> None:
    """A tarpit trickling its greeting a byte at a time still times out (RFC 5321
    §4.5.3.2.1: the timeout is for the reply)."""
    client = ClientConnection(SmtpClientSettings(hostname="o"), now=0.0)
    for second, byte in enumerate(b"220-mx.test slowly\r\n220-", start=1):
        events(client, bytes([byte]), now=float(second))
    assert client.deadline() == 300.0
    client.handle_timeout(300.0)
    assert events(client) == [Closed(CLIENT_TIMEOUTS["greeting"])]


def test_a_pipelined_reply_times_out_from_the_reply_before_it() -> None:
    client = ready()
    client.send_mail(MAIL, [X, Z])
    client.data_to_send(10.0)
    assert client.deadline() == 310.0  # MAIL
    events(client, b"250 ok\r\n", now=100.0)
    assert client.deadline() == 400.0  # the first RCPT, from the MAIL reply
    events(client, b"250 o", now=399.0)
    assert client.deadline() == 400.0
    client.handle_timeout(400.0)
    timed_out = CLIENT_TIMEOUTS["RCPT"]
    assert events(client) == [
        RecipientResult(X, timed_out, True),
        RecipientResult(Z, timed_out, True),
        MessageDone(timed_out),
        Closed(timed_out),
    ]


def test_a_write_that_does_not_drain_ends_the_session() -> None:
    """RFC 5321 §4.5.3.2.5, reported by the adapter that writes."""
    client = ready()
    client.send_mail(MAIL, [X])
    events(client, b"250 ok\r\n250 ok\r\n354 go\r\n")
    client.send_body(b"Subject: x\r\n\r\nbody\r\n")
    client.send_timed_out()
    assert events(client) == [
        RecipientResult(X, SEND_TIMEOUT, True),
        MessageDone(SEND_TIMEOUT),
        Closed(SEND_TIMEOUT),
    ]


def test_an_overlong_reply_line_is_cut_not_refused() -> None:
    """RFC 5321 §4.5.3.1.5's 512 octets are exceeded in the wild; past ``max_reply_line``
    the rest of the line is dropped, however it arrives."""
    client = ClientConnection(SmtpClientSettings(hostname="o", max_reply_line=100), now=0.0)
    line = b"220-" + b"a" * 300 + b"\r\n220 " + b"b" * 150 + b"\r\n"
    got = [event for i in range(0, len(line), 7) for event in events(client, line[i : i + 7])]
    assert got == [Greeting(Reply(220, None, "a" * 96 + "\n" + "b" * 96))]


def test_connection_lost() -> None:
    client = ready()
    client.noop()
    client.connection_lost()
    assert events(client) == [Response(Noop(), R.CONNECTION_LOST), Closed(R.CONNECTION_LOST)]
    with pytest.raises(LocalProtocolError):
        client.noop()


def test_starttls_discards_injected_replies() -> None:
    client = ready()
    client.starttls()
    assert client.data_to_send(0.0) == b"STARTTLS\r\n"
    got = events(client, b"220 2.0.0 go\r\n250 injected\r\n")
    assert got == [Response(StartTls(), Reply(220, "2.0.0", "go"))]
    with pytest.raises(LocalProtocolError):
        client.ehlo()  # not before the handshake
    client.tls_established()
    assert client.capabilities == Capabilities()
    client.ehlo()
    assert events(client, b"250 mx.test\r\n") == [
        Response(Hello(HelloKind.EHLO, "out.example"), Reply(250, None, "mx.test"))
    ]
    with pytest.raises(LocalProtocolError):
        client.starttls()


def test_auth_exchange() -> None:
    client = ready()
    with pytest.raises(LocalProtocolError):
        client.auth("CRAM-MD5")
    client.auth("plain")
    assert client.data_to_send(0.0) == b"AUTH PLAIN\r\n"
    assert events(client, b"334 \r\n") == [AuthChallenge(b"")]
    client.auth_response(b"\0a\0b")
    assert client.data_to_send(0.0) == b"AGEAYg==\r\n"
    assert events(client, b"235 2.7.0 ok\r\n") == [
        Response(Auth("PLAIN"), Reply(235, "2.7.0", "ok"))
    ]
    assert client.authenticated
    with pytest.raises(LocalProtocolError):
        client.auth_cancel()


def test_ehlo_size_of_non_ascii_digits_is_no_size() -> None:
    """``SIZE ²`` in a server's EHLO reply made the client raise ValueError (str.isdigit
    takes "²", int() does not); RFC 1870 §4 size-value is ASCII DIGITs, so like any garbage
    value it announces no limit, and "٥" is not read as 5 either."""
    for value in ("\u00b2", "\u0665"):
        client = ready(b"250-mx.test\r\n250 SIZE " + value.encode() + b"\r\n")
        assert "SIZE" in client.capabilities
        assert client.capabilities.size is None


def test_non_ascii_auth_challenge_is_a_malformed_reply() -> None:
    """A 334 whose text is not ASCII is no base64 challenge (RFC 4954 §4): the session fails
    with MALFORMED_REPLY instead of raising ValueError (found by fuzz/smtp_client.py)."""
    client = ready()
    client.auth("PLAIN")
    client.data_to_send(0.0)
    assert events(client, b"334 \xca\xcaNye\r\n") == [Closed(MALFORMED_REPLY)]


def test_refused_greeting_quits() -> None:
    client = ClientConnection(SmtpClientSettings(hostname="o"), now=0.0)
    assert events(client, b"554 go away\r\n") == [Greeting(Reply(554, None, "go away"))]
    assert client.data_to_send(0.0) == b"QUIT\r\n"
    assert events(client, b"221 bye\r\n") == [
        Response(Quit(), Reply(221, None, "bye")),
        Closed(Reply(221, None, "bye")),
    ]


def test_commands_need_the_greeting() -> None:
    client = ClientConnection(SmtpClientSettings(hostname="o"), now=0.0)
    with pytest.raises(LocalProtocolError):
        client.ehlo()


def test_size_param_formats() -> None:
    client = ready(use_chunking=False)
    client.send_mail(MailFrom(MAIL.path, MailParams(size=10, smtputf8=False)), [X])
    assert client.data_to_send(0.0).startswith(b"MAIL FROM:<a@out.example> SIZE=10\r\n")
