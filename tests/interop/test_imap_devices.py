"""One account on several devices: a phone that syncs with QRESYNC and drops its connection,
a laptop (imapclient) changing the mailbox meanwhile; three devices changing one mailbox at
once, each keeping the picture the server's responses draw (:mod:`pillarbox.testing.devices`),
which must end as the mailbox.

The phone is this module's own line client, because it must keep the MODSEQ bookkeeping RFC
7162 §6 prescribes for a resynchronising client, which no library here exposes: after each
tagged response its HIGHESTMODSEQ is the last HIGHESTMODSEQ response code seen, else the
highest MODSEQ item seen, if higher than what it had.
"""

from __future__ import annotations

import re
import socket

import psycopg
import pytest
from imapclient import IMAPClient
from imapclient.imapclient import DELETED, FLAGGED, SEEN

from pillarbox.store.postgres.store import PostgresStore
from pillarbox.testing.devices import APPEND, Tracker, assert_converged, change_at_once
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer

pytestmark = pytest.mark.listeners("smtp", "imap")

USER = "alice@example.org"
BOB = "bob@example.org"
_MODSEQ = re.compile(rb"MODSEQ \((\d+)\)")
_HIGHEST = re.compile(rb"\[HIGHESTMODSEQ (\d+)\]")


class Phone:
    """A QRESYNC client over a plain socket, keeping its HIGHESTMODSEQ as §6 says."""

    def __init__(self, live: LiveServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", live.port("imap")), timeout=10)
        self.file = self.sock.makefile("rb")
        self.serial = 0
        self.highestmodseq = 0
        self.file.readline()
        self.command(f'LOGIN {USER} "{PASSWORD}"')
        self.command("ENABLE QRESYNC")

    def command(self, text: str) -> list[bytes]:
        self.serial += 1
        tag = b"p%d" % self.serial
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while not lines or not lines[-1].startswith(tag + b" "):
            lines.append(self.file.readline().rstrip(b"\r\n"))
        assert lines[-1].startswith(tag + b" OK"), lines
        codes = [int(m.group(1)) for line in lines for m in [_HIGHEST.search(line)] if m]
        if codes:
            self.highestmodseq = codes[-1]  # §6: used "even if it has seen higher"
        else:
            seen = [int(m.group(1)) for line in lines for m in _MODSEQ.finditer(line)]
            self.highestmodseq = max([self.highestmodseq, *seen])
        return lines

    def drop(self) -> None:
        """The connection lost, as a phone leaving the Wi-Fi loses it: no LOGOUT."""
        self.file.close()
        self.sock.close()


def test_a_phone_dropped_while_a_vanished_was_withheld_learns_of_it_on_resync(
    live: LiveServer,
) -> None:
    """RFC 7162 §3.2: the phone reads and marks a message by number (FETCH, STORE: neither may
    carry the VANISHED of what the laptop deleted meanwhile, RFC 9051 §7.5.1) and is sent
    MODSEQs beyond that deletion's; it loses the connection before any NOOP. Resynchronising
    with SELECT (QRESYNC …) from the HIGHESTMODSEQ it kept, it must hear that message 1
    vanished — before the fix it kept a message the other devices had deleted, for good."""
    for subject in ("one", "two", "three"):
        live.deliver(USER, subject)
    phone = Phone(live)
    selected = b"\n".join(phone.command("SELECT INBOX"))
    found = re.search(rb"UIDVALIDITY (\d+)", selected)
    assert found is not None
    uidvalidity = int(found.group(1))
    laptop = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    laptop.login(USER, PASSWORD)
    laptop.select_folder("INBOX")
    laptop.add_flags([1], [DELETED], silent=True)
    laptop.uid_expunge([1])
    laptop.add_flags([3], [FLAGGED], silent=True)
    laptop.logout()

    phone.command("FETCH 2 (FLAGS)")
    phone.command("STORE 2 +FLAGS (\\Seen)")
    known = phone.highestmodseq
    phone.drop()

    phone = Phone(live)
    resync = phone.command(f"SELECT INBOX (QRESYNC ({uidvalidity} {known} 1:3))")
    assert b"* VANISHED (EARLIER) 1" in resync, resync
    phone.command("LOGOUT")


def test_a_change_the_phones_fetch_showed_is_not_sent_again(live: LiveServer) -> None:
    """RFC 9051 §7.5.2 with RFC 7162 §3.1: the laptop (imapclient) flags message 1; the phone
    fetches its flags before it was told, and the FETCH shows the change with its MODSEQ —
    once: before the fix an unsolicited FETCH repeated it at the command's end. The laptop
    marks message 2 read; the phone's own STORE .SILENT of it is no reason to keep that from
    it (RFC 9051 §6.4.6): it hears of it, once — before the fix, never. A tablet idles in
    INBOX: when it hears of a change, the node has the hint, the phone's session too (on
    PostgreSQL hints cross by LISTEN/NOTIFY and may come after the laptop's OK)."""
    for subject in ("one", "two"):
        live.deliver(USER, subject)
    phone = Phone(live)
    selected = b"\n".join(phone.command("SELECT INBOX"))
    found = _HIGHEST.search(selected)
    assert found is not None
    highest = int(found.group(1))
    laptop, tablet = (
        IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10) for _ in "lt"
    )
    for client in (laptop, tablet):
        client.login(USER, PASSWORD)
        client.select_folder("INBOX")

    def change(uid: int, flag: bytes) -> None:
        tablet.idle()
        laptop.add_flags([uid], [flag], silent=True)
        while not any(response[1] == b"FETCH" for response in tablet.idle_check(timeout=5)):
            pass
        tablet.idle_done()

    change(1, FLAGGED)
    fetched = phone.command("FETCH 1 (FLAGS)")
    assert fetched[:-1] == [b"* 1 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (%d))" % (highest + 1)]
    assert phone.command("NOOP")[:-1] == []
    change(2, SEEN)
    stored = phone.command("STORE 2 +FLAGS.SILENT (\\Answered)")
    assert stored[:-1] == [
        b"* 2 FETCH (UID 2 FLAGS (\\Answered \\Recent \\Seen) MODSEQ (%d))" % (highest + 3)
    ]
    assert phone.command("NOOP")[:-1] == []
    laptop.logout()
    tablet.logout()
    phone.command("LOGOUT")


def test_three_devices_changing_one_mailbox_at_once_all_end_with_the_mailbox(
    live: LiveServer,
) -> None:
    """Three devices (one with QRESYNC) flag, read, append, move, expunge and search in one
    INBOX at the same time, 120 random commands each, by sequence number as well as by UID.
    Every response must be consistent with what each device was told before (EXISTS never
    down, a sequence number's UID never changes, no VANISHED of a message never announced),
    and after a NOOP each device's picture must be the mailbox: the same UIDs as a fresh
    session sees, with the flags as they are — no message missing, none extra, no flag change
    unsaid."""
    port = live.port("imap")
    phone, laptop, tablet = (
        Tracker(port, USER, PASSWORD, name, qresync=name == "phone")
        for name in ("phone", "laptop", "tablet")
    )
    for _ in range(8):
        phone.command(APPEND)
    change_at_once([phone, laptop, tablet], commands=120)
    assert_converged([phone, laptop, tablet], Tracker(port, USER, PASSWORD, "fresh", qresync=False))


def test_a_keyword_from_another_device_comes_with_a_new_flag_list(live: LiveServer) -> None:
    """RFC 9051 §7.3.5: the laptop (imapclient) idles in INBOX; the phone labels a message
    with a keyword INBOX never had. The laptop must hear the new FLAGS (and PERMANENTFLAGS,
    §7.1, so the keyword is known to be settable) before the FETCH that carries it, as from
    Dovecot; a keyword already listed brings no new list. The laptop, CONDSTORE-aware, gets
    MODSEQ in the FETCH and nothing else changes."""
    live.deliver(USER, "one")
    live.deliver(USER, "two")
    laptop = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    phone = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    for device in (laptop, phone):
        device.login(USER, PASSWORD)
    laptop.enable("CONDSTORE")
    selected = laptop.select_folder("INBOX")
    assert b"$Trip" not in selected[b"FLAGS"]
    phone.select_folder("INBOX")
    laptop.idle()
    phone.add_flags([2], [b"$Trip"])
    seen: list[tuple[object, ...]] = []
    while not any(len(r) > 1 and r[1] == b"FETCH" for r in seen):
        more = laptop.idle_check(timeout=5.0)
        assert more, seen
        seen += more
    kinds = [r[0] if r[0] in (b"FLAGS", b"OK") else r[1] for r in seen]
    assert kinds == [b"FLAGS", b"OK", b"FETCH"], seen
    assert b"$Trip" in seen[0][1]
    assert b"[PERMANENTFLAGS (" in seen[1][1] and b"$Trip" in seen[1][1]
    fetched = seen[2][2]
    assert (
        isinstance(fetched, tuple)
        and b"MODSEQ" in fetched
        and b"$Trip" in fetched[fetched.index(b"FLAGS") + 1]
    )
    phone.add_flags([1], [b"$Trip"])
    more = laptop.idle_check(timeout=5.0)
    laptop.idle_done()
    assert [r[1] for r in more] == [b"FETCH"], more
    # A fresh SELECT lists it in both: settable, not only known.
    again = laptop.select_folder("INBOX")
    assert b"$Trip" in again[b"FLAGS"] and b"$Trip" in again[b"PERMANENTFLAGS"]
    laptop.logout()
    phone.logout()


_GONE = b"* BYE The selected mailbox was deleted by another session\r\n"


def _waiting_in(live: LiveServer, mailbox: str, how: str, user: str = USER) -> socket.socket:
    """A device with ``mailbox`` selected, waiting as ``how`` says: in IDLE, between commands
    under NOTIFY with no SELECTED specifier (so no message events of the selected mailbox, RFC
    5465 §6.1), or just idle."""
    sock = socket.create_connection(("127.0.0.1", live.port("imap")), timeout=10)
    script = [f'w1 LOGIN {user} "{PASSWORD}"', f'w2 SELECT "{mailbox}"']
    if how == "notify":
        script.append("w3 NOTIFY SET (personal (MailboxName))")
    reader = sock.makefile("rb")
    reader.readline()
    for line in script:
        sock.sendall(line.encode() + b"\r\n")
        tag = line.split(" ")[0].encode()
        while not (answer := reader.readline()).startswith(tag):
            pass
        assert answer.startswith(tag + b" OK"), answer
    if how == "idle":
        sock.sendall(b"w4 IDLE\r\n")
        assert reader.readline() == b"+ idling\r\n"
    reader.close()
    return sock


def _rest(sock: socket.socket) -> bytes:
    """Everything until the server closes (a timeout fails the test)."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    sock.close()
    return received


def _trips_shared_with_bob(live: LiveServer) -> str:
    """Alice's Trips, shared with Bob (RFC 4314 "lr"), as Bob names it."""
    live.create_mailbox(USER, "Trips")

    async def share() -> None:
        alice, bob = await live.store.get_account(USER), await live.store.get_account(BOB)
        assert alice is not None and bob is not None
        trips = await live.store.get_mailbox(alice.id, "Trips")
        await live.store.set_acl(trips.id, bob.id, "lr")

    live.call(share())
    return f"Other Users/{USER}/Trips"


@pytest.mark.parametrize("who", ["owner", "grantee"])
@pytest.mark.parametrize("how", ["idle", "notify", "command"])
def test_the_selected_mailbox_deleted_by_another_device_ends_the_session(
    live: LiveServer, how: str, who: str
) -> None:
    """RFC 9051 §7.1.5 BYE, as Dovecot ("Selected mailbox was deleted, have to disconnect"):
    the laptop deletes the folder the phone has selected — the phone of its owner, or of a
    user it is shared with (RFC 4314). The phone is told with one BYE and the connection
    closes — at once if it idles or NOTIFY is on (even with no SELECTED specifier), else at
    its next command, never a tagged answer (NOOP here: it reads the store, so a PostgreSQL
    notification still on its way cannot let it through first)."""
    if who == "owner":
        live.create_mailbox(USER, "Trips")
        phone = _waiting_in(live, "Trips", how)
    else:
        phone = _waiting_in(live, _trips_shared_with_bob(live), how, BOB)
    laptop = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    laptop.login(USER, PASSWORD)
    laptop.delete_folder("Trips")
    if how == "command":
        phone.sendall(b"w5 NOOP\r\n")  # reads the store: no race with the change feed
    assert _rest(phone) == _GONE
    laptop.logout()


@pytest.mark.parametrize("who", ["owner", "grantee"])
def test_a_deletion_while_notifications_were_lost_ends_an_idle_at_once(
    live: LiveServer, who: str
) -> None:
    """PostgreSQL: the node's LISTEN connection breaks (a failover, a network cut) and the
    laptop deletes the folder the phone idles in before it is back; the NOTIFY is lost. The
    re-hint after reconnecting cannot name a mailbox that no longer exists, but tells each
    account (the grantee's too, for a shared one) that any of its mailboxes may have gone: the
    phone gets its BYE within the reconnect delay (1 s), not at its next command up to 29
    minutes later (RFC 2177)."""
    store = live.store
    if not isinstance(store, PostgresStore):
        pytest.skip("the LISTEN connection is PostgreSQL's ($PILLARBOX_TEST_STORE)")
    if who == "owner":
        live.create_mailbox(USER, "Trips")
        phone = _waiting_in(live, "Trips", "idle")
    else:
        phone = _waiting_in(live, _trips_shared_with_bob(live), "idle", BOB)
    with psycopg.connect(store.conninfo, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query = %s",
            (f'LISTEN "{store._channel}"',),
        ).fetchall()
    assert killed == [(True,)]

    async def delete() -> None:
        account = await store.get_account(USER)
        assert account is not None
        await store.delete_mailbox((await store.get_mailbox(account.id, "Trips")).id)

    live.call(delete())
    assert _rest(phone) == _GONE


def test_a_keyword_a_sieve_script_sets_on_delivery_is_listed_before_exists(
    live: LiveServer,
) -> None:
    """The laptop idles in INBOX; a message arrives that the user's Sieve script labels with
    a keyword INBOX never had (RFC 5232 ``addflag``). FLAGS and PERMANENTFLAGS come before
    the EXISTS (RFC 9051 §7.3.5), so the FETCH the laptop then makes shows a listed flag."""
    live.activate_sieve(USER, 'require "imap4flags"; addflag "$Newsletter";')
    laptop = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    laptop.login(USER, PASSWORD)
    assert b"$Newsletter" not in laptop.select_folder("INBOX")[b"FLAGS"]
    laptop.idle()
    live.deliver(USER, "weekly news")
    seen: list[tuple[object, ...]] = []
    while (1, b"EXISTS") not in seen:
        more = laptop.idle_check(timeout=5.0)
        assert more, seen
        seen += more
    laptop.idle_done()
    assert seen[0][0] == b"FLAGS" and b"$Newsletter" in seen[0][1], seen
    assert seen[1][0] == b"OK" and b"$Newsletter" in seen[1][1], seen
    assert b"$Newsletter" in laptop.get_flags([1])[1]
    laptop.logout()
