"""The two ways a POP3 exchange goes wrong, on the two sides of the core.

:class:`CommandError` is the client's mistake: it carries the ``-ERR`` reply the core sends, and
never leaves the core. :class:`Pop3UsageError` is the application's mistake (an answer given when
none was asked for, a maildrop listing that breaks RFC 1939's rules): a bug in Pillarbox, raised
to the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pillarbox.errors import ServerFault, UserError

if TYPE_CHECKING:
    from pillarbox.pop3.responses import Reply


class CommandError(UserError):
    """A client command cannot be carried out; ``reply`` is the ``-ERR`` line that says why."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


class Pop3UsageError(ServerFault):
    """The application drove the POP3 core out of turn or fed it invalid data."""
