"""Fuzz the milter client (pillarbox.milter) with arbitrary bytes from a filter.

Input: byte 0 picks the stage the session starts asking at (low four bits, through a script
of CONNECT, HELO, MAIL, two RCPTs, DATA, two header fields, end of header, two body chunks and
end of message) and whether the filter's negotiation reply is the fuzzer's own bytes (0x80)
rather than one built from bytes 1–5: the actions (bytes 1–2) and the protocol steps
(bytes 3–5, within those offered); byte 6 the size of each read (0: 1 byte); the rest is
what the filter sends. Before each read the next command of the script is sent if no reply is
due (a filter answers one command at a time: replies to later ones in the same read are a
protocol error). Asserted, beyond "only MilterProtocolError":

* a final reply is one the stage allows: edits only with end of message and only those whose
  action was negotiated, SKIP only for a body chunk when negotiated, no DISCARD at CONNECT or
  HELO, a ``y`` reply 4xx or 5xx; nothing is answered that was not asked;
* a refusal becomes an SMTP reply (``filter_reply``) of the class the filter named;
* the edits applied to a message succeed or raise MilterProtocolError, and what they give is
  still fields (each a name and a colon) and the empty line, the body untouched unless
  replaced.
"""

from __future__ import annotations

import re
import struct

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox.milter", "pillarbox.net.milter"]):
    from pillarbox.milter import edits
    from pillarbox.milter import protocol as p
    from pillarbox.milter.session import MilterSession, Outcome
    from pillarbox.net.milter import filter_reply

S = p.Stage
SCRIPT = [
    (S.CONNECT, p.connect_data("[192.0.2.1]", "192.0.2.1", 4242), [("j", "mx.test")]),
    (S.HELO, p.c_string("client.example"), []),
    (S.MAIL, p.arguments(["<a@b.example>", "SIZE=100"]), [("mail_addr", "a@b.example")]),
    (S.RCPT, p.arguments(["<c@d.example>"]), [("rcpt_addr", "c@d.example")]),
    (S.RCPT, p.arguments(["<e@d.example>"]), [("rcpt_addr", "e@d.example")]),
    (S.DATA, b"", []),
    (S.HEADER, p.c_string("Subject") + p.c_string("hi"), []),
    (S.HEADER, p.c_string("To") + p.c_string("c@d.example"), []),
    (S.EOH, b"", []),
    (S.BODY, b"body\r\n", []),
    (S.BODY, b"more\r\n", []),
    (S.EOM, b"", []),
]
MESSAGE_BODY = b"body\r\nmore\r\n"
MESSAGE = b"Subject: hi\r\n folded\r\nTo: c@d.example\r\nsubject: 2\r\n\r\n" + MESSAGE_BODY
MAX_PACKET = 1024
_FIELD_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
_REFUSALS = (p.Verdict.REJECT, p.Verdict.TEMPFAIL, p.Verdict.REPLYCODE)


def _check_outcome(session: MilterSession, stage: p.Stage, outcome: Outcome) -> None:
    negotiated = session.negotiated
    assert negotiated is not None
    final = outcome.final
    if outcome.edits:
        assert stage is S.EOM, (stage, outcome)
    for edit in outcome.edits:
        code = {
            p.AddHeader: b"h",
            p.InsertHeader: b"i",
            p.ChangeHeader: b"m",
            p.ReplaceBody: b"b",
            p.ChangeFrom: b"e",
            p.DeleteRecipient: b"-",
            p.Quarantine: b"q",
        }.get(type(edit))
        if code is not None:
            assert negotiated.actions & p.EDIT_ACTIONS[code], (edit, negotiated)
        else:  # AddRecipient: ``+`` or ``2``
            assert negotiated.actions & (p.ActionFlag.ADDRCPT | p.ActionFlag.ADDRCPT_PAR)
    if final.verdict is p.Verdict.SKIP:
        assert stage is S.BODY and session.may_skip
    if final.verdict is p.Verdict.DISCARD:
        assert stage not in (S.CONNECT, S.HELO)
    if final.verdict in _REFUSALS:
        reply = filter_reply(final)
        assert 400 <= reply.code < 600, reply
        if final.verdict is p.Verdict.REPLYCODE:
            assert final.reply[:1] in (b"4", b"5")
            assert str(reply.code)[0] == chr(final.reply[0]), (final, reply)
        reply.render()
    content = [
        e
        for e in outcome.edits
        if isinstance(e, p.AddHeader | p.InsertHeader | p.ChangeHeader | p.ReplaceBody)
    ]
    try:
        result = edits.apply(MESSAGE, content, session.leading_space)
    except p.MilterProtocolError:
        return
    fields, body = edits.split(result)
    for field in fields:
        assert _FIELD_START.match(field), (field, result)
        assert b"\r\n\r\n" not in field, (field, result)
    if not any(isinstance(e, p.ReplaceBody) for e in content):
        assert body == MESSAGE_BODY, result


def check(data: bytes) -> None:
    if len(data) < 7:
        return
    selector = data[0]
    first = (selector & 0x0F) % len(SCRIPT)
    actions = struct.unpack(">H", data[1:3])[0] & 0x1FF
    protocol = int.from_bytes(data[3:6], "big") & int(p.OFFERED_PROTOCOL)
    cut = data[6]
    stream = data[7:]
    session = MilterSession(max_packet=MAX_PACKET)
    session.start()
    try:
        if not selector & 0x80:
            session.receive(p.packet(b"O", struct.pack(">III", 6, actions, protocol)))
        step = first
        stage: p.Stage | None = None
        size = cut or 1
        for start in range(0, len(stream), size):
            while session.negotiated is not None and not session.waiting:
                if step == len(SCRIPT):
                    break
                stage, command, macros = SCRIPT[step]
                step += 1
                out = session.command(stage, command, macros)
                assert out or not session.wants(stage)
            for result in session.receive(stream[start : start + size]):
                if isinstance(result, Outcome):
                    assert stage is not None
                    _check_outcome(session, stage, result)
                elif isinstance(result, p.Negotiated):
                    assert selector & 0x80 and session.negotiated is result
                    assert result.version >= 2
                    assert not int(result.actions) & ~int(p.OFFERED_ACTIONS)
                    assert not int(result.protocol) & ~int(p.OFFERED_PROTOCOL)
                else:
                    assert result is None
    except p.MilterProtocolError:
        pass


def _seed(selector: int, actions: int, protocol: int, cut: int, replies: bytes) -> bytes:
    return (
        bytes([selector])
        + struct.pack(">H", actions)
        + protocol.to_bytes(3, "big")
        + (bytes([cut]) + replies)
    )


def seeds() -> list[bytes]:
    c = p.packet(b"c")
    everything = int(p.OFFERED_PROTOCOL)
    at_eom = (
        p.packet(b"p")
        + p.packet(b"h", b"X-Spam\0yes\0")
        + p.packet(b"i", b"\0\0\0\0X-Top\0 v\n\tw\0")
        + p.packet(b"m", b"\0\0\0\x02subject\0\0")
        + p.packet(b"b", b"new\nbody\r")
        + p.packet(b"b", b"\n")
        + p.packet(b"e", b"<s@x.example>\0")
        + p.packet(b"+", b"<r@x.example>\0")
        + p.packet(b"2", b"<r@x.example>\0NOTIFY=NEVER\0")
        + p.packet(b"-", b"<c@d.example>\0")
        + p.packet(b"q", b"spam\0")
        + p.packet(b"a")
    )
    optneg = p.packet(b"O", struct.pack(">III", 6, 0x1FF, 0x100400) + b"\0\0\0\x02{i}\0")
    return [
        _seed(0, 0x1FF, 0, 1, c * 11 + at_eom),
        _seed(0, 0x1FF, 0, 5, c * 11 + at_eom),
        _seed(11, 0x1FF, 0x100000, 3, at_eom),
        _seed(11, 0x1FF, 0, 255, at_eom),
        _seed(0x80, 0, 0, 1, optneg + c * 9 + p.packet(b"s") + c + at_eom),
        _seed(9, 0, 0x400, 1, p.packet(b"s") + c),
        _seed(0, 0, 0, 0, p.packet(b"y", b"554 5.7.1 go away\0")),
        _seed(3, 0, 0, 2, p.packet(b"y", b"450-4.2.0 greylisted\r\n450 4.2.0 try later\0")),
        _seed(2, 0, 0, 0, p.packet(b"d")),
        _seed(0, 0, 0, 1, p.packet(b"r") + c),
        _seed(0, 0, 0x1000 | 0x2000, 1, c + c + p.packet(b"t")),
        _seed(0, 0x1FF, everything, 1, p.packet(b"p") + p.packet(b"c")),
        _seed(5, 0x1FF, 0x80, 1, c * 4 + at_eom),  # headers unanswered (SMFIP_NR_HDR)
        _seed(11, 0x1FF, 0, 0, b"\0\0\x04\x01b" + b"x" * 1024),  # over the bound
        _seed(0, 0, 0, 0, b"\0\0\0\0"),
    ]


if __name__ == "__main__":
    harness.main("milter_replies", check, seeds())
