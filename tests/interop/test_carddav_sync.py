"""CardDAV sync-collection (RFC 6578) against the live server, with httpx as the client (the
installed vdirsyncer lists a collection with PROPFIND and never sends this REPORT): every path
that changes the address book — a CardDAV PUT and DELETE, the webmail's Contacts page, the
JSON API, a vCard import replacing a card — advances the token and is reported, deletions as
bare 404s; tokens of another collection, from the future, or older than the tombstones kept
are refused with 403 ``valid-sync-token`` (§3.2, §3.7)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from xml.etree.ElementTree import fromstring

import httpx
import pytest

from pillarbox.testing.davclient import dav_client, error_of, responses, text_of
from pillarbox.testing.live import LiveServer
from pillarbox.testing.webclient import WebSession

pytestmark = pytest.mark.listeners("http", "https")

ALICE = "alice@example.org"
BOOK = "/dav/addressbooks/alice@example.org/contacts/"
D = "{DAV:}"
C = "{urn:ietf:params:xml:ns:carddav}"
CARDDAV_NS = 'xmlns:c="urn:ietf:params:xml:ns:carddav"'
VCF = {"content-type": "text/vcard"}


def card(uid: str, name: str) -> str:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nEND:VCARD\r\n"


def sync_body(token: str, props: str = "<d:getetag/>", limit: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token>'
        f"<d:sync-level>1</d:sync-level>{limit}<d:prop>{props}</d:prop></d:sync-collection>"
    ).encode()


def sync(client: httpx.Client, token: str, **options: str) -> httpx.Response:
    return client.request("REPORT", BOOK, content=sync_body(token, **options))


def changes(response: httpx.Response) -> tuple[dict[str, str], list[str], str]:
    """The members a sync answered (href → ETag), those deleted (bare 404s), the new token."""
    found = responses(response)
    changed = {
        href: text_of(r, f"{D}getetag") for href, r in found.items() if r.find(f"{D}propstat")
    }
    deleted = [href for href, r in found.items() if "404" in r.findtext(f"{D}status", "")]
    token = fromstring(response.content).findtext(f"{D}sync-token")
    assert token is not None
    return changed, deleted, token


@pytest.fixture
def dav(live: LiveServer) -> Iterator[httpx.Client]:
    with dav_client(live, ALICE) as client:
        yield client


def test_the_first_sync_of_an_empty_book_answers_its_token_byte_for_byte(
    dav: httpx.Client, live: LiveServer
) -> None:
    account = live.with_store(lambda s: s.get_account(ALICE))
    assert account is not None
    first = sync(dav, "")
    assert first.status_code == 207
    assert first.content == (
        b"<?xml version='1.0' encoding='utf-8'?>\n"
        b'<d:multistatus xmlns:d="DAV:"><d:sync-token>urn:x-pillarbox:sync:contacts.'
        + str(account.id).encode()
        + b"-0</d:sync-token></d:multistatus>"
    )


def test_every_path_that_changes_a_contact_advances_the_sync(
    dav: httpx.Client, alice: WebSession
) -> None:
    for uid, name in (("ann", "Ann"), ("bob", "Bob"), ("cat", "Cat")):
        assert dav.put(BOOK + f"{uid}.vcf", content=card(uid, name), headers=VCF).status_code == 201
    everything, gone, token = changes(sync(dav, ""))
    assert sorted(everything) == [BOOK + "ann.vcf", BOOK + "bob.vcf", BOOK + "cat.vcf"]
    assert gone == []  # an initial sync lists no deletions (§3.4)
    assert everything[BOOK + "ann.vcf"] == dav.get(BOOK + "ann.vcf").headers["etag"]
    # The book's sync-token property and its ctag follow the same counter.
    listed = responses(
        dav.request(
            "PROPFIND",
            BOOK,
            content=b'<d:propfind xmlns:d="DAV:"><d:prop><d:sync-token/></d:prop></d:propfind>',
            headers={"depth": "0"},
        )
    )
    assert text_of(listed[BOOK], f"{D}sync-token") == token
    assert changes(sync(dav, token)) == ({}, [], token)  # nothing since

    contacts = {c["uid"]: c for c in alice.api("GET", "/contacts").json()}
    # The webmail's Contacts page deletes Ann; the JSON API edits Bob.
    deleted = alice.post(
        f"/contacts/{contacts['ann']['id']}", {"action": "delete", "confirmed": "1"}
    )
    assert deleted.status_code == 303
    edited = {**contacts["bob"], "note": "met in Lyon"}
    assert alice.api("PUT", f"/contacts/{contacts['bob']['id']}", edited).status_code == 200
    changed, gone, after_web = changes(sync(dav, token))
    assert (list(changed), gone) == ([BOOK + "bob.vcf"], [BOOK + "ann.vcf"])
    assert changed[BOOK + "bob.vcf"] == dav.get(BOOK + "bob.vcf").headers["etag"]

    # An import replaces Cat (same UID) and brings Ann back; the API deletes Bob; a CardDAV
    # DELETE removes nothing more than it names.
    imported = alice.api(
        "POST", "/contacts/import", {"vcard": card("cat", "Cat Dupont") + card("ann", "Ann")}
    )
    assert imported.json()["imported"] == 2
    assert alice.api("DELETE", f"/contacts/{contacts['bob']['id']}").json() == {"ok": True}
    changed, gone, after_import = changes(sync(dav, after_web))
    assert (sorted(changed), gone) == ([BOOK + "ann.vcf", BOOK + "cat.vcf"], [BOOK + "bob.vcf"])
    # The same file imported again writes nothing: nothing to sync, the token as it was.
    repeated = alice.api(
        "POST", "/contacts/import", {"vcard": card("cat", "Cat Dupont") + card("ann", "Ann")}
    )
    assert (repeated.json()["imported"], repeated.json()["unchanged"]) == (0, 2)
    assert changes(sync(dav, after_import)) == ({}, [], after_import)
    assert dav.delete(BOOK + "cat.vcf").status_code == 204
    changed, gone, last = changes(sync(dav, after_import))
    assert (changed, gone) == ({}, [BOOK + "cat.vcf"])
    # An older token still answers everything since it.
    changed, gone, again = changes(sync(dav, token))
    assert (list(changed), sorted(gone), again) == (
        [BOOK + "ann.vcf"],
        [BOOK + "bob.vcf", BOOK + "cat.vcf"],
        last,
    )
    # address-data is answered when asked: the card as kept, byte for byte.
    full = dav.request(
        "REPORT",
        BOOK,
        content=sync_body(token, props=f"<c:address-data {CARDDAV_NS}/>"),
    )
    (ann,) = fromstring(full.content).iter(f"{C}address-data")
    assert ann.text == card("ann", "Ann")


def test_bad_and_pruned_tokens_are_refused_so_the_client_resyncs(
    dav: httpx.Client, live: LiveServer
) -> None:
    assert dav.put(BOOK + "ann.vcf", content=card("ann", "Ann"), headers=VCF).status_code == 201
    assert dav.put(BOOK + "bob.vcf", content=card("bob", "Bob"), headers=VCF).status_code == 201
    _, _, token = changes(sync(dav, ""))
    number = int(token.rsplit("-", 1)[1])
    other_calendar = re.sub(r"contacts\.\d+", "1", token)
    future = token.rsplit("-", 1)[0] + f"-{number + 5}"
    for bad in ("urn:nonsense", other_calendar, future, token.replace("contacts.", "contacts.9")):
        refused = sync(dav, bad)
        assert refused.status_code == 403, bad
        assert error_of(refused) == [f"{D}valid-sync-token"]
    # A limit smaller than the changes: refused, the server does not page (§3.6).
    limited = sync(dav, "", limit="<d:limit><d:nresults>1</d:nresults></d:limit>")
    assert limited.status_code == 507
    assert error_of(limited) == [f"{D}number-of-matches-within-limits"]

    # A deletion, then its tombstone pruned (as the retention job does past
    # [contacts] sync_history_days): the token from before it can no longer learn of it.
    assert dav.delete(BOOK + "ann.vcf").status_code == 204
    later = datetime.now(UTC) + timedelta(days=1)
    live.with_store(lambda s: s.prune_tombstones(calendars_before=None, contacts_before=later))
    stale = sync(dav, token)
    assert stale.status_code == 403
    assert error_of(stale) == [f"{D}valid-sync-token"]
    # A full sync gives a token that works again.
    changed, gone, fresh = changes(sync(dav, ""))
    assert (list(changed), gone) == ([BOOK + "bob.vcf"], [])
    assert sync(dav, fresh).status_code == 207
