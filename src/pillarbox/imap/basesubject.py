"""The RFC 5256 §2.1 base subject, and the RFC 5051 i;unicode-casemap collation key.

Implementation notes:

- **Base subject** follows §2.1 step by step (the §5 ABNF is ambiguous, the steps are not):
  (1) whitespace runs become one space (the subject arrives decoded from RFC 2047 at ingest);
  (2) trailing ``(fwd)`` and whitespace go; (3) leading ``re:``/``fw:``/``fwd:`` leaders, each
  optionally preceded by ``[blob]``\\s and with an optional ``[blob]`` before its colon, go; (4) a
  leading ``[blob]`` goes if something is left after it; (5) repeat 3–4; (6) ``[fwd: … ]``
  around the whole is unwrapped, and it all starts again at (2). Keywords are matched
  case-insensitively (ABNF literals are).
- **Reply or forward** (§4, REFERENCES step 5): a subject is one if the extraction removed a
  ``re``/``fw``/``fwd`` leader, a ``(fwd)`` trailer, or a ``[fwd: … ]`` wrapper.
- **i;unicode-casemap** (RFC 5051 §2): each character's simple titlecase mapping, then NFKD;
  strings compare by code point, which is the order of their UTF-8 octets. Python's
  ``str.title`` of one character gives the *full* mapping (``ß`` → ``Ss``); where that is
  longer than one character the simple mapping is the identity, so the character is kept.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

__all__ = ["BaseSubject", "base_subject", "casemap"]

_WSP_RUN: Final = re.compile(r"[ \t\r\n]+")
#: (2) subj-trailer = "(fwd)" / WSP
_TRAILER: Final = re.compile(r"(?:\(fwd\)|[ \t])+$", re.IGNORECASE)
#: subj-blob = "[" *BLOBCHAR "]" *WSP
_BLOB: Final = r"\[[^\[\]]*\][ \t]*"
#: (3) subj-leader = (*subj-blob subj-refwd) / WSP, subj-refwd = ("re" / ("fw" ["d"])) *WSP
#: [subj-blob] ":"
_LEADER: Final = re.compile(rf"^(?:(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:|[ \t])", re.I)
_LEADING_BLOB: Final = re.compile(rf"^{_BLOB}")
_FWD_HEADER: Final = "[fwd:"


@dataclass(frozen=True, slots=True)
class BaseSubject:
    text: str
    #: The extraction removed a reply/forward marker (RFC 5256 §4 REFERENCES).
    reply_or_forward: bool


def base_subject(subject: str) -> BaseSubject:
    """RFC 5256 §2.1 steps (1) to (7) on a decoded subject."""
    text = _WSP_RUN.sub(" ", subject)  # (1)
    marked = False
    while True:
        trimmed = _TRAILER.sub("", text)  # (2)
        if "(fwd)" in text[len(trimmed) :].lower():
            marked = True
        text = trimmed
        while True:  # (5): repeat (3) and (4)
            leader = _LEADER.match(text)  # (3)
            if leader is not None:
                if leader.group().strip():
                    marked = True
                text = text[leader.end() :]
                continue
            blob = _LEADING_BLOB.match(text)  # (4)
            if blob is not None and text[blob.end() :]:
                text = text[blob.end() :]
                continue
            break
        # (6) subj-fwd-hdr … subj-fwd-trl
        if text[: len(_FWD_HEADER)].lower() == _FWD_HEADER and text.endswith("]"):
            text = text[len(_FWD_HEADER) : -1]
            marked = True
            continue
        return BaseSubject(text, marked)


def _simple_title(char: str) -> str:
    mapped = char.title()
    return mapped if len(mapped) == 1 else char


@functools.lru_cache(maxsize=65536)
def casemap(text: str) -> str:
    """The RFC 5051 i;unicode-casemap key of ``text``: compare keys with ``<`` and ``==``."""
    if text.isascii():
        return text.upper()  # simple titlecase of ASCII is uppercase; NFKD leaves it alone
    return unicodedata.normalize("NFKD", "".join(_simple_title(ch) for ch in text))
