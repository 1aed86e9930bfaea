"""Destructive forms ask first without script, as Roundcube and Fastmail do: a POST without
``confirmed`` destroys nothing and answers a page naming what would go, whose button posts the
same fields again with the CSRF token; with script, app.js's ``confirm()`` adds the field (see
tests/e2e/test_browser_webmail.py)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from pillarbox.store.types import SpecialUse
from pillarbox.testing.live import TEST_PASSWORD, LiveServer
from pillarbox.testing.webclient import (
    WebSession,
    deliver,
    mailbox_id,
    simple_message,
    special_mailbox_id,
)

pytestmark = pytest.mark.listeners("http")

ALICE = "alice@example.org"
_FORM = re.compile(r'<form method="post" action="([^"]+)" class="buttons">(.*?)</form>', re.S)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@pytest.fixture
def admin(live: LiveServer) -> Iterator[WebSession]:
    live.add_account("root@example.org", TEST_PASSWORD, is_admin=True)
    session = WebSession(live)
    assert session.login("root@example.org").status_code == 303
    yield session
    session.close()


def asked(session: WebSession, path: str, data: dict[str, object], says: str) -> httpx.Response:
    """POST ``data`` unconfirmed: the confirmation page saying ``says``; then its button."""
    page = session.post(path, data)
    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    assert "Are you sure?" in text and says in text
    [(action, inner)] = _FORM.findall(page.text)
    assert action == path
    fields: dict[str, list[str]] = {}
    for name, value in _HIDDEN.findall(inner):
        fields.setdefault(name, []).append(html.unescape(value))
    assert fields["confirmed"] == ["1"] and fields["csrf"]
    return session.client.post(action, data=fields)


def test_delete_forever_in_trash_asks_first(live: LiveServer, alice: WebSession) -> None:
    inbox = mailbox_id(live, ALICE)
    _, first = deliver(live, ALICE, simple_message("one"))
    _, second = deliver(live, ALICE, simple_message("two"))
    # Out of the Inbox: to Trash, nothing lost, nothing asked.
    moved = alice.post(f"/mail/{inbox}/actions", {"uid": [first, second], "action": "delete"})
    assert moved.status_code == 303
    trash = special_mailbox_id(live, ALICE, SpecialUse.TRASH)
    uids = [r.uid for r in live.call(live.store.list_messages(trash))]
    listed = alice.get(f"/mail/{trash}").text
    assert 'value="delete" data-key="#" class="danger" data-confirm=' in listed
    assert ">Delete forever</button>" in listed
    done = asked(
        alice,
        f"/mail/{trash}/actions",
        {"uid": uids, "action": "delete", "back": f"/mail/{trash}?page=1"},
        "2 messages in Trash will be deleted for good.",
    )
    assert done.status_code == 303 and "done=expunge" in done.headers["location"]
    assert live.call(live.store.list_messages(trash)) == []


def test_emptying_trash_and_deleting_a_folder_ask_first(
    live: LiveServer, alice: WebSession
) -> None:
    trash = special_mailbox_id(live, ALICE, SpecialUse.TRASH)
    deliver(live, ALICE, simple_message("old"), "Trash")
    # Unconfirmed, the POST leaves the message where it is.
    assert alice.post(f"/mail/{trash}/empty").status_code == 200
    assert len(live.call(live.store.list_messages(trash))) == 1
    done = asked(
        alice, f"/mail/{trash}/empty", {}, "The message in Trash will be deleted for good."
    )
    assert done.status_code == 303 and live.call(live.store.list_messages(trash)) == []
    assert alice.post("/folders", {"name": "Old"}).status_code == 303
    old = mailbox_id(live, ALICE, "Old")
    deliver(live, ALICE, simple_message("kept"), "Old")
    done = asked(
        alice,
        f"/mail/{old}/delete",
        {},
        "The folder Old and the 1 message in it will be deleted.",
    )
    assert done.status_code == 303
    names = {m.name for m in live.call(live.store.list_mailboxes(alice_id(live)))}
    assert "Old" not in names


def alice_id(live: LiveServer) -> int:
    account = live.call(live.store.get_account(ALICE))
    assert account is not None
    return account.id


def _contact(live: LiveServer, session: WebSession) -> tuple[str, dict[str, object], str]:
    empty = {"display_name": "", "emails": "", "phones": "", "organization": "", "note": ""}
    made = session.post("/contacts", {**empty, "display_name": "Sam", "emails": "sam@x.example"})
    assert made.status_code == 303
    [contact] = live.call(live.store.list_contacts(alice_id(live), ""))
    return f"/contacts/{contact.id}", {"action": "delete"}, "The contact Sam will be deleted."


def _token(live: LiveServer, session: WebSession) -> tuple[str, dict[str, object], str]:
    made = session.api("POST", "/tokens", {"kind": "app-password", "label": "phone"}).json()
    return f"/settings/tokens/{made['id']}/revoke", {}, "“phone” will be revoked"


def _identity(live: LiveServer, session: WebSession) -> tuple[str, dict[str, object], str]:
    address = "alice+shop@example.org"
    made = session.post("/settings/identities", {"id": "", "address": address})
    assert made.status_code == 303
    [stored] = [i for i in live.call(live.store.list_identities(alice_id(live))) if i.id]
    form = {"id": str(stored.id), "address": address, "action": "delete"}
    return "/settings/identities", form, f"The identity {address} will be removed"


def _rule(live: LiveServer, session: WebSession) -> tuple[str, dict[str, object], str]:
    rule = {
        "index": "",
        "name": "Boss",
        "enabled": "1",
        "match": "all",
        "condition_rows": "1",
        "c0_field": "from",
        "c0_match": "contains",
        "c0_value": "boss",
        "c0_header": "",
        "action_rows": "1",
        "a0_kind": "flag",
        "a0_folder": "",
        "a0_address": "",
    }
    assert session.post("/settings/filters/rule", rule).status_code == 303
    page = session.get("/settings/filters").text
    [version] = re.findall(r'name="version" value="([^"]*)"', page)[:1]
    return "/settings/filters/0/delete", {"version": version}, "The rule “Boss” will be deleted."


DESTROYERS: dict[str, Callable[[LiveServer, WebSession], tuple[str, dict[str, object], str]]] = {
    "contact": _contact,
    "app password": _token,
    "identity": _identity,
    "filter rule": _rule,
}


@pytest.mark.parametrize("kind", DESTROYERS)
def test_settings_deletions_ask_first(live: LiveServer, alice: WebSession, kind: str) -> None:
    path, form, says = DESTROYERS[kind](live, alice)

    def pages() -> str:
        shown = [alice.get(p).text for p in ("/settings", "/contacts", "/settings/filters")]
        # The token, and the server's clock the pages give their script (the session's end).
        return re.sub(
            r'name="csrf" value="[^"]*"|content="[^"]*"|data-now="\d+"', "", "".join(shown)
        )

    before = pages()
    page = alice.post(path, form)
    assert page.status_code == 200 and "Are you sure?" in page.text
    assert pages() == before  # nothing gone
    assert asked(alice, path, form, says).status_code == 303
    assert pages() != before


def test_admin_removals_ask_first(live: LiveServer, admin: WebSession) -> None:
    made = admin.post(
        "/admin/aliases/add", {"address": "sales@example.org", "targets": "alice@example.org"}
    )
    assert made.status_code == 303
    assert 'data-confirm="Remove the alias sales@example.org?"' in admin.get("/admin/aliases").text
    unconfirmed = admin.post("/admin/aliases/remove", {"address": "sales@example.org"})
    assert unconfirmed.status_code == 200
    assert "sales@example.org" in admin.get("/admin/aliases").text
    done = asked(
        admin,
        "/admin/aliases/remove",
        {"address": "sales@example.org"},
        "The alias sales@example.org will be removed.",
    )
    assert done.status_code == 303
    assert "sales@example.org" not in admin.get("/admin/aliases").text


def test_the_confirmation_page_needs_the_csrf_token(live: LiveServer, alice: WebSession) -> None:
    trash = special_mailbox_id(live, ALICE, SpecialUse.TRASH)
    deliver(live, ALICE, simple_message("old"), "Trash")
    forged = alice.post(f"/mail/{trash}/empty", {"confirmed": "1"}, csrf=False)
    assert forged.status_code == 303 and "reason=stale" in forged.headers["location"]
    assert len(live.call(live.store.list_messages(trash))) == 1
