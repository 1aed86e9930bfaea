"""SMTP protocol errors, split the h11 way by whose fault they are.

:class:`RemoteProtocolError` is the peer breaking the protocol (a client's malformed command, a
server's garbled reply): a :class:`~pillarbox.errors.UserError`, logged at INFO. On the server side
it carries the wire reply that answers the offence. :class:`LocalProtocolError` is the application
driving a core wrongly (answering when nothing is pending, a 250 to reject with): a bug in
Pillarbox, hence a :class:`~pillarbox.errors.ServerFault`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pillarbox.errors import ServerFault, UserError

if TYPE_CHECKING:
    from pillarbox.smtp.replies import Reply


class RemoteProtocolError(UserError):
    """The peer violated SMTP (a server's garbled reply, a client's bad command)."""


class CommandError(RemoteProtocolError):
    """A client's command line is invalid; ``reply`` is the server's answer to it."""

    def __init__(self, message: str, reply: Reply) -> None:
        super().__init__(message)
        self.reply = reply


class LocalProtocolError(ServerFault):
    """The application used a protocol core in a way the protocol does not allow."""
