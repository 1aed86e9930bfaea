"""SMTP command lines ↔ frozen command values (RFC 5321 §4.1 and the extensions' ABNF).

:func:`parse_command` turns one command line (without its CRLF) into a command value or raises
`~pillarbox.smtp.errors.CommandError` carrying the reply that answers it; it is
what the server role uses. :func:`format_command` is its inverse and what the client role uses,
so ``parse_command(format_command(c)) == c`` for every well-formed command.

Liberal where real clients deviate harmlessly: verbs in any case, extra spaces around arguments
and after ``FROM:``/``TO:``. Strict where leniency is dangerous: paths need their angle brackets,
parameters are only accepted for extensions the session offered (RFC 5321 §4.1.1.11 / 555),
non-ASCII needs SMTPUTF8 (RFC 6531 §3.5).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from dataclasses import dataclass
from typing import TypeVar

from pillarbox.errors import InvalidName
from pillarbox.mail.address import Address, domain_to_ascii, parse_address
from pillarbox.smtp import replies as R
from pillarbox.smtp.errors import CommandError
from pillarbox.smtp.extensions import XFORWARD_ATTRIBUTES, Extension
from pillarbox.smtp.replies import Reply

#: RFC 3461 §4.4 and §4.2: length limits of ENVID and of the whole ORCPT value.
MAX_ENVID = 100
MAX_ORCPT = 500

_VERB = re.compile(rb"[A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # C0 controls and DEL
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")  # RFC 5321 §4.1.2 esmtp-keyword
_SASL_MECH = re.compile(r"[A-Z0-9_-]{1,20}")  # RFC 4422 §3.1
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")
_UTF8_ADDR_HEX = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")  # RFC 6533 §3 utf-8-addr-xtext


_E = TypeVar("_E", bound=enum.StrEnum)


class HelloKind(enum.StrEnum):
    HELO = "HELO"  # RFC 5321 §4.1.1.1
    EHLO = "EHLO"  # RFC 5321 §4.1.1.1
    LHLO = "LHLO"  # RFC 2033 §4.1


#: For :attr:`Hello.extended`, asked by every command: ``HelloKind.HELO`` is an attribute
#: lookup through Python 3.11's slow EnumType hook (see ``smtp.server``'s states).
_HELO = HelloKind.HELO
#: The hello verbs' kinds by their bytes: ``HelloKind(text)`` runs EnumType's Python-level
#: ``__call__`` and ``Enum.__new__``, once a connection.
_HELLO_KINDS = {kind.value.encode(): kind for kind in HelloKind}


class Body(enum.StrEnum):
    """MAIL ``BODY=`` (RFC 6152 §2, RFC 3030 §3)."""

    SEVEN_BIT = "7BIT"
    EIGHT_BIT_MIME = "8BITMIME"
    BINARY_MIME = "BINARYMIME"


class Ret(enum.StrEnum):
    """MAIL ``RET=`` (RFC 3461 §4.3)."""

    FULL = "FULL"
    HDRS = "HDRS"


class Notify(enum.StrEnum):
    """RCPT ``NOTIFY=`` (RFC 3461 §4.1); NEVER excludes the others."""

    NEVER = "NEVER"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    DELAY = "DELAY"


@dataclass(frozen=True, slots=True)
class Path:
    """A reverse- or forward-path (RFC 5321 §4.1.2). ``mailbox`` None is the null path ``<>``.

    ``route`` is the obsolete source route ``@a,@b:`` (normalised domains), which RFC 5321
    §4.1.1.3 and Appendix C say to accept and ignore; it is kept so policy can see it.
    """

    mailbox: Address | None
    route: tuple[str, ...] = ()

    @property
    def is_null(self) -> bool:
        return self.mailbox is None

    def __str__(self) -> str:
        route = ",".join(f"@{d}" for d in self.route) + ":" if self.route else ""
        return f"<{route}{self.mailbox.normalised if self.mailbox else ''}>"


@dataclass(frozen=True, slots=True)
class OriginalRecipient:
    """RCPT ``ORCPT=addr-type;xtext`` (RFC 3461 §4.2), with the xtext decoded."""

    addr_type: str
    address: str


@dataclass(frozen=True, slots=True)
class MailParams:
    """The ESMTP parameters of MAIL FROM, decoded."""

    size: int | None = None  # RFC 1870 §3
    body: Body | None = None  # RFC 6152 §2
    smtputf8: bool = False  # RFC 6531 §3.4
    ret: Ret | None = None  # RFC 3461 §4.3
    envid: str | None = None  # RFC 3461 §4.4, xtext decoded
    auth: str | None = None  # RFC 4954 §5, xtext decoded ("<>" when unknown)
    requiretls: bool = False  # RFC 8689 §2 item 8, no value


@dataclass(frozen=True, slots=True)
class RcptParams:
    """The ESMTP parameters of RCPT TO, decoded (RFC 3461 §4.1, §4.2)."""

    notify: frozenset[Notify] | None = None
    orcpt: OriginalRecipient | None = None


@dataclass(frozen=True, slots=True)
class Hello:
    kind: HelloKind
    domain: str

    @property
    def extended(self) -> bool:
        return self.kind is not _HELO


@dataclass(frozen=True, slots=True)
class MailFrom:
    path: Path
    params: MailParams = MailParams()


@dataclass(frozen=True, slots=True)
class RcptTo:
    path: Path
    params: RcptParams = RcptParams()


@dataclass(frozen=True, slots=True)
class Data:
    pass


@dataclass(frozen=True, slots=True)
class Bdat:
    """RFC 3030 §2: ``size`` octets follow the command line at once."""

    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class StartTls:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    topic: str = ""


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str


@dataclass(frozen=True, slots=True)
class Expn:
    argument: str


@dataclass(frozen=True, slots=True)
class Auth:
    """RFC 4954 §4: ``initial_response`` None when absent, ``b""`` when sent as ``=``."""

    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class Xforward:
    """Postfix XFORWARD (XFORWARD_README): the original client's attributes as the front MTA
    saw them, in order, names uppercased, values xtext-decoded (``[UNAVAILABLE]`` and
    ``[TEMPUNAVAIL]`` kept as sent)."""

    attributes: tuple[tuple[str, str], ...]


Command = (
    Hello
    | MailFrom
    | RcptTo
    | Data
    | Bdat
    | Rset
    | Noop
    | Quit
    | StartTls
    | Help
    | Vrfy
    | Expn
    | Auth
    | Xforward
)

_NO_ARGUMENT: dict[bytes, type[Data | Rset | Quit | StartTls]] = {
    b"DATA": Data,
    b"RSET": Rset,
    b"QUIT": Quit,
    b"STARTTLS": StartTls,
}
#: The parameters each extension allows on MAIL and RCPT (RFC 1870, 6152, 6531, 3461, 4954).
_PARAM_EXTENSION = {
    "SIZE": Extension.SIZE,
    "BODY": Extension.EIGHTBITMIME,
    "SMTPUTF8": Extension.SMTPUTF8,
    "RET": Extension.DSN,
    "ENVID": Extension.DSN,
    "AUTH": Extension.AUTH,
    "REQUIRETLS": Extension.REQUIRETLS,
    "NOTIFY": Extension.DSN,
    "ORCPT": Extension.DSN,
}
_NO_RCPT_PARAMS = RcptParams()
_MAIL_PARAMS = frozenset({"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH", "REQUIRETLS"})
_RCPT_PARAMS = frozenset({"NOTIFY", "ORCPT"})


def _fail(reply: Reply, message: str) -> CommandError:
    return CommandError(message, reply)


def parse_command(
    line: bytes, *, offered: frozenset[str] = frozenset(), smtputf8: bool = False
) -> Command:
    """Parse one command line (CRLF removed).

    ``offered`` is the set of EHLO keywords offered in this session (empty after HELO, so any
    MAIL/RCPT parameter is refused); ``smtputf8`` says whether the current transaction's MAIL
    carried SMTPUTF8, which a non-ASCII RCPT needs (RFC 6531 §3.5).
    """
    verb_bytes, _, rest = line.partition(b" ")
    verb = verb_bytes.upper()
    if not _VERB.fullmatch(verb_bytes):
        raise _fail(R.COMMAND_UNRECOGNIZED, "command unrecognized")
    try:
        arg = rest.decode("utf-8").strip(" ")
    except UnicodeDecodeError:
        raise _fail(R.SYNTAX_ERROR, "argument is not UTF-8") from None
    if _CONTROL.search(arg):
        raise _fail(R.SYNTAX_ERROR, "control character in command")
    if verb in _NO_ARGUMENT:
        if arg:
            raise _fail(R.INVALID_ARGUMENTS, f"{verb.decode()} takes no argument")
        return _NO_ARGUMENT[verb]()
    match verb:
        case b"EHLO" | b"HELO" | b"LHLO":
            if not arg:
                raise _fail(R.INVALID_ARGUMENTS, "domain required")
            return Hello(_HELLO_KINDS[verb], arg)
        case b"MAIL":
            return _parse_mail(arg, offered)
        case b"RCPT":
            return _parse_rcpt(arg, offered, smtputf8)
        case b"BDAT":
            return _parse_bdat(arg)
        case b"NOOP":
            return Noop()  # RFC 5321 §4.1.1.9: any argument is ignored
        case b"HELP":
            return Help(arg)
        case b"VRFY" | b"EXPN":
            if not arg:
                raise _fail(R.INVALID_ARGUMENTS, "argument required")
            return Vrfy(arg) if verb == b"VRFY" else Expn(arg)
        case b"AUTH":
            return _parse_auth(arg)
        case b"XFORWARD":
            return _parse_xforward(arg)
    raise _fail(R.COMMAND_UNRECOGNIZED, "command unrecognized")


def _parse_xforward(arg: str) -> Xforward:
    """``XFORWARD attr=xtext ...``: one or more of the offered attributes."""
    attributes: list[tuple[str, str]] = []
    for word in arg.split():
        name, equals, value = word.partition("=")
        name = name.upper()
        if not equals or name not in XFORWARD_ATTRIBUTES:
            raise _fail(R.XFORWARD_BAD_ATTRIBUTE, f"bad XFORWARD attribute {name!r}")
        try:
            attributes.append((name, decode_xtext(value)))
        except ValueError:
            raise _fail(R.SYNTAX_ERROR, "bad XFORWARD value") from None
    if not attributes:
        raise _fail(R.INVALID_ARGUMENTS, "XFORWARD needs an attribute")
    return Xforward(tuple(attributes))


def decode_sasl(text: str) -> bytes:
    """Decode a base64 SASL line as RFC 4954 §4 demands: any non-alphabet character or
    misplaced padding is an error (``=`` alone is the empty initial response)."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise _fail(R.AUTH_BAD_BASE64, "invalid base64") from None


def _parse_auth(arg: str) -> Auth:
    mechanism, _, initial = arg.partition(" ")
    mechanism = mechanism.upper()
    if not _SASL_MECH.fullmatch(mechanism) or " " in initial.strip(" "):
        raise _fail(R.INVALID_ARGUMENTS, "invalid AUTH arguments")
    initial = initial.strip(" ")
    if not initial:
        return Auth(mechanism)
    return Auth(mechanism, b"" if initial == "=" else decode_sasl(initial))


def _parse_bdat(arg: str) -> Bdat:
    parts = arg.split()
    # RFC 3030 §2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]; chunk-size = 1*DIGIT
    if not 1 <= len(parts) <= 2 or not (parts[0].isascii() and parts[0].isdigit()):
        raise _fail(R.INVALID_ARGUMENTS, "BDAT needs a chunk size")
    if len(parts[0]) > 20:
        raise _fail(R.INVALID_ARGUMENTS, "chunk size too large")
    if len(parts) == 2 and parts[1].upper() != "LAST":
        raise _fail(R.INVALID_ARGUMENTS, "BDAT end marker must be LAST")
    return Bdat(int(parts[0]), len(parts) == 2)


def _split_path(arg: str, prefix: str, bad: Reply) -> tuple[str, list[str]]:
    """Split ``FROM:<path> params`` into the path's inside and the parameter words."""
    if arg[: len(prefix)].upper() != prefix:
        raise _fail(R.SYNTAX_ERROR, f"expected {prefix}")
    rest = arg[len(prefix) :].lstrip(" ")
    if not rest.startswith("<"):
        raise _fail(bad, "path must be in angle brackets")
    end = _path_end(rest)
    if end < 0:
        raise _fail(bad, "unterminated path")
    inner, params = rest[1:end], rest[end + 1 :]
    if params and not params.startswith(" "):
        raise _fail(bad, "junk after path")
    return inner, params.split()


def _path_end(text: str) -> int:
    """The index of the first ``>`` outside a Quoted-string in ``text``, or -1."""
    end = text.find(">")
    if end < 0 or '"' not in text[:end]:
        return end  # no quote before it: the first ">" is the one (the usual case)
    return _path_end_by_char(text)


def _path_end_by_char(text: str) -> int:
    """:func:`_path_end` for any input, following quotes and quoted-pairs."""
    quoted = escaped = False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            return i
    return -1


def _parse_path(inner: str, *, utf8: bool, bad: Reply) -> Path:
    route: tuple[str, ...] = ()
    if inner.startswith("@"):
        # RFC 5321 §4.1.2: A-d-l = At-domain *( "," At-domain ), then ":" Mailbox.
        adl, colon, inner = inner.partition(":")
        if not colon:
            raise _fail(bad, "source route without mailbox")
        try:
            route = tuple(
                domain_to_ascii(hop[1:]) if hop.startswith("@") else _raise_invalid(hop)
                for hop in adl.split(",")
            )
        except InvalidName as exc:
            raise _fail(bad, str(exc)) from None
    try:
        return Path(parse_address(inner, utf8=utf8), route)
    except InvalidName as exc:
        raise _fail(bad, str(exc)) from None


def _raise_invalid(hop: str) -> str:
    raise InvalidName(f"invalid source route hop: {hop!r}")


def _params(words: list[str], allowed: frozenset[str], offered: frozenset[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for word in words:
        keyword, eq, value = word.partition("=")
        if not _KEYWORD.fullmatch(keyword) or (eq and not value):
            raise _fail(R.INVALID_ARGUMENTS, f"malformed parameter {word!r}")
        keyword = keyword.upper()
        if keyword not in allowed or _PARAM_EXTENSION[keyword] not in offered:
            raise _fail(R.PARAMETER_NOT_IMPLEMENTED, f"parameter {keyword} not offered")
        if keyword in result:
            raise _fail(R.INVALID_ARGUMENTS, f"duplicate parameter {keyword}")
        # RFC 5321 §4.1.2 esmtp-value = 1*(%d33-60 / %d62-126), RFC 6531 §3.3 adds UTF-8.
        if "=" in value:
            raise _fail(R.INVALID_ARGUMENTS, f"malformed parameter {word!r}")
        result[keyword] = value
    return result


def _parse_mail(arg: str, offered: frozenset[str]) -> MailFrom:
    inner, words = _split_path(arg, "FROM:", R.BAD_SENDER_SYNTAX)
    raw = _params(words, _MAIL_PARAMS, offered)
    params = MailParams(
        size=_number(raw["SIZE"]) if "SIZE" in raw else None,
        body=_enum(Body, raw["BODY"]) if "BODY" in raw else None,
        smtputf8=_flag(raw, "SMTPUTF8"),
        ret=_enum(Ret, raw["RET"]) if "RET" in raw else None,
        envid=_xtext(raw["ENVID"], MAX_ENVID) if "ENVID" in raw else None,
        auth=_xtext(raw["AUTH"], None) if "AUTH" in raw else None,
        requiretls=_flag(raw, "REQUIRETLS"),
    )
    if params.body is Body.BINARY_MIME and "BINARYMIME" not in offered:
        raise _fail(R.PARAMETER_NOT_IMPLEMENTED, "BINARYMIME not offered")
    if not inner:
        return MailFrom(Path(None), params)
    if not inner.isascii() and not params.smtputf8:
        raise _fail(R.NON_ASCII_SENDER, "non-ASCII sender without SMTPUTF8")
    return MailFrom(_parse_path(inner, utf8=params.smtputf8, bad=R.BAD_SENDER_SYNTAX), params)


def _parse_rcpt(arg: str, offered: frozenset[str], smtputf8: bool) -> RcptTo:
    inner, words = _split_path(arg, "TO:", R.BAD_RECIPIENT_SYNTAX)
    raw = _params(words, _RCPT_PARAMS, offered)
    params = (
        RcptParams(
            notify=_notify(raw["NOTIFY"]) if "NOTIFY" in raw else None,
            orcpt=_orcpt(raw["ORCPT"]) if "ORCPT" in raw else None,
        )
        if raw
        else _NO_RCPT_PARAMS  # the usual RCPT, made once
    )
    if inner.lower() == "postmaster":
        # RFC 5321 §4.1.1.3: <Postmaster> without a domain must be accepted.
        return RcptTo(Path(Address("postmaster", "")), params)
    if not inner:
        raise _fail(R.BAD_RECIPIENT_SYNTAX, "empty recipient")
    if not inner.isascii() and not smtputf8:
        raise _fail(R.NON_ASCII_RECIPIENT, "non-ASCII recipient without SMTPUTF8")
    return RcptTo(_parse_path(inner, utf8=smtputf8, bad=R.BAD_RECIPIENT_SYNTAX), params)


def _flag(raw: dict[str, str], keyword: str) -> bool:
    if keyword not in raw:
        return False
    if raw[keyword]:
        raise _fail(R.INVALID_ARGUMENTS, f"{keyword} takes no value")
    return True


def _number(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 20:
        raise _fail(R.INVALID_ARGUMENTS, f"not a number: {value!r}")
    return int(value)


def _enum(kind: type[_E], value: str) -> _E:
    try:
        return kind(value.upper())
    except ValueError:
        raise _fail(R.INVALID_ARGUMENTS, f"invalid value {value!r}") from None


def _notify(value: str) -> frozenset[Notify]:
    items = [_enum(Notify, v) for v in value.split(",")]
    if len(set(items)) != len(items) or (Notify.NEVER in items and len(items) > 1):
        # RFC 3461 §4.1: NEVER alone, or any combination of the other three.
        raise _fail(R.INVALID_ARGUMENTS, "invalid NOTIFY list")
    return frozenset(items)


def _orcpt(value: str) -> OriginalRecipient:
    addr_type, semi, encoded = value.partition(";")
    if not semi or not _ATOM.fullmatch(addr_type) or len(value) > MAX_ORCPT:
        raise _fail(R.INVALID_ARGUMENTS, "invalid ORCPT")
    address = _xtext(encoded, None)
    if addr_type.lower() == "utf-8":
        address = _UTF8_ADDR_HEX.sub(lambda m: chr(int(m.group(1), 16)), address)
        if _CONTROL.search(address):
            raise _fail(R.INVALID_ARGUMENTS, "control character in ORCPT")
    return OriginalRecipient(addr_type, address)


def decode_xtext(value: str) -> str:
    """RFC 3461 §4: xchar is "!".."~" but "+" and "="; "+XX" (uppercase hex) is one octet.

    Decoded octets are read as UTF-8, so an SMTPUTF8 session's raw UTF-8 passes through.
    Raises ValueError for malformed xtext.
    """
    if any(c in "= " or (c.isascii() and not 33 <= ord(c) <= 126) for c in value):
        raise ValueError(f"invalid xtext: {value!r}")
    if _XTEXT_HEX.sub("", value).count("+"):
        raise ValueError(f"invalid xtext escape: {value!r}")
    raw = value.encode("utf-8")
    decoded = re.sub(rb"\+([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)
    return decoded.decode("utf-8")


def encode_xtext(value: str) -> str:
    """The inverse of :func:`decode_xtext` for any text (ASCII output)."""
    return "".join(
        chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}"
        for b in value.encode("utf-8")
    )


def _xtext(value: str, limit: int | None) -> str:
    if limit is not None and len(value) > limit:
        raise _fail(R.INVALID_ARGUMENTS, "value too long")
    try:
        decoded = decode_xtext(value)
    except (ValueError, UnicodeDecodeError):
        raise _fail(R.INVALID_ARGUMENTS, f"invalid xtext {value!r}") from None
    if _CONTROL.search(decoded):
        # What xtext carries here is printable text (ENVID, RFC 3461 §4.4) or an address
        # (ORCPT §4.2, AUTH= RFC 4954 §5), never a control character; a NUL failed the
        # queue's insert on PostgreSQL (text cannot hold it) with a 451, retried for days.
        raise _fail(R.INVALID_ARGUMENTS, f"control character in xtext {value!r}")
    return decoded


def format_command(command: Command) -> bytes:
    """The wire form of ``command``, CRLF included; inverse of :func:`parse_command`."""
    match command:
        case Hello(kind, domain):
            line = f"{kind} {domain}"
        case MailFrom(path, p):
            words = [f"FROM:{path}"]
            words += [f"SIZE={p.size}"] if p.size is not None else []
            words += [f"BODY={p.body}"] if p.body is not None else []
            words += ["SMTPUTF8"] if p.smtputf8 else []
            words += [f"RET={p.ret}"] if p.ret is not None else []
            words += [f"ENVID={encode_xtext(p.envid)}"] if p.envid is not None else []
            words += [f"AUTH={encode_xtext(p.auth)}"] if p.auth is not None else []
            words += ["REQUIRETLS"] if p.requiretls else []
            line = "MAIL " + " ".join(words)
        case RcptTo(path, p):
            words = [f"TO:{path}"]
            if p.notify is not None:
                words.append("NOTIFY=" + ",".join(n for n in Notify if n in p.notify))
            if p.orcpt is not None:
                words.append(f"ORCPT={p.orcpt.addr_type};{encode_xtext(p.orcpt.address)}")
            line = "RCPT " + " ".join(words)
        case Bdat(size, last):
            line = f"BDAT {size}{' LAST' if last else ''}"
        case Help(topic):
            line = f"HELP {topic}".rstrip(" ")
        case Vrfy(argument):
            line = f"VRFY {argument}"
        case Expn(argument):
            line = f"EXPN {argument}"
        case Auth(mechanism, initial):
            line = f"AUTH {mechanism}"
            if initial is not None:
                line += " " + (base64.b64encode(initial).decode("ascii") if initial else "=")
        case Data():
            line = "DATA"
        case Rset():
            line = "RSET"
        case Noop():
            line = "NOOP"
        case Quit():
            line = "QUIT"
        case StartTls():
            line = "STARTTLS"
        case Xforward(attributes):
            line = " ".join(["XFORWARD", *(f"{n}={encode_xtext(v)}" for n, v in attributes)])
    return line.encode("utf-8") + b"\r\n"
