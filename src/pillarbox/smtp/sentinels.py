"""What ``next_event()`` of either SMTP role returns when it has no event (h11's sentinels)."""

from __future__ import annotations

import enum


class Sentinel(enum.Enum):
    #: Feed more bytes with ``receive_data()``; read from the socket only now (backpressure).
    NEED_DATA = "need-data"
    #: Server: a decision, the greeting or the TLS handshake is awaited from the application.
    PAUSED = "paused"
    #: Client: nothing is in flight; it is the application's turn to send a command.
    IDLE = "idle"
    #: The session is over: write what ``data_to_send()`` still has, then close.
    CLOSED = "closed"


NEED_DATA = Sentinel.NEED_DATA
PAUSED = Sentinel.PAUSED
IDLE = Sentinel.IDLE
CLOSED = Sentinel.CLOSED
