"""The inbound policy end to end: a live server whose resolver asks a loopback DNS server
serving the senders' SPF, DKIM and DMARC records; mail sent with smtplib to its MX.

- a message from a p=reject domain with a broken signature is refused at DATA (550);
- spam goes to Junk, ham to INBOX, each with Authentication-Results and X-Pillarbox-Spam;
- moving a message to Junk (IMAP MOVE, then the learning hook) makes the next similar
  message go to Junk;
- an allow entry lets spam into the INBOX only when the From domain vouched for it (here its
  SPF passed); a domain with no SPF, or a From copied onto another envelope, gets no such
  pass.
"""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.policy import learning, senderlists
from pillarbox.policy.learning import TrainingBatch, observe
from pillarbox.queue.dkim import DkimAlgorithm, generate_key, public_record, sign
from pillarbox.store.types import INBOX, SenderListKind
from pillarbox.testing.dnszone import ZoneRecord
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config

KEY = generate_key(
    DkimAlgorithm.ED25519_SHA256, now=datetime(2025, 1, 1, tzinfo=UTC), selector="s1"
)
RECORDS = [
    ZoneRecord("strict.test", "TXT", "v=spf1 -all"),
    ZoneRecord("_dmarc.strict.test", "TXT", "v=DMARC1; p=reject"),
    ZoneRecord("s1._domainkey.strict.test", "TXT", public_record(KEY)),
    ZoneRecord("friends.test", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
]
SPAMMY = "cheap pills casino jackpot winner bonus claim prize credit loan offer"
HAMMY = "meeting agenda minutes budget review release schedule project notes"


@pytest.fixture
def dns_records() -> list[ZoneRecord]:
    """What the loopback DNS server (``dns_port`` in conftest) serves to this module."""
    return RECORDS


@pytest.fixture
def server(tmp_path: Path, dns_port: int) -> Iterator[LiveServer]:
    config = loopback_config(
        tmp_path / "data",
        only=("smtp", "imap"),
        dns=cfg.DnsSection(nameserver=f"127.0.0.1:{dns_port}", timeout=2.0),
        policy=cfg.PolicySection(trusted_networks=()),  # the test client is on loopback
    )
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account("bob@example.org", TEST_PASSWORD)
        yield live


def message(sender: str, subject: str, words: str, n: int) -> bytes:
    return (
        f"From: {sender}\r\nTo: bob@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{n}@policy.test>\r\n\r\n{words}\r\n"
    ).encode()


def send(live: LiveServer, sender: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="client.test") as client:
        client.sendmail(sender, ["bob@example.org"], raw)


def mailbox(live: LiveServer, name: str) -> list[bytes]:
    return live.mailbox_messages("bob@example.org", name)


def train_global_model(live: LiveServer) -> None:
    batch = TrainingBatch()
    for n in range(6):
        batch.add(observe(message("ads@promo.test", "offer", SPAMMY, n), "mx.test"), spam=True)
        batch.add(observe(message("team@work.test", "notes", HAMMY, n), "mx.test"), spam=False)
    live.call(batch.commit(live.store, None))


def test_dmarc_reject_spam_junk_ham_inbox_and_learning(server: LiveServer) -> None:
    # A p=reject domain, signed, but the body changed after signing: DKIM fails, SPF fails.
    original = message("alice@strict.test", "invoice", "Please pay invoice 42.", 1)
    forged = sign(original, "strict.test", [KEY]) + original.replace(b"42", b"43")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(server, "alice@strict.test", forged)
    assert refused.value.smtp_code == 550
    assert b"DMARC policy of strict.test" in refused.value.smtp_error

    train_global_model(server)
    send(server, "winner@lottery.test", message("winner@lottery.test", "offer", SPAMMY, 2))
    send(server, "carol@friends.test", message("carol@friends.test", "notes", HAMMY, 3))
    [junk] = mailbox(server, "Junk")
    [inbox] = mailbox(server, INBOX)
    assert b"X-Pillarbox-Spam: score=" in junk and b"action=junk" in junk
    assert b"BAYES:" in junk
    # Header facts ride beside a trained model, over SMTP too: these test messages name no
    # mail program.
    assert b"MAILER_NONE(+2.2)" in junk and b"MAILER_NONE(+2.2)" in inbox
    assert b"action=inbox" in inbox
    assert b"Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=friends.test" in inbox

    # Bob thinks the garden club newsletter is spam.
    newsletter = "garden club newsletter tulips compost seedlings greenhouse pruning"
    send(server, "club@garden.test", message("club@garden.test", "garden", newsletter, 4))
    assert len(mailbox(server, INBOX)) == 2
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    imap.login("bob@example.org", TEST_PASSWORD)
    imap.select("INBOX")
    typ, _ = imap._simple_command("UID", "MOVE", "2", "Junk")  # type: ignore[attr-defined]
    assert typ == "OK"
    imap.logout()

    async def learn() -> int:
        store = server.store
        account = await store.get_account("bob@example.org")
        assert account is not None
        inbox_box = await store.get_mailbox(account.id, INBOX)
        junk_box = await store.get_mailbox(account.id, "Junk")
        moved = [r for r in await store.list_messages(junk_box.id)]
        return await learning.on_moved(
            store, account.id, inbox_box, junk_box, moved, hostname="mx.test", limit=100
        )

    assert server.call(learn()) >= 1
    send(server, "club@garden.test", message("club@garden.test", "garden", newsletter, 5))
    latest = mailbox(server, "Junk")[-1]
    assert b"Message-ID: <5@policy.test>" in latest
    assert b"action=junk" in latest


def test_an_allow_entry_stands_only_for_mail_its_domain_vouches_for(server: LiveServer) -> None:
    train_global_model(server)

    async def allow() -> None:
        account = await server.store.get_account("bob@example.org")
        assert account is not None
        for pattern in ("friends.test", "lottery.test"):
            await senderlists.put(server.store, account.id, pattern, SenderListKind.ALLOW, limit=5)

    server.call(allow())
    send(server, "carol@friends.test", message("carol@friends.test", "offer", SPAMMY, 10))
    send(server, "winner@lottery.test", message("winner@lottery.test", "offer", SPAMMY, 11))
    send(server, "winner@lottery.test", message("carol@friends.test", "offer", SPAMMY, 12))
    [allowed] = mailbox(server, INBOX)
    assert b"Message-ID: <10@policy.test>" in allowed
    assert b"spf=pass smtp.mailfrom=friends.test" in allowed
    assert b"action=inbox; override=allow-list;" in allowed
    assert b"ALLOW_LIST:friends.test(+0.0)" in allowed
    # No SPF at all for lottery.test; friends.test's From over lottery.test's envelope: the
    # entries match, nothing vouches, and the score files both in Junk.
    unvouched = mailbox(server, "Junk")
    assert [b"<11@policy.test>" in m for m in unvouched] == [True, False]
    for junk, pattern in zip(unvouched, (b"lottery.test", b"friends.test"), strict=True):
        assert b"action=junk" in junk and b"override=" not in junk
        assert b"ALLOW_LIST_UNVERIFIED:" + pattern + b"(+0.0)" in junk
