"""Fuzz DKIM and ARC verification (pillarbox.policy.dkim, pillarbox.policy.arc; dkimpy inside).

Input: a whole message. Key records come from an in-process resolver: selectors ``r1``
(RSA) and ``e1`` (Ed25519) at ``signer.test`` hold this run's real keys (the seeds are signed
and sealed with them, so mutations start from valid signatures); selector ``x`` holds the
value of the message's own ``X-Key`` field, so key records are fuzzed too; names with
``servfail`` or ``slow`` fail or time out. Asserted, beyond "no exception" (dkimpy's
exceptions must be mapped by our code, RFC 6376 §6.1: a malformed signature or key is
permerror, a failed lookup temperror):

* every DKIM-Signature field gets exactly one result, of the RFC 8601 values;
* ARC verification gives an ArcOutcome (none, pass or fail) within the instance limit.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import atheris
import harness

with atheris.instrument_imports(include=["pillarbox", "dkim"]):
    import staticdns

    from pillarbox.mail.headers import raw_text, scan_header, unfold
    from pillarbox.policy import arc, dkim
    from pillarbox.policy.arc import ArcLimits, ArcResult
    from pillarbox.policy.dkim import DkimLimits, DkimResult
    from pillarbox.queue.dkim import DkimAlgorithm, generate_key, public_record, sign

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RSA = generate_key(DkimAlgorithm.RSA_SHA256, now=NOW, selector="r1", rsa_bits=1024)
ED = generate_key(DkimAlgorithm.ED25519_SHA256, now=NOW, selector="e1")
KEYS = {
    "r1._domainkey.signer.test": [public_record(RSA).encode()],
    "e1._domainkey.signer.test": [public_record(ED).encode()],
}
#: Short deadlines: the resolver's ``slow`` names take longer.
DKIM_LIMITS = DkimLimits(timeout=0.05)
ARC_LIMITS = ArcLimits(timeout=0.05)
LOOP = asyncio.new_event_loop()


def _own_key(raw: bytes) -> list[bytes]:
    for f in scan_header(raw, 0, len(raw), max_fields=100).fields:
        if f.key == "x-key":
            return [raw_text(unfold(f.value)).strip().encode("utf-8", "surrogateescape")]
    return []


def check(raw: bytes) -> None:
    resolver = staticdns.StaticResolver({**KEYS, "x._domainkey.signer.test": _own_key(raw)})
    results = LOOP.run_until_complete(dkim.verify(resolver, raw, limits=DKIM_LIMITS))
    assert len(results) == len(dkim.signature_tags(raw))
    assert all(isinstance(r.result, DkimResult) for r in results)
    outcome = LOOP.run_until_complete(arc.verify(resolver, raw, limits=ARC_LIMITS))
    assert isinstance(outcome.result, ArcResult)
    assert outcome.result is not ArcResult.PASS or outcome.instances <= ARC_LIMITS.max_instances


MESSAGE = (
    b"From: Alice <alice@signer.test>\r\nTo: bob@example.org\r\nSubject: hello\r\n"
    b"Date: Sun, 1 Jun 2025 10:00:00 +0000\r\nMessage-ID: <1@signer.test>\r\n\r\n"
    b"Hello Bob,\r\nthis is signed.\r\n"
)


def seeds() -> list[bytes]:
    signed = sign(MESSAGE, "signer.test", [RSA, ED]) + MESSAGE
    stamped = b"Authentication-Results: fwd.test; arc=none; spf=pass\r\n" + signed
    sealed = (
        arc.seal(
            stamped,
            domain="signer.test",
            selector="r1",
            private_pem=RSA.private_pem,
            authserv_id="fwd.test",
        )
        + stamped
    )
    ed_record = public_record(ED).encode()
    own = b"X-Key: " + ed_record + b"\r\n"
    return [
        signed,
        sealed,
        own + signed.replace(b"s=e1", b"s=x"),
        b"DKIM-Signature: v=1; a=rsa-sha256; d=servfail.test; s=s; h=from; bh=x; b=y\r\n" + MESSAGE,
        b"DKIM-Signature: v=1; a=ed25519-sha256; d=slow.test; s=s; h=from; bh=x; b=y\r\n" + MESSAGE,
        b"DKIM-Signature: v=1; d=signer.test; s=x; b=\r\n X-Key: v=DKIM1; k=rsa; p=MII\r\n"
        + MESSAGE,
    ]


if __name__ == "__main__":
    harness.main("policy_dkim_arc", check, seeds(), max_len=65536)
