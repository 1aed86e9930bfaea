"""CardDAV (RFC 6352) against the live server over HTTP and HTTPS, with httpx as the client:
discovery from ``/.well-known/carddav`` to the address book, PROPFIND, GET/PUT/DELETE with
ETags and their preconditions, addressbook-multiget and addressbook-query, bad cards and bad
XML, and who may reach what (wrong password, another account, app passwords, tokens)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote
from xml.etree.ElementTree import fromstring

import httpx
import pytest

from pillarbox import config as cfg
from pillarbox.store.types import Contact
from pillarbox.testing.davclient import dav_client, found, responses, text_of
from pillarbox.testing.live import TEST_PASSWORD, LiveServer, loopback_config
from pillarbox.testing.vcards import (
    ANDROID,
    ANDROID_AS_3_0,
    OUTLOOK_2016,
    OUTLOOK_AS_3_0,
)
from pillarbox.testing.vcards import RICH_CARD as RICH
from pillarbox.testing.webclient import WebSession

pytestmark = pytest.mark.listeners("http", "https")

ALICE = "alice@example.org"
BOOK = "/dav/addressbooks/alice@example.org/contacts/"
D = "{DAV:}"
C = "{urn:ietf:params:xml:ns:carddav}"
CS = "{http://calendarserver.org/ns/}"
PROPFIND = (
    '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"'
    ' xmlns:cs="http://calendarserver.org/ns/"><d:prop>{}</d:prop></d:propfind>'
)


def card(uid: str, name: str, email: str, version: str = "3.0") -> str:
    return (
        f"BEGIN:VCARD\r\nVERSION:{version}\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\n"
        f"EMAIL;TYPE=work:{email}\r\nADR:;;1 Rue;Paris;;;FR\r\nEND:VCARD\r\n"
    )


@pytest.fixture
def dav(live: LiveServer) -> Iterator[httpx.Client]:
    """alice's CardDAV client over HTTPS, with her account password (no second factor)."""
    with dav_client(live, ALICE) as client:
        yield client


def propfind(client: httpx.Client, path: str, props: str, depth: str = "0") -> httpx.Response:
    return client.request(
        "PROPFIND",
        path,
        content=PROPFIND.format(props),
        headers={"depth": depth, "content-type": "application/xml"},
    )


def test_discovery_from_the_well_known_url_to_the_address_book(dav: httpx.Client) -> None:
    redirect = dav.request("PROPFIND", "/.well-known/carddav", headers={"depth": "0"})
    assert (redirect.status_code, redirect.headers["location"]) == (301, "/dav/")
    root = responses(propfind(dav, "/dav/", "<d:current-user-principal/>"))
    principal = found(root["/dav/"], f"{D}current-user-principal")
    assert principal is not None
    assert principal.findtext(f"{D}href") == "/dav/principals/alice@example.org/"
    me = responses(propfind(dav, "/dav/principals/alice@example.org/", "<c:addressbook-home-set/>"))
    home = found(me["/dav/principals/alice@example.org/"], f"{C}addressbook-home-set")
    assert home is not None
    assert home.findtext(f"{D}href") == "/dav/addressbooks/alice@example.org/"
    listed = responses(
        propfind(
            dav,
            "/dav/addressbooks/alice@example.org/",
            "<d:resourcetype/><d:displayname/><d:sync-token/>",
            depth="1",
        )
    )
    assert list(listed) == ["/dav/addressbooks/alice@example.org/", BOOK]
    book = listed[BOOK]
    kinds = found(book, f"{D}resourcetype")
    assert kinds is not None and [k.tag for k in kinds] == [f"{D}collection", f"{C}addressbook"]
    assert text_of(book, f"{D}displayname") == "Contacts"
    # RFC 6578 §4: the book's sync token (account and change counter; no change yet).
    assert re.fullmatch(r"urn:x-pillarbox:sync:contacts\.\d+-0", text_of(book, f"{D}sync-token"))
    options = dav.options(BOOK)
    assert options.headers["dav"] == "1, 3, addressbook, calendar-access, calendar-auto-schedule"
    assert "REPORT" in options.headers["allow"]
    assert dav.request("PROPFIND", BOOK).status_code == 403  # no Depth: infinity
    not_here = dav.delete(BOOK)
    assert (not_here.status_code, not_here.headers["allow"]) == (
        405,
        "OPTIONS, GET, HEAD, PROPFIND, REPORT",
    )


def test_book_properties_clients_ask_for(dav: httpx.Client) -> None:
    book = responses(
        propfind(
            dav,
            BOOK,
            "<cs:getctag/><c:supported-address-data/><d:current-user-privilege-set/>"
            "<d:supported-report-set/><c:max-resource-size/><d:getetag/>",
        )
    )[BOOK]
    ctag = found(book, f"{CS}getctag")
    assert ctag is not None and re.fullmatch(r'"\d+-0"', ctag.text or "")
    types = found(book, f"{C}supported-address-data")
    assert types is not None
    assert [t.get("version") for t in types] == ["3.0", "4.0"]
    privileges = found(book, f"{D}current-user-privilege-set")
    assert privileges is not None
    assert {p[0].tag for p in privileges} >= {f"{D}read", f"{D}write", f"{D}bind", f"{D}unbind"}
    reports = found(book, f"{D}supported-report-set")
    assert reports is not None
    assert [r[0][0].tag for r in reports] == [
        f"{C}addressbook-multiget",
        f"{C}addressbook-query",
        f"{D}sync-collection",
    ]
    assert text_of(book, f"{C}max-resource-size") == str(1024 * 1024)


def test_put_get_delete_with_etags_and_preconditions(dav: httpx.Client, live: LiveServer) -> None:
    href = BOOK + "zoe-1.vcf"
    before = found(responses(propfind(dav, BOOK, "<cs:getctag/>"))[BOOK], f"{CS}getctag")
    vcf = {"content-type": "text/vcard; charset=utf-8"}
    sent = card("zoe-1", "Zoë Martin", "Zoe@Example.com")
    created = dav.put(href, content=sent, headers=vcf)
    assert created.status_code == 201
    got = dav.get(href)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/vcard")
    # Stored as sent, so the PUT gave the ETag (RFC 6352 §6.3.2.3) and the GET serves the card
    # byte for byte, in the version it was sent in even to a client asking for the other.
    tag = got.headers["etag"]
    assert (got.text, created.headers["etag"]) == (sent, tag)
    v4 = dav.get(href, headers={"accept": "text/vcard; version=4.0"})
    assert (v4.text, v4.headers["etag"]) == (sent, tag)
    assert dav.head(href).headers["etag"] == tag
    listed = responses(propfind(dav, BOOK, "<d:getetag/><cs:getctag/>", depth="1"))
    assert text_of(listed[href], f"{D}getetag") == tag
    after = found(listed[BOOK], f"{CS}getctag")
    assert after is not None and before is not None and after.text != before.text

    # The web's Contacts see it; a change there changes the ETag.
    contacts = live.with_store(lambda s: s.list_contacts(live_account_id(live)))
    assert [c.uid for c in contacts] == ["zoe-1"]

    again = card("zoe-1", "Zoë M.", "zoe@example.com")
    assert dav.put(href, content=again, headers={**vcf, "if-none-match": "*"}).status_code == 412
    assert dav.put(href, content=again, headers={**vcf, "if-match": '"stale"'}).status_code == 412
    replaced = dav.put(href, content=again, headers={**vcf, "if-match": tag})
    assert replaced.status_code == 204
    new_tag = dav.get(href).headers["etag"]
    assert new_tag != tag
    fresh = BOOK + "ann.vcf"
    assert (
        dav.put(
            fresh, content=card("ann", "Ann", "a@example.net"), headers={**vcf, "if-match": "*"}
        ).status_code
        == 412
    )  # If-Match: * on nothing
    assert dav.delete(href, headers={"if-match": tag}).status_code == 412
    assert dav.delete(href, headers={"if-match": new_tag}).status_code == 204
    assert dav.get(href).status_code == 404
    assert dav.delete(href).status_code == 404

    # A contact made in the webmail has no kept card: it is written, 3.0 (with the N that
    # 3.0 requires) unless 4.0 is asked for, under one ETag.
    made = Contact(uid="web-1", display_name="Zoë Martin", emails=("z@example.com",))
    live.with_store(
        lambda s: s.save_contacts(live_account_id(live), [made], now=datetime.now(UTC), limit=9)
    )
    v3 = dav.get(BOOK + "web-1.vcf")
    assert "VERSION:3.0\r\n" in v3.text and "N:Martin;Zoë;;;\r\n" in v3.text
    v4 = dav.get(BOOK + "web-1.vcf", headers={"accept": "text/vcard; version=4.0"})
    assert "VERSION:4.0\r\n" in v4.text and v4.headers["etag"] == v3.headers["etag"]


def test_a_rich_card_round_trips_and_survives_a_webmail_edit(
    dav: httpx.Client, alice: WebSession
) -> None:
    href = BOOK + "rich-1.vcf"
    put = dav.put(href, content=RICH.encode(), headers={"content-type": "text/vcard"})
    assert put.status_code == 201
    got = dav.get(href)
    assert got.content == RICH.encode() and got.headers["etag"] == put.headers["etag"]
    # The webmail renames the contact and corrects the work number: FN, N and that TEL line
    # change (the number keeps its TYPE), everything else stays byte for byte.
    (stored,) = alice.api("GET", "/contacts").json()
    edited = {
        **stored,
        "display_name": "Zoë Dupont",
        "phones": ["+33 6 12 34 56 78", "+33 1 00 00 00 00"],
    }
    assert alice.api("PUT", f"/contacts/{stored['id']}", edited).status_code == 200
    after = dav.get(href)
    assert after.text == (
        RICH.replace("N:Martin;Zoë;;;", "N:Dupont;Zoë;;;")
        .replace("FN:Zoë Martin", "FN:Zoë Dupont")
        .replace("WORK;type=VOICE:+33 1 23 45 67 89", "WORK;type=VOICE:+33 1 00 00 00 00")
    )
    assert after.headers["etag"] != got.headers["etag"]
    # The export writes it as kept.
    assert alice.api("GET", "/contacts/export").text == after.text
    # The API's add under the card's UID replaces the fields, and still only those lines.
    added = {"uid": "rich-1", "display_name": "Zoë Dupont", "emails": ["zoe@far.example"]}
    assert alice.api("POST", "/contacts", added).status_code == 201
    assert dav.get(href).text == after.text.replace(
        "TEL;type=CELL;type=VOICE;type=pref:+33 6 12 34 56 78\r\n", ""
    ).replace("TEL;type=WORK;type=VOICE:+33 1 00 00 00 00\r\n", "")
    # A card changed on the way (a byte-order mark dropped) is stored but answers no ETag.
    bom = dav.put(href, content=b"\xef\xbb\xbf" + RICH.encode(), headers={"if-match": "*"})
    assert bom.status_code == 204 and "etag" not in bom.headers
    assert dav.get(href).content == RICH.encode()


VCF = "text/vcard; charset=utf-8"


def test_a_vcard_2_1_file_imported_in_the_webmail_is_served_as_3_0(
    dav: httpx.Client, alice: WebSession
) -> None:
    """Outlook's "Save as vCard" (2.1, windows-1252) and an Android export (2.1, UTF-8
    quoted-printable) imported on the Contacts page, as a user moving their contacts does;
    a CardDAV client then gets each as the vCard 3.0 card kept, every property there."""
    data = OUTLOOK_2016.encode("cp1252") + ANDROID.encode()
    imported = alice.client.post(
        "/contacts/import",
        data={"csrf": alice.csrf("/contacts")},
        files={"file": ("contacts.vcf", data, "text/x-vcard")},
    )
    assert imported.status_code == 303
    assert imported.headers["location"] == "/contacts?imported=2&unchanged=0&skipped=0"
    listed = {c["display_name"]: c for c in alice.api("GET", "/contacts").json()}
    assert listed["Jürgen Müller"]["emails"] == [
        "juergen.mueller@acme.example",
        "jm@home.example",
    ]
    assert listed["Zoë Škoda"]["note"] == "Příliš žluťoučký kůň\n€ 5; a\\b"
    served: list[str] = []
    for name, kept in (("Jürgen Müller", OUTLOOK_AS_3_0), ("Zoë Škoda", ANDROID_AS_3_0)):
        uid = listed[name]["uid"]  # neither card had one: given one, in the card too
        href = BOOK + quote(uid, safe="") + ".vcf"
        got = dav.get(href)
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/vcard")
        assert got.text == kept.replace("END:VCARD", f"UID:{uid}\r\nEND:VCARD")
        served.append(got.text)
    # The address book's listing carries them as address-data too.
    sync = dav.request(
        "REPORT",
        BOOK,
        content=(
            '<d:sync-collection xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav">'
            "<d:sync-token/><d:sync-level>1</d:sync-level>"
            "<d:prop><d:getetag/><c:address-data/></d:prop></d:sync-collection>"
        ),
    )
    cards = sorted(text_of(r, f"{C}address-data") for r in responses(sync).values())
    assert cards == sorted(served)
    # The export is those cards; imported again it changes nothing (same UIDs, same cards):
    # a client sees the book's ctag and every ETag as they were, nothing to fetch again.
    exported = alice.api("GET", "/contacts/export").text
    assert exported == "".join(served) or exported == "".join(reversed(served))
    before = propfind(dav, BOOK, "<d:getetag/><cs:getctag/>", depth="1").text
    again = alice.api("POST", "/contacts/import", {"vcard": exported}).json()
    assert again == {"imported": 0, "unchanged": 2, "skipped": 0, "reasons": []}
    assert propfind(dav, BOOK, "<d:getetag/><cs:getctag/>", depth="1").text == before
    assert [dav.get(BOOK + quote(c["uid"], safe="") + ".vcf").text for c in listed.values()] in (
        served,
        served[::-1],
    )
    # A client PUTting a 2.1 card (UTF-8, as every PUT) gets it stored as 3.0, and no ETag:
    # what is stored is not what it sent (RFC 6352 §6.3.2.3).
    put = dav.put(BOOK + "phone.vcf", content=ANDROID.encode(), headers={"content-type": VCF})
    assert put.status_code == 201 and "etag" not in put.headers
    kept = ANDROID_AS_3_0.replace("END:VCARD", "UID:phone\r\nEND:VCARD")
    assert dav.get(BOOK + "phone.vcf").text == kept


def live_account_id(live: LiveServer) -> int:
    account = live.with_store(lambda s: s.get_account(ALICE))
    assert account is not None
    return account.id


def test_a_card_without_uid_takes_its_name_and_a_mismatched_one_is_refused(
    dav: httpx.Client,
) -> None:
    vcf = {"content-type": "text/vcard"}
    bare = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:No Uid\r\nEND:VCARD\r\n"
    named = dav.put(BOOK + "named.vcf", content=bare, headers=vcf)
    assert named.status_code == 201 and "etag" not in named.headers  # a UID was added
    assert dav.get(BOOK + "named.vcf").text == bare.replace("END:", "UID:named\r\nEND:")
    other = dav.put(BOOK + "x.vcf", content=card("y", "Y", "y@example.net"), headers=vcf)
    assert other.status_code == 403
    conflict = fromstring(other.content).find(f"{C}no-uid-conflict/{D}href")
    assert conflict is not None and conflict.text == BOOK + "y.vcf"
    # A UID with characters a path escapes lives at its percent-encoded name.
    odd = "urn:uuid:a/b c"
    put = dav.put(BOOK + "urn%3Auuid%3Aa%2Fb%20c.vcf", content=card(odd, "Odd", "o@e.net"))
    assert put.status_code == 201, put.text
    listed = responses(propfind(dav, BOOK, "<d:getetag/>", depth="1"))
    assert BOOK + "urn%3Auuid%3Aa%2Fb%20c.vcf" in listed


def test_bad_cards_and_bad_xml(dav: httpx.Client) -> None:
    href = BOOK + "bad.vcf"
    not_vcard = dav.put(href, content="hello", headers={"content-type": "text/plain"})
    assert not_vcard.status_code == 415
    assert fromstring(not_vcard.content).find(f"{C}supported-address-data") is not None
    for body, reason in (
        ("BEGIN:VCARD\r\nVERSION:5.0\r\nFN:New\r\nEND:VCARD\r\n", "unsupported VERSION 5.0"),
        (
            "BEGIN:VCARD\r\nVERSION:2.1\r\nFN;CHARSET=X-UNKNOWN:Old\r\nEND:VCARD\r\n",
            "unknown CHARSET 'X-UNKNOWN'",
        ),
        ("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Open\r\n", "no END:VCARD"),
        (card("bad", "A", "x") + card("bad", "B", "y@e.net"), "2 cards; expected one"),
        (card("bad", "A", "not an address"), "not a valid address: not an address"),
    ):
        refused = dav.put(href, content=body, headers={"content-type": "text/vcard"})
        assert refused.status_code == 400, body
        valid = fromstring(refused.content).find(f"{C}valid-address-data")
        assert valid is not None and reason in (valid.text or ""), refused.text
    assert dav.get(href).status_code == 404
    too_large = dav.put(
        href, content="x" * (1024 * 1024 + 1), headers={"content-type": "text/vcard"}
    )
    assert too_large.status_code == 413
    for body in (
        b"<d:propfind xmlns:d='DAV:'><d:prop>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<d:propfind xmlns:d='DAV:'><d:prop><d:displayname>&e;</d:displayname></d:prop>"
        b"</d:propfind>",
        b"<d:propfind xmlns:d='DAV:'>" + b"<a>" * 40 + b"</a>" * 40 + b"</d:propfind>",
        b"<other/>",
    ):
        malformed = dav.request("PROPFIND", BOOK, content=body, headers={"depth": "0"})
        assert malformed.status_code == 400, body
    other = dav.request("REPORT", BOOK, content=b'<d:expand-property xmlns:d="DAV:"/>')
    assert other.status_code == 403
    assert fromstring(other.content).find(f"{D}supported-report") is not None


def test_multiget_and_query(dav: httpx.Client) -> None:
    vcf = {"content-type": "text/vcard"}
    for uid, name, email in (
        ("a", "Anne Dupont", "anne@example.org"),
        ("b", "Bruno Faure", "bruno@example.net"),
        ("c", "Chloé Roux", "chloe@example.org"),
    ):
        assert dav.put(BOOK + f"{uid}.vcf", content=card(uid, name, email), headers=vcf).is_success
    multiget = dav.request(
        "REPORT",
        BOOK,
        headers={"depth": "1"},
        content=(
            '<c:addressbook-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav">'
            '<d:prop><d:getetag/><c:address-data version="4.0"/></d:prop>'
            f"<d:href>{BOOK}a.vcf</d:href><d:href>https://127.0.0.1{BOOK}c.vcf</d:href>"
            f"<d:href>{BOOK}gone.vcf</d:href>"
            "<d:href>/dav/addressbooks/bob@example.org/contacts/a.vcf</d:href>"
            "</c:addressbook-multiget>"
        ),
    )
    got = responses(multiget)
    # A found card answers with its path, as a PROPFIND lists it; the others as asked.
    assert list(got) == [
        BOOK + "a.vcf",
        BOOK + "c.vcf",
        BOOK + "gone.vcf",
        "/dav/addressbooks/bob@example.org/contacts/a.vcf",
    ]
    data = found(got[BOOK + "a.vcf"], f"{C}address-data")
    # The card as it was put (3.0, its CRLFs carried as &#13;), though 4.0 was asked for.
    assert data is not None and data.text == card("a", "Anne Dupont", "anne@example.org")
    assert text_of(got[BOOK + "a.vcf"], f"{D}getetag") == dav.get(BOOK + "a.vcf").headers["etag"]
    for href in (BOOK + "gone.vcf", "/dav/addressbooks/bob@example.org/contacts/a.vcf"):
        assert "404" in got[href].findtext(f"{D}status", "")

    def query(filters: str, test: str = "anyof", limit: str = "") -> list[str]:
        response = dav.request(
            "REPORT",
            BOOK,
            headers={"depth": "1"},
            content=(
                '<c:addressbook-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav">'
                f'<d:prop><d:getetag/><c:address-data/></d:prop><c:filter test="{test}">'
                f"{filters}</c:filter>{limit}</c:addressbook-query>"
            ),
        )
        found_cards = responses(response)
        for element in found_cards.values():
            data = found(element, f"{C}address-data")
            assert data is not None and "VERSION:3.0" in (data.text or "")
        return sorted(found_cards)

    by_email = (
        '<c:prop-filter name="EMAIL"><c:text-match>EXAMPLE.ORG</c:text-match></c:prop-filter>'
    )
    assert query(by_email) == [BOOK + "a.vcf", BOOK + "c.vcf"]
    by_name = (
        '<c:prop-filter name="FN"><c:text-match match-type="starts-with">chlo</c:text-match>'
        "</c:prop-filter>"
    )
    assert query(by_email + by_name, "allof") == [BOOK + "c.vcf"]
    assert query(by_email + by_name) == [BOOK + "a.vcf", BOOK + "c.vcf"]
    negated = (
        '<c:prop-filter name="FN"><c:text-match negate-condition="yes">Anne</c:text-match>'
        "</c:prop-filter>"
    )
    assert query(negated) == [BOOK + "b.vcf", BOOK + "c.vcf"]
    assert query('<c:prop-filter name="ORG"><c:is-not-defined/></c:prop-filter>') == [
        BOOK + "a.vcf",
        BOOK + "b.vcf",
        BOOK + "c.vcf",
    ]
    assert len(query("", limit="<c:limit><c:nresults>2</c:nresults></c:limit>")) == 2


def test_who_may_reach_what(live: LiveServer, dav: httpx.Client) -> None:
    base = f"http://127.0.0.1:{live.port('http')}"
    anonymous = httpx.request("PROPFIND", base + BOOK, headers={"depth": "0"})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith('Basic realm="Pillarbox CardDAV"')
    wrong = httpx.request(
        "PROPFIND", base + BOOK, headers={"depth": "0"}, auth=(ALICE, "not the password")
    )
    assert wrong.status_code == 401
    # A session cookie is no credential here (no CSRF exposure): the browser's login is not used.
    browser = WebSession(live)
    try:
        assert browser.login(ALICE).status_code == 303
        assert browser.client.request("PROPFIND", BOOK, headers={"depth": "0"}).status_code == 401
        page = browser.post("/settings/app-password", {"label": "phone"})
        app_password = re.search(r'id="new-secret">([^<]+)<', page.text)
        page = browser.post("/settings/api-token", {"label": "script"})
        token = re.search(r'id="new-secret">([^<]+)<', page.text)
    finally:
        browser.close()
    assert app_password and token
    with_app_password = httpx.request(
        "PROPFIND", base + BOOK, headers={"depth": "0"}, auth=(ALICE, app_password.group(1))
    )
    assert with_app_password.status_code == 207
    bearer = {"authorization": f"Bearer {token.group(1)}", "depth": "0"}
    assert httpx.request("PROPFIND", base + BOOK, headers=bearer).status_code == 207
    # bob's address book, or anyone else's, is not found — alike.
    bob_book = "/dav/addressbooks/bob@example.org/contacts/"
    assert dav.request("PROPFIND", bob_book, headers={"depth": "0"}).status_code == 404
    assert dav.request("PROPFIND", "/dav/principals/nobody@example.org/").status_code == 404
    bob_card = bob_book + "x.vcf"
    assert dav.put(bob_card, content=card("x", "X", "x@e.net")).status_code == 404
    assert dav.get("/dav/elsewhere/").status_code == 404
    with httpx.Client(base_url=base, auth=("bob@example.org", TEST_PASSWORD)) as bob:
        put = bob.put(bob_card, content=card("x", "X", "x@e.net"), headers={"depth": "0"})
        assert put.status_code == 201
        assert bob.get(BOOK + "x.vcf").status_code == 404
    assert dav.get(BOOK + "x.vcf").status_code == 404

    # With two-factor login the password is refused (no code can be asked); the app password
    # still syncs. The authenticator looks at the enrolment only, so a stored one is enough.
    account_id = live_account_id(live)
    live.with_store(lambda s: s.enable_totp(account_id, "sealed", ["d1"]))
    assert dav.request("PROPFIND", BOOK, headers={"depth": "0"}).status_code == 401
    with_app_password = httpx.request(
        "PROPFIND", base + BOOK, headers={"depth": "0"}, auth=(ALICE, app_password.group(1))
    )
    assert with_app_password.status_code == 207


def test_contacts_limits(tmp_path: Path) -> None:
    limits = cfg.ContactsSection(max_per_account=2, max_emails=1, max_import_bytes=1024)
    config = loopback_config(tmp_path / "data", only=["http"], contacts=limits)
    with LiveServer(config) as live:
        live.add_domain("example.org")
        live.add_account(ALICE, TEST_PASSWORD)
        base = f"http://127.0.0.1:{live.port('http')}"
        with httpx.Client(base_url=base, auth=(ALICE, TEST_PASSWORD)) as dav:
            size = text_of(
                responses(propfind(dav, BOOK, "<c:max-resource-size/>"))[BOOK],
                f"{C}max-resource-size",
            )
            assert size == "1024"
            vcf = {"content-type": "text/vcard"}
            for uid in ("one", "two"):
                put = dav.put(
                    BOOK + f"{uid}.vcf", content=card(uid, uid, f"{uid}@e.net"), headers=vcf
                )
                assert put.status_code == 201
            full = dav.put(BOOK + "three.vcf", content=card("three", "T", "t@e.net"), headers=vcf)
            assert full.status_code == 507 and "at most 2 contacts" in full.text
            # Replacing one of them is no new contact.
            again = dav.put(BOOK + "one.vcf", content=card("one", "Uno", "one@e.net"), headers=vcf)
            assert again.status_code == 204
            two_addresses = card("one", "Uno", "one@e.net").replace(
                "END:VCARD", "EMAIL:uno@e.net\r\nEND:VCARD"
            )
            refused = dav.put(BOOK + "one.vcf", content=two_addresses, headers=vcf)
            assert refused.status_code == 400
            assert "at most 1 email addresses" in refused.text
            large = card("one", "Uno", "one@e.net").replace(
                "END:VCARD", "NOTE:" + "x" * 1024 + "\r\nEND:VCARD"
            )
            assert dav.put(BOOK + "one.vcf", content=large, headers=vcf).status_code == 413
            assert "Uno" in dav.get(BOOK + "one.vcf").text
