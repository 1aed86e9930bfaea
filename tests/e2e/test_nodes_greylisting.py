"""Greylisting across two ``pillarbox serve`` processes over one PostgreSQL store: the triplets
are the store's, so a sender deferred by node A passes when its retry reaches node B (a load
balancer or a second MX in front of the nodes sends it to either; docs/greylisting.md,
"Several nodes and the store").

Skipped without a PostgreSQL server (``$PILLARBOX_TEST_POSTGRES`` or 127.0.0.1:5432).
"""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

from pillarbox import config as cfg
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.nodes import node_pair
from pillarbox.testing.postgres import TestDatabase, needs_postgres

pytestmark = needs_postgres()

USER = "alice@example.org"
SENDER = "someone@example.net"
#: The greylisting delay: long enough that node B's refusal, a second connection after node A's,
#: still comes before it on a loaded machine (at 1 s, one came after it and was accepted).
DELAY = 3.0


def test_a_retry_through_the_other_node_passes(tmp_path: Path, database: TestDatabase) -> None:
    url = database.new_store_url()
    sections = {
        # The test's client is 127.0.0.1: a stranger here, not local injection.
        "policy": cfg.PolicySection(enabled=False, trusted_networks=()),
        "greylisting": cfg.GreylistingSection(enabled=True, delay=DELAY, retry_window=60.0),
    }
    a, b = node_pair(tmp_path, url, USER, PASSWORD, listeners=("smtp",), **sections)
    raw = f"From: {SENDER}\r\nTo: {USER}\r\nSubject: retried\r\n\r\nHello.\r\n".encode()
    with a, b:
        with smtplib.SMTP("127.0.0.1", a.port("smtp"), timeout=30) as client:
            client.ehlo()
            assert client.mail(SENDER)[0] == 250
            assert client.rcpt(USER) == (451, b"4.7.1 greylisted, please try again later")
        with smtplib.SMTP("127.0.0.1", b.port("smtp"), timeout=30) as client:
            client.ehlo()
            assert client.mail(SENDER)[0] == 250
            assert client.rcpt(USER)[0] == 451  # too early on node B as on node A
        time.sleep(DELAY + 0.2)
        with smtplib.SMTP("127.0.0.1", b.port("smtp"), timeout=30) as client:
            assert client.sendmail(SENDER, [USER], raw) == {}
