"""Command lines ↔ command values (RFC 5321 §4.1 and the extensions' parameters)."""

from __future__ import annotations

import pytest

from pillarbox.mail.address import Address, parse_address
from pillarbox.smtp import replies as R
from pillarbox.smtp.errors import CommandError
from pillarbox.smtp.extensions import Capabilities, Extension
from pillarbox.smtp.grammar import (
    Auth,
    Bdat,
    Body,
    Command,
    Data,
    Expn,
    Hello,
    HelloKind,
    Help,
    MailFrom,
    MailParams,
    Noop,
    Notify,
    OriginalRecipient,
    Path,
    Quit,
    RcptParams,
    RcptTo,
    Ret,
    Rset,
    StartTls,
    Vrfy,
    Xforward,
    decode_xtext,
    encode_xtext,
    format_command,
    parse_command,
)
from pillarbox.smtp.replies import Reply

ALL = frozenset(e.value for e in Extension)


def path(text: str) -> Path:
    return Path(parse_address(text))


PARSED: list[tuple[bytes, Command]] = [
    (b"EHLO client.example", Hello(HelloKind.EHLO, "client.example")),
    (b"helo [192.0.2.1]", Hello(HelloKind.HELO, "[192.0.2.1]")),
    (b"LHLO x", Hello(HelloKind.LHLO, "x")),
    (b"MAIL FROM:<>", MailFrom(Path(None))),
    (b"MAIL FROM: <a@b.example>", MailFrom(path("a@b.example"))),
    (
        b"MAIL FROM:<a@b.example> SIZE=42 BODY=8bitmime RET=hdrs ENVID=x+2By AUTH=<>",
        MailFrom(
            path("a@b.example"),
            MailParams(size=42, body=Body.EIGHT_BIT_MIME, ret=Ret.HDRS, envid="x+y", auth="<>"),
        ),
    ),
    # RFC 8689 §2 item 8: a parameter without a value.
    (b"MAIL FROM:<> requiretls", MailFrom(Path(None), MailParams(requiretls=True))),
    (
        b"MAIL FROM:<@r1.example,@R2.example:a@b.example>",
        MailFrom(Path(parse_address("a@b.example"), ("r1.example", "r2.example"))),
    ),
    (b"RCPT TO:<postmaster>", RcptTo(Path(Address("postmaster", "")))),
    (
        b"RCPT TO:<c@d.example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;c+40d.example",
        RcptTo(
            path("c@d.example"),
            RcptParams(
                frozenset({Notify.FAILURE, Notify.DELAY}),
                OriginalRecipient("rfc822", "c@d.example"),
            ),
        ),
    ),
    (
        b"RCPT TO:<c@d.example> ORCPT=utf-8;j\\x{00F6}rg@d.example",
        RcptTo(path("c@d.example"), RcptParams(orcpt=OriginalRecipient("utf-8", "jörg@d.example"))),
    ),
    (b'RCPT TO:<"a>b"@d.example>', RcptTo(path('"a>b"@d.example'))),
    (b"DATA", Data()),
    (b"BDAT 100", Bdat(100, last=False)),
    (b"bdat 0 last", Bdat(0, last=True)),
    (b"RSET", Rset()),
    (b"NOOP anything", Noop()),
    (b"QUIT", Quit()),
    (b"STARTTLS", StartTls()),
    (b"HELP", Help("")),
    (b"VRFY someone", Vrfy("someone")),
    (b"EXPN list", Expn("list")),
    (b"AUTH PLAIN", Auth("PLAIN")),
    (b"AUTH plain =", Auth("PLAIN", b"")),
    (b"AUTH PLAIN AGEAYg==", Auth("PLAIN", b"\0a\0b")),
    # Postfix's XFORWARD (XFORWARD_README): values are xtext; Postfix sends IPv6 as IPv6:…
    (
        b"XFORWARD NAME=mail.example.net ADDR=192.0.2.7 PROTO=ESMTP HELO=mail.example.net",
        Xforward(
            (
                ("NAME", "mail.example.net"),
                ("ADDR", "192.0.2.7"),
                ("PROTO", "ESMTP"),
                ("HELO", "mail.example.net"),
            )
        ),
    ),
    (
        b"xforward source=REMOTE addr=IPv6:2001:db8::1",
        Xforward((("SOURCE", "REMOTE"), ("ADDR", "IPv6:2001:db8::1"))),
    ),
    (
        b"XFORWARD HELO=a+20b NAME=[UNAVAILABLE]",
        Xforward((("HELO", "a b"), ("NAME", "[UNAVAILABLE]"))),
    ),
]


@pytest.mark.parametrize(("line", "command"), PARSED)
def test_parse(line: bytes, command: Command) -> None:
    assert parse_command(line, offered=ALL) == command


@pytest.mark.parametrize(("line", "command"), PARSED)
def test_format_parses_back(line: bytes, command: Command) -> None:
    wire = format_command(command)
    assert wire.endswith(b"\r\n")
    assert parse_command(wire[:-2], offered=ALL) == command


REFUSED: list[tuple[bytes, Reply]] = [
    (b"", R.COMMAND_UNRECOGNIZED),
    (b"XYZZY", R.COMMAND_UNRECOGNIZED),
    (b"M\xc3\xa4IL FROM:<>", R.COMMAND_UNRECOGNIZED),
    (b"MAIL FROM:<a@b>\x00", R.SYNTAX_ERROR),
    (b"MAIL FROM:<\xff@b>", R.SYNTAX_ERROR),
    (b"MAIL TO:<a@b>", R.SYNTAX_ERROR),
    (b"MAIL FROM:a@b", R.BAD_SENDER_SYNTAX),
    (b"MAIL FROM:<a@b", R.BAD_SENDER_SYNTAX),
    (b"MAIL FROM:<a@b>SIZE=1", R.BAD_SENDER_SYNTAX),
    (b"MAIL FROM:<@a:>", R.BAD_SENDER_SYNTAX),
    (b"MAIL FROM:<@a b@c>", R.BAD_SENDER_SYNTAX),
    (b"MAIL FROM:<a,@b:c@d>", R.BAD_SENDER_SYNTAX),
    (b"MAIL FROM:<a@b> SIZE=", R.INVALID_ARGUMENTS),
    (b"MAIL FROM:<a@b> SIZE=-1", R.INVALID_ARGUMENTS),
    (b"MAIL FROM:<a@b> SMTPUTF8=yes", R.INVALID_ARGUMENTS),
    (b"MAIL FROM:<a@b> BODY=9BIT", R.INVALID_ARGUMENTS),
    (b"MAIL FROM:<a@b> ENVID=" + b"x" * 101, R.INVALID_ARGUMENTS),
    (b"MAIL FROM:<a@b> ENVID=a+zz", R.INVALID_ARGUMENTS),
    (b"MAIL FROM:<a@b> ENVID=a=b", R.INVALID_ARGUMENTS),
    (b"MAIL FROM:<a@b> ENVID=a+00b", R.INVALID_ARGUMENTS),
    (b"MAIL FROM:<a@b> ENVID=a+0Ab", R.INVALID_ARGUMENTS),
    (b"MAIL FROM:<a@b> size=1 SIZE=2", R.INVALID_ARGUMENTS),
    (b"MAIL FROM:<a@b> NOTIFY=NEVER", R.PARAMETER_NOT_IMPLEMENTED),
    (b"MAIL FROM:<a@b> BODY=BINARYMIME", R.PARAMETER_NOT_IMPLEMENTED),
    ("MAIL FROM:<jörg@b>".encode(), R.NON_ASCII_SENDER),
    (b"RCPT TO:<>", R.BAD_RECIPIENT_SYNTAX),
    (b"RCPT TO:c@d", R.BAD_RECIPIENT_SYNTAX),
    ("RCPT TO:<jörg@b>".encode(), R.NON_ASCII_RECIPIENT),
    (b"RCPT TO:<c@d> NOTIFY=NEVER,DELAY", R.INVALID_ARGUMENTS),
    (b"RCPT TO:<c@d> NOTIFY=FAILURE,FAILURE", R.INVALID_ARGUMENTS),
    (b"RCPT TO:<c@d> ORCPT=rfc822", R.INVALID_ARGUMENTS),
    (b"RCPT TO:<c@d> ORCPT=rfc 822;x", R.INVALID_ARGUMENTS),
    (b"RCPT TO:<c@d> ORCPT=rfc822;c+00@d", R.INVALID_ARGUMENTS),
    (b"RCPT TO:<c@d> ORCPT=utf-8;c\\x{0}@d", R.INVALID_ARGUMENTS),
    (b"RCPT TO:<c@d> SIZE=1", R.PARAMETER_NOT_IMPLEMENTED),
    (b"DATA now", R.INVALID_ARGUMENTS),
    (b"BDAT", R.INVALID_ARGUMENTS),
    (b"BDAT -1", R.INVALID_ARGUMENTS),
    (b"BDAT 1 FIRST", R.INVALID_ARGUMENTS),
    (b"BDAT 1 LAST x", R.INVALID_ARGUMENTS),
    (b"BDAT " + b"9" * 21, R.INVALID_ARGUMENTS),
    (b"EHLO", R.INVALID_ARGUMENTS),
    (b"VRFY", R.INVALID_ARGUMENTS),
    (b"AUTH", R.INVALID_ARGUMENTS),
    (b"AUTH PL@IN", R.INVALID_ARGUMENTS),
    (b"AUTH PLAIN a b", R.INVALID_ARGUMENTS),
    (b"AUTH PLAIN AGEAYg", R.AUTH_BAD_BASE64),
    (b"AUTH PLAIN =AGEAYg==", R.AUTH_BAD_BASE64),
    (b"XFORWARD", R.INVALID_ARGUMENTS),
    (b"XFORWARD IDENT=x", R.XFORWARD_BAD_ATTRIBUTE),
    (b"XFORWARD ADDR", R.XFORWARD_BAD_ATTRIBUTE),
    (b"XFORWARD HELO=a+zz", R.SYNTAX_ERROR),
]


@pytest.mark.parametrize(("line", "reply"), REFUSED)
def test_refused(line: bytes, reply: Reply) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(line, offered=ALL)
    assert info.value.reply == reply


def test_parameters_need_an_offer() -> None:
    with pytest.raises(CommandError) as info:
        parse_command(b"MAIL FROM:<a@b> SIZE=1")  # after HELO nothing is offered
    assert info.value.reply == R.PARAMETER_NOT_IMPLEMENTED
    only_size = frozenset({"SIZE"})
    assert parse_command(b"MAIL FROM:<a@b> SIZE=1", offered=only_size) == MailFrom(
        path("a@b"), MailParams(size=1)
    )
    with pytest.raises(CommandError):
        parse_command(b"MAIL FROM:<a@b> RET=FULL", offered=only_size)


def test_utf8_recipient_needs_smtputf8_transaction() -> None:
    line = "RCPT TO:<jörg@bücher.example>".encode()
    command = parse_command(line, offered=ALL, smtputf8=True)
    assert command == RcptTo(path("jörg@bücher.example"))


@pytest.mark.parametrize(
    ("text", "xtext"),
    [("a+b=c", "a+2Bb+3Dc"), ("plain", "plain"), ("sp ace", "sp+20ace"), ("é", "+C3+A9")],
)
def test_xtext(text: str, xtext: str) -> None:
    assert encode_xtext(text) == xtext
    assert decode_xtext(xtext) == text


def test_capabilities_round_trip_and_lenient_parse() -> None:
    caps = Capabilities(frozenset({"SIZE", "AUTH", "PIPELINING", "X-OTHER"}), 100, ("PLAIN",))
    assert caps.ehlo_lines() == ("PIPELINING", "SIZE 100", "AUTH PLAIN", "X-OTHER")
    assert Capabilities.from_ehlo_lines(caps.ehlo_lines()) == caps
    parsed = Capabilities.from_ehlo_lines(["AUTH=LOGIN PLAIN", "auth plain cram-md5", "SIZE", ""])
    assert parsed.auth_mechanisms == ("LOGIN", "PLAIN", "CRAM-MD5")
    assert parsed.size is None
    assert "SIZE" in parsed
