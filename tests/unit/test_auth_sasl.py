"""SASL mechanisms (pillarbox.auth.sasl): RFC 4616 PLAIN, LOGIN, RFC 5802/7677 SCRAM."""

from __future__ import annotations

import base64

import pytest

from pillarbox.auth import sasl
from pillarbox.auth.sasl import (
    Challenge,
    Failure,
    FailureReason,
    LoginServer,
    NeedPasswordCheck,
    NeedScramVerifier,
    PlainClient,
    PlainServer,
    SaslClientError,
    SaslUsageError,
    ScramClient,
    ScramServer,
    Success,
    UnsupportedMechanism,
)
from pillarbox.auth.scram import SCRAM_SHA_1, SCRAM_SHA_256, derive_verifier

# RFC 7677 §3 example (SCRAM-SHA-256, user "user", password "pencil").
R7677_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
R7677_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
R7677_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
R7677_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
R7677_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
R7677_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
R7677_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

# RFC 5802 §5 example (SCRAM-SHA-1, same user and password).
R5802_CLIENT_NONCE = "fyko+d2lbbFgONRv9qkxdawL"
R5802_SERVER_NONCE = "3rfcNHYJY1ZVvWVs7j"
R5802_SALT = base64.b64decode("QSXCR+Q6sek8bf92")
R5802_CLIENT_FIRST = b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
R5802_SERVER_FIRST = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
R5802_CLIENT_FINAL = (
    b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
)
R5802_SERVER_FINAL = b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="

PENCIL_256 = derive_verifier(SCRAM_SHA_256, "pencil", R7677_SALT, 4096)
PENCIL_1 = derive_verifier(SCRAM_SHA_1, "pencil", R5802_SALT, 4096)


def scram_server(**kwargs: object) -> ScramServer:
    return ScramServer(nonce=lambda: R7677_SERVER_NONCE, **kwargs)  # type: ignore[arg-type]


def scram_at_client_final() -> ScramServer:
    mech = scram_server()
    assert mech.start(R7677_CLIENT_FIRST) == NeedScramVerifier("user")
    assert mech.resolve_verifier(PENCIL_256) == Challenge(R7677_SERVER_FIRST)
    return mech


# -- SCRAM server -------------------------------------------------------------------------------


def test_scram_sha256_rfc7677_exchange_byte_exact() -> None:
    mech = scram_at_client_final()
    assert mech.receive(R7677_CLIENT_FINAL) == Challenge(R7677_SERVER_FINAL)
    assert not mech.done
    assert mech.receive(b"") == Success("user", "user")
    assert mech.done


def test_scram_sha1_rfc5802_exchange_byte_exact() -> None:
    mech = ScramServer(hash=SCRAM_SHA_1, nonce=lambda: R5802_SERVER_NONCE)
    assert mech.name == "SCRAM-SHA-1"
    assert mech.start(R5802_CLIENT_FIRST) == NeedScramVerifier("user")
    assert mech.resolve_verifier(PENCIL_1) == Challenge(R5802_SERVER_FIRST)
    assert mech.receive(R5802_CLIENT_FINAL) == Challenge(R5802_SERVER_FINAL)
    assert mech.receive(b"") == Success("user", "user")


def test_scram_without_initial_response_sends_empty_challenge() -> None:
    mech = scram_server()
    assert mech.start(None) == Challenge(b"")
    assert mech.receive(R7677_CLIENT_FIRST) == NeedScramVerifier("user")
    assert mech.resolve_verifier(PENCIL_256) == Challenge(R7677_SERVER_FIRST)
    assert mech.receive(R7677_CLIENT_FINAL) == Challenge(R7677_SERVER_FINAL)


def test_scram_wrong_password_fails_with_invalid_proof() -> None:
    mech = scram_server()
    mech.start(R7677_CLIENT_FIRST)
    mech.resolve_verifier(derive_verifier(SCRAM_SHA_256, "crayon", R7677_SALT, 4096))
    # The client's proof was made from "pencil"; the server's StoredKey is from "crayon".
    assert mech.receive(R7677_CLIENT_FINAL) == Failure(
        FailureReason.INVALID_CREDENTIALS, "invalid-proof"
    )
    assert mech.done


def test_scram_tampered_proof_fails() -> None:
    proof = bytearray(base64.b64decode(R7677_CLIENT_FINAL.rpartition(b"p=")[2]))
    proof[0] ^= 1
    tampered = R7677_CLIENT_FINAL.rpartition(b"p=")[0] + b"p=" + base64.b64encode(bytes(proof))
    step = scram_at_client_final().receive(tampered)
    assert step == Failure(FailureReason.INVALID_CREDENTIALS, "invalid-proof")


def test_scram_wrong_nonce_fails() -> None:
    final = R7677_CLIENT_FINAL.replace(b"k0,p=", b"k1,p=")
    step = scram_at_client_final().receive(final)
    assert isinstance(step, Failure)
    assert step.reason is FailureReason.INVALID_CREDENTIALS


def test_scram_channel_binding_mismatch_fails() -> None:
    final = R7677_CLIENT_FINAL.replace(b"c=biws", b"c=eSws")  # "y,," instead of "n,,"
    step = scram_at_client_final().receive(final)
    assert step == Failure(FailureReason.CHANNEL_BINDING, "channel-bindings-dont-match")


def test_scram_y_flag_accepted_while_we_offer_no_binding() -> None:
    mech = scram_server()
    assert mech.start(b"y,,n=user,r=abc") == NeedScramVerifier("user")


def test_scram_p_flag_refused() -> None:
    step = scram_server().start(b"p=tls-unique,,n=user,r=abc")
    assert step == Failure(FailureReason.UNSUPPORTED, "channel-binding-not-supported")


def test_scram_mandatory_extension_refused() -> None:
    step = scram_server().start(b"n,,m=ext,n=user,r=abc")
    assert step == Failure(FailureReason.UNSUPPORTED, "extensions-not-supported")


def test_scram_optional_extensions_ignored() -> None:
    assert scram_server().start(b"n,,n=user,r=abc,x=whatever") == NeedScramVerifier("user")


def test_scram_saslname_escapes_decoded() -> None:
    assert scram_server().start(b"n,,n=a=2Cb=3Dc,r=abc") == NeedScramVerifier("a,b=c")


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"n,,",
        b"x,,n=user,r=abc",  # bad gs2-cbind-flag
        b"n,b=bob,n=user,r=abc",  # authzid must be a=
        b"n,a=,n=user,r=abc",  # empty authzid
        b"n,,r=abc,n=user",  # wrong order
        b"n,,n=user",  # no nonce
        b"n,,n=,r=abc",  # empty value
        b"n,,n=us=er,r=abc",  # "=" not followed by 2C/3D
        b"n,,n=user,r=a,b",  # "b" is no attr-val
        b"n,,n=user,r=ab\x7fc",  # DEL is not printable
        b"n,,n=user\x00,r=abc",  # NUL
        b"n,,n=\xff,r=abc",  # not UTF-8
        b"n,,n=user,r=abc,",  # trailing comma
        b"n,,n=\xe2\x80\x8b,r=abc",  # ZERO WIDTH SPACE maps to nothing: empty after SASLprep
        b"n,,n=a\x07b,r=abc",  # control character prohibited by SASLprep
    ],
)
def test_scram_malformed_client_first(message: bytes) -> None:
    step = scram_server().start(message)
    assert isinstance(step, Failure)
    assert step.reason is FailureReason.MALFORMED


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",  # no proof
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,c=biws,p=AAAA",  # order
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=not base64!",
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",  # short proof
        b"c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",  # no nonce
        b"c=biws,r=\xff,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    ],
)
def test_scram_malformed_client_final(message: bytes) -> None:
    step = scram_at_client_final().receive(message)
    assert isinstance(step, Failure)
    assert step.reason is FailureReason.MALFORMED


def test_scram_non_empty_response_to_server_final_fails() -> None:
    mech = scram_at_client_final()
    mech.receive(R7677_CLIENT_FINAL)
    step = mech.receive(b"junk")
    assert isinstance(step, Failure)
    assert step.reason is FailureReason.MALFORMED


@pytest.mark.parametrize(
    ("policy", "outcome"),
    [(sasl.same_identity, None), (lambda c, z: c == "user", Success("user", "admin"))],
)
def test_scram_authzid_needs_policy(policy: sasl.AuthzPolicy, outcome: Success | None) -> None:
    client = ScramClient("user", "pencil", authzid="admin", nonce=lambda: R7677_CLIENT_NONCE)
    mech = scram_server(authorize=policy)
    assert mech.start(client.initial_response()) == NeedScramVerifier("user")
    step = mech.resolve_verifier(PENCIL_256)
    assert isinstance(step, Challenge)
    step = mech.receive(client.respond(step.data))
    if outcome is None:
        assert isinstance(step, Failure)
        assert step.reason is FailureReason.AUTHZ_DENIED
    else:
        assert isinstance(step, Challenge)
        assert client.respond(step.data) == b""
        assert mech.receive(b"") == outcome


def test_scram_verifier_of_other_hash_is_a_usage_error() -> None:
    mech = scram_server()
    mech.start(R7677_CLIENT_FIRST)
    with pytest.raises(SaslUsageError):
        mech.resolve_verifier(PENCIL_1)


# -- call order (the phase table) ---------------------------------------------------------------


def test_calls_out_of_order_raise_usage_error() -> None:
    mech = scram_server()
    with pytest.raises(SaslUsageError):
        mech.receive(b"x")  # before start
    mech.start(R7677_CLIENT_FIRST)
    with pytest.raises(SaslUsageError):
        mech.receive(b"x")  # while a verifier is awaited
    with pytest.raises(SaslUsageError):
        mech.resolve_password(True)  # SCRAM never asks for one
    with pytest.raises(SaslUsageError):
        mech.start(None)  # twice


def test_no_call_after_done() -> None:
    mech = PlainServer()
    mech.start(b"\x00u\x00p")
    mech.resolve_password(False)
    assert mech.done
    with pytest.raises(SaslUsageError):
        mech.receive(b"")


# -- PLAIN --------------------------------------------------------------------------------------


def test_plain_initial_response() -> None:
    mech = PlainServer()
    assert mech.start(b"\x00tim\x00tanstaaftanstaaf") == NeedPasswordCheck(
        "tim", "", "tanstaaftanstaaf"
    )
    assert mech.resolve_password(True) == Success("tim", "tim")


def test_plain_without_initial_response() -> None:
    mech = PlainServer()
    assert mech.start(None) == Challenge(b"")
    assert mech.receive(b"\x00tim\x00secret") == NeedPasswordCheck("tim", "", "secret")
    assert mech.resolve_password(False) == Failure(
        FailureReason.INVALID_CREDENTIALS, "invalid credentials"
    )


def test_plain_authzid_equal_to_authcid_allowed() -> None:
    mech = PlainServer()
    assert mech.start(b"Ursel\x00Ursel\x00pw") == NeedPasswordCheck("Ursel", "Ursel", "pw")
    assert mech.resolve_password(True) == Success("Ursel", "Ursel")


def test_plain_other_authzid_denied_after_password_check() -> None:
    mech = PlainServer()
    # RFC 4616 §4 example shape: Ursel authenticates as Kurt.
    assert mech.start(b"Ursel\x00Kurt\x00xipj3plmq") == NeedPasswordCheck(
        "Kurt", "Ursel", "xipj3plmq"
    )
    step = mech.resolve_password(True)
    assert isinstance(step, Failure)
    assert step.reason is FailureReason.AUTHZ_DENIED


def test_plain_other_authzid_allowed_by_hook() -> None:
    mech = PlainServer(authorize=lambda authcid, authzid: authcid == "Kurt")
    mech.start(b"Ursel\x00Kurt\x00xipj3plmq")
    assert mech.resolve_password(True) == Success("Kurt", "Ursel")


def test_plain_identity_is_saslprepped_password_is_not() -> None:
    # U+2168 ROMAN NUMERAL NINE → "IX" under NFKC (RFC 4013 §3 example); U+00AD maps to nothing.
    mech = PlainServer()
    step = mech.start("\x00\u2168\x00I\u00adX".encode())
    assert step == NeedPasswordCheck("IX", "", "I\u00adX")


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"tim",
        b"\x00tim",  # one NUL
        b"\x00tim\x00pw\x00",  # three NULs
        b"\x00\x00pw",  # empty authcid
        b"\x00tim\x00",  # empty password
        b"\x00t\xffim\x00pw",  # not UTF-8
        b"\x00t\x07im\x00pw",  # control character in authcid
    ],
)
def test_plain_malformed(message: bytes) -> None:
    step = PlainServer().start(message)
    assert isinstance(step, Failure)
    assert step.reason is FailureReason.MALFORMED


def test_plain_password_repr_hidden() -> None:
    assert "hunter2" not in repr(NeedPasswordCheck("a", "", "hunter2"))


# -- LOGIN --------------------------------------------------------------------------------------


def test_login_exchange() -> None:
    mech = LoginServer()
    assert mech.start(None) == Challenge(b"Username:")
    assert mech.receive(b"tim@example.org") == Challenge(b"Password:")
    assert mech.receive(b"secret") == NeedPasswordCheck("tim@example.org", "", "secret")
    assert mech.resolve_password(True) == Success("tim@example.org", "tim@example.org")


def test_login_initial_response_is_the_user_name() -> None:
    mech = LoginServer()
    assert mech.start(b"tim") == Challenge(b"Password:")
    assert mech.receive(b"pw") == NeedPasswordCheck("tim", "", "pw")


@pytest.mark.parametrize(
    ("username", "password"),
    [(b"", b"pw"), (b"\xff", b"pw"), (b"tim", b""), (b"tim", b"\xff"), (b"tim", b"p\x00w")],
)
def test_login_malformed(username: bytes, password: bytes) -> None:
    mech = LoginServer()
    mech.start(None)
    step = mech.receive(username)
    if isinstance(step, Challenge):
        step = mech.receive(password)
    assert isinstance(step, Failure)
    assert step.reason is FailureReason.MALFORMED


# -- registry -----------------------------------------------------------------------------------


def test_plaintext_mechanisms_only_under_tls() -> None:
    assert sasl.mechanism_names(secure=True) == ("SCRAM-SHA-256", "PLAIN", "LOGIN")
    assert sasl.mechanism_names(secure=False) == ("SCRAM-SHA-256",)
    assert "PLAIN" in sasl.mechanism_names(secure=False, allow_plaintext_without_tls=True)
    with pytest.raises(UnsupportedMechanism):
        sasl.new_server_mechanism("PLAIN", secure=False)
    assert isinstance(sasl.new_server_mechanism("plain", secure=True), PlainServer)
    assert isinstance(sasl.new_server_mechanism("Scram-Sha-256", secure=False), ScramServer)
    with pytest.raises(UnsupportedMechanism):
        sasl.new_server_mechanism("CRAM-MD5", secure=True)


# -- clients ------------------------------------------------------------------------------------


def test_scram_client_rfc7677_byte_exact() -> None:
    client = ScramClient("user", "pencil", nonce=lambda: R7677_CLIENT_NONCE)
    assert client.name == "SCRAM-SHA-256"
    assert client.initial_response() == R7677_CLIENT_FIRST
    assert client.respond(R7677_SERVER_FIRST) == R7677_CLIENT_FINAL
    assert client.respond(R7677_SERVER_FINAL) == b""
    client.finish()


def test_scram_client_rfc5802_byte_exact_with_data_in_outcome() -> None:
    client = ScramClient("user", "pencil", hash=SCRAM_SHA_1, nonce=lambda: R5802_CLIENT_NONCE)
    assert client.respond(b"") == R5802_CLIENT_FIRST  # empty challenge first
    assert client.respond(R5802_SERVER_FIRST) == R5802_CLIENT_FINAL
    client.finish(R5802_SERVER_FINAL)


def test_scram_client_rejects_forged_server_signature() -> None:
    client = ScramClient("user", "pencil", nonce=lambda: R7677_CLIENT_NONCE)
    client.initial_response()
    client.respond(R7677_SERVER_FIRST)
    with pytest.raises(SaslClientError):
        client.respond(b"v=" + base64.b64encode(b"\x00" * 32))


def test_scram_client_requires_server_proof_before_success() -> None:
    client = ScramClient("user", "pencil", nonce=lambda: R7677_CLIENT_NONCE)
    client.initial_response()
    client.respond(R7677_SERVER_FIRST)
    with pytest.raises(SaslClientError):
        client.finish()


@pytest.mark.parametrize(
    "server_first",
    [
        b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  # nonce does not extend ours
        b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  # nothing added
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1024",  # too few iterations
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999",  # too many
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=04096",  # not posit-number
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=!!,i=4096",
        b"m=x,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"e=other-error",
    ],
)
def test_scram_client_rejects_bad_server_first(server_first: bytes) -> None:
    client = ScramClient("user", "pencil", nonce=lambda: R7677_CLIENT_NONCE)
    client.initial_response()
    with pytest.raises(SaslClientError):
        client.respond(server_first)


def test_scram_client_reports_server_error() -> None:
    client = ScramClient("user", "pencil", nonce=lambda: R7677_CLIENT_NONCE)
    client.initial_response()
    client.respond(R7677_SERVER_FIRST)
    with pytest.raises(SaslClientError, match="invalid-proof"):
        client.respond(b"e=invalid-proof")


def test_scram_client_escapes_names() -> None:
    client = ScramClient("a,b=c", "pw", authzid="x=y", nonce=lambda: "abc")
    assert client.initial_response() == b"n,a=x=3Dy,n=a=2Cb=3Dc,r=abc"


def test_scram_client_against_server_end_to_end() -> None:
    verifier = derive_verifier(SCRAM_SHA_256, "correct horse", b"0123456789abcdef", 4096)
    client = ScramClient("alice@example.org", "correct horse")
    server = ScramServer()
    step = server.start(client.initial_response())
    assert step == NeedScramVerifier("alice@example.org")
    step = server.resolve_verifier(verifier)
    while isinstance(step, Challenge):
        step = server.receive(client.respond(step.data))
    assert step == Success("alice@example.org", "alice@example.org")
    client.finish()


def test_plain_client() -> None:
    client = PlainClient("tim", "tanstaaftanstaaf", authzid="boss")
    assert client.initial_response() == b"boss\x00tim\x00tanstaaftanstaaf"
    client.finish()
    with pytest.raises(SaslClientError):
        client.respond(b"")  # already sent


def test_plain_client_after_empty_challenge_and_against_server() -> None:
    client = PlainClient("tim", "pw")
    server = PlainServer()
    step = server.start(None)
    assert isinstance(step, Challenge)
    assert server.receive(client.respond(step.data)) == NeedPasswordCheck("tim", "", "pw")
    client.finish()


def test_plain_client_rejects_unexpected_challenge_and_bad_input() -> None:
    with pytest.raises(SaslClientError):
        PlainClient("tim", "pw").respond(b"what?")
    with pytest.raises(SaslClientError):
        PlainClient("tim", "")
    with pytest.raises(SaslClientError):
        PlainClient("tim", "pw").finish()  # nothing sent yet
