"""The session's fixed view of the maildrop: message numbers, UIDs, sizes and deletion marks.

Invariants (RFC 1939 §4-§7):

- The maildrop is the account's INBOX. The view is taken once, at login, and never changes for
  the session: message *n* is the same message until QUIT, whatever IMAP sessions do meanwhile
  (a message they expunge answers :data:`~pillarbox.pop3.responses.MESSAGE_GONE` on RETR).
- Message numbers are 1…N in UID order, as given by the application.
- A unique-id is ``f"{uidvalidity:08x}{uid:08x}"``: 16 characters in 0x21-0x7E (RFC 1939 §7 asks
  for 1-70), never reused while the mailbox keeps its UIDVALIDITY (RFC 9051 §2.3.1.1 guarantees
  a UID is not reused under one UIDVALIDITY), so the UIDL of a message is stable forever.
- A size is the octet count RETR will send before dot-stuffing (RFC 1939 §11): the stored bytes
  with every line ended by CRLF, plus a final CRLF if the message lacks one; see
  :func:`pillarbox.pop3.transfer.wire_size`. Pillarbox stores messages with CRLF line endings, so
  for a stored message that ends in CRLF this is simply its stored size.
- Deletion marks only ever become deletions through the application's answer to
  :class:`~pillarbox.pop3.events.Update`; RSET clears them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pillarbox.pop3 import responses
from pillarbox.pop3.errors import CommandError, Pop3UsageError

_MAX_UINT32 = 2**32 - 1


@dataclass(frozen=True, slots=True)
class MaildropMessage:
    """One message of the listing the application hands over at login."""

    uid: int
    #: Octets as RETR sends them before dot-stuffing (see the module docstring).
    size: int


def unique_id(uidvalidity: int, uid: int) -> str:
    """The UIDL value of a message (RFC 1939 §7): stable as long as UIDVALIDITY is."""
    return f"{uidvalidity:08x}{uid:08x}"


class Maildrop:
    """The numbered, fixed listing of one POP3 session with its deletion marks."""

    __slots__ = ("_deleted", "_messages", "uidvalidity")

    def __init__(self, uidvalidity: int, messages: Sequence[MaildropMessage]) -> None:
        if not 1 <= uidvalidity <= _MAX_UINT32:
            raise Pop3UsageError(f"UIDVALIDITY {uidvalidity} is not a non-zero 32-bit number")
        seen: set[int] = set()
        for message in messages:
            if not 1 <= message.uid <= _MAX_UINT32:
                raise Pop3UsageError(f"UID {message.uid} is not a non-zero 32-bit number")
            if message.uid in seen:
                raise Pop3UsageError(f"UID {message.uid} listed twice")
            if message.size < 0:
                raise Pop3UsageError(f"UID {message.uid} has a negative size")
            seen.add(message.uid)
        self.uidvalidity = uidvalidity
        self._messages = tuple(messages)
        self._deleted: set[int] = set()

    @property
    def count(self) -> int:
        """Messages not marked deleted (RFC 1939 §5 STAT)."""
        return len(self._messages) - len(self._deleted)

    @property
    def size(self) -> int:
        """Octets of the messages not marked deleted (RFC 1939 §5 STAT)."""
        return sum(message.size for _, message in self.listing())

    def listing(self) -> Iterator[tuple[int, MaildropMessage]]:
        """``(number, message)`` for every message not marked deleted, in number order."""
        for number, message in enumerate(self._messages, start=1):
            if number not in self._deleted:
                yield number, message

    def get(self, number: int) -> MaildropMessage:
        """The message ``number`` refers to; a ``CommandError`` if there is none or it is marked
        deleted (RFC 1939 §5: such a number "may NOT refer to a message marked as deleted")."""
        if not 1 <= number <= len(self._messages):
            raise CommandError(responses.NO_SUCH_MESSAGE.format(count=len(self._messages)))
        if number in self._deleted:
            raise CommandError(responses.MESSAGE_DELETED.format(number=number))
        return self._messages[number - 1]

    def unique_id(self, number: int) -> str:
        return unique_id(self.uidvalidity, self.get(number).uid)

    def delete(self, number: int) -> None:
        self.get(number)
        self._deleted.add(number)

    def reset(self) -> None:
        """RFC 1939 §5 RSET: unmark every message."""
        self._deleted.clear()

    def deleted_uids(self) -> tuple[int, ...]:
        """UIDs marked deleted, ascending: what UPDATE removes (RFC 1939 §6)."""
        return tuple(sorted(self._messages[number - 1].uid for number in self._deleted))
