"""A fetched message made readable: its headers, its text, its attachments.

Parsing is Pillarbox's own lenient MIME parser (:mod:`pillarbox.mail.parse`), used read-only:
it never raises on malformed mail, which matters for a reader pointed at anyone's mailbox.
Which part is "the text" follows what MUAs share: in ``multipart/alternative`` the plain part if
there is one, else the last (richest) one, HTML turned into text; inline text parts of a
``multipart/mixed`` are shown in order; attachments (and attached messages) are listed, not
shown.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.utils import format_datetime, getaddresses
from pathlib import Path

from pillarbox.mail.decode import decode_words, header_bytes_to_text, html_to_text
from pillarbox.mail.model import Attachment, BodyPart, MessageInfo
from pillarbox.mail.parse import decoded_part, find_part, parse_message, part_text, section_bytes

#: Headers ``read`` shows, in this order.
SHOWN_HEADERS = ("Date", "From", "To", "Cc", "Reply-To", "Subject")

MAX_FILENAME = 200  # bytes left for the name on common file systems (255), with room to number
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


@dataclass(frozen=True, slots=True)
class ReadableMessage:
    raw: bytes
    info: MessageInfo
    headers: tuple[tuple[str, str], ...]
    text: str

    @property
    def attachments(self) -> tuple[Attachment, ...]:
        return self.info.attachments

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return ""

    def date_text(self) -> str:
        sent = self.info.sent_date
        return format_datetime(sent) if sent is not None else self.header("Date")

    def author_name(self) -> str:
        return self.info.from_name or self.info.from_addr or "someone"

    def addresses(self, *names: str) -> list[tuple[str, str]]:
        """``(display name, address)`` pairs of the named address headers, in order."""
        values = [self.header(n) for n in names]
        return [(n, a) for n, a in getaddresses([v for v in values if v]) if a]

    def attachment_bytes(self, attachment: Attachment) -> bytes:
        section = tuple(int(n) for n in attachment.section.split("."))
        part = find_part(self.info, section)
        if part is None:
            return b""
        if part.message is not None:
            # An attached message is saved as sent (a .eml file), not transfer-decoded.
            return self.raw[part.body_start : part.body_end]
        return decoded_part(self.raw, part)


def readable(raw: bytes) -> ReadableMessage:
    info = parse_message(raw)
    header_block = section_bytes(raw, info, (), "HEADER.FIELDS", SHOWN_HEADERS) or b""
    return ReadableMessage(
        raw=raw,
        info=info,
        headers=tuple(_header_fields(header_block)),
        text=_body_text(raw, info),
    )


def _header_fields(block: bytes) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    unfolded = re.sub(rb"\r?\n[ \t]", b" ", block)
    for line in unfolded.splitlines():
        name, colon, value = line.partition(b":")
        if colon and name:
            fields.append(
                (name.decode("ascii", "replace").strip(), decode_words(header_bytes_to_text(value)))
            )
    return [(name.title() if name.islower() else name, v.strip()) for name, v in fields]


def _body_text(raw: bytes, info: MessageInfo) -> str:
    attachment_sections = {a.section for a in info.attachments}
    texts: list[str] = []

    def visit(part: BodyPart, section: tuple[int, ...]) -> None:
        if part.type == "multipart":
            children = list(enumerate(part.parts, 1))
            if part.subtype == "alternative" and children:
                plain = [c for c in children if (c[1].type, c[1].subtype) == ("text", "plain")]
                children = plain[:1] or children[-1:]  # RFC 2046 §5.1.4: last is richest
            for number, child in children:
                visit(child, (*section, number))
            return
        if ".".join(map(str, section)) in attachment_sections or part.type != "text":
            return
        text = part_text(raw, part)
        texts.append(html_to_text(text) if part.subtype == "html" else text)

    body = info.body
    visit(body, () if body.type == "multipart" else (1,))
    return "\n\n".join(t.replace("\r\n", "\n").rstrip("\n") for t in texts)


def safe_filename(name: str | None, fallback: str) -> str:
    """A file name that stays inside the target directory: only the last path component,
    no control or reserved characters, no leading dots (no hidden files, no ``..``)."""
    candidate = unicodedata.normalize("NFC", name or "")
    candidate = candidate.replace("\\", "/").rsplit("/", 1)[-1]
    candidate = _UNSAFE_FILENAME.sub("_", candidate).strip().lstrip(".").strip()
    while len(candidate.encode("utf-8")) > MAX_FILENAME:
        stem, dot, ext = candidate.rpartition(".")
        candidate = f"{stem[:-1]}{dot}{ext}" if dot and len(ext) < 16 and stem else candidate[:-1]
    return candidate or fallback


def attachment_targets(
    attachments: tuple[Attachment, ...], directory: Path
) -> list[tuple[Attachment, Path]]:
    """Where each attachment goes: sanitised names, made unique within this message."""
    taken: set[str] = set()
    targets: list[tuple[Attachment, Path]] = []
    for index, attachment in enumerate(attachments, 1):
        extension = ".eml" if attachment.content_type == "message/rfc822" else ""
        name = safe_filename(attachment.filename, f"attachment-{index}{extension}")
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        unique, counter = name, 1
        while unique.lower() in taken:
            counter += 1
            unique = f"{stem}-{counter}.{ext}" if dot else f"{stem}-{counter}"
        taken.add(unique.lower())
        targets.append((attachment, directory / unique))
    return targets
