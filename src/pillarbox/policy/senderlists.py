"""An account's allow and block lists: senders the user always wants in the INBOX, and
senders whose mail always goes to Junk, whatever the classifier says.

Implementation notes:

- An entry is an address (``ann@example.org``) or a domain (``example.org``, which also covers
  its subdomains), matched against the message's first From address (RFC 5322 §3.6.2: the
  author the user sees). Stored lowercase, the domain as its A-label (IDNA 2008), so a
  Unicode domain typed in the settings matches the ASCII form a message carries.
- A block entry needs no proof: blocking a forged name costs the forger nothing it was owed.
  An allow entry stands only for mail the sender's domain vouches for, because a From field
  is trivially forged and an allow list is the first thing a spammer would forge: DMARC
  passed, or SPF or DKIM passed for a domain within the From domain's organizational
  domain (RFC 7489 §3.1's relaxed alignment). SpamAssassin's ``welcomelist_auth`` and
  Rspamd's whitelist module take the same view. Where this server did not check the sender
  (a trusted relay, which checked it; a message judged from a file), the entry stands.
  An allow entry never lifts a DMARC failure of a domain asking for reject or quarantine
  (the pipeline's override comes first).
- An exact address entry wins over a domain entry for the same message. A public suffix
  (``top``, ``co.uk``) may be blocked, never allowed.
- The web settings, the JSON API and ``pillarbox spam allow/block/unlist`` share these
  operations; ``policy.max_sender_entries`` bounds an account's list (each verdict reads
  the whole list with the spam evidence, in the same store round trip).
"""

from __future__ import annotations

import unicodedata

from pillarbox.errors import InvalidName, NotFound, UserError
from pillarbox.mail.address import domain_to_ascii, domain_to_unicode, parse_address
from pillarbox.policy.dmarc import organizational_domain
from pillarbox.policy.reputation import SenderFacts
from pillarbox.store.interface import Store
from pillarbox.store.types import SenderListEntry, SenderListKind

#: Longest pattern accepted: a whole address (RFC 5321 §4.5.3.1.3's path, less its brackets).
MAX_PATTERN = 254


def pattern_of(text: str) -> str:
    """The stored form of what a user typed: ``local@domain`` or ``domain``, lowercase, the
    domain as an A-label; ``UserError`` for anything that is neither."""
    text = unicodedata.normalize("NFC", text.strip()).lower()
    if text.startswith("@"):  # "@example.org", as some filters write a domain
        text = text[1:]
    if not text:
        raise UserError("give an address or a domain")
    if len(text) > MAX_PATTERN:
        raise UserError(f"an address or domain is at most {MAX_PATTERN} characters")
    try:
        if "@" in text:
            address = parse_address(text)
            if address.domain.startswith("["):
                raise UserError("an address literal names no sender's domain")
            return f"{address.local}@{address.domain}"
        domain = domain_to_ascii(text.rstrip("."))
    except InvalidName as exc:
        raise UserError(f"not an address or a domain: {text!r} ({exc})") from None
    return domain


def _covering(address: str) -> frozenset[str]:
    """Every pattern that covers the lowercase From ``address``: the address and its domain
    and each parent domain, in stored form (empty for an address without a usable domain)."""
    local, _, domain = address.rpartition("@")
    if not domain.isascii():  # an SMTPUTF8 message's U-label (RFC 6532 §3.2)
        try:
            domain = domain_to_ascii(domain)
        except InvalidName:
            return frozenset()
    if not local or not domain:
        return frozenset()
    labels = domain.split(".")
    return frozenset([f"{local}@{domain}", *(".".join(labels[i:]) for i in range(len(labels)))])


def chosen(entries: list[SenderListEntry], address: str) -> SenderListEntry | None:
    """The entry that decides for ``address``: an exact address before a domain. The address
    is worked out once, each entry is one set look-up (a verdict runs this for every copy)."""
    if not entries or not address:
        return None
    patterns = _covering(address)
    listed = [e for e in entries if e.pattern in patterns]
    return max(listed, key=lambda e: "@" in e.pattern) if listed else None


def shown(pattern: str) -> str:
    """A stored pattern as a person reads it: the domain's U-labels (``bücher.example``)."""
    local, at, domain = pattern.rpartition("@")
    return f"{local}{at}{domain_to_unicode(domain)}"


def vouched(sender: SenderFacts) -> bool:
    """Whether an allow entry for ``sender`` may stand (module notes): the From domain
    authenticated, or the sender not checked here."""
    if not sender.client_ip or sender.from_verified:
        return True
    domain = sender.from_address.rpartition("@")[2]
    return bool(domain) and organizational_domain(domain) in sender.verified_domains


async def put(
    store: Store, account_id: int, text: str, kind: SenderListKind, *, limit: int
) -> SenderListEntry:
    """Add the entry for ``text`` or change its kind; ``UserError`` past ``limit`` entries."""
    entry = SenderListEntry(pattern_of(text), kind)
    domain = entry.pattern.rpartition("@")[2]
    if kind is SenderListKind.ALLOW and organizational_domain(domain) is None:
        # Blocking a whole suffix (``top``) is a choice some make; allowing one would let
        # in whoever registers a name under it.
        raise UserError(f"{entry.pattern} is a public suffix: allow a domain or address under it")
    present = await store.list_sender_entries(account_id)
    if len(present) >= limit and all(e.pattern != entry.pattern for e in present):
        raise UserError(
            f"the lists hold at most {limit} entries (policy.max_sender_entries): "
            "remove one first, or list a whole domain"
        )
    await store.set_sender_entry(account_id, entry)
    return entry


async def remove(store: Store, account_id: int, text: str) -> str:
    """Remove the entry for ``text`` (its stored form, returned); ``NotFound`` if none."""
    pattern = pattern_of(text)
    try:
        await store.remove_sender_entry(account_id, pattern)
    except NotFound:
        raise NotFound(f"{pattern} is on neither list") from None
    return pattern
