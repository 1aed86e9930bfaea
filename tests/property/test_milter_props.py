"""Hypothesis properties of the milter client: edits keep a message a header of fields and a
body, framing does not depend on how bytes arrive, and any bytes a filter sends at any stage
give values or a protocol error, never another exception."""

from __future__ import annotations

import itertools
import re
import struct

from hypothesis import given
from hypothesis import strategies as st

from pillarbox.milter import edits
from pillarbox.milter import protocol as p
from pillarbox.milter.session import MilterSession, Outcome
from pillarbox.net.milter import filter_reply

_FTEXT = "".join(chr(c) for c in range(0x21, 0x7F) if c != ord(":"))  # RFC 5322 §3.6.8
_FIELD_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")

names = st.one_of(
    st.text(alphabet=_FTEXT, min_size=1, max_size=12),
    st.sampled_from(["Subject", "subject", "SUBJECT", "To", "Received", "X-Spam"]),
)
# Text of one line: anything but CR and LF (and lone surrogates, which no decoded reply holds).
line_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=20,
)
folds = st.tuples(st.sampled_from([" ", "\t"]), line_text).map("".join)
values = st.builds(
    lambda first, rest: "\n".join([first, *rest]), line_text, st.lists(folds, max_size=3)
)
indexes = st.one_of(st.integers(0, 6), st.just(2**32 - 1))

header_edits = st.one_of(
    st.builds(p.AddHeader, names, values),
    st.builds(p.InsertHeader, indexes, names, values),
    st.builds(p.ChangeHeader, indexes, names, st.one_of(st.just(""), values)),
)
other_edits = st.one_of(
    st.builds(p.ChangeFrom, st.text(max_size=10)),
    st.builds(p.AddRecipient, st.text(max_size=10)),
    st.builds(p.DeleteRecipient, st.text(max_size=10)),
    st.builds(p.Quarantine, st.text(max_size=10)),
)
body_edits = st.builds(p.ReplaceBody, st.binary(max_size=40))


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A CRLF message as the store keeps it: fields, the empty line, a body; and its body."""
    fields = draw(st.lists(st.tuples(names, values), max_size=6))
    body = draw(st.binary(max_size=60).map(lambda b: re.sub(rb"\r?\n|\r", b"\r\n", b)))
    head = b"".join(edits.apply(b"\r\n", [p.AddHeader(n, v)], False)[:-2] for n, v in fields)
    return head + b"\r\n" + body, body


@given(
    messages(),
    st.lists(st.one_of(header_edits, other_edits, body_edits), max_size=8),
    st.booleans(),
)
def test_edits_keep_fields_and_leave_the_body_alone_unless_replaced(
    message: tuple[bytes, bytes], changes: list[p.Edit], leading_space: bool
) -> None:
    raw, body = message
    result = edits.apply(raw, changes, leading_space)
    fields, new_body = edits.split(result)
    for field in fields:
        assert _FIELD_START.match(field), (field, result)
        assert field.endswith(b"\r\n")
        assert b"\r\n\r\n" not in field
    pieces = [c.data for c in changes if isinstance(c, p.ReplaceBody)]
    if pieces:
        assert new_body == re.sub(rb"\r?\n", b"\r\n", b"".join(pieces))
    else:
        assert new_body == body
    # With SMFIP_HDR_LEADSPC each field is shown to the next filter exactly as written.
    for field in fields:
        name, value = edits.name_value(field, True)
        assert edits.apply(b"\r\n", [p.AddHeader(name, value)], True) == field + b"\r\n"


packets = st.lists(
    st.tuples(st.binary(min_size=1, max_size=1), st.binary(max_size=300)), max_size=8
)


@given(packets, st.lists(st.integers(0, 3000), max_size=12))
def test_framer_cuts_any_chunking_into_the_same_packets(
    sent: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    wire = b"".join(p.packet(code, data) for code, data in sent)
    bounds = [0, *sorted(c % (len(wire) + 1) for c in cuts), len(wire)]
    framer = p.Framer(301)
    got: list[tuple[bytes, bytes]] = []
    for start, end in itertools.pairwise(bounds):
        got += framer.feed(wire[start:end])
    assert got == sent


_PREFIX = [
    p.Stage.CONNECT,
    p.Stage.HELO,
    p.Stage.MAIL,
    p.Stage.RCPT,
    p.Stage.DATA,
    p.Stage.HEADER,
    p.Stage.EOH,
    p.Stage.BODY,
    p.Stage.EOM,
]


@given(
    st.integers(0, 0x1FF),
    st.integers(0, 0x1FFFFF),
    st.sampled_from(_PREFIX),
    st.lists(
        st.one_of(
            st.binary(max_size=30),
            st.builds(
                p.packet,
                st.sampled_from(list(b"cartdf4syphim be+2-qO")).map(lambda c: bytes([c])),
                st.binary(max_size=20),
            ),
        ),
        max_size=6,
    ),
)
def test_any_reply_at_any_stage_gives_values_or_a_protocol_error(
    actions: int, protocol: int, stage: p.Stage, reads: list[bytes]
) -> None:
    session = MilterSession(max_packet=64)
    session.start()
    protocol &= int(p.OFFERED_PROTOCOL)
    session.receive(p.packet(b"O", struct.pack(">III", 6, actions, protocol)))
    session.command(stage)
    try:
        for data in reads:
            for result in session.receive(data):
                if isinstance(result, Outcome):
                    assert result.edits == () or stage is p.Stage.EOM
                    if result.final.verdict in (p.Verdict.REJECT, p.Verdict.REPLYCODE):
                        assert filter_reply(result.final).code in range(400, 600)
                    edits.apply(b"A: 1\r\n\r\nb", result.edits, session.leading_space)
    except p.MilterProtocolError:
        pass
