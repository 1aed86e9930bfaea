"""ESMTP service extensions (RFC 5321 §2.2): their EHLO keywords and the capability set.

One :class:`Capabilities` value describes what an EHLO reply offers; the server renders it
(:meth:`Capabilities.ehlo_lines`) and the client parses a server's reply into it
(:meth:`Capabilities.from_ehlo_lines`), so both roles agree on spelling by construction.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class Extension(enum.StrEnum):
    """The EHLO keywords Pillarbox implements, each with its RFC."""

    PIPELINING = "PIPELINING"  # RFC 2920
    SIZE = "SIZE"  # RFC 1870
    LIMITS = "LIMITS"  # RFC 9422
    EIGHTBITMIME = "8BITMIME"  # RFC 6152
    SMTPUTF8 = "SMTPUTF8"  # RFC 6531
    ENHANCEDSTATUSCODES = "ENHANCEDSTATUSCODES"  # RFC 2034
    STARTTLS = "STARTTLS"  # RFC 3207
    CHUNKING = "CHUNKING"  # RFC 3030
    DSN = "DSN"  # RFC 3461
    AUTH = "AUTH"  # RFC 4954
    #: RFC 8689 §2: offered only once TLS is in effect (the MAIL parameter needs it).
    REQUIRETLS = "REQUIRETLS"
    #: Postfix's XFORWARD (XFORWARD_README): a front MTA passes its client's attributes.
    XFORWARD = "XFORWARD"


#: The XFORWARD attributes offered (and taken): the original client's host name, address,
#: protocol, HELO, and whether it was local or remote.
XFORWARD_ATTRIBUTES = ("NAME", "ADDR", "PROTO", "HELO", "SOURCE")


#: RFC 9422 §3: limit-name-value = limit-name ["=" limit-value], limit-name =
#: 1*(ALPHA / DIGIT / "-" / "_"), limit-value = 1*(VCHAR except ";").
_LIMIT = re.compile(r"([A-Za-z0-9_-]+)(?:=([\x21-\x3a\x3c-\x7e]+))?")
#: RFC 9422 §4.1-§4.3 value syntax: %x31-39 0*5DIGIT ("0" not allowed, six digits at most).
_LIMIT_NUMBER = re.compile(r"[1-9][0-9]{0,5}")
#: The largest value the §4 syntax can carry.
LIMIT_MAX = 999_999


@dataclass(frozen=True, slots=True)
class Limits:
    """The registered limits a LIMITS parameter announces (RFC 9422 §4); None: not announced.

    ``mail_max``: MAIL commands per session (§4.1); ``rcpt_max``: RCPT commands per
    transaction (§4.2); ``rcpt_domain_max``: recipient domains per session (§4.3).
    """

    mail_max: int | None = None
    rcpt_max: int | None = None
    rcpt_domain_max: int | None = None

    def parameter(self) -> str:
        """The LIMITS parameter announcing the limits that are set."""
        named = (
            ("MAILMAX", self.mail_max),
            ("RCPTMAX", self.rcpt_max),
            ("RCPTDOMAINMAX", self.rcpt_domain_max),
        )
        return " ".join(f"{name}={value}" for name, value in named if value is not None)

    @classmethod
    def from_parameter(cls, words: Sequence[str]) -> Limits:
        """The limits of a LIMITS parameter split at its spaces. A parameter that breaks the
        §3 syntax (or names a limit twice) counts as absent (§3.7 SHOULD); a registered limit
        whose value breaks its syntax, and any limit not registered, are ignored (§3.7 MUST)."""
        values: dict[str, str | None] = {}
        for word in words:
            match = _LIMIT.fullmatch(word)
            if match is None or match.group(1).upper() in values:
                return cls()
            values[match.group(1).upper()] = match.group(2)

        def number(name: str) -> int | None:
            value = values.get(name)
            return int(value) if value and _LIMIT_NUMBER.fullmatch(value) else None

        return cls(number("MAILMAX"), number("RCPTMAX"), number("RCPTDOMAINMAX"))


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The extensions an EHLO reply offers.

    ``keywords`` holds every keyword uppercased, known or not; ``size`` is the SIZE parameter
    (RFC 1870 §4: 0 means no fixed limit; None when SIZE is absent or has no number);
    ``auth_mechanisms`` the SASL mechanisms after AUTH, uppercased, in the server's order;
    ``limits`` what LIMITS announces (RFC 9422; empty when it is absent or malformed).
    """

    keywords: frozenset[str] = frozenset()
    size: int | None = None
    auth_mechanisms: tuple[str, ...] = ()
    limits: Limits = Limits()

    def __contains__(self, keyword: object) -> bool:
        return keyword in self.keywords

    def ehlo_lines(self) -> tuple[str, ...]:
        """The keyword lines of an EHLO reply (after the greeting line), in a stable order."""
        lines: list[str] = []
        known = [e.value for e in Extension]
        for keyword in (*known, *sorted(self.keywords - set(known))):
            if keyword not in self.keywords:
                continue
            if keyword == Extension.SIZE and self.size is not None:
                lines.append(f"SIZE {self.size}")
            elif keyword == Extension.AUTH:
                lines.append(" ".join(("AUTH", *self.auth_mechanisms)))
            elif keyword == Extension.XFORWARD:
                lines.append(" ".join(("XFORWARD", *XFORWARD_ATTRIBUTES)))
            elif keyword == Extension.LIMITS:
                lines.append(" ".join(filter(None, ("LIMITS", self.limits.parameter()))))
            else:
                lines.append(keyword)
        return tuple(lines)

    @classmethod
    def from_ehlo_lines(cls, lines: Iterable[str]) -> Capabilities:
        """Parse the lines after the first of an EHLO reply (RFC 5321 §4.1.1.1 ehlo-line).

        Tolerates the pre-standard ``AUTH=PLAIN LOGIN`` spelling some servers still send and
        ignores garbage lines, as a client must keep talking to imperfect servers.
        """
        keywords: set[str] = set()
        size: int | None = None
        mechanisms: list[str] = []
        limits = Limits()
        for line in lines:
            parts = line.split()
            if not parts:
                continue
            keyword = parts[0].upper()
            if keyword.startswith("AUTH="):
                parts = ["AUTH", keyword[5:], *parts[1:]]
                keyword = "AUTH"
            keywords.add(keyword)
            # RFC 1870 §4: size-value = 1*20DIGIT, ASCII (isdigit() alone takes "²").
            if (
                keyword == Extension.SIZE
                and len(parts) > 1
                and parts[1].isascii()
                and parts[1].isdigit()
            ):
                size = int(parts[1])
            elif keyword == Extension.AUTH:
                for mechanism in parts[1:]:
                    if mechanism.upper() not in mechanisms:
                        mechanisms.append(mechanism.upper())
            elif keyword == Extension.LIMITS:
                limits = Limits.from_parameter(parts[1:])
        return cls(frozenset(keywords), size, tuple(mechanisms), limits)
