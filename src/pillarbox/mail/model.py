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

    def to_json(self) -> bytes:
        """Serialise for storage; :meth:`from_json` restores an equal object."""
        return json.dumps(_encode(self), ensure_ascii=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> MessageInfo:
        return _decode_info(json.loads(data))


#: Field names per dataclass type, looked up once: serialising runs on every delivery.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_SCALARS = frozenset({str, int, bool, float, type(None)})


def _encode(value: Any) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is tuple:
        return [_encode(v) for v in value]
    if kind is datetime:
        return {"$dt": value.isoformat()}
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(value.__dataclass_fields__)
    return {name: _encode(getattr(value, name)) for name in names}


def _params(raw: Any) -> Params:
    return tuple((str(k), str(v)) for k, v in raw)


def _addresses(raw: Any) -> tuple[EnvelopeAddress, ...]:
    return tuple(EnvelopeAddress(**item) for item in raw)


def _decode_envelope(raw: dict[str, Any]) -> Envelope:
    lists = ("from_", "sender", "reply_to", "to", "cc", "bcc")
    values: dict[str, Any] = {k: (_addresses(v) if k in lists else v) for k, v in raw.items()}
    return Envelope(**values)


def _decode_part(raw: dict[str, Any]) -> BodyPart:
    values = dict(raw)
    values["params"] = _params(values["params"])
    if values["disposition"] is not None:
        kind, params = values["disposition"]
        values["disposition"] = (kind, _params(params))
    if values["language"] is not None:
        values["language"] = tuple(values["language"])
    values["parts"] = tuple(_decode_part(p) for p in values["parts"])
    if values["envelope"] is not None:
        values["envelope"] = _decode_envelope(values["envelope"])
    if values["message"] is not None:
        values["message"] = _decode_part(values["message"])
    return BodyPart(**values)


def _decode_info(raw: dict[str, Any]) -> MessageInfo:
    values = dict(raw)
    values["envelope"] = _decode_envelope(values["envelope"])
    values["body"] = _decode_part(values["body"])
    if values["sent_date"] is not None:
        values["sent_date"] = datetime.fromisoformat(values["sent_date"]["$dt"])
    values["references"] = tuple(values["references"])
    values["attachments"] = tuple(Attachment(**a) for a in values["attachments"])
    values["defects"] = tuple(values["defects"])
    return MessageInfo(**values)
