"""What :meth:`Pop3Server.next_event` returns.

Every event but :class:`Disconnect` is a question: the core pauses (returns :data:`PAUSED`)
until the application answers it with the method named in the event's docstring. The core
answers everything else (CAPA, STAT, LIST, UIDL, DELE, NOOP, RSET, errors) itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Signal(enum.Enum):
    """The two non-events of :meth:`Pop3Server.next_event`."""

    #: Every complete line is handled: feed more input with ``receive_data``.
    NEED_DATA = "need-data"
    #: Waiting for the application's answer to the last event, or for :meth:`deadline` (a
    #: failed login's reply is being held back). Do not feed input meanwhile.
    PAUSED = "paused"


NEED_DATA = Signal.NEED_DATA
PAUSED = Signal.PAUSED


@dataclass(frozen=True, slots=True)
class UserPass:
    """USER/PASS login (RFC 1939 §7). Answer ``accept_login`` or ``reject_login``."""

    user: str
    password: str


@dataclass(frozen=True, slots=True)
class Apop:
    """APOP login (RFC 1939 §7), only with ``Pop3Settings.apop``: ``digest`` (lower-case hex)
    should be MD5(``timestamp`` + shared secret). Answer ``accept_login`` or ``reject_login``."""

    user: str
    timestamp: str
    digest: str


@dataclass(frozen=True, slots=True)
class SaslStart:
    """AUTH (RFC 5034 §4) with an offered ``mechanism`` (upper case). ``initial_response`` is
    None when absent and ``b""`` when sent as "=". Answer ``sasl_challenge``, ``accept_login``
    or ``reject_login``."""

    mechanism: str
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """The client's (base64-decoded) answer to the last challenge. Same answers as
    :class:`SaslStart`. A "*" cancel never reaches the application: the core answers it."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StartTls:
    """STLS was accepted and ``+OK`` is queued (RFC 2595 §4): send it, run the TLS handshake,
    then call ``tls_started``; on handshake failure just close the connection."""


@dataclass(frozen=True, slots=True)
class Retrieve:
    """RETR (``top_lines`` None) or TOP: supply the stored message with ``message_chunk`` calls
    and ``end_message``, or refuse with ``fail_message``."""

    msg_number: int
    uid: int
    top_lines: int | None


@dataclass(frozen=True, slots=True)
class Update:
    """QUIT in TRANSACTION state (RFC 1939 §6): expunge ``deleted_uids`` (possibly empty) from
    the INBOX, then call ``complete_update`` (or ``fail_update``). Only a clean QUIT produces
    this event: a dropped or timed-out connection deletes nothing."""

    deleted_uids: tuple[int, ...]


class DisconnectReason(enum.Enum):
    QUIT = "quit"
    PEER_CLOSED = "peer-closed"
    IDLE_TIMEOUT = "idle-timeout"
    LOGIN_TIMEOUT = "login-timeout"
    TOO_MANY_ERRORS = "too-many-errors"
    TOO_MANY_AUTH_FAILURES = "too-many-auth-failures"
    INPUT_OVERFLOW = "input-overflow"
    #: ``fail_message`` after part of the message was sent: only closing can tell the client.
    MESSAGE_ABORTED = "message-aborted"


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The session is over: send what ``data_to_send`` still holds, then close."""

    reason: DisconnectReason


Event = UserPass | Apop | SaslStart | SaslResponse | StartTls | Retrieve | Update | Disconnect
