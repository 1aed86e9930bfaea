"""SASL mechanisms (RFC 4422), server and client side, without I/O.

Implementation notes:

- **Shape.** A server mechanism is fed client responses (bytes the protocol core has already
  base64-decoded) and answers with one step: :class:`Challenge` (send it, wait for a response),
  :class:`Success`, :class:`Failure`, or a request for the caller to consult the account store —
  :class:`NeedPasswordCheck` (PLAIN, LOGIN) or :class:`NeedScramVerifier` (SCRAM). The mechanism
  never sees the store, the clock or the network; IMAP, POP3 and SMTP drive it the same way
  (``pillarbox.auth.directory.SaslSession`` does the store part for them).
- **Which call is legal when is a table** (:data:`_ACCEPTS`): each step puts the mechanism in a
  phase, and each call is accepted in a set of phases only; anything else is the caller's bug
  (:class:`SaslUsageError`), never a client-visible outcome.
- **Additional data with success** (RFC 4422 §3.6) cannot ride on the outcome in any protocol we
  speak (SMTP: RFC 4954 §4, POP3: RFC 5034 §4, IMAP: its tagged OK has no data field), so it is
  always sent as a final challenge whose response must be empty (RFC 4422 §3.3).
- **Client-first mechanisms** without an initial response get an empty challenge first
  (RFC 4422 §3.3; §5 item 2a).
- **Identities** are prepared with SASLprep (RFC 4616 §2, RFC 5802 §5.1 "n"); passwords are handed
  on unprepared, because password storage prepares them (``pillarbox.auth.passwords``).
- **Authorization identity** is checked only after the credentials were proven, so a stranger
  cannot learn who may act as whom; by default only "none" or "the same as authcid" is allowed.
- **Channel binding**: no -PLUS variant yet. ``n`` and ``y`` flags are accepted (we do not
  support binding, so ``y`` is no downgrade, RFC 5802 §6); ``p=`` is refused. The expected
  ``c=`` value is computed from the GS2 header plus channel-binding data, which is empty today.
- **Failures never say why to the client**: :attr:`Failure.detail` is for logs only and never
  holds a secret; the protocol core replies with its one "authentication failed" constant.
"""

from __future__ import annotations

import abc
import base64
import binascii
import enum
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from pillarbox.auth.saslprep import StringprepError, saslprep
from pillarbox.auth.scram import (
    SCRAM_SHA_256,
    ScramHash,
    ScramVerifier,
    client_key,
    hmac_digest,
    salted_password,
    server_key,
    stored_key,
    xor,
)
from pillarbox.errors import AuthenticationFailed, ServerFault, UserError


class SaslUsageError(ServerFault):
    """Our own code used a mechanism wrongly (out of order, a verifier for another hash, a bad
    nonce): a bug in the adapter, never something a peer can cause."""


class UnsupportedMechanism(UserError):
    """The client asked for a mechanism we do not offer (on this connection)."""


class SaslClientError(AuthenticationFailed):
    """Client side: the server's message broke the mechanism, or the server failed to prove
    itself (SCRAM mutual authentication)."""


# -- server steps -------------------------------------------------------------------------------


class FailureReason(enum.Enum):
    """Why an exchange failed — for logs and rate limiting, never for the client."""

    #: The client's message breaks the mechanism's grammar.
    MALFORMED = "malformed"
    #: Wrong password, wrong proof, or a replayed/foreign nonce.
    INVALID_CREDENTIALS = "invalid-credentials"
    #: Credentials were right but may not act as the requested authorization identity.
    AUTHZ_DENIED = "authz-denied"
    #: The client requires something we do not do (mandatory extension, channel binding).
    UNSUPPORTED = "unsupported"
    #: The channel-binding data do not match this connection (RFC 5802 §6).
    CHANNEL_BINDING = "channel-binding"


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``data`` to the client (the core base64-encodes it) and feed back its response."""

    data: bytes


@dataclass(frozen=True, slots=True)
class NeedPasswordCheck:
    """Verify ``password`` for ``authcid``, then call :meth:`ServerMechanism.resolve_password`."""

    authcid: str
    #: Empty when the client did not ask to act as someone else.
    authzid: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class NeedScramVerifier:
    """Look up the SCRAM verifier of ``username``, then call
    :meth:`ServerMechanism.resolve_verifier` (with a decoy for an unknown user, so the exchange
    looks the same and fails at the proof)."""

    username: str


@dataclass(frozen=True, slots=True)
class Success:
    """The client proved ``authcid`` and may act as ``authzid`` (the same when none was asked)."""

    authcid: str
    authzid: str


@dataclass(frozen=True, slots=True)
class Failure:
    reason: FailureReason
    #: For the log: an RFC 5802 §7 server-error-value or a short phrase; never a secret.
    detail: str


ServerStep = Challenge | NeedPasswordCheck | NeedScramVerifier | Success | Failure

#: ``authorize(authcid, authzid) -> bool``: may the proven ``authcid`` act as ``authzid``?
#: Called only after the credentials were proven, and only when the client named an authzid.
AuthzPolicy = Callable[[str, str], bool]


def same_identity(authcid: str, authzid: str) -> bool:
    """The default policy (RFC 4616 §2): one may act only as oneself."""
    return authcid == authzid


# -- server mechanism base ----------------------------------------------------------------------


class _Phase(enum.Enum):
    READY = "ready"
    AWAITING_RESPONSE = "awaiting a response"
    AWAITING_PASSWORD_CHECK = "awaiting a password check"
    AWAITING_VERIFIER = "awaiting a SCRAM verifier"
    AWAITING_EMPTY_RESPONSE = "awaiting the empty response to additional data"
    DONE = "done"


#: Which public call each phase accepts.
_ACCEPTS: dict[str, frozenset[_Phase]] = {
    "start": frozenset({_Phase.READY}),
    "receive": frozenset({_Phase.AWAITING_RESPONSE, _Phase.AWAITING_EMPTY_RESPONSE}),
    "resolve_password": frozenset({_Phase.AWAITING_PASSWORD_CHECK}),
    "resolve_verifier": frozenset({_Phase.AWAITING_VERIFIER}),
}

#: The phase each step leads to.
_PHASE_AFTER: dict[type[ServerStep], _Phase] = {
    Challenge: _Phase.AWAITING_RESPONSE,
    NeedPasswordCheck: _Phase.AWAITING_PASSWORD_CHECK,
    NeedScramVerifier: _Phase.AWAITING_VERIFIER,
    Success: _Phase.DONE,
    Failure: _Phase.DONE,
}


@dataclass(frozen=True, slots=True)
class _SuccessWithData:
    """A mechanism's success that carries additional data (SCRAM's server-final-message)."""

    success: Success
    data: bytes


class ServerMechanism(abc.ABC):
    """One server-side authentication exchange. Create a fresh one per AUTH command."""

    name: str
    #: True when the mechanism shows the password to the server (offer only under TLS).
    plaintext: ClassVar[bool]

    def __init__(self) -> None:
        self._phase = _Phase.READY
        self._pending_success: Success | None = None

    @property
    def done(self) -> bool:
        return self._phase is _Phase.DONE

    def start(self, initial_response: bytes | None) -> ServerStep:
        """Begin; ``initial_response`` is ``None`` when the client sent none (an empty one is
        ``b""``, e.g. IMAP's ``=``, RFC 9051 §6.2.2)."""
        self._enter("start")
        return self._advance(self._start(initial_response))

    def receive(self, response: bytes) -> ServerStep:
        """Feed the client's (decoded) response to the last :class:`Challenge`."""
        self._enter("receive")
        if self._phase is _Phase.AWAITING_EMPTY_RESPONSE:
            assert self._pending_success is not None
            if response:  # RFC 4422 §3.3: the response to additional data is empty
                return self._advance(
                    Failure(FailureReason.MALFORMED, "non-empty response to additional data")
                )
            return self._advance(self._pending_success)
        return self._advance(self._receive(response))

    def resolve_password(self, ok: bool) -> ServerStep:
        """Answer :class:`NeedPasswordCheck`: ``ok`` is whether the password was right."""
        self._enter("resolve_password")
        return self._advance(self._password_checked(ok))

    def resolve_verifier(self, verifier: ScramVerifier) -> ServerStep:
        """Answer :class:`NeedScramVerifier` with the user's verifier (or a decoy)."""
        self._enter("resolve_verifier")
        return self._advance(self._verifier_found(verifier))

    def _enter(self, call: str) -> None:
        if self._phase not in _ACCEPTS[call]:
            raise SaslUsageError(f"{self.name}: {call}() while {self._phase.value}")

    def _advance(self, step: ServerStep | _SuccessWithData) -> ServerStep:
        if isinstance(step, _SuccessWithData):
            self._pending_success = step.success
            self._phase = _Phase.AWAITING_EMPTY_RESPONSE
            return Challenge(step.data)
        self._phase = _PHASE_AFTER[type(step)]
        return step

    # Hooks; each is reachable only in the phases _ACCEPTS allows, so a mechanism implements the
    # two every mechanism needs and those its own steps lead to.
    @abc.abstractmethod
    def _start(self, initial_response: bytes | None) -> ServerStep: ...

    @abc.abstractmethod
    def _receive(self, response: bytes) -> ServerStep | _SuccessWithData: ...

    def _password_checked(self, ok: bool) -> ServerStep:
        raise SaslUsageError(f"{self.name} never asks for a password check")

    def _verifier_found(self, verifier: ScramVerifier) -> ServerStep:
        raise SaslUsageError(f"{self.name} never asks for a SCRAM verifier")


def _prepare_identity(raw: str) -> str | None:
    """SASLprep an identity presented by the client; ``None`` if it fails or comes out empty."""
    try:
        prepared = saslprep(raw)
    except StringprepError:
        return None
    return prepared or None


class _PasswordMechanism(ServerMechanism):
    """Common end of PLAIN and LOGIN: the caller checks the password, we check authorization."""

    plaintext = True

    def __init__(self, *, authorize: AuthzPolicy = same_identity) -> None:
        super().__init__()
        self._authorize = authorize
        self._authcid = ""
        self._authzid = ""

    def _need_check(self, authcid: str, authzid: str, password: str) -> ServerStep:
        self._authcid, self._authzid = authcid, authzid
        return NeedPasswordCheck(authcid, authzid, password)

    def _password_checked(self, ok: bool) -> ServerStep:
        if not ok:
            return Failure(FailureReason.INVALID_CREDENTIALS, "invalid credentials")
        if self._authzid and not self._authorize(self._authcid, self._authzid):
            return Failure(FailureReason.AUTHZ_DENIED, "may not act as the authorization identity")
        return Success(self._authcid, self._authzid or self._authcid)


class PlainServer(_PasswordMechanism):
    """PLAIN (RFC 4616): ``[authzid] NUL authcid NUL passwd`` in one client message."""

    name = "PLAIN"

    def _start(self, initial_response: bytes | None) -> ServerStep:
        if initial_response is None:
            return Challenge(b"")  # RFC 4422 §3.3: client-first, no initial response
        return self._message(initial_response)

    def _receive(self, response: bytes) -> ServerStep:
        return self._message(response)

    def _message(self, message: bytes) -> ServerStep:
        parts = message.split(b"\x00")
        if len(parts) != 3:  # RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
            return Failure(FailureReason.MALFORMED, "PLAIN message needs exactly two NULs")
        try:
            raw_authzid, raw_authcid, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            return Failure(FailureReason.MALFORMED, "PLAIN message is not UTF-8")
        authcid = _prepare_identity(raw_authcid)
        if authcid is None or not password:  # RFC 4616 §2: authcid and passwd are 1*SAFE
            return Failure(FailureReason.MALFORMED, "empty or unpreparable authcid or password")
        authzid = ""
        if raw_authzid:
            prepared = _prepare_identity(raw_authzid)
            if prepared is None:
                return Failure(FailureReason.MALFORMED, "unpreparable authzid")
            authzid = prepared
        return self._need_check(authcid, authzid, password)


# draft-murchison-sasl-login-00: the challenge texts deployed clients expect.
LOGIN_USERNAME_CHALLENGE = b"Username:"
LOGIN_PASSWORD_CHALLENGE = b"Password:"


class LoginServer(_PasswordMechanism):
    """LOGIN (draft-murchison-sasl-login-00): user name and password as two responses.

    An initial response is taken as the user name (``AUTH LOGIN <b64 user>``), as Cyrus SASL,
    Postfix and Dovecot do for the clients that send one.
    """

    name = "LOGIN"

    def __init__(self, *, authorize: AuthzPolicy = same_identity) -> None:
        super().__init__(authorize=authorize)
        self._username: str | None = None

    def _start(self, initial_response: bytes | None) -> ServerStep:
        if initial_response is None:
            return Challenge(LOGIN_USERNAME_CHALLENGE)
        return self._take_username(initial_response)

    def _receive(self, response: bytes) -> ServerStep:
        if self._username is None:
            return self._take_username(response)
        try:
            password = response.decode("utf-8")
        except UnicodeDecodeError:
            return Failure(FailureReason.MALFORMED, "LOGIN password is not UTF-8")
        if not password or "\x00" in password:
            return Failure(FailureReason.MALFORMED, "empty LOGIN password or NUL in it")
        return self._need_check(self._username, "", password)

    def _take_username(self, response: bytes) -> ServerStep:
        try:
            raw = response.decode("utf-8")
        except UnicodeDecodeError:
            return Failure(FailureReason.MALFORMED, "LOGIN user name is not UTF-8")
        username = _prepare_identity(raw) if "\x00" not in raw else None
        if username is None:
            return Failure(FailureReason.MALFORMED, "empty or unpreparable LOGIN user name")
        self._username = username
        return Challenge(LOGIN_PASSWORD_CHALLENGE)


# -- SCRAM message grammar (RFC 5802 §7) ---------------------------------------------------------

_ATTR_VAL = re.compile(r"([A-Za-z])=([^\x00,]+)")  # attr-val = ALPHA "=" value (1*value-char)
_SASLNAME_ESCAPE = re.compile(r"=(?!2C|3D)")  # "=" not starting "=2C"/"=3D" (RFC 5802 §5.1 "n")
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable = %x21-2B / %x2D-7E
_CB_NAME = re.compile(r"[A-Za-z0-9.\-]+")  # cb-name = 1*(ALPHA / DIGIT / "." / "-")
_POSIT_NUMBER = re.compile(r"[1-9][0-9]*")


def _attributes(text: str) -> list[tuple[str, str]] | None:
    """Split ``attr-val *("," attr-val)``; ``None`` if any item breaks the grammar."""
    pairs = []
    for item in text.split(","):
        match = _ATTR_VAL.fullmatch(item)
        if match is None:
            return None
        pairs.append((match.group(1), match.group(2)))
    return pairs


def decode_saslname(value: str) -> str | None:
    """``saslname`` → name: ``=2C`` is ``,`` and ``=3D`` is ``=``; any other ``=`` is invalid."""
    if _SASLNAME_ESCAPE.search(value):
        return None
    return value.replace("=2C", ",").replace("=3D", "=")


def encode_saslname(name: str) -> str:
    """name → ``saslname`` (RFC 5802 §5.1 "n"): escape ``=`` first, then ``,``."""
    return name.replace("=", "=3D").replace(",", "=2C")


def _b64decode(value: str) -> bytes | None:
    """Strict base64 (RFC 5802 §7 ``base64``); ``None`` for anything outside the alphabet or with
    bad padding."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _text(message: bytes) -> str | None:
    """The message as text: UTF-8 without NUL (value-safe-char excludes it), else ``None``."""
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def new_nonce() -> str:
    """A fresh nonce: 144 random bits as 24 ``printable`` characters (RFC 5802 §5.1 "r")."""
    return secrets.token_urlsafe(18)


#: RFC 5802 §7 server-error-values used in Failure.detail.
_E_INVALID_ENCODING = "invalid-encoding"
_E_EXTENSIONS_NOT_SUPPORTED = "extensions-not-supported"
_E_INVALID_PROOF = "invalid-proof"
_E_CHANNEL_BINDINGS_DONT_MATCH = "channel-bindings-dont-match"
_E_CHANNEL_BINDING_NOT_SUPPORTED = "channel-binding-not-supported"
_E_INVALID_USERNAME_ENCODING = "invalid-username-encoding"
_E_OTHER = "other-error"


class ScramServer(ServerMechanism):
    """SCRAM (RFC 5802) with the hash of RFC 7677 by default: SCRAM-SHA-256.

    ``nonce`` makes the server nonce (tests pass a fixed one to replay RFC examples).
    """

    plaintext = False

    def __init__(
        self,
        *,
        hash: ScramHash = SCRAM_SHA_256,
        authorize: AuthzPolicy = same_identity,
        nonce: Callable[[], str] = new_nonce,
    ) -> None:
        super().__init__()
        self._hash = hash
        self._authorize = authorize
        self._make_nonce = nonce
        self._gs2_header = ""
        self._client_first_bare = ""
        self._client_nonce = ""
        self._username = ""
        self._authzid = ""
        self._nonce = ""
        self._server_first = ""
        self._verifier: ScramVerifier | None = None
        self.name = hash.mechanism

    def _start(self, initial_response: bytes | None) -> ServerStep:
        if initial_response is None:
            return Challenge(b"")  # RFC 5802 §5.2 2a: client-first; RFC 4422 §3.3
        return self._client_first(initial_response)

    def _receive(self, response: bytes) -> ServerStep | _SuccessWithData:
        if not self._gs2_header:  # after our empty challenge
            return self._client_first(response)
        return self._client_final(response)

    def _client_first(self, message: bytes) -> ServerStep:
        text = _text(message)
        if text is None:
            return Failure(FailureReason.MALFORMED, _E_INVALID_ENCODING)
        # client-first-message = gs2-header client-first-message-bare (RFC 5802 §7)
        parts = text.split(",", 2)
        if len(parts) != 3:
            return Failure(FailureReason.MALFORMED, "no gs2-header")
        flag, authz, bare = parts
        # gs2-cbind-flag = ("p=" cb-name) / "n" / "y" (RFC 5802 §7)
        if flag.startswith("p=") and _CB_NAME.fullmatch(flag[2:]):
            # RFC 5802 §6: binding to a type we do not support MUST fail.
            return Failure(FailureReason.UNSUPPORTED, _E_CHANNEL_BINDING_NOT_SUPPORTED)
        if flag not in ("n", "y"):
            return Failure(FailureReason.MALFORMED, "bad gs2-cbind-flag")
        authzid = ""
        if authz:
            if not authz.startswith("a="):
                return Failure(FailureReason.MALFORMED, "bad authzid in gs2-header")
            decoded = decode_saslname(authz[2:]) if authz[2:] else None
            prepared = _prepare_identity(decoded) if decoded is not None else None
            if prepared is None:
                return Failure(FailureReason.MALFORMED, _E_INVALID_USERNAME_ENCODING)
            authzid = prepared
        attrs = _attributes(bare)
        if attrs is None or len(attrs) < 2:
            return Failure(FailureReason.MALFORMED, "bad client-first-message-bare")
        if any(name == "m" for name, _ in attrs):  # RFC 5802 §5.1 "m": MUST fail
            return Failure(FailureReason.UNSUPPORTED, _E_EXTENSIONS_NOT_SUPPORTED)
        (n_attr, raw_username), (r_attr, client_nonce) = attrs[0], attrs[1]
        if n_attr != "n" or r_attr != "r":
            return Failure(FailureReason.MALFORMED, "client-first-message-bare needs n= then r=")
        decoded_username = decode_saslname(raw_username)
        username = _prepare_identity(decoded_username) if decoded_username is not None else None
        if username is None:  # RFC 5802 §5.1 "n": MUST/SHOULD fail
            return Failure(FailureReason.MALFORMED, _E_INVALID_USERNAME_ENCODING)
        if not _PRINTABLE.fullmatch(client_nonce):
            return Failure(FailureReason.MALFORMED, "client nonce is not printable")
        # Unknown optional extensions (attrs[2:]) MUST be ignored (RFC 5802 §5.1).
        self._gs2_header = f"{flag},{authz},"
        self._client_first_bare = bare
        self._client_nonce = client_nonce
        self._username = username
        self._authzid = authzid
        return NeedScramVerifier(username)

    def _verifier_found(self, verifier: ScramVerifier) -> ServerStep:
        if verifier.hash != self._hash:
            raise SaslUsageError(f"{self.name} given a {verifier.hash.mechanism} verifier")
        server_nonce = self._make_nonce()
        if not _PRINTABLE.fullmatch(server_nonce):
            raise SaslUsageError("server nonce is not printable")
        self._verifier = verifier
        self._nonce = self._client_nonce + server_nonce
        # server-first-message = nonce "," salt "," iteration-count (RFC 5802 §7)
        self._server_first = f"r={self._nonce},s={_b64(verifier.salt)},i={verifier.iterations}"
        return Challenge(self._server_first.encode("ascii"))

    def _client_final(self, message: bytes) -> ServerStep | _SuccessWithData:
        assert self._verifier is not None
        text = _text(message)
        if text is None:
            return Failure(FailureReason.MALFORMED, _E_INVALID_ENCODING)
        # client-final-message = client-final-message-without-proof "," proof (RFC 5802 §7)
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        proof = _b64decode(proof_b64) if sep else None
        attrs = _attributes(without_proof) if sep else None
        if proof is None or attrs is None or len(attrs) < 2:
            return Failure(FailureReason.MALFORMED, "bad client-final-message")
        (c_attr, cbind_b64), (r_attr, nonce) = attrs[0], attrs[1]
        if c_attr != "c" or r_attr != "r":
            return Failure(FailureReason.MALFORMED, "client-final-message needs c= then r=")
        if any(name == "m" for name, _ in attrs):
            return Failure(FailureReason.UNSUPPORTED, _E_EXTENSIONS_NOT_SUPPORTED)
        if len(proof) != self._hash.size:
            return Failure(FailureReason.MALFORMED, "proof has the wrong length")
        # RFC 5802 §6: the server MUST always validate c=: cbind-input = gs2-header [cbind-data]
        # (no cbind-data until we offer -PLUS).
        cbind_input = _b64decode(cbind_b64)
        if cbind_input != self._gs2_header.encode("utf-8"):
            return Failure(FailureReason.CHANNEL_BINDING, _E_CHANNEL_BINDINGS_DONT_MATCH)
        # RFC 5802 §5.1 "r": the server MUST verify the nonce is the one it sent.
        if not hmac.compare_digest(nonce.encode("utf-8"), self._nonce.encode("utf-8")):
            return Failure(FailureReason.INVALID_CREDENTIALS, _E_OTHER)
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        auth_bytes = auth_message.encode("utf-8")
        signature = hmac_digest(self._hash, self._verifier.stored_key, auth_bytes)
        recovered_key = xor(proof, signature)
        # RFC 5802 §3: the proof is right iff H(ClientProof XOR ClientSignature) == StoredKey.
        if not hmac.compare_digest(
            stored_key(self._hash, recovered_key), self._verifier.stored_key
        ):
            return Failure(FailureReason.INVALID_CREDENTIALS, _E_INVALID_PROOF)
        if self._authzid and not self._authorize(self._username, self._authzid):
            return Failure(FailureReason.AUTHZ_DENIED, "may not act as the authorization identity")
        server_signature = hmac_digest(self._hash, self._verifier.server_key, auth_bytes)
        return _SuccessWithData(
            Success(self._username, self._authzid or self._username),
            f"v={_b64(server_signature)}".encode("ascii"),  # server-final-message
        )


# -- server mechanism registry ------------------------------------------------------------------

#: Mechanisms Pillarbox serves, strongest first (the order to advertise them in).
SERVER_MECHANISMS: tuple[str, ...] = ("SCRAM-SHA-256", "PLAIN", "LOGIN")
_PLAINTEXT_MECHANISMS = frozenset({PlainServer.name, LoginServer.name})


def mechanism_names(*, secure: bool, allow_plaintext_without_tls: bool = False) -> tuple[str, ...]:
    """The mechanisms to advertise on a connection.

    Plaintext mechanisms are withheld unless the connection is protected by TLS
    (RFC 9051 §6.2.2 note, RFC 4954 §4, RFC 8314 §3), or the operator explicitly allows it.
    """
    if secure or allow_plaintext_without_tls:
        return SERVER_MECHANISMS
    return tuple(n for n in SERVER_MECHANISMS if n not in _PLAINTEXT_MECHANISMS)


def new_server_mechanism(
    name: str,
    *,
    secure: bool,
    allow_plaintext_without_tls: bool = False,
    authorize: AuthzPolicy = same_identity,
    nonce: Callable[[], str] = new_nonce,
) -> ServerMechanism:
    """A fresh server mechanism for ``name`` (case-insensitive, as IMAP/SMTP/POP3 treat it).

    Raises :class:`UnsupportedMechanism` for a name not in :func:`mechanism_names` of this
    connection — so a plaintext mechanism cannot run without TLS even if a core forgot to check.
    """
    upper = name.upper()
    if upper not in mechanism_names(
        secure=secure, allow_plaintext_without_tls=allow_plaintext_without_tls
    ):
        raise UnsupportedMechanism(f"mechanism not available: {name[:40]!r}")
    if upper == PlainServer.name:
        return PlainServer(authorize=authorize)
    if upper == LoginServer.name:
        return LoginServer(authorize=authorize)
    return ScramServer(hash=SCRAM_SHA_256, authorize=authorize, nonce=nonce)


# -- client mechanisms --------------------------------------------------------------------------


class ClientMechanism(abc.ABC):
    """One client-side exchange (smart-host AUTH, ``pillarbox mail``).

    Drive it as: send :meth:`initial_response` with the AUTH command if the protocol allows it
    (``None`` means "send none"), answer each server challenge with :meth:`respond`, and when the
    server reports success call :meth:`finish` with the success's additional data, if any — it
    raises :class:`SaslClientError` if the server never proved itself.
    """

    name: str

    @abc.abstractmethod
    def initial_response(self) -> bytes | None: ...

    @abc.abstractmethod
    def respond(self, challenge: bytes) -> bytes: ...

    @abc.abstractmethod
    def finish(self, additional_data: bytes | None = None) -> None: ...


class PlainClient(ClientMechanism):
    """PLAIN (RFC 4616 §2): one message, sent as the initial response or after ``+ ``."""

    name = "PLAIN"

    def __init__(self, authcid: str, password: str, *, authzid: str = "") -> None:
        if not authcid or not password or "\x00" in authcid + password + authzid:
            raise SaslClientError("PLAIN needs a non-empty authcid and password without NUL")
        self._message = b"\x00".join(
            s.encode("utf-8") for s in (authzid, saslprep(authcid), password)
        )
        self._sent = False

    def initial_response(self) -> bytes:
        self._sent = True
        return self._message

    def respond(self, challenge: bytes) -> bytes:
        if self._sent or challenge:  # RFC 4422 §3.3: only the empty challenge is expected
            raise SaslClientError("unexpected PLAIN challenge from the server")
        self._sent = True
        return self._message

    def finish(self, additional_data: bytes | None = None) -> None:
        if not self._sent or additional_data:
            raise SaslClientError("server ended PLAIN out of order")


class _ScramClientPhase(enum.Enum):
    INITIAL = "initial"
    SENT_FIRST = "sent client-first"
    SENT_FINAL = "sent client-final"
    VERIFIED = "server verified"


class ScramClient(ClientMechanism):
    """SCRAM client (RFC 5802 §5), SHA-256 by default; no channel binding (flag ``n``).

    ``min_iterations``/``max_iterations`` bound what a server may ask: too few weakens the stored
    verifier, too many lets a hostile server burn our CPU.
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        authzid: str = "",
        hash: ScramHash = SCRAM_SHA_256,
        nonce: Callable[[], str] = new_nonce,
        min_iterations: int = 4096,
        max_iterations: int = 1_000_000,
    ) -> None:
        self.name = hash.mechanism
        self._hash = hash
        self._password = password
        self._min_iterations = min_iterations
        self._max_iterations = max_iterations
        self._client_nonce = nonce()
        if not _PRINTABLE.fullmatch(self._client_nonce):
            raise SaslUsageError("client nonce is not printable")
        authz = f"a={encode_saslname(saslprep(authzid))}" if authzid else ""
        self._gs2_header = f"n,{authz},"
        self._client_first_bare = f"n={encode_saslname(saslprep(username))},r={self._client_nonce}"
        self._server_signature = b""
        self._phase = _ScramClientPhase.INITIAL

    def initial_response(self) -> bytes:
        self._expect(_ScramClientPhase.INITIAL)
        self._phase = _ScramClientPhase.SENT_FIRST
        return (self._gs2_header + self._client_first_bare).encode("utf-8")

    def respond(self, challenge: bytes) -> bytes:
        if self._phase is _ScramClientPhase.INITIAL and not challenge:
            return self.initial_response()  # the server's empty challenge, RFC 4422 §3.3
        if self._phase is _ScramClientPhase.SENT_FIRST:
            return self._client_final(challenge)
        if self._phase is _ScramClientPhase.SENT_FINAL:
            self._verify_server_final(challenge)  # additional data sent as a challenge
            return b""
        raise SaslClientError(f"unexpected SCRAM challenge ({self._phase.value})")

    def finish(self, additional_data: bytes | None = None) -> None:
        if additional_data is not None:
            self._expect(_ScramClientPhase.SENT_FINAL)
            self._verify_server_final(additional_data)
        if self._phase is not _ScramClientPhase.VERIFIED:
            # RFC 5802 §5: success without a valid ServerSignature is no success.
            raise SaslClientError("server reported success without proving itself")

    def _expect(self, phase: _ScramClientPhase) -> None:
        if self._phase is not phase:
            raise SaslClientError(f"SCRAM out of order ({self._phase.value})")

    def _client_final(self, challenge: bytes) -> bytes:
        text = _text(challenge)
        attrs = _attributes(text) if text is not None else None
        if text is None or attrs is None or len(attrs) < 3:
            raise SaslClientError("malformed server-first-message")
        if any(name == "m" for name, _ in attrs):  # RFC 5802 §5.1 "m"
            raise SaslClientError("server requires an unsupported SCRAM extension")
        (r_attr, nonce), (s_attr, salt_b64), (i_attr, iterations_text) = attrs[:3]
        if (r_attr, s_attr, i_attr) != ("r", "s", "i"):
            raise SaslClientError("server-first-message needs r=, s=, i=")
        # RFC 5802 §5.1 "r": the client MUST verify its nonce starts the combined one.
        if not nonce.startswith(self._client_nonce) or len(nonce) == len(self._client_nonce):
            raise SaslClientError("server nonce does not extend ours")
        if not _PRINTABLE.fullmatch(nonce):
            raise SaslClientError("server nonce is not printable")
        salt = _b64decode(salt_b64)
        if not salt or not _POSIT_NUMBER.fullmatch(iterations_text):
            raise SaslClientError("bad salt or iteration count")
        iterations = int(iterations_text)
        if not self._min_iterations <= iterations <= self._max_iterations:
            raise SaslClientError(f"iteration count {iterations} outside our limits")
        try:
            salted = salted_password(self._hash, self._password, salt, iterations)
        except StringprepError as exc:
            raise SaslClientError("password cannot be prepared (SASLprep)") from exc
        cbind = _b64(self._gs2_header.encode("utf-8"))
        without_proof = f"c={cbind},r={nonce}"
        auth_message = ",".join((self._client_first_bare, text, without_proof)).encode("utf-8")
        key = client_key(self._hash, salted)
        signature = hmac_digest(self._hash, stored_key(self._hash, key), auth_message)
        self._server_signature = hmac_digest(
            self._hash, server_key(self._hash, salted), auth_message
        )
        self._phase = _ScramClientPhase.SENT_FINAL
        return f"{without_proof},p={_b64(xor(key, signature))}".encode("ascii")

    def _verify_server_final(self, message: bytes) -> None:
        text = _text(message)
        attrs = _attributes(text) if text is not None else None
        if not attrs:
            raise SaslClientError("malformed server-final-message")
        name, value = attrs[0]
        if name == "e":  # server-error (RFC 5802 §7)
            raise SaslClientError(f"server reported SCRAM error: {value[:64]}")
        signature = _b64decode(value) if name == "v" else None
        if signature is None or not hmac.compare_digest(signature, self._server_signature):
            raise SaslClientError("server signature does not verify")
        self._phase = _ScramClientPhase.VERIFIED
