"""Modified UTF-7, the IMAP4rev1 encoding of mailbox names (RFC 3501 §5.1.3).

Printable US-ASCII other than "&" stands for itself; "&" is written "&-"; any other run of
characters is UTF-16BE in modified BASE64 (RFC 2152 with "," for "/", no padding) between "&"
and "-". Decoding is strict in the sense of the RFC's "MUST": every name has exactly one valid
encoding, so a name that decodes also re-encodes to the same bytes. Rejected are: 8-bit or control
octets, an unterminated or empty shift, characters outside the modified BASE64 alphabet, non-zero
padding bits, an odd number of UTF-16 octets, unpaired surrogates, printable ASCII encoded in
BASE64, and two encoded runs back to back (which must be one run).
"""

from __future__ import annotations

import base64
import binascii

from pillarbox.imap.errors import Mutf7Error

_DIRECT_LOW = 0x20
_DIRECT_HIGH = 0x7E
_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


def _is_direct(char: str) -> bool:
    return _DIRECT_LOW <= ord(char) <= _DIRECT_HIGH


def _encode_run(run: str) -> str:
    try:
        raw = run.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise Mutf7Error(f"cannot encode {run!r}: unpaired surrogate") from exc
    return "&" + base64.b64encode(raw).rstrip(b"=").decode("ascii").replace("/", ",") + "-"


def encode(name: str) -> str:
    """Encode a Unicode mailbox name; the result is printable US-ASCII."""
    if name.isascii() and name.isprintable() and "&" not in name:
        return name
    out: list[str] = []
    run_start = -1
    for index, char in enumerate(name):
        if _is_direct(char):
            if run_start >= 0:
                out.append(_encode_run(name[run_start:index]))
                run_start = -1
            out.append("&-" if char == "&" else char)
        elif run_start < 0:
            run_start = index
    if run_start >= 0:
        out.append(_encode_run(name[run_start:]))
    return "".join(out)


def _decode_run(chunk: str) -> str:
    if not chunk or not set(chunk) <= _B64_ALPHABET:
        raise Mutf7Error(f"invalid modified BASE64 run {chunk!r}")
    if len(chunk) % 4 == 1:
        raise Mutf7Error(f"truncated modified BASE64 run {chunk!r}")
    padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except binascii.Error as exc:  # pragma: no cover - alphabet and length checked above
        raise Mutf7Error(f"invalid modified BASE64 run {chunk!r}") from exc
    # RFC 2152: the bits after the last full octet are zero, so re-encoding must reproduce it.
    if base64.b64encode(raw).rstrip(b"=").decode("ascii").replace("/", ",") != chunk:
        raise Mutf7Error(f"non-zero padding bits in {chunk!r}")
    if len(raw) % 2:
        raise Mutf7Error(f"odd number of UTF-16 octets in {chunk!r}")
    try:
        text = raw.decode("utf-16-be", errors="strict")
    except UnicodeDecodeError as exc:
        raise Mutf7Error(f"unpaired surrogate in {chunk!r}") from exc
    if any(_is_direct(char) for char in text):
        raise Mutf7Error(f"printable ASCII must not be BASE64-encoded in {chunk!r}")
    return text


def decode(encoded: str | bytes) -> str:
    """Decode a modified UTF-7 mailbox name, raising :class:`Mutf7Error` if it is not canonical."""
    if isinstance(encoded, bytes):
        try:
            encoded = encoded.decode("ascii")
        except UnicodeDecodeError as exc:
            raise Mutf7Error("8-bit octet in a modified UTF-7 name") from exc
    if "&" not in encoded:
        if not (encoded.isascii() and encoded.isprintable()):
            raise Mutf7Error("control character in a modified UTF-7 name")
        return encoded
    out: list[str] = []
    index = 0
    length = len(encoded)
    previous_was_run = False
    while index < length:
        char = encoded[index]
        if char != "&":
            if not _is_direct(char):
                raise Mutf7Error("control or 8-bit character in a modified UTF-7 name")
            out.append(char)
            index += 1
            previous_was_run = False
            continue
        end = encoded.find("-", index + 1)
        if end < 0:
            raise Mutf7Error("unterminated BASE64 run (missing '-')")
        if end == index + 1:
            out.append("&")
            previous_was_run = False
        else:
            if previous_was_run:
                raise Mutf7Error("adjacent BASE64 runs must be merged into one")
            out.append(_decode_run(encoded[index + 1 : end]))
            previous_was_run = True
        index = end + 1
    return "".join(out)
