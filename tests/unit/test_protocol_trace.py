"""What a protocol trace (``logging.trace_protocol``) may show: lines with literals elided and
credentials redacted (STYLE §13)."""

from __future__ import annotations

import pytest

from pillarbox.observability.log import elide_literals, redact_line, trace_lines


@pytest.mark.parametrize(
    ("wire", "shown"),
    [
        (b'PUTSCRIPT "s" {5+}\r\nkeep;\r\n', b'PUTSCRIPT "s" <literal:5>\r\n'),
        (b"{3}\r\nabc\r\nOK\r\n", b"<literal:3>\r\nOK\r\n"),
        (b"a APPEND INBOX {3}\r\n{9}\r\n", b"a APPEND INBOX <literal:3>\r\n"),  # braces inside
        (b"{4}\r\nab", b"<literal:4>"),  # cut short: what there is is elided
        (b'NOOP "{x}"\r\n', b'NOOP "{x}"\r\n'),
    ],
)
def test_literals_are_shown_as_their_size(wire: bytes, shown: bytes) -> None:
    assert elide_literals(wire) == shown


def test_trace_lines_split_and_redact_nothing_themselves() -> None:
    assert trace_lines(b'OK "x"\r\n\r\nBYE\r\n') == ['OK "x"', "", "BYE"]
    assert trace_lines(b"\xff\r\n") == ["\\xff"]


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (b'AUTHENTICATE "PLAIN" "AGFAYgBj"', b'AUTHENTICATE "PLAIN" <redacted>'),
        (b'AUTHENTICATE "PLAIN" <literal:12>', b'AUTHENTICATE "PLAIN" <redacted>'),
        (b'AUTHENTICATE "SCRAM-SHA-256"', b'AUTHENTICATE "SCRAM-SHA-256"'),
        (b"a LOGIN alice secret", b"a LOGIN <redacted>"),
    ],
)
def test_credentials_never_reach_a_trace(line: bytes, shown: bytes) -> None:
    assert redact_line(line) == shown
    assert redact_line(line, in_sasl_exchange=True) == b"<redacted SASL response>"
