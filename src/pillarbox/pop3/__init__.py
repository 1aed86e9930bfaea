"""Sans-I/O POP3 server core (RFC 1939, 2449, 2595 §4, 5034).

The adapter in ``pillarbox.net.pop3`` drives :class:`Pop3Server`: it feeds bytes with
``receive_data``, handles what ``next_event`` returns by answering through the server's methods,
writes ``data_to_send`` and honours ``deadline``/``handle_timeout``.
"""

from pillarbox.pop3.errors import CommandError, Pop3UsageError
from pillarbox.pop3.events import (
    NEED_DATA,
    PAUSED,
    Apop,
    Disconnect,
    DisconnectReason,
    Event,
    Retrieve,
    SaslResponse,
    SaslStart,
    Signal,
    StartTls,
    Update,
    UserPass,
)
from pillarbox.pop3.maildrop import MaildropMessage, unique_id
from pillarbox.pop3.responses import Reply
from pillarbox.pop3.server import Pop3Server, State
from pillarbox.pop3.settings import Pop3Limits, Pop3Settings
from pillarbox.pop3.transfer import wire_size

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Apop",
    "CommandError",
    "Disconnect",
    "DisconnectReason",
    "Event",
    "MaildropMessage",
    "Pop3Limits",
    "Pop3Server",
    "Pop3Settings",
    "Pop3UsageError",
    "Reply",
    "Retrieve",
    "SaslResponse",
    "SaslStart",
    "Signal",
    "StartTls",
    "State",
    "Update",
    "UserPass",
    "unique_id",
    "wire_size",
]
