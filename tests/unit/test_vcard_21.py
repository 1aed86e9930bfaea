"""vCard 2.1 (the versit Consortium's 1996 specification, no RFC) read by ``pillarbox.vcard``
and kept as vCard 3.0 (RFC 2426): cards written the way Outlook 2016 and an Android phone
export them, quoted-printable with soft line breaks, CHARSET (windows-1252, UTF-8, none, an
unknown one), BASE64 photos, 2.1's folding and escaping, and a file mixing versions."""

from __future__ import annotations

import binascii

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pillarbox import vcard
from pillarbox.addressbook import checked_contact
from pillarbox.config import ContactsSection
from pillarbox.store.types import Contact
from pillarbox.testing.vcards import ANDROID, ANDROID_AS_3_0, OUTLOOK_2016, OUTLOOK_AS_3_0


def one(data: bytes) -> Contact:
    parsed = vcard.parse(vcard.decode(data))
    assert parsed.skipped == 0, parsed.reasons
    (contact,) = parsed.contacts
    return contact


def card_21(*lines: str) -> bytes:
    return ("BEGIN:VCARD\r\nVERSION:2.1\r\n" + "".join(f"{x}\r\n" for x in lines)).encode(
        "utf-8", "surrogateescape"
    ) + b"END:VCARD\r\n"


def test_an_outlook_2016_card_in_windows_1252_is_kept_as_vcard_3_0() -> None:
    contact = one(OUTLOOK_2016.encode("cp1252"))
    assert contact.card == OUTLOOK_AS_3_0
    assert contact == Contact(
        uid="",
        display_name="Jürgen Müller",
        emails=("juergen.mueller@acme.example", "jm@home.example"),
        phones=("+49 30 1234567", "+49 170 5555555"),
        organization="Acme GmbH, Vertrieb",
        # Quoted-printable over three lines (a soft break continuing with a blank), in
        # windows-1252 (0x80 the euro sign); 2.1's ";" and "\" literal in a text value.
        note="Kunde seit 2012; Ablage: C:\\Kunden\nGrüße an Fr. Müller, Rabatt 5 € äöü"
        " (siehe Vertrag)",
        card=OUTLOOK_AS_3_0,
    )


def test_an_android_card_in_utf_8_quoted_printable_is_kept_as_vcard_3_0() -> None:
    contact = one(ANDROID.encode())
    assert contact.card == ANDROID_AS_3_0
    assert (contact.display_name, contact.emails, contact.phones) == (
        "Zoë Škoda",
        ("zoe@example.cz",),
        ("+420 601 234 567", "+420 2 2123 4567"),  # TYPE=PREF first
    )
    # "\;" is a semicolon inside a component (2.1 §2.3), a backslash before anything else
    # is itself.
    assert contact.organization == "Pekárna; Novák, Výroba"
    assert contact.note == "Příliš žluťoučký kůň\n€ 5; a\\b"


@pytest.mark.parametrize("text", [OUTLOOK_AS_3_0, ANDROID_AS_3_0])
def test_the_kept_card_reads_back_alone_to_the_same_contact(text: str) -> None:
    """What CardDAV serves and the export writes is the contact: read again (an export
    imported), nothing changes, and it is now kept byte for byte."""
    again = one(text.encode())
    assert again.card == text
    source = OUTLOOK_2016.encode("cp1252") if "Müller" in text else ANDROID.encode()
    assert again == one(source)


def test_a_file_mixing_versions_and_bad_charsets_keeps_every_good_card() -> None:
    good_4 = b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Four\r\nEND:VCARD\r\n"
    data = (
        OUTLOOK_2016.encode("cp1252")
        + card_21("FN;CHARSET=X-KLINGON:Qapla'")
        + good_4
        + card_21("FN;CHARSET=windows-1252;ENCODING=QUOTED-PRINTABLE:=81 undefined")
        + card_21("FN;CHARSET=base64:Zm9v")  # a codec, but no text encoding
        + "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Jürgen\r\nEND:VCARD\r\n".encode("latin-1")
        + ANDROID.encode()
        + card_21("FN:Photo", "PHOTO;ENCODING=BASE64;JPEG:not base64!", "")
        + card_21("FN:Photo", "PHOTO;ENCODING=BASE64;JPEG:/9j/4AAQSkZJRgABAQ\udcb8=", "")
        + card_21("FN;ENCODING=UUENCODE:Zo=C3=AB")
        + card_21("FN;CHARSET=UTF-8\x00:Zo=C3=AB")
        + card_21("FN;CHAR\udccfET=Windows-1252:J\udcfcrgen")
    )
    parsed = vcard.parse(vcard.decode(data))
    assert [c.display_name for c in parsed.contacts] == ["Jürgen Müller", "Four", "Zoë Škoda"]
    assert parsed.reasons == (
        "card 2: unknown CHARSET 'X-KLINGON'",
        "card 4: text that is not 'windows-1252'",
        "card 5: unknown CHARSET 'base64'",
        "card 6: octets that are not UTF-8",  # 3.0 has no CHARSET: not guessed
        "card 8: PHOTO: not base64",
        "card 9: PHOTO: not base64",  # found by fuzz: an octet not ASCII raised
        "card 10: FN: unknown ENCODING 'UUENCODE'",
        "card 11: unknown CHARSET 'UTF-8\\x00'",  # found by fuzz: the codec lookup raised
        "card 12: octets that are not UTF-8",  # found by fuzz: kept in a parameter, they raised
    )
    assert parsed.skipped == 9


def test_without_a_charset_utf_8_else_windows_1252() -> None:
    assert one(card_21("FN:Zoë")).display_name == "Zoë"
    assert one(card_21("FN:Zo\udceb")).display_name == "Zoë"  # the octet 0xEB
    assert one(card_21("FN;ENCODING=QUOTED-PRINTABLE:Zo=C3=AB")).display_name == "Zoë"
    assert one(card_21("FN;QUOTED-PRINTABLE:Zo=EB")).display_name == "Zoë"  # bare encoding
    latin1 = one(card_21("FN;CHARSET=ISO-8859-1:Zo\udceb"))
    assert latin1.display_name == "Zoë" and latin1.card is not None
    assert "FN:Zoë\r\n" in latin1.card and "CHARSET" not in latin1.card
    # Octets that are UTF-8 are UTF-8 whatever the label (a writer's mistake, or the JSON
    # API's text); in quoted-printable, the label decides.
    assert one(card_21("FN;CHARSET=ISO-8859-1:Zoë")).display_name == "Zoë"
    assert one(card_21("FN;CHARSET=ISO-8859-1;QUOTED-PRINTABLE:Zo=C3=AB")).display_name == "ZoÃ«"
    # A 7-bit charset is decoded too (ISO-2022-JP, as Japanese phones wrote it).
    japanese = "FN;CHARSET=ISO-2022-JP:" + "山田".encode("iso-2022-jp").decode("ascii")
    assert one(card_21(japanese)).display_name == "山田"


def test_folding_quoted_printable_and_base64_lines() -> None:
    contact = one(
        card_21(
            # 2.1 §2.1.3: RFC 822 folding; unfolding removes the line break, not the blank.
            "FN:Ann",
            " Lee",
            # A soft line break: the next line is the value's, whatever it starts with
            # ("=" or a blank), and a line ending "=3D" is no soft break.
            "NOTE;ENCODING=QUOTED-PRINTABLE:a=3D=",
            "=3Db=",
            "  c=3D",
            "EMAIL;INTERNET:ann@example.com",
            # BASE64 lines continue the value indented or not, up to an empty line.
            "PHOTO;ENCODING=BASE64;TYPE=GIF:R0lGODlh",
            "AQABAAAAACw=",
            "",
            "TEL:+1 555 0100",
        )
    )
    assert (contact.display_name, contact.note, contact.phones) == (
        "Ann Lee",
        "a==b  c=",
        ("+1 555 0100",),
    )
    assert contact.card is not None
    assert "PHOTO;TYPE=GIF;ENCODING=b:R0lGODlhAQABAAAAACw=\r\n" in contact.card


def test_values_and_parameters_written_as_3_0_reads_them() -> None:
    contact = one(
        card_21(
            "N:O\\;Brien;Pat\\rick, Jr.",
            "item1.EMAIL;INTERNET;X-CUSTOM=a,b:pat@example.com",
            "URL;VALUE=URL:http://example.com/a,b;c",
            "PHOTO;VALUE=CONTENT-ID:<photo1@example.com>",
            "GEO:37.24,-17.87",
            "X-PHONETIC:a,b\\;c;d",
        )
    )
    assert contact.card == (
        "BEGIN:VCARD\r\n"
        "VERSION:3.0\r\n"
        # 3.0 requires FN (RFC 2426 §5): the name read from N (its lists' commas blanks).
        "FN:Pat\\\\rick Jr. O\\;Brien\r\n"
        "N:O\\;Brien;Pat\\\\rick\\, Jr.\r\n"
        'item1.EMAIL;TYPE=INTERNET;X-CUSTOM="a,b":pat@example.com\r\n'
        "URL;VALUE=uri:http://example.com/a,b;c\r\n"
        "PHOTO;VALUE=uri:cid:photo1@example.com\r\n"
        "GEO:37.24;-17.87\r\n"
        "X-PHONETIC:a\\,b\\;c;d\r\n"
        "END:VCARD\r\n"
    )
    assert contact.display_name == "Pat\\rick Jr. O;Brien"
    assert contact.emails == ("pat@example.com",)


def test_a_card_with_an_address_only_gets_the_fn_and_n_3_0_requires() -> None:
    contact = one(card_21("EMAIL;INTERNET:solo@example.com"))
    assert contact.card == (
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:solo@example.com\r\nN:;;;;\r\n"
        "EMAIL;TYPE=INTERNET:solo@example.com\r\nEND:VCARD\r\n"
    )
    assert contact.display_name == "solo@example.com"
    assert vcard.parse(vcard.decode(card_21("NOTE:nothing else"))).reasons == (
        "card 1: neither a name nor an email address",
    )


def test_an_imported_2_1_card_is_edited_like_any_kept_card() -> None:
    """The webmail's edit rewrites only the changed lines of the 3.0 card kept."""
    stored = checked_contact(ContactsSection(), one(ANDROID.encode()))
    assert stored.card is not None
    after = checked_contact(ContactsSection(), Contact(**{**_fields(stored), "note": "new"}))
    revised = vcard.revise(stored.card, stored, after)
    assert revised == stored.card.replace(
        "NOTE:Příliš žluťoučký kůň\\n€ 5\\; a\\\\b\r\n", "NOTE:new\r\n"
    )


def _fields(contact: Contact) -> dict[str, object]:
    return {
        "uid": contact.uid,
        "display_name": contact.display_name,
        "emails": contact.emails,
        "phones": contact.phones,
        "organization": contact.organization,
        "note": contact.note,
    }


_TEXT = st.text(
    st.characters(codec="cp1252", exclude_categories=("Cs", "Cc")) | st.sampled_from("\n;,\\= "),
    max_size=200,
)


@given(note=_TEXT, units=st.lists(_TEXT, min_size=1, max_size=4), utf8=st.booleans())
def test_any_quoted_printable_value_reads_back_exactly(
    note: str, units: list[str], utf8: bool
) -> None:
    """A NOTE and an ORG as a 2.1 writer encodes them (quoted-printable, with soft line
    breaks, in UTF-8 or windows-1252; ORG's ";" escaped in its units) read back as written,
    and the 3.0 card kept reads back to the same contact."""
    assume("\\;" not in note and not any("\\;" in u or u.endswith("\\") for u in units))
    charset = "UTF-8" if utf8 else "windows-1252"

    def qp(text: str) -> str:
        octets = text.replace("\n", "\r\n").encode(charset)
        return binascii.b2a_qp(octets, istext=False).decode("ascii").replace("\n", "\r\n")

    org = ";".join(u.replace(";", "\\;") for u in units)
    data = card_21(
        "FN:Someone",
        f"NOTE;CHARSET={charset};ENCODING=QUOTED-PRINTABLE:{qp(note)}",
        f"ORG;CHARSET={charset};QUOTED-PRINTABLE:{qp(org)}",
    )
    contact = one(data)
    assert contact.note == note
    assert contact.organization == ", ".join(u.strip() for u in units if u.strip())
    assert contact.card is not None and one(contact.card.encode()) == contact


def test_blanks_around_the_delimiters_colon_are_read_in_2_1() -> None:
    """versit 2.1's grammar: ``"BEGIN" [ws] ":" [ws] "VCARD"``, and the same for END."""
    data = b"BEGIN : VCARD\r\nVERSION:2.1\r\nFN:Blank Colon\r\nEND\t:VCARD\r\n"
    contact = one(data)
    assert contact.display_name == "Blank Colon"
    assert contact.card.startswith("BEGIN:VCARD\r\nVERSION:3.0\r\n")
    assert contact.card.endswith("\r\nEND:VCARD\r\n")


def test_blanks_around_the_delimiters_colon_skip_a_3_0_or_4_0_card_alone() -> None:
    """RFC 6350 §3.3 and RFC 2426 have no blanks there; such a card would be kept and served
    as received, so it is skipped and its neighbours kept."""
    data = (
        b"BEGIN: VCARD\r\nVERSION:4.0\r\nFN:Four\r\nEND:VCARD\r\n"
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Three\r\nEND :VCARD\r\n"
        b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Kept\r\nEND:VCARD\r\n"
    )
    parsed = vcard.parse(vcard.decode(data))
    assert [c.display_name for c in parsed.contacts] == ["Kept"]
    assert parsed.skipped == 2
    assert all("only vCard 2.1" in reason for reason in parsed.reasons)


def test_a_stray_cr_before_end_still_ends_the_card() -> None:
    """Fuzzing found it: after a bare LF, ``\\rEND:VCARD`` is END (the 2.1 reading drops the
    CR); taken for a property, the 3.0 form held an END:VCARD inside, and read back as
    another card."""
    data = b"BEGIN:VCARD\r\nVERSION:2.1\r\nFN:A\n\rEND:VCARD\r\nNOTE:after\r\nEND:VCARD\r\n"
    contact = one(data)
    assert contact.card is not None and contact.card.count("END:VCARD") == 1
    assert one(contact.card.encode()) == contact
