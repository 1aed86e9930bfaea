"""parse_message: structure, exact offsets, IMAP sections, decoded fields (RFC 5322, 2045-2049,
2231, 2047, 9051 §6.4.5/§7.5.2)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pillarbox.mail.model import BodyPart, EnvelopeAddress, MessageInfo
from pillarbox.mail.parse import (
    ParseLimits,
    UnknownTransferEncoding,
    decoded_part,
    find_part,
    parse_message,
    part_text,
    section_bytes,
    section_span,
)


def msg(*lines: str | bytes, eol: bytes = b"\r\n") -> bytes:
    return eol.join(line if isinstance(line, bytes) else line.encode() for line in lines)


def body_of(raw: bytes, part: BodyPart) -> bytes:
    return raw[part.body_start : part.body_end]


def mime_of(raw: bytes, part: BodyPart) -> bytes:
    return raw[part.header_start : part.body_start]


SIMPLE = msg(
    "From: =?utf-8?q?J=C3=B6rg?= Smith <Joerg.Smith@Example.ORG>",
    "To: Ann <ann@example.com>, bob@example.net",
    "Cc: Carol <carol@example.com>",
    "Subject: Hello there",
    "Date: Tue, 2 Jan 2024 10:30:00 +0200",
    "Message-ID: <m1@example.org>",
    "In-Reply-To: <m0@example.org>",
    "References: <r1@x> <r2@x>\r\n <m0@example.org>",
    "",
    "Line one",
    "Line two",
    "",
)


class TestSimpleMessage:
    def test_top_level_offsets(self) -> None:
        info = parse_message(SIMPLE)
        assert info.size == len(SIMPLE)
        assert SIMPLE[: info.header_end].endswith(b"<m0@example.org>\r\n\r\n")
        assert info.body.header_start == 0
        assert info.body.body_start == info.header_end
        assert body_of(SIMPLE, info.body) == b"Line one\r\nLine two\r\n"
        assert info.body.size == len(b"Line one\r\nLine two\r\n")
        assert info.body.lines == 2

    def test_bodystructure_defaults(self) -> None:
        body = parse_message(SIMPLE).body
        assert (body.type, body.subtype) == ("text", "plain")
        assert body.params == (("charset", "us-ascii"),)
        assert body.encoding == "7BIT"
        assert body.parts == ()
        assert body.disposition is None

    def test_envelope_is_raw(self) -> None:
        env = parse_message(SIMPLE).envelope
        assert env.date == "Tue, 2 Jan 2024 10:30:00 +0200"
        assert env.subject == "Hello there"
        assert env.from_ == (
            EnvelopeAddress("=?utf-8?q?J=C3=B6rg?= Smith", None, "Joerg.Smith", "Example.ORG"),
        )
        # RFC 9051 §7.5.2: absent Sender and Reply-To default to From.
        assert env.sender == env.from_
        assert env.reply_to == env.from_
        assert env.to == (
            EnvelopeAddress("Ann", None, "ann", "example.com"),
            EnvelopeAddress(None, None, "bob", "example.net"),
        )
        assert env.bcc == ()
        assert env.message_id == "<m1@example.org>"
        assert env.in_reply_to == "<m0@example.org>"

    def test_decoded_fields(self) -> None:
        info = parse_message(SIMPLE)
        assert info.subject == "Hello there"
        assert info.from_addr == "joerg.smith@example.org"
        assert info.from_name == "Jörg Smith"
        assert info.to_addr == "ann@example.com"
        assert info.cc_addr == "carol@example.com"
        assert info.message_id == "m1@example.org"
        assert info.in_reply_to == "m0@example.org"
        assert info.references == ("r1@x", "r2@x", "m0@example.org")
        assert info.sent_date == datetime(2024, 1, 2, 10, 30, tzinfo=timezone(timedelta(hours=2)))
        assert info.body_text == "Line one\r\nLine two\r\n"
        assert info.preview == "Line one Line two"
        assert "From: Jörg Smith <Joerg.Smith@Example.ORG>" in info.header_text
        assert info.attachments == ()
        assert info.defects == ()

    def test_sections_of_a_single_part_message(self) -> None:
        info = parse_message(SIMPLE)
        assert section_bytes(SIMPLE, info) == SIMPLE
        assert section_bytes(SIMPLE, info, (), "HEADER") == SIMPLE[: info.header_end]
        assert section_bytes(SIMPLE, info, (), "TEXT") == b"Line one\r\nLine two\r\n"
        # RFC 9051 §6.4.5: a non-multipart message has part 1, its body.
        assert section_bytes(SIMPLE, info, (1,)) == b"Line one\r\nLine two\r\n"
        assert section_bytes(SIMPLE, info, (1,), "MIME") == SIMPLE[: info.header_end]
        assert section_bytes(SIMPLE, info, (2,)) is None
        assert section_bytes(SIMPLE, info, (1, 1)) is None
        assert section_bytes(SIMPLE, info, (), "MIME") is None
        # HEADER/TEXT after a number need a message/rfc822 part.
        assert section_bytes(SIMPLE, info, (1,), "HEADER") is None

    def test_header_fields(self) -> None:
        info = parse_message(SIMPLE)
        got = section_bytes(SIMPLE, info, (), "HEADER.FIELDS", ["SUBJECT", "references"])
        assert (
            got == b"Subject: Hello there\r\nReferences: <r1@x> <r2@x>\r\n <m0@example.org>\r\n\r\n"
        )
        rest = section_bytes(SIMPLE, info, (), "HEADER.FIELDS.NOT", ["from", "to", "cc", "date"])
        assert rest is not None
        assert rest.startswith(b"Subject: Hello there\r\nMessage-ID:")
        assert b"From:" not in rest and rest.endswith(b"\r\n\r\n")
        assert section_bytes(SIMPLE, info, (), "HEADER.FIELDS", ["x-none"]) == b"\r\n"

    def test_json_round_trip(self) -> None:
        info = parse_message(SIMPLE)
        assert MessageInfo.from_json(info.to_json()) == info


MIXED = msg(
    "From: a@example.com",
    "Subject: parts",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="outer"',
    "",
    "This is the preamble.",
    "--outer",
    "Content-Type: multipart/alternative; boundary=inner",
    "",
    "--inner",
    "Content-Type: text/plain; charset=iso-8859-1",
    "Content-Transfer-Encoding: quoted-printable",
    "",
    "Gr=FC=DFe aus K=F6ln",
    "--inner",
    "Content-Type: text/html; charset=utf-8",
    "",
    "<html><head><style>p{color:red}</style></head><body><p>Hello <b>HTML</b></p>"
    "<script>alert(1)</script></body></html>",
    "--inner--",
    "",
    "--outer",
    "Content-Type: application/pdf; name=report.pdf",
    "Content-Disposition: attachment;",
    "\tfilename*0*=utf-8''%E2%82%AC%20rep;",
    '\tfilename*1="ort 2024.pdf"',
    "Content-Transfer-Encoding: base64",
    "Content-Description: the report",
    "Content-Language: en, de",
    "Content-Location: http://example.com/r.pdf",
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
    "",
    base64.b64encode(b"%PDF-1.4 fake").decode(),
    "--outer",
    "Content-Type: image/png",
    "Content-ID: <img1@example.com>",
    "Content-Transfer-Encoding: base64",
    "",
    "iVBORw0KGgo=",
    "--outer--",
    "epilogue text",
    "",
)


class TestMultipart:
    def test_tree_shape(self) -> None:
        info = parse_message(MIXED)
        body = info.body
        assert (body.type, body.subtype) == ("multipart", "mixed")
        assert body.params == (("boundary", "outer"),)
        assert [(p.type, p.subtype) for p in body.parts] == [
            ("multipart", "alternative"),
            ("application", "pdf"),
            ("image", "png"),
        ]
        alternative = body.parts[0]
        assert [(p.type, p.subtype) for p in alternative.parts] == [
            ("text", "plain"),
            ("text", "html"),
        ]
        assert info.defects == ()

    def test_exact_offsets(self) -> None:
        info = parse_message(MIXED)
        plain, html = info.body.parts[0].parts
        assert body_of(MIXED, plain) == b"Gr=FC=DFe aus K=F6ln"
        assert mime_of(MIXED, plain) == (
            b"Content-Type: text/plain; charset=iso-8859-1\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        assert body_of(MIXED, html).startswith(b"<html>") and body_of(MIXED, html).endswith(
            b"</html>"
        )
        # The alternative's body runs from its first delimiter to the end of its epilogue,
        # excluding the CRLF that belongs to the outer delimiter.
        alternative = info.body.parts[0]
        assert body_of(MIXED, alternative).startswith(b"--inner\r\n")
        assert body_of(MIXED, alternative).endswith(b"--inner--\r\n")
        png = info.body.parts[2]
        assert body_of(MIXED, png) == b"iVBORw0KGgo="
        # Preamble and epilogue belong to no part.
        assert b"preamble" not in b"".join(mime_of(MIXED, p) for p in info.body.parts)
        assert MIXED[png.body_end :] == b"\r\n--outer--\r\nepilogue text\r\n"

    def test_part_fields(self) -> None:
        pdf = parse_message(MIXED).body.parts[1]
        assert pdf.encoding == "BASE64"
        assert pdf.description == "the report"
        assert pdf.language == ("en", "de")
        assert pdf.location == "http://example.com/r.pdf"
        assert pdf.md5 == "Q2hlY2sgSW50ZWdyaXR5IQ=="
        assert pdf.params == (("name", "report.pdf"),)
        # RFC 2231 continuations merged, Dovecot style: one extended parameter.
        assert pdf.disposition == (
            "attachment",
            (("filename*", "utf-8''%E2%82%AC%20rep" + "ort%202024.pdf"),),
        )
        assert pdf.size == len(base64.b64encode(b"%PDF-1.4 fake"))

    def test_sections(self) -> None:
        info = parse_message(MIXED)
        assert section_bytes(MIXED, info, (1, 1)) == b"Gr=FC=DFe aus K=F6ln"
        assert section_bytes(MIXED, info, (1, 2, 1)) is None
        assert section_bytes(MIXED, info, (3,)) == b"iVBORw0KGgo="
        assert section_bytes(MIXED, info, (3,), "MIME") == (
            b"Content-Type: image/png\r\nContent-ID: <img1@example.com>\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
        )
        assert section_bytes(MIXED, info, (4,)) is None
        assert section_bytes(MIXED, info, (0,)) is None
        part = find_part(info, (1, 2))
        assert part is not None and part.subtype == "html"
        span = section_span(info, (3,))
        assert span is not None and MIXED[span[0] : span[1]] == b"iVBORw0KGgo="

    def test_text_preview_and_attachments(self) -> None:
        info = parse_message(MIXED)
        # multipart/alternative: the plain text alternative is indexed, the HTML one not.
        assert info.body_text == "Grüße aus Köln"
        assert info.preview == "Grüße aus Köln"
        assert [(a.section, a.filename, a.content_type, a.inline) for a in info.attachments] == [
            ("2", "€ report 2024.pdf", "application/pdf", False),
            ("3", None, "image/png", True),
        ]
        assert info.attachments[0].size == len(b"%PDF-1.4 fake")
        assert info.attachments[1].content_id == "img1@example.com"

    def test_decoded_part(self) -> None:
        info = parse_message(MIXED)
        assert decoded_part(MIXED, info.body.parts[1]) == b"%PDF-1.4 fake"
        assert decoded_part(MIXED, info.body.parts[0].parts[0]) == b"Gr\xfc\xdfe aus K\xf6ln"
        assert part_text(MIXED, info.body.parts[0].parts[0]) == "Grüße aus Köln"

    def test_html_only_body_is_converted(self) -> None:
        raw = msg(
            "Content-Type: text/html; charset=utf-8",
            "",
            "<style>x{}</style><p>Caf&eacute; &amp; cr&egrave;me</p><br>next<script>bad()</script>",
        )
        info = parse_message(raw)
        assert info.body_text == "Café & crème\n\nnext"
        assert info.preview == "Café & crème next"

    def test_lf_only_line_endings(self) -> None:
        raw = MIXED.replace(b"\r\n", b"\n")
        info = parse_message(raw)
        assert info.defects == ()
        plain = info.body.parts[0].parts[0]
        assert body_of(raw, plain) == b"Gr=FC=DFe aus K=F6ln"
        assert body_of(raw, info.body.parts[2]) == b"iVBORw0KGgo="
        assert info.body_text == "Grüße aus Köln"

    def test_digest_parts_default_to_message(self) -> None:
        raw = msg(
            "Content-Type: multipart/digest; boundary=d",
            "",
            "--d",
            "",
            "Subject: first",
            "",
            "one",
            "--d--",
        )
        part = parse_message(raw).body.parts[0]
        assert (part.type, part.subtype) == ("message", "rfc822")
        assert part.envelope is not None and part.envelope.subject == "first"


ATTACHED = msg(
    "From: outer@example.com",
    "Subject: fwd",
    "Content-Type: multipart/mixed; boundary=b1",
    "",
    "--b1",
    "",
    "see attached",
    "--b1",
    "Content-Type: message/rfc822",
    "Content-Disposition: attachment; filename=orig.eml",
    "",
    "From: Inner <inner@example.com>",
    "To: undisclosed-recipients:;",
    "Subject: =?iso-8859-1?q?Caf=E9?=",
    "Content-Type: multipart/alternative; boundary=b2",
    "",
    "--b2",
    "Content-Type: text/plain",
    "",
    "inner text",
    "--b2",
    "Content-Type: text/html",
    "",
    "<p>inner html</p>",
    "--b2--",
    "--b1--",
    "",
)


class TestEncapsulatedMessage:
    def test_message_part(self) -> None:
        info = parse_message(ATTACHED)
        part = info.body.parts[1]
        assert (part.type, part.subtype) == ("message", "rfc822")
        assert part.message is not None and part.envelope is not None
        assert part.message.header_start == part.body_start
        assert part.envelope.subject == "=?iso-8859-1?q?Caf=E9?="
        assert part.envelope.to == (
            EnvelopeAddress(None, None, "undisclosed-recipients", None),
            EnvelopeAddress(None, None, None, None),
        )
        assert part.lines == 14
        assert ATTACHED[part.body_end :] == b"\r\n--b1--\r\n"

    def test_sections_into_the_message(self) -> None:
        info = parse_message(ATTACHED)
        whole = section_bytes(ATTACHED, info, (2,))
        assert whole is not None
        assert whole.startswith(b"From: Inner") and whole.endswith(b"--b2--")
        header = section_bytes(ATTACHED, info, (2,), "HEADER")
        assert header is not None
        assert header.startswith(b"From: Inner") and header.endswith(b"b2\r\n\r\n")
        text = section_bytes(ATTACHED, info, (2,), "TEXT")
        assert text is not None and text.startswith(b"--b2\r\n")
        assert header + text == whole
        assert section_bytes(ATTACHED, info, (2,), "MIME") == (
            b"Content-Type: message/rfc822\r\n"
            b"Content-Disposition: attachment; filename=orig.eml\r\n\r\n"
        )
        assert section_bytes(ATTACHED, info, (2, 1)) == b"inner text"
        assert section_bytes(ATTACHED, info, (2, 2)) == b"<p>inner html</p>"
        assert section_bytes(ATTACHED, info, (2, 2), "MIME") == b"Content-Type: text/html\r\n\r\n"
        assert section_bytes(ATTACHED, info, (2,), "HEADER.FIELDS", ["subject"]) == (
            b"Subject: =?iso-8859-1?q?Caf=E9?=\r\n\r\n"
        )
        assert section_bytes(ATTACHED, info, (1,)) == b"see attached"
        assert section_bytes(ATTACHED, info, (1,), "MIME") == b"\r\n"

    def test_single_part_encapsulated_message(self) -> None:
        raw = msg(
            "Content-Type: message/rfc822",
            "",
            "Subject: inner",
            "",
            "inner body",
        )
        info = parse_message(raw)
        # Section 1 is the top-level body (the message/rfc822 part); 1.1 the inner body.
        assert section_bytes(raw, info, (1,)) == b"Subject: inner\r\n\r\ninner body"
        assert section_bytes(raw, info, (1, 1)) == b"inner body"
        assert section_bytes(raw, info, (1,), "HEADER") == b"Subject: inner\r\n\r\n"
        assert section_bytes(raw, info, (1, 1), "MIME") == b"Subject: inner\r\n\r\n"

    def test_attachment_and_search_text(self) -> None:
        info = parse_message(ATTACHED)
        assert [(a.section, a.filename, a.content_type) for a in info.attachments] == [
            ("2", "orig.eml", "message/rfc822"),
        ]
        assert info.preview == "see attached"
        assert info.body_text == "see attached\ninner text"

    @pytest.mark.parametrize(
        "disposition",
        [
            "attachment; filename*=utf-8''a%0D%0AX-Evil%3A%201%00.txt",
            'attachment; filename="=?utf-8?b?YQ0KWC1FdmlsOiAxAC50eHQ=?="',
        ],
    )
    def test_file_name_controls_become_spaces(self, disposition: str) -> None:
        """Both encodings carry any octet; a CR LF in a name must not reach the header of a
        download or a forward (the name is shown and sent as the sender wrote it otherwise)."""
        raw = msg(
            'Content-Type: multipart/mixed; boundary="b"',
            "",
            "--b",
            "Content-Type: application/octet-stream",
            f"Content-Disposition: {disposition}",
            "",
            "x",
            "--b--",
        )
        assert [a.filename for a in parse_message(raw).attachments] == ["a  X-Evil: 1 .txt"]

    def test_base64_message_rfc822_is_opaque(self) -> None:
        raw = msg(
            "Content-Type: message/rfc822",
            "Content-Transfer-Encoding: base64",
            "",
            base64.b64encode(b"Subject: x\r\n\r\ny").decode(),
        )
        info = parse_message(raw)
        assert info.body.message is None and info.body.envelope is None
        assert any("message/rfc822 with transfer encoding BASE64" in d for d in info.defects)


class TestEncodings:
    def test_encoded_words(self) -> None:
        raw = msg(
            # A multi-byte character split across two encoded words (RFC 2047 §5 forbids it,
            # mailers do it anyway); the space between encoded words disappears (§6.2).
            "Subject: =?UTF-8?B?4oI=?= =?UTF-8?B?rA==?= and =?iso-8859-1?Q?caf=E9_au_lait?=",
            "From: =?utf-8?b?5bGx55Sw?= <yamada@example.jp>",
            "",
            "x",
        )
        info = parse_message(raw)
        assert info.subject == "€ and café au lait"
        assert info.from_name == "山田"

    def test_rfc6532_utf8_header(self) -> None:
        raw = msg("Subject: Grüße", "From: Jürgen <jürgen@bücher.example>", "", "x")
        info = parse_message(raw)
        assert info.subject == "Grüße"
        assert info.from_addr == "jürgen@bücher.example"
        assert info.envelope.subject == "Grüße"

    def test_8bit_latin1_header_is_kept_raw_and_decoded(self) -> None:
        raw = msg(b"Subject: Caf\xe9", b"", b"x")
        info = parse_message(raw)
        assert info.subject == "Café"
        assert info.envelope.subject == "Caf\udce9"
        assert MessageInfo.from_json(info.to_json()) == info

    def test_unknown_charset_falls_back(self) -> None:
        raw = msg(b"Content-Type: text/plain; charset=x-klingon", b"", b"Caf\xc3\xa9 ok")
        assert parse_message(raw).body_text == "Café ok"

    def test_us_ascii_label_with_8bit_text(self) -> None:
        raw = msg(b"Content-Type: text/plain; charset=us-ascii", b"", b"na\xefve")
        assert parse_message(raw).body_text == "naïve"

    def test_bad_base64_and_qp_still_decode(self) -> None:
        raw = msg(
            "Content-Type: multipart/mixed; boundary=z",
            "",
            "--z",
            "Content-Transfer-Encoding: base64",
            "",
            "aGVs!!bG8g\r\nd29y*bGQ",  # junk characters, missing padding
            "--z",
            "Content-Transfer-Encoding: quoted-printable",
            "",
            "soft=\r\nbreak =ZZ bad =4",
            "--z--",
        )
        info = parse_message(raw)
        assert info.body_text == "hello world\nsoftbreak =ZZ bad =4"

    def test_unknown_transfer_encoding(self) -> None:
        raw = msg("Content-Transfer-Encoding: x-uuencode", "", "begin 644 f")
        info = parse_message(raw)
        assert info.body.encoding == "X-UUENCODE"
        with pytest.raises(UnknownTransferEncoding):
            decoded_part(raw, info.body)
        assert info.body_text == "begin 644 f"


class TestMalformed:
    def test_empty_input(self) -> None:
        info = parse_message(b"")
        assert info.size == 0 and info.header_end == 0
        assert (info.body.body_start, info.body.body_end) == (0, 0)
        assert info.envelope.from_ == () and info.envelope.date is None
        assert section_bytes(b"", info, (1,)) == b""

    def test_header_only_without_separator(self) -> None:
        raw = b"Subject: no body"
        info = parse_message(raw)
        assert info.subject == "no body"
        assert info.header_end == len(raw) and info.body.size == 0
        assert info.defects == ()

    def test_missing_separator_starts_body_at_first_non_field_line(self) -> None:
        raw = msg("Subject: s", "this is body text", "more")
        info = parse_message(raw)
        assert raw[info.header_end :] == b"this is body text\r\nmore"
        assert info.body_text == "this is body text\r\nmore"
        assert any("missing header/body separator" in d for d in info.defects)

    def test_body_without_header(self) -> None:
        raw = b"\r\nJust a body"
        info = parse_message(raw)
        assert info.header_end == 2
        assert info.body_text == "Just a body"

    def test_missing_close_delimiter(self) -> None:
        raw = msg(
            "Content-Type: multipart/mixed; boundary=q", "", "--q", "", "one", "--q", "", "two"
        )
        info = parse_message(raw)
        assert [body_of(raw, p) for p in info.body.parts] == [b"one", b"two"]
        assert any("close delimiter missing" in d for d in info.defects)

    def test_boundary_never_found(self) -> None:
        raw = msg("Content-Type: multipart/mixed; boundary=q", "", "no delimiters here")
        info = parse_message(raw)
        (only,) = info.body.parts
        assert body_of(raw, only) == b"no delimiters here"
        assert mime_of(raw, only) == b""
        assert info.body_text == "no delimiters here"
        assert any("boundary not found" in d for d in info.defects)

    def test_multipart_without_boundary_parameter(self) -> None:
        raw = msg("Content-Type: multipart/mixed", "", "text")
        info = parse_message(raw)
        assert len(info.body.parts) == 1
        assert any("without boundary parameter" in d for d in info.defects)

    def test_multipart_with_only_a_close_delimiter(self) -> None:
        raw = msg("Content-Type: multipart/mixed; boundary=e", "", "--e--", "")
        (only,) = parse_message(raw).body.parts
        assert only.size == 0

    def test_delimiter_must_start_a_line_and_match_exactly(self) -> None:
        raw = msg(
            "Content-Type: multipart/mixed; boundary=ab",
            "",
            "--ab",
            "",
            "x --ab inside a line",
            "--abc is another boundary",
            "--ab  ",  # transport padding is allowed
            "",
            "second",
            "--ab--",
        )
        info = parse_message(raw)
        assert [body_of(raw, p) for p in info.body.parts] == [
            b"x --ab inside a line\r\n--abc is another boundary",
            b"second",
        ]

    def test_invalid_content_type_means_text_plain(self) -> None:
        raw = msg("Content-Type: text", "", "x")
        info = parse_message(raw)
        assert (info.body.type, info.body.subtype) == ("text", "plain")
        assert any("invalid Content-Type" in d for d in info.defects)

    def test_nul_bytes(self) -> None:
        raw = b"Subject: a\x00b\r\n\r\nbody\x00with nul"
        info = parse_message(raw)
        # The text the stores keep holds U+FFFD for NUL (PostgreSQL's text refuses NUL); the
        # bytes are as received.
        assert info.subject == "a\ufffdb" and info.body_text == info.preview == "body\ufffdwith nul"
        assert "\x00" not in info.header_text
        assert body_of(raw, info.body) == b"body\x00with nul"

    def test_deep_nesting_is_capped(self) -> None:
        depth = 300
        head = b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
            for i in range(depth)
        )
        raw = head + b"\r\nleaf\r\n"
        info = parse_message(raw, limits=ParseLimits(max_depth=20))
        part, levels = info.body, 0
        while part.parts:
            part, levels = part.parts[0], levels + 1
        assert levels == 21  # 20 real levels, then one opaque stand-in
        assert part.header_start == part.body_start
        assert any("nesting too deep" in d for d in info.defects)
        parse_message(raw)  # the default limit (100) must not hit Python's recursion limit

    def test_deep_message_nesting_is_capped(self) -> None:
        raw = b"Content-Type: message/rfc822\r\n\r\n" * 150 + b"Subject: deep\r\n\r\nx"
        info = parse_message(raw)
        part, levels = info.body, 0
        while part.message is not None:
            part, levels = part.message, levels + 1
        assert levels == 100
        assert (part.type, part.subtype) == ("message", "rfc822")

    def test_too_many_parts(self) -> None:
        parts = b"".join(b"--p\r\n\r\npart %d\r\n" % i for i in range(50))
        raw = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + parts + b"--p--\r\n"
        info = parse_message(raw, limits=ParseLimits(max_parts=10))
        assert len(info.body.parts) == 10
        # The top level counts: 9 real parts, then the rest (from "part 9" on) left opaque.
        assert body_of(raw, info.body.parts[-1]).startswith(b"\r\npart 9\r\n--p")
        assert any("too many parts" in d for d in info.defects)

    def test_huge_header(self) -> None:
        folded = b"X-Big: " + b"\r\n\tabcdefghij" * 1_000_000  # 13 MB of one folded field
        raw = folded + b"\r\nSubject: after\r\n\r\nbody"
        info = parse_message(raw)
        assert info.subject == "after"
        assert raw[info.header_end :] == b"body"
        assert len(info.header_text) == ParseLimits().max_header_text

    def test_large_body_text_is_capped(self) -> None:
        raw = b"Subject: big\r\n\r\n" + b"word " * 500_000
        info = parse_message(raw, limits=ParseLimits(max_body_text=1000, preview_chars=50))
        assert len(info.body_text) == 1000
        assert len(info.preview) == 50
        assert info.body.size == 2_500_000

    def test_limits_are_validated(self) -> None:
        with pytest.raises(ValueError, match="max_depth"):
            ParseLimits(max_depth=10_000)
        with pytest.raises(ValueError, match="preview_chars"):
            ParseLimits(preview_chars=300)


def test_sent_date_variants() -> None:
    def date_of(value: str) -> datetime | None:
        return parse_message(f"Date: {value}\r\n\r\n".encode()).sent_date

    assert date_of("Mon, 1 Jan 2024 00:00:00 -0000") == datetime(2024, 1, 1, tzinfo=UTC)
    assert date_of("1 Jan 2024 00:00 EST") == datetime(
        2024, 1, 1, tzinfo=timezone(timedelta(hours=-5))
    )
    assert date_of("yesterday at noon") is None
    assert date_of("Mon, 99 Foo 2024 99:99:99 +9999") is None
