"""Bench-only header evidence for the spam experiments (see docs/spam-filter.md, "Header
evidence"): conjunctions of the product's header facts (:mod:`pillarbox.policy.headerfacts`)
that were measured and not kept.
"""

from __future__ import annotations

from collections.abc import Set


def bulk_facts(facts: Set[str]) -> set[str]:
    """Conjunctions of header facts that describe a legitimate bulk sender as a whole
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
