"""Where a recipient's mail goes: which local accounts, which remote addresses, or nowhere.

Resolution order for an address at a hosted domain, as Postfix's virtual(5) and Dovecot's
recipient_delimiter behave:

1. an account with exactly that address;
2. an alias with exactly that address (targets expanded recursively; they may be remote);
3. plus-addressing: ``user+tag@domain`` → ``user@domain`` by rules 1–2, the tag kept;
4. the domain's catch-all alias ``@domain``;
5. ``postmaster@domain`` or ``hostmaster@domain`` left without any of these goes to the
   domain's admin accounts, or if it has none to every admin account: RFC 5321 §4.5.1 requires
   every domain a server takes mail for to accept its postmaster, the SOA record our zones
   publish names ``hostmaster`` (RFC 2142 §7, RFC 1035 §3.3.13 RNAME), and a new domain has no
   alias for either yet;
6. otherwise unknown — refused at RCPT with 550 5.1.1, never accepted and bounced later
   (no backscatter).

Addresses at other domains are remote. Alias expansion is bounded in depth and guarded against
loops; a loop or an over-deep chain resolves to what was found before it, and is logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pillarbox.mail.address import Address, parse_address
from pillarbox.store.interface import Store
from pillarbox.store.types import Account

PLUS_DELIMITER = "+"
#: Local parts that reach the admins without an alias (rule 5); keys are lowercase, as RFC
#: 5321 §4.5.1 has postmaster matched without case.
ROLE_MAILBOXES = frozenset({"postmaster", "hostmaster"})
MAX_ALIAS_DEPTH = 10


@dataclass(frozen=True, slots=True)
class LocalRecipient:
    """A mailbox owner this message is delivered to."""

    account: Account
    #: The address as the sender wrote it (RCPT TO), for Delivered-To and logs.
    original: str
    #: The ``+tag`` of a plus address, without the delimiter.
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    local: tuple[LocalRecipient, ...] = ()
    remote: tuple[str, ...] = ()
    #: The address's domain is one we host.
    hosted: bool = False
    #: An SRS address of ours (a bounce to mail we forwarded): ``remote`` is the original
    #: sender, and the message goes back to it as it is (see :mod:`.forwarding`).
    srs_return: bool = False

    @property
    def unknown(self) -> bool:
        return not self.local and not self.remote


@dataclass
class _Expansion:
    """What one alias expansion has found so far, and where it has been (loop guard)."""

    original: str
    local: dict[int, LocalRecipient] = field(default_factory=dict)
    remote: dict[str, None] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)


class Router:
    """Resolves envelope recipients against the store's domains, accounts and aliases."""

    def __init__(self, store: Store, *, max_depth: int = MAX_ALIAS_DEPTH) -> None:
        self._store = store
        self._max_depth = max_depth

    async def is_hosted(self, domain: str) -> bool:
        return bool(domain) and await self._store.get_domain(domain) is not None

    async def resolve(self, address: Address) -> Resolution:
        """Resolve one parsed envelope address (see the module docstring for the rules)."""
        if address.is_literal or not await self.is_hosted(address.domain):
            return Resolution(remote=(address.normalised,))
        found = _Expansion(original=address.normalised)
        await self._expand_hosted(address.key, None, found, 0)
        return Resolution(
            local=tuple(found.local.values()), remote=tuple(found.remote), hosted=True
        )

    async def _expand(self, key: str, tag: str | None, found: _Expansion, depth: int) -> None:
        if await self.is_hosted(key.rpartition("@")[2]):
            await self._expand_hosted(key, tag, found, depth)
        elif key not in found.seen:
            found.seen.add(key)
            found.remote.setdefault(key, None)

    async def _expand_hosted(
        self, key: str, tag: str | None, found: _Expansion, depth: int
    ) -> None:
        """Expand an address whose domain is known to be hosted."""
        if key in found.seen or depth > self._max_depth:
            return
        found.seen.add(key)
        local_part, _, domain = key.rpartition("@")
        if await self._direct(key, tag, found, depth):
            return
        if PLUS_DELIMITER in local_part:
            base, _, plus_tag = local_part.partition(PLUS_DELIMITER)
            if base and await self._direct(f"{base}@{domain}", plus_tag or tag, found, depth):
                return
        catch_all = await self._store.get_alias(f"@{domain}")
        if catch_all is not None:
            await self._targets(catch_all.targets, tag, found, depth)
        elif local_part in ROLE_MAILBOXES:
            # Rule 5: the domain's admins, else every admin.
            for account in await self._store.list_admins(domain):
                found.local.setdefault(account.id, LocalRecipient(account, found.original, tag))

    async def _direct(self, key: str, tag: str | None, found: _Expansion, depth: int) -> bool:
        account = await self._store.get_account(key)
        if account is not None:
            found.local.setdefault(account.id, LocalRecipient(account, found.original, tag))
            return True
        alias = await self._store.get_alias(key)
        if alias is not None:
            await self._targets(alias.targets, tag, found, depth)
            return True
        return False

    async def _targets(
        self, targets: Iterable[str], tag: str | None, found: _Expansion, depth: int
    ) -> None:
        for target in targets:
            await self._expand(parse_address(target).key, tag, found, depth + 1)

    async def owned_addresses(self, account: Account) -> set[str]:
        """Every address the account may send as: its own and the aliases that resolve only
        to it (RFC 6409 §6.1 leaves the rule to the site; this is Mox's and Stalwart's)."""
        owned = {account.address}
        for alias in await self._store.list_aliases(account.domain):
            if alias.address.startswith("@"):
                continue
            resolution = await self.resolve(parse_address(alias.address))
            if not resolution.remote and {r.account.id for r in resolution.local} == {account.id}:
                owned.add(alias.address)
        return owned

    async def owns(self, account: Account, address: Address) -> bool:
        """Whether ``account`` may send as ``address``: its own address or an owned alias
        (:meth:`owned_addresses`), or a plus-address of either."""
        key = address.key
        local, _, domain = key.rpartition("@")
        base = f"{local.partition(PLUS_DELIMITER)[0]}@{domain}"
        if account.address in (key, base):
            return True
        owned = await self.owned_addresses(account)
        return key in owned or base in owned
