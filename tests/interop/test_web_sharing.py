"""Sharing folders from the webmail (IMAP ACL, RFC 4314) against the live server, on the store
``$PILLARBOX_TEST_STORE`` names: alice shares "Support" with bob read-only through the sharing
page; bob finds it under "Shared with me" in his webmail and under "Other Users/" over IMAP
(imapclient), reads a message (which stays unread: no "s"), and may neither delete nor flag it
— the pages answer 403, the JSON API 403 with its error; alice makes him read/write and he
flags it; she stops sharing and the folder is gone for him, on the web and over IMAP. The form
refuses unknown accounts, the owner (also "-owner") and no rights, with the error on the page;
the JSON API's ACL endpoints do the same. A negative entry ("-bob", RFC 4314 §2) takes rights
away from what "anyone" gives, on the pages, the API and IMAP alike. The rights checks are
tested on the mail-access layer itself too (:class:`~pillarbox.web.mailaccess.MailAccess`), not
only through the pages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from pillarbox import config as cfg
from pillarbox.errors import NotFound, PermissionDenied, UserError
from pillarbox.store.types import Account, AclEntry, SpecialUse
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.webclient import WebSession, deliver, mailbox_id, simple_message
from pillarbox.web.mailaccess import MailAccess

ALICE = "alice@example.org"
BOB = "bob@example.org"
CAROL = "carol@example.org"
SHARED = f"Other Users/{ALICE}/Support"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    imap = cfg.ImapSection(login_without_tls=True)
    config = loopback_config(tmp_path / "data", only=["http", "imap"], imap=imap)
    with LiveServer(config) as server:
        server.add_domain("example.org")
        for user in (ALICE, BOB, CAROL):
            server.add_account(user, TEST_PASSWORD)
        yield server


@pytest.fixture
def support(live: LiveServer) -> tuple[int, int]:
    """Alice's "Support" with one message from a customer: (mailbox id, uid)."""
    alice = account(live, ALICE)
    live.call(live.store.create_mailbox(alice.id, "Support"))
    return deliver(live, ALICE, simple_message("Printer on fire", "Please help."), "Support")


def account(live: LiveServer, address: str) -> Account:
    found = live.call(live.store.get_account(address))
    assert found is not None
    return found


def session(live: LiveServer, user: str) -> WebSession:
    web = WebSession(live)
    assert web.login(user).status_code == 303
    return web


def imap(live: LiveServer, user: str) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=live.port("imap"), ssl=False, timeout=10)
    client.login(user, TEST_PASSWORD)
    return client


def flags(live: LiveServer, box: int, uid: int) -> frozenset[str]:
    record = live.call(live.store.get_message(box, uid))
    assert record is not None
    return record.flags


def shared_group(page: str) -> str:
    """The "Shared with me" part of a page's folder list ("" when it has none)."""
    match = re.search(r'<section class="shared-folders".*?</section>', page, re.DOTALL)
    return match.group(0) if match else ""


def share(web: WebSession, box: int, grantee: str, preset: str, *rights: str) -> str:
    fields: dict[str, object] = {"grantee": grantee, "preset": preset, "right": list(rights)}
    response = web.post(f"/mail/{box}/sharing", fields)
    if response.status_code == 303:
        return response.headers["location"]
    assert response.status_code == 400, response.text[:300]
    error = re.search(
        r'<p class="error" role="alert"[^>]* id="sharing-error">([^<]*)</p>', response.text
    )
    assert error is not None, response.text[:2000]
    return error.group(1)


# -- the journey ---------------------------------------------------------------------------------


def test_alice_shares_support_with_bob_from_the_webmail(
    live: LiveServer, support: tuple[int, int]
) -> None:
    box, uid = support
    alice, bob = session(live, ALICE), session(live, BOB)
    # Bob knows nothing of it yet: not listed, and its id is any other account's (404).
    assert shared_group(bob.get(f"/mail/{mailbox_id(live, BOB)}").text) == ""
    assert bob.get(f"/mail/{box}").status_code == 404

    page = alice.get(f"/mail/{box}")
    assert f'href="/mail/{box}/sharing"' in page.text
    assert "Not shared with anyone." in alice.get(f"/mail/{box}/sharing").text
    assert share(alice, box, BOB, "read") == f"/mail/{box}/sharing?done=shared"
    listed = alice.get(f"/mail/{box}/sharing").text
    assert re.search(rf'data-grantee="{BOB}">.*?Read only.*?<code>lr</code>', listed, re.DOTALL)

    # Bob sees it under "Shared with me", by owner, and opens and reads it.
    mail = bob.get(f"/mail/{mailbox_id(live, BOB)}").text
    group = shared_group(mail)
    assert ALICE in group and f'href="/mail/{box}"' in group and "Support" in group
    listing = bob.get(f"/mail/{box}")
    assert listing.status_code == 200 and "Printer on fire" in listing.text
    assert f"Shared with you by {ALICE}" in listing.text
    for hidden in ('value="delete"', 'value="flag"', 'value="read"', 'value="spam"'):
        assert hidden not in listing.text  # a courtesy; the checks below are the server's
    assert bob.get(f"/mail/{box}?q=fire").text.count('data-href="/mail/') == 1  # search
    message = bob.get(f"/mail/{box}/{uid}")
    assert message.status_code == 200 and "Please help." in message.text
    assert flags(live, box, uid) == frozenset()  # read without "s": stays unread (§4)
    # ... and over IMAP.
    with imap(live, BOB) as client:
        assert any(name == SHARED for _, _, name in client.list_folders("", "Other Users/*"))
        client.select_folder(SHARED, readonly=True)
        assert client.search("ALL") == [uid]

    # Read-only: delete and flag are refused by the pages and the API alike.
    for action in ("delete", "flag", "read", "spam"):
        response = bob.post(f"/mail/{box}/actions", {"uid": uid, "action": action})
        assert response.status_code == 403, action
        assert "do not allow this" in response.text
    mine = mailbox_id(live, BOB)
    moved = bob.post(f"/mail/{box}/actions", {"uid": uid, "action": "move", "target": mine})
    assert moved.status_code == 403
    api = bob.api("POST", f"/mailboxes/{box}/actions", {"action": "flag", "uids": [uid]})
    assert api.status_code == 403
    assert api.json() == {
        "error": f"your rights on {ALICE}'s folder Support (lr) do not allow this"
    }
    api = bob.api("POST", f"/mailboxes/{box}/actions", {"action": "delete", "uids": [uid]})
    assert api.status_code == 403
    assert [r.uid for r in live.call(live.store.list_messages(box))] == [uid]
    assert flags(live, box, uid) == frozenset()
    assert bob.get(f"/mail/{box}/sharing").status_code == 403  # no "a"

    # Alice makes him read/write: now he flags it (the page, then the API clears it).
    assert share(alice, box, BOB, "read-write") == f"/mail/{box}/sharing?done=shared"
    assert "Read and write" in alice.get(f"/mail/{box}/sharing").text
    assert bob.post(f"/mail/{box}/actions", {"uid": uid, "action": "flag"}).status_code == 303
    assert flags(live, box, uid) == {"\\Flagged"}
    with imap(live, BOB) as client:
        client.select_folder(SHARED, readonly=True)
        assert b"\\Flagged" in client.get_flags([uid])[uid]
    listing = bob.get(f"/mail/{box}")
    assert 'value="flag"' in listing.text and 'value="delete"' in listing.text
    api = bob.api("POST", f"/mailboxes/{box}/actions", {"action": "unflag", "uids": [uid]})
    assert api.status_code == 200 and flags(live, box, uid) == frozenset()

    # Alice stops sharing: gone for bob, on the web and over IMAP.
    stop = alice.post(f"/mail/{box}/sharing/remove", {"grantee": BOB})
    assert stop.headers["location"] == f"/mail/{box}/sharing?done=removed"
    assert "Not shared with anyone." in alice.get(f"/mail/{box}/sharing").text
    assert shared_group(bob.get(f"/mail/{mine}").text) == ""
    assert bob.get(f"/mail/{box}").status_code == 404
    assert bob.get(f"/mail/{box}/{uid}").status_code == 404
    assert bob.api("GET", f"/mailboxes/{box}/messages").status_code == 404
    with imap(live, BOB) as client:
        assert client.list_folders("", "Other Users/*") == []


def test_the_form_refuses_what_cannot_be_shared(live: LiveServer, support: tuple[int, int]) -> None:
    box, _ = support
    alice = session(live, ALICE)
    assert share(alice, box, "nobody@example.org", "read") == (
        "there is no account nobody@example.org on this server"
    )
    assert share(alice, box, ALICE, "read") == "the owner always has every right on their folder"
    assert share(alice, box, "-" + ALICE, "read") == (
        "the owner always has every right on their folder"
    )
    assert share(alice, box, BOB, "custom") == "choose at least one right, or stop sharing instead"
    assert share(alice, box, BOB, "everything") == "choose one of the offered sets of rights"
    assert share(alice, box, "", "read") == "say whom to share the folder with"
    refused = alice.post(f"/mail/{box}/sharing/remove", {"grantee": ALICE})
    assert refused.status_code == 400 and "every right" in refused.text
    assert live.call(live.store.get_acl(box)) == []
    # What was typed stays in the form; custom rights and "anyone" are taken.
    response = alice.post(
        f"/mail/{box}/sharing", {"grantee": "nobody@example.org", "preset": "custom", "right": "l"}
    )
    assert 'value="nobody@example.org"' in response.text
    assert re.search(r'value="custom" id="preset-custom" checked', response.text)
    assert (
        share(alice, box, "anyone", "custom", "l", "r", "s") == f"/mail/{box}/sharing?done=shared"
    )
    assert share(alice, box, BOB.upper(), "read") == f"/mail/{box}/sharing?done=shared"
    entries = {(e.identifier, e.rights) for e in live.call(live.store.get_acl(box))}
    assert entries == {("anyone", "lrs"), (BOB, "lr")}
    # Another account's unshared folder is simply not there; a CSRF-less post changes nothing.
    carol = session(live, CAROL)
    carol_inbox = mailbox_id(live, CAROL)
    assert alice.get(f"/mail/{carol_inbox}/sharing").status_code == 404
    forged = carol.post(f"/mail/{carol_inbox}/sharing", {"grantee": ALICE, "preset": "full"},
                        csrf=False)  # fmt: skip
    assert forged.status_code == 303 and forged.headers["location"].startswith("/login")
    assert live.call(live.store.get_acl(carol_inbox)) == []


def test_the_json_api_shares_and_refuses(live: LiveServer, support: tuple[int, int]) -> None:
    box, _ = support
    alice, bob = session(live, ALICE), session(live, BOB)
    assert alice.api("GET", f"/mailboxes/{box}/acl").json() == {
        "mailbox": box,
        "owner": ALICE,
        "entries": [],
    }
    put = alice.api("PUT", f"/mailboxes/{box}/acl/{BOB}", {"rights": "lrsd"})
    assert put.status_code == 200
    assert put.json()["entries"] == [{"identifier": BOB, "rights": "lrste"}]
    [support_json] = [m for m in bob.api("GET", "/mailboxes").json() if m["id"] == box]
    assert (support_json["owner"], support_json["rights"]) == (ALICE, "lrste")
    own = bob.api("GET", "/mailboxes").json()[0]
    assert (own["owner"], own["rights"]) == (None, "lrswipkxtea")
    for body, error in (
        ({"rights": "lrz"}, "“z” is not a right: use the letters lrswipkxteacd"),
        ({"rights": "+w"}, "give the rights as letters, without + or -"),
        ({"rights": ""}, "choose at least one right, or stop sharing instead"),
        ({}, "rights is required"),
        ({"rights": 3}, "rights must be a string"),
    ):
        refused = alice.api("PUT", f"/mailboxes/{box}/acl/{BOB}", body)
        assert (refused.status_code, refused.json()) == (400, {"error": error})
    refused = alice.api("PUT", f"/mailboxes/{box}/acl/{ALICE}", {"rights": "lr"})
    assert refused.json() == {"error": "the owner always has every right on their folder"}
    assert bob.api("GET", f"/mailboxes/{box}/acl").status_code == 403  # "l", no "a"
    assert bob.api("PUT", f"/mailboxes/{box}/acl/{CAROL}", {"rights": "lr"}).status_code == 403
    gone = alice.api("DELETE", f"/mailboxes/{box}/acl/{BOB}")
    assert gone.status_code == 200 and gone.json()["entries"] == []
    assert bob.api("GET", f"/mailboxes/{box}/acl").status_code == 404
    document = alice.api("GET", "/openapi.json").json()
    assert set(document["paths"]["/api/v1/mailboxes/{mailbox}/acl/{identifier}"]) == {
        "put",
        "delete",
    }


def test_a_negative_entry_takes_rights_away(live: LiveServer, support: tuple[int, int]) -> None:
    """Alice opens Support to everyone with "lrswite" and takes "w", "t" and "e" back from bob:
    his folder list, his actions and IMAP all see "lrsi"; carol keeps everything; the sharing
    page lists the negative entry and gives the rights back."""
    box, uid = support
    alice, bob, carol = session(live, ALICE), session(live, BOB), session(live, CAROL)
    assert (
        alice.api("PUT", f"/mailboxes/{box}/acl/anyone", {"rights": "lrswite"}).status_code == 200
    )
    put = alice.api("PUT", f"/mailboxes/{box}/acl/-{BOB}", {"rights": "wte"})
    assert put.json()["entries"] == [
        {"identifier": "anyone", "rights": "lrswite"},
        {"identifier": f"-{BOB}", "rights": "wte"},
    ]
    assert live.call(live.store.get_acl(box))[-1] == AclEntry(BOB, "wte", negative=True)

    def rights(web: WebSession) -> str:
        [folder] = [m for m in web.api("GET", "/mailboxes").json() if m["id"] == box]
        return str(folder["rights"])

    assert (rights(bob), rights(carol)) == ("lrsi", "lrswite")
    flag = {"action": "flag", "uids": [uid]}
    assert bob.api("POST", f"/mailboxes/{box}/actions", flag).status_code == 403
    assert flags(live, box, uid) == frozenset()
    with imap(live, BOB) as client:
        assert client.select_folder(SHARED)[b"PERMANENTFLAGS"] == (b"\\Seen",)
    page = alice.get(f"/mail/{box}/sharing").text
    assert f'data-grantee="-{BOB}"' in page and "Give back" in page
    gone = alice.post(f"/mail/{box}/sharing/remove", {"grantee": f"-{BOB}"})
    assert gone.headers["location"] == f"/mail/{box}/sharing?done=removed"
    assert rights(bob) == "lrswite"
    assert bob.api("POST", f"/mailboxes/{box}/actions", flag).status_code == 200
    assert flags(live, box, uid) == frozenset({"\\Flagged"})


# -- the mail-access layer itself ------------------------------------------------------------------


def test_mail_access_enforces_the_rights(live: LiveServer, support: tuple[int, int]) -> None:
    """Each operation checks what its IMAP command would need (RFC 4314 §4), whatever page or
    API call reaches it: "r" to open, "s"/"w"/"t" per flag, "t" and "e" for a message to
    leave, "i" to arrive, "x" to delete the folder, "a" to share; without "l" a folder lacking
    the right is NotFound, with "l" PermissionDenied; without "r" it is not listed."""
    box, uid = support
    services = live.server.context
    assert services is not None
    bob = MailAccess(services, account(live, BOB))
    owner = account(live, ALICE)

    def grant(rights: str) -> None:
        live.call(live.store.set_acl(box, account(live, BOB).id, rights))

    def refused(call: object) -> type[Exception]:
        with pytest.raises((NotFound, PermissionDenied)) as caught:
            live.call(call)  # type: ignore[arg-type]
        return caught.type

    mine = live.call(bob.inbox()).id
    grant("r")  # readable, not listed: opens by id, as IMAP selects it by name
    assert [f.owner for f in live.call(bob.folders())].count(ALICE) == 0
    assert live.call(bob.open(box, uid)).rights == {"r"}
    assert refused(bob.set_flag(box, [uid], "\\Flagged", True)) is NotFound
    grant("l")  # listed by IMAP, yet nothing to show: not in the webmail's list
    assert [f.owner for f in live.call(bob.folders())].count(ALICE) == 0
    assert refused(bob.open(box, uid)) is PermissionDenied

    grant("lrs")
    [shared] = [f for f in live.call(bob.folders()) if f.owner == ALICE]
    assert (shared.mailbox.id, shared.label, shared.status.messages) == (
        box,
        f"Support ({ALICE})",
        1,
    )
    opened = live.call(bob.open(box, uid))
    live.call(bob.mark_seen(opened))
    assert flags(live, box, uid) == {"\\Seen"}  # "s": reading marks read
    live.call(bob.set_flag(box, [uid], "\\Seen", False))
    assert refused(bob.set_flag(box, [uid], "\\Flagged", True)) is PermissionDenied
    assert refused(bob.set_flag(box, [uid], "\\Deleted", True)) is PermissionDenied
    assert refused(bob.delete(box, [uid])) is PermissionDenied
    assert refused(bob.move(box, [uid], mine)) is PermissionDenied
    assert refused(bob.mark_junk(box, [uid], True)) is PermissionDenied
    assert refused(bob.move(mine, [1], box)) is PermissionDenied  # no "i"
    assert refused(bob.delete_folder(box)) is PermissionDenied
    assert refused(bob.rename_folder(box, "Elsewhere")) is PermissionDenied
    assert refused(bob.sharing(box)) is PermissionDenied
    assert refused(bob.share(box, CAROL, "lr")) is PermissionDenied

    grant("lrwi")  # flags, and messages may arrive, but none may leave
    live.call(bob.set_flag(box, [uid], "\\Flagged", True))
    assert flags(live, box, uid) == {"\\Flagged"}
    bob_uid = deliver(live, BOB, simple_message("Mine", "x", to=BOB))[1]
    live.call(bob.set_flag(mine, [bob_uid], "\\Seen", True))
    live.call(bob.set_flag(mine, [bob_uid], "\\Flagged", True))
    live.call(bob.move(mine, [bob_uid], box))
    arrived = live.call(live.store.list_messages(box))
    assert len(arrived) == 2
    assert arrived[-1].flags == {"\\Flagged"}  # "w", not "s": \Seen dropped (§4)
    assert refused(bob.delete(box, [uid])) is PermissionDenied

    grant("lrte")  # "t" and "e": a message may leave, to bob's own Trash
    live.call(bob.delete(box, [uid]))
    trash = live.call(bob.special(SpecialUse.TRASH))
    assert len(live.call(live.store.list_messages(trash.id))) == 1
    assert len(live.call(live.store.list_messages(box))) == 1

    grant("lra")  # administer: sees and changes the list, but not the owner's entry
    live.call(bob.share(box, CAROL, "lr"))
    assert live.call(bob.sharing(box)).owner == ALICE
    with pytest.raises(UserError, match="owner always has every right"):
        live.call(bob.share(box, ALICE, "lr"))
    assert live.call(bob.unshare(box, CAROL)).entries == (AclEntry(BOB, "lra"),)
    after = live.call(bob.share(box, BOB, "lr"))  # his own "a" given up: the list still comes
    assert after.entries == (AclEntry(BOB, "lr"),)
    assert refused(bob.sharing(box)) is PermissionDenied

    # Another account's Drafts opens for reading, never as one's own draft to edit (saving
    # it would remove the old version from the wrong Drafts).
    drafts = live.call(MailAccess(services, owner).special(SpecialUse.DRAFTS)).id
    live.call(live.store.set_acl(drafts, account(live, BOB).id, "lr"))
    draft_uid = deliver(live, ALICE, simple_message("Half-written"), "Drafts")[1]
    web = session(live, BOB)
    assert web.get(f"/mail/{drafts}/{draft_uid}").status_code == 200
    assert "Edit draft" not in web.get(f"/mail/{drafts}/{draft_uid}").text
    assert web.get(f"/compose?draft={drafts}:{draft_uid}").status_code == 404

    grant("lrx")
    live.call(bob.delete_folder(box))
    assert [m.name for m in live.call(live.store.list_mailboxes(owner.id))].count("Support") == 0


def test_live_updates_of_the_shared_folder_shown(
    live: LiveServer, support: tuple[int, int]
) -> None:
    """The page of a shared folder names it to the event stream, which then carries its
    owner's changes; a folder the account may not read is not followed (the next event is
    bob's own new mail, not carol's)."""
    box, _ = support
    live.call(live.store.set_acl(box, account(live, BOB).id, "lr"))
    bob = session(live, BOB)
    assert f'data-mailbox="{box}"' in bob.get(f"/mail/{box}").text
    with bob.client.stream("GET", f"/events?mailbox={box}", timeout=10) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 3000"
        deliver(live, ALICE, simple_message("Toner low", "Again."), "Support")
        data = next(line for line in lines if line.startswith("data:"))
        assert json.loads(data.removeprefix("data: ")) == {"mailbox": box, "kind": "exists"}
    carol_inbox = mailbox_id(live, CAROL)
    with bob.client.stream("GET", f"/events?mailbox={carol_inbox}", timeout=10) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 3000"
        deliver(live, CAROL, simple_message("Private", "x", to=CAROL))
        mine, _ = deliver(live, BOB, simple_message("Mine", "x", to=BOB))
        data = next(line for line in lines if line.startswith("data:"))
        assert json.loads(data.removeprefix("data: ")) == {"mailbox": mine, "kind": "exists"}
