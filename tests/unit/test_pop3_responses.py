"""Every POP3 reply is a valid single line (RFC 2449 §3, §4) and formats as documented."""

from __future__ import annotations

import base64

import pytest

from pillarbox.pop3 import responses
from pillarbox.pop3.responses import Reply

ALL_REPLIES = {name: value for name, value in vars(responses).items() if isinstance(value, Reply)}


def test_there_are_replies() -> None:
    assert len(ALL_REPLIES) > 40


@pytest.mark.parametrize("name", sorted(ALL_REPLIES))
def test_reply_is_one_valid_line(name: str) -> None:
    reply = ALL_REPLIES[name]
    wire = reply.encode()
    assert wire.endswith(b"\r\n")
    assert b"\r" not in wire[:-2] and b"\n" not in wire[:-2]
    assert wire.startswith(b"+OK" if reply.ok else b"-ERR")
    assert len(wire) <= responses.MAX_RESPONSE_LINE


def test_encoding() -> None:
    assert responses.NOOP.encode() == b"+OK\r\n"
    assert responses.IN_USE.encode() == (
        b"-ERR [IN-USE] maildrop is in use by another POP3 session\r\n"
    )
    assert responses.STAT.format(count=2, size=320).encode() == b"+OK 2 320\r\n"
    assert responses.NO_SUCH_MESSAGE.format(count=2).encode() == (
        b"-ERR no such message, only 2 messages in maildrop\r\n"
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: Reply(False, "two\r\nlines"),
        lambda: Reply(True, "caf\u00e9"),
        lambda: Reply(False, "x", "BAD]CODE"),
        lambda: Reply(False, "x", "A//B"),
        lambda: Reply(False, "[looks like a code"),
        lambda: Reply(True, "x" * 600),
        lambda: responses.SCAN_LISTING.format(number="1\r\n.", size=2),
    ],
)
def test_invalid_replies_are_refused(make: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        make()  # type: ignore[operator]


def test_response_codes_are_hierarchical() -> None:
    assert responses.UPDATE_FAILED.encode().startswith(b"-ERR [SYS/TEMP] ")


def test_listing_and_challenge_lines() -> None:
    assert responses.listing_line(3, 1200) == b"3 1200\r\n"
    assert responses.listing_line(1, "abc") == b"1 abc\r\n"
    # RFC 5034 §4: an empty challenge is "+" and a single space.
    assert responses.sasl_challenge(b"") == b"+ \r\n"
    assert responses.sasl_challenge(b"r=abc") == b"+ " + base64.b64encode(b"r=abc") + b"\r\n"
