"""Greylisting against a real sender that retries: Postfix relays a message to our greylisting
MX, is deferred with 451 4.7.1 at RCPT, keeps the message in its deferred queue, retries after
its (shortened) backoff, and the message lands in the mailbox.

Postfix runs as the test's own instance (see tests/interop/test_peer_postfix.py and
:func:`pillarbox.testing.peers.postfix_peer`): skipped unless run as root with Postfix
installed. Its retry timing is shortened to seconds (``minimal_backoff_time``,
``queue_run_delay``); our delay is one second. Postfix connects from 127.0.0.1, so our
``policy.trusted_networks`` is empty: it is a stranger, as on the internet.
"""

from __future__ import annotations

import pwd
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.store.types import INBOX
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, free_port, loopback_config
from pillarbox.testing.peers import PostfixPeer, postfix_peer
from pillarbox.testing.polling import wait_for

POSTFIX_DOMAIN = "postfix.test"
WAIT = 30.0


@pytest.fixture
def ports() -> tuple[int, int]:
    """Our MX's port and Postfix's, known before either starts (Postfix names ours)."""
    return free_port("127.0.0.1"), free_port("127.0.0.1")


@pytest.fixture
def server(tmp_path: Path, ports: tuple[int, int]) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=["smtp"],
        ports={"smtp": ports[0]},
        policy=cfg.PolicySection(enabled=False, trusted_networks=()),
        greylisting=cfg.GreylistingSection(enabled=True, delay=1.0, retry_window=120.0),
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account("alice@example.org", TEST_PASSWORD)
        yield live


@pytest.fixture
def postfix(ports: tuple[int, int], server: LiveServer) -> Iterator[PostfixPeer]:
    def configure(directory: Path, owner: pwd.struct_passwd) -> dict[str, object]:
        """Relay example.org to our MX, and retry a deferred message within seconds."""
        conf = directory / "conf"
        (conf / "transport").write_text(f"example.org smtp:[127.0.0.1]:{ports[0]}\n")
        return {
            "myhostname": POSTFIX_DOMAIN,
            "mydomain": POSTFIX_DOMAIN,
            "transport_maps": f"texthash:{conf / 'transport'}",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtp_tls_security_level": "none",
            # Postfix's defaults (300 s, 300 s, 4000 s) shortened so the retry comes in seconds.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
        }

    with postfix_peer(ports[1], configure) as peer:
        yield peer


def test_postfix_retries_a_greylisted_message_and_it_is_delivered(
    server: LiveServer, postfix: PostfixPeer
) -> None:
    raw = (
        f"From: someone@{POSTFIX_DOMAIN}\r\nTo: alice@example.org\r\n"
        "Subject: greylisted by Pillarbox\r\n\r\nHello after a retry.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", postfix.port) as client:
        client.sendmail(f"someone@{POSTFIX_DOMAIN}", ["alice@example.org"], raw)
    [stored] = wait_for(
        lambda: server.mailbox_messages("alice@example.org", INBOX),
        "the message in alice's INBOX after Postfix's retry",
        timeout=WAIT,
        context=postfix.log,
    )
    assert stored.endswith(b"Hello after a retry.\r\n")

    log = wait_for(
        lambda: postfix.log_showing("status=sent"),
        "Postfix's log of the retry's delivery",
        timeout=WAIT,
        context=postfix.log,
    )
    # The first attempt was deferred at RCPT with our reply, the retry sent.
    deferred = re.search(r"status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: (.*)\)", log)
    assert deferred is not None, log
    assert deferred.group(1).startswith("451 4.7.1 greylisted, please try again later"), log
    assert "status=sent (250 2.0.0 message accepted as" in log, log
    assert log.index("status=deferred") < log.index("status=sent")
