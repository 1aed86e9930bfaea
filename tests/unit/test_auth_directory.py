"""The Authenticator (pillarbox.auth.directory) against the real SQLite store."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox.auth import directory
from pillarbox.auth.directory import (
    Authenticated,
    Authenticator,
    AuthLimits,
    LoginCache,
    LoginCacheLimits,
    SaslSession,
    normalize_username,
)
from pillarbox.auth.passwords import (
    HashParams,
    hash_password,
    is_password_hash,
    needs_rehash,
    parse_scram_verifier,
    scram_verifier,
    verify_password,
)
from pillarbox.auth.ratelimit import RateLimits
from pillarbox.auth.sasl import Challenge, PlainClient, ScramClient, UnsupportedMechanism
from pillarbox.errors import AuthenticationFailed, RateLimited
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store
from pillarbox.store.types import Account

CHEAP = HashParams(time_cost=1, memory_cost=8, parallelism=1, hash_len=16, salt_len=8)
PEER = "192.0.2.1"
PASSWORD = "correct horse battery"


class Clock:
    """A settable monotonic clock for the limiter and cache (time is an argument there)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store("sqlite:auth.sqlite3", tmp_path)
    await s.open()
    await s.add_domain("example.org")
    yield s
    await s.close()


@pytest.fixture
async def alice(store: Store) -> Account:
    return await store.add_account(
        "alice@example.org",
        hash_password(PASSWORD, CHEAP),
        scram_sha256=scram_verifier(PASSWORD, params=CHEAP),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_auth(store: Store, clock: Clock) -> Callable[..., Authenticator]:
    def make(**kwargs: object) -> Authenticator:
        return Authenticator(store, hash_params=CHEAP, clock=clock, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the hash each argon2 verification ran against (the real function still runs)."""
    calls: list[str] = []

    def spy(password_hash: str, password: str) -> bool:
        calls.append(password_hash)
        return verify_password(password_hash, password)

    monkeypatch.setattr(directory, "verify_password", spy)
    return calls


# -- check_password -----------------------------------------------------------------------------


async def test_check_password_right_and_wrong(
    make_auth: Callable[..., Authenticator], alice: Account
) -> None:
    auth = make_auth()
    account = await auth.check_password("alice@example.org", PASSWORD, PEER)
    assert account.id == alice.id
    with pytest.raises(AuthenticationFailed):
        await auth.check_password("alice@example.org", "wrong", PEER)


async def test_username_is_normalised(
    make_auth: Callable[..., Authenticator], alice: Account
) -> None:
    account = await make_auth().check_password("  Alice@EXAMPLE.Org ", PASSWORD, PEER)
    assert account.id == alice.id


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Bob@Example.ORG", "bob@example.org"),
        (" bob@example.org\t", "bob@example.org"),
        ("bob@bücher.example", "bob@xn--bcher-kva.example"),
        ("bob", None),
        ("@example.org", None),
        ("bob@", None),
        ("b" * 250 + "@example.org", None),
    ],
)
def test_normalize_username(raw: str, normal: str | None) -> None:
    assert normalize_username(raw) == normal


async def test_unknown_user_costs_one_verification(
    make_auth: Callable[..., Authenticator], alice: Account, verify_calls: list[str]
) -> None:
    auth = make_auth()
    for name in ("nobody@example.org", "not an address"):
        with pytest.raises(AuthenticationFailed) as info:
            await auth.check_password(name, PASSWORD, PEER)
        assert str(info.value) == "invalid credentials"
    assert len(verify_calls) == 2
    assert all(is_password_hash(h) for h in verify_calls)
    assert not needs_rehash(verify_calls[0], CHEAP)  # the dummy costs what a real hash costs


async def test_disabled_password_login_costs_a_verification_and_fails(
    make_auth: Callable[..., Authenticator], store: Store, verify_calls: list[str]
) -> None:
    await store.add_account("locked@example.org", "!")
    with pytest.raises(AuthenticationFailed):
        await make_auth().check_password("locked@example.org", "!", PEER)
    assert len(verify_calls) == 1
    assert verify_calls[0] != "!"


# -- rate limits --------------------------------------------------------------------------------

STRICT = AuthLimits(
    per_address=RateLimits(
        window=60.0, free_failures=1, base_delay=10.0, lockout_failures=3, lockout=30.0
    ),
    per_account=RateLimits(
        window=60.0, free_failures=1, base_delay=5.0, lockout_failures=4, lockout=20.0
    ),
)


async def test_failures_throttle_the_address(
    make_auth: Callable[..., Authenticator], alice: Account, clock: Clock, verify_calls: list[str]
) -> None:
    auth = make_auth(limits=STRICT)
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            await auth.check_password("alice@example.org", "wrong", PEER)
    calls = len(verify_calls)
    # Second failure is beyond the free one: 10 s delay; even the right password must wait,
    # and costs no hash.
    with pytest.raises(RateLimited) as info:
        await auth.check_password("alice@example.org", PASSWORD, PEER)
    assert info.value.retry_after == 10.0
    assert len(verify_calls) == calls
    # Another address is throttled by the account limit only (5 s).
    with pytest.raises(RateLimited) as info:
        await auth.check_password("alice@example.org", PASSWORD, "192.0.2.2")
    assert info.value.retry_after == 5.0
    clock.now += 10.0
    assert (await auth.check_password("alice@example.org", PASSWORD, PEER)).id == alice.id


async def test_lockout_then_release(
    make_auth: Callable[..., Authenticator], alice: Account, clock: Clock
) -> None:
    auth = make_auth(limits=STRICT)
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            await auth.check_password(f"user{clock.now}@example.org", "wrong", PEER)
        clock.now += 20.0  # past every per-failure delay
    with pytest.raises(RateLimited) as info:
        await auth.check_password("alice@example.org", PASSWORD, PEER)
    assert info.value.retry_after == 10.0  # locked 30 s from the third failure, 20 s ago
    clock.now += 10.0
    await auth.check_password("alice@example.org", PASSWORD, PEER)


async def test_an_ipv6_host_cannot_spray_from_its_prefix(
    make_auth: Callable[..., Authenticator], alice: Account, clock: Clock
) -> None:
    """Password spraying (one guess per account) from a fresh address of one /64 each time
    was never limited: every address was a new key. The prefix is one client now."""
    auth = make_auth(limits=STRICT)
    for n in range(3):
        with pytest.raises(AuthenticationFailed):
            await auth.check_password(f"user{n}@example.org", "wrong", f"2001:db8:1:2::{n + 1}")
        clock.now += 20.0
    with pytest.raises(RateLimited):
        await auth.check_password("alice@example.org", PASSWORD, "2001:db8:1:2:ffff::9")
    assert (await auth.check_password("alice@example.org", PASSWORD, "2001:db8:1:3::1")).id
    alone = make_auth(limits=dataclasses.replace(STRICT, ipv6_prefix=128))
    for n in range(3):
        with pytest.raises(AuthenticationFailed):
            await alone.check_password(f"user{n}@example.org", "wrong", f"2001:db8:1:2::{n + 1}")
        clock.now += 20.0
    assert (await alone.check_password("alice@example.org", PASSWORD, "2001:db8:1:2::9")).id


async def test_success_resets_account_not_address(
    make_auth: Callable[..., Authenticator], alice: Account, clock: Clock
) -> None:
    auth = make_auth(limits=STRICT)
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            await auth.check_password("alice@example.org", "wrong", PEER)
        clock.now += 10.0
    await auth.check_password("alice@example.org", PASSWORD, PEER)
    # The account's count is gone: another address is not throttled for alice...
    with pytest.raises(AuthenticationFailed):
        await auth.check_password("alice@example.org", "wrong", "192.0.2.9")
    # ...but PEER's failures still count: this third one in the window locks it out.
    with pytest.raises(AuthenticationFailed):
        await auth.check_password("alice@example.org", "wrong", PEER)
    with pytest.raises(RateLimited):
        await auth.check_password("alice@example.org", PASSWORD, PEER)


# -- verified-login cache -----------------------------------------------------------------------


async def test_cache_skips_argon2_until_password_changes(
    make_auth: Callable[..., Authenticator], alice: Account, store: Store, verify_calls: list[str]
) -> None:
    auth = make_auth()
    await auth.check_password("alice@example.org", PASSWORD, PEER)
    await auth.check_password("alice@example.org", PASSWORD, PEER)
    assert len(verify_calls) == 1
    await store.set_password(alice.id, hash_password("new password here", CHEAP), None)
    with pytest.raises(AuthenticationFailed):
        await auth.check_password("alice@example.org", PASSWORD, PEER)
    assert len(verify_calls) == 2


async def test_cache_expires(
    make_auth: Callable[..., Authenticator], alice: Account, clock: Clock, verify_calls: list[str]
) -> None:
    auth = make_auth(limits=AuthLimits(login_cache=LoginCacheLimits(ttl=60.0)))
    await auth.check_password("alice@example.org", PASSWORD, PEER)
    clock.now += 61.0
    await auth.check_password("alice@example.org", PASSWORD, PEER)
    assert len(verify_calls) == 2


def _account(account_id: int, password_hash: str = "$argon2id$x") -> Account:
    return Account(
        id=account_id,
        address=f"u{account_id}@example.org",
        display_name="",
        password_hash=password_hash,
        scram_sha256=None,
        is_admin=False,
        quota_bytes=None,
        quota_messages=None,
        created=datetime(2024, 1, 1, tzinfo=UTC),
    )


def test_login_cache_table() -> None:
    cache = LoginCache(LoginCacheLimits(max_entries=2, ttl=10.0))
    a, b, c = _account(1), _account(2), _account(3)
    cache.remember(a, "pw-a", 0.0)
    assert cache.verified(a, "pw-a", 5.0)
    assert not cache.verified(a, "pw-b", 5.0)  # other password
    assert not cache.verified(b, "pw-a", 5.0)  # other account, same password
    assert not cache.verified(_account(1, "$argon2id$changed"), "pw-a", 5.0)  # hash changed
    assert not cache.verified(a, "pw-a", 5.0)  # ... and the entry is gone for good
    cache.remember(a, "pw-a", 0.0)
    cache.remember(b, "pw-b", 0.0)
    cache.remember(c, "pw-c", 0.0)  # evicts a (least recently used)
    assert len(cache) == 2
    assert not cache.verified(a, "pw-a", 1.0)
    assert cache.verified(c, "pw-c", 9.9)
    assert not cache.verified(c, "pw-c", 10.0)  # expired


def test_login_cache_holds_no_password() -> None:
    cache = LoginCache(LoginCacheLimits())
    cache.remember(_account(1), "hunter2-secret", 0.0)
    stored = repr(cache._entries)
    assert "hunter2-secret" not in stored
    assert base64.b64encode(b"hunter2-secret").decode() not in stored


def test_login_cache_disabled() -> None:
    cache = LoginCache(LoginCacheLimits(max_entries=0))
    cache.remember(_account(1), "pw", 0.0)
    assert not cache.verified(_account(1), "pw", 0.0)


# -- upgrade on login ---------------------------------------------------------------------------


async def test_login_rehashes_and_adds_scram_verifier(
    make_auth: Callable[..., Authenticator], store: Store
) -> None:
    old_params = HashParams(time_cost=2, memory_cost=8, parallelism=1)
    account = await store.add_account("old@example.org", hash_password(PASSWORD, old_params))
    upgraded = await make_auth().check_password("old@example.org", PASSWORD, PEER)
    stored = await store.get_account("old@example.org")
    assert stored is not None
    assert stored == upgraded
    assert stored.password_hash != account.password_hash
    assert not needs_rehash(stored.password_hash, CHEAP)
    assert stored.scram_sha256 is not None
    assert parse_scram_verifier(stored.scram_sha256).iterations == CHEAP.scram_iterations
    # And now SCRAM works for the account.
    result = await _scram_login(make_auth(), "old@example.org", PASSWORD)
    assert result.account.id == account.id


# -- SASL sessions ------------------------------------------------------------------------------


async def _run(session: SaslSession, client: PlainClient | ScramClient) -> Authenticated:
    step = await session.start(client.initial_response())
    while isinstance(step, Challenge):
        step = await session.receive(client.respond(step.data))
    client.finish()
    return step


async def _scram_login(auth: Authenticator, username: str, password: str) -> Authenticated:
    session = auth.start_sasl("SCRAM-SHA-256", remote_ip=PEER, secure=False)
    return await _run(session, ScramClient(username, password))


async def test_sasl_plain(make_auth: Callable[..., Authenticator], alice: Account) -> None:
    auth = make_auth()
    session = auth.start_sasl("PLAIN", remote_ip=PEER, secure=True)
    assert session.mechanism == "PLAIN"
    result = await _run(session, PlainClient("alice@example.org", PASSWORD))
    assert result == Authenticated(alice, "alice@example.org", "PLAIN")
    with pytest.raises(AuthenticationFailed):
        await _run(
            auth.start_sasl("PLAIN", remote_ip=PEER, secure=True),
            PlainClient("alice@example.org", "wrong"),
        )


async def test_sasl_login_without_initial_response(
    make_auth: Callable[..., Authenticator], alice: Account
) -> None:
    session = make_auth().start_sasl("login", remote_ip=PEER, secure=True)
    assert await session.start(None) == Challenge(b"Username:")
    assert await session.receive(b"ALICE@example.org") == Challenge(b"Password:")
    result = await session.receive(PASSWORD.encode())
    assert isinstance(result, Authenticated)
    assert result.account.id == alice.id


async def test_sasl_plaintext_refused_without_tls(make_auth: Callable[..., Authenticator]) -> None:
    auth = make_auth()
    assert auth.mechanisms(secure=False) == ("SCRAM-SHA-256",)
    with pytest.raises(UnsupportedMechanism):
        auth.start_sasl("PLAIN", remote_ip=PEER, secure=False)
    relaxed = make_auth(limits=AuthLimits(allow_plaintext_without_tls=True))
    assert "PLAIN" in relaxed.mechanisms(secure=False)


async def test_sasl_scram(make_auth: Callable[..., Authenticator], alice: Account) -> None:
    auth = make_auth()
    result = await _scram_login(auth, "Alice@Example.org", PASSWORD)
    assert result == Authenticated(alice, "alice@example.org", "SCRAM-SHA-256")
    with pytest.raises(AuthenticationFailed):
        await _scram_login(auth, "alice@example.org", "wrong")


async def test_sasl_scram_unknown_user_looks_like_a_real_one(
    make_auth: Callable[..., Authenticator], alice: Account
) -> None:
    auth = make_auth()
    server_firsts = []
    for _ in range(2):
        session = auth.start_sasl("SCRAM-SHA-256", remote_ip=PEER, secure=False)
        client = ScramClient("ghost@example.org", PASSWORD)
        server_first = await session.start(client.initial_response())
        assert isinstance(server_first, Challenge)  # no early "unknown user"
        server_firsts.append(server_first.data.split(b","))
        with pytest.raises(AuthenticationFailed):
            await session.receive(client.respond(server_first.data))
    (_, salt1, iterations), (_, salt2, _) = server_firsts
    assert salt1 == salt2  # a stable salt: nothing to tell by asking twice
    assert iterations == f"i={CHEAP.scram_iterations}".encode()


async def test_sasl_scram_fails_for_account_without_verifier(
    make_auth: Callable[..., Authenticator], store: Store
) -> None:
    await store.add_account("noscram@example.org", hash_password(PASSWORD, CHEAP))
    with pytest.raises(AuthenticationFailed):
        await _scram_login(make_auth(), "noscram@example.org", PASSWORD)


async def test_sasl_authzid(
    make_auth: Callable[..., Authenticator], alice: Account, store: Store
) -> None:
    bob = await store.add_account("bob@example.org", hash_password("bobs password", CHEAP))
    # Same identity in another case: allowed.
    result = await _run(
        make_auth().start_sasl("PLAIN", remote_ip=PEER, secure=True),
        PlainClient("alice@example.org", PASSWORD, authzid="ALICE@example.org"),
    )
    assert result.account.id == alice.id
    # Someone else: denied by default...
    with pytest.raises(AuthenticationFailed):
        await _run(
            make_auth().start_sasl("PLAIN", remote_ip=PEER, secure=True),
            PlainClient("alice@example.org", PASSWORD, authzid="bob@example.org"),
        )
    # ...allowed by a proxy policy; the session then acts as bob.
    proxy = make_auth(may_act_as=lambda cid, zid: cid == "alice@example.org")
    result = await _run(
        proxy.start_sasl("PLAIN", remote_ip=PEER, secure=True),
        PlainClient("alice@example.org", PASSWORD, authzid="Bob@example.org"),
    )
    assert result == Authenticated(bob, "alice@example.org", "PLAIN")
    # A policy cannot conjure an account that does not exist.
    with pytest.raises(AuthenticationFailed):
        await _run(
            proxy.start_sasl("PLAIN", remote_ip=PEER, secure=True),
            PlainClient("alice@example.org", PASSWORD, authzid="nobody@example.org"),
        )


async def test_sasl_failures_count_and_limit(
    make_auth: Callable[..., Authenticator], alice: Account
) -> None:
    auth = make_auth(limits=STRICT)
    # A malformed message counts against the address.
    session = auth.start_sasl("PLAIN", remote_ip=PEER, secure=True)
    with pytest.raises(AuthenticationFailed):
        await session.start(b"no nuls here")
    with pytest.raises(AuthenticationFailed):
        await _scram_login(auth, "alice@example.org", "wrong")
    # Two failures from PEER: the next exchange is refused before it starts.
    with pytest.raises(RateLimited):
        await auth.start_sasl("PLAIN", remote_ip=PEER, secure=True).start(None)
    # Elsewhere, the account's own limit (one failure free) still lets alice in.
    session = auth.start_sasl("PLAIN", remote_ip="192.0.2.50", secure=True)
    result = await _run(session, PlainClient("alice@example.org", PASSWORD))
    assert result.account.id == alice.id


async def test_app_password_logs_in_only_its_own_account(
    make_auth: Callable[..., Authenticator], store: Store, alice: Account
) -> None:
    from pillarbox.auth.tokens import token_digest
    from pillarbox.store.types import TokenKind

    bob = await store.add_account("bob@example.org", hash_password("bob's password", CHEAP))
    secret = "app-secret-for-alices-phone-0123456789"
    await store.add_token(alice.id, TokenKind.APP_PASSWORD, "phone", token_digest(secret))
    auth = make_auth()
    assert (await auth.check_password("alice@example.org", secret, PEER)).id == alice.id
    with pytest.raises(AuthenticationFailed):
        await auth.check_password("bob@example.org", secret, PEER)
    assert bob.id != alice.id
    # a mail program's password, not the web's: no web login, no password change with it
    with pytest.raises(AuthenticationFailed):
        await auth.check_password("alice@example.org", secret, PEER, interactive=True)
    assert (await auth.check_password("alice@example.org", PASSWORD, PEER, interactive=True)).id
    # an API token is not a password
    await store.add_token(alice.id, TokenKind.API, "script", token_digest("api-token-xyz"))
    with pytest.raises(AuthenticationFailed):
        await auth.check_password("alice@example.org", "api-token-xyz", PEER)


async def test_second_factor_leaves_mail_protocols_app_passwords_only(
    make_auth: Callable[..., Authenticator], store: Store, alice: Account
) -> None:
    """With two-factor login, the account password (PLAIN, LOGIN, SCRAM, and from the login
    cache too) is refused outside the web login; app passwords keep working."""
    from pillarbox.auth.tokens import token_digest
    from pillarbox.store.types import TokenKind

    secret = "app-secret-for-alices-phone-0123456789"
    await store.add_token(alice.id, TokenKind.APP_PASSWORD, "phone", token_digest(secret))
    auth = make_auth()
    assert (await auth.check_password("alice@example.org", PASSWORD, PEER)).id == alice.id
    assert (await _scram_login(auth, "alice@example.org", PASSWORD)).account.id == alice.id
    await store.enable_totp(alice.id, "sealed", [])
    with pytest.raises(AuthenticationFailed):  # cached from the login above: still refused
        await auth.check_password("alice@example.org", PASSWORD, PEER)
    with pytest.raises(AuthenticationFailed):
        await make_auth().check_password("alice@example.org", PASSWORD, PEER)
    with pytest.raises(AuthenticationFailed):
        await _scram_login(auth, "alice@example.org", PASSWORD)
    with pytest.raises(AuthenticationFailed):
        await _run(
            auth.start_sasl("PLAIN", remote_ip=PEER, secure=True),
            PlainClient("alice@example.org", PASSWORD),
        )
    assert (await auth.check_password("alice@example.org", secret, PEER)).id == alice.id
    plain = await _run(
        auth.start_sasl("PLAIN", remote_ip=PEER, secure=True),
        PlainClient("alice@example.org", secret),
    )
    assert plain.account.id == alice.id
    web = await auth.check_password("alice@example.org", PASSWORD, PEER, interactive=True)
    assert web.id == alice.id  # the web login asks for the code next
    await store.disable_totp(alice.id)
    assert (await auth.check_password("alice@example.org", PASSWORD, PEER)).id == alice.id


async def test_second_factor_failures_count_like_wrong_passwords(
    make_auth: Callable[..., Authenticator], alice: Account
) -> None:
    auth = make_auth()
    for _ in range(AuthLimits().per_account.free_failures + 1):
        auth.second_factor_failed(PEER, "Alice@example.org")
    with pytest.raises(RateLimited):
        auth.check_limits(PEER)
    with pytest.raises(RateLimited):
        auth.check_limits("192.0.2.99", "alice@example.org")  # the account too
    auth.second_factor_passed("alice@example.org")
    auth.check_limits("192.0.2.99", "alice@example.org")  # the account's count is cleared
    with pytest.raises(RateLimited):
        auth.check_limits(PEER)  # the address's is not
