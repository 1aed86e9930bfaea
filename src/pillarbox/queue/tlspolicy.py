"""Per-destination outbound TLS policy (``[queue.tls_policy]``), Postfix's
``smtp_tls_policy_maps`` without I/O: parsing the table, finding a destination's entry, the
names a certificate must carry, and whether it carries them.

The runner (:mod:`pillarbox.queue.runner`) looks the policy up for every destination before
any discovery; the SMTP session (:mod:`pillarbox.net.smtp_client`) checks the peer's names with
:func:`certificate_matches_names`.

Implementation notes:

- **Keys** (Postfix TLS_README "TLS policy table"): a domain matches itself only;
  ``.example.org`` matches every subdomain of example.org, at any depth, not example.org
  itself; the most specific entry wins (the exact domain, then its parents from the nearest).
  ``[host]`` and ``[host]:port`` name the smart host (``queue.smarthost``): through a smart
  host the policy is the nexthop's, the recipients' domains are not looked up.
- **Values**: a level, then ``match=`` for ``verify``/``secure`` (names separated by ``:``).
  ``none`` never starts TLS; ``may`` is opportunistic STARTTLS (RFC 7435); ``encrypt`` requires
  STARTTLS and accepts any certificate; ``dane`` is opportunistic DANE (RFC 7672 §2.2);
  ``dane-only`` delivers only to hosts authenticated by usable secure TLSA records (§6
  "mandatory DANE TLS"); ``verify`` and ``secure`` require a certificate that chains to a
  trusted root and names one of the ``match`` names (defaults: ``hostname`` for ``verify``,
  ``nexthop:dot-nexthop`` for ``secure``).
- **Precedence**: an entry is the whole policy of its destination: MTA-STS is not fetched
  and TLSA records are looked up only for ``dane`` and ``dane-only``. No entry is
  discovery as without the table (DANE, then MTA-STS, then ``may``). ``TLS-Required: No``
  (RFC 8689 §4.2.2) lowers every level but ``none`` to ``may``.
- **Name matching** (RFC 6125 §6.4): the certificate's DNS subjectAltNames, or its common
  name when it has none (as Postfix); a leftmost ``*`` label stands for exactly one label.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from pillarbox.errors import ConfigError
from pillarbox.smtp.replies import Reply


class Level(enum.Enum):
    NONE = "none"
    MAY = "may"
    ENCRYPT = "encrypt"
    DANE = "dane"
    DANE_ONLY = "dane-only"
    VERIFY = "verify"
    SECURE = "secure"

    @property
    def mandatory(self) -> bool:
        """Mail is deferred rather than sent without TLS."""
        return self not in (Level.NONE, Level.MAY, Level.DANE)

    @property
    def verifies(self) -> bool:
        """The certificate must chain to a trusted root and carry a ``match`` name."""
        return self in (Level.VERIFY, Level.SECURE)

    @property
    def dane(self) -> bool:
        return self in (Level.DANE, Level.DANE_ONLY)


#: Postfix's default match strategies (``smtp_tls_verify_cert_match``,
#: ``smtp_tls_secure_cert_match``): ``verify`` trusts the MX host name it got from DNS,
#: ``secure`` only the destination domain.
DEFAULT_MATCH: dict[Level, tuple[str, ...]] = {
    Level.VERIFY: ("hostname",),
    Level.SECURE: ("nexthop", "dot-nexthop"),
}
#: The match strategies that stand for a name known only at delivery.
_STRATEGIES = frozenset({"hostname", "nexthop", "dot-nexthop"})

# -- replies the queue synthesises (temporary: RFC 7672 §6 and RFC 3463 X.7) ----------------------

#: ``dane-only``: the host has no usable secure TLSA records (RFC 7672 §6); X.7.5.
DANE_REQUIRED = Reply(451, "4.7.5", "mandatory DANE: the host has no usable secure TLSA records")
#: ``verify``/``secure``: the chain verified but no certificate name is acceptable; X.7.5.
NAME_MISMATCH = Reply(451, "4.7.5", "the server's certificate names none of the names required")
#: In the text of every NAME_MISMATCH reply (it shares X.7.5 with a failed handshake).
NAME_MISMATCH_MARKER = "names none of"


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    level: Level
    #: ``match=`` as given (strategies and names, lowercase); empty: the level's default.
    match: tuple[str, ...] = ()
    #: The table key that matched (for logs and reply texts).
    key: str = ""

    def describe(self) -> str:
        return f"TLS policy {self.level.value} ({self.key})"

    def with_level(self, level: Level) -> DestinationPolicy:
        return DestinationPolicy(level, (), self.key)

    def match_names(self, host: str, nexthop: str) -> tuple[str, ...]:
        """The names (``.suffix`` for any subdomain) a ``verify``/``secure`` certificate may
        carry when delivering to ``host`` for the destination ``nexthop``."""
        names: list[str] = []
        for item in self.match or DEFAULT_MATCH.get(self.level, ()):
            if item == "hostname":
                names.append(host)
            elif item == "nexthop":
                names.append(nexthop)
            elif item == "dot-nexthop":
                names.append("." + nexthop)
            else:
                names.append(item)
        return tuple(dict.fromkeys(n.lower().rstrip(".") for n in names))


def _quoted(key: str) -> str:
    return f'queue.tls_policy."{key}"'


def _valid_name(name: str) -> bool:
    labels = name.split(".")
    return (
        all(
            label
            and len(label) <= 63
            and label.isascii()
            and all(c.isalnum() or c in "-_" for c in label)
            for label in labels
        )
        and len(name) <= 253
    )


def _valid_key(key: str) -> bool:
    if key.startswith("["):
        host, sep, rest = key[1:].partition("]")
        if not sep or not _valid_name(host):
            return False
        if not rest:
            return True
        port = rest.removeprefix(":")
        return rest.startswith(":") and port.isascii() and port.isdigit() and 0 < int(port) < 65536
    return _valid_name(key.removeprefix("."))


def parse_entry(key: str, value: str) -> DestinationPolicy:
    """One table entry; a :class:`ConfigError` naming it when it is not valid."""
    if not _valid_key(key):
        raise ConfigError(
            _quoted(key), "expected a domain, .domain (its subdomains), [host] or [host]:port"
        )
    words = value.split()
    if not words:
        raise ConfigError(_quoted(key), "empty policy")
    try:
        level = Level(words[0].lower())
    except ValueError:
        choices = ", ".join(level.value for level in Level)
        raise ConfigError(_quoted(key), f"unknown level {words[0]!r} (one of {choices})") from None
    if key.startswith("[") and level.dane:
        # RFC 7672 §2.2: DANE follows the MX lookup of a domain, which a smart host skips.
        raise ConfigError(_quoted(key), f"{level.value} does not apply to a smart host")
    match: tuple[str, ...] = ()
    for attribute in words[1:]:
        name, equals, text = attribute.partition("=")
        if name.lower() != "match" or not equals:
            raise ConfigError(_quoted(key), f"unknown attribute {attribute!r} (only match=)")
        if not level.verifies:
            raise ConfigError(
                _quoted(key), f"match= applies to verify and secure, not {level.value}"
            )
        items = tuple(item.lower() for item in text.split(":"))
        for item in items:
            if item not in _STRATEGIES and not _valid_name(item.removeprefix(".")):
                raise ConfigError(_quoted(key), f"bad match name {item!r}")
        match += items
    return DestinationPolicy(level, match, key.lower())


@dataclass(frozen=True, slots=True)
class PolicyTable:
    """The parsed ``[queue.tls_policy]``; keys lowercase."""

    entries: Mapping[str, DestinationPolicy]

    @classmethod
    def parse(cls, raw: Mapping[str, str]) -> PolicyTable:
        entries: dict[str, DestinationPolicy] = {}
        for key, value in raw.items():
            entry = parse_entry(key, value)
            if entry.key in entries:
                raise ConfigError(_quoted(key), "given twice (keys are not case-sensitive)")
            entries[entry.key] = entry
        return cls(entries)

    def for_domain(self, domain: str) -> DestinationPolicy | None:
        """The entry for a recipient domain: the exact name, then ``.parent`` entries from the
        nearest parent up; None when the table says nothing (discovery applies)."""
        name = domain.lower().rstrip(".")
        found = self.entries.get(name)
        if found is not None or name.startswith("["):
            return found
        labels = name.split(".")
        for start in range(1, len(labels)):
            found = self.entries.get("." + ".".join(labels[start:]))
            if found is not None:
                return found
        return None

    def for_relay(self, host: str, port: int) -> DestinationPolicy | None:
        """The entry for the smart host: ``[host]:port``, then ``[host]``."""
        name = host.lower().rstrip(".")
        return self.entries.get(f"[{name}]:{port}") or self.entries.get(f"[{name}]")


#: The empty table: discovery for every destination.
NO_TABLE = PolicyTable({})


# -- certificate names (RFC 6125 §6.4) ------------------------------------------------------------


def certificate_names(certificate: bytes) -> tuple[str, ...]:
    """The DNS names of a DER certificate: its dNSName subjectAltNames, or its common name
    when it has none; lowercase, without a trailing dot."""
    # Imported here: the config imports this module, and every `pillarbox` command the config.
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_der_x509_certificate(certificate)
    except ValueError:
        return ()
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = extension.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [
            str(attribute.value)
            for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    return tuple(n.lower().rstrip(".") for n in names)


def name_matches(presented: str, wanted: str) -> bool:
    """``presented`` (a certificate name, perhaps ``*.``) satisfies ``wanted`` (a name, or
    ``.suffix`` for any subdomain)."""
    if wanted.startswith("."):
        return presented.endswith(wanted) and len(presented) > len(wanted)
    if presented == wanted:
        return True
    # RFC 6125 §6.4.3: the wildcard is the whole leftmost label and stands for one label.
    if presented.startswith("*.") and "*" not in presented[2:]:
        _, dot, parent = wanted.partition(".")
        return bool(dot) and parent == presented[2:]
    return False


def certificate_matches_names(certificate: bytes, wanted: tuple[str, ...]) -> bool:
    return any(name_matches(p, w) for p in certificate_names(certificate) for w in wanted)
