"""The client's state machine for one filter (libmilter's ``engine.c`` is the reference): the
bytes of each stage's command, negotiation, the steps a filter leaves out or unanswered, which
replies are allowed where, and the SMTP reply a filter's refusal becomes."""

from __future__ import annotations

import struct

import pytest

from pillarbox.milter import protocol as p
from pillarbox.milter.protocol import ActionFlag as A
from pillarbox.milter.protocol import ProtocolFlag as P
from pillarbox.milter.session import CONTINUED, MilterSession, Outcome
from pillarbox.net.milter import filter_reply
from pillarbox.smtp import replies
from pillarbox.smtp.replies import Reply

MAX = 65536
NEGOTIATION = b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xf7\xff"
CONTINUE = b"\x00\x00\x00\x01c"
PROGRESS = b"\x00\x00\x00\x01p"


def optneg(version: int = 6, actions: int = 0, protocol: int = 0, extra: bytes = b"") -> bytes:
    return p.packet(b"O", struct.pack(">III", version, actions, protocol) + extra)


def negotiated(actions: int = p.OFFERED_ACTIONS, protocol: int = 0) -> MilterSession:
    session = MilterSession(max_packet=MAX)
    assert session.start() == NEGOTIATION
    assert session.receive(optneg(6, actions, protocol)) == [
        p.Negotiated(6, A(actions), P(protocol))
    ]
    return session


def at(stage: p.Stage, actions: int = p.OFFERED_ACTIONS, protocol: int = 0) -> MilterSession:
    """A negotiated session waiting for the reply to ``stage``'s command."""
    session = negotiated(actions, protocol)
    assert session.command(stage)
    assert session.waiting
    return session


# -- negotiation --------------------------------------------------------------------------


def test_start_sends_the_negotiation_and_waits() -> None:
    session = MilterSession(max_packet=MAX)
    assert not session.waiting
    assert session.start() == NEGOTIATION
    assert session.waiting
    assert session.negotiated is None


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        (optneg(6, 0x1FF, 0x1FF7FF), p.Negotiated(6, A(0x1FF), P(0x1FF7FF))),
        (optneg(2, 0, 0), p.Negotiated(2, A(0), P(0))),
        (optneg(6, 0x01, 0x10, b"\x00\x00\x00\x00{i}\0"), p.Negotiated(6, A(1), P(0x10))),
        (PROGRESS + optneg(6), p.Negotiated(6, A(0), P(0))),
    ],
)
def test_negotiation_accepted(reply: bytes, answer: p.Negotiated) -> None:
    session = MilterSession(max_packet=MAX)
    session.start()
    assert session.receive(reply)[-1] == answer
    assert session.negotiated == answer
    assert not session.waiting


@pytest.mark.parametrize(
    "reply",
    [
        optneg(1),
        optneg(0),
        optneg(6, 0x200),  # an action that was not offered
        optneg(6, 0x80000000),
        optneg(6, 0, 0x800),  # SMFIP_RCPT_REJ: refused recipients are never shown
        CONTINUE,  # the first reply is not the negotiation's
        b"\x00\x00\x00\x01a",
        p.packet(b"y", b"550 5.7.1 no\0"),
        p.packet(b"h", b"X\0y\0"),
        p.packet(b"O", b"\x00\x00\x00\x06"),  # too short
    ],
)
def test_negotiation_refused(reply: bytes) -> None:
    session = MilterSession(max_packet=MAX)
    session.start()
    with pytest.raises(p.MilterProtocolError):
        session.receive(reply)
    assert session.negotiated is None


def test_negotiation_one_byte_at_a_time() -> None:
    session = MilterSession(max_packet=MAX)
    session.start()
    reply = optneg(6, 0x11, 0x100000)
    for i in range(len(reply) - 1):
        assert session.receive(reply[i : i + 1]) == []
        assert session.negotiated is None
    assert session.receive(reply[-1:]) == [p.Negotiated(6, A(0x11), P.HDR_LEADSPC)]
    assert session.leading_space
    assert not session.may_skip


def test_a_second_negotiation_reply_is_refused() -> None:
    session = at(p.Stage.CONNECT)
    with pytest.raises(p.MilterProtocolError, match="negotiation"):
        session.receive(optneg())


def test_no_reply_before_start() -> None:
    with pytest.raises(p.MilterProtocolError, match="none due"):
        MilterSession(max_packet=MAX).receive(optneg())


def test_no_command_before_negotiation_or_while_a_reply_is_due() -> None:
    session = MilterSession(max_packet=MAX)
    with pytest.raises(p.MilterProtocolError):
        session.command(p.Stage.CONNECT)
    session.start()
    with pytest.raises(p.MilterProtocolError):
        session.command(p.Stage.CONNECT)
    session = at(p.Stage.HELO)
    with pytest.raises(p.MilterProtocolError, match="answered"):
        session.command(p.Stage.MAIL)


# -- the commands, byte for byte ----------------------------------------------------------

_CONNECT_MACROS = [
    ("j", "mx.test"),
    ("daemon_name", "mx"),
    ("client_addr", "192.0.2.1"),
    ("client_port", "4242"),
    ("v", "Pillarbox"),
]


@pytest.mark.parametrize(
    ("stage", "data", "macros", "wire"),
    [
        (
            p.Stage.CONNECT,
            p.connect_data("[192.0.2.1]", "192.0.2.1", 4242),
            _CONNECT_MACROS,
            b"\x00\x00\x00\x54DCj\0mx.test\0{daemon_name}\0mx\0{client_addr}\x00192.0.2.1\0"
            b"{client_port}\x004242\0v\0Pillarbox\0"
            b"\x00\x00\x00\x1aC[192.0.2.1]\x004\x10\x92192.0.2.1\0",
        ),
        (
            p.Stage.CONNECT,
            p.connect_data("[2001:db8::1]", "2001:db8::1", 25),
            (),
            b"\x00\x00\x00\x1eC[2001:db8::1]\x006\x00\x192001:db8::1\0",
        ),
        (
            p.Stage.HELO,
            p.c_string("client.example"),
            [("tls_version", "TLSv1.3"), ("cipher", "TLS_AES_256_GCM_SHA384")],
            b"\x00\x00\x00\x38DH{tls_version}\0TLSv1.3\0{cipher}\0TLS_AES_256_GCM_SHA384\0"
            b"\x00\x00\x00\x10Hclient.example\0",
        ),
        (
            p.Stage.MAIL,
            p.arguments(["<a@b.example>", "SIZE=1000", "BODY=8BITMIME"]),
            [("mail_addr", "a@b.example"), ("auth_authen", "alice")],
            b"\x00\x00\x00\x2eDM{mail_addr}\0a@b.example\0{auth_authen}\0alice\0"
            b"\x00\x00\x00\x27M<a@b.example>\0SIZE=1000\0BODY=8BITMIME\0",
        ),
        (
            p.Stage.MAIL,
            p.arguments(["<>"]),
            [("mail_addr", "")],
            b"\x00\x00\x00\x0fDM{mail_addr}\0\0\x00\x00\x00\x04M<>\0",
        ),
        (
            p.Stage.RCPT,
            p.arguments(["<c@d.example>"]),
            [("rcpt_addr", "c@d.example")],
            b"\x00\x00\x00\x1aDR{rcpt_addr}\0c@d.example\0\x00\x00\x00\x0fR<c@d.example>\0",
        ),
        (p.Stage.DATA, b"", (), b"\x00\x00\x00\x01T"),
        (
            p.Stage.HEADER,
            p.c_string("Subject") + p.c_string("hi\n there"),
            (),
            b"\x00\x00\x00\x13LSubject\0hi\n there\0",
        ),
        (p.Stage.EOH, b"", (), b"\x00\x00\x00\x01N"),
        (p.Stage.BODY, b"line\r\n", (), b"\x00\x00\x00\x07Bline\r\n"),
        (p.Stage.EOM, b"", (), b"\x00\x00\x00\x01E"),
    ],
)
def test_command(stage: p.Stage, data: bytes, macros: list[tuple[str, str]], wire: bytes) -> None:
    session = negotiated()
    assert session.command(stage, data, macros) == wire
    assert session.waiting


def test_abort_and_quit() -> None:
    session = at(p.Stage.MAIL)
    session.receive(CONTINUE)
    assert session.abort() == b"\x00\x00\x00\x01A"
    assert session.quit() == b"\x00\x00\x00\x01Q"
    assert not session.waiting


# -- steps left out (NO*) and left unanswered (NR_*) --------------------------------------

_STEPS = [s for s in p.Stage if s is not p.Stage.EOM]


@pytest.mark.parametrize("stage", _STEPS)
def test_a_step_left_out_sends_nothing_and_waits_for_nothing(stage: p.Stage) -> None:
    session = negotiated(protocol=stage.left_out)
    assert not session.wants(stage)
    assert session.command(stage, b"x", [("i", "Q1")]) == b""
    assert not session.waiting
    # Every other step is still sent.
    for other in p.Stage:
        if other is not stage:
            assert session.wants(other)
            assert session.command(other) != b""
            session.receive(CONTINUE)


@pytest.mark.parametrize("stage", _STEPS)
def test_a_step_left_unanswered_is_sent_without_waiting(stage: p.Stage) -> None:
    session = negotiated(protocol=stage.unanswered)
    assert session.wants(stage)
    assert session.command(stage) == bytes([0, 0, 0, 1]) + stage.command
    assert not session.waiting
    with pytest.raises(p.MilterProtocolError, match="none due"):
        session.receive(CONTINUE)


def test_unanswered_headers_then_an_answered_end_of_header() -> None:
    session = negotiated(protocol=P.NR_HDR)
    for _ in range(3):
        assert session.command(p.Stage.HEADER, b"A\0b\0")
        assert not session.waiting
    assert session.command(p.Stage.EOH) == b"\x00\x00\x00\x01N"
    assert session.waiting
    assert session.receive(CONTINUE) == [Outcome(CONTINUED)]


def test_end_of_message_is_always_sent_and_answered() -> None:
    session = negotiated(protocol=p.OFFERED_PROTOCOL)
    assert all(session.command(s) == b"" for s in _STEPS)
    assert session.command(p.Stage.EOM) == b"\x00\x00\x00\x01E"
    assert session.waiting


# -- replies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "reply", "final"),
    [
        (p.Stage.CONNECT, b"c", p.Final(p.Verdict.CONTINUE)),
        (p.Stage.CONNECT, b"a", p.Final(p.Verdict.ACCEPT)),
        (p.Stage.CONNECT, b"r", p.Final(p.Verdict.REJECT)),
        (p.Stage.HELO, b"t", p.Final(p.Verdict.TEMPFAIL)),
        (p.Stage.HELO, b"f", p.Final(p.Verdict.CONN_FAIL)),
        (p.Stage.HELO, b"4", p.Final(p.Verdict.SHUTDOWN)),
        (p.Stage.MAIL, b"d", p.Final(p.Verdict.DISCARD)),
        (p.Stage.RCPT, b"d", p.Final(p.Verdict.DISCARD)),
        (p.Stage.EOM, b"d", p.Final(p.Verdict.DISCARD)),
        (p.Stage.RCPT, b"y550 5.1.1 unknown\0", p.Final(p.Verdict.REPLYCODE, b"550 5.1.1 unknown")),
        (p.Stage.CONNECT, b"y421 4.3.2 later\0", p.Final(p.Verdict.REPLYCODE, b"421 4.3.2 later")),
    ],
)
def test_final_reply(stage: p.Stage, reply: bytes, final: p.Final) -> None:
    session = at(stage)
    assert session.receive(p.packet(reply[:1], reply[1:])) == [Outcome(final)]
    assert not session.waiting


@pytest.mark.parametrize(
    ("stage", "protocol", "reply"),
    [
        (p.Stage.CONNECT, 0, b"d"),  # discard before a message
        (p.Stage.HELO, 0, b"d"),
        (p.Stage.BODY, 0, b"s"),  # skip not negotiated
        (p.Stage.HEADER, P.SKIP, b"s"),  # skip outside the body
        (p.Stage.EOM, P.SKIP, b"s"),
        (p.Stage.RCPT, 0, b"y250 2.0.0 fine\0"),  # a ``y`` reply must be 4xx or 5xx
        (p.Stage.RCPT, 0, b"y354 go on\0"),
        (p.Stage.RCPT, 0, b"y\0"),
        (p.Stage.RCPT, 0, b"y"),
        (p.Stage.RCPT, 0, b"y 550 x\0"),
    ],
)
def test_final_reply_refused(stage: p.Stage, protocol: int, reply: bytes) -> None:
    session = at(stage, protocol=protocol)
    with pytest.raises(p.MilterProtocolError):
        session.receive(p.packet(reply[:1], reply[1:]))


def test_skip_in_the_body_when_negotiated() -> None:
    session = at(p.Stage.BODY, protocol=P.SKIP)
    assert session.may_skip
    assert session.receive(b"\x00\x00\x00\x01s") == [Outcome(p.Final(p.Verdict.SKIP))]


def test_progress_replies_are_none_and_keep_waiting() -> None:
    session = at(p.Stage.EOM)
    assert session.receive(PROGRESS) == [None]
    assert session.waiting
    assert session.receive(PROGRESS + PROGRESS + CONTINUE) == [None, None, Outcome(CONTINUED)]
    assert not session.waiting


def test_a_reply_split_one_byte_at_a_time() -> None:
    session = at(p.Stage.RCPT)
    reply = PROGRESS + p.packet(b"y", b"450 4.2.0 greylisted\0")
    results: list[Outcome | p.Negotiated | None] = []
    for i in range(len(reply)):
        results += session.receive(reply[i : i + 1])
    assert results == [None, Outcome(p.Final(p.Verdict.REPLYCODE, b"450 4.2.0 greylisted"))]


def test_a_reply_after_the_final_one_is_refused() -> None:
    session = at(p.Stage.MAIL)
    with pytest.raises(p.MilterProtocolError, match="none due"):
        session.receive(CONTINUE + CONTINUE)


def test_a_packet_over_the_bound_is_refused_on_its_length() -> None:
    session = MilterSession(max_packet=64)
    session.start()
    session.receive(optneg(6, A.CHGBODY))
    session.command(p.Stage.EOM)
    with pytest.raises(p.MilterProtocolError):
        session.receive(b"\x00\x00\x00\x41")  # 65 bytes announced, none of them sent
    session = MilterSession(max_packet=64)
    session.start()
    session.receive(optneg(6, A.CHGBODY))
    session.command(p.Stage.EOM)
    assert session.receive(p.packet(b"b", b"x" * 63) + CONTINUE) == [
        Outcome(CONTINUED, (p.ReplaceBody(b"x" * 63),))
    ]


# -- edits --------------------------------------------------------------------------------

_EDITS = [
    (b"h", b"X-Spam\0yes\0", p.AddHeader("X-Spam", "yes")),
    (b"i", b"\x00\x00\x00\x00X-Top\0v\0", p.InsertHeader(0, "X-Top", "v")),
    (b"m", b"\x00\x00\x00\x01Subject\0\0", p.ChangeHeader(1, "Subject", "")),
    (b"b", b"new\r\n", p.ReplaceBody(b"new\r\n")),
    (b"e", b"<s@x>\0", p.ChangeFrom("<s@x>")),
    (b"+", b"<r@x>\0", p.AddRecipient("<r@x>")),
    (b"2", b"<r@x>\0NOTIFY=NEVER\0", p.AddRecipient("<r@x>", ("NOTIFY=NEVER",))),
    (b"-", b"<d@x>\0", p.DeleteRecipient("<d@x>")),
    (b"q", b"virus\0", p.Quarantine("virus")),
]


def test_edits_at_end_of_message_come_with_the_final_reply_in_order() -> None:
    session = at(p.Stage.EOM)
    wire = b"".join(p.packet(code, data) for code, data, _ in _EDITS)
    assert session.receive(wire + PROGRESS) == [None]
    assert session.receive(b"\x00\x00\x00\x01a") == [
        Outcome(p.Final(p.Verdict.ACCEPT), tuple(edit for _, _, edit in _EDITS))
    ]
    # The next end of message starts with none.
    session.command(p.Stage.EOM)
    assert session.receive(CONTINUE) == [Outcome(CONTINUED)]


def test_edits_past_their_bound_are_refused() -> None:
    """A replaced body comes in any number of packets: their sum is bounded, not only each."""
    session = MilterSession(max_packet=MAX, max_edits=10)
    session.start()
    session.receive(optneg(6, p.OFFERED_ACTIONS))
    session.command(p.Stage.EOM)
    assert session.receive(p.packet(b"b", b"0123456789")) == []
    with pytest.raises(p.MilterProtocolError, match="edits of over 10 bytes"):
        session.receive(p.packet(b"b", b"x"))


@pytest.mark.parametrize(("code", "data", "edit"), _EDITS)
@pytest.mark.parametrize("stage", _STEPS)
def test_an_edit_before_end_of_message_is_refused(
    stage: p.Stage, code: bytes, data: bytes, edit: p.Edit
) -> None:
    session = at(stage)
    with pytest.raises(p.MilterProtocolError, match="before end of message"):
        session.receive(p.packet(code, data))


@pytest.mark.parametrize(("code", "data", "edit"), _EDITS)
def test_an_edit_without_its_action_is_refused(code: bytes, data: bytes, edit: p.Edit) -> None:
    needed = p.EDIT_ACTIONS[code]
    session = at(p.Stage.EOM, actions=p.OFFERED_ACTIONS & ~needed)
    with pytest.raises(p.MilterProtocolError, match="without its action"):
        session.receive(p.packet(code, data))
    session = at(p.Stage.EOM, actions=needed)
    session.receive(p.packet(code, data))
    assert session.receive(CONTINUE) == [Outcome(CONTINUED, (edit,))]


def test_add_recipient_with_parameters_needs_its_own_action() -> None:
    session = at(p.Stage.EOM, actions=A.ADDRCPT)
    with pytest.raises(p.MilterProtocolError):
        session.receive(p.packet(b"2", b"<r@x>\0NOTIFY=NEVER\0"))


# -- a filter's refusal as an SMTP reply (net/milter.filter_reply) ------------------------


@pytest.mark.parametrize(
    ("final", "reply"),
    [
        (p.Final(p.Verdict.REJECT), replies.FILTER_REJECTED),
        (p.Final(p.Verdict.TEMPFAIL), replies.FILTER_TEMPFAIL),
        (p.Final(p.Verdict.CONN_FAIL), replies.FILTER_TEMPFAIL),
        (p.Final(p.Verdict.SHUTDOWN), replies.FILTER_TEMPFAIL),
    ],
)
def test_filter_reply_for_a_verdict(final: p.Final, reply: Reply) -> None:
    assert filter_reply(final) == reply


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        # smfi_setreply: "rcode xcode message", "rcode message", "rcode " and "rcode xcode".
        (b"550 5.7.1 go away", Reply(550, "5.7.1", "go away")),
        (b"450 try later", Reply(450, None, "try later")),
        (b"554 ", Reply(554, None, replies.FILTER_REJECTED.text)),
        (b"550 5.7.1", Reply(550, "5.7.1", replies.FILTER_REJECTED.text)),
        (b"421 4.3.2", Reply(421, "4.3.2", replies.FILTER_TEMPFAIL.text)),
        (b"550", Reply(550, None, replies.FILTER_REJECTED.text)),
        # smfi_setmlreply: lines joined by CRLF, the enhanced code on each.
        (b"550-5.7.1 line one\r\n550 5.7.1 line two", Reply(550, "5.7.1", "line one\nline two")),
        (
            b"450-4.7.1 a\r\n450-4.7.1 b\r\n450 4.7.1 c",
            Reply(450, "4.7.1", "a\nb\nc"),
        ),
        (b"550-a\n550 b", Reply(550, None, "a\nb")),
        # A last line break (libmilter never sends one; a hand-written filter might).
        (b"550 5.7.1 ends with a break\r\n", Reply(550, "5.7.1", "ends with a break")),
        # An enhanced code whose class is not the reply's is dropped (RFC 3463 §2).
        (b"451 5.7.1 mismatch", Reply(451, None, "mismatch")),
        (b"550 2.0.0 odd", Reply(550, None, "2.0.0 odd")),  # not a 4 or 5 class: text
        # Not an enhanced code: part of the text.
        (b"550 5.7.1.2 x", Reply(550, None, "5.7.1.2 x")),
        (b"550 55.7.1 x", Reply(550, None, "55.7.1 x")),
        # Control characters are removed; octets that are not UTF-8 replaced.
        (b"550 5.7.1 a\tb\x01c\x7fd", Reply(550, "5.7.1", "abcd")),
        (b"550 5.7.1 \x00x\rx", Reply(550, "5.7.1", "xx")),
        (b"550 caf\xc3\xa9 \xff", Reply(550, None, "caf\u00e9 \ufffd")),
        (b"550 \x1b[31m", Reply(550, None, "[31m")),
        # Garbage: the default reply of the class its first digit names.
        (b"5x0 nope", replies.FILTER_REJECTED),
        (b"5", replies.FILTER_REJECTED),
        (b"4", replies.FILTER_TEMPFAIL),
        (b"", replies.FILTER_TEMPFAIL),
        (b" 550 5.7.1 leading blank", replies.FILTER_TEMPFAIL),
        (b"550-5.7.1 a\r\nnot a reply line", replies.FILTER_REJECTED),
        (b"450-4.7.1 a\r\n\r\n450 4.7.1 b", replies.FILTER_TEMPFAIL),
        (b"650 5.7.1 no such class", replies.FILTER_TEMPFAIL),
        (b"\xff\xfe", replies.FILTER_TEMPFAIL),
    ],
)
def test_filter_reply_for_a_replycode(text: bytes, reply: Reply) -> None:
    assert filter_reply(p.Final(p.Verdict.REPLYCODE, text)) == reply


def test_filter_reply_as_sent_on_the_wire() -> None:
    final = p.decode(b"y", b"550-5.7.1 Message rejected\r\n550 5.7.1 see https://x.example\0")
    assert isinstance(final, p.Final)
    assert filter_reply(final).render() == (
        b"550-5.7.1 Message rejected\r\n550 5.7.1 see https://x.example\r\n"
    )
