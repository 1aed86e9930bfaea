"""The "enotify" extension (RFC 5435) with its one method we have, mailto (RFC 5436): the
method URI's parse and checks, the notify_method_capability answers and ``:encodeurl``.

- **Methods**: only ``mailto`` (RFC 5435 §3.2 makes it the one every implementation has). A
  URI of another scheme, or a mailto URI that is not one, is an error (§3.2 MUST): refused
  at compile time when the method is a constant, a runtime error (the message kept) when it
  is made of variables. ``valid_notify_method`` answers with the same check (§4 MUST).
- **mailto URIs** (RFC 6068 §2): ``mailto:`` addr-specs separated by ``,`` (or ``%2C``),
  then ``?`` and ``name=value`` header fields joined by ``&``, percent-encoded UTF-8. The
  recipients are the path's addresses and those of the ``to`` and ``cc`` fields (RFC 5436
  §2.7); ``subject`` and ``body`` become the notification's; the fields §2.7 calls unsafe
  (``auto-submitted``, ``received``, ``from``, ``message-id``, ``date``) and the others in
  :data:`IGNORED_FIELDS` are ignored; any other field is copied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from pillarbox.errors import InvalidName
from pillarbox.mail.address import parse_address
from pillarbox.sieve import editheader

#: The notification methods (URI schemes) we send (RFC 5435 §3.2; RFC 5804 §1.7 NOTIFY).
METHODS: Final = ("mailto",)
#: RFC 5435 §3.4: "1" high, "2" normal (the default), "3" low.
IMPORTANCE: Final = ("1", "2", "3")
#: RFC 5435 §3.5: optionname = l-d *l-d-p, value = *(%x01-09 / %x0B-0C / %x0E-FF).
_OPTION: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*=[^\x00\r\n]*")
#: URI header fields never copied: RFC 5436 §2.7's unsafe ones (MUST be ignored), ``bcc``
#: (it would hide a recipient; ``to`` and ``cc`` are read as recipients), and those delivery
#: writes itself (trace, MIME structure, the importance, our verdict fields).
IGNORED_FIELDS: Final = frozenset(
    {
        "auto-submitted",
        "received",
        "from",
        "message-id",
        "date",
        "sender",
        "bcc",
        "return-path",
        "delivered-to",
        "in-reply-to",
        "references",
        "mime-version",
        "importance",
        "dkim-signature",
        "authentication-results",
        "x-pillarbox-spam",
    }
)
_IGNORED_PREFIXES: Final = ("resent-", "content-", "arc-")
#: RFC 3986 §2: characters a URI may hold as they are (anything else is percent-encoded).
_URI_CHARS: Final = re.compile(r"[A-Za-z0-9\-._~:/?@!$&'()*+,;=%\[\]]*")
_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")  # RFC 3986 §3.1


class InvalidMethod(ValueError):
    """A notification URI we cannot send to: another scheme, or an invalid mailto URI."""


@dataclass(frozen=True, slots=True)
class Mailto:
    """A parsed mailto URI (RFC 6068): ``to`` (the path's addresses and the ``to`` fields'),
    ``cc``, the ``subject`` and ``body`` fields (None when absent), and the other fields
    to copy, in order, each name once."""

    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    subject: str | None = None
    body: str | None = None
    fields: tuple[tuple[str, str], ...] = ()

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every recipient once, To before Cc (RFC 5436 §2.7: the envelope recipients)."""
        return tuple(dict.fromkeys((*self.to, *self.cc)))


def parse(uri: str) -> Mailto:
    """The mailto URI ``uri``; :class:`InvalidMethod` if it is not one we can send to."""
    found = _SCHEME.match(uri)
    if found is None:
        raise InvalidMethod(f"not a URI: {uri[:80]!r}")
    scheme = found.group(1).lower()
    if scheme not in METHODS:
        raise InvalidMethod(f"unsupported method {scheme!r}")
    rest = uri[found.end() :]
    if _URI_CHARS.fullmatch(rest) is None or _PERCENT.search(rest) is not None:
        raise InvalidMethod("invalid character or percent-encoding in the mailto URI")
    path, _, query = rest.partition("?")
    to = _addresses(_decoded(path), "to")
    cc: tuple[str, ...] = ()
    subject = body = None
    fields: dict[str, tuple[str, str]] = {}
    for hfield in query.split("&") if query else ():
        raw_name, equals, raw_value = hfield.partition("=")
        name, value = _decoded(raw_name), _decoded(raw_value)
        if not equals or not editheader.valid_name(name):
            raise InvalidMethod(f"invalid header field {raw_name!r} in the mailto URI")
        key = name.lower()
        if key == "to":
            to += _addresses(value, "to")
        elif key == "cc":
            cc += _addresses(value, "cc")
        elif key == "subject":
            subject = value if subject is None else subject
        elif key == "body":
            body = value if body is None else body
        elif key not in IGNORED_FIELDS and not key.startswith(_IGNORED_PREFIXES):
            fields.setdefault(key, (name, value))
    unique_to, unique_cc = tuple(dict.fromkeys(to)), tuple(dict.fromkeys(cc))
    return Mailto(unique_to, unique_cc, subject, body, tuple(fields.values()))


def valid(uri: str) -> bool:
    """RFC 5435 §4: whether ``notify`` could send to ``uri`` (the same check)."""
    try:
        parse(uri)
    except InvalidMethod:
        return False
    return True


def capability(uri: str, name: str) -> str | None:
    """RFC 5435 §5: the value of capability ``name`` (any case) for ``uri``; None — the test
    fails, without an error — for a URI we cannot send to or a capability we do not know.
    mailto's "online" is "maybe" (RFC 5436 §2.2: we cannot know whether anyone reads)."""
    if name.lower() != "online" or not valid(uri):
        return None
    return "maybe"


def valid_option(option: str) -> bool:
    """RFC 5435 §3.5: ``optionname=value`` (mailto uses none, RFC 5436 §2.5)."""
    return _OPTION.fullmatch(option) is not None


def encode_url(value: str) -> str:
    """RFC 5435 §6 ``:encodeurl``: every octet of the UTF-8 outside RFC 3986's "unreserved"
    set percent-encoded."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="-._~")


def _decoded(text: str) -> str:
    """RFC 3986 §2.1 percent-decoding, the octets as UTF-8 (RFC 6068 §2)."""
    if "%" not in text:
        return text
    data = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), text.encode())
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidMethod("percent-encoded octets that are not UTF-8") from None


def _addresses(text: str, what: str) -> tuple[str, ...]:
    """The addr-specs of a ``,``-separated list (RFC 6068 §2), normalised."""
    if not text:
        return ()
    out: list[str] = []
    for piece in text.split(","):
        try:
            out.append(parse_address(piece.strip()).normalised)
        except InvalidName:
            raise InvalidMethod(f"invalid {what} address {piece.strip()[:80]!r}") from None
    return tuple(out)
