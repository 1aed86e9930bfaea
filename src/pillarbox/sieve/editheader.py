"""The "editheader" extension (RFC 5293): the header fields ``addheader`` makes and the
message ``deleteheader`` and ``addheader`` leave.

Edits change the script's view of the message (:class:`~.message.SieveMessage`) at once, so
later tests see them (§3); the run hands the edited message to delivery, which stores it —
parsed again from those bytes (DESIGN "parse once": the stored parse is the stored bytes').

Invariants:

- A field is ``name: value`` with a valid name (RFC 5322 §3.6.8 ftext: printable ASCII but
  ":"); a value with non-ASCII text is RFC 2047-encoded (§4: "MUST"), every value folded at
  spaces to 78 columns, its own line breaks unfolded into spaces — a value can never start
  another field. A field longer than ``max_header_size`` octets, or a line of it longer than
  RFC 5322's 998, is refused (a runtime error).
- Received and Auto-Submitted fields are never deleted (§6; Pigeonhole protects these
  two): such a ``deleteheader`` does nothing. Nor are the fields delivery put on top
  (``SieveMessage.delivery_fields``); ``addheader`` adds below them, and never adds the
  fields that block is made of and that our own code trusts there (:data:`NOT_ADDED`, as
  Pigeonhole refuses its own X-Sieve-Redirected-From): the web UI's spam verdict and spam
  learning read that block.
- Rebuilding keeps every field not deleted as it was, byte for byte; unread fields past
  :data:`~.message.MAX_FIELDS`, the empty line and the body follow unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.header import Header

from pillarbox.mail.dsn import fold
from pillarbox.mail.headers import HeaderField

#: RFC 5322 §3.6.8 field-name: 1*ftext, ftext = %d33-57 / %d59-126.
FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
#: Fields a script cannot delete (RFC 5293 §6; Pigeonhole's fixed list).
PROTECTED = frozenset({"received", "auto-submitted"})
#: Fields a script cannot add: our delivery's own (``pillarbox.policy.verdict.SPAM_HEADER``,
#: held equal by a test), which the web UI and spam learning trust at the top of a message.
NOT_ADDED = frozenset({"return-path", "delivered-to", "x-pillarbox-spam", "authentication-results"})
#: RFC 5322 §2.1.1: a line holds at most 998 characters.
MAX_LINE = 998
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")


class HeaderTooLarge(ValueError):
    """The field would be longer than the limit, or have a line over 998 octets."""


def valid_name(name: str) -> bool:
    return FIELD_NAME.fullmatch(name) is not None


def new_field(name: str, value: str, max_size: int) -> HeaderField:
    """The field ``addheader name value`` adds (module notes); its position (-1) marks it as
    new. :class:`HeaderTooLarge` if it does not fit."""
    value = _LINE_BREAKS.sub(" ", value).encode("utf-8", "replace").decode("utf-8")
    if len(name) + 2 + len(value.encode("utf-8", "surrogatepass")) > max_size:
        raise HeaderTooLarge(f"header field {name!r} is larger than {max_size} octets")
    if value.isascii():
        text = fold(name, value)
    else:  # RFC 5293 §4: MUST be encoded as RFC 2047 encoded words
        encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
        text = f"{name}: {encoded}\r\n"
    data = text.encode("ascii")
    if any(len(line) > MAX_LINE for line in data.split(b"\r\n")):
        raise HeaderTooLarge(f"header field {name!r} has a word longer than a line may be")
    return HeaderField(name, name.lower(), data[len(name) + 1 : -2], -1, -1)


def size(field: HeaderField) -> int:
    """Octets ``field`` takes in the message, line ending included."""
    if field.start >= 0:
        return field.end - field.start
    return len(field.name) + 1 + len(field.value) + 2


def rebuild(raw: bytes, original: Sequence[HeaderField], fields: Sequence[HeaderField]) -> bytes:
    """``raw`` with its header fields ``original`` (as scanned) replaced by ``fields``."""
    rest = original[-1].end if original else 0
    out: list[bytes] = []
    for f in fields:
        if f.start >= 0:
            out.append(raw[f.start : f.end])
        else:
            out.append(f.name.encode("ascii") + b":" + f.value + b"\r\n")
    out.append(raw[rest:])
    return b"".join(out)
