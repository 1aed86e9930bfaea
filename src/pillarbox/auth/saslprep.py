"""SASLprep (RFC 4013): the stringprep profile for user names and passwords.

Why it matters here: RFC 4616 §2 and RFC 5802 §2.2 require a password to be prepared before a
non-invertible function (argon2, SCRAM's Hi) sees it, so that "ﬁ" typed on one keyboard and "fi"
on another are the same password. Preparing both when storing and when checking keeps every
mechanism (PLAIN, LOGIN, SCRAM) and every client agreeing on the same bytes.

The profile, step by step (RFC 3454 §§3–6 as specialised by RFC 4013 §2):

1. map non-ASCII spaces to SPACE and "commonly mapped to nothing" characters to nothing;
2. normalise with Unicode NFKC;
3. reject prohibited characters (controls, private use, surrogates, tagging characters, ...);
4. apply the bidirectional-text rule;
5. for *stored* strings, also reject code points unassigned in Unicode 3.2.
"""

from __future__ import annotations

import stringprep
import unicodedata

from pillarbox.errors import UserError


class StringprepError(UserError):
    """The string cannot be prepared (it holds a prohibited character, or breaks the bidi rule)."""


# RFC 4013 §2.3: the prohibited-output tables.
_PROHIBITED = (
    stringprep.in_table_c12,  # non-ASCII space characters
    stringprep.in_table_c21_c22,  # ASCII and non-ASCII control characters
    stringprep.in_table_c3,  # private use
    stringprep.in_table_c4,  # non-character code points
    stringprep.in_table_c5,  # surrogate codes
    stringprep.in_table_c6,  # inappropriate for plain text
    stringprep.in_table_c7,  # inappropriate for canonical representation
    stringprep.in_table_c8,  # change display properties / deprecated
    stringprep.in_table_c9,  # tagging characters
)


def saslprep(value: str, *, stored: bool = False) -> str:
    """Prepare ``value`` per RFC 4013; ``stored=True`` also rejects unassigned code points.

    Presented strings (what a client sends) are "queries" and may hold unassigned code points;
    strings about to be hashed for storage are "stored strings" (RFC 3454 §7).
    Raises :class:`StringprepError`; an empty result is returned as is (callers decide whether
    an empty name or password is acceptable).
    """
    # RFC 4013 §2.1: non-ASCII space (C.1.2) → SPACE; B.1 → nothing.
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in value if not stringprep.in_table_b1(ch)
    )
    # RFC 4013 §2.2: Unicode normalization form KC.
    prepared = unicodedata.normalize("NFKC", mapped)
    for ch in prepared:
        if any(table(ch) for table in _PROHIBITED):
            raise StringprepError(f"prohibited character U+{ord(ch):04X}")
        if stored and stringprep.in_table_a1(ch):  # RFC 4013 §2.5
            raise StringprepError(f"unassigned code point U+{ord(ch):04X}")
    _check_bidi(prepared)
    return prepared


def _check_bidi(prepared: str) -> None:
    """RFC 3454 §6, required by RFC 4013 §2.4."""
    has_ral = any(stringprep.in_table_d1(ch) for ch in prepared)
    if not has_ral:
        return
    if any(stringprep.in_table_d2(ch) for ch in prepared):
        raise StringprepError("mixes right-to-left and left-to-right characters")
    if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
        raise StringprepError(
            "right-to-left text must start and end with a right-to-left character"
        )
