"""An IMAP session core over a real store, made as the server makes one for a connection but
driven by a test without a socket: the tests of the session, of NOTIFY and of the transcripts
feed it bytes and collect what it writes."""

from __future__ import annotations

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.imap.session import Action, ImapSession
from pillarbox.mail.model import MessageInfo
from pillarbox.mail.parse import parse_message
from pillarbox.net.imap import session_settings
from pillarbox.store.interface import Store
from pillarbox.store.types import Change


def core_session(
    store: Store, config: cfg.Config, *, now: float, tls_active: bool = False
) -> ImapSession:
    """A new connection from 127.0.0.1 under ``config``'s ``[imap]`` settings and accounts,
    offered STARTTLS unless it is in TLS already."""
    return ImapSession(
        session_settings(config.imap),
        store,
        provisioning.authenticator(store, config),
        parse=_parse,
        remote_ip="127.0.0.1",
        tls_active=tls_active,
        starttls_available=not tls_active,
        now=now,
    )


async def _parse(raw: bytes) -> MessageInfo:
    # Inline, not on the executor as the server does: the tests' messages are small.
    return parse_message(raw)


class CoreWire:
    """A session core with a collecting output: ``send`` returns what the server answered,
    ``hint`` what it pushes on a change-feed wake-up (as the adapter drives it). ``now`` is the
    clock the core is given (a test moves it to reach a timer); ``action`` is what the core
    asked of the connection after the last input (``CLOSE`` after LOGOUT or a fatal error)."""

    def __init__(self, session: ImapSession, *, now: float = 0.0) -> None:
        self.session = session
        self.data = bytearray()
        self.now = now
        self.action = Action.CONTINUE

    async def write(self, data: bytes) -> None:
        self.data += data

    def take(self) -> str:
        out = self.data.decode()
        self.data.clear()
        return out

    async def send(self, text: str | bytes) -> str:
        raw = text.encode() if isinstance(text, str) else text
        self.action = await self.session.receive_data(raw, self, self.now)
        return self.take()

    async def login(self, user: str, password: str) -> None:
        answer = await self.send(f'L1 LOGIN {user} "{password}"\r\n')
        assert "L1 OK" in answer, answer

    async def hint(self, change: Change) -> str:
        self.session.notify(change)
        if self.session.wants_push:
            await self.session.push_updates(self, self.now)
        return self.take()
