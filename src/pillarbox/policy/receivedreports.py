"""The DMARC aggregate and TLS-RPT reports other providers send about our domains: found in
mail delivered to our report addresses, read, and kept as summaries for the admin page, the
API and ``pillarbox reports``.

The generated records (:func:`pillarbox.dns.records.required_records`) ask for reports at
``<received_reports.dmarc_local_part>@<domain>`` (DMARC ``rua=mailto:``) and
``<received_reports.tls_local_part>@<domain>`` (``_smtp._tls`` ``rua=mailto:``). Final
delivery (:class:`pillarbox.queue.filtering.LocalDelivery`) hands each copy stored for one of
those addresses to :meth:`Intake.take`, *after* the copy is stored: reading a report never
changes whether or where the message is delivered.

Implementation notes:

- **Where the report is.** RFC 7489 §7.2.1.1 / RFC 9990 §3.5.2: the XML document is a MIME
  part of the message, ``application/gzip`` (also the older ``application/x-gzip``),
  ``application/zip`` (Microsoft and Google send zip), or plain ``text/xml`` /
  ``application/xml``; some reporters label it ``application/octet-stream``, so a part whose
  file name ends in ``.xml``, ``.xml.gz``, ``.gz`` or ``.zip`` is tried too. RFC 8460 §5.3: a
  TLS report is ``application/tlsrpt+gzip`` or ``application/tlsrpt+json``. The whole message
  may be that part (single-part reports are common). At most ``max_parts`` parts are read.
- **What kind.** Decided by the content once decompressed — an XML document is a DMARC
  report, a JSON object a TLS report — not by the address it came to: a reporter that sends
  one to the other address is still read correctly.
- **Bounded decompression.** gzip and zip are inflated with an output limit of
  ``max_size`` bytes (zlib's ``max_length``, a bounded read of the zip member); a report
  expanding past it — a decompression bomb — is refused before it is held in memory, whatever
  sizes the archive's headers claim.
- **Safe XML.** The stdlib expat parser, with any document type declaration refused: without
  a DTD there are no entity declarations, so no entity expansion ("billion laughs") and no
  external entities; an undeclared entity reference is a parse error. (This is what
  ``defusedxml``'s ``forbid_dtd`` does; reports never carry a DTD.) Elements are matched by
  local name, so the RFC 9990 namespace and its absence (RFC 7489 Appendix C) both read.
- **Only our domains.** A report is kept only if its policy domain is one we host or a
  subdomain of one; anyone can send mail to the report address, so a report about someone
  else's domain is logged and not kept. Reports are not authenticated (neither RFC asks
  receivers to): the summaries are what the reporter claims.
- **Never lose mail.** A part that is not a report, is malformed, or too large is logged with
  the reason (``received report refused``) and skipped; the message is delivered as it was.
"""

from __future__ import annotations

import dataclasses
import email
import email.message
import email.policy
import io
import json
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.parsers import expat

from pillarbox.blocking import run_blocking
from pillarbox.config import ReceivedReportSection
from pillarbox.observability.log import Log
from pillarbox.store.interface import Store
from pillarbox.store.types import ReceivedReport, ReceivedReportRow

_log = Log("received-reports")

DMARC = "dmarc"
TLSRPT = "tlsrpt"

#: Content types read as reports (module notes). RFC 9990 §3.5.2, RFC 8460 §5.3, RFC 6713.
GZIP_TYPES = frozenset({"application/gzip", "application/x-gzip", "application/tlsrpt+gzip"})
ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip"})
PLAIN_TYPES = frozenset({"text/xml", "application/xml", "application/tlsrpt+json"})
_SUFFIXES = {".gz": "gzip", ".zip": "zip", ".xml": "plain", ".json": "plain"}
_SURROGATE = re.compile("[\ud800-\udfff]")


class ReportError(Exception):
    """A part that cannot be read as a report; the message says why (logged)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """``[received_reports]``: the most bytes a report decompresses to, the most parts read."""

    max_size: int = 16 * 1024 * 1024
    max_parts: int = 4


@dataclass(frozen=True, slots=True)
class Reading:
    """What one message held: the reports read, and why the other report parts were not."""

    reports: tuple[ReceivedReport, ...]
    refused: tuple[str, ...]


# -- finding the parts ------------------------------------------------------------------------


def _encoding(part: email.message.Message) -> str | None:
    """How ``part`` is compressed: ``gzip``, ``zip``, ``plain``, or None if not a report."""
    ctype = part.get_content_type().lower()
    if ctype in GZIP_TYPES:
        return "gzip"
    if ctype in ZIP_TYPES:
        return "zip"
    if ctype in PLAIN_TYPES:
        return "plain"
    if part.get_content_maintype() == "multipart":
        return None
    name = (part.get_filename() or "").lower()
    for suffix, encoding in _SUFFIXES.items():
        if name.endswith(suffix) and ctype in {"application/octet-stream", "text/plain"}:
            return encoding
    return None


def report_parts(raw: bytes, limits: Limits) -> Iterator[tuple[str, bytes]]:
    """``(encoding, payload)`` of each part of ``raw`` that may be a report, at most
    ``limits.max_parts``."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    found = 0
    for part in message.walk():
        encoding = _encoding(part)
        if encoding is None:
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        yield encoding, payload
        found += 1
        if found >= limits.max_parts:
            return


# -- decompression ----------------------------------------------------------------------------


def inflate(encoding: str, payload: bytes, max_size: int) -> bytes:
    """The document in ``payload``, at most ``max_size`` bytes of it (module notes)."""
    if encoding == "plain":
        if len(payload) > max_size:
            raise ReportError(f"report larger than {max_size} bytes")
        return payload
    if encoding == "gzip":
        # wbits 16 + MAX_WBITS: a gzip wrapper (RFC 1952); max_length bounds the output.
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            document = inflater.decompress(payload, max_size + 1)
        except zlib.error as e:
            raise ReportError(f"bad gzip data: {e}") from None
        if len(document) > max_size:
            raise ReportError(f"report decompresses past {max_size} bytes")
        return document
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
        members = [i for i in archive.infolist() if not i.is_dir()]
        if not members:
            raise ReportError("empty zip archive")
        member = next(
            (i for i in members if i.filename.lower().endswith((".xml", ".json"))), members[0]
        )
        # A bounded read: the member's declared size is the sender's claim, not a limit.
        with archive.open(member) as stream:
            document = stream.read(max_size + 1)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, OSError) as e:
        raise ReportError(f"bad zip data: {e}") from None
    if len(document) > max_size:
        raise ReportError(f"report decompresses past {max_size} bytes")
    return document


# -- XML (DMARC aggregate reports) ------------------------------------------------------------


@dataclass(slots=True)
class Element:
    """A parsed XML element: local name, text, children (only what reports use)."""

    tag: str
    text: str = ""
    children: list[Element] | None = None

    def find(self, *path: str) -> Element | None:
        node: Element | None = self
        for name in path:
            if node is None:
                return None
            node = next((c for c in node.children or () if c.tag == name), None)
        return node

    def findall(self, name: str) -> list[Element]:
        return [c for c in self.children or () if c.tag == name]

    def value(self, *path: str) -> str:
        node = self.find(*path)
        return node.text.strip() if node is not None else ""


def _refuse_dtd(*_: object) -> None:
    raise ReportError("XML with a document type declaration (entities) refused")


def _refuse_entity(*_: object) -> int:
    raise ReportError("XML with an external entity refused")


def parse_xml(document: bytes) -> Element:
    """The element tree of ``document``, with any DTD refused (module notes)."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_entity
    # Each open element with its text's pieces, joined when it ends: expat gives text in
    # pieces (one per line, per character reference), and adding each to a growing string
    # copied it every time — quadratic: 2 MB of "&amp;" took 5 s, 16 MiB (a 20 KB gzip)
    # minutes of a worker thread.
    stack: list[tuple[Element, list[str]]] = []
    roots: list[Element] = []

    def start(name: str, _attrs: dict[str, str]) -> None:
        element = Element(name.rpartition(":")[2], "", [])
        if stack:
            children = stack[-1][0].children
            assert children is not None
            children.append(element)
        else:
            roots.append(element)
        stack.append((element, []))

    def end(_name: str) -> None:
        element, pieces = stack.pop()
        element.text = "".join(pieces)

    def text(data: str) -> None:
        if stack:
            stack[-1][1].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(document, True)
    except expat.ExpatError as e:
        raise ReportError(f"malformed XML: {e}") from None
    return roots[0]


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ReportError(f"{what} is not a number: {text[:40]!r}") from None


def _time(seconds: str, what: str) -> datetime:
    value = _int(seconds, what)
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise ReportError(f"{what} out of range: {value}") from None


def dmarc_report(root: Element, received: datetime) -> ReceivedReport:
    """The summary of an aggregate report (RFC 7489 Appendix C, RFC 9990 Appendix A)."""
    if root.tag != "feedback":
        raise ReportError(f"not a DMARC aggregate report: <{root.tag[:40]}>")
    org = root.value("report_metadata", "org_name")
    report_id = root.value("report_metadata", "report_id")
    domain = root.value("policy_published", "domain").lower().rstrip(".")
    if not org or not report_id or not domain:
        raise ReportError("report without org_name, report_id or policy domain")
    rows = []
    for record in root.findall("record"):
        dkim = record.value("row", "policy_evaluated", "dkim")
        spf = record.value("row", "policy_evaluated", "spf")
        count = _int(record.value("row", "count") or "0", "count")
        if count < 0:
            # A number of messages: a negative one would lower every total it is added to.
            raise ReportError(f"count is negative: {count}")
        details = []
        results = record.find("auth_results")
        for result in results.children or () if results is not None else ():
            kind = result.tag
            if kind not in ("dkim", "spf"):
                continue
            selector = result.value("selector")
            where = result.value("domain") + (f"/{selector}" if selector else "")
            details.append(f"{kind} {where} {result.value('result')}")
        rows.append(
            ReceivedReportRow(
                source=record.value("row", "source_ip"),
                messages=count,
                # RFC 7489 §3: DMARC passes when aligned DKIM or aligned SPF passes.
                failed=0 if "pass" in (dkim, spf) else count,
                disposition=record.value("row", "policy_evaluated", "disposition"),
                dkim=dkim,
                spf=spf,
                header_from=record.value("identifiers", "header_from"),
                detail="; ".join(details),
            )
        )
    published = root.value("policy_published", "p")
    return ReceivedReport(
        kind=DMARC,
        org_name=org,
        report_id=report_id,
        domain=domain,
        begin=_time(root.value("report_metadata", "date_range", "begin"), "begin"),
        end=_time(root.value("report_metadata", "date_range", "end"), "end"),
        received=received,
        contact=root.value("report_metadata", "email"),
        policy=f"p={published}" if published else "",
        rows=tuple(rows),
    )


# -- JSON (TLS reports) -----------------------------------------------------------------------


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ReportError(f"{what} missing or not a string")
    return value


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _rfc3339(value: Any, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(_text(value, what).replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"{what} is not an RFC 3339 date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def tls_report(document: Any, received: datetime) -> ReceivedReport:
    """The summary of a TLS report (RFC 8460 §4.3, the §4.4 example's fields)."""
    if not isinstance(document, dict):
        raise ReportError("TLS report is not a JSON object")
    dates = document.get("date-range")
    if not isinstance(dates, dict):
        raise ReportError("TLS report without date-range")
    policies = document.get("policies")
    if not isinstance(policies, list):
        raise ReportError("TLS report without policies")
    rows = []
    domains = []
    for entry in policies:
        if not isinstance(entry, dict):
            continue
        policy = entry.get("policy") if isinstance(entry.get("policy"), dict) else {}
        summary = entry.get("summary") if isinstance(entry.get("summary"), dict) else {}
        assert isinstance(policy, dict) and isinstance(summary, dict)
        domain = str(policy.get("policy-domain", "")).lower().rstrip(".")
        domains.append(domain)
        ok = _count(summary.get("total-successful-session-count"))
        failed = _count(summary.get("total-failure-session-count"))
        details = []
        found = entry.get("failure-details")
        for d in found if isinstance(found, list) else ():
            if not isinstance(d, dict):
                continue
            where = " ".join(
                str(d[k])
                for k in ("receiving-mx-hostname", "receiving-ip")
                if isinstance(d.get(k), str)
            )
            details.append(
                f"{d.get('result-type', '?')} ×{_count(d.get('failed-session-count'))}"
                + (f" {where}" if where else "")
            )
        rows.append(
            ReceivedReportRow(
                source=f"{policy.get('policy-type', '?')} {domain}".strip(),
                messages=ok + failed,
                failed=failed,
                detail="; ".join(details),
            )
        )
    if not domains or not domains[0]:
        raise ReportError("TLS report without a policy domain")
    contact = document.get("contact-info")
    return ReceivedReport(
        kind=TLSRPT,
        org_name=_text(document.get("organization-name"), "organization-name"),
        report_id=_text(document.get("report-id"), "report-id"),
        domain=domains[0],
        begin=_rfc3339(dates.get("start-datetime"), "start-datetime"),
        end=_rfc3339(dates.get("end-datetime"), "end-datetime"),
        received=received,
        contact=contact if isinstance(contact, str) else "",
        rows=tuple(rows),
    )


# -- one message ------------------------------------------------------------------------------


def read_document(document: bytes, received: datetime) -> ReceivedReport:
    """The report in a decompressed document: XML is DMARC, a JSON object TLS-RPT."""
    start = document.lstrip()[:1]
    if start == b"<":
        return dmarc_report(parse_xml(document), received)
    if start == b"{":
        try:
            parsed = json.loads(document)
        except (ValueError, RecursionError) as e:
            raise ReportError(f"malformed JSON: {str(e)[:80]}") from None
        report = tls_report(parsed, received)
        unkept = _unkeepable(report)
        if unkept:
            # JSON can write NUL (``\u0000``) and lone surrogates (``\ud800``), which no
            # report field means and PostgreSQL's text cannot hold (a store fails on the
            # insert); XML cannot carry either (XML 1.0 §2.2: expat refuses them).
            raise ReportError(f"{unkept} in TLS report")
        return report
    raise ReportError("neither an XML nor a JSON report")


def _unkeepable(report: ReceivedReport) -> str:
    """What a text of ``report`` or of one of its rows holds that a store cannot keep: "NUL
    character", "lone surrogate", or "" for nothing."""
    items: tuple[ReceivedReport | ReceivedReportRow, ...] = (report, *report.rows)
    texts = [
        value
        for item in items
        for value in (getattr(item, f.name) for f in dataclasses.fields(item))
        if isinstance(value, str)
    ]
    if any("\x00" in text for text in texts):
        return "NUL character"
    if any(not text.isascii() and _SURROGATE.search(text) for text in texts):
        return "lone surrogate"
    return ""


def read_message(raw: bytes, received: datetime, limits: Limits) -> Reading:
    """Every report in ``raw`` and why each other report part was refused. Pure; run off
    the event loop (decompression and parsing cost CPU)."""
    reports: list[ReceivedReport] = []
    refused: list[str] = []
    for encoding, payload in report_parts(raw, limits):
        try:
            reports.append(read_document(inflate(encoding, payload, limits.max_size), received))
        except ReportError as e:
            refused.append(str(e))
        except Exception as e:  # a shape no check above foresaw: this part only, logged
            refused.append(f"unreadable report: {type(e).__name__}")
    return Reading(tuple(reports), tuple(refused))


class Intake:
    """Reads the reports in the copies delivered to the report addresses and keeps them."""

    def __init__(
        self,
        store: Store,
        *,
        local_parts: frozenset[str],
        limits: Limits,
        keep: timedelta | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._local_parts = local_parts
        self._limits = limits
        self._keep = keep
        self._clock = clock

    @classmethod
    def of(cls, store: Store, section: ReceivedReportSection) -> Intake | None:
        """From ``[received_reports]``; None when it is off."""
        parts = frozenset(p.lower() for p in (section.dmarc_local_part, section.tls_local_part))
        parts -= {""}
        if not section.enabled or not parts:
            return None
        return cls(
            store,
            local_parts=parts,
            limits=Limits(max_size=section.max_size, max_parts=section.max_parts),
            keep=timedelta(days=section.keep_days) if section.keep_days else None,
        )

    def wants(self, local_part: str) -> bool:
        """Whether mail to ``local_part`` (at a hosted domain) is read for reports."""
        return local_part.lower() in self._local_parts

    async def take(self, rcpt: str, raw: bytes) -> list[ReceivedReport]:
        """Read and keep the reports in ``raw``, delivered to ``rcpt``; the ones newly kept.
        Never raises for what the message holds: refusals are logged."""
        try:
            reading = await run_blocking(read_message, raw, self._clock(), self._limits)
        except Exception as e:  # a message the MIME parser chokes on: still delivered
            _log.warning("received report refused", rcpt=rcpt, reason=f"unreadable: {e!r}"[:200])
            return []
        for reason in reading.refused:
            _log.warning("received report refused", rcpt=rcpt, reason=reason)
        if not reading.reports and not reading.refused:
            _log.info("no report in message to report address", rcpt=rcpt)
        kept = []
        oldest = self._clock() - self._keep if self._keep is not None else None
        for report in reading.reports:
            if oldest is not None and report.end < oldest:
                _log.warning(
                    "received report refused",
                    rcpt=rcpt,
                    reason="older than received_reports.keep_days",
                    report_id=report.report_id[:200],
                )
                continue
            if not await self._hosted(report.domain):
                _log.warning(
                    "received report refused",
                    rcpt=rcpt,
                    reason="not about a hosted domain",
                    domain=report.domain[:100],
                )
                continue
            if await self._store.add_received_report(report):
                kept.append(report)
                _log.info(
                    "received report kept",
                    kind=report.kind,
                    org=report.org_name[:100],
                    report_id=report.report_id[:200],
                    domain=report.domain,
                    messages=report.messages,
                    failed=report.failed,
                )
            else:
                _log.info(
                    "received report already kept",
                    kind=report.kind,
                    org=report.org_name[:100],
                    report_id=report.report_id[:200],
                )
        if kept and self._keep is not None:
            # Retention runs here, where reports arrive: a few a day per reporter, an indexed
            # delete each; no periodic job needed.
            assert oldest is not None
            await self._store.delete_received_reports(oldest)
        return kept

    async def _hosted(self, domain: str) -> bool:
        """Whether ``domain`` or one of its parents is a hosted domain."""
        labels = domain.split(".")
        for i in range(len(labels) - 1):
            if await self._store.get_domain(".".join(labels[i:])) is not None:
                return True
        return False


# -- showing them -----------------------------------------------------------------------------

#: The period the admin page, the API and the CLI show by default.
DEFAULT_DAYS = 30


@dataclass(frozen=True, slots=True)
class SourceTotal:
    """The messages one source sent under a domain, summed over reports: for DMARC a source
    IP, for TLS-RPT a policy (type and domain)."""

    kind: str
    source: str
    messages: int
    failed: int
    reports: int

    @property
    def passed(self) -> int:
        return self.messages - self.failed


def by_source(reports: Iterable[ReceivedReport]) -> list[SourceTotal]:
    """Totals per (kind, source), most failures first, then most messages."""
    totals: dict[tuple[str, str], list[int]] = {}
    for report in reports:
        seen = set()
        for row in report.rows:
            entry = totals.setdefault((report.kind, row.source), [0, 0, 0])
            entry[0] += row.messages
            entry[1] += row.failed
            if row.source not in seen:
                entry[2] += 1
                seen.add(row.source)
    found = [SourceTotal(k, s, m, f, n) for (k, s), (m, f, n) in totals.items()]
    return sorted(found, key=lambda t: (-t.failed, -t.messages, t.kind, t.source))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_json(report: ReceivedReport) -> dict[str, object]:
    """One report as the API and ``--json`` give it."""
    return {
        "kind": report.kind,
        "organization": report.org_name,
        "report_id": report.report_id,
        "domain": report.domain,
        "begin": _iso(report.begin),
        "end": _iso(report.end),
        "received": _iso(report.received),
        "contact": report.contact,
        "policy": report.policy,
        "messages": report.messages,
        "failed": report.failed,
        "rows": [
            {
                "source": r.source,
                "messages": r.messages,
                "failed": r.failed,
                "disposition": r.disposition,
                "dkim": r.dkim,
                "spf": r.spf,
                "header_from": r.header_from,
                "detail": r.detail,
            }
            for r in report.rows
        ],
    }
