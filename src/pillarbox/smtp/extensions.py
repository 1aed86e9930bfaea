"""ESMTP service extensions (RFC 5321 §2.2): their EHLO keywords and the capability set.

One :class:`Capabilities` value describes what an EHLO reply offers; the server renders it
(:meth:`Capabilities.ehlo_lines`) and the client parses a server's reply into it
(:meth:`Capabilities.from_ehlo_lines`), so both roles agree on spelling by construction.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Extension(enum.StrEnum):
    """The EHLO keywords Pillarbox implements, each with its RFC."""

    PIPELINING = "PIPELINING"  # RFC 2920
    SIZE = "SIZE"  # RFC 1870
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


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The extensions an EHLO reply offers.

    ``keywords`` holds every keyword uppercased, known or not; ``size`` is the SIZE parameter
    (RFC 1870 §4: 0 means no fixed limit; None when SIZE is absent or has no number);
    ``auth_mechanisms`` the SASL mechanisms after AUTH, uppercased, in the server's order.
    """

    keywords: frozenset[str] = frozenset()
    size: int | None = None
    auth_mechanisms: tuple[str, ...] = ()

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
        return cls(frozenset(keywords), size, tuple(mechanisms))
