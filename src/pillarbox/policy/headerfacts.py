"""Header facts: named yes/no findings about a message's header, each a scored spam reason.

Mail-server practice (SpamAssassin's header rules, Mox's reputation) knows header traits that
separate legitimate bulk mail from spam where the words do not: is the envelope sender, the
Message-ID host, a relay of the From domain's organisation; does the Received chain show named
relays or dynamic, unnamed ones; is the Date sane; is the MIME shape the one mailers write.
Each fact that holds becomes a :class:`~.verdict.Reason` named after it (``MSGID_ALIGNED``),
worth the points fitted offline (docs/spam-filter.md, "Header evidence";
``python bench/spam_cv.py weights``).

Implementation notes:

- Pure: the header bytes and the From address in, a set of names out. No DNS, no history, no
  clock: the Date windows compare with the newest Received field's timestamp, not with now.
- The definitions are the bench's, on which :data:`POINTS` was fitted; changing one (even
  fixing a known sketchiness, such as qmail's ``from unknown``) invalidates the fitted points.
  A fact that holds is evidence only: its positive points may send a message to Junk but never
  carry it to refusal (``may_refuse=False``, see :func:`.verdict.decide`).
- The facts read the header as received, before our own trace fields (``InboundPolicy.assess``
  gets it that way), except that at the MX the envelope sender stands for the Return-Path field
  final delivery adds (:func:`message_facts`). The newest Received field is then the sending
  system's, one hop short of what the training files (collected mailboxes) showed: the
  client's own HELO and address are not among the Received facts there.
- Organisational domains are DMARC's (public suffix list, :func:`.dmarc.organizational_domain`),
  so "aligned" here means what relaxed alignment means there (RFC 7489 §3.2), without the
  verification.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pillarbox.mail.headers import ScannedFields, header_fields, raw_text
from pillarbox.mail.model import MessageInfo
from pillarbox.policy.dmarc import organizational_domain
from pillarbox.policy.verdict import Reason

#: Every fact, by group (the bench's ``--facts`` selects groups by these name prefixes).
ALIGNMENT_FACTS = frozenset(
    {
        "RP_NONE",
        "RP_ALIGNED",
        "RP_VERP_ALIGNED",
        "RP_OTHER",
        "MSGID_NONE",
        "MSGID_LOCAL_HOST",
        "MSGID_ALIGNED",
        "MSGID_OTHER",
        "REPLYTO_EMPTY",
        "REPLYTO_OTHER",
        "SENDER_ALIGNED",
        "LIST_UNSUBSCRIBE",
        "LIST_ID",
        "PRECEDENCE_BULK",
    }
)
RECEIVED_FACTS = frozenset(
    {
        "RCVD_NONE",
        "RCVD_DYNAMIC_NAME",
        "RCVD_NO_RDNS",
        "RCVD_HELO_IP",
        "RCVD_HELO_NO_DOT",
        "RCVD_HELO_MISMATCH",
        "RCVD_FORGED",
        "RCVD_FROM_ORG",
        "RCVD_NOT_FROM_ORG",
    }
)
DATE_FACTS = frozenset({"DATE_NONE", "DATE_BAD_ZONE", "DATE_UNPARSED", "DATE_FUTURE", "DATE_PAST"})
SHAPE_FACTS = frozenset(
    {
        "MIME_HTML_ONLY",
        "MIME_NO_VERSION",
        "MIME_ODD_BOUNDARY",
        "TO_NONE",
        "TO_UNDISCLOSED",
        "TO_MANY",
        "MAILER_NONE",
        "MAILER_BULK",
        "MAILER_OUTLOOK_NO_MIMEOLE",
        "PRIORITY_HIGH",
        "FROM_NO_NAME",
        "FROM_LOCAL_DIGITS",
        "FROM_NONE",
        "SUBJECT_NONE",
    }
)
FACTS = ALIGNMENT_FACTS | RECEIVED_FACTS | DATE_FACTS | SHAPE_FACTS

#: Points of each fact on the verdict's scale, fitted on the whole training corpus by
#: ``python bench/spam_cv.py weights --l2 0.1`` (logistic regression over the out-of-fold
#: verdict score and the facts; verdict-score weight 5.576 per 10 points, intercept −2.72
#: points, not added), printed in this form by that command. Refitted in session 7 on facts
#: read from the whole header, as here (the first fit read 8 KB, which gave one long-headed
#: spam a false DATE_NONE and that fact +2.98 points; it now has none).
POINTS: Mapping[str, float] = MappingProxyType(
    {
        "DATE_BAD_ZONE": 0.41,
        "DATE_FUTURE": 0.72,
        "DATE_NONE": 0.0,
        "DATE_PAST": 3.96,
        "DATE_UNPARSED": 0.02,
        "FROM_LOCAL_DIGITS": 1.81,
        "FROM_NONE": 0.22,
        "FROM_NO_NAME": -0.28,
        "LIST_ID": -2.44,
        "LIST_UNSUBSCRIBE": -0.13,
        "MAILER_BULK": -3.34,
        "MAILER_NONE": 2.16,
        "MAILER_OUTLOOK_NO_MIMEOLE": 6.09,
        "MIME_HTML_ONLY": 3.3,
        "MIME_NO_VERSION": 1.99,
        "MIME_ODD_BOUNDARY": 0.53,
        "MSGID_ALIGNED": -3.13,
        "MSGID_LOCAL_HOST": 0.75,
        "MSGID_NONE": 2.34,
        "MSGID_OTHER": 0.04,
        "PRECEDENCE_BULK": 6.16,
        "PRIORITY_HIGH": 5.47,
        "RCVD_DYNAMIC_NAME": 0.74,
        "RCVD_FORGED": -1.11,
        "RCVD_FROM_ORG": -0.39,
        "RCVD_HELO_IP": -1.52,
        "RCVD_HELO_MISMATCH": 0.39,
        "RCVD_HELO_NO_DOT": -0.02,
        "RCVD_NONE": -0.79,
        "RCVD_NOT_FROM_ORG": 0.18,
        "RCVD_NO_RDNS": 3.12,
        "REPLYTO_EMPTY": 2.19,
        "REPLYTO_OTHER": -2.47,
        "RP_ALIGNED": 0.15,
        "RP_NONE": 1.44,
        "RP_OTHER": -1.59,
        "RP_VERP_ALIGNED": -2.24,
        "SENDER_ALIGNED": -1.78,
        "SUBJECT_NONE": -1.82,
        "TO_MANY": 5.09,
        "TO_NONE": 2.07,
        "TO_UNDISCLOSED": 3.43,
    }
)

#: Each fact in words, for readers who do not know the filter's vocabulary (the web UI).
MEANINGS: Mapping[str, str] = MappingProxyType(
    {
        "RP_NONE": "no envelope sender",
        "RP_ALIGNED": "envelope sender in the From domain",
        "RP_VERP_ALIGNED": "bounce-handling envelope sender in the From domain",
        "RP_OTHER": "envelope sender in another domain",
        "MSGID_NONE": "no Message-ID",
        "MSGID_LOCAL_HOST": "Message-ID from an unnamed host",
        "MSGID_ALIGNED": "Message-ID from the From domain",
        "MSGID_OTHER": "Message-ID from another domain",
        "REPLYTO_EMPTY": "Reply-To without an address",
        "REPLYTO_OTHER": "replies go to another domain",
        "SENDER_ALIGNED": "Sender or Errors-To in the From domain",
        "LIST_UNSUBSCRIBE": "has an unsubscribe link",
        "LIST_ID": "sent through a mailing list",
        "PRECEDENCE_BULK": "marked as bulk mail",
        "RCVD_NONE": "no relay recorded",
        "RCVD_DYNAMIC_NAME": "relayed from a dial-up or home connection",
        "RCVD_NO_RDNS": "relayed from an address without a name",
        "RCVD_HELO_IP": "relay greeted with a bare address",
        "RCVD_HELO_NO_DOT": "relay greeted with an incomplete name",
        "RCVD_HELO_MISMATCH": "relay greeted with another domain's name",
        "RCVD_FORGED": "a relay flagged its sender as forged",
        "RCVD_FROM_ORG": "relayed by the From domain",
        "RCVD_NOT_FROM_ORG": "not relayed by the From domain",
        "DATE_NONE": "no date",
        "DATE_BAD_ZONE": "date without a numeric time zone",
        "DATE_UNPARSED": "unreadable date",
        "DATE_FUTURE": "dated in the future",
        "DATE_PAST": "dated days before it was sent",
        "MIME_HTML_ONLY": "HTML without a text version",
        "MIME_NO_VERSION": "MIME content without MIME-Version",
        "MIME_ODD_BOUNDARY": "unusual MIME boundary",
        "TO_NONE": "no To",
        "TO_UNDISCLOSED": "undisclosed recipients",
        "TO_MANY": "many recipients in To",
        "MAILER_NONE": "no mail program named",
        "MAILER_BULK": "sent by a list or bulk mail program",
        "MAILER_OUTLOOK_NO_MIMEOLE": "claims to be Outlook, lacks its fields",
        "PRIORITY_HIGH": "marked urgent",
        "FROM_NO_NAME": "From without a name",
        "FROM_LOCAL_DIGITS": "From address ending in digits",
        "FROM_NONE": "no From address",
        "SUBJECT_NONE": "no subject",
    }
)

#: A hostile header cannot make the scan build more field records than this.
MAX_FIELDS = 500

# A match starts only at the beginning of a run of address characters (the leftmost match
# always does: the local part extends left over the run), not at every position inside it,
# each try running to the run's end: quadratic in a long field.
_ADDRESS = re.compile(r"(?<![\w.+=#%!-])[\w.+=#%!-]+@((?:[\w-]+\.)+[a-z]{2,})", re.I)
#: The ``from`` clause that opens a Received field (RFC 5321 §4.4 ``From-domain``), with the
#: comment MTAs put after it (TCP-info: reverse name, address, or qmail's HELO).
_FROM_CLAUSE = re.compile(r"^\s*from\s+(\S+)(?:\s+\(([^)]*)\))?", re.I)
_IP = re.compile(r"\[?(\d{1,3}(?:\.\d{1,3}){3})\]?")
_NAME = re.compile(r"^(?:[a-z0-9-]+\.)+[a-z]{2,}$", re.I)
#: Names ISPs give to dial-up, DSL and cable clients (SpamAssassin's RCVD_*_DYNAMIC family):
#: the IP's digits in the name, or a pool word.
_DYNAMIC = re.compile(
    r"\d{1,3}[-.x]\d{1,3}[-.x]\d{1,3}|\b(?:dsl|adsl|dial|dialup|dhcp|dyn|dynamic|ppp|pool|cable"
    r"|client|modem|user|host)\d*[-.]",
    re.I,
)
#: Local parts of the envelope senders list managers and bulk mailers use to tell bounces apart
#: (VERP, bounce handling).
_VERP = re.compile(r"bounce|return|owner-|-request|errors|=|\d{4,}|#", re.I)
#: Mailers of legitimate bulk senders and list managers.
_BULK_MAILER = re.compile(
    r"listmanager|lyris|powermta|accucast|mailman|ezmlm|majordomo|listserv|strongmail"
    r"|messagemedia|exacttarget|digital impact|sparklist|javamail",
    re.I,
)
_OUTLOOK = re.compile(r"outlook", re.I)
#: A numeric zone (RFC 5322 §3.3 ``zone``); the obsolete names (§4.3) do not count.
_NUMERIC_ZONE = re.compile(r"[+-]\d{4}\b")
#: The boundaries mailers generate start with "-" or "=_" (RFC 2046 §5.1.1 allows any).
_USUAL_BOUNDARY = re.compile(r'boundary="?(?:-|=_)')
_DIGITS_TAIL = re.compile(r"\d{3,}$")
#: A Date more than this after the newest Received timestamp is in the future, forged or
#: badly clocked (SpamAssassin's DATE_IN_FUTURE_12_24 starts here)…
_FUTURE = 12 * 3600
#: …and more than this before it, in the past (DATE_IN_PAST_96_XX).
_PAST = 96 * 3600
_PRIVATE_PREFIXES = ("127.", "10.", "192.168.")


@dataclass(frozen=True, slots=True)
class Header:
    """What the facts read of a header: each field's first value, and the Received fields."""

    #: Lower-case field name → its first value, unfolded (RFC 5322 §2.2.3).
    first: Mapping[str, str]
    #: Every Received field's unfolded value, newest first (RFC 5321 §4.4 prepends them).
    received: tuple[str, ...]


def read_header(raw: bytes, end: int, scanned: ScannedFields | None = None) -> Header:
    """The :class:`Header` of the header block in ``raw[:end]`` (it stops at the empty line);
    ``scanned``: the parse's read of it, if kept."""
    first: dict[str, str] = {}
    received: list[str] = []
    for field in header_fields(raw, end, MAX_FIELDS, scanned):
        value = raw_text(field.value)
        if field.key == "received":
            received.append(value)
        else:
            first.setdefault(field.key, value)
    return Header(first, tuple(received))


def message_facts(
    raw: bytes,
    info: MessageInfo,
    envelope_sender: str | None = None,
    scanned: ScannedFields | None = None,
) -> frozenset[str]:
    """The facts that hold for the parsed message ``raw``. ``envelope_sender`` is the MAIL
    FROM of a message arriving over SMTP: the Return-Path its final delivery will record (RFC
    5321 §4.4), which is what the training files' Return-Path was, and it replaces any the
    sender wrote (§4.4: a sending system SHOULD NOT write one). None: ``raw`` comes from a file
    and its Return-Path field is read. ``scanned``: the parse's read of the header, if kept."""
    header = read_header(raw, info.header_end, scanned)
    if envelope_sender is None:
        return facts(header, info.from_addr.lower())
    first = {**header.first, "return-path": f"<{envelope_sender}>"}
    # Every training file carries at least its collecting MX's hop; at our MX that hop is ours
    # and not yet written, so "no Received field" is what any direct sender shows, not the
    # rarity it was fitted on.
    return facts(Header(first, header.received), info.from_addr.lower()) - {"RCVD_NONE"}


def facts(header: Header, from_address: str) -> frozenset[str]:
    """The facts that hold for ``header``, whose (first) From address is ``from_address``."""
    received = [" ".join(value.split()) for value in header.received]
    own = _org(from_address.rpartition("@")[2]) if "@" in from_address else ""
    out: set[str] = set()
    _sender_alignment(header.first, own, out)
    _received(received, own, out)
    _date(header.first, received, out)
    _shape(header.first, own, out)
    return frozenset(out)


def header_reasons(found: frozenset[str], points: Mapping[str, float]) -> list[Reason]:
    """A reason per fact found that is worth points, in name order. None of them may carry a
    message to refusal: they were fitted to tell Junk from INBOX, and a header trait alone
    (``PRECEDENCE_BULK``) is not what a 5xx should be sent for."""
    return [
        Reason(name, points[name], may_refuse=False)
        for name in sorted(found)
        if points.get(name, 0.0)
    ]


def _org(domain: str) -> str:
    domain = domain.strip(" .<>\t\r\n\"'").lower()
    return organizational_domain(domain) or domain


def _domain(value: str) -> str:
    """The organisational domain of the first address in ``value``, or ""."""
    m = _ADDRESS.search(value)
    return _org(m.group(1)) if m else ""


def _sender_alignment(fields: Mapping[str, str], own: str, out: set[str]) -> None:
    # Return-Path: the envelope sender, as the final delivery recorded it (RFC 5321 §4.4).
    rp = fields.get("return-path")
    if rp is None or "@" not in rp:
        out.add("RP_NONE")
    elif own and _domain(rp) == own:
        out.add("RP_ALIGNED")
        if _VERP.search(rp.partition("@")[0]):
            out.add("RP_VERP_ALIGNED")
    else:
        out.add("RP_OTHER")
    # RFC 5322 §3.6.4: the right side of a msg-id is usually the generating host.
    mid = fields.get("message-id", "")
    if "@" not in mid:
        out.add("MSGID_NONE")
    else:
        host = mid.rpartition("@")[2].strip(" <>\t")
        if "." not in host or host.startswith("localhost"):
            out.add("MSGID_LOCAL_HOST")
        elif own and _org(host) == own:
            out.add("MSGID_ALIGNED")
        else:
            out.add("MSGID_OTHER")
    reply = fields.get("reply-to")
    if reply is not None:
        if "@" not in reply:
            out.add("REPLYTO_EMPTY")
        elif own and _domain(reply) != own:
            out.add("REPLYTO_OTHER")
    for key in ("sender", "errors-to"):
        value = fields.get(key)
        if value and own and _domain(value) == own:
            out.add("SENDER_ALIGNED")
    if "list-unsubscribe" in fields:  # RFC 2369 §3.2
        out.add("LIST_UNSUBSCRIBE")
    if "list-id" in fields or "mailing-list" in fields:  # RFC 2919
        out.add("LIST_ID")
    # Precedence was never standardised; bulk, list and junk are what list servers write.
    if fields.get("precedence", "").strip().lower() in ("bulk", "list", "junk"):
        out.add("PRECEDENCE_BULK")


def _received_hops(received: list[str]) -> list[tuple[str, str, str]]:
    """(HELO, reverse name, IP) of each Received field's ``from`` clause, as the common MTAs
    write it: sendmail/Postfix ``from helo (name [ip])``, qmail ``from name (HELO helo) (ip)``.
    A sketch, not RFC 5321 §4.4's grammar: TCP-info is free text in practice."""
    hops = []
    for value in received:
        m = _FROM_CLAUSE.match(value)
        if m is None:
            continue
        helo, paren = m.group(1).lower(), (m.group(2) or "").lower()
        ip_match = _IP.search(paren) or _IP.search(value[: m.end() + 40])
        ip = ip_match.group(1) if ip_match else ""
        name = ""
        for word in paren.replace("[", " ").split():
            if _NAME.match(word) and word != "helo":
                name = word
                break
        if "helo " in paren:
            name, helo = helo, paren.split("helo ", 1)[1].split()[0].strip(")")
        hops.append((helo, name, ip))
    return hops


def _received(received: list[str], own: str, out: set[str]) -> None:
    if not received:
        out.add("RCVD_NONE")
    orgs = set()
    for helo, name, ip in _received_hops(received):
        orgs.add(_org(helo))
        if name:
            orgs.add(_org(name))
            if _DYNAMIC.search(name.split(".", 1)[0] + "."):
                out.add("RCVD_DYNAMIC_NAME")
        elif ip and not ip.startswith(_PRIVATE_PREFIXES):
            out.add("RCVD_NO_RDNS")
        if _IP.fullmatch(helo):
            out.add("RCVD_HELO_IP")
        elif "." not in helo and helo != "localhost":
            # RFC 5321 §4.1.1.1: the HELO argument is a fully-qualified domain name.
            out.add("RCVD_HELO_NO_DOT")
        if name and helo and _NAME.match(helo) and _org(helo) != _org(name):
            out.add("RCVD_HELO_MISMATCH")
    if any("may be forged" in r or "unverified" in r for r in received):
        out.add("RCVD_FORGED")  # sendmail's and others' own verdicts on the HELO
    if own:
        out.add("RCVD_FROM_ORG" if own in orgs else "RCVD_NOT_FROM_ORG")


def _epoch(date: str) -> float | None:
    """Seconds since the epoch of an RFC 5322 §3.3 date-time (obsolete forms too), or None."""
    parsed = email.utils.parsedate_tz(date)
    if parsed is None:
        return None
    try:
        return float(email.utils.mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None


def _date(fields: Mapping[str, str], received: list[str], out: set[str]) -> None:
    date = fields.get("date")
    if date is None:
        out.add("DATE_NONE")  # RFC 5322 §3.6 requires one
        return
    if _NUMERIC_ZONE.search(date) is None:
        out.add("DATE_BAD_ZONE")
    sent = _epoch(date)
    if sent is None:
        out.add("DATE_UNPARSED")
        return
    # The newest Received field's timestamp (after its ";", RFC 5321 §4.4) is when the
    # last relay got the message: SpamAssassin's DATE_IN_FUTURE/PAST compare with the same.
    got = _epoch(received[0].rpartition(";")[2]) if received else None
    if got is None:
        return
    if sent > got + _FUTURE:
        out.add("DATE_FUTURE")
    elif sent < got - _PAST:
        out.add("DATE_PAST")


def _shape(fields: Mapping[str, str], own: str, out: set[str]) -> None:
    # RFC 2045 §5.2: no Content-Type means text/plain.
    ctype = fields.get("content-type", "text/plain").lower()
    if ctype.lstrip().startswith("text/html"):
        out.add("MIME_HTML_ONLY")
    if "content-type" in fields and "mime-version" not in fields:
        out.add("MIME_NO_VERSION")  # RFC 2045 §4 requires it
    if "boundary" in ctype and _USUAL_BOUNDARY.search(ctype) is None:
        out.add("MIME_ODD_BOUNDARY")
    to = fields.get("to")
    if to is None:
        out.add("TO_NONE")
    else:
        if "undisclosed" in to.lower() or "@" not in to:
            out.add("TO_UNDISCLOSED")
        if to.count("@") >= 5:
            out.add("TO_MANY")
    mailer = fields.get("x-mailer", "") or fields.get("user-agent", "")
    if not mailer:
        out.add("MAILER_NONE")
    elif _BULK_MAILER.search(mailer):
        out.add("MAILER_BULK")
    elif _OUTLOOK.search(mailer) and "x-mimeole" not in fields:
        # Outlook of the time wrote X-MimeOLE; spamware claiming to be Outlook often did not
        # (SpamAssassin's MISSING_MIMEOLE).
        out.add("MAILER_OUTLOOK_NO_MIMEOLE")
    if fields.get("x-priority", "").strip()[:1] in ("1", "2"):
        out.add("PRIORITY_HIGH")
    frm = fields.get("from", "")
    if "<" not in frm:
        out.add("FROM_NO_NAME")
    local = frm.rpartition("@")[0].rpartition("<")[2]
    if _DIGITS_TAIL.search(local):
        out.add("FROM_LOCAL_DIGITS")
    if not own:
        out.add("FROM_NONE")
    if "subject" not in fields:
        out.add("SUBJECT_NONE")
