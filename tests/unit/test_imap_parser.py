"""Command grammar: RFC 9051 §6 examples, extension examples, and errors that keep the tag."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from pillarbox.imap import commands as c
from pillarbox.imap import fetch as f
from pillarbox.imap import search as s
from pillarbox.imap.commands import format_command
from pillarbox.imap.errors import ParseError
from pillarbox.imap.parser import is_idle_done, parse_command, parse_sasl_response
from pillarbox.imap.sequence import LAST_RESULT, STAR, SequenceSet
from pillarbox.store.types import FlagOp

APPEND_326 = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.siam.edu.example\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)

#: Every command example of RFC 9051 §6 (multi-line ones joined the way the lexer delivers them),
#: then examples from the extension RFCs the server supports.
RFC_EXAMPLES = [
    b"abcd CAPABILITY",
    b"efgh STARTTLS",
    b"a002 NOOP",
    b"A023 LOGOUT",
    b"a004 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=",
    b"A001 AUTHENTICATE GSSAPI",
    b"A01 AUTHENTICATE PLAIN",
    b"A01 AUTHENTICATE EXTERNAL =",
    b"a001 LOGIN SMITH SESAME",
    b"t2 ENABLE CONDSTORE X-GOOD-IDEA",
    b"a1 ENABLE CONDSTORE",
    b"A142 SELECT INBOX",
    b"A143 SELECT Drafts",
    b"A932 EXAMINE blurdybloop",
    b"A003 CREATE owatagusiam/",
    b"A004 CREATE owatagusiam/blurdybloop",
    b"A683 DELETE blurdybloop",
    b"A685 DELETE foo/bar",
    b'A682 LIST "" *',
    b'A86 LIST "" %',
    b"A683 RENAME blurdybloop sarasoop",
    b"Z433 RENAME INBOX old-mail",
    b"1001 RENAME X Y",
    b"1002 SUBSCRIBE Y",
    b"1003 UNSUBSCRIBE X",
    b"A002 SUBSCRIBE #news.comp.mail.mime",
    b"A002 UNSUBSCRIBE #news.comp.mail.mime",
    b'A101 LIST "" ""',
    b'A102 LIST #news.comp.mail.misc ""',
    b'A103 LIST /usr/staff/jones ""',
    b"A202 LIST ~/Mail/ %",
    b'A01 LIST "" "*"',
    b'A02 LIST (SUBSCRIBED) "" "*"',
    b'A03 LIST () "" "%" RETURN (CHILDREN)',
    b'A04 LIST (REMOTE) "" "%" RETURN (CHILDREN)',
    b'A05 LIST (REMOTE SUBSCRIBED) "" "*"',
    b'A06 LIST (REMOTE) "" "*" RETURN (SUBSCRIBED)',
    b'C04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"',
    b'C04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)',
    b'D03 LIST (RECURSIVEMATCH SUBSCRIBED) "" "*2"',
    b'a1 LIST "" ("foo")',
    b'a2 LIST (SUBSCRIBED) "" "foo/*"',
    b'a3 LIST (SUBSCRIBED RECURSIVEMATCH) "" foo RETURN (CHILDREN)',
    b'a1 LIST (REMOTE) "" *',
    b'a2 LIST () "" %',
    b'a3.1 LIST "" (% music/rock)',
    b'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',
    b'A02 LIST (SUBSCRIBED RECURSIVEMATCH) "" % RETURN (STATUS (MESSAGES UNSEEN))',
    b"A001 NAMESPACE",
    b'A002 CREATE "INBOX.Sent Mail"',
    b'A002 LIST (SPECIAL-USE) "" "*"',
    b'A003 LIST (SPECIAL-USE) "#mh/" "*"',
    b'A006 CREATE "#mh/Deleted Items"',
    b'A002 LIST "" "Other Users/%"',
    b'A003 LIST "" "#Users/Mike/%"',
    b'A002 LIST "" "~mark/%"',
    b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)",
    b"A003 APPEND saved-messages (\\Seen) {326}\r\n" + APPEND_326,
    b"A003 APPEND saved-messages (\\Seen) {326+}\r\n" + APPEND_326,
    b"A004 COPY 2:4 meeting",
    b"A005 UID COPY 305:310 meeting",
    b"A002 IDLE",
    b"A003 FETCH 4 ALL",
    b"A341 CLOSE",
    b"A342 UNSELECT",
    b"A202 EXPUNGE",
    b"A282 SEARCH RETURN (MIN COUNT) FLAGGED",
    b"A283 SEARCH RETURN () FLAGGED",
    b'A284 SEARCH TEXT "string not in mailbox"',
    b"A285 SEARCH CHARSET UTF-8 TEXT {12}\r\n" + "отпуск".encode(),
    b"A285 UID SEARCH RETURN (MIN MAX) 1:5000",
    b"A286 SEARCH RETURN (COUNT) DELETED",
    b"A282 SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994",
    b"A283 FETCH $ (UID INTERNALDATE FLAGS BODY.PEEK[HEADER])",
    b"A301 UID SEARCH UID $ SMALLER 4096",
    b"A301 UID SEARCH $ SMALLER 4096",
    b"P283 SEARCH CHARSET UTF-8 (OR $ 1,3000:3021) TEXT {8+}\r\n" + "мать".encode(),
    b"B283 SEARCH RETURN (SAVE) CHARSET KOI8-R (OR $ 1,3000:3021) TEXT {4+}\r\n"
    + "мать".encode("koi8-r"),
    b'E283 COPY $ "Other Messages"',
    b"F282 SEARCH RETURN (SAVE) KEYWORD $Junk",
    b"F284 STORE $ +FLAGS.Silent (\\Deleted)",
    b"C283 SEARCH RETURN (ALL SAVE) SINCE 12-Feb-2006",
    b"C285 SEARCH RETURN (MAX SAVE MIN) SINCE 12-Feb-2006",
    b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])",
    b"A003 STORE 2:4 +FLAGS (\\Deleted)",
    b"a UID MOVE 42:69 foo",
    b"A003 UID EXPUNGE 3000:3002",
    b"A999 UID FETCH 4827313:4828442 FLAGS",
    # RFC 3501 §6 examples not in RFC 9051.
    b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
    b'A283 SEARCH TEXT "string not in mailbox"',
    b"A284 SEARCH CHARSET UTF-8 TEXT {6}\r\nXXXXXX",
    b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])",
    b"FXXZ CHECK",
    b'A002 LSUB "#news." "comp.mail.*"',
    b"A003 STORE 2:4 +FLAGS (\\Deleted)",
    b"a001 fetch 1 (rfc822.header rfc822.text rfc822 rfc822.size)",
    # Extensions.
    b'a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pillarbox")',
    b"a023 ID NIL",
    b"A01 COMPRESS DEFLATE",
    b'G0001 GETQUOTA ""',
    b"A003 GETQUOTAROOT INBOX",
    b'S0000 SETQUOTA "#user/alice" (STORAGE 510)',
    b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994",
    b"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL",
    b'A284 SORT (SUBJECT) US-ASCII TEXT "not in mailbox"',
    b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000",
    b'A284 THREAD ORDEREDSUBJECT US-ASCII TEXT "gewp"',
    b"A285 UID THREAD REFERENCES UTF-8 SINCE 5-MAR-2000",
    b"a103 SELECT INBOX (CONDSTORE)",
    b"A142 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
    b"B142 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))",
    b"B142 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999"
    b" 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))",
    b"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345)",
    b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
    b"d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)",
    b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338',
    b"t SEARCH OR NOT MODSEQ 720162338 LARGER 50000",
    b"a1 SEARCH UNSEEN YOUNGER 259200",
    b"a2 SEARCH OLDER 604800 SAVEDBEFORE 1-Jan-2024 SAVEDON 2-Jan-2024 SAVEDSINCE 3-Jan-2024",
    b"a3 SEARCH SAVEDATESUPPORTED",
    b"a4 SEARCH EMAILID M6d99ac3275bb4e THREADID T64b478a75b7ea9",
    b"a5 FETCH 1 (EMAILID THREADID SAVEDATE MODSEQ PREVIEW)",
    b"a6 FETCH 1:* (PREVIEW (LAZY))",
    b"a7 FETCH 1 (BINARY[1.2]<0.1024> BINARY.PEEK[] BINARY.SIZE[3])",
    b"a8 APPEND Drafts ~{5}\r\na\x00bcd",
    b'a9 APPEND Drafts (\\Seen) " 7-Feb-1994 21:52:25 -0800" {3}\r\nabc (\\Draft) {2+}\r\nxy',
    b"a10 APPEND INBOX UTF8 (~{3}\r\nabc)",
    b'a11 CREATE "Sent Items" (USE (\\Sent))',
    b"a12 STATUS INBOX (MESSAGES SIZE HIGHESTMODSEQ APPENDLIMIT DELETED MAILBOXID RECENT)",
    b"a13 ENABLE UTF8=ACCEPT IMAP4rev2 QRESYNC",
    b"a14 UID SEARCH RETURN (ALL) CHARSET UTF-8 HEADER Message-ID <x@y> UNDRAFT NEW OLD",
]


@pytest.mark.parametrize("line", RFC_EXAMPLES)
def test_rfc_example_parses_and_round_trips(line: bytes) -> None:
    command = parse_command(line)
    assert command.tag == line.split(b" ", 1)[0].decode()
    assert parse_command(format_command(command)[:-2]) == command


def test_append_example_carries_the_message() -> None:
    command = parse_command(
        RFC_EXAMPLES[RFC_EXAMPLES.index(b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)") + 1]
    )
    assert command == c.Append(
        "A003", "saved-messages", (c.AppendMessage(APPEND_326, flags=("\\Seen",)),)
    )


def test_multiappend_with_dates_flags_and_binary() -> None:
    command = parse_command(
        b'a APPEND Drafts (\\Seen) " 7-Feb-1994 21:52:25 -0800" {3}\r\nabc ~{2}\r\n\x00y'
    )
    zone = timezone(-timedelta(hours=8))
    assert command == c.Append(
        "a",
        "Drafts",
        (
            c.AppendMessage(b"abc", ("\\Seen",), datetime(1994, 2, 7, 21, 52, 25, tzinfo=zone)),
            c.AppendMessage(b"\x00y", binary=True),
        ),
    )


def test_fetch_sections_and_partials() -> None:
    command = parse_command(
        b"a UID FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS.NOT (From To)]<0.100> BODY[2.MIME]"
        b" BODY[] BODYSTRUCTURE BODY)"
    )
    assert command == c.Fetch(
        "a",
        SequenceSet(((1, STAR),)),
        (
            f.FetchItem.FLAGS,
            f.BodySection(f.Section((1, 2), "HEADER.FIELDS.NOT", ("From", "To")), True, (0, 100)),
            f.BodySection(f.Section((2,), "MIME")),
            f.BodySection(f.Section()),
            f.FetchItem.BODYSTRUCTURE,
            f.FetchItem.BODY,
        ),
        uid=True,
    )
    assert command.atts[1].label() == b"BODY[1.2.HEADER.FIELDS.NOT (From To)]<0>"  # type: ignore[union-attr]


def test_fetch_macros_expand() -> None:
    assert parse_command(b"a FETCH 1 fast").atts == f.MACROS["FAST"]  # type: ignore[union-attr]
    assert parse_command(b"a FETCH 1 ALL").atts == f.MACROS["ALL"]  # type: ignore[union-attr]
    assert parse_command(b"a FETCH 1 FULL").atts == f.MACROS["FULL"]  # type: ignore[union-attr]


def test_search_tree() -> None:
    command = parse_command(
        b'a SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith" OR (UID 2:4 KEYWORD $Junk) LARGER 10'
    )
    assert command == c.Search(
        "a",
        s.And(
            (
                s.FlagKey("\\Flagged"),
                s.DateKey(s.DateField.INTERNAL, s.DateOp.SINCE, date(1994, 2, 1)),
                s.Not(s.StringKey("FROM", "Smith")),
                s.Or(
                    s.And((s.SequenceKey(SequenceSet(((2, 4),)), uid=True), s.FlagKey("$Junk"))),
                    s.SizeKey(larger=True, size=10),
                ),
            )
        ),
    )


def test_search_charset_decodes_literal() -> None:
    command = parse_command(b"A285 SEARCH CHARSET UTF-8 TEXT {12}\r\n" + "отпуск".encode())
    assert command == c.Search("A285", s.StringKey("TEXT", "отпуск"), charset="UTF-8")
    koi = parse_command(b"B SEARCH CHARSET koi8-r TEXT {4}\r\n" + "мать".encode("koi8-r"))
    assert koi.key == s.StringKey("TEXT", "мать")  # type: ignore[union-attr]


def test_searchres_dollar() -> None:
    assert parse_command(b"A301 UID SEARCH UID $ SMALLER 4096").key == s.And(  # type: ignore[union-attr]
        (s.SequenceKey(LAST_RESULT, uid=True), s.SizeKey(False, 4096))
    )
    assert parse_command(b"E283 COPY $ x") == c.Copy("E283", LAST_RESULT, "x")


def test_esearch_return_options() -> None:
    assert parse_command(b"a SEARCH RETURN (MIN MAX) ALL").return_options == {"MIN", "MAX"}  # type: ignore[union-attr]
    assert parse_command(b"a SEARCH RETURN () ALL").return_options == frozenset()  # type: ignore[union-attr]
    assert parse_command(b"a SEARCH ALL").return_options is None  # type: ignore[union-attr]


def test_select_qresync() -> None:
    command = parse_command(
        b"B142 SELECT inbox (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500 15000,22500)))"
    )
    assert command == c.Select(
        "B142",
        "INBOX",
        qresync=c.Qresync(
            67890007,
            90060115194045000,
            SequenceSet(((1, 29997),)),
            (
                SequenceSet(((5000, 5000), (7500, 7500))),
                SequenceSet(((15000, 15000), (22500, 22500))),
            ),
        ),
    )


def test_store_forms() -> None:
    assert parse_command(b"a STORE 1 FLAGS \\Seen \\flagged") == c.Store(
        "a", SequenceSet(((1, 1),)), FlagOp.REPLACE, ("\\Seen", "\\Flagged")
    )
    assert parse_command(b"a UID STORE 1 -FLAGS.SILENT ()") == c.Store(
        "a", SequenceSet(((1, 1),)), FlagOp.REMOVE, (), silent=True, uid=True
    )


def test_list_extended_model() -> None:
    command = parse_command(
        b'a LIST (SUBSCRIBED REMOTE) "" ("%" "x/*") RETURN (CHILDREN SPECIAL-USE STATUS (SIZE))'
    )
    assert command == c.List(
        "a",
        "",
        ("%", "x/*"),
        frozenset({"SUBSCRIBED", "REMOTE"}),
        frozenset({"CHILDREN", "SPECIAL-USE"}),
        ("SIZE",),
        extended=True,
    )
    assert parse_command(b'a LIST "" *') == c.List("a", "", ("*",))


def test_mailbox_names_decode_per_mode() -> None:
    assert parse_command(b"a SELECT ~peter/mail/&U,BTFw-/&ZeVnLIqe-").mailbox == (  # type: ignore[union-attr]
        "~peter/mail/台北/日本語"
    )
    utf8 = parse_command('a SELECT "台北"'.encode(), utf8=True)
    assert utf8.mailbox == "台北"  # type: ignore[union-attr]
    assert parse_command(b"a SELECT &U,BTFw-", utf8=True).mailbox == "&U,BTFw-"  # type: ignore[union-attr]
    assert parse_command(b"a DELETE iNbOx").mailbox == "INBOX"  # type: ignore[union-attr]


def test_id_pairs() -> None:
    assert parse_command(b'a ID ("name" "x" "os" NIL)') == c.Id("a", (("name", "x"), ("os", None)))


@pytest.mark.parametrize(
    ("line", "tag", "fragment"),
    [
        (b"a FETCH 1 (FLAGS", "a", "expected ')'"),
        (b"a FETCH 1 FLAGS)", "a", "unexpected characters"),
        (b"a SEARCH (SEEN", "a", "expected ')'"),
        (b"a SEARCH SINCE 31-Feb-2020", "a", "invalid date"),
        (b"a SEARCH SINCE 1-Foo-2020", "a", "invalid date"),
        (b"a XPIG-LATIN", "a", "unknown command"),
        (b"A442 XPIG-LATIN", "A442", "unknown command"),
        (b"a UID NOOP", "a", "unknown command UID NOOP"),
        (b"a LOGIN {5}\r\nab", "a", "literal is shorter"),
        (b"a LOGIN {x}\r\nab", "a", "expected a number"),
        (b'a LOGIN "unterminated', "a", "unterminated quoted"),
        (b'a LOGIN "bad\\escape" x', "a", "escape"),
        (b"a  NOOP", "a", "command name"),
        (b"a NOOP ", "a", "unexpected characters"),
        (b"a FETCH 0 FLAGS", "a", "invalid sequence number"),
        (b"a FETCH 1:4294967296 FLAGS", "a", "exceeds 32 bits"),
        (b"a FETCH 1 BODY[MIME]", "a", "invalid section text"),
        (b"a FETCH 1 BODY[1.FOO]", "a", "invalid section text"),
        (b"a FETCH 1 BODY.PEEK", "a", "unknown fetch attribute"),
        (b"a FETCH 1 (FLAGS) (VANISHED)", "a", "VANISHED"),
        (b"a FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)", "a", "VANISHED"),
        (b"a SELECT x (FOO)", "a", "unknown or repeated select parameter"),
        (b'a LIST (RECURSIVEMATCH) "" *', "a", "RECURSIVEMATCH requires SUBSCRIBED"),
        (b'a LIST (BOGUS) "" *', "a", "unknown LIST selection option"),
        (b'a LIST "" * RETURN (BOGUS)', "a", "unknown or repeated LIST return option"),
        (b"a STATUS x (BOGUS)", "a", "unknown STATUS item"),
        (b"a STATUS x ()", "a", "at least one item"),
        (b"a SEARCH RETURN (PARTIAL) ALL", "a", "expected 'SP'"),
        (b"a SEARCH BOGUS", "a", "unknown search key"),
        (b"a SELECT &Jjo", "a", "modified UTF-7"),
        (b"a SELECT &AGE-", "a", "modified UTF-7"),
        (b'a SELECT "a\xffb"', "a", "modified UTF-7"),
        (b"a APPEND x", "a", "APPEND needs a message"),
        (b'a APPEND x "31-Feb-2020 00:00:00 +0000" {1}\r\nx', "a", "invalid date-time"),
        (b"a LOGIN {3}\r\na\x00b x", "a", "NUL"),
        (b"a AUTHENTICATE PLAIN ab=c", "a", "base64"),
        (b"a SORT (REVERSE) UTF-8 ALL", "a", "incomplete sort criteria"),
        (b"a ENABLE", "a", "expected 'SP'"),
        (b"a SEARCH " + b"NOT " * 100 + b"ALL", "a", "nesting too deep"),
    ],
)
def test_errors_keep_the_tag(line: bytes, tag: str, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert info.value.tag == tag
    assert info.value.condition == "BAD"
    assert fragment in info.value.message


@pytest.mark.parametrize("line", [b"", b" NOOP", b"+a NOOP", b"a+b NOOP", b"(x NOOP", b"\xff NOOP"])
def test_no_tag_gives_untagged_error(line: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert info.value.tag is None


def test_unknown_charset_is_no_badcharset() -> None:
    with pytest.raises(ParseError) as info:
        parse_command(b"a SEARCH CHARSET X-UNKNOWN TEXT x")
    assert (info.value.tag, info.value.condition) == ("a", "NO")
    assert info.value.code is not None
    assert info.value.code.startswith("BADCHARSET (US-ASCII UTF-8")


def test_format_command_literals() -> None:
    login = c.Login("a", b"fred", b"p\r\nw")
    assert format_command(login) == b"a LOGIN fred {4}\r\np\r\nw\r\n"
    append = c.Append("b", "Entwürfe", (c.AppendMessage(b"x"),))
    assert format_command(append, literal_plus=True) == b"b APPEND Entw&APw-rfe {1+}\r\nx\r\n"
    assert format_command(append, utf8=True) == 'b APPEND "Entwürfe" {1}\r\nx\r\n'.encode()


def test_idle_done_and_sasl_lines() -> None:
    assert is_idle_done(b"done")
    assert not is_idle_done(b"a DONE")
    assert parse_sasl_response(b"dGVzdAB0ZXN0AHRlc3Q=") == b"test\x00test\x00test"
    assert parse_sasl_response(b"") == b""
    assert parse_sasl_response(b"*") is None
    with pytest.raises(ParseError):
        parse_sasl_response(b"not base64!")
