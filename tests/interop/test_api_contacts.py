"""The address book through the JSON API (``/api/v1/contacts``) against the live server:
create, list and search, get, update, delete; vCard import and export; errors with their
status; the CSRF header for session callers; one account never reaching another's contacts;
the OpenAPI document listing every operation."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from pillarbox import vcard
from pillarbox.testing.live import LiveServer
from pillarbox.testing.webclient import WebSession

pytestmark = pytest.mark.listeners("http")

ALICE = "alice@example.org"


@pytest.fixture
def bob(live: LiveServer) -> Iterator[WebSession]:
    session = WebSession(live)
    assert session.login("bob@example.org").status_code == 303
    yield session
    session.close()


def test_crud_search_and_errors(alice: WebSession) -> None:
    created = alice.api(
        "POST",
        "/contacts",
        {
            "display_name": "Zoë Martin",
            "emails": ["zoe@Example.com"],
            "phones": ["+33 1 23"],
            "organization": "Acme",
            "note": "n",
        },
    )
    assert created.status_code == 201
    zoe = created.json()
    assert zoe["emails"] == ["zoe@example.com"] and zoe["uid"].startswith("urn:uuid:")
    assert zoe["created"] == zoe["updated"] and zoe["id"] > 0
    ann = alice.api("POST", "/contacts", {"emails": ["ann@example.net"], "uid": "ann-1"}).json()
    assert (ann["uid"], ann["display_name"]) == ("ann-1", "")

    assert [c["id"] for c in alice.api("GET", "/contacts").json()] == [ann["id"], zoe["id"]]
    assert [c["id"] for c in alice.api("GET", "/contacts?q=ACME").json()] == [zoe["id"]]
    assert alice.api("GET", f"/contacts/{zoe['id']}").json() == zoe

    put = alice.api(
        "PUT",
        f"/contacts/{zoe['id']}",
        {"display_name": "Zoë M.", "emails": ["zoe@example.com", "z@example.com"]},
    )
    assert put.status_code == 200
    changed = put.json()
    assert (changed["uid"], changed["created"]) == (zoe["uid"], zoe["created"])
    assert (changed["display_name"], changed["phones"], changed["organization"]) == (
        "Zoë M.",
        [],
        "",
    )

    for body, status, message in (
        ({"emails": "zoe@example.com"}, 400, "emails must be a list of strings"),
        ({"emails": ["nope"]}, 400, "not a valid address: nope"),
        ({"note": "only"}, 400, "give a name or an email address"),
        ({"display_name": 5}, 400, "display_name must be a string"),
    ):
        refused = alice.api("POST", "/contacts", body)
        assert (refused.status_code, refused.json()) == (status, {"error": message})
    assert alice.api("GET", "/contacts?q=" + "x" * 255).status_code == 400

    assert alice.api("DELETE", f"/contacts/{zoe['id']}").json() == {"ok": True}
    assert alice.api("GET", f"/contacts/{zoe['id']}").status_code == 404
    assert alice.api("DELETE", f"/contacts/{zoe['id']}").status_code == 404
    assert alice.api("PUT", f"/contacts/{zoe['id']}", {"display_name": "x"}).status_code == 404


def test_import_and_export(live: LiveServer, alice: WebSession) -> None:
    text = (
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:u-1\r\nFN:One\r\nEMAIL:one@example.com\r\n"
        "END:VCARD\r\nBEGIN:VCARD\r\nVERSION:3.0\r\nFN:Two\r\nEND:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:4.0\r\nNOTE:nothing\r\nEND:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Broken\r\nEMAIL:nope\r\nEND:VCARD\r\n"
    )
    done = alice.api("POST", "/contacts/import", {"vcard": text})
    assert done.status_code == 200
    assert done.json() == {
        "imported": 2,
        "unchanged": 0,
        "skipped": 2,
        "reasons": [
            "card 3: neither a name nor an email address",
            "card Broken: not a valid address: nope",
        ],
    }
    exported = alice.api("GET", "/contacts/export")
    assert exported.headers["content-type"] == "text/vcard; charset=utf-8"
    cards = vcard.parse(exported.text).contacts
    assert (cards[0].uid, cards[0].display_name, cards[0].emails) == (
        "u-1",
        "One",
        ("one@example.com",),
    )
    assert [c.display_name for c in cards] == ["One", "Two"]
    # The export imported again: each card is stored as it is, so nothing is written (the
    # address book's sync token stays) and nothing doubles.
    listed = alice.api("GET", "/contacts").json()
    account = live.call(live.store.get_account(ALICE))
    assert account is not None
    token = live.call(live.store.contacts_sync_token(account.id))
    again = alice.api("POST", "/contacts/import", {"vcard": exported.text}).json()
    assert again == {"imported": 0, "unchanged": 2, "skipped": 0, "reasons": []}
    assert alice.api("GET", "/contacts").json() == listed
    assert live.call(live.store.contacts_sync_token(account.id)) == token
    # One card changed in the file: that one is written.
    changed = exported.text.replace("FN:Two", "FN:Two Again")
    third = alice.api("POST", "/contacts/import", {"vcard": changed}).json()
    assert (third["imported"], third["unchanged"]) == (1, 1)
    assert [c["display_name"] for c in alice.api("GET", "/contacts").json()] == ["One", "Two Again"]
    assert live.call(live.store.contacts_sync_token(account.id)) > token
    too_large = alice.api("POST", "/contacts/import", {"vcard": "x" * (2 * 1024 * 1024 + 1)})
    assert too_large.status_code == 413 and "error" in too_large.json()


def test_session_callers_need_the_csrf_header(alice: WebSession) -> None:
    forged = alice.client.post("/api/v1/contacts", json={"display_name": "Forged"})
    assert forged.status_code == 403
    assert alice.api("GET", "/contacts").json() == []


def test_a_bearer_token_works_and_reaches_only_its_account(
    alice: WebSession, bob: WebSession
) -> None:
    page = alice.post("/settings/api-token", {"label": "sync"})
    secret = re.search(r'id="new-secret">([^<]+)<', page.text)
    assert secret is not None
    bearer = {"authorization": f"Bearer {secret.group(1)}"}
    client = httpx.Client(base_url=alice.base)
    made = client.post("/api/v1/contacts", json={"display_name": "Sam"}, headers=bearer)
    assert made.status_code == 201
    sam = made.json()
    assert bob.api("GET", "/contacts").json() == []
    assert bob.api("GET", f"/contacts/{sam['id']}").status_code == 404
    assert bob.api("PUT", f"/contacts/{sam['id']}", {"display_name": "Mine"}).status_code == 404
    assert bob.api("DELETE", f"/contacts/{sam['id']}").status_code == 404
    assert bob.api("GET", "/contacts/export").text == ""
    assert client.get(f"/api/v1/contacts/{sam['id']}", headers=bearer).json() == sam


def test_openapi_lists_the_contact_operations(alice: WebSession) -> None:
    paths = alice.api("GET", "/openapi.json").json()["paths"]
    assert set(paths["/api/v1/contacts"]) == {"get", "post"}
    assert set(paths["/api/v1/contacts/{contact}"]) == {"get", "put", "delete"}
    assert set(paths["/api/v1/contacts/import"]) == {"post"}
    assert set(paths["/api/v1/contacts/export"]) == {"get"}
