"""Greylisting at the MX (RFC 6647): an unknown (client network, sender, recipient) is deferred
with a 4xx at RCPT until it comes back after a delay, which a real MTA does and much spam-sending
software does not. See docs/greylisting.md.

Implementation notes:

- **Where** (RFC 6647 §2.2: the triplet is known at RCPT, the cheapest place for everyone):
  only on the MX listener, only for a recipient that already resolved to something we deliver
  (an unknown one gets its 550 as before, so a deferral tells nothing about who exists), and
  never for an authenticated client or one in ``policy.trusted_networks``; submission and
  LMTP never see it (:mod:`pillarbox.net.smtp` builds a :class:`Greylist` for the MX only).
- **Per recipient**: a deferred recipient gets ``replies.GREYLISTED`` (451 4.7.1) and the
  others of the transaction are answered on their own (STYLE §7), so a message to a known and
  a new recipient goes to the known one now and to the new one at the retry.
- **The triplet**: the client's network (``ipv4_prefix``/``ipv6_prefix``, as postgrey
  ``--lookup-by-subnet``: a sender's outbound pool retries from a neighbouring address; an
  IPv4-mapped IPv6 address counts as the IPv4 one), the envelope sender by
  :func:`sender_key`, and the recipient as its case-folded address (``Address.key``).
- **The decision** is :meth:`pillarbox.store.types.GreylistRules.step`, a pure function of the
  triplet's memory and the time, which the store runs atomically with the read and the write
  (:meth:`~pillarbox.store.interface.Store.check_greylist`): nodes sharing PostgreSQL share
  the memory, and two attempts at once are decided one after the other.
- **Cost to legitimate senders** (RFC 6647 §3): their first message to a recipient waits for
  their queue's retry, minutes to an hour; ``auto_allow_clients`` and the allow lists limit it
  to the first few. A user's own allow list (:mod:`pillarbox.policy.senderlists`) counts too:
  a sender the user asked to see is not delayed for any account the recipient reaches. It is
  matched against the envelope sender, unauthenticated at RCPT, as ``allow_sender_domains``
  is: forging it skips the delay, not the judgement at DATA, where an allow entry counts only
  for mail its domain vouches for. A store failure answers 451 4.3.0 (a server fault,
  retried like the rest).
- **Opt-outs** (docs/greylisting.md): a recipient in a domain on ``skip_recipient_domains``
  is never greylisted (checked before the store, so nothing of it is remembered); with
  ``allow_spf_pass``, a triplet that would be deferred passes when the envelope domain's SPF
  (the HELO name's for the null sender, RFC 7208 §2.3, §2.4) passes for the client — checked
  after the allow lists, on the inbound policy's resolver (its cache then answers the check
  at DATA), within ``policy.timeout``; any other result, a timeout included, defers as before.
  With ``only_listed_clients`` (selective greylisting) a client no ``policy.dnsbl_ip_zones``
  list names passes before the store is asked, so nothing of it is remembered; a lookup that
  fails counts as a listing (the client is greylisted as it would be without the option).
- Expired triplets are removed by :func:`prune_periodically` on the server loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from pillarbox.config import GreylistingSection
from pillarbox.errors import StorageError
from pillarbox.mail.address import Address, domain_to_ascii
from pillarbox.observability.log import Log
from pillarbox.observability.metrics import GREYLIST_OUTCOMES, Metrics
from pillarbox.policy.dnsbl import Listing
from pillarbox.policy.pipeline import client_address, in_networks
from pillarbox.policy.senderlists import chosen
from pillarbox.policy.spf import SpfOutcome, SpfResult
from pillarbox.queue.routing import LocalRecipient
from pillarbox.smtp import replies
from pillarbox.smtp.replies import Reply
from pillarbox.store.interface import Store
from pillarbox.store.types import GreylistRules, GreyTriplet, SenderListKind

#: The outcome word of a sender on ``allow_sender_domains`` (never looked up in the store).
ALLOWED = "allowed"
#: The outcome word of a sender on the allow list of an account the recipient reaches.
LISTED = "listed"
#: The outcome word of a sender whose SPF passed (``allow_spf_pass``).
SPF_PASSED = "spf"
#: The outcome word of a recipient in a domain on ``skip_recipient_domains``.
RECIPIENT_SKIPPED = "recipient"
#: The outcome word of a client on no list, with ``only_listed_clients``.
UNLISTED = "unlisted"

#: SPF's MAIL FROM check (:func:`pillarbox.policy.spf.check_mail_from` on a resolver):
#: the client's address, the envelope sender ("" for the null sender) and the HELO name.
SpfCheck = Callable[[str, str, str], Awaitable[SpfOutcome]]
#: The client's address looked up in the DNSBLs (:func:`pillarbox.policy.dnsbl.check`): its
#: listings and temporary failures, none when it is on no list.
ClientListings = Callable[[str], Awaitable[Sequence[Listing]]]

#: BATV (draft-levine-smtp-batv-01 §3.1): ``prvs=KDDDSSSSSS=local``, a tag per message.
_BATV = re.compile(r"prvs=[0-9a-z]{10}=(?=.)")
#: SRS (libsrs2's scheme, pillarbox.queue.srs): hash and timestamp change daily.
_SRS0 = re.compile(r"srs0[=+-][^=@]*=[^=@]*=")
_SRS1 = re.compile(r"srs1[=+-][^=@]*=([^=@]*)==[^=@]*=[^=@]*=")
#: Numbers standing alone in a local part: VERP and bounce-tracking counters (postgrey's rule).
_NUMBER = re.compile(r"\b\d+\b")


def sender_key(sender: Address | None) -> str:
    """The sender as the triplet has it: "" for the null sender; else the case-folded address
    whose local part lost what changes from message to message of the same sender, as postgrey
    does: a BATV tag, an SRS hash and timestamp, a ``+extension`` (VERP mailing lists), and
    each number standing alone (``bounce-1234-5@`` → ``bounce-#-#@``)."""
    if sender is None:
        return ""
    if sender.is_bare_postmaster:
        return sender.key
    # The address's own parts, not the key split at its last "@": a general address literal
    # may hold one (RFC 5321 §4.1.3 dcontent), and "a+b@[x:1@2]" became "a@2]".
    local, domain = sender.wire_local.lower(), sender.domain
    local = _BATV.sub("", local, count=1) if local.startswith("prvs=") else local
    if _SRS0.match(local):
        local = _SRS0.sub("srs0=#=#=", local, count=1)
    elif _SRS1.match(local):
        local = _SRS1.sub(r"srs1=#=\1==#=#=", local, count=1)
    else:
        local = local.partition("+")[0] or local
    return f"{_NUMBER.sub('#', local)}@{domain}"


def client_network(client_ip: str, ipv4_prefix: int, ipv6_prefix: int) -> str:
    """The client's network as the triplet has it (``192.0.2.0/24``); an address that does not
    parse (a UNIX socket peer) stands for itself."""
    address = client_address(client_ip)
    if address is None:
        return client_ip
    prefix = ipv4_prefix if address.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network((address, prefix), strict=False))


def rules_of(section: GreylistingSection) -> GreylistRules:
    return GreylistRules(
        delay=timedelta(seconds=section.delay),
        retry_window=timedelta(seconds=section.retry_window),
        lifetime=timedelta(seconds=section.lifetime),
        auto_allow_clients=section.auto_allow_clients,
    )


class Greylist:
    """The MX's greylisting: one per MX listener, shared by its sessions."""

    def __init__(
        self,
        section: GreylistingSection,
        trusted_networks: Sequence[str],
        store: Store,
        metrics: Metrics,
        *,
        spf_check: SpfCheck | None = None,
        client_listings: ClientListings | None = None,
    ) -> None:
        """``spf_check`` is needed with ``allow_spf_pass``, ``client_listings`` with
        ``only_listed_clients``."""
        if section.allow_spf_pass and spf_check is None:
            raise ValueError("greylisting.allow_spf_pass needs an SPF check")
        if section.only_listed_clients and client_listings is None:
            raise ValueError("greylisting.only_listed_clients needs the client's listings")
        self._spf_check = spf_check if section.allow_spf_pass else None
        self._client_listings = client_listings if section.only_listed_clients else None
        self._section = section
        self._rules = rules_of(section)
        self._store = store
        exempt = (*trusted_networks, *section.allow_networks)
        self._exempt = [ipaddress.ip_network(n, strict=False) for n in exempt]
        self._domains = tuple(domain_to_ascii(d) for d in section.allow_sender_domains)
        self._skipped = tuple(domain_to_ascii(d) for d in section.skip_recipient_domains)
        decisions = metrics.greylisting_decisions
        self._counted = {outcome: decisions.labels(outcome) for outcome in GREYLIST_OUTCOMES}

    def exempt(self, client_ip: str) -> bool:
        """Whether the client is never greylisted: trusted, or on ``allow_networks``."""
        return in_networks(client_ip, self._exempt)

    def _sender_allowed(self, sender: Address | None) -> bool:
        return sender is not None and _within(sender.domain, self._domains)

    async def _spf_passes(self, client_ip: str, sender: Address | None, helo: str) -> bool:
        if self._spf_check is None:
            return False
        outcome = await self._spf_check(client_ip, sender.normalised if sender else "", helo)
        return outcome.result is SpfResult.PASS

    async def _listed(self, sender: Address | None, owners: Sequence[LocalRecipient]) -> bool:
        """Whether an account among ``owners`` has ``sender`` on its allow list (an exact
        block entry for the address wins over its domain's allow entry, as in the verdict)."""
        if sender is None:
            return False
        for account_id in dict.fromkeys(owner.account.id for owner in owners):
            entry = chosen(await self._store.list_sender_entries(account_id), sender.key)
            if entry is not None and entry.kind is SenderListKind.ALLOW:
                return True
        return False

    async def check(
        self,
        client_ip: str,
        sender: Address | None,
        helo: str,
        recipient: Address,
        owners: Sequence[LocalRecipient],
        log: Log,
    ) -> Reply | None:
        """The reply deferring ``recipient`` (delivered to ``owners``) of a transaction from
        ``client_ip`` (greeting as ``helo``) by ``sender``, or None when it passes; one log
        line and one count per decision."""
        section = self._section
        network = client_network(client_ip, section.ipv4_prefix, section.ipv6_prefix)
        triplet = GreyTriplet(network, sender_key(sender), recipient.key)
        if self._sender_allowed(sender):
            self._record(log, ALLOWED, triplet)
            return None
        if _within(recipient.domain, self._skipped):
            self._record(log, RECIPIENT_SKIPPED, triplet)
            return None
        if self._client_listings is not None and not await self._client_listings(client_ip):
            self._record(log, UNLISTED, triplet)
            return None
        try:
            outcome = await self._store.check_greylist(triplet, datetime.now(UTC), self._rules)
            # The lists are read only for a deferral: a known sender, most of the MX's
            # mail, pays no second store round trip at each RCPT.
            if not outcome.passes and await self._listed(sender, owners):
                self._record(log, LISTED, triplet)
                return None
        except StorageError as exc:
            log.error("greylisting failed", error=str(exc), rcpt=triplet.recipient)
            return replies.LOCAL_ERROR
        # Last, as it asks the DNS: only for what would otherwise be deferred.
        if not outcome.passes and await self._spf_passes(client_ip, sender, helo):
            self._record(log, SPF_PASSED, triplet)
            return None
        self._record(log, outcome.value, triplet)
        return None if outcome.passes else replies.GREYLISTED

    def _record(self, log: Log, outcome: str, triplet: GreyTriplet) -> None:
        self._counted[outcome].inc()
        log.info(
            "greylisting",
            outcome=outcome,
            client=triplet.client,
            sender=triplet.sender,
            rcpt=triplet.recipient,
        )


def _within(domain: str, domains: Sequence[str]) -> bool:
    """Whether ``domain`` is one of ``domains`` (A-labels) or a subdomain of one."""
    return any(domain == d or domain.endswith(f".{d}") for d in domains)


async def prune_periodically(store: Store, interval: float, stopping: asyncio.Event) -> None:
    """The background task: every ``interval`` seconds (``prune_interval``) until
    ``stopping`` is set, forget the expired triplets (on every node: a prune finding nothing
    costs one indexed DELETE)."""
    log = Log("greylisting")
    while not stopping.is_set():
        try:
            removed = await store.prune_greylist(datetime.now(UTC))
        except StorageError as exc:  # a store hiccup must not end the job: the next one retries
            log.error("pruning expired triplets failed", error=str(exc))
        else:
            if removed:
                log.info("expired triplets removed", count=removed)
        await asyncio.sleep(interval)
