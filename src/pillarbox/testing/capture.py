"""An SMTP server we did not write (aiosmtpd) that keeps what it receives: the remote peer of
queue and forwarding tests, on a loopback address of the test's choosing."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiosmtpd.controller import Controller


class Received(NamedTuple):
    """One transaction as the peer saw it."""

    peer: tuple[str, int]
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps what it receives and can refuse recipients."""

    messages: list[Received] = field(default_factory=list)
    #: RCPT address → the reply refusing it (once).
    refuse: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse.pop(address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            Received(session.peer, envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return "250 2.0.0 stored"


@contextlib.contextmanager
def capture_peer(host: str, port: int, *, tls: ssl.SSLContext | None = None) -> Iterator[Recorder]:
    """Run a :class:`Recorder` on ``host:port`` for the block; with ``tls``, it offers
    STARTTLS with that context."""
    handler = Recorder()
    controller = Controller(handler, hostname=host, port=port, tls_context=tls)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()
