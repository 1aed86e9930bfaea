"""Two ``pillarbox serve`` processes over one PostgreSQL database, driven by real clients.

Mail accepted by SMTP on either node is in the mailbox IMAP shows on both; an IMAP client
idling on node B hears of a delivery through node A unasked (LISTEN/NOTIFY); APPEND
storms on both nodes at once into one mailbox give every message its own UID, ascending in
arrival order, the same on both nodes; devices on both nodes changing one mailbox at once each
end with the mailbox as it is.

Skipped without a PostgreSQL server (``$PILLARBOX_TEST_POSTGRES`` or 127.0.0.1:5432).
"""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from imapclient import IMAPClient

from pillarbox.testing.devices import APPEND, Tracker, assert_converged, change_at_once
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.nodes import Node, node_pair
from pillarbox.testing.postgres import TestDatabase, needs_postgres
from pillarbox.testing.push import PUSH_WAIT

pytestmark = needs_postgres()

USER = "alice@example.org"


@pytest.fixture
def nodes(tmp_path: Path, database: TestDatabase) -> Iterator[tuple[Node, Node]]:
    a, b = node_pair(tmp_path, database.new_store_url(), USER, PASSWORD)
    with a, b:
        yield a, b


def message(serial: int, via: str) -> bytes:
    return (
        f"From: sender@example.net\r\nTo: {USER}\r\nSubject: via {via} #{serial}\r\n"
        f"Message-ID: <{serial}.{via}@example.net>\r\n\r\nbody {serial} through {via}\r\n"
    ).encode()


def send(node: Node, raws: list[bytes]) -> None:
    with smtplib.SMTP("127.0.0.1", node.port("smtp"), local_hostname="client.example.net") as s:
        for raw in raws:
            s.sendmail("sender@example.net", [USER], raw)


def imap(node: Node) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=node.port("imap"), ssl=False, timeout=30)
    client.login(USER, PASSWORD)
    return client


def test_deliveries_through_both_nodes_show_on_both(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    sent = {
        raw for via, node in (("a", a), ("b", b)) for raw in [message(i, via) for i in range(8)]
    }
    with ThreadPoolExecutor(2) as pool:
        list(
            pool.map(
                send,
                (a, b),
                ([message(i, "a") for i in range(8)], [message(i, "b") for i in range(8)]),
            )
        )
    views = []
    for node in (a, b):
        client = imap(node)
        selected = client.select_folder("INBOX")
        fetched = client.fetch(client.search(["ALL"]), ["BODY.PEEK[]"])
        views.append(
            (selected[b"UIDVALIDITY"], {uid: data[b"BODY[]"] for uid, data in fetched.items()})
        )
        client.logout()
    assert views[0] == views[1]  # one mailbox, whichever node serves it
    _, bodies = views[0]
    assert sorted(bodies) == list(range(1, 17))
    # Each stored message is what was sent, behind the trace headers the MX added.
    assert all(any(body.endswith(raw) for body in bodies.values()) for raw in sent)


def test_idle_on_one_node_hears_a_delivery_on_the_other(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    watcher = imap(b)
    watcher.select_folder("INBOX")
    for serial in range(3):
        watcher.idle()
        send(a, [message(serial, "a")])
        responses = watcher.idle_check(timeout=PUSH_WAIT)
        watcher.idle_done()
        assert (serial + 1, b"EXISTS") in responses, responses
    watcher.logout()


def _append_storm(node: Node, tag: str, count: int) -> list[int]:
    """APPEND ``count`` messages over one connection; the UIDs APPENDUID reported."""
    client = imaplib.IMAP4("127.0.0.1", node.port("imap"))
    client.login(USER, PASSWORD)
    uids: list[int] = []
    for serial in range(count):
        status, data = client.append("INBOX", None, None, message(serial, tag))
        assert status == "OK", data
        # RFC 4315 APPENDUID uidvalidity uid
        code = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
        uids.append(int(code.split("APPENDUID ")[1].split()[1].rstrip("]")))
    client.logout()
    return uids


def test_append_storms_on_both_nodes_get_unique_uids(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    per_client = 15
    clients = [(a, "a1"), (a, "a2"), (b, "b1"), (b, "b2")]
    with ThreadPoolExecutor(len(clients)) as pool:
        reported = list(pool.map(lambda c: _append_storm(c[0], c[1], per_client), clients))
    everything = [uid for uids in reported for uid in uids]
    total = per_client * len(clients)
    assert sorted(everything) == list(range(1, total + 1))  # unique, no gaps
    for uids in reported:
        assert uids == sorted(uids)  # each client's appends ascend in its own order
    for node in (a, b):
        client = imap(node)
        assert client.select_folder("INBOX")[b"EXISTS"] == total
        assert client.search(["ALL"]) == list(range(1, total + 1))
        client.logout()


def test_devices_on_both_nodes_changing_one_mailbox_at_once_all_end_with_it(
    nodes: tuple[Node, Node],
) -> None:
    """Three devices of one account, two on node a and one on node b, change one INBOX at
    once (flags, APPEND, MOVE, EXPUNGE, by number and by UID): each device's picture, drawn
    from the responses its node sent, is the mailbox at the end — what crossed through
    LISTEN/NOTIFY and what the nodes read by MODSEQ agree."""
    a, b = nodes
    phone, laptop, tablet = (
        Tracker(node.port("imap"), USER, PASSWORD, name, qresync=name == "phone")
        for node, name in ((a, "phone"), (b, "laptop"), (a, "tablet"))
    )
    for _ in range(8):
        laptop.command(APPEND)
    change_at_once([phone, laptop, tablet], commands=120)
    assert_converged(
        [phone, laptop, tablet], Tracker(b.port("imap"), USER, PASSWORD, "fresh", qresync=False)
    )
