"""RFC 7162 QRESYNC across sessions, RFC 9208 QUOTA and RFC 8474 OBJECTID on the session core
with a real SQLite store: a client disconnects, another session expunges and flags messages,
and the first resynchronises with one SELECT."""

# ruff: noqa: F811 -- ``store`` is the fixture imported from test_imap_session, used by name.
from __future__ import annotations

import re
from pathlib import Path

from test_imap_session import USER, deliver, make_wire, store  # noqa: F401

from pillarbox.store.interface import Store
from pillarbox.store.types import INBOX, Change, ChangeKind, FlagOp
from pillarbox.testing.live import TEST_PASSWORD


def _code(text: str, name: str) -> int:
    found = re.search(rf"\[{name} (\d+)\]", text)
    assert found is not None, text
    return int(found.group(1))


async def test_qresync_after_expunges_in_another_session(store: Store, tmp_path: Path) -> None:
    for n in range(1, 7):
        await deliver(store, f"message {n}")
    first = make_wire(store, tmp_path)
    await first.login(USER, TEST_PASSWORD)
    await first.send("e ENABLE QRESYNC\r\n")
    selected = await first.send("s SELECT INBOX\r\n")
    validity, modseq = _code(selected, "UIDVALIDITY"), _code(selected, "HIGHESTMODSEQ")
    await first.send("z LOGOUT\r\n")

    other = make_wire(store, tmp_path)
    await other.login(USER, TEST_PASSWORD)
    await other.send("s SELECT INBOX\r\n")
    await other.send("f STORE 2,5 +FLAGS (\\Deleted)\r\n")
    await other.send("x EXPUNGE\r\n")  # UIDs 2 and 5 go
    await other.send("g STORE 2 +FLAGS (\\Flagged)\r\n")  # UID 3, now message 2
    await deliver(store, "message 7")  # a new arrival is EXISTS, not a FETCH

    again = make_wire(store, tmp_path)
    await again.login(USER, TEST_PASSWORD)
    await again.send("e ENABLE QRESYNC\r\n")
    answer = await again.send(f"q SELECT INBOX (QRESYNC ({validity} {modseq} 1:6))\r\n")
    lines = answer.splitlines()
    assert "* 5 EXISTS" in lines
    vanished = lines.index("* VANISHED (EARLIER) 2,5")
    fetches = [line for line in lines if " FETCH " in line]
    assert len(fetches) == 1 and fetches[0].startswith("* 2 FETCH (UID 3 FLAGS (\\Flagged")
    assert lines.index(fetches[0]) > vanished  # RFC 7162 §3.2.5.1: VANISHED first
    assert _code(answer, "HIGHESTMODSEQ") > modseq
    assert lines[-1].startswith("q OK [READ-WRITE]")

    # Known UIDs limit the answer: the client only asks about 1:3.
    answer = await again.send(f"r SELECT INBOX (QRESYNC ({validity} {modseq} 1:3))\r\n")
    assert "* VANISHED (EARLIER) 2" in answer.splitlines()
    # A resync from the current MODSEQ has nothing to say.
    current = _code(answer, "HIGHESTMODSEQ")
    answer = await again.send(f"t SELECT INBOX (QRESYNC ({validity} {current}))\r\n")
    assert "VANISHED" not in answer and " FETCH " not in answer


async def test_vanished_replaces_expunge_for_an_idling_qresync_client(
    store: Store, tmp_path: Path
) -> None:
    for n in range(1, 4):
        await deliver(store, f"message {n}")
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await wire.send("e ENABLE QRESYNC\r\n")
    await wire.send("s SELECT INBOX\r\n")
    assert (await wire.send("i IDLE\r\n")).startswith("+ ")
    account = await store.get_account(USER)
    assert account is not None
    inbox = await store.get_mailbox(account.id, INBOX)
    await store.store_flags(inbox.id, [1, 3], FlagOp.ADD, frozenset({"\\Deleted"}))
    await store.expunge(inbox.id)
    await store.store_flags(inbox.id, [2], FlagOp.ADD, frozenset({"\\Flagged"}))
    highest = (await store.mailbox_status(inbox.id)).mailbox.highestmodseq
    wire.session.notify(Change(account.id, inbox.id, ChangeKind.FLAGS, highest))  # the feed's
    await wire.session.push_updates(wire, wire.now)
    pushed = wire.data.decode()
    assert "* VANISHED 1,3\r\n" in pushed and "EXPUNGE" not in pushed
    # Flag changes of expunged messages are not told; the live one's carries MODSEQ (§3.1).
    assert re.search(r"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged \\Recent\) MODSEQ \(\d+\)\)", pushed)


async def test_quota_roots_and_over_quota_append(store: Store, tmp_path: Path) -> None:
    account = await store.get_account(USER)
    assert account is not None
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    await store.set_quota(account.id, None, None)
    unlimited = await wire.send("a GETQUOTAROOT INBOX\r\n")
    assert unlimited == "* QUOTAROOT INBOX\r\na OK GETQUOTAROOT completed\r\n"
    assert (await wire.send('b GETQUOTA ""\r\n')).startswith("b NO [NONEXISTENT]")

    await deliver(store, "x" * 3000)
    await store.set_quota(account.id, 4096, 2)
    usage = await store.quota_usage(account.id)
    kib = -(-usage.bytes_used // 1024)
    answer = await wire.send("c GETQUOTAROOT Trash\r\n")
    assert answer == (
        '* QUOTAROOT Trash ""\r\n'
        f'* QUOTA "" (STORAGE {kib} 4 MESSAGE 1 2)\r\n'
        "c OK GETQUOTAROOT completed\r\n"
    )
    # Within a limit that is not a whole KiB: usage rounded up is capped at the limit rounded
    # down, never reading as over it; over the limit it reads as over.
    assert usage.bytes_used % 1024, "the case needs usage that is not a whole KiB"
    within = usage.bytes_used  # full to the octet, not over: ceil(used) > floor(limit)
    await store.set_quota(account.id, within, None)
    answer = await wire.send('c2 GETQUOTA ""\r\n')
    assert answer.startswith(f'* QUOTA "" (STORAGE {within // 1024} {within // 1024})\r\n')
    await store.set_quota(account.id, usage.bytes_used - 1, None)
    answer = await wire.send('c3 GETQUOTA ""\r\n')
    assert answer.startswith(f'* QUOTA "" (STORAGE {kib} {(usage.bytes_used - 1) // 1024})\r\n')
    await store.set_quota(account.id, 4096, 2)
    assert (await wire.send('d GETQUOTA "other"\r\n')).startswith("d NO [NONEXISTENT]")
    assert (await wire.send('e SETQUOTA "" (STORAGE 9)\r\n')).startswith("e NO [NOPERM]")
    big = "Subject: big\r\n\r\n" + "y" * 2000 + "\r\n"
    answer = await wire.send(f"f APPEND INBOX {{{len(big)}+}}\r\n{big}\r\n")
    assert answer == "f NO [OVERQUOTA] Over quota\r\n"
    await wire.send("s SELECT INBOX\r\n")
    answer = await wire.send("g COPY 1 Trash\r\n")
    assert answer == "g NO [OVERQUOTA] Over quota\r\n"


async def test_object_ids(store: Store, tmp_path: Path) -> None:
    await deliver(store, "one")
    wire = make_wire(store, tmp_path)
    await wire.login(USER, TEST_PASSWORD)
    created = await wire.send("c CREATE Projects\r\n")
    box_id = re.search(r"MAILBOXID \((\S+)\)", created)
    assert box_id is not None
    await wire.send("r RENAME Projects Work\r\n")
    status = await wire.send("t STATUS Work (MAILBOXID)\r\n")
    assert f"(MAILBOXID ({box_id.group(1)}))" in status  # RFC 8474 §4.1: kept by RENAME
    await wire.send("s SELECT INBOX\r\n")
    fetched = await wire.send("f FETCH 1 (EMAILID THREADID)\r\n")
    email = re.search(r"EMAILID \((E[0-9a-f]+)\) THREADID \((T\d+)\)", fetched)
    assert email is not None
    copied = await wire.send("k COPY 1 Work\r\n")
    assert copied.startswith("k OK")
    await wire.send("w SELECT Work\r\n")
    assert f"EMAILID ({email.group(1)})" in await wire.send("g FETCH 1 (EMAILID)\r\n")
    assert "* SEARCH 1\r\n" in await wire.send(f"h SEARCH EMAILID {email.group(1)}\r\n")
    assert "* SEARCH\r\n" in await wire.send(f"i SEARCH THREADID {email.group(1)}\r\n")
    # RFC 8474 §5.2: the copy keeps the thread id.
    assert "* SEARCH 1\r\n" in await wire.send(f"j SEARCH THREADID {email.group(2)}\r\n")
