"""A filter's changes to a message's header and body, applied to its raw bytes.

Implementation notes:

- Header values travel with their folds as bare LF, as Sendmail and Postfix pass them; they
  come back the same way and are written with CRLF. A value whose continuation line does not
  begin with a blank would end the field early (a new field, or the body) and is refused as
  a protocol error; so is a field name outside RFC 5322 §3.6.8's ``ftext``.
- ``i`` inserts at a position among the message's fields (0: the top); ``m`` changes the
  n-th field of a name (from 1), removes it when the value is empty, and adds the field when
  there is no n-th one, as libmilter's ``smfi_chgheader`` documents.
- A replaced body's bare LFs become CRLF: the store keeps messages in CRLF form.
- The header fields and the body are shown to filters as split here (:func:`split`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pillarbox.milter import protocol as p

_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 §3.6.8 ftext
_BARE_LF = re.compile(rb"(?<!\r)\n")


def split(message: bytes) -> tuple[list[bytes], bytes]:
    """The message's header fields (each with its folds and final CRLF) and its body (after
    the empty line). A message without an empty line is all header (RFC 5322 §2.1)."""
    end = 0 if message.startswith(b"\r\n") else message.find(b"\r\n\r\n")
    if end == 0:
        head, body = b"", message[2:]
    elif end < 0:
        head, body = message, b""
    else:
        head, body = message[: end + 2], message[end + 4 :]
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    if fields and not fields[-1].endswith(b"\r\n"):
        fields[-1] += b"\r\n"  # no empty line and no final CRLF: a field added would join it
    return fields, body


def name_value(field: bytes, leading_space: bool) -> tuple[str, str]:
    """A field as a filter sees it: its name, and its value with LF folds and, unless the
    filter asked for it, without the blanks after the colon."""
    name, _, value = field.partition(b":")
    value = value.rstrip(b"\r\n").replace(b"\r\n", b"\n")
    if not leading_space:
        value = value.lstrip(b" \t")
    return name.decode("ascii", "replace"), value.decode("utf-8", "surrogateescape")


def _field(name: str, value: str, leading_space: bool) -> bytes:
    raw_name = name.encode("utf-8", "surrogateescape")
    if not _FIELD_NAME.fullmatch(raw_name):
        raise p.MilterProtocolError(f"header field name {name!r}")
    raw = value.encode("utf-8", "surrogateescape").replace(b"\r\n", b"\n")
    if b"\r" in raw or any(line[:1] not in (b" ", b"\t") for line in raw.split(b"\n")[1:]):
        raise p.MilterProtocolError(f"header field {name!r}: a line that is not a fold")
    blank = b"" if leading_space else b" "
    return raw_name + b":" + blank + raw.replace(b"\n", b"\r\n") + b"\r\n"


def _is(field: bytes, name: str) -> bool:
    # bytes.lower() folds ASCII only, as Sendmail's sm_strcasecmp of field names; str.lower()
    # would match "\u212aeywords" (KELVIN SIGN) with Keywords.
    return field.partition(b":")[0].strip().lower() == name.encode("utf-8", "replace").lower()


def apply(message: bytes, edits: Sequence[p.Edit], leading_space: bool) -> bytes:
    """``message`` with the header and body edits among ``edits`` made, in order (envelope
    edits and quarantine are the caller's)."""
    fields, body = split(message)
    new_body: bytearray | None = None
    for edit in edits:
        match edit:
            case p.AddHeader(name=name, value=value):
                fields.append(_field(name, value, leading_space))
            case p.InsertHeader(index=index, name=name, value=value):
                fields.insert(min(index, len(fields)), _field(name, value, leading_space))
            case p.ChangeHeader(index=index, name=name, value=value):
                _change(fields, index, name, value, leading_space)
            case p.ReplaceBody(data=data):
                if new_body is None:
                    new_body = bytearray()
                new_body += data  # in place: a copy per piece was quadratic in the pieces
    if new_body is not None:
        body = _BARE_LF.sub(b"\r\n", bytes(new_body))
    return b"".join(fields) + b"\r\n" + body


def _change(fields: list[bytes], index: int, name: str, value: str, leading_space: bool) -> None:
    seen = 0
    for position, field in enumerate(fields):
        if _is(field, name):
            seen += 1
            if seen == max(index, 1):
                if value:
                    fields[position] = _field(name, value, leading_space)
                else:
                    del fields[position]
                return
    if value:
        fields.append(_field(name, value, leading_space))
