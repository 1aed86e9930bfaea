"""POP3 with Python's poplib against the live server: every RFC 1939 command, STLS, POP3S,
deletion semantics and coexistence with the store's other users."""

from __future__ import annotations

import poplib
import socket
import ssl

import pytest

from pillarbox.mail.parse import parse_message
from pillarbox.store.types import INBOX, DeliveryTarget
from pillarbox.testing.live import TEST_PASSWORD as PASSWORD
from pillarbox.testing.live import LiveServer

pytestmark = pytest.mark.listeners("pop3", "pop3s")


def message(n: int, extra: bytes = b"") -> bytes:
    return (
        f"From: sender@example.net\r\nTo: alice@example.org\r\nSubject: message {n}\r\n"
        f"Message-ID: <m{n}@example.net>\r\n\r\nline one of {n}\r\n.leading dot\r\n"
    ).encode() + extra


def deliver(live: LiveServer, address: str, raw: bytes) -> None:
    async def go() -> None:
        account = await live.store.get_account(address)
        assert account is not None
        [result] = await live.store.deliver(raw, parse_message(raw), [DeliveryTarget(account.id)])
        assert result.record is not None

    live.call(go())


def inbox_uids(live: LiveServer, address: str) -> list[int]:
    async def go() -> list[int]:
        account = await live.store.get_account(address)
        assert account is not None
        inbox = await live.store.get_mailbox(account.id, INBOX)
        return [r.uid for r in await live.store.list_messages(inbox.id)]

    return live.call(go())


def client(live: LiveServer) -> poplib.POP3:
    pop = poplib.POP3("127.0.0.1", live.port("pop3"), timeout=10)
    pop.user("alice@example.org")
    pop.pass_(PASSWORD)
    return pop


def test_full_session(live: LiveServer) -> None:
    raws = [message(i) for i in range(3)]
    for raw in raws:
        deliver(live, "alice@example.org", raw)
    pop = client(live)
    count, size = pop.stat()
    assert count == 3
    assert size == sum(len(r) for r in raws)
    _, listing, _ = pop.list()
    assert [line.split()[1] for line in listing] == [str(len(r)).encode() for r in raws]
    _, uidls, _ = pop.uidl()
    ids = [line.split()[1] for line in uidls]
    assert len(set(ids)) == 3
    _, lines, _ = pop.retr(2)
    assert b"\r\n".join(lines) + b"\r\n" == raws[1]
    _, top, _ = pop.top(1, 0)
    assert top[-1] == b"" and b"Subject: message 0" in top
    pop.dele(1)
    with pytest.raises(poplib.error_proto, match="already deleted"):
        pop.retr(1)
    pop.rset()
    pop.dele(3)
    pop.quit()
    assert len(inbox_uids(live, "alice@example.org")) == 2
    # UIDL values are stable across sessions
    pop = client(live)
    _, again, _ = pop.uidl()
    assert [line.split()[1] for line in again] == ids[:2]
    pop.quit()


def test_dropped_connection_deletes_nothing(live: LiveServer) -> None:
    deliver(live, "alice@example.org", message(1))
    pop = client(live)
    pop.dele(1)
    pop.sock.shutdown(socket.SHUT_RDWR)
    pop.sock.close()
    assert len(inbox_uids(live, "alice@example.org")) == 1
    pop = client(live)  # the maildrop lock was released by the drop
    assert pop.stat()[0] == 1
    pop.quit()


def test_second_session_is_refused_in_use(live: LiveServer) -> None:
    first = client(live)
    second = poplib.POP3("127.0.0.1", live.port("pop3"), timeout=10)
    second.user("alice@example.org")
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(PASSWORD)
    second.close()
    first.quit()


def test_wrong_password(live: LiveServer) -> None:
    pop = poplib.POP3("127.0.0.1", live.port("pop3"), timeout=10)
    pop.user("alice@example.org")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        pop.pass_("wrong password!")
    pop.close()


def test_stls_and_capabilities(live: LiveServer) -> None:
    deliver(live, "alice@example.org", message(7))
    pop = poplib.POP3("127.0.0.1", live.port("pop3"), timeout=10)
    caps = pop.capa()
    assert "STLS" in caps and "UIDL" in caps and "TOP" in caps
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    pop.stls(context)
    assert "STLS" not in pop.capa()
    pop.user("alice@example.org")
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 1
    pop.quit()


def test_implicit_tls(live: LiveServer) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    pop = poplib.POP3_SSL("127.0.0.1", live.port("pop3s"), context=context, timeout=10)
    pop.user("alice@example.org")
    pop.pass_(PASSWORD)
    assert pop.stat() == (0, 0)
    pop.quit()


def test_sasl_plain(live: LiveServer) -> None:
    import base64

    pop = poplib.POP3("127.0.0.1", live.port("pop3"), timeout=10)
    token = base64.b64encode(f"\0alice@example.org\0{PASSWORD}".encode()).decode()
    assert pop._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
    assert pop.stat() == (0, 0)
    pop.quit()
