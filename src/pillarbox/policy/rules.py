"""A few rules that are right nearly always, each worth a fixed score.

- ``GTUBE``: the Generic Test for Unsolicited Bulk Email, the string every spam filter treats
  as spam, so that a whole mail path can be tested end to end.
- ``ATTACHMENT_ONLY``: no text at all, only an attachment: the shape of malware and of image
  spam.
- ``FORGED_LOCAL_SENDER``: a From address in one of our own hosted domains, arriving at the
  MX from outside without authentication that vouches for it (no aligned SPF or DKIM pass):
  mail from our users arrives through submission, never like that.
- ``NO_FROM``: no From address (RFC 5322 §3.6 requires exactly one).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from pillarbox.mail.model import MessageInfo
from pillarbox.policy.verdict import Reason

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def gtube(raw: bytes, info: MessageInfo, score: float) -> Reason | None:
    # Searched in place: slicing the body off would copy it.
    if raw.find(GTUBE, info.header_end) >= 0:
        return Reason("GTUBE", score)
    return None


def attachment_only(info: MessageInfo, score: float) -> Reason | None:
    if info.attachments and not info.body_text.strip():
        return Reason("ATTACHMENT_ONLY", score)
    return None


def forged_local_sender(
    author_domains: Sequence[str],
    hosted: Collection[str],
    *,
    vouched: bool,
    score: float,
) -> Reason | None:
    """``vouched``: an aligned SPF or DKIM pass exists for the author domain (DMARC pass)."""
    ours = [d for d in author_domains if d.lower() in hosted]
    if ours and not vouched:
        return Reason("FORGED_LOCAL_SENDER", score, ours[0])
    return None


def no_from(author_domains: Sequence[str], score: float) -> Reason | None:
    return None if author_domains else Reason("NO_FROM", score)
