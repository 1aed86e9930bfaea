"""Building the messages the client sends: new mail, replies and forwards.

The standard library's :class:`email.message.EmailMessage` with ``policy.SMTP`` does the
encoding right — RFC 2047 encoded words for non-ASCII headers, RFC 2231 ``filename*`` for
non-ASCII attachment names, CRLF line ends, line lengths — so this module decides *what* goes
into a message, never how it is encoded.

Bcc (RFC 5322 §3.6.3) is never a header here: its addresses are envelope recipients only, so no
recipient can learn of another's blind copy.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses, make_msgid
from pathlib import Path

from pillarbox.cli.mail.reading import ReadableMessage
from pillarbox.errors import UserError

#: policy.SMTP (CRLF, RFC 2047/2231 encoding) restricted to 7-bit bodies: non-ASCII text goes
#: quoted-printable or base64, so no server needs 8BITMIME (RFC 6152) to take our mail.
SEND_POLICY = policy.SMTP.clone(cte_type="7bit")

_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw)\s*:\s*", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*(fwd?|wg)\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message ready to submit: the bytes to send and every envelope recipient."""

    message: EmailMessage
    #: The message serialised once: the bytes submitted are the bytes kept in Sent (a second
    #: serialisation could choose other MIME boundaries).
    raw: bytes
    sender: str
    recipients: tuple[str, ...]
    bcc: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AttachedFile:
    filename: str
    content_type: str
    data: bytes


def file_attachment(path: Path) -> AttachedFile:
    """A file from disk, typed by its extension (``.tar.gz`` is gzip data, not a tar file)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read attachment {path}: {exc.strerror}") from exc
    mime_type, encoding = mimetypes.guess_type(path.name)
    if mime_type is None or encoding is not None:
        mime_type = "application/octet-stream"
    return AttachedFile(path.name, mime_type, data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft:
    """What the user asked for; :func:`build` turns it into an :class:`Outgoing`."""

    from_address: str
    from_name: str = ""
    to: Sequence[str] = ()
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    subject: str = ""
    body: str = ""
    attachments: Sequence[AttachedFile] = ()
    in_reply_to: str = ""
    references: Sequence[str] = ()
    attached_messages: Sequence[bytes] = field(default=())


def parse_recipients(values: Sequence[str]) -> list[tuple[str, str]]:
    """``--to`` values (each may hold several comma-separated addresses) as (name, address)."""
    pairs = getaddresses(list(values))
    for name, address in pairs:
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain or any(c.isspace() for c in address):
            shown = formataddr((name, address)) if address else "(empty)"
            raise UserError(f"not an email address: {shown}")
    return pairs


def _address_header(pairs: Sequence[tuple[str, str]]) -> list[Address]:
    return [Address(display_name=name, addr_spec=address) for name, address in pairs]


def build(draft: Draft, *, now: datetime | None = None) -> Outgoing:
    to = parse_recipients(draft.to)
    cc = parse_recipients(draft.cc)
    bcc = parse_recipients(draft.bcc)
    if not (to or cc or bcc):
        raise UserError("no recipients: give --to, --cc or --bcc")
    msg = EmailMessage(policy=SEND_POLICY)
    msg["From"] = Address(display_name=draft.from_name, addr_spec=draft.from_address)
    if to:
        msg["To"] = _address_header(to)
    if cc:
        msg["Cc"] = _address_header(cc)
    msg["Subject"] = draft.subject
    msg["Date"] = format_datetime(now or datetime.now().astimezone())  # RFC 5322 §3.6.1
    domain = draft.from_address.rpartition("@")[2] or None
    msg["Message-ID"] = make_msgid(domain=domain)  # RFC 5322 §3.6.4
    if draft.in_reply_to:
        msg["In-Reply-To"] = draft.in_reply_to
    if draft.references:
        msg["References"] = " ".join(draft.references)
    msg.set_content(draft.body if draft.body.endswith("\n") else draft.body + "\n")
    for attached in draft.attachments:
        _attach(msg, attached)
    for raw in draft.attached_messages:
        msg.add_attachment(message_from_bytes(raw, policy=SEND_POLICY))
    recipients = tuple(dict.fromkeys(a.lower() for _, a in (*to, *cc, *bcc)))
    return Outgoing(
        msg,
        msg.as_bytes(policy=SEND_POLICY),
        draft.from_address,
        recipients,
        tuple(a for _, a in bcc),
    )


def _attach(msg: EmailMessage, attached: AttachedFile) -> None:
    maintype, _, subtype = attached.content_type.partition("/")
    if maintype == "text":
        try:
            text = attached.data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            msg.add_attachment(text, subtype=subtype, filename=attached.filename)
            return
    if maintype in ("text", "multipart", "message") or not subtype:
        # Raw bytes cannot be declared text (charset unknown) or a container type.
        maintype, subtype = "application", "octet-stream"
    msg.add_attachment(
        attached.data, maintype=maintype, subtype=subtype, filename=attached.filename
    )


# -- replies and forwards -----------------------------------------------------------------------


def reply_subject(subject: str) -> str:
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"


def forward_subject(subject: str) -> str:
    return subject if _FORWARD_PREFIX.match(subject) else f"Fwd: {subject}"


def quoted(original: ReadableMessage) -> str:
    """The attribution line and the original text with each line quoted (RFC 3676 §4.5:
    a quote adds ``>``; a space follows it except before an existing quote)."""
    lines = [f"On {original.date_text()}, {original.author_name()} wrote:"]
    for line in original.text.split("\n"):
        if not line:
            lines.append(">")
        elif line.startswith(">"):
            lines.append(">" + line)
        else:
            lines.append("> " + line)
    return "\n".join(lines) + "\n"


def reply_recipients(
    original: ReadableMessage, own_address: str, *, reply_all: bool
) -> tuple[list[str], list[str]]:
    """(To, Cc) of a reply: Reply-To, else From (RFC 5322 §3.6.3); reply-all adds the
    original To and Cc, never our own address, never an address twice."""
    primary = original.addresses("Reply-To") or original.addresses("From")
    seen = {own_address.lower()}
    to: list[str] = []
    cc: list[str] = []
    for target, pairs in (
        (to, primary),
        (to, original.addresses("To") if reply_all else []),
        (cc, original.addresses("Cc") if reply_all else []),
    ):
        for name, address in pairs:
            if address.lower() not in seen:
                seen.add(address.lower())
                target.append(formataddr((name, address)))
    if not to and not cc:  # replying to our own message: back to where it went
        to = [formataddr(p) for p in primary]
    return to, cc


def reply_references(original: ReadableMessage) -> tuple[str, list[str]]:
    """In-Reply-To and References (RFC 5322 §3.6.4): the parent's References, else its
    In-Reply-To, followed by the parent's Message-ID."""
    message_id = original.info.message_id
    parent = f"<{message_id}>" if message_id else ""
    info = original.info
    earlier = [f"<{r}>" for r in info.references] or (
        [f"<{info.in_reply_to}>"] if info.in_reply_to else []
    )
    return parent, [*earlier, parent] if parent else earlier


def forwarded_inline(original: ReadableMessage) -> str:
    lines = ["---------- Forwarded message ----------"]
    lines += [f"{name}: {value}" for name, value in original.headers if value]
    return "\n".join(lines) + "\n\n" + original.text + "\n"
