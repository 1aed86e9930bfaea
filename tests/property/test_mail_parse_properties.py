"""Properties of parse_message: never raises, offsets nest, JSON round-trips byte for byte as
the generic encoding, generated MIME trees come back exactly, and the address fast path agrees
with the full parser."""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pillarbox.mail import headers
from pillarbox.mail.headers import (
    _AddressParser,
    _simple_addresses,
    header_fields,
    parse_date,
    scan_header,
)
from pillarbox.mail.model import BodyPart, MessageInfo
from pillarbox.mail.parse import (
    ParseLimits,
    _decoded_value,
    _header_text,
    find_part,
    parse_message,
    parse_message_fields,
    prepend_fields,
    section_bytes,
)

SETTINGS = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])

# Fragments that make random input look like mail often enough to reach deep code paths.
FRAGMENTS = [
    b"Content-Type: multipart/mixed; boundary=a\r\n",
    b'Content-Type: multipart/alternative; boundary="b"\n',
    b"Content-Type: multipart/digest; boundary=a\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/html; charset=utf-8\r\n",
    b"Content-Type: text/plain; charset*=x''%ff; name*0*=utf-8''%E2; name*1=x\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b'Content-Disposition: attachment; filename="=?utf-8?q?f=C3=B6?="\r\n',
    b"Content-Disposition: inline; filename*=utf-8''%C3%A9.png\r\n",
    b"Content-ID: <img@x>\r\nContent-Language: en, de\r\nContent-Location: a.png\r\n",
    b"Content-Description: \xe9t\xe9\r\nContent-MD5: Q2hlY2s=\r\n",
    b'From: "N" <a@b>, G: c@d;\r\n',
    b"To: (x) <@r:q@[1.2.3.4]>\r\n",
    b"Subject: =?utf-8?b?w7Y=?= =?iso-8859-1?q?=E9?=\r\n",
    b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n",
    b"References: <a@b> <c@d>\r\n",
    b" folded\r\n",
    b"--a\r\n",
    b"--a--\r\n",
    b"--b\n",
    b"\r\n",
    b"\n",
    b"<p>x<!--",
    b"=?",
    b"\x00\xff\xfe",
    b"text line\r\n",
]
mime_like = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=12)), max_size=40
).map(b"".join)
any_input = st.one_of(st.binary(max_size=400), mime_like)


def check_nesting(part: BodyPart, lo: int, hi: int) -> None:
    assert lo <= part.header_start <= part.body_start <= part.body_end <= hi
    assert part.size == part.body_end - part.body_start
    if part.type == "multipart":
        assert part.parts, "every multipart has at least one part"
    previous = part.body_start
    for child in part.parts:
        assert child.header_start >= previous
        check_nesting(child, part.body_start, part.body_end)
        previous = child.body_end
    if part.message is not None:
        assert part.message.header_start == part.body_start
        assert part.message.body_end == part.body_end
        check_nesting(part.message, part.body_start, part.body_end)


def sections(part: BodyPart, prefix: tuple[int, ...]) -> list[tuple[int, ...]]:
    if part.type == "multipart":
        found = []
        for number, child in enumerate(part.parts, 1):
            found.append((*prefix, number))
            found += sections_below(child, (*prefix, number))
        return found
    return [(*prefix, 1)]


def sections_below(part: BodyPart, section: tuple[int, ...]) -> list[tuple[int, ...]]:
    if part.type == "multipart":
        return sections(part, section)
    if part.message is not None:
        return sections(part.message, section)
    return []


@SETTINGS
@given(any_input)
def test_never_raises_and_offsets_nest(raw: bytes) -> None:
    info = parse_message(raw, limits=ParseLimits(max_depth=8, max_parts=60))
    assert info.size == len(raw)
    assert info.header_end == info.body.body_start
    check_nesting(info.body, 0, len(raw))
    assert info.body.header_start == 0 and info.body.body_end == len(raw)
    for section in sections(info.body, ()):
        part = find_part(info, section)
        assert part is not None
        assert section_bytes(raw, info, section) == raw[part.body_start : part.body_end]
        assert section_bytes(raw, info, section, "MIME") == raw[part.header_start : part.body_start]
        fields = section_bytes(raw, info, section, "HEADER.FIELDS.NOT", ["x"])
        if part.message is not None:
            assert fields is not None and fields.endswith(b"\r\n")
    for attachment in info.attachments:
        assert find_part(info, tuple(int(n) for n in attachment.section.split("."))) is not None
    assert len(info.preview) <= 200


def generic_json(value: Any) -> Any:
    """The model's JSON shape, walked generically: fields in order, tuples as lists."""
    if isinstance(value, tuple):
        return [generic_json(v) for v in value]
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: generic_json(getattr(value, f.name)) for f in fields(value)}
    return value


def generic_encoding(info: MessageInfo) -> bytes:
    return json.dumps(generic_json(info), ensure_ascii=True, separators=(",", ":")).encode()


RICH = (
    b"From: =?utf-8?b?5bGx55Sw?= <yamada@example.jp>, G: c@d, (x) <@r:q@[1.2.3.4]>;\r\n"
    b"Subject: Caf\xe9\r\nDate: Mon, 1 Jan 2024 00:00:00 +0530\r\nReferences: <a@b> <c@d>\r\n"
    b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>h\xc3\xa9\r\n--a\r\n"
    b'Content-Type: image/png; name="x.png"\r\n'
    b"Content-ID: <img@x>\r\nContent-Language: en, de\r\nContent-Location: a.png\r\n"
    b"Content-Description: d\r\nContent-MD5: Q2hlY2s=\r\nContent-Transfer-Encoding: base64\r\n"
    b"\r\naGk=\r\n--a\r\nContent-Type: message/rfc822\r\n"
    b"Content-Disposition: attachment; filename*0*=utf-8''%C3%A9; filename*1=\" x\"\r\n\r\n"
    b"Subject: inner\r\nTo: q@r\r\n\r\nbody\r\n--a--\r\n"
)


@SETTINGS
@given(any_input)
@example(RICH)
def test_json_round_trip(raw: bytes) -> None:
    info = parse_message(raw)
    assert info.to_json() == generic_encoding(info)
    assert info.to_json(text=False) == generic_encoding(replace(info, header_text="", body_text=""))
    assert MessageInfo.from_json(info.to_json()) == info


header_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"Subject: s\r\n",
                b"X-A:b\n",
                b"To : a@b\r\n",
                b" folded\r\n",
                b"\tfolded\n",
                b"\r\n",
                b"\n",
                b"\r",
                b"no colon\r\n",
                b"Bad Name: x\r\n",
                b"X-CR: v\r\r\n",
                b"X-End: no line end",
            ]
        ),
        st.binary(max_size=8),
    ),
    max_size=12,
).map(b"".join)


@SETTINGS
@given(header_lines, st.integers(min_value=1, max_value=6), st.integers(0, 3))
def test_bulk_header_read_agrees_with_the_field_loop(raw: bytes, max_fields: int, cut: int) -> None:
    """Headers read with one ``findall`` come out as the field-by-field loop reads them."""
    start, end = min(cut, len(raw)), len(raw) - min(cut, len(raw)) // 2
    for limit in (max_fields, None):
        bulk = scan_header(raw, start, end, max_fields=limit)
        with mock.patch.object(headers, "_LEADING_FIELDS_BYTES", -1):
            assert bulk == scan_header(raw, start, end, max_fields=limit)


#: Headers of well-formed fields, often more than a limit below allows.
field_headers = st.lists(
    st.sampled_from([b"Subject: s\r\n", b"X-A:b\n", b"To: a@b,\r\n c@d\r\n", b"Received: x\r\n"]),
    max_size=10,
).map(lambda fields: b"".join(fields) + b"\r\nbody\r\n")


@SETTINGS
@given(
    st.one_of(field_headers, header_lines, any_input),
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=1, max_value=8),
)
@example(b"A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody", 5, 2)
@example(b"A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody", 2, 5)
@example(b"A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody", 4, 8)
def test_the_parse_hands_over_the_fields_a_second_scan_would_read(
    raw: bytes, parse_limit: int, limit: int
) -> None:
    """The policy's tokens and header facts take the parse's read of the header instead of
    scanning it again (``header_fields``): the same fields, whatever either limit."""
    info, scanned = parse_message_fields(raw, limits=ParseLimits(max_header_fields=parse_limit))
    assert info == parse_message(raw, limits=ParseLimits(max_header_fields=parse_limit))
    again = scan_header(raw, 0, info.header_end, max_fields=limit).fields
    assert header_fields(raw, info.header_end, limit, scanned) == again
    kept = scanned.upto(limit)
    if limit <= parse_limit:
        assert kept == again  # the parse read at least as far: no second scan
    else:
        assert kept is None or kept == again


@SETTINGS
@given(header_lines.map(lambda raw: b"X: =?utf-8?q?=C3=A9?=\r\n" + raw))
def test_header_text_shortcut_agrees_with_decoding(raw: bytes) -> None:
    """ASCII values without encoded words skip decoding; the text is what decoding gives."""
    block = scan_header(raw, 0, len(raw))
    decoded = "\n".join(f"{f.name}: {_decoded_value(f.value)}" for f in block.fields)
    assert _header_text(block, 10_000) == decoded[:10_000]


def two_digits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map("{:02d}".format)


dates = st.builds(
    "{}{} {} {} {}:{}:{} {}{}{}".format,
    st.sampled_from(["", "Sun, ", "Mon, "]),
    st.one_of(st.integers(0, 32).map(str), two_digits(0, 32)),
    st.sampled_from(["Jan", "Feb", "Nov", "Dec"]),
    st.sampled_from(["1999", "2024", "2025", "2026", "9999", "1000"]),
    two_digits(0, 25),
    two_digits(0, 61),
    two_digits(0, 61),
    st.sampled_from(["+", "-"]),
    two_digits(0, 25),
    two_digits(0, 99),
)


@SETTINGS
@given(dates)
@example("Sun, 29 Nov 2026 09:00:00 -0000")
@example("29 Feb 2025 09:00:00 +0000")
@example("1 Jan 2024 23:59:59 +2400")
def test_canonical_dates_read_as_the_general_parser_reads_them(text: str) -> None:
    try:
        general: datetime | None = parsedate_to_datetime(text)
    except ValueError:
        general = None
    if general is not None and general.tzinfo is None:
        general = general.replace(tzinfo=UTC)
    got = parse_date(text)
    assert got == general
    if got is not None and general is not None:
        assert got.isoformat() == general.isoformat()


# -- generated MIME trees --------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    subtype: str
    body: bytes


@dataclass(frozen=True)
class Multi:
    subtype: str
    children: tuple[Leaf | Multi, ...]


# Bodies never contain "-", so no line of a body can look like a delimiter, and never end in
# CR, which before an LF delimiter line would read as the CRLF belonging to the delimiter.
bodies = (
    st.text(alphabet="ab \r\n\tz", max_size=30)
    .map(str.encode)
    .filter(lambda body: not body.endswith(b"\r"))
)
leaves = st.builds(Leaf, st.sampled_from(["plain", "html", "x-data"]), bodies)
trees = st.recursive(
    leaves,
    lambda inner: st.builds(
        Multi,
        st.sampled_from(["mixed", "alternative", "related"]),
        st.lists(inner, min_size=1, max_size=4).map(tuple),
    ),
    max_leaves=12,
)


def render(node: Leaf | Multi, eol: bytes, depth: int = 0) -> bytes:
    if isinstance(node, Leaf):
        return b"Content-Type: text/" + node.subtype.encode() + eol + eol + node.body
    boundary = b"bound%d" % depth
    out = [b"Content-Type: multipart/" + node.subtype.encode() + b"; boundary=" + boundary + eol]
    out.append(eol + b"preamble" + eol)
    for child in node.children:
        out.append(b"--" + boundary + eol + render(child, eol, depth + 1) + eol)
    out.append(b"--" + boundary + b"--" + eol + b"epilogue")
    return b"".join(out)


def compare(raw: bytes, node: Leaf | Multi, part: BodyPart) -> None:
    if isinstance(node, Leaf):
        assert (part.type, part.subtype) == ("text", node.subtype)
        assert raw[part.body_start : part.body_end] == node.body
        return
    assert (part.type, part.subtype) == ("multipart", node.subtype)
    assert len(part.parts) == len(node.children)
    for child, child_part in zip(node.children, part.parts, strict=True):
        compare(raw, child, child_part)


@SETTINGS
@given(trees, st.sampled_from([b"\r\n", b"\n"]))
def test_generated_trees_parse_exactly(tree: Leaf | Multi, eol: bytes) -> None:
    raw = b"Subject: t" + eol + render(tree, eol)
    info = parse_message(raw)
    assert info.defects == ()
    compare(raw, tree, info.body)


# -- fields put on top of a parsed message ----------------------------------------------------

# Trace and policy fields as delivery adds them, and fields that must make the shortcut decline
# (an ENVELOPE or Content-* field, a folded or malformed line, a blank line, no line end).
top_fields = st.lists(
    st.sampled_from(
        [
            b"Return-Path: <a@b.example>\r\n",
            b"Delivered-To: u@b.example\r\n",
            b"Received: from x (x [127.0.0.1])\r\n\tby y with ESMTP id 1; Sun, 29 Nov 2026\r\n",
            b"X-Pillarbox-Spam: no, score=-1.0\r\n",
            b"Authentication-Results: y; spf=pass smtp.mailfrom=b.example\r\n",
            b"X-Lf: bare line feed\n",
            b"Subject: on top\r\n",
            b"Content-Type: text/html\r\n",
            b" continuation\r\n",
            b"no colon here\r\n",
            b"\r\n",
            b"X-Open: no line end",
        ]
    ),
    max_size=5,
).map(b"".join)


@SETTINGS
@given(any_input, top_fields)
@example(b"!:", b"\r\n")  # an empty line on top ends the header there
def test_prepended_fields_match_a_full_parse(raw: bytes, fields: bytes) -> None:
    """Whenever the shortcut answers, it is exactly the parse of the whole copy."""
    derived = prepend_fields(parse_message(raw), fields)
    if derived is not None:
        assert derived == parse_message(fields + raw)


@SETTINGS
@given(trees, st.sampled_from([b"\r\n", b"\n"]), st.integers(min_value=1, max_value=4))
def test_prepended_trace_fields_need_no_second_parse(
    tree: Leaf | Multi, eol: bytes, count: int
) -> None:
    """Well-formed mail with delivery's fields on top takes the shortcut, and gets the same."""
    raw = b"Subject: t" + eol + b"From: a@b.example" + eol + render(tree, eol)
    fields = b"Delivered-To: u@b.example\r\n" * count + b"Received: from x\r\n\tby y\r\n"
    derived = prepend_fields(parse_message(raw), fields)
    assert derived is not None
    assert derived == parse_message(fields + raw)


def test_prepend_fields_carries_every_field() -> None:
    """``prepend_fields`` and ``_shifted`` rebuild the model field by field (for speed), so a
    field added to it but not to them would silently take its default. This message sets
    every field somewhere to a value other than its default, so the derived parse and the
    full one differ if one is dropped (but ``defects``: a message with any is parsed whole)."""
    raw = (
        b"To: t@u.example\r\nCc: c@e.example\r\nMessage-ID: <m@x>\r\nIn-Reply-To: <p@x>\r\n" + RICH
    )
    info = parse_message(raw)

    def parts(part: BodyPart) -> list[BodyPart]:
        inner = [*part.parts, *([part.message] if part.message else [])]
        return [part, *(p for child in inner for p in parts(child))]

    def default(f: Any) -> Any:
        return f.default if f.default is not MISSING else f.default_factory()

    for f in fields(MessageInfo):
        if f.name != "defects" and (f.default is not MISSING or f.default_factory is not MISSING):
            assert getattr(info, f.name) != default(f), f"MessageInfo.{f.name} left at default"
    for f in fields(BodyPart):
        if f.default is not MISSING:
            assert any(getattr(p, f.name) != f.default for p in parts(info.body)), f.name
    on_top = b"Delivered-To: u@b.example\r\nReceived: from x\r\n\tby y\r\n"
    assert prepend_fields(info, on_top) == parse_message(on_top + raw)


def test_prepended_fields_decline_near_the_limits() -> None:
    limits = ParseLimits(max_header_fields=4, max_header_text=200)
    raw = b"Subject: s\r\nFrom: a@b\r\n\r\nbody\r\n"
    info = parse_message(raw, limits=limits)
    assert prepend_fields(info, b"X-A: 1\r\n", limits=limits) == parse_message(
        b"X-A: 1\r\n" + raw, limits=limits
    )
    # Two more fields would reach max_header_fields; a long one, max_header_text.
    assert prepend_fields(info, b"X-A: 1\r\nX-B: 2\r\n", limits=limits) is None
    assert prepend_fields(info, b"X-A: " + b"x" * 200 + b"\r\n", limits=limits) is None


# -- address fast path -----------------------------------------------------------------------

atoms = st.text(alphabet="abcXYZ019.-_+=", min_size=1, max_size=8).filter(
    lambda s: not s.startswith(".")
)
names = st.lists(st.text(alphabet="abcXYZ .é'", min_size=1, max_size=6), max_size=3).map(" ".join)
mailboxes = st.one_of(
    st.builds(lambda lp, d: f"{lp}@{d}", atoms, atoms),
    st.builds(lambda n, lp, d: f"{n} <{lp}@{d}>", names, atoms, atoms),
    st.builds(lambda n, lp, d: f'"{n}"  <{lp}@{d}>', names, atoms, atoms),
)


@SETTINGS
@given(st.lists(mailboxes, min_size=1, max_size=5), st.sampled_from([",", ", ", " ,\t"]))
def test_simple_address_path_agrees_with_parser(items: list[str], separator: str) -> None:
    text = separator.join(items)
    fast = _simple_addresses(text, 1000)
    full = _AddressParser(1000)
    full.parse(text)
    assert fast is not None
    assert fast == tuple(full.out)
