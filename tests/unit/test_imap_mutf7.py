"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3)."""

from __future__ import annotations

import pytest

from pillarbox.imap import mutf7
from pillarbox.imap.errors import Mutf7Error


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3
        ("INBOX", "INBOX"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("&", "&-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("Ünïcödé", "&ANw-n&AO8-c&APY-d&AOk-"),
        ("😀", "&2D3eAA-"),
        ("a\tb", "a&AAk-b"),
        ("", ""),
    ],
)
def test_both_directions(text: str, wire: str) -> None:
    assert mutf7.encode(text) == wire
    assert mutf7.decode(wire) == text
    assert mutf7.decode(wire.encode("ascii")) == text


@pytest.mark.parametrize(
    "wire",
    [
        "&",  # unterminated
        "&U,BTFw",  # unterminated
        "&U,BT-",  # odd octet count
        "&AGE-",  # printable ASCII "a" encoded
        "&Jjo!-",  # outside the alphabet
        "&U,BTFw-&ZeVnLIqe-",  # two runs back to back
        "&2D0-",  # unpaired high surrogate
        "&AOkA-",  # non-zero... trailing bits / odd length
        "&AOl-",  # non-zero padding bits
        "a\x01b",  # control character sent directly
        b"caf\xc3\xa9",  # 8-bit
        "&A-",  # one base64 character is not even an octet
    ],
)
def test_invalid_names(wire: str | bytes) -> None:
    with pytest.raises(Mutf7Error):
        mutf7.decode(wire)


def test_unencodable_lone_surrogate() -> None:
    with pytest.raises(Mutf7Error):
        mutf7.encode("a\udce9")
