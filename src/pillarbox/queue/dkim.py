"""DKIM keys and signatures for outbound mail (RFC 6376), RSA-SHA256 and Ed25519-SHA256 (RFC 8463).

Keys are values (:class:`DkimKey`); where they are kept is the store's business. Signing is done
by dkimpy, relaxed/relaxed (RFC 6376 §3.4.2, §3.4.4: survives the header refolding and trailing
whitespace changes that relays commit).

Signing is CPU work (the body is canonicalised and hashed whole; the RSA-2048 private-key
operation is ~0.2 ms, done by OpenSSL with dkimpy's exact result, :mod:`pillarbox.policy.dkimrsa`,
where dkimpy's pure Python took ~5 ms), so async callers run it off the event loop::

    headers = await run_blocking(dkim.sign, raw, "example.com", keys)
    message = headers + raw

Rotation: a selector names the month and algorithm of its key (``pb202506r``, ``pb202506e``).
To rotate, generate a key, publish its TXT record (``pillarbox dns records``), wait out the old
record's TTL, then sign with the new key; keep the old record published for a week or so, so
that mail signed just before the switch still verifies. Signing with one RSA and one Ed25519 key
together is the RFC 8463 §4 recommendation while verifiers without Ed25519 remain.

dkimpy signs Ed25519 through PyNaCl (its ``ed25519`` extra); without it, signing with an Ed25519
key raises :class:`DkimKeyError`. Key generation and the public record need only ``cryptography``.
"""

from __future__ import annotations

import base64
import enum
import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from pillarbox.errors import InvalidName, ServerFault, UserError
from pillarbox.policy import dkimrsa

dkimrsa.install()

RSA_BITS = 2048  # RFC 8301 §3.2: at least 1024, 2048 recommended
RSA_PUBLIC_EXPONENT = 65537
SELECTOR_PREFIX = "pb"

#: RFC 6376 §5.4.1 recommends these; absent ones are skipped unless oversigned.
SIGNED_HEADERS = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "mime-version", "content-type", "content-transfer-encoding", "content-id",
    "content-description", "resent-date", "resent-from", "resent-sender", "resent-to",
    "resent-cc", "resent-message-id", "in-reply-to", "references", "list-id", "list-help",
    "list-unsubscribe", "list-unsubscribe-post", "list-subscribe", "list-post", "list-owner",
    "list-archive",
    # RFC 8460 §5.3: a TLS report's own fields SHOULD be signed; RFC 8689 §5 TLS-Required.
    "tls-report-domain", "tls-report-submitter", "tls-required",
)  # fmt: skip
#: Signed once more than they occur (RFC 6376 §5.4.2, §8.15): adding another instance, or one
#: that was absent (a second From, a Reply-To), breaks the signature.
OVERSIGNED_HEADERS = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc", "mime-version",
    "content-type", "content-transfer-encoding", "in-reply-to", "references",
)  # fmt: skip

_SELECTOR = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class DkimAlgorithm(enum.StrEnum):
    RSA_SHA256 = "rsa-sha256"
    ED25519_SHA256 = "ed25519-sha256"  # RFC 8463 §3

    @property
    def key_type(self) -> str:
        """The ``k=`` tag of the public-key record."""
        return "rsa" if self is DkimAlgorithm.RSA_SHA256 else "ed25519"


class DkimKeyError(ServerFault):
    """A stored key is unusable (corrupt PEM, wrong type, Ed25519 without PyNaCl)."""


class DkimMessageError(UserError):
    """The message cannot be signed: its header section is malformed."""


@dataclass(frozen=True, slots=True)
class DkimKey:
    selector: str
    algorithm: DkimAlgorithm
    #: Unencrypted PKCS#8 PEM; protect it as the store protects password hashes.
    private_pem: bytes
    created: datetime


def selector_for(algorithm: DkimAlgorithm, when: datetime) -> str:
    """``pb<yyyymm>r`` or ``pb<yyyymm>e``: sortable, one per month and algorithm."""
    suffix = "r" if algorithm is DkimAlgorithm.RSA_SHA256 else "e"
    return f"{SELECTOR_PREFIX}{when:%Y%m}{suffix}"


def generate_key(
    algorithm: DkimAlgorithm,
    *,
    now: datetime,
    selector: str | None = None,
    rsa_bits: int = RSA_BITS,
) -> DkimKey:
    """A new key; ``selector`` defaults to :func:`selector_for` (pass one to rotate twice in a
    month). RSA generation takes tens of milliseconds: run it off the event loop too."""
    selector = (selector or selector_for(algorithm, now)).lower()
    if not _SELECTOR.fullmatch(selector):
        raise InvalidName(f"{selector!r} is not a DNS label usable as a DKIM selector")
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm is DkimAlgorithm.RSA_SHA256:
        private = rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=rsa_bits)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return DkimKey(selector, algorithm, pem, now)


def _load(key: DkimKey) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    try:
        private = serialization.load_pem_private_key(key.private_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise DkimKeyError(f"DKIM key {key.selector}: {exc}") from None
    wanted = (
        rsa.RSAPrivateKey
        if key.algorithm is DkimAlgorithm.RSA_SHA256
        else (ed25519.Ed25519PrivateKey)
    )
    if not isinstance(private, wanted):
        raise DkimKeyError(f"DKIM key {key.selector}: not an {key.algorithm.key_type} key")
    return private


def public_record(key: DkimKey) -> str:
    """The TXT value to publish at ``<selector>._domainkey.<domain>`` (RFC 6376 §3.6.1)."""
    private = _load(key)
    if isinstance(private, rsa.RSAPrivateKey):
        # p= is the DER SubjectPublicKeyInfo, as every verifier accepts (RFC 6376 §3.6.1).
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        # RFC 8463 §4.2: the bare 32-octet public key.
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    encoded = base64.b64encode(public).decode("ascii")
    return f"v=DKIM1; k={key.algorithm.key_type}; p={encoded}"


@functools.lru_cache(maxsize=64)
def _dkimpy_private_key(key: DkimKey) -> bytes:
    """The key as dkimpy takes it: PEM for RSA, the base64 32-octet seed for Ed25519.

    Cached: ``load_pem_private_key`` checks an RSA key's consistency, about 30 ms of CPU for
    2048 bits (measured: 45 ms per signature uncached, 7 ms cached, when dkimpy still did the
    RSA step), and a domain signs every message with the same few keys."""
    private = _load(key)
    if isinstance(private, rsa.RSAPrivateKey):
        return key.private_pem
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(seed)


def headers_to_sign(
    present: Sequence[bytes],
    *,
    signed: Sequence[str] = SIGNED_HEADERS,
    oversigned: Sequence[str] = OVERSIGNED_HEADERS,
) -> list[bytes]:
    """The ``h=`` list for a message whose header field names are ``present``: each signed
    name once per occurrence, oversigned names once more."""
    counts = Counter(name.lower() for name in present)
    extra = {name.lower() for name in oversigned}
    names: list[bytes] = []
    for name in signed:
        encoded = name.lower().encode("ascii")
        names += [encoded] * (counts[encoded] + (1 if name.lower() in extra else 0))
    return names


def sign(
    raw: bytes,
    domain: str,
    keys: Sequence[DkimKey],
    *,
    signed: Sequence[str] = SIGNED_HEADERS,
    oversigned: Sequence[str] = OVERSIGNED_HEADERS,
) -> bytes:
    """``DKIM-Signature`` header fields (CRLF-terminated, one per key, in the order of ``keys``)
    to put in front of ``raw``. Blocking: call through :func:`pillarbox.blocking.run_blocking`."""
    try:
        signer = dkim.DKIM(raw)
    except dkim.MessageFormatError as exc:
        raise DkimMessageError(f"cannot sign: {exc}") from None
    except IndexError:  # dkimpy's parser, on a continuation line before any field
        raise DkimMessageError("cannot sign: the header starts with a folded line") from None
    include = headers_to_sign(
        [name for name, _ in signer.headers], signed=signed, oversigned=oversigned
    )
    out = []
    for key in keys:
        private = _dkimpy_private_key(key)
        try:
            out.append(
                signer.sign(
                    key.selector.encode("ascii"),
                    domain.encode("ascii"),  # a hosted domain: the store keeps A-labels
                    private,
                    signature_algorithm=key.algorithm.value.encode("ascii"),
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=include,
                )
            )
        except dkim.DKIMException as exc:
            raise DkimKeyError(f"DKIM key {key.selector}: {exc}") from None
    return b"".join(out)
