"""DKIM verification (RFC 6376, RFC 8463 Ed25519, RFC 8301 algorithm rules) with dkimpy.

Implementation notes:

- dkimpy is synchronous and asks DNS through a callback. We never let it block on the network:
  the selectors' key records are fetched first, concurrently, through our async resolver
  (:func:`prefetch_keys`), and dkimpy then runs against a callback answering from that table
  (:class:`KeyTable`) — on the loop for small messages, on the blocking pool for large ones
  (canonicalising a big body is CPU work).
- Results per signature, in RFC 8601 §2.7.1 terms: ``pass``; ``fail`` (bad signature, body
  hash mismatch, key too short); ``policy`` (valid but unacceptable: rsa-sha1, RFC 8301 §3.1);
  ``temperror`` (the key lookup failed temporarily, RFC 6376 §6.1.2); ``permerror`` (malformed
  signature, no key record, malformed key: RFC 6376 §6.1.1–6.1.2 PERMFAIL).
- At most :attr:`DkimLimits.max_signatures` signatures are checked (the first ones, top down);
  the rest are reported as ``neutral`` rather than silently skipped.
- dkimpy raises on some malformed headers (a continuation line first, missing colon); every
  such case is a ``permerror`` for each signature, never an exception out of this module.
- Work done once (the cost of mail from the internet, docs/performance.md, "Session 7"):
  dkimpy parses a message once for all its signatures and each signature once, and a key
  record once per distinct text (:func:`public_key`, a bounded cache keyed by the record's exact
  bytes, so a changed record is parsed anew). The verification itself is dkimpy's
  ``verify_sig_process``, the half of ``DKIM.verify_sig`` that dkimpy keeps apart so that its
  asyncio variant can load keys its own way; :func:`_verify_sig` is that other way. Its RSA
  step is done by OpenSSL where that gives dkimpy's own answer (:mod:`pillarbox.policy.dkimrsa`,
  installed when this module is imported).
"""

from __future__ import annotations

import asyncio
import binascii
import enum
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dkim
import dkim.util

from pillarbox.blocking import run_sized
from pillarbox.dns.resolver import DnsTemporaryError, Resolver
from pillarbox.errors import InvalidName
from pillarbox.mail.headers import scan_header, unfold
from pillarbox.policy import dkimrsa

dkimrsa.install()


class DkimResult(enum.StrEnum):
    """RFC 8601 §2.7.1 result values."""

    NONE = "none"
    PASS = "pass"
    FAIL = "fail"
    POLICY = "policy"
    NEUTRAL = "neutral"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimLimits:
    #: Signatures verified per message (the first ones); the rest are reported ``neutral``.
    max_signatures: int = 5
    #: Seconds for all key lookups of one message together.
    timeout: float = 5.0
    #: Shorter RSA keys make a signature fail (RFC 8301 §3.2: at least 1024 bits).
    min_rsa_bits: int = 1024


DEFAULT_LIMITS = DkimLimits()


@dataclass(frozen=True, slots=True)
class SignatureResult:
    """The verdict on one ``DKIM-Signature`` field."""

    result: DkimResult
    #: ``d=``, lowercase ("" if the field had none).
    domain: str
    selector: str
    algorithm: str
    #: The first 8 characters of ``b=`` (RFC 6008 ``header.b``), to tell signatures apart.
    b_prefix: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SignatureTags:
    """The tags of a signature field that locate its key (enough to prefetch it)."""

    domain: str
    selector: str
    algorithm: str
    b_prefix: str

    @property
    def key_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


def _tags(value: bytes) -> SignatureTags | None:
    try:
        tags = dkim.util.parse_tag_value(unfold(value).strip())
    except dkim.util.InvalidTagValueList:
        return None
    b = re.sub(rb"\s+", b"", tags.get(b"b", b""))
    return SignatureTags(
        domain=tags.get(b"d", b"").decode("ascii", "replace").lower().rstrip("."),
        selector=tags.get(b"s", b"").decode("ascii", "replace").lower(),
        algorithm=tags.get(b"a", b"").decode("ascii", "replace").lower(),
        b_prefix=b[:8].decode("ascii", "replace"),
    )


def signature_tags(raw: bytes, field_name: str = "dkim-signature") -> list[SignatureTags | None]:
    """Each ``field_name`` field of the header, top down: its tags, or None if unparseable."""
    return fields_tags(raw, (field_name,))[field_name]


def fields_tags(raw: bytes, field_names: Sequence[str]) -> dict[str, list[SignatureTags | None]]:
    """:func:`signature_tags` for each of ``field_names`` (lowercase), from one scan."""
    found: dict[str, list[SignatureTags | None]] = {name: [] for name in field_names}
    for f in scan_header(raw, 0, len(raw), max_fields=1000).fields:
        if f.key in found:
            found[f.key].append(_tags(f.value))
    return found


#: A key lookup's outcome: the TXT record(s), ``None`` for no record, or TEMPORARY.
class _Temporary:
    pass


TEMPORARY = _Temporary()
KeyAnswer = list[bytes] | None | _Temporary


class KeyTable:
    """Key records fetched ahead, answering dkimpy's synchronous ``dnsfunc``."""

    def __init__(self, answers: Mapping[str, KeyAnswer]) -> None:
        self._answers = {name.lower().rstrip("."): a for name, a in answers.items()}

    def answer(self, name: str) -> KeyAnswer:
        return self._answers.get(name.lower().rstrip("."))

    def dnsfunc(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """dkimpy's callback: the record, or None (dkimpy reports a missing key)."""
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        answer = self.answer(text)
        if isinstance(answer, _Temporary):
            raise dkim.DnsTimeoutError(f"{text}: temporary DNS failure")
        if not answer:
            return None
        # RFC 6376 §3.6.2.2: several records at one name make the key unusable; take the
        # first, as dkimpy's own resolver does, and let the verification decide.
        return answer[0]


async def prefetch_keys(
    resolver: Resolver, names: Iterable[str], *, timeout: float
) -> dict[str, KeyAnswer]:
    """Look up every key record concurrently; a lookup not done in ``timeout`` is temporary."""
    unique = sorted({n.lower() for n in names if n})

    async def one(name: str) -> KeyAnswer:
        try:
            records = await resolver.txt(name)
        except DnsTemporaryError:
            return TEMPORARY
        except InvalidName:
            return None
        return records or None

    try:
        async with asyncio.timeout(timeout):
            if len(unique) == 1:  # the usual case: no task to schedule for one lookup
                answers = [await one(unique[0])]
            else:
                answers = await asyncio.gather(*(one(n) for n in unique))
    except TimeoutError:
        return dict.fromkeys(unique, TEMPORARY)
    return dict(zip(unique, answers, strict=True))


#: Distinct key records kept parsed (:func:`public_key`), the least recently used dropped first;
#: an entry is one RSA modulus or Ed25519 key (under 1 KB).
KEY_CACHE_SIZE = 512

#: dkimpy's parse of a key record: the key, its size in bits, ``k=`` and whether ``s=tlsrpt``.
ParsedKey = tuple[object, int | None, bytes | None, bool]


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _parsed_key(record: bytes) -> ParsedKey:
    key: ParsedKey = dkim.evaluate_pk("", record)
    return key


def public_key(name: bytes | str, record: bytes | None) -> ParsedKey:
    """``dkim.evaluate_pk(name, record)``, cached by the record's exact bytes (thread-safe,
    bounded by :data:`KEY_CACHE_SIZE`); raises as dkimpy does for an unusable record. The name
    only appears in dkimpy's message for a missing record, which is never cached."""
    if not record:
        key: ParsedKey = dkim.evaluate_pk(name, record)  # raises: missing public key
        return key
    return _parsed_key(record)


def _verify_sig(
    verifier: dkim.DKIM,
    prep: tuple[dict[bytes, bytes], list[bytes], Sequence[tuple[bytes, bytes]]],
    index: int,
    keys: KeyTable,
) -> bool:
    """``verifier.verify(index, keys.dnsfunc)`` after ``verifier.verify_headerprep(index)``
    returned ``prep``: dkimpy's ``verify_sig`` with the key record parsed by
    :func:`public_key`. The key is looked up under the name dkimpy builds from the signature's
    own tags, and a missing, unusable or temporarily failing key is ``False``, as there."""
    sig, include_headers, sigheaders = prep
    name = sig[b"s"] + b"._domainkey." + sig[b"d"] + b"."
    try:
        verifier.pk, verifier.keysize, verifier.ktag, verifier.seqtlsrpt = public_key(
            name, keys.dnsfunc(name)
        )
    except (dkim.KeyFormatError, binascii.Error, dkim.DnsTimeoutError):
        return False
    valid: bool = verifier.verify_sig_process(sig, include_headers, sigheaders[index], keys.dnsfunc)
    return valid


def _parsed_message(raw: bytes, min_rsa_bits: int) -> dkim.DKIM | str:
    """dkimpy's parse of ``raw``, shared by all its signatures (each verification sets the
    signature and key it works on before using them), or why dkimpy could not parse it."""
    try:
        return dkim.DKIM(raw, minkey=min_rsa_bits)
    except (dkim.DKIMException, IndexError, ValueError) as exc:
        return f"malformed signature: {exc}"


def _verify_one(
    verifier: dkim.DKIM | str, index: int, tags: SignatureTags, keys: KeyTable
) -> SignatureResult:
    def result(value: DkimResult, reason: str) -> SignatureResult:
        return SignatureResult(
            value, tags.domain, tags.selector, tags.algorithm, tags.b_prefix, reason
        )

    if isinstance(verifier, str):
        return result(DkimResult.PERMERROR, verifier)
    try:
        prep = verifier.verify_headerprep(index)  # RFC 6376 §6.1.1: the signature's own syntax
    except (dkim.DKIMException, IndexError, ValueError) as exc:
        return result(DkimResult.PERMERROR, f"malformed signature: {exc}")
    answer = keys.answer(tags.key_name)
    if isinstance(answer, _Temporary):
        return result(DkimResult.TEMPERROR, f"key lookup of {tags.key_name} failed")
    if not answer:
        return result(DkimResult.PERMERROR, f"no key at {tags.key_name}")
    try:
        public_key(tags.key_name, answer[0])
    except (dkim.DKIMException, ValueError, TypeError) as exc:
        return result(DkimResult.PERMERROR, f"unusable key: {exc}")
    try:
        # dkimpy's verify() is False when it finds no signature at ``index``.
        valid = bool(prep) and _verify_sig(verifier, prep, index, keys)
    except (dkim.DKIMException, ValueError, TypeError, IndexError) as exc:
        return result(DkimResult.FAIL, str(exc))
    if not valid:
        return result(DkimResult.FAIL, "signature did not verify")
    if tags.algorithm == "rsa-sha1":
        return result(DkimResult.POLICY, "rsa-sha1 is not acceptable (RFC 8301 §3.1)")
    return result(DkimResult.PASS, "")


def verify_signatures(
    raw: bytes,
    keys: KeyTable,
    *,
    limits: DkimLimits = DEFAULT_LIMITS,
    tags: Sequence[SignatureTags | None] | None = None,
) -> list[SignatureResult]:
    """Every ``DKIM-Signature`` of ``raw`` judged against prefetched ``keys`` (blocking);
    ``tags`` is :func:`signature_tags` of ``raw`` when the caller has it already."""
    results: list[SignatureResult] = []
    verifier: dkim.DKIM | str | None = None
    for index, tag in enumerate(signature_tags(raw) if tags is None else tags):
        if tag is None:
            results.append(
                SignatureResult(DkimResult.PERMERROR, "", "", "", "", "malformed tag list")
            )
        elif index >= limits.max_signatures:
            results.append(
                SignatureResult(
                    DkimResult.NEUTRAL,
                    tag.domain,
                    tag.selector,
                    tag.algorithm,
                    tag.b_prefix,
                    f"beyond the first {limits.max_signatures} signatures: not checked",
                )
            )
        else:
            if verifier is None:
                verifier = _parsed_message(raw, limits.min_rsa_bits)
            results.append(_verify_one(verifier, index, tag, keys))
    return results


async def verify(
    resolver: Resolver, raw: bytes, *, limits: DkimLimits = DEFAULT_LIMITS
) -> list[SignatureResult]:
    """Verify every DKIM signature of ``raw``; ``[]`` when it has none (``dkim=none``)."""
    tags = signature_tags(raw)
    checked = [t.key_name for t in tags[: limits.max_signatures] if t is not None]
    answers = await prefetch_keys(resolver, checked, timeout=limits.timeout)
    keys = KeyTable(answers)
    return await run_sized(len(raw), verify_signatures, raw, keys, limits=limits, tags=tags)
