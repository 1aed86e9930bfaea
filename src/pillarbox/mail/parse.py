"""MIME → :class:`~pillarbox.mail.model.MessageInfo`: the one parse at ingest (DESIGN principle 4).

Implementation notes (RFC 5322, RFC 2045–2049, RFC 2231, RFC 2047, RFC 6532, RFC 9051):

- **Offsets are the contract.** Every :class:`BodyPart` records ``header_start``, ``body_start``
  and ``body_end`` into the raw bytes, so every ``BODY[section]`` of RFC 9051 §6.4.5 is a slice
  (:func:`section_span`) and no FETCH re-parses. ``header_start <= body_start <= body_end``,
  children lie inside their parent's body, siblings in order without overlap.
- **Multipart bodies** (RFC 2046 §5.1.1): a delimiter is ``--boundary`` at the start of a line,
  followed by optional transport padding and the line end; the line break *before* it belongs to
  the delimiter, so a part's ``body_end`` excludes it. The preamble and epilogue belong to no
  part. A multipart that cannot be split (no boundary parameter, no delimiter found, too deep)
  gets one synthetic header-less ``text/plain`` child covering its whole body, so BODYSTRUCTURE
  stays valid (RFC 9051 needs ≥ 1 part) and the content stays reachable as ``BODY[n.1]``.
- **Encapsulated messages**: a ``message/rfc822`` or ``message/global`` part with an identity
  transfer encoding has ``message`` (its parsed body, whose ``header_start`` is the part's
  ``body_start``) and ``envelope``. With base64/QP (forbidden by RFC 2046 §5.2.1 but seen), or
  beyond the depth limit, ``message`` is None and IMAP renders the part as a basic body.
- **Case**: ``type``, ``subtype``, parameter names and the disposition kind are lower case;
  ``encoding`` is upper case (``"7BIT"``, ``"BASE64"``); parameter values and every header-derived
  string are kept as sent. IMAP matches all of these case-insensitively (RFC 9051 §7.5.2).
- **Parameters** are RFC 2231 continuation-merged the way Dovecot presents them
  (see :func:`~pillarbox.mail.headers.merge_rfc2231`); decoded file names are in ``attachments``.
- **lines** is the number of text lines of the body as transmitted: line feeds, plus one for a
  last line without one (inside a multipart the final CRLF belongs to the delimiter).
- **Text the stores hold**: the text fields the stores keep in columns and index (subject,
  addresses, ids, header and body text, preview) never hold NUL: PostgreSQL's ``text`` refuses
  it, and one NUL byte in a body or an encoded word (``=?utf-8?q?=00?=``) made every delivery
  of the message fail there. It becomes U+FFFD, as HTML parsers replace it.
- **Robustness**: no input makes :func:`parse_message` raise; what was wrong is listed in
  ``MessageInfo.defects``. Time is linear in the message size for a fixed nesting depth (each
  nesting level scans its own region once for its boundary).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pillarbox.mail.decode import (
    IDENTITY_ENCODINGS,
    UnknownTransferEncoding,
    base64_decoded_size,
    decode_charset,
    decode_rfc2231,
    decode_transfer,
    decode_words,
    escaped_to_text,
    header_bytes_to_text,
    html_to_text,
    printable,
)
from pillarbox.mail.headers import (
    MISSING_DOMAIN,
    HeaderBlock,
    HeaderField,
    ScannedFields,
    param,
    parse_addresses,
    parse_content_header,
    parse_date,
    parse_msg_ids,
    raw_text,
    scan_header,
    unfold,
)
from pillarbox.mail.model import (
    Attachment,
    BodyPart,
    Envelope,
    EnvelopeAddress,
    MessageInfo,
    Params,
)

__all__ = [
    "DEFAULT_LIMITS",
    "ParseLimits",
    "SectionText",
    "UnknownTransferEncoding",
    "decoded_part",
    "find_part",
    "parse_message",
    "part_text",
    "prepend_fields",
    "section_bytes",
    "section_span",
]

#: Hard ceiling for ``ParseLimits.max_depth``: the parser recurses once or twice per level.
MAX_DEPTH_CEILING = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseLimits:
    """Bounds on the work and the metadata one message may cause; the lead wires them to config."""

    #: Nesting depth of multiparts and encapsulated messages; deeper parts are opaque.
    max_depth: int = 100
    #: MIME parts per message; past it, the rest of a multipart is one opaque part.
    max_parts: int = 10_000
    #: Characters of decoded header text kept for the full-text index.
    max_header_text: int = 64 * 1024
    #: Characters of decoded body text kept for the full-text index.
    max_body_text: int = 256 * 1024
    #: Header fields read per header; the rest of a longer header is skipped as a whole.
    max_header_fields: int = 10_000
    #: Addresses kept per ENVELOPE address field, and msg-ids per References field.
    max_list_items: int = 1000
    #: Characters of the preview (RFC 8970 §2 caps it at 256).
    preview_chars: int = 200

    def __post_init__(self) -> None:
        if not 1 <= self.max_depth <= MAX_DEPTH_CEILING:
            raise ValueError(f"max_depth must be within 1..{MAX_DEPTH_CEILING}")
        if min(self.max_parts, self.max_list_items, self.max_header_fields) < 1:
            raise ValueError("max_parts, max_list_items, max_header_fields must be at least 1")
        if min(self.max_header_text, self.max_body_text) < 0:
            raise ValueError("text limits must not be negative")
        if not 0 <= self.preview_chars <= 256:
            raise ValueError("preview_chars must be within 0..256 (RFC 8970 §2)")


DEFAULT_LIMITS = ParseLimits()

_Media = tuple[str, str, Params]
# RFC 2045 §5.2: no (or an invalid) Content-Type means text/plain; charset=us-ascii.
_TEXT_PLAIN: _Media = ("text", "plain", (("charset", "us-ascii"),))
# RFC 2046 §5.1.5: in a multipart/digest the default is message/rfc822.
_MESSAGE_RFC822: _Media = ("message", "rfc822", ())
_MESSAGE_SUBTYPES = frozenset({"rfc822", "global"})  # RFC 2046 §5.2.1, RFC 6532 §3.7
_BODY_TEXT_SUBTYPES = frozenset({"plain", "html"})
_LANGUAGE_SPLIT = re.compile(r"[,\s]+")


def parse_message(raw: bytes, *, limits: ParseLimits = DEFAULT_LIMITS) -> MessageInfo:
    """Parse a message once into everything FETCH, SEARCH, SORT and the web need.

    Never raises on malformed input; see :attr:`MessageInfo.defects`.
    """
    return parse_message_fields(raw, limits=limits)[0]


def parse_message_fields(
    raw: bytes, *, limits: ParseLimits = DEFAULT_LIMITS
) -> tuple[MessageInfo, ScannedFields]:
    """:func:`parse_message`, and the header's fields as it read them: the inbound policy's
    tokens and header facts would otherwise scan the header again (:func:`header_fields`)."""
    parser = _StructureParser(raw, limits)
    body, block = parser.entity(0, len(raw), 0, _TEXT_PLAIN)
    envelope, heads = parser.envelope(block)
    collector = _TextCollector(raw, limits)
    collector.message(body, (), top=True)
    first_from = _first_mailbox(envelope.from_)
    subject = heads.get("subject")
    references = heads.get("references")
    # The envelope holds the raw text of Date, Message-ID and In-Reply-To already.
    info = MessageInfo(
        size=len(raw),
        header_end=body.body_start,
        envelope=envelope,
        body=body,
        sent_date=parse_date(envelope.date) if envelope.date is not None else None,
        subject=_storable(_decoded_value(subject)) if subject is not None else "",
        from_addr=_storable(_address_text(first_from)),
        from_name=(
            _storable(decode_words(escaped_to_text(first_from.name or ""))) if first_from else ""
        ),
        to_addr=_storable(_address_text(_first_mailbox(envelope.to))),
        cc_addr=_storable(_address_text(_first_mailbox(envelope.cc))),
        message_id=_first_id(envelope.message_id),
        in_reply_to=_first_id(envelope.in_reply_to),
        references=(
            ()
            if references is None
            else tuple(
                map(_id_key, parse_msg_ids(raw_text(references), limit=limits.max_list_items))
            )
        ),
        header_text=_storable(_header_text(block, limits.max_header_text)),
        body_text=_storable("\n".join(collector.texts)),
        preview=_storable(collector.preview),
        attachments=tuple(collector.attachments),
        defects=tuple(parser.defects),
    )
    return info, ScannedFields(block.fields, limits.max_header_fields)


def prepend_fields(
    info: MessageInfo, fields: bytes, *, limits: ParseLimits = DEFAULT_LIMITS
) -> MessageInfo | None:
    """The parse of ``fields + raw`` from ``info``, the parse of ``raw`` with ``limits``,
    without reading ``raw`` again; None when that cannot be exact (then parse the whole).

    Delivery puts trace and policy fields (``Received``, ``Return-Path``, ``Delivered-To``,
    ``Authentication-Results``…) on top of a message already parsed for the policy; parsing
    the copy again would repeat all of the work for a few lines. Fields added on top of a
    header change nothing below them — :func:`scan_header` reads field by field — except the
    offsets, which move by ``len(fields)``, and the header text, which gains their lines.
    That holds when ``fields`` are whole, well-formed fields none of which is an ENVELOPE or
    ``Content-*`` field (the first of each counts), and ``raw`` parsed without defects (a
    first line that is a continuation would join the last added field; defects carry
    offsets); the limits on header fields and header text must not be reached by the sum.
    """
    if not fields:
        return info
    if info.defects or not fields.endswith(b"\n"):
        return None
    lines = b"\n" + fields
    if b"\n\r\n" in lines or b"\n\n" in lines:
        return None  # an empty line would end the header above the message's own fields
    block = scan_header(fields, 0, len(fields), max_fields=limits.max_header_fields)
    if block.defects or block.body_start != len(fields):
        return None
    for f in block.fields:
        if f.key in _ENVELOPE_FIELDS or f.key[:8] == "content-":
            return None
    # ``header_text`` has a line per field at least (a decoded value may hold more).
    if info.header_text.count("\n") + 1 + len(block.fields) >= limits.max_header_fields:
        return None
    added = _header_text(block, limits.max_header_text)
    text = f"{added}\n{info.header_text}" if info.header_text else added
    if len(text) >= limits.max_header_text:
        return None  # the original text may have been cut, or the sum would be
    delta = len(fields)
    # Built field by field rather than with dataclasses.replace, which walks the fields in
    # Python first: this runs for every delivered copy.
    return MessageInfo(
        size=info.size + delta,
        header_end=info.header_end + delta,
        envelope=info.envelope,
        body=_shifted(info.body, delta, 0),  # the top-level header grows, it does not move
        sent_date=info.sent_date,
        subject=info.subject,
        from_addr=info.from_addr,
        from_name=info.from_name,
        to_addr=info.to_addr,
        cc_addr=info.cc_addr,
        message_id=info.message_id,
        in_reply_to=info.in_reply_to,
        references=info.references,
        header_text=text,
        body_text=info.body_text,
        preview=info.preview,
        attachments=info.attachments,
        defects=info.defects,
    )


def _shifted(part: BodyPart, delta: int, header_delta: int) -> BodyPart:
    """``part`` and everything below it ``delta`` bytes further into the message, its own
    header start ``header_delta`` bytes."""
    return BodyPart(
        type=part.type,
        subtype=part.subtype,
        params=part.params,
        content_id=part.content_id,
        description=part.description,
        encoding=part.encoding,
        size=part.size,
        lines=part.lines,
        md5=part.md5,
        disposition=part.disposition,
        language=part.language,
        location=part.location,
        header_start=part.header_start + header_delta,
        body_start=part.body_start + delta,
        body_end=part.body_end + delta,
        parts=tuple([_shifted(p, delta, delta) for p in part.parts]),
        envelope=part.envelope,
        message=None if part.message is None else _shifted(part.message, delta, delta),
    )


# -- structure ------------------------------------------------------------------------------------


class _StructureParser:
    """One pass over the raw bytes building the BodyPart tree; collects defects as it goes."""

    def __init__(self, raw: bytes, limits: ParseLimits) -> None:
        self.raw = raw
        self.limits = limits
        self.defects: list[str] = []
        self.parts = 0

    def defect(self, what: str, offset: int) -> None:
        self.defects.append(f"{what} (at byte {offset})")

    def entity(
        self, start: int, end: int, depth: int, default: _Media
    ) -> tuple[BodyPart, HeaderBlock]:
        """Parse the entity (header + body) in ``raw[start:end]``."""
        raw = self.raw
        self.parts += 1
        block = scan_header(raw, start, end, max_fields=self.limits.max_header_fields)
        for problem in block.defects:
            self.defect(problem, start)
        content: dict[str, HeaderField] = {}
        for f in block.fields:
            key = f.key
            if key[:8] == "content-" and key not in content:
                content[key] = f
        media = self.media(content.get("content-type"), default, start)
        kind, subtype, params = media
        encoding = "7BIT"
        if "content-transfer-encoding" in content:
            tokens = raw_text(content["content-transfer-encoding"].value).split(None, 1)
            encoding = tokens[0].rstrip(";").upper() if tokens else encoding
        body_start = block.body_start
        parts: tuple[BodyPart, ...] = ()
        message: BodyPart | None = None
        envelope: Envelope | None = None
        if kind == "multipart":
            if encoding not in IDENTITY_ENCODINGS:
                self.defect(f"multipart with transfer encoding {encoding}", start)
            parts = self.multipart(subtype, params, body_start, end, depth)
        elif kind == "message" and subtype in _MESSAGE_SUBTYPES:
            if encoding not in IDENTITY_ENCODINGS:
                self.defect(f"message/{subtype} with transfer encoding {encoding}", start)
            elif depth >= self.limits.max_depth or self.parts >= self.limits.max_parts:
                self.defect("nesting too deep or too many parts; part left opaque", start)
            else:
                message, inner = self.entity(body_start, end, depth + 1, _TEXT_PLAIN)
                envelope = self.envelope(inner)[0]
        part = BodyPart(
            type=kind,
            subtype=subtype,
            params=params,
            content_id=_optional_text(content.get("content-id")),
            description=_optional_text(content.get("content-description")),
            encoding=encoding,
            size=end - body_start,
            lines=_count_lines(raw, body_start, end) if kind in ("text", "message") else 0,
            md5=_optional_text(content.get("content-md5")),
            disposition=self.disposition(content.get("content-disposition"), start),
            language=_languages(content.get("content-language")),
            location=_optional_text(content.get("content-location")),
            header_start=start,
            body_start=body_start,
            body_end=end,
            parts=parts,
            envelope=envelope,
            message=message,
        )
        return part, block

    def media(self, field: HeaderField | None, default: _Media, offset: int) -> _Media:
        if field is None:
            return default
        parsed = parse_content_header(raw_text(field.value))
        if parsed is None or parsed[1] is None:
            # RFC 2045 §5.2: a syntactically invalid Content-Type means the default.
            self.defect("invalid Content-Type", offset)
            return _TEXT_PLAIN
        return parsed[0], parsed[1], parsed[2]

    def disposition(self, field: HeaderField | None, offset: int) -> tuple[str, Params] | None:
        if field is None:
            return None
        parsed = parse_content_header(raw_text(field.value))
        if parsed is None:
            self.defect("invalid Content-Disposition", offset)
            return None
        return parsed[0], parsed[2]

    def multipart(
        self, subtype: str, params: Params, start: int, end: int, depth: int
    ) -> tuple[BodyPart, ...]:
        """Split a multipart body (RFC 2046 §5.1.1) into its parts."""
        raw, limits = self.raw, self.limits
        boundary = (param(params, "boundary") or "").rstrip(" ")
        if not boundary:
            self.defect("multipart without boundary parameter", start)
            return (self.opaque(start, end),)
        if depth >= limits.max_depth or self.parts >= limits.max_parts:
            self.defect("nesting too deep or too many parts; part left opaque", start)
            return (self.opaque(start, end),)
        delimiter = b"--" + boundary.encode("utf-8", "surrogateescape")
        found = _find_delimiter(raw, delimiter, start, start, end)
        if found is None:
            self.defect("multipart boundary not found", start)
            return (self.opaque(start, end),)
        line, part_start, close = found
        if close:
            self.defect("multipart without parts", start)
            return (self.opaque(line, line),)
        child_default = _MESSAGE_RFC822 if subtype == "digest" else _TEXT_PLAIN
        children: list[BodyPart] = []
        while True:
            if self.parts >= limits.max_parts:
                self.defect("too many parts; rest of multipart left opaque", part_start)
                children.append(self.opaque(part_start, end))
                break
            found = _find_delimiter(raw, delimiter, start, part_start, end)
            if found is None:
                self.defect("multipart close delimiter missing", end)
                children.append(self.entity(part_start, end, depth + 1, child_default)[0])
                break
            line, after, close = found
            part_end = _before_line_break(raw, part_start, line)
            children.append(self.entity(part_start, part_end, depth + 1, child_default)[0])
            if close:
                break
            part_start = after
        return tuple(children)

    def opaque(self, start: int, end: int) -> BodyPart:
        """A header-less text/plain stand-in for content that could not be split."""
        self.parts += 1
        kind, subtype, params = _TEXT_PLAIN
        return BodyPart(
            type=kind,
            subtype=subtype,
            params=params,
            size=end - start,
            lines=_count_lines(self.raw, start, end),
            header_start=start,
            body_start=start,
            body_end=end,
        )

    def envelope(self, block: HeaderBlock) -> tuple[Envelope, dict[str, bytes]]:
        """RFC 9051 §7.5.2 ENVELOPE of a message header, and the first value of each of its
        fields (plus References) for the decoded fields."""
        heads: dict[str, bytes] = {}
        for f in block.fields:
            key = f.key
            if key in _ENVELOPE_FIELDS and key not in heads:
                heads[key] = f.value
        texts = {key: raw_text(value) for key, value in heads.items()}
        lists: dict[str, tuple[EnvelopeAddress, ...]] = {}
        for key in _ADDRESS_FIELDS:
            if key in texts:
                found, problems = parse_addresses(texts[key], limit=self.limits.max_list_items)
                for problem in problems:
                    self.defect(f"{key}: {problem}", block.fields[0].start)
                lists[key] = found
        text, addresses = texts.get, lists.get
        from_ = addresses("from", ())
        envelope = Envelope(
            date=text("date"),
            subject=text("subject"),
            from_=from_,
            # RFC 9051 §7.5.2: absent or empty Sender/Reply-To default to From.
            sender=addresses("sender") or from_,
            reply_to=addresses("reply-to") or from_,
            to=addresses("to", ()),
            cc=addresses("cc", ()),
            bcc=addresses("bcc", ()),
            in_reply_to=text("in-reply-to"),
            message_id=text("message-id"),
        )
        return envelope, heads


#: In the order their defects are reported.
_ADDRESS_FIELDS = ("from", "sender", "reply-to", "to", "cc", "bcc")
_ENVELOPE_FIELDS = frozenset(
    {
        "date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to",
        "message-id", "references",
    }
)  # fmt: skip


def _find_delimiter(
    raw: bytes, delimiter: bytes, region: int, pos: int, end: int
) -> tuple[int, int, bool] | None:
    """The next boundary delimiter line in ``raw[pos:end]``: (line start, next line, is close).

    RFC 2046 §5.1.1: the delimiter starts a line and is followed by transport padding and the
    line break; a close delimiter (``--`` appended) is accepted even with junk after it.
    """
    i = raw.find(delimiter, pos, end)
    while i >= 0:
        if i == region or raw[i - 1] == 0x0A:
            j = i + len(delimiter)
            close = raw.startswith(b"--", j, end)
            k = j + 2 if close else j
            while k < end and raw[k] in b" \t":
                k += 1
            if k >= end:
                return i, end, close
            if raw[k] == 0x0A:
                return i, k + 1, close
            if raw[k] == 0x0D and (k + 1 == end or raw[k + 1] == 0x0A):
                return i, min(k + 2, end), close
            if close:
                newline = raw.find(b"\n", k, end)
                return i, end if newline < 0 else newline + 1, True
        i = raw.find(delimiter, i + 1, end)
    return None


def _before_line_break(raw: bytes, floor: int, pos: int) -> int:
    """``pos`` moved before the CRLF (or LF) ending the previous line, not below ``floor``."""
    if pos - 2 >= floor and raw[pos - 2 : pos] == b"\r\n":
        return pos - 2
    if pos - 1 >= floor and raw[pos - 1] == 0x0A:
        return pos - 1
    return pos


def _count_lines(raw: bytes, start: int, end: int) -> int:
    if end <= start:
        return 0
    return raw.count(b"\n", start, end) + (raw[end - 1] != 0x0A)


def _optional_text(field: HeaderField | None) -> str | None:
    return None if field is None else raw_text(field.value)


def _languages(field: HeaderField | None) -> tuple[str, ...] | None:
    text = _optional_text(field)
    if text is None:
        return None
    tags = tuple(tag for tag in _LANGUAGE_SPLIT.split(text) if tag)
    return tags or None


# -- decoded fields -------------------------------------------------------------------------------


def _decoded_value(value: bytes) -> str:
    return decode_words(header_bytes_to_text(unfold(value))).strip()


def _first_mailbox(addresses: Sequence[EnvelopeAddress]) -> EnvelopeAddress | None:
    for address in addresses:
        if address.host is not None:
            return address
    return None


def _address_text(address: EnvelopeAddress | None) -> str:
    """``local@domain`` lower-cased for indexes and sorting (RFC 5256 §2.2 uses the mailbox)."""
    if address is None or not address.mailbox:
        return ""
    text = address.mailbox
    if address.host != MISSING_DOMAIN:
        text = f"{text}@{address.host}"
    return escaped_to_text(text).lower()


def _first_id(text: str | None) -> str:
    ids = () if text is None else parse_msg_ids(text, limit=1)
    return _id_key(ids[0]) if ids else ""


def _id_key(ident: str) -> str:
    """A msg-id as the store keeps it for threading: valid Unicode, whatever the field held.
    Bytes that are not UTF-8 (surrogate escapes in the raw text) become ``\\xNN``, so the
    same bytes always give the same key, and the store's text columns can hold it (a raw
    ``<\\xff@x>`` made every delivery of such a message fail); so does NUL (:func:`_storable`)."""
    if not ident.isascii():
        ident = ident.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _storable(ident)


def _storable(text: str) -> str:
    """``text`` with each NUL as U+FFFD: PostgreSQL's ``text`` cannot hold NUL (see the
    module notes)."""
    return text.replace("\x00", "\ufffd")


def _header_text(block: HeaderBlock, limit: int) -> str:
    lines: list[str] = []
    total = 0
    for f in block.fields:
        if total >= limit:
            break
        value = f.value
        if value.isascii() and value.find(b"=?") < 0:  # not ``in``: see headers.unfold
            # What _decoded_value gives for ASCII without encoded words (unfolding cannot
            # make one: a folded line starts with whitespace).
            line = f"{f.name}: {unfold(value).decode('ascii').strip()}"
        else:
            line = f"{f.name}: {_decoded_value(value)}"
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)[:limit]


class _TextCollector:
    """Walks the tree by IMAP section numbers collecting search text, preview and attachments."""

    def __init__(self, raw: bytes, limits: ParseLimits) -> None:
        self.raw = raw
        self.limits = limits
        self.budget = limits.max_body_text
        self.texts: list[str] = []
        self.preview = ""
        self.previewed = False
        self.attachments: list[Attachment] = []

    def message(self, entity: BodyPart, prefix: tuple[int, ...], *, top: bool) -> None:
        """Visit a message's body: a non-multipart body is its own section ``prefix.1``."""
        if entity.type == "multipart":
            self.part(entity, prefix, top=top, text=True)
        else:
            self.part(entity, (*prefix, 1), top=top, text=True)

    def part(self, part: BodyPart, section: tuple[int, ...], *, top: bool, text: bool) -> None:
        if part.type == "multipart":
            # RFC 2046 §5.1.4: alternatives are one content; index the text of one of them
            # (plain text if offered) but still list attachments found in any branch.
            keep = _preferred_alternative(part.parts) if part.subtype == "alternative" else None
            for number, child in enumerate(part.parts, 1):
                keep_text = text and (keep is None or keep == number - 1)
                self.part(child, (*section, number), top=top, text=keep_text)
            return
        filename = _filename(part)
        if part.message is not None or _is_attachment(part, filename):
            if top:
                self.attachments.append(self.attachment(part, section, filename))
            if part.message is not None and text:
                self.message(part.message, section, top=False)
            elif part.type == "text" and text:
                self.add_text(part, preview=False)
        elif part.type == "text" and text:
            self.add_text(part, preview=top)

    def attachment(
        self, part: BodyPart, section: tuple[int, ...], filename: str | None
    ) -> Attachment:
        content_id = part.content_id.strip().strip("<>").strip() if part.content_id else None
        kind = part.disposition[0] if part.disposition else None
        return Attachment(
            section=".".join(map(str, section)),
            filename=filename,
            content_type=f"{part.type}/{part.subtype}",
            size=_decoded_size(self.raw, part),
            content_id=content_id or None,
            inline=kind == "inline" or (kind is None and content_id is not None),
        )

    def add_text(self, part: BodyPart, *, preview: bool) -> None:
        if self.budget <= 0 and (self.previewed or not preview):
            return
        data = _transfer_decoded(self.raw, part)
        # Characters are at most 4 bytes in any charset we decode; HTML markup may need more.
        cap = max(self.budget, self.limits.preview_chars) * 4
        text = decode_charset(data[:cap], param(part.params, "charset"))
        if part.subtype == "html":
            text = html_to_text(text)
        if preview and not self.previewed and text.strip():
            self.previewed = True
            self.preview = _preview(text, self.limits.preview_chars)
        if self.budget > 0:
            kept = text[: self.budget]
            self.texts.append(kept)
            self.budget -= len(kept) + 1


def _preview(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text`` with whitespace runs collapsed, reading only
    as much of ``text`` as that takes (a growing prefix, so leading blank space is cheap)."""
    size = limit + limit // 2
    while True:
        head = " ".join(text[:size].split())
        if len(head) >= limit or size >= len(text):
            return head[:limit]
        size *= 4


def _preferred_alternative(parts: Sequence[BodyPart]) -> int | None:
    for index, child in enumerate(parts):
        if child.type == "text" and child.subtype == "plain":
            return index
    return len(parts) - 1 if parts else None


def _is_attachment(part: BodyPart, filename: str | None) -> bool:
    """Body text is text/plain or text/html without a file name that is not marked attachment
    (the reading of RFC 2183 that MUAs share); every other leaf is an attachment."""
    if part.disposition is not None and part.disposition[0] == "attachment":
        return True
    return not (part.type == "text" and part.subtype in _BODY_TEXT_SUBTYPES and filename is None)


def _filename(part: BodyPart) -> str | None:
    """The decoded file name: Content-Disposition filename (RFC 2183 §2.3), else Content-Type
    name; RFC 2231 extended values, and (non-standard but common) RFC 2047 encoded words.
    Both encodings can carry any octet: a sender's CR LF or NUL would otherwise reach the
    Content-Disposition of a download (which HTTP servers refuse to send) and the header of a
    forward (which the email package refuses to write), so controls become spaces."""
    candidates: list[tuple[Params, str]] = []
    if part.disposition is not None:
        candidates.append((part.disposition[1], "filename"))
    candidates.append((part.params, "name"))
    for params, name in candidates:
        for key, value in params:
            if key == name + "*":
                return printable(decode_rfc2231(value)).strip() or None
        plain = param(params, name)
        if plain:
            return printable(decode_words(escaped_to_text(plain))).strip() or None
    return None


def _decoded_size(raw: bytes, part: BodyPart) -> int:
    """Size after transfer decoding: exact for base64 and QP, the body size otherwise."""
    body = raw[part.body_start : part.body_end]
    if part.encoding == "BASE64":
        return base64_decoded_size(body)
    if part.encoding == "QUOTED-PRINTABLE":
        return len(binascii.a2b_qp(body))
    return part.size


def _transfer_decoded(raw: bytes, part: BodyPart) -> bytes:
    body = raw[part.body_start : part.body_end]
    try:
        return decode_transfer(body, part.encoding)
    except UnknownTransferEncoding:
        return body


# -- sections (RFC 9051 §6.4.5) -------------------------------------------------------------------

#: The text part of a section specifier; "" is the whole section.
SectionText = Literal["", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"]


def find_part(info: MessageInfo, section: Sequence[int]) -> BodyPart | None:
    """The part a numeric section (``(2, 1)`` for "2.1") names, or None if there is none.

    RFC 9051 §6.4.5: the parts of a multipart are numbered from 1; a non-multipart message
    (top-level or encapsulated) has one part, 1, its body; the numbers after a message/rfc822
    part's number address the parts of the message it encapsulates.
    """
    entity: BodyPart | None = info.body
    part: BodyPart | None = None
    for number in section:
        if entity is None:
            return None
        if entity.type == "multipart":
            if not 1 <= number <= len(entity.parts):
                return None
            part = entity.parts[number - 1]
        elif number == 1:
            part = entity
        else:
            return None
        entity = part if part.type == "multipart" else part.message
    return part


def section_span(
    info: MessageInfo, section: Sequence[int] = (), text: SectionText = ""
) -> tuple[int, int] | None:
    """Byte range ``(start, end)`` of ``BODY[section.text]`` in the raw message, or None if the
    section does not exist or the specifier does not apply to it.

    HEADER, HEADER.FIELDS[.NOT] and TEXT apply to the whole message (empty ``section``) or to a
    message/rfc822 part, and then mean the *encapsulated* message's header and body; MIME needs
    a numeric section. For HEADER.FIELDS[.NOT] the span is the header those fields are taken
    from (use :func:`section_bytes` for the filtered bytes). A partial fetch ``<o.n>`` is the
    sub-slice ``[start + o : min(end, start + o + n)]``.
    """
    if not section:
        entity = info.body
        if text == "":
            return 0, info.size
        if text == "MIME":
            return None
    else:
        part = find_part(info, section)
        if part is None:
            return None
        if text == "":
            return part.body_start, part.body_end
        if text == "MIME":
            return part.header_start, part.body_start
        if part.message is None:
            return None
        entity = part.message
    if text == "TEXT":
        return entity.body_start, entity.body_end
    return entity.header_start, entity.body_start


def section_bytes(
    raw: bytes,
    info: MessageInfo,
    section: Sequence[int] = (),
    text: SectionText = "",
    fields: Iterable[str] = (),
) -> bytes | None:
    """The bytes of ``BODY[section.text]`` (``fields`` for HEADER.FIELDS[.NOT]), or None.

    HEADER.FIELDS keeps the named fields, HEADER.FIELDS.NOT the others, each whole (with its
    folding) and in message order, followed by the empty line (RFC 9051 §6.4.5).
    """
    span = section_span(info, section, text)
    if span is None:
        return None
    start, end = span
    if text not in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return raw[start:end]
    wanted = {name.lower() for name in fields}
    keep = text == "HEADER.FIELDS"
    out: list[bytes] = []
    for f in scan_header(raw, start, end).fields:
        if (f.key in wanted) == keep:
            chunk = raw[f.start : f.end]
            out.append(chunk if chunk.endswith(b"\n") else chunk + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def decoded_part(raw: bytes, part: BodyPart) -> bytes:
    """The part's body with its transfer encoding undone: IMAP ``BINARY[section]`` (RFC 3516)
    and web downloads. Raises :class:`UnknownTransferEncoding` (IMAP ``[UNKNOWN-CTE]``)."""
    return decode_transfer(raw[part.body_start : part.body_end], part.encoding)


def part_text(raw: bytes, part: BodyPart) -> str:
    """The part's content as text: transfer-decoded, then its charset (or the fallbacks).

    HTML stays HTML (the web sanitises it for display); unknown transfer encodings are shown
    as sent rather than failing.
    """
    return decode_charset(_transfer_decoded(raw, part), param(part.params, "charset"))
