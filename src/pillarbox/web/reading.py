"""What a reader sees of a stored message: decoded headers, the body to show, attachments,
authentication results, the spam filter's verdict — all from the :class:`MessageInfo` parsed at
ingest plus slices of the raw bytes (no re-parse, DESIGN principle 4)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from pillarbox.mail.decode import decode_words, header_bytes_to_text, html_to_text
from pillarbox.mail.headers import scan_header, unfold
from pillarbox.mail.model import BodyPart, MessageInfo
from pillarbox.mail.parse import find_part, part_text
from pillarbox.policy import headerfacts
from pillarbox.policy.verdict import SPAM_HEADER

# -- the body to show ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bodies:
    """The first plain-text and the first HTML body part (either may be missing)."""

    plain: BodyPart | None
    html: BodyPart | None


def _is_body_text(part: BodyPart) -> bool:
    if part.type != "text" or part.subtype not in ("plain", "html"):
        return False
    if part.disposition is not None and part.disposition[0] == "attachment":
        return False
    return not any(key in ("name", "filename") for key, _ in part.params)


def _leaves(part: BodyPart) -> Iterator[BodyPart]:
    """Leaves in document order, not descending into attached messages."""
    if part.type == "multipart":
        for child in part.parts:
            yield from _leaves(child)
    else:
        yield part


def body_parts(info: MessageInfo) -> Bodies:
    plain: BodyPart | None = None
    html: BodyPart | None = None
    for leaf in _leaves(info.body):
        if not _is_body_text(leaf):
            continue
        if leaf.subtype == "plain" and plain is None:
            plain = leaf
        elif leaf.subtype == "html" and html is None:
            html = leaf
    return Bodies(plain, html)


def calendar_part(info: MessageInfo) -> BodyPart | None:
    """The message's first ``text/calendar`` leaf (an iMIP part, RFC 6047 §2.4), or None."""
    leaves = _leaves(info.body)
    return next((p for p in leaves if (p.type, p.subtype) == ("text", "calendar")), None)


def body_text(raw: bytes, info: MessageInfo) -> str:
    """The message as plain text: its text part, else its HTML part reduced to text."""
    bodies = body_parts(info)
    if bodies.plain is not None:
        return part_text(raw, bodies.plain)
    if bodies.html is not None:
        return html_to_text(part_text(raw, bodies.html))
    return ""


def part_at(info: MessageInfo, section: str) -> BodyPart | None:
    """The part an IMAP section number ("2.1") names, or None (also for malformed input)."""
    try:
        numbers = tuple(int(n) for n in section.split("."))
    except ValueError:
        return None
    if not numbers or any(n < 1 for n in numbers):
        return None
    return find_part(info, numbers)


def section_of_content_id(info: MessageInfo, content_id: str) -> str | None:
    """The section of the part with that Content-ID (RFC 2392 ``cid:``), if any."""
    wanted = content_id.strip().strip("<>")
    for attachment in info.attachments:
        if attachment.content_id == wanted:
            return attachment.section
    return None


# -- header fields ---------------------------------------------------------------------------------


def header_values(raw: bytes, info: MessageInfo, name: str) -> list[str]:
    """Decoded values of every top-level header field called ``name``, in order."""
    key = name.lower()
    return [
        decode_words(header_bytes_to_text(unfold(field.value))).strip()
        for field in scan_header(raw, 0, info.header_end).fields
        if field.key == key
    ]


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One method's verdict from an Authentication-Results field (RFC 8601 §2.2)."""

    method: str
    result: str
    detail: str


_RESULT = re.compile(r"\b(spf|dkim|dmarc|arc|iprev|auth)\s*=\s*([a-z]+)([^;]*)", re.I)


def authentication_results(raw: bytes, info: MessageInfo, authserv_id: str) -> list[AuthResult]:
    """Verdicts from the Authentication-Results fields this server added.

    RFC 8601 §5: fields carrying another authserv-id may have been forged by the sender and are
    ignored; only ours (``authserv_id``, the server's hostname) count.
    """
    results: list[AuthResult] = []
    for value in header_values(raw, info, "Authentication-Results"):
        server, _, rest = value.partition(";")
        if server.split()[:1] != [authserv_id]:
            continue
        for match in _RESULT.finditer(rest):
            results.append(
                AuthResult(match.group(1).lower(), match.group(2).lower(), match.group(3).strip())
            )
    return results


@dataclass(frozen=True, slots=True)
class SpamReason:
    """One finding of the spam filter: its code, what it is about, and what it added."""

    code: str
    detail: str
    score: float

    @property
    def meaning(self) -> str:
        """The code in words, for readers who do not know the filter's vocabulary."""
        return SPAM_REASON_MEANINGS.get(self.code, self.code.replace("_", " ").lower())


@dataclass(frozen=True, slots=True)
class SpamVerdict:
    """The ``X-Pillarbox-Spam`` field our delivery wrote (see :mod:`pillarbox.policy.verdict`)."""

    score: float
    action: str
    #: What decided instead of the score ("dmarc-reject", "allow-list"), if anything.
    override: str
    reasons: tuple[SpamReason, ...]
    #: Reasons the header summarised as "+N more".
    more: int


#: Codes of :class:`pillarbox.policy.verdict.Reason` in words; unknown codes are shown as-is.
SPAM_REASON_MEANINGS = {
    "BAYES": "content filter (spam probability)",
    "GTUBE": "spam test pattern",
    "SPF_FAIL": "SPF failed for",
    "SPF_SOFTFAIL": "SPF soft-failed for",
    "DKIM_FAIL": "DKIM signature failed for",
    "DMARC_PASS": "DMARC passed for",
    "DNSBL": "listed on blocklist",
    "NO_FROM": "no From address",
    "ATTACHMENT_ONLY": "attachment without text",
    "FORGED_LOCAL_SENDER": "unverified sender in a local domain",
    "CORRESPONDENT": "you have written to",
    "SENDER_HISTORY": "your history with sender",
    "DOMAIN_HISTORY": "your history with domain",
    "NETWORK_HISTORY": "your history with network",
    "ALLOW_LIST": "on your allow list",
    "BLOCK_LIST": "on your block list",
    "ALLOW_LIST_UNVERIFIED": "on your allow list, but not sent by its domain (unverified)",
    **headerfacts.MEANINGS,
}
#: Fields our delivery puts above the rest (RFC 5321 §4.4 trace first): an X-Pillarbox-Spam
#: among them is ours; one further down came with the message and may be forged.
_DELIVERY_FIELDS = frozenset({"return-path", "delivered-to", SPAM_HEADER.lower()})
_SPAM_PARAM = re.compile(r"\b(score|action|override)=([^;\s]+)")
_SPAM_REASON = re.compile(r"([A-Z][A-Z0-9_]*)(?::(.*?))?\(([+-]\d+(?:\.\d+)?)\)")
_SPAM_MORE = re.compile(r"\+(\d+) more")


def spam_verdict(raw: bytes, info: MessageInfo) -> SpamVerdict | None:
    """The verdict our delivery recorded, or None (mail we did not judge: sent, local, imported).

    Only a field in the block delivery prepends counts: a sender can write any header, and a
    forged "score=-100" must not reassure the reader.
    """
    for field in scan_header(raw, 0, info.header_end).fields:
        if field.key not in _DELIVERY_FIELDS:
            return None
        if field.key == SPAM_HEADER.lower():
            return _parse_spam_field(header_bytes_to_text(unfold(field.value)))
    return None


def _parse_spam_field(value: str) -> SpamVerdict | None:
    head, _, reasons = value.partition("reasons=")
    params = dict(_SPAM_PARAM.findall(head))
    try:
        score = float(params.get("score", ""))
    except ValueError:
        return None
    found = tuple(
        SpamReason(code, (detail or "").strip(), float(number))
        for code, detail, number in _SPAM_REASON.findall(reasons)
    )
    more = _SPAM_MORE.search(reasons)
    return SpamVerdict(
        score,
        params.get("action", ""),
        params.get("override", ""),
        found,
        int(more.group(1)) if more else 0,
    )


def sent_or_received(info: MessageInfo, internal_date: datetime) -> datetime:
    return info.sent_date or internal_date
