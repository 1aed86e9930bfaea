"""vCard (RFC 6350 4.0, RFC 2426 3.0) as the address book reads and writes it: byte-exact
cards written, folding and escaping both ways, round trips, and malformed cards skipped and
counted without losing the good ones around them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pillarbox import vcard
from pillarbox.addressbook import checked_contact
from pillarbox.config import ContactsSection
from pillarbox.errors import UserError
from pillarbox.store.types import Contact
from pillarbox.transfer.vcf import with_imported_uids

UPDATED = datetime(2025, 3, 1, 9, 30, 5, tzinfo=UTC)


def test_a_card_is_written_byte_for_byte() -> None:
    contact = Contact(
        id=7,
        uid="urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1",
        display_name="Doe, Jane; Dr.",
        emails=("jane@example.com", "jd@work.example"),
        phones=("+1 555 0100",),
        organization="ACME\\Labs",
        note="first line\nsecond, with comma",
        updated=UPDATED,
    )
    assert vcard.format_card(contact) == (
        "BEGIN:VCARD\r\n"
        "VERSION:4.0\r\n"
        "UID:urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1\r\n"
        "FN:Doe\\, Jane\\; Dr.\r\n"
        "EMAIL:jane@example.com\r\n"
        "EMAIL:jd@work.example\r\n"
        "TEL:+1 555 0100\r\n"
        "ORG:ACME\\\\Labs\r\n"
        "NOTE:first line\\nsecond\\, with comma\r\n"
        "REV:20250301T093005Z\r\n"
        "END:VCARD\r\n"
    )


def test_a_vcard_3_card_adds_the_n_it_requires() -> None:
    contact = Contact(uid="u3", display_name="Jane van Doe", emails=("j@example.com",))
    assert vcard.format_card(replace(contact, updated=UPDATED), "3.0") == (
        "BEGIN:VCARD\r\n"
        "VERSION:3.0\r\n"
        "UID:u3\r\n"
        "FN:Jane van Doe\r\n"
        "N:Doe;Jane van;;;\r\n"
        "EMAIL:j@example.com\r\n"
        "REV:20250301T093005Z\r\n"
        "END:VCARD\r\n"
    )
    # No name (the address is the FN): an empty N; a name with a comma: escaped.
    nameless = vcard.format_card(Contact(uid="u", emails=("a@example.com",)), "3.0")
    assert "\r\nN:;;;;\r\n" in nameless
    assert "\r\nN:Jane;Doe\\,;;;\r\n" in vcard.format_card(
        replace(contact, display_name="Doe, Jane"), "3.0"
    )
    card = vcard.format_card(contact, "3.0")
    assert vcard.parse(card).contacts == (replace(contact, card=card),)


def test_without_a_name_the_first_address_is_the_fn() -> None:
    card = vcard.format_card(Contact(uid="u1", emails=("a@example.com",)))
    assert card == (
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:u1\r\nFN:a@example.com\r\n"
        "EMAIL:a@example.com\r\nEND:VCARD\r\n"
    )


def test_a_uid_a_uri_cannot_carry_is_written_as_text() -> None:
    card = vcard.format_card(Contact(uid="a,b;c", display_name="X"))
    assert "\r\nUID;VALUE=text:a\\,b\\;c\r\n" in card
    assert vcard.parse(card).contacts[0].uid == "a,b;c"


def test_long_lines_fold_at_75_octets_never_inside_a_utf8_sequence() -> None:
    note = "é" * 100  # two octets each: a fold must fall between characters
    card = vcard.format_card(Contact(uid="u", display_name="N", note=note))
    physical = card.encode().split(b"\r\n")
    assert max(len(line) for line in physical) <= vcard.MAX_LINE_OCTETS
    for line in physical:
        line.decode()  # each physical line is whole UTF-8
    note_lines = [line for line in physical if line.startswith((b"NOTE:", b" "))]
    assert note_lines[0] == b"NOTE:" + "é".encode() * 35  # 5 + 70 octets
    assert all(line.startswith(b" ") for line in note_lines[1:])
    assert vcard.parse(card).contacts[0].note == note


def test_fold_exact_boundary() -> None:
    assert vcard.fold("A" * 75) == "A" * 75 + "\r\n"
    assert vcard.fold("A" * 76) == "A" * 75 + "\r\n A\r\n"
    assert vcard.fold("A" * 150) == "A" * 75 + "\r\n " + "A" * 74 + "\r\n A\r\n"


def test_vcard_4_read_with_folding_escapes_groups_and_preference() -> None:
    text = (
        "BEGIN:VCARD\r\n"
        "VERSION:4.0\r\n"
        "UID:urn:uuid:1\r\n"
        "FN:Simon\r\n"
        "  Perreault\r\n"  # RFC 6350 §3.2: the fold removes CRLF and one space
        "N:Perreault;Simon;;;ing. jr,M.Sc.\r\n"
        "item1.EMAIL;TYPE=work:simon@example.com\r\n"
        "EMAIL;PREF=1:sp@home.example\r\n"
        'TEL;VALUE=uri;TYPE="voice,home":tel:+1-418-262-6501\r\n'
        "ORG:Viagenie;Research\\; Dev\r\n"
        "NOTE:line\\none\\, two\\\\three\\Nfour\r\n"
        'X-UNKNOWN;X-P="a:b":ignored\r\n'
        "END:VCARD\r\n"
    )
    parsed = vcard.parse(text)
    assert (parsed.skipped, parsed.reasons) == (0, ())
    assert parsed.contacts == (
        Contact(
            uid="urn:uuid:1",
            display_name="Simon Perreault",
            emails=("sp@home.example", "simon@example.com"),
            phones=("+1-418-262-6501",),
            organization="Viagenie, Research; Dev",
            note="line\none, two\\three\nfour",
            card=text,  # as received, folds and all
        ),
    )


def test_vcard_3_read_with_bare_lf_tab_folds_and_the_n_when_no_fn() -> None:
    text = (
        "begin:vcard\n"
        "version:3.0\n"
        "N:Stenerson;Derik;;Mr.;\n"
        "EMAIL;TYPE=INTERNET:d@example.com\n"
        "EMAIL;TYPE=INTERNET,pref:pref@\n"
        "\texample.com\n"
        "TEL;CELL:+1 (555) 0101\n"
        "end:vcard\n"
    )
    (contact,) = vcard.parse(text).contacts
    assert contact.display_name == "Mr. Derik Stenerson"
    assert contact.emails == ("pref@example.com", "d@example.com")
    assert contact.phones == ("+1 (555) 0101",)
    assert contact.uid == ""


def test_several_cards_and_bad_ones_skipped_and_counted() -> None:
    good = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Good {n}\r\nEND:VCARD\r\n"
    text = (
        good.format(n=1)
        + "BEGIN:VCARD\r\nVERSION:2.0\r\nFN:Old\r\nEND:VCARD\r\n"  # unsupported version
        + "BEGIN:VCARD\r\nVERSION:4.0\r\nthis is no content line\r\nEND:VCARD\r\n"
        + "BEGIN:VCARD\r\nVERSION:4.0\r\nNOTE:nothing to keep\r\nEND:VCARD\r\n"
        + "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Cut short\r\n"  # no END before the next BEGIN
        + good.format(n=2)
        + "BEGIN:VCARD\r\nFN:No version\r\nEND:VCARD\r\n"
        + "stray text between cards\r\n"
        + good.format(n=3)
        + "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Truncated\r\n"  # the file ends inside it
    )
    parsed = vcard.parse(text)
    assert [c.display_name for c in parsed.contacts] == ["Good 1", "Good 2", "Good 3"]
    assert parsed.skipped == 6
    assert parsed.reasons == (
        "card 2: unsupported VERSION 2.0",
        "card 3: not a content line: 'this is no content line'",
        "card 4: neither a name nor an email address",
        "card 5: no END:VCARD before the next card",
        "card 7: unsupported VERSION (none)",
        "card 9: no END:VCARD at the end of the file",
    )


def test_empty_and_garbage_files_hold_no_cards() -> None:
    assert vcard.parse("") == vcard.Parsed((), 0, ())
    assert vcard.parse("\x00\x01 not a vcard").contacts == ()


def test_a_whole_file_round_trips() -> None:
    contacts = [
        Contact(uid="urn:uuid:a", display_name="Ann", emails=("ann@example.com",)),
        Contact(
            uid="b",
            display_name="Zoë “Z” Müller",
            emails=("z@example.com", "z2@example.com"),
            phones=("+49 30 1234", "tel:1,2"),  # text, not a URI: kept as written
            organization="Grüne, GmbH",
            note="a\\b;c,d\n\ne" * 20,
        ),
    ]
    text = vcard.format_cards(contacts)
    assert text.count("BEGIN:VCARD\r\n") == 2
    parsed = vcard.parse(text).contacts
    assert tuple(replace(c, card=None) for c in parsed) == tuple(contacts)
    assert "".join(c.card or "" for c in parsed) == text  # each card as it was in the file


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n"),
    max_size=120,
)


@given(
    name=_text.map(lambda s: " ".join(s.split())).filter(bool),
    # No field holds a control but HTAB and line ends (checked_contact refuses them; a card
    # with one is skipped).
    note=st.text(
        alphabet=st.characters(
            blacklist_categories=("Cs",),
            blacklist_characters="".join(map(chr, [*range(9), 11, 12, *range(14, 32), 127]))
            + "\ufffe\uffff",
        ),
        max_size=300,
    ),
    organization=_text.map(lambda s: " ".join(s.replace(",", " ").split())),
    phones=st.lists(_text.map(str.strip).filter(bool)),
)
def test_parse_of_format_is_identity(
    name: str, note: str, organization: str, phones: list[str]
) -> None:
    note = note.replace("\r\n", "\n").replace("\r", "\n")  # written as \n, any line end
    contact = Contact(
        uid="urn:uuid:x",
        display_name=name,
        phones=tuple(phones),
        organization=organization,
        note=note,
    )
    card = vcard.format_card(contact)
    assert vcard.parse(card).contacts == (replace(contact, card=card),)


_FRAGMENTS = st.sampled_from(
    [
        "BEGIN:VCARD", "END:VCARD", "VERSION:4.0", "VERSION:3.0", "FN:", "N:", "EMAIL:",
        "TEL;VALUE=uri:tel:", "ORG:", "NOTE:", "UID:", "item1.", ";TYPE=pref", ";PREF=1",
        '"', ":", ";", ",", "\\", "\\n", "\\,", "\r\n", "\n", "\r\n ", "\n\t", " ", "é",
        "a@b.example", "x",
    ]
)  # fmt: skip


@given(st.lists(_FRAGMENTS, max_size=60).map("".join))
def test_any_text_parses_and_what_was_read_writes_back_stably(text: str) -> None:
    """No input raises; the cards read write out as a file that reads back to the same
    cards, none skipped, and writing those again changes nothing (a fixed point after one
    pass: e.g. FN is the address when a card had no name)."""
    first = vcard.parse(text)
    assert first.skipped == len(first.reasons)
    second = vcard.parse(vcard.format_cards(list(first.contacts)))
    assert second.skipped == 0 and len(second.contacts) == len(first.contacts)
    third = vcard.parse(vcard.format_cards(list(second.contacts)))
    assert third == second


# -- kept cards: edited in the webmail, exported as received ---------------------------------------

_PHOTO = "PHOTO;ENCODING=b;TYPE=JPEG:" + "/9j/4AAQSkZJRgABAQ" * 6
#: A phone's card (iOS writes 3.0): ADR, BDAY, a folded base64 PHOTO, grouped and typed
#: properties, an X- property — all of it must survive a webmail edit byte for byte.
RICH = (
    "BEGIN:VCARD\r\n"
    "VERSION:3.0\r\n"
    "PRODID:-//Apple Inc.//iPhone OS 17.0//EN\r\n"
    "N:Martin;Zoë;;;\r\n"
    "FN:Zoë Martin\r\n"
    "ORG:Far;Sales\r\n"
    "item1.EMAIL;type=INTERNET;type=HOME;type=pref:zoe@far.example\r\n"
    "item1.X-ABLabel:_$!<Home>!$_\r\n"
    "EMAIL;type=INTERNET;type=WORK:zm@work.example\r\n"
    "TEL;type=CELL;type=VOICE;type=pref:+33 6 12 34 56 78\r\n"
    "TEL;type=WORK;type=VOICE:+33 1 23 45 67 89\r\n"
    "ADR;type=HOME;type=pref:;;1 rue de la Paix;Lyon;;69001;France\r\n"
    "BDAY:1980-04-02\r\n"
    + vcard.fold(_PHOTO)
    + "X-SOCIALPROFILE;type=mastodon:https://example.social/@zoe\r\n"
    "UID:3F2504E0-4F89-11D3-9A0C-0305E82C3301\r\n"
    "END:VCARD\r\n"
)


def _kept(card: str) -> Contact:
    (contact,) = vcard.parse(card).contacts
    return contact


def test_a_rich_card_is_read_with_its_text_kept_byte_for_byte() -> None:
    assert "\r\n " in RICH  # the photo is folded
    contact = _kept(RICH)
    assert contact.card == RICH
    assert (contact.display_name, contact.emails, contact.phones, contact.organization) == (
        "Zoë Martin",
        ("zoe@far.example", "zm@work.example"),
        ("+33 6 12 34 56 78", "+33 1 23 45 67 89"),
        "Far, Sales",
    )
    # Exported as kept; written again from the fields only when there is no kept card.
    assert vcard.format_cards([contact, contact]) == RICH + RICH
    unended = RICH.removesuffix("\r\n")
    assert vcard.format_cards([replace(contact, card=unended)]) == RICH


def test_an_unchanged_edit_leaves_the_card_as_received() -> None:
    contact = _kept(RICH)
    assert vcard.revise(RICH, contact, replace(contact, card=None)) == RICH


def test_a_name_edit_rewrites_fn_and_n_only() -> None:
    contact = _kept(RICH)
    edited = vcard.revise(RICH, contact, replace(contact, display_name="Zoë Dupont-Martin"))
    assert edited == RICH.replace("N:Martin;Zoë;;;", "N:Dupont-Martin;Zoë;;;").replace(
        "FN:Zoë Martin", "FN:Zoë Dupont-Martin"
    )


def test_a_changed_number_keeps_the_type_of_the_line_it_replaces() -> None:
    contact = _kept(RICH)
    # The mobile number corrected, the work number kept, a third one added, the second
    # address removed, the organisation and a note changed.
    after = replace(
        contact,
        emails=("zoe@far.example",),
        phones=("+33 6 00 00 00 00", "+33 1 23 45 67 89", "+1 555 0100"),
        organization="Far",
        note="met in Lyon; twice",
    )
    assert vcard.revise(RICH, contact, after) == (
        RICH.replace(
            "TEL;type=CELL;type=VOICE;type=pref:+33 6 12 34 56 78\r\n",
            "TEL;type=CELL;type=VOICE;type=pref:+33 6 00 00 00 00\r\n",
        )
        .replace("EMAIL;type=INTERNET;type=WORK:zm@work.example\r\n", "")
        .replace(
            "TEL;type=WORK;type=VOICE:+33 1 23 45 67 89\r\n",
            "TEL;type=WORK;type=VOICE:+33 1 23 45 67 89\r\nTEL:+1 555 0100\r\n",
        )
        .replace("ORG:Far;Sales\r\n", "ORG:Far\r\n")
        .replace("END:VCARD\r\n", "NOTE:met in Lyon\\; twice\r\nEND:VCARD\r\n")
    )
    # Emptied: the properties go, the rest stays.
    emptied = vcard.revise(RICH, contact, replace(after, phones=(), organization="", note=""))
    assert "TEL" not in emptied and "ORG" not in emptied
    assert "ADR;type=HOME" in emptied and vcard.fold(_PHOTO) in emptied


def test_a_4_0_card_with_lf_ends_a_tel_uri_and_a_long_note() -> None:
    card = (
        "BEGIN:VCARD\n"
        "VERSION:4.0\n"
        "UID:urn:uuid:9\n"
        "FN:Ann\n"
        'TEL;VALUE=uri;TYPE="cell,voice":tel:+1-555-0100\n'
        'group.X-KEEP;X-P="a:b":value\n'
        "END:VCARD"
    )
    contact = _kept(card)
    after = replace(contact, phones=("+1-555-0199",), note="é" * 40)
    assert vcard.revise(card, contact, after) == (
        "BEGIN:VCARD\n"
        "VERSION:4.0\n"
        "UID:urn:uuid:9\n"
        "FN:Ann\n"
        'TEL;VALUE=uri;TYPE="cell,voice":tel:+1-555-0199\n'
        'group.X-KEEP;X-P="a:b":value\n'
        "NOTE:" + "é" * 35 + "\n"
        " " + "é" * 5 + "\n"
        "END:VCARD"
    )
    # A name given to a card without FN (one read from N) adds the FN; no N is made up.
    nameless = "BEGIN:VCARD\r\nVERSION:4.0\r\nEMAIL:a@example.com\r\nEND:VCARD\r\n"
    kept = _kept(nameless)
    assert vcard.revise(nameless, kept, replace(kept, display_name="Ann Lee")) == (
        "BEGIN:VCARD\r\nVERSION:4.0\r\nEMAIL:a@example.com\r\nFN:Ann Lee\r\nEND:VCARD\r\n"
    )


@pytest.mark.parametrize(
    ("typed", "written"),
    [
        ("+1 555 0199", 'TEL;TYPE="cell,voice":+1 555 0199'),  # blanks: no URI's, so text
        ("555-0199", 'TEL;TYPE="cell,voice":555-0199'),  # local: a URI would need a context
        ("+1 (555) 0199;x", 'TEL;TYPE="cell,voice":+1 (555) 0199\\;x'),
        ("+1.555.(0199)", 'TEL;VALUE=uri;TYPE="cell,voice":tel:+1.555.(0199)'),
    ],
)
def test_an_edited_tel_uri_keeps_the_number_as_typed(typed: str, written: str) -> None:
    """Found by fuzz: a number typed with blanks over a ``tel:`` URI came back with dashes
    ("+1 555 0199" written ``tel:+1-555-0199``, read back "+1-555-0199"). A number a URI can
    hold as typed stays a URI; another is written as text (RFC 6350 §6.4.1's default), the
    line's other parameters kept; either reads back as typed."""
    card = (
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Ann\r\n"
        'TEL;VALUE=uri;TYPE="cell,voice":tel:+1-555-0100\r\nEND:VCARD\r\n'
    )
    contact = _kept(card)
    revised = vcard.revise(card, contact, replace(contact, phones=(typed,)))
    assert revised == card.replace('TEL;VALUE=uri;TYPE="cell,voice":tel:+1-555-0100', written)
    assert _kept(revised).phones == (typed,)


def test_a_revised_card_reads_back_as_the_edit() -> None:
    contact = _kept(RICH)
    after = replace(
        contact,
        display_name="Zed",
        emails=("new@far.example", "zoe@far.example"),
        phones=("+44 20 7946 0000",),
        organization="Near",
        note="a\nb",
        card=None,
    )
    revised = vcard.revise(RICH, contact, after)
    read = replace(_kept(revised), card=None)
    # The order of addresses is the card's (a kept line keeps its place and its pref).
    assert read == replace(after, emails=("zoe@far.example", "new@far.example"))


def test_a_uid_is_added_before_the_end_of_a_card_without_one() -> None:
    card = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:No Uid\r\nBDAY:--0402\r\nEND:VCARD\r\n"
    assert vcard.with_uid(card, "a,b") == card.replace("END:", "UID;VALUE=text:a\\,b\r\nEND:")
    assert vcard.with_uid(card.replace("\r\n", "\n"), "u") == (
        "BEGIN:VCARD\nVERSION:4.0\nFN:No Uid\nBDAY:--0402\nUID:u\nEND:VCARD\n"
    )


_ADDRESSES = st.sampled_from(
    ["zoe@far.example", "zm@work.example", "new@far.example", "ZOE@far.example", "x@y.example"]
)
_NUMBERS = st.sampled_from(["+33 6 12 34 56 78", "+33 1 23 45 67 89", "+1 555 0100", "112"])


@given(
    name=_text.map(lambda s: " ".join(s.split())).filter(bool),
    emails=st.lists(_ADDRESSES, max_size=4, unique_by=str.casefold),
    phones=st.lists(_NUMBERS, max_size=4, unique=True),
    organization=_text.map(lambda s: " ".join(s.replace(",", " ").split())),
    note=_text.map(str.strip),
)
def test_any_edit_reads_back_as_made_and_keeps_every_other_line(
    name: str, emails: list[str], phones: list[str], organization: str, note: str
) -> None:
    before = _kept(RICH)
    after = replace(
        before,
        display_name=name,
        emails=tuple(emails),
        phones=tuple(phones),
        organization=organization,
        note=note,
        card=None,
    )
    revised = vcard.revise(RICH, before, after)
    read = _kept(revised)
    assert (read.display_name, read.organization, read.note) == (name, organization, note)
    # The same addresses and numbers (the card's order and preference, not the edit's).
    assert sorted(read.emails) == sorted(emails) and sorted(read.phones) == sorted(phones)
    for line in ("PRODID:", "item1.X-ABLabel:", "ADR;", "BDAY:", "X-SOCIALPROFILE;", "UID:"):
        kept = next(raw for raw in RICH.split("\r\n") if raw.startswith(line))
        assert kept + "\r\n" in revised
    assert vcard.fold(_PHOTO) in revised


def test_a_card_with_a_nul_is_skipped() -> None:
    """Found by fuzz/vcard.py: a NUL (no content line may hold one, RFC 6350 §3.3) was read
    and kept in the card's text, which PostgreSQL's text refuses: a CardDAV PUT answered 500
    and an import failed whole, instead of 400 and one card skipped."""
    good = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Good\r\nEND:VCARD\r\n"
    parsed = vcard.parse(good + "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:N\x00l\r\nEND:VCARD\r\n")
    assert [c.display_name for c in parsed.contacts] == ["Good"]
    assert parsed.reasons == ("card 2: the character '\\x00'",)


def test_a_card_with_a_control_character_is_skipped() -> None:
    """RFC 6350 §3.3: no control but HTAB in a content line. A form feed was kept in the
    card's text, and a CardDAV REPORT's address-data holding it was XML no client could
    read (every card of the address book unreadable in one sync)."""
    for bad in ("\x0c", "\x1b", "\uffff"):
        parsed = vcard.parse(f"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:a{bad}b\r\nEND:VCARD\r\n")
        assert parsed.contacts == () and parsed.reasons == (f"card 1: the character {bad!r}",)
    tabbed = vcard.parse("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:a\tb\r\nEND:VCARD\r\n")
    assert len(tabbed.contacts) == 1  # HTAB is a value character (WSP)


def test_a_uid_with_a_carriage_return_is_refused() -> None:
    """Found by fuzz/vcard.py: a bare CR inside a UID was kept, and written back (vCard text
    escapes only newlines, §3.4) as a newline: the exported card's UID was another one, and
    importing it again made a second contact."""
    [card] = vcard.parse("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:a\rb\r\nFN:X\r\nEND:VCARD\r\n").contacts
    assert card.uid == "a\rb"
    with pytest.raises(UserError, match="carriage return"):
        checked_contact(ContactsSection(), card)


UIDLESS = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:John Doe\r\nEMAIL:john@example.com\r\nEND:VCARD\r\n"
#: The UID :data:`UIDLESS` is given; pinned, as every contact imported so far holds one so made.
UIDLESS_UID = "urn:uuid:758ef865-955f-5c3e-98db-5f9d4f0a4d6e"


def test_a_card_without_a_uid_is_given_one_derived_from_its_text() -> None:
    """Outlook, Android and many exports write no UID: a random one per import made every
    re-import of the file double its contacts. The UID is a name-based UUID (RFC 9562 §5.5)
    of the card's text, written into the kept card (RFC 6352 §5.1)."""
    (john,) = with_imported_uids(vcard.parse(UIDLESS).contacts)
    assert john.uid == UIDLESS_UID
    assert john.card == UIDLESS.replace("END:", f"UID:{UIDLESS_UID}\r\nEND:")
    # Folds and line ends do not count: the same file through an editor is the same card.
    refolded = UIDLESS.replace("\r\n", "\n").replace("FN:John Doe", "FN:John\n  Doe")
    assert [c.uid for c in with_imported_uids(vcard.parse(refolded).contacts)] == [UIDLESS_UID]
    # Another card is another UID; a card's own UID is kept, its text untouched.
    other = UIDLESS.replace("john@", "jon@")
    owned = UIDLESS.replace("FN:", "UID:urn:uuid:7\r\nFN:")
    contacts = with_imported_uids(vcard.parse(other + owned).contacts)
    assert [c.uid for c in contacts] == [
        "urn:uuid:39469b19-df2a-5a48-9042-c2a1eb72a3df",
        "urn:uuid:7",
    ]
    assert contacts[1].card == owned


def test_identical_cards_without_a_uid_in_one_file_are_one_contact() -> None:
    parsed = vcard.parse(UIDLESS + UIDLESS.replace("\r\n", "\n") + UIDLESS)
    assert len(parsed.contacts) == 3
    assert [c.uid for c in with_imported_uids(parsed.contacts)] == [UIDLESS_UID]


def test_a_vcard_2_1_card_without_a_uid_is_given_the_same_one_each_time() -> None:
    """Outlook's export (2.1, windows-1252, no UID): the UID is of the 3.0 form kept, the
    same for the same card whatever its line ends."""
    card = (
        b"BEGIN:VCARD\r\nVERSION:2.1\r\nN:M\xfcller;Anna\r\n"
        b"EMAIL;INTERNET:a@example.de\r\nEND:VCARD\r\n"
    )
    uids = {
        c.uid
        for data in (card, card.replace(b"\r\n", b"\n"))
        for c in with_imported_uids(vcard.parse(vcard.decode(data)).contacts)
    }
    assert len(uids) == 1 and next(iter(uids)).startswith("urn:uuid:")


def test_a_contact_made_here_gets_a_random_uid() -> None:
    made = Contact(uid="", display_name="Ann", emails=("ann@example.com",))
    first, second = (checked_contact(ContactsSection(), made).uid for _ in range(2))
    assert first != second and first.startswith("urn:uuid:")
