"""Writing mail: recipient validation, reply/forward drafts, and the RFC 5322 message built from
a draft.

Replies follow RFC 5322 §3.6.4: ``In-Reply-To`` is the parent's Message-ID, ``References`` the
parent's References (or its In-Reply-To) followed by its Message-ID; the subject gets one
``Re:`` (§3.6.5). Reply-all adds the parent's To and Cc, without the replying account itself.
Messages are built with the standard library's ``email`` package under the SMTP policy (CRLF
line ends, RFC 2047 encoded display names and subject, RFC 2231 file names); non-ASCII text is
quoted-printable so the message passes any relay, 8BITMIME or not. A draft written as rich text
goes out as multipart/alternative (see :mod:`pillarbox.web.richtext`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from email import policy
from email.headerregistry import Address as HeaderAddress
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime
from typing import Any

from pillarbox.mail.decode import printable
from pillarbox.mail.model import Attachment, MessageInfo
from pillarbox.mail.people import LINE_BREAKS, Person, parse_people, people
from pillarbox.mail.trace import make_message_id
from pillarbox.web.reading import part_at
from pillarbox.web.richtext import html_document, plain_alternative, sanitize_composed

#: RFC 5322 §2.1.1: lines SHOULD be at most 78 characters; longer ones go quoted-printable.
_MAX_PLAIN_LINE = 78
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw)\s*:", re.I)
_FORWARD_PREFIX = re.compile(r"^\s*(fwd?|wg|tr)\s*:", re.I)
#: A type or subtype name (RFC 6838 §4.2 restricted-name).
_MEDIA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
#: RFC 5322 §3.2.3 dot-atom-text.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
#: A msg-id both of the readers of :func:`~pillarbox.mail.headers.parse_msg_ids` take
#: verbatim: printable ASCII but quotes, parentheses, backslashes and brackets.
_PLAIN_ID = re.compile(r"[!#-\'*-;=?-\[\]-~]+")
#: RFC 5322 §3.6.4 no-fold-literal.
_NO_FOLD_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]*\]")
#: The longest msg-id written: its field, "In-Reply-To: <id>", within one line of 998
#: characters (RFC 5322 §2.1.1).
_MAX_ID = 998 - len("In-Reply-To: <>")
#: The field a saved draft keeps what it answers or forwards in ("reply=3:14",
#: "forward=3:15"), as Roundcube's X-Draft-Info: sent from the reopened draft, the original
#: is marked \Answered. Only in the Drafts copy, never in a message sent.
DRAFT_ORIGIN = "X-Pillarbox-Draft"
_ORIGIN = re.compile(r"(reply|forward)=(\d+:\d+)")
#: RFC 3676 §4.3: "a line consisting of dash dash space" starts a signature.
SIGNATURE_SEPARATOR = "-- "


@dataclass(frozen=True, slots=True)
class Upload:
    """An attachment as uploaded (or copied from a forwarded message)."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft:
    """A message being written; addresses are the text the person typed."""

    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    #: The editor's HTML, if the message was written as rich text (``body`` is then derived).
    html: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    attachments: tuple[Upload, ...] = ()
    #: Attachments already stored that go along, each "mailbox_id:uid:section": a saved
    #: draft's (reopened, or saved a moment ago) or a forwarded message's. Unticking one on
    #: the form leaves it out; the parts are read again when the draft is sent or saved.
    kept: tuple[str, ...] = ()
    #: "mailbox_id:uid" of the message replied to (gets ``\\Answered`` once sent).
    replying_to: str = ""
    #: "mailbox_id:uid" of the message forwarded (the JSON API sends all its attachments
    #: along; the compose form lists them in ``kept``).
    forwarding: str = ""
    #: UID in Drafts of the saved version this one replaces.
    draft_uid: int | None = None
    #: Id of the sending identity chosen (:mod:`.identities`; 0 the account's own address,
    #: None the default).
    identity: int | None = None


@dataclass(frozen=True, slots=True)
class Recipients:
    """Parsed recipient fields; ``errors`` maps a field name to what is wrong in it."""

    to: tuple[Person, ...] = ()
    cc: tuple[Person, ...] = ()
    bcc: tuple[Person, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def envelope(self) -> list[str]:
        seen: dict[str, None] = {}
        for person in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(person.address, None)
        return list(seen)


def check_recipients(draft: Draft, *, max_recipients: int) -> Recipients:
    errors: dict[str, str] = {}
    parsed: dict[str, list[Person]] = {}
    for name in ("to", "cc", "bcc"):
        valid, invalid = parse_people(getattr(draft, name))
        parsed[name] = valid
        if invalid:
            errors[name] = "not a valid address: " + ", ".join(invalid)
    result = Recipients(tuple(parsed["to"]), tuple(parsed["cc"]), tuple(parsed["bcc"]), errors)
    count = len(result.envelope)
    if count == 0 and "to" not in errors:
        errors["to"] = "add at least one recipient"
    elif count > max_recipients:
        errors["to"] = f"at most {max_recipients} recipients per message"
    return result


# -- replies and forwards ------------------------------------------------------------------------


def reply_subject(subject: str) -> str:
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"


def forward_subject(subject: str) -> str:
    return subject if _FORWARD_PREFIX.match(subject) else f"Fwd: {subject}"


def strip_signature(text: str) -> str:
    """``text`` without its signature: everything from the last ``-- `` line on (RFC 3676
    §4.3). ``--`` without the space is not taken: it is too often a plain rule."""
    lines = text.replace("\r\n", "\n").split("\n")
    for index in range(len(lines) - 1, -1, -1):
        if lines[index] == SIGNATURE_SEPARATOR:
            return "\n".join(lines[:index]).rstrip("\n") + "\n"
    return text


def quote(text: str) -> str:
    """Plain-text quoting: ``> `` before each line (``>`` alone before a blank one)."""
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    return "\n".join(f"> {line}" if line else ">" for line in lines)


def _when(info: MessageInfo, fallback: datetime) -> str:
    return format_datetime(info.sent_date or fallback)


def reply_draft(
    info: MessageInfo,
    text: str,
    *,
    own_addresses: set[str],
    reply_all: bool,
    origin: str,
    received: datetime,
) -> Draft:
    """A reply to a message whose body text is ``text``."""
    senders = people(info.envelope.reply_to) or people(info.envelope.from_)
    to = [p for p in senders if p.address.lower() not in own_addresses] or senders
    cc: list[Person] = []
    if reply_all:
        taken = {p.address.lower() for p in to} | own_addresses
        for person in (*people(info.envelope.to), *people(info.envelope.cc)):
            if person.address.lower() not in taken:
                taken.add(person.address.lower())
                cc.append(person)
    references = list(info.references)
    if not references and info.in_reply_to:
        references = [info.in_reply_to]
    if info.message_id and info.message_id not in references:
        references.append(info.message_id)
    author = people(info.envelope.from_)
    # The original's signature (below its RFC 3676 §4.3 "-- " line) is left out of the quote.
    text = strip_signature(text)
    attribution = f"On {_when(info, received)}, {author[0] if author else 'someone'} wrote:"
    return Draft(
        to=", ".join(map(str, to)),
        cc=", ".join(map(str, cc)),
        subject=reply_subject(info.subject),
        body=f"\n\n{attribution}\n{quote(text)}\n",
        in_reply_to=info.message_id,
        references=tuple(references),
        replying_to=origin,
    )


def forward_draft(info: MessageInfo, text: str, *, origin: str, received: datetime) -> Draft:
    """A forward: the original's header summary and text inline, its attachments kept."""
    summary = [
        "---------- Forwarded message ----------",
        f"From: {', '.join(map(str, people(info.envelope.from_)))}",
        f"Date: {_when(info, received)}",
        f"Subject: {info.subject}",
        f"To: {', '.join(map(str, people(info.envelope.to)))}",
    ]
    if info.envelope.cc:
        summary.append(f"Cc: {', '.join(map(str, people(info.envelope.cc)))}")
    return Draft(
        subject=forward_subject(info.subject),
        body="\n\n" + "\n".join(summary) + "\n\n" + text,
        forwarding=origin,
        kept=kept_of(info, origin),
    )


def attachments_kept(info: MessageInfo) -> list[Attachment]:
    """The parts of a stored message a forward or a reopened draft carries along: each
    attachment but an attached message without a file name (its text is what a forward
    quotes)."""
    kept: list[Attachment] = []
    for attachment in info.attachments:
        part = part_at(info, attachment.section)
        if part is not None and (part.message is None or attachment.filename):
            kept.append(attachment)
    return kept


def kept_of(info: MessageInfo, reference: str) -> tuple[str, ...]:
    """:attr:`Draft.kept` for the attachments of the message ``reference`` ("mailbox:uid")
    names."""
    return tuple(f"{reference}:{a.section}" for a in attachments_kept(info))


# -- building the message --------------------------------------------------------------------------


def _header_address(person: Person) -> HeaderAddress:
    local, _, domain = person.address.rpartition("@")
    return HeaderAddress(display_name=person.name, username=local, domain=domain)


def _one_line(text: str) -> str:
    return LINE_BREAKS.sub(" ", text).strip()


def angle(message_id: str) -> str:
    """A msg-id in its header form ``<id>``, "" for one no header would read back as it.

    The parsed model keeps ids without brackets and without the quotes of a quoted id-left
    (RFC 5322 §3.6.4 obs-id-left is a local-part: ``<"a b"@x>`` is kept as ``a b@x``). An id
    of printable ASCII without blanks, quotes, parentheses or backslashes is written as it
    is (the reader takes it verbatim); another has its id-left quoted again, so the reply's
    field reads back to the same id (written bare, its blanks would be dropped and the reply
    left the thread). A UTF-8 id (RFC 6532 §3.2) is left out: the reply would need SMTPUTF8
    for it, and the email package would write it as encoded words, which RFC 2047 §5
    forbids in a msg-id. So is one too long for a line (RFC 5322 §2.1.1), holding a line
    break, or whose id-right no quoting can carry."""
    bare = message_id
    framed = message_id.strip(" \t")  # str.strip would take a leading \x1c off the id
    if framed.startswith("<") and framed.endswith(">"):
        bare = framed[1:-1]  # one pair: a bracket inside the id makes it one no field carries
    # An id as parsed is kept with its blanks: a quoted id-left's (<" a"@x>) are its own
    # (found by fuzz/thread_keys.py: " a@x" was written <a@x>, another id).
    if not bare or not bare.isascii() or len(bare) > _MAX_ID or LINE_BREAKS.search(bare):
        return ""
    if _PLAIN_ID.fullmatch(bare):
        return f"<{bare}>"
    left, at, right = bare.rpartition("@")
    if not at or not (_DOT_ATOM.fullmatch(right) or _NO_FOLD_LITERAL.fullmatch(right)):
        return ""
    return '<"' + left.replace("\\", "\\\\").replace('"', '\\"') + f'"@{right}>'


class _MsgIdsHeader(BaseHeader):
    """In-Reply-To and References as :func:`angle` writes them, folded between ids only and
    never as encoded words: the email package writes a token too long for a 78-character line
    as encoded words, which RFC 2047 §5 forbids in a msg-id; a reply to a message whose id
    was longer than about 65 characters (common) named no id and left the thread."""

    max_count = 1  # RFC 5322 §3.6: each field at most once

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["parse_tree"] = None
        kwds["decoded"] = value

    def fold(self, *, policy: Policy) -> str:
        line = f"{self.name}: {self}"
        if policy.max_line_length is None or len(line) <= policy.max_line_length:
            return line + policy.linesep
        # RFC 5322 §3.2.2: a line break may go before any blank; unfolding removes only it.
        return line.replace("> <", f">{policy.linesep} <") + policy.linesep


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("in-reply-to", _MsgIdsHeader)
_HEADERS.map_to_type("references", _MsgIdsHeader)
_POLICY = policy.SMTP.clone(header_factory=_HEADERS)


def _line_ended(text: str) -> str:
    text = text.replace("\r\n", "\n")
    return text if text.endswith("\n") else text + "\n"


def _text_encoding(text: str) -> str:
    """7bit when ASCII in short lines, else quoted-printable (passes any relay)."""
    plain = text.isascii() and all(len(line) <= _MAX_PLAIN_LINE for line in text.split("\n"))
    return "7bit" if plain else "quoted-printable"


def build_message(
    draft: Draft,
    *,
    sender: Person,
    recipients: Recipients,
    hostname: str,
    now: datetime,
    include_bcc: bool,
    message_id: str | None = None,
    reply_to: Person | None = None,
    as_draft: bool = False,
) -> tuple[bytes, str]:
    """The RFC 5322 message and its Message-ID. ``include_bcc`` is for the sender's own copies
    (Sent, Drafts); the submitted message never carries Bcc (RFC 5322 §3.6.3). ``as_draft``:
    the copy in Drafts, with its :data:`DRAFT_ORIGIN`."""
    message = EmailMessage(policy=_POLICY)
    message_id = message_id or make_message_id(secrets.token_hex(12), hostname)
    message["Date"] = format_datetime(now)
    message["From"] = _header_address(sender)
    if reply_to is not None:
        message["Reply-To"] = _header_address(reply_to)
    for name, group in (("To", recipients.to), ("Cc", recipients.cc)):
        if group:
            message[name] = [_header_address(p) for p in group]
    if include_bcc and recipients.bcc:
        message["Bcc"] = [_header_address(p) for p in recipients.bcc]
    message["Subject"] = _one_line(draft.subject)
    message["Message-ID"] = message_id
    if angle(draft.in_reply_to):
        message["In-Reply-To"] = angle(draft.in_reply_to)
    references = [angle(r) for r in draft.references if angle(r)]
    if references:
        message["References"] = " ".join(references)
    if as_draft and (origin := _origin_of(draft)):
        message[DRAFT_ORIGIN] = origin
    safe_html = sanitize_composed(draft.html) if draft.html.strip() else ""
    text = plain_alternative(safe_html) if safe_html else draft.body
    message.set_content(_line_ended(text), cte=_text_encoding(text))
    if safe_html:
        # RFC 2046 §5.1.4: alternatives from plainest to richest.
        document = html_document(safe_html)
        message.add_alternative(document, subtype="html", cte=_text_encoding(document))
    for upload in draft.attachments:
        # The type and name come from a browser, an API caller or a forwarded message: one
        # that is not a bare type/subtype (RFC 6838 §4.2), or a name with a CR LF, must not
        # reach a header field (the email package would refuse to write it).
        maintype, _, subtype = upload.content_type.partition("/")
        if not (_MEDIA_NAME.fullmatch(maintype) and _MEDIA_NAME.fullmatch(subtype)):
            maintype, subtype = "application", "octet-stream"
        message.add_attachment(
            upload.data,
            maintype=maintype,
            subtype=subtype,
            filename=printable(upload.filename).strip() or "attachment",
        )
    return message.as_bytes(), message_id


def _origin_of(draft: Draft) -> str:
    if _ORIGIN.fullmatch(origin := f"reply={draft.replying_to}"):
        return origin
    return origin if _ORIGIN.fullmatch(origin := f"forward={draft.forwarding}") else ""


def draft_people(draft: Draft) -> Recipients:
    """Recipients of a draft being saved: what parses, without complaints (a draft may be
    incomplete)."""
    return Recipients(
        tuple(parse_people(draft.to)[0]),
        tuple(parse_people(draft.cc)[0]),
        tuple(parse_people(draft.bcc)[0]),
    )


def draft_from_message(
    info: MessageInfo,
    text: str,
    *,
    mailbox_id: int,
    uid: int,
    html: str = "",
    origin: Sequence[str] = (),
) -> Draft:
    """Re-open a saved draft for editing (``html``: its text/html part, if written as rich
    text; ``origin``: its :data:`DRAFT_ORIGIN` fields), its attachments kept."""
    kind, reference = "", ""
    if origin and (match := _ORIGIN.fullmatch(origin[0])):
        kind, reference = match.groups()
    return replace(
        Draft(
            html=sanitize_composed(html) if html else "",
            to=", ".join(map(str, people(info.envelope.to))),
            cc=", ".join(map(str, people(info.envelope.cc))),
            bcc=", ".join(map(str, people(info.envelope.bcc))),
            subject=info.subject,
            body=text,
            in_reply_to=info.in_reply_to,
            references=info.references,
        ),
        kept=kept_of(info, f"{mailbox_id}:{uid}"),
        replying_to=reference if kind == "reply" else "",
        forwarding=reference if kind == "forward" else "",
        draft_uid=uid,
    )
