"""A verdict: reasons with scores, summed and compared with thresholds, and the header that
explains it to the user.

Implementation notes:

- Every signal — classifier, reputation, authentication, DNSBL, rules — becomes a
  :class:`Reason` with a signed score (positive: spammy). The verdict's score is their sum;
  ``score >= thresholds.reject`` is refused at DATA with a 5xx (never a silent drop),
  ``score >= thresholds.junk`` goes to Junk, anything else to INBOX.
- Some evidence may file a message in Junk but never refuse it (``Reason.may_refuse`` false:
  the header facts, :mod:`.headerfacts`). Refusal is decided on the score without their
  positive points, so a wrongly refused message (which nobody can fish out of Junk) needs the
  stronger evidence alone; their negative points still count.
- Two kinds of reason override the sum, because a person or a domain owner decided them:
  a DMARC policy (``p=reject`` refuses, ``p=quarantine`` files in Junk) and the account's
  allow/block lists (allow → INBOX, block → Junk). An allow entry does not lift a DMARC
  failure: a forged From must not ride on the real sender's good name.
- ``X-Pillarbox-Spam: score=7.5; action=junk; reasons=BAYES(+8.0) SPF_FAIL(+1.5) ...`` lists
  the reasons strongest first; the web UI shows the same list.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

SPAM_HEADER = "X-Pillarbox-Spam"
#: Reasons written into the header; the rest are summarised as "+N more".
MAX_HEADER_REASONS = 12


class Action(enum.StrEnum):
    INBOX = "inbox"
    JUNK = "junk"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Reason:
    #: A stable upper-case name (``BAYES``, ``SPF_FAIL``, ``DNSBL``…).
    code: str
    score: float
    #: Human-readable detail (a zone, a probability, a domain).
    detail: str = ""
    #: False: positive points of this reason count towards Junk, never towards refusal.
    may_refuse: bool = True

    def render(self) -> str:
        detail = f":{self.detail}" if self.detail else ""
        return f"{self.code}{detail}({self.score:+.1f})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    junk: float = 5.0
    reject: float = 15.0

    def __post_init__(self) -> None:
        if self.reject < self.junk:
            raise ValueError("the reject threshold must not be below the junk threshold")


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    score: float
    reasons: tuple[Reason, ...]
    #: What overrode the score, if anything ("dmarc-reject", "allow-list", …).
    override: str = ""
    #: The text of a refusal (for the 5xx reply and logs).
    refusal: str = field(default="")

    @property
    def is_spam(self) -> bool:
        return self.action is not Action.INBOX

    def header(self) -> bytes:
        """The ``X-Pillarbox-Spam`` field, CRLF-terminated, folded at reason boundaries."""
        ordered = sorted(self.reasons, key=lambda r: -abs(r.score))
        shown = [r.render() for r in ordered[:MAX_HEADER_REASONS]]
        if len(ordered) > MAX_HEADER_REASONS:
            shown.append(f"+{len(ordered) - MAX_HEADER_REASONS} more")
        head = f"{SPAM_HEADER}: score={self.score:.1f}; action={self.action.value}"
        if self.override:
            head += f"; override={self.override}"
        lines = [head + "; reasons="]
        for item in shown or ["none"]:
            if len(lines[-1]) + len(item) + 1 > 76 and lines[-1].strip():
                lines.append(" ")
            lines[-1] += item if lines[-1].endswith(("=", " ")) else " " + item
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


def decide(
    reasons: Iterable[Reason],
    thresholds: Thresholds,
    *,
    forced: Action | None = None,
    override: str = "",
    refusal: str = "",
) -> Verdict:
    """Sum ``reasons`` and compare with ``thresholds``; ``forced`` (with its ``override``
    name) replaces the outcome of the comparison. Refusal compares the sum without the
    positive scores of reasons that may not refuse (see the module notes)."""
    reasons = tuple(reasons)
    score = round(sum(r.score for r in reasons), 2)
    refusable = round(sum(r.score for r in reasons if r.may_refuse or r.score < 0), 2)
    if forced is not None:
        action = forced
    elif refusable >= thresholds.reject:
        action = Action.REJECT
    elif score >= thresholds.junk:
        action = Action.JUNK
    else:
        action = Action.INBOX
    if action is Action.REJECT and not refusal:
        refusal = f"message looks like spam (score {score:.1f})"
    return Verdict(action, score, reasons, override, refusal)
