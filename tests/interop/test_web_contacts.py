"""The webmail's address book over real HTTP against the live server: the Contacts page
(create, edit, search, delete; errors in the form; HTML escaped), CSRF refusal, "add to
contacts" from a message, vCard import and export round trip with the size and count limits,
recipient completion drawing on contacts first, and one account never seeing or changing
another's contacts. The JSON API's side is in test_api_contacts.py."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pillarbox import config as cfg
from pillarbox import vcard
from pillarbox.store.types import Contact
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import WebSession, deliver, mailbox_id, simple_message

ALICE = "alice@example.org"
BOB = "bob@example.org"
LIMITS = cfg.ContactsSection(max_per_account=5, max_import_bytes=4096)
JSON = {"content-type": "application/json"}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """Two accounts, and small address book limits (5 contacts, 4 KiB imports)."""
    config = loopback_config(tmp_path / "data", only=["http"], contacts=LIMITS)
    with LiveServer(config) as server:
        server.add_domain("example.org")
        server.add_account(ALICE, TEST_PASSWORD)
        server.add_account(BOB, TEST_PASSWORD)
        yield server


def logged_in(live: LiveServer, address: str) -> WebSession:
    session = WebSession(live)
    assert session.login(address).status_code == 303
    return session


@pytest.fixture
def alice(live: LiveServer) -> Iterator[WebSession]:
    session = logged_in(live, ALICE)
    yield session
    session.close()


@pytest.fixture
def bob(live: LiveServer) -> Iterator[WebSession]:
    session = logged_in(live, BOB)
    yield session
    session.close()


def contacts_of(live: LiveServer, address: str) -> list[Contact]:
    account = live.call(live.store.get_account(address))
    assert account is not None
    return live.call(live.store.list_contacts(account.id))


def sync_token(live: LiveServer, address: str) -> int:
    account = live.call(live.store.get_account(address))
    assert account is not None
    return live.call(live.store.contacts_sync_token(account.id))


def contact_form(**fields: str) -> dict[str, str]:
    empty = {"display_name": "", "emails": "", "phones": "", "organization": "", "note": ""}
    return {**empty, "action": "save", **fields}


def listed_names(page: str) -> list[str]:
    return [
        html.unescape(name)
        for name in re.findall(r'<td><a href="/contacts/\d+">([^<]*)</a></td>', page)
    ]


def import_file(session: WebSession, data: bytes) -> httpx.Response:
    return session.client.post(
        "/contacts/import",
        data={"csrf": session.csrf("/contacts")},
        files={"file": ("contacts.vcf", data, "text/vcard")},
    )


def test_create_edit_search_and_delete_on_the_page(live: LiveServer, alice: WebSession) -> None:
    page = alice.get("/contacts")
    assert page.status_code == 200 and "No contacts yet." in page.text
    created = alice.post(
        "/contacts",
        contact_form(
            display_name="  Zoë   <script>alert(1)</script> ",
            emails="Zoe@Example.COM\nzoe@example.com, z@work.example",
            phones="+33 1 23 45\n\n",
            organization="Acme & Co",
            note="met in Lyon\r\nsecond line",
        ),
    )
    assert created.status_code == 303
    location = created.headers["location"]
    assert re.fullmatch(r"/contacts/\d+\?done=saved", location)
    (stored,) = contacts_of(live, ALICE)
    assert stored.display_name == "Zoë <script>alert(1)</script>"
    # Normalised (domain in lower case), the same address given twice kept once.
    assert stored.emails == ("Zoe@example.com", "z@work.example")
    assert (stored.phones, stored.organization) == (("+33 1 23 45",), "Acme & Co")
    assert stored.note == "met in Lyon\nsecond line"
    assert stored.uid.startswith("urn:uuid:")

    page = alice.get(location)
    assert "Contact saved." in page.text
    assert "<script>alert(1)</script>" not in page.text  # escaped everywhere it is shown
    assert "Zoë &lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "Acme &amp; Co" in page.text
    assert listed_names(page.text) == ["Zoë <script>alert(1)</script>"]

    changed = alice.post(
        f"/contacts/{stored.id}",
        contact_form(display_name="Zoë Martin", emails="zoe@example.com", note="moved"),
    )
    assert changed.status_code == 303
    (after,) = contacts_of(live, ALICE)
    assert (after.id, after.uid, after.created) == (stored.id, stored.uid, stored.created)
    assert (after.display_name, after.emails, after.phones) == (
        "Zoë Martin",
        ("zoe@example.com",),
        (),
    )

    alice.post("/contacts", contact_form(display_name="Ann Other", emails="ann@example.net"))
    assert listed_names(alice.get("/contacts").text) == ["Ann Other", "Zoë Martin"]
    assert listed_names(alice.get("/contacts", params={"q": "MARTIN"}).text) == ["Zoë Martin"]
    assert listed_names(alice.get("/contacts", params={"q": "example.net"}).text) == ["Ann Other"]
    assert "No contact matches." in alice.get("/contacts", params={"q": "nobody"}).text

    deleted = alice.post(f"/contacts/{stored.id}", {"action": "delete", "confirmed": "1"})
    assert deleted.headers["location"] == "/contacts?done=deleted"
    assert [c.display_name for c in contacts_of(live, ALICE)] == ["Ann Other"]
    assert alice.get(f"/contacts/{stored.id}").status_code == 404


def test_errors_are_shown_in_the_form_with_what_was_typed(
    live: LiveServer, alice: WebSession
) -> None:
    cases = (
        (contact_form(display_name="Bad", emails="not an address"), "not a valid address"),
        (contact_form(note="only a note"), "give a name or an email address"),
        (contact_form(display_name="x" * 201), "the name is longer than 200 characters"),
        (
            contact_form(display_name="Many", emails="\n".join(f"a{i}@ex.org" for i in range(11))),
            "at most 10 email addresses",
        ),
    )
    for fields, message in cases:
        response = alice.post("/contacts", fields)
        assert response.status_code == 400, message
        error = re.search(
            r'<p class="error" role="alert"[^>]* id="contact-error">([^<]*)</p>', response.text
        )
        assert error is not None and message in html.unescape(error.group(1))
    typed = alice.post("/contacts", contact_form(display_name="Kept <b>", emails="nope"))
    assert 'value="Kept &lt;b&gt;"' in typed.text
    assert ">nope</textarea>" in typed.text
    assert contacts_of(live, ALICE) == []


def test_the_per_account_limit_is_enforced(live: LiveServer, alice: WebSession) -> None:
    for n in range(LIMITS.max_per_account):
        assert alice.post("/contacts", contact_form(display_name=f"P{n}")).status_code == 303
    refused = alice.post("/contacts", contact_form(display_name="One too many"))
    assert refused.status_code == 400 and "at most 5 contacts" in refused.text
    assert len(contacts_of(live, ALICE)) == LIMITS.max_per_account


def test_a_post_without_the_csrf_token_changes_nothing(live: LiveServer, alice: WebSession) -> None:
    alice.post("/contacts", contact_form(display_name="Kept", emails="kept@example.com"))
    (kept,) = contacts_of(live, ALICE)
    for path, fields in (
        ("/contacts", contact_form(display_name="Forged")),
        (f"/contacts/{kept.id}", contact_form(display_name="Forged")),
        (f"/contacts/{kept.id}", {"action": "delete", "confirmed": "1"}),
        ("/contacts/add", {"name": "Forged", "address": "forged@example.com"}),
    ):
        refused = alice.post(path, fields, csrf=False)
        assert refused.status_code == 303 and "reason=stale" in refused.headers["location"], path
    forged = alice.client.post(
        "/contacts/import",
        files={"file": ("x.vcf", b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:F\r\nEND:VCARD\r\n")},
    )
    assert forged.status_code == 303 and "reason=stale" in forged.headers["location"]
    assert contacts_of(live, ALICE) == [kept]


def test_another_account_cannot_see_or_change_them(
    live: LiveServer, alice: WebSession, bob: WebSession
) -> None:
    alice.post("/contacts", contact_form(display_name="Secret Sam", emails="sam@example.net"))
    (sam,) = contacts_of(live, ALICE)
    assert "Secret Sam" not in bob.get("/contacts").text
    assert "Secret Sam" not in bob.get("/contacts", params={"q": "sam"}).text
    assert bob.get(f"/contacts/{sam.id}").status_code == 404
    assert bob.post(f"/contacts/{sam.id}", contact_form(display_name="Mine")).status_code == 404
    assert (
        bob.post(f"/contacts/{sam.id}", {"action": "delete", "confirmed": "1"}).status_code == 404
    )
    assert b"Secret Sam" not in bob.get("/contacts/export.vcf").content
    assert bob.get("/api/v1/addresses", params={"prefix": "sam"}).json() == {"addresses": []}
    assert contacts_of(live, ALICE) == [sam] and contacts_of(live, BOB) == []


VCF = (
    # vCard 3.0, folded, escaped, no UID (one is made)
    b"BEGIN:VCARD\r\nVERSION:3.0\r\nN:Doe;John;;;\r\nFN:John\r\n  Doe\r\n"
    b"EMAIL;TYPE=INTERNET:john@example.com\r\nORG:Doe\\, Inc.\r\nNOTE:a\\nb\r\nEND:VCARD\r\n"
    # vCard 4.0 with a UID and a tel: URI
    + "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:42\r\nFN:Jürgen\r\n"
    "EMAIL:j@example.de\r\nTEL;VALUE=uri:tel:+49-30-1\r\nEND:VCARD\r\n".encode()
    # bad: a vCard 2.1 card in a charset no one knows, and an address that is not one
    + b"BEGIN:VCARD\r\nVERSION:2.1\r\nFN;CHARSET=X-UNKNOWN:Old\r\nEND:VCARD\r\n"
    + b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Broken\r\nEMAIL:nope\r\nEND:VCARD\r\n"
)


def test_import_then_export_round_trips(live: LiveServer, alice: WebSession) -> None:
    done = import_file(alice, VCF)
    assert done.status_code == 303
    assert done.headers["location"] == "/contacts?imported=2&unchanged=0&skipped=2"
    page = alice.get(done.headers["location"])
    assert "Imported 2 contacts; skipped 2 cards that could not be read." in page.text
    john, jurgen = contacts_of(live, ALICE)
    assert (john.display_name, john.emails, john.organization, john.note) == (
        "John Doe",
        ("john@example.com",),
        "Doe, Inc.",
        "a\nb",
    )
    assert (jurgen.uid, jurgen.phones) == ("urn:uuid:42", ("+49-30-1",))

    exported = alice.get("/contacts/export.vcf")
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "text/vcard; charset=utf-8"
    assert exported.headers["content-disposition"].startswith('attachment; filename="contacts.vcf"')
    assert exported.content == vcard.format_cards([john, jurgen]).encode()
    # Each card as imported (kept), John's with the UID it was given.
    john_card, jurgen_card = (c + b"END:VCARD\r\n" for c in VCF.split(b"END:VCARD\r\n")[:2])
    john_card = john_card.replace(b"END:", b"UID:" + john.uid.encode() + b"\r\nEND:")
    assert exported.content == john_card + jurgen_card

    # The export imported again finds each contact (by UID) stored with that very card: it
    # writes nothing, so the book's sync token and the contacts' ETags stay, and a CardDAV
    # client has nothing to fetch again.
    token = sync_token(live, ALICE)
    again = import_file(alice, exported.content)
    assert again.headers["location"] == "/contacts?imported=0&unchanged=2&skipped=0"
    assert (
        "Imported 0 contacts; 2 already there unchanged."
        in alice.get(again.headers["location"]).text
    )
    assert sync_token(live, ALICE) == token
    assert contacts_of(live, ALICE) == [john, jurgen]

    # A card changed in the file is written (and only that one).
    changed = exported.content.replace(b"ORG:Doe\\, Inc.", b"ORG:Doe & Sons")
    assert changed != exported.content
    third = import_file(alice, changed)
    assert third.headers["location"] == "/contacts?imported=1&unchanged=1&skipped=0"
    assert sync_token(live, ALICE) > token
    john_after, jurgen_after = contacts_of(live, ALICE)
    assert (john_after.id, john_after.organization) == (john.id, "Doe & Sons")
    assert john_after.etag != john.etag and jurgen_after == jurgen


#: What Outlook and Android export: cards without a UID (a 2.1 one, LF-ended, and a 3.0 one
#: twice).
UIDLESS = (
    b"BEGIN:VCARD\nVERSION:2.1\nN:M\xfcller;Anna\nEMAIL;INTERNET:anna@example.de\nEND:VCARD\n"
    + b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Bo\r\nEMAIL:bo@example.com\r\nEND:VCARD\r\n" * 2
)


def test_a_file_without_uids_imported_again_doubles_nothing(
    live: LiveServer, alice: WebSession
) -> None:
    """Each card without a UID is given one derived from its text: the same file imported
    again replaces the contacts it made, a webmail edit in between included (the file's
    version wins, as for a card with its own UID); the two identical cards are one contact."""
    first = import_file(alice, UIDLESS)
    assert first.headers["location"] == "/contacts?imported=2&unchanged=0&skipped=0"
    anna, bo = contacts_of(live, ALICE)
    assert (anna.display_name, bo.display_name) == ("Anna Müller", "Bo")
    edited = alice.post(
        f"/contacts/{bo.id}", contact_form(display_name="Bo Edited", emails="b@x.org")
    )
    assert edited.status_code == 303
    again = import_file(alice, UIDLESS)
    # Anna's is stored as the file has it (left alone); Bo's, edited since, is written.
    assert again.headers["location"] == "/contacts?imported=1&unchanged=1&skipped=0"
    after = contacts_of(live, ALICE)
    assert [(c.id, c.uid, c.display_name, c.emails, c.card) for c in after] == [
        (c.id, c.uid, c.display_name, c.emails, c.card) for c in (anna, bo)
    ]
    # The export (each card with its UID now) imported again changes nothing either.
    exported = import_file(alice, alice.get("/contacts/export.vcf").content)
    assert exported.headers["location"] == "/contacts?imported=0&unchanged=2&skipped=0"
    assert [(c.id, c.uid) for c in contacts_of(live, ALICE)] == [
        (anna.id, anna.uid),
        (bo.id, bo.uid),
    ]


def test_a_number_edited_over_a_tel_uri_stays_as_typed(live: LiveServer, alice: WebSession) -> None:
    """Found by fuzz: a number typed in the webmail over a card's ``tel:`` URI was written
    ``tel:+1-555-0199``, so the card (what CardDAV clients and an export get, and what
    reads back from them) held dashes the user never typed."""
    card = (
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:7\r\nFN:Ann\r\n"
        "TEL;VALUE=uri;TYPE=cell:tel:+1-555-0100\r\nEND:VCARD\r\n"
    )
    assert import_file(alice, card.encode()).status_code == 303
    (ann,) = contacts_of(live, ALICE)
    edited = alice.post(
        f"/contacts/{ann.id}", contact_form(display_name="Ann", phones="+1 555 0199")
    )
    assert edited.status_code == 303
    exported = alice.get("/contacts/export.vcf").text
    assert exported == card.replace(
        "TEL;VALUE=uri;TYPE=cell:tel:+1-555-0100", "TEL;TYPE=cell:+1 555 0199"
    )
    assert import_file(alice, exported.encode()).status_code == 303
    (ann,) = contacts_of(live, ALICE)
    assert ann.phones == ("+1 555 0199",)
    assert "+1 555 0199" in alice.get(f"/contacts/{ann.id}").text


def test_import_limits(live: LiveServer, alice: WebSession) -> None:
    card = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:{}\r\nEND:VCARD\r\n"
    too_large = import_file(alice, card.format("x" * 5000).encode())
    assert too_large.status_code == 413
    many = "".join(card.format(f"P{n}") for n in range(LIMITS.max_per_account + 1)).encode()
    refused = import_file(alice, many)
    assert refused.status_code == 400 and "at most 5 contacts" in refused.text
    # A 4.0 card is UTF-8 (RFC 6350 §3.1): one in latin-1 is skipped (the file is not
    # refused for it: a 2.1 card in it would name its CHARSET); the JSON API says why.
    latin1 = import_file(alice, card.format("Jürgen").encode("latin-1"))
    assert latin1.headers["location"] == "/contacts?imported=0&unchanged=0&skipped=1"
    # The JSON API: a lone surrogate is no character (it was a 500).
    sent = json.dumps({"vcard": card.format("J\udcfcrgen")})  # "\udcfc": not Unicode text
    why = alice.api("POST", "/contacts/import", content=sent, headers=JSON)
    assert why.json() == {
        "imported": 0,
        "unchanged": 0,
        "skipped": 1,
        "reasons": ["card 1: octets that are not UTF-8"],
    }
    nothing = alice.client.post("/contacts/import", data={"csrf": alice.csrf("/contacts")})
    assert nothing.status_code == 400 and "choose a .vcf file" in nothing.text
    # A 2.1 card is kept as its 3.0 form, here folded at 75 octets: larger than the file, and
    # than a CardDAV client may PUT back (max_import_bytes), so skipped, saying why.
    photo = "AAAA" * ((LIMITS.max_import_bytes - 150) // 4)
    legacy = f"BEGIN:VCARD\r\nVERSION:2.1\r\nFN:Big\r\nPHOTO;BASE64:{photo}\r\n\r\nEND:VCARD\r\n"
    assert len(legacy) < LIMITS.max_import_bytes
    why = alice.api("POST", "/contacts/import", content=json.dumps({"vcard": legacy}), headers=JSON)
    assert why.json()["skipped"] == 1
    assert why.json()["reasons"] == ["card Big: larger than the 4096 bytes a card may have"]
    assert contacts_of(live, ALICE) == []


def test_add_the_sender_of_a_message(live: LiveServer, alice: WebSession) -> None:
    raw = simple_message(sender="carol@example.net")
    _, uid = deliver(live, ALICE, raw)
    page = alice.get(f"/mail/{mailbox_id(live, ALICE)}/{uid}")
    assert 'Add to contacts<span class="visually-hidden"> carol@example.net</span>' in page.text
    added = alice.post("/contacts/add", {"name": "Carol", "address": "carol@example.net"})
    (carol,) = contacts_of(live, ALICE)
    assert added.headers["location"] == f"/contacts/{carol.id}?done=added"
    assert (carol.display_name, carol.emails) == ("Carol", ("carol@example.net",))
    # Already a contact: opened, saying so, not added twice.
    again = alice.post("/contacts/add", {"name": "Carol C.", "address": "CAROL@example.net"})
    assert again.headers["location"] == f"/contacts/{carol.id}?done=known"
    assert "Already in your contacts." in alice.get(again.headers["location"]).text
    assert contacts_of(live, ALICE) == [carol]


def test_completion_offers_contacts_first(live: LiveServer, alice: WebSession) -> None:
    account = live.call(live.store.get_account(ALICE))
    assert account is not None
    # A correspondent remembered from sending, and contacts matching the same prefix.
    now = datetime.now(UTC)
    live.call(
        live.store.record_sending(
            account.id,
            ["dana@far.example", "dan@work.example"],
            now,
            window_start=now - timedelta(days=1),
            memory_start=now - timedelta(days=365),
        )
    )
    alice.post("/contacts", contact_form(display_name="Daniel, Jr.", emails="dan@work.example"))
    alice.post("/contacts", contact_form(display_name="Danny Boy", emails="db@example.com"))
    found = alice.get("/api/v1/addresses", params={"prefix": "dan"}).json()["addresses"]
    assert found == [
        '"Daniel, Jr." <dan@work.example>',
        "Danny Boy <db@example.com>",
        "dana@far.example",
    ]
