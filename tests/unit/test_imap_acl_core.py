"""RFC 4314 on the session core over a real SQLite store, where transcripts cannot reach: two
sessions (owner and grantee) on one store. METADATA's /shared entries of a shared mailbox are
the grantee's to read (RFC 5464 §3.3), the owner's /private ones never; APPEND and COPY keep
only the flags the grantee's rights allow (§4); CREATE below a shared mailbox needs "k" and
inherits the parent's ACL; RENAME needs "x" and "k" and stays within one owner; CLOSE without
"e" closes without expunging; LSUB lists subscribed shared mailboxes; the owner's quota is not
shown to a grantee."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pillarbox import provisioning
from pillarbox.mail.parse import parse_message
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store
from pillarbox.store.types import AclEntry, Mailbox, MessageRecord, MetadataLimits
from pillarbox.testing.imapcore import CoreWire, core_session
from pillarbox.testing.live import TEST_PASSWORD, loopback_config

OWNER = "alice@example.org"
GRANTEE = "bob@example.org"
SHARED = f'"Other Users/{OWNER}/Support"'
MESSAGE = "Subject: x\r\n\r\nbody\r\n"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store("sqlite:", tmp_path)
    await store.open()
    await provisioning.add_domain(store, "example.org")
    for user in (OWNER, GRANTEE):
        await provisioning.add_account(store, loopback_config(tmp_path), user, TEST_PASSWORD)
    yield store
    await store.close()


async def login(store: Store, tmp_path: Path, user: str) -> CoreWire:
    wire = CoreWire(core_session(store, loopback_config(tmp_path), now=0.0))
    await wire.login(user, TEST_PASSWORD)
    return wire


async def support(store: Store, rights: str) -> Mailbox:
    owner = await store.get_account(OWNER)
    grantee = await store.get_account(GRANTEE)
    assert owner is not None and grantee is not None
    box = await store.create_mailbox(owner.id, "Support")
    await store.set_acl(box.id, grantee.id, rights)
    return box


async def put(store: Store, mailbox_id: int, flags: frozenset[str] = frozenset()) -> MessageRecord:
    raw = MESSAGE.encode()
    return (await store.append(mailbox_id, raw, parse_message(raw), flags=flags)).record


async def test_metadata_shared_entries_are_readable_private_ones_not(
    store: Store, tmp_path: Path
) -> None:
    box = await support(store, "lr")
    limits = MetadataLimits(max_entries=10, max_total=10_000)
    entries = {"/shared/comment": b"team queue", "/private/comment": b"alice's"}
    await store.set_metadata(box.account_id, box.id, entries, limits)
    bob = await login(store, tmp_path, GRANTEE)
    out = await bob.send(f"b GETMETADATA {SHARED} (/shared/comment /private/comment)\r\n")
    assert out == (
        f'* METADATA {SHARED} (/shared/comment "team queue" /private/comment NIL)\r\n'
        "b OK GETMETADATA completed\r\n"
    )
    out = await bob.send(f'c SETMETADATA {SHARED} (/shared/comment "mine")\r\n')
    assert out == "c NO [NOPERM] Permission denied\r\n"
    # Only "l" is not enough to read them (RFC 5464 §3.3: "l" and one of "rswip").
    grantee = await store.get_account(GRANTEE)
    assert grantee is not None
    await store.set_acl(box.id, grantee.id, "l")
    out = await bob.send(f"d GETMETADATA {SHARED} /shared/comment\r\n")
    assert out == "d NO [NOPERM] Permission denied\r\n"


async def test_append_and_copy_keep_only_permitted_flags(store: Store, tmp_path: Path) -> None:
    box = await support(store, "lris")  # \Seen yes, \Deleted and keywords no
    bob = await login(store, tmp_path, GRANTEE)
    data = MESSAGE.encode()
    out = await bob.send(
        f"b APPEND {SHARED} (\\Seen \\Deleted $Label \\Flagged) {{{len(data)}+}}\r\n{MESSAGE}\r\n"
    )
    assert "b OK [APPENDUID" in out
    grantee = await store.get_account(GRANTEE)
    assert grantee is not None
    inbox = await store.get_mailbox(grantee.id, "INBOX")
    await put(store, inbox.id, frozenset({"\\Seen", "$Label"}))
    assert "OK" in await bob.send("c SELECT INBOX\r\n")
    assert "COPYUID" in await bob.send(f"d COPY 1 {SHARED}\r\n")
    records = await store.list_messages(box.id)
    assert [record.flags for record in records] == [frozenset({"\\Seen"})] * 2


async def test_store_replace_keeps_the_flags_the_rights_do_not_cover(
    store: Store, tmp_path: Path
) -> None:
    """§4: a grantee with "s" alone replacing the flags changes \\Seen only; the owner's
    \\Flagged and \\Deleted stay, and the FETCH response says so."""
    box = await support(store, "lrs")
    await put(store, box.id, frozenset({"\\Flagged", "\\Deleted", "$Owner"}))
    bob = await login(store, tmp_path, GRANTEE)
    assert "OK [READ-WRITE]" in await bob.send(f"a SELECT {SHARED}\r\n")
    out = await bob.send("b STORE 1 FLAGS (\\Seen \\Answered)\r\n")
    assert out == (
        "* 1 FETCH (UID 1 FLAGS ($Owner \\Deleted \\Flagged \\Recent \\Seen))\r\n"
        "b OK STORE completed\r\n"
    )
    out = await bob.send("c STORE 1 FLAGS ()\r\n")
    assert out == (
        "* 1 FETCH (UID 1 FLAGS ($Owner \\Deleted \\Flagged \\Recent))\r\nc OK STORE completed\r\n"
    )
    out = await bob.send("d STORE 1 -FLAGS (\\Flagged \\Deleted $Owner)\r\n")
    assert out == "d NO [NOPERM] Permission denied\r\n"
    [record] = await store.list_messages(box.id)
    assert record.flags == {"\\Flagged", "\\Deleted", "$Owner"}


async def test_create_below_needs_k_and_inherits_the_acl(store: Store, tmp_path: Path) -> None:
    box = await support(store, "lr")
    bob = await login(store, tmp_path, GRANTEE)
    name = f'"Other Users/{OWNER}/Support/2026"'
    assert await bob.send(f"b CREATE {name}\r\n") == "b NO [NOPERM] Permission denied\r\n"
    grantee = await store.get_account(GRANTEE)
    assert grantee is not None
    await store.set_acl(box.id, grantee.id, "lrk")
    assert "b OK" in await bob.send(f"b CREATE {name}\r\n")
    created = await store.get_mailbox(box.account_id, "Support/2026")
    assert await store.get_acl(created.id) == [AclEntry(GRANTEE, "lrk")]
    out = await bob.send(f'c LIST "" "Other Users/{OWNER}/*"\r\n')
    assert f'"Other Users/{OWNER}/Support/2026"' in out
    # RENAME: "x" on the source is missing; across owners never.
    target = f'"Other Users/{OWNER}/Support/2027"'
    out = await bob.send(f"d RENAME {name} {target}\r\n")
    assert out == "d NO [NOPERM] Permission denied\r\n"
    await store.set_acl(created.id, grantee.id, "lrkx")
    assert await bob.send(f"e RENAME {name} Mine\r\n") == (
        "e NO [CANNOT] Mailboxes cannot be renamed across owners\r\n"
    )
    assert "f OK" in await bob.send(f"f RENAME {name} {target}\r\n")
    renamed = await store.get_mailbox(box.account_id, "Support/2027")
    assert renamed.id == created.id  # RFC 4314 §4: the ACL stays with it
    assert "g OK" in await bob.send(f"g DELETE {target}\r\n")
    inbox = await store.get_mailbox(box.account_id, "INBOX")
    await store.set_acl(inbox.id, grantee.id, "lx")
    out = await bob.send(f'h DELETE "Other Users/{OWNER}/INBOX"\r\n')
    assert out == "h NO [CANNOT] INBOX cannot be deleted\r\n"


async def test_close_without_e_keeps_deleted_messages(store: Store, tmp_path: Path) -> None:
    box = await support(store, "lrst")
    record = await put(store, box.id)
    bob = await login(store, tmp_path, GRANTEE)
    assert "OK" in await bob.send(f"b SELECT {SHARED}\r\n")
    assert "c OK" in await bob.send("c STORE 1 +FLAGS.SILENT (\\Deleted)\r\n")
    assert await bob.send("d CLOSE\r\n") == "d OK CLOSE completed\r\n"
    assert [r.uid for r in await store.list_messages(box.id)] == [record.uid]


async def test_lsub_quota_and_the_owner_view(store: Store, tmp_path: Path) -> None:
    box = await support(store, "lr")
    bob = await login(store, tmp_path, GRANTEE)
    # The namespace root is a \\Noselect level of the top (mutt's browser starts there).
    out = await bob.send('a LIST "" %\r\n')
    assert '* LIST (\\Noselect \\HasChildren) "/" "Other Users"\r\n' in out
    assert "Other Users/" not in out
    assert "OK" in await bob.send(f"b SUBSCRIBE {SHARED}\r\n")
    out = await bob.send('c LSUB "" "Other Users/*"\r\n')
    assert out == f'* LSUB () "/" {SHARED}\r\nc OK LSUB completed\r\n'
    out = await bob.send(f"d GETQUOTAROOT {SHARED}\r\n")
    assert out == f"* QUOTAROOT {SHARED}\r\nd OK GETQUOTAROOT completed\r\n"
    # The owner sees no "Other Users" of their own, and a flag the grantee may not set stays.
    alice = await login(store, tmp_path, OWNER)
    out = await alice.send('e LIST "" "Other*"\r\n')
    assert out == "e OK LIST completed\r\n"
    await put(store, box.id)
    assert "OK" in await bob.send(f"f SELECT {SHARED}\r\n")
    assert await bob.send("g STORE 1 FLAGS (\\Seen)\r\n") == "g NO [NOPERM] Permission denied\r\n"
    assert [r.flags for r in await store.list_messages(box.id)] == [frozenset()]


async def test_anyone_entries_and_list_extended(store: Store, tmp_path: Path) -> None:
    """An "anyone" entry opens a mailbox to every user of the server; LIST (SUBSCRIBED)
    (RFC 5258) covers other users' mailboxes as the user's own."""
    await support(store, "l")
    owner = await store.get_account(OWNER)
    assert owner is not None
    news = await store.create_mailbox(owner.id, "News")
    await store.set_acl(news.id, "anyone", "lr")
    bob = await login(store, tmp_path, GRANTEE)
    out = await bob.send(f'b MYRIGHTS "Other Users/{OWNER}/News"\r\n')
    assert out == f'* MYRIGHTS "Other Users/{OWNER}/News" lr\r\nb OK MYRIGHTS completed\r\n'
    assert "c OK" in await bob.send(f'c SUBSCRIBE "Other Users/{OWNER}/News"\r\n')
    out = await bob.send('d LIST (SUBSCRIBED) "" "Other Users/*"\r\n')
    assert out == (
        f'* LIST (\\HasNoChildren \\Subscribed) "/" "Other Users/{OWNER}/News"\r\n'
        "d OK LIST completed\r\n"
    )
    # Once the entry goes, the name is as unknown as any other (RFC 4314 §4).
    await store.set_acl(news.id, "anyone", "")
    out = await bob.send(f'e STATUS "Other Users/{OWNER}/News" (MESSAGES)\r\n')
    assert out == "e NO [NONEXISTENT] No such mailbox\r\n"
