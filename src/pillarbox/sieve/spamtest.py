"""The "spamtest" and "spamtestplus" extensions (RFC 5235, which obsoletes RFC 3685): what our
own policy decided about the message, on the RFC's scales.

The core reads no header: delivery hands over the verdict intake recorded for this copy
(:class:`SpamStatus`: the score, the action, the ``[policy]`` thresholds); a copy no policy
judged (submitted, injected locally, the policy off) has none. The mapping:

- **spamtest** (§3.1), "0" to "10": "0" not tested; "1" a score of 0 or less (certainly
  not spam); "1"–"4" the scores below ``junk_threshold`` in four equal steps; "5"–"9" those
  from ``junk_threshold`` to ``reject_threshold`` in five; "10" the reject threshold and
  above. An action decided by an override (an allow or block list, a DMARC policy) moves the
  level into its band: inbox at most "4", junk at least "5", reject "10".
- **spamtestplus :percent** (§3.2), "0" to "100": the score as a share of
  ``reject_threshold`` in whole percent (rounded down, as Pigeonhole computes it from a score
  header with ``sieve_spamtest_max_value`` the reject threshold), clamped likewise (inbox
  below the junk threshold's share, junk at or above it, reject "100"). Not tested is "0"
  (§3.2: with :percent, "0" cannot tell an untested message from a clean one; as Pigeonhole).
- The levels differ from Pigeonhole's linear ``1 + 9 * score / max`` on purpose: here "5" is
  where our policy starts filing in Junk, so ``spamtest :value "ge" "5"`` means "what we call
  spam" whatever the thresholds are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The policy's actions (``pillarbox.policy.verdict.Action`` values).
INBOX, JUNK, REJECT = "inbox", "junk", "reject"


@dataclass(frozen=True, slots=True)
class SpamStatus:
    """The policy's verdict on this copy: its ``score`` and ``action``, and the thresholds
    it was compared with (``junk`` <= ``reject``)."""

    score: float
    action: str
    junk: float
    reject: float


def level(status: SpamStatus | None) -> str:
    """RFC 5235 §3.1: the spamtest value (module notes)."""
    if status is None:
        return "0"
    score, junk, reject = status.score, status.junk, status.reject
    if score >= reject:
        value = 10
    elif score >= junk:
        value = 5 + math.floor(5 * (score - junk) / (reject - junk))
    else:
        value = 1 + max(0, math.floor(4 * score / junk)) if junk > 0 else 1
    return str(_banded(value, status.action, 4, 5, 10))


def percent(status: SpamStatus | None) -> str:
    """RFC 5235 §3.2: the spamtest :percent value (module notes)."""
    if status is None or status.reject <= 0:
        return "0"
    value = min(100, max(0, math.floor(100 * status.score / status.reject)))
    spam_from = min(100, max(1, math.floor(100 * status.junk / status.reject)))
    return str(_banded(value, status.action, spam_from - 1, spam_from, 100))


def _banded(value: int, action: str, clean_max: int, spam_min: int, refused: int) -> int:
    if action == REJECT:
        return refused
    if action == JUNK:
        return max(value, spam_min)
    return min(value, clean_max)
