"""An account's allow and block lists through the JSON API (``/api/v1/sender-lists``) against
the live server, as a script holding an API token drives them: an entry put, its kind changed,
listed, removed; refusals with their status and message; the answers as the document
declares them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pillarbox.store.types import SenderListEntry, SenderListKind
from pillarbox.testing.live import LiveServer
from pillarbox.testing.webclient import WebSession

pytestmark = pytest.mark.listeners("http")

ALICE = "alice@example.org"


@pytest.fixture
def client(alice: WebSession) -> Iterator[httpx.Client]:
    """A client of the API holding an API token Alice issued, as a script would."""
    issued = alice.api("POST", "/tokens", {"kind": "api", "label": "lists"})
    assert issued.status_code == 201, issued.text
    bearer = {"authorization": f"Bearer {issued.json()['secret']}"}
    with httpx.Client(base_url=alice.base + "/api/v1", headers=bearer) as client:
        yield client


def test_put_list_and_delete_with_a_token(live: LiveServer, client: httpx.Client) -> None:
    allowed = client.put("/sender-lists/Ann@Example.org", json={"kind": "allow"})
    assert (allowed.status_code, allowed.json()) == (
        200,
        {"pattern": "ann@example.org", "kind": "allow"},
    )
    # A Unicode domain in the path is stored as the A-label a message carries.
    domain = client.put("/sender-lists/EXÄMPLE.net", json={"kind": "allow"})
    assert domain.json() == {"pattern": "xn--exmple-cua.net", "kind": "allow"}
    blocked = client.put("/sender-lists/ann@example.org", json={"kind": "block"})
    assert blocked.json() == {"pattern": "ann@example.org", "kind": "block"}
    listed = client.get("/sender-lists")
    assert listed.json() == [
        {"pattern": "ann@example.org", "kind": "block"},
        {"pattern": "xn--exmple-cua.net", "kind": "allow"},
    ]
    account = live.call(live.store.get_account(ALICE))
    assert account is not None
    assert live.call(live.store.list_sender_entries(account.id)) == [
        SenderListEntry("ann@example.org", SenderListKind.BLOCK),
        SenderListEntry("xn--exmple-cua.net", SenderListKind.ALLOW),
    ]
    document = client.get("/openapi.json").json()
    declared = document["components"]["schemas"]["SenderListEntry"]["properties"]
    assert all(entry.keys() == declared.keys() for entry in listed.json())

    removed = client.delete("/sender-lists/ANN@example.org")
    assert (removed.status_code, removed.json()) == (200, {"ok": True})
    again = client.delete("/sender-lists/ann@example.org")
    assert (again.status_code, again.json()) == (
        404,
        {"error": "ann@example.org is on neither list"},
    )
    for pattern, body, message in (
        (
            "co.uk",
            {"kind": "allow"},
            "co.uk is a public suffix: allow a domain or address under it",
        ),
        ("ann@[192.0.2.1]", {"kind": "block"}, "an address literal names no sender's domain"),
        ("spam.test", {}, "kind is required"),
        ("spam.test", {"kind": "junk"}, "kind must be one of 'allow', 'block'"),
    ):
        refused = client.put(f"/sender-lists/{pattern}", json=body)
        assert (refused.status_code, refused.json()) == (400, {"error": message}), pattern
    assert client.get("/sender-lists").json() == [
        {"pattern": "xn--exmple-cua.net", "kind": "allow"}
    ]
