"""Errors of the IMAP protocol core.

A client's malformed command is a :class:`ParseError`: it carries the tag (when one could be read)
so the server can answer ``tag BAD …`` (RFC 9051 §7.1.3) instead of an untagged ``* BAD``, and it
may carry a response code (``[BADCHARSET]``, ``[TOOBIG]``) and the condition to answer with
(``NO`` for a well-formed request the server cannot honour, ``BAD`` otherwise).
"""

from __future__ import annotations

from pillarbox.errors import UserError


class ParseError(UserError):
    """A command (or part of one) does not match the grammar of RFC 9051 §9 and its extensions.

    ``tag`` is None when not even the tag could be read; the answer is then an untagged BAD.
    ``code`` is the response code without brackets (``"BADCHARSET (UTF-8)"``) or None.
    """

    def __init__(
        self,
        message: str,
        *,
        tag: str | None = None,
        code: str | None = None,
        condition: str = "BAD",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.tag = tag
        self.code = code
        self.condition = condition

    def with_tag(self, tag: str | None) -> ParseError:
        """The same error attributed to ``tag`` (raised deep inside, tagged at the top)."""
        return ParseError(self.message, tag=tag, code=self.code, condition=self.condition)


class Mutf7Error(UserError, ValueError):
    """A mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3), or cannot be encoded in it."""
