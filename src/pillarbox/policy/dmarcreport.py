"""DMARC aggregate reports (RFC 9990, which obsoletes RFC 7489 §7.2): from kept evaluations
to the gzipped XML report and the message that carries it. Pure functions over values; the
periodic job that reads the store, checks destinations in DNS and queues the messages is
:mod:`.reporting`.

Implementation notes:

- **One report per DMARC Policy Domain** (§3.1): the domain where the record was found. It
  quotes the last policy record seen in the period ("SHOULD note only the final
  configuration", §3.1) and counts messages in one ``record`` per distinct (source IP,
  identifiers, results, disposition) tuple (§3.1.1.7).
- The XML follows the schema of Appendix A: namespace ``urn:ietf:params:xml:ns:dmarc-2.0``,
  elements of sequences in schema order; ``policy_published`` has ``np`` and ``testing``
  (RFC 9989 tags) and the ``discovery_method`` the evaluation used (``psl`` or ``treewalk``,
  ``policy.dmarc_discovery``; the last evaluation's if it changed within the period). A
  failing message whose disposition is below the published policy carries a ``reason``
  (§3.1.6): ``policy_test_mode`` for ``t=y``, ``other`` for a legacy ``pct`` that did not
  select it, ``local_policy`` for a local exception (a trusted ARC sealer), each with a
  comment.
- The attachment is gzip (``application/gzip``) named
  ``receiver!policy-domain!begin!end.xml.gz`` and the Subject is ``Report Domain: …
  Submitter: … Report-ID: <…>`` (§3.5.2); the Report-ID is also the Message-ID, so a resent
  report is recognisable as the same one.
"""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

from pillarbox import __version__
from pillarbox.policy.authresults import AuthSummary
from pillarbox.policy.dmarc import Disposition, DmarcOutcome, DmarcResult, parse_record
from pillarbox.store.types import DmarcObservation

NAMESPACE = "urn:ietf:params:xml:ns:dmarc-2.0"  # RFC 9990 Appendix A
GZIP_TYPE = ("application", "gzip")  # RFC 9990 §3.5.2 (RFC 6713)


def observation(
    outcome: DmarcOutcome,
    summary: AuthSummary,
    *,
    source_ip: str,
    mail_from: str,
    received: datetime,
) -> DmarcObservation | None:
    """What a report needs to count one message; None when there is nothing to report (no
    policy record, or one that asks for no aggregate reports)."""
    record = outcome.record
    if (
        record is None
        or not record.rua
        or outcome.result
        not in (
            DmarcResult.PASS,
            DmarcResult.FAIL,
        )
    ):
        return None
    passed = outcome.result is DmarcResult.PASS
    if passed:
        # "pass": no action, passing DMARC with an enforcing policy (Appendix A).
        disposition = "none" if record.p is Disposition.NONE else "pass"
    else:
        disposition = outcome.disposition.value
    spf = summary.spf if mail_from and not summary.spf_is_helo else None
    return _storable(
        DmarcObservation(
            received=received,
            policy_domain=outcome.policy_domain or outcome.domain,
            header_from=outcome.domain,
            envelope_from=mail_from.rpartition("@")[2].lower(),
            source_ip=source_ip,
            disposition=disposition,
            dkim_aligned="dkim" in outcome.aligned,
            spf_aligned="spf" in outcome.aligned,
            spf_domain=spf.domain if spf is not None else "",
            spf_result=spf.result.value if spf is not None else "",
            dkim=tuple((s.domain, s.selector, s.result.value) for s in summary.dkim if s.domain),
            policy_record=record.text(),
            override=outcome.override.value if outcome.override is not None else "",
            override_comment=outcome.override_comment,
            discovery=outcome.discovery.value,
        )
    )


def _storable(kept: DmarcObservation) -> DmarcObservation:
    """``kept`` with each NUL as U+FFFD. A From domain and a DKIM signature's d= and s= are
    the message's bytes, a record's tags the DNS's: any may hold NUL, which PostgreSQL's text
    cannot (as in the stored message text, :mod:`pillarbox.mail.parse`); the message is still
    counted. A From domain under one with a record (``x@a<NUL>b.gmail.com``) made the intake
    fail on PostgreSQL with a 451."""
    changed: dict[str, Any] = {
        f.name: value.replace("\x00", "\ufffd")
        for f in fields(kept)
        if isinstance(value := getattr(kept, f.name), str) and "\x00" in value
    }
    if any("\x00" in part for signature in kept.dkim for part in signature):
        changed["dkim"] = tuple(
            (d.replace("\x00", "\ufffd"), s.replace("\x00", "\ufffd"), result)
            for d, s, result in kept.dkim
        )
    return replace(kept, **changed) if changed else kept


@dataclass(frozen=True, slots=True)
class AggregateReport:
    """One report for one policy domain and period."""

    policy_domain: str
    #: The reporting period, seconds since the epoch (RFC 9990 §3.1.1.4).
    begin: int
    end: int
    #: This receiver (the Submitter of the Subject, the first part of the file name).
    receiver: str
    report_id: str
    xml: bytes
    #: The ``rua`` URIs of the record quoted.
    rua: tuple[str, ...]
    #: Messages counted.
    messages: int

    @property
    def filename(self) -> str:
        """RFC 9990 §3.5.2: ``receiver!policy-domain!begin!end.xml.gz``."""
        return f"{self.receiver}!{self.policy_domain}!{self.begin}!{self.end}.xml.gz"

    @property
    def subject(self) -> str:
        """RFC 9990 §3.5.2 ``dmarc-subject``."""
        return (
            f"Report Domain: {self.policy_domain} Submitter: {self.receiver} "
            f"Report-ID: <{self.report_id}>"
        )

    def gzipped(self) -> bytes:
        # mtime 0: a resent report is byte for byte the same file.
        return gzip.compress(self.xml, mtime=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reporter:
    """Who we are in the report metadata (RFC 9990 §3.1.1.3)."""

    receiver: str
    org_name: str
    email: str


def build_reports(
    observations: Iterable[DmarcObservation], reporter: Reporter, *, begin: int, end: int
) -> list[AggregateReport]:
    """One report per policy domain of ``observations`` (see the module notes), in domain
    order."""
    by_domain: dict[str, list[DmarcObservation]] = {}
    for o in observations:
        by_domain.setdefault(o.policy_domain, []).append(o)
    reports = []
    for domain in sorted(by_domain):
        rows = by_domain[domain]
        record = parse_record(rows[-1].policy_record)
        if record is None:
            continue
        report_id = f"{end}.{domain}@{reporter.receiver}"
        xml = report_xml(rows, reporter, report_id=report_id, begin=begin, end=end)
        reports.append(
            AggregateReport(
                domain, begin, end, reporter.receiver, report_id, xml, record.rua, len(rows)
            )
        )
    return reports


def _add(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _row_key(o: DmarcObservation) -> tuple[object, ...]:
    return (
        o.source_ip,
        o.disposition,
        o.dkim_aligned,
        o.spf_aligned,
        o.header_from,
        o.envelope_from,
        o.spf_domain,
        o.spf_result,
        o.dkim,
        o.override,
        o.override_comment,
    )


def report_xml(
    observations: Sequence[DmarcObservation],
    reporter: Reporter,
    *,
    report_id: str,
    begin: int,
    end: int,
) -> bytes:
    """The aggregate report document for one policy domain (RFC 9990 §3.1.1, Appendix A)."""
    last = observations[-1]
    record = parse_record(last.policy_record)
    assert record is not None  # build_reports skips unreadable records
    root = ET.Element("feedback", {"xmlns": NAMESPACE})
    _add(root, "version", "1.0")
    meta = _add(root, "report_metadata")
    _add(meta, "org_name", reporter.org_name)
    _add(meta, "email", reporter.email)
    _add(meta, "report_id", report_id)
    dates = _add(meta, "date_range")
    _add(dates, "begin", str(begin))
    _add(dates, "end", str(end))
    _add(meta, "generator", f"Pillarbox {__version__}")
    published = _add(root, "policy_published")
    _add(published, "domain", last.policy_domain)
    _add(published, "p", record.p.value)
    _add(published, "sp", record.sp.value)
    _add(published, "np", record.nonexistent.value)
    _add(published, "adkim", record.adkim)
    _add(published, "aspf", record.aspf)
    _add(published, "discovery_method", last.discovery)
    _add(published, "fo", record.fo)
    _add(published, "testing", "y" if record.t else "n")
    counts = Counter(_row_key(o) for o in observations)
    first: dict[tuple[object, ...], DmarcObservation] = {}
    for o in observations:
        first.setdefault(_row_key(o), o)
    for key, count in counts.items():
        o = first[key]
        item = _add(root, "record")
        row = _add(item, "row")
        _add(row, "source_ip", o.source_ip)
        _add(row, "count", str(count))
        evaluated = _add(row, "policy_evaluated")
        _add(evaluated, "disposition", o.disposition)
        _add(evaluated, "dkim", "pass" if o.dkim_aligned else "fail")
        _add(evaluated, "spf", "pass" if o.spf_aligned else "fail")
        if o.override:
            reason = _add(evaluated, "reason")
            _add(reason, "type", o.override)
            if o.override_comment:
                _add(reason, "comment", o.override_comment)
        identifiers = _add(item, "identifiers")
        _add(identifiers, "header_from", o.header_from)
        _add(identifiers, "envelope_from", o.envelope_from)
        results = _add(item, "auth_results")
        for domain, selector, result in o.dkim:
            dkim = _add(results, "dkim")
            _add(dkim, "domain", domain)
            _add(dkim, "selector", selector)
            _add(dkim, "result", result)
        if o.spf_result:
            spf = _add(results, "spf")
            _add(spf, "domain", o.spf_domain)
            _add(spf, "scope", "mfrom")
            _add(spf, "result", o.spf_result)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def report_message(
    report: AggregateReport, recipients: Sequence[str], *, sender: str, date: datetime
) -> bytes:
    """The message carrying ``report`` (RFC 9990 §3.5.2): a short text part and the gzipped
    XML as an attachment with the prescribed name."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = report.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = f"<{report.report_id}>"
    message.set_content(
        f"DMARC aggregate report for {report.policy_domain} from {report.receiver}: "
        f"{report.messages} messages between {report.begin} and {report.end} "
        "(seconds since the epoch, UTC).\n"
    )
    message.add_attachment(
        report.gzipped(), maintype=GZIP_TYPE[0], subtype=GZIP_TYPE[1], filename=report.filename
    )
    raw: bytes = message.as_bytes()
    return raw
