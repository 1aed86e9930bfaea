"""The web app's limits in one value object (the lead wires them to the config)."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class WebLimits:
    #: Messages per page of the message list (the reader may ask for up to ``max_page_size``).
    page_size: int = 50
    max_page_size: int = 200
    #: Largest request body of a compose form (attachments included), refused as it streams in.
    max_upload_bytes: int = 25 * MIB
    #: Largest body of any other request (forms, JSON).
    max_form_bytes: int = 1 * MIB
    max_attachments: int = 20
    max_recipients: int = 100
    #: Seconds a session lives without activity (refreshed while used).
    session_ttl: float = 12 * 3600.0
    #: Seconds between keep-alive comments on the live-update stream.
    sse_keepalive: float = 20.0
    #: Live-update streams one account may hold open at once.
    sse_per_account: int = 8
    #: Messages a "select many" action may name at once.
    max_action_uids: int = 5000

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= self.max_page_size:
            raise ValueError("page_size must be within 1..max_page_size")
        if min(self.max_upload_bytes, self.max_form_bytes) < 1024:
            raise ValueError("body limits must be at least 1 KiB")
