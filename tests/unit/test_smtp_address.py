"""RFC 5321 mailbox parsing, IDNA normalisation and the relay-relevant shapes."""

from __future__ import annotations

import ipaddress

import pytest

from pillarbox.errors import InvalidName
from pillarbox.mail.address import (
    Address,
    domain_to_ascii,
    domain_to_unicode,
    parse_address,
)


@pytest.mark.parametrize(
    ("text", "local", "domain"),
    [
        ("user@example.com", "user", "example.com"),
        ("User.Name+tag@EXAMPLE.Com", "User.Name+tag", "example.com"),
        ("a!#$%&'*+-/=?^_`{|}~@x.example", "a!#$%&'*+-/=?^_`{|}~", "x.example"),
        ('"a b"@example.com', "a b", "example.com"),
        ('"a\\"b\\\\c"@example.com', 'a"b\\c', "example.com"),
        ('""@example.com', "", "example.com"),
        ("u@[192.0.2.1]", "u", "[192.0.2.1]"),
        ("u@[IPv6:2001:DB8:0:0:0:0:0:1]", "u", "[IPv6:2001:db8::1]"),
        ("u@[x-tag:content]", "u", "[x-tag:content]"),
        ("jörg@bücher.example", "jörg", "xn--bcher-kva.example"),
        ("u@straße.de", "u", "xn--strae-oqa.de"),  # IDNA 2008 keeps ß (2003 made it "ss")
        ("u@ＥＸＡＭＰＬＥ。com", "u", "example.com"),  # UTS #46 width and dot mapping
        ("u@xn--bcher-kva.example", "u", "xn--bcher-kva.example"),
    ],
)
def test_parse(text: str, local: str, domain: str) -> None:
    address = parse_address(text)
    assert (address.local, address.domain) == (local, domain)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no-at-sign",
        "@example.com",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a b@example.com",
        "a@",
        "a@-example.com",
        "a@example-.com",
        "a@exa_mple.com",
        "a@example..com",
        '"unterminated@example.com',
        '"a"b@example.com',
        "a@[300.1.1.1]",
        "a@[IPv6:zz::1]",
        "a@[1.2.3.4",
        "a@" + "x" * 64 + ".com",
        "a@" + ("x" * 60 + ".") * 5 + "com",
        "a@xn--zz-zzzzzz.example",  # not a valid Punycode A-label
        "a@ex\u200dample.com",  # ZWJ: CONTEXTJ, refused outright
        "a@☃.example",  # symbols are DISALLOWED in IDNA 2008
        "a\x00@example.com",
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidName):
        parse_address(text)


def test_utf8_refused_without_smtputf8() -> None:
    with pytest.raises(InvalidName):
        parse_address("jörg@example.com", utf8=False)
    with pytest.raises(InvalidName):
        parse_address("a@bücher.example", utf8=False)
    assert parse_address("a@xn--bcher-kva.example", utf8=False).domain_unicode == "bücher.example"


def test_relay_shapes_are_exposed() -> None:
    assert parse_address("victim%other.example@mx.example").percent_hack
    assert parse_address("other!victim@mx.example").bang_path
    assert parse_address('"x"@mx.example').quoted
    dotted = parse_address("u@mx.example.")
    assert dotted.trailing_dot
    assert dotted.domain == "mx.example"
    literal = parse_address("u@[192.0.2.7]")
    assert literal.is_literal
    assert literal.literal_ip == ipaddress.IPv4Address("192.0.2.7")
    assert parse_address("u@[x-tag:abc]").literal_ip is None
    assert parse_address("u@example.com").literal_ip is None
    plain = parse_address("u@example.com")
    assert not (plain.percent_hack or plain.bang_path or plain.quoted or plain.trailing_dot)


def test_normalised_and_key() -> None:
    assert parse_address('"John.Doe"@Example.COM').normalised == "John.Doe@example.com"
    assert parse_address('"a b"@x.example').normalised == '"a b"@x.example'
    assert parse_address("John@Example.com").key == "john@example.com"
    assert str(parse_address("a@B.example")) == "a@b.example"
    assert Address("postmaster", "").normalised == "postmaster"
    assert Address("postmaster", "").is_bare_postmaster


def test_needs_smtputf8_only_for_local_part() -> None:
    assert parse_address("jörg@example.com").needs_smtputf8
    assert not parse_address("a@bücher.example").needs_smtputf8


def test_domain_round_trip() -> None:
    assert domain_to_ascii("Bücher.Example") == "xn--bcher-kva.example"
    assert domain_to_unicode("xn--bcher-kva.example") == "bücher.example"
    with pytest.raises(InvalidName):
        domain_to_ascii("")
