"""The webmail's allowed and blocked senders (Settings) over real HTTP against the live
server: entries added, changed and removed as the store keeps them, refusals shown beside the
section, CSRF refused, a message's "Block sender", and the lists deciding where the next
message over SMTP goes.
``$PILLARBOX_TEST_STORE`` runs it on PostgreSQL."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox import config as cfg
from pillarbox.store.types import INBOX, SenderListEntry, SenderListKind
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import WebSession, deliver, simple_message

ALICE = "alice@example.org"
ALLOW, BLOCK = SenderListKind.ALLOW, SenderListKind.BLOCK


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """At most three entries; the SMTP client on loopback is a trusted relay (the lists still
    decide; an allow entry stands, as for any sender this server did not check itself).
    conftest's ``alice`` logs in to it."""
    config = loopback_config(
        tmp_path / "data",
        only=("http", "smtp"),
        policy=cfg.PolicySection(max_sender_entries=3),
    )
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        yield server


def entries(live: LiveServer) -> list[SenderListEntry]:
    async def go() -> list[SenderListEntry]:
        account = await live.store.get_account(ALICE)
        assert account is not None
        return await live.store.list_sender_entries(account.id)

    return live.call(go())


def refusal(page: str) -> str:
    found = re.search(r'<p class="error" role="alert"[^>]*>([^<]*)</p>', page)
    assert found is not None, page
    return found.group(1)


def test_entries_added_changed_removed_and_refused(live: LiveServer, alice: WebSession) -> None:
    assert "None yet." in alice.get("/settings").text.split('id="senders"')[1]
    for pattern, kind in (("News@Shop.Example", "allow"), ("spam.test", "block")):
        saved = alice.post("/settings/senders", {"pattern": pattern, "kind": kind})
        assert saved.status_code == 303 and saved.headers["location"] == "/settings?saved=senders"
    assert entries(live) == [
        SenderListEntry("news@shop.example", ALLOW),
        SenderListEntry("spam.test", BLOCK),
    ]
    page = alice.get("/settings").text
    assert "<td>news@shop.example</td><td>Allowed</td>" in page
    assert "<td>spam.test</td><td>Blocked</td>" in page
    # The same sender again changes its list.
    alice.post("/settings/senders", {"pattern": "news@shop.example", "kind": "block"})
    assert entries(live)[0] == SenderListEntry("news@shop.example", BLOCK)

    for fields, error in (
        ({"pattern": "ann@[192.0.2.1]", "kind": "block"}, "an address literal names no sender"),
        ({"pattern": "co.uk", "kind": "allow"}, "co.uk is a public suffix"),
        ({"pattern": "x.test", "kind": "maybe"}, "choose Allow or Block"),
        ({"pattern": "", "kind": "block"}, "give an address or a domain"),
        ({"pattern": "gone.test", "action": "remove"}, "gone.test is on neither list"),
    ):
        refused = alice.post("/settings/senders", fields)
        assert refused.status_code == 400, fields
        assert error in refusal(refused.text), fields
    assert len(entries(live)) == 2

    # policy.max_sender_entries (3 here) counts both lists.
    assert alice.post("/settings/senders", {"pattern": "a.test", "kind": "block"}).is_redirect
    full = alice.post("/settings/senders", {"pattern": "b.test", "kind": "allow"})
    assert full.status_code == 400
    assert "at most 3 entries" in refusal(full.text)

    removed = alice.post("/settings/senders", {"pattern": "A.test", "action": "remove"})
    assert removed.status_code == 303
    assert [e.pattern for e in entries(live)] == ["news@shop.example", "spam.test"]

    # A Unicode domain is stored as its A-label (what messages carry) and shown as typed; its
    # Remove button names the stored form.
    assert alice.post("/settings/senders", {"pattern": "Bücher.example", "kind": "block"})
    assert SenderListEntry("xn--bcher-kva.example", BLOCK) in entries(live)
    page = alice.get("/settings").text
    assert "<td>bücher.example</td><td>Blocked</td>" in page
    stored, named = 'value="xn--bcher-kva.example">', 'aria-label="Remove bücher.example">'
    assert f'{stored}<button type="submit" {named}' in page
    alice.post("/settings/senders", {"pattern": "xn--bcher-kva.example", "action": "remove"})
    assert [e.pattern for e in entries(live)] == ["news@shop.example", "spam.test"]


def test_the_form_without_csrf_is_refused(live: LiveServer, alice: WebSession) -> None:
    for token in (None, "not-the-token"):
        fields = {"pattern": "spam.test", "kind": "block"}
        sent = fields if token is None else {**fields, "csrf": token}
        response = alice.post("/settings/senders", sent, csrf=False)
        assert response.status_code == 303 and "reason=stale" in response.headers["location"]
    assert entries(live) == []


def test_the_lists_decide_where_the_next_message_goes(live: LiveServer, alice: WebSession) -> None:
    alice.post("/settings/senders", {"pattern": "spam.test", "kind": "block"})
    alice.post("/settings/senders", {"pattern": "friend@spam.test", "kind": "allow"})
    with smtplib.SMTP("127.0.0.1", live.port("smtp"), local_hostname="client.test") as client:
        for sender in ("promo@mail.spam.test", "friend@spam.test"):
            client.sendmail(sender, [ALICE], simple_message(sender, sender=sender))
    [junk] = live.mailbox_messages(ALICE, "Junk")
    [inbox] = live.mailbox_messages(ALICE, INBOX)
    assert b"From: Carol <promo@mail.spam.test>" in junk
    assert b"action=junk; override=block-list; reasons=\r\n BLOCK_LIST:spam.test(+0.0)" in junk
    # The address entry decides before its domain's.
    assert b"From: Carol <friend@spam.test>" in inbox
    assert b"override=allow-list; reasons=\r\n ALLOW_LIST:friend@spam.test(+0.0)" in inbox


def test_a_message_blocks_its_sender(live: LiveServer, alice: WebSession) -> None:
    box, uid = deliver(live, ALICE, simple_message(sender="promo@shop.example"))
    page = alice.get(f"/mail/{box}/{uid}").text
    form = re.search(r'<form method="post" action="/settings/senders".*?</form>', page, re.S)
    assert form is not None, page
    assert '<input type="hidden" name="pattern" value="promo@shop.example">' in form.group(0)
    assert f'<input type="hidden" name="back" value="/mail/{box}/{uid}">' in form.group(0)
    assert 'name="kind" value="block">Block sender' in form.group(0)
    # What the browser posts for that button: back to the message, which says it was done.
    fields = {"pattern": "promo@shop.example", "kind": "block", "back": f"/mail/{box}/{uid}"}
    blocked = alice.post("/settings/senders", fields)
    assert blocked.headers["location"] == f"/mail/{box}/{uid}?done=blocked"
    assert entries(live) == [SenderListEntry("promo@shop.example", BLOCK)]
    shown = alice.get(blocked.headers["location"]).text
    assert "Sender blocked: their mail goes to Junk from now on" in shown
    # A page of another site, or not a mail page, is not returned to: the settings are.
    for elsewhere in ("//evil.example/mail/1", "https://evil.example/", "/settings/tokens"):
        fields = {"pattern": "promo@shop.example", "kind": "block", "back": elsewhere}
        assert alice.post("/settings/senders", fields).headers["location"] == (
            "/settings?saved=senders"
        )
    # A refusal shows the settings page with its reason, wherever the form came from.
    fields = {"pattern": "ann@[192.0.2.1]", "kind": "block", "back": f"/mail/{box}/{uid}"}
    refused = alice.post("/settings/senders", fields)
    assert refused.status_code == 400
    assert "an address literal names no sender" in refused.text
