"""Creating and removing domains, accounts and aliases, with every check an operator expects.

The CLI and the web admin both call these, so a rule (password strength, domain must be hosted,
alias targets must be valid addresses) is enforced in one place, not in each front end. The
store itself only guarantees integrity (no duplicates, referential rules).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pillarbox.auth.directory import Authenticator, AuthLimits, LoginCacheLimits
from pillarbox.auth.passwords import HashParams, check_strength, hash_password, scram_verifier
from pillarbox.auth.ratelimit import RateLimits
from pillarbox.auth.saslprep import StringprepError
from pillarbox.blocking import run_blocking
from pillarbox.config import Config
from pillarbox.errors import AlreadyExists, InvalidName, NotFound, UserError
from pillarbox.mail.address import domain_to_ascii, parse_address
from pillarbox.queue import sendlimits
from pillarbox.store.interface import Store
from pillarbox.store.types import Account, Alias, DkimKeyRecord, Domain, SendingLimits


def hash_params(config: Config) -> HashParams:
    auth = config.auth
    return HashParams(
        time_cost=auth.argon2_time_cost,
        memory_cost=auth.argon2_memory_cost,
        parallelism=auth.argon2_parallelism,
        scram_iterations=auth.scram_iterations,
    )


def authenticator(store: Store, config: Config) -> Authenticator:
    """The one authenticator of a running server, with the configured limits."""
    auth = config.auth
    limits = AuthLimits(
        per_address=RateLimits(
            window=auth.window,
            free_failures=auth.free_failures,
            base_delay=auth.base_delay,
            max_delay=auth.max_delay,
            lockout_failures=auth.lockout_failures,
            lockout=auth.lockout,
        ),
        per_account=RateLimits(
            window=auth.window,
            free_failures=min(auth.free_failures + 2, auth.account_lockout_failures - 1),
            base_delay=auth.base_delay / 2,
            max_delay=auth.max_delay / 2,
            lockout_failures=auth.account_lockout_failures,
            lockout=auth.account_lockout,
        ),
        login_cache=LoginCacheLimits(
            max_entries=auth.login_cache_entries, ttl=auth.login_cache_ttl
        ),
        ipv6_prefix=config.server.ipv6_client_prefix,
    )
    return Authenticator(store, limits=limits, hash_params=hash_params(config))


def normalise_domain(name: str) -> str:
    """A hosted domain's stored form: lowercase A-labels, no trailing dot."""
    text = name.strip().rstrip(".")
    if not text or "@" in text or text.startswith("["):
        raise InvalidName(f"invalid domain name {name!r}")
    ascii_name = domain_to_ascii(text)
    if "." not in ascii_name and ascii_name != "localhost":
        raise InvalidName(f"invalid domain name {name!r}: needs at least two labels")
    return ascii_name


def account_key(address: str) -> str:
    """The form accounts are stored and looked up by (lowercase local part, A-label domain)."""
    try:
        parsed = parse_address(address.strip())
    except InvalidName as exc:
        raise InvalidName(f"invalid address {address!r}: {exc}") from None
    if parsed.is_literal or parsed.is_bare_postmaster:
        raise InvalidName(f"invalid address {address!r}: needs a domain name")
    return parsed.key


def alias_key(address: str) -> str:
    """An alias's stored form: an account-style key, or ``@domain`` for a catch-all."""
    text = address.strip()
    return "@" + normalise_domain(text[1:]) if text.startswith("@") else account_key(text)


async def add_domain(store: Store, name: str) -> Domain:
    """Host a domain, with an RSA-2048 and an Ed25519 DKIM key to sign its outbound mail."""
    domain = await store.add_domain(normalise_domain(name))
    await add_dkim_keys(store, domain.name, datetime.now(UTC))
    return domain


async def add_dkim_keys(store: Store, domain: str, now: datetime) -> list[DkimKeyRecord]:
    """One new key per algorithm (RFC 8463 §4: sign with both), each under a selector never
    used by the domain before."""
    # Imported here: dkimpy loads dnspython's resolver, ~70 ms of every other admin command
    # that provisions (adding a user or an alias) and never signs.
    from pillarbox.queue import dkim

    taken = {k.selector for k in await store.list_dkim_keys(domain, include_retired=True)}
    added = []
    for algorithm in dkim.DkimAlgorithm:
        base = dkim.selector_for(algorithm, now)
        selector = next(
            s for s in (base, *(f"{base}{n}" for n in range(2, 1000))) if s not in taken
        )
        key = await run_blocking(dkim.generate_key, algorithm, now=now, selector=selector)
        record = DkimKeyRecord(domain, key.selector, algorithm.value, key.private_pem, now)
        await store.add_dkim_key(record)
        added.append(record)
    return added


async def rotate_dkim(store: Store, name: str) -> tuple[list[DkimKeyRecord], list[str]]:
    """New keys for a hosted domain; the previous active ones are retired (no longer sign, still
    published for a while). Returns the new keys and the retired selectors."""
    domain = normalise_domain(name)
    if await store.get_domain(domain) is None:
        raise NotFound(f"no such domain: {domain}")
    now = datetime.now(UTC)
    old = await store.list_dkim_keys(domain)
    added = await add_dkim_keys(store, domain, now)
    for key in old:
        await store.retire_dkim_key(domain, key.selector, now)
    return added, [k.selector for k in old]


async def remove_domain(store: Store, name: str) -> None:
    domain = normalise_domain(name)
    if await store.get_domain(domain) is None:
        raise NotFound(f"no such domain: {domain}")
    await store.remove_domain(domain)


async def _credentials(config: Config, password: str) -> tuple[str, str]:
    reason = check_strength(password, config.auth.min_password_length)
    if reason:
        raise UserError(f"password rejected: {reason}")
    params = hash_params(config)
    try:
        hashed = await run_blocking(hash_password, password, params)
        scram = await run_blocking(scram_verifier, password, params=params)
    except StringprepError as exc:
        raise UserError(f"password rejected: {exc}") from None
    return hashed, scram


#: The largest quota: the stores' integers are 64-bit signed.
MAX_QUOTA = 2**63 - 1


def checked_quotas(
    quota_bytes: int | None, quota_messages: int | None
) -> tuple[int | None, int | None]:
    """The quotas if each is None (unlimited) or 0 to :data:`MAX_QUOTA`; every way of setting
    them (admin page, JSON API, ``user add``) goes through here."""
    for value in (quota_bytes, quota_messages):
        if value is not None and value < 0:
            raise UserError("quotas cannot be negative")
        if value is not None and value > MAX_QUOTA:
            raise UserError("quotas must be below 2^63")
    return quota_bytes, quota_messages


async def add_account(
    store: Store,
    config: Config,
    address: str,
    password: str,
    *,
    display_name: str = "",
    is_admin: bool = False,
    quota_bytes: int | None = None,
    quota_messages: int | None = None,
) -> Account:
    key = account_key(address)
    checked_quotas(quota_bytes, quota_messages)
    domain = key.rpartition("@")[2]
    if await store.get_domain(domain) is None:
        raise NotFound(f"domain {domain} is not hosted here (add it with `pillarbox domain add`)")
    if await store.get_account(key) is not None:
        raise AlreadyExists(f"account {key} exists already")
    if await store.get_alias(key) is not None:
        raise AlreadyExists(f"{key} is an alias")
    hashed, scram = await _credentials(config, password)
    return await store.add_account(
        key,
        hashed,
        scram_sha256=scram,
        display_name=display_name,
        is_admin=is_admin,
        quota_bytes=quota_bytes,
        quota_messages=quota_messages,
    )


async def get_account(store: Store, address: str) -> Account:
    key = account_key(address)
    account = await store.get_account(key)
    if account is None:
        raise NotFound(f"no such account: {key}")
    return account


async def set_password(store: Store, config: Config, address: str, password: str) -> Account:
    account = await get_account(store, address)
    hashed, scram = await _credentials(config, password)
    await store.set_password(account.id, hashed, scram)
    return account


async def set_sending_limits(store: Store, address: str, limits: SendingLimits) -> Account:
    """Give ``address`` its own sending limits (None: the default, 0: unlimited)."""
    account = await get_account(store, address)
    await store.set_sending_limits(account.id, sendlimits.checked(limits))
    return account


async def remove_second_factor(store: Store, address: str) -> tuple[Account, bool]:
    """Remove ``address``'s two-factor web login and its recovery codes — account recovery
    when the owner lost the device (or its secret no longer opens): the owner then logs in
    with the password alone and may enrol again. Whether there was one."""
    account = await get_account(store, address)
    return account, await store.disable_totp(account.id)


async def remove_account(store: Store, address: str) -> None:
    account = await get_account(store, address)
    await store.remove_account(account.id)


async def add_alias(store: Store, address: str, targets: Sequence[str]) -> Alias:
    """``address`` is ``local@domain`` or ``@domain`` (catch-all); targets are addresses,
    local or remote."""
    key = alias_key(address)
    domain = key.rpartition("@")[2]
    if await store.get_domain(domain) is None:
        raise NotFound(f"domain {domain} is not hosted here")
    if not key.startswith("@") and await store.get_account(key) is not None:
        raise AlreadyExists(f"{key} is an account")
    if not targets:
        raise UserError("an alias needs at least one target")
    normalised = [account_key(t) for t in targets]
    if key in normalised:
        raise UserError("an alias cannot point at itself")
    return await store.add_alias(key, normalised)


async def remove_alias(store: Store, address: str) -> None:
    key = alias_key(address)
    if await store.get_alias(key) is None:
        raise NotFound(f"no such alias: {key}")
    await store.remove_alias(key)
