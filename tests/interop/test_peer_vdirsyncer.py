"""The address book synchronised with a real CardDAV client: vdirsyncer (Debian's package)
keeps a local vdir (one .vcf file per contact) in step with the account over HTTPS, trusting
our self-signed certificate.

vdirsyncer finds the address book from the host alone (``/.well-known/carddav``, the
principal, the home set), then syncs both ways. Contacts are made, edited and deleted on each
side — on the server through the webmail's JSON API, locally by writing files — and after
each sync both sides hold the same contacts (names, addresses, UIDs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pillarbox import vcard
from pillarbox.testing.live import LiveServer
from pillarbox.testing.vcards import RICH_CARD as RICH
from pillarbox.testing.vdirsyncer import Vdirsyncer
from pillarbox.testing.webclient import WebSession

pytestmark = pytest.mark.listeners("http", "https")

ALICE = "alice@example.org"

#: (UID, name, addresses) of each contact: what both sides are compared on.
Book = set[tuple[str, str, tuple[str, ...]]]


class Contacts(Vdirsyncer):
    """vdirsyncer syncing the address book."""

    def __init__(self, root: Path, live: LiveServer) -> None:
        super().__init__(root, live, ALICE, "carddav", ".vcf")

    @property
    def collection(self) -> Path:
        return self.local / "contacts"

    def book(self) -> Book:
        return {
            (card.uid, card.display_name, card.emails)
            for path in self.collection.glob("*.vcf")
            for card in vcard.parse(path.read_text()).contacts
        }

    def file_of(self, uid: str) -> Path:
        return next(
            p
            for p in self.collection.glob("*.vcf")
            if vcard.parse(p.read_text()).contacts[0].uid == uid
        )


def server_book(web: WebSession) -> Book:
    return {
        (c["uid"], c["display_name"], tuple(c["emails"]))
        for c in web.api("GET", "/contacts").json()
    }


def local_card(uid: str, name: str, email: str) -> str:
    return (
        f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\n"
        f"EMAIL:{email}\r\nEND:VCARD\r\n"
    )


def test_vdirsyncer_syncs_both_ways(live: LiveServer, alice: WebSession, tmp_path: Path) -> None:
    client = Contacts(tmp_path, live)
    made = alice.api(
        "POST", "/contacts", {"display_name": "Web Made", "emails": ["web@example.net"]}
    )
    web_uid = made.json()["uid"]
    client.sync()
    assert client.book() == server_book(alice) == {(web_uid, "Web Made", ("web@example.net",))}

    # Made on each side.
    (client.collection / "phone-1.vcf").write_text(
        local_card("phone-1", "Phone Made", "phone@example.org")
    )
    alice.api("POST", "/contacts", {"display_name": "Second", "emails": ["2@example.net"]})
    client.sync()
    assert len(server_book(alice)) == 3
    assert client.book() == server_book(alice)

    # Edited on each side: the web's card locally, the phone's card on the server.
    path = client.file_of(web_uid)
    path.write_text(path.read_text().replace("Web Made", "Web Edited"))
    phone = next(c for c in alice.api("GET", "/contacts").json() if c["uid"] == "phone-1")
    edited = {"display_name": "Phone Edited", "emails": ["phone@example.org"]}
    assert alice.api("PUT", f"/contacts/{phone['id']}", edited).status_code == 200
    client.sync()
    # The card is stored as sent and the PUT answered its ETag: nothing to fetch back.
    assert "Copying" not in client.sync()
    names = {name for _, name, _ in server_book(alice)}
    assert names == {"Web Edited", "Phone Edited", "Second"}
    assert client.book() == server_book(alice)

    # Deleted on each side.
    client.file_of(web_uid).unlink()
    second = next(c for c in alice.api("GET", "/contacts").json() if c["display_name"] == "Second")
    assert alice.api("DELETE", f"/contacts/{second['id']}").status_code == 200
    client.sync()
    assert (
        client.book() == server_book(alice) == {("phone-1", "Phone Edited", ("phone@example.org",))}
    )
    assert "Copying" not in client.sync()  # nothing left to do
    assert "Deleting" not in client.sync()
    assert client.book() == server_book(alice)


def test_a_rich_card_syncs_there_and_back_unchanged(
    live: LiveServer, alice: WebSession, tmp_path: Path
) -> None:
    """A phone's card (ADR, BDAY, a folded PHOTO, types, a group, an X- property) made in
    the local vdir reaches the server as it is, comes back unchanged, and a rename in the
    webmail reaches the vdir with all of it kept."""
    client = Contacts(tmp_path, live)
    client.sync()
    path = client.collection / "rich-1.vcf"
    path.write_bytes(RICH.encode())
    client.sync()
    assert alice.api("GET", "/contacts/export").text == RICH
    assert "Copying" not in client.sync()
    assert path.read_bytes() == RICH.encode()

    (stored,) = alice.api("GET", "/contacts").json()
    renamed = {**stored, "display_name": "Zoë Dupont"}
    assert alice.api("PUT", f"/contacts/{stored['id']}", renamed).status_code == 200
    assert "Copying (updating) item rich-1 to local" in client.sync()
    assert path.read_bytes() == (
        RICH.replace("N:Martin;Zoë;;;", "N:Dupont;Zoë;;;")
        .replace("FN:Zoë Martin", "FN:Zoë Dupont")
        .encode()
    )
