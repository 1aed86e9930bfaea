"""vCards the tests share."""

from __future__ import annotations

from pillarbox import vcard

#: A phone's card as iOS writes one (vCard 3.0): a postal address, a birthday, a folded base64
#: photo, typed phones and addresses, a grouped address with its label, an X- property — what
#: a CardDAV server must keep byte for byte though the webmail edits only some of it.
RICH_CARD = (
    "BEGIN:VCARD\r\n"
    "VERSION:3.0\r\n"
    "PRODID:-//Apple Inc.//iPhone OS 17.0//EN\r\n"
    "N:Martin;Zoë;;;\r\n"
    "FN:Zoë Martin\r\n"
    "item1.EMAIL;type=INTERNET;type=HOME;type=pref:zoe@far.example\r\n"
    "item1.X-ABLabel:_$!<Home>!$_\r\n"
    "TEL;type=CELL;type=VOICE;type=pref:+33 6 12 34 56 78\r\n"
    "TEL;type=WORK;type=VOICE:+33 1 23 45 67 89\r\n"
    "ADR;type=HOME;type=pref:;;1 rue de la Paix;Lyon;;69001;France\r\n"
    "BDAY:1980-04-02\r\n"
    + vcard.fold("PHOTO;ENCODING=b;TYPE=JPEG:" + "/9j/4AAQSkZJRgABAQ" * 8)
    + "X-SOCIALPROFILE;type=mastodon:https://example.social/@zoe\r\n"
    "UID:rich-1\r\n"
    "END:VCARD\r\n"
)
