"""Delivery status notifications: RFC 3464 ``message/delivery-status`` inside an RFC 6522
``multipart/report``, as pure functions of their values.

Implementation notes (RFC 3461 §6, RFC 3464 §2, RFC 6522, RFC 6533, RFC 3834 §5):

- The report has three parts: a human-readable ``text/plain`` explanation, the machine-readable
  ``message/delivery-status``, and the original — whole (``message/rfc822``) when the sender
  asked for it with ``RET=FULL`` or gave no RET (RFC 3461 §4.3 leaves that case to us) and it
  is within the size limit, else only its header (``text/rfc822-headers``). A report without
  failures returns only the header (RFC 3461 §6.2).
- An original whose header holds UTF-8 (an SMTPUTF8 message, RFC 6532) is returned as
  ``message/global`` / ``message/global-headers`` (RFC 6533 §6.3, §6.4); 8-bit content is
  labelled ``Content-Transfer-Encoding: 8bit`` (RFC 2046 §5.2.1).
- Field values we did not choose (an SMTP reply text, an ORCPT) are reduced to printable ASCII
  and folded, so a remote server cannot inject fields into the report.
- ``Original-Envelope-Id`` is the ENVID as received, xtext-decoded (RFC 3461 §6.3 (a));
  ``Original-Recipient`` appears only when the sender gave ORCPT (§6.3 (d)).
- The report is ``Auto-Submitted: auto-replied`` (RFC 3834 §5), and the caller sends it with
  the null reverse-path (RFC 5321 §4.5.5), so no report is ever answered by another.
- Nothing here reads the clock or draws random numbers: dates, the Message-ID and the boundary
  seed are arguments.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from pillarbox.mail.headers import scan_header

_CRLF = "\r\n"
_UNSAFE = re.compile(r"[^\x20-\x7e]+")
#: RFC 5322 §2.1.1: lines SHOULD stay within 78 characters; we fold field values there.
FOLD_WIDTH = 78
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=?-]{1,60}")  # RFC 2046 §5.1.1 bcharsnospace


class Action(enum.StrEnum):
    """RFC 3464 §2.3.3 Action values."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientReport:
    """The per-recipient fields of RFC 3464 §2.3 for one recipient."""

    #: The envelope recipient (``Final-Recipient: rfc822;…``).
    final_recipient: str
    action: Action
    #: RFC 3463 status code such as ``5.1.1`` (RFC 3461 §6.3 (g): 4.0.0/5.0.0 when unknown).
    status: str
    #: ``addr-type;address`` from ORCPT, as received (decoded); None when the sender gave none.
    original_recipient: str | None = None
    #: Host name of the server that answered (``Remote-MTA: dns;…``).
    remote_mta: str | None = None
    #: The SMTP reply that decided, ``550 5.1.1 text`` (``Diagnostic-Code: smtp;…``).
    diagnostic: str | None = None
    last_attempt: datetime | None = None
    #: For ``delayed``: when we give up (RFC 3464 §2.3.9).
    will_retry_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReport:
    """Everything one DSN says: the per-message fields and one entry per recipient."""

    #: Our host name (``Reporting-MTA: dns;…``).
    reporting_mta: str
    arrival_date: datetime
    recipients: tuple[RecipientReport, ...]
    #: ENVID from MAIL FROM, xtext-decoded; None when absent.
    envid: str | None = None

    @property
    def has_failures(self) -> bool:
        return any(r.action is Action.FAILED for r in self.recipients)


class ReturnContent(enum.Enum):
    """How much of the original a report carries (RFC 3461 §4.3 RET)."""

    FULL = "full"
    HEADERS = "headers"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportMessage:
    """What a report is sent as, besides its report: the envelope-independent header values."""

    #: ``From``: the mailer daemon of ``reporting_mta``.
    from_address: str
    #: ``To``: the envelope sender of the original.
    to_address: str
    date: datetime
    message_id: str
    #: A token the boundary is derived from (the caller draws it at random).
    boundary_seed: str
    #: Largest original returned whole; larger ones are returned as their header.
    max_original: int = 262_144


def clean(text: str) -> str:
    """Printable ASCII only: anything else in a field value becomes one space."""
    return _UNSAFE.sub(" ", text).strip()


def fold(name: str, value: str) -> str:
    """``Name: value`` folded at spaces to :data:`FOLD_WIDTH` columns (RFC 5322 §2.2.3)."""
    words = value.split(" ")
    lines = [f"{name}: {words[0]}"]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) > FOLD_WIDTH and lines[-1].strip():
            lines.append(" " + word)
        else:
            lines[-1] += " " + word
    return _CRLF.join(lines) + _CRLF


def _address_type(address: str) -> str:
    """RFC 6533 §3: ``utf-8`` for non-ASCII addresses, ``rfc822`` otherwise."""
    return "rfc822" if address.isascii() else "utf-8"


def delivery_status(report: DeliveryReport) -> str:
    """The ``message/delivery-status`` body (RFC 3464 §2.1): per-message fields, then one
    block per recipient, each block preceded by an empty line."""
    out = []
    if report.envid is not None:
        out.append(fold("Original-Envelope-Id", clean(report.envid)))
    out.append(fold("Reporting-MTA", f"dns; {clean(report.reporting_mta)}"))
    out.append(fold("Arrival-Date", format_datetime(report.arrival_date)))
    for r in report.recipients:
        out.append(_CRLF)
        if r.original_recipient is not None:
            kind, sep, address = r.original_recipient.partition(";")
            value = f"{kind.strip()}; {address.strip()}" if sep else f"rfc822; {kind.strip()}"
            out.append(fold("Original-Recipient", clean(value)))
        recipient = r.final_recipient
        out.append(fold("Final-Recipient", f"{_address_type(recipient)}; {_utf8_safe(recipient)}"))
        out.append(fold("Action", r.action.value))
        out.append(fold("Status", clean(r.status)))
        if r.remote_mta is not None:
            out.append(fold("Remote-MTA", f"dns; {clean(r.remote_mta)}"))
        if r.diagnostic is not None:
            out.append(fold("Diagnostic-Code", f"smtp; {clean(r.diagnostic)}"))
        if r.last_attempt is not None:
            out.append(fold("Last-Attempt-Date", format_datetime(r.last_attempt)))
        if r.will_retry_until is not None:
            out.append(fold("Will-Retry-Until", format_datetime(r.will_retry_until)))
    return "".join(out)


def _utf8_safe(address: str) -> str:
    """An address for a UTF-8 capable field: controls removed, UTF-8 kept (RFC 6533 §3)."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", address).strip()


_SUBJECTS = {
    Action.FAILED: "Undelivered Mail Returned to Sender",
    Action.DELAYED: "Delayed Mail (still being retried)",
    Action.DELIVERED: "Successful Mail Delivery Report",
    Action.RELAYED: "Mail Relayed to a Server Without Delivery Reports",
    Action.EXPANDED: "Mail Delivered to a List",
}


def _headline(report: DeliveryReport) -> Action:
    """The action that names the report: failures first, then delays."""
    actions = {r.action for r in report.recipients}
    for action in (Action.FAILED, Action.DELAYED, Action.DELIVERED, Action.RELAYED):
        if action in actions:
            return action
    return Action.EXPANDED


def explanation(report: DeliveryReport, *, headers_only_because_large: bool) -> str:
    """The human-readable first part (RFC 6522 §3), plain ASCII with CRLF line ends."""
    host = clean(report.reporting_mta)
    lines = [f"This is the mail system at host {host}.", ""]
    headline = _headline(report)
    if headline is Action.FAILED:
        lines += [
            "Your message could not be delivered to one or more recipients.",
            "It is attached below. The mail system's replies follow.",
        ]
    elif headline is Action.DELAYED:
        lines += [
            "Your message could not be delivered yet; it stays queued and will be",
            "retried. You do not need to send it again.",
        ]
    else:
        lines += ["Your message was delivered as described below."]
    lines.append("")
    for r in report.recipients:
        lines.append(f"<{clean(r.final_recipient)}>: {r.action.value}")
        # The host once, before its reply, as ``pillarbox queue show`` has it (the reply
        # texts never name it: the Remote-MTA field does, RFC 3464 §2.3.5).
        detail = ": ".join(clean(part) for part in (r.remote_mta, r.diagnostic) if part)
        if detail:
            lines.append(f"    {detail}")
        if r.will_retry_until is not None:
            lines.append(f"    (retried until {format_datetime(r.will_retry_until)})")
    if headers_only_because_large:
        lines += ["", "The message was too large to return whole; its header is attached."]
    return _CRLF.join(lines) + _CRLF


def choose_boundary(seed: str, parts: Sequence[bytes]) -> str:
    """The seed, or the seed with a counter, such that no part contains the delimiter."""
    if not _BOUNDARY.fullmatch(seed):
        raise ValueError(f"boundary seed {seed!r} is not a valid MIME boundary")
    candidate, n = seed, 0
    while any(b"--" + candidate.encode() in part for part in parts):
        n += 1
        candidate = f"{seed}.{n}"
    return candidate


def header_section(raw: bytes) -> bytes:
    """The original's header fields, each ending in CRLF, without the empty line after them."""
    block = scan_header(raw, 0, len(raw))
    end = block.fields[-1].end if block.fields else 0
    header = raw[:end].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return header if header.endswith(b"\r\n") or not header else header + b"\r\n"


def build_report(
    report: DeliveryReport,
    message: ReportMessage,
    original: bytes,
    *,
    ret: ReturnContent | None,
) -> bytes:
    """The complete DSN message (RFC 3464 / RFC 6522), CRLF line ends, ready to queue."""
    if not report.recipients:
        raise ValueError("a delivery report needs at least one recipient")
    full = report.has_failures and ret is not ReturnContent.HEADERS
    too_large = full and len(original) > message.max_original
    header = header_section(original)
    utf8 = not header.isascii()
    if full and not too_large:
        returned = original if original.endswith(b"\r\n") else original + b"\r\n"
        returned_type = "message/global" if utf8 else "message/rfc822"
    else:
        returned = header
        returned_type = "message/global-headers" if utf8 else "text/rfc822-headers"
    status = delivery_status(report).encode("utf-8")
    status_type = "message/global-delivery-status" if not status.isascii() else None
    text = explanation(report, headers_only_because_large=too_large).encode("ascii")
    boundary = choose_boundary(message.boundary_seed, [text, status, returned])
    return multipart_report(
        [
            fold("From", f"Mail Delivery System <{message.from_address}>"),
            fold("To", f"<{_utf8_safe(message.to_address)}>"),
            fold("Subject", _SUBJECTS[_headline(report)]),
            fold("Date", format_datetime(message.date)),
            fold("Message-ID", clean(message.message_id)),
            "Auto-Submitted: auto-replied\r\n",  # RFC 3834 §5
        ],
        "delivery-status",
        boundary,
        [
            ("text/plain; charset=us-ascii", text, "Notification"),
            (status_type or "message/delivery-status", status, "Delivery report"),
            (returned_type, returned, "Original message"),
        ],
    )


def multipart_report(
    fields: Sequence[str],
    report_type: str,
    boundary: str,
    parts: Sequence[tuple[str, bytes, str]],
) -> bytes:
    """A ``multipart/report`` message (RFC 6522 §3), CRLF line ends: the folded header
    ``fields`` (From, To, Subject, …), then each part as (content type, body, description, ""
    for none); 8bit is declared for a body that is not ASCII. Shared by delivery reports and
    DMARC failure reports (RFC 5965 §2)."""
    head = "".join(
        [
            *fields,
            "MIME-Version: 1.0\r\n",
            fold(
                "Content-Type",
                f'multipart/report; report-type={report_type}; boundary="{boundary}"',
            ),
            "\r\n",
            "This is a MIME-encapsulated message.\r\n\r\n",
        ]
    ).encode("utf-8")
    out = [head]
    for content_type, body, description in parts:
        described = f"Content-Description: {description}\r\n" if description else ""
        cte = "" if body.isascii() else "Content-Transfer-Encoding: 8bit\r\n"
        out.append(f"--{boundary}\r\nContent-Type: {content_type}\r\n{described}{cte}\r\n".encode())
        out += [body, b"\r\n"]  # that CRLF belongs to the next delimiter (RFC 2046 §5.1.1)
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)
