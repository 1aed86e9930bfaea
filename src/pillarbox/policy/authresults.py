"""The ``Authentication-Results`` header field we add (RFC 8601), and removing forged ones.

Implementation notes:

- One field per message, at the top, naming our host as authserv-id (RFC 8601 §2.2, §5):
  ``spf``, ``dkim`` (one result per signature, with ``header.d``/``header.s``/``header.a`` and
  ``header.b`` of RFC 6008 to tell them apart), ``dmarc`` and ``arc``, each with its
  property; a method not run is left out; a message that nothing was checked for gets ``none``.
- RFC 8601 §5: a field that carries *our* authserv-id but was not added by us is a forgery
  meant to fool our own users' clients; every such field is removed before ours is added
  (authserv-ids compare case-insensitively). Fields of other hosts stay: they are history.
  So, for the same reason, goes every ``X-Pillarbox-Spam`` field a message arrives with: the
  field is ours alone, added at delivery, and a copy the sender wrote would tell a Sieve
  script that tests the verdict (docs/sieve.md) whatever the sender liked.
- Values are written as tokens where RFC 8601's grammar allows (``pvalue`` = value /
  [local-part "@"] domain-name), anything else as a quoted-string (``value`` is RFC 2045 §5.1's
  token / quoted-string): a base64 ``header.b`` prefix holds a ``/`` one time in eight. A
  comment in its place would leave the property without a value: readers (dkimpy's ARC
  sealing among them, through authres) then see ``header.b=`` empty or fail.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pillarbox.mail.headers import raw_text, scan_header
from pillarbox.policy.arc import ArcOutcome
from pillarbox.policy.dkim import SignatureResult
from pillarbox.policy.dmarc import DmarcOutcome
from pillarbox.policy.spf import SpfOutcome
from pillarbox.policy.verdict import SPAM_HEADER

FIELD = "Authentication-Results"
_COMMENT = re.compile(r"\([^()]*\)")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~@]+")


@dataclass(frozen=True, slots=True)
class AuthSummary:
    """What authentication found, for the header and for the verdict."""

    spf: SpfOutcome | None = None
    #: True when ``spf`` is the HELO identity (null MAIL FROM).
    spf_is_helo: bool = False
    dkim: tuple[SignatureResult, ...] = ()
    #: False when DKIM was not checked at all (a trusted client): no ``dkim=`` is written.
    dkim_checked: bool = False
    dmarc: DmarcOutcome | None = None
    arc: ArcOutcome | None = None


def authserv_id(value: bytes) -> str:
    """The authserv-id of an ``Authentication-Results`` value (RFC 8601 §2.2), lowercase."""
    text = _COMMENT.sub(" ", raw_text(value))
    head = text.split(";", 1)[0].strip()
    return head.split()[0].lower() if head else ""


#: The start of an ``Authentication-Results`` or ``X-Pillarbox-Spam`` field, as
#: :func:`scan_header` reads field names.
_OUR_FIELD = re.compile(
    rb"(?:^|\n)(?:authentication-results|" + SPAM_HEADER.encode() + rb")[ \t]*:", re.IGNORECASE
)
_SPAM_KEY = SPAM_HEADER.lower()


def strip_forged(raw: bytes, our_id: str) -> bytes:
    """``raw`` without the header's ``Authentication-Results`` fields that claim ``our_id``
    and its ``X-Pillarbox-Spam`` fields (see the module notes); ``raw`` itself when there are
    none."""
    # Most mail has no such field: a search up to the first empty line (the header cannot end
    # later) settles that for a fraction of reading the header field by field.
    blank = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i >= 0]
    if not _OUR_FIELD.search(raw, 0, min(blank) + 1 if blank else len(raw)):
        return raw
    block = scan_header(raw, 0, len(raw), max_fields=10_000)
    spans = [
        (f.start, f.end)
        for f in block.fields
        if f.key == _SPAM_KEY
        or (f.key == "authentication-results" and authserv_id(f.value) == our_id.lower())
    ]
    if not spans:
        return raw
    out: list[bytes] = []
    pos = 0
    for start, end in spans:
        out.append(raw[pos:start])
        pos = end
    out.append(raw[pos:])
    return b"".join(out)


_UNQUOTABLE = re.compile(r"[\x00-\x1f\x7f]")
_QUOTED_PAIR = re.compile(r'(["\\])')


def _value(text: str) -> str:
    """``text`` as a pvalue: a token, else a quoted-string (RFC 5322 §3.2.4, quoted-pairs for
    ``"`` and ``\\``) of at most 80 characters; control characters (from a sender's header)
    are dropped, so the value stays on its line."""
    if _TOKEN.fullmatch(text):
        return text
    return '"' + _QUOTED_PAIR.sub(r"\\\1", _UNQUOTABLE.sub("", text)[:80]) + '"'


def _dkim(result: SignatureResult) -> str:
    parts = [f"dkim={result.result.value}"]
    if result.reason:
        parts.append(f"({result.reason[:80].replace('(', '[').replace(')', ']')})")
    if result.domain:
        parts.append(f"header.d={_value(result.domain)}")
    if result.selector:
        parts.append(f"header.s={_value(result.selector)}")
    if result.algorithm:
        parts.append(f"header.a={_value(result.algorithm)}")
    if result.b_prefix:
        parts.append(f"header.b={_value(result.b_prefix)}")
    return " ".join(parts)


def results(summary: AuthSummary) -> list[str]:
    """The resinfo entries (``method=result properties``) of ``summary``."""
    out: list[str] = []
    if summary.spf is not None:
        prop = "smtp.helo" if summary.spf_is_helo else "smtp.mailfrom"
        out.append(f"spf={summary.spf.result.value} {prop}={_value(summary.spf.domain or '.')}")
    if summary.dkim_checked:
        out += [_dkim(r) for r in summary.dkim] or ["dkim=none"]
    if summary.dmarc is not None:
        dmarc = summary.dmarc
        policy = f" (p={dmarc.record.p.value})" if dmarc.record is not None else ""
        author = f" header.from={_value(dmarc.domain)}" if dmarc.domain else ""
        out.append(f"dmarc={dmarc.result.value}{policy}{author}")
    if summary.arc is not None:
        out.append(f"arc={summary.arc.result.value}")
    return out


def header(our_id: str, summary: AuthSummary) -> bytes:
    """The whole field, folded one result per line, CRLF-terminated."""
    entries: Sequence[str] = results(summary) or ["none"]
    if entries == ["none"]:
        return f"{FIELD}: {our_id}; none\r\n".encode()
    body = ";\r\n\t".join(entries)
    return f"{FIELD}: {our_id};\r\n\t{body}\r\n".encode("utf-8", "replace")
