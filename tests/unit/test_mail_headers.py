"""RFC 5322 header scanning, address lists, msg-ids; RFC 2045/2183/2231 parameters."""

from __future__ import annotations

import pytest

from pillarbox.mail.headers import (
    MISSING_DOMAIN,
    merge_rfc2231,
    parse_addresses,
    parse_content_header,
    parse_msg_ids,
    raw_text,
    scan_header,
)
from pillarbox.mail.model import EnvelopeAddress as A


class TestScanHeader:
    def test_fields_and_spans(self) -> None:
        raw = b"Subject: a\r\n b\r\nX-Y : z\r\n\r\nbody"
        block = scan_header(raw, 0, len(raw))
        assert [(f.name, f.key, f.value) for f in block.fields] == [
            ("Subject", "subject", b" a\r\n b"),
            ("X-Y", "x-y", b" z"),
        ]
        assert [raw[f.start : f.end] for f in block.fields] == [
            b"Subject: a\r\n b\r\n",
            b"X-Y : z\r\n",
        ]
        assert raw[block.body_start :] == b"body"
        assert raw_text(block.fields[0].value) == "a b"

    def test_region_is_respected(self) -> None:
        raw = b"junk--Content-Type: text/plain\r\n\r\nX-After: 1\r\n"
        block = scan_header(raw, 6, len(raw))
        assert [f.key for f in block.fields] == ["content-type"]
        assert block.body_start == raw.index(b"X-After")

    def test_leading_continuation_is_a_defect(self) -> None:
        raw = b" stray\r\nA: 1\r\n\r\n"
        block = scan_header(raw, 0, len(raw))
        assert [f.key for f in block.fields] == ["a"]
        assert block.defects == ("header continuation line without a field",)

    def test_field_limit_skips_to_the_end_of_the_header(self) -> None:
        raw = b"".join(b"F%d: v\r\n" % i for i in range(100)) + b"\r\nbody"
        block = scan_header(raw, 0, len(raw), max_fields=10)
        assert len(block.fields) == 10
        assert raw[block.body_start :] == b"body"
        assert block.defects == ("more than 10 header fields; rest not read",)


class TestAddresses:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("a@b.c", [A(None, None, "a", "b.c")]),
            ("John Q. Public <jqp@x.org>", [A("John Q. Public", None, "jqp", "x.org")]),
            ('"Doe, John" <j@x>', [A("Doe, John", None, "j", "x")]),
            ('"quote \\" inside" <j@x>', [A('quote " inside', None, "j", "x")]),
            ("j@x (John Doe)", [A("John Doe", None, "j", "x")]),
            ("<@r1.example,@r2.example:j@x>", [A(None, "@r1.example,@r2.example", "j", "x")]),
            ('"john doe"@x', [A(None, None, "john doe", "x")]),
            ("j @ x . org", [A(None, None, "j", "x.org")]),
            ("j@[192.0.2.1]", [A(None, None, "j", "[192.0.2.1]")]),
            ("=?utf-8?q?J=C3=B6rg?= <j@x>", [A("=?utf-8?q?J=C3=B6rg?=", None, "j", "x")]),
            ("Name   With  Spaces <n@x>", [A("Name With Spaces", None, "n", "x")]),
            ("a@x,,b@y", [A(None, None, "a", "x"), A(None, None, "b", "y")]),
            ("<>", [A(None, None, "", "")]),
            ("", []),
        ],
    )
    def test_mailboxes(self, text: str, expected: list[A]) -> None:
        assert parse_addresses(text) == (tuple(expected), ())

    def test_groups(self) -> None:
        found, defects = parse_addresses("Friends: a@x, B <b@y>;, c@z, Empty:;")
        assert found == (
            A(None, None, "Friends", None),
            A(None, None, "a", "x"),
            A("B", None, "b", "y"),
            A(None, None, None, None),
            A(None, None, "c", "z"),
            A(None, None, "Empty", None),
            A(None, None, None, None),
        )
        assert defects == ()

    def test_unterminated_group_is_closed(self) -> None:
        found, defects = parse_addresses("G: a@x")
        assert found[-1] == A(None, None, None, None)
        assert defects == ("unterminated address group",)

    def test_missing_domain(self) -> None:
        found, defects = parse_addresses("MAILER-DAEMON")
        assert found == (A(None, None, "MAILER-DAEMON", MISSING_DOMAIN),)
        assert defects == ("address without domain",)

    def test_limit(self) -> None:
        text = ", ".join(f"u{i}@x" for i in range(50))
        found, defects = parse_addresses(text, limit=5)
        assert len(found) == 5 and defects
        found, defects = parse_addresses("(c) " + text, limit=5)
        assert len(found) == 5 and defects

    def test_nested_comments_and_garbage(self) -> None:
        found, _ = parse_addresses("a@x (outer (inner) comment), ))) <<b@y>")
        assert found[0] == A("outer (inner) comment", None, "a", "x")
        assert len(found) == 2


class TestMsgIds:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("<a@b>", ("a@b",)),
            ("<a@b> <c@d>\t<e@f>", ("a@b", "c@d", "e@f")),
            ("<a@b> (comment) <c@d>", ("a@b", "c@d")),
            ('<"quoted"@b>', ("quoted@b",)),
            ("<a@[192.0.2.1]> (c)", ("a@[192.0.2.1]",)),
            # Found by fuzz/thread_keys.py: an open "[" read to the end of the value when a
            # quote elsewhere in it took the general reading (a reply then lost the id).
            ('<1@x> <1[@x> <"q"@e.org>', ("1@x", "1[@x", "q@e.org")),
            ("<1@x> <1[@x> <q@e.org>", ("1@x", "1[@x", "q@e.org")),
            # Found by fuzz/thread_keys.py: a bare id is one without brackets.
            ('"<c@example.org>', ()),
            ("x>y@z (c)", ()),
            ("bare@id", ("bare@id",)),
            ("two words", ()),
            ("", ()),
        ],
    )
    def test_ids(self, text: str, expected: tuple[str, ...]) -> None:
        assert parse_msg_ids(text) == expected


class TestContentHeaders:
    def test_type_and_params(self) -> None:
        assert parse_content_header('Text/HTML; Charset="UTF-8"; format=flowed') == (
            "text",
            "html",
            (("charset", "UTF-8"), ("format", "flowed")),
        )

    def test_lenient_values(self) -> None:
        parsed = parse_content_header('application/pdf; name=my file.pdf; x="unterminated')
        assert parsed == ("application", "pdf", (("name", "my file.pdf"), ("x", "unterminated")))
        assert parse_content_header("text/plain; junk; charset=utf-8") == (
            "text",
            "plain",
            (("charset", "utf-8"),),
        )

    def test_missing_subtype_and_garbage(self) -> None:
        assert parse_content_header("text") == ("text", None, ())
        assert parse_content_header("/") is None

    def test_rfc2231_merge(self) -> None:
        # RFC 2231 §3 and §4.1 example shapes, out of order.
        assert merge_rfc2231([("title*1", "b"), ("title*0", "a"), ("other", "x")]) == (
            ("title", "ab"),
            ("other", "x"),
        )
        assert merge_rfc2231(
            [("title*0*", "us-ascii'en'This%20is%20even%20more%20"), ("title*1", "***fun***")]
        ) == (("title*", "us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A"),)
        assert merge_rfc2231([("title*", "utf-8''%E2%82%AC")]) == (("title*", "utf-8''%E2%82%AC"),)
        assert merge_rfc2231([("a", "1"), ("a", "2")]) == (("a", "1"),)
