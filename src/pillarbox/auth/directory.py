"""Authenticating against the account store: passwords, SASL exchanges, limits, a login cache.

Implementation notes:

- **One answer for every failure.** Unknown user, wrong password, disabled password login
  (a stored hash that is not argon2id) all raise the same :class:`AuthenticationFailed`, after
  the same work: an unknown user still costs one argon2 verification (against a dummy hash), and
  a SCRAM exchange for an unknown user runs to the proof against a decoy verifier whose salt is
  stable per name (RFC 4422 §3.6: the outcome must not tell a bad user from a bad password).
- **Limits before work.** The client address is checked before anything is parsed, the account
  as soon as its name is known; a refused attempt raises :class:`RateLimited` and costs no hash.
  Failures count against the address and (for wrong credentials) against the account name,
  known or not. Success clears the account's count only: one valid login must not reset an
  address that is guessing other accounts' passwords.
- **Verified-login cache** (like Dovecot's ``auth_cache``): a correct password is remembered as
  ``HMAC(per-process key, account id, password)`` for ``ttl`` seconds, never the password itself;
  an entry is used only while the account's stored hash string is unchanged, so a password
  change invalidates it at once. The account is still read from the store on every login.
- **Argon2 runs off the event loop** (``pillarbox.blocking.run_blocking``); SCRAM needs only a
  few HMACs and runs inline.
- **Second factor** (RFC 6238, :mod:`pillarbox.web.twofactor`): IMAP, POP3, SMTP,
  ManageSieve and CardDAV cannot ask for a code, so an account that enrolled one logs in there
  by app password only (as Fastmail and Google do): its account password, and SCRAM (whose
  verifier is derived from it), are refused like a wrong password, with a log line saying why.
  Only the web login (``interactive=True``), which asks for the code next, takes the account
  password.
- **App passwords are for mail programs**: an interactive (web) check takes only the account
  password, so an app password copied off a phone cannot open the webmail, its settings, or
  change the account password (Google and Fastmail scope them the same way).
- **Upgrade on login.** After a correct password, a hash made with old parameters is rehashed and
  a missing SCRAM verifier is derived, so SCRAM becomes available without a password reset.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from pillarbox.auth.passwords import (
    DEFAULT_HASH_PARAMS,
    HashParams,
    InvalidVerifier,
    hash_password,
    is_password_hash,
    needs_rehash,
    parse_scram_verifier,
    scram_verifier,
    verify_password,
)
from pillarbox.auth.ratelimit import RateLimiter, RateLimits
from pillarbox.auth.sasl import (
    Challenge,
    Failure,
    FailureReason,
    NeedPasswordCheck,
    NeedScramVerifier,
    ServerMechanism,
    ServerStep,
    Success,
    mechanism_names,
    new_server_mechanism,
)
from pillarbox.auth.saslprep import StringprepError
from pillarbox.auth.scram import SCRAM_SHA_256, ScramVerifier
from pillarbox.auth.tokens import token_digest
from pillarbox.blocking import run_blocking
from pillarbox.clientaddress import DEFAULT_IPV6_PREFIX, client_key
from pillarbox.errors import (
    AuthenticationFailed,
    ConfigError,
    InvalidName,
    RateLimited,
    StorageError,
)
from pillarbox.mail.address import domain_to_ascii
from pillarbox.observability.log import Log
from pillarbox.store.interface import Store
from pillarbox.store.types import Account, TokenKind

_log = Log("auth")

#: RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets.
MAX_USERNAME = 254


def normalize_username(raw: str) -> str | None:
    """The store's form of a login name (an address), or ``None`` if it cannot be one.

    Surrounding space is stripped; local part and domain are lowercased (Pillarbox treats local
    parts case-insensitively, see ``store.types``), and a Unicode domain becomes its IDNA
    A-label, as the store keeps domains.
    """
    name = raw.strip()
    local, at, domain = name.rpartition("@")
    if not at or not local or not domain or len(name) > MAX_USERNAME:
        return None
    domain = domain.lower()
    if not domain.isascii():
        try:
            domain = domain_to_ascii(domain)
        except InvalidName:
            return None
    return f"{local.lower()}@{domain}"


def _limit_key(raw: str) -> str:
    """The rate-limit key of a login name: its normal form, or a bounded stand-in for garbage."""
    return normalize_username(raw) or raw.strip().lower()[:MAX_USERNAME]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginCacheLimits:
    #: Verified logins remembered at most (least recently used go first); 0 turns the cache off.
    max_entries: int = 10000
    #: Seconds a verified login is trusted without running argon2 again.
    ttl: float = 300.0

    def __post_init__(self) -> None:
        if self.max_entries < 0:
            raise ConfigError("max_entries", "must not be negative")
        if self.ttl < 0:
            raise ConfigError("ttl", "must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthLimits:
    """Every knob of :class:`Authenticator`, for the config loader to fill."""

    #: Failures per client address (strict: one address guessing is an attack).
    per_address: RateLimits = field(default_factory=RateLimits)
    #: Failures per account name (lenient: a stranger's failures must not lock the owner out
    #: for long).
    per_account: RateLimits = field(
        default_factory=lambda: RateLimits(
            free_failures=5, base_delay=1.0, max_delay=30.0, lockout_failures=30, lockout=300.0
        )
    )
    login_cache: LoginCacheLimits = field(default_factory=LoginCacheLimits)
    #: IPv6 addresses count against ``per_address`` by this prefix (:mod:`pillarbox.clientaddress`).
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX
    #: Offer PLAIN and LOGIN on connections without TLS (RFC 8314 §3 says don't).
    allow_plaintext_without_tls: bool = False


class LoginCache:
    """Bounded, expiring memory of verified (account, password) pairs; holds no password.

    Time is an argument, as in the rate limiter.
    """

    def __init__(self, limits: LoginCacheLimits) -> None:
        self._limits = limits
        self._key = secrets.token_bytes(32)
        # (account id, HMAC of the password) → (stored hash when verified, expiry time)
        self._entries: OrderedDict[tuple[int, bytes], tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _id(self, account: Account, password: str) -> tuple[int, bytes]:
        message = account.id.to_bytes(8, "big") + password.encode("utf-8", "surrogatepass")
        return account.id, hmac.digest(self._key, message, "sha256")

    def verified(self, account: Account, password: str, now: float) -> bool:
        """Whether ``password`` was verified for ``account`` recently and its hash is unchanged."""
        key = self._id(account, password)
        entry = self._entries.get(key)
        if entry is None:
            return False
        password_hash, expires = entry
        if expires <= now or password_hash != account.password_hash:
            del self._entries[key]
            return False
        self._entries.move_to_end(key)
        return True

    def remember(self, account: Account, password: str, now: float) -> None:
        """Record that ``password`` is correct for ``account`` as its hash stands now."""
        if self._limits.max_entries == 0:
            return
        key = self._id(account, password)
        self._entries[key] = (account.password_hash, now + self._limits.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._limits.max_entries:
            self._entries.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A finished SASL exchange: the session acts as ``account``."""

    account: Account
    #: Address of the account whose credentials were proven (differs from ``account.address``
    #: only when a policy let it act as someone else).
    authenticated_as: str
    mechanism: str


#: ``may_act_as(authcid, authzid)`` on normalised addresses, for authzids other than oneself.
ProxyPolicy = Callable[[str, str], bool]


def _nobody_else(authcid: str, authzid: str) -> bool:
    return False


class Authenticator:
    """Checks credentials for every protocol against one :class:`Store`."""

    def __init__(
        self,
        store: Store,
        *,
        limits: AuthLimits | None = None,
        hash_params: HashParams = DEFAULT_HASH_PARAMS,
        may_act_as: ProxyPolicy = _nobody_else,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._limits = limits or AuthLimits()
        self._hash_params = hash_params
        self._may_act_as = may_act_as
        self._clock = clock
        self._by_address = RateLimiter(self._limits.per_address)
        self._by_account = RateLimiter(self._limits.per_account)
        self._cache = LoginCache(self._limits.login_cache)
        self._decoy_key = secrets.token_bytes(32)
        self._dummy_hash: str | None = None

    # -- what to offer ---------------------------------------------------------------------------
    def mechanisms(self, *, secure: bool) -> tuple[str, ...]:
        """SASL mechanism names to advertise on a connection (TLS or not)."""
        return mechanism_names(
            secure=secure, allow_plaintext_without_tls=self._limits.allow_plaintext_without_tls
        )

    def start_sasl(self, mechanism: str, *, remote_ip: str, secure: bool) -> SaslSession:
        """A session for one AUTH/AUTHENTICATE command.

        Raises :class:`~pillarbox.auth.sasl.UnsupportedMechanism` for a name this connection
        does not offer.
        """
        mech = new_server_mechanism(
            mechanism,
            secure=secure,
            allow_plaintext_without_tls=self._limits.allow_plaintext_without_tls,
            authorize=self._authorize,
        )
        return SaslSession(self, mech, remote_ip)

    # -- plain username + password (IMAP LOGIN, POP3 USER/PASS, web login) ----------------------
    async def check_password(
        self, username: str, password: str, remote_ip: str, *, interactive: bool = False
    ) -> Account:
        """The account if ``password`` is right for ``username``.

        ``interactive``: a person at the web (login, or confirming a change), who must give
        the account password — app passwords are for mail programs, and one copied from a
        phone must not open the web settings or change the password — and whose second
        factor is checked after this; otherwise an account with a second factor accepts only
        its app passwords.

        Raises :class:`RateLimited` (with ``retry_after``) when the address or account is
        throttled, :class:`AuthenticationFailed` for any wrong or unknown credentials.
        """
        account_key = _limit_key(username)
        self.check_limits(remote_ip, account_key)
        account = await self._verify(
            normalize_username(username), password, interactive=interactive
        )
        if account is None:
            self._record_failure(remote_ip, account_key)
            raise AuthenticationFailed("invalid credentials")
        self._by_account.record_success(account_key)
        return account

    def second_factor_failed(self, remote_ip: str, username: str) -> None:
        """Count a wrong one-time or recovery code like a wrong password, against the client
        address and the account: the code's 10^6 values must not be guessable at leisure."""
        self._record_failure(remote_ip, _limit_key(username))

    def second_factor_passed(self, username: str) -> None:
        """The owner got in: forget the account's failures (never the address's, as for a
        password)."""
        self._by_account.record_success(_limit_key(username))

    def check_limits(self, remote_ip: str, username: str | None = None) -> None:
        """Raise :class:`RateLimited` if ``remote_ip`` (or the account named ``username``) must
        wait; adapters may call it early, e.g. before answering POP3 ``USER``."""
        now = self._clock()
        waits = [self._by_address.check(client_key(remote_ip, self._limits.ipv6_prefix), now)]
        if username is not None:
            waits.append(self._by_account.check(_limit_key(username), now))
        wait = max((w for w in waits if w is not None), default=None)
        if wait is not None:
            raise RateLimited("too many authentication failures", retry_after=wait)

    def _record_failure(self, remote_ip: str, account_key: str | None) -> None:
        now = self._clock()
        self._by_address.record_failure(client_key(remote_ip, self._limits.ipv6_prefix), now)
        if account_key is not None:
            self._by_account.record_failure(account_key, now)

    async def _verify(
        self, address: str | None, password: str, *, interactive: bool = False
    ) -> Account | None:
        """The account if the password is right; the same argon2 cost whatever goes wrong."""
        account = await self._store.get_account(address) if address is not None else None
        if account is not None and self._cache.verified(account, password, self._clock()):
            return await self._account_password_allowed(account, interactive)
        if (
            account is not None
            and not interactive
            and await self._is_app_password(account, password)
        ):
            return account
        if account is not None and is_password_hash(account.password_hash):
            candidate, target = account, account.password_hash
        else:
            candidate, target = None, await self._dummy()
        if not await run_blocking(verify_password, target, password) or candidate is None:
            return None
        self._cache.remember(candidate, password, self._clock())
        upgraded = await self._upgrade(candidate, password)
        return await self._account_password_allowed(upgraded, interactive)

    async def _account_password_allowed(
        self, account: Account, interactive: bool
    ) -> Account | None:
        """``account``, unless it has a second factor and the login cannot ask for it."""
        if interactive or await self._store.get_totp(account.id) is None:
            return account
        _log.info(
            "account password refused: the account has two-factor login; use an app password",
            account=account.address,
        )
        return None

    async def _is_app_password(self, account: Account, password: str) -> bool:
        """An app password issued to this account (web settings) logs in like the password,
        for IMAP, POP3, SMTP and ManageSieve alike (never the web); it cannot be used for
        another account."""
        token = await self._store.find_token(TokenKind.APP_PASSWORD, token_digest(password))
        return token is not None and token.account_id == account.id

    async def _dummy(self) -> str:
        """A hash of a random password with the current parameters, made once per process."""
        if self._dummy_hash is None:
            self._dummy_hash = await run_blocking(
                hash_password, secrets.token_urlsafe(16), self._hash_params
            )
        return self._dummy_hash

    async def _upgrade(self, account: Account, password: str) -> Account:
        """Rehash an outdated hash and add a missing SCRAM verifier, now that we know the
        password. A failure here must not fail the login: it is logged and retried next time."""
        rehash = needs_rehash(account.password_hash, self._hash_params)
        if not rehash and account.scram_sha256 is not None:
            return account
        try:
            new_hash = (
                await run_blocking(hash_password, password, self._hash_params)
                if rehash
                else account.password_hash
            )
            verifier = account.scram_sha256 or await run_blocking(
                scram_verifier, password, params=self._hash_params
            )
            await self._store.set_password(account.id, new_hash, verifier)
        except StringprepError:
            return account  # verifiable as a query string, but not storable: leave it be
        except StorageError:
            _log.exception("password upgrade failed", account=account.address)
            return account
        upgraded = dataclasses.replace(account, password_hash=new_hash, scram_sha256=verifier)
        self._cache.remember(upgraded, password, self._clock())
        return upgraded

    # -- pieces for SaslSession ----------------------------------------------------------------
    def _authorize(self, authcid: str, authzid: str) -> bool:
        cid, zid = normalize_username(authcid), normalize_username(authzid)
        if cid is None or zid is None:
            return False
        return cid == zid or self._may_act_as(cid, zid)

    async def _scram_verifier(
        self, address: str | None, key: str
    ) -> tuple[Account | None, ScramVerifier]:
        """The account and its verifier; for an unknown account or one without a verifier, a
        decoy (stable per name) that no proof can match."""
        account = await self._store.get_account(address) if address is not None else None
        if account is not None and await self._store.get_totp(account.id) is not None:
            # SCRAM proves the account password, which a second factor takes off the mail
            # protocols (app passwords have no verifier): the decoy below refuses it.
            _log.info("SCRAM refused: the account has two-factor login", account=account.address)
            account = None
        if account is not None and account.scram_sha256 is not None:
            try:
                return account, parse_scram_verifier(account.scram_sha256)
            except InvalidVerifier as exc:
                raise StorageError(f"corrupt SCRAM verifier for {account.address}") from exc
        tag = hmac.digest(self._decoy_key, key.encode("utf-8", "surrogatepass"), "sha256")
        decoy = ScramVerifier(
            SCRAM_SHA_256,
            self._hash_params.scram_iterations,
            salt=tag[: self._hash_params.salt_len],
            stored_key=hmac.digest(self._decoy_key, b"stored\x00" + tag, "sha256"),
            server_key=hmac.digest(self._decoy_key, b"server\x00" + tag, "sha256"),
        )
        return None, decoy


class SaslSession:
    """Drives one server mechanism to its end, doing the store's part, so that a protocol
    adapter only moves bytes::

        session = authenticator.start_sasl(name, remote_ip=peer, secure=tls)
        step = await session.start(initial_response)       # None if the client sent none
        while isinstance(step, Challenge):
            step = await session.receive(await next_response())   # base64-decoded by the core
        account = step.account                              # an Authenticated

    :meth:`start` and :meth:`receive` raise :class:`AuthenticationFailed` or
    :class:`RateLimited` when the exchange fails; a client's cancel (``*``) is the core's to
    answer, and the session is then simply dropped.
    """

    def __init__(self, authenticator: Authenticator, mechanism: ServerMechanism, remote_ip: str):
        self._auth = authenticator
        self._mech = mechanism
        self._remote_ip = remote_ip
        self._account_key: str | None = None
        self._account: Account | None = None

    @property
    def mechanism(self) -> str:
        return self._mech.name

    async def start(self, initial_response: bytes | None) -> Challenge | Authenticated:
        self._auth.check_limits(self._remote_ip)
        return await self._drive(self._mech.start(initial_response))

    async def receive(self, response: bytes) -> Challenge | Authenticated:
        return await self._drive(self._mech.receive(response))

    async def _drive(self, step: ServerStep) -> Challenge | Authenticated:
        while True:
            match step:
                case Challenge():
                    return step
                case NeedPasswordCheck(authcid=authcid, password=password):
                    self._account_key = _limit_key(authcid)
                    self._auth.check_limits(self._remote_ip, self._account_key)
                    self._account = await self._auth._verify(normalize_username(authcid), password)
                    step = self._mech.resolve_password(self._account is not None)
                case NeedScramVerifier(username=username):
                    self._account_key = _limit_key(username)
                    self._auth.check_limits(self._remote_ip, self._account_key)
                    self._account, verifier = await self._auth._scram_verifier(
                        normalize_username(username), self._account_key
                    )
                    step = self._mech.resolve_verifier(verifier)
                case Success(authzid=authzid):
                    return await self._succeed(authzid)
                case Failure(reason=reason, detail=detail):
                    self._fail(reason, detail)

    async def _succeed(self, authzid: str) -> Authenticated:
        account = self._account
        if account is None:  # a decoy verifier cannot be matched; refuse if it ever were
            self._fail(FailureReason.INVALID_CREDENTIALS, "no such account")
        target_address = normalize_username(authzid)
        target = (
            account
            if target_address == account.address
            else await self._auth._store.get_account(target_address or "")
        )
        if target is None:
            self._fail(FailureReason.AUTHZ_DENIED, "authorization identity does not exist")
        assert self._account_key is not None
        self._auth._by_account.record_success(self._account_key)
        return Authenticated(target, account.address, self._mech.name)

    def _fail(self, reason: FailureReason, detail: str) -> NoReturn:
        account_key = self._account_key if reason is FailureReason.INVALID_CREDENTIALS else None
        self._auth._record_failure(self._remote_ip, account_key)
        raise AuthenticationFailed(f"{self._mech.name}: {reason.value} ({detail})")
