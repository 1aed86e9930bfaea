"""Two ``pillarbox serve`` processes over one PostgreSQL database: a web session is one
cookie for both (the nodes share the signing key), and ending it on one ends it on the other.

Each node keeps its answers to "is this session ended?" and "whose is it?" in memory
(``pillarbox.store.directorycache``); the write that ends a session (logout) or every session
(a password change) is announced by NOTIFY, and the other node forgets what it kept when the
notification arrives: the cookie is refused there within ``PUSH_WAIT`` here, though the kept
answers would live for a minute (``directory_ttl_ms``, the bound when a node's LISTEN
connection is down).

Skipped without a PostgreSQL server (``$PILLARBOX_TEST_POSTGRES`` or 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.store.postgres import PostgresStore
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.nodes import Node, node_pair
from pillarbox.testing.postgres import TestDatabase, needs_postgres
from pillarbox.testing.push import PUSH_WAIT
from pillarbox.web.session import SECRET_FILE

pytestmark = needs_postgres()

USER = "alice@example.org"
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
#: Longer than the test, its PUSH_WAIT included: only a notification makes a node forget what
#: it kept.
KEPT_MS = 60_000


@pytest.fixture
def nodes(tmp_path: Path, database: TestDatabase) -> Iterator[tuple[Node, Node, str]]:
    url = database.new_store_url()
    key = secrets.token_bytes(32)
    a, b = node_pair(tmp_path, url, USER, PASSWORD, listeners=("http",))
    for node in (a, b):
        store = dataclasses.replace(
            node.config.store, postgres=cfg.PostgresSection(directory_ttl_ms=KEPT_MS)
        )
        node.config = dataclasses.replace(node.config, store=store)
        node.config.data_dir.mkdir(parents=True, exist_ok=True)
        (node.config.data_dir / SECRET_FILE).write_bytes(key)
    with a, b:
        yield a, b, url


def client(node: Node, cookie: str = "") -> httpx.Client:
    web = httpx.Client(base_url=f"http://127.0.0.1:{node.port('http')}", follow_redirects=False)
    if cookie:
        web.cookies.set("pb_session", cookie)
    return web


def login(node: Node) -> httpx.Client:
    web = client(node)
    match = _CSRF_META.search(web.get("/login").text)
    assert match is not None
    form = {"csrf": match.group(1), "username": USER, "password": PASSWORD, "next": "/mail"}
    assert web.post("/login", data=form).status_code == 303
    return web


def refused_within(web: httpx.Client, seconds: float) -> float:
    """Seconds until ``web``'s session is refused (AssertionError past ``seconds``)."""
    start = time.monotonic()
    while web.get("/api/v1/mailboxes").status_code != 401:
        assert time.monotonic() - start < seconds, "the other node still takes the cookie"
        time.sleep(0.02)
    return time.monotonic() - start


def test_a_logout_on_one_node_ends_the_session_on_the_other(
    nodes: tuple[Node, Node, str],
) -> None:
    a, b, _ = nodes
    web = login(a)
    cookie = web.cookies["pb_session"]
    on_b = client(b, cookie)
    for _ in range(3):  # node B keeps "not ended" and the account
        assert on_b.get("/api/v1/mailboxes").status_code == 200
    other = login(a)
    assert client(b, other.cookies["pb_session"]).get("/settings").status_code == 200
    csrf = _CSRF_META.search(web.get("/settings").text)
    assert csrf is not None
    assert web.post("/logout", data={"csrf": csrf.group(1)}).status_code == 303
    assert client(a, cookie).get("/api/v1/mailboxes").status_code == 401  # at once on A
    refused_within(on_b, PUSH_WAIT)
    assert client(b, other.cookies["pb_session"]).get("/settings").status_code == 200


def test_a_password_changed_elsewhere_ends_the_sessions_on_every_node(
    nodes: tuple[Node, Node, str],
) -> None:
    a, b, url = nodes
    web = login(a)
    on_b = client(b, web.cookies["pb_session"])
    assert on_b.get("/api/v1/mailboxes").status_code == 200

    async def change_password() -> None:  # another node's write (the command line's)
        store = PostgresStore(url)
        await store.open()
        try:
            await provisioning.set_password(store, a.config, USER, "another password 123")
        finally:
            await store.close()

    asyncio.run(change_password())
    refused_within(on_b, PUSH_WAIT)
    refused_within(web, PUSH_WAIT)
