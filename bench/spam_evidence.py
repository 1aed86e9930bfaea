"""Non-content evidence for the spam experiments (see docs/spam-filter.md, "Header evidence"):
named yes/no facts about a message's header that mail-server practice (SpamAssassin's header
rules, Mox's reputation) knows to separate legitimate bulk mail from spam: is the envelope
sender, the Message-ID host, a relay of the From domain's organisation; does the Received
chain show named relays or dynamic, unnamed ones; is the Date sane; is the MIME shape the one
mailers write.

Each fact reads only the message's header (no DNS, no history), so it can be computed at the
MX; the bench fits a weight per fact on train by cross-validation.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping

from pillarbox.mail.headers import raw_text, scan_header
from pillarbox.policy.dmarc import organizational_domain

_ADDRESS = re.compile(r"[\w.+=#%!-]+@((?:[\w-]+\.)+[a-z]{2,})", re.I)
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
#: Envelope senders of list managers and bulk mailers (VERP, bounce handling).
_VERP = re.compile(r"bounce|return|owner-|-request|errors|=|\d{4,}|#", re.I)
#: Mailers of legitimate bulk senders and list managers.
_BULK_MAILER = re.compile(
    r"listmanager|lyris|powermta|accucast|mailman|ezmlm|majordomo|listserv|strongmail"
    r"|messagemedia|exacttarget|digital impact|sparklist|javamail",
    re.I,
)
_OUTLOOK = re.compile(r"outlook", re.I)


def _org(domain: str) -> str:
    domain = domain.strip(" .<>\t\r\n\"'").lower()
    return organizational_domain(domain) or domain


def _domain(value: str) -> str:
    m = _ADDRESS.search(value)
    return _org(m.group(1)) if m else ""


def _received_hops(received: list[str]) -> list[tuple[str, str, str]]:
    """(HELO, reverse name, IP) of each Received field's ``from`` clause, as the common MTAs
    write it (sendmail/Postfix ``from helo (name [ip])``, qmail ``from name (HELO helo) (ip)``)."""
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
            # qmail: from <reverse name> (HELO <helo>) (<ip>)
            name, helo = helo, paren.split("helo ", 1)[1].split()[0].strip(")")
        hops.append((helo, name, ip))
    return hops


def _zone_ok(date: str) -> bool:
    return re.search(r"[+-]\d{4}\b", date) is not None


def _epoch(date: str) -> float | None:
    parsed = email.utils.parsedate_tz(date)
    if parsed is None:
        return None
    try:
        return float(email.utils.mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None


def header_fields(head: bytes) -> tuple[dict[str, str], list[str]]:
    """The first value of each field of the header in ``head`` (the message's first bytes),
    and every Received field's value, in order."""
    end = head.find(b"\n\n")
    block = scan_header(head, 0, end + 1 if end >= 0 else len(head), max_fields=500)
    fields: dict[str, str] = {}
    received: list[str] = []
    for field in block.fields:
        value = raw_text(field.value)
        if field.key == "received":
            received.append(value)
        else:
            fields.setdefault(field.key, value)
    return fields, received


def header_facts(head: bytes, from_address: str) -> set[str]:
    """The named facts true of the message whose first bytes are ``head``."""
    fields, raw_received = header_fields(head)
    received = [" ".join(value.split()) for value in raw_received]
    out: set[str] = set()
    own = _org(from_address.rpartition("@")[2]) if "@" in from_address else ""
    _sender_alignment(fields, own, out)
    _received(received, own, out)
    _date(fields, received, out)
    _shape(fields, own, out)
    return out


def _sender_alignment(fields: Mapping[str, str], own: str, out: set[str]) -> None:
    rp = fields.get("return-path")
    if rp is None or "@" not in rp:
        out.add("RP_NONE")
    elif own and _domain(rp) == own:
        out.add("RP_ALIGNED")
        if _VERP.search(rp.partition("@")[0]):
            out.add("RP_VERP_ALIGNED")
    else:
        out.add("RP_OTHER")
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
    if "list-unsubscribe" in fields:
        out.add("LIST_UNSUBSCRIBE")
    if "list-id" in fields or "mailing-list" in fields:
        out.add("LIST_ID")
    if fields.get("precedence", "").strip().lower() in ("bulk", "list", "junk"):
        out.add("PRECEDENCE_BULK")


def _received(received: list[str], own: str, out: set[str]) -> None:
    hops = _received_hops(received)
    if not received:
        out.add("RCVD_NONE")
    orgs = set()
    for helo, name, ip in hops:
        orgs.add(_org(helo))
        if name:
            orgs.add(_org(name))
            if _DYNAMIC.search(name.split(".", 1)[0] + "."):
                out.add("RCVD_DYNAMIC_NAME")
        elif ip and not ip.startswith(("127.", "10.", "192.168.")):
            out.add("RCVD_NO_RDNS")
        if _IP.fullmatch(helo):
            out.add("RCVD_HELO_IP")
        elif "." not in helo and helo not in ("localhost",):
            out.add("RCVD_HELO_NO_DOT")
        if name and helo and _NAME.match(helo) and _org(helo) != _org(name):
            out.add("RCVD_HELO_MISMATCH")
    if any("may be forged" in r or "unverified" in r for r in received):
        out.add("RCVD_FORGED")
    if own:
        out.add("RCVD_FROM_ORG" if own in orgs else "RCVD_NOT_FROM_ORG")


def _date(fields: Mapping[str, str], received: list[str], out: set[str]) -> None:
    date = fields.get("date")
    if date is None:
        out.add("DATE_NONE")
        return
    if not _zone_ok(date):
        out.add("DATE_BAD_ZONE")
    sent = _epoch(date)
    if sent is None:
        out.add("DATE_UNPARSED")
        return
    # The newest Received field's timestamp is when our side got it (SpamAssassin's
    # DATE_IN_FUTURE_* and DATE_IN_PAST_* compare against the same).
    got = _epoch(received[0].rpartition(";")[2]) if received else None
    if got is None:
        return
    if sent > got + 12 * 3600:
        out.add("DATE_FUTURE")
    elif sent < got - 96 * 3600:
        out.add("DATE_PAST")


def _shape(fields: Mapping[str, str], own: str, out: set[str]) -> None:
    ctype = fields.get("content-type", "text/plain").lower()
    if ctype.lstrip().startswith("text/html"):
        out.add("MIME_HTML_ONLY")
    if "content-type" in fields and "mime-version" not in fields:
        out.add("MIME_NO_VERSION")
    if "boundary" in ctype and re.search(r'boundary="?(?:-|=_)', ctype) is None:
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
        out.add("MAILER_OUTLOOK_NO_MIMEOLE")
    if fields.get("x-priority", "").strip()[:1] in ("1", "2"):
        out.add("PRIORITY_HIGH")
    frm = fields.get("from", "")
    if "<" not in frm:
        out.add("FROM_NO_NAME")
    local = frm.rpartition("@")[0].rpartition("<")[2]
    if re.search(r"\d{3,}$", local):
        out.add("FROM_LOCAL_DIGITS")
    if not own:
        out.add("FROM_NONE")
    if "subject" not in fields:
        out.add("SUBJECT_NONE")


def bulk_facts(facts: set[str]) -> set[str]:
    """Conjunctions of :func:`header_facts` that describe a legitimate bulk sender as a whole
    (a linear fit cannot see them in the single facts): the envelope sender and the
    Message-ID both in the From organisation, and besides that every relay named, a
    List-Unsubscribe, or a VERP envelope. Spam of the era forges one identity or another;
    on train the first pair holds for 32 % of hard ham and 14 % of spam, with a named chain
    25 % vs 1.7 %, with List-Unsubscribe 16 % vs 0 %, with VERP 19 % vs 2.3 %."""
    out: set[str] = set()
    if {"RP_ALIGNED", "MSGID_ALIGNED"} <= facts:
        if "RCVD_NO_RDNS" not in facts:
            out.add("BULK_NAMED_CHAIN")
        if "LIST_UNSUBSCRIBE" in facts:
            out.add("BULK_UNSUBSCRIBE")
        if "RP_VERP_ALIGNED" in facts:
            out.add("BULK_VERP")
    return out
