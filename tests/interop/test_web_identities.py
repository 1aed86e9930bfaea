"""Sending identities, signatures and recipient completion over real HTTP against the live
server: which addresses the settings take (the submission From rule), the compose page's From
choice and signature, what arrives, and the completion endpoint's limits to one account."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from pillarbox.mail.parse import parse_message, part_text
from pillarbox.store.types import INBOX, SpecialUse
from pillarbox.testing.live import LiveServer
from pillarbox.testing.webclient import (
    WebSession,
    deliver,
    mailbox_id,
    simple_message,
    special_mailbox_id,
)
from pillarbox.web.reading import body_parts

pytestmark = pytest.mark.listeners("http")

ALICE = "alice@example.org"
BOB = "bob@example.org"


def add_identity(session: WebSession, address: str, **fields: str) -> httpx.Response:
    return session.post("/settings/identities", {"id": "", "address": address, **fields})


def account_id(live: LiveServer, address: str) -> int:
    account = live.call(live.store.get_account(address))
    assert account is not None
    return account.id


def identity_options(page: str) -> list[tuple[str, str, bool]]:
    """(value, label, selected) of the compose page's From choices."""
    return [
        (value, html.unescape(label), bool(selected))
        for value, selected, label in re.findall(
            r'<option value="(\d+)" data-signature="[^"]*"( selected)?>([^<]*)</option>', page
        )
    ]


def body_field(page: str) -> str:
    # The parser drops the newline that follows the start tag (HTML "textarea" parsing).
    match = re.search(r'<textarea id="f-body" name="body" rows="16">\n(.*?)</textarea>', page, re.S)
    assert match is not None
    return html.unescape(match.group(1))


def newest(live: LiveServer, address: str, name: str = INBOX) -> bytes:
    box = mailbox_id(live, address, name)
    records = live.call(live.store.list_messages(box))
    assert records, f"nothing in {address}'s {name}"
    return live.call(live.store.read_blob(records[-1].blob_id))


def text_of(raw: bytes) -> str:
    info = parse_message(raw)
    plain = body_parts(info).plain
    assert plain is not None
    return part_text(raw, plain)


def test_settings_take_only_addresses_the_submission_accepts(
    live: LiveServer, alice: WebSession
) -> None:
    live.call(live.store.add_alias("sales@example.org", [ALICE]))
    live.call(live.store.add_alias("team@example.org", [ALICE, BOB]))
    for address in ("alice+news@example.org", "sales@example.org"):
        assert add_identity(alice, address).status_code == 303, address
    for address, why in (
        (BOB, "you cannot send as bob@example.org"),
        ("team@example.org", "you cannot send as team@example.org"),  # reaches Bob too
        ("alice@example.net", "you cannot send as alice@example.net"),
        ("not an address", "not a valid address"),
    ):
        refused = add_identity(alice, address)
        assert refused.status_code == 400 and why in refused.text, address
    refused = add_identity(alice, "alice+x@example.org", reply_to="a@x.example, b@x.example")
    assert refused.status_code == 400 and "the reply-to must be one valid address" in refused.text
    stored = live.call(live.store.list_identities(account_id(live, ALICE)))
    assert sorted(i.address for i in stored) == ["alice+news@example.org", "sales@example.org"]


def test_compose_offers_identities_and_sends_as_the_chosen_one(
    live: LiveServer, alice: WebSession
) -> None:
    assert (
        add_identity(
            alice,
            "alice+work@example.org",
            display_name="Alice at Work",
            reply_to="desk@example.org",
            signature="Alice\r\nExample Works  \r\n",
            is_default="1",
        ).status_code
        == 303
    )
    page = alice.get("/compose").text
    options = identity_options(page)
    assert [(label, selected) for _, label, selected in options] == [
        ("Alice at Work <alice+work@example.org>", True),
        (ALICE, False),
    ]
    assert body_field(page) == "\n\n-- \nAlice\nExample Works\n"
    work = options[0][0]
    response = alice.post(
        "/compose",
        {
            "identity": work,
            "to": BOB,
            "subject": "From work",
            "body": body_field(page).replace("\n\n--", "Hello Bob.\n\n--", 1),
            "action": "send",
        },
    )
    assert response.status_code == 303, response.text
    raw = newest(live, BOB)
    info = parse_message(raw)
    assert [(a.name, f"{a.mailbox}@{a.host}") for a in info.envelope.from_] == [
        ("Alice at Work", "alice+work@example.org")
    ]
    assert [f"{a.mailbox}@{a.host}" for a in info.envelope.reply_to] == ["desk@example.org"]
    assert raw.startswith(b"Return-Path: <alice+work@example.org>\r\n")  # the envelope's too
    assert text_of(raw).replace("\r\n", "\n") == "Hello Bob.\n\n-- \nAlice\nExample Works\n"
    sent = parse_message(newest(live, ALICE, "Sent"))
    assert [f"{a.mailbox}@{a.host}" for a in sent.envelope.from_] == ["alice+work@example.org"]


def test_only_the_accounts_identities_can_be_sent_as(live: LiveServer, alice: WebSession) -> None:
    live.call(live.store.add_alias("sales@example.org", [ALICE]))
    assert add_identity(alice, "sales@example.org").status_code == 303
    [sales] = live.call(live.store.list_identities(account_id(live, ALICE)))
    bob = WebSession(live)
    bob.login(BOB)
    # Bob names Alice's identity: not one of his, so nothing is sent.
    forged = bob.post(
        "/compose",
        {"identity": str(sales.id), "to": ALICE, "subject": "x", "body": "x", "action": "send"},
    )
    assert forged.status_code == 400 and "choose one of your identities" in forged.text
    assert live.call(live.store.list_messages(mailbox_id(live, ALICE))) == []
    # The alias is given to Bob as well: Alice's stored identity no longer passes the intake.
    live.call(live.store.remove_alias("sales@example.org"))
    live.call(live.store.add_alias("sales@example.org", [ALICE, BOB]))
    refused = alice.post(
        "/compose",
        {"identity": str(sales.id), "to": BOB, "subject": "x", "body": "x", "action": "send"},
    )
    assert refused.status_code == 400
    assert "sender address not owned by the login" in refused.text
    assert 'id="e-identity"' in refused.text
    assert live.call(live.store.list_messages(mailbox_id(live, BOB))) == []


def test_reply_goes_out_as_the_address_written_to(live: LiveServer, alice: WebSession) -> None:
    assert add_identity(alice, ALICE, signature="Alice", is_default="1").status_code == 303
    assert add_identity(alice, "alice+lists@example.org", signature="A. (lists)").status_code == 303
    box, uid = deliver(
        live,
        ALICE,
        simple_message(
            "Meeting",
            "Tuesday?\r\n-- \r\nCarol, Example Net",
            to="alice+lists@example.org",
            message_id="<m1@example.net>",
        ),
    )
    page = alice.get(f"/compose?reply={box}:{uid}").text
    [selected] = [label for _, label, chosen in identity_options(page) if chosen]
    assert selected == "alice+lists@example.org"
    body = body_field(page)
    # Ours once, above the quote; the original's left out of it.
    assert body.startswith("\n\n-- \nA. (lists)\n\nOn ")
    assert "> Tuesday?" in body and "Carol, Example Net" not in body and body.count("-- ") == 1
    forward = alice.get(f"/compose?forward={box}:{uid}").text
    assert [label for _, label, chosen in identity_options(forward) if chosen] == [selected]


def test_saved_draft_keeps_its_identity_and_one_signature(
    live: LiveServer, alice: WebSession
) -> None:
    assert add_identity(alice, "alice+work@example.org", signature="Work sig").status_code == 303
    page = alice.get("/compose").text
    work = next(v for v, label, _ in identity_options(page) if "alice+work" in label)
    body = "Draft text\n\n-- \nWork sig\n"
    saved = alice.post(
        "/compose",
        {"identity": work, "to": BOB, "subject": "Later", "body": body, "action": "save"},
    )
    assert saved.status_code == 200 and "Draft saved" in saved.text
    drafts = special_mailbox_id(live, ALICE, SpecialUse.DRAFTS)
    [record] = live.call(live.store.list_messages(drafts))
    reopened = alice.get(f"/compose?draft={drafts}:{record.uid}").text
    assert [label for _, label, chosen in identity_options(reopened) if chosen] == [
        "alice+work@example.org"
    ]
    assert body_field(reopened).count("Work sig") == 1


def test_completion_suggests_only_the_accounts_correspondents(
    live: LiveServer, alice: WebSession
) -> None:
    for to in (BOB, "bobby@example.net"):
        response = alice.post(
            "/compose", {"to": to, "subject": "hi", "body": "hi", "action": "send"}
        )
        assert response.status_code == 303
    found = alice.get("/api/v1/addresses", params={"prefix": "BOB"})
    assert found.status_code == 200
    assert sorted(found.json()["addresses"]) == [BOB, "bobby@example.net"]
    assert alice.get("/api/v1/addresses", params={"prefix": "bobb"}).json() == {
        "addresses": ["bobby@example.net"]
    }
    assert alice.get("/api/v1/addresses", params={"prefix": "x" * 255}).status_code == 400
    # Bob wrote to nobody: Alice's correspondents are not his to see.
    bob = WebSession(live)
    bob.login(BOB)
    assert bob.get("/api/v1/addresses", params={"prefix": "b"}).json() == {"addresses": []}
    anonymous = WebSession(live).client.get("/api/v1/addresses", params={"prefix": "b"})
    assert anonymous.status_code == 401


def test_api_identities(live: LiveServer, alice: WebSession) -> None:
    listed = alice.api("GET", "/identities").json()
    assert listed == [
        {
            "id": 0,
            "address": ALICE,
            "display_name": "",
            "reply_to": "",
            "signature": "",
            "is_default": True,
        }
    ]
    created = alice.api(
        "POST",
        "/identities",
        {"address": "alice+api@example.org", "signature": "-- \nvia API", "is_default": True},
    )
    assert created.status_code == 201
    identity = created.json()
    assert identity["signature"] == "via API" and identity["id"] > 0
    assert alice.api("POST", "/identities", {"address": BOB}).status_code == 400
    changed = alice.api(
        "PUT", f"/identities/{identity['id']}", {"address": "alice+api@example.org"}
    )
    assert changed.json()["is_default"] is False
    sent = alice.api(
        "POST", "/send", {"to": BOB, "subject": "api", "body": "x", "identity": identity["id"]}
    )
    assert sent.status_code == 200, sent.text
    assert b"From: alice+api@example.org\r\n" in newest(live, BOB)
    bob = WebSession(live)
    bob.login(BOB)
    assert bob.api("DELETE", f"/identities/{identity['id']}").status_code == 404
    assert alice.api("DELETE", f"/identities/{identity['id']}").status_code == 200
    assert [i["id"] for i in alice.api("GET", "/identities").json()] == [0]
