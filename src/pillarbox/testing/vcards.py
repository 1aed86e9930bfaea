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

#: A contact as Outlook 2016 saves it ("Save as vCard", vCard 2.1; the file in windows-1252,
#: so encode this with ``cp1252``): bare types, CHARSET on the values holding non-ASCII,
#: quoted-printable with soft line breaks for the multi-line LABEL and NOTE (the NOTE's
#: windows-1252: ä ö ü € ß), a BASE64 PHOTO on indented lines ended by an empty line, the
#: X-MS-OL- properties only Outlook reads, and a backslash that is literal in 2.1.
OUTLOOK_2016 = (
    "BEGIN:VCARD\r\n"
    "VERSION:2.1\r\n"
    "N;LANGUAGE=de;CHARSET=Windows-1252:Müller;Jürgen\r\n"
    "FN;CHARSET=Windows-1252:Jürgen Müller\r\n"
    "ORG:Acme GmbH;Vertrieb\r\n"
    "TITLE:Leiter, Vertrieb\r\n"
    "TEL;WORK;VOICE:+49 30 1234567\r\n"
    "TEL;CELL;VOICE:+49 170 5555555\r\n"
    "ADR;WORK;PREF;CHARSET=Windows-1252:;;Hauptstraße 1;Berlin;;10115;Deutschland\r\n"
    "LABEL;WORK;PREF;CHARSET=Windows-1252;ENCODING=QUOTED-PRINTABLE:Hauptstra=DFe 1=0D=0A=\r\n"
    "10115 Berlin\r\n"
    "X-MS-OL-DEFAULT-POSTAL-ADDRESS:2\r\n"
    "URL;WORK:http://acme.example/?a=1,2\r\n"
    "EMAIL;PREF;INTERNET:juergen.mueller@acme.example\r\n"
    "EMAIL;INTERNET:jm@home.example\r\n"
    'X-MS-OL-DESIGN;CHARSET=utf-8:<card xmlns="http://schemas.microsoft.com/office/outlook/12/'
    'electronicbusinesscards" ver="1.0" layout="left" bgcolor="ffffff"></card>\r\n'
    "PHOTO;TYPE=JPEG;ENCODING=BASE64:\r\n"
    " /9j/4AAQSkZJRgABAQEAYABgAAD/2wBDAAgGBgcGBQgHBwcJCQgKDAsKBwkJCAoMDAsLDAwQDg0N\r\n"
    " DhEPDAwSEhATFhUTGRQUGBcYGBcYGBcYGBcYGBcYGBcYGBcYGBc=\r\n"
    "\r\n"
    "NOTE;CHARSET=Windows-1252;ENCODING=QUOTED-PRINTABLE:"
    "Kunde seit 2012; Ablage: C:\\Kunden=0D=0A=\r\n"
    "Gr=FC=DFe an Fr. M=FCller, Rabatt 5 =80 =E4=F6=FC=\r\n"
    " (siehe Vertrag)\r\n"
    "REV:20160712T081500Z\r\n"
    "END:VCARD\r\n"
)

#: A contact as an Android phone's Contacts app exports it (vCard 2.1, UTF-8): every non-ASCII
#: value quoted-printable in UTF-8 with its continuation lines starting "=", bare types, a
#: ``\\;`` escaped in a component, the app's X-ANDROID-CUSTOM compound value, and a BASE64
#: PHOTO whose type is a bare parameter, folded lines, an empty line after it.
ANDROID = (
    "BEGIN:VCARD\r\n"
    "VERSION:2.1\r\n"
    "N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:=C5=A0koda;Zo=C3=AB;;;\r\n"
    "FN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Zo=C3=AB =C5=A0koda\r\n"
    "X-ANDROID-CUSTOM:vnd.android.cursor.item/nickname;Zozo;1;;;;;;;;;;;;;\r\n"
    "TEL;HOME:+420 2 2123 4567\r\n"
    "TEL;CELL;PREF:+420 601 234 567\r\n"
    "EMAIL;HOME:zoe@example.cz\r\n"
    "ORG;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Pek=C3=A1rna\\; Nov=C3=A1k;V=C3=BDroba\r\n"
    "NOTE;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:"
    "P=C5=99=C3=ADli=C5=A1 =C5=BElu=C5=A5ou=C4=8Dk=\r\n"
    "=C3=BD k=C5=AF=C5=88=0A=E2=82=AC 5\\; a\\b\r\n"
    "BDAY:1990-03-04\r\n"
    "PHOTO;ENCODING=BASE64;JPEG:/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDAsK\r\n"
    " BwkJCAoMDAsLDAwQDg0NDhEPDAwSEhATFhUTGRQUGBcYGBc=\r\n"
    "\r\n"
    "END:VCARD\r\n"
)

#: OUTLOOK_2016 as the store keeps it and CardDAV serves it: 3.0, UTF-8, every property, values
#: decoded and escaped as 3.0 escapes them, bare types as TYPE=, the photo's ENCODING=b, folded
#: at 75 octets.
OUTLOOK_AS_3_0 = (
    "BEGIN:VCARD\r\n"
    "VERSION:3.0\r\n"
    "N;LANGUAGE=de:Müller;Jürgen\r\n"
    "FN:Jürgen Müller\r\n"
    "ORG:Acme GmbH;Vertrieb\r\n"
    "TITLE:Leiter\\, Vertrieb\r\n"
    "TEL;TYPE=WORK,VOICE:+49 30 1234567\r\n"
    "TEL;TYPE=CELL,VOICE:+49 170 5555555\r\n"
    "ADR;TYPE=WORK,PREF:;;Hauptstraße 1;Berlin;;10115;Deutschland\r\n"
    "LABEL;TYPE=WORK,PREF:Hauptstraße 1\\n10115 Berlin\r\n"
    "X-MS-OL-DEFAULT-POSTAL-ADDRESS:2\r\n"
    "URL;TYPE=WORK:http://acme.example/?a=1,2\r\n"
    "EMAIL;TYPE=PREF,INTERNET:juergen.mueller@acme.example\r\n"
    "EMAIL;TYPE=INTERNET:jm@home.example\r\n"
    'X-MS-OL-DESIGN:<card xmlns="http://schemas.microsoft.com/office/outlook/12/\r\n'
    ' electronicbusinesscards" ver="1.0" layout="left" bgcolor="ffffff"></card>\r\n'
    "PHOTO;TYPE=JPEG;ENCODING=b:/9j/4AAQSkZJRgABAQEAYABgAAD/2wBDAAgGBgcGBQgHBwcJ\r\n"
    " CQgKDAsKBwkJCAoMDAsLDAwQDg0NDhEPDAwSEhATFhUTGRQUGBcYGBcYGBcYGBcYGBcYGBcYGB\r\n"
    " cYGBc=\r\n"
    "NOTE:Kunde seit 2012\\; Ablage: C:\\\\Kunden\\nGrüße an Fr. Müller\\, Rabatt \r\n"
    " 5 € äöü (siehe Vertrag)\r\n"
    "REV:20160712T081500Z\r\n"
    "END:VCARD\r\n"
)

#: ANDROID as kept.
ANDROID_AS_3_0 = (
    "BEGIN:VCARD\r\n"
    "VERSION:3.0\r\n"
    "N:Škoda;Zoë;;;\r\n"
    "FN:Zoë Škoda\r\n"
    "X-ANDROID-CUSTOM:vnd.android.cursor.item/nickname;Zozo;1;;;;;;;;;;;;;\r\n"
    "TEL;TYPE=HOME:+420 2 2123 4567\r\n"
    "TEL;TYPE=CELL,PREF:+420 601 234 567\r\n"
    "EMAIL;TYPE=HOME:zoe@example.cz\r\n"
    "ORG:Pekárna\\; Novák;Výroba\r\n"
    "NOTE:Příliš žluťoučký kůň\\n€ 5\\; a\\\\b\r\n"
    "BDAY:1990-03-04\r\n"
    "PHOTO;TYPE=JPEG;ENCODING=b:/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJ\r\n"
    " CQgKDAsKBwkJCAoMDAsLDAwQDg0NDhEPDAwSEhATFhUTGRQUGBcYGBc=\r\n"
    "END:VCARD\r\n"
)
