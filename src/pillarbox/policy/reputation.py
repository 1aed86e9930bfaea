"""Sender reputation from an account's own history (the approach Mox takes).

Implementation notes:

- What an account has decided before is the best evidence about the next message from the
  same sender. Each trained message (a move into or out of Junk, ``pillarbox spam train``)
  adds one ham or spam tally to every *key* of its sender; every address the account sends
  mail to gets a ham tally as a correspondent.
- Keys, strongest first: ``sent:<address>`` (we wrote to them), ``from+v:<address>`` (the
  From address, DMARC-verified), ``domain+v:<org domain>`` (a domain that passed SPF or DKIM),
  ``from:<address>`` (the From address, unverified), ``net:<network>`` (the client's /24 or
  /48). Verified keys outweigh unverified ones: anyone can write any From address, only its
  owner can make it pass DMARC.
- A key's evidence is one-sided tallies (only ham, or only spam) or a clear majority; its score
  grows with the number of messages (1 message is a hint, 3 or more a pattern). Only the
  strongest address key counts, so one sender is not counted three times.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pillarbox.policy.dmarc import organizational_domain
from pillarbox.policy.verdict import Reason
from pillarbox.store.types import SpamCounts


@dataclass(frozen=True, slots=True)
class SenderFacts:
    """Who a message is from, as far as it could be established."""

    #: The From address, lowercase ("" if none).
    from_address: str = ""
    #: The From address passed DMARC.
    from_verified: bool = False
    #: Organizational domains that passed SPF or DKIM.
    verified_domains: tuple[str, ...] = ()
    #: The SMTP client's address ("" for messages from files).
    client_ip: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReputationScores:
    """Scores at full strength (3 or more messages); fewer messages scale them down."""

    correspondent: float = -8.0
    verified_sender: float = 8.0
    unverified_sender: float = 5.0
    verified_domain: float = 3.0
    network: float = 2.0


DEFAULT_SCORES = ReputationScores()


def network_key(ip: str) -> str | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if isinstance(address, ipaddress.IPv4Address) else 48
    return f"net:{ipaddress.ip_network(f'{address}/{prefix}', strict=False)}"


def sender_keys(facts: SenderFacts) -> list[str]:
    """The keys a message from this sender counts towards (see the module notes)."""
    keys: list[str] = []
    if facts.from_address:
        keys.append(f"sent:{facts.from_address}")
        if facts.from_verified:
            keys.append(f"from+v:{facts.from_address}")
        keys.append(f"from:{facts.from_address}")
    keys += [f"domain+v:{d}" for d in facts.verified_domains]
    net = network_key(facts.client_ip) if facts.client_ip else None
    if net is not None:
        keys.append(net)
    return keys


def correspondent_keys(addresses: Iterable[str]) -> list[str]:
    """Keys of addresses the account wrote to (recorded as ham when it sends mail)."""
    return [f"sent:{a.lower()}" for a in addresses if a]


def _lean(counts: SpamCounts) -> float:
    """-1 (all ham) … +1 (all spam), scaled by evidence: 1/3 per message up to 3."""
    total = counts.ham + counts.spam
    if total == 0:
        return 0.0
    balance = (counts.spam - counts.ham) / total
    return balance * min(total, 3) / 3


def verified_domains(domains: Iterable[str]) -> tuple[str, ...]:
    """Organizational domains of ``domains`` (names without one are kept as they are)."""
    found = {organizational_domain(d) or d.lower() for d in domains if d}
    return tuple(sorted(found))


def reasons(
    facts: SenderFacts,
    tallies: Mapping[str, SpamCounts],
    scores: ReputationScores = DEFAULT_SCORES,
) -> list[Reason]:
    """Reputation reasons for a message from ``facts`` given the account's ``tallies``."""
    out: list[Reason] = []
    address = facts.from_address
    sent = tallies.get(f"sent:{address}") if address else None
    if sent is not None and sent.ham > 0:
        strength = 1.0 if facts.from_verified else 0.5
        out.append(Reason("CORRESPONDENT", round(scores.correspondent * strength, 2), address))
    else:
        verified = tallies.get(f"from+v:{address}") if facts.from_verified else None
        unverified = tallies.get(f"from:{address}") if address else None
        if verified is not None and _lean(verified):
            score = round(scores.verified_sender * _lean(verified), 2)
            out.append(Reason("SENDER_HISTORY", score, f"{address} verified"))
        elif unverified is not None and _lean(unverified):
            score = round(scores.unverified_sender * _lean(unverified), 2)
            out.append(Reason("SENDER_HISTORY", score, address))
    for domain in facts.verified_domains:
        counts = tallies.get(f"domain+v:{domain}")
        if counts is not None and _lean(counts):
            out.append(
                Reason("DOMAIN_HISTORY", round(scores.verified_domain * _lean(counts), 2), domain)
            )
    net = network_key(facts.client_ip) if facts.client_ip else None
    counts = tallies.get(net) if net else None
    if net is not None and counts is not None and _lean(counts):
        out.append(Reason("NETWORK_HISTORY", round(scores.network * _lean(counts), 2), net[4:]))
    return out
