"""Where a recipient's mail goes: which local accounts, which remote addresses, or nowhere.

Resolution order for an address at a hosted domain, as Postfix's virtual(5) and Dovecot's
recipient_delimiter behave:

1. an account with exactly that address;
2. an alias with exactly that address (targets expanded recursively; they may be remote);
3. plus-addressing: ``user+tag@domain`` → ``user@domain`` by rules 1–2, the tag kept;
4. the domain's catch-all alias ``@domain``;
5. otherwise unknown — refused at RCPT with 550 5.1.1, never accepted and bounced later
   (no backscatter).

Addresses at other domains are remote. Alias expansion is bounded in depth and guarded against
loops; a loop or an over-deep chain resolves to what was found before it, and is logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pillarbox.mail.address import Address, parse_address
from pillarbox.store.interface import Store
from pillarbox.store.types import Account

PLUS_DELIMITER = "+"
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

    @property
    def unknown(self) -> bool:
        return not self.local and not self.remote


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
        local: dict[int, LocalRecipient] = {}
        remote: dict[str, None] = {}
        await self._expand_hosted(address.key, address.normalised, None, local, remote, set(), 0)
        return Resolution(local=tuple(local.values()), remote=tuple(remote), hosted=True)

    async def _expand(
        self,
        key: str,
        original: str,
        tag: str | None,
        local: dict[int, LocalRecipient],
        remote: dict[str, None],
        seen: set[str],
        depth: int,
    ) -> None:
        if not await self.is_hosted(key.rpartition("@")[2]):
            if key not in seen:
                seen.add(key)
                remote.setdefault(key, None)
            return
        await self._expand_hosted(key, original, tag, local, remote, seen, depth)

    async def _expand_hosted(
        self,
        key: str,
        original: str,
        tag: str | None,
        local: dict[int, LocalRecipient],
        remote: dict[str, None],
        seen: set[str],
        depth: int,
    ) -> None:
        """Expand an address whose domain is known to be hosted."""
        if key in seen or depth > self._max_depth:
            return
        seen.add(key)
        local_part, _, domain = key.rpartition("@")
        if await self._direct(key, original, tag, local, remote, seen, depth):
            return
        if PLUS_DELIMITER in local_part:
            base, _, plus_tag = local_part.partition(PLUS_DELIMITER)
            if base and await self._direct(
                f"{base}@{domain}", original, plus_tag or tag, local, remote, seen, depth
            ):
                return
        catch_all = await self._store.get_alias(f"@{domain}")
        if catch_all is not None:
            await self._targets(catch_all.targets, original, tag, local, remote, seen, depth)

    async def _direct(
        self,
        key: str,
        original: str,
        tag: str | None,
        local: dict[int, LocalRecipient],
        remote: dict[str, None],
        seen: set[str],
        depth: int,
    ) -> bool:
        account = await self._store.get_account(key)
        if account is not None:
            local.setdefault(account.id, LocalRecipient(account, original, tag))
            return True
        alias = await self._store.get_alias(key)
        if alias is not None:
            await self._targets(alias.targets, original, tag, local, remote, seen, depth)
            return True
        return False

    async def _targets(
        self,
        targets: Iterable[str],
        original: str,
        tag: str | None,
        local: dict[int, LocalRecipient],
        remote: dict[str, None],
        seen: set[str],
        depth: int,
    ) -> None:
        for target in targets:
            key = parse_address(target).key
            await self._expand(key, original, tag, local, remote, seen, depth + 1)

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
