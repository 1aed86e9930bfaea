"""DMARC failure reports (RFC 9991): which reports a message's evaluation asks for, and the
AFRF message that carries one. Pure functions over values; sending (destinations, rate limit,
queue) is :mod:`.failurereporting`.

Implementation notes:

- **When** (RFC 9989 §4.7 ``fo``, RFC 9991 §2, §3): only with a ``ruf`` in the record applied
  and never for a record with ``psd=y`` (RFC 9991 §2, RFC 9990 §7: PSD feedback is aggregate
  only). ``fo=0`` (the default): a DMARC failure; ``fo=1``: any mechanism without an aligned
  pass, even if the other passed; ``fo=d``: any DKIM signature that failed; ``fo=s``: an SPF
  fail. Each asked-for kind is its own report, as ``Auth-Failure`` may appear once (RFC 5965
  §3.1): ``dmarc`` (RFC 9991 §4 item 3), ``signature`` and ``spf`` (RFC 6591 §3.1).
- **Format** (RFC 5965 §2, RFC 6591, RFC 9991 §4): ``multipart/report;
  report-type=feedback-report`` with a ``text/plain`` explanation, a ``message/feedback-report``
  part (``Feedback-Type: auth-failure``, ``User-Agent``, ``Version: 1``, ``Auth-Failure``,
  ``Authentication-Results``, ``Identity-Alignment``, ``Original-Mail-From``, ``Arrival-Date``,
  ``Source-IP``, ``Reported-Domain``; ``DKIM-Domain``/``-Identity``/``-Selector`` for a failed
  signature of an aligned or reported domain; ``SPF-DNS`` for an SPF failure when the record is
  known; ``Delivery-Result`` when the DMARC policy alone decided it), and the original.
- **Privacy** (RFC 9991 §7, §7.3, Appendix A): by default only the original's header
  (``text/rfc822-headers``), and the local parts of the addresses in it and in
  ``Original-Mail-From`` replaced by a keyed hash (RFC 6590 style: the same address gives the
  same token within one server run, so a consumer can still correlate). The whole message
  (``message/rfc822``) is an option, sent as received and only up to a size; larger ones fall
  back to the header. ``Original-Rcpt-To`` is never sent: it would expose the recipients
  (RFC 9991 §7.1).
- Field values taken from the message or the DNS are reduced to printable ASCII and folded
  (:func:`pillarbox.mail.dsn.clean`), so a sender cannot inject report fields.
- Nothing here reads the clock or draws random numbers: the date, Message-ID, boundary seed and
  redaction key are arguments.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import format_datetime
from typing import Protocol

from pillarbox import __version__
from pillarbox.mail.dsn import choose_boundary, clean, fold, header_section, multipart_report
from pillarbox.mail.headers import parse_content_header, raw_text, scan_header
from pillarbox.policy import dmarc
from pillarbox.policy.authresults import AuthSummary, results
from pillarbox.policy.dkim import DkimResult, SignatureResult
from pillarbox.policy.spf import SpfResult


class AuthFailure(enum.StrEnum):
    """``Auth-Failure`` values (RFC 6591 §3.1, RFC 9991 §4 item 3)."""

    DMARC = "dmarc"
    SIGNATURE = "signature"
    SPF = "spf"


class Content(enum.StrEnum):
    """How much of the original a report carries."""

    HEADERS = "headers"
    FULL = "full"


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedMessage:
    """What the inbound policy knows of a message whose DMARC evaluation may call for failure
    reports."""

    outcome: dmarc.DmarcOutcome
    auth: AuthSummary
    source_ip: str
    #: MAIL FROM ("" for the null reverse-path).
    mail_from: str
    arrival: datetime
    #: The message as received, before our trace fields (or only its header, see
    #: :func:`trimmed`).
    raw: bytes
    #: ``raw`` is only the header section: reports carry no more.
    header_only: bool = False


class FailureSink(Protocol):
    """Where the inbound policy hands each evaluated message (:mod:`.failurereporting`)."""

    def consider(self, failed: FailedMessage) -> None:
        """Start whatever reports ``failed`` calls for; must return without waiting."""
        ...


def trimmed(failed: FailedMessage, settings: ReportSettings) -> FailedMessage:
    """``failed`` holding only what its reports will carry: the header alone unless the whole
    message goes, so reports waiting to be sent do not hold large messages in memory."""
    if failed.header_only or (
        settings.content is Content.FULL and len(failed.raw) <= settings.max_original
    ):
        return failed
    return replace(failed, raw=header_section(failed.raw) + b"\r\n", header_only=True)


def report_kinds(failed: FailedMessage) -> list[AuthFailure]:
    """The reports the record's ``fo`` asks for (see the module notes); [] for none."""
    outcome = failed.outcome
    record = outcome.record
    if record is None or not record.ruf or record.psd == "y":
        return []
    if outcome.result not in (dmarc.DmarcResult.PASS, dmarc.DmarcResult.FAIL):
        return []
    options = set(record.fo.split(":"))
    kinds = []
    failed_methods = identity_alignment(outcome)
    if ("0" in options and outcome.result is dmarc.DmarcResult.FAIL) or (
        "1" in options and failed_methods
    ):
        kinds.append(AuthFailure.DMARC)  # RFC 9989 §4.7 fo=0 / fo=1
    if "d" in options and any(s.result is DkimResult.FAIL for s in failed.auth.dkim):
        kinds.append(AuthFailure.SIGNATURE)  # fo=d: regardless of alignment
    spf = failed.auth.spf
    if "s" in options and spf is not None and spf.result is SpfResult.FAIL:
        kinds.append(AuthFailure.SPF)  # fo=s: regardless of alignment
    return kinds


def identity_alignment(outcome: dmarc.DmarcOutcome) -> list[str]:
    """RFC 9991 §4 item 2: the mechanisms that did not authenticate an aligned identity."""
    return [m for m in ("dkim", "spf") if m not in outcome.aligned]


def is_feedback_report(raw: bytes) -> bool:
    """The message is itself a feedback report: never answered with one (RFC 9991 §5.1 warns
    of report loops)."""
    block = scan_header(raw, 0, len(raw), max_fields=1000)
    for f in block.fields:
        if f.key == "content-type":
            # Parsed as MIME does: report-type may be quoted or an RFC 2231 continuation.
            parsed = parse_content_header(raw_text(f.value))
            if parsed is None or parsed[:2] != ("multipart", "report"):
                return False
            return any(k == "report-type" and v.lower() == "feedback-report" for k, v in parsed[2])
    return False


# -- redaction (RFC 9991 §7, Appendix A; RFC 6590) -----------------------------------------------

#: An address: its local part a dot-atom or a quoted string, either with UTF-8 (RFC 6532 §3.2),
#: and its domain (U-labels too).
_ADDRESS = re.compile(
    rb'("(?:[^"\\\r\n]|\\.)*"|[A-Za-z0-9!#$%&\'*+/=?^_`{|}~.\x80-\xff-]+)'
    rb"@([A-Za-z0-9\x80-\xff-]+(?:\.[A-Za-z0-9\x80-\xff-]+)+)"
)
#: Fields whose ``x@y`` tokens are identifiers, not people's addresses: kept as they are.
_NOT_ADDRESSES = frozenset(
    {
        "message-id",
        "in-reply-to",
        "references",
        "resent-message-id",
        "content-id",
        "dkim-signature",
        "arc-seal",
        "arc-message-signature",
    }
)


def redact_local_part(local: bytes, key: bytes) -> bytes:
    """A stable token for ``local``: the first 12 base-16 digits of HMAC-SHA-256 under ``key``."""
    return hmac.new(key, local.lower(), hashlib.sha256).hexdigest()[:12].encode()


def _redact_addresses(text: bytes, key: bytes) -> bytes:
    return _ADDRESS.sub(lambda m: redact_local_part(m.group(1), key) + b"@" + m.group(2), text)


def redact_header(header: bytes, key: bytes) -> bytes:
    """``header`` (the fields of a header section) with the local part of every address in
    fields that carry addresses replaced by its token."""
    block = scan_header(header, 0, len(header), max_fields=10_000)
    out: list[bytes] = []
    pos = 0
    for f in block.fields:
        out.append(header[pos : f.start])
        whole = header[f.start : f.end]
        out.append(whole if f.key in _NOT_ADDRESSES else _redact_addresses(whole, key))
        pos = f.end
    out.append(header[pos:])
    return b"".join(out)


# -- the report (RFC 5965 §2–3, RFC 6591 §3, RFC 9991 §4) ----------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportSettings:
    """How reports are written (from ``[dmarc_failure_reports]``)."""

    #: This receiver: the authserv-id of the report's ``Authentication-Results``.
    receiver: str
    content: Content = Content.HEADERS
    #: Largest original sent whole with ``content=full``; larger ones as their header.
    max_original: int = 1 << 20
    #: Key of the local-part tokens; None sends addresses as they are.
    redaction_key: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """The report message's own header values."""

    sender: str
    recipients: Sequence[str]
    date: datetime
    message_id: str
    boundary_seed: str


def _dkim_fields(signature: SignatureResult) -> list[str]:
    return [
        fold("DKIM-Domain", clean(signature.domain)),
        # RFC 6376 §3.5: without i=, the identity is "@" and the signing domain.
        fold("DKIM-Identity", "@" + clean(signature.domain)),
        fold("DKIM-Selector", clean(signature.selector)),
    ]


def _reported_signature(failed: FailedMessage, kind: AuthFailure) -> SignatureResult | None:
    """The DKIM signature whose failure the report is about: any failed one for
    ``signature``; for ``dmarc``, a failed one of an aligned domain (RFC 9991 §4 item 1)."""
    outcome = failed.outcome
    mode = outcome.record.adkim if outcome.record is not None else "r"
    for s in failed.auth.dkim:
        if s.result is DkimResult.PASS or not s.domain:
            continue
        if kind is AuthFailure.SIGNATURE and s.result is DkimResult.FAIL:
            return s
        if kind is AuthFailure.DMARC and dmarc.aligned(outcome.domain, s.domain, mode):
            return s
    return None


def _delivery_result(outcome: dmarc.DmarcOutcome) -> str | None:
    """RFC 6591 §3.1 ``Delivery-Result`` when the DMARC policy alone decided the delivery."""
    if outcome.result is not dmarc.DmarcResult.FAIL:
        return None
    return {dmarc.Disposition.REJECT: "reject", dmarc.Disposition.QUARANTINE: "spam"}.get(
        outcome.disposition
    )


def feedback_fields(
    failed: FailedMessage,
    kind: AuthFailure,
    settings: ReportSettings,
    *,
    spf_record: str | None = None,
) -> str:
    """The ``message/feedback-report`` body (see the module notes), CRLF line ends."""
    outcome = failed.outcome
    key = settings.redaction_key
    mail_from = failed.mail_from
    if key is not None and "@" in mail_from:
        local, _, domain = mail_from.rpartition("@")
        mail_from = f"{redact_local_part(local.encode(), key).decode()}@{domain}"
    entries = results(failed.auth) or ["none"]
    lines = [
        fold("Feedback-Type", "auth-failure"),  # RFC 6591 §3
        fold("User-Agent", f"Pillarbox/{__version__}"),
        fold("Version", "1"),  # RFC 5965 §3.1
        fold("Auth-Failure", kind.value),
        fold("Authentication-Results", clean(f"{settings.receiver}; " + "; ".join(entries))),
    ]
    if kind is AuthFailure.DMARC:
        lines.append(fold("Identity-Alignment", ", ".join(identity_alignment(outcome)) or "none"))
    signature = _reported_signature(failed, kind)
    if signature is not None:
        lines += _dkim_fields(signature)
    spf = failed.auth.spf
    spf_failed = spf is not None and spf.result in (SpfResult.FAIL, SpfResult.SOFTFAIL)
    if spf_record is not None and spf is not None and spf_failed:
        # RFC 6591 §3.1: the record type, the name it was found at, and its text.
        lines.append(fold("SPF-DNS", f"txt : {clean(spf.domain)} : {clean(spf_record)}"))
    lines.append(fold("Original-Mail-From", f"<{clean(mail_from)}>"))
    lines.append(fold("Arrival-Date", format_datetime(failed.arrival)))
    lines.append(fold("Source-IP", clean(failed.source_ip)))
    lines.append(fold("Reported-Domain", clean(outcome.domain)))
    delivery = _delivery_result(outcome)
    if delivery is not None:
        lines.append(fold("Delivery-Result", delivery))
    return "".join(lines)


def report_message(
    failed: FailedMessage,
    kind: AuthFailure,
    settings: ReportSettings,
    envelope: Envelope,
    *,
    spf_record: str | None = None,
) -> bytes:
    """The complete failure report (RFC 5965 §2), CRLF line ends, ready to submit."""
    raw = failed.raw
    header = header_section(raw)
    whole = (
        not failed.header_only
        and settings.content is Content.FULL
        and len(raw) <= settings.max_original
    )
    if settings.redaction_key is not None:
        header = redact_header(header, settings.redaction_key)
    utf8 = not header.isascii()  # an SMTPUTF8 message (RFC 6532): RFC 6533 §6.3, §6.4 types
    if whole:
        block = scan_header(raw, 0, len(raw), max_fields=10_000)
        body = raw[block.body_start :]
        original = header + b"\r\n" + body
        original_type = "message/global" if utf8 else "message/rfc822"
    else:
        original = header
        # RFC 9991 Appendix A: without the body, text/rfc822-headers.
        original_type = "message/global-headers" if utf8 else "text/rfc822-headers"
    outcome = failed.outcome
    source = clean(failed.source_ip)
    text_lines = [
        f"This is an authentication failure report ({kind.value}) for an email message",
        f"received from IP {source} on {format_datetime(failed.arrival)},",
        f"whose author domain is {clean(outcome.domain)} (DMARC result: {outcome.result.value}).",
    ]
    if not whole:
        text_lines.append("Only the message's header is included.")
    text = ("\r\n".join(text_lines) + "\r\n").encode("ascii")
    feedback = feedback_fields(failed, kind, settings, spf_record=spf_record).encode("ascii")
    if not original.endswith(b"\r\n"):
        original += b"\r\n"
    boundary = choose_boundary(envelope.boundary_seed, [text, feedback, original])
    return multipart_report(
        [
            fold("From", envelope.sender),
            fold("To", ", ".join(envelope.recipients)),
            fold("Subject", f"DMARC failure report for {clean(outcome.domain)} from {source}"),
            fold("Date", format_datetime(envelope.date)),
            fold("Message-ID", clean(envelope.message_id)),
            "Auto-Submitted: auto-generated\r\n",  # RFC 3834 §5: not to be answered
        ],
        "feedback-report",
        boundary,
        [
            ("text/plain; charset=us-ascii", text, ""),
            ("message/feedback-report", feedback, ""),
            (original_type, original, ""),
        ],
    )
