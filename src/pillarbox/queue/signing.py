"""DKIM-signing outbound mail of hosted domains, once, when it is queued.

Why at queue time: the queue stores the message as it will leave, so every attempt (and every
node of a cluster) sends identical, already signed bytes; signing per attempt would repeat the
RSA operation and could sign different bytes after a key rotation.

What is signed: the message as queued — our ``Received`` field on top of what the client
sent. ``Received`` is not among the signed header fields
(:data:`pillarbox.queue.dkim.SIGNED_HEADERS`), so the signature is the same with or without it,
and the relays after us may add theirs. The ``DKIM-Signature`` fields go on top.

Whose mail: only what an authenticated user submitted (intake checked that the account owns the
``From`` address). Mail that arrived at the MX and is forwarded by an alias is never signed: its
``From`` may claim one of our domains without any right to it.

Which domain (``d=``): the domain of the single ``From`` address (RFC 5322 §3.6.2), when we
host it and it has active keys — that is what DMARC aligns with (RFC 7489 §3.1). Each domain
signs with its newest active key of each algorithm: RSA-SHA256 and Ed25519-SHA256 (RFC 8463 §4
recommends both while verifiers lacking Ed25519 remain).

Signing never stops mail: a message dkimpy cannot parse, or a broken key, is queued unsigned and
logged.
"""

from __future__ import annotations

from pillarbox.blocking import run_blocking
from pillarbox.errors import InvalidName
from pillarbox.mail.address import domain_to_ascii
from pillarbox.mail.headers import parse_addresses, raw_text, scan_header
from pillarbox.observability.log import Log
from pillarbox.queue import dkim
from pillarbox.store.interface import Store
from pillarbox.store.types import DkimKeyRecord

_log = Log("dkim")


def author_domain(raw: bytes) -> str | None:
    """The domain of the message's one ``From`` address (A-label form); None when there is no
    single From address to align with."""
    block = scan_header(raw, 0, len(raw))
    values = [f.value for f in block.fields if f.key == "from"]
    if len(values) != 1:
        return None
    addresses, _ = parse_addresses(raw_text(values[0]), limit=2)
    mailboxes = [a for a in addresses if a.mailbox is not None and a.host is not None]
    if len(mailboxes) != 1 or mailboxes[0].host is None:
        return None
    try:
        return domain_to_ascii(mailboxes[0].host)
    except InvalidName:
        return None


def signing_keys(records: list[DkimKeyRecord]) -> list[dkim.DkimKey]:
    """The newest active key of each algorithm, RSA first."""
    newest: dict[str, DkimKeyRecord] = {}
    for record in records:
        if record.active and (
            record.algorithm not in newest or record.created >= newest[record.algorithm].created
        ):
            newest[record.algorithm] = record
    return [
        dkim.DkimKey(chosen.selector, algorithm, chosen.private_pem, chosen.created)
        for algorithm in dkim.DkimAlgorithm
        if (chosen := newest.get(algorithm.value)) is not None
    ]


async def sign_outbound(store: Store, raw: bytes) -> bytes:
    """``raw`` with ``DKIM-Signature`` fields on top, or unchanged (see the module notes)."""
    domain = author_domain(raw)
    if domain is None or await store.get_domain(domain) is None:
        return raw
    keys = signing_keys(await store.list_dkim_keys(domain))
    if not keys:
        return raw
    try:
        headers = await run_blocking(dkim.sign, raw, domain, keys)
    except dkim.DkimMessageError as exc:
        _log.info("not signed", domain=domain, reason=str(exc))
        return raw
    except dkim.DkimKeyError as exc:
        _log.error("not signed: unusable key", domain=domain, reason=str(exc))
        return raw
    return headers + raw
