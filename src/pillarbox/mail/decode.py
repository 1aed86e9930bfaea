"""Turning transmitted bytes into text: transfer decoding, charsets, encoded words, crude HTML.

Everything here is lenient on purpose (the Dovecot way): mail in the wild carries bad base64,
unpadded or line-broken encoded words, mislabelled and unknown charsets. Decoding never raises
for bad *content*; the one exception is :class:`UnknownTransferEncoding`, which IMAP BINARY must
answer with ``[UNKNOWN-CTE]`` (RFC 3516 §4.3) and so needs to tell apart.

Charset policy: a known declared charset decodes with U+FFFD replacement; an undeclared,
``us-ascii`` (8-bit text under that label is the commonest lie) or unknown charset tries strict
UTF-8 first, then windows-1252 (WHATWG's reading of "latin-1").
"""

from __future__ import annotations

import binascii
import codecs
import re
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import unquote_to_bytes

from pillarbox.errors import UserError

#: Content-Transfer-Encoding values whose body is the content itself (RFC 2045 §6.1), upper case.
IDENTITY_ENCODINGS = frozenset({"7BIT", "8BIT", "BINARY"})
_FALLBACK = "cp1252"

# Labels that mail uses but Python spells differently, or where a superset decodes more real
# mail (gb2312 → gb18030, ks_c_5601 → cp949, shift_jis → cp932: WHATWG encoding standard).
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "windows-874": "cp874",
    "tis-620": "cp874",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
}
# Codecs Python knows that are not mail charsets (decoding with them would interpret escapes or
# always fail) are treated as unknown; so is ascii, to reach the 8-bit fallback.
_NOT_CHARSETS = frozenset(
    {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "ascii"}
)


class UnknownTransferEncoding(UserError):
    """The part's Content-Transfer-Encoding is not one we can decode (RFC 3516 ``UNKNOWN-CTE``)."""


@lru_cache(maxsize=256)
def codec_for(charset: str | None) -> str | None:
    """The Python codec name for a MIME charset label, or None if unknown (or us-ascii)."""
    if not charset:
        return None
    label = charset.strip().strip('"').lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    # Bytes-to-bytes codecs (hex, zlib, base64…) are not charsets: they decode to bytes.
    if info.name.replace("-", "_") in _NOT_CHARSETS or not isinstance(info.decode(b"")[0], str):
        return None
    return info.name


def decode_charset(data: bytes, charset: str | None) -> str:
    """Text of ``data`` in ``charset``, never raising (see the module's charset policy)."""
    codec = codec_for(charset)
    if codec is not None:
        return data.decode(codec, "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(_FALLBACK, "replace")


def decode_base64(data: bytes) -> bytes:
    """Lenient base64 (RFC 2045 §6.8): junk characters are ignored, bad padding repaired.

    Padding ends a run, so concatenated encodings ("aGk=aGk=") decode run by run; a run with
    missing padding decodes as far as it goes.
    """
    clean = data.translate(None, _NOT_BASE64)
    if b"=" not in clean.rstrip(b"="):
        return binascii.a2b_base64(_padded(clean.rstrip(b"=")))
    return b"".join(binascii.a2b_base64(_padded(run)) for run in _PADDING.split(clean))


def _padded(run: bytes) -> bytes:
    tail = len(run) % 4
    if tail == 1:
        return run[:-1]
    return run + b"=" * (4 - tail) if tail else run


def base64_decoded_size(data: bytes) -> int:
    """The length :func:`decode_base64` returns for ``data``, counted without decoding."""
    total = 0
    for run in _PADDING.split(data.translate(None, _NOT_BASE64)):
        full, rest = divmod(len(run), 4)
        total += full * 3 + max(0, rest - 1)
    return total


_PADDING = re.compile(rb"=+")
_NOT_BASE64 = bytes(
    set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
)


def decode_transfer(body: bytes, encoding: str) -> bytes:
    """Undo a Content-Transfer-Encoding (RFC 2045 §6); ``encoding`` as in ``BodyPart.encoding``.

    Raises :class:`UnknownTransferEncoding` for an encoding that is neither an identity one nor
    base64/quoted-printable.
    """
    if encoding in IDENTITY_ENCODINGS:
        return body
    if encoding == "BASE64":
        return decode_base64(body)
    if encoding == "QUOTED-PRINTABLE":
        return binascii.a2b_qp(body)
    raise UnknownTransferEncoding(f"unknown Content-Transfer-Encoding {encoding!r}")


def header_bytes_to_text(value: bytes) -> str:
    """Raw header bytes as text: UTF-8 (RFC 6532) if valid, else the 8-bit fallback."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode(_FALLBACK, "replace")


def escaped_to_text(value: str) -> str:
    """Text of a ``surrogateescape``-decoded raw value (as kept in the model), for display."""
    if value.isascii():
        return value
    return header_bytes_to_text(value.encode("utf-8", "surrogateescape"))


# RFC 2047 §2 encoded-word; the charset may carry an RFC 2231 §5 "*language" suffix. Encoded
# text is matched up to the next "?" so that (illegal but common) spaces inside still decode.
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?]*)?\?([bBqQ])\?([^?]*)\?=")


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words in unstructured text (RFC 2047 §6).

    Whitespace between two encoded words is dropped (§6.2), and adjacent words in the same
    charset are joined before decoding so a multi-byte character split across words survives.
    """
    if "=?" not in text:
        return text
    out: list[str] = []
    pending_charset: str | None = None
    pending = bytearray()
    last = 0
    for match in _ENCODED_WORD.finditer(text):
        gap = text[last : match.start()]
        if gap and not (pending_charset is not None and gap.isspace()):
            if pending_charset is not None:
                out.append(decode_charset(bytes(pending), pending_charset))
                pending_charset, pending = None, bytearray()
            out.append(gap)
        charset, kind, payload = match.group(1), match.group(2), match.group(3)
        raw = payload.encode("utf-8", "surrogateescape")
        data = decode_base64(raw) if kind in "bB" else binascii.a2b_qp(raw, header=True)
        if pending_charset is not None and pending_charset.lower() != charset.lower():
            out.append(decode_charset(bytes(pending), pending_charset))
            pending = bytearray()
        pending_charset = charset
        pending += data
        last = match.end()
    if pending_charset is not None:
        out.append(decode_charset(bytes(pending), pending_charset))
    out.append(text[last:])
    return "".join(out)


#: C0 controls, DEL and the line separators a reader may take for the end of a line.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def printable(text: str) -> str:
    """Text a sender chose (a header value, a file name) fit for one header field or line:
    no control characters or line separators (a bare CR, or U+2028, would end the field; the
    email package and HTTP servers refuse them), and bytes that were not UTF-8 (kept as
    surrogates by the scan) as U+FFFD."""
    cleaned = _CONTROLS.sub(" ", text)
    return "".join("\ufffd" if "\udc80" <= c <= "\udcff" else c for c in cleaned)


def decode_rfc2231(value: str) -> str:
    """Decode an RFC 2231 §4 extended value ``charset'language'%XX…`` to text."""
    charset: str | None = None
    parts = value.split("'", 2)
    if len(parts) == 3:
        charset, _, value = parts
    return decode_charset(unquote_to_bytes(value.encode("utf-8", "surrogateescape")), charset)


_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "footer",
        "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol",
        "p", "pre", "section", "table", "td", "th", "tr", "ul",
    }
)  # fmt: skip
_SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript"})
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_TAG = re.compile(r"<[^<>]*>")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self.skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.chunks.append(data)


_DECLARATION = re.compile(r"<[!?][^<>]*>")
_STRAY_LT = re.compile(r"<(?![^<>]*>)")


def _defused(html: str) -> str:
    """``html`` without the constructs ``html.parser`` searches to the end of input for.

    An unterminated comment, declaration or tag makes ``HTMLParser.close`` rescan the rest of
    the document once per such construct: quadratic time on hostile input. Comments (an
    unterminated one runs to the end, as in browsers), declarations and processing
    instructions carry no text and are removed; a "<" with no ">" before the next "<" is text.
    Every step is one linear pass.
    """
    pieces: list[str] = []
    pos = 0
    while (start := html.find("<!--", pos)) >= 0:
        pieces.append(html[pos:start])
        end = html.find("-->", start + 4)
        pos = len(html) if end < 0 else end + 3
    pieces.append(html[pos:])
    return _STRAY_LT.sub("&lt;", _DECLARATION.sub("", "".join(pieces)))


def html_to_text(html: str) -> str:
    """Crude plain text of an HTML document for search and previews (not for display).

    Tags, scripts and styles are dropped, block elements become line breaks, entities are
    decoded. ``html.parser`` is tolerant by design; should it still trip on some input, a plain
    tag strip is used instead so indexing never fails.
    """
    extractor = _TextExtractor()
    html = _defused(html)
    try:
        extractor.feed(html)
        extractor.close()
        text = "".join(extractor.chunks)
    except (AssertionError, ValueError, IndexError):
        text = _TAG.sub(" ", html)
    text = _SPACES.sub(" ", text)
    return _BLANK_LINES.sub("\n\n", text).strip()
