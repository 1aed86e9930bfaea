"""What a message is once parsed: the metadata IMAP, POP3 and the web read instead of re-parsing.

A message is parsed exactly once, at ingest (DESIGN principle 4). The result, :class:`MessageInfo`,
is stored beside the raw bytes as JSON and is everything FETCH ENVELOPE/BODYSTRUCTURE,
``BODY[section]<partial>``, SORT/THREAD and SEARCH need. Offsets index the raw bytes exactly as
stored, so a section is a slice, never a re-parse.

Header values in :class:`Envelope` are kept as they appear on the wire (RFC 2047 encoded words
intact, RFC 9051 §7.5.2 ENVELOPE wants them that way), decoded from bytes with ``surrogateescape``
so that any 8-bit garbage survives a JSON round trip unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring_ascii as _quoted  # json.dumps' ensure_ascii strings
from typing import Any

Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class EnvelopeAddress:
    """One address of an ENVELOPE list (RFC 9051 §7.5.2): name, source route, mailbox, host.

    A group start has ``host`` None and ``mailbox`` the group name; a group end has both None.
    """

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None


@dataclass(frozen=True, slots=True)
class Envelope:
    """The ENVELOPE fields, raw (undecoded) as they appear in the header."""

    date: str | None = None
    subject: str | None = None
    from_: tuple[EnvelopeAddress, ...] = ()
    sender: tuple[EnvelopeAddress, ...] = ()
    reply_to: tuple[EnvelopeAddress, ...] = ()
    to: tuple[EnvelopeAddress, ...] = ()
    cc: tuple[EnvelopeAddress, ...] = ()
    bcc: tuple[EnvelopeAddress, ...] = ()
    in_reply_to: str | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One node of the MIME tree, with the byte offsets of its header and body in the raw message.

    ``header_start <= body_start <= body_end``; for the top-level part ``header_start`` is 0 and
    ``body_end`` the message size. ``size`` and ``lines`` are of the body as transmitted
    (RFC 9051 §7.5.2 BODYSTRUCTURE). ``parts`` holds the children of a multipart; ``message`` the
    encapsulated message of a message/rfc822 (or message/global) part.
    """

    type: str
    subtype: str
    params: Params = ()
    content_id: str | None = None
    description: str | None = None
    encoding: str = "7BIT"
    size: int = 0
    lines: int = 0
    md5: str | None = None
    disposition: tuple[str, Params] | None = None
    language: tuple[str, ...] | None = None
    location: str | None = None
    header_start: int = 0
    body_start: int = 0
    body_end: int = 0
    parts: tuple[BodyPart, ...] = ()
    envelope: Envelope | None = None
    message: BodyPart | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """A part a person would call an attachment, addressed by its IMAP section path ("2.1")."""

    section: str
    filename: str | None
    content_type: str
    size: int
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """Everything known about a message after the one parse at ingest.

    The decoded, lowercased fields (``subject``, ``from_addr``…) feed SORT, THREAD, the web list
    and the store's indexes; ``header_text``/``body_text`` feed the full-text index (RFC 9051
    §6.4.4: TEXT searches both, BODY only the body). ``defects`` lists what was wrong with the
    input; a defective message is stored anyway, degraded the way Dovecot degrades it.
    """

    size: int
    header_end: int
    envelope: Envelope
    body: BodyPart
    sent_date: datetime | None = None
    subject: str = ""
    from_addr: str = ""
    from_name: str = ""
    to_addr: str = ""
    cc_addr: str = ""
    message_id: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    header_text: str = ""
    body_text: str = ""
    preview: str = ""
    attachments: tuple[Attachment, ...] = ()
    defects: tuple[str, ...] = field(default=())

    def to_json(self, *, text: bool = True) -> bytes:
        """Serialise for storage; :meth:`from_json` restores an equal object.

        With ``text=False`` the ``header_text`` and ``body_text`` are written empty: the store
        keeps them once, in its full-text index, and this spares it copying the object first.
        """
        return _info_json(self, text).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> MessageInfo:
        return _decode_info(json.loads(data))


# -- JSON -----------------------------------------------------------------------------------------
# The encoding is ``json.dumps(fields, ensure_ascii=True, separators=(",", ":"))`` of each
# object's fields in declaration order, tuples as lists and a datetime as ``{"$dt": isoformat}``;
# it is written out per type because it runs on every delivery, where walking the objects
# generically and then running the json encoder cost three times as much. A property test
# holds it byte for byte to that generic encoding.


def _text(value: str | None) -> str:
    return "null" if value is None else _quoted(value)


def _texts(values: tuple[str, ...]) -> str:
    return "[" + ",".join(map(_quoted, values)) + "]"


def _params_json(params: Params) -> str:
    return "[" + ",".join([f"[{_quoted(k)},{_quoted(v)}]" for k, v in params]) + "]"


def _address_json(a: EnvelopeAddress) -> str:
    return (
        f'{{"name":{_text(a.name)},"adl":{_text(a.adl)},"mailbox":{_text(a.mailbox)},'
        f'"host":{_text(a.host)}}}'
    )


def _addresses_json(addresses: tuple[EnvelopeAddress, ...]) -> str:
    return "[" + ",".join(map(_address_json, addresses)) + "]"


def _envelope_json(e: Envelope | None) -> str:
    if e is None:
        return "null"
    from_ = _addresses_json(e.from_)
    # The parser gives Sender and Reply-To From's tuple itself when it stands for them.
    sender = from_ if e.sender is e.from_ else _addresses_json(e.sender)
    reply_to = from_ if e.reply_to is e.from_ else _addresses_json(e.reply_to)
    return (
        f'{{"date":{_text(e.date)},"subject":{_text(e.subject)},"from_":{from_},'
        f'"sender":{sender},"reply_to":{reply_to},'
        f'"to":{_addresses_json(e.to)},"cc":{_addresses_json(e.cc)},"bcc":{_addresses_json(e.bcc)},'
        f'"in_reply_to":{_text(e.in_reply_to)},"message_id":{_text(e.message_id)}}}'
    )


def _part_json(p: BodyPart | None) -> str:
    if p is None:
        return "null"
    d = p.disposition
    disposition = "null" if d is None else f"[{_quoted(d[0])},{_params_json(d[1])}]"
    language = "null" if p.language is None else _texts(p.language)
    return (
        f'{{"type":{_quoted(p.type)},"subtype":{_quoted(p.subtype)},"params":{_params_json(p.params)},'
        f'"content_id":{_text(p.content_id)},"description":{_text(p.description)},'
        f'"encoding":{_quoted(p.encoding)},"size":{p.size},"lines":{p.lines},"md5":{_text(p.md5)},'
        f'"disposition":{disposition},"language":{language},"location":{_text(p.location)},'
        f'"header_start":{p.header_start},"body_start":{p.body_start},"body_end":{p.body_end},'
        f'"parts":[{",".join([_part_json(c) for c in p.parts])}],'
        f'"envelope":{_envelope_json(p.envelope)},"message":{_part_json(p.message)}}}'
    )


def _attachment_json(a: Attachment) -> str:
    return (
        f'{{"section":{_quoted(a.section)},"filename":{_text(a.filename)},'
        f'"content_type":{_quoted(a.content_type)},"size":{a.size},'
        f'"content_id":{_text(a.content_id)},"inline":{"true" if a.inline else "false"}}}'
    )


def _info_json(m: MessageInfo, text: bool) -> str:
    sent = "null" if m.sent_date is None else f'{{"$dt":{_quoted(m.sent_date.isoformat())}}}'
    header_text, body_text = (
        (_quoted(m.header_text), _quoted(m.body_text)) if text else ('""', '""')
    )
    return (
        f'{{"size":{m.size},"header_end":{m.header_end},"envelope":{_envelope_json(m.envelope)},'
        f'"body":{_part_json(m.body)},"sent_date":{sent},"subject":{_quoted(m.subject)},'
        f'"from_addr":{_quoted(m.from_addr)},"from_name":{_quoted(m.from_name)},'
        f'"to_addr":{_quoted(m.to_addr)},"cc_addr":{_quoted(m.cc_addr)},'
        f'"message_id":{_quoted(m.message_id)},"in_reply_to":{_quoted(m.in_reply_to)},'
        f'"references":{_texts(m.references)},"header_text":{header_text},"body_text":{body_text},'
        f'"preview":{_quoted(m.preview)},'
        f'"attachments":[{",".join([_attachment_json(a) for a in m.attachments])}],'
        f'"defects":{_texts(m.defects)}}}'
    )


def _params(raw: list[list[str]]) -> Params:
    return tuple([(k, v) for k, v in raw])


def _addresses(raw: list[dict[str, str | None]]) -> tuple[EnvelopeAddress, ...]:
    return tuple([EnvelopeAddress(a["name"], a["adl"], a["mailbox"], a["host"]) for a in raw])


def _decode_envelope(raw: dict[str, Any]) -> Envelope:
    get = raw.get
    from_raw = get("from_", [])
    from_ = _addresses(from_raw)
    sender, reply_to = (get("sender", []), get("reply_to", []))
    return Envelope(
        date=get("date"),
        subject=get("subject"),
        from_=from_,
        # Mostly From again (RFC 9051 §7.5.2 defaults both to it): built once then.
        sender=from_ if sender == from_raw else _addresses(sender),
        reply_to=from_ if reply_to == from_raw else _addresses(reply_to),
        to=_addresses(get("to", ())),
        cc=_addresses(get("cc", ())),
        bcc=_addresses(get("bcc", ())),
        in_reply_to=get("in_reply_to"),
        message_id=get("message_id"),
    )


def _decode_part(raw: dict[str, Any]) -> BodyPart:
    get = raw.get
    disposition = raw["disposition"]
    language = raw["language"]
    envelope = raw["envelope"]
    message = raw["message"]
    return BodyPart(
        type=raw["type"],
        subtype=raw["subtype"],
        params=_params(raw["params"]),
        content_id=get("content_id"),
        description=get("description"),
        encoding=get("encoding", "7BIT"),
        size=get("size", 0),
        lines=get("lines", 0),
        md5=get("md5"),
        disposition=None if disposition is None else (disposition[0], _params(disposition[1])),
        language=None if language is None else tuple(language),
        location=get("location"),
        header_start=get("header_start", 0),
        body_start=get("body_start", 0),
        body_end=get("body_end", 0),
        parts=tuple([_decode_part(p) for p in raw["parts"]]),
        envelope=None if envelope is None else _decode_envelope(envelope),
        message=None if message is None else _decode_part(message),
    )


def _decode_info(raw: dict[str, Any]) -> MessageInfo:
    get = raw.get
    sent = raw["sent_date"]
    return MessageInfo(
        size=raw["size"],
        header_end=raw["header_end"],
        envelope=_decode_envelope(raw["envelope"]),
        body=_decode_part(raw["body"]),
        sent_date=None if sent is None else datetime.fromisoformat(sent["$dt"]),
        subject=get("subject", ""),
        from_addr=get("from_addr", ""),
        from_name=get("from_name", ""),
        to_addr=get("to_addr", ""),
        cc_addr=get("cc_addr", ""),
        message_id=get("message_id", ""),
        in_reply_to=get("in_reply_to", ""),
        references=tuple(raw["references"]),
        header_text=get("header_text", ""),
        body_text=get("body_text", ""),
        preview=get("preview", ""),
        attachments=tuple(
            [
                Attachment(
                    a["section"],
                    a["filename"],
                    a["content_type"],
                    a["size"],
                    a.get("content_id"),
                    a.get("inline", False),
                )
                for a in raw["attachments"]
            ]
        ),
        defects=tuple(raw["defects"]),
    )
