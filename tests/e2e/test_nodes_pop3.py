"""POP3 on two ``pillarbox serve`` processes over one PostgreSQL database, with poplib.

RFC 1939 §4: a POP3 session holds its maildrop exclusively, and behind a load balancer the
second session of an account may reach either node: it must get ``-ERR [IN-USE]`` (RFC 2449
§8.1.2) on the other node too, and the maildrop must come free when the first session quits
— or when its node dies (SIGKILL: no QUIT, no clean-up, only the database connection gone).

Skipped without a PostgreSQL server (``$PILLARBOX_TEST_POSTGRES`` or 127.0.0.1:5432).
"""

from __future__ import annotations

import poplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.nodes import Node, node_pair
from pillarbox.testing.postgres import TestDatabase, needs_postgres

pytestmark = needs_postgres()

USER = "alice@example.org"


@pytest.fixture
def nodes(tmp_path: Path, database: TestDatabase) -> Iterator[tuple[Node, Node]]:
    a, b = node_pair(tmp_path, database.new_store_url(), USER, PASSWORD, listeners=("pop3",))
    with a, b:
        yield a, b


def login(node: Node) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", node.port("pop3"), timeout=10)
    try:
        client.user(USER)
        client.pass_(PASSWORD)
    except BaseException:
        client.close()
        raise
    return client


def test_a_maildrop_held_on_one_node_is_in_use_on_the_other(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    first = login(a)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        login(b)
    first.quit()
    second = login(b)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        login(a)
    second.quit()


def test_a_dead_nodes_maildrop_comes_free(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    held = login(a)
    a.kill()
    held.close()
    # PostgreSQL ends the dead node's session once it sees the socket closed: at once here,
    # since the kernel closes a killed process's connections.
    deadline = time.monotonic() + 10
    while True:
        try:
            login(b).quit()
            return
        except poplib.error_proto:
            assert time.monotonic() < deadline, "the dead node's maildrop lock stayed"
            time.sleep(0.2)
