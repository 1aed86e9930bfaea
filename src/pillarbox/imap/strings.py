"""IMAP's string forms and character classes (RFC 9051 §4.3, §9): atom, quoted, literal.

The one place that decides how a value goes on the wire, for commands and responses alike:
an atom when every octet is ATOM-CHAR (or ASTRING-CHAR where an astring is allowed), a quoted
string when every octet is TEXT-CHAR without CR, LF and NUL (8-bit only after UTF8=ACCEPT or
IMAP4rev2, and then only as valid UTF-8 — RFC 9755 §3), a literal otherwise; ``literal8``
(RFC 3516 §4.2) is the caller's explicit choice for binary data.

The checks are ``bytes.translate`` deletions against precomputed tables, so the hot paths
(FETCH responses for tens of thousands of messages) stay in C.
"""

from __future__ import annotations

from typing import Final

#: RFC 9051 §9 atom-specials minus CTL (handled by range): ( ) { SP % * " \ ]
_ATOM_SPECIALS: Final = b'(){ %*"\\]'

#: RFC 9051 §9 ATOM-CHAR: any CHAR (%x01-7F) except atom-specials and CTL.
ATOM_CHARS: Final = bytes(c for c in range(0x21, 0x7F) if c not in _ATOM_SPECIALS)
#: ASTRING-CHAR = ATOM-CHAR / resp-specials ("]").
ASTRING_CHARS: Final = ATOM_CHARS + b"]"
#: list-char = ATOM-CHAR / list-wildcards / resp-specials (RFC 9051 §9).
LIST_CHARS: Final = ASTRING_CHARS + b"%*"
#: tag = 1*<any ASTRING-CHAR except "+">.
TAG_CHARS: Final = ASTRING_CHARS.replace(b"+", b"")
#: TEXT-CHAR without quoted-specials: what a quoted string holds unescaped (7-bit form).
_QUOTED_PLAIN: Final = bytes(c for c in range(0x01, 0x80) if c not in b'\r\n"\\')
#: ... and the 8-bit octets a UTF-8 quoted string may add (validity checked separately).
_QUOTED_PLAIN_8BIT: Final = _QUOTED_PLAIN + bytes(range(0x80, 0x100))

NIL: Final = b"NIL"


def only(data: bytes, allowed: bytes) -> bool:
    """True if every octet of ``data`` is in ``allowed`` (empty data included)."""
    return not data.translate(None, allowed)


def can_quote(data: bytes, *, utf8: bool = False) -> bool:
    """Whether ``data`` may go as a quoted string (CR, LF and NUL never may)."""
    if not data.translate(None, _QUOTED_PLAIN + b'"\\'):
        return True
    if not utf8 or data.translate(None, _QUOTED_PLAIN_8BIT + b'"\\'):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def quoted(data: bytes) -> bytes:
    """A quoted string; the caller has checked :func:`can_quote`."""
    if b"\\" in data or b'"' in data:
        data = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b'"' + data + b'"'


def literal(data: bytes, *, non_sync: bool = False) -> bytes:
    """``{n}CRLF`` + data (RFC 9051 §4.3); ``non_sync`` gives RFC 7888's ``{n+}``."""
    return b"{%d%s}\r\n%s" % (len(data), b"+" if non_sync else b"", data)


def literal8(data: bytes, *, non_sync: bool = False) -> bytes:
    """``~{n}CRLF`` + data (RFC 3516 §4.2, RFC 4466 §2.4): the only form that may carry NUL."""
    return b"~{%d%s}\r\n%s" % (len(data), b"+" if non_sync else b"", data)


def as_bytes(value: str | bytes) -> bytes:
    """Text as the octets it stands for; stored header text keeps 8-bit garbage as surrogates."""
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def string(value: str | bytes, *, utf8: bool = False) -> bytes:
    """RFC 9051 ``string``: quoted when possible, else a literal.

    NUL cannot be carried by a string at all (CHAR8 excludes it); it is dropped rather than
    sending a protocol violation. Message data that may hold NUL goes through :func:`literal8`.
    """
    data = as_bytes(value)
    if b"\x00" in data:
        data = data.replace(b"\x00", b"")
    return quoted(data) if can_quote(data, utf8=utf8) else literal(data)


def nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    """RFC 9051 ``nstring``: NIL for None, else :func:`string`."""
    return NIL if value is None else string(value, utf8=utf8)


def astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    """RFC 9051 ``astring``: a bare atom when possible, else :func:`string`."""
    data = as_bytes(value)
    if data and not data.translate(None, ASTRING_CHARS):
        return data
    return string(data, utf8=utf8)
