"""Properties of the SASL mechanisms and the failure limiter (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pillarbox.auth.ratelimit import RateLimiter, RateLimits
from pillarbox.auth.sasl import (
    Challenge,
    Failure,
    LoginServer,
    NeedPasswordCheck,
    NeedScramVerifier,
    PlainClient,
    PlainServer,
    ScramClient,
    ScramServer,
    ServerMechanism,
    Success,
    decode_saslname,
    encode_saslname,
)
from pillarbox.auth.saslprep import StringprepError, saslprep
from pillarbox.auth.scram import SCRAM_SHA_256, derive_verifier

VERIFIER = derive_verifier(SCRAM_SHA_256, "pencil", b"salt", 64)

# Identities and passwords that SASLprep leaves unchanged and non-empty (what a real user types
# on one keyboard); the mechanisms' job is to carry them intact.
_text = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x2FF, blacklist_characters="\x7f"),
    min_size=1,
    max_size=24,
)


def _prepared(value: str) -> bool:
    try:
        return saslprep(value) == value
    except StringprepError:
        return False


identities = _text.filter(_prepared)

mechanisms = st.sampled_from([PlainServer, LoginServer, ScramServer])


@settings(max_examples=200)
@given(
    mechanism=mechanisms,
    initial=st.none() | st.binary(max_size=64),
    responses=st.lists(st.binary(max_size=64), max_size=6),
    password_ok=st.booleans(),
)
def test_any_input_ends_in_an_outcome(
    mechanism: type[ServerMechanism],
    initial: bytes | None,
    responses: list[bytes],
    password_ok: bool,
) -> None:
    """Whatever a client sends, each call answers a step; no exception, and the exchange ends
    within a few steps. Random bytes never pass SCRAM."""
    mech = mechanism()
    step = mech.start(initial)
    feed = iter(responses)
    for _ in range(10):
        if isinstance(step, NeedPasswordCheck):
            step = mech.resolve_password(password_ok)
        elif isinstance(step, NeedScramVerifier):
            step = mech.resolve_verifier(VERIFIER)
        elif isinstance(step, Challenge):
            response = next(feed, None)
            if response is None:
                return  # the client went quiet; the core's timer handles that
            step = mech.receive(response)
        else:
            break
    assert isinstance(step, Success | Failure)
    assert mech.done
    if isinstance(step, Success):
        assert mechanism is not ScramServer
        assert password_ok


@settings(max_examples=50)
@given(username=identities, authzid=st.just("") | identities, password=identities)
def test_scram_client_and_server_agree(username: str, authzid: str, password: str) -> None:
    verifier = derive_verifier(SCRAM_SHA_256, password, b"0123456789abcdef", 64)
    client = ScramClient(username, password, authzid=authzid, min_iterations=1)
    server = ScramServer(authorize=lambda c, z: True)
    step = server.start(client.initial_response())
    assert step == NeedScramVerifier(username)
    step = server.resolve_verifier(verifier)
    while isinstance(step, Challenge):
        step = server.receive(client.respond(step.data))
    assert step == Success(username, authzid or username)
    client.finish()


@settings(max_examples=50)
@given(username=identities, password=identities, wrong=identities)
def test_scram_wrong_password_never_succeeds(username: str, password: str, wrong: str) -> None:
    verifier = derive_verifier(SCRAM_SHA_256, password, b"0123456789abcdef", 64)
    client = ScramClient(username, wrong, min_iterations=1)
    server = ScramServer()
    server.start(client.initial_response())
    first = server.resolve_verifier(verifier)
    assert isinstance(first, Challenge)
    step = server.receive(client.respond(first.data))
    assert isinstance(step, Failure) == (saslprep(wrong) != saslprep(password))


@settings(max_examples=200)
@given(authcid=identities, authzid=st.just("") | identities, password=identities)
def test_plain_client_and_server_agree(authcid: str, authzid: str, password: str) -> None:
    step = PlainServer().start(PlainClient(authcid, password, authzid=authzid).initial_response())
    assert step == NeedPasswordCheck(authcid, authzid, password)


@settings(max_examples=200)
@given(st.text(min_size=1))
def test_saslname_round_trip(name: str) -> None:
    encoded = encode_saslname(name)
    assert "," not in encoded
    assert decode_saslname(encoded) == name


@settings(max_examples=200)
@given(
    events=st.lists(
        st.tuples(st.sampled_from("abcd"), st.floats(0, 5), st.booleans()), max_size=40
    ),
    limits=st.builds(
        RateLimits,
        window=st.floats(1, 100),
        free_failures=st.integers(0, 3),
        base_delay=st.floats(0, 10),
        max_delay=st.floats(0, 30),
        lockout_failures=st.integers(4, 8),
        lockout=st.floats(0, 100),
        max_keys=st.integers(1, 3),
    ),
)
def test_limiter_invariants(events: list[tuple[str, float, bool]], limits: RateLimits) -> None:
    """Waits are never negative nor beyond the longest configured wait; memory stays bounded;
    success clears a key."""
    limiter = RateLimiter(limits)
    now = 0.0
    for key, dt, failed in events:
        now += dt
        if failed:
            limiter.record_failure(key, now)
        else:
            limiter.record_success(key)
            assert limiter.check(key, now) is None
        wait = limiter.check(key, now)
        assert wait is None or 0 < wait <= max(limits.max_delay, limits.lockout) + 1e-9
        assert len(limiter) <= limits.max_keys
