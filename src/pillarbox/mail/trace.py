"""Trace and submission header fields the SMTP server adds, as pure functions of their values.

Implementation notes (RFC 5321 §4.4, RFC 3848, RFC 6531 §4.3, RFC 6409 §8, RFC 9228):

- Every builder returns one complete header field as bytes ending in CRLF, to be prepended to
  the message as received (RFC 5321 §4.4: trace fields go on top, existing ones are never
  touched). Nothing here reads the clock or the network: the caller passes the date, host
  names and ids.
- Anything the client chose (HELO argument, reverse DNS name it controls) only enters a field
  where the grammar allows it, or inside an escaped comment; CR, LF and other controls never
  reach the header, so a client cannot inject fields.
- :func:`complete_submission` adds a missing ``Date``/``Message-ID`` at the end of the header
  (RFC 6409 §8.2, §8.3) and leaves every other byte of the message as it was.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from pillarbox.mail.headers import scan_header

_CRLF = b"\r\n"
# RFC 5321 §4.1.2 Domain (LDH labels), leniently allowing "_" seen in real HELOs; or an
# address literal (§4.1.3).
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_ADDRESS_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]+\]")
# RFC 5322 §3.2.3 atext, for the ``id`` clause (RFC 5321 §4.4: ID = Atom / msg-id).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ATOM = re.compile(_ATEXT)
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class TlsSummary:
    """What the Received comment says about the TLS session (Postfix's wording)."""

    version: str
    cipher: str
    bits: int | None = None


def with_protocol(
    *, esmtp: bool, tls: bool, authenticated: bool, utf8: bool = False, lmtp: bool = False
) -> str:
    """The ``with`` keyword of a Received field.

    RFC 5321 §4.4 (SMTP/ESMTP), RFC 3848 §2 (ESMTPA/ESMTPS/ESMTPSA, LMTP…), RFC 6531 §4.3
    (UTF8SMTP…). A HELO session is plain ``SMTP``; TLS and AUTH need EHLO.
    """
    suffix = ("S" if tls else "") + ("A" if authenticated else "")
    if utf8:
        return ("UTF8LMTP" if lmtp else "UTF8SMTP") + suffix
    if lmtp:
        return "LMTP" + suffix
    if not esmtp:
        return "SMTP"
    return "ESMTP" + suffix


@functools.lru_cache(maxsize=1024)
def address_literal(ip: str) -> str:
    """RFC 5321 §4.1.3 address literal: ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is None:
            return f"[IPv6:{address.compressed}]"
        address = mapped
    return f"[{address}]"


# Both are pure and called for every message: the same client address and the same second
# recur (parsing the address and formatting the date were 2–3 % of the MX's GIL time each).
@functools.lru_cache(maxsize=4)
def _date_time(date: datetime) -> str:
    """RFC 5322 §3.3 date-time of ``date`` (whole seconds)."""
    return format_datetime(date)


def _comment(text: str) -> str:
    """Text made safe inside an RFC 5322 §3.2.2 comment: controls gone, parentheses escaped."""
    text = _CONTROLS.sub(" ", text)
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _is_domain(name: str) -> bool:
    return bool(_DOMAIN.fullmatch(name) or _ADDRESS_LITERAL.fullmatch(name)) and len(name) <= 255


def received(
    *,
    helo: str,
    client_ip: str,
    client_host: str | None,
    by_host: str,
    protocol: str,
    queue_id: str,
    date: datetime,
    recipients: Sequence[str] = (),
    tls: TlsSummary | None = None,
    software: str = "Pillarbox",
) -> bytes:
    """A Received field (RFC 5321 §4.4 Time-stamp-line).

    ``from HELO (client_host [ip])`` — the verified reverse DNS name, if any, then the address
    literal (TCP-info); a HELO that is not a domain or address literal is replaced by the
    address literal and quoted in a comment. An empty ``client_ip`` is a client on a UNIX
    socket: ``from HELO`` without TCP-info. ``for <rcpt>`` only when there is exactly one
    recipient, so a copy does not reveal the other (Bcc) recipients. ``date`` must be aware.
    """
    if date.tzinfo is None:
        raise ValueError("Received date must be timezone-aware")
    if not _ATOM.fullmatch(queue_id):
        raise ValueError(f"queue id {queue_id!r} is not an RFC 5322 atom")
    if not client_ip:
        # A client on a UNIX socket (LMTP from a front MTA on this host) has no TCP-info:
        # RFC 5321 §4.4 Extended-Domain is then the Domain alone.
        valid = bool(helo) and _is_domain(helo)
        from_clause = (
            f"from {helo}" if valid else f'from localhost (invalid HELO "{_comment(helo)}")'
        )
    else:
        literal = address_literal(client_ip)
        tcp_info = (
            f"{client_host} {literal}" if client_host and _is_domain(client_host) else literal
        )
        if helo and _is_domain(helo):
            from_clause = f"from {helo} ({tcp_info})"
        else:
            from_clause = f'from {literal} ({tcp_info}) (invalid HELO "{_comment(helo)}")'
    lines = [f"Received: {from_clause}"]
    if tls is not None:
        bits = f" ({tls.bits}/{tls.bits} bits)" if tls.bits else ""
        lines.append(f"\t(using {_comment(tls.version)} with cipher {_comment(tls.cipher)}{bits})")
    lines.append(f"\tby {by_host} ({_comment(software)}) with {protocol} id {queue_id}")
    stamp = _date_time(date.replace(microsecond=0))
    if len(recipients) == 1:
        lines.append(f"\tfor <{_CONTROLS.sub('', recipients[0])}>; {stamp}")
    else:
        lines[-1] += f"; {stamp}"
    return ("\r\n".join(lines) + "\r\n").encode()


def return_path(reverse_path: str) -> bytes:
    """``Return-Path: <reverse-path>`` added at final delivery (RFC 5321 §4.4); ``""`` is the
    null path ``<>`` of bounces."""
    return f"Return-Path: <{_CONTROLS.sub('', reverse_path)}>\r\n".encode()


def delivered_to(address: str) -> bytes:
    """``Delivered-To: address`` (RFC 9228 §4), the mailbox a copy was delivered to."""
    return f"Delivered-To: {_CONTROLS.sub('', address)}\r\n".encode()


def make_message_id(unique: str, domain: str) -> str:
    """An RFC 5322 §3.6.4 msg-id ``<unique@domain>``; ``unique`` must be unique (the caller
    draws it, e.g. from ``secrets.token_hex``), ``domain`` should be the sender's host."""
    if not _DOT_ATOM.fullmatch(unique) or not _is_domain(domain):
        raise ValueError("message id parts must be a dot-atom and a domain")
    return f"<{unique}@{domain}>"


def complete_submission(raw: bytes, *, date: datetime, message_id: str) -> bytes:
    """Add ``Date`` (RFC 6409 §8.2) and ``Message-ID`` (§8.3) if the submitted message lacks
    them, at the end of its header, using its own line ending. Returns ``raw`` unchanged when
    both are present."""
    if date.tzinfo is None:
        raise ValueError("Date must be timezone-aware")
    block = scan_header(raw, 0, len(raw))
    present = {f.key for f in block.fields}
    header = raw[: block.body_start]
    eol = b"\n" if b"\n" in header and _CRLF not in header else _CRLF
    added: list[bytes] = []
    if "date" not in present:
        added.append(b"Date: " + format_datetime(date).encode() + eol)
    if "message-id" not in present:
        added.append(b"Message-ID: " + _CONTROLS.sub("", message_id).encode() + eol)
    if not added:
        return raw
    at = block.fields[-1].end if block.fields else 0
    if at and raw[at - 1] != 0x0A:
        added.insert(0, eol)  # the last field had no line ending (a header-only message)
    return raw[:at] + b"".join(added) + raw[at:]
