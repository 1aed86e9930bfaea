"""Helpers for tests and benchmarks of the web interface against a :class:`LiveServer`:
a logged-in HTTP client (real cookies, real CSRF tokens) and message delivery into the store."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from pillarbox.mail.parse import parse_message
from pillarbox.net.tls import tls_paths
from pillarbox.store.types import INBOX, DeliveryTarget, SpecialUse
from pillarbox.testing.live import TEST_PASSWORD, LiveServer

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def deliver(live: LiveServer, address: str, raw: bytes, mailbox: str = INBOX) -> tuple[int, int]:
    """Store ``raw`` in the account's mailbox as the MX would; returns (mailbox id, uid)."""

    async def go() -> tuple[int, int]:
        account = await live.store.get_account(address)
        assert account is not None, address
        target = DeliveryTarget(account.id, mailbox)
        [result] = await live.store.deliver(raw, parse_message(raw), [target])
        assert result.record is not None, result.status
        return result.record.mailbox_id, result.record.uid

    return live.call(go())


def mailbox_id(live: LiveServer, address: str, name: str = INBOX) -> int:
    async def go() -> int:
        account = await live.store.get_account(address)
        assert account is not None
        return (await live.store.get_mailbox(account.id, name)).id

    return live.call(go())


def special_mailbox_id(live: LiveServer, address: str, use: SpecialUse) -> int:
    async def go() -> int:
        account = await live.store.get_account(address)
        assert account is not None
        for mailbox in await live.store.list_mailboxes(account.id):
            if mailbox.special_use is use:
                return mailbox.id
        raise LookupError(use)

    return live.call(go())


def simple_message(
    subject: str = "Hello",
    body: str = "Hello there.",
    *,
    sender: str = "carol@example.net",
    to: str = "alice@example.org",
    headers: str = "",
    message_id: str = "",
) -> bytes:
    mid = message_id or f"<{abs(hash((subject, body))) % 10**12}@example.net>"
    return (
        f"From: Carol <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: {mid}\r\n{headers}"
        f"\r\n{body}\r\n"
    ).encode()


def server_trust(live: LiveServer) -> ssl.SSLContext:
    """A client context trusting the live server's own (self-signed or configured) certificate."""
    return ssl.create_default_context(cafile=tls_paths(live.config)[0])


class WebSession:
    """An HTTP client with a session cookie jar, as a browser would keep one; on the "https"
    listener it verifies the server's certificate against :func:`server_trust`."""

    def __init__(self, live: LiveServer, listener: str = "http") -> None:
        scheme = "https" if listener == "https" else "http"
        self.base = f"{scheme}://127.0.0.1:{live.port(listener)}"
        verify: ssl.SSLContext | bool = server_trust(live) if scheme == "https" else True
        self.client = httpx.Client(
            base_url=self.base, follow_redirects=False, timeout=30, verify=verify
        )

    def close(self) -> None:
        self.client.close()

    def csrf(self, path: str = "/login") -> str:
        """The CSRF token of this session, as its pages carry it."""
        response = self.client.get(path, follow_redirects=True)
        match = _CSRF_META.search(response.text)
        assert match is not None, response.text[:500]
        return match.group(1)

    def login(self, username: str, password: str = TEST_PASSWORD) -> httpx.Response:
        token = self.csrf("/login")
        return self.client.post(
            "/login",
            data={"csrf": token, "username": username, "password": password, "next": "/mail"},
        )

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.client.get(path, **options)

    def post(
        self,
        path: str,
        data: Mapping[str, Any] | None = None,
        *,
        csrf: bool = True,
        **options: Any,
    ) -> httpx.Response:
        """POST a form; with ``csrf`` the session's token is added as a form field."""
        fields = dict(data or {})
        if csrf:
            fields["csrf"] = self.csrf("/settings")
        return self.client.post(path, data=fields, **options)

    def api(self, method: str, path: str, json: Any = None, **options: Any) -> httpx.Response:
        """A JSON API call with the session cookie and its CSRF header."""
        headers = dict(options.pop("headers", {}))
        if method != "GET":
            headers["X-CSRF-Token"] = self.csrf("/settings")
        return self.client.request(method, "/api/v1" + path, json=json, headers=headers, **options)
