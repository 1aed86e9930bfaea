"""Fuzz the header-level parsers of pillarbox.mail: addresses, header scanning and the field
value parsers (address lists, msg-ids, dates, Content-Type, encoded words, RFC 2231).

Input: a header block or field value (bytes; also read as text). Asserted, beyond "no
exception":

* ``scan_header`` never raises and its fields lie in order inside the scanned range;
* ``parse_address`` raises nothing but InvalidName, and an address it returns parses back from
  its normalised form to an equal address (the property its docstring promises);
* ``domain_to_ascii`` raises nothing but InvalidName, and its result is ASCII and stable;
* the field value parsers raise nothing and stay within their item limits.
"""

from __future__ import annotations

import dataclasses

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox"]):
    from pillarbox.errors import InvalidName
    from pillarbox.mail.address import domain_to_ascii, parse_address
    from pillarbox.mail.decode import decode_rfc2231, decode_words
    from pillarbox.mail.headers import (
        parse_addresses,
        parse_content_header,
        parse_date,
        parse_msg_ids,
        raw_text,
        scan_header,
        unfold,
    )


def _address(text: str, utf8: bool) -> None:
    try:
        address = parse_address(text, utf8=utf8)
    except InvalidName:
        return
    again = parse_address(address.normalised, utf8=True)
    same = dataclasses.replace(again, quoted=address.quoted, trailing_dot=address.trailing_dot)
    assert same == address, (text, address, again)


def _domain(text: str) -> None:
    try:
        ascii_form = domain_to_ascii(text)
    except InvalidName:
        return
    assert ascii_form.isascii(), (text, ascii_form)
    assert domain_to_ascii(ascii_form) == ascii_form, (text, ascii_form)


def check(data: bytes) -> None:
    block = scan_header(data, 0, len(data), max_fields=200)
    previous = 0
    for f in block.fields:
        assert previous <= f.start <= f.end <= len(data), (f, previous)
        previous = f.end
        value = raw_text(unfold(f.value))
        parse_addresses(value, limit=50)
    text = data.decode("utf-8", "surrogateescape")
    line = text.split("\n", 1)[0]
    for utf8 in (False, True):
        _address(line, utf8)
    _domain(line)
    found, _ = parse_addresses(text, limit=50)
    assert len(found) <= 52  # the limit, plus a closing group marker
    assert len(parse_msg_ids(text, limit=50)) <= 50
    parse_date(text)
    parse_content_header(text)
    decode_words(text)
    decode_rfc2231(text)


def seeds() -> list[bytes]:
    return [
        b'From: "A, B" <a@b.example>, group: c@d.example, (x) e@[192.0.2.1];\r\n'
        b"To: =?utf-8?b?w6k=?= <j\xc3\xb6rg@b\xc3\xbccher.example>\r\n"
        b"Date: Fri, 06 Jun 2025 10:00:00 +0200 (CEST)\r\n"
        b"Message-ID: <a.b@c>\r\nReferences: <1@x> <2@y>\r\n"
        b"Content-Type: text/plain; charset*=utf-8''%C3%A9; name*0=a; name*1=b\r\n\r\nbody",
        b'"x y"@c.example',
        b"postmaster",
        b"u@[IPv6:2001:db8::1]",
        b"xn--bcher-kva.example",
        b"multipart/mixed; boundary=\"=_x\"; x*0*=us-ascii'en'a%20b",
        b"=?iso-8859-1?q?caf=E9?= =?utf-8?B?4oKs?=",
        b"Tue, 1 Jul 2003 10:52:37 +0200",
    ]


if __name__ == "__main__":
    harness.main("mail_headers", check, seeds(), max_len=65536)
