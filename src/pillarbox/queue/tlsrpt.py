"""SMTP TLS reporting (RFC 8460) without I/O: the ``_smtp._tls`` record, how one delivery
session's TLS outcome is classified, and the daily aggregate report (JSON, file name, message).

The runner (:mod:`pillarbox.queue.runner`) records each session's outcome in the store as a
:class:`~pillarbox.store.types.TlsSessionResult`; the report job
(:mod:`pillarbox.queue.tlsreporting`) turns a day's results into reports with
:func:`build_reports` and queues :func:`report_message` for each.

Implementation notes:

- **Record** (§3): of the TXT records at ``_smtp._tls.<domain>``, only those beginning with
  ``v=TLSRPTv1;`` count; not exactly one is "no TLS-RPT". ``rua`` is required (a
  comma-separated list of URIs); unknown fields are ignored when well-formed.
- **Results** (§4.3): a session counts as successful when it negotiated TLS as its policy
  required (any TLS without a policy); a failure carries its §4.3 result type and the
  error text as ``failure-reason-code``. Transient failures (no connection, no greeting) are
  not reported (§4.3.4). Mail sent with ``TLS-Required: No`` (RFC 8689 §4.2.2; the reports
  themselves, §5.3 "MUST NOT honor MTA-STS or DANE TLSA failures") is not counted (§3, mailto:
  "SHOULD NOT include this SMTP session in the next report").
- **Report** (§4.4): one per policy domain and period, one ``policies`` entry per distinct
  (policy type, policy strings, MX patterns), ``failure-details`` grouped by result type,
  addresses, MX host and reason. The JSON is gzipped (§5.2, ``mtime`` 0 so that a resent
  report is the same file), named per §5.1 and sent as ``multipart/report;
  report-type="tlsrpt"`` with the ``TLS-Report-Domain``/``TLS-Report-Submitter`` fields and the
  §5.3 subject. The report id is derived from the period and the domains, so a report sent
  twice (a crash between queueing and forgetting) has the same id and can be recognised.
"""

from __future__ import annotations

import enum
import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from pillarbox.queue.mtasts import Policy
from pillarbox.store.types import TlsSessionResult

#: RFC 8460 §6.5.
GZIP_MEDIA_TYPE = ("application", "tlsrpt+gzip")


class PolicyType(enum.Enum):
    """§4.4 ``policy-type``."""

    STS = "sts"
    TLSA = "tlsa"
    NONE = "no-policy-found"


class ResultType(enum.Enum):
    """§4.3 result types (those this implementation reports)."""

    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"  # §4.3.1
    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
    VALIDATION_FAILURE = "validation-failure"
    TLSA_INVALID = "tlsa-invalid"  # §4.3.2.1
    DNSSEC_INVALID = "dnssec-invalid"
    STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"  # §4.3.2.2
    STS_POLICY_INVALID = "sts-policy-invalid"
    STS_WEBPKI_INVALID = "sts-webpki-invalid"


# -- the record (§3) ------------------------------------------------------------------------------

_WSP = "[ \t]"
_VERSION = re.compile(rf"v=TLSRPTv1{_WSP}*;")
_DELIM = re.compile(rf"{_WSP}*;{_WSP}*")
_EXTENSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}=[\x21-\x3a\x3c\x3e-\x7e]+")
_URI_SPLIT = re.compile(rf"{_WSP}*,{_WSP}*")


@dataclass(frozen=True, slots=True)
class TlsRptRecord:
    """The ``_smtp._tls`` TXT record: where reports go."""

    rua: tuple[str, ...]


def parse_record(texts: Sequence[bytes]) -> TlsRptRecord | None:
    """The domain's TLS-RPT record from all TXT records at ``_smtp._tls.<domain>`` (strings
    already joined, §3); None when there is no single valid one."""
    candidates = [t for t in texts if _VERSION.match(t.decode("latin-1"))]
    if len(candidates) != 1:
        return None
    try:
        text = candidates[0].decode("ascii")
    except UnicodeDecodeError:
        return None
    fields = _DELIM.split(text)
    if fields[-1] == "":
        fields.pop()
    rua: tuple[str, ...] | None = None
    for item in fields[1:]:
        if item.startswith("rua="):
            uris = tuple(u for u in _URI_SPLIT.split(item[4:]) if u)
            if not uris or any(not u.isascii() or " " in u for u in uris):
                return None
            rua = rua or uris
        elif not _EXTENSION.fullmatch(item):
            return None
    return TlsRptRecord(rua) if rua else None


# -- classifying outcomes (§4.3) ------------------------------------------------------------------

#: OpenSSL's verification messages (as the ``ssl`` module reports them) → §4.3.1 types.
_CERTIFICATE_ERRORS = (
    ("hostname mismatch", ResultType.CERTIFICATE_HOST_MISMATCH),
    ("ip address mismatch", ResultType.CERTIFICATE_HOST_MISMATCH),
    ("certificate has expired", ResultType.CERTIFICATE_EXPIRED),
    ("certificate is not yet valid", ResultType.CERTIFICATE_EXPIRED),
    ("self-signed certificate", ResultType.CERTIFICATE_NOT_TRUSTED),
    ("self signed certificate", ResultType.CERTIFICATE_NOT_TRUSTED),
    ("unable to get local issuer certificate", ResultType.CERTIFICATE_NOT_TRUSTED),
    ("unable to get issuer certificate", ResultType.CERTIFICATE_NOT_TRUSTED),
    ("unable to verify the first certificate", ResultType.CERTIFICATE_NOT_TRUSTED),
    ("certificate chain too long", ResultType.CERTIFICATE_NOT_TRUSTED),
    ("invalid ca certificate", ResultType.CERTIFICATE_NOT_TRUSTED),
)


def certificate_failure(text: str) -> ResultType:
    """The §4.3.1 type of a failed PKIX handshake, from its error text; ``validation-failure``
    (§4.3.3) when no category fits."""
    lowered = text.lower()
    for marker, result in _CERTIFICATE_ERRORS:
        if marker in lowered:
            return result
    return ResultType.VALIDATION_FAILURE


def sts_policy_strings(policy: Policy) -> tuple[str, ...]:
    """§4.5: the MTA-STS policy as its lines, each ``mx`` on a line of its own."""
    return (
        "version: STSv1",
        f"mode: {policy.mode.value}",
        *(f"mx: {pattern}" for pattern in policy.mx),
        f"max_age: {policy.max_age}",
    )


# -- the report (§4.4, §5) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitter:
    """Who we are in reports: §4.4 ``organization-name`` and ``contact-info``, and the sending
    MTA's domain (§5.1 ``sender``, §5.3 ``TLS-Report-Submitter``)."""

    organization: str
    contact: str
    domain: str


@dataclass(frozen=True, slots=True)
class TlsReport:
    policy_domain: str
    #: Seconds since the epoch (§5.1 timestamps), the period reported.
    begin: int
    end: int
    submitter: str
    report_id: str
    #: The JSON document (§4.4), UTF-8.
    document: bytes
    sessions: int
    failures: int

    @property
    def filename(self) -> str:
        """§5.1: ``sender!policy-domain!begin!end.json.gz``."""
        return f"{self.submitter}!{self.policy_domain}!{self.begin}!{self.end}.json.gz"

    @property
    def subject(self) -> str:
        """§5.3 ``tlsrpt-subject``."""
        return (
            f"Report Domain: {self.policy_domain} Submitter: {self.submitter} "
            f"Report-ID: <{self.report_id}>"
        )

    def gzipped(self) -> bytes:
        return gzip.compress(self.document, mtime=0)

    @classmethod
    def from_gzipped(cls, body: bytes, policy_domain: str, submitter: str) -> TlsReport:
        """The report :meth:`gzipped` made, read back from its §4.4 document (a report kept
        in the store to be sent later; ValueError or KeyError if it is not one of ours)."""
        text = gzip.decompress(body)
        document = json.loads(text)
        dates = document["date-range"]
        totals = [entry["summary"] for entry in document["policies"]]
        failures = sum(t["total-failure-session-count"] for t in totals)
        successes = sum(t["total-successful-session-count"] for t in totals)
        return cls(
            policy_domain,
            _seconds(dates["start-datetime"]),
            _seconds(dates["end-datetime"]),
            submitter,
            document["report-id"],
            text,
            successes + failures,
            failures,
        )


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(rfc3339: str) -> int:
    return int(datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def _details(failures: Iterable[TlsSessionResult]) -> list[dict[str, object]]:
    counts = Counter(
        (f.result_type, f.sending_ip, f.receiving_mx, f.receiving_ip, f.failure_reason)
        for f in failures
    )
    details: list[dict[str, object]] = []
    for (result_type, sending_ip, mx, receiving_ip, reason), count in sorted(counts.items()):
        entry: dict[str, object] = {"result-type": result_type}
        if sending_ip:
            entry["sending-mta-ip"] = sending_ip
        if mx:  # none for a policy that could not be fetched (§4.3.2.2)
            entry["receiving-mx-hostname"] = mx
        if receiving_ip:
            entry["receiving-ip"] = receiving_ip
        entry["failed-session-count"] = count
        if reason:
            entry["failure-reason-code"] = reason
        details.append(entry)
    return details


def _policies(results: Sequence[TlsSessionResult], domain: str) -> list[dict[str, object]]:
    groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[TlsSessionResult]] = {}
    for r in results:
        groups.setdefault((r.policy_type, r.policy_strings, r.mx_patterns), []).append(r)
    entries: list[dict[str, object]] = []
    for (policy_type, strings, patterns), members in groups.items():
        failures = [m for m in members if m.result_type]
        policy: dict[str, object] = {"policy-type": policy_type}
        if strings:
            policy["policy-string"] = list(strings)
        policy["policy-domain"] = domain
        if patterns:
            policy["mx-host"] = list(patterns)
        entry: dict[str, object] = {
            "policy": policy,
            "summary": {
                "total-successful-session-count": len(members) - len(failures),
                "total-failure-session-count": len(failures),
            },
        }
        if failures:
            entry["failure-details"] = _details(failures)
        entries.append(entry)
    return entries


def build_reports(
    results: Iterable[TlsSessionResult], submitter: Submitter, *, begin: int, end: int
) -> list[TlsReport]:
    """One report per policy domain of ``results`` (those of the period ``begin``–``end``)."""
    by_domain: dict[str, list[TlsSessionResult]] = {}
    for r in results:
        by_domain.setdefault(r.policy_domain, []).append(r)
    reports = []
    for domain, members in sorted(by_domain.items()):
        report_id = f"{begin}.{end}.{domain}@{submitter.domain}"
        document = {
            "organization-name": submitter.organization,
            "date-range": {"start-datetime": _rfc3339(begin), "end-datetime": _rfc3339(end)},
            "contact-info": submitter.contact,
            "report-id": report_id,
            "policies": _policies(members, domain),
        }
        failures = sum(1 for m in members if m.result_type)
        reports.append(
            TlsReport(
                domain,
                begin,
                end,
                submitter.domain,
                report_id,
                json.dumps(document, indent=1).encode(),
                len(members),
                failures,
            )
        )
    return reports


def report_message(
    report: TlsReport, recipients: Sequence[str], *, sender: str, date: datetime
) -> bytes:
    """The message carrying ``report`` (§5.3): a text part and the gzipped JSON, in a
    ``multipart/report; report-type="tlsrpt"``; ``TLS-Required: No`` (RFC 8689 §5) so that our
    own queue delivers it even where the domain's TLS is what fails (§5.3)."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = report.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = f"<{report.report_id}>"
    message["TLS-Report-Domain"] = report.policy_domain
    message["TLS-Report-Submitter"] = report.submitter
    message["TLS-Required"] = "No"
    message.set_content(
        f"This is an aggregate TLS report (RFC 8460) for {report.policy_domain} from"
        f" {report.submitter}: {report.sessions} sessions, {report.failures} failed, between"
        f" {_rfc3339(report.begin)} and {_rfc3339(report.end)}.\n"
    )
    message.add_attachment(
        report.gzipped(),
        maintype=GZIP_MEDIA_TYPE[0],
        subtype=GZIP_MEDIA_TYPE[1],
        filename=report.filename,
    )
    # add_attachment made it multipart/mixed; §5.3 wants multipart/report (RFC 6522).
    message.set_type("multipart/report")
    message.set_param("report-type", "tlsrpt")
    raw: bytes = message.as_bytes()
    return raw


def tls_optional(header_fields: Iterable[tuple[str, bytes]]) -> bool:
    """RFC 8689 §5: the message carries ``TLS-Required: No`` (recipient TLS policies are not to
    stop it, §4.2.2); ``header_fields`` as (lower-case name, value)."""
    return any(
        key == "tls-required" and value.strip().lower() == b"no" for key, value in header_fields
    )
