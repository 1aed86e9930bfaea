"""RFC 5321 mailboxes: parsing, IDNA domains, address literals and the normalised form.

Grammar (RFC 5321 §4.1.2, extended for UTF-8 by RFC 6531 §3.3)::

    Mailbox    = Local-part "@" ( Domain / address-literal )
    Local-part = Dot-string / Quoted-string
    Domain     = sub-domain *("." sub-domain)

Parsing is strict about syntax and liberal about shape: everything an open-relay check must see
(a ``%`` or ``!`` in the local part, a quoted local part, a trailing dot, an address literal) is
parsed and *exposed* on :class:`Address`, never silently rewritten away, so the application can
refuse it. Domains are normalised to lowercase A-labels (RFC 5890 §2.3.2.1), the form DNS and the
store use; :attr:`Address.domain_unicode` gives the U-label form for display.

IDNA 2008 comes from the ``idna`` package (kjd/idna), not the stdlib ``encodings.idna``, which is
IDNA 2003 (it maps ``ß`` to ``ss`` and accepts symbols). Input is mapped the UTS #46 way
(non-transitional: ß and ς are kept), then each label is checked as RFC 5891 §5.4 asks: the
RFC 5892 derived property from Unicode's tables, the CONTEXTJ/CONTEXTO rules of its Appendix A
(ZWJ/ZWNJ after a virama or between joining letters, middle dot, Greek keraia, Hebrew geresh,
katakana middle dot, digit sets) and, in a name with a right-to-left label, the Bidi rule of
RFC 5893 on every label. An ASCII name of LDH labels without ``xn--`` needs none of that and
takes a regex; so does an ASCII label in a Unicode name (as in :func:`domain_to_ascii`'s fast
path, ``ab--cd`` stays an accepted LDH label).
"""

from __future__ import annotations

import ipaddress
import re
import string
import unicodedata
from dataclasses import dataclass

import idna

from pillarbox.errors import InvalidName

#: RFC 5321 §4.5.3.1.2 (domain) and RFC 1035 §2.3.4 (label).
MAX_DOMAIN = 255
MAX_LABEL = 63

# RFC 5322 §3.2.3 atext, which RFC 5321 §4.1.2 uses for Atom.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
# RFC 5321 §4.1.3: General-address-literal = Standardized-tag ":" 1*dcontent
_GENERAL_LITERAL = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?):([\x21-\x5a\x5e-\x7e]+)")
# The common case proved at C speed before the general code point by code point paths:
# an ASCII Dot-string (RFC 5321 §4.1.2) and an ASCII domain of LDH labels (RFC 5321 §4.1.2
# sub-domain, RFC 1035 §2.3.4 label lengths) that needs no IDNA work.
_ATEXT_CLASS = f"[{re.escape(''.join(sorted(_ATEXT)))}]"
_ASCII_DOT_STRING = re.compile(rf"{_ATEXT_CLASS}+(?:\.{_ATEXT_CLASS}+)*")
_ASCII_LDH = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ASCII_DOMAIN = re.compile(rf"{_ASCII_LDH}(?:\.{_ASCII_LDH})*")
# RFC 5893 §1.4: a "Bidi domain name" has a label with an R, AL or AN code point.
_RTL_BIDI_CLASSES = frozenset({"R", "AL", "AN"})


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed mailbox.

    ``local`` is the local part as meant (quotes and quoted-pairs removed; case preserved, since
    RFC 5321 §2.4 leaves its case to the destination). ``domain`` is the normalised domain: a
    lowercase A-label name, an address literal in brackets (``[192.0.2.1]``,
    ``[IPv6:2001:db8::1]``), or ``""`` only for the bare ``<Postmaster>`` recipient of
    RFC 5321 §4.1.1.3.
    """

    local: str
    domain: str
    #: The local part was a Quoted-string on the wire.
    quoted: bool = False
    #: The domain was written with a trailing dot (``user@example.com.``), stripped in ``domain``.
    trailing_dot: bool = False

    @property
    def is_bare_postmaster(self) -> bool:
        return self.domain == ""

    @property
    def is_literal(self) -> bool:
        """The domain is an address literal (RFC 5321 §4.1.3)."""
        return self.domain.startswith("[")

    @property
    def literal_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The IP of an IPv4/IPv6 address literal; None for names and general literals."""
        if not self.is_literal:
            return None
        inner = self.domain[1:-1]
        if inner[:5].lower() == "ipv6:":
            return ipaddress.IPv6Address(inner[5:])
        try:
            return ipaddress.IPv4Address(inner)
        except ValueError:
            return None

    @property
    def percent_hack(self) -> bool:
        """``user%other@relay``: source routing through the local part (RFC 5321 Appendix C)."""
        return "%" in self.local

    @property
    def bang_path(self) -> bool:
        """``host!user@relay``: UUCP routing in the local part."""
        return "!" in self.local

    @property
    def needs_smtputf8(self) -> bool:
        """A non-ASCII local part can only travel with SMTPUTF8 (RFC 6531 §3.2); a non-ASCII
        domain never forces it, as its A-label form is ASCII."""
        return not self.local.isascii()

    @property
    def domain_unicode(self) -> str:
        return self.domain if self.is_literal else domain_to_unicode(self.domain)

    @property
    def wire_local(self) -> str:
        """The local part as it must be written: a Dot-string when possible (RFC 5321 §4.1.2
        "SHOULD"), else a Quoted-string."""
        return self.local if _is_dot_string(self.local) else quote_local_part(self.local)

    @property
    def normalised(self) -> str:
        """``local@domain`` with the domain in lowercase A-label form; parses back to an equal
        address (apart from ``quoted``/``trailing_dot``, which record the original spelling)."""
        if self.is_bare_postmaster:
            return self.local
        return f"{self.wire_local}@{self.domain}"

    @property
    def key(self) -> str:
        """The form the store indexes accounts and aliases by (see ``pillarbox.store.types``):
        the normalised address with the local part lowercased."""
        if self.is_bare_postmaster:
            return self.local.lower()
        return f"{self.wire_local.lower()}@{self.domain}"

    def __str__(self) -> str:
        return self.normalised


def parse_address(text: str, *, utf8: bool = True) -> Address:
    """Parse an RFC 5321 Mailbox (``local@domain``, no angle brackets).

    ``utf8=False`` refuses non-ASCII local parts and U-label domains, as a server without
    SMTPUTF8 must (RFC 6531 §3.5). Raises :class:`~pillarbox.errors.InvalidName`.
    """
    if not text:
        raise InvalidName("empty address")
    if text.startswith('"'):
        local, end = _parse_quoted(text, utf8)
        quoted = True
    else:
        end = text.find("@")
        if end < 0:
            raise InvalidName(f"no @ in address: {text!r}")
        local = text[:end]
        if not _is_dot_string(local, utf8=utf8):
            raise InvalidName(f"invalid local part: {local!r}")
        quoted = False
    if end >= len(text) or text[end] != "@":
        raise InvalidName(f"no @ after the local part: {text!r}")
    domain_text = text[end + 1 :]
    if domain_text.startswith("["):
        return Address(local, parse_address_literal(domain_text), quoted=quoted)
    trailing_dot = domain_text.endswith(".") and len(domain_text) > 1
    if trailing_dot:
        domain_text = domain_text[:-1]
    if not utf8 and not domain_text.isascii():
        raise InvalidName(f"non-ASCII domain without SMTPUTF8: {domain_text!r}")
    return Address(local, domain_to_ascii(domain_text), quoted=quoted, trailing_dot=trailing_dot)


def quote_local_part(local: str) -> str:
    """Quote a local part as an RFC 5321 Quoted-string (``"`` and ``\\`` become quoted-pairs)."""
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def parse_address_literal(text: str) -> str:
    """Normalise ``[IPv4]``, ``[IPv6:…]`` or ``[tag:content]`` (RFC 5321 §4.1.3)."""
    if len(text) < 3 or not text.startswith("[") or not text.endswith("]"):
        raise InvalidName(f"invalid address literal: {text!r}")
    inner = text[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            return f"[IPv6:{ipaddress.IPv6Address(inner[5:]).compressed}]"
        except ValueError as exc:
            raise InvalidName(f"invalid IPv6 literal: {text!r}") from exc
    if inner[:1].isdigit() and inner.count(".") == 3:
        try:
            return f"[{ipaddress.IPv4Address(inner)}]"
        except ValueError as exc:
            raise InvalidName(f"invalid IPv4 literal: {text!r}") from exc
    if _GENERAL_LITERAL.fullmatch(inner):
        return text
    raise InvalidName(f"invalid address literal: {text!r}")


def domain_to_ascii(domain: str) -> str:
    """A domain name in the lowercase A-label form of IDNA 2008 (see the module notes).

    Raises :class:`~pillarbox.errors.InvalidName` for anything RFC 5321's ``Domain`` or
    RFC 5891 refuses, including names over 255 octets and labels over 63.
    """
    if _ASCII_DOMAIN.fullmatch(domain):
        lowered = domain.lower()
        # "xn--" anywhere, not only starting a label, takes the general path: it is rare.
        if "xn--" not in lowered and len(lowered) <= MAX_DOMAIN:
            return lowered
    return _domain_to_ascii_by_label(domain)


def _domain_to_ascii_by_label(domain: str) -> str:
    """:func:`domain_to_ascii` for any input: mapped whole, then each label checked on its own."""
    if not domain:
        raise InvalidName("empty domain")
    try:
        # UTS #46 §4.1 step 1: map (which also turns the ideographic full stops into ".").
        mapped = idna.uts46_remap(domain, std3_rules=True)
        labels = [_label_forms(label) for label in mapped.split(".")]
        # RFC 5893 §2: in a Bidi domain name every label, left-to-right ones included, must
        # satisfy the Bidi rule (idna checks a label alone only when it has RTL characters).
        if any(_is_rtl(ulabel) for _, ulabel in labels):
            for _, ulabel in labels:
                idna.check_bidi(ulabel, check_ltr=True)
    except idna.IDNAError as exc:
        raise InvalidName(f"invalid domain {domain!r}: {exc}") from None
    result = ".".join(alabel for alabel, _ in labels)
    if len(result) > MAX_DOMAIN:
        raise InvalidName(f"domain longer than {MAX_DOMAIN} octets")
    return result


def _label_forms(label: str) -> tuple[str, str]:
    """A mapped label's A-label and U-label forms, after the checks of RFC 5891 §5.4."""
    if label.isascii():
        if not label or len(label) > MAX_LABEL or not _LDH_LABEL.fullmatch(label):
            raise InvalidName(f"invalid domain label: {label!r}")
        if not label.startswith("xn--"):
            return label, label
        # RFC 5891 §5.4 via idna.ulabel: an A-label must decode to a valid U-label that encodes
        # back to exactly it.
        ulabel = idna.ulabel(label)
        if ulabel.isascii():
            raise InvalidName(f"A-label of an ASCII label: {label!r}")
        return label, ulabel
    return idna.alabel(label).decode("ascii"), label


def _is_rtl(label: str) -> bool:
    return not label.isascii() and any(
        unicodedata.bidirectional(c) in _RTL_BIDI_CLASSES for c in label
    )


def domain_to_unicode(domain: str) -> str:
    """The U-label form of a normalised (A-label) domain, for display."""
    return ".".join(
        label[4:].encode("ascii").decode("punycode") if label.startswith("xn--") else label
        for label in domain.split(".")
    )


def _is_atext(c: str, utf8: bool) -> bool:
    # RFC 6531 §3.3: atext =/ UTF8-non-ascii.
    return c in _ATEXT or (utf8 and not c.isascii() and unicodedata.category(c)[0] != "C")


def _is_dot_string(local: str, *, utf8: bool = True) -> bool:
    """RFC 5321 §4.1.2 ``Dot-string = Atom *("." Atom)``."""
    return _ASCII_DOT_STRING.fullmatch(local) is not None or _is_dot_string_by_code_point(
        local, utf8
    )


def _is_dot_string_by_code_point(local: str, utf8: bool) -> bool:
    """:func:`_is_dot_string` for any input, UTF-8 atext included (RFC 6531 §3.3)."""
    return bool(local) and all(
        atom and all(_is_atext(c, utf8) for c in atom) for atom in local.split(".")
    )


def _parse_quoted(text: str, utf8: bool) -> tuple[str, int]:
    """Parse the Quoted-string at the start of ``text``; return its content and the index after
    the closing quote (RFC 5321 §4.1.2 qtextSMTP / quoted-pairSMTP, RFC 6531 §3.3)."""
    out: list[str] = []
    i = 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            i += 1
            if i >= len(text) or not _is_qchar(text[i], utf8, pair=True):
                raise InvalidName(f"invalid quoted-pair in {text!r}")
            c = text[i]
        elif not _is_qchar(c, utf8, pair=False):
            raise InvalidName(f"invalid character in quoted local part: {c!r}")
        out.append(c)
        i += 1
    raise InvalidName(f"unterminated quoted local part: {text!r}")


def _is_qchar(c: str, utf8: bool, *, pair: bool) -> bool:
    if c.isascii():
        # qtextSMTP = %d32-33 / %d35-91 / %d93-126; quoted-pairSMTP = "\" %d32-126
        return 32 <= ord(c) <= 126 and (pair or c not in '"\\')
    return utf8 and unicodedata.category(c)[0] != "C"
