"""Two ``pillarbox serve`` processes over one PostgreSQL database: a web session is one
cookie for both (the nodes share the signing key), and ending it on one ends it on the other;
a two-step login may take its steps on different nodes, a message being written riding
through it (held in the store between the steps, sealed) into Drafts.

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
import html
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.auth import totp
from pillarbox.store.postgres import PostgresStore
from pillarbox.store.types import SpecialUse
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.nodes import Node, node_pair
from pillarbox.testing.postgres import TestDatabase, needs_postgres
from pillarbox.testing.push import PUSH_WAIT
from pillarbox.web.session import SECRET_FILE
from pillarbox.web.totpseal import KEY_FILE, TotpSealer

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
    totp_key = secrets.token_bytes(32)
    a, b = node_pair(tmp_path, url, USER, PASSWORD, listeners=("http",))
    for node in (a, b):
        store = dataclasses.replace(
            node.config.store, postgres=cfg.PostgresSection(directory_ttl_ms=KEPT_MS)
        )
        node.config = dataclasses.replace(node.config, store=store)
        node.config.data_dir.mkdir(parents=True, exist_ok=True)
        (node.config.data_dir / SECRET_FILE).write_bytes(key)
        (node.config.data_dir / KEY_FILE).write_bytes(totp_key)  # as docs/two-factor.md asks
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


def enrol_totp(node: Node, url: str) -> bytes:
    """Turn on the user's second factor in the shared store, sealed under the nodes' shared
    ``totp-key`` as enrolment would; the authenticator's key."""
    key = totp.new_secret()
    sealer = TotpSealer((node.config.data_dir / KEY_FILE).read_bytes())

    async def enable() -> None:
        store = PostgresStore(url)
        await store.open()
        try:
            account = await store.get_account(USER)
            assert account is not None
            await store.enable_totp(account.id, sealer.seal(account.id, key), [])
        finally:
            await store.close()

    asyncio.run(enable())
    return key


def csrf_of(page: str) -> str:
    match = _CSRF_META.search(page)
    assert match is not None
    return match.group(1)


_CARRIED_FIELD = re.compile(r'<input type="hidden" name="carried\.([^"]+)" value="([^"]*)">')


def carried_in(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _CARRIED_FIELD.findall(page)}


def test_a_message_rides_a_two_step_login_whose_steps_take_different_nodes(
    nodes: tuple[Node, Node, str],
) -> None:
    """The password step on node A holds the message being written in the shared store; node
    B's code page finds it (and its reloads, a wrong code's redirect included), the database
    shows none of its text, and node B's code step saves it in Drafts, unsent."""
    a, b, url = nodes
    key = enrol_totp(a, url)
    text = "Dear Bob,\r\n\r\nwritten on one node, <kept> by the other & saved.\r\n"
    message = {"to": "bob@example.org", "subject": "across nodes", "body": text}
    fields = {f"carried.{name}": value for name, value in message.items()}
    on_a = client(a)
    form = {"username": USER, "password": PASSWORD, "next": "/compose", **fields}
    step = on_a.post("/login", data={**form, "csrf": csrf_of(on_a.get("/login").text)})
    assert step.status_code == 303
    code_page = step.headers["location"]
    assert code_page == "/login/code?next=%2Fcompose&held=1"
    with psycopg.connect(url) as conn:
        [(sealed,)] = conn.execute("SELECT sealed FROM login_holds").fetchall()
    assert "Bob" not in sealed and "across" not in sealed

    on_b = client(b, on_a.cookies["pb_session"])
    page = on_b.get(code_page)
    assert page.status_code == 200 and "the message you were writing is kept" in page.text
    assert carried_in(page.text) == message
    wrong = {"csrf": csrf_of(page.text), "next": "/compose", "code": "000000x", **fields}
    refused = on_b.post("/login/code", data=wrong)
    assert refused.status_code == 303
    assert refused.headers["location"] == f"{code_page}&error=wrong"
    again = client(a, on_a.cookies["pb_session"]).get(refused.headers["location"])  # back on A
    assert "Wrong or already used code" in again.text and carried_in(again.text) == message

    code = totp.totp(key, time.time())
    done = on_b.post("/login/code", data={**wrong, "code": code})
    assert done.status_code == 303 and done.headers["location"].startswith("/compose?draft=")
    draft = client(b, done.cookies["pb_session"]).get(done.headers["location"]).text
    assert "written on one node, &lt;kept&gt; by the other &amp; saved." in draft

    async def drafts_and_sent() -> list[int]:
        store = PostgresStore(url)
        await store.open()
        try:
            account = await store.get_account(USER)
            assert account is not None
            boxes = {m.special_use: m for m in await store.list_mailboxes(account.id)}
            uses = (SpecialUse.DRAFTS, SpecialUse.SENT)
            return [len(await store.list_messages(boxes[use].id)) for use in uses]
        finally:
            await store.close()

    assert asyncio.run(drafts_and_sent()) == [1, 0]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM login_holds").fetchone() == (0,)  # dropped
