"""DKIM keys in the store, key generation at ``domain add``, rotation, and signing at queue time
(verified with dkimpy against the published records)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim as dkimpy
import pytest

from pillarbox import provisioning
from pillarbox.dns.hosted import RETIRED_KEY_PUBLISHED, hosted_records, published_keys
from pillarbox.errors import AlreadyExists, NotFound
from pillarbox.queue.signing import author_domain, sign_outbound, signing_keys
from pillarbox.store.sqlite import SqliteStore
from pillarbox.store.types import DkimKeyRecord

T0 = datetime(2025, 6, 1, tzinfo=UTC)
MESSAGE = (
    b"Received: from client by mx.a.test; Sun, 1 Jun 2025 10:00:00 +0000\r\n"
    b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: signed\r\n"
    b"Date: Sun, 1 Jun 2025 10:00:00 +0000\r\nMessage-ID: <m1@a.test>\r\n\r\nHello Bob.\r\n"
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "pillarbox.sqlite3")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def record(selector: str, algorithm: str = "rsa-sha256", **changes: object) -> DkimKeyRecord:
    values: dict[str, object] = {
        "domain": "a.test",
        "selector": selector,
        "algorithm": algorithm,
        "private_pem": b"pem",
        "created": T0,
    }
    values.update(changes)
    return DkimKeyRecord(**values)  # type: ignore[arg-type]


async def test_store_keeps_keys_and_retires_them(store: SqliteStore) -> None:
    await store.add_domain("a.test")
    with pytest.raises(NotFound):
        await store.add_dkim_key(record("s1", domain="other.test"))
    await store.add_dkim_key(record("s1"))
    await store.add_dkim_key(record("s2", created=T0 + timedelta(days=1)))
    with pytest.raises(AlreadyExists):
        await store.add_dkim_key(record("s1"))  # a selector is never reused
    assert [k.selector for k in await store.list_dkim_keys("a.test")] == ["s1", "s2"]
    await store.retire_dkim_key("a.test", "s1", T0 + timedelta(days=2))
    await store.retire_dkim_key("a.test", "s1", T0 + timedelta(days=9))  # the first time stays
    assert [k.selector for k in await store.list_dkim_keys("a.test")] == ["s2"]
    [old, new] = await store.list_dkim_keys("a.test", include_retired=True)
    assert old.retired == T0 + timedelta(days=2) and not old.active and new.active
    assert old.private_pem == b"pem"
    with pytest.raises(NotFound):
        await store.retire_dkim_key("a.test", "nope", T0)
    await store.remove_domain("a.test")
    assert await store.list_dkim_keys("a.test", include_retired=True) == []


async def test_domain_add_generates_both_keys_and_rotation_retires_them(
    store: SqliteStore,
) -> None:
    await provisioning.add_domain(store, "A.Test")
    keys = await store.list_dkim_keys("a.test")
    assert sorted(k.algorithm for k in keys) == ["ed25519-sha256", "rsa-sha256"]
    assert all(k.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----") for k in keys)
    added, retired = await provisioning.rotate_dkim(store, "a.test")
    assert sorted(retired) == sorted(k.selector for k in keys)
    assert {k.selector for k in added}.isdisjoint(retired)  # same month: a fresh selector
    assert {k.selector for k in await store.list_dkim_keys("a.test")} == {k.selector for k in added}
    with pytest.raises(NotFound):
        await provisioning.rotate_dkim(store, "nowhere.test")


def test_retired_keys_stay_published_for_a_while() -> None:
    from pillarbox.queue import dkim

    rsa = dkim.generate_key(dkim.DkimAlgorithm.RSA_SHA256, now=T0, rsa_bits=1024)
    ed = dkim.generate_key(dkim.DkimAlgorithm.ED25519_SHA256, now=T0)
    keys = [
        record("old", private_pem=rsa.private_pem, retired=T0),
        record("new", "ed25519-sha256", private_pem=ed.private_pem),
    ]
    assert set(published_keys(keys, T0 + timedelta(days=1))) == {"old", "new"}
    assert set(published_keys(keys, T0 + RETIRED_KEY_PUBLISHED)) == {"new"}
    assert published_keys(keys, T0)["new"].startswith("v=DKIM1; k=ed25519; p=")


def test_signing_keys_picks_the_newest_active_of_each_algorithm() -> None:
    keys = [
        record("r1", created=T0),
        record("r2", created=T0 + timedelta(days=1)),
        record("r3", created=T0 + timedelta(days=2), retired=T0),
        record("e1", "ed25519-sha256"),
    ]
    assert [k.selector for k in signing_keys(keys)] == ["r2", "e1"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"From: Alice <alice@A.Test>\r\n", "a.test"),
        (b"From: alice@b\xc3\xbccher.test\r\n", "xn--bcher-kva.test"),
        (b"From: a@a.test, b@b.test\r\n", None),  # two authors: nothing to align with
        (b"From: a@a.test\r\nFrom: b@a.test\r\n", None),
        (b"Sender: a@a.test\r\n", None),
    ],
)
def test_author_domain(header: bytes, expected: str | None) -> None:
    assert author_domain(header + b"\r\nbody\r\n") == expected


async def test_sign_outbound_verifies_with_dkimpy(store: SqliteStore) -> None:
    await provisioning.add_domain(store, "a.test")
    signed = await sign_outbound(store, MESSAGE)
    assert signed.endswith(MESSAGE)
    assert signed.count(b"DKIM-Signature:") == 2
    assert b"a=rsa-sha256" in signed and b"a=ed25519-sha256" in signed
    records = await hosted_records(store, "a.test", mail_host="mx.a.test", now=datetime.now(UTC))
    txt = {r.name + ".": r.value.encode() for r in records.records if r.type == "TXT"}

    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes:
        key = name.decode() if isinstance(name, bytes) else name
        return txt.get(key, b"")

    verifier = dkimpy.DKIM(signed)
    assert verifier.verify(0, dnsfunc=dnsfunc)
    assert verifier.verify(1, dnsfunc=dnsfunc)
    # The Received field is not signed: a relay adding its own keeps the signatures valid.
    relayed = b"Received: from mx.a.test by mx.b.test\r\n" + signed
    assert dkimpy.DKIM(relayed).verify(0, dnsfunc=dnsfunc)


async def test_foreign_or_keyless_authors_are_not_signed(store: SqliteStore) -> None:
    await store.add_domain("a.test")  # hosted, but without keys
    assert await sign_outbound(store, MESSAGE) == MESSAGE
    foreign = MESSAGE.replace(b"alice@a.test", b"alice@elsewhere.test")
    assert await sign_outbound(store, foreign) == foreign
