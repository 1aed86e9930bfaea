"""A filter's header and body edits applied to a message's raw CRLF bytes (libmilter's
``smfi_addheader``, ``smfi_insheader``, ``smfi_chgheader``, ``smfi_replacebody``), and the
fields as a filter is shown them."""

from __future__ import annotations

import pytest

from pillarbox.milter import edits
from pillarbox.milter import protocol as p

MESSAGE = (
    b"Received: from a\r\n\tby b\r\n"
    b"Subject: Hi\r\n there\r\n"
    b"To: x@y.example\r\n"
    b"subject: second\r\n"
    b"\r\n"
    b"body\r\n"
)
RECEIVED = b"Received: from a\r\n\tby b\r\n"
SUBJECT = b"Subject: Hi\r\n there\r\n"
TO = b"To: x@y.example\r\n"
SECOND = b"subject: second\r\n"
BODY = b"\r\nbody\r\n"


@pytest.mark.parametrize(
    ("message", "fields", "body"),
    [
        (MESSAGE, [RECEIVED, SUBJECT, TO, SECOND], b"body\r\n"),
        (b"A: 1\r\nB: 2\r\n\r\nbody", [b"A: 1\r\n", b"B: 2\r\n"], b"body"),
        (b"A: 1\r\n\r\n\r\nbody\r\n\r\n", [b"A: 1\r\n"], b"\r\nbody\r\n\r\n"),
        (b"\r\nno header\r\n", [], b"no header\r\n"),
        (b"\r\n", [], b""),
        (b"", [], b""),
        # No empty line: all header (RFC 5322 §2.1), its last line given its CRLF.
        (b"A: 1\r\nB: 2\r\n", [b"A: 1\r\n", b"B: 2\r\n"], b""),
        (b"A: 1\r\n b", [b"A: 1\r\n b\r\n"], b""),
        (b"A: 1", [b"A: 1\r\n"], b""),
        # A continuation line first is a field of its own (nothing to join it to).
        (b" x\r\nA: 1\r\n\r\n", [b" x\r\n", b"A: 1\r\n"], b""),
    ],
)
def test_split(message: bytes, fields: list[bytes], body: bytes) -> None:
    assert edits.split(message) == (fields, body)


@pytest.mark.parametrize(
    ("field", "leading_space", "name", "value"),
    [
        (b"Subject: Hi\r\n", False, "Subject", "Hi"),
        (b"Subject: Hi\r\n", True, "Subject", " Hi"),
        (b"Subject:Hi\r\n", False, "Subject", "Hi"),
        (b"Subject:Hi\r\n", True, "Subject", "Hi"),
        (b"X: \t v \r\n", False, "X", "v "),
        (b"X: \t v \r\n", True, "X", " \t v "),
        (SUBJECT, False, "Subject", "Hi\n there"),
        (RECEIVED, True, "Received", " from a\n\tby b"),
        (b"X:\r\n", False, "X", ""),
        (b"X: \r\n", True, "X", " "),
        (b"X: a:b\r\n", False, "X", "a:b"),
        (b"X: \xff\r\n", False, "X", "\udcff"),  # kept as its octet (surrogateescape)
        (b"X\xff: v\r\n", False, "X\ufffd", "v"),
    ],
)
def test_name_value(field: bytes, leading_space: bool, name: str, value: str) -> None:
    assert edits.name_value(field, leading_space) == (name, value)


@pytest.mark.parametrize("leading_space", [False, True])
@pytest.mark.parametrize("field", [RECEIVED, SUBJECT, TO, b"X: \r\n", b"X: \xff\r\n"])
def test_a_field_shown_and_added_back_unchanged_is_the_same_bytes(
    field: bytes, leading_space: bool
) -> None:
    name, value = edits.name_value(field, leading_space)
    assert edits.apply(b"\r\n", [p.AddHeader(name, value)], leading_space) == field + b"\r\n"


@pytest.mark.parametrize(("leading_space", "field"), [(False, b"X: \r\n"), (True, b"X:\r\n")])
def test_no_blank_after_the_colon(leading_space: bool, field: bytes) -> None:
    """Without SMFIP_HDR_LEADSPC the blank after the colon is the MTA's to write."""
    name, value = edits.name_value(b"X:\r\n", leading_space)
    assert edits.apply(b"\r\n", [p.AddHeader(name, value)], leading_space) == field + b"\r\n"


def _with(*fields: bytes) -> bytes:
    return b"".join(fields) + BODY


@pytest.mark.parametrize(
    ("changes", "leading_space", "result"),
    [
        ([], False, MESSAGE),
        (
            [p.AddHeader("X-Spam", "yes")],
            False,
            _with(RECEIVED, SUBJECT, TO, SECOND, b"X-Spam: yes\r\n"),
        ),
        (
            [p.AddHeader("X-Empty", "")],
            False,
            _with(RECEIVED, SUBJECT, TO, SECOND, b"X-Empty: \r\n"),
        ),
        (
            [p.AddHeader("X-Spam", " yes")],
            True,
            _with(RECEIVED, SUBJECT, TO, SECOND, b"X-Spam: yes\r\n"),
        ),
        (
            [p.AddHeader("X-Spam", "yes")],
            True,
            _with(RECEIVED, SUBJECT, TO, SECOND, b"X-Spam:yes\r\n"),
        ),
        (
            [p.AddHeader("X-Folded", "a\n\tb\n c")],
            False,
            _with(RECEIVED, SUBJECT, TO, SECOND, b"X-Folded: a\r\n\tb\r\n c\r\n"),
        ),
        (
            [p.AddHeader("X-Folded", "a\r\n b")],  # a CRLF fold is taken as the LF one
            False,
            _with(RECEIVED, SUBJECT, TO, SECOND, b"X-Folded: a\r\n b\r\n"),
        ),
        (
            [p.AddHeader("X-Utf8", "caf\u00e9"), p.AddHeader("X-Raw", "\udcff")],
            False,
            _with(RECEIVED, SUBJECT, TO, SECOND, b"X-Utf8: caf\xc3\xa9\r\n", b"X-Raw: \xff\r\n"),
        ),
        (
            [p.InsertHeader(0, "X-Top", "1")],
            False,
            _with(b"X-Top: 1\r\n", RECEIVED, SUBJECT, TO, SECOND),
        ),
        (
            [p.InsertHeader(1, "X-Two", "2")],
            False,
            _with(RECEIVED, b"X-Two: 2\r\n", SUBJECT, TO, SECOND),
        ),
        (
            [p.InsertHeader(4, "X-End", "e")],
            False,
            _with(RECEIVED, SUBJECT, TO, SECOND, b"X-End: e\r\n"),
        ),
        (
            [p.InsertHeader(2**32 - 1, "X-End", "e")],  # past the end: last
            False,
            _with(RECEIVED, SUBJECT, TO, SECOND, b"X-End: e\r\n"),
        ),
        (
            [p.InsertHeader(0, "X-B", "b"), p.InsertHeader(0, "X-A", "a")],  # in order
            False,
            _with(b"X-A: a\r\n", b"X-B: b\r\n", RECEIVED, SUBJECT, TO, SECOND),
        ),
        (
            [p.ChangeHeader(1, "Subject", "new")],
            False,
            _with(RECEIVED, b"Subject: new\r\n", TO, SECOND),
        ),
        (
            [p.ChangeHeader(0, "Subject", "new")],
            False,
            _with(RECEIVED, b"Subject: new\r\n", TO, SECOND),
        ),
        # The n-th of that name, whatever the case either side; written as the filter spells it.
        (
            [p.ChangeHeader(2, "SUBJECT", "2nd")],
            False,
            _with(RECEIVED, SUBJECT, TO, b"SUBJECT: 2nd\r\n"),
        ),
        (
            [p.ChangeHeader(1, "to", " z@y.example")],
            True,
            _with(RECEIVED, SUBJECT, b"to: z@y.example\r\n", SECOND),
        ),
        # An empty value removes the field, with its folds.
        ([p.ChangeHeader(1, "subject", "")], False, _with(RECEIVED, TO, SECOND)),
        ([p.ChangeHeader(1, "Received", "")], False, _with(SUBJECT, TO, SECOND)),
        (
            [p.ChangeHeader(1, "Subject", ""), p.ChangeHeader(1, "Subject", "")],
            False,
            _with(RECEIVED, TO),
        ),
        # No n-th field of that name: added at the end, unless the value is empty.
        (
            [p.ChangeHeader(3, "Subject", "3rd")],
            False,
            _with(RECEIVED, SUBJECT, TO, SECOND, b"Subject: 3rd\r\n"),
        ),
        (
            [p.ChangeHeader(1, "X-None", "v")],
            False,
            _with(RECEIVED, SUBJECT, TO, SECOND, b"X-None: v\r\n"),
        ),
        ([p.ChangeHeader(3, "Subject", "")], False, MESSAGE),
        ([p.ChangeHeader(1, "X-None", "")], False, MESSAGE),
        # Envelope edits and quarantine are the caller's.
        (
            [
                p.ChangeFrom("<a@b>"),
                p.AddRecipient("<c@d>"),
                p.DeleteRecipient("<x@y.example>"),
                p.Quarantine("spam"),
            ],
            False,
            MESSAGE,
        ),
    ],
)
def test_header_edits(changes: list[p.Edit], leading_space: bool, result: bytes) -> None:
    assert edits.apply(MESSAGE, changes, leading_space) == result


@pytest.mark.parametrize(
    ("pieces", "body"),
    [
        ([b"new\r\n"], b"new\r\n"),
        ([b""], b""),
        ([b"line1\n", b"line2\r", b"\nline3"], b"line1\r\nline2\r\nline3"),  # CR|LF across pieces
        ([b"a\r\n", b"\n", b"\r\n"], b"a\r\n\r\n\r\n"),
        ([b"bare\rcr"], b"bare\rcr"),  # a bare CR is left as it is
        ([b"\n\n"], b"\r\n\r\n"),
        ([b"x" * 65535, b"y" * 10], b"x" * 65535 + b"y" * 10),
    ],
)
def test_body_replaced(pieces: list[bytes], body: bytes) -> None:
    changes: list[p.Edit] = [p.ReplaceBody(piece) for piece in pieces]
    header = RECEIVED + SUBJECT + TO + SECOND
    assert edits.apply(MESSAGE, changes, False) == header + b"\r\n" + body
    # Header edits among the pieces do not split the body.
    changes.insert(1, p.AddHeader("X-Scanned", "yes"))
    assert edits.apply(MESSAGE, changes, False) == header + b"X-Scanned: yes\r\n\r\n" + body


@pytest.mark.parametrize(
    ("message", "changes", "result"),
    [
        (b"A: 1\r\n", [p.AddHeader("B", "2")], b"A: 1\r\nB: 2\r\n\r\n"),
        (b"A: 1", [p.AddHeader("B", "2")], b"A: 1\r\nB: 2\r\n\r\n"),
        (b"A: 1", [p.InsertHeader(1, "B", "2")], b"A: 1\r\nB: 2\r\n\r\n"),
        (b"A: 1\r\n b", [p.ChangeHeader(2, "A", "2")], b"A: 1\r\n b\r\nA: 2\r\n\r\n"),
        (b"A: 1", [p.ReplaceBody(b"body\n")], b"A: 1\r\n\r\nbody\r\n"),
        (b"", [p.AddHeader("B", "2")], b"B: 2\r\n\r\n"),
        (b"\r\nbody", [p.AddHeader("B", "2")], b"B: 2\r\n\r\nbody"),
        (b"\r\nbody", [p.ChangeHeader(1, "B", "")], b"\r\nbody"),
    ],
)
def test_a_message_without_a_header_or_without_a_body(
    message: bytes, changes: list[p.Edit], result: bytes
) -> None:
    assert edits.apply(message, changes, False) == result


@pytest.mark.parametrize(
    "value",
    [
        "a\nb",  # a continuation line that is not a fold: a new field
        "a\n",  # an empty line: the end of the header
        "a\r\n",
        "\nb",
        "a\n b\nc",
        "a\rb",  # a bare CR
        "a\r",
        "\r",
        "a\n\n b",
    ],
)
@pytest.mark.parametrize("edit", ["add", "insert", "change"])
def test_a_value_that_is_not_one_field_is_refused(edit: str, value: str) -> None:
    change = {
        "add": p.AddHeader("X", value),
        "insert": p.InsertHeader(0, "X", value),
        "change": p.ChangeHeader(1, "Subject", value),
    }[edit]
    with pytest.raises(p.MilterProtocolError, match="not a fold"):
        edits.apply(MESSAGE, [change], False)


@pytest.mark.parametrize(
    "name",
    ["", "X Y", "X:Y", ":", "X\t", " X", "X\n", "X\0", "X\x7f", "X\u00e9", "\u212a", "Subject\r\n"],
)
def test_a_bad_field_name_is_refused(name: str) -> None:
    for change in (
        p.AddHeader(name, "v"),
        p.InsertHeader(0, name, "v"),
        p.ChangeHeader(1, name, "v"),
    ):
        with pytest.raises(p.MilterProtocolError, match="name"):
            edits.apply(MESSAGE, [change], False)


def test_every_ftext_character_makes_a_name() -> None:
    ftext = "".join(chr(c) for c in range(33, 127) if c != ord(":"))
    assert edits.apply(b"\r\n", [p.AddHeader(ftext, "v")], False) == ftext.encode() + b": v\r\n\r\n"


@pytest.mark.parametrize(
    ("name", "result"),
    [
        ("KEYWORDS", b"To: x\r\n\r\nb"),
        ("keywords", b"To: x\r\n\r\nb"),
        # Only ASCII letters fold, as Sendmail compares names: KELVIN SIGN is no K (to
        # str.lower() it is).
        ("\u212aeywords", b"Keywords: a\r\nTo: x\r\n\r\nb"),
    ],
)
def test_names_match_ignoring_ascii_case_only(name: str, result: bytes) -> None:
    message = b"Keywords: a\r\nTo: x\r\n\r\nb"
    assert edits.apply(message, [p.ChangeHeader(1, name, "")], False) == result
