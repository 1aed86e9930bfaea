"""Transfer decoding (RFC 2045 §6), charsets, RFC 2047 encoded words, RFC 2231 values, HTML."""

from __future__ import annotations

import base64
import time

import pytest

from pillarbox.mail.decode import (
    UnknownTransferEncoding,
    base64_decoded_size,
    codec_for,
    decode_base64,
    decode_charset,
    decode_rfc2231,
    decode_transfer,
    decode_words,
    html_to_text,
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"aGVsbG8=", b"hello"),
        (b"aGVs\r\nbG8=", b"hello"),
        (b"aGVsbG8", b"hello"),  # padding missing
        (b"aGVs!bG8*=", b"hello"),  # junk characters
        (b"aGk=aGk=", b"hihi"),  # padding in the middle
        (b"aGk==a", b"hi"),
        (b"aGVsbG8gd", b"hello "),  # one dangling character
        (b"", b""),
    ],
)
def test_lenient_base64(data: bytes, expected: bytes) -> None:
    assert decode_base64(data) == expected
    assert base64_decoded_size(data) == len(expected)


def test_transfer_encodings() -> None:
    assert decode_transfer(b"a=3Db=\r\nc", "QUOTED-PRINTABLE") == b"a=bc"
    assert decode_transfer(base64.b64encode(b"\x00\xff"), "BASE64") == b"\x00\xff"
    assert decode_transfer(b"raw", "8BIT") == b"raw"
    with pytest.raises(UnknownTransferEncoding):
        decode_transfer(b"x", "X-UUENCODE")


class TestCharsets:
    def test_aliases_and_unknown(self) -> None:
        assert codec_for("ISO-8859-1") == "cp1252"
        assert codec_for(' "utf8" ') == "utf-8"
        assert codec_for("gb2312") == "gb18030"
        assert codec_for("x-unknown") is None
        assert codec_for("hex") is None  # a Python codec, not a charset
        assert codec_for("unicode_escape") is None
        assert codec_for("us-ascii") is None  # 8-bit text under us-ascii reaches the fallback

    def test_decoding_policy(self) -> None:
        assert decode_charset(b"\x93quoted\x94", "iso-8859-1") == "\u201cquoted\u201d"
        assert decode_charset("Grüße".encode(), None) == "Grüße"
        assert decode_charset(b"Gr\xfc\xdfe", None) == "Grüße"
        assert decode_charset(b"bad \xff utf8", "utf-8") == "bad \ufffd utf8"
        assert decode_charset(b"\x1b$B$3$s$K$A$O\x1b(B", "iso-2022-jp") == "こんにちは"


class TestEncodedWords:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("=?ISO-8859-1?Q?a?= b", "a b"),
            ("=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab"),  # RFC 2047 §8 examples
            ("=?ISO-8859-1?Q?a?=  \t =?ISO-8859-1?Q?b?=", "ab"),
            ("=?ISO-8859-1?Q?a_b?=", "a b"),
            ("=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=", "a b"),
            ("(=?ISO-8859-1?Q?a?= b)", "(a b)"),
            ("=?utf-8*en?b?SGk=?=", "Hi"),  # RFC 2231 §5 language suffix
            ("=?utf-8?q?with space?=", "with space"),
            ("=?bogus?q?x?=", "x"),
            ("=?utf-8?x?nope?=", "=?utf-8?x?nope?="),
            ("no words here", "no words here"),
        ],
    )
    def test_decode(self, text: str, expected: str) -> None:
        assert decode_words(text) == expected


def test_rfc2231_values() -> None:
    assert decode_rfc2231("utf-8'en'%E2%82%AC%20rate") == "€ rate"
    assert decode_rfc2231("iso-8859-1''caf%E9") == "café"
    assert decode_rfc2231("no-quotes%20here") == "no-quotes here"


class TestHtml:
    def test_text_extraction(self) -> None:
        html = (
            "<!DOCTYPE html><html><head><title>T</title><style>p{}</style></head><body>"
            "<!-- hidden --><p>One &amp; two</p><div>three<br/>four</div>"
            "<script>var x = '<p>no</p>';</script>five</body></html>"
        )
        assert html_to_text(html) == "One & two\n\nthree\nfour\nfive"

    @pytest.mark.parametrize(
        "hostile",
        [
            "<!--<a" * 100_000,
            "<a " * 100_000,
            "<![CDATA[" * 100_000,
            "<" * 300_000,
            "<?x" * 100_000,
        ],
    )
    def test_hostile_markup_is_linear(self, hostile: str) -> None:
        # html.parser rescans to the end for each unterminated construct (quadratic); these
        # would take minutes without the defusing pass.
        started = time.perf_counter()
        html_to_text(hostile)
        assert time.perf_counter() - started < 5
