"""The retention job on the live server: mail saved into Junk or Trash longer ago than
``[retention]`` allows is expunged through the normal expunge path, so IMAP clients idling on
those mailboxes receive the EXPUNGEs; INBOX and recent mail stay. The old mail is stored
through a second store over the server's data whose clock stands weeks back (the save date
is the store's, never the message's). ``$PILLARBOX_TEST_STORE`` runs it on PostgreSQL.

Also the operator's side: ``pillarbox user retention`` (an account's own days) and
``pillarbox store expunge-old`` (one run now)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from imapclient import IMAPClient

from pillarbox import config as cfg
from pillarbox import retention
from pillarbox.mail.parse import parse_message
from pillarbox.store.interface import Store
from pillarbox.store.open import open_store
from pillarbox.store.types import INBOX, Contact, LoginHold
from pillarbox.testing.command import init_site, run_pillarbox
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.polling import wait_for

ALICE = "alice@example.org"
DAY = 86400.0
#: A period no test outlives: the server's own runs stay out of the way of the explicit one.
NEVER = 10 * 365 * DAY


@contextmanager
def serve(tmp_path: Path, section: cfg.RetentionSection) -> Iterator[LiveServer]:
    config = loopback_config(tmp_path / "data", only=("imap",), retention=section)
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        yield live


async def save_days_ago(
    config: cfg.Config, days: float, address: str, mailboxes: Sequence[str]
) -> None:
    """One message into each of ``mailboxes``, stored by a store whose clock is ``days`` back."""
    store: Store = open_store(
        config.store.url, config.data_dir, config.store, clock=lambda: time.time() - days * DAY
    )
    await store.open()
    try:
        account = await store.get_account(address)
        assert account is not None
        for name in mailboxes:
            raw = f"Subject: {name} {days} days\r\n\r\nold\r\n".encode()
            mailbox = await store.get_mailbox(account.id, name)
            await store.append(mailbox.id, raw, parse_message(raw))
    finally:
        await store.close()


async def delete_contact_days_ago(config: cfg.Config, days: float, address: str) -> None:
    """A contact of ``address`` deleted ``days`` ago: its sync tombstone is that old."""
    store: Store = open_store(config.store.url, config.data_dir, config.store)
    await store.open()
    try:
        account = await store.get_account(address)
        assert account is not None
        now = datetime.now(UTC)
        (contact,) = await store.save_contacts(account.id, [Contact(uid="old")], now=now, limit=5)
        await store.delete_contact(account.id, contact.id, now=now - timedelta(days=days))
    finally:
        await store.close()


def idling(live: LiveServer, mailbox: str) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    client.login(ALICE, TEST_PASSWORD)
    client.select_folder(mailbox)
    client.idle()
    return client


def expunges(client: IMAPClient, count: int) -> list[int]:
    """The sequence numbers of the next ``count`` EXPUNGE responses during IDLE."""
    seen: list[int] = []
    deadline = time.monotonic() + 10
    while len(seen) < count and time.monotonic() < deadline:
        seen += [r[0] for r in client.idle_check(timeout=1.0) if r[1] == b"EXPUNGE"]
    client.idle_done()
    return seen


def subjects(live: LiveServer, mailbox: str) -> list[str]:
    return [
        parse_message(raw).envelope.subject or "" for raw in live.mailbox_messages(ALICE, mailbox)
    ]


def count(live: LiveServer, mailbox: str) -> int:
    """Messages in ``mailbox`` (not their bytes: the job may expunge one between a listing
    and the reading of its bytes)."""

    async def go() -> int:
        account = await live.store.get_account(ALICE)
        assert account is not None
        box = await live.store.get_mailbox(account.id, mailbox)
        return len(await live.store.list_messages(box.id))

    return live.call(go())


def test_old_junk_and_trash_are_expunged_while_clients_idle(tmp_path: Path) -> None:
    section = cfg.RetentionSection(junk_days=30, trash_days=7, interval=NEVER)
    with serve(tmp_path, section) as live:
        live.call(save_days_ago(live.config, 40, ALICE, ["Junk", "Junk", "Trash", INBOX]))
        live.call(save_days_ago(live.config, 10, ALICE, ["Junk", "Trash"]))
        live.call(save_days_ago(live.config, 3, ALICE, ["Junk", "Trash"]))
        junk, trash = idling(live, "Junk"), idling(live, "Trash")

        result = live.call(
            retention.expunge_old(live.store, section, datetime.now(UTC), metrics=None)
        )

        assert result.counts == {"junk": 2, "trash": 2} and result.accounts == 1
        assert expunges(junk, 2) == [2, 1]  # the two oldest, highest first
        assert expunges(trash, 2) == [2, 1]
        assert subjects(live, "Junk") == ["Junk 10 days", "Junk 3 days"]
        assert subjects(live, "Trash") == ["Trash 3 days"]
        assert subjects(live, INBOX) == ["INBOX 40 days"]  # never expunged by age
        junk.noop()
        assert junk.search(["ALL"]) == [3, 4]  # UIDs: the client's view agrees
        for client in (junk, trash):
            client.logout()


def test_the_server_runs_the_job_every_interval(tmp_path: Path) -> None:
    section = cfg.RetentionSection(junk_days=30, interval=0.2)
    with serve(tmp_path, section) as live:
        live.call(save_days_ago(live.config, 40, ALICE, ["Junk", "Trash"]))
        wait_for(lambda: count(live, "Junk") == 0, "the old Junk expunged")
        assert subjects(live, "Trash") == ["Trash 40 days"]  # trash_days 0: kept
        assert live.server.context is not None
        registry = live.server.context.metrics.registry
        for mailbox, expected in (("junk", 1), ("trash", 0)):
            labels = {"mailbox": mailbox}
            assert (
                registry.get_sample_value("pillarbox_retention_expunged_total", labels) == expected
            )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    init_site(tmp_path, ALICE, TEST_PASSWORD)
    path = tmp_path / "pillarbox.toml"
    text = path.read_text()
    for key in ("junk_days", "trash_days"):
        assert text.count(f"\n{key} = 0\n") == 1
        text = text.replace(f"\n{key} = 0\n", f"\n{key} = 30\n")
    path.write_text(text)
    return tmp_path


def pillarbox_json(site: Path, *args: str) -> dict[str, object]:
    done = run_pillarbox(site, *args, "--json")
    assert done.returncode == 0, done.stderr
    shown: dict[str, object] = json.loads(done.stdout)
    return shown


async def leave_expired_sweepables(config: cfg.Config, address: str) -> None:
    """What a run forgets besides mail: two Sieve duplicate ids and one login hold of
    ``address`` that expired an hour ago, beside one of each still valid."""
    store: Store = open_store(config.store.url, config.data_dir, config.store)
    await store.open()
    try:
        account = await store.get_account(address)
        assert account is not None
        now = datetime.now(UTC)
        earlier = now - timedelta(hours=2)
        expired, valid = now - timedelta(hours=1), now + timedelta(days=1)
        entries = [("a", expired), ("b", expired), ("c", valid)]
        await store.track_sieve_duplicates(account.id, entries, earlier, 10)
        hold = LoginHold(account_id=account.id, sid="s", sealed="v1:x", size=3, expires=expired)
        assert await store.hold_login_message(hold, earlier, 1024)
    finally:
        await store.close()


def test_an_accounts_own_days_and_a_run_from_the_command_line(site: Path) -> None:
    assert pillarbox_json(site, "user", "retention", ALICE) == {
        "address": ALICE,
        "junk": {"days": 30, "source": "default"},
        "trash": {"days": 30, "source": "default"},
    }
    shown = pillarbox_json(site, "user", "retention", ALICE, "--junk-days", "0")
    assert shown["junk"] == {"days": 0, "source": "own"}
    shown = pillarbox_json(site, "user", "retention", ALICE, "--trash-days", "60")
    assert shown["junk"] == {"days": 0, "source": "own"}  # kept from before
    assert shown["trash"] == {"days": 60, "source": "own"}
    refused = run_pillarbox(site, "user", "retention", ALICE, "--trash-days", "-1")
    assert refused.returncode == 2 and "must be 0 (keep until deleted) to 3650" in refused.stderr
    refused = run_pillarbox(site, "user", "retention", ALICE, "--junk-days", "3651")
    assert refused.returncode == 2 and "days for Junk must be 0" in refused.stderr

    config = cfg.load(site / "pillarbox.toml", environ={})
    asyncio.run(save_days_ago(config, 400, ALICE, ["Junk", "Trash"]))
    asyncio.run(save_days_ago(config, 61, ALICE, ["Trash"]))
    asyncio.run(delete_contact_days_ago(config, 400, ALICE))
    asyncio.run(leave_expired_sweepables(config, ALICE))
    assert pillarbox_json(site, "store", "expunge-old") == {
        "accounts": 1,
        "junk": 0,
        "trash": 2,
        "tombstones": 1,  # the same run as the server's prunes the sync history too
        "duplicates": 2,  # and forgets the expired Sieve duplicate ids and login holds
        "login_holds": 1,
    }
    pillarbox_json(site, "user", "retention", ALICE, "--junk-days", "default")
    asyncio.run(leave_expired_sweepables(config, ALICE))
    done = run_pillarbox(site, "store", "expunge-old")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "expunged 1 from Junk and 0 from Trash in 1 accounts; pruned 0 sync tombstones; "
        "forgot 2 Sieve duplicate ids and 1 login holds"
    ]
    assert pillarbox_json(site, "store", "expunge-old") == {
        "accounts": 0,
        "junk": 0,
        "trash": 0,
        "tombstones": 0,
        "duplicates": 0,
        "login_holds": 0,
    }
    text = run_pillarbox(site, "user", "retention", ALICE)
    assert text.stdout.splitlines() == [
        f"{ALICE}:",
        "  junk: 30 days (default)",
        "  trash: 60 days (own)",
    ]
